//! DingTalk's 加签: HMAC-SHA256 keyed by the secret over `timestamp + "\n" + secret`, Base64,
//! URL-encoded exactly once.

use base64::Engine;
use percent_encoding::utf8_percent_encode;

use crate::secret::URL_VALUE;
use crate::signature::hmac_sha256;

/// The Base64 signature for `timestamp_ms` (not yet URL-encoded).
pub fn sign(secret: &str, timestamp_ms: u64) -> String {
    let to_sign = format!("{timestamp_ms}\n{secret}");
    base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(secret.as_bytes(), &[to_sign.as_bytes()]))
}

/// One round of URL encoding for a query value.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, URL_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_vector() {
        // PROTOCOLS.md §8.
        let sig = sign("SECtestsecret", 1_700_000_000_000);
        assert_eq!(sig, "7LVwF0dAF3/+MRRulbpE4y72Ogzykc6bS2nG4I99T4s=");
        assert_eq!(
            encode(&sig),
            "7LVwF0dAF3%2F%2BMRRulbpE4y72Ogzykc6bS2nG4I99T4s%3D"
        );
    }
}
