//! CloudEvents 1.0 over HTTP: binary (`ce-*` headers), structured (`application/cloudevents+json`)
//! and batched (`application/cloudevents-batch+json`, all or nothing) modes, with the attribute
//! and extension rules enforced.

use std::collections::BTreeMap;

use actix_web::http::header::HeaderMap;
use base64::Engine;
use serde_json::{Map, Value};

use super::error::IngressError;
use crate::event::{Data, Event};

/// How a request carries its event(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Binary,
    Structured,
    Batch,
}

/// The CloudEvents mode of a request, if it is one: by Content-Type, else by any `ce-` header
/// (so that binary mode without `ce-specversion` is told which attribute it lacks).
pub fn detect(content_type: &str, headers: &HeaderMap) -> Option<Mode> {
    let ct = content_type.trim().to_ascii_lowercase();
    if ct.starts_with("application/cloudevents-batch") {
        Some(Mode::Batch)
    } else if ct.starts_with("application/cloudevents") {
        Some(Mode::Structured)
    } else if headers.keys().any(|h| h.as_str().starts_with("ce-")) {
        Some(Mode::Binary)
    } else {
        None
    }
}

/// Decodes the event(s) of a CloudEvents request received by Source `receiver`.
pub fn decode(
    mode: Mode,
    receiver: &str,
    content_type: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<Event>, IngressError> {
    let bad = IngressError::BadRequest;
    match mode {
        Mode::Binary => binary(receiver, content_type, headers, body)
            .map(|e| vec![e])
            .map_err(bad),
        Mode::Structured => {
            require_json_format(content_type)?;
            let v = parse_json(body)?;
            let Value::Object(obj) = v else {
                return Err(bad("a structured CloudEvent is a JSON object".into()));
            };
            from_json(receiver, obj).map(|e| vec![e]).map_err(bad)
        }
        Mode::Batch => {
            require_json_format(content_type)?;
            let Value::Array(items) = parse_json(body)? else {
                return Err(bad("a CloudEvents batch is a JSON array".into()));
            };
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    match item {
                        Value::Object(obj) => from_json(receiver, obj),
                        _ => Err("not a JSON object".into()),
                    }
                    .map_err(|e| bad(format!("batch event {i}: {e}")))
                }) // all or nothing
                .collect()
        }
    }
}

fn require_json_format(content_type: &str) -> Result<(), IngressError> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence.ends_with("+json") || essence == "application/cloudevents" {
        Ok(())
    } else {
        Err(IngressError::UnsupportedMediaType(format!(
            "{essence} is not supported; use the JSON event format (application/cloudevents+json)"
        )))
    }
}

fn parse_json(body: &[u8]) -> Result<Value, IngressError> {
    serde_json::from_slice(body)
        .map_err(|e| IngressError::BadRequest(format!("body is not valid JSON: {e}")))
}

/// Context attributes with a fixed meaning (everything else is an extension).
const CONTEXT: [&str; 8] = [
    "id",
    "source",
    "specversion",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
];

fn check_string(name: &str, value: &str) -> Result<(), String> {
    if let Some(c) = value
        .chars()
        .find(|c| matches!(*c as u32, 0x00..=0x1F | 0x7F..=0x9F))
    {
        return Err(format!(
            "attribute {name} contains the control character U+{:04X}",
            c as u32
        ));
    }
    Ok(())
}

fn check_extension_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(format!(
            "extension name {name:?} must be lower-case letters and digits only"
        ));
    }
    if name == "data" {
        return Err("\"data\" cannot be an extension name".into());
    }
    Ok(())
}

/// Builds an event from its attributes (all strings, as binary mode and validation see them).
struct Attributes {
    context: BTreeMap<&'static str, String>,
    extensions: BTreeMap<String, Value>,
}

impl Attributes {
    fn into_event(mut self, receiver: &str, data: Data) -> Result<Event, String> {
        let mut required = |name: &'static str| match self.context.remove(name) {
            Some(v) if !v.is_empty() => Ok(v),
            Some(_) => Err(format!("required attribute {name} is empty")),
            None => Err(format!("required attribute {name} is missing")),
        };
        let specversion = required("specversion")?;
        if specversion != "1.0" {
            return Err(format!(
                "specversion {specversion:?} is not supported (1.0 is)"
            ));
        }
        let id = required("id")?;
        let source = required("source")?;
        let ty = required("type")?;
        if let Some(t) = self.context.get("time")
            && chrono::DateTime::parse_from_rfc3339(t).is_err()
        {
            return Err(format!("time {t:?} is not an RFC 3339 timestamp"));
        }
        Ok(Event {
            receiver: receiver.to_string(),
            id,
            source,
            ty,
            specversion,
            subject: self.context.remove("subject"),
            time: self.context.remove("time"),
            datacontenttype: self.context.remove("datacontenttype"),
            dataschema: self.context.remove("dataschema"),
            extensions: self.extensions,
            data,
            message: None,
        })
    }
}

