//! The one internal event: CloudEvents-shaped, whatever format it arrived in.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::message::ReadyMessage;

/// An event's payload, kept in the form it arrived in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Data {
    None,
    Json(Value),
    Text(String),
    Binary(#[serde(with = "b64")] Vec<u8>),
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// One received event. Generic system hooks become events too: their `source` is
/// `/hooks/<receiver>`, their `type` and `id` come from where the Source says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Name of the hookrelay Source that received it.
    pub receiver: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub specversion: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, Value>,
    pub data: Data,
    /// Set when the body already was a ready `{touser, msgtype, text}` message (CNB user notify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<ReadyMessage>,
}

impl Event {
    /// The de-duplication key: receiving Source, CloudEvents `source` and `id`.
    pub fn dedup_key(&self) -> String {
        format!("{}\u{0}{}\u{0}{}", self.receiver, self.source, self.id)
    }

    /// A context attribute or extension by name, as CloudEvents filters see it (a string).
    pub fn attribute(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow::{Borrowed, Owned};
        match name {
            "id" => Some(Borrowed(&self.id)),
            "source" => Some(Borrowed(&self.source)),
            "type" => Some(Borrowed(&self.ty)),
            "specversion" => Some(Borrowed(&self.specversion)),
            "subject" => self.subject.as_deref().map(Borrowed),
            "time" => self.time.as_deref().map(Borrowed),
            "datacontenttype" => self.datacontenttype.as_deref().map(Borrowed),
            "dataschema" => self.dataschema.as_deref().map(Borrowed),
            _ => self.extensions.get(name).map(|v| match v {
                Value::String(s) => Borrowed(s.as_str()),
                other => Owned(other.to_string()),
            }),
        }
    }

    /// The event in CloudEvents JSON format: what CEL sees as `ce`, templates as their root,
    /// and the `event` body mode of a webhook sends.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "specversion".into(),
            Value::String(self.specversion.clone()),
        );
        m.insert("id".into(), Value::String(self.id.clone()));
        m.insert("source".into(), Value::String(self.source.clone()));
        m.insert("type".into(), Value::String(self.ty.clone()));
        let optional = [
            ("subject", &self.subject),
            ("time", &self.time),
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                m.insert(k.into(), Value::String(v.clone()));
            }
        }
        for (k, v) in &self.extensions {
            m.insert(k.clone(), v.clone());
        }
        match &self.data {
            Data::None => {}
            Data::Json(v) => {
                m.insert("data".into(), v.clone());
            }
            Data::Text(t) => {
                m.insert("data".into(), Value::String(t.clone()));
            }
            Data::Binary(b) => {
                m.insert(
                    "data_base64".into(),
                    Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
                );
            }
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Event {
        Event {
            receiver: "acp".into(),
            id: "abc-123".into(),
            source: "/apis/x".into(),
            ty: "dev.example.v1".into(),
            specversion: "1.0".into(),
            subject: Some("s".into()),
            time: None,
            datacontenttype: None,
            dataschema: None,
            extensions: [(
                "involvedobjectkind".to_string(),
                json!("ArtifactPromotionRun"),
            )]
            .into_iter()
            .collect(),
            data: Data::Json(json!({"object": {"n": 1}})),
            message: None,
        }
    }

    #[test]
    fn json_form_flattens_extensions_and_data() {
        let v = sample().to_json();
        assert_eq!(v["type"], "dev.example.v1");
        assert_eq!(v["involvedobjectkind"], "ArtifactPromotionRun");
        assert_eq!(v["data"]["object"]["n"], 1);
        assert!(v.get("time").is_none());
    }

    #[test]
    fn binary_data_is_base64() {
        let mut e = sample();
        e.data = Data::Binary(vec![0, 255]);
        assert_eq!(e.to_json()["data_base64"], "AP8=");
        let stored = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&stored).unwrap(), e);
    }

    #[test]
    fn attributes_and_extensions_read_as_strings() {
        let e = sample();
        assert_eq!(e.attribute("type").unwrap(), "dev.example.v1");
        assert_eq!(
            e.attribute("involvedobjectkind").unwrap(),
            "ArtifactPromotionRun"
        );
        assert!(e.attribute("time").is_none());
        assert_ne!(
            e.dedup_key(),
            Event {
                receiver: "other".into(),
                ..e.clone()
            }
            .dedup_key()
        );
    }
}
