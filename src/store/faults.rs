//! Tests of a store that cannot write, run on each engine: injected failures, and a real full
//! file system (a small tmpfs, where the test may mount one).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::kv::{Kv, Op, Syncer, View, Visitor};
use super::kv_store::KvStore;
use super::suite::{delivery, done, idle, new_event};
use super::*;

/// Opens an engine in a directory with a cache size (each engine's `open_kv`).
pub type OpenKv<K> = fn(&Path, u64) -> Result<K, StoreError>;

/// What the test switches on an engine.
#[derive(Default)]
pub struct Switches {
    /// Writes and flushes fail as on a full disk.
    full: AtomicBool,
    /// Only flushes fail (the write reached the engine, its `fdatasync` did not succeed).
    sync_fails: AtomicBool,
}

fn enospc() -> std::io::Error {
    std::io::Error::from_raw_os_error(28)
}

/// An engine whose writes and flushes fail while the test says so.
pub struct Faulty<K> {
    inner: K,
    switches: Arc<Switches>,
}

impl<K: Kv> Kv for Faulty<K> {
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
        if self.switches.full.load(Ordering::SeqCst) {
            return Err(StoreError::Unwritable(Fault::of_io(&enospc())));
        }
        self.inner.write(ops)
    }

    fn syncer(&self) -> Result<Syncer, StoreError> {
        let mut sync = self.inner.syncer()?;
        let s = self.switches.clone();
        Ok(Box::new(move || {
            if s.full.load(Ordering::SeqCst) || s.sync_fails.load(Ordering::SeqCst) {
                return Err(enospc());
            }
            sync()
        }))
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.size_on_disk()
    }

    fn compact(&self) -> Result<(), StoreError> {
        self.inner.compact()
    }

    fn snapshot(&self) -> Option<Box<dyn View>> {
        self.inner.snapshot()
    }
}

fn is_disk_full(e: &StoreError) -> bool {
    matches!(e, StoreError::Unwritable(f) if f.cause == Cause::DiskFull)
}

/// Writes refused while the disk is full (a 503 for ingest, no outcome recorded), no
/// recovery while it still is, everything acknowledged there after it; a write whose flush
/// failed is taken back.
pub async fn a_store_that_cannot_write_refuses_until_it_recovers<K: Kv>(open: OpenKv<K>) {
    let dir = tempfile::tempdir().unwrap();
    let switches = Arc::new(Switches::default());
    let (path, s2) = (dir.path().to_path_buf(), switches.clone());
    let store = KvStore::new(move || {
        Ok(Faulty {
            inner: open(&path, 8 << 20)?,
            switches: s2.clone(),
        })
    })
    .unwrap();
    let s: &dyn Store = &store;
    s.enqueue(vec![new_event("a", 0, vec![delivery(0)])])
        .await
        .unwrap();
    let leased = s.lease_due(0, 10, &idle()).await.unwrap();
    assert_eq!(leased.len(), 1);

    switches.full.store(true, Ordering::SeqCst);
    let refused = s.enqueue(vec![new_event("b", 1, vec![delivery(1)])]).await;
    assert!(refused.as_ref().is_err_and(is_disk_full), "{refused:?}");
    let fault = s.fault().expect("the store says it cannot write");
    assert_eq!(fault.cause, Cause::DiskFull);
    assert!(fault.to_string().starts_with("disk full"), "{fault}");
    let recorded = s.complete(&leased[0], done(Ending::Delivered), 2).await;
    assert!(recorded.is_err(), "an outcome is not recorded");
    let still = s.recover().await;
    assert!(still.as_ref().is_err_and(is_disk_full), "{still:?}");
    assert!(s.fault().is_some(), "still full: still refusing");

    switches.full.store(false, Ordering::SeqCst);
    s.recover().await.unwrap();
    assert!(s.fault().is_none());
    let again = s.lease_due(10, 10, &idle()).await.unwrap();
    assert_eq!(again.len(), 1, "the unrecorded delivery is due again");
    assert_eq!(again[0].record.id, leased[0].record.id);
    assert_eq!(
        s.counts().await.unwrap().events,
        1,
        "the refused event was never stored"
    );

    // A write that reached the engine but whose flush failed: answered 503, so taken back.
    switches.sync_fails.store(true, Ordering::SeqCst);
    let unflushed = s.enqueue(vec![new_event("c", 3, vec![delivery(3)])]).await;
    assert!(unflushed.is_err());
    switches.sync_fails.store(false, Ordering::SeqCst);
    s.recover().await.unwrap();
    assert_eq!(
        s.counts().await.unwrap().events,
        1,
        "the unflushed event is gone"
    );
    assert_eq!(s.lease_due(10, 10, &idle()).await.unwrap().len(), 1);
    // Its sender's retry is a new event, not a duplicate of the refused one.
    let retried = s.enqueue(vec![new_event("c", 4, vec![delivery(4)])]).await;
    assert!(matches!(retried.unwrap()[0], Enqueued::Accepted { .. }));
    s.close().await.unwrap();
}

/// A tmpfs mounted for a test, unmounted when dropped (before its mount point is removed).
struct Tmpfs {
    path: PathBuf,
    _mount_point: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` where mounting is not permitted (not root, no mount namespace).
    fn mount(bytes: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs {
            path: dir.path().to_path_buf(),
            _mount_point: dir,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.path)
            .status();
    }
}

/// Fills the file system under `dir` until a write fails with ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0x5a; 64 << 10];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    path
}

/// On a real full file system: ingest is refused as "disk full" (the engine's own error),
/// the store recovers by itself once space is freed, and nothing acknowledged is lost.
pub async fn a_full_file_system_is_survived<K: Kv>(open: OpenKv<K>) {
    let Some(fs) = Tmpfs::mount(48 << 20) else {
        eprintln!("not run here: mounting a tmpfs needs root (CI runs as root)");
        return;
    };
    let data = fs.path.join("data");
    let store = KvStore::new(move || open(&data, 4 << 20)).unwrap();
    let s: &dyn Store = &store;
    s.enqueue(vec![new_event("before", 0, vec![delivery(0)])])
        .await
        .unwrap();
    let filler = fill(&fs.path);
    let mut refused = None;
    for i in 0..10_000u64 {
        // Values that do not compress, so the engine must write what it takes.
        let mut e = new_event(&format!("e{i}"), i, vec![delivery(i)]);
        e.event.data = crate::event::Data::Json(serde_json::json!({
            "noise": (0..64).map(|_| format!("{:016x}", rand::random::<u64>())).collect::<Vec<_>>()
        }));
        if let Err(e) = s.enqueue(vec![e]).await {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.expect("a full file system refuses a write");
    assert!(is_disk_full(&refused), "{refused}");
    std::fs::remove_file(filler).unwrap();
    s.recover().await.unwrap();
    assert!(s.fault().is_none());
    s.enqueue(vec![new_event("after", 20_000, vec![delivery(0)])])
        .await
        .unwrap();
    let mut ids = Vec::new();
    for l in s.lease_due(u64::MAX / 2, 100_000, &idle()).await.unwrap() {
        if let Some(e) = s.event(&l.record.id.event).await.unwrap() {
            ids.push(e.event.id);
        }
    }
    assert!(
        ids.contains(&"before".to_string()),
        "acknowledged before the disk filled"
    );
    assert!(ids.contains(&"after".to_string()));
    s.close().await.unwrap();
}
