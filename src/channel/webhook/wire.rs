//! What a webhook POSTs by default: the normalized message
//! `{touser, toparty?, totag?, mobiles?, msgtype, text:{content}, title?, url?}`.

use serde_json::{Map, Value, json};

use crate::message::{Message, Recipients};

/// The normalized JSON form of a message to `to`.
pub fn normalized_json(message: &Message, to: &Recipients) -> Value {
    let mut m = Map::new();
    let touser = if to.all {
        "@all".to_string()
    } else {
        to.users.join("|")
    };
    m.insert("touser".into(), Value::String(touser));
    if !to.parties.is_empty() {
        m.insert("toparty".into(), Value::String(to.parties.join("|")));
    }
    if !to.tags.is_empty() {
        m.insert("totag".into(), Value::String(to.tags.join("|")));
    }
    if !to.mobiles.is_empty() {
        m.insert("mobiles".into(), json!(to.mobiles));
    }
    m.insert(
        "msgtype".into(),
        Value::String(message.msgtype.as_str().into()),
    );
    m.insert("text".into(), json!({ "content": message.content }));
    if let Some(t) = &message.title {
        m.insert("title".into(), Value::String(t.clone()));
    }
    if let Some(u) = &message.url {
        m.insert("url".into(), Value::String(u.clone()));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MsgType;

    #[test]
    fn normalized_form_joins_ids() {
        let m = Message {
            msgtype: MsgType::Markdown,
            content: "**hi**".into(),
            title: Some("t".into()),
            url: None,
        };
        let to = Recipients {
            users: vec!["a".into(), "b".into()],
            parties: vec!["2".into()],
            ..Default::default()
        };
        let v = normalized_json(&m, &to);
        assert_eq!(v["touser"], "a|b");
        assert_eq!(v["toparty"], "2");
        assert_eq!(v["msgtype"], "markdown");
        assert_eq!(v["text"]["content"], "**hi**");
        assert_eq!(v["title"], "t");
        assert!(v.get("totag").is_none());
    }
}
