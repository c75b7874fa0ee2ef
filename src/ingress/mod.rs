//! Ingress: what a Source accepts — its definition (`source.rs`, with the platform presets of
//! `preset.rs`), authentication, and decoding a request into [`Event`]s. The HTTP endpoint that
//! plans and stores them is `server/hooks.rs`.

mod auth;
mod cloudevents;
pub mod error;
mod extract;
pub mod oidc;
mod preset;
pub mod source;

use actix_web::http::header::{CONTENT_TYPE, HeaderMap};

use crate::event::Event;
pub use source::{IdKind, SourceDef};

pub use error::IngressError;

/// What a request carried, once authenticated and decoded.
pub struct Decoded {
    pub events: Vec<Event>,
    pub format: Format,
}

/// How a request carried its event(s), which decides how it is answered and de-duplicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON system hook, answered with a JSON body.
    Hook { id: IdKind },
    /// CloudEvents (Knative's sink contract: a 2xx reply carries no body); `batch` when sent as
    /// a batch.
    CloudEvents { batch: bool },
}

/// Fetches what `source`'s authentication needs before [`decode`] (an OIDC issuer's keys).
pub async fn prepare_auth(source: &SourceDef, headers: &HeaderMap) {
    auth::prepare(&source.auth, headers).await
}

/// Authenticates a request for `source` and decodes its event(s): a CloudEvent in any mode if
/// the Source takes them, else a JSON system hook. Used by the handler and by `hookrelay render`.
pub fn decode(
    source: &SourceDef,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: u64,
) -> Result<Decoded, IngressError> {
    auth::verify(&source.auth, headers, body, (now_ms / 1000) as i64)
        .map_err(IngressError::Unauthorized)?;
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mode = cloudevents::detect(content_type, headers);
    let (events, format) = match mode {
        Some(mode) if source.cloudevents => (
            cloudevents::decode(mode, &source.name, content_type, headers, body)?,
            Format::CloudEvents {
                batch: mode == cloudevents::Mode::Batch,
            },
        ),
        _ if source.json => {
            let (event, id) = extract::json_event(source, headers, body)?;
            (vec![event], Format::Hook { id })
        }
        _ => {
            return Err(IngressError::UnsupportedMediaType(
                "this source accepts CloudEvents only: binary mode (ce-* headers) or \
                 application/cloudevents+json / application/cloudevents-batch+json"
                    .into(),
            ));
        }
    };
    for (i, e) in events.iter().enumerate() {
        bounded(e).map_err(|m| match format {
            Format::CloudEvents { batch: true } => {
                IngressError::BadRequest(format!("batch event {i}: {m}"))
            }
            _ => IngressError::BadRequest(m),
        })?;
    }
    Ok(Decoded { events, format })
}

/// Longest id, type and extension name (bytes): these become keys, labels and index entries.
const MAX_NAME_BYTES: usize = 1024;
/// Longest `source`, `subject`, `dataschema` and extension value (bytes).
const MAX_VALUE_BYTES: usize = 4096;
/// Most extensions one event may carry.
const MAX_EXTENSIONS: usize = 64;

/// Every attribute that is read as a key or a label has a bounded length; over it, the request
/// is refused naming the attribute and the limit.
fn bounded(e: &Event) -> Result<(), String> {
    let over = |name: &str, len: usize, limit: usize| {
        (len > limit).then(|| format!("attribute {name} is {len} bytes; the limit is {limit}"))
    };
    let fixed = [
        ("id", e.id.len(), MAX_NAME_BYTES),
        ("type", e.ty.len(), MAX_NAME_BYTES),
        ("source", e.source.len(), MAX_VALUE_BYTES),
        (
            "subject",
            e.subject.as_ref().map_or(0, String::len),
            MAX_VALUE_BYTES,
        ),
        (
            "dataschema",
            e.dataschema.as_ref().map_or(0, String::len),
            MAX_VALUE_BYTES,
        ),
        (
            "datacontenttype",
            e.datacontenttype.as_ref().map_or(0, String::len),
            MAX_NAME_BYTES,
        ),
    ];
    if let Some(m) = fixed
        .iter()
        .find_map(|(n, len, limit)| over(n, *len, *limit))
    {
        return Err(m);
    }
    if e.extensions.len() > MAX_EXTENSIONS {
        return Err(format!(
            "{} extensions; the limit is {MAX_EXTENSIONS}",
            e.extensions.len()
        ));
    }
    for (name, value) in &e.extensions {
        let value_len = value
            .as_str()
            .map_or_else(|| value.to_string().len(), str::len);
        if let Some(m) = over("name of an extension", name.len(), MAX_NAME_BYTES)
            .or_else(|| over(name, value_len, MAX_VALUE_BYTES))
        {
            return Err(m);
        }
    }
    Ok(())
}
