//! `dingtalk-robot`: a DingTalk custom robot — optional `SEC…` signing, text / markdown /
//! actionCard, `at` mentions echoed into the text, keyword guarantee (PROTOCOLS.md §3).

mod signing;

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ratelimit::Limit;
use super::reply::{ReplyTable, Rounds, Spent, VendorReply, Verdict, call};
use super::{Channel, ChannelKind, DeliveryError, Limits, Outgoing, Preview, Reason, Receipt};
use crate::catalog::{DocCtx, DocError};
use crate::ids::now_ms;
use crate::message::{MsgType, markdown_to_text, truncate_utf8};
use crate::secret::{Secret, SecretRef, SecretUrl};

/// DingTalk refuses ~20,000 bytes; stay below, as notification-manager does.
const CONTENT_BYTES: usize = 19_960;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DingtalkSpec {
    access_token: Option<SecretRef>,
    /// Or the whole webhook URL (`…/robot/send?access_token=…`).
    url: Option<SecretRef>,
    base_url: Option<String>,
    /// The robot's signing secret (`SEC…`), when its security setting is 加签.
    secret: Option<SecretRef>,
    /// The robot's keyword, when its security setting is 自定义关键词: always present in the text.
    keyword: Option<String>,
    /// Messages with a URL go as an actionCard with a button.
    #[serde(default)]
    action_card: bool,
}

/// A configured DingTalk robot.
#[derive(Debug)]
pub struct Dingtalk {
    url: SecretUrl,
    secret: Option<Secret>,
    keyword: Option<String>,
    action_card: bool,
    http: reqwest::Client,
}

/// The answer table of a DingTalk robot (PROTOCOLS.md §3).
struct Send;

impl ReplyTable for Send {
    const CODE: &'static [&'static str] = &["errcode"];
    const MESSAGE: &'static [&'static str] = &["errmsg"];

    fn classify(&self, errcode: i64, reply: &VendorReply) -> Verdict {
        // The robot is being throttled: DingTalk holds it about 10 minutes.
        let throttled = Verdict::Throttle(Some(Duration::from_secs(600)));
        match errcode {
            0 if punished(reply) => throttled,
            0 => Verdict::Sent,
            130101 => throttled,
            -1 => Verdict::Retry(Reason::Server),
            // Clocks drift: the timestamp was refused, sign again once.
            310000 if reply.text("errmsg").contains("timestamp") => {
                Verdict::Again(Spent::Fail(Reason::Auth))
            }
            310000 | 300001 | 300005 => Verdict::Fail(Reason::Auth),
            _ => Verdict::Fail(Reason::Client),
        }
    }
}

/// Whether a throttled answer's `status` / `punish` / `wait` fields are set.
fn punished(reply: &VendorReply) -> bool {
    ["status", "punish", "wait"].iter().any(|f| {
        reply
            .body
            .get(*f)
            .is_some_and(|v| v.as_i64().is_some_and(|n| n != 0) || v.as_bool() == Some(true))
    })
}

impl Dingtalk {
    pub fn build(spec: &Value, ctx: &mut DocCtx<'_>) -> Result<Dingtalk, Vec<DocError>> {
        let spec: DingtalkSpec = serde_json::from_value(spec.clone())
            .map_err(|e| vec![DocError::new("/spec", e.to_string())])?;
        let url = match (&spec.access_token, &spec.url) {
            (Some(t), None) => {
                let token = ctx.secret(t, "/spec/accessToken").map_err(|e| vec![e])?;
                let base = spec
                    .base_url
                    .clone()
                    .unwrap_or_else(|| format!("{}/robot/send", ctx.settings.vendors.dingtalk));
                SecretUrl::new(
                    Secret::new(format!(
                        "{base}?access_token={}",
                        signing::encode(token.expose())
                    )),
                    false,
                )
            }
            (None, Some(u)) => ctx.url(u, "/spec/url").map_err(|e| vec![e])?,
            _ => {
                return Err(vec![DocError::new(
                    "/spec",
                    "give either accessToken or url",
                )]);
            }
        };
        let secret = match &spec.secret {
            Some(s) => Some(ctx.secret(s, "/spec/secret").map_err(|e| vec![e])?),
            None => None,
        };
        Ok(Dingtalk {
            url,
            secret,
            keyword: spec.keyword.filter(|k| !k.is_empty()),
            action_card: spec.action_card,
            http: ctx.http.clone(),
        })
    }

