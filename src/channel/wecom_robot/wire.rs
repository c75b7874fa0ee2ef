//! The robot's `webhook/send` request: text with `mentioned_list` / `mentioned_mobile_list`,
//! or markdown with `<@userid>` mentions.

use serde_json::{Value, json};

use crate::channel::Outgoing;
use crate::message::{MsgType, markdown_to_text, truncate_utf8};

pub const TEXT_BYTES: usize = 2048;
pub const MARKDOWN_BYTES: usize = 4096;

/// The request body for one delivery.
pub fn body(out: &Outgoing<'_>) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DeliveryId;
    use crate::message::{Message, Recipients};
    use std::time::Duration;

    fn body(msgtype: MsgType, to: Recipients) -> Value {
        let m = Message {
            msgtype,
            content: "**构建失败** demo".into(),
            title: None,
            url: Some("https://z.example/t/47".into()),
        };
        let id = DeliveryId::default();
        super::body(&Outgoing {
            id: &id,
            message: &m,
            to: &to,
            event: None,
            timeout: Duration::from_secs(1),
            shared: None,
            threaded: false,
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
