//! `wecom-robot`: a WeCom group robot (webhook key), text with `mentioned_list` /
//! `mentioned_mobile_list`, markdown with `<@userid>` mentions (PROTOCOLS.md §2).

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ratelimit::Limit;
use super::reply::{ReplyTable, VendorReply, Verdict, call, judge};
use super::{Channel, ChannelKind, DeliveryError, Limits, Outgoing, Preview, Reason, Receipt};
use crate::catalog::{DocCtx, DocError};
use crate::message::{MsgType, markdown_to_text, truncate_utf8};
use crate::secret::{Secret, SecretRef, SecretUrl, URL_VALUE};

const TEXT_BYTES: usize = 2048;
const MARKDOWN_BYTES: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WecomRobotSpec {
    /// The robot's webhook key.
    key: Option<SecretRef>,
    /// Or its whole webhook URL (`…/webhook/send?key=…`).
    url: Option<SecretRef>,
    /// Default `https://qyapi.weixin.qq.com/cgi-bin/webhook/send` (with `key`).
    base_url: Option<String>,
}

/// A configured WeCom group robot.
#[derive(Debug)]
pub struct WecomRobot {
    /// The full send URL, key included.
    url: SecretUrl,
    key: Option<Secret>,
    http: reqwest::Client,
}

/// The errcode table of a WeCom robot (PROTOCOLS.md §2).
struct Send;

impl ReplyTable for Send {
    const CODE: &'static [&'static str] = &["errcode"];
    const MESSAGE: &'static [&'static str] = &["errmsg"];

    fn classify(&self, errcode: i64, _: &VendorReply) -> Verdict {
        if let Some(v) = super::wecom_app::common_code(errcode) {
            return v;
        }
        match errcode {
            93000 => Verdict::Fail(Reason::Auth),
            _ => Verdict::Fail(Reason::Client),
        }
    }
}

impl WecomRobot {
    pub fn build(spec: &Value, ctx: &mut DocCtx<'_>) -> Result<WecomRobot, Vec<DocError>> {
        let spec: WecomRobotSpec = serde_json::from_value(spec.clone())
            .map_err(|e| vec![DocError::new("/spec", e.to_string())])?;
        match (&spec.key, &spec.url) {
            (Some(k), None) => {
                let key = ctx.secret(k, "/spec/key").map_err(|e| vec![e])?;
                let base = spec.base_url.clone().unwrap_or_else(|| {
                    format!("{}/cgi-bin/webhook/send", ctx.settings.vendors.wecom)
                });
                let url = format!(
                    "{base}?key={}",
                    percent_encoding::utf8_percent_encode(key.expose(), URL_VALUE)
                );
                Ok(WecomRobot {
                    url: SecretUrl::new(Secret::new(url), false),
                    key: Some(key),
                    http: ctx.http.clone(),
                })
            }
            (None, Some(u)) => Ok(WecomRobot {
                url: ctx.url(u, "/spec/url").map_err(|e| vec![e])?,
                key: None,
                http: ctx.http.clone(),
            }),
            _ => Err(vec![DocError::new("/spec", "give either key or url")]),
        }
    }

    fn body(out: &Outgoing<'_>) -> Value {
        let m = out.message;
        let to = out.to;
        let mut users: Vec<String> = to.users.clone();
        if to.all {
            users.push("@all".into());
        }
        // Markdown mentions users inline (`<@id>`) but cannot mention mobiles: with mobiles to
        // mention, the message goes as text so that every mention works.
        if m.msgtype == MsgType::Markdown && to.mobiles.is_empty() && !to.all {
            let mut content = m.content.clone();
            if let Some(url) = m.url.as_deref().filter(|u| !content.contains(*u)) {
                content.push_str(&format!("\n[{url}]({url})"));
            }
            let mentions: String = to.users.iter().map(|u| format!("<@{u}>")).collect();
            let room = MARKDOWN_BYTES.saturating_sub(mentions.len() + 1);
            truncate_utf8(&mut content, room);
            if !mentions.is_empty() {
                content.push('\n');
                content.push_str(&mentions);
            }
            return json!({"msgtype": "markdown", "markdown": {"content": content}});
        }
        let mut content = match m.msgtype {
            MsgType::Markdown => markdown_to_text(&m.content),
            MsgType::Text => m.content.clone(),
        };
        if let Some(url) = m.url.as_deref().filter(|u| !content.contains(*u)) {
            content.push('\n');
            content.push_str(url);
        }
        truncate_utf8(&mut content, TEXT_BYTES);
        let mut text = json!({ "content": content });
        if !users.is_empty() {
            text["mentioned_list"] = json!(users);
        }
        if !to.mobiles.is_empty() {
            text["mentioned_mobile_list"] = json!(to.mobiles);
        }
        json!({"msgtype": "text", "text": text})
    }

