//! `feishu-robot` (Lark through `baseUrl`): a Feishu custom bot — optional signing in the body,
//! text with `<at>` mentions, rich-text `post` for markdown (PROTOCOLS.md §4).

mod signing;

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use regex::Regex;
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{VendorReply, retry_after, vendor_call};
use super::ratelimit::Limit;
use super::{Channel, ChannelKind, DeliveryError, Limits, Outgoing, Preview, Reason, Receipt};
use crate::catalog::{DocCtx, DocError};
use crate::ids::now_ms;
use crate::message::{Message, MsgType, Recipients, markdown_to_text, truncate_utf8};
use crate::secret::{Secret, SecretRef, redact_url, url_credentials};

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
    url: Secret,
    secret: Option<Secret>,
    http: reqwest::Client,
}

/// What a Feishu answer means (PROTOCOLS.md §4).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Sent,
    Throttle(Duration),
    /// Signature or timestamp refused: sign again, once.
    Resign,
    Fail(Reason),
}

fn classify(code: i64, msg: &str) -> Class {
    match code {
        0 => Class::Sent,
        9499 if msg.to_lowercase().contains("too many request") => {
            Class::Throttle(Duration::from_secs(1))
        }
        11232 => Class::Throttle(Duration::from_secs(60)),
        99991400 => Class::Throttle(Duration::from_secs(1)),
        19021 => Class::Resign,
        19001 | 19022 => Class::Fail(Reason::Auth),
        _ => Class::Fail(Reason::Client),
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
                Secret::new(format!("{}/{}", base.trim_end_matches('/'), token.expose()))
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
        let mut s = url_credentials(self.url.expose());
        s.push(self.url.expose().to_string());
        s.extend(self.secret.as_ref().map(|k| k.expose().to_string()));
        s
    }

    /// The code of an answer: `code`, or the legacy `StatusCode`.
    fn code(reply: &VendorReply) -> i64 {
        reply
            .int("code")
            .or_else(|| reply.int("StatusCode"))
            .unwrap_or(0)
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
        for round in 0..2 {
            // Built per round: a re-sign needs a fresh timestamp.
            let req = self
                .http
                .post(self.url.expose())
                .timeout(out.timeout)
                .json(&self.body(out));
            let reply = vendor_call(req).await.map_err(|e| e.scrubbed(&secrets))?;
            let code = Feishu::code(&reply);
            let msg = reply
                .body
                .get("msg")
                .or_else(|| reply.body.get("StatusMessage"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let detail = || format!("code {code}: {msg}");
            let failure = match classify(code, msg) {
                Class::Sent => return Ok(Receipt::default()),
                Class::Resign if round == 0 => continue,
                Class::Resign => DeliveryError::permanent(Reason::Auth, detail()),
                Class::Throttle(wait) => DeliveryError::Throttled {
                    detail: detail(),
                    // A 429 says when the window resets.
                    wait: reply
                        .headers
                        .get("x-ogw-ratelimit-reset")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse().ok())
                        .map(Duration::from_secs)
                        .or_else(|| retry_after(&reply.headers))
                        .unwrap_or(wait),
                },
                Class::Fail(reason) => DeliveryError::permanent(reason, detail()),
            };
            return Err(failure.scrubbed(&secrets));
        }
        unreachable!("the second round always returns")
    }

    fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError> {
        let mut body = self.body(out);
        if body.get("sign").is_some() {
            body["sign"] = json!("***");
        }
        Ok(Preview::post(self.url.expose(), body))
    }

    fn describe(&self) -> Value {
        json!({"type": "feishu-robot", "url": redact_url(self.url.expose()), "signed": self.secret.is_some()})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_table() {
        let rows = [
            (0, "success", Class::Sent),
            (
                9499,
                "too many request",
                Class::Throttle(Duration::from_secs(1)),
            ),
            (9499, "Bad Request", Class::Fail(Reason::Client)),
            (
                11232,
                "frequency limited",
                Class::Throttle(Duration::from_secs(60)),
            ),
            (
                99991400,
                "request trigger frequency limit",
                Class::Throttle(Duration::from_secs(1)),
            ),
            (
                19021,
                "sign match fail or timestamp is not within one hour from current time",
                Class::Resign,
            ),
            (
                19001,
                "param invalid: incoming webhook access token invalid",
                Class::Fail(Reason::Auth),
            ),
            (19022, "Ip Not Allowed", Class::Fail(Reason::Auth)),
            (19024, "Key Words Not Found", Class::Fail(Reason::Client)),
        ];
        for (code, msg, class) in rows {
            assert_eq!(classify(code, msg), class, "code {code} {msg}");
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
