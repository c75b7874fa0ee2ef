//! The HTTP edge around every handler: a panic while answering becomes a logged JSON 500 and
//! leaves the relay serving (the store's locks tolerate it; nothing they guard is left half
//! changed); a request head actix refuses before any handler runs (over 128 KiB or 96 header
//! fields, or not HTTP) is answered in JSON too, and the rest of what the client sent is read
//! before the connection closes, so the client sees the answer instead of a reset.

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{Error, HttpResponse, ResponseError};
use futures_util::FutureExt;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

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

/// The limits actix-http enforces on a request head (not configurable there).
const HEAD_LIMITS: &str = "a request head may hold at most 96 header fields and 128 KiB";
/// Most bytes read (and dropped) after such an answer before the connection closes.
const DRAIN_LIMIT: usize = 4 << 20;

/// A connection whose protocol-level refusals (actix's empty-bodied 431 and 400, written before
/// any handler runs) are rewritten as JSON answers.
pub struct Guarded {
    io: TcpStream,
    /// The rewritten answer and how much of it is out, once actix refused the request.
    refusal: Option<(Vec<u8>, usize)>,
    drained: usize,
}

impl Guarded {
    pub fn new(io: TcpStream) -> Guarded {
        Guarded {
            io,
            refusal: None,
            drained: 0,
        }
    }

    /// The JSON answer for an empty-bodied refusal actix is about to write, if `buf` is one.
    fn rewrite(buf: &[u8]) -> Option<Vec<u8>> {
        // Every response passes here: only the two refusals are looked at further.
        if !(buf.starts_with(b"HTTP/1.1 431 ") || buf.starts_with(b"HTTP/1.1 400 ")) {
            return None;
        }
        let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        if !head.contains("\r\ncontent-length: 0") {
            return None;
        }
        let (status, error, message) = if head.starts_with("http/1.1 431 ") {
            (
                "431 Request Header Fields Too Large",
                "headers_too_large",
                format!("the request head is too large: {HEAD_LIMITS}"),
            )
        } else if head.starts_with("http/1.1 400 ") {
            (
                "400 Bad Request",
                "malformed_request",
                "the request is not well-formed HTTP/1.1".to_string(),
            )
        } else {
            return None;
        };
        let body = json!({"error": error, "message": message}).to_string();
        Some(
            format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }

    /// Writes what is left of the rewritten answer.
    fn send_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((answer, sent)) = &mut self.refusal
            && *sent < answer.len()
        {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &answer[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.refusal.is_none() {
            match Guarded::rewrite(buf) {
                Some(answer) => self.refusal = Some((answer, 0)),
                None => return Pin::new(&mut self.io).poll_write(cx, buf),
            }
        }
        // actix's own bytes for the refusal are taken and dropped.
        ready!(self.send_refusal(cx))?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.send_refusal(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.send_refusal(cx))?;
        if self.refusal.is_some() {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            // Unread bytes at close make the kernel reset the connection, and the client would
            // see the reset, not the answer: read what it still sends (bounded; actix's
            // disconnect timeout bounds the wait).
            let mut scratch = [0u8; 8192];
            while self.drained < DRAIN_LIMIT {
                let mut rb = ReadBuf::new(&mut scratch);
                match ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb)) {
                    Ok(()) if rb.filled().is_empty() => break,
                    Ok(()) => self.drained += rb.filled().len(),
                    Err(_) => break,
                }
            }
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
