//! The store's logic, written once over any [`Kv`] engine: one keyspace of prefixed keys (see
//! `keys.rs`), atomic writes, group commit.
//!
//! In-flight deliveries are not written down: the store belongs to one process, so a delivery
//! the dispatcher holds keeps its due key until its outcome is recorded. A crash leaves the key
//! where it was, and the delivery is due again at the next start.
//!
//! The due index is also kept in memory (`due.rs`), loaded from its keys at open: it is read on
//! every dispatch, and an LSM engine would otherwise walk the tombstones of every delivery
//! already made to find the next one. Each due key's value names the delivery's channel, so
//! the index is kept by channel and a lease skips the channels with no room. The keys stay the
//! truth; memory mirrors each write that succeeds.
//!
//! A failed write or flush (a full disk, a read-only remount, a failing device) makes the store
//! unwritable: it refuses writes at once rather than storming the engine, and [`Store::recover`]
//! reopens the engine from its files — fjall refuses every write after a failed journal write,
//! and after a failed `fdatasync` the kernel may have dropped the pages, so only what a fresh
//! open reads back is trusted.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::commit::Committer;
use super::due::{DueIndex, Entry};
use super::due_load::{self, Due, Loading};
use super::keys;
use super::kv::{Kv, Op, Visitor};
use super::marker::Keeper;
use super::record::{decode, decode_delivery, encode};
use super::{
    AttemptRecord, Backlog, Busy, Completion, Counts, DeliveryPage, DeliveryQuery, DeliveryRecord,
    DeliveryState, Enqueued, EventRecord, Fault, Leased, NewEvent, Purged, Replay, Store,
    StoreError, ThreadRecord, lock,
};
use crate::ids::{DeliveryId, EventId};
use crate::message::Message;

/// The size of the write that proves a recovered store writes again.
const PROBE_BYTES: usize = 64 << 10;

/// Opens the engine from its files (at start, and again to recover from a failed write).
pub type Opener<K> = Box<dyn Fn() -> Result<K, StoreError> + Send + Sync>;

/// A [`Store`] over the engine `K`.
pub struct KvStore<K: Kv> {
    open: Opener<K>,
    /// The open engine; `None` while it is reopened, or once closed.
    live: RwLock<Option<Arc<Live<K>>>>,
    /// Why writes are refused, while they are (`unwritable` is its lock-free flag).
    fault: Mutex<Option<Fault>>,
    unwritable: AtomicBool,
    /// Take-backs of writes answered 503 that the engine refused too: applied first when it
    /// writes again, so no refused event is ever sent.
    owed: Mutex<Vec<Op>>,
    closed: AtomicBool,
    /// Serializes the dedup check with the write that claims the key.
    enqueue_lock: Mutex<()>,
    /// The due index: each channel's (due ms, delivery), in time order.
    due: Arc<Due>,
    /// Its load at open (or recovery), while it runs.
    loading: Mutex<Option<Loading>>,
    /// The number of the last ingest write, stored with it (`keys::seq`), and of the last one
    /// acknowledged durable: the data dir's marker keeps the latter, so that an engine that
    /// opens with fewer writes than were acknowledged is caught (see `inspect.rs`).
    seq: AtomicU64,
    acked: Arc<AtomicU64>,
    /// The number found at open.
    stored: u64,
    /// Keeps the marker up to date while the store is open (stopped at close).
    keeper: Mutex<Option<Keeper>>,
    /// Told how long each group commit (flush + fdatasync) took.
    on_commit: CommitObserver,
    /// Writes and flushes that failed.
    write_failures: AtomicU64,
}

/// Most records one listing call examines.
const LIST_BUDGET: usize = 20_000;

/// Where commit durations go once someone listens (the relay's metrics).
type CommitObserver = Arc<RwLock<Option<Arc<dyn Fn(Duration) + Send + Sync>>>>;

/// What [`KvStore::audit`] read.
#[derive(Debug, Clone, Copy)]
pub struct Audit {
    pub counts: Counts,
    /// Records that do not decode.
    pub unreadable: usize,
    /// The number of the last ingest write the store holds.
    pub stored: u64,
}

