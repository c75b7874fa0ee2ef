//! Shared outbound HTTP: the client every channel uses, and turning transport failures, status
//! codes and `Retry-After` into classified errors.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::{DeliveryError, Reason};

/// The one outbound client: no redirects (a 3xx is a failure, not an invitation), pooled
/// keep-alive connections, rustls.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("hookrelay/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .expect("the HTTP client builds with static settings")
}

/// A transport failure (nothing usable came back), without the URL (it may carry credentials).
pub fn transport_error(e: reqwest::Error) -> DeliveryError {
    let reason = if e.is_timeout() {
        Reason::Timeout
    } else {
        Reason::Network
    };
    let e = e.without_url();
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    DeliveryError::retryable(reason, detail)
}

/// Largest response body read back; the rest is ignored.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Reads up to 64 KiB of a response body. A body that breaks off only loses detail: the
/// status has already been received.
pub async fn read_body(mut resp: reqwest::Response) -> Vec<u8> {
    let mut read = Vec::new();
    while read.len() < MAX_RESPONSE_BYTES {
        match resp.chunk().await {
            Ok(Some(chunk)) => read.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    read
}

/// A vendor API's answer.
#[derive(Debug)]
pub struct VendorReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

impl VendorReply {
    /// An integer field of the body (`errcode`, `code`, `StatusCode`).
    pub fn int(&self, field: &str) -> Option<i64> {
        self.body.get(field).and_then(serde_json::Value::as_i64)
    }

    /// A string field of the body.
    pub fn text(&self, field: &str) -> &str {
        self.body
            .get(field)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
    }
}

/// Sends a request to a vendor API and reads its JSON answer. Transport failures, 5xx and
/// non-JSON answers are classified here; any JSON answer is returned whatever its status, for
/// the channel's own table (vendors report errors as HTTP 200 with a code).
pub async fn vendor_call(req: reqwest::RequestBuilder) -> Result<VendorReply, DeliveryError> {
    let resp = req.send().await.map_err(transport_error)?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = read_body(resp).await;
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) if v.is_object() => Ok(VendorReply {
            status,
            headers,
            body: v,
        }),
        _ => {
            classify_status(status, &headers, &body)?;
            Err(DeliveryError::Retryable {
                reason: Reason::Server,
                detail: format!(
                    "HTTP {} with a body that is not JSON{}",
                    status.as_u16(),
                    snippet(&body)
                ),
                status: Some(status.as_u16()),
                retry_after: None,
            })
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// Classifies a plain HTTP answer: 2xx delivered; 408, 429 and 5xx retryable (honouring
/// `Retry-After`); 3xx and other 4xx permanent.
pub fn classify_status(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), DeliveryError> {
    if status.is_success() {
        return Ok(());
    }
    let code = status.as_u16();
    let detail = format!("HTTP {code}{}", snippet(body));
    if matches!(code, 408 | 429) || status.is_server_error() {
        let reason = match code {
            429 => Reason::RateLimited,
            408 => Reason::Timeout,
            _ => Reason::Server,
        };
        return Err(DeliveryError::Retryable {
            reason,
            detail,
            status: Some(code),
            retry_after: retry_after(headers),
        });
    }
    let reason = match code {
        401 | 403 => Reason::Auth,
        _ => Reason::Client,
    };
    let detail = if status.is_redirection() {
        format!("{detail} (redirects are not followed)")
    } else {
        detail
    };
    Err(DeliveryError::Permanent {
        reason,
        detail,
        status: Some(code),
    })
}

/// The start of a response body for an error message.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(": {}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(code: u16, retry_after_header: Option<&str>) -> Result<(), DeliveryError> {
        let mut h = HeaderMap::new();
        if let Some(v) = retry_after_header {
            h.insert(RETRY_AFTER, v.parse().unwrap());
        }
        classify_status(StatusCode::from_u16(code).unwrap(), &h, b"nope")
    }

    #[test]
    fn status_classification_table() {
        let retryable = |code| matches!(classify(code, None), Err(DeliveryError::Retryable { .. }));
        let permanent = |code| matches!(classify(code, None), Err(DeliveryError::Permanent { .. }));
        for code in [200, 201, 202, 204] {
            assert!(classify(code, None).is_ok(), "{code}");
        }
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(retryable(code), "{code}");
        }
        for code in [301, 302, 307, 400, 401, 403, 404, 410, 422] {
            assert!(permanent(code), "{code}");
        }
        assert_eq!(classify(401, None).unwrap_err().reason(), Reason::Auth);
        assert_eq!(
            classify(429, None).unwrap_err().reason(),
            Reason::RateLimited
        );
        assert!(
            classify(302, None)
                .unwrap_err()
                .detail()
                .contains("redirects")
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        match classify(503, Some("120")) {
            Err(DeliveryError::Retryable { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(120)))
            }
            other => panic!("{other:?}"),
        }
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(600));
        match classify(429, Some(&later)) {
            Err(DeliveryError::Retryable {
                retry_after: Some(d),
                ..
            }) => {
                assert!(
                    d > Duration::from_secs(590) && d <= Duration::from_secs(600),
                    "{d:?}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn snippets_are_short_and_utf8_safe() {
        assert_eq!(snippet(b""), "");
        let long = "错".repeat(300);
        let s = snippet(long.as_bytes());
        assert!(s.len() <= 202 && s.starts_with(": 错"));
    }
}
