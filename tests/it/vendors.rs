//! Fake WeCom, DingTalk and Feishu servers that check what the real APIs check (tokens,
//! signatures, shapes, byte limits) and answer with their error codes on demand. Every check a
//! request fails is recorded in `problems`, and answered the way the vendor would.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::{FakeServer, Recorded, Reply};

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Query parameters, percent-decoded once.
pub fn query(r: &Recorded) -> HashMap<String, String> {
    r.query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .unwrap()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// State shared by a fake and its test.
#[derive(Default)]
pub struct Vendor {
    /// Codes to answer the next sends with, in order (0 = the normal answer).
    pub codes: VecDeque<i64>,
    /// Requests that broke a rule of the real API.
    pub problems: Vec<String>,
    /// Accepted message bodies.
    pub sent: Vec<Value>,
    /// WeCom: tokens issued and still valid.
    pub valid_tokens: HashSet<String>,
    pub tokens_issued: usize,
    /// WeCom: user ids that do not exist.
    pub invalid_users: HashSet<String>,
    /// DingTalk / Feishu: refuse this many signatures as stale before accepting.
    pub refuse_timestamps: usize,
    /// WeCom: the contact directory (mail or mobile → userid).
    pub contacts: HashMap<String, String>,
    /// WeCom: each contact lookup asked (`mail:…`, `mobile:…`).
    pub lookups: Vec<String>,
    /// Accepted updates of sent messages (WeCom `update_template_card` bodies; Feishu
    /// `{message_id, content}`).
    pub updates: Vec<Value>,
    /// Seconds the fake's clock is ahead of the real one (to age response codes and messages).
    pub skew_secs: i64,
}

/// A WeCom interaction card the fake sent: its `response_code` updates it once within 72 h.
struct Card {
    task_id: String,
    card_type: String,
    issued: i64,
    used: bool,
}

/// Checks a `template_card` as WeCom does; the problem, if any.
fn card_problem(card: &Value, task_ids: &HashSet<String>) -> Option<String> {
    let card_type = card["card_type"].as_str().unwrap_or("");
    let interaction = card_type.ends_with("_interaction");
    if ![
        "text_notice",
        "news_notice",
        "button_interaction",
        "vote_interaction",
        "multiple_interaction",
    ]
    .contains(&card_type)
    {
        return Some(format!("card_type {card_type:?}"));
    }
    let title = card["main_title"]["title"].as_str().unwrap_or("");
    if title.is_empty() || title.chars().count() > 36 {
        return Some(format!("main_title.title {title:?}"));
    }
    if card["sub_title_text"]
        .as_str()
        .is_some_and(|t| t.chars().count() > 112)
    {
        return Some("sub_title_text over 112 characters".into());
    }
    if !interaction && card["card_action"]["type"].is_null() {
        return Some("a notice card without card_action".into());
    }
    if interaction {
        let task = card["task_id"].as_str().unwrap_or("");
        let ok = !task.is_empty()
            && task.len() <= 128
            && task
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-@".contains(c));
        if !ok {
            return Some(format!("task_id {task:?}"));
        }
        if task_ids.contains(task) {
            return Some(format!("task_id {task} used before"));
        }
    }
    if card_type == "button_interaction" {
        let buttons = card["button_list"].as_array().map_or(0, Vec::len);
        if buttons == 0 || buttons > 6 {
            return Some(format!("{buttons} buttons"));
        }
    }
    None
}

pub type Shared = Arc<Mutex<Vendor>>;

fn problem(v: &mut Vendor, what: String, code: i64, msg: &str) -> Reply {
    v.problems.push(what);
    Reply::json(200, json!({"errcode": code, "errmsg": msg}))
}

/// WeCom: `gettoken`, `message/send` (application messages, template cards checked as WeCom
/// does, a `response_code` for an interaction card) and `message/update_template_card` (a code
/// works once, within 72 hours, for a card of the same type and task).
pub async fn wecom(corp_id: &'static str, secret: &'static str) -> (FakeServer, Shared) {
    let state: Shared = Arc::default();
    let s = state.clone();
    let cards: Arc<Mutex<HashMap<String, Card>>> = Arc::default();
    let task_ids: Arc<Mutex<HashSet<String>>> = Arc::default();
    let server = FakeServer::with_responder(move |r| {
        let mut v = s.lock().unwrap();
        let q = query(r);
        if r.path == "/cgi-bin/gettoken" {
            if q.get("corpid").map(String::as_str) != Some(corp_id) || q.get("corpsecret").map(String::as_str) != Some(secret) {
                return Reply::json(200, json!({"errcode": 40001, "errmsg": "invalid credential"}));
            }
            v.tokens_issued += 1;
            let token = format!("TOKEN-{}-{}", v.tokens_issued, "x".repeat(500));
            v.valid_tokens.insert(token.clone());
            return Reply::json(200, json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}));
        }
        let lookup = matches!(r.path.as_str(), "/cgi-bin/user/get_userid_by_email" | "/cgi-bin/user/getuserid");
        let update = r.path == "/cgi-bin/message/update_template_card";
        if (r.path != "/cgi-bin/message/send" && !lookup && !update) || r.method != "POST" {
            return Reply::status(404);
        }
        match q.get("access_token") {
            None => return Reply::json(200, json!({"errcode": 41001, "errmsg": "access_token missing"})),
            Some(t) if !v.valid_tokens.contains(t) => {
                return Reply::json(200, json!({"errcode": 42001, "errmsg": "access_token expired"}));
            }
            _ => {}
        }
        let Ok(b) = serde_json::from_slice::<Value>(&r.body) else {
            return problem(&mut v, "body is not JSON".into(), 47001, "data format error");
        };
        if lookup {
            let who = match (b["email"].as_str(), b["mobile"].as_str()) {
                (Some(mail), None) => {
                    if !matches!(b["email_type"].as_i64(), Some(1 | 2)) {
                        v.problems.push(format!("email_type {}", b["email_type"]));
                    }
                    format!("mail:{mail}")
                }
                (None, Some(mobile)) => format!("mobile:{mobile}"),
                _ => return problem(&mut v, format!("lookup body {b}"), 40058, "invalid param"),
            };
            v.lookups.push(who.clone());
            let key = who.split_once(':').map(|(_, k)| k.to_string()).unwrap_or_default();
            return match v.contacts.get(&key) {
                Some(id) => Reply::json(200, json!({"errcode": 0, "errmsg": "ok", "userid": id})),
                None => Reply::json(200, json!({"errcode": 46004, "errmsg": "user no exist"})),
            };
        }
        if !b["agentid"].is_i64() {
            v.problems.push(format!("agentid is not an integer: {}", b["agentid"]));
        }
        if update {
            // A code works once, for 72 hours, for a card of the same type and task.
            let now = now_secs() + v.skew_secs;
            let code = b["response_code"].as_str().unwrap_or("");
            let mut cards = cards.lock().unwrap();
            let Some(card) = cards.get_mut(code).filter(|c| !c.used && now - c.issued < 72 * 3600) else {
                return Reply::json(200, json!({"errcode": 40058, "errmsg": "invalid response_code"}));
            };
            let new = &b["template_card"];
            if new["card_type"] != card.card_type.as_str() || new["task_id"] != card.task_id.as_str() {
                return problem(&mut v, format!("update of {} as {new}", card.task_id), 40058, "invalid template_card");
            }
            if let Some(p) = card_problem(new, &HashSet::new()) {
                return problem(&mut v, p, 40058, "invalid template_card");
            }
            if b["userids"].as_array().is_none_or(Vec::is_empty) && b["partyids"].is_null() && b["tagids"].is_null() && b["atall"].is_null() {
                return problem(&mut v, "an update for nobody".into(), 40058, "invalid param");
            }
            card.used = true;
            v.updates.push(b.clone());
            return Reply::json(200, json!({"errcode": 0, "errmsg": "ok", "invaliduser": ""}));
        }
        let msgtype = b["msgtype"].as_str().unwrap_or("");
        let content = match msgtype {
            "text" | "markdown" => b[msgtype]["content"].as_str().unwrap_or("").to_string(),
            "textcard" => b["textcard"]["description"].as_str().unwrap_or("").to_string(),
            "template_card" => {
                if let Some(p) = card_problem(&b["template_card"], &task_ids.lock().unwrap()) {
                    return problem(&mut v, p, 40058, "invalid template_card");
                }
                b["template_card"]["main_title"]["title"].as_str().unwrap_or("").to_string()
            }
            _ => return problem(&mut v, format!("msgtype {msgtype}"), 40008, "invalid message type"),
        };
        if content.is_empty() {
            return problem(&mut v, "empty content".into(), 44004, "empty content");
        }
        if content.len() > 2048 && msgtype == "markdown" {
            return problem(&mut v, format!("markdown of {} bytes", content.len()), 40058, "markdown.content exceed max length");
        }
        let users: Vec<&str> = b["touser"].as_str().map(|s| s.split('|').collect()).unwrap_or_default();
        let parties: Vec<&str> = b["toparty"].as_str().map(|s| s.split('|').collect()).unwrap_or_default();
        if users.is_empty() && parties.is_empty() && b["totag"].is_null() {
            return problem(&mut v, "no recipients".into(), 40031, "invalid user list");
        }
        if users.len() > 1000 || parties.len() > 100 {
            v.problems.push(format!("{} users / {} parties in one call", users.len(), parties.len()));
        }
        let code = v.codes.pop_front().unwrap_or(0);
        if code != 0 {
            return Reply::json(200, json!({"errcode": code, "errmsg": format!("error {code}, hint: [x], from ip: 1.2.3.4")}));
        }
        let invalid: Vec<String> = users
            .iter()
            .filter(|u| v.invalid_users.contains(**u))
            .map(|u| u.to_lowercase())
            .collect();
        if !invalid.is_empty() && invalid.len() == users.len() && parties.is_empty() {
            return Reply::json(200, json!({"errcode": 81013, "errmsg": "user & party & tag all invalid"}));
        }
        v.sent.push(b.clone());
        let mut reply = json!({"errcode": 0, "errmsg": "ok", "invaliduser": invalid.join("|"), "msgid": format!("msg-{}", v.sent.len())});
        let card = &b["template_card"];
        if let Some(task) = card["task_id"].as_str() {
            task_ids.lock().unwrap().insert(task.to_string());
            if card["card_type"].as_str().is_some_and(|t| t.ends_with("_interaction")) {
                let code = format!("RC-{}", v.sent.len());
                cards.lock().unwrap().insert(code.clone(), Card {
                    task_id: task.to_string(),
                    card_type: card["card_type"].as_str().unwrap_or("").to_string(),
                    issued: now_secs() + v.skew_secs,
                    used: false,
                });
                reply["response_code"] = json!(code);
            }
        }
        Reply::json(200, reply)
    })
    .await;
    (server, state)
}

