//! What an SMTP server's replies mean (PROTOCOLS.md §9): the code's class first (2xx/3xx go
//! on, 4xx is transient, 5xx permanent), then the few codes read otherwise.
//!
//! | reply | verdict |
//! |---|---|
//! | 2xx, 3xx | go on |
//! | 4xx saying rate / too many / too fast / slow down | throttled (not a failed attempt) |
//! | other 4xx (421 closing, 450 busy, 451 local error, 452 storage, 454 TLS/AUTH) | retry |
//! | 530, 534, 535, 538 (AUTH needed, too weak, refused) | permanent: auth |
//! | other 5xx (550 mailbox, 552 size, 553 address, 554 rejected, 5xx protocol) | permanent |
//!
//! Each `RCPT TO` has its own reply: a recipient refused while others are accepted is a
//! partial delivery, reported like WeCom's `invaliduser`; `452` there means "too many
//! recipients in this transaction" and the rest go in the next one.

use crate::channel::DeliveryError;
use crate::channel::reply::Verdict;
use crate::reason::Reason;

/// What reply `code` (with its `text`) means for the message as a whole.
pub fn classify(code: u16, text: &str) -> Verdict {
    match code {
        200..=399 => Verdict::Sent,
        400..=499 if throttles(text) => Verdict::Throttle(None),
        400..=499 => Verdict::Retry(Reason::Server),
        530 | 534 | 535 | 538 => Verdict::Fail(Reason::Auth),
        _ => Verdict::Fail(Reason::Client),
    }
}

/// Whether a transient reply asks the client to slow down (servers say so only in words).
fn throttles(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    ["rate", "too many", "too fast", "slow down", "throttl"]
        .iter()
        .any(|w| text.contains(w))
}

/// The error a refusing reply to `step` (`AUTH`, `MAIL FROM`, `DATA`, …) makes.
pub fn error(step: &str, code: u16, text: &str) -> DeliveryError {
    let detail = format!("{step}: SMTP {code} {text}");
    match classify(code, text) {
        Verdict::Throttle(wait) => DeliveryError::Throttled { detail, wait },
        Verdict::Fail(reason) => DeliveryError::permanent(reason, detail),
        Verdict::Retry(reason) => DeliveryError::retryable(reason, detail),
        // A positive code is no refusal: a server that says it while refusing is not read.
        Verdict::Sent | Verdict::Again(_) => DeliveryError::retryable(Reason::Server, detail),
    }
}

/// What one recipient's `RCPT TO` reply means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcpt {
    Accepted,
    /// 452 "too many recipients": offered again in the next transaction.
    Later,
    /// Refused for now (4xx) or for good (5xx).
    Refused {
        transient: bool,
    },
}

pub fn recipient(code: u16) -> Rcpt {
    match code {
        200..=399 => Rcpt::Accepted,
        452 => Rcpt::Later,
        400..=499 => Rcpt::Refused { transient: true },
        _ => Rcpt::Refused { transient: false },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reply_class_is_read_as_the_table_says() {
        let retry = Verdict::Retry(Reason::Server);
        let throttle = Verdict::Throttle(None);
        let (auth, client) = (Verdict::Fail(Reason::Auth), Verdict::Fail(Reason::Client));
        for (code, text, want) in [
            (250, "2.0.0 queued as 4B2C", Verdict::Sent),
            (354, "end data with <CR><LF>.<CR><LF>", Verdict::Sent),
            (421, "4.3.2 service shutting down", retry),
            (450, "4.2.1 mailbox busy", retry),
            (451, "4.3.0 local error in processing", retry),
            (452, "4.3.1 insufficient system storage", retry),
            (454, "4.7.0 TLS not available", retry),
            (421, "4.7.28 our rate limit was exceeded", throttle),
            (450, "4.2.1 user is receiving mail too fast", throttle),
            (451, "4.7.500 Too many connections", throttle),
            (530, "5.7.0 authentication required", auth),
            (535, "5.7.8 authentication credentials invalid", auth),
            (550, "5.1.1 mailbox unavailable", client),
            (552, "5.3.4 message too big", client),
            (553, "5.1.3 bad address syntax", client),
            (554, "5.7.1 rejected as spam", client),
            (502, "5.5.1 command not implemented", client),
        ] {
            assert_eq!(classify(code, text), want, "{code} {text}");
        }
    }

    #[test]
    fn errors_carry_the_step_and_the_reply_and_a_throttle_is_no_failure() {
        let e = error("DATA", 451, "4.3.0 try again");
        assert!(matches!(e, DeliveryError::Retryable { .. }), "{e:?}");
        assert_eq!(e.detail(), "DATA: SMTP 451 4.3.0 try again");
        let e = error("MAIL FROM", 421, "rate limited, slow down");
        assert!(matches!(e, DeliveryError::Throttled { wait: None, .. }));
        let e = error("AUTH", 535, "5.7.8 bad credentials");
        assert_eq!(e.reason(), Reason::Auth);
        assert!(matches!(e, DeliveryError::Permanent { .. }));
    }

    #[test]
    fn a_recipient_reply_accepts_defers_or_refuses() {
        assert_eq!(recipient(250), Rcpt::Accepted);
        assert_eq!(recipient(251), Rcpt::Accepted);
        assert_eq!(recipient(452), Rcpt::Later);
        assert_eq!(recipient(450), Rcpt::Refused { transient: true });
        assert_eq!(recipient(550), Rcpt::Refused { transient: false });
        assert_eq!(recipient(553), Rcpt::Refused { transient: false });
    }
}
