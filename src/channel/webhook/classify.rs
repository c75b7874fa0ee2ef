//! What a webhook receiver's answers mean: it has no code of its own, so its HTTP status is
//! its whole answer (the shared status rules of `reply.rs`).

use crate::channel::reply::{ReplyTable, VendorReply, Verdict};

/// The table of a receiver with no vendor code.
pub struct StatusOnly;

impl ReplyTable for StatusOnly {
    const CODE: &'static [&'static str] = &[];

    fn classify(&self, _: i64, _: &VendorReply) -> Verdict {
        Verdict::Sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::reply::table_test::first_round;
    use crate::reason::Reason;

    #[test]
    fn a_plain_receiver_is_judged_by_its_status_alone() {
        for (status, body, want) in [
            (200, "", Verdict::Sent),
            (204, "", Verdict::Sent),
            (202, "anything", Verdict::Sent),
            (500, "", Verdict::Retry(Reason::Server)),
            (429, "", Verdict::Throttle(None)),
            (410, "", Verdict::Fail(Reason::Client)),
        ] {
            assert_eq!(
                first_round(&StatusOnly, status, &[], body),
                want,
                "{status}"
            );
        }
    }
}