/// An engine opened from its files, with the group commit over it.
struct Live<K> {
    kv: K,
    committer: Committer,
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

fn dedup_value(id: &EventId, at_ms: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    v.extend_from_slice(&id.0);
    v.extend_from_slice(&at_ms.to_be_bytes());
    v
}

fn parse_dedup_value(v: &[u8]) -> Option<(EventId, u64)> {
    if v.len() != 24 {
        return None;
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&v[..16]);
    Some((EventId(id), u64::from_be_bytes(v[16..].try_into().ok()?)))
}

/// The due key of a delivery of `channel`, its value the channel's name (what the in-memory
/// index is kept by; a key from before that has an empty value, see [`load_due`]).
fn due_put(channel: &str, due_ms: u64, id: &DeliveryId) -> Op {
    Op::Put(
        keys::timed(keys::DUE, due_ms, id).to_vec(),
        channel.as_bytes().to_vec(),
    )
}

/// What [`KvStore::stage`] wrote.
struct Staged {
    outcomes: Vec<Enqueued>,
    /// Due entries written (channel, entry), to mirror in memory once durable.
    due: Vec<(String, Entry)>,
    /// Deletes every key written.
    undo: Vec<Op>,
    /// The number of this write.
    seq: u64,
}

/// The writes that store an event, its dedup key and its deliveries (due, or dead if planning
/// failed); the due entries they add are pushed to `due`.
fn event_ops(ops: &mut Vec<Op>, due: &mut Vec<(String, Entry)>, new: NewEvent, dedup_key: Vec<u8>) {
    let count = new.deliveries.len();
    for (i, d) in new.deliveries.into_iter().enumerate() {
        let id = DeliveryId {
            event: new.id,
            index: i as u32,
        };
        let dead = d.failed.is_some();
        let due_ms = d.due_ms;
        let rec = DeliveryRecord::planned(id, &new.event, new.received_ms, d);
        let index = if dead {
            Op::Put(
                keys::timed(keys::DEAD, new.received_ms, &id).to_vec(),
                Vec::new(),
            )
        } else {
            due.push((rec.channel.clone(), (due_ms, id)));
            if let Some(key) = &rec.digest {
                ops.push(Op::Put(keys::digest(key, &id), Vec::new()));
            }
            due_put(&rec.channel, due_ms, &id)
        };
        ops.push(Op::Put(keys::delivery(&id).to_vec(), encode(&rec)));
        ops.push(index);
    }
    let record = EventRecord {
        dedup_key: new.event.dedup_key(),
        event: new.event,
        received_ms: new.received_ms,
        deliveries: count as u32,
    };
    ops.push(Op::Put(keys::event(&new.id).to_vec(), encode(&record)));
    ops.push(Op::Put(dedup_key, dedup_value(&new.id, new.received_ms)));
}

impl<K: Kv> KvStore<K> {
    /// Opens the engine with `open` (called again to recover from a failed write).
    pub fn new(
        open: impl Fn() -> Result<K, StoreError> + Send + Sync + 'static,
    ) -> Result<KvStore<K>, StoreError> {
        let on_commit = CommitObserver::default();
        let live = Live::start(open()?, &on_commit)?;
        let stored = read_seq(&live.kv)?;
        let due = Arc::new(Due::default());
        let loading = due_load::start(&live.kv, &due)?;
        Ok(KvStore {
            seq: AtomicU64::new(stored),
            acked: Arc::new(AtomicU64::new(stored)),
            stored,
            keeper: Mutex::new(None),
            open: Box::new(open),
            live: RwLock::new(Some(Arc::new(live))),
            fault: Mutex::new(None),
            unwritable: AtomicBool::new(false),
            owed: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            enqueue_lock: Mutex::new(()),
            due,
            loading: Mutex::new(loading),
            on_commit,
            write_failures: AtomicU64::new(0),
        })
    }

    /// The number of the last ingest write the engine had when it was opened.
    pub fn stored_seq(&self) -> u64 {
        self.stored
    }

    /// The number of the last ingest write acknowledged as durable (live).
    pub fn acknowledged(&self) -> Arc<AtomicU64> {
        self.acked.clone()
    }

    /// Hands the marker's keeper to the store, which stops it (with a last write) at close.
    pub fn keep_marker(&self, keeper: Keeper) {
        *lock(&self.keeper) = Some(keeper);
    }

    /// Reads every record (for `store verify`); with `fix`, removes those that do not decode.
    pub fn audit(&self, fix: bool) -> Result<Audit, StoreError> {
        let mut counts = Counts::default();
        let mut bad = Vec::new();
        self.scan(&[], &[u8::MAX], &mut |k, v| {
            let readable = match k.first().copied() {
                Some(keys::EVENT) => {
                    decode::<EventRecord>(v).is_ok() && {
                        counts.events += 1;
                        true
                    }
                }
                Some(keys::DELIVERY) => {
                    DeliveryId::from_bytes(&k[1..]).is_some()
                        && decode::<DeliveryRecord>(v).is_ok()
                        && {
                            counts.deliveries += 1;
                            true
                        }
                }
                Some(keys::ATTEMPT) => {
                    decode::<AttemptRecord>(v).is_ok() && {
                        counts.attempts += 1;
                        true
                    }
                }
                Some(keys::DEDUP) => parse_dedup_value(v).is_some(),
                Some(prefix @ (keys::DUE | keys::DEAD)) => {
                    keys::parse_timed(k).is_some() && {
                        if prefix == keys::DUE {
                            counts.pending += 1;
                        } else {
                            counts.dead += 1;
                        }
                        true
                    }
                }
                Some(keys::META) => true,
                Some(keys::DIGEST) => keys::parse_digest(k).is_some(),
                Some(keys::THREAD) => decode::<ThreadRecord>(v).is_ok(),
                _ => false,
            };
            if !readable {
                bad.push(k.to_vec());
            }
            ControlFlow::Continue(())
        })?;
        let unreadable = bad.len();
        if fix && !bad.is_empty() {
            self.put(bad.into_iter().map(Op::Delete).collect())?;
        }
        Ok(Audit {
            counts,
            unreadable,
            stored: self.stored,
        })
    }

    /// The open engine, or why there is none.
    fn live(&self) -> Result<Arc<Live<K>>, StoreError> {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        match &*live {
            Some(l) => Ok(l.clone()),
            None if self.closed.load(Ordering::Acquire) => Err(StoreError::Closed),
            None => Err(self.refusal()),
        }
    }

    /// The error a refused write answers with.
    fn refusal(&self) -> StoreError {
        let fault = lock(&self.fault).clone();
        StoreError::Unwritable(fault.unwrap_or_else(|| Fault::other("the store is reopening")))
    }