/// Whether a media type's data is JSON (`*/json`, `*/*+json`; no type at all counts as JSON).
fn is_json_type(content_type: Option<&str>) -> bool {
    match content_type {
        None => true,
        Some(ct) => {
            let essence = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            essence.is_empty() || essence.ends_with("/json") || essence.ends_with("+json")
        }
    }
}

/// One event in the JSON format.
fn from_json(receiver: &str, obj: Map<String, Value>) -> Result<Event, String> {
    let mut attrs = Attributes {
        context: BTreeMap::new(),
        extensions: BTreeMap::new(),
    };
    let mut data = None;
    let mut data_base64 = None;
    for (name, value) in obj {
        match name.as_str() {
            "data" => data = Some(value),
            "data_base64" => data_base64 = Some(value),
            _ => {
                if let Some(ctx) = CONTEXT.iter().find(|c| **c == name) {
                    let Value::String(s) = value else {
                        return Err(format!("attribute {name} must be a string"));
                    };
                    check_string(&name, &s)?;
                    attrs.context.insert(ctx, s);
                } else {
                    check_extension_name(&name)?;
                    match &value {
                        Value::String(s) => check_string(&name, s)?,
                        Value::Bool(_) | Value::Number(_) => {}
                        _ => {
                            return Err(format!(
                                "extension {name} must be a string, number or boolean"
                            ));
                        }
                    }
                    attrs.extensions.insert(name, value);
                }
            }
        }
    }
    let data = match (data, data_base64) {
        (Some(_), Some(_)) => return Err("an event cannot have both data and data_base64".into()),
        (None, None) => Data::None,
        (None, Some(Value::String(b64))) => Data::Binary(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| "data_base64 is not valid Base64".to_string())?,
        ),
        (None, Some(_)) => return Err("data_base64 must be a string".into()),
        (Some(Value::String(s)), None)
            if !is_json_type(attrs.context.get("datacontenttype").map(String::as_str)) =>
        {
            Data::Text(s)
        }
        (Some(v), None) => Data::Json(v),
    };
    attrs.into_event(receiver, data)
}

/// Percent-decodes a binary-mode header value (once) and requires UTF-8.
fn decode_header(name: &str, raw: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("header {name} has an invalid percent-encoding"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("header {name} does not decode to valid UTF-8"))
}

