//! WeCom access tokens: fetched with the corp secret, cached per (base URL, corp id, secret)
//! until shortly before `expires_in`, refreshed by one caller while the others wait, and dropped
//! when a call says the token is bad.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::classify::GetToken;
use crate::channel::DeliveryError;
use crate::channel::reply::{call, judge};
use crate::reason::Reason;
use crate::secret::Secret;

/// Refresh this long before WeCom says the token expires.
const MARGIN: Duration = Duration::from_secs(300);

struct Cached {
    token: Secret,
    expires_at: Instant,
}

/// The token of one WeCom application.
pub struct TokenCache {
    base: String,
    corp_id: String,
    secret: Secret,
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
            .or_insert_with(|| {
                Arc::new(TokenCache {
                    base: base.to_string(),
                    corp_id: corp_id.to_string(),
                    secret: secret.clone(),
                    current: tokio::sync::Mutex::new(None),
                })
            })
            .clone()
    }

    /// A valid token, fetching one if needed.
    pub async fn get(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<Secret, DeliveryError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref()
            && c.expires_at > Instant::now()
        {
            return Ok(c.token.clone());
        }
        let (token, ttl) = self.fetch(http, timeout).await?;
        *current = Some(Cached {
            token: token.clone(),
            expires_at: Instant::now() + ttl.saturating_sub(MARGIN),
        });
        Ok(token)
    }

    /// Forgets `bad` (unless another caller already replaced it).
    pub async fn invalidate(&self, bad: &Secret) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| c.token == *bad) {
            *current = None;
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
