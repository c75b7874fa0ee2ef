//! Knative sender identity: the `Authorization: Bearer <JWT>` that Knative Eventing sends when
//! `authentication-oidc` is on, checked against a JWKS (signature, issuer, audience, expiry and,
//! if configured, the sending service account).

use std::collections::HashSet;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Signature algorithms accepted: asymmetric only. A shared-secret algorithm (HS256) checked
/// against a public key set would let anyone who has the public key sign.
const ACCEPTED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// One Source's OIDC check.
pub struct Verifier {
    /// The keys by id; replaced whole when the issuer's set is fetched again.
    keys: std::sync::RwLock<Vec<(Option<String>, DecodingKey)>>,
    /// Where the keys come from when they are not given: the issuer's discovery document.
    discovery: Option<Discovery>,
    issuer: String,
    audience: String,
    /// Allowed `sub` values (`system:serviceaccount:<ns>:<name>`); empty: any.
    subjects: Vec<String>,
    leeway_secs: u64,
}

/// Fetching the issuer's keys: once at the first token, again when a token names a key not in
/// the set (the issuer rotated), one fetch at a time and within a budget.
struct Discovery {
    url: String,
    http: reqwest::Client,
    /// A bearer token for the issuer, read at each fetch (a projected service-account token
    /// rotates): the Kubernetes API server serves its discovery to authenticated callers only.
    token_file: Option<std::path::PathBuf>,
    budget: tokio::sync::Mutex<Budget>,
}

/// How the issuer is reached: a client (with the issuer's CA, if it has its own) and a token.
pub struct Reach {
    pub http: reqwest::Client,
    pub token_file: Option<std::path::PathBuf>,
}

/// Fetches allowed: [`BURST`] at once, then one per [`REFILL`] (a flood of tokens with made-up
/// key ids must not become a flood of requests to the issuer).
struct Budget {
    tokens: f64,
    at: std::time::Instant,
}

const BURST: f64 = 3.0;
const REFILL: std::time::Duration = std::time::Duration::from_secs(10);

impl Budget {
    fn take(&mut self) -> bool {
        let now = std::time::Instant::now();
        let earned = (now - self.at).as_secs_f64() / REFILL.as_secs_f64();
        self.tokens = (self.tokens + earned).min(BURST);
        self.at = now;
        let ok = self.tokens >= 1.0;
        if ok {
            self.tokens -= 1.0;
        }
        ok
    }
}
/// Longest a discovery document or key set may be.
const MAX_DOCUMENT: usize = 1 << 20;

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys().len())
            .field("discovery", &self.discovery.as_ref().map(|d| &d.url))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("subjects", &self.subjects)
            .finish()
    }
}

#[derive(Deserialize)]
struct Claims {
    /// Required (the decoder checks); optional here so that its absence is named, not a
    /// parse error.
    exp: Option<i64>,
    nbf: Option<i64>,
    sub: Option<String>,
}

/// Who may send and how tokens are checked, whatever the keys' origin.
pub struct Rules {
    pub issuer: String,
    pub audience: String,
    pub subjects: Vec<String>,
    pub leeway_secs: u64,
}

/// The keys of a JWK Set document.
fn parse_keys(jwks: &str) -> Result<Vec<(Option<String>, DecodingKey)>, String> {
    let set: JwkSet = serde_json::from_str(jwks).map_err(|e| format!("not a JWK Set: {e}"))?;
    let mut keys = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {i}: {e}"))?;
        keys.push((jwk.common.key_id.clone(), key));
    }
    if keys.is_empty() {
        return Err("the JWK Set has no keys".into());
    }
    Ok(keys)
}

impl Verifier {
    /// A verifier for tokens signed by a key of `jwks` (a JWK Set document).
    pub fn new(jwks: &str, rules: Rules) -> Result<Verifier, String> {
        Ok(Verifier::with(parse_keys(jwks)?, None, rules))
    }

    /// A verifier whose keys are fetched from the issuer's discovery document at `url`
    /// (`…/.well-known/openid-configuration`, whose `jwks_uri` names the key set).
    pub fn discovered(url: String, reach: Reach, rules: Rules) -> Verifier {
        let discovery = Discovery {
            url,
            http: reach.http,
            token_file: reach.token_file,
            budget: tokio::sync::Mutex::new(Budget {
                tokens: BURST,
                at: std::time::Instant::now(),
            }),
        };
        Verifier::with(Vec::new(), Some(discovery), rules)
    }