/// One event in binary mode.
fn binary(
    receiver: &str,
    content_type: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Event, String> {
    let mut attrs = Attributes {
        context: BTreeMap::new(),
        extensions: BTreeMap::new(),
    };
    for (header, value) in headers {
        let Some(name) = header.as_str().strip_prefix("ce-") else {
            continue;
        };
        let value = decode_header(header.as_str(), value.as_bytes())?;
        check_string(name, &value)?;
        if name == "datacontenttype" {
            // In binary mode Content-Type is the data's type.
            continue;
        }
        if let Some(ctx) = CONTEXT.iter().find(|c| **c == name) {
            attrs.context.insert(ctx, value);
        } else {
            check_extension_name(name)?;
            attrs
                .extensions
                .insert(name.to_string(), Value::String(value));
        }
    }
    let ct = Some(content_type.trim()).filter(|c| !c.is_empty());
    if let Some(ct) = ct {
        attrs.context.insert("datacontenttype", ct.to_string());
    }
    let data = if body.is_empty() {
        Data::None
    } else if is_json_type(ct) {
        Data::Json(
            serde_json::from_slice(body).map_err(|e| format!("data is not valid JSON: {e}"))?,
        )
    } else if ct.is_some_and(|c| c.to_ascii_lowercase().starts_with("text/")) {
        Data::Text(
            String::from_utf8(body.to_vec())
                .map_err(|_| "text data is not valid UTF-8".to_string())?,
        )
    } else {
        Data::Binary(body.to_vec())
    };
    attrs.into_event(receiver, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};
    use serde_json::json;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    fn base() -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("ce-specversion", b"1.0"),
            ("ce-id", b"abc-123"),
            ("ce-source", b"/apis/x"),
            ("ce-type", b"dev.example.v1"),
        ]
    }

    #[test]
    fn detects_modes() {
        let none = HeaderMap::new();
        assert_eq!(
            detect("application/cloudevents+json; charset=UTF-8", &none),
            Some(Mode::Structured)
        );
        assert_eq!(
            detect("application/cloudevents-batch+json", &none),
            Some(Mode::Batch)
        );
        assert_eq!(detect("application/json", &none), None);
        assert_eq!(
            detect("application/json", &headers(&base())),
            Some(Mode::Binary)
        );
    }

    #[test]
    fn binary_mode_decodes_percent_encoding_and_extensions() {
        let mut h = base();
        h.push(("ce-subject", b"Euro%20%E2%82%AC%20%F0%9F%98%80"));
        h.push(("ce-involvedobjectnamespace", b"devops"));
        let e = binary("acp", "application/json", &headers(&h), br#"{"a":1}"#).unwrap();
        assert_eq!(e.subject.as_deref(), Some("Euro € 😀"));
        assert_eq!(e.extensions["involvedobjectnamespace"], "devops");
        assert_eq!(e.data, Data::Json(json!({"a": 1})));
        assert_eq!(e.datacontenttype.as_deref(), Some("application/json"));
        let lower = binary(
            "acp",
            "",
            &headers(&[base(), vec![("ce-subject", b"%e2%82%ac")]].concat()),
            b"",
        )
        .unwrap();
        assert_eq!(lower.subject.as_deref(), Some("€"));
        assert_eq!(lower.data, Data::None);
    }

    #[test]
    fn binary_mode_rejects_bad_encodings_and_names() {
        let with = |extra: (&'static str, &'static [u8])| {
            let mut h = base();
            h.push(extra);
            binary("acp", "application/json", &headers(&h), b"{}")
        };
        assert!(
            with(("ce-subject", b"%C0%A0"))
                .unwrap_err()
                .contains("UTF-8")
        );
        assert!(
            with(("ce-subject", b"%G1"))
                .unwrap_err()
                .contains("percent")
        );
        assert!(with(("ce-subject", b"%2")).unwrap_err().contains("percent"));
        assert!(
            with(("ce-bad_name", b"x"))
                .unwrap_err()
                .contains("lower-case")
        );
        let missing: Vec<_> = base().into_iter().filter(|(k, _)| *k != "ce-id").collect();
        assert!(
            binary("acp", "", &headers(&missing), b"")
                .unwrap_err()
                .contains("id is missing")
        );
    }

    #[test]
    fn data_kinds_are_kept() {
        let e = binary(
            "s",
            "application/octet-stream",
            &headers(&base()),
            &[0, 159, 146],
        )
        .unwrap();
        assert_eq!(e.data, Data::Binary(vec![0, 159, 146]));
        let t = binary("s", "text/plain", &headers(&base()), "héllo".as_bytes()).unwrap();
        assert_eq!(t.data, Data::Text("héllo".into()));
        let s = from_json(
            "s",
            json!({"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"AP8="})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();
        assert_eq!(s.data, Data::Binary(vec![0, 255]));
        let x = from_json("s", json!({"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/xml","data":"<a/>"}).as_object().unwrap().clone()).unwrap();
        assert_eq!(x.data, Data::Text("<a/>".into()));
    }

    #[test]
    fn structured_rules() {
        let ok = json!({"specversion":"1.0","id":"1","source":"/s","type":"t","time":"2024-07-31T13:45:27+08:00","count":3,"flag":true});
        let e = from_json("s", ok.as_object().unwrap().clone()).unwrap();
        assert_eq!(e.extensions["count"], 3);
        let err = |v: Value| from_json("s", v.as_object().unwrap().clone()).unwrap_err();
        assert!(
            err(json!({"specversion":"0.3","id":"1","source":"/s","type":"t"}))
                .contains("specversion")
        );
        assert!(
            err(json!({"specversion":"1.0","id":"","source":"/s","type":"t"}))
                .contains("id is empty")
        );
        assert!(
            err(json!({"specversion":"1.0","id":"1","source":"/s","type":"t","Bad":"x"}))
                .contains("lower-case")
        );
        assert!(err(json!({"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":"AA=="})).contains("both"));
        assert!(
            err(json!({"specversion":"1.0","id":"1","source":"/s","type":"t","time":"yesterday"}))
                .contains("RFC 3339")
        );
        assert!(
            err(json!({"specversion":"1.0","id":"1","source":"/s","type":"t\u{1}"}))
                .contains("control")
        );
        assert!(
            err(json!({"specversion":"1.0","id":"1","source":"/s","type":"t","ext":{"a":1}}))
                .contains("string, number")
        );
    }

    #[test]
    fn batches_are_all_or_nothing() {
        let body = json!([
            {"specversion":"1.0","id":"1","source":"/s","type":"t"},
            {"specversion":"1.0","source":"/s","type":"t"}
        ]);
        let err = decode(
            Mode::Batch,
            "s",
            "application/cloudevents-batch+json",
            &HeaderMap::new(),
            body.to_string().as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("batch event 1") && err.contains("id is missing"),
            "{err}"
        );
        let empty = decode(
            Mode::Batch,
            "s",
            "application/cloudevents-batch+json",
            &HeaderMap::new(),
            b"[]",
        )
        .unwrap();
        assert!(empty.is_empty());
        let xml = decode(
            Mode::Structured,
            "s",
            "application/cloudevents+xml",
            &HeaderMap::new(),
            b"<x/>",
        );
        assert!(matches!(xml, Err(IngressError::UnsupportedMediaType(_))));
    }
}
