//! Shared outbound HTTP: the client every channel uses, transport failures as classified errors,
//! bounded body reads and `Retry-After`.

use std::time::{Duration, SystemTime};

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
    let detail = crate::reason::with_causes(&e.without_url());
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

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
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

    #[test]
    fn retry_after_seconds_and_dates() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, v.parse().unwrap());
            retry_after(&h)
        };
        assert_eq!(with("120"), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(600));
        let d = with(&later).unwrap();
        assert!(
            d > Duration::from_secs(590) && d <= Duration::from_secs(600),
            "{d:?}"
        );
        assert_eq!(with("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn snippets_are_short_and_utf8_safe() {
        assert_eq!(snippet(b""), "");
        let long = "错".repeat(300);
        let s = snippet(long.as_bytes());
        assert!(s.len() <= 202 && s.starts_with(": 错"));
    }
}
