//! The sled engine (`store = "sled"`): one tree. sled 0.34 flushes with `sync_file_range`,
//! which reaches neither the disk's cache nor the blob files it writes unsynced, so its syncer
//! follows sled's flush with a real `fdatasync` of those files.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::kv::{Kv, Op, Syncer, Visitor};
use super::kv_store::KvStore;
use super::{Fault, StoreError};

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// sled as a [`Kv`].
pub struct SledKv {
    db: sled::Db,
    tree: sled::Tree,
    dir: PathBuf,
}

/// Opens (or creates) a sled store in `dir` with a page cache of `cache_bytes`.
pub fn open(dir: &Path, cache_bytes: u64) -> Result<KvStore<SledKv>, StoreError> {
    let dir = dir.to_path_buf();
    KvStore::new(move || open_kv(&dir, cache_bytes))
}

/// Opens (or creates) the sled engine alone.
pub fn open_kv(dir: &Path, cache_bytes: u64) -> Result<SledKv, StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        .flush_every_ms(Some(1000));
    // A sled instance this process just dropped (a recovery, a restart in tests) releases its
    // file lock from a background thread, a moment later: wait for it, briefly. Another
    // process holding the lock still fails, after the wait.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let opened = loop {
        // sled 0.34 can panic on damaged files; a bad data dir must be a clear error instead.
        let config = config.clone();
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || config.open()))
            .map_err(|_| {
                StoreError::Damaged(format!(
                    "{}: sled panicked while reading its log (is it damaged?)",
                    dir.join("db").display()
                ))
            })?;
        match opened {
            // sled says so only in words (an `ErrorKind::Other` error).
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other,
        }
    };
    let db = opened.map_err(|e| {
        let what = format!("cannot open {}: {e}", dir.display());
        match e {
            sled::Error::Corruption { .. } => StoreError::Damaged(what),
            _ => StoreError::Io(what),
        }
    })?;
    let tree = db.open_tree("hookrelay")?;
    Ok(SledKv {
        db,
        tree,
        dir: dir.to_path_buf(),
    })
}

impl Kv for SledKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, from: &[u8], to: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        for item in self.tree.range(from..to) {
            let (k, v) = item?;
            if visit(&k, &v).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn scan_rev(&self, from: &[u8], to: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        for item in self.tree.range(from..to).rev() {
            let (k, v) = item?;
            if visit(&k, &v).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn write(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.insert(k, v),
                Op::Delete(k) => batch.remove(k),
            }
        }
        self.tree.apply_batch(batch).map_err(|e| {
            StoreError::Unwritable(match &e {
                sled::Error::Io(io) => Fault::of_io(io),
                other => Fault::other(other.to_string()),
            })
        })
    }

    fn syncer(&self) -> Result<Syncer, StoreError> {
        let db = self.db.clone();
        let mut files = FileSyncer::open(&self.dir).map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(Box::new(move || {
            db.flush().map_err(|e| match e {
                sled::Error::Io(io) => io,
                other => io::Error::other(other),
            })?;
            files.sync()
        }))
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        super::dir_size(&self.dir).map_err(|e| StoreError::Io(e.to_string()))
    }

    /// sled reclaims segments on its own.
    fn compact(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// `fdatasync` of sled's db file and of every blob file not synced yet.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn store() -> (Box<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (Box::new(open(dir.path(), 8 << 20).unwrap()), dir)
    }

    crate::store_suite!(store(), |dir: &Path| {
        crate::store::suite::ready(Box::new(open(dir, 8 << 20).unwrap()))
    });

    #[tokio::test]
    async fn a_store_that_cannot_write_refuses_until_it_recovers() {
        crate::store::faults::a_store_that_cannot_write_refuses_until_it_recovers(open_kv).await;
    }

    #[tokio::test]
    async fn a_full_file_system_is_survived() {
        crate::store::faults::a_full_file_system_is_survived(open_kv).await;
    }

    #[test]
    fn an_unusable_data_dir_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let err = open(&file, 8 << 20).err().expect("must fail");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }
}
