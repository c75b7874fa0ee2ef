//! The app bot's `im/v1/messages` body: text, rich text (`post`, as the custom bot writes it), or
//! an interactive card sent with `update_multi` (so it can be updated for everyone who sees it);
//! `content` is a JSON string, `uuid` the delivery id (Feishu drops a repeat within an hour).

use serde_json::{Value, json};

use crate::channel::feishu::wire::post;
use crate::message::{Message, MsgType, Recipients, in_english, truncate_utf8, without_chat_tags};

/// A card may not exceed 30 KB, a text message 150 KB: room left for the JSON around it.
pub const CONTENT_BYTES: usize = 28_000;

/// The message as a card headed `card_title`, else as text or rich text.
pub fn body(m: &Message, receive_id: &str, uuid: &str, card_title: Option<&str>) -> Value {
    let (msg_type, content) = match card_title {
        Some(title) => ("interactive", self::card(m, title)),
        None => match m.msgtype {
            // The custom bot's rich text, without its `post` wrapper.
            MsgType::Markdown => (
                "post",
                post(m, &Recipients::default())["content"]["post"].take(),
            ),
            MsgType::Text => ("text", json!({"text": text(m)})),
        },
    };
    json!({
        "receive_id": receive_id,
        "msg_type": msg_type,
        "content": content.to_string(),
        "uuid": uuid,
    })
}

/// The card header of a message: its title, else its first line (a thread's message is a card
/// whether or not its template gave a title: only a card can be updated).
pub fn title_of(m: &Message) -> String {
    let mut title = m.headline().0;
    truncate_utf8(&mut title, TITLE_BYTES);
    title
}

/// Room for a card header (Feishu shows about one line of it).
const TITLE_BYTES: usize = 200;

fn text(m: &Message) -> String {
    let mut content = m.content.clone();
    if let Some(url) = m.url.as_deref().filter(|u| !content.contains(*u)) {
        content.push('\n');
        content.push_str(url);
    }
    truncate_utf8(&mut content, CONTENT_BYTES);
    content
}

/// A JSON 1.0 card: the title as its header, the content as `lark_md`, the URL as a button.
pub fn card(m: &Message, title: &str) -> Value {
    let mut content = match m.msgtype {
        MsgType::Markdown => without_chat_tags(&m.content),
        MsgType::Text => m.content.clone(),
    };
    truncate_utf8(&mut content, CONTENT_BYTES);
    let mut elements = vec![json!({"tag": "div", "text": {"tag": "lark_md", "content": content}})];
    if let Some(url) = &m.url {
        let label = if in_english() { "Open" } else { "查看详情" };
        elements.push(json!({"tag": "action", "actions": [{"tag": "button",
            "text": {"tag": "plain_text", "content": label}, "url": url, "type": "primary"}]}));
    }
    json!({
        "config": {"wide_screen_mode": true, "update_multi": true},
        "header": {"title": {"tag": "plain_text", "content": title}, "template": "blue"},
        "elements": elements,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(msgtype: MsgType, title: Option<&str>) -> Message {
        Message {
            msgtype,
            content: "**构建 7** 失败 <font color=\"warning\">red</font>".into(),
            title: title.map(str::to_string),
            url: Some("https://ci.example/7".into()),
        }
    }

    #[test]
    fn a_titled_message_is_a_card_that_can_be_updated_and_content_is_a_json_string() {
        let b = body(
            &msg(MsgType::Markdown, Some("构建 7")),
            "ou_1",
            "dlv_1",
            Some("构建 7"),
        );
        assert_eq!(b["msg_type"], "interactive");
        assert_eq!(
            (b["receive_id"].as_str(), b["uuid"].as_str()),
            (Some("ou_1"), Some("dlv_1"))
        );
        let card: Value = serde_json::from_str(b["content"].as_str().unwrap()).unwrap();
        assert_eq!(card["config"]["update_multi"], true);
        assert_eq!(card["header"]["title"]["content"], "构建 7");
        assert_eq!(
            card["elements"][0]["text"]["content"],
            "**构建 7** 失败 red"
        );
        assert_eq!(
            card["elements"][1]["actions"][0]["url"],
            "https://ci.example/7"
        );
    }

    #[test]
    fn without_a_title_or_cards_it_is_text_or_rich_text() {
        let t = body(&msg(MsgType::Text, None), "ou_1", "d", None);
        assert_eq!(t["msg_type"], "text");
        let text: Value = serde_json::from_str(t["content"].as_str().unwrap()).unwrap();
        assert!(
            text["text"]
                .as_str()
                .unwrap()
                .ends_with("\nhttps://ci.example/7")
        );
        let p = body(&msg(MsgType::Markdown, Some("x")), "ou_1", "d", None);
        assert_eq!(p["msg_type"], "post");
        let post: Value = serde_json::from_str(p["content"].as_str().unwrap()).unwrap();
        assert!(post["zh_cn"]["content"].is_array(), "{post}");
    }

    #[test]
    fn a_card_without_a_title_is_headed_by_its_first_line() {
        let mut m = msg(MsgType::Markdown, None);
        m.content = "\n**部署 prod** 进行中\n第二行".into();
        assert_eq!(title_of(&m), "部署 prod 进行中");
        assert_eq!(title_of(&msg(MsgType::Text, Some("构建 7"))), "构建 7");
    }
}
