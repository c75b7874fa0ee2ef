//! The HTTP edge around every handler: a panic while answering becomes a logged JSON 500 and
//! leaves the relay serving (the store's locks tolerate it; nothing they guard is left half
//! changed).

use std::future::Future;
use std::panic::AssertUnwindSafe;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{Error, HttpResponse, ResponseError};
use futures_util::FutureExt;
use serde_json::json;

/// For `App::wrap_fn`: calls the handler, answering 500 if it panics.
pub fn catch_panics<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl Future<Output = Result<ServiceResponse<B>, Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody + 'static,
{
    // Not the request itself: routing needs it unshared. The path names a Source or an admin
    // resource, never a credential (those travel in headers).
    let (method, path) = (req.method().to_string(), req.path().to_string());
    // The call itself may panic (before its future exists), as may the future.
    let call = std::panic::catch_unwind(AssertUnwindSafe(|| srv.call(req)));
    async move {
        let panic = match call {
            Ok(fut) => match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(answer) => return answer,
                Err(p) => p,
            },
            Err(p) => p,
        };
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        tracing::error!(%method, %path, panic = %what, "a request handler panicked; answered 500");
        Err(Panicked.into())
    }
}

/// A request whose handler panicked: the server turns it into the answer below.
#[derive(Debug)]
struct Panicked;

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the relay failed while answering this request; send it again")
    }
}

impl ResponseError for Panicked {
    fn status_code(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::InternalServerError()
            .json(json!({"error": "internal", "message": self.to_string()}))
    }
}
