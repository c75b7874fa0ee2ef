//! Per-Source authentication of a request, over the raw body: token, HMAC, Standard Webhooks,
//! OIDC bearer tokens.

use actix_web::http::header::HeaderMap;

use crate::ingress::source::{Auth, HmacStyle};
use crate::signature;

/// Checks `headers` and `body` against the Source's auth; the error says what was wrong
/// (never what was expected).
pub fn verify(auth: &Auth, headers: &HeaderMap, body: &[u8], now_secs: i64) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    match auth {
        Auth::None => Ok(()),
        Auth::Token {
            header: name,
            secret,
        } => {
            let given = header(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("missing {name} header"))?;
            let given = if name.eq_ignore_ascii_case("authorization") {
                signature::bearer_token(given).unwrap_or(given)
            } else {
                given
            };
            if signature::secrets_equal(given.as_bytes(), secret.expose().as_bytes()) {
                Ok(())
            } else {
                Err(format!("{name} does not match"))
            }
        }
        Auth::Hmac {
            header: name,
            secret,
            style,
        } => {
            let given = header(name)
                .filter(|v| !v.is_empty() && *v != "sha256=")
                .ok_or_else(|| format!("missing {name} signature header"))?;
            let hex_sig = match (style, given.strip_prefix("sha256=")) {
                (HmacStyle::Github, None) => {
                    return Err(format!("{name} must be sha256=<hex>"));
                }
                (HmacStyle::Hex, Some(_)) => return Err(format!("{name} must be bare hex")),
                (_, Some(h)) => h,
                (_, None) => given,
            };
            let sig = hex::decode(hex_sig).map_err(|_| format!("{name} is not hex"))?;
            if signature::verify_hmac_sha256(secret.expose().as_bytes(), &[body], &sig) {
                Ok(())
            } else {
                Err(format!("{name} does not match the body"))
            }
        }
        Auth::StandardWebhooks { key, tolerance } => signature::standard_webhooks_verify(
            key.expose(),
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
            body,
            now_secs,
            tolerance.as_secs(),
        )
        .map_err(|e| e.to_string()),
        Auth::Oidc(verifier) => verifier.verify(header("authorization"), now_secs),
    }
}

/// What a Source's check needs fetched before [`verify`] (an OIDC issuer's keys, on the first
/// token or one signed by a key not yet seen). Never fails: a failed fetch means the check
/// refuses.
pub async fn prepare(auth: &Auth, headers: &HeaderMap) {
    if let Auth::Oidc(verifier) = auth {
        let header = headers
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        verifier.prepare(header).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{Secret, SecretBytes};
    use actix_web::http::header::{HeaderName, HeaderValue};
    use std::time::Duration;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn token_auth() {
        let auth = Auth::Token {
            header: "X-CNB-Token".into(),
            secret: Secret::new("t0ken"),
        };
        assert_eq!(
            verify(&auth, &headers(&[("x-cnb-token", "t0ken")]), b"", 0),
            Ok(())
        );
        assert_eq!(
            verify(&auth, &headers(&[]), b"", 0).unwrap_err(),
            "missing X-CNB-Token header"
        );
        let wrong = verify(&auth, &headers(&[("X-CNB-Token", "nope")]), b"", 0).unwrap_err();
        assert!(!wrong.contains("t0ken"));
        let bearer = Auth::Token {
            header: "Authorization".into(),
            secret: Secret::new("abc"),
        };
        assert_eq!(
            verify(
                &bearer,
                &headers(&[("Authorization", "Bearer abc")]),
                b"",
                0
            ),
            Ok(())
        );
    }

    #[test]
    fn hmac_auth_github_and_gitea_styles() {
        // PROTOCOLS.md §8 GitHub vector.
        let body = b"Hello, World!";
        let sig = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let secret = Secret::new("It's a Secret to Everybody");
        let github = Auth::Hmac {
            header: "X-Hub-Signature-256".into(),
            secret: secret.clone(),
            style: HmacStyle::Github,
        };
        let h = headers(&[("X-Hub-Signature-256", &format!("sha256={sig}"))]);
        assert_eq!(verify(&github, &h, body, 0), Ok(()));
        assert!(verify(&github, &h, b"Hello, World?", 0).is_err());
        assert!(verify(&github, &headers(&[("X-Hub-Signature-256", sig)]), body, 0).is_err());
        let gitea = Auth::Hmac {
            header: "X-Gitea-Signature".into(),
            secret: secret.clone(),
            style: HmacStyle::Hex,
        };
        assert_eq!(
            verify(&gitea, &headers(&[("X-Gitea-Signature", sig)]), body, 0),
            Ok(())
        );
        let auto = Auth::Hmac {
            header: "X-Gitea-Signature".into(),
            secret,
            style: HmacStyle::Auto,
        };
        assert_eq!(
            verify(&auto, &headers(&[("X-Gitea-Signature", sig)]), body, 0),
            Ok(())
        );
        // An unsigned Gitea request (no secret on its side) is refused, not waved through.
        assert!(
            verify(
                &auto,
                &headers(&[("X-Gitea-Signature", "sha256=")]),
                body,
                0
            )
            .is_err()
        );
    }

    #[test]
    fn standard_webhooks_auth() {
        let key = signature::decode_whsec("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let auth = Auth::StandardWebhooks {
            key: SecretBytes::new(key),
            tolerance: Duration::from_secs(300),
        };
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let h = headers(&[
            ("webhook-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
            ("webhook-timestamp", "1649367553"),
            (
                "webhook-signature",
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            ),
        ]);
        assert_eq!(verify(&auth, &h, body, 1649367553), Ok(()));
        assert!(
            verify(&auth, &h, body, 1649367553 + 600)
                .unwrap_err()
                .contains("300")
        );
    }
}
