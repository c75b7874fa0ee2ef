//! What a WeCom group robot's answers mean (PROTOCOLS.md §2): the codes every WeCom API shares,
//! then the robot's own.

use crate::channel::reply::{ReplyTable, VendorReply, Verdict};
use crate::channel::wecom_app::common_code;
use crate::reason::Reason;

/// The errcode table of a WeCom robot (PROTOCOLS.md §2).
pub struct Send;

impl ReplyTable for Send {
    const CODE: &'static [&'static str] = &["errcode"];
    const MESSAGE: &'static [&'static str] = &["errmsg"];

    fn classify(&self, errcode: i64, _: &VendorReply) -> Verdict {
        if let Some(v) = common_code(errcode) {
            return v;
        }
        match errcode {
            93000 => Verdict::Fail(Reason::Auth),
            _ => Verdict::Fail(Reason::Client),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::reply::table_test::{first_round, shared_rows};
    use std::time::Duration;

    #[test]
    fn reply_table() {
        shared_rows(&Send, r#"{"errcode":0,"errmsg":"ok"}"#);
        for (body, want) in [
            (r#"{"errcode":-1}"#, Verdict::Retry(Reason::Server)),
            (
                r#"{"errcode":45009}"#,
                Verdict::Throttle(Some(Duration::from_secs(60))),
            ),
            (
                r#"{"errcode":45033}"#,
                Verdict::Throttle(Some(Duration::from_secs(60))),
            ),
            (
                r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#,
                Verdict::Fail(Reason::Auth),
            ),
            (r#"{"errcode":40058}"#, Verdict::Fail(Reason::Client)),
            (r#"{"errcode":40008}"#, Verdict::Fail(Reason::Client)),
        ] {
            assert_eq!(first_round(&Send, 200, &[], body), want, "{body}");
        }
    }
}
