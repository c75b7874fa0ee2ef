//! Durable storage of events and their deliveries behind the [`Store`] trait: embedded (the
//! logic once in `kv_store.rs`, over fjall, the default, or sled) or shared by several
//! replicas (`postgres/`).

mod commit;
mod due;
mod due_load;
#[cfg(test)]
mod faults;
pub mod fjall;
pub mod inspect;
mod journal;
mod keys;
pub mod kv;
pub mod kv_store;
mod marker;
pub mod postgres;
pub mod record;
pub mod retention;
pub mod sled;
#[cfg(test)]
pub mod suite;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::event::Event;
use crate::ids::{DeliveryId, EventId};
use crate::message::{Message, Recipients};

pub use record::{
    AttemptRecord, AttemptResult, DeliveryRecord, DeliveryState, ErrorInfo, EventRecord,
    ThreadRecord,
};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O: {0}")]
    Io(String),
    /// A write (or the flush that makes it durable) failed: the store stops writing until
    /// [`Store::recover`] finds it can again.
    #[error("the store cannot write: {0}")]
    Unwritable(Fault),
    #[error("stored record unreadable: {0}")]
    Corrupt(String),
    /// The data dir as a whole is damaged (files missing or cut short); the message says what
    /// was found and what the operator can do.
    #[error("{0}")]
    Damaged(String),
    #[error("the store is closed")]
    Closed,
    /// The delivery's lease passed to another replica (this one was presumed dead): its
    /// outcome is not recorded, the new owner's stands.
    #[error("the lease on this delivery was lost to another replica")]
    LeaseLost,
}

/// Why the store cannot write, as an operator acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    DiskFull,
    ReadOnly,
    Device,
    /// The database (PostgreSQL) refused the write or cannot be reached.
    Database,
    Other,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::DiskFull => "disk full",
            Cause::ReadOnly => "read-only file system",
            Cause::Device => "I/O error",
            Cause::Database => "database unavailable",
            Cause::Other => "write failed",
        }
    }
}

/// A failed write: its cause and the engine's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub cause: Cause,
    pub detail: String,
}

impl Fault {
    pub fn of_io(e: &std::io::Error) -> Fault {
        use std::io::ErrorKind as K;
        /// EIO: the kernel's word for a device that failed a read or a write.
        const EIO: i32 = 5;
        let cause = match e.kind() {
            K::StorageFull | K::QuotaExceeded | K::FileTooLarge => Cause::DiskFull,
            K::ReadOnlyFilesystem | K::PermissionDenied => Cause::ReadOnly,
            _ if e.raw_os_error() == Some(EIO) => Cause::Device,
            _ => Cause::Other,
        };
        Fault {
            cause,
            detail: e.to_string(),
        }
    }

    /// A write refused for a reason the engine gives only in words.
    pub fn other(detail: impl Into<String>) -> Fault {
        Fault {
            cause: Cause::Other,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.cause.as_str(), self.detail)
    }
}

/// The storage engines a relay can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Fjall,
    Sled,
}

impl Backend {
    pub fn parse(s: &str) -> Option<Backend> {
        match s {
            "fjall" => Some(Backend::Fjall),
            "sled" => Some(Backend::Sled),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Fjall => "fjall",
            Backend::Sled => "sled",
        }
    }

    /// The files that make a data dir this engine's.
    fn own_files(self) -> &'static str {
        match self {
            Backend::Fjall => "keyspaces/",
            Backend::Sled => "conf and db",
        }
    }

    /// The engine whose files `dir` already holds, if any (a fjall store has `keyspaces/`,
    /// a sled store `conf` and `db`).
    fn found_in(dir: &Path) -> Option<Backend> {
        if dir.join("keyspaces").is_dir() {
            Some(Backend::Fjall)
        } else if dir.join("conf").is_file() && dir.join("db").is_file() {
            Some(Backend::Sled)
        } else {
            None
        }
    }
}

/// Opens the store in `dir` on `engine` with `cache_bytes` of cache, after the checks of
/// `inspect.rs` (the other engine's data dir, missing files, acknowledged writes missing).
pub fn open(engine: Backend, dir: &Path, cache_bytes: u64) -> Result<Arc<dyn Store>, StoreError> {
    inspect::open(engine, dir, cache_bytes)
}

/// A lock over state no panic leaves half-changed (the stores' locks guard no invariant a
/// panic could break midway).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Bytes a directory tree takes on disk (allocated blocks, as `du` counts them).
pub fn dir_size(p: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(p)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}

