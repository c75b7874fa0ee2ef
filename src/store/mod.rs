//! Durable storage of events and their deliveries behind the [`Store`] trait; sled by default.

mod commit;
mod keys;
pub mod record;
pub mod sled;
#[cfg(test)]
pub mod suite;

use async_trait::async_trait;

use crate::event::Event;
use crate::ids::{DeliveryId, EventId};
use crate::message::{Message, Recipients};

pub use record::{
    AttemptRecord, AttemptResult, DeliveryRecord, DeliveryState, ErrorInfo, EventRecord,
};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O: {0}")]
    Io(String),
    #[error("stored record unreadable: {0}")]
    Corrupt(String),
    #[error("the store is closed")]
    Closed,
}

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// An event to store with every delivery planned for it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: EventId,
    pub event: Event,
    pub received_ms: u64,
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
}

/// What [`Store::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored, with this many deliveries.
    Accepted { id: EventId, deliveries: usize },
    /// The same event was accepted before, inside the dedup window; nothing new was planned.
    Duplicate { id: EventId },
}

/// A delivery handed to a worker until `lease_until_ms`.
#[derive(Debug, Clone)]
pub struct Leased {
    pub lease_until_ms: u64,
    pub record: DeliveryRecord,
}

/// How a leased delivery ends this round.
#[derive(Debug, Clone)]
pub enum Next {
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
    pub next: Next,
}

/// Sizes of the store's record families (admin, metrics, tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub events: u64,
    pub deliveries: u64,
    pub pending: u64,
    pub leased: u64,
    pub dead: u64,
    pub attempts: u64,
}

/// What a replay request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    Scheduled,
    NotDead,
    NotFound,
}

/// The storage contract every backend meets (one shared test suite runs against each).
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores the events, their dedup keys and all their deliveries in one atomic write,
    /// skipping any event whose dedup key was seen within `dedup_window_ms` (earlier in the same
    /// batch included); resolves only once that write (or the original, for a duplicate) is
    /// durable. One answer per event, in order.
    async fn enqueue(
        &self,
        events: Vec<NewEvent>,
        dedup_window_ms: u64,
    ) -> Result<Vec<Enqueued>, StoreError>;

    /// Leases up to `limit` deliveries due at or before `now_ms` until `lease_until_ms`.
    fn lease_due(
        &self,
        now_ms: u64,
        lease_until_ms: u64,
        limit: usize,
    ) -> Result<Vec<Leased>, StoreError>;

    /// When the earliest pending delivery or lease falls due.
    fn next_wakeup_ms(&self) -> Result<Option<u64>, StoreError>;

    /// Makes every lease that expired by `upto_ms` (all of them, at startup) due at `due_ms`,
    /// except deliveries `busy` says are still in flight. Returns how many.
    fn expire_leases(
        &self,
        upto_ms: u64,
        due_ms: u64,
        busy: &dyn Fn(&DeliveryId) -> bool,
    ) -> Result<usize, StoreError>;

    /// Records an attempt and moves the delivery on: delivered, due again, or dead.
    fn complete(
        &self,
        leased: &Leased,
        completion: Completion,
        now_ms: u64,
    ) -> Result<DeliveryRecord, StoreError>;

    /// Stores a re-rendered message for a delivery (replay after a template fix).
    fn set_message(&self, id: &DeliveryId, message: Message) -> Result<(), StoreError>;

    fn event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError>;
    fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError>;
    fn deliveries_of(&self, id: &EventId) -> Result<Vec<DeliveryRecord>, StoreError>;
    fn attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptRecord>, StoreError>;

    /// Dead letters, oldest first, after `after` if given.
    fn dead_letters(
        &self,
        after: Option<&DeliveryId>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Makes a dead delivery due now again, with a fresh retry budget.
    fn replay(&self, id: &DeliveryId, now_ms: u64) -> Result<Replay, StoreError>;

    /// Removes finished events older than `retention_ms` (dead ones after `dead_retention_ms`),
    /// at most `limit` events per call. Returns how many events were removed.
    fn purge(
        &self,
        now_ms: u64,
        retention_ms: u64,
        dead_retention_ms: u64,
        limit: usize,
    ) -> Result<usize, StoreError>;

    fn counts(&self) -> Result<Counts, StoreError>;

    /// Flush + fsync rounds so far (group commit effectiveness).
    fn fsyncs(&self) -> u64;

    /// Bytes the store occupies on disk.
    fn size_on_disk(&self) -> Result<u64, StoreError>;

    /// Makes everything durable and releases the files.
    fn close(&self) -> Result<(), StoreError>;
}
