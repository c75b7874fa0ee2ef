//! The little an engine must offer the store: ordered keys, point reads, range scans, atomic
//! multi-key writes, and a way to make everything written so far durable.

use std::ops::ControlFlow;

use super::StoreError;

/// Makes everything written so far durable (flush, then a real `fdatasync`).
pub type Syncer = Box<dyn FnMut() -> std::io::Result<()> + Send>;

/// Called per key and value in a scan; `Break` stops it.
pub type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> ControlFlow<()> + 'a;

/// One change in an atomic write.
#[derive(Clone)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// An ordered key-value engine (sled, fjall).
pub trait Kv: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Visits `[from, to)` in key order until `visit` breaks.
    fn scan(&self, from: &[u8], to: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError>;

    /// Visits `[from, to)` in reverse key order (newest first for time-ordered keys) until
    /// `visit` breaks.
    fn scan_rev(&self, from: &[u8], to: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError>;

    /// Applies `ops` atomically: after a crash, all of them or none.
    fn write(&self, ops: Vec<Op>) -> Result<(), StoreError>;

    /// What the group commit's thread calls to make every write made before the call durable.
    fn syncer(&self) -> Result<Syncer, StoreError>;

    /// Bytes on disk.
    fn size_on_disk(&self) -> Result<u64, StoreError>;

    /// Reclaims the space of deleted keys now; an engine that does so on its own does nothing.
    fn compact(&self) -> Result<(), StoreError>;

    /// A view of the engine as it is now, to read from another thread while it is written:
    /// `None` for an engine that has no snapshots (sled).
    fn snapshot(&self) -> Option<Box<dyn View>> {
        None
    }
}

/// The engine as it was when [`Kv::snapshot`] was taken: no later write is seen.
pub trait View: Send {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Visits `[from, to)` in key order until `visit` breaks.
    fn scan(&self, from: &[u8], to: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError>;
}
