//! Vendor access tokens (WeCom's `access_token`, Feishu's `tenant_access_token`): fetched by the
//! vendor's [`Issuer`], cached per application and credentials until shortly before they
//! expire, refreshed by one caller while the others wait, and dropped when a call says the
//! token is bad.
//!
//! On a shared store the token is kept for every replica too (a row in the store's shared
//! documents): one replica fetches it, marking the fetch so that the others wait for it instead
//! of each calling the token API (vendors count and limit those calls per application).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::channel::contact::Contacts;
use crate::channel::reply::{ReplyTable, Rounds, VendorReply, call, judge};
use crate::channel::{DeliveryError, Outgoing};
use crate::ids::now_ms;
use crate::reason::Reason;
use crate::secret::{Scrubber, Secret};
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

/// An application at one API origin, with its secret: what a token is issued for.
pub struct App {
    pub origin: String,
    pub id: String,
    pub secret: Secret,
}

/// How one vendor hands out tokens for one application.
#[async_trait]
pub trait Issuer: Send + Sync {
    /// The vendor, in the shared document's key (`wecom`, `feishu`).
    fn vendor(&self) -> &'static str;

    fn app(&self) -> &App;

    /// A new token and how long it is valid. Errors carry no credential (the caller's channel
    /// scrubs what it registered).
    async fn fetch(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<(Secret, Duration), DeliveryError>;
}

/// The token of one application, and what its contact API answered.
pub struct TokenCache {
    issuer: Box<dyn Issuer>,
    /// The shared document's key (no secret: a digest of it).
    key: String,
    /// Held while fetching: concurrent callers wait for the one fetch (single flight).
    current: tokio::sync::Mutex<Option<Cached>>,
    /// People found by mail or mobile, asked with this application's token.
    pub contacts: Contacts,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("vendor", &self.issuer.vendor())
            .finish_non_exhaustive()
    }
}

/// Caches are shared by every channel with the same credentials, and survive reloads.
static CACHES: LazyLock<Mutex<HashMap<String, Arc<TokenCache>>>> = LazyLock::new(Default::default);

impl TokenCache {
    /// The cache of `issuer`'s application, shared with every channel of the same credentials.
    pub fn shared(issuer: impl Issuer + 'static) -> Arc<TokenCache> {
        let cache = TokenCache::new(issuer);
        CACHES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(cache.key.clone())
            .or_insert_with(|| Arc::new(cache))
            .clone()
    }

    fn new(issuer: impl Issuer + 'static) -> TokenCache {
        let app = issuer.app();
        let identity = format!("{}\n{}\n{}", app.origin, app.id, app.secret.expose());
        // Only a digest of the credentials is kept.
        let digest = hex::encode(Sha256::digest(identity.as_bytes()));
        let key = format!("token:{}:{}", issuer.vendor(), &digest[..32]);
        TokenCache {
            contacts: Contacts::new(issuer.vendor(), &key),
            key,
            issuer: Box::new(issuer),
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
            None => self.issuer.fetch(http, timeout).await?,
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
                Ok(false) | Err(_) => return self.issuer.fetch(http, timeout).await,
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
        let (token, ttl) = self.issuer.fetch(http, timeout).await?;
        let expires_ms = now_ms() + ttl.as_millis() as u64;
        let doc = json!({"token": token.expose(), "expires_ms": expires_ms});
        let _ = store.update_shared(&self.key, &mut |_| doc.clone()).await;
        Ok((token, ttl))
    }

    /// Sends the request `build` makes with a valid token, judged by `table`. A token the vendor
    /// refuses is dropped and the request made once more with a fresh one. The token is a
    /// credential fetched at run time, not one registered when the channel was built: errors
    /// are scrubbed of it here.
    pub async fn send<T: ReplyTable>(
        &self,
        http: &reqwest::Client,
        out: &Outgoing<'_>,
        table: &T,
        build: impl Fn(&Secret) -> reqwest::RequestBuilder,
    ) -> Result<VendorReply, DeliveryError> {
        let mut rounds = Rounds::default();
        loop {
            let token = self.get(http, out.timeout, out.shared).await?;
            let secrets = Scrubber::new([token.expose()]);
            let reply = call(build(&token))
                .await
                .map_err(|e| e.scrubbed(&secrets))?;
            match rounds.judge(table, reply) {
                Ok(Some(reply)) => return Ok(reply),
                // Refused: drop it, so the next round fetches another.
                Ok(None) => self.invalidate(&token, out.shared).await,
                Err(e) => return Err(e.scrubbed(&secrets)),
            }
        }
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
}

/// What a token API answered to `req`: judged by `table`, the token under `field` and its
/// lifetime in seconds under `ttl` (7200 if missing, at least 60).
pub async fn issued<T: ReplyTable>(
    req: reqwest::RequestBuilder,
    table: &T,
    (field, ttl): (&str, &str),
) -> Result<(Secret, Duration), DeliveryError> {
    let reply = call(req).await?;
    judge(table, &reply)?;
    match reply.body.get(field).and_then(Value::as_str) {
        Some(t) if !t.is_empty() => {
            let ttl = reply.int(ttl).unwrap_or(7200).max(60) as u64;
            Ok((Secret::new(t), Duration::from_secs(ttl)))
        }
        _ => Err(DeliveryError::retryable(
            Reason::Server,
            format!("unrecognised reply: the token API answered success without {field}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// An issuer that counts its fetches and answers after a while (so callers overlap).
    struct Counting(Arc<AtomicUsize>, App);

    fn counting(calls: &Arc<AtomicUsize>) -> Counting {
        let app = App {
            origin: "http://vendor".into(),
            id: "app".into(),
            secret: Secret::new("secret"),
        };
        Counting(calls.clone(), app)
    }

    #[async_trait]
    impl Issuer for Counting {
        fn vendor(&self) -> &'static str {
            "test"
        }

        fn app(&self) -> &App {
            &self.1
        }

        async fn fetch(
            &self,
            _: &reqwest::Client,
            _: Duration,
        ) -> Result<(Secret, Duration), DeliveryError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok((Secret::new(format!("tok-{n}")), Duration::from_secs(7200)))
        }
    }

    #[tokio::test]
    async fn callers_at_once_wait_for_one_fetch_and_a_bad_token_is_fetched_anew() {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = TokenCache::new(counting(&calls));
        let http = reqwest::Client::new();
        let t = Duration::from_secs(5);
        let (x, y) = tokio::join!(cache.get(&http, t, None), cache.get(&http, t, None));
        assert_eq!(x.unwrap().expose(), y.unwrap().expose());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "single flight");
        cache.invalidate(&Secret::new("tok-0"), None).await;
        assert_eq!(cache.get(&http, t, None).await.unwrap().expose(), "tok-1");
        assert!(!format!("{cache:?}").contains("secret"));
    }

    #[tokio::test]
    async fn replicas_on_a_shared_store_fetch_one_token_between_them() {
        let Some((a, b, _)) = crate::store::postgres::testing::pair().await else {
            return;
        };
        let calls = Arc::new(AtomicUsize::new(0));
        // Each replica has its own cache for the same application.
        let (on_a, on_b) = (
            TokenCache::new(counting(&calls)),
            TokenCache::new(counting(&calls)),
        );
        let http = reqwest::Client::new();
        let t = Duration::from_secs(5);
        let (x, y) = tokio::join!(on_a.get(&http, t, Some(&a)), on_b.get(&http, t, Some(&b)));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one fetch for both replicas"
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
