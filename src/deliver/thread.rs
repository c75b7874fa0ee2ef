//! Threads: a delivery that continues a thread updates the message its thread's first event
//! sent, where its channel can change one and the handle still works; else it sends a new
//! message, whose handle the store keeps. One delivery of a thread at a time per process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use tokio::sync::OwnedMutexGuard;

use super::Dispatcher;
use crate::channel::{ChannelDef, DeliveryError, Outgoing, Receipt};
use crate::ids::{EventId, now_ms};
use crate::reason::Reason;
use crate::store::{DeliveryRecord, ThreadRecord};

/// Whose turn it is on each thread being sent: a later event must find the handle the earlier
/// one stored, not send a second first message beside it.
#[derive(Default)]
pub(super) struct Turns {
    held: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Thread `key`'s turn, until dropped.
struct Turn<'a> {
    turns: &'a Turns,
    key: &'a str,
    _guard: OwnedMutexGuard<()>,
}

impl Turns {
    async fn take<'a>(&'a self, key: &'a str) -> Turn<'a> {
        let lock = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            held.entry(key.to_string()).or_default().clone()
        };
        Turn {
            turns: self,
            key,
            _guard: lock.lock_owned().await,
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut held = self
            .turns
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The map's reference and this turn's guard: nobody else waits, the entry can go.
        if held
            .get(self.key)
            .is_some_and(|l| Arc::strong_count(l) <= 2)
        {
            held.remove(self.key);
        }
    }
}

/// What the next delivery of a thread does, given what the store knows of the thread.
#[derive(Debug, PartialEq)]
enum Step<'a> {
    /// The message already shows a newer event: nothing to send.
    Superseded(EventId),
    /// Change the thread's message.
    Update(&'a ThreadRecord, &'a Value),
    /// Send a new message: the first of the thread, or its old one can no longer be changed.
    Start,
}

fn step(known: Option<&ThreadRecord>, event: EventId, now_ms: u64) -> Step<'_> {
    match known {
        Some(t) if t.shows > event => Step::Superseded(t.shows),
        Some(t) if t.expires_ms > now_ms => match &t.handle {
            Some(handle) => Step::Update(t, handle),
            None => Step::Start,
        },
        _ => Step::Start,
    }
}

/// Sends `out` (of `rec`, on thread `key`) as its thread's next message.
pub(super) async fn send(
    dispatcher: &Dispatcher,
    ch: &ChannelDef,
    rec: &DeliveryRecord,
    key: &str,
    out: Outgoing<'_>,
) -> Result<Receipt, DeliveryError> {
    let Some(lasts) = ch.channel.updatable() else {
        let note = json!({"message": "new", "note": ch.thread_note()});
        return Ok(ch.send(&out).await?.noted("thread", note));
    };
    let store = &*dispatcher.store;
    let _turn = dispatcher.threads.take(key).await;
    let known = store
        .thread(key)
        .await
        .map_err(|e| DeliveryError::retryable(Reason::Config, e.to_string()))?;
    let mut why_new = None;
    match step(known.as_ref(), rec.id.event, now_ms()) {
        Step::Superseded(newer) => {
            return Ok(Receipt::default().noted(
                "thread",
                json!({
                    "message": "none",
                    "supersededBy": newer,
                    "note": "the thread's message already shows a later event: nothing sent",
                }),
            ));
        }
        Step::Update(t, handle) => match ch.update(&out, handle).await? {
            Some(mut r) => {
                let updated = ThreadRecord {
                    handle: r.handle.take(),
                    shows: rec.id.event,
                    updates: t.updates + 1,
                    ..t.clone()
                };
                keep(store, key, &updated).await;
                let mut note = json!({"message": "updated", "sentBy": t.sent_by,
                    "updates": updated.updates});
                if updated.handle.is_none() {
                    note["note"] = json!(
                        "the vendor lets a message be changed once: a later event sends a new one"
                    );
                }
                return Ok(r.noted("thread", note));
            }
            None => {
                why_new = Some(format!(
                    "the message {} sent can no longer be changed",
                    t.sent_by
                ))
            }
        },
        Step::Start => {}
    }
    let mut r = ch
        .send(&Outgoing {
            threaded: true,
            ..out
        })
        .await?;
    let mut note = json!({"message": "new"});
    if let Some(handle) = r.handle.take() {
        let expires_ms = now_ms() + lasts.as_millis() as u64;
        let started = ThreadRecord {
            channel: ch.name.clone(),
            handle: Some(handle),
            sent_by: rec.id,
            shows: rec.id.event,
            updates: 0,
            expires_ms,
        };
        keep(store, key, &started).await;
        note["updatableUntilMs"] = json!(expires_ms);
    }
    if let Some(why) = why_new {
        note["note"] = json!(why);
    }
    Ok(r.noted("thread", note))
}

/// Stores a thread's record. The message went out either way: a record that cannot be written
/// only means the next event sends a new message instead of updating this one.
async fn keep(store: &dyn crate::store::Store, key: &str, record: &ThreadRecord) {
    if let Err(e) = store.set_thread(key, record).await {
        tracing::warn!(delivery = %record.sent_by, error = %e,
            "thread message sent, but its handle could not be stored: the next event sends a new one");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DeliveryId;
    use futures_util::FutureExt;

    fn record(shows: u64, handle: Option<Value>, expires_ms: u64) -> ThreadRecord {
        ThreadRecord {
            channel: "c".into(),
            handle,
            sent_by: DeliveryId::default(),
            shows: EventId::generate(shows),
            updates: 0,
            expires_ms,
        }
    }

    #[test]
    fn a_thread_starts_then_updates_while_its_handle_works() {
        let now = 1_000;
        assert_eq!(step(None, EventId::generate(5), now), Step::Start);
        let t = record(5, Some(json!("om_1")), now + 1);
        assert!(matches!(
            step(Some(&t), EventId::generate(6), now),
            Step::Update(_, h) if h == "om_1"
        ));
        // Expired, or used up: a new message.
        assert_eq!(step(Some(&t), EventId::generate(6), now + 1), Step::Start);
        let used = record(5, None, now + 1);
        assert_eq!(step(Some(&used), EventId::generate(6), now), Step::Start);
    }

    #[test]
    fn an_older_event_arriving_late_does_not_bring_the_message_back() {
        let t = record(10, Some(json!("om_1")), u64::MAX);
        let late = EventId::generate(9);
        assert_eq!(step(Some(&t), late, 0), Step::Superseded(t.shows));
        // Even once the handle is used up.
        let used = record(10, None, u64::MAX);
        assert_eq!(step(Some(&used), late, 0), Step::Superseded(used.shows));
    }

    #[tokio::test]
    async fn one_delivery_of_a_thread_at_a_time_and_no_entry_left_behind() {
        let turns = Turns::default();
        let first = turns.take("k").await;
        let other = turns.take("other").await;
        assert!(
            turns.take("k").now_or_never().is_none(),
            "the same thread waits its turn"
        );
        drop(first);
        let second = turns.take("k").await;
        drop((second, other));
        assert!(turns.held.lock().unwrap().is_empty());
    }
}
