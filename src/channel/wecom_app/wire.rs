//! `message/send`: the request for one delivery (text, markdown or textcard, to users,
//! departments and tags) and the receipt read from its reply (`msgid`, refused recipients).

use serde_json::{Map, Value, json};

use super::WecomApp;
use crate::channel::reply::VendorReply;
use crate::channel::{Outgoing, Receipt};
use crate::message::{
    Message, MsgType, cut_chars, in_english, markdown_to_text, split_ids, truncate_utf8,
};

/// Content limit of text and markdown messages (WeCom cuts text, and refuses long markdown).
pub const CONTENT_BYTES: usize = 2048;

/// A card's main title (WeCom shows 36 characters) and its text below (112).
const CARD_TITLE_CHARS: usize = 36;
const CARD_TEXT_CHARS: usize = 112;

/// A `button_interaction` card of `m`: the headline as its title, the rest as its text, a tap
/// on the card or its button opening the URL. `task_id` names the card for its updates.
pub fn card(m: &Message, task_id: &str) -> Value {
    let (title, text) = m.headline();
    let mut card = json!({
        "card_type": "button_interaction",
        "main_title": {"title": cut_chars(&title, CARD_TITLE_CHARS)},
        "task_id": task_id,
    });
    if !text.is_empty() {
        card["sub_title_text"] = json!(cut_chars(&text, CARD_TEXT_CHARS));
    }
    let english = in_english();
    card["button_list"] = match &m.url {
        Some(url) => {
            card["card_action"] = json!({"type": 1, "url": url});
            let label = if english { "Open" } else { "查看详情" };
            json!([{"text": label, "style": 1, "key": "open", "type": 1, "url": url}])
        }
        // A button the card must have; without a callback it only marks the card read.
        None => json!([{"text": if english { "OK" } else { "知道了" }, "style": 4, "key": "ack"}]),
    };
    card
}

impl WecomApp {
    /// The `message/send` body for one delivery.
    pub fn body(&self, out: &Outgoing<'_>) -> Value {
        let (msgtype, payload) = self.payload(out.message);
        self.envelope(out, msgtype, payload)
    }

    /// The `message/send` body of a thread's first message: a `button_interaction` template
    /// card, the only kind WeCom lets an application change later (its reply carries the
    /// `response_code` for that).
    pub fn card_body(&self, out: &Outgoing<'_>) -> Value {
        let card = card(out.message, &out.id.to_string());
        self.envelope(out, "template_card", card)
    }

    /// `payload` as a `message/send` body of `msgtype` to the delivery's recipients.
    fn envelope(&self, out: &Outgoing<'_>, msgtype: &str, payload: Value) -> Value {
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
        b.insert("msgtype".into(), json!(msgtype));
        b.insert(msgtype.into(), payload);
        b.insert("safe".into(), json!(u8::from(self.safe)));
        if let Some(interval) = self.duplicate_check {
            b.insert("enable_duplicate_check".into(), json!(1));
            b.insert("duplicate_check_interval".into(), json!(interval));
        }
        Value::Object(b)
    }

    /// The `message/update_template_card` body that changes the card of `task_id` (sent to
    /// `out.to`) into `out.message`'s.
    pub fn update_body(&self, out: &Outgoing<'_>, response_code: &str, task_id: &str) -> Value {
        let to = out.to;
        let mut b = Map::new();
        if to.all {
            b.insert("atall".into(), json!(1));
        } else {
            for (field, ids) in [
                ("userids", &to.users),
                ("partyids", &to.parties),
                ("tagids", &to.tags),
            ] {
                if !ids.is_empty() {
                    b.insert(field.into(), json!(ids));
                }
            }
        }
        b.insert("agentid".into(), self.agent_id.clone());
        b.insert("response_code".into(), json!(response_code));
        b.insert("template_card".into(), card(out.message, task_id));
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
            handle: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_fits_wecom_s_limits_and_always_has_a_button() {
        let m = Message {
            msgtype: MsgType::Markdown,
            content: format!("**{}**\n{}", "标".repeat(50), "字".repeat(200)),
            title: None,
            url: None,
        };
        let card = card(&m, "dlv_1");
        assert_eq!(card["card_type"], "button_interaction");
        assert_eq!(card["task_id"], "dlv_1");
        let title = card["main_title"]["title"].as_str().unwrap();
        assert_eq!(title.chars().count(), CARD_TITLE_CHARS);
        assert!(title.ends_with('…'));
        let text = card["sub_title_text"].as_str().unwrap();
        assert_eq!(text.chars().count(), CARD_TEXT_CHARS);
        // No URL: no card action, and a button that only marks it read.
        assert!(card["card_action"].is_null());
        assert_eq!(card["button_list"][0]["key"], "ack");
    }
}
