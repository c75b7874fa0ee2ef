//! `feishu-robot` (Lark through `baseUrl`): a Feishu custom bot — optional signing in the body,
//! text with `<at>` mentions, rich-text `post` for markdown (PROTOCOLS.md §4).

mod signing;

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use regex::Regex;
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::retry_after;
use super::ratelimit::Limit;
use super::reply::{ReplyTable, Rounds, Spent, VendorReply, Verdict, call, vendor_message};
use super::{Channel, ChannelKind, DeliveryError, Limits, Outgoing, Preview, Reason, Receipt};
use crate::catalog::{DocCtx, DocError};
use crate::ids::now_ms;
use crate::message::{Message, MsgType, Recipients, markdown_to_text, truncate_utf8};
use crate::secret::{Secret, SecretRef, SecretUrl};

/// The body may not exceed 20 KB; leave room for the JSON around the content.
const CONTENT_BYTES: usize = 18_000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FeishuSpec {
    /// The hook token (the last segment of the webhook URL).
    token: Option<SecretRef>,
    /// Or the whole webhook URL.
    url: Option<SecretRef>,
    /// Default `https://open.feishu.cn/open-apis/bot/v2/hook/`; Lark:
    /// `https://open.larksuite.com/open-apis/bot/v2/hook/`.
    base_url: Option<String>,
    /// The bot's signing secret (签名校验).
    secret: Option<SecretRef>,
}

/// A configured Feishu / Lark bot.
#[derive(Debug)]
pub struct Feishu {
    url: SecretUrl,
    secret: Option<Secret>,
    http: reqwest::Client,
}

/// The answer table of a Feishu / Lark bot (PROTOCOLS.md §4): `code`, or the legacy
/// `StatusCode`.
struct Send;

impl Send {
    /// The throttles Feishu reports in its body, whatever the HTTP status it sends them with
    /// (9499 "too many request" comes as HTTP 400, 99991400 as 429).
    fn throttle(&self, code: i64, reply: &VendorReply) -> Option<Verdict> {
        let msg = vendor_message::<Send>(reply).to_lowercase();
        let wait = |default: u64| {
            Verdict::Throttle(Some(
                self.throttle_wait(reply)
                    .unwrap_or(Duration::from_secs(default)),
            ))
        };
        match code {
            9499 if msg.contains("too many request") => Some(wait(1)),
            11232 => Some(wait(60)),
            99991400 => Some(wait(1)),
            _ => None,
        }
    }
}

impl ReplyTable for Send {
    const CODE: &'static [&'static str] = &["code", "StatusCode"];
    const MESSAGE: &'static [&'static str] = &["msg", "StatusMessage"];

    fn classify(&self, code: i64, reply: &VendorReply) -> Verdict {
        if let Some(throttled) = self.throttle(code, reply) {
            return throttled;
        }
        match code {
            0 => Verdict::Sent,
            // Signature or timestamp refused: sign again, once.
            19021 => Verdict::Again(Spent::Fail(Reason::Auth)),
            19001 | 19022 => Verdict::Fail(Reason::Auth),
            _ => Verdict::Fail(Reason::Client),
        }
    }

    fn error_status(&self, code: Option<i64>, reply: &VendorReply) -> Option<Verdict> {
        self.throttle(code?, reply)
    }

    /// A 429 says when the window resets.
    fn throttle_wait(&self, reply: &VendorReply) -> Option<Duration> {
        reply
            .headers
            .get("x-ogw-ratelimit-reset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs)
            .or_else(|| retry_after(&reply.headers))
    }
}

impl Feishu {
    pub fn build(spec: &Value, ctx: &mut DocCtx<'_>) -> Result<Feishu, Vec<DocError>> {
        let spec: FeishuSpec = serde_json::from_value(spec.clone())
            .map_err(|e| vec![DocError::new("/spec", e.to_string())])?;
        let url = match (&spec.token, &spec.url) {
            (Some(t), None) => {
                let token = ctx.secret(t, "/spec/token").map_err(|e| vec![e])?;
                let base = spec.base_url.clone().unwrap_or_else(|| {
                    format!("{}/open-apis/bot/v2/hook/", ctx.settings.vendors.feishu)
                });
                let url = format!("{}/{}", base.trim_end_matches('/'), token.expose());
                SecretUrl::new(Secret::new(url), false)
            }
            (None, Some(u)) => ctx.url(u, "/spec/url").map_err(|e| vec![e])?,
            _ => return Err(vec![DocError::new("/spec", "give either token or url")]),
        };
        let secret = match &spec.secret {
            Some(s) => Some(ctx.secret(s, "/spec/secret").map_err(|e| vec![e])?),
            None => None,
        };
        Ok(Feishu {
            url,
            secret,
            http: ctx.http.clone(),
        })
    }

