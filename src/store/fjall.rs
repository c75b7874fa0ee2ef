//! The fjall engine (`store = "fjall"`, the default): an LSM tree whose write batches go to a
//! journal; the syncer flushes the journal and `fdatasync`s it (fjall preallocates and fsyncs
//! new journal files and their directory itself, and syncs a journal before it rotates).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::fjall::compaction::Leveled;
use ::fjall::config::PinningPolicy;
use ::fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable, Snapshot};

use super::journal::ActiveJournal;
use super::kv::{Kv, Op, Syncer, View, Visitor};
use super::kv_store::KvStore;
use super::{Fault, StoreError, keys};

impl From<::fjall::Error> for StoreError {
    fn from(e: ::fjall::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// A failed write as the store reads it: fjall refuses every write after a failed journal
/// write ("poisoned") until it is opened again.
fn write_error(e: ::fjall::Error) -> StoreError {
    StoreError::Unwritable(match &e {
        ::fjall::Error::Io(io) => Fault::of_io(io),
        ::fjall::Error::Poisoned => {
            Fault::other("fjall refuses writes since a journal write failed")
        }
        _ => Fault::other(e.to_string()),
    })
}

/// Memtables are flushed to tables at this size (bounds memory; fjall's default is 64 MiB).
const MEMTABLE_BYTES: u64 = 16 << 20;
/// Compactions write tables of this size (on disk, so compressed below L1). A compaction holds
/// about one table's worth of the blocks it reads, decompressed (its index keeps the last key of
/// each block it wrote, a view into the block read), so this bounds the memory a compaction takes
/// (fjall's default is 64 MiB; 4 MiB drained a million deliveries a quarter slower).
const TABLE_BYTES: u64 = 16 << 20;
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
    let dir = dir.to_path_buf();
    KvStore::new(move || open_kv(&dir, cache_bytes))
}

/// Opens (or creates) the fjall engine alone, for a [`KvStore`] over a wrapper of it.
pub fn open_kv(dir: &Path, cache_bytes: u64) -> Result<FjallKv, StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
    let db = Database::builder(dir)
        .cache_size(cache_bytes)
        // Durability is the group commit's job: batches only reach the journal's buffer.
        .manual_journal_persist(true)
        .max_journaling_size(JOURNALS_BYTES)
        // fjall's default background threads (one per core) stay, although on two cores the
        // second spins while the first compacts (fjall 3.1 has worker 0 hand every compaction
        // back to the queue) and slows a restart into a backlog: with one thread, the worker
        // that rotates a memtable sends itself its flush on a bounded queue that writes fill
        // with rotation requests while it compacts, and can wait on itself for good.
        .open()
        .map_err(|e| {
            let what = format!("cannot open {}: {e}", dir.display());
            match e {
                ::fjall::Error::Locked => StoreError::Io(format!(
                    "{} is in use by another process (a running relay?)",
                    dir.display()
                )),
                ::fjall::Error::Io(_) => StoreError::Io(what),
                // Recovery found records or files it cannot read.
                _ => StoreError::Damaged(what),
            }
        })?;
    // Index and filter blocks stay in memory on every level (fjall pins only the upper ones):
    // they are small (~7 MB at a million pending deliveries), and without them each scan of a
    // cold table re-reads and re-checksums its whole index block from disk.
    let keyspace = db.keyspace("hookrelay", || {
        KeyspaceCreateOptions::default()
            .max_memtable_size(MEMTABLE_BYTES)
            .compaction_strategy(Arc::new(
                Leveled::default().with_table_target_size(TABLE_BYTES),
            ))
            .index_block_pinning_policy(PinningPolicy::all(true))
            .filter_block_pinning_policy(PinningPolicy::all(true))
    })?;
    Ok(FjallKv {
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
        visit_all(self.keyspace.range(from..to), visit)
    }

    fn scan_rev(&self, from: &[u8], to: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        visit_all(self.keyspace.range(from..to).rev(), visit)
    }

    fn write(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.insert(&self.keyspace, k, v),
                Op::Delete(k) => batch.remove(&self.keyspace, k),
            }
        }
        batch.commit().map_err(write_error)
    }

    /// Only the move of fjall's buffer to the OS happens under its journal lock; the
    /// `fdatasync` runs outside it, so writes are not stalled behind the disk meanwhile. After a
    /// failed `fdatasync` the kernel may have dropped the unsynced pages, so the store stops
    /// writing and reopens fjall (see `engine.rs`) rather than trust a later sync.
    fn syncer(&self) -> Result<Syncer, StoreError> {
        let db = self.db.clone();
        let mut journal = ActiveJournal::open(&self.dir)
            .map_err(|e| StoreError::Io(format!("cannot open the journal: {e}")))?;
        Ok(Box::new(move || {
            db.persist(PersistMode::Buffer).map_err(|e| match e {
                ::fjall::Error::Io(io) => io,
                other => std::io::Error::other(other),
            })?;
            journal.current().and_then(|file| file.sync_data())
        }))
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        super::dir_size(&self.dir).map_err(|e| StoreError::Io(e.to_string()))
    }

    /// Tombstones only go when a compaction reaches the last level, which a quiet store may
    /// not see for a long time: flush the memtable (where the newest deletions are), then merge
    /// every table. The files of the tables merged away are deleted when the version listing
    /// them is released, at a later flush; a quiet store would keep them until its next write,
    /// so one small write (when this compaction ran) is flushed at once.
    fn compact(&self) -> Result<(), StoreError> {
        self.keyspace.rotate_memtable_and_wait()?;
        self.keyspace.major_compact()?;
        self.keyspace
            .insert(keys::meta("compacted"), crate::ids::now_ms().to_be_bytes())?;
        Ok(self.keyspace.rotate_memtable_and_wait()?)
    }

    fn snapshot(&self) -> Option<Box<dyn View>> {
        Some(Box::new(FjallView {
            snapshot: self.db.snapshot(),
            keyspace: self.keyspace.clone(),
        }))
    }
}

