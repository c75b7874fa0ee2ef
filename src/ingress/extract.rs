//! Generic JSON system hooks become events: type, id, subject and extensions are taken from
//! where the Source says (header, JSON pointer, literal, template), the id falls back to a hash.

use std::cell::OnceCell;
use std::collections::BTreeMap;

use actix_web::http::header::HeaderMap;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::IdKind;
use super::SourceDef;
use super::error::IngressError;
use crate::event::{Data, Event};
use crate::ingress::source::{Extract, Extractor};
use crate::message::ReadyMessage;
use crate::render::RenderCtx;

/// What extractors read from.
struct View<'a> {
    headers: &'a HeaderMap,
    body: &'a Value,
    template_ctx: OnceCell<RenderCtx>,
}

impl View<'_> {
    /// `{headers: {lower-case name: value}, body}` for template extractors, built on first use.
    fn template_ctx(&self) -> &RenderCtx {
        self.template_ctx.get_or_init(|| {
            let headers: Map<String, Value> = self
                .headers
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.as_str().to_string(),
                        Value::String(v.to_str().ok()?.to_string()),
                    ))
                })
                .collect();
            let mut root = Map::new();
            root.insert("headers".into(), Value::Object(headers));
            root.insert("body".into(), self.body.clone());
            RenderCtx::new(Value::Object(root))
        })
    }

    fn extract(&self, x: &Extractor) -> Option<String> {
        let raw = match &x.from {
            Extract::Header(h) => self.headers.get(h)?.to_str().ok()?.trim().to_string(),
            Extract::Pointer(p) => match self.body.pointer(p)? {
                Value::String(s) => s.clone(),
                Value::Null => return None,
                other => other.to_string(),
            },
            Extract::Value(v) => v.clone(),
            Extract::Template(t) => t.render(self.template_ctx()).ok()?,
        };
        let raw = raw.trim();
        if raw.is_empty() {
            return None;
        }
        let value = if x.lowercase {
            raw.to_lowercase()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join("_")
        } else {
            raw.to_string()
        };
        Some(format!("{}{value}", x.prefix))
    }

    fn first(&self, list: &[Extractor]) -> Option<String> {
        list.iter().find_map(|x| self.extract(x))
    }
}

/// Ids made from the content that are longer than this (a template over every alert of a large
/// group) are replaced by their hash, so such an id stays short whatever the body.
const MAX_MADE_ID: usize = 256;

fn bounded_id(id: String) -> String {
    if id.len() <= MAX_MADE_ID {
        return id;
    }
    format!("sha256:{}", hex::encode(Sha256::digest(id.as_bytes())))
}