    fn with(
        keys: Vec<(Option<String>, DecodingKey)>,
        discovery: Option<Discovery>,
        r: Rules,
    ) -> Verifier {
        Verifier {
            keys: std::sync::RwLock::new(keys),
            discovery,
            issuer: r.issuer,
            audience: r.audience,
            subjects: r.subjects,
            leeway_secs: r.leeway_secs,
        }
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, Vec<(Option<String>, DecodingKey)>> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn knows(&self, kid: Option<&str>) -> bool {
        let keys = self.keys();
        match kid {
            Some(kid) => keys.iter().any(|(id, _)| id.as_deref() == Some(kid)),
            None => !keys.is_empty(),
        }
    }

    /// Before [`Verifier::verify`]: fetches the issuer's keys if the token names one this
    /// verifier does not hold (and it fetches them at all). Failures are logged; the check
    /// then refuses the token.
    pub async fn prepare(&self, authorization: Option<&str>) {
        let Some(d) = &self.discovery else { return };
        let Some(token) = authorization.and_then(crate::signature::bearer_token) else {
            return;
        };
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return;
        };
        if self.knows(header.kid.as_deref()) {
            return;
        }
        let mut budget = d.budget.lock().await;
        // Another request may have fetched them while this one waited.
        if self.knows(header.kid.as_deref()) || !budget.take() {
            return;
        }
        match fetch_keys(d).await {
            Ok(keys) => {
                tracing::info!(issuer = %self.issuer, keys = keys.len(), "OIDC keys fetched");
                *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "OIDC keys could not be fetched")
            }
        }
    }

    /// Checks the `Authorization` header's token at `now_secs`; the error says what was wrong.
    pub fn verify(&self, authorization: Option<&str>, now_secs: i64) -> Result<(), String> {
        let token = authorization
            .and_then(crate::signature::bearer_token)
            .ok_or("missing Authorization: Bearer token")?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            // `alg: none` is not an algorithm the parser knows: it ends here too.
            "the bearer token is not a signed JWT".to_string()
        })?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(format!("token algorithm {:?} is not accepted", header.alg));
        }
        let keys = self.keys();
        let candidates: Vec<&DecodingKey> = match &header.kid {
            Some(kid) => keys
                .iter()
                .filter(|(id, _)| id.as_deref() == Some(kid))
                .map(|(_, k)| k)
                .collect(),
            None => keys.iter().map(|(_, k)| k).collect(),
        };
        if candidates.is_empty() {
            return Err("token signed by a key not in the JWK Set".into());
        }
        let mut validation = Validation::new(header.alg);
        // Time is checked below against the relay's clock, with the Source's leeway.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = HashSet::from(["exp", "iss", "aud"].map(String::from));
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        let mut last = String::new();
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return self.check(&data.claims, now_secs),
                Err(e) => last = describe(&e),
            }
        }
        Err(last)
    }

    fn check(&self, c: &Claims, now_secs: i64) -> Result<(), String> {
        let leeway = self.leeway_secs as i64;
        let exp = c.exp.ok_or("token has no exp claim")?;
        if exp + leeway < now_secs {
            return Err("token expired".into());
        }
        if c.nbf.is_some_and(|nbf| nbf - leeway > now_secs) {
            return Err("token not yet valid".into());
        }
        if !self.subjects.is_empty()
            && !c
                .sub
                .as_ref()
                .is_some_and(|s| self.subjects.iter().any(|a| a == s))
        {
            return Err("token subject is not an allowed sender".into());
        }
        Ok(())
    }
}

