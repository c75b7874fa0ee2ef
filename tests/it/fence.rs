//! The durability fence: ingress answers 2xx only after the group commit has made the event's
//! batch durable.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use hookrelay::store::StoreError;
use hookrelay::store::engine::KvStore;
use hookrelay::store::fjall::{FjallKv, open_kv};
use hookrelay::store::kv::{Kv, Op, Syncer, Visitor};
use tokio::sync::Notify;

use crate::foundation::{TOKEN, hooks};
use crate::support::*;

/// What the test holds over the engine's syncer.
#[derive(Default)]
struct Gate {
    /// The next sync waits for `open`.
    armed: AtomicBool,
    /// Told when an armed sync has begun (and is waiting).
    entered: Notify,
    open: Mutex<bool>,
    opened: Condvar,
    /// Syncs that have finished.
    synced: AtomicUsize,
    /// The next sync fails (as a full or broken disk would).
    fail: AtomicBool,
}

impl Gate {
    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// fjall whose syncer the test can hold shut.
struct Gated {
    inner: FjallKv,
    gate: Arc<Gate>,
}

impl Kv for Gated {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn scan(&self, from: &[u8], to: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        self.inner.scan(from, to, visit)
    }

    fn write(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.inner.write(ops)
    }

    fn syncer(&self) -> Result<Syncer, StoreError> {
        let mut sync = self.inner.syncer()?;
        let gate = self.gate.clone();
        Ok(Box::new(move || {
            if gate.armed.swap(false, Ordering::SeqCst) {
                gate.entered.notify_one();
                let open = gate.open.lock().unwrap();
                drop(gate.opened.wait_while(open, |open| !*open).unwrap());
            }
            if gate.fail.swap(false, Ordering::SeqCst) {
                return Err(std::io::Error::other("injected: no space left on device"));
            }
            sync()?;
            gate.synced.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }))
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.size_on_disk()
    }

    fn compact(&self) -> Result<(), StoreError> {
        self.inner.compact()
    }
}

/// A relay on a gated store, its receiver and the gate (and the dirs it lives in).
async fn fenced_relay() -> (FakeServer, Arc<Gate>, TestRelay, (Hooks, tempfile::TempDir)) {
    let receiver = FakeServer::start().await;
    let h = hooks(&receiver.base);
    let data = data_dir();
    let gate = Arc::new(Gate::default());
    let inner = open_kv(data.path(), 8 << 20).unwrap();
    let store = Arc::new(
        KvStore::new(Gated {
            inner,
            gate: gate.clone(),
        })
        .unwrap(),
    );
    let relay = hookrelay::Relay::with_store(settings(h.path(), data.path()), store);
    (receiver, gate, TestRelay::serve(relay).await, (h, data))
}

#[tokio::test]
async fn a_2xx_waits_for_its_batch_to_be_flushed() {
    let (receiver, gate, relay, _dirs) = fenced_relay().await;

    gate.armed.store(true, Ordering::SeqCst);
    let body = r#"{"kind":"push","title":"t","user":"u","id":"fenced"}"#;
    let (status, json) = {
        let mut post = std::pin::pin!(relay.post("app", &[TOKEN], body));
        // The event reaches the store and its flush begins (and is held) before any answer.
        tokio::select! {
            (status, _) = &mut post => panic!("answered {status} before the flush began"),
            _ = gate.entered.notified() => {}
            _ = tokio::time::sleep(DEADLINE) => panic!("no flush began"),
        }
        // With the flush held, the relay still answers other requests, but not this one.
        let health = relay
            .client
            .get(format!("{}/healthz", relay.base))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        tokio::select! {
            biased;
            (status, _) = &mut post => panic!("answered {status} while its flush was held"),
            _ = std::future::ready(()) => {}
        }
        assert_eq!(gate.synced.load(Ordering::SeqCst), 0);
        assert!(receiver.requests().is_empty(), "sent before it was durable");
        // Written, but not dispatchable: only the commit makes a delivery due.
        assert_eq!(
            relay.store.next_due_ms(&|_| false).unwrap(),
            None,
            "a delivery became due before its flush"
        );
        gate.release();
        post.await
    };
    assert_eq!(status, 202, "{json}");
    assert!(gate.synced.load(Ordering::SeqCst) >= 1);
    receiver.wait_for(1).await;
    relay.stop().await;
}

#[tokio::test]
async fn a_failed_flush_leaves_nothing_to_send_and_nothing_claimed() {
    let (receiver, gate, relay, _dirs) = fenced_relay().await;

    gate.fail.store(true, Ordering::SeqCst);
    let body = r#"{"kind":"push","title":"t","user":"u","id":"unlucky"}"#;
    let (status, json) = relay.post("app", &[TOKEN], body).await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(relay.store.next_due_ms(&|_| false).unwrap(), None);
    assert_eq!(
        relay.store.counts().unwrap().events,
        0,
        "the write was taken back"
    );
    // The sender retries: it is a new event, not a duplicate of the one it was refused.
    let (status, json) = relay.post("app", &[TOKEN], body).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (202, Some("accepted")),
        "{json}"
    );
    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1, "only the acknowledged copy is sent");
    relay.stop().await;
}