    /// Records that a write failed; the first failure since the store last wrote is logged.
    fn failed(&self, e: &StoreError) {
        let fault = match e {
            StoreError::Unwritable(f) => f.clone(),
            StoreError::Closed => return,
            other => Fault::other(other.to_string()),
        };
        self.write_failures.fetch_add(1, Ordering::Relaxed);
        let mut current = lock(&self.fault);
        if current.is_none() {
            tracing::error!(cause = fault.cause.as_str(), detail = %fault.detail,
                "the store cannot write: ingest answers 503 and dispatch pauses until it can");
            *current = Some(fault);
            self.unwritable.store(true, Ordering::Release);
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.live()?.kv.get(key)
    }

    fn scan(&self, from: &[u8], to: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        self.live()?.kv.scan(from, to, visit)
    }

    /// One atomic write; a failure makes the store unwritable until it recovers.
    fn put(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.put_on(&*self.live()?, ops)
    }

    fn put_on(&self, live: &Live<K>, ops: Vec<Op>) -> Result<(), StoreError> {
        if self.unwritable.load(Ordering::Acquire) {
            return Err(self.refusal());
        }
        live.kv.write(ops).inspect_err(|e| self.failed(e))
    }

    /// The due index as it stands (see [`Due::lock`]).
    fn due(&self) -> Result<MutexGuard<'_, DueIndex>, StoreError> {
        Ok(self.due.lock())
    }

    /// Stops the due index's load, if it still runs.
    fn stop_loading(&self) {
        if let Some(loading) = lock(&self.loading).take() {
            loading.stop();
        }
    }

    /// The atomic write of [`Store::enqueue`], without waiting for it to be durable: what it
    /// decided, the due entries it wrote (dispatchable only once durable) and the writes that
    /// take it back.
    fn stage(&self, live: &Live<K>, events: Vec<NewEvent>) -> Result<Staged, StoreError> {
        let _claim = self.claim();
        let mut ops = Vec::with_capacity(events.len() * 4);
        let mut staged = Staged {
            outcomes: Vec::with_capacity(events.len()),
            due: Vec::with_capacity(events.len()),
            undo: Vec::new(),
            seq: 0,
        };
        let mut claimed: HashMap<Vec<u8>, EventId> = HashMap::new();
        for new in events {
            let dedup_key = keys::dedup(&new.event.dedup_key());
            let seen = match claimed.get(&dedup_key) {
                Some(id) => Some(*id),
                None => live
                    .kv
                    .get(&dedup_key)?
                    .as_deref()
                    .and_then(parse_dedup_value)
                    .filter(|(_, at)| at.saturating_add(new.dedup_window_ms) > new.received_ms)
                    .map(|(id, _)| id),
            };
            if let Some(id) = seen {
                staged.outcomes.push(Enqueued::Duplicate { id });
                continue;
            }
            claimed.insert(dedup_key.clone(), new.id);
            staged.outcomes.push(Enqueued::Accepted {
                id: new.id,
                deliveries: new.deliveries.len(),
            });
            event_ops(&mut ops, &mut staged.due, new, dedup_key);
        }
        staged.undo = ops
            .iter()
            .map(|op| match op {
                Op::Put(k, _) | Op::Delete(k) => Op::Delete(k.clone()),
            })
            .collect();
        // Numbered under the ingest lock, so in write order; never taken back (it only grows).
        staged.seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        ops.push(Op::Put(keys::seq(), staged.seq.to_be_bytes().to_vec()));
        // One write: every event, its dedup key and every delivery land together or not at all.
        self.put_on(live, ops)?;
        Ok(staged)
    }

    /// The write of [`Store::enqueue`] with its deliveries dispatchable at once, not waiting
    /// for durability: for the store benchmarks only (ingest always goes through `enqueue`).
    pub fn write(&self, events: Vec<NewEvent>) -> Result<Vec<Enqueued>, StoreError> {
        let staged = self.stage(&*self.live()?, events)?;
        self.mirror(staged.due);
        Ok(staged.outcomes)
    }

    /// Adds the due entries of a write that succeeded to the in-memory index.
    fn mirror(&self, entries: Vec<(String, Entry)>) {
        let mut due = self.due.lock();
        for (channel, entry) in entries {
            due.insert(&channel, entry);
        }
    }

    /// The ingest lock: serializes a dedup check with the write that claims the key. It guards
    /// no data, so a panic while it was held leaves nothing to distrust.
    fn claim(&self) -> std::sync::MutexGuard<'_, ()> {
        self.enqueue_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count_prefix(&self, prefix: u8) -> Result<u64, StoreError> {
        let mut n = 0;
        self.scan(&[prefix], &prefix_end(&[prefix]), &mut |_, _| {
            n += 1;
            ControlFlow::Continue(())
        })?;
        Ok(n)
    }
}

/// The operations of [`Store`], synchronous: the engines' I/O is local and short.
impl<K: Kv> KvStore<K> {
    pub async fn enqueue(&self, events: Vec<NewEvent>) -> Result<Vec<Enqueued>, StoreError> {
        // One engine for the write and its flush: a recovery waits until this is done with it.
        let live = self.live()?;
        let staged = self.stage(&live, events)?;
        // Duplicates wait too: the original may have been written but not yet flushed.
        if let Err(e) = live.committer.durable().await {
            self.failed(&e);
            // The sender hears 503 and will send again: nothing of this write may be sent or
            // claim its dedup key. Taken back now if the engine still writes, else on recovery.
            // Owed as well: after a failed flush only a reopen shows what the files kept.
            let _claim = self.claim();
            let _ = live.kv.write(staged.undo.clone());
            lock(&self.owed).extend(staged.undo);
            return Err(e);
        }
        self.mirror(staged.due);
        self.acked.fetch_max(staged.seq, Ordering::AcqRel);
        Ok(staged.outcomes)
    }