/// The discovery document, then the key set it names.
async fn fetch_keys(d: &Discovery) -> Result<Vec<(Option<String>, DecodingKey)>, String> {
    #[derive(Deserialize)]
    struct Configuration {
        jwks_uri: String,
    }
    let token = match &d.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("the issuer token file {}: {e}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let token = token.as_deref();
    let config: Configuration = serde_json::from_slice(&get(&d.http, &d.url, token).await?)
        .map_err(|e| format!("the discovery document has no jwks_uri: {e}"))?;
    let jwks = get(&d.http, &config.jwks_uri, token).await?;
    parse_keys(&String::from_utf8_lossy(&jwks))
}

async fn get(http: &reqwest::Client, url: &str, token: Option<&str>) -> Result<Vec<u8>, String> {
    let shown = url.split('?').next().unwrap_or_default();
    let mut req = http.get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("{shown}: {}", e.without_url()))?;
    if !resp.status().is_success() {
        return Err(format!("{shown}: HTTP {}", resp.status().as_u16()));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("{shown}: {}", e.without_url()))?;
    if body.len() > MAX_DOCUMENT {
        return Err(format!("{shown}: over {MAX_DOCUMENT} bytes"));
    }
    Ok(body.to_vec())
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => "token signature does not verify".into(),
        ErrorKind::InvalidIssuer => "token issuer is not accepted".into(),
        ErrorKind::InvalidAudience => "token audience is not this relay".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("token has no {c} claim"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
            "token algorithm does not match its key".into()
        }
        _ => "the bearer token is not a valid JWT".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const ISS: &str = "https://kubernetes.default.svc.cluster.local";
    const AUD: &str = "hookrelay.acp";
    const SENDER: &str = "system:serviceaccount:knative-eventing:eventing-controller";

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/oidc/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn verifier(subjects: &[&str]) -> Verifier {
        Verifier::new(&fixture("jwks.json"), rules(subjects)).unwrap()
    }

    fn rules(subjects: &[&str]) -> Rules {
        Rules {
            issuer: ISS.into(),
            audience: AUD.into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            leeway_secs: 30,
        }
    }

    fn claims() -> serde_json::Value {
        json!({"iss": ISS, "aud": AUD, "sub": SENDER, "exp": NOW + 300, "iat": NOW})
    }

    fn rsa(kid: &str, claims: &serde_json::Value) -> String {
        let key = EncodingKey::from_rsa_pem(fixture("rsa.pem").as_bytes()).unwrap();
        let header = Header {
            kid: Some(kid.into()),
            ..Header::new(Algorithm::RS256)
        };
        encode(&header, claims, &key).unwrap()
    }

    fn ec(claims: &serde_json::Value) -> String {
        let key = EncodingKey::from_ec_pem(fixture("ec.pem").as_bytes()).unwrap();
        let header = Header {
            kid: Some("ec-1".into()),
            ..Header::new(Algorithm::ES256)
        };
        encode(&header, claims, &key).unwrap()
    }

    fn bearer(t: &str) -> Option<String> {
        Some(format!("Bearer {t}"))
    }

    fn check(v: &Verifier, t: &str) -> Result<(), String> {
        v.verify(bearer(t).as_deref(), NOW)
    }

    #[test]
    fn rsa_and_ec_tokens_from_the_key_set_pass() {
        let v = verifier(&[SENDER]);
        assert_eq!(check(&v, &rsa("rsa-1", &claims())), Ok(()));
        assert_eq!(check(&v, &ec(&claims())), Ok(()));
    }

    #[test]
    fn a_token_is_refused_for_what_is_wrong_with_it() {
        let v = verifier(&[]);
        let with = |k: &str, val: serde_json::Value| {
            let mut c = claims();
            c[k] = val;
            c
        };
        let refused = |t: String, why: &str| {
            let e = check(&v, &t).unwrap_err();
            assert!(e.contains(why), "{e:?} should say {why:?}");
        };
        refused(
            rsa("rsa-1", &with("aud", json!("someone-else"))),
            "audience",
        );
        refused(rsa("rsa-1", &with("iss", json!("https://evil"))), "issuer");
        refused(rsa("rsa-1", &with("exp", json!(NOW - 31))), "expired");
        refused(rsa("rsa-1", &with("nbf", json!(NOW + 31))), "not yet valid");
        refused(rsa("unknown", &claims()), "not in the JWK Set");
        let mut no_exp = claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        refused(rsa("rsa-1", &no_exp), "exp");
        // Signed by a key outside the set, under a kid of the set.
        let other = EncodingKey::from_rsa_pem(fixture("other-rsa.pem").as_bytes()).unwrap();
        let header = Header {
            kid: Some("rsa-1".into()),
            ..Header::new(Algorithm::RS256)
        };
        refused(encode(&header, &claims(), &other).unwrap(), "signature");
        // An RSA key's kid on an EC signature.
        let key = EncodingKey::from_ec_pem(fixture("ec.pem").as_bytes()).unwrap();
        let header = Header {
            kid: Some("rsa-1".into()),
            ..Header::new(Algorithm::ES256)
        };
        assert!(check(&v, &encode(&header, &claims(), &key).unwrap()).is_err());
        // Within the leeway is fine.
        assert_eq!(
            check(&v, &rsa("rsa-1", &with("exp", json!(NOW - 29)))),
            Ok(())
        );
    }

    #[test]
    fn unsigned_and_shared_secret_tokens_are_refused() {
        let v = verifier(&[]);
        let b64 = |v: serde_json::Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let none = format!("{}.{}.", b64(json!({"alg": "none"})), b64(claims()));
        assert!(check(&v, &none).unwrap_err().contains("not a signed JWT"));
        let hs = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"public knowledge"),
        )
        .unwrap();
        assert!(check(&v, &hs).unwrap_err().contains("not accepted"));
        assert!(v.verify(None, NOW).unwrap_err().contains("missing"));
        assert!(v.verify(Some("Basic abc"), NOW).is_err());
        assert!(check(&v, "not-a-jwt").is_err());
    }

    #[test]
    fn only_allowed_subjects_may_send() {
        let v = verifier(&["system:serviceaccount:acp:apiserversource"]);
        let e = check(&v, &rsa("rsa-1", &claims())).unwrap_err();
        assert!(e.contains("subject"), "{e}");
    }

    #[test]
    fn a_bad_key_set_is_an_error_not_a_panic() {
        for bad in ["", "{}", r#"{"keys": []}"#, r#"{"keys": [{"kty": "RSA"}]}"#] {
            assert!(Verifier::new(bad, rules(&[])).is_err(), "{bad}");
        }
    }
}
