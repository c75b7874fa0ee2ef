//! `hookrelay sink`: a local stand-in for every vendor, to try hookrelay without one. It answers
//! like WeCom (gettoken, application messages, group robots), DingTalk, Feishu (custom and app
//! bots) and a plain webhook, verifies signatures when given the secrets, and prints each message
//! the way a person would see it in that chat.

use std::io::Write;
use std::net::TcpListener;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use super::{dingtalk, feishu};
use crate::signature;

/// The secrets to verify signatures with (each optional: without it, "not checked").
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// Standard Webhooks `whsec_…` of webhook channels.
    pub webhook: Option<String>,
    /// DingTalk `SEC…`.
    pub dingtalk: Option<String>,
    /// Feishu signing secret.
    pub feishu: Option<String>,
}

/// Serves on `listener` until the process ends.
pub async fn run(listener: TcpListener, secrets: Secrets) -> std::io::Result<()> {
    let secrets = web::Data::new(secrets);
    println!(
        "hookrelay sink on http://{}: WeCom (/cgi-bin/…), DingTalk (/robot/send), Feishu \
         (/open-apis/bot/v2/hook/…, /open-apis/im/v1/messages), any other POST as a webhook",
        listener.local_addr()?
    );
    HttpServer::new(move || {
        App::new()
            .app_data(secrets.clone())
            .route("/cgi-bin/gettoken", web::get().to(gettoken))
            .route("/cgi-bin/message/send", web::post().to(wecom_app))
            .route(
                "/cgi-bin/message/update_template_card",
                web::post().to(wecom_card_update),
            )
            .route("/cgi-bin/webhook/send", web::post().to(wecom_robot))
            .route("/robot/send", web::post().to(dingtalk_robot))
            .route("/open-apis/bot/v2/hook/{token}", web::post().to(feishu_bot))
            .route(
                "/open-apis/auth/v3/tenant_access_token/internal",
                web::post().to(feishu_token),
            )
            .route("/open-apis/im/v1/messages", web::post().to(feishu_app))
            .route(
                "/open-apis/im/v1/messages/{id}",
                web::patch().to(feishu_card_update),
            )
            .default_service(web::post().to(webhook))
    })
    .workers(1)
    .listen(listener)?
    .run()
    .await
}

/// Prints one message: a header line, then its text.
fn show(header: &str, body: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "── {header}");
    for line in body.lines() {
        let _ = writeln!(out, "   {line}");
    }
    let _ = out.flush();
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|l| l.iter().map(text).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn check(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "signature ✔",
        Some(false) => "signature ✘ (does not match the secret given)",
        None => "signature not checked",
    }
}

async fn gettoken() -> HttpResponse {
    HttpResponse::Ok().json(
        json!({"errcode": 0, "errmsg": "ok", "access_token": "sink-token", "expires_in": 7200}),
    )
}

async fn wecom_app(body: web::Json<Value>) -> HttpResponse {
    let b = &body;
    let to: Vec<String> = [
        ("users", "touser"),
        ("departments", "toparty"),
        ("tags", "totag"),
    ]
    .iter()
    .filter_map(|(label, k)| b[*k].as_str().map(|v| format!("{label} {v}")))
    .collect();
    let kind = text(&b["msgtype"]);
    let m = &b[kind.as_str()];
    let shown = match kind.as_str() {
        "textcard" => format!(
            "{}\n{}\n[{}] {}",
            text(&m["title"]),
            text(&m["description"]),
            text(&m["btntxt"]),
            text(&m["url"])
        ),
        "template_card" => card_text(m),
        _ => text(&m["content"]),
    };
    show(
        &format!(
            "WeCom app (agent {}) → {} [{kind}]",
            text(&b["agentid"]),
            to.join(", ")
        ),
        &shown,
    );
    let mut reply = json!({"errcode": 0, "errmsg": "ok", "msgid": "sink-msg"});
    // An interaction card can be updated: with a code as WeCom gives (the sink takes any).
    if m["card_type"]
        .as_str()
        .is_some_and(|t| t.ends_with("_interaction"))
    {
        reply["response_code"] = json!("sink-response-code");
    }
    HttpResponse::Ok().json(reply)
}

/// A WeCom template card as text: its title, its text, its first button.
fn card_text(card: &Value) -> String {
    format!(
        "{}\n{}\n[{}] {}",
        text(&card["main_title"]["title"]),
        text(&card["sub_title_text"]),
        text(&card["button_list"][0]["text"]),
        text(&card["button_list"][0]["url"])
    )
}

async fn wecom_card_update(body: web::Json<Value>) -> HttpResponse {
    show(
        &format!(
            "WeCom app card {} updated for {}",
            text(&body["template_card"]["task_id"]),
            list(&body["userids"])
        ),
        &card_text(&body["template_card"]),
    );
    HttpResponse::Ok().json(json!({"errcode": 0, "errmsg": "ok", "invaliduser": ""}))
}

/// A Feishu card as text: its header and its first block.
fn feishu_card_text(card: &Value) -> String {
    format!(
        "{}\n{}",
        text(&card["header"]["title"]["content"]),
        text(&card["elements"][0]["text"]["content"])
    )
}

async fn feishu_card_update(id: web::Path<String>, body: web::Json<Value>) -> HttpResponse {
    let card: Value = body["content"]
        .as_str()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or(Value::Null);
    show(
        &format!("Feishu app card {id} updated"),
        &feishu_card_text(&card),
    );
    HttpResponse::Ok().json(json!({"code": 0, "msg": "success", "data": {}}))
}

