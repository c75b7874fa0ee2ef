//! Feishu's signature — unlike DingTalk's: the key is `timestamp + "\n" + secret`, the message
//! is empty, the timestamp is in seconds, and the result goes in the body unencoded.

use base64::Engine;

use crate::signature::hmac_sha256;

pub fn sign(secret: &str, timestamp_secs: u64) -> String {
    let key = format!("{timestamp_secs}\n{secret}");
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(key.as_bytes(), &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_vector() {
        // PROTOCOLS.md §8.
        assert_eq!(
            sign("testsecret", 1_700_000_000),
            "AOc8oJ7//5OlQlfWC3nRL0R+IkuzcD1FKcAyibRK9Q8="
        );
    }
}
