//! Digests while planning and sending: the open windows (when each closes, how many events it
//! holds) that give a collected delivery its due time, the key that says which deliveries
//! belong together, and the one message a digest's events are rendered into.
//!
//! Every collected delivery is an ordinary durable delivery, due when its window closes (or at
//! once when the window is full): nothing waits only in memory. When one of them is sent, the
//! worker takes every pending delivery with the same key along, so the window's book can be
//! lost (a restart rebuilds it from the store) without losing or splitting anything but the
//! timing.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde_json::{Value, json};

use crate::catalog::Catalog;
use crate::channel::ChannelDef;
use crate::event::Event;
use crate::message::{Message, Recipients};
use crate::render::RenderCtx;
use crate::route::digest::DigestDef;

/// Windows kept before closed ones are swept out (the first time).
const SWEEP_AT: usize = 4096;

/// The open digest windows of this process, by key.
#[derive(Debug, Default)]
pub struct DigestBook {
    open: Mutex<Windows>,
}

#[derive(Debug, Default)]
struct Windows {
    by_key: HashMap<String, Window>,
    /// Sweep when this many are kept: twice what the last sweep left, so that many windows
    /// open at once cost a sweep now and then, not one per event.
    sweep_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    closes_ms: u64,
    count: u32,
}

/// What joining a window gave one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    pub due_ms: u64,
    /// Events in the window with this one.
    pub count: u32,
    /// The window is full with it: due now, and the next event opens a new one.
    pub full: bool,
}

impl DigestBook {
    /// Adds an event for `key` at `now_ms`: to the open window, or to a new one that closes
    /// `def.window` from now.
    pub fn join(&self, key: &str, now_ms: u64, def: &DigestDef) -> Joined {
        let mut guard = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let windows = &mut *guard;
        if windows.by_key.len() >= windows.sweep_at.max(SWEEP_AT) {
            windows.by_key.retain(|_, w| w.closes_ms > now_ms);
            windows.sweep_at = windows.by_key.len() * 2;
        }
        let open = &mut windows.by_key;
        let window_ms = def.window.as_millis() as u64;
        let w = open
            .entry(key.to_string())
            .and_modify(|w| {
                if w.closes_ms <= now_ms {
                    *w = Window {
                        closes_ms: now_ms + window_ms,
                        count: 0,
                    };
                }
            })
            .or_insert(Window {
                closes_ms: now_ms + window_ms,
                count: 0,
            });
        w.count += 1;
        let joined = Joined {
            due_ms: w.closes_ms,
            count: w.count,
            full: w.count >= def.max,
        };
        if joined.full {
            open.remove(key);
            return Joined {
                due_ms: now_ms,
                ..joined
            };
        }
        joined
    }

    /// Opens the windows the store still holds deliveries for (`(key, due ms)` each), after a
    /// restart: later events join them instead of opening new ones.
    pub fn seed(&self, pending: impl IntoIterator<Item = (String, u64)>, now_ms: u64) {
        let mut guard = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let open = &mut guard.by_key;
        for (key, due_ms) in pending {
            if due_ms <= now_ms {
                continue;
            }
            let w = open.entry(key).or_insert(Window {
                closes_ms: due_ms,
                count: 0,
            });
            w.closes_ms = w.closes_ms.max(due_ms);
            w.count += 1;
        }
    }
}

/// The key of the digest a delivery belongs to: the Route or Subscription, the channel, the
/// recipients and the digest's own key as rendered for the event — hashed, so that it has a
/// fixed size whatever a payload puts into it.
pub fn key(origin: &str, channel: &str, to: &Recipients, rendered: &str) -> String {
    super::hashed(&json!([origin, channel, to, rendered]))
}

/// One event of a digest, and the message it would have been on its own.
pub struct Member<'a> {
    pub event: &'a Event,
    pub message: Option<&'a Message>,
}