/// An event to store with every delivery planned for it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: EventId,
    pub event: Event,
    pub received_ms: u64,
    /// How long its dedup key keeps later copies out (an explicit id is remembered longer than
    /// a content hash).
    pub dedup_window_ms: u64,
    pub deliveries: Vec<NewDelivery>,
}

/// One planned delivery. With `failed` set it is stored dead right away (a render error).
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub origin: String,
    pub channel: String,
    pub template: Option<String>,
    pub to: Recipients,
    pub message: Option<Message>,
    pub failed: Option<ErrorInfo>,
    pub due_ms: u64,
    /// Why it is due later than it would be (quiet hours, a digest's window): shown as waiting.
    pub held: Option<ErrorInfo>,
    /// The key of the digest it belongs to: when one delivery of a digest is sent, every
    /// pending one with its key goes in the same message.
    pub digest: Option<String>,
    /// The key of the message thread it continues: sent as an update of the thread's message
    /// where its channel can change one.
    pub thread: Option<String>,
}

/// What one [`Store::purge`] step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub removed: usize,
    /// Where the next step starts; `None` when the pass is over.
    pub next: Option<EventId>,
}

/// What [`Store::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored, with this many deliveries.
    Accepted { id: EventId, deliveries: usize },
    /// The same event was accepted before, inside the dedup window; nothing new was planned.
    Duplicate { id: EventId },
}

/// A delivery handed to a worker; its due entry stays until the outcome is recorded.
#[derive(Debug, Clone)]
pub struct Leased {
    /// The time it was due at (its entry in the due index).
    pub due_ms: u64,
    /// Which lease of the delivery this is (a shared store counts them; embedded ones use 0).
    pub token: u64,
    pub record: DeliveryRecord,
}

/// How a leased delivery ends this round.
#[derive(Debug, Clone)]
pub enum Ending {
    Delivered,
    /// Due again at this time.
    RetryAt(u64),
    Dead,
}

/// The result of one attempt, to record against a leased delivery.
#[derive(Debug, Clone)]
pub struct Completion {
    pub attempt: AttemptRecord,
    /// Whether it counts against the retry budget (a throttle wait does not).
    pub counted: bool,
    pub next: Ending,
}

/// Sizes of the store's record families (admin, metrics, tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub events: u64,
    pub deliveries: u64,
    /// Due now or later, in flight included.
    pub pending: u64,
    pub dead: u64,
    pub attempts: u64,
}

/// Which deliveries a listing wants: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryQuery {
    pub state: Option<DeliveryState>,
    /// Pending and held back by a throttle or rate limit (`true`), or not (`false`).
    pub waiting: Option<bool>,
    pub channel: Option<String>,
    /// The Source that received the event.
    pub source: Option<String>,
    pub event_type: Option<String>,
    /// A user id or mobile number among the delivery's recipients.
    pub recipient: Option<String>,
    /// Created at or after this time (ms).
    pub since_ms: Option<u64>,
    /// Created before this time (ms).
    pub until_ms: Option<u64>,
}

impl DeliveryQuery {
    pub fn matches(&self, d: &DeliveryRecord) -> bool {
        let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        self.state.is_none_or(|s| s == d.state)
            && self.waiting.is_none_or(|w| w == d.is_waiting())
            && is(&self.channel, &d.channel)
            && is(&self.source, &d.receiver)
            && is(&self.event_type, &d.event_type)
            && self
                .recipient
                .as_deref()
                .is_none_or(|r| d.to.users.iter().chain(&d.to.mobiles).any(|x| x == r))
            && self.since_ms.is_none_or(|t| d.created_ms >= t)
            && self.until_ms.is_none_or(|t| d.created_ms < t)
    }
}

/// One page of a listing, newest first.
#[derive(Debug, Clone, Default)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryRecord>,
    /// Where the next page starts (pass it as `before`); `None` when there is no more.
    pub next: Option<DeliveryId>,
}

/// The delivery backlog as the in-memory due index holds it (cheap: no store walk).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Pending deliveries, due now or later, in flight included.
    pub pending: u64,
    /// Of those, due at `now` or before.
    pub due: u64,
    /// When the longest-waiting due delivery became due.
    pub oldest_due_ms: Option<u64>,
}

/// What a replay request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    Scheduled,
    NotDead,
    NotFound,
}

