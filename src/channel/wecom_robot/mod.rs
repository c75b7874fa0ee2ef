//! `wecom-robot`: a WeCom group robot (webhook key), text with `mentioned_list` /
//! `mentioned_mobile_list`, markdown with `<@userid>` mentions (PROTOCOLS.md §2).

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::vendor_call;
use super::ratelimit::Limit;
use super::{Channel, ChannelKind, DeliveryError, Limits, Outgoing, Preview, Reason, Receipt};
use crate::catalog::{DocCtx, DocError};
use crate::message::{MsgType, markdown_to_text, truncate_utf8};
use crate::secret::{Secret, SecretRef, URL_VALUE, redact_url, url_credentials};

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
    url: Secret,
    key: Option<Secret>,
    http: reqwest::Client,
}

/// What an errcode means (PROTOCOLS.md §2).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Sent,
    Retry,
    Throttle,
    Fail(Reason),
}

fn classify(errcode: i64) -> Class {
    match errcode {
        0 => Class::Sent,
        -1 => Class::Retry,
        45009 | 45033 => Class::Throttle,
        93000 => Class::Fail(Reason::Auth),
        _ => Class::Fail(Reason::Client),
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
                    url: Secret::new(url),
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
        let mut s = url_credentials(self.url.expose());
        s.push(self.url.expose().to_string());
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
        let reply = vendor_call(req).await.map_err(|e| e.scrubbed(&secrets))?;
        let code = reply.int("errcode").unwrap_or(0);
        let detail = || format!("errcode {code}: {}", reply.text("errmsg"));
        let result = match classify(code) {
            Class::Sent => return Ok(Receipt::default()),
            Class::Retry => DeliveryError::retryable(Reason::Server, detail()),
            Class::Throttle => DeliveryError::Throttled {
                detail: detail(),
                wait: std::time::Duration::from_secs(60),
            },
            Class::Fail(reason) => DeliveryError::permanent(reason, detail()),
        };
        Err(result.scrubbed(&secrets))
    }

    fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError> {
        Ok(Preview::post(self.url.expose(), WecomRobot::body(out)))
    }

    fn describe(&self) -> Value {
        json!({"type": "wecom-robot", "url": redact_url(self.url.expose())})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DeliveryId;
    use crate::message::{Message, Recipients};
    use std::time::Duration;

    #[test]
    fn errcode_table() {
        let rows = [
            (0, Class::Sent),
            (-1, Class::Retry),
            (45009, Class::Throttle),
            (45033, Class::Throttle),
            (93000, Class::Fail(Reason::Auth)),
            (40058, Class::Fail(Reason::Client)),
            (40008, Class::Fail(Reason::Client)),
        ];
        for (code, class) in rows {
            assert_eq!(classify(code), class, "errcode {code}");
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