/// A fjall snapshot of the keyspace.
struct FjallView {
    snapshot: Snapshot,
    keyspace: Keyspace,
}

impl View for FjallView {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.snapshot.get(&self.keyspace, key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, from: &[u8], to: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        visit_all(self.snapshot.range(&self.keyspace, from..to), visit)
    }
}

/// Hands `items` to `visit` until it breaks.
fn visit_all(
    items: impl Iterator<Item = ::fjall::Guard>,
    visit: &mut Visitor<'_>,
) -> Result<(), StoreError> {
    for guard in items {
        let (k, v) = guard.into_inner()?;
        if visit(&k, &v).is_break() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_snapshot_sees_no_later_write() {
        // What keeps the due index's load from dispatching a write not yet durable.
        let dir = tempfile::tempdir().unwrap();
        let kv = open_kv(dir.path(), 8 << 20).unwrap();
        kv.write(vec![Op::Put(b"qa".to_vec(), b"1".to_vec())])
            .unwrap();
        let view = kv.snapshot().unwrap();
        kv.write(vec![
            Op::Put(b"qb".to_vec(), b"2".to_vec()),
            Op::Delete(b"qa".to_vec()),
        ])
        .unwrap();
        let mut keys = Vec::new();
        view.scan(b"q", b"r", &mut |k, _| {
            keys.push(k.to_vec());
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(keys, [b"qa".to_vec()]);
        assert_eq!(view.get(b"qb").unwrap(), None);
        assert_eq!(kv.get(b"qb").unwrap(), Some(b"2".to_vec()));
    }

    fn store() -> (Box<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (Box::new(open(dir.path(), 8 << 20).unwrap()), dir)
    }

    #[test]
    fn the_syncer_follows_fjall_to_its_next_journal() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let kv = open_kv(dir.path(), 8 << 20).unwrap();
        let mut journal = ActiveJournal::open(dir.path()).unwrap();
        // Past fjall's 64 MB journal, in values that do not compress (xorshift).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n / 8)
                .flat_map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()
                })
                .collect()
        };
        for i in 0..72u32 {
            kv.write(vec![Op::Put(i.to_be_bytes().to_vec(), noise(1 << 20))])
                .unwrap();
        }
        // A flush past 64 MB of journal rotates it.
        kv.keyspace.rotate_memtable_and_wait().unwrap();
        let newest = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".jnl")?.parse::<u64>().ok()
            })
            .max()
            .unwrap();
        assert!(newest > 0, "fjall rotated its journal");
        let inode = |p: PathBuf| std::fs::metadata(p).unwrap().ino();
        assert_eq!(
            journal.current().unwrap().metadata().unwrap().ino(),
            inode(dir.path().join(format!("{newest}.jnl")))
        );
    }

    #[test]
    fn compaction_gives_back_the_space_of_deleted_keys() {
        let dir = tempfile::tempdir().unwrap();
        let tables = || crate::store::dir_size(&dir.path().join("keyspaces")).unwrap();
        let kv = open_kv(dir.path(), 8 << 20).unwrap();
        let key = |i: u32| format!("k{i:06}").into_bytes();
        // Values that do not compress: the tables hold about what was written.
        let value = |i: u32| -> Vec<u8> {
            (0..8u8)
                .flat_map(|j| crate::signature::hmac_sha256(&i.to_be_bytes(), &[&[j]]))
                .collect()
        };
        let ids: Vec<u32> = (0..20_000).collect();
        for chunk in ids.chunks(1000) {
            kv.write(chunk.iter().map(|&i| Op::Put(key(i), value(i))).collect())
                .unwrap();
        }
        kv.compact().unwrap();
        let full = tables();
        assert!(full > 20_000 * 256, "{full} bytes in tables");
        // The deletions are still in the memtable when the compaction starts.
        for chunk in ids.chunks(1000) {
            kv.write(chunk.iter().map(|&i| Op::Delete(key(i))).collect())
                .unwrap();
        }
        kv.compact().unwrap();
        let left = tables();
        assert!(
            left < full / 10,
            "{full} bytes in tables before, {left} after"
        );
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
}