    pub fn lease_due(
        &self,
        now_ms: u64,
        limit: usize,
        busy: &Busy,
    ) -> Result<Vec<Leased>, StoreError> {
        self.due.check()?;
        let due = self.due()?.take(now_ms, limit, busy);
        let mut out = Vec::with_capacity(due.len());
        let mut stale = Vec::new();
        for ((due_ms, id), channel) in due {
            match self.delivery(&id)? {
                // The record must agree with the entry: a scan may see an entry that a worker
                // replaced (rescheduled) just before it released the delivery.
                Some(record)
                    if record.state == DeliveryState::Pending && record.next_ms == Some(due_ms) =>
                {
                    out.push(Leased {
                        due_ms,
                        token: 0,
                        record,
                    })
                }
                // An entry whose record is gone, final or due elsewhere: drop it.
                _ => stale.push((channel, (due_ms, id))),
            }
        }
        if !stale.is_empty() {
            self.put(
                stale
                    .iter()
                    .map(|(_, (ms, id))| Op::Delete(keys::timed(keys::DUE, *ms, id).to_vec()))
                    .collect(),
            )?;
            let mut due = self.due()?;
            for (channel, entry) in &stale {
                due.remove(channel, entry);
            }
        }
        Ok(out)
    }

    pub fn next_due_ms(&self, busy: &Busy) -> Result<Option<u64>, StoreError> {
        self.due.check()?;
        Ok(self.due()?.next_ms(busy))
    }

    pub fn relet(&self, id: &DeliveryId, due_ms: u64) -> Result<Option<Leased>, StoreError> {
        let leased = self.delivery(id)?.and_then(|record| {
            (record.state == DeliveryState::Pending && record.next_ms == Some(due_ms)).then_some(
                Leased {
                    due_ms,
                    token: 0,
                    record,
                },
            )
        });
        if leased.is_none() {
            // It moved on while it waited: whatever it is due as now is in the order already.
            self.due()?.forget(id, due_ms);
        }
        Ok(leased)
    }

    pub fn digest_members(&self, key: &str) -> Result<Vec<DeliveryId>, StoreError> {
        let prefix = keys::digest_of(key);
        let mut out = Vec::new();
        self.scan(&prefix, &prefix_end(&prefix), &mut |k, _| {
            if let Some((_, id)) = keys::parse_digest(k) {
                out.push(id);
            }
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// The embedded store belongs to one process, whose dispatcher keeps what it holds apart:
    /// a pending delivery is leased as it stands.
    pub fn lease_now(&self, ids: &[DeliveryId]) -> Result<Vec<Leased>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(record) = self.delivery(id)?
                && record.state == DeliveryState::Pending
                && let Some(due_ms) = record.next_ms
            {
                self.due()?.hand_out(&record.channel, (due_ms, *id));
                out.push(Leased {
                    due_ms,
                    token: 0,
                    record,
                });
            }
        }
        Ok(out)
    }

    pub fn thread(&self, key: &str) -> Result<Option<ThreadRecord>, StoreError> {
        self.get(&keys::thread(key))?
            .map(|v| decode(&v))
            .transpose()
    }

    pub fn set_thread(&self, key: &str, record: &ThreadRecord) -> Result<(), StoreError> {
        self.put(vec![Op::Put(keys::thread(key), encode(record))])
    }

    pub fn purge_threads(&self, now_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let mut expired = Vec::new();
        let mut failure = None;
        self.scan(
            &[keys::THREAD],
            &prefix_end(&[keys::THREAD]),
            &mut |k, v| {
                match decode::<ThreadRecord>(v) {
                    Ok(t) if t.expires_ms < now_ms => expired.push(Op::Delete(k.to_vec())),
                    Ok(_) => {}
                    Err(e) => failure = Some(e),
                }
                if failure.is_some() || expired.len() >= limit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )?;
        if let Some(e) = failure {
            return Err(e);
        }
        let removed = expired.len();
        if removed > 0 {
            self.put(expired)?;
        }
        Ok(removed)
    }

    pub fn open_digests(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut found = Vec::new();
        self.scan(
            &[keys::DIGEST],
            &prefix_end(&[keys::DIGEST]),
            &mut |k, _| {
                if let Some(entry) = keys::parse_digest(k) {
                    found.push(entry);
                }
                ControlFlow::Continue(())
            },
        )?;
        let mut out = Vec::with_capacity(found.len());
        for (key, id) in found {
            if let Some(rec) = self.delivery(&id)?
                && rec.state == DeliveryState::Pending
                && let Some(due) = rec.next_ms
            {
                out.push((key, due));
            }
        }
        Ok(out)
    }

    pub fn complete(
        &self,
        leased: &Leased,
        completion: Completion,
        now_ms: u64,
    ) -> Result<DeliveryRecord, StoreError> {
        // While leased, only this worker changes the delivery: the leased copy is current.
        let rec = leased.record.after(&completion, now_ms);
        let id = rec.id;
        let mut ops = vec![
            Op::Delete(keys::timed(keys::DUE, leased.due_ms, &id).to_vec()),
            Op::Put(
                keys::attempt(&id, leased.record.tries).to_vec(),
                encode(&completion.attempt),
            ),
        ];
        match rec.state {
            DeliveryState::Pending => {
                ops.push(due_put(&rec.channel, rec.next_ms.unwrap_or(now_ms), &id));
            }
            DeliveryState::Dead => ops.push(Op::Put(
                keys::timed(keys::DEAD, now_ms, &id).to_vec(),
                Vec::new(),
            )),
            DeliveryState::Delivered => {}
        }
        if let (Some(key), false) = (&rec.digest, rec.state == DeliveryState::Pending) {
            ops.push(Op::Delete(keys::digest(key, &id)));
        }
        ops.push(Op::Put(keys::delivery(&id).to_vec(), encode(&rec)));
        // One atomic write, not waited on for fsync: an outcome lost to a crash leaves the old
        // due entry in place, so the delivery is sent again at the next start (at least once,
        // never lost). The in-memory index changes only after the write is accepted, so a
        // refused write leaves the delivery due here too.
        self.put(ops)?;
        let mut due = self.due()?;
        due.remove(&leased.record.channel, &(leased.due_ms, id));
        if let Some(at) = rec.next_ms {
            due.insert(&rec.channel, (at, id));
        }
        Ok(rec)
    }

    pub fn set_message(&self, id: &DeliveryId, message: Message) -> Result<(), StoreError> {
        if let Some(mut rec) = self.delivery(id)? {
            rec.message = Some(message);
            self.put(vec![Op::Put(keys::delivery(id).to_vec(), encode(&rec))])?;
        }
        Ok(())
    }

    pub fn event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        self.get(&keys::event(id))?.map(|v| decode(&v)).transpose()
    }

    pub fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        self.get(&keys::delivery(id))?
            .map(|v| decode_delivery(*id, &v))
            .transpose()
    }