    fn body(&self, out: &Outgoing<'_>) -> Value {
        let mut body = match out.message.msgtype {
            MsgType::Markdown => post(out.message, out.to),
            MsgType::Text => text(out.message, out.to),
        };
        if let Some(secret) = &self.secret {
            let ts = now_ms() / 1000;
            body["timestamp"] = json!(ts.to_string());
            body["sign"] = json!(signing::sign(secret.expose(), ts));
        }
        body
    }

    fn secrets(&self) -> Vec<String> {
        let mut s = self.url.credentials().to_vec();
        s.extend(self.secret.as_ref().map(|k| k.expose().to_string()));
        s
    }
}

/// `<at user_id="…"></at>` for each recipient (and everyone).
fn at_tags(to: &Recipients) -> String {
    let mut tags: String = to
        .users
        .iter()
        .map(|u| format!("<at user_id=\"{u}\"></at>"))
        .collect();
    if to.all {
        tags.push_str("<at user_id=\"all\">所有人</at>");
    }
    tags
}

fn text(m: &Message, to: &Recipients) -> Value {
    let mut content = m.content.clone();
    if let Some(url) = m.url.as_deref().filter(|u| !content.contains(*u)) {
        content.push('\n');
        content.push_str(url);
    }
    let mentions = at_tags(to);
    truncate_utf8(
        &mut content,
        CONTENT_BYTES.saturating_sub(mentions.len() + 1),
    );
    if !mentions.is_empty() {
        content = format!("{mentions} {content}");
    }
    json!({"msg_type": "text", "content": {"text": content}})
}

/// Markdown as rich text: one paragraph per line, links as `a` elements, mentions as `at`.
fn post(m: &Message, to: &Recipients) -> Value {
    static LINK: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\[([^\]]+)\]\(([^)\s]+)\)").expect("static regex"));
    let mut source = m.content.clone();
    truncate_utf8(&mut source, CONTENT_BYTES);
    let mut lines: Vec<Value> = Vec::new();
    for line in source.lines() {
        let mut elements = Vec::new();
        let mut at = 0;
        for cap in LINK.captures_iter(line) {
            let whole = cap.get(0).expect("match");
            if whole.start() > at {
                elements.push(
                    json!({"tag": "text", "text": markdown_to_text(&line[at..whole.start()])}),
                );
            }
            elements.push(json!({"tag": "a", "text": &cap[1], "href": &cap[2]}));
            at = whole.end();
        }
        if at < line.len() || elements.is_empty() {
            elements.push(json!({"tag": "text", "text": markdown_to_text(&line[at..])}));
        }
        lines.push(Value::Array(elements));
    }
    if let Some(url) = m.url.as_deref().filter(|u| !m.content.contains(*u)) {
        lines.push(json!([{"tag": "a", "text": url, "href": url}]));
    }
    let mut mentions: Vec<Value> = to
        .users
        .iter()
        .map(|u| json!({"tag": "at", "user_id": u}))
        .collect();
    if to.all {
        mentions.push(json!({"tag": "at", "user_id": "all"}));
    }
    if !mentions.is_empty() {
        lines.push(Value::Array(mentions));
    }
    let title = m.title.clone().unwrap_or_default();
    json!({"msg_type": "post", "content": {"post": {"zh_cn": {"title": title, "content": lines}}}})
}

#[async_trait]
impl Channel for Feishu {
    fn kind(&self) -> ChannelKind {
        ChannelKind::FeishuRobot
    }

    fn limits(&self) -> Limits {
        Limits {
            text_bytes: Some(CONTENT_BYTES),
            markdown_bytes: Some(CONTENT_BYTES),
            ..Limits::default()
        }
    }

    fn default_limits(&self) -> Vec<Limit> {
        vec![Limit::per_second(5), Limit::per_minute(100)]
    }