/// The one message for a digest of `members` (two or more, oldest first) on `channel`: the
/// digest Template named by the Route or Subscription (`template`), else the one chosen by the
/// first event's type. It sees `events` (each event as an ordinary template sees it, plus its
/// own `message`), `count`, `first`, `last` and `vars`.
pub fn render(
    catalog: &Catalog,
    template: Option<&str>,
    channel: &ChannelDef,
    members: &[Member<'_>],
) -> Result<Message, String> {
    let first = members.first().ok_or("a digest without events")?;
    let t = match template {
        Some(name) => catalog
            .templates
            .get(name)
            .filter(|t| t.digest)
            .ok_or_else(|| format!("digest template {name:?} is not loaded"))?,
        None => catalog
            .digest_template_for(&first.event.ty)
            .ok_or("no digest template for this event type")?,
    };
    let events: Vec<Value> = members
        .iter()
        .map(|m| {
            let mut e = m.event.to_json();
            if let (Value::Object(o), Some(msg)) = (&mut e, m.message) {
                o.insert(
                    "message".into(),
                    serde_json::to_value(msg).unwrap_or_default(),
                );
            }
            e
        })
        .collect();
    let message = t.render(&context(&catalog.vars, events), &channel.name, channel.kind)?;
    Ok(super::fit(message, channel))
}

/// What a digest template sees of `events` (each in CloudEvents JSON, with its own `message`).
pub fn context(vars: &Value, events: Vec<Value>) -> RenderCtx {
    let root = json!({
        "count": events.len(),
        "first": events.first(),
        "last": events.last(),
        "type": events.first().map(|e| e["type"].clone()),
        "vars": vars,
        "events": events,
    });
    RenderCtx::new(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn def(window_s: u64, max: u32) -> DigestDef {
        DigestDef {
            window: Duration::from_secs(window_s),
            key: None,
            max,
            template: None,
        }
    }

    #[test]
    fn a_window_opens_with_its_first_event_and_closes_after_it() {
        let book = DigestBook::default();
        let d = def(900, 50);
        let first = book.join("k", 1_000, &d);
        assert_eq!((first.due_ms, first.count, first.full), (901_000, 1, false));
        let second = book.join("k", 500_000, &d);
        assert_eq!((second.due_ms, second.count), (901_000, 2), "same window");
        let other = book.join("other", 500_000, &d);
        assert_eq!((other.due_ms, other.count), (1_400_000, 1), "keys apart");
        // After it closed, the next event opens a new one.
        let later = book.join("k", 901_000, &d);
        assert_eq!((later.due_ms, later.count), (1_801_000, 1));
    }

    #[test]
    fn a_full_window_is_due_at_once_and_the_next_event_starts_another() {
        let book = DigestBook::default();
        let d = def(900, 3);
        book.join("k", 0, &d);
        book.join("k", 10, &d);
        let third = book.join("k", 20, &d);
        assert_eq!((third.due_ms, third.count, third.full), (20, 3, true));
        let fourth = book.join("k", 30, &d);
        assert_eq!(
            (fourth.due_ms, fourth.count, fourth.full),
            (900_030, 1, false)
        );
    }

    #[test]
    fn closed_windows_are_swept_now_and_then() {
        let book = DigestBook::default();
        let d = def(1, 50);
        for i in 0..SWEEP_AT {
            book.join(&format!("k{i}"), 0, &d);
        }
        // All closed by then: the next join sweeps them out.
        book.join("late", 5_000, &d);
        let open = book.open.lock().unwrap();
        assert_eq!(open.by_key.len(), 1);
        assert_eq!(open.sweep_at, 0, "the next sweep waits for the floor again");
    }

    #[test]
    fn seeding_reopens_windows_the_store_still_holds() {
        let book = DigestBook::default();
        book.seed(
            [
                ("k".to_string(), 60_000),
                ("k".to_string(), 60_000),
                ("gone".to_string(), 5),
            ],
            10,
        );
        let d = def(900, 3);
        let j = book.join("k", 20, &d);
        assert_eq!(
            (j.due_ms, j.count, j.full),
            (20, 3, true),
            "two before the restart"
        );
        let gone = book.join("gone", 20, &d);
        assert_eq!(
            (gone.due_ms, gone.count),
            (900_020, 1),
            "a closed window is not reopened"
        );
    }

    #[test]
    fn keys_differ_by_recipients_and_rendered_key_and_are_bounded() {
        let to = |u: &str| Recipients {
            users: vec![u.into()],
            ..Recipients::default()
        };
        let a = key("r", "c", &to("alice"), "wf-1");
        assert_eq!(a.len(), 64);
        assert_eq!(a, key("r", "c", &to("alice"), "wf-1"));
        assert_ne!(a, key("r", "c", &to("bob"), "wf-1"));
        assert_ne!(a, key("r", "c", &to("alice"), "wf-2"));
        assert_ne!(a, key("r", "d", &to("alice"), "wf-1"));
        assert_eq!(key("r", "c", &to("a"), &"x".repeat(100_000)).len(), 64);
    }
}
