//! What a DingTalk robot's answers mean (PROTOCOLS.md §3), throttles included (a 200 with
//! errcode 0 may still say the robot is held).

use std::time::Duration;

use crate::channel::reply::{ReplyTable, Spent, VendorReply, Verdict};
use crate::reason::Reason;

/// The answer table of a DingTalk robot (PROTOCOLS.md §3).
pub struct Send;

impl ReplyTable for Send {
    const CODE: &'static [&'static str] = &["errcode"];
    const MESSAGE: &'static [&'static str] = &["errmsg"];

    fn classify(&self, errcode: i64, reply: &VendorReply) -> Verdict {
        // The robot is being throttled: DingTalk holds it about 10 minutes.
        let throttled = Verdict::Throttle(Some(Duration::from_secs(600)));
        match errcode {
            0 if punished(reply) => throttled,
            0 => Verdict::Sent,
            130101 => throttled,
            -1 => Verdict::Retry(Reason::Server),
            // Clocks drift: the timestamp was refused, sign again once.
            310000 if reply.text("errmsg").contains("timestamp") => {
                Verdict::Again(Spent::Fail(Reason::Auth))
            }
            310000 | 300001 | 300005 => Verdict::Fail(Reason::Auth),
            _ => Verdict::Fail(Reason::Client),
        }
    }
}

/// Whether a throttled answer's `status` / `punish` / `wait` fields are set.
fn punished(reply: &VendorReply) -> bool {
    ["status", "punish", "wait"].iter().any(|f| {
        reply
            .body
            .get(*f)
            .is_some_and(|v| v.as_i64().is_some_and(|n| n != 0) || v.as_bool() == Some(true))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::reply::table_test::{first_round, shared_rows};

    #[test]
    fn reply_table() {
        shared_rows(&Send, r#"{"errcode":0,"errmsg":"ok"}"#);
        let throttled = Verdict::Throttle(Some(Duration::from_secs(600)));
        let rows = [
            (
                r#"{"errcode":0,"errmsg":"ok","status":1,"punish":"x"}"#,
                throttled,
            ),
            (r#"{"errcode":0,"errmsg":"ok","wait":true}"#, throttled),
            (r#"{"errcode":130101,"errmsg":"send too fast"}"#, throttled),
            (
                r#"{"errcode":-1,"errmsg":"busy"}"#,
                Verdict::Retry(Reason::Server),
            ),
            (
                r#"{"errcode":310000,"errmsg":"description:invalid timestamp;solution:…"}"#,
                Verdict::Again(Spent::Fail(Reason::Auth)),
            ),
            (
                r#"{"errcode":310000,"errmsg":"description:关键词不匹配;solution:…"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (
                r#"{"errcode":310000,"errmsg":"description:sign not match;solution:…"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (
                r#"{"errcode":300001,"errmsg":"token is not exist"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (
                r#"{"errcode":300005,"errmsg":"token is not exist"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (
                r#"{"errcode":460101,"errmsg":"message too long"}"#,
                Verdict::Fail(Reason::Client),
            ),
        ];
        for (body, want) in rows {
            assert_eq!(first_round(&Send, 200, &[], body), want, "{body}");
        }
    }
}
