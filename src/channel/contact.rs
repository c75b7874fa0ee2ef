//! Finding a person's vendor id through the vendor's contact API (a User known only by mail or
//! mobile, a payload's mail the directory does not know): answers cached per application (the
//! application's [`TokenCache`](super::token::TokenCache) holds them) — a found id for a day,
//! "no such user" for ten minutes — shared by the replicas on a shared store, one lookup at a
//! time per application (a burst of deliveries to the same unknown person asks once), and
//! counted. A lookup the vendor refuses for good (no contact permission) finds no one: that
//! person is reported, the others are sent to.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{DeliveryError, Receipt};
use crate::ids::now_ms;
use crate::message::Recipients;
use crate::store::Store;

/// How long a found id is trusted.
const FOUND_FOR: Duration = Duration::from_secs(24 * 3600);
/// How long "no such user" is: short, so a person added to the directory is found soon.
const MISSING_FOR: Duration = Duration::from_secs(600);

/// `(vendor, result)`: found, not_found, cached, error.
pub type Lookups = Family<Vec<(&'static str, &'static str)>, Counter>;

/// Every lookup of this process, for `/metrics` (`hookrelay_contact_lookups_total`).
pub static LOOKUPS: LazyLock<Lookups> = LazyLock::new(Lookups::default);

/// A person to find: by mail or by mobile number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Mail(String),
    Mobile(String),
}

impl Key {
    /// The mail or number as written.
    pub fn written(&self) -> &str {
        match self {
            Key::Mail(m) | Key::Mobile(m) => m,
        }
    }

    fn text(&self) -> String {
        match self {
            Key::Mail(m) => format!("mail:{}", m.to_lowercase()),
            Key::Mobile(m) => format!("mobile:{m}"),
        }
    }
}

/// The cached answers of one application's contact API.
pub struct Contacts {
    vendor: &'static str,
    /// The application's namespace in the shared documents (its token cache's key: no secret).
    space: String,
    answers: Mutex<HashMap<String, (Option<String>, Instant)>>,
    /// Held while asking the vendor.
    flight: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Contacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contacts")
            .field("vendor", &self.vendor)
            .finish_non_exhaustive()
    }
}

impl Contacts {
    /// The answers of `vendor`'s application `space` names (its token cache's key).
    pub fn new(vendor: &'static str, space: &str) -> Contacts {
        Contacts {
            vendor,
            space: space.to_string(),
            answers: Mutex::default(),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    fn count(&self, result: &'static str) {
        LOOKUPS
            .get_or_create(&vec![("vendor", self.vendor), ("result", result)])
            .inc();
    }

    fn cached(&self, key: &str) -> Option<Option<String>> {
        let answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        answers
            .get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(id, _)| id.clone())
    }

    fn remember(&self, key: String, id: Option<String>, for_: Duration) {
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (id, Instant::now() + for_));
    }

    /// The vendor id of `who`: remembered, or asked with `lookup` (`Ok(None)`: no such user).
    /// An error (the API cannot answer now) is not remembered.
    pub async fn resolve<F, Fut>(
        &self,
        who: &Key,
        shared: Option<&dyn Store>,
        lookup: F,
    ) -> Result<Option<String>, DeliveryError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<String>, DeliveryError>>,
    {
        let key = who.text();
        if let Some(hit) = self.cached(&key) {
            self.count("cached");
            return Ok(hit);
        }
        let _one = self.flight.lock().await;
        // Asked by another caller while this one waited.
        if let Some(hit) = self.cached(&key) {
            self.count("cached");
            return Ok(hit);
        }
        let doc_key = format!(
            "contact:{}:{}",
            self.space,
            &hex::encode(Sha256::digest(key.as_bytes()))[..32]
        );
        if let Some(store) = shared
            && let Some((id, left)) = read_shared(store, &doc_key).await
        {
            self.remember(key, id.clone(), left);
            self.count("cached");
            return Ok(id);
        }
        let found = match lookup().await {
            Ok(found) => found,
            Err(DeliveryError::Permanent { detail, .. }) => {
                tracing::warn!(
                    vendor = self.vendor,
                    detail,
                    "contact lookup refused; the recipient is reported as not found"
                );
                None
            }
            Err(e) => {
                self.count("error");
                return Err(e);
            }
        };
        let for_ = if found.is_some() {
            FOUND_FOR
        } else {
            MISSING_FOR
        };
        self.count(if found.is_some() {
            "found"
        } else {
            "not_found"
        });
        if let Some(store) = shared {
            let doc = json!({"id": found, "expires_ms": now_ms() + for_.as_millis() as u64});
            let _ = store.update_shared(&doc_key, &mut |_| doc.clone()).await;
        }
        self.remember(key, found.clone(), for_);
        Ok(found)
    }
}

/// What the contact API made of a delivery's mails and mobile numbers.
#[derive(Debug, Default)]
pub struct Found {
    /// (mail or mobile, vendor id)
    pub ids: Vec<(String, String)>,
    pub missing: Vec<String>,
}

impl Found {
    /// The receipt, saying who was found through the contact API (`resolved`) and who was not
    /// (`unresolved`: refused recipients, reported and never retried).
    pub fn noted(self, mut r: Receipt) -> Receipt {
        if self.ids.is_empty() && self.missing.is_empty() {
            return r;
        }
        if !self.ids.is_empty() {
            let ids: serde_json::Map<String, Value> =
                self.ids.into_iter().map(|(k, v)| (k, json!(v))).collect();
            r = r.noted("resolved", Value::Object(ids));
        }
        if !self.missing.is_empty() {
            r.rejected += self.missing.len() as u32;
            r = r.noted("unresolved", json!(self.missing));
        }
        r
    }