    fn body(&self, out: &Outgoing<'_>) -> Value {
        let m = out.message;
        let to = out.to;
        // A mention only renders when the text also carries `@<mobile>` / `@<userId>`.
        let mut mentions: String = to
            .mobiles
            .iter()
            .chain(&to.users)
            .map(|id| format!(" @{id}"))
            .collect();
        if let Some(k) = self.keyword.as_deref().filter(|k| !m.content.contains(*k)) {
            mentions.push_str(&format!("\n{k}"));
        }
        let room = CONTENT_BYTES.saturating_sub(mentions.len());
        let at = json!({"atMobiles": to.mobiles, "atUserIds": to.users, "isAtAll": to.all});
        let title = m
            .title
            .clone()
            .unwrap_or_else(|| first_line(&markdown_to_text(&m.content)));
        if let (true, Some(url)) = (self.action_card, &m.url) {
            let mut text = m.content.clone();
            truncate_utf8(&mut text, room);
            text.push_str(&mentions);
            return json!({
                "msgtype": "actionCard",
                "actionCard": {"title": title, "text": text, "singleTitle": "查看详情", "singleURL": url, "btnOrientation": "0"},
                "at": at,
            });
        }
        match m.msgtype {
            MsgType::Markdown => {
                let mut text = m.content.clone();
                if let Some(url) = m.url.as_deref().filter(|u| !text.contains(*u)) {
                    text.push_str(&format!("\n\n[{url}]({url})"));
                }
                truncate_utf8(&mut text, room);
                text.push_str(&mentions);
                json!({"msgtype": "markdown", "markdown": {"title": title, "text": text}, "at": at})
            }
            MsgType::Text => {
                let mut content = m.content.clone();
                if let Some(url) = m.url.as_deref().filter(|u| !content.contains(*u)) {
                    content.push('\n');
                    content.push_str(url);
                }
                truncate_utf8(&mut content, room);
                content.push_str(&mentions);
                json!({"msgtype": "text", "text": {"content": content}, "at": at})
            }
        }
    }

    /// The send URL, signed with a fresh timestamp when the robot has a secret.
    fn signed_url(&self) -> String {
        match &self.secret {
            Some(secret) => {
                let ts = now_ms();
                let sign = signing::sign(secret.expose(), ts);
                format!(
                    "{}&timestamp={ts}&sign={}",
                    self.url.expose(),
                    signing::encode(&sign)
                )
            }
            None => self.url.expose().to_string(),
        }
    }

    fn secrets(&self) -> Vec<String> {
        let mut s = self.url.credentials().to_vec();
        s.extend(self.secret.as_ref().map(|k| k.expose().to_string()));
        s
    }
}

fn first_line(text: &str) -> String {
    let mut line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    truncate_utf8(&mut line, 64);
    line
}

#[async_trait]
impl Channel for Dingtalk {
    fn kind(&self) -> ChannelKind {
        ChannelKind::DingtalkRobot
    }

    fn limits(&self) -> Limits {
        Limits {
            text_bytes: Some(CONTENT_BYTES),
            markdown_bytes: Some(CONTENT_BYTES),
            ..Limits::default()
        }
    }

    fn default_limits(&self) -> Vec<Limit> {
        vec![Limit::per_minute(20)]
    }

    async fn send(&self, out: &Outgoing<'_>) -> Result<Receipt, DeliveryError> {
        let body = self.body(out);
        let owned = self.secrets();
        let secrets: Vec<&str> = owned.iter().map(String::as_str).collect();
        // Signed per round: a second round needs a fresh timestamp.
        let mut rounds = Rounds::default();
        loop {
            let req = self
                .http
                .post(self.signed_url())
                .timeout(out.timeout)
                .json(&body);
            let reply = call(req).await.map_err(|e| e.scrubbed(&secrets))?;
            match rounds.judge(&Send, reply) {
                Ok(Some(_)) => return Ok(Receipt::default()),
                Ok(None) => continue,
                Err(e) => return Err(e.scrubbed(&secrets)),
            }
        }
    }

    fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError> {
        Ok(Preview::post(
            &self.url.show(&self.signed_url()),
            self.body(out),
        ))
    }

    fn describe(&self) -> Value {
        json!({
            "type": "dingtalk-robot",
            "url": self.url.shown(),
            "signed": self.secret.is_some(),
            "keyword": self.keyword,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::channel::reply::table_test::{first_round, shared_rows};

    #[test]
    fn reply_table() {
        shared_rows(&Send, r#"{"errcode":0,"errmsg":"ok"}"#);
        let throttled = Verdict::Throttle(Some(Duration::from_secs(600)));
        let rows = [
            (
                r#"{"errcode":0,"errmsg":"ok","status":1,"punish":"x"}"#,
                throttled,
            ),
            (r#"{"errcode":0,"errmsg":"ok","wait":true}"#, throttled),
            (r#"{"errcode":130101,"errmsg":"send too fast"}"#, throttled),
            (
                r#"{"errcode":-1,"errmsg":"busy"}"#,
                Verdict::Retry(Reason::Server),
            ),
            (
                r#"{"errcode":310000,"errmsg":"description:invalid timestamp;solution:…"}"#,
                Verdict::Again(Spent::Fail(Reason::Auth)),
            ),
            (
                r#"{"errcode":310000,"errmsg":"description:关键词不匹配;solution:…"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (
                r#"{"errcode":310000,"errmsg":"description:sign not match;solution:…"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (
                r#"{"errcode":300001,"errmsg":"token is not exist"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (
                r#"{"errcode":300005,"errmsg":"token is not exist"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (
                r#"{"errcode":460101,"errmsg":"message too long"}"#,
                Verdict::Fail(Reason::Client),
            ),
        ];
        for (body, want) in rows {
            assert_eq!(first_round(&Send, 200, &[], body), want, "{body}");
        }
    }
}
