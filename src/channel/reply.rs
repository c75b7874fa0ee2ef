//! What a vendor's answer means, decided once for every channel: the HTTP status first, then —
//! only in a 2xx body — the vendor's own code, read through the channel's [`ReplyTable`].
//!
//! | answer | verdict |
//! |---|---|
//! | transport failure | retry (network / timeout) |
//! | 429, or 503 with `Retry-After` | throttled (not a failed attempt), waiting as told |
//! | other 5xx, 408 | retry |
//! | 3xx, other 4xx | permanent, unless the vendor's table reads that error body itself |
//! | 2xx without a JSON object, or without the vendor's code field | retry: unrecognised reply |
//! | 2xx with the vendor's code | the vendor's table |

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::DeliveryError;
use super::http::{read_body, retry_after, snippet, transport_error};
use crate::reason::Reason;

/// What one answer means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Sent,
    /// Worth one more round at once after a fix (a fresh token, a fresh signature); once that
    /// round is spent too, the answer means `Spent`.
    Again(Spent),
    Retry(Reason),
    /// The vendor asked us to slow down, for this long if it said (else the retry schedule's
    /// next step, not counted as a failure).
    Throttle(Option<Duration>),
    Fail(Reason),
}

/// What an [`Verdict::Again`] answer means when it comes back on the second round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spent {
    Retry(Reason),
    Fail(Reason),
}

/// One vendor's reading of its answers.
pub trait ReplyTable {
    /// The fields of a 2xx body that carry the vendor's result code, first present wins. Empty:
    /// the vendor has no code, a 2xx is a delivery whatever its body (plain webhooks).
    const CODE: &'static [&'static str];
    /// The fields that carry the vendor's message, for the error detail.
    const MESSAGE: &'static [&'static str] = &[];

    /// What a 2xx answer carrying `code` means.
    fn classify(&self, code: i64, reply: &VendorReply) -> Verdict;

    /// A non-2xx answer this vendor reads differently from its status (Feishu answers
    /// "too many request" as HTTP 400). `None`: the status decides.
    fn error_status(&self, _code: Option<i64>, _reply: &VendorReply) -> Option<Verdict> {
        None
    }

    /// How long a throttle lasts according to the answer's headers.
    fn throttle_wait(&self, reply: &VendorReply) -> Option<Duration> {
        retry_after(&reply.headers)
    }
}

/// A vendor API's answer.
#[derive(Debug)]
pub struct VendorReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub raw: Vec<u8>,
    /// The body as JSON, `Null` when it is not JSON.
    pub body: Value,
}

impl VendorReply {
    /// An integer field of the body (`errcode`, `code`, `StatusCode`).
    pub fn int(&self, field: &str) -> Option<i64> {
        self.body.get(field).and_then(Value::as_i64)
    }

    /// A string field of the body.
    pub fn text(&self, field: &str) -> &str {
        self.body.get(field).and_then(Value::as_str).unwrap_or("")
    }
}

/// Sends a request and reads its answer (up to 64 KiB of body). Only transport failures are
/// errors here; what the answer means is [`judge`]'s.
pub async fn call(req: reqwest::RequestBuilder) -> Result<VendorReply, DeliveryError> {
    let resp = req.send().await.map_err(transport_error)?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let raw = read_body(resp).await;
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Ok(VendorReply {
        status,
        headers,
        raw,
        body,
    })
}

/// The vendor's code in a reply, and the field it came from.
fn vendor_code<T: ReplyTable>(reply: &VendorReply) -> Option<(&'static str, i64)> {
    T::CODE
        .iter()
        .find_map(|f| reply.int(f).map(|code| (*f, code)))
}

/// The vendor's message in a reply (its first non-empty message field).
pub fn vendor_message<T: ReplyTable>(reply: &VendorReply) -> &str {
    T::MESSAGE
        .iter()
        .map(|f| reply.text(f))
        .find(|m| !m.is_empty())
        .unwrap_or("")
}

