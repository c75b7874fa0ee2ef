//! The mail a message becomes: the subject from its title, `multipart/alternative` with the
//! plain text first and HTML second (markdown rendered; raw HTML shown as text and links other
//! than http(s)/mailto emptied, so a payload cannot script or phish through it), and a
//! Message-ID made from the delivery id, so a retry is recognisably the same mail.

use lettre::message::{Mailbox, MultiPart};
use pulldown_cmark::{CowStr, Event, HeadingLevel, LinkType, Options, Parser, Tag, TagEnd};

use crate::message::{Message, MsgType, markdown_to_text, without_chat_tags};

/// Longest subject made from the text when the message has no title.
const SUBJECT_BYTES: usize = 150;

/// One message as mail: subject, plain text and HTML.
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub fn compose(msg: &Message) -> Mail {
    let mut text = match msg.msgtype {
        MsgType::Text => msg.content.clone(),
        MsgType::Markdown => markdown_to_text(&msg.content),
    };
    let mut body = String::new();
    if let Some(title) = msg.title.as_deref().filter(|t| !t.trim().is_empty()) {
        let level = HeadingLevel::H2;
        pulldown_cmark::html::push_html(
            &mut body,
            [
                Event::Start(Tag::Heading {
                    level,
                    id: None,
                    classes: Vec::new(),
                    attrs: Vec::new(),
                }),
                Event::Text(title.into()),
                Event::End(TagEnd::Heading(level)),
            ]
            .into_iter(),
        );
    }
    match msg.msgtype {
        MsgType::Markdown => {
            let md = without_chat_tags(&msg.content);
            let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
            pulldown_cmark::html::push_html(&mut body, Parser::new_ext(&md, options).map(harmless));
        }
        MsgType::Text => {
            let mut events = vec![Event::Start(Tag::Paragraph)];
            for (i, line) in msg.content.lines().enumerate() {
                if i > 0 {
                    events.push(Event::HardBreak);
                }
                events.push(Event::Text(line.into()));
            }
            events.push(Event::End(TagEnd::Paragraph));
            pulldown_cmark::html::push_html(&mut body, events.into_iter());
        }
    }
    if let Some(url) = msg.url.as_deref().filter(|u| safe_url(u)) {
        if !text.contains(url) {
            text = format!("{}\n\n{url}", text.trim_end());
        }
        let link = Tag::Link {
            link_type: LinkType::Inline,
            dest_url: url.into(),
            title: CowStr::Borrowed(""),
            id: CowStr::Borrowed(""),
        };
        pulldown_cmark::html::push_html(
            &mut body,
            [
                Event::Start(Tag::Paragraph),
                Event::Start(link),
                Event::Text(url.into()),
                Event::End(TagEnd::Link),
                Event::End(TagEnd::Paragraph),
            ]
            .into_iter(),
        );
    }
    Mail {
        subject: subject(msg.title.as_deref(), &text),
        html: format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n{body}</body></html>\n"
        ),
        text,
    }
}

/// The title, or else the text's first line, on one line and bounded.
fn subject(title: Option<&str>, text: &str) -> String {
    let line = title
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| text.lines().find(|l| !l.trim().is_empty()).unwrap_or(""));
    let mut s: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string();
    if s.len() > SUBJECT_BYTES {
        let mut end = SUBJECT_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    if s.is_empty() {
        s.push_str("hookrelay");
    }
    s
}