/// A WeCom group robot: `webhook/send?key=…`.
pub async fn wecom_robot(key: &'static str) -> (FakeServer, Shared) {
    let state: Shared = Arc::default();
    let s = state.clone();
    let server = FakeServer::with_responder(move |r| {
        let mut v = s.lock().unwrap();
        if query(r).get("key").map(String::as_str) != Some(key) {
            return Reply::json(
                200,
                json!({"errcode": 93000, "errmsg": "invalid webhook url"}),
            );
        }
        let b: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let msgtype = b["msgtype"].as_str().unwrap_or("");
        let (content, limit) = match msgtype {
            "text" => (b["text"]["content"].as_str().unwrap_or(""), 2048),
            "markdown" => (b["markdown"]["content"].as_str().unwrap_or(""), 4096),
            _ => {
                return problem(
                    &mut v,
                    format!("msgtype {msgtype}"),
                    40008,
                    "invalid message type",
                );
            }
        };
        if content.len() > limit {
            return problem(
                &mut v,
                format!("{msgtype} of {} bytes", content.len()),
                40058,
                "content exceed max length",
            );
        }
        for list in ["mentioned_list", "mentioned_mobile_list"] {
            if !b["text"][list].is_null() && !b["text"][list].is_array() {
                v.problems.push(format!("{list} is not an array"));
            }
        }
        let code = v.codes.pop_front().unwrap_or(0);
        if code == 0 {
            v.sent.push(b);
        }
        Reply::json(
            200,
            json!({"errcode": code, "errmsg": if code == 0 { "ok" } else { "error" }}),
        )
    })
    .await;
    (server, state)
}

