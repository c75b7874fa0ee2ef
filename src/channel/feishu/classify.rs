//! What a Feishu / Lark bot's answers mean (PROTOCOLS.md §4), including the throttles it
//! reports in the body under a 4xx status.

use std::time::Duration;

use crate::channel::http::retry_after;
use crate::channel::reply::{ReplyTable, Spent, VendorReply, Verdict, vendor_message};
use crate::reason::Reason;

/// The answer table of a Feishu / Lark bot (PROTOCOLS.md §4): `code`, or the legacy
/// `StatusCode`.
pub struct Send;

impl Send {
    /// The throttles Feishu reports in its body, whatever the HTTP status it sends them with
    /// (9499 "too many request" comes as HTTP 400, 99991400 as 429).
    pub(in crate::channel) fn throttle(&self, code: i64, reply: &VendorReply) -> Option<Verdict> {
        let msg = vendor_message::<Send>(reply).to_lowercase();
        let wait = |default: u64| {
            Verdict::Throttle(Some(
                self.throttle_wait(reply)
                    .unwrap_or(Duration::from_secs(default)),
            ))
        };
        match code {
            9499 if msg.contains("too many request") => Some(wait(1)),
            11232 => Some(wait(60)),
            99991400 => Some(wait(1)),
            _ => None,
        }
    }
}

impl ReplyTable for Send {
    const CODE: &'static [&'static str] = &["code", "StatusCode"];
    const MESSAGE: &'static [&'static str] = &["msg", "StatusMessage"];

    fn classify(&self, code: i64, reply: &VendorReply) -> Verdict {
        if let Some(throttled) = self.throttle(code, reply) {
            return throttled;
        }
        match code {
            0 => Verdict::Sent,
            // Signature or timestamp refused: sign again, once.
            19021 => Verdict::Again(Spent::Fail(Reason::Auth)),
            19001 | 19022 => Verdict::Fail(Reason::Auth),
            _ => Verdict::Fail(Reason::Client),
        }
    }

    fn error_status(&self, code: Option<i64>, reply: &VendorReply) -> Option<Verdict> {
        self.throttle(code?, reply)
    }

    /// A 429 says when the window resets.
    fn throttle_wait(&self, reply: &VendorReply) -> Option<Duration> {
        reply
            .headers
            .get("x-ogw-ratelimit-reset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs)
            .or_else(|| retry_after(&reply.headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::reply::table_test::{Row, first_round, shared_rows};

    #[test]
    fn reply_table() {
        shared_rows(&Send, r#"{"code":0,"msg":"success","data":{}}"#);
        let s = Duration::from_secs;
        let rows: &[Row] = &[
            (
                200,
                &[],
                r#"{"StatusCode":0,"StatusMessage":"success"}"#,
                Verdict::Sent,
            ),
            (
                400,
                &[],
                r#"{"code":9499,"msg":"too many request"}"#,
                Verdict::Throttle(Some(s(1))),
            ),
            (
                200,
                &[],
                r#"{"code":9499,"msg":"Bad Request"}"#,
                Verdict::Fail(Reason::Client),
            ),
            (
                400,
                &[],
                r#"{"code":9499,"msg":"Bad Request"}"#,
                Verdict::Fail(Reason::Client),
            ),
            (
                200,
                &[],
                r#"{"code":11232,"msg":"frequency limited"}"#,
                Verdict::Throttle(Some(s(60))),
            ),
            (
                429,
                &[("x-ogw-ratelimit-reset", "12")],
                r#"{"code":99991400,"msg":"request trigger frequency limit"}"#,
                Verdict::Throttle(Some(s(12))),
            ),
            (
                429,
                &[("x-ogw-ratelimit-reset", "3")],
                "",
                Verdict::Throttle(Some(s(3))),
            ),
            (
                200,
                &[],
                r#"{"code":19021,"msg":"sign match fail or timestamp is not within one hour"}"#,
                Verdict::Again(Spent::Fail(Reason::Auth)),
            ),
            (
                200,
                &[],
                r#"{"code":19001,"msg":"param invalid: incoming webhook access token invalid"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (
                200,
                &[],
                r#"{"code":19022,"msg":"Ip Not Allowed"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (
                200,
                &[],
                r#"{"code":19024,"msg":"Key Words Not Found"}"#,
                Verdict::Fail(Reason::Client),
            ),
            (
                500,
                &[],
                r#"{"code":0,"msg":"success"}"#,
                Verdict::Retry(Reason::Server),
            ),
        ];
        for (status, headers, body, want) in rows {
            assert_eq!(
                &first_round(&Send, *status, headers, body),
                want,
                "HTTP {status} {body}"
            );
        }
    }
}
