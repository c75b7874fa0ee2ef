//! Group commit: one flush — sled's flush, then a real `fdatasync` of its files — covers every
//! write made before it, so concurrent requests share the cost of durability.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::StoreError;

/// How far durability has come, in write tickets.
#[derive(Debug, Clone, Copy, Default)]
struct Durable {
    /// Every ticket up to this one is on disk.
    upto: u64,
    /// A flush that was to cover tickets up to this one failed.
    failed_upto: u64,
}

struct Shared {
    /// Tickets handed out: one per write that wants to be durable.
    tickets: AtomicU64,
    /// Set when a flush is wanted; the flag and `stop` are guarded together.
    wake: Mutex<Wake>,
    cv: Condvar,
    durable: watch::Sender<Durable>,
    fsyncs: AtomicU64,
}

#[derive(Default)]
struct Wake {
    pending: bool,
    stop: bool,
}

/// Makes writes durable in groups; see the module doc.
pub struct Committer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Committer {
    /// Starts the flusher thread for the sled database in `dir`.
    pub fn start(db: sled::Db, dir: &Path) -> io::Result<Committer> {
        let mut syncer = FileSyncer::open(dir)?;
        let (tx, _) = watch::channel(Durable::default());
        let shared = Arc::new(Shared {
            tickets: AtomicU64::new(0),
            wake: Mutex::new(Wake::default()),
            cv: Condvar::new(),
            durable: tx,
            fsyncs: AtomicU64::new(0),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hookrelay-commit".into())
            .spawn(move || {
                while wait_for_work(&s) {
                    // Every ticket taken before this load belongs to a write that already
                    // happened, so the flush below covers it.
                    let target = s.tickets.load(Ordering::Acquire);
                    let result = db
                        .flush()
                        .map_err(|e| e.to_string())
                        .and_then(|_| syncer.sync().map_err(|e| e.to_string()));
                    s.fsyncs.fetch_add(1, Ordering::Relaxed);
                    s.durable.send_modify(|d| match &result {
                        Ok(()) => d.upto = d.upto.max(target),
                        Err(_) => d.failed_upto = target,
                    });
                    if let Err(e) = result {
                        tracing::error!(error = %e, "store flush failed; requests waiting on it get 503");
                    }
                }
            })?;
        Ok(Committer {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Waits until every write this caller made before calling is on disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let mut rx = self.shared.durable.subscribe();
        let ticket = self.shared.tickets.fetch_add(1, Ordering::AcqRel) + 1;
        self.request();
        let seen = rx
            .wait_for(|d| d.upto >= ticket || d.failed_upto >= ticket)
            .await
            .map_err(|_| StoreError::Closed)?;
        if seen.upto >= ticket {
            Ok(())
        } else {
            Err(StoreError::Io("flush to disk failed".into()))
        }
    }

    /// How many flush + fsync rounds have run.
    pub fn fsyncs(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    fn request(&self) {
        let mut w = self.shared.wake.lock().expect("commit lock");
        w.pending = true;
        self.shared.cv.notify_one();
    }

    /// Runs a last flush and stops the thread.
    pub fn stop(&self) {
        {
            let mut w = self.shared.wake.lock().expect("commit lock");
            w.pending = true;
            w.stop = true;
            self.shared.cv.notify_one();
        }
        if let Some(t) = self.thread.lock().expect("commit lock").take() {
            let _ = t.join();
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Blocks until a flush is wanted; false once stopped with nothing left to flush.
fn wait_for_work(s: &Shared) -> bool {
    let mut w = s.wake.lock().expect("commit lock");
    while !w.pending && !w.stop {
        w = s.cv.wait(w).expect("commit lock");
    }
    if w.pending {
        w.pending = false;
        true
    } else {
        false
    }
}

/// sled 0.34 flushes with `sync_file_range`, which does not reach the disk's cache nor cover
/// the blob files it writes without syncing; this finishes the job.
struct FileSyncer {
    db_file: File,
    blobs: PathBuf,
    synced_blobs: HashSet<OsString>,
}

impl FileSyncer {
    fn open(dir: &Path) -> io::Result<FileSyncer> {
        let db_file = File::open(dir.join("db"))?;
        // The directory entries of the files sled created must be durable too.
        File::open(dir)?.sync_all()?;
        Ok(FileSyncer {
            db_file,
            blobs: dir.join("blobs"),
            synced_blobs: HashSet::new(),
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        self.db_file.sync_data()?;
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut present = HashSet::new();
        let mut new_blob = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !self.synced_blobs.contains(&name) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_data()?,
                    // sled removed it meanwhile: nothing to make durable.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new_blob = true;
            }
            present.insert(name);
        }
        self.synced_blobs = present;
        if new_blob {
            File::open(&self.blobs)?.sync_all()?;
        }
        Ok(())
    }
}
