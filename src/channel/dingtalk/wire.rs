//! The robot's `robot/send` request: text / markdown / actionCard, with `at` mentions echoed
//! into the text (DingTalk renders a mention only then) and the keyword guaranteed.

use serde_json::{Value, json};

use super::Dingtalk;
use crate::channel::Outgoing;
use crate::message::{MsgType, markdown_to_text, truncate_utf8};

/// DingTalk refuses ~20,000 bytes; stay below, as notification-manager does.
pub const CONTENT_BYTES: usize = 19_960;

impl Dingtalk {
    /// The request body for one delivery.
    pub fn body(&self, out: &Outgoing<'_>) -> Value {
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
