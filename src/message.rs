//! The normalized message (msgtype, content, title, url), its recipients, and cutting content
//! to a byte limit on a UTF-8 boundary.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How the content is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MsgType {
    #[default]
    Text,
    Markdown,
}

impl MsgType {
    pub fn as_str(self) -> &'static str {
        match self {
            MsgType::Text => "text",
            MsgType::Markdown => "markdown",
        }
    }
}

/// A rendered message, before any vendor shapes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub msgtype: MsgType,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Message {
    /// The message as plain text for a card: its headline (the title, else the first line) and
    /// the rest (without that first line when it became the headline).
    pub fn headline(&self) -> (String, String) {
        let text = match self.msgtype {
            MsgType::Markdown => markdown_to_text(&self.content),
            MsgType::Text => self.content.clone(),
        };
        let text = text.trim();
        let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
        match self
            .title
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            // Templates often repeat the title as the first line: shown once.
            Some(title) if first.trim() != title => (title.to_string(), text.to_string()),
            Some(title) => (title.to_string(), rest.trim().to_string()),
            None => (first.trim().to_string(), rest.trim().to_string()),
        }
    }
}

/// `text` cut to at most `max` characters, the last one an ellipsis when it was cut (for
/// vendors that count characters, not bytes).
pub fn cut_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((at, _)) if text[at..].chars().nth(1).is_some() => format!("{}…", &text[..at]),
        _ => text.to_string(),
    }
}

/// Who a delivery is for, in the ids its channel understands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Recipients {
    /// User ids (WeCom userid, DingTalk userId, Feishu open_id, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Mobile numbers (robot @mentions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mobiles: Vec<String>,
    /// Department ids (WeCom app `toparty`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parties: Vec<String>,
    /// Tag ids (WeCom app `totag`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Everyone (`@all`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// People known only by mail, for a channel that finds its own ids through the vendor's
    /// contact API when it sends (`mobiles` are looked up the same way by such a channel).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mails: Vec<String>,
}

impl Recipients {
    pub fn is_empty(&self) -> bool {
        !self.all
            && self.users.is_empty()
            && self.mobiles.is_empty()
            && self.parties.is_empty()
            && self.tags.is_empty()
            && self.mails.is_empty()
    }

    /// Adds `other`'s recipients, keeping the first occurrence of each id.
    pub fn merge(&mut self, other: &Recipients) {
        fn add(into: &mut Vec<String>, from: &[String]) {
            for v in from {
                if !into.contains(v) {
                    into.push(v.clone());
                }
            }
        }
        add(&mut self.users, &other.users);
        add(&mut self.mobiles, &other.mobiles);
        add(&mut self.parties, &other.parties);
        add(&mut self.tags, &other.tags);
        add(&mut self.mails, &other.mails);
        self.all |= other.all;
    }
}

/// A body that already was a message when it arrived (a CNB user notification).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyMessage {
    pub message: Message,
    pub to: Recipients,
}

impl ReadyMessage {
    /// Recognizes `{touser: "U1|U2", msgtype: "text"|"markdown", text: {content}}`.
    pub fn from_body(body: &Value) -> Option<ReadyMessage> {
        let obj = body.as_object()?;
        let touser = obj.get("touser")?.as_str()?;
        let msgtype = match obj.get("msgtype")?.as_str()? {
            "text" => MsgType::Text,
            "markdown" => MsgType::Markdown,
            _ => return None,
        };
        let content = obj
            .get(msgtype.as_str())
            .or_else(|| obj.get("text"))?
            .get("content")?
            .as_str()?;
        Some(ReadyMessage {
            message: Message {
                msgtype,
                content: content.to_string(),
                title: None,
                url: None,
            },
            to: Recipients {
                users: split_ids(touser),
                ..Recipients::default()
            },
        })
    }
}