/// A DingTalk custom robot with 加签 and a keyword.
pub async fn dingtalk(
    token: &'static str,
    secret: &'static str,
    keyword: &'static str,
) -> (FakeServer, Shared) {
    let state: Shared = Arc::default();
    let s = state.clone();
    let server = FakeServer::with_responder(move |r| {
        let mut v = s.lock().unwrap();
        let q = query(r);
        if q.get("access_token").map(String::as_str) != Some(token) {
            return Reply::json(
                200,
                json!({"errcode": 300001, "errmsg": "token is not exist"}),
            );
        }
        let ts: i64 = q.get("timestamp").and_then(|t| t.parse().ok()).unwrap_or(0);
        if (ts / 1000 - now_secs()).abs() > 3600 || v.refuse_timestamps > 0 {
            v.refuse_timestamps = v.refuse_timestamps.saturating_sub(1);
            return Reply::json(
                200,
                json!({"errcode": 310000, "errmsg": "description:invalid timestamp;solution:…"}),
            );
        }
        let expected = hmac_b64(secret.as_bytes(), format!("{ts}\n{secret}").as_bytes());
        if q.get("sign") != Some(&expected) {
            return problem(
                &mut v,
                "sign not match".into(),
                310000,
                "description:sign not match;solution:…",
            );
        }
        let b: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let text = match b["msgtype"].as_str() {
            Some("text") => b["text"]["content"].as_str(),
            Some("markdown") => b["markdown"]["text"].as_str(),
            Some("actionCard") => b["actionCard"]["text"].as_str(),
            _ => None,
        }
        .unwrap_or("")
        .to_string();
        if !text.contains(keyword) {
            return problem(
                &mut v,
                "keyword missing".into(),
                310000,
                "description:关键词不匹配;solution:…",
            );
        }
        if text.len() > 20_000 {
            return problem(
                &mut v,
                format!("{} bytes", text.len()),
                460101,
                "message too long",
            );
        }
        for m in b["at"]["atMobiles"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(b["at"]["atUserIds"].as_array().into_iter().flatten())
        {
            if !text.contains(&format!("@{}", m.as_str().unwrap_or(""))) {
                v.problems
                    .push(format!("mention {m} would not render: no @{m} in the text"));
            }
        }
        let code = v.codes.pop_front().unwrap_or(0);
        if code == 0 {
            v.sent.push(b);
        }
        Reply::json(
            200,
            json!({"errcode": code, "errmsg": if code == 0 { "ok" } else { "send too fast" }}),
        )
    })
    .await;
    (server, state)
}

/// A Feishu custom bot with signature verification.
pub async fn feishu(token: &'static str, secret: &'static str) -> (FakeServer, Shared) {
    let state: Shared = Arc::default();
    let s = state.clone();
    let server = FakeServer::with_responder(move |r| {
        let mut v = s.lock().unwrap();
        let code_reply =
            |code: i64, msg: &str| Reply::json(200, json!({"code": code, "msg": msg, "data": {}}));
        if r.path != format!("/open-apis/bot/v2/hook/{token}") {
            return code_reply(
                19001,
                "param invalid: incoming webhook access token invalid",
            );
        }
        if r.body.len() > 20 * 1024 {
            v.problems.push(format!("body of {} bytes", r.body.len()));
            return Reply::json(400, json!({"code": 9499, "msg": "Bad Request"}));
        }
        let b: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let ts: i64 = b["timestamp"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        if (ts - now_secs()).abs() > 3600 || v.refuse_timestamps > 0 {
            v.refuse_timestamps = v.refuse_timestamps.saturating_sub(1);
            return code_reply(
                19021,
                "sign match fail or timestamp is not within one hour from current time",
            );
        }
        if b["sign"].as_str() != Some(&hmac_b64(format!("{ts}\n{secret}").as_bytes(), b"")) {
            v.problems.push("sign mismatch".into());
            return code_reply(
                19021,
                "sign match fail or timestamp is not within one hour from current time",
            );
        }
        match b["msg_type"].as_str() {
            Some("text") if b["content"]["text"].is_string() => {}
            Some("post") if b["content"]["post"]["zh_cn"]["content"].is_array() => {}
            other => v
                .problems
                .push(format!("unexpected shape for msg_type {other:?}")),
        }
        let code = v.codes.pop_front().unwrap_or(0);
        if code == 9499 {
            return Reply::json(400, json!({"code": 9499, "msg": "too many request"}));
        }
        if code == 0 {
            v.sent.push(b);
        }
        code_reply(code, if code == 0 { "success" } else { "error" })
    })
    .await;
    (server, state)
}

/// A Feishu app bot's open platform: `tenant_access_token/internal` (checks the app id and
/// secret) and `im/v1/messages` (checks the bearer token, `receive_id_type`, that `content` is a
/// JSON string of the `msg_type`'s shape, and that a card can be updated; a repeated `uuid` is
/// answered with the first message's id and not delivered twice, as Feishu de-duplicates), and
/// `PATCH im/v1/messages/{id}` (only a card sent with `update_multi`, within 14 days).
pub async fn feishu_app(app_id: &'static str, secret: &'static str) -> (FakeServer, Shared) {
    let state: Shared = Arc::default();
    let uuids: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    // Each message sent: its body and when (for updates).
    let messages: Arc<Mutex<HashMap<String, (Value, i64)>>> = Arc::default();
    let s = state.clone();
    let server = FakeServer::with_responder(move |r| {
        let mut v = s.lock().unwrap();
        let code_reply = |status: u16, code: i64, msg: &str| {
            Reply::json(status, json!({"code": code, "msg": msg, "data": {}}))
        };
        let b: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if r.path == "/open-apis/auth/v3/tenant_access_token/internal" {
            if b["app_id"] != app_id || b["app_secret"] != secret {
                return code_reply(200, 10014, "app secret invalid");
            }
            v.tokens_issued += 1;
            let token = format!("t-{}", v.tokens_issued);
            v.valid_tokens.insert(token.clone());
            return Reply::json(
                200,
                json!({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": 7200}),
            );
        }
        let lookup = r.path == "/open-apis/contact/v3/users/batch_get_id";
        let patched = r
            .path
            .strip_prefix("/open-apis/im/v1/messages/")
            .filter(|_| r.method == "PATCH");
        if (r.path != "/open-apis/im/v1/messages" && !lookup || r.method != "POST")
            && patched.is_none()
        {
            return Reply::status(404);
        }
        let bearer = r
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "));
        if !bearer.is_some_and(|t| v.valid_tokens.contains(t)) {
            return code_reply(400, 99991663, "Invalid access token for authorization");
        }
        if let Some(id) = patched {
            // Only a card sent with update_multi can be updated, within 14 days.
            let now = now_secs() + v.skew_secs;
            let Some((sent, at)) = messages.lock().unwrap().get(id).cloned() else {
                return code_reply(400, 230011, "the message was not found");
            };
            if sent["msg_type"] != "interactive" || now - at > 14 * 24 * 3600 {
                return code_reply(400, 230031, "the message cannot be updated");
            }
            let card: Value = match b["content"].as_str().map(serde_json::from_str::<Value>) {
                Some(Ok(c)) if c["elements"].is_array() && c["config"]["update_multi"] == true => c,
                _ => {
                    v.problems.push(format!("update content {}", b["content"]));
                    return code_reply(400, 230001, "invalid content");
                }
            };
            v.updates.push(json!({"message_id": id, "content": card}));
            return Reply::json(200, json!({"code": 0, "msg": "success", "data": {}}));
        }
        if lookup {
            let id_type = query(r).get("user_id_type").cloned().unwrap_or_default();
            if !["open_id", "user_id", "union_id"].contains(&id_type.as_str()) {
                v.problems.push(format!("user_id_type {id_type:?}"));
            }
            let mut list = Vec::new();
            for (field, kind) in [("emails", "email"), ("mobiles", "mobile")] {
                let asked = b[field].as_array().cloned().unwrap_or_default();
                if asked.len() > 50 {
                    v.problems
                        .push(format!("{} {field} in one lookup", asked.len()));
                }
                for who in asked.iter().filter_map(Value::as_str) {
                    v.lookups.push(format!("{kind}:{who}"));
                    list.push(match v.contacts.get(who) {
                        Some(id) => json!({kind: who, "user_id": id}),
                        None => json!({kind: who}),
                    });
                }
            }
            return Reply::json(
                200,
                json!({"code": 0, "msg": "success", "data": {"user_list": list}}),
            );
        }
        let id_type = query(r).get("receive_id_type").cloned().unwrap_or_default();
        if !["open_id", "user_id", "union_id", "email", "chat_id"].contains(&id_type.as_str()) {
            v.problems.push(format!("receive_id_type {id_type:?}"));
            return code_reply(400, 230001, "invalid receive_id_type");
        }
        let content: Value = match b["content"].as_str().map(serde_json::from_str) {
            Some(Ok(c)) => c,
            _ => {
                v.problems
                    .push(format!("content is not a JSON string: {}", b["content"]));
                return code_reply(400, 230001, "invalid content");
            }
        };
        let shaped = match b["msg_type"].as_str() {
            Some("text") => content["text"].is_string(),
            Some("post") => content["zh_cn"]["content"].is_array(),
            Some("interactive") => {
                if content["config"]["update_multi"] != true {
                    v.problems
                        .push("a card that cannot be updated for everyone".into());
                }
                content["elements"].is_array()
            }
            _ => false,
        };
        if !shaped || b["receive_id"].as_str().is_none_or(str::is_empty) {
            v.problems.push(format!("unexpected body {b}"));
            return code_reply(400, 230001, "invalid param");
        }
        if b["uuid"].as_str().is_some_and(|u| u.len() > 50) {
            v.problems.push("uuid longer than 50".into());
        }
        let code = v.codes.pop_front().unwrap_or(0);
        if code != 0 {
            if code == 99991663 {
                v.valid_tokens.clear();
            }
            return code_reply(400, code, "error");
        }
        let uuid = b["uuid"].as_str().unwrap_or("").to_string();
        let mut seen = uuids.lock().unwrap();
        let id = match seen.get(&uuid) {
            Some(id) if !uuid.is_empty() => id.clone(),
            _ => {
                v.sent
                    .push(json!({"receive_id_type": id_type, "body": b, "content": content}));
                let id = format!("om_{}", v.sent.len());
                seen.insert(uuid, id.clone());
                messages
                    .lock()
                    .unwrap()
                    .insert(id.clone(), (b.clone(), now_secs() + v.skew_secs));
                id
            }
        };
        Reply::json(
            200,
            json!({"code": 0, "msg": "success", "data": {"message_id": id}}),
        )
    })
    .await;
    (server, state)
}