/// What the caller cannot take more of.
#[derive(Debug, Clone, Default)]
pub struct Busy {
    /// Deliveries it holds (being sent or waiting in a lane): never handed out again.
    pub held: std::collections::HashSet<DeliveryId>,
    /// Channels whose lanes have no room: their deliveries are left where they are (for a
    /// replica with room, on PostgreSQL), and their backlog is never scanned.
    pub full: std::collections::HashSet<String>,
}

impl Busy {
    /// Holding `held`, no channel full.
    pub fn holding(held: impl IntoIterator<Item = DeliveryId>) -> Busy {
        Busy {
            held: held.into_iter().collect(),
            full: Default::default(),
        }
    }
}

/// The storage contract every backend meets (one shared test suite runs against each).
///
/// Reads and writes are async (PostgreSQL answers over the network); what the embedded engines
/// do in them is short, local I/O. The few sync methods read counters kept in memory.
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores the events, their dedup keys and all their deliveries in one atomic write,
    /// skipping any event whose dedup key was seen within its `dedup_window_ms` (earlier in the
    /// same batch included); resolves only once that write (or the original, for a duplicate)
    /// is durable. Its deliveries become dispatchable only then: a failed flush leaves nothing
    /// to send. One answer per event, in order.
    async fn enqueue(&self, events: Vec<NewEvent>) -> Result<Vec<Enqueued>, StoreError>;

    /// Up to `limit` deliveries due at or before `now_ms`, in due order, skipping those in
    /// `busy`. What is handed out is the caller's until its outcome is recorded: a shared store
    /// writes a lease so that no other replica takes it meanwhile; an embedded one writes
    /// nothing (it belongs to one process, and a crash leaves every held delivery due).
    async fn lease_due(
        &self,
        now_ms: u64,
        limit: usize,
        busy: &Busy,
    ) -> Result<Vec<Leased>, StoreError>;

    /// When the earliest delivery neither in `busy` nor leased elsewhere falls due.
    async fn next_due_ms(&self, busy: &Busy) -> Result<Option<u64>, StoreError>;

    /// The delivery of a lease again, if it is still pending at `due_ms` under the same lease
    /// (it waited in memory while the store may have moved on).
    async fn relet(
        &self,
        id: &DeliveryId,
        due_ms: u64,
        token: u64,
    ) -> Result<Option<Leased>, StoreError>;

    /// The pending deliveries of digest `key` (`NewDelivery::digest`), whatever their due times.
    async fn digest_members(&self, key: &str) -> Result<Vec<DeliveryId>, StoreError>;

    /// Leases these deliveries now, whatever their due times (they go in the digest one of
    /// them is sent in), skipping any no longer pending or leased by another replica. The
    /// caller keeps them apart from its own other leases.
    async fn lease_now(&self, ids: &[DeliveryId]) -> Result<Vec<Leased>, StoreError>;

    /// The digest key and due time of every pending delivery of a digest: the windows still
    /// open (after a restart, later events join them).
    async fn open_digests(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// The message of thread `key` (`NewDelivery::thread`), if one was sent and not purged.
    async fn thread(&self, key: &str) -> Result<Option<ThreadRecord>, StoreError>;

    /// Keeps `record` as thread `key`'s message (replacing any before), written like an
    /// attempt's outcome.
    async fn set_thread(&self, key: &str, record: &ThreadRecord) -> Result<(), StoreError>;

    /// Removes up to `limit` thread records whose handles expired before `now_ms`; how many.
    async fn purge_threads(&self, now_ms: u64, limit: usize) -> Result<usize, StoreError>;

    /// Records an attempt and moves the delivery on: delivered, due again, or dead. An outcome
    /// whose lease was lost (another replica took the delivery over) is refused with
    /// [`StoreError::LeaseLost`] and changes nothing.
    async fn complete(
        &self,
        leased: &Leased,
        completion: Completion,
        now_ms: u64,
    ) -> Result<DeliveryRecord, StoreError>;

    /// Stores a re-rendered message for a delivery (replay after a template fix).
    async fn set_message(&self, id: &DeliveryId, message: Message) -> Result<(), StoreError>;

    async fn event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError>;
    async fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError>;
    async fn deliveries_of(&self, id: &EventId) -> Result<Vec<DeliveryRecord>, StoreError>;
    async fn attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptRecord>, StoreError>;

    /// Dead letters, oldest first, after `after` if given.
    async fn dead_letters(
        &self,
        after: Option<&DeliveryId>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Makes a dead delivery due now again, with a fresh retry budget.
    async fn replay(&self, id: &DeliveryId, now_ms: u64) -> Result<Replay, StoreError>;

    /// One step of a retention pass: looks at up to `limit` events received more than
    /// `retention_ms` ago, in id order after `after`, and removes those whose deliveries are all
    /// finished (dead ones only after `dead_retention_ms`). Each event goes with its deliveries,
    /// attempts and dedup key. A shared store runs one step at a time across its replicas.
    async fn purge(
        &self,
        after: Option<&EventId>,
        now_ms: u64,
        retention_ms: u64,
        dead_retention_ms: u64,
        limit: usize,
    ) -> Result<Purged, StoreError>;

    async fn counts(&self) -> Result<Counts, StoreError>;

    /// Durable commits of ingest writes so far (group commit effectiveness: fsyncs for the
    /// embedded engines, committed transactions for PostgreSQL).
    fn fsyncs(&self) -> u64;

    /// Deliveries matching `q`, newest first, from before `before` (exclusive): at most
    /// `limit`, and at most a bounded number examined per call (then `next` goes on from where
    /// it stopped, so a rare match never makes one call walk the whole store).
    async fn deliveries(
        &self,
        q: &DeliveryQuery,
        before: Option<&DeliveryId>,
        limit: usize,
    ) -> Result<DeliveryPage, StoreError>;

    /// Writes and flushes that failed since the store was opened.
    fn write_failures(&self) -> u64;

    /// Calls `f` with the duration of every group commit from now on.
    fn observe_commits(&self, f: Arc<dyn Fn(std::time::Duration) + Send + Sync>);

    /// Updates the small document under `key` that every replica shares (a destination's rate
    /// log), atomically across replicas: `f` gets the current value (`None` at first) and
    /// returns the new one. `Ok(false)` when the store is not shared (an embedded one): the
    /// caller keeps the state in its own memory.
    async fn update_shared(
        &self,
        key: &str,
        f: &mut (dyn FnMut(Option<serde_json::Value>) -> serde_json::Value + Send),
    ) -> Result<bool, StoreError> {
        let _ = (key, f);
        Ok(false)
    }

    /// Gives up the leases of `ids` (held by this process, not sent), so that another replica
    /// may take them now. An embedded store has no leases to give up.
    async fn release(&self, ids: &[DeliveryId]) -> Result<(), StoreError> {
        let _ = ids;
        Ok(())
    }

    /// This process's part of a per-destination in-flight cap that holds across all replicas
    /// (the whole cap when the store is not shared). May be 0: another replica sends meanwhile.
    fn share_of(&self, cap: usize) -> usize {
        cap
    }

    /// Wakes `wake` when deliveries become due that this process did not write: another
    /// replica's ingest or retry, or (an embedded store) what its load at open reads.
    fn watch_due(&self, wake: Arc<tokio::sync::Notify>) {
        let _ = wake;
    }

    /// The backlog at `now_ms` (for `/metrics`, scraped often: cheap for the embedded engines,
    /// one indexed query for PostgreSQL).
    async fn backlog(&self, now_ms: u64) -> Result<Backlog, StoreError>;

    /// Bytes the store occupies on disk.
    async fn size_on_disk(&self) -> Result<u64, StoreError>;

    /// Reclaims the space of what was removed (after a large purge). May take a while.
    async fn compact(&self) -> Result<(), StoreError>;

    /// Makes everything durable and releases the files (or connections and leases).
    async fn close(&self) -> Result<(), StoreError>;

    /// Why the store cannot write now, if it cannot (a write or a flush failed since the
    /// last successful [`Store::recover`]).
    fn fault(&self) -> Option<Fault>;

    /// After a failed write: reopens the engine from its files (or reconnects), applies what
    /// is owed (the take-backs of writes answered 503) and proves a write durable. Ok once it
    /// writes again. May block for a while: call it off the async workers.
    async fn recover(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_data_dir_of_the_other_engine_is_refused() {
        for (first, second) in [
            (Backend::Sled, Backend::Fjall),
            (Backend::Fjall, Backend::Sled),
        ] {
            let dir = tempfile::tempdir().unwrap();
            open(first, dir.path(), 4 << 20)
                .unwrap()
                .close()
                .await
                .unwrap();
            let err = open(second, dir.path(), 4 << 20).err().expect("refused");
            let text = err.to_string();
            assert!(
                text.contains(&format!("holds a {} store", first.name())),
                "{text}"
            );
            if let Err(e) = open(first, dir.path(), 4 << 20) {
                panic!("its own engine opens it: {e}");
            }
        }
    }
}