/// What `reply` means: `Ok` for a delivery, the classified error otherwise. Without a second
/// round (that is [`Rounds`]'), an [`Verdict::Again`] answer means what it means when spent.
pub fn judge<T: ReplyTable>(table: &T, reply: &VendorReply) -> Result<(), DeliveryError> {
    let (v, detail) = verdict(table, reply);
    outcome(v, detail, reply)
}

/// The verdict on `reply` and the detail that explains it.
fn verdict<T: ReplyTable>(table: &T, reply: &VendorReply) -> (Verdict, String) {
    let status = reply.status.as_u16();
    let code = vendor_code::<T>(reply);
    if !reply.status.is_success() {
        let detail = format!("HTTP {status}{}", snippet(&reply.raw));
        if let Some(v) = table.error_status(code.map(|(_, c)| c), reply) {
            return (v, detail);
        }
        let v = match status {
            429 => Verdict::Throttle(table.throttle_wait(reply)),
            503 if retry_after(&reply.headers).is_some() => {
                Verdict::Throttle(table.throttle_wait(reply))
            }
            408 => Verdict::Retry(Reason::Timeout),
            _ if reply.status.is_server_error() => Verdict::Retry(Reason::Server),
            401 | 403 => Verdict::Fail(Reason::Auth),
            _ => Verdict::Fail(Reason::Client),
        };
        let detail = if reply.status.is_redirection() {
            format!("{detail} (redirects are not followed)")
        } else {
            detail
        };
        return (v, detail);
    }
    if T::CODE.is_empty() {
        return (Verdict::Sent, String::new());
    }
    match code {
        Some((field, code)) => (
            table.classify(code, reply),
            format!("{field} {code}: {}", vendor_message::<T>(reply)),
        ),
        None => {
            let what = if reply.body.is_object() {
                format!("without {}", T::CODE.join(" or "))
            } else {
                "whose body is not a JSON object".to_string()
            };
            (
                Verdict::Retry(Reason::Server),
                format!(
                    "unrecognised reply: HTTP {status} {what}{}",
                    snippet(&reply.raw)
                ),
            )
        }
    }
}

/// A verdict as the send's result; an [`Verdict::Again`] here is spent.
fn outcome(v: Verdict, detail: String, reply: &VendorReply) -> Result<(), DeliveryError> {
    let status = Some(reply.status.as_u16());
    let v = match v {
        Verdict::Again(Spent::Retry(reason)) => Verdict::Retry(reason),
        Verdict::Again(Spent::Fail(reason)) => Verdict::Fail(reason),
        v => v,
    };
    Err(match v {
        Verdict::Sent => return Ok(()),
        Verdict::Again(_) => unreachable!("spent above"),
        Verdict::Retry(reason) => DeliveryError::Retryable {
            reason,
            detail,
            status,
            retry_after: retry_after(&reply.headers),
        },
        Verdict::Throttle(wait) => DeliveryError::Throttled { detail, wait },
        Verdict::Fail(reason) => DeliveryError::Permanent {
            reason,
            detail,
            status,
        },
    })
}

/// The rounds of one send: an [`Verdict::Again`] answer gets exactly one more round (after the
/// caller's fix: a fresh token, a new signature); every other answer ends the send.
///
/// ```text
/// let mut rounds = Rounds::default();
/// loop {
///     let reply = call(request()).await?;
///     if let Some(sent) = rounds.judge(&Table, reply)? { return Ok(sent) }
/// }
/// ```
#[derive(Debug, Default)]
pub struct Rounds {
    again: bool,
}

impl Rounds {
    /// `Ok(Some)`: delivered; `Ok(None)`: go round once more; `Err`: the send's outcome.
    pub fn judge<T: ReplyTable>(
        &mut self,
        table: &T,
        reply: VendorReply,
    ) -> Result<Option<VendorReply>, DeliveryError> {
        let (v, detail) = verdict(table, &reply);
        if matches!(v, Verdict::Again(_)) && !self.again {
            self.again = true;
            return Ok(None);
        }
        outcome(v, detail, &reply).map(|()| Some(reply))
    }
}

