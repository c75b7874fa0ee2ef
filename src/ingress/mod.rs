//! Ingress: `POST /hooks/{source}` — authentication, decoding into an [`Event`](crate::event::Event),
//! planning, and the durable acknowledgement.

mod auth;
mod cloudevents;
pub mod error;
mod extract;
mod handler;

use actix_web::http::header::{CONTENT_TYPE, HeaderMap};
use actix_web::web;

use crate::catalog::SourceDef;
pub use crate::catalog::source::IdKind;
use crate::event::Event;

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
    Ok(Decoded { events, format })
}

/// Registers the hook endpoint.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/hooks/{source}")
            .route(web::post().to(handler::receive_hook))
            .default_service(web::to(handler::method_not_allowed)),
    );
}
