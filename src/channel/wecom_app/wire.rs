//! `message/send`: the request for one delivery (text, markdown or textcard, to users,
//! departments and tags) and the receipt read from its reply (`msgid`, refused recipients).

use serde_json::{Map, Value, json};

use super::WecomApp;
use crate::channel::reply::VendorReply;
use crate::channel::{Outgoing, Receipt};
use crate::message::{Message, MsgType, markdown_to_text, split_ids, truncate_utf8};

/// Content limit of text and markdown messages (WeCom cuts text, and refuses long markdown).
pub const CONTENT_BYTES: usize = 2048;

impl WecomApp {
    /// The `message/send` body for one delivery.
    pub fn body(&self, out: &Outgoing<'_>) -> Value {
        let to = out.to;
        let mut b = Map::new();
        if to.all {
            b.insert("touser".into(), json!("@all"));
        } else {
            if !to.users.is_empty() {
                b.insert("touser".into(), json!(to.users.join("|")));
            }
            if !to.parties.is_empty() {
                b.insert("toparty".into(), json!(to.parties.join("|")));
            }
            if !to.tags.is_empty() {
                b.insert("totag".into(), json!(to.tags.join("|")));
            }
        }
        b.insert("agentid".into(), self.agent_id.clone());
        let (msgtype, payload) = self.payload(out.message);
        b.insert("msgtype".into(), json!(msgtype));
        b.insert(msgtype.into(), payload);
        b.insert("safe".into(), json!(u8::from(self.safe)));
        if let Some(interval) = self.duplicate_check {
            b.insert("enable_duplicate_check".into(), json!(1));
            b.insert("duplicate_check_interval".into(), json!(interval));
        }
        Value::Object(b)
    }

    fn payload(&self, m: &Message) -> (&'static str, Value) {
        if let (true, Some(title), Some(url)) = (self.textcard, &m.title, &m.url) {
            let mut title = title.clone();
            truncate_utf8(&mut title, 128);
            let mut description = markdown_to_text(&m.content);
            truncate_utf8(&mut description, 512);
            return (
                "textcard",
                json!({"title": title, "description": description, "url": url, "btntxt": "详情"}),
            );
        }
        if m.msgtype == MsgType::Markdown && self.markdown {
            let mut content = m.content.clone();
            if let Some(url) = m.url.as_deref().filter(|u| !content.contains(u)) {
                content.push_str(&format!("\n[{url}]({url})"));
            }
            truncate_utf8(&mut content, CONTENT_BYTES);
            return ("markdown", json!({ "content": content }));
        }
        let mut content = match m.msgtype {
            MsgType::Markdown => markdown_to_text(&m.content),
            MsgType::Text => m.content.clone(),
        };
        if let Some(title) = m.title.as_deref().filter(|t| !content.contains(*t)) {
            content = format!("{title}\n{content}");
        }
        if let Some(url) = m.url.as_deref().filter(|u| !content.contains(*u)) {
            content.push('\n');
            content.push_str(url);
        }
        truncate_utf8(&mut content, CONTENT_BYTES);
        ("text", json!({ "content": content }))
    }

    /// The receipt of a successful send: `msgid`, and the recipients WeCom refused.
    pub fn receipt(reply: &VendorReply) -> Receipt {
        let mut detail = Map::new();
        let mut rejected = 0;
        if let Some(id) = reply.body.get("msgid") {
            detail.insert("msgid".into(), id.clone());
        }
        for field in [
            "invaliduser",
            "invalidparty",
            "invalidtag",
            "unlicenseduser",
        ] {
            let ids = split_ids(reply.text(field));
            if !ids.is_empty() {
                rejected += ids.len() as u32;
                detail.insert(field.into(), json!(ids.join("|")));
            }
        }
        Receipt {
            detail: Some(Value::Object(detail)),
            rejected,
        }
    }
}