/// Splits a `|`-joined id list, dropping blanks.
pub fn split_ids(list: &str) -> Vec<String> {
    list.split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Markdown made readable as plain text, for channels or message types that cannot show it:
/// emphasis and heading marks dropped, links as `text (url)`, quotes unwrapped, and the chat
/// vendors' tags as [`without_chat_tags`] leaves them.
pub fn markdown_to_text(md: &str) -> String {
    static RULES: LazyLock<[(Regex, &str); 5]> = LazyLock::new(|| {
        let r = |p: &str| Regex::new(p).expect("static regex");
        [
            (r(r"\[([^\]]+)\]\(([^)\s]+)\)"), "$1 ($2)"),
            (r(r"(?m)^#{1,6}\s+"), ""),
            (r(r"(?m)^>\s?"), ""),
            (r(r"\*\*([^*]+)\*\*|__([^_]+)__"), "$1$2"),
            (r(r"`([^`]+)`"), "$1"),
        ]
    });
    rewrite(without_chat_tags(md), &*RULES)
}

/// Markdown without what only chat vendors read: WeCom's colour tags unwrapped, `<@userid>`
/// mentions as `@userid` (for readers that render standard markdown, like email).
pub fn without_chat_tags(md: &str) -> String {
    static RULES: LazyLock<[(Regex, &str); 2]> = LazyLock::new(|| {
        let r = |p: &str| Regex::new(p).expect("static regex");
        [(r(r#"</?font[^>]*>"#), ""), (r(r"<@([^>]+)>"), "@$1")]
    });
    rewrite(md.to_string(), &*RULES)
}

/// `text` with each rule's matches replaced, in order.
fn rewrite(mut text: String, rules: &[(Regex, &str)]) -> String {
    for (re, with) in rules {
        text = re.replace_all(&text, *with).into_owned();
    }
    text
}

/// Appended where content was cut, so the reader knows: in the language messages are written
/// in (`vars.lang`).
pub const CUT_MARKER_ZH: &str = "\n…（内容过长，已截断）";
pub const CUT_MARKER_EN: &str = "\n…(truncated)";

/// Whether messages are written in English (`vars.lang = en`); Chinese otherwise.
static ENGLISH: AtomicBool = AtomicBool::new(false);

/// Sets the language of the cut marker from the relay's `vars` (its `lang`). Cutting happens
/// deep in every channel; the language is one per relay, so it is set once where settings are
/// loaded rather than passed through each of them.
pub fn set_language(vars: &std::collections::BTreeMap<String, String>) {
    let english = vars
        .get("lang")
        .is_some_and(|l| l.eq_ignore_ascii_case("en"));
    ENGLISH.store(english, Ordering::Relaxed);
}

/// Whether messages are written in English (else Chinese): for the few words a channel adds
/// itself (a cut marker, a button's label).
pub fn in_english() -> bool {
    ENGLISH.load(Ordering::Relaxed)
}

/// The marker cut content ends with.
pub fn cut_marker() -> &'static str {
    if in_english() {
        CUT_MARKER_EN
    } else {
        CUT_MARKER_ZH
    }
}

/// Cuts `text` to at most `max_bytes` bytes on a UTF-8 boundary, ending with [`cut_marker`]
/// when anything was removed. Returns whether it cut.
pub fn truncate_utf8(text: &mut String, max_bytes: usize) -> bool {
    if text.len() <= max_bytes {
        return false;
    }
    let marker = cut_marker();
    let marker = if max_bytes >= marker.len() * 2 {
        marker
    } else {
        ""
    };
    let mut end = max_bytes - marker.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(marker);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_headline_is_the_title_or_first_line_shown_once() {
        let m = |title: Option<&str>, content: &str| Message {
            msgtype: MsgType::Markdown,
            content: content.into(),
            title: title.map(str::to_string),
            url: None,
        };
        let repeated = m(Some("构建 7 失败"), "**构建 7 失败**\n> 项目：web");
        assert_eq!(
            repeated.headline(),
            ("构建 7 失败".into(), "项目：web".into())
        );
        let other = m(Some("Build 7"), "failed at test");
        assert_eq!(
            other.headline(),
            ("Build 7".into(), "failed at test".into())
        );
        assert_eq!(
            m(None, "## Deploy\nok").headline(),
            ("Deploy".into(), "ok".into())
        );
    }

    #[test]
    fn cuts_count_characters_and_end_with_an_ellipsis() {
        assert_eq!(cut_chars("制品晋级待审批", 7), "制品晋级待审批");
        assert_eq!(cut_chars("制品晋级待审批", 4), "制品晋…");
        assert_eq!(cut_chars("abc", 3), "abc");
        assert_eq!(cut_chars("abcd", 3), "ab…");
    }

    #[test]
    fn recognizes_cnb_user_notify() {
        let body =
            json!({"touser":"U1|U2| ","msgtype":"text","text":{"content":"有新的 PR 待处理"}});
        let r = ReadyMessage::from_body(&body).unwrap();
        assert_eq!(r.to.users, vec!["U1", "U2"]);
        assert_eq!(r.message.content, "有新的 PR 待处理");
        assert!(ReadyMessage::from_body(&json!({"touser":"U1","msgtype":"image"})).is_none());
        assert!(ReadyMessage::from_body(&json!({"object_kind":"push"})).is_none());
    }

    #[test]
    fn truncates_on_char_boundary_with_marker() {
        let mut s = "审批".repeat(100); // 600 bytes
        assert!(truncate_utf8(&mut s, 100));
        assert!(s.len() <= 100);
        assert!(s.ends_with(cut_marker()), "{s}");
        set_language(&Default::default());
        assert_eq!(cut_marker(), CUT_MARKER_ZH, "Chinese unless lang = en");
        let mut short = "ok".to_string();
        assert!(!truncate_utf8(&mut short, 100));
        assert_eq!(short, "ok");
        let mut tiny = "abcdefgh".to_string();
        assert!(truncate_utf8(&mut tiny, 3));
        assert_eq!(tiny, "abc");
    }

    #[test]
    fn markdown_degrades_to_readable_text() {
        let md = "## 构建失败\n> 项目：**demo**\n[查看](https://z.example/x) `main` <font color=\"warning\">red</font> <@zhangsan>";
        assert_eq!(
            markdown_to_text(md),
            "构建失败\n项目：demo\n查看 (https://z.example/x) main red @zhangsan"
        );
    }

    #[test]
    fn merge_keeps_first_occurrence() {
        let mut a = Recipients {
            users: vec!["x".into()],
            ..Default::default()
        };
        a.merge(&Recipients {
            users: vec!["x".into(), "y".into()],
            all: true,
            ..Default::default()
        });
        assert_eq!(a.users, vec!["x", "y"]);
        assert!(a.all);
    }
}