    async fn send(&self, out: &Outgoing<'_>) -> Result<Receipt, DeliveryError> {
        let owned = self.secrets();
        let secrets: Vec<&str> = owned.iter().map(String::as_str).collect();
        // Built per round: a re-sign needs a fresh timestamp.
        let mut rounds = Rounds::default();
        loop {
            let req = self
                .http
                .post(self.url.expose())
                .timeout(out.timeout)
                .json(&self.body(out));
            let reply = call(req).await.map_err(|e| e.scrubbed(&secrets))?;
            match rounds.judge(&Send, reply) {
                Ok(Some(_)) => return Ok(Receipt::default()),
                Ok(None) => continue,
                Err(e) => return Err(e.scrubbed(&secrets)),
            }
        }
    }

    fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError> {
        let mut body = self.body(out);
        if body.get("sign").is_some() {
            body["sign"] = json!("***");
        }
        Ok(Preview::post(self.url.shown(), body))
    }

    fn describe(&self) -> Value {
        json!({"type": "feishu-robot", "url": self.url.shown(), "signed": self.secret.is_some()})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::channel::reply::table_test::{Row, first_round, shared_rows};

    #[test]
    fn reply_table() {
        shared_rows(&Send, r#"{"code":0,"msg":"success","data":{}}"#);
        let s = Duration::from_secs;
        let rows: &[Row] = &[
            (
                200,
                &[],
                r#"{"StatusCode":0,"StatusMessage":"success"}"#,
                Verdict::Sent,
            ),
            (
                400,
                &[],
                r#"{"code":9499,"msg":"too many request"}"#,
                Verdict::Throttle(Some(s(1))),
            ),
            (
                200,
                &[],
                r#"{"code":9499,"msg":"Bad Request"}"#,
                Verdict::Fail(Reason::Client),
            ),
            (
                400,
                &[],
                r#"{"code":9499,"msg":"Bad Request"}"#,
                Verdict::Fail(Reason::Client),
            ),
            (
                200,
                &[],
                r#"{"code":11232,"msg":"frequency limited"}"#,
                Verdict::Throttle(Some(s(60))),
            ),
            (
                429,
                &[("x-ogw-ratelimit-reset", "12")],
                r#"{"code":99991400,"msg":"request trigger frequency limit"}"#,
                Verdict::Throttle(Some(s(12))),
            ),
            (
                429,
                &[("x-ogw-ratelimit-reset", "3")],
                "",
                Verdict::Throttle(Some(s(3))),
            ),
            (
                200,
                &[],
                r#"{"code":19021,"msg":"sign match fail or timestamp is not within one hour"}"#,
                Verdict::Again(Spent::Fail(Reason::Auth)),
            ),
            (
                200,
                &[],
                r#"{"code":19001,"msg":"param invalid: incoming webhook access token invalid"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (
                200,
                &[],
                r#"{"code":19022,"msg":"Ip Not Allowed"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (
                200,
                &[],
                r#"{"code":19024,"msg":"Key Words Not Found"}"#,
                Verdict::Fail(Reason::Client),
            ),
            (
                500,
                &[],
                r#"{"code":0,"msg":"success"}"#,
                Verdict::Retry(Reason::Server),
            ),
        ];
        for (status, headers, body, want) in rows {
            assert_eq!(
                &first_round(&Send, *status, headers, body),
                want,
                "HTTP {status} {body}"
            );
        }
    }

    #[test]
    fn markdown_becomes_rich_text_with_mentions() {
        let m = Message {
            msgtype: MsgType::Markdown,
            content: "**构建失败**\n详情见 [任务 47](https://z.example/t/47) 。".into(),
            title: Some("Zadig".into()),
            url: None,
        };
        let to = Recipients {
            users: vec!["ou_abc".into()],
            all: true,
            ..Recipients::default()
        };
        let v = post(&m, &to);
        let lines = &v["content"]["post"]["zh_cn"]["content"];
        assert_eq!(v["content"]["post"]["zh_cn"]["title"], "Zadig");
        assert_eq!(lines[0], json!([{"tag": "text", "text": "构建失败"}]));
        assert_eq!(
            lines[1][1],
            json!({"tag": "a", "text": "任务 47", "href": "https://z.example/t/47"})
        );
        assert_eq!(
            lines[2],
            json!([{"tag": "at", "user_id": "ou_abc"}, {"tag": "at", "user_id": "all"}])
        );
        let t = text(
            &Message {
                msgtype: MsgType::Text,
                ..m
            },
            &to,
        );
        assert!(
            t["content"]["text"]
                .as_str()
                .unwrap()
                .starts_with("<at user_id=\"ou_abc\"></at><at user_id=\"all\">所有人</at> ")
        );
    }
}