    fn secrets(&self) -> Vec<String> {
        let mut s = self.url.credentials().to_vec();
        s.extend(self.key.as_ref().map(|k| k.expose().to_string()));
        s
    }
}

#[async_trait]
impl Channel for WecomRobot {
    fn kind(&self) -> ChannelKind {
        ChannelKind::WecomRobot
    }

    fn limits(&self) -> Limits {
        Limits {
            text_bytes: Some(TEXT_BYTES),
            markdown_bytes: Some(MARKDOWN_BYTES),
            ..Limits::default()
        }
    }

    fn default_limits(&self) -> Vec<Limit> {
        vec![Limit::per_minute(20)]
    }

    async fn send(&self, out: &Outgoing<'_>) -> Result<Receipt, DeliveryError> {
        let req = self
            .http
            .post(self.url.expose())
            .timeout(out.timeout)
            .json(&WecomRobot::body(out));
        let owned = self.secrets();
        let secrets: Vec<&str> = owned.iter().map(String::as_str).collect();
        let reply = call(req).await.map_err(|e| e.scrubbed(&secrets))?;
        judge(&Send, &reply).map_err(|e| e.scrubbed(&secrets))?;
        Ok(Receipt::default())
    }

    fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError> {
        Ok(Preview::post(self.url.shown(), WecomRobot::body(out)))
    }

    fn describe(&self) -> Value {
        json!({"type": "wecom-robot", "url": self.url.shown()})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::reply::table_test::{first_round, shared_rows};
    use crate::ids::DeliveryId;
    use crate::message::{Message, Recipients};
    use std::time::Duration;

    #[test]
    fn reply_table() {
        shared_rows(&Send, r#"{"errcode":0,"errmsg":"ok"}"#);
        for (body, want) in [
            (r#"{"errcode":-1}"#, Verdict::Retry(Reason::Server)),
            (
                r#"{"errcode":45009}"#,
                Verdict::Throttle(Some(Duration::from_secs(60))),
            ),
            (
                r#"{"errcode":45033}"#,
                Verdict::Throttle(Some(Duration::from_secs(60))),
            ),
            (
                r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (r#"{"errcode":40058}"#, Verdict::Fail(Reason::Client)),
            (r#"{"errcode":40008}"#, Verdict::Fail(Reason::Client)),
        ] {
            assert_eq!(first_round(&Send, 200, &[], body), want, "{body}");
        }
    }

    fn body(msgtype: MsgType, to: Recipients) -> Value {
        let m = Message {
            msgtype,
            content: "**构建失败** demo".into(),
            title: None,
            url: Some("https://z.example/t/47".into()),
        };
        let id = DeliveryId::default();
        WecomRobot::body(&Outgoing {
            id: &id,
            message: &m,
            to: &to,
            event: None,
            timeout: Duration::from_secs(1),
        })
    }

    #[test]
    fn mentions_by_message_type() {
        let users = Recipients {
            users: vec!["zhangsan".into()],
            ..Recipients::default()
        };
        let md = body(MsgType::Markdown, users.clone());
        assert_eq!(md["msgtype"], "markdown");
        let content = md["markdown"]["content"].as_str().unwrap();
        assert!(content.ends_with("\n<@zhangsan>"), "{content}");
        assert!(content.contains("[https://z.example/t/47](https://z.example/t/47)"));
        let text = body(MsgType::Text, users);
        assert_eq!(text["text"]["mentioned_list"], json!(["zhangsan"]));
        assert!(text["text"].get("mentioned_mobile_list").is_none());
        let mobiles = Recipients {
            mobiles: vec!["13800000000".into()],
            all: true,
            ..Recipients::default()
        };
        let degraded = body(MsgType::Markdown, mobiles);
        assert_eq!(degraded["msgtype"], "text");
        assert_eq!(
            degraded["text"]["content"],
            "构建失败 demo\nhttps://z.example/t/47"
        );
        assert_eq!(
            degraded["text"]["mentioned_mobile_list"],
            json!(["13800000000"])
        );
        assert_eq!(degraded["text"]["mentioned_list"], json!(["@all"]));
    }
}
