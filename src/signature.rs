//! HMAC-SHA256 signatures shared by ingress and channels: constant-time comparison and
//! Standard Webhooks signing and verification.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Whether `expected` is the HMAC-SHA256 of `parts` under `key` (constant time).
pub fn verify_hmac_sha256(key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(expected).is_ok()
}

/// Compares two secrets in constant time, without revealing their lengths either
/// (both sides are hashed first).
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    let ha = Sha256::digest(a);
    let hb = Sha256::digest(b);
    ha.as_slice().ct_eq(hb.as_slice()).into()
}

/// The token of an `Authorization: Bearer …` header value (the scheme is case-insensitive,
/// RFC 7235); `None` for another scheme or an empty token.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Decodes a Standard Webhooks secret: `whsec_` + Base64 (the prefix is optional).
pub fn decode_whsec(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = B64
        .decode(b64)
        .map_err(|_| "a Standard Webhooks secret is whsec_ followed by Base64".to_string())?;
    if key.is_empty() {
        return Err("the Standard Webhooks secret is empty".into());
    }
    Ok(key)
}

/// The `webhook-signature` value (`v1,<base64>`) for one message.
pub fn standard_webhooks_sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", B64.encode(mac))
}

/// Why a Standard Webhooks signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("webhook-timestamp is not a number")]
    BadTimestamp,
    #[error("webhook-timestamp is more than {0} s away from now")]
    Stale(u64),
    #[error("no webhook-signature matches")]
    NoMatch,
}

/// Verifies Standard Webhooks headers over the raw body: any `v1,` entry may match (key
/// rotation), and the timestamp must be within `tolerance_secs` of `now`.
pub fn standard_webhooks_verify(
    key: &[u8],
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<(), SwError> {
    let id = id.ok_or(SwError::Missing("webhook-id"))?;
    let ts_text = timestamp.ok_or(SwError::Missing("webhook-timestamp"))?;
    let sigs = signatures.ok_or(SwError::Missing("webhook-signature"))?;
    let ts: i64 = ts_text.trim().parse().map_err(|_| SwError::BadTimestamp)?;
    if now.abs_diff(ts) > tolerance_secs {
        return Err(SwError::Stale(tolerance_secs));
    }
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_text.trim().as_bytes(), b".", body];
    let matched = sigs
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| B64.decode(b64).ok())
        .any(|sig| verify_hmac_sha256(key, &parts, &sig));
    if matched {
        Ok(())
    } else {
        Err(SwError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // PROTOCOLS.md §8: the reference library's own vector.
    const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const SW_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const SW_TS: i64 = 1649367553;
    const SW_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SW_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn bearer_tokens_are_read_whatever_the_scheme_case() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn standard_webhooks_vector_signs() {
        let key = decode_whsec(SW_SECRET).unwrap();
        assert_eq!(standard_webhooks_sign(&key, SW_ID, SW_TS, SW_BODY), SW_SIG);
    }

    #[test]
    fn standard_webhooks_vector_verifies_with_rotation_and_tolerance() {
        let key = decode_whsec(SW_SECRET).unwrap();
        let ts = SW_TS.to_string();
        let rotated = format!("v1,AAAA {SW_SIG}");
        let verify = |sigs: &str, now: i64| {
            standard_webhooks_verify(&key, Some(SW_ID), Some(&ts), Some(sigs), SW_BODY, now, 300)
        };
        assert_eq!(verify(SW_SIG, SW_TS), Ok(()));
        assert_eq!(verify(&rotated, SW_TS + 299), Ok(()));
        assert_eq!(verify(SW_SIG, SW_TS + 301), Err(SwError::Stale(300)));
        assert_eq!(
            verify("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkx=", SW_TS),
            Err(SwError::NoMatch)
        );
        assert_eq!(
            standard_webhooks_verify(&key, None, Some(&ts), Some(SW_SIG), SW_BODY, SW_TS, 300),
            Err(SwError::Missing("webhook-id"))
        );
    }

    #[test]
    fn github_vector() {
        // PROTOCOLS.md §8.
        let mac = hmac_sha256(b"It's a Secret to Everybody", &[b"Hello, World!"]);
        assert_eq!(
            hex::encode(mac),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(secrets_equal(b"tok", b"tok"));
        assert!(!secrets_equal(b"tok", b"tok2"));
        assert!(decode_whsec("whsec_!!").is_err());
    }
}
