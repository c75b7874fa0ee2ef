//! The bot's hook request: text with `<at>` tags, or markdown as a rich-text `post`.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Value, json};

use crate::message::{Message, MsgType, Recipients, markdown_to_text, truncate_utf8};

/// The body may not exceed 20 KB; leave room for the JSON around the content.
pub const CONTENT_BYTES: usize = 18_000;

/// The body for one message, unsigned.
pub fn body(m: &Message, to: &Recipients) -> Value {
    match m.msgtype {
        MsgType::Markdown => post(m, to),
        MsgType::Text => text(m, to),
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

pub fn text(m: &Message, to: &Recipients) -> Value {
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
pub fn post(m: &Message, to: &Recipients) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

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
