//! Why ingress refused a request, as an HTTP answer with a JSON body that says so.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// A refused request. Nothing is stored for any of these.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("no source named {0:?} is configured")]
    UnknownSource(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("body is larger than the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("only POST is accepted here")]
    MethodNotAllowed,
    #[error("the event could not be stored: {0}; retry later")]
    Unavailable(String),
}

impl IngressError {
    /// A short machine-readable code for the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            IngressError::UnknownSource(_) => "unknown_source",
            IngressError::Unauthorized(_) => "unauthorized",
            IngressError::BadRequest(_) => "bad_request",
            IngressError::TooLarge { .. } => "payload_too_large",
            IngressError::UnsupportedMediaType(_) => "unsupported_media_type",
            IngressError::MethodNotAllowed => "method_not_allowed",
            IngressError::Unavailable(_) => "unavailable",
        }
    }
}

impl ResponseError for IngressError {
    fn status_code(&self) -> StatusCode {
        match self {
            IngressError::UnknownSource(_) => StatusCode::NOT_FOUND,
            IngressError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            IngressError::BadRequest(_) => StatusCode::BAD_REQUEST,
            IngressError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngressError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngressError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            IngressError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status_code());
        if matches!(self, IngressError::MethodNotAllowed) {
            r.insert_header(("Allow", "POST"));
        }
        r.json(json!({ "error": self.code(), "message": self.to_string() }))
    }
}