/// Parses a generic JSON body into an event for `source`, saying where its id came from.
pub fn json_event(
    source: &SourceDef,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Event, IdKind), IngressError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(IngressError::BadRequest(
            "body is empty; expected JSON".into(),
        ));
    }
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| IngressError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let message = ReadyMessage::from_body(&json);
    let view = View {
        headers,
        body: &json,
        template_ctx: OnceCell::new(),
    };
    let rules = &source.event;
    let ty = view.first(&rules.ty).unwrap_or_else(|| {
        let suffix = if message.is_some() {
            "message"
        } else {
            "event"
        };
        format!("{}.{suffix}", source.name)
    });
    // No id anywhere: the content is the identity, so a resend of the same body (a sender's
    // retry) is a duplicate.
    let (id, id_kind) = rules
        .id
        .iter()
        .find_map(|x| Some((view.extract(x)?, x.id_kind())))
        .map(|(id, kind)| match kind {
            IdKind::Content => (bounded_id(id), kind),
            IdKind::Explicit => (id, kind),
        })
        .unwrap_or_else(|| {
            let mut h = Sha256::new();
            h.update(source.name.as_bytes());
            h.update(b"\n");
            h.update(body);
            (hex::encode(h.finalize()), IdKind::Content)
        });
    let subject = view.first(&rules.subject);
    let extensions: BTreeMap<String, Value> = rules
        .extensions
        .iter()
        .filter_map(|(name, list)| Some((name.clone(), Value::String(view.first(list)?))))
        .collect();
    let event = Event {
        receiver: source.name.clone(),
        id,
        source: format!("/hooks/{}", source.name),
        ty,
        specversion: "1.0".into(),
        subject,
        time: Some(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()),
        datacontenttype: Some("application/json".into()),
        dataschema: None,
        extensions,
        data: Data::Json(json),
        message,
    };
    Ok((event, id_kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::source::{Auth, EventRules};
    use crate::render::Tpl;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn x(from: Extract, prefix: &str, lowercase: bool) -> Extractor {
        Extractor {
            from,
            prefix: prefix.into(),
            lowercase,
        }
    }

    fn source(event: EventRules) -> SourceDef {
        SourceDef {
            name: "gitlab".into(),
            json: true,
            cloudevents: false,
            auth: Auth::None,
            event,
            dedup_window: None,
            content_dedup_window: None,
            max_body_bytes: None,
            carries_recipients: false,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn extractors_are_tried_in_order() {
        let s = source(EventRules {
            ty: vec![
                x(
                    Extract::Pointer("/event_name".into()),
                    "gitlab.system.",
                    false,
                ),
                x(Extract::Header("X-Gitlab-Event".into()), "gitlab.", true),
            ],
            id: vec![
                x(Extract::Header("Idempotency-Key".into()), "", false),
                x(Extract::Header("X-Gitlab-Event-UUID".into()), "", false),
            ],
            subject: vec![x(
                Extract::Template(Tpl::compile("{{body.project.path}}").unwrap()),
                "",
                false,
            )],
            extensions: vec![(
                "instance".into(),
                vec![x(Extract::Header("X-Gitlab-Instance".into()), "", false)],
            )],
        });
        let h = headers(&[
            ("X-Gitlab-Event", "Merge Request Hook"),
            ("X-Gitlab-Event-UUID", "uuid-1"),
            ("X-Gitlab-Instance", "https://gitlab.example"),
        ]);
        let (e, id_kind) = json_event(
            &s,
            &h,
            br#"{"object_kind":"merge_request","project":{"path":"g/p"}}"#,
        )
        .unwrap();
        assert_eq!(
            id_kind,
            IdKind::Explicit,
            "a delivery-id header names the event"
        );
        assert_eq!(e.ty, "gitlab.merge_request_hook");
        assert_eq!(e.id, "uuid-1");
        assert_eq!(e.subject.as_deref(), Some("g/p"));
        assert_eq!(e.extensions["instance"], "https://gitlab.example");
        assert_eq!(e.source, "/hooks/gitlab");
        let (e, _) = json_event(&s, &h, br#"{"event_name":"user_create"}"#).unwrap();
        assert_eq!(e.ty, "gitlab.system.user_create");
        assert_eq!(e.subject, None);
    }

    #[test]
    fn id_falls_back_to_a_content_hash_and_numbers_read_as_text() {
        let s = source(EventRules {
            ty: vec![x(Extract::Pointer("/task_id".into()), "t", false)],
            ..EventRules::default()
        });
        let (a, kind) = json_event(&s, &HeaderMap::new(), br#"{"task_id": 47}"#).unwrap();
        let (b, _) = json_event(&s, &HeaderMap::new(), br#"{"task_id": 47}"#).unwrap();
        let (c, _) = json_event(&s, &HeaderMap::new(), br#"{"task_id": 48}"#).unwrap();
        assert_eq!(kind, IdKind::Content, "a hash only absorbs retries");
        assert_eq!(a.ty, "t47");
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!(a.id.len(), 64);
    }

    #[test]
    fn ready_messages_and_bad_bodies() {
        let s = source(EventRules::default());
        let (e, _) = json_event(
            &s,
            &HeaderMap::new(),
            r#"{"touser":"U1","msgtype":"text","text":{"content":"hi"}}"#.as_bytes(),
        )
        .unwrap();
        assert_eq!(e.ty, "gitlab.message");
        assert_eq!(e.message.unwrap().to.users, vec!["U1"]);
        assert!(
            matches!(json_event(&s, &HeaderMap::new(), b"  "), Err(IngressError::BadRequest(m)) if m.contains("empty"))
        );
        assert!(
            matches!(json_event(&s, &HeaderMap::new(), b"{nope"), Err(IngressError::BadRequest(m)) if m.contains("JSON"))
        );
    }
}