    pub fn deliveries_of(&self, id: &EventId) -> Result<Vec<DeliveryRecord>, StoreError> {
        let prefix = keys::deliveries_of(id);
        let mut out = Vec::new();
        let mut failure = None;
        self.scan(&prefix, &prefix_end(&prefix), &mut |k, v| {
            let decoded = DeliveryId::from_bytes(&k[1..])
                .ok_or_else(|| StoreError::Corrupt("bad delivery key".into()))
                .and_then(|id| decode_delivery(id, v));
            match decoded {
                Ok(rec) => {
                    out.push(rec);
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    failure = Some(e);
                    ControlFlow::Break(())
                }
            }
        })?;
        failure.map_or(Ok(out), Err)
    }

    pub fn attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptRecord>, StoreError> {
        let prefix = keys::attempts_of(id);
        let mut raw = Vec::new();
        self.scan(&prefix, &prefix_end(&prefix), &mut |_, v| {
            raw.push(v.to_vec());
            ControlFlow::Continue(())
        })?;
        raw.iter().map(|v| decode(v)).collect()
    }

    pub fn dead_letters(
        &self,
        after: Option<&DeliveryId>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let start = match after.map(|id| (id, self.delivery(id))) {
            Some((id, Ok(Some(rec)))) => {
                let mut k = keys::timed(keys::DEAD, rec.updated_ms, id).to_vec();
                k.push(0);
                k
            }
            Some((_, Err(e))) => return Err(e),
            _ => vec![keys::DEAD],
        };
        let mut ids = Vec::new();
        self.scan(&start, &[keys::DEAD + 1], &mut |k, _| {
            if let Some((_, id)) = keys::parse_timed(k) {
                ids.push(id);
            }
            if ids.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(rec) = self.delivery(&id)? {
                out.push(rec);
            }
        }
        Ok(out)
    }

    pub fn replay(&self, id: &DeliveryId, now_ms: u64) -> Result<Replay, StoreError> {
        let Some(mut rec) = self.delivery(id)? else {
            return Ok(Replay::NotFound);
        };
        if rec.state != DeliveryState::Dead {
            return Ok(Replay::NotDead);
        }
        let dead_key = keys::timed(keys::DEAD, rec.updated_ms, id);
        rec.replayed(now_ms);
        self.put(vec![
            Op::Delete(dead_key.to_vec()),
            due_put(&rec.channel, now_ms, id),
            Op::Put(keys::delivery(id).to_vec(), encode(&rec)),
        ])?;
        self.due()?.insert(&rec.channel, (now_ms, *id));
        Ok(Replay::Scheduled)
    }

    pub fn purge(
        &self,
        after: Option<&EventId>,
        now_ms: u64,
        retention_ms: u64,
        dead_retention_ms: u64,
        limit: usize,
    ) -> Result<Purged, StoreError> {
        let dead_cutoff = now_ms.saturating_sub(dead_retention_ms);
        // Event keys sort by receive time: the old ones come first.
        let mut end = vec![keys::EVENT];
        end.extend_from_slice(&now_ms.saturating_sub(retention_ms).to_be_bytes());
        let start = match after {
            Some(id) => {
                let mut k = keys::event(id).to_vec();
                k.push(0);
                k
            }
            None => vec![keys::EVENT],
        };
        // Candidates first (the scan cannot write), then every finished one in one write.
        let mut old = Vec::with_capacity(limit);
        let mut failure = None;
        self.scan(&start, &end, &mut |k, v| {
            match (EventId::parse_key(&k[1..]), decode::<EventRecord>(v)) {
                (Some(id), Ok(rec)) => old.push((id, rec.dedup_key)),
                (_, Err(e)) => failure = Some(e),
                (None, _) => failure = Some(StoreError::Corrupt("bad event key".into())),
            }
            if failure.is_some() || old.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let next = (old.len() >= limit)
            .then(|| old.last().map(|(id, _)| *id))
            .flatten();
        let (mut ops, mut dedups) = (Vec::new(), Vec::new());
        for (event_id, dedup) in old {
            let deliveries = self.deliveries_of(&event_id)?;
            let finished = deliveries.iter().all(|d| match d.state {
                DeliveryState::Delivered => true,
                DeliveryState::Dead => d.updated_ms < dead_cutoff,
                DeliveryState::Pending => false,
            });
            if !finished {
                continue;
            }
            for d in &deliveries {
                ops.push(Op::Delete(keys::delivery(&d.id).to_vec()));
                if d.state == DeliveryState::Dead {
                    ops.push(Op::Delete(
                        keys::timed(keys::DEAD, d.updated_ms, &d.id).to_vec(),
                    ));
                }
                let prefix = keys::attempts_of(&d.id);
                self.scan(&prefix, &prefix_end(&prefix), &mut |k, _| {
                    ops.push(Op::Delete(k.to_vec()));
                    ControlFlow::Continue(())
                })?;
            }
            dedups.push((keys::dedup(&dedup), event_id));
            ops.push(Op::Delete(keys::event(&event_id).to_vec()));
        }
        let removed = dedups.len();
        if removed > 0 {
            // A dedup key goes only while it still points at its event: ingest may have claimed
            // it for a new one since the window passed, so check and write under its lock.
            let _claim = self.claim();
            for (key, event_id) in dedups {
                let current = self.get(&key)?;
                if current
                    .as_deref()
                    .and_then(parse_dedup_value)
                    .map(|(id, _)| id)
                    == Some(event_id)
                {
                    ops.push(Op::Delete(key));
                }
            }
            self.put(ops)?;
        }
        Ok(Purged { removed, next })
    }

    pub fn counts(&self) -> Result<Counts, StoreError> {
        Ok(Counts {
            events: self.count_prefix(keys::EVENT)?,
            deliveries: self.count_prefix(keys::DELIVERY)?,
            pending: self.due.whole().len() as u64,
            dead: self.count_prefix(keys::DEAD)?,
            attempts: self.count_prefix(keys::ATTEMPT)?,
        })
    }

    pub fn fsyncs(&self) -> u64 {
        self.live().map_or(0, |l| l.committer.fsyncs())
    }

    pub fn deliveries(
        &self,
        q: &DeliveryQuery,
        before: Option<&DeliveryId>,
        limit: usize,
    ) -> Result<DeliveryPage, StoreError> {
        let end = before.map_or_else(
            || vec![keys::DELIVERY + 1],
            |id| keys::delivery(id).to_vec(),
        );
        let mut page = DeliveryPage::default();
        let (mut examined, mut last, mut decode_error) = (0usize, None, None);
        self.live()?
            .kv
            .scan_rev(&[keys::DELIVERY], &end, &mut |k, v| {
                let decoded = DeliveryId::from_bytes(&k[1..])
                    .ok_or_else(|| StoreError::Corrupt("bad delivery key".into()))
                    .and_then(|id| decode_delivery(id, v));
                let rec = match decoded {
                    Ok(r) => r,
                    Err(e) => {
                        decode_error = Some(e);
                        return ControlFlow::Break(());
                    }
                };
                // Keys are in receive order: past `since`, nothing older can match.
                if q.since_ms.is_some_and(|t| rec.created_ms < t) {
                    last = None;
                    return ControlFlow::Break(());
                }
                examined += 1;
                last = Some(rec.id);
                if q.matches(&rec) {
                    page.deliveries.push(rec);
                }
                if page.deliveries.len() >= limit || examined >= LIST_BUDGET {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
        if let Some(e) = decode_error {
            return Err(e);
        }
        if page.deliveries.len() >= limit || examined >= LIST_BUDGET {
            page.next = last;
        }
        Ok(page)
    }

    pub fn write_failures(&self) -> u64 {
        self.write_failures.load(Ordering::Relaxed)
    }

    pub fn observe_commits(&self, f: Arc<dyn Fn(Duration) + Send + Sync>) {
        *self
            .on_commit
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(f);
    }

    pub fn backlog(&self, now_ms: u64) -> Backlog {
        self.due.whole().backlog(now_ms)
    }

    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.live()?.kv.size_on_disk()
    }

    pub fn compact(&self) -> Result<(), StoreError> {
        let live = self.live()?;
        if self.unwritable.load(Ordering::Acquire) {
            return Err(self.refusal());
        }
        live.kv.compact().inspect_err(|e| self.failed(e))
    }

    pub fn close(&self) -> Result<(), StoreError> {
        self.closed.store(true, Ordering::Release);
        self.stop_loading();
        let live = self
            .live
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // The committer's last round makes everything written so far durable.
        if let Some(live) = live {
            live.committer.stop();
        }
        if let Some(keeper) = lock(&self.keeper).take() {
            keeper.stop();
        }
        Ok(())
    }

    pub fn fault(&self) -> Option<Fault> {
        if !self.unwritable.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.fault).clone()
    }

    pub fn recover(&self) -> Result<(), StoreError> {
        if !self.unwritable.load(Ordering::Acquire) {
            return Ok(());
        }
        // Its thread reads the old engine: stopped before that is released.
        self.stop_loading();
        let taken = self
            .live
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(old) = taken {
            // Requests and workers still using the old engine finish first (their writes are
            // refused); its files must be released before they are opened again.
            match release(old) {
                Ok(()) => {}
                Err(old) => {
                    *self.live.write().unwrap_or_else(PoisonError::into_inner) = Some(old);
                    return Err(self.refusal());
                }
            }
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let reopened = (|| {
            let kv = (self.open)()?;
            // What is owed, then a probe: written and flushed before anything else may write.
            // The probe takes room (a disk with a few bytes free would fail again at once).
            let mut ops = lock(&self.owed).clone();
            ops.push(Op::Put(keys::meta("probe"), vec![0; PROBE_BYTES]));
            kv.write(ops)?;
            (kv.syncer()?)().map_err(|e| StoreError::Unwritable(Fault::of_io(&e)))?;
            let stored = read_seq(&kv)?;
            let acked = self.acked.load(Ordering::Acquire);
            if stored < acked {
                tracing::error!(
                    stored,
                    acked,
                    "reopened after a failed write, the store's files \
                    lack acknowledged writes; it stays closed (see `hookrelay store verify`)"
                );
                return Err(StoreError::Damaged(format!(
                    "the reopened store ends at write #{stored}, but #{acked} was acknowledged"
                )));
            }
            self.seq.fetch_max(stored, Ordering::AcqRel);
            let live = Live::start(kv, &self.on_commit)?;
            // Loaded afresh: the old index may hold what the failed writes took back.
            let loading = due_load::start(&live.kv, &self.due)?;
            Ok::<_, StoreError>((live, loading))
        })();
        let (live, loading) = match reopened {
            Ok(r) => r,
            Err(e) => {
                if let StoreError::Unwritable(f) = &e {
                    *lock(&self.fault) = Some(f.clone());
                }
                return Err(e);
            }
        };
        lock(&self.owed).clear();
        *lock(&self.loading) = loading;
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(live));
        let was = lock(&self.fault).take();
        self.unwritable.store(false, Ordering::Release);
        tracing::info!(
            was = was.map(|f| f.to_string()).unwrap_or_default(),
            "the store writes again: ingest and dispatch resume"
        );
        Ok(())
    }
}

#[async_trait]
impl<K: Kv> Store for KvStore<K> {
    async fn enqueue(&self, events: Vec<NewEvent>) -> Result<Vec<Enqueued>, StoreError> {
        KvStore::enqueue(self, events).await
    }
    async fn lease_due(
        &self,
        now: u64,
        limit: usize,
        busy: &Busy,
    ) -> Result<Vec<Leased>, StoreError> {
        KvStore::lease_due(self, now, limit, busy)
    }
    async fn next_due_ms(&self, busy: &Busy) -> Result<Option<u64>, StoreError> {
        KvStore::next_due_ms(self, busy)
    }
    async fn relet(
        &self,
        id: &DeliveryId,
        due_ms: u64,
        _token: u64,
    ) -> Result<Option<Leased>, StoreError> {
        KvStore::relet(self, id, due_ms)
    }
    async fn digest_members(&self, key: &str) -> Result<Vec<DeliveryId>, StoreError> {
        KvStore::digest_members(self, key)
    }
    async fn lease_now(&self, ids: &[DeliveryId]) -> Result<Vec<Leased>, StoreError> {
        KvStore::lease_now(self, ids)
    }
    async fn release(&self, ids: &[DeliveryId]) -> Result<(), StoreError> {
        self.due()?.put_back(ids.iter().copied());
        Ok(())
    }
    async fn open_digests(&self) -> Result<Vec<(String, u64)>, StoreError> {
        KvStore::open_digests(self)
    }
    async fn thread(&self, key: &str) -> Result<Option<ThreadRecord>, StoreError> {
        KvStore::thread(self, key)
    }
    async fn set_thread(&self, key: &str, record: &ThreadRecord) -> Result<(), StoreError> {
        KvStore::set_thread(self, key, record)
    }
    async fn purge_threads(&self, now_ms: u64, limit: usize) -> Result<usize, StoreError> {
        KvStore::purge_threads(self, now_ms, limit)
    }
    async fn complete(
        &self,
        leased: &Leased,
        c: Completion,
        now: u64,
    ) -> Result<DeliveryRecord, StoreError> {
        KvStore::complete(self, leased, c, now)
    }
    async fn set_message(&self, id: &DeliveryId, message: Message) -> Result<(), StoreError> {
        KvStore::set_message(self, id, message)
    }
    async fn event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        KvStore::event(self, id)
    }
    async fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        KvStore::delivery(self, id)
    }
    async fn deliveries_of(&self, id: &EventId) -> Result<Vec<DeliveryRecord>, StoreError> {
        KvStore::deliveries_of(self, id)
    }
    async fn attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptRecord>, StoreError> {
        KvStore::attempts(self, id)
    }
    async fn dead_letters(
        &self,
        after: Option<&DeliveryId>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        KvStore::dead_letters(self, after, limit)
    }
    async fn replay(&self, id: &DeliveryId, now: u64) -> Result<Replay, StoreError> {
        KvStore::replay(self, id, now)
    }
    async fn purge(
        &self,
        after: Option<&EventId>,
        now: u64,
        retention: u64,
        dead_retention: u64,
        limit: usize,
    ) -> Result<Purged, StoreError> {
        KvStore::purge(self, after, now, retention, dead_retention, limit)
    }
    async fn counts(&self) -> Result<Counts, StoreError> {
        KvStore::counts(self)
    }
    fn fsyncs(&self) -> u64 {
        KvStore::fsyncs(self)
    }
    async fn deliveries(
        &self,
        q: &DeliveryQuery,
        before: Option<&DeliveryId>,
        limit: usize,
    ) -> Result<DeliveryPage, StoreError> {
        KvStore::deliveries(self, q, before, limit)
    }
    fn write_failures(&self) -> u64 {
        KvStore::write_failures(self)
    }
    fn observe_commits(&self, f: Arc<dyn Fn(Duration) + Send + Sync>) {
        KvStore::observe_commits(self, f)
    }
    async fn backlog(&self, now: u64) -> Result<Backlog, StoreError> {
        Ok(KvStore::backlog(self, now))
    }
    async fn size_on_disk(&self) -> Result<u64, StoreError> {
        KvStore::size_on_disk(self)
    }
    async fn compact(&self) -> Result<(), StoreError> {
        KvStore::compact(self)
    }
    async fn close(&self) -> Result<(), StoreError> {
        KvStore::close(self)
    }
    fn fault(&self) -> Option<Fault> {
        KvStore::fault(self)
    }
    async fn recover(&self) -> Result<(), StoreError> {
        KvStore::recover(self)
    }
    fn watch_due(&self, wake: Arc<tokio::sync::Notify>) {
        self.due.watch(wake);
    }
}

impl<K: Kv> Drop for KvStore<K> {
    /// The load's thread holds the engine open: a store dropped without `close` (a test's,
    /// reopened at once) must not leave it running.
    fn drop(&mut self) {
        self.stop_loading();
    }
}

impl<K: Kv> Live<K> {
    fn start(kv: K, on_commit: &CommitObserver) -> Result<Live<K>, StoreError> {
        let mut sync = kv.syncer()?;
        let on_commit = on_commit.clone();
        let timed: super::kv::Syncer = Box::new(move || {
            let started = Instant::now();
            let result = sync();
            if let Some(f) = on_commit
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
            {
                f(started.elapsed());
            }
            result
        });
        let committer = Committer::start(timed)
            .map_err(|e| StoreError::Io(format!("cannot start the flusher: {e}")))?;
        Ok(Live { kv, committer })
    }
}

/// The number of the last ingest write in the engine (0 for a new store).
fn read_seq(kv: &impl Kv) -> Result<u64, StoreError> {
    match kv.get(&keys::seq())? {
        None => Ok(0),
        Some(v) => v
            .as_slice()
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt("the write number is not 8 bytes".into())),
    }
}

/// Waits (briefly) until nothing else holds `live`, then closes it; gives it back if others
/// still do.
fn release<K: Kv>(mut live: Arc<Live<K>>) -> Result<(), Arc<Live<K>>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match Arc::try_unwrap(live) {
            Ok(only) => {
                only.committer.stop();
                return Ok(());
            }
            Err(shared) if Instant::now() < deadline => {
                live = shared;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(shared) => return Err(shared),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Ending;
    use crate::store::suite::{delivery, delivery_on, done, idle, new_event};

    #[tokio::test]
    async fn a_stale_due_entry_is_never_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::store::fjall::open(dir.path(), 8 << 20).unwrap();
        s.enqueue(vec![new_event("st", 0, vec![delivery(0)])])
            .await
            .unwrap();
        let l = s.lease_due(0, 1, &idle()).unwrap();
        let id = l[0].record.id;
        s.complete(&l[0], done(Ending::RetryAt(100)), 1).unwrap();
        // What a scan running alongside that completion may still see: the old entry.
        s.put(vec![due_put(&l[0].record.channel, 0, &id)]).unwrap();
        s.due().unwrap().insert(&l[0].record.channel, (0, id));
        assert!(
            s.lease_due(50, 10, &idle()).unwrap().is_empty(),
            "the old entry is not handed out"
        );
        assert_eq!(s.lease_due(100, 10, &idle()).unwrap().len(), 1);
        assert_eq!(s.counts().unwrap().pending, 1, "and it was dropped");
        drop(s);
        let reopened = crate::store::fjall::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(reopened.counts().unwrap().pending, 1, "from disk too");
    }

    #[tokio::test]
    async fn a_due_key_written_before_they_named_their_channel_finds_it_in_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::store::fjall::open(dir.path(), 8 << 20).unwrap();
        let two = vec![delivery_on("x", 0), delivery_on("y", 0)];
        s.enqueue(vec![new_event("old", 0, two)]).await.unwrap();
        let leased = s.lease_due(0, 2, &idle()).unwrap();
        // What an older relay wrote: due keys without a value.
        s.put(
            leased
                .iter()
                .map(|l| Op::Put(keys::timed(keys::DUE, 0, &l.record.id).to_vec(), Vec::new()))
                .collect(),
        )
        .unwrap();
        drop(s);
        let s = crate::store::fjall::open(dir.path(), 8 << 20).unwrap();
        let x_full = Busy {
            full: ["x".to_string()].into(),
            ..Busy::default()
        };
        let channels = |l: Vec<Leased>| l.into_iter().map(|l| l.record.channel).collect::<Vec<_>>();
        assert_eq!(channels(s.lease_due(0, 10, &x_full).unwrap()), ["y"]);
        assert_eq!(channels(s.lease_due(0, 10, &idle()).unwrap()), ["x"]);
    }

