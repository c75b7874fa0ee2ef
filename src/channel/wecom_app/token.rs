//! WeCom access tokens: fetched with the corp secret, cached per (base URL, corp id, secret)
//! until shortly before `expires_in`, refreshed by one caller while the others wait, and dropped
//! when a call says the token is bad.
//!
//! On a shared store the token is kept for every replica too (a row in the store's shared
//! documents): one replica fetches it, marking the fetch so that the others wait for it instead
//! of each calling `gettoken` (WeCom counts and limits those calls per application).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::classify::GetToken;
use crate::channel::DeliveryError;
use crate::channel::reply::{call, judge};
use crate::ids::now_ms;
use crate::reason::Reason;
use crate::secret::Secret;
use crate::store::Store;

/// Refresh this long before WeCom says the token expires.
const MARGIN: Duration = Duration::from_secs(300);

/// What the shared document said.
enum Seen {
    Token(Secret, u64),
    /// Another replica is fetching.
    Wait,
    /// This one fetches.
    Fetch,
}

struct Cached {
    token: Secret,
    expires_at: Instant,
}

/// The token of one WeCom application.
pub struct TokenCache {
    base: String,
    corp_id: String,
    secret: Secret,
    /// The shared document's key (no secret: a digest of it).
    key: String,
    /// Held while fetching: concurrent callers wait for the one fetch (single flight).
    current: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("corp_id", &self.corp_id)
            .finish_non_exhaustive()
    }
}

/// Caches are shared by every channel with the same credentials, and survive reloads.
static CACHES: LazyLock<Mutex<HashMap<String, Arc<TokenCache>>>> = LazyLock::new(Default::default);

impl TokenCache {
    pub fn shared(base: &str, corp_id: &str, secret: &Secret) -> Arc<TokenCache> {
        let key = format!(
            "{base}\n{corp_id}\n{}",
            hex::encode(Sha256::digest(secret.expose().as_bytes()))
        );
        CACHES
            .lock()
            .expect("token caches lock")
            .entry(key)
            .or_insert_with(|| Arc::new(TokenCache::new(base, corp_id, secret)))
            .clone()
    }