/// Tables for tests: every status × body shape a channel must get right, in one place.
#[cfg(test)]
pub mod table_test {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    /// One row of a reply table: status, headers, body, and what they mean.
    pub type Row<'a> = (u16, &'a [(&'a str, &'a str)], &'a str, Verdict);

    /// A reply with this status, headers and body.
    pub fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> VendorReply {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        VendorReply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: h,
            raw: body.as_bytes().to_vec(),
            body: serde_json::from_str(body).unwrap_or(Value::Null),
        }
    }

    /// The verdict on one answer, as [`Rounds`] reads it on the first round.
    pub fn first_round<T: ReplyTable>(
        table: &T,
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Verdict {
        verdict(table, &reply(status, headers, body)).0
    }

    /// The answers every vendor table must read the same way: the status first, and a 2xx
    /// without the vendor's code is never a delivery. `ok` is the vendor's success body.
    pub fn shared_rows<T: ReplyTable>(table: &T, ok: &str) {
        let rows: &[Row] = &[
            (200, &[], ok, Verdict::Sent),
            (
                502,
                &[],
                r#"{"message":"upstream unavailable"}"#,
                Verdict::Retry(Reason::Server),
            ),
            (
                500,
                &[],
                r#"{"error":"boom"}"#,
                Verdict::Retry(Reason::Server),
            ),
            (500, &[], ok, Verdict::Retry(Reason::Server)),
            (
                503,
                &[],
                "<html>busy</html>",
                Verdict::Retry(Reason::Server),
            ),
            (
                503,
                &[("retry-after", "30")],
                "",
                Verdict::Throttle(Some(Duration::from_secs(30))),
            ),
            (408, &[], "", Verdict::Retry(Reason::Timeout)),
            (429, &[], "", Verdict::Throttle(None)),
            (
                429,
                &[("retry-after", "7")],
                r#"{"error":"slow down"}"#,
                Verdict::Throttle(Some(Duration::from_secs(7))),
            ),
            (401, &[], r#"{"error":"who"}"#, Verdict::Fail(Reason::Auth)),
            (403, &[], "", Verdict::Fail(Reason::Auth)),
            (404, &[], ok, Verdict::Fail(Reason::Client)),
            (
                302,
                &[("location", "https://x/")],
                "",
                Verdict::Fail(Reason::Client),
            ),
            (200, &[], "", Verdict::Retry(Reason::Server)),
            (200, &[], "ok", Verdict::Retry(Reason::Server)),
            (200, &[], "[]", Verdict::Retry(Reason::Server)),
            (
                200,
                &[],
                r#"{"message":"upstream unavailable"}"#,
                Verdict::Retry(Reason::Server),
            ),
            (
                200,
                &[],
                r#"{"errcode":"0"}"#,
                Verdict::Retry(Reason::Server),
            ),
        ];
        for (status, headers, body, want) in rows {
            // A vendor whose code field is `errcode` reads `{"errcode":"0"}` as unrecognised;
            // one whose field is another name reads it the same way.
            assert_eq!(
                &first_round(table, *status, headers, body),
                want,
                "HTTP {status} {headers:?} {body}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::table_test::*;
    use super::*;
    use crate::channel::webhook::StatusOnly;

    #[test]
    fn redirects_say_they_are_not_followed() {
        let err = judge(&StatusOnly, &reply(301, &[], "")).unwrap_err();
        assert!(err.detail().contains("redirects"), "{err}");
        assert_eq!(err.status(), Some(301));
    }

    #[test]
    fn an_unrecognised_reply_says_so() {
        struct Code;
        impl ReplyTable for Code {
            const CODE: &'static [&'static str] = &["errcode"];
            fn classify(&self, _: i64, _: &VendorReply) -> Verdict {
                Verdict::Sent
            }
        }
        let err = judge(&Code, &reply(200, &[], r#"{"message":"hi"}"#)).unwrap_err();
        assert!(
            err.detail()
                .starts_with("unrecognised reply: HTTP 200 without errcode"),
            "{err}"
        );
        assert!(matches!(err, DeliveryError::Retryable { .. }));
        shared_rows(&Code, r#"{"errcode":0}"#);
    }
}