    #[tokio::test]
    async fn a_restart_into_a_large_backlog_leases_its_earliest_at_once_and_loses_none() {
        let dir = tempfile::tempdir().unwrap();
        let n = 2 * due_load::CHUNK + 3;
        let s = crate::store::fjall::open(dir.path(), 8 << 20).unwrap();
        let events = (0..n)
            .map(|i| {
                let channel = if i % 3 == 0 { "x" } else { "y" };
                new_event(&format!("e{i}"), 0, vec![delivery_on(channel, i as u64)])
            })
            .collect();
        s.enqueue(events).await.unwrap();
        drop(s);
        let s = crate::store::fjall::open(dir.path(), 8 << 20).unwrap();
        // Written after the open: the load (from a snapshot) must not list it a second time.
        s.enqueue(vec![new_event("late", 0, vec![delivery_on("x", 1)])])
            .await
            .unwrap();
        let first = s.lease_due(u64::MAX, 5, &idle()).unwrap();
        let due: Vec<u64> = first.iter().map(|l| l.due_ms).collect();
        assert_eq!(due, [0, 1, 1, 2, 3], "the earliest, right after the open");
        assert_eq!(s.counts().unwrap().pending, n as u64 + 1, "counted whole");
        let mut seen = std::collections::HashSet::new();
        let mut leased = first;
        while !leased.is_empty() {
            for l in &leased {
                assert!(seen.insert(l.record.id), "{:?} leased twice", l.record.id);
                s.complete(l, done(Ending::Delivered), 1).unwrap();
            }
            leased = s.lease_due(u64::MAX, 512, &idle()).unwrap();
        }
        assert_eq!(seen.len(), n + 1);
        assert_eq!(s.counts().unwrap().pending, 0);
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"q"), b"r");
        assert_eq!(prefix_end(&[b'a', 0xff]), vec![b'b']);
    }
}