/// One markdown event made safe to put in a mail: HTML in the source is shown as text, a link
/// or image to anything but http(s)/mailto (or a relative one) goes nowhere, and a line break
/// stays a line break as in the chat apps the same message is written for.
fn harmless(event: Event<'_>) -> Event<'_> {
    match event {
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        Event::SoftBreak => Event::HardBreak,
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) if !safe_url(&dest_url) => Event::Start(Tag::Link {
            link_type,
            dest_url: CowStr::Borrowed(""),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) if !safe_url(&dest_url) => Event::Start(Tag::Image {
            link_type,
            dest_url: CowStr::Borrowed(""),
            title,
            id,
        }),
        e => e,
    }
}

/// http(s), mailto, or no scheme at all (a relative link or a fragment).
fn safe_url(url: &str) -> bool {
    let url = url.trim();
    let scheme_end = url.find(':');
    let path_start = url.find(['/', '?', '#']);
    match (scheme_end, path_start) {
        (Some(c), Some(p)) if p < c => true,
        (Some(c), _) => matches!(
            url[..c].to_ascii_lowercase().as_str(),
            "http" | "https" | "mailto"
        ),
        (None, _) => true,
    }
}

/// The MIME message for `to`, `Message-ID: <message_id>`.
pub fn mime(
    from: &Mailbox,
    reply_to: Option<&Mailbox>,
    to: &[Mailbox],
    mail: &Mail,
    message_id: &str,
) -> Result<Vec<u8>, String> {
    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .subject(mail.subject.clone())
        .message_id(Some(format!("<{message_id}>")))
        .user_agent(concat!("hookrelay/", env!("CARGO_PKG_VERSION")).to_string())
        .date_now();
    if let Some(r) = reply_to {
        builder = builder.reply_to(r.clone());
    }
    for mb in to {
        builder = builder.to(mb.clone());
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
        .map(|m| m.formatted())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(content: &str) -> Message {
        Message {
            msgtype: MsgType::Markdown,
            content: content.into(),
            title: Some("部署失败 prod".into()),
            url: Some("https://ci.example/run/7".into()),
        }
    }

    #[test]
    fn markdown_becomes_html_and_readable_text_from_one_message() {
        let m = compose(&md(
            "**deploy** of `api` failed\n> <font color=\"warning\">3 pods</font> <@zhangsan>\n[logs](https://ci.example/logs)",
        ));
        assert_eq!(m.subject, "部署失败 prod");
        assert!(m.html.contains("<h2>部署失败 prod</h2>"), "{}", m.html);
        assert!(m.html.contains("<strong>deploy</strong>"), "{}", m.html);
        assert!(m.html.contains("<code>api</code>"), "{}", m.html);
        assert!(
            m.html
                .contains("<a href=\"https://ci.example/logs\">logs</a>")
        );
        assert!(m.html.contains("<a href=\"https://ci.example/run/7\">"));
        assert!(
            !m.html.contains("font"),
            "colour tags unwrapped: {}",
            m.html
        );
        assert!(m.html.contains("@zhangsan"), "{}", m.html);
        assert_eq!(
            m.text,
            "deploy of api failed\n3 pods @zhangsan\nlogs (https://ci.example/logs)\n\nhttps://ci.example/run/7"
        );
    }

    #[test]
    fn html_and_script_links_in_a_payload_are_shown_not_run() {
        let m = compose(&md(
            "<script>alert(1)</script>\n\n<img src=x onerror=alert(2)> [x](javascript:alert(3)) ![i](data:text/html,hi) [ok](/relative#a)",
        ));
        assert!(!m.html.contains("<script"), "{}", m.html);
        assert!(!m.html.contains("<img src=x"), "{}", m.html);
        assert!(m.html.contains("&lt;script&gt;"), "{}", m.html);
        assert!(!m.html.contains("javascript:"), "{}", m.html);
        assert!(!m.html.contains("data:"), "{}", m.html);
        assert!(m.html.contains("href=\"/relative#a\""), "{}", m.html);
        let hostile = Message {
            url: Some("javascript:alert(4)".into()),
            ..md("x")
        };
        assert!(!compose(&hostile).html.contains("javascript"));
    }

    #[test]
    fn text_keeps_its_lines_and_a_subject_is_made_when_there_is_no_title() {
        let m = compose(&Message {
            msgtype: MsgType::Text,
            content: "\n  build #7 <failed> & stopped\r\nsecond line".into(),
            title: None,
            url: None,
        });
        assert_eq!(m.subject, "build #7 <failed> & stopped");
        assert!(
            m.html
                .contains("build #7 &lt;failed&gt; &amp; stopped<br />\nsecond line"),
            "{}",
            m.html
        );
        let long = "长".repeat(100);
        let s = subject(None, &long);
        assert!(s.len() <= SUBJECT_BYTES + '…'.len_utf8() && s.ends_with('…'));
        assert_eq!(subject(Some(" "), ""), "hookrelay");
    }

    #[test]
    fn the_mime_message_is_alternative_plain_then_html_with_an_encoded_subject() {
        let from: Mailbox = "hookrelay <relay@example.com>".parse().unwrap();
        let to: Vec<Mailbox> = vec!["a@example.com".parse().unwrap()];
        let mail = compose(&md("**x**"));
        let raw = mime(&from, None, &to, &mail, "dlv_01@example.com").unwrap();
        let raw = String::from_utf8(raw).unwrap();
        assert!(raw.contains("Message-ID: <dlv_01@example.com>"), "{raw}");
        assert!(raw.contains("Subject: =?utf-8?"), "RFC 2047: {raw}");
        assert!(raw.contains("To: a@example.com"), "{raw}");
        let plain = raw.find("Content-Type: text/plain").unwrap();
        let html = raw.find("Content-Type: text/html").unwrap();
        assert!(
            raw.contains("multipart/alternative") && plain < html,
            "{raw}"
        );
    }
}