    fn new(base: &str, corp_id: &str, secret: &Secret) -> TokenCache {
        let digest = hex::encode(Sha256::digest(
            format!("{base}\n{corp_id}\n{}", secret.expose()).as_bytes(),
        ));
        TokenCache {
            base: base.to_string(),
            corp_id: corp_id.to_string(),
            secret: secret.clone(),
            key: format!("token:wecom:{}", &digest[..32]),
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// A valid token, fetching one if needed (once across replicas on a shared store).
    pub async fn get(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        shared: Option<&dyn Store>,
    ) -> Result<Secret, DeliveryError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref()
            && c.expires_at > Instant::now()
        {
            return Ok(c.token.clone());
        }
        let (token, ttl) = match shared {
            Some(store) => self.get_shared(store, http, timeout).await?,
            None => self.fetch(http, timeout).await?,
        };
        *current = Some(Cached {
            token: token.clone(),
            expires_at: Instant::now() + ttl.saturating_sub(MARGIN),
        });
        Ok(token)
    }

    /// The replicas' token: taken if valid, else fetched by the one replica that marks the
    /// fetch while the others wait for it (a fetch marked longer than `timeout` ago is taken
    /// over). On a store that shares nothing, fetched here.
    async fn get_shared(
        &self,
        store: &dyn Store,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<(Secret, Duration), DeliveryError> {
        let deadline = now_ms() + 2 * timeout.as_millis() as u64;
        loop {
            let now = now_ms();
            let mut seen = Seen::Fetch;
            let mut step = |v: Option<Value>| {
                let doc = v.unwrap_or(Value::Null);
                let valid = doc["expires_ms"]
                    .as_u64()
                    .filter(|e| *e > now + MARGIN.as_millis() as u64);
                if let (Some(t), Some(e)) = (doc["token"].as_str(), valid) {
                    seen = Seen::Token(Secret::new(t), e);
                    return doc;
                }
                if doc["fetching_until"].as_u64().is_some_and(|f| f > now) {
                    seen = Seen::Wait;
                    return doc;
                }
                seen = Seen::Fetch;
                json!({"fetching_until": now + timeout.as_millis() as u64})
            };
            match store.update_shared(&self.key, &mut step).await {
                Ok(true) => {}
                // Not shared, or the database cannot be asked: this replica fetches its own.
                Ok(false) | Err(_) => return self.fetch(http, timeout).await,
            }
            match seen {
                Seen::Token(t, expires_ms) => {
                    let left = expires_ms.saturating_sub(now_ms());
                    return Ok((t, Duration::from_millis(left)));
                }
                Seen::Wait if now < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Seen::Wait | Seen::Fetch => break,
            }
        }
        let (token, ttl) = self.fetch(http, timeout).await?;
        let expires_ms = now_ms() + ttl.as_millis() as u64;
        let doc = json!({"token": token.expose(), "expires_ms": expires_ms});
        let _ = store.update_shared(&self.key, &mut |_| doc.clone()).await;
        Ok((token, ttl))
    }

    /// Forgets `bad` (unless another caller already replaced it), here and for the replicas.
    pub async fn invalidate(&self, bad: &Secret, shared: Option<&dyn Store>) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| c.token == *bad) {
            *current = None;
        }
        if let Some(store) = shared {
            let mut step = |v: Option<Value>| match v {
                Some(doc) if doc["token"].as_str() == Some(bad.expose()) => Value::Null,
                other => other.unwrap_or(Value::Null),
            };
            let _ = store.update_shared(&self.key, &mut step).await;
        }
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<(Secret, Duration), DeliveryError> {
        let req = http
            .get(format!("{}gettoken", self.base))
            .query(&[
                ("corpid", self.corp_id.as_str()),
                ("corpsecret", self.secret.expose()),
            ])
            .timeout(timeout);
        // The corp secret in the query is a registered credential: the caller's errors are
        // scrubbed of it.
        let reply = call(req).await?;
        judge(&GetToken, &reply)?;
        match reply.body.get("access_token").and_then(|t| t.as_str()) {
            Some(t) if !t.is_empty() => {
                let ttl = reply.int("expires_in").unwrap_or(7200).max(60) as u64;
                Ok((Secret::new(t), Duration::from_secs(ttl)))
            }
            _ => Err(DeliveryError::retryable(
                Reason::Server,
                "unrecognised reply: gettoken answered errcode 0 without a token",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A `gettoken` that counts its calls and answers after a while (so callers overlap).
    async fn gettoken(calls: Arc<AtomicUsize>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/cgi-bin/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let calls = calls.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let body = json!({"errcode": 0, "access_token": format!("tok-{n}"),
                        "expires_in": 7200})
                    .to_string();
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                });
            }
        });
        base
    }

    #[tokio::test]
    async fn replicas_on_a_shared_store_fetch_one_token_between_them() {
        let Some((a, b, _)) = crate::store::postgres::testing::pair().await else {
            return;
        };
        let calls = Arc::new(AtomicUsize::new(0));
        let base = gettoken(calls.clone()).await;
        let secret = Secret::new("corp-secret");
        // Each replica has its own cache for the same application.
        let (on_a, on_b) = (
            TokenCache::new(&base, "corp", &secret),
            TokenCache::new(&base, "corp", &secret),
        );
        let http = reqwest::Client::new();
        let t = Duration::from_secs(5);
        let (x, y) = tokio::join!(on_a.get(&http, t, Some(&a)), on_b.get(&http, t, Some(&b)));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one gettoken for both replicas"
        );
        assert_eq!(x.expose(), y.expose());
        // A token a call called bad is dropped for every replica: the next get fetches anew.
        on_a.invalidate(&x, Some(&a)).await;
        on_b.invalidate(&y, Some(&b)).await;
        let z = on_b.get(&http, t, Some(&b)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_ne!(z.expose(), x.expose());
        assert_eq!(
            on_a.get(&http, t, Some(&a)).await.unwrap().expose(),
            z.expose()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2, "a took b's new token");
    }
}
