//! The durability fence: ingress answers 2xx only after the group commit has made the event's
//! batch durable.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use hookrelay::store::fjall::{FjallKv, open_kv};
use hookrelay::store::kv::{Kv, Op, Syncer, Visitor};
use hookrelay::store::kv_store::KvStore;
use hookrelay::store::{Fault, StoreError};
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
    /// Every write and sync fails as on a full disk.
    full: AtomicBool,
    /// Times the engine was opened (once at start, once per recovery).
    opens: AtomicUsize,
}

fn enospc() -> std::io::Error {
    std::io::Error::from_raw_os_error(28)
}

/// The error of a disk that stays full (its words mark this test's log lines).
fn full() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::StorageFull,
        "injected: the disk stays full",
    )
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

    fn scan_rev(&self, from: &[u8], to: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        self.inner.scan_rev(from, to, visit)
    }

    fn write(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if self.gate.full.load(Ordering::SeqCst) {
            return Err(StoreError::Unwritable(Fault::of_io(&full())));
        }
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
            if gate.full.load(Ordering::SeqCst) {
                return Err(full());
            }
            if gate.fail.swap(false, Ordering::SeqCst) {
                return Err(enospc());
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
    let (path, g) = (data.path().to_path_buf(), gate.clone());
    let store = Arc::new(
        KvStore::new(move || {
            g.opens.fetch_add(1, Ordering::SeqCst);
            Ok(Gated {
                inner: open_kv(&path, 8 << 20)?,
                gate: g.clone(),
            })
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
            relay.store.next_due_ms(&Default::default()).await.unwrap(),
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
    assert_eq!(
        relay.store.next_due_ms(&Default::default()).await.unwrap(),
        None
    );
    assert_eq!(
        relay.store.counts().await.unwrap().events,
        0,
        "the write was taken back"
    );
    // Not ready until the store has reopened and proved a write durable.
    let ready = relay.wait_ready(503).await;
    assert_eq!(ready["cause"], "disk full", "{ready}");
    relay.wait_ready(200).await;
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

#[tokio::test]
async fn a_store_that_cannot_write_pauses_dispatch_and_resumes_by_itself() {
    let (receiver, gate, relay, _dirs) = fenced_relay().await;
    // The disk fills while the first delivery is at the receiver: its outcome cannot be recorded.
    let g = gate.clone();
    receiver.set_responder(move |_| {
        g.full.store(true, Ordering::SeqCst);
        Reply::json(200, serde_json::json!({"ok": true}))
    });
    let body = r#"{"kind":"push","title":"t","user":"u","id":"before-full"}"#;
    let (status, json) = relay.post("app", &[TOKEN], body).await;
    assert_eq!(status, 202, "{json}");
    receiver.wait_for(1).await;
    let ready = relay.wait_ready(503).await;
    assert_eq!(ready["cause"], "disk full", "{ready}");
    assert!(
        ready["reason"].as_str().unwrap().contains("disk full"),
        "{ready}"
    );
    let refused = r#"{"kind":"push","title":"t","user":"u","id":"while-full"}"#;
    let (status, json) = relay.post("app", &[TOKEN], refused).await;
    assert_eq!(status, 503, "{json}");
    assert!(
        json["message"].as_str().unwrap().contains("disk full"),
        "{json}"
    );

    // Dispatch waits for a recovery attempt (which fails: still full) instead of re-sending.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while gate.opens.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no recovery attempt"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        receiver.requests().len(),
        1,
        "nothing is sent while outcomes cannot be recorded"
    );

    gate.full.store(false, Ordering::SeqCst);
    receiver.set_responder(|_| Reply::json(200, serde_json::json!({"ok": true})));
    relay.wait_ready(200).await;
    // The unrecorded delivery goes once more (at least once); the refused event never.
    let got = receiver.wait_for(2).await;
    let (id, _) = relay
        .post(
            "app",
            &[TOKEN],
            r#"{"kind":"push","title":"t","user":"u","id":"after"}"#,
        )
        .await;
    assert_eq!(id, 202);
    let got_all = receiver.wait_for(3).await;
    assert!(got.len() >= 2);
    assert!(
        got_all
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("while-full")),
        "an event answered 503 was delivered"
    );
    assert_eq!(got_all.len(), 3, "no storm: {}", got_all.len());
    let logged = logs()
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("the disk stays full"))
        .count();
    assert_eq!(logged, 1, "the condition is logged once, not per attempt");
    relay.stop().await;
}
