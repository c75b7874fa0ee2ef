//! What WeCom's answers mean (PROTOCOLS.md §1): the codes every WeCom API shares, then the
//! tables of `message/send` and `gettoken`.

use std::time::Duration;

use crate::channel::reply::{ReplyTable, Spent, VendorReply, Verdict};
use crate::reason::Reason;

/// What every WeCom API (app messages, gettoken, group robots) means by its shared codes: 0,
/// busy (-1) and too fast (45009, 45033: back off a minute).
pub fn common_code(errcode: i64) -> Option<Verdict> {
    match errcode {
        0 => Some(Verdict::Sent),
        -1 => Some(Verdict::Retry(Reason::Server)),
        45009 | 45033 => Some(Verdict::Throttle(Some(Duration::from_secs(60)))),
        _ => None,
    }
}

/// The errcode table of `message/send` (PROTOCOLS.md §1). Codes not listed are permanent:
/// WeCom's unknown codes are parameter errors, and retrying them only repeats the refusal.
pub struct Send;

impl ReplyTable for Send {
    const CODE: &'static [&'static str] = &["errcode"];
    const MESSAGE: &'static [&'static str] = &["errmsg"];

    fn classify(&self, errcode: i64, _: &VendorReply) -> Verdict {
        if let Some(v) = common_code(errcode) {
            return v;
        }
        match errcode {
            // The token is bad: drop it, fetch another, try once more.
            40014 | 42001 | 41001 => Verdict::Again(Spent::Retry(Reason::Auth)),
            40001 | 40013 | 60020 => Verdict::Fail(Reason::Auth),
            _ => Verdict::Fail(Reason::Client),
        }
    }
}

/// "No such user" from a contact lookup: an answer, not a failure.
pub const NO_SUCH_USER: &[i64] = &[46004, 60111];

/// The errcode table of the contact lookups (`user/getuserid`, `user/get_userid_by_email`):
/// `message/send`'s, except that "no such user" is an answer.
pub struct Lookup;

impl ReplyTable for Lookup {
    const CODE: &'static [&'static str] = &["errcode"];
    const MESSAGE: &'static [&'static str] = &["errmsg"];

    fn classify(&self, errcode: i64, reply: &VendorReply) -> Verdict {
        if NO_SUCH_USER.contains(&errcode) {
            return Verdict::Sent;
        }
        Send.classify(errcode, reply)
    }
}

/// The errcode table of `gettoken` (PROTOCOLS.md §1).
pub struct GetToken;

impl ReplyTable for GetToken {
    const CODE: &'static [&'static str] = &["errcode"];
    const MESSAGE: &'static [&'static str] = &["errmsg"];

    fn classify(&self, errcode: i64, _: &VendorReply) -> Verdict {
        // A wrong secret or corp id will not fix itself; nor will the unknown codes.
        common_code(errcode).unwrap_or(Verdict::Fail(Reason::Auth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::reply::table_test::{first_round, shared_rows};

    #[test]
    fn a_lookup_that_finds_no_one_is_an_answer() {
        for (body, want) in [
            (r#"{"errcode":0,"userid":"ZhangSan"}"#, Verdict::Sent),
            (
                r#"{"errcode":46004,"errmsg":"user no exist"}"#,
                Verdict::Sent,
            ),
            (
                r#"{"errcode":60111,"errmsg":"userid not found"}"#,
                Verdict::Sent,
            ),
            (
                r#"{"errcode":42001}"#,
                Verdict::Again(Spent::Retry(Reason::Auth)),
            ),
            (
                r#"{"errcode":45009}"#,
                Verdict::Throttle(Some(Duration::from_secs(60))),
            ),
            (
                r#"{"errcode":60011,"errmsg":"no privilege"}"#,
                Verdict::Fail(Reason::Client),
            ),
        ] {
            assert_eq!(first_round(&Lookup, 200, &[], body), want, "{body}");
        }
    }

    #[test]
    fn reply_table() {
        shared_rows(&Send, r#"{"errcode":0,"errmsg":"ok","msgid":"m"}"#);
        let again = Verdict::Again(Spent::Retry(Reason::Auth));
        let minute = Verdict::Throttle(Some(Duration::from_secs(60)));
        let rows: &[(u16, &str, Verdict)] = &[
            (
                200,
                r#"{"errcode":0,"errmsg":"ok","invaliduser":"a"}"#,
                Verdict::Sent,
            ),
            (
                200,
                r#"{"errcode":40014,"errmsg":"invalid access_token"}"#,
                again,
            ),
            (200, r#"{"errcode":42001}"#, again),
            (200, r#"{"errcode":41001}"#, again),
            (
                200,
                r#"{"errcode":-1,"errmsg":"system busy"}"#,
                Verdict::Retry(Reason::Server),
            ),
            (200, r#"{"errcode":45009}"#, minute),
            (200, r#"{"errcode":45033}"#, minute),
            (200, r#"{"errcode":40001}"#, Verdict::Fail(Reason::Auth)),
            (200, r#"{"errcode":40013}"#, Verdict::Fail(Reason::Auth)),
            (200, r#"{"errcode":60020}"#, Verdict::Fail(Reason::Auth)),
            (200, r#"{"errcode":40008}"#, Verdict::Fail(Reason::Client)),
            (200, r#"{"errcode":40058}"#, Verdict::Fail(Reason::Client)),
            (200, r#"{"errcode":44004}"#, Verdict::Fail(Reason::Client)),
            (200, r#"{"errcode":45002}"#, Verdict::Fail(Reason::Client)),
            (200, r#"{"errcode":81013}"#, Verdict::Fail(Reason::Client)),
            // An error status is never read as errcode 0, even with a WeCom-shaped body.
            (
                502,
                r#"{"errcode":0,"errmsg":"ok"}"#,
                Verdict::Retry(Reason::Server),
            ),
        ];
        for (status, body, want) in rows {
            assert_eq!(
                &first_round(&Send, *status, &[], body),
                want,
                "HTTP {status} {body}"
            );
        }
    }

    #[test]
    fn gettoken_table() {
        shared_rows(
            &GetToken,
            r#"{"errcode":0,"access_token":"t","expires_in":7200}"#,
        );
        for (body, want) in [
            (
                r#"{"errcode":40001,"errmsg":"invalid credential"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (r#"{"errcode":40013}"#, Verdict::Fail(Reason::Auth)),
            (r#"{"errcode":-1}"#, Verdict::Retry(Reason::Server)),
            (
                r#"{"errcode":45009}"#,
                Verdict::Throttle(Some(Duration::from_secs(60))),
            ),
        ] {
            assert_eq!(first_round(&GetToken, 200, &[], body), want, "{body}");
        }
    }
}