    /// Why nobody could be sent to, when the contact API found no one.
    pub fn nobody(&self, vendor: &str) -> String {
        match self.missing.is_empty() {
            true => format!("no {vendor} recipient to send to"),
            false => format!(
                "no {vendor} user for {}: not found through the contact API",
                self.missing.join(", ")
            ),
        }
    }
}

impl Contacts {
    /// `to` with every mail and mobile number replaced by the id `lookup` (or the cache)
    /// gives; those nobody knows are left out and reported in [`Found`].
    pub async fn resolve_all<F, Fut>(
        &self,
        to: &Recipients,
        shared: Option<&dyn Store>,
        lookup: F,
    ) -> Result<(Recipients, Found), DeliveryError>
    where
        F: Fn(Key) -> Fut,
        Fut: Future<Output = Result<Option<String>, DeliveryError>>,
    {
        let mut to = to.clone();
        let mut found = Found::default();
        let mails = std::mem::take(&mut to.mails);
        let mobiles = std::mem::take(&mut to.mobiles);
        let wanted = mails
            .into_iter()
            .map(Key::Mail)
            .chain(mobiles.into_iter().map(Key::Mobile));
        for who in wanted {
            match self.resolve(&who, shared, || lookup(who.clone())).await? {
                Some(id) => {
                    if !to.users.contains(&id) {
                        to.users.push(id.clone());
                    }
                    found.ids.push((who.written().to_string(), id));
                }
                None => found.missing.push(who.written().to_string()),
            }
        }
        Ok((to, found))
    }
}

/// Adds to a request's preview who will be looked up when it is sent (`contactLookup`: not
/// part of the request).
pub fn preview_lookups(body: &mut Value, to: &Recipients) {
    let lookup: Vec<&String> = to.mails.iter().chain(&to.mobiles).collect();
    if !lookup.is_empty() {
        body["contactLookup"] = json!(lookup);
    }
}

/// A replica's answer in the shared documents, if one is still valid: the id (or none) and
/// how long it stays valid.
async fn read_shared(store: &dyn Store, key: &str) -> Option<(Option<String>, Duration)> {
    let mut seen = None;
    let mut keep = |v: Option<Value>| {
        seen.clone_from(&v);
        v.unwrap_or(Value::Null)
    };
    if !store.update_shared(key, &mut keep).await.ok()? {
        return None;
    }
    let doc = seen?;
    let left = doc["expires_ms"].as_u64()?.checked_sub(now_ms())?;
    Some((
        doc["id"].as_str().map(str::to_string),
        Duration::from_millis(left),
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn answers_are_remembered_missing_ones_too_and_errors_not() {
        let contacts = Contacts::new("test", "space-1");
        let asked = AtomicUsize::new(0);
        let ask = |answer: Result<Option<String>, DeliveryError>| {
            asked.fetch_add(1, Ordering::SeqCst);
            async move { answer }
        };
        let zs = Key::Mail("ZS@example.com".into());
        let found = contacts
            .resolve(&zs, None, || ask(Ok(Some("ZhangSan".into()))))
            .await;
        assert_eq!(found.unwrap().as_deref(), Some("ZhangSan"));
        let again = contacts
            .resolve(&Key::Mail("zs@EXAMPLE.com".into()), None, || ask(Ok(None)))
            .await;
        assert_eq!(
            again.unwrap().as_deref(),
            Some("ZhangSan"),
            "mail case does not matter"
        );
        let ghost = Key::Mobile("13900000000".into());
        assert_eq!(
            contacts
                .resolve(&ghost, None, || ask(Ok(None)))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            contacts
                .resolve(&ghost, None, || ask(Ok(Some("x".into()))))
                .await
                .unwrap(),
            None
        );
        let err = || {
            ask(Err(DeliveryError::retryable(
                crate::reason::Reason::Server,
                "busy",
            )))
        };
        let flaky = Key::Mail("flaky@example.com".into());
        assert!(contacts.resolve(&flaky, None, err).await.is_err());
        let later = contacts
            .resolve(&flaky, None, || ask(Ok(Some("F".into()))))
            .await;
        assert_eq!(
            later.unwrap().as_deref(),
            Some("F"),
            "an error is asked again"
        );
        // Refused for good (no contact permission): no one, remembered like "no such user".
        let refused = || {
            ask(Err(DeliveryError::permanent(
                crate::reason::Reason::Client,
                "60011 no privilege",
            )))
        };
        let secret = Key::Mail("secret@example.com".into());
        assert_eq!(
            contacts.resolve(&secret, None, refused).await.unwrap(),
            None
        );
        let again = contacts.resolve(&secret, None, || ask(Ok(Some("S".into()))));
        assert_eq!(again.await.unwrap(), None);
        assert_eq!(asked.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn replicas_on_a_shared_store_ask_once_between_them() {
        let Some((a, b, _)) = crate::store::postgres::testing::pair().await else {
            return;
        };
        // Two processes: two caches of one application.
        let (on_a, on_b) = (
            Contacts::new("test", "shared-app"),
            Contacts::new("test", "shared-app"),
        );
        let who = Key::Mail("li@example.com".into());
        let x = on_a
            .resolve(&who, Some(&a), || async { Ok(Some("LiSi".into())) })
            .await;
        assert_eq!(x.unwrap().as_deref(), Some("LiSi"));
        let y = on_b
            .resolve(&who, Some(&b), || async {
                panic!("b asks the vendor although a did")
            })
            .await;
        assert_eq!(y.unwrap().as_deref(), Some("LiSi"));
    }
}
