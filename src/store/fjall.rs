//! The fjall engine (`store = "fjall"`, the default): an LSM tree whose write batches go to a
//! journal; the syncer flushes the journal and `fdatasync`s it (fjall preallocates and fsyncs
//! new journal files and their directory itself).

use std::path::{Path, PathBuf};

use ::fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::StoreError;
use super::engine::KvStore;
use super::kv::{Kv, Op, Syncer, Visitor};

impl From<::fjall::Error> for StoreError {
    fn from(e: ::fjall::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// Memtables are flushed to tables at this size (bounds memory; fjall's default is 64 MiB).
const MEMTABLE_BYTES: u64 = 16 << 20;
/// Journals past this size force their memtables to be flushed (bounds the data dir; fjall's
/// default is 512 MiB, its minimum 64 MiB).
const JOURNALS_BYTES: u64 = 64 << 20;

/// fjall as a [`Kv`].
pub struct FjallKv {
    db: Database,
    keyspace: Keyspace,
    dir: PathBuf,
}

/// Opens (or creates) a fjall store in `dir` with a block cache of `cache_bytes`.
pub fn open(dir: &Path, cache_bytes: u64) -> Result<KvStore<FjallKv>, StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
    let db = Database::builder(dir)
        .cache_size(cache_bytes)
        // Durability is the group commit's job: batches only reach the journal's buffer.
        .manual_journal_persist(true)
        .max_journaling_size(JOURNALS_BYTES)
        .open()
        .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", dir.display())))?;
    let keyspace = db.keyspace("hookrelay", || {
        KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
    })?;
    KvStore::new(FjallKv {
        db,
        keyspace,
        dir: dir.to_path_buf(),
    })
}

impl Kv for FjallKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.keyspace.get(key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, from: &[u8], to: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        for guard in self.keyspace.range(from..to) {
            let (k, v) = guard.into_inner()?;
            if visit(&k, &v).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn write(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.insert(&self.keyspace, k, v),
                Op::Delete(k) => batch.remove(&self.keyspace, k),
            }
        }
        Ok(batch.commit()?)
    }

    fn syncer(&self) -> Result<Syncer, StoreError> {
        let db = self.db.clone();
        Ok(Box::new(move || {
            db.persist(PersistMode::SyncData)
                .map_err(std::io::Error::other)
        }))
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        super::dir_size(&self.dir).map_err(|e| StoreError::Io(e.to_string()))
    }

    /// Tombstones only go when a compaction reaches the last level, which a quiet store may
    /// not see for a long time: merge every table now.
    fn compact(&self) -> Result<(), StoreError> {
        Ok(self.keyspace.major_compact()?)
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

    crate::store_suite!(store(), |dir: &Path| Box::new(open(dir, 8 << 20).unwrap())
        as Box<dyn Store>);
}
