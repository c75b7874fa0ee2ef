//! The data dir's marker, `hookrelay.marker`: which engine wrote the store and how many ingest
//! writes it acknowledged, so that a store whose files were deleted, emptied or cut short by a
//! damaged journal is refused instead of opened short (see `inspect.rs`).
//!
//! It is replaced atomically (write, `fsync`, rename, `fsync` of the directory) about once a
//! second while writes are acknowledged, and at close. It only ever lags the store — a number
//! is written after the write it counts was durable — so a crash never makes it claim more
//! than the files hold.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::StoreError;

/// The marker's file name inside the data dir.
pub const FILE: &str = "hookrelay.marker";
/// The marker's own format.
const FORMAT: u32 = 1;
/// How often a changed count is written down.
const EVERY: Duration = Duration::from_secs(1);

/// What the marker says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub format: u32,
    /// `fjall` or `sled`.
    pub engine: String,
    /// The relay version that created the store.
    pub created_by: String,
    pub created_ms: u64,
    /// The number of the last ingest write acknowledged durable (`0`: none yet).
    pub acknowledged: u64,
}

impl Marker {
    pub fn new(engine: &str, acknowledged: u64) -> Marker {
        Marker {
            format: FORMAT,
            engine: engine.to_string(),
            created_by: format!("hookrelay {}", env!("CARGO_PKG_VERSION")),
            created_ms: crate::ids::now_ms(),
            acknowledged,
        }
    }

    /// The marker in `dir`, if there is one; an unreadable one is an error naming it.
    pub fn read(dir: &Path) -> Result<Option<Marker>, StoreError> {
        let path = dir.join(FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Io(format!("{}: {e}", path.display()))),
        };
        let marker: Marker = serde_json::from_slice(&text).map_err(|e| {
            StoreError::Damaged(format!("{}: not a hookrelay marker ({e})", path.display()))
        })?;
        if marker.format > FORMAT {
            return Err(StoreError::Damaged(format!(
                "{}: marker format {} is newer than this relay reads ({FORMAT}); use a newer hookrelay",
                path.display(),
                marker.format
            )));
        }
        Ok(Some(marker))
    }

    /// Replaces the marker in `dir` atomically and durably.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(FILE))?;
        std::fs::File::open(dir)?.sync_all()
    }
}

/// Writes the acknowledged count into the marker while the store is open.
pub struct Keeper {
    shared: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

impl Keeper {
    /// Starts keeping `marker` in `dir` up to date with `acked`.
    pub fn start(
        dir: PathBuf,
        mut marker: Marker,
        acked: Arc<AtomicU64>,
    ) -> std::io::Result<Keeper> {
        let shared = Arc::new((Mutex::new(false), Condvar::new()));
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hookrelay-marker".into())
            .spawn(move || {
                let (stop, cv) = &*s;
                let mut stopped = stop.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    let now = acked.load(Ordering::Acquire);
                    if now > marker.acknowledged {
                        marker.acknowledged = now;
                        if let Err(e) = marker.write(&dir) {
                            // Not fatal: the marker lags, which only weakens the check at open.
                            tracing::warn!(error = %e, dir = %dir.display(), "cannot update the data dir's marker");
                        }
                    }
                    if *stopped {
                        return;
                    }
                    stopped = cv
                        .wait_timeout(stopped, EVERY)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            })?;
        Ok(Keeper { shared, thread })
    }

    /// Writes the marker a last time and stops.
    pub fn stop(self) {
        *self.shared.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.shared.1.notify_all();
        let _ = self.thread.join();
    }
}