async fn wecom_robot(body: web::Json<Value>) -> HttpResponse {
    let kind = text(&body["msgtype"]);
    let m = &body[kind.as_str()];
    let mentions = format!(
        "{} {}",
        list(&m["mentioned_list"]),
        list(&m["mentioned_mobile_list"])
    );
    show(
        &format!("WeCom robot [{kind}] mentions: {}", mentions.trim()),
        &text(&m["content"]),
    );
    HttpResponse::Ok().json(json!({"errcode": 0, "errmsg": "ok"}))
}

async fn dingtalk_robot(
    req: HttpRequest,
    body: web::Json<Value>,
    secrets: web::Data<Secrets>,
) -> HttpResponse {
    let query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .map(web::Query::into_inner)
            .unwrap_or_default();
    let signed = secrets.dingtalk.as_deref().map(|secret| {
        let ts = query
            .get("timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        query
            .get("sign")
            .is_some_and(|s| *s == dingtalk::signing::sign(secret, ts))
    });
    let kind = text(&body["msgtype"]);
    let m = &body[kind.as_str()];
    let at = &body["at"];
    let shown = match kind.as_str() {
        "text" => text(&m["content"]),
        "actionCard" => format!(
            "{}\n{}\n[{}] {}",
            text(&m["title"]),
            text(&m["text"]),
            text(&m["singleTitle"]),
            text(&m["singleURL"])
        ),
        _ => format!("{}\n{}", text(&m["title"]), text(&m["text"])),
    };
    show(
        &format!(
            "DingTalk robot [{kind}] @ {} {}{} ({})",
            list(&at["atUserIds"]),
            list(&at["atMobiles"]),
            if at["isAtAll"] == true { " @all" } else { "" },
            check(signed)
        ),
        &shown,
    );
    HttpResponse::Ok().json(json!({"errcode": 0, "errmsg": "ok"}))
}

async fn feishu_bot(body: web::Json<Value>, secrets: web::Data<Secrets>) -> HttpResponse {
    let signed = secrets.feishu.as_deref().map(|secret| {
        let ts = text(&body["timestamp"]).parse().unwrap_or(0);
        body["sign"].as_str() == Some(feishu::signing::sign(secret, ts).as_str())
    });
    let shown = match body["msg_type"].as_str() {
        Some("post") => {
            let post = &body["content"]["post"]["zh_cn"];
            let lines: Vec<String> = post["content"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|line| {
                    line.as_array()
                        .into_iter()
                        .flatten()
                        .map(|el| match el["tag"].as_str() {
                            Some("a") => format!("{} ({})", text(&el["text"]), text(&el["href"])),
                            Some("at") => format!("@{}", text(&el["user_id"])),
                            _ => text(&el["text"]),
                        })
                        .collect()
                })
                .collect();
            format!("{}\n{}", text(&post["title"]), lines.join("\n"))
        }
        _ => text(&body["content"]["text"]),
    };
    show(&format!("Feishu bot ({})", check(signed)), &shown);
    HttpResponse::Ok().json(json!({"code": 0, "msg": "success", "data": {}}))
}

async fn feishu_token() -> HttpResponse {
    HttpResponse::Ok()
        .json(json!({"code": 0, "msg": "ok", "tenant_access_token": "sink-token", "expire": 7200}))
}

async fn feishu_app(req: HttpRequest, body: web::Json<Value>) -> HttpResponse {
    let content: Value = body["content"]
        .as_str()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or(Value::Null);
    let shown = match body["msg_type"].as_str() {
        Some("interactive") => feishu_card_text(&content),
        Some("text") => text(&content["text"]),
        _ => content.to_string(),
    };
    show(
        &format!(
            "Feishu app → {} {} [{}]",
            req.query_string(),
            text(&body["receive_id"]),
            text(&body["msg_type"])
        ),
        &shown,
    );
    HttpResponse::Ok().json(json!({"code": 0, "msg": "success", "data": {"message_id": "om_sink"}}))
}

async fn webhook(req: HttpRequest, body: web::Bytes, secrets: web::Data<Secrets>) -> HttpResponse {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let signed = secrets.webhook.as_deref().map(|secret| {
        signature::decode_whsec(secret).is_ok_and(|key| {
            let now = crate::ids::now_ms() as i64 / 1000;
            signature::standard_webhooks_verify(
                &key,
                header("webhook-id"),
                header("webhook-timestamp"),
                header("webhook-signature"),
                &body,
                now,
                300,
            )
            .is_ok()
        })
    });
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let shown = match v["text"]["content"].as_str() {
        Some(content) => {
            let title = v["title"]
                .as_str()
                .map(|t| format!("{t}\n"))
                .unwrap_or_default();
            let url = v["url"]
                .as_str()
                .map(|u| format!("\n{u}"))
                .unwrap_or_default();
            format!("{title}{content}{url}")
        }
        None => String::from_utf8_lossy(&body).into_owned(),
    };
    show(
        &format!(
            "webhook {} → {} ({})",
            req.path(),
            v["touser"].as_str().unwrap_or(""),
            check(signed)
        ),
        &shown,
    );
    HttpResponse::Ok().json(json!({"status": "received"}))
}
