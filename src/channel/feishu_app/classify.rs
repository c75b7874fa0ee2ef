//! What the Feishu / Lark open platform answers an app bot (PROTOCOLS.md §4, app bot): the
//! message API's codes, and the tenant token's. Throttles are read as the custom bot's are.

use std::time::Duration;

use crate::channel::feishu::classify::Send as BotSend;
use crate::channel::reply::{ReplyTable, Spent, VendorReply, Verdict};
use crate::reason::Reason;

/// The token was refused (invalid, expired, or of another app): fetch another, once.
const BAD_TOKEN: &[i64] = &[99991661, 99991663, 99991664, 99991668];

/// `im/v1/messages`.
pub struct Send;

impl Send {
    fn special(&self, code: i64, reply: &VendorReply) -> Option<Verdict> {
        if BAD_TOKEN.contains(&code) {
            return Some(Verdict::Again(Spent::Fail(Reason::Auth)));
        }
        match code {
            // "This operation triggers the frequency limit" (per chat or per user).
            230020 => Some(Verdict::Throttle(Some(Duration::from_secs(1)))),
            _ => BotSend.throttle(code, reply),
        }
    }
}

impl ReplyTable for Send {
    const CODE: &'static [&'static str] = &["code"];
    const MESSAGE: &'static [&'static str] = &["msg"];

    fn classify(&self, code: i64, reply: &VendorReply) -> Verdict {
        if let Some(v) = self.special(code, reply) {
            return v;
        }
        match code {
            0 => Verdict::Sent,
            // No permission for the API, or the app is not enabled.
            99991672 | 99991679 => Verdict::Fail(Reason::Auth),
            // Feishu's own trouble.
            1000004 | 1000005 => Verdict::Retry(Reason::Server),
            _ => Verdict::Fail(Reason::Client),
        }
    }

    /// Feishu answers a bad token or a throttle under a 4xx with its code in the body.
    fn error_status(&self, code: Option<i64>, reply: &VendorReply) -> Option<Verdict> {
        self.special(code?, reply)
    }

    fn throttle_wait(&self, reply: &VendorReply) -> Option<Duration> {
        BotSend.throttle_wait(reply)
    }
}

/// `auth/v3/tenant_access_token/internal`.
pub struct TenantToken;

impl ReplyTable for TenantToken {
    const CODE: &'static [&'static str] = &["code"];
    const MESSAGE: &'static [&'static str] = &["msg"];

    fn classify(&self, code: i64, reply: &VendorReply) -> Verdict {
        match code {
            0 => Verdict::Sent,
            // The app id or secret is wrong: no token will come.
            10003 | 10014 => Verdict::Fail(Reason::Auth),
            _ => BotSend
                .throttle(code, reply)
                .unwrap_or(Verdict::Retry(Reason::Server)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::reply::table_test::{Row, first_round, shared_rows};

    #[test]
    fn message_table() {
        shared_rows(
            &Send,
            r#"{"code":0,"msg":"success","data":{"message_id":"om_1"}}"#,
        );
        let bad_token = Verdict::Again(Spent::Fail(Reason::Auth));
        let rows: &[Row] = &[
            (200, &[], r#"{"code":0,"msg":"success"}"#, Verdict::Sent),
            (
                200,
                &[],
                r#"{"code":99991663,"msg":"token invalid"}"#,
                bad_token,
            ),
            (
                400,
                &[],
                r#"{"code":99991668,"msg":"token expired"}"#,
                bad_token,
            ),
            (
                400,
                &[],
                r#"{"code":230020,"msg":"frequency limit"}"#,
                Verdict::Throttle(Some(Duration::from_secs(1))),
            ),
            (
                429,
                &[("x-ogw-ratelimit-reset", "7")],
                r#"{"code":99991400,"msg":"request trigger frequency limit"}"#,
                Verdict::Throttle(Some(Duration::from_secs(7))),
            ),
            (
                400,
                &[],
                r#"{"code":230013,"msg":"Bot has NO availability to this user."}"#,
                Verdict::Fail(Reason::Client),
            ),
            (
                200,
                &[],
                r#"{"code":99991672,"msg":"no permission"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (
                200,
                &[],
                r#"{"code":1000004,"msg":"internal error"}"#,
                Verdict::Retry(Reason::Server),
            ),
        ];
        for (status, headers, body, want) in rows {
            assert_eq!(
                first_round(&Send, *status, headers, body),
                *want,
                "{status} {body}"
            );
        }
    }

    #[test]
    fn token_table() {
        for (body, want) in [
            (
                r#"{"code":0,"tenant_access_token":"t","expire":7200}"#,
                Verdict::Sent,
            ),
            (
                r#"{"code":10014,"msg":"app secret invalid"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (
                r#"{"code":10003,"msg":"invalid param"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (r#"{"code":1,"msg":"?"}"#, Verdict::Retry(Reason::Server)),
        ] {
            assert_eq!(first_round(&TenantToken, 200, &[], body), want, "{body}");
        }
    }
}
