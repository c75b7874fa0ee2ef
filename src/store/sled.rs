//! The embedded sled backend: one tree, prefixed keys (see `keys.rs`), atomic batches and
//! group commit.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use sled::{Batch, IVec, Tree};

use super::commit::Committer;
use super::keys;
use super::record::{decode, encode};
use super::{
    AttemptRecord, Completion, Counts, DeliveryRecord, DeliveryState, Enqueued, EventRecord,
    Leased, NewEvent, Next, Replay, Store, StoreError,
};
use crate::ids::{DeliveryId, EventId};
use crate::message::Message;

/// The sled-backed [`Store`].
pub struct SledStore {
    db: sled::Db,
    tree: Tree,
    committer: Committer,
    /// Serializes the dedup check with the write that claims the key.
    enqueue_lock: Mutex<()>,
    dir: std::path::PathBuf,
}

impl SledStore {
    /// Opens (or creates) the store in `dir` with a page cache of `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(1000));
        // sled 0.34 can panic on damaged files; a bad data dir must be a clear error instead.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || config.open()))
            .map_err(|_| {
                StoreError::Corrupt(format!("{}: sled panicked while opening", dir.display()))
            })?;
        let db =
            opened.map_err(|e| StoreError::Io(format!("cannot open {}: {e}", dir.display())))?;
        let tree = db.open_tree("hookrelay")?;
        let committer = Committer::start(db.clone(), dir)
            .map_err(|e| StoreError::Io(format!("cannot start flusher: {e}")))?;
        Ok(SledStore {
            db,
            tree,
            committer,
            enqueue_lock: Mutex::new(()),
            dir: dir.to_path_buf(),
        })
    }

    fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        self.tree
            .get(keys::delivery(id))?
            .map(|v| decode_delivery(*id, &v))
            .transpose()
    }

    fn count_prefix(&self, prefix: u8) -> u64 {
        self.tree.scan_prefix([prefix]).keys().count() as u64
    }
}

fn decode_delivery(id: DeliveryId, bytes: &[u8]) -> Result<DeliveryRecord, StoreError> {
    let mut rec: DeliveryRecord = decode(bytes)?;
    rec.id = id;
    Ok(rec)
}

fn dedup_value(id: &EventId, at_ms: u64) -> [u8; 24] {
    let mut v = [0u8; 24];
    v[..16].copy_from_slice(&id.0);
    v[16..].copy_from_slice(&at_ms.to_be_bytes());
    v
}

fn parse_dedup_value(v: &IVec) -> Option<(EventId, u64)> {
    if v.len() != 24 {
        return None;
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&v[..16]);
    Some((EventId(id), u64::from_be_bytes(v[16..].try_into().ok()?)))
}

/// Adds an event, its dedup key and its deliveries (due, or dead if planning failed) to `batch`.
fn add_event(batch: &mut Batch, new: NewEvent, dedup_key: Vec<u8>) {
    let count = new.deliveries.len();
    for (i, d) in new.deliveries.into_iter().enumerate() {
        let id = DeliveryId {
            event: new.id,
            index: i as u32,
        };
        let dead = d.failed.is_some();
        let rec = DeliveryRecord {
            id,
            receiver: new.event.receiver.clone(),
            event_type: new.event.ty.clone(),
            origin: d.origin,
            channel: d.channel,
            template: d.template,
            to: d.to,
            message: d.message,
            state: if dead {
                DeliveryState::Dead
            } else {
                DeliveryState::Pending
            },
            attempts: 0,
            tries: 0,
            created_ms: new.received_ms,
            updated_ms: new.received_ms,
            next_ms: (!dead).then_some(d.due_ms),
            last_error: d.failed,
            receipt: None,
        };
        let index = if dead {
            keys::timed(keys::DEAD, new.received_ms, &id)
        } else {
            keys::timed(keys::DUE, d.due_ms, &id)
        };
        batch.insert(&keys::delivery(&id), encode(&rec));
        batch.insert(&index, &[]);
    }
    let record = EventRecord {
        dedup_key: new.event.dedup_key(),
        event: new.event,
        received_ms: new.received_ms,
        deliveries: count as u32,
    };
    batch.insert(&keys::event(&new.id), encode(&record));
    batch.insert(dedup_key, &dedup_value(&new.id, new.received_ms));
}

#[async_trait]
impl Store for SledStore {
    async fn enqueue(
        &self,
        events: Vec<NewEvent>,
        dedup_window_ms: u64,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let outcomes = {
            let _claim = self.enqueue_lock.lock().map_err(|_| StoreError::Closed)?;
            let mut batch = Batch::default();
            let mut claimed: HashMap<Vec<u8>, EventId> = HashMap::new();
            let mut outcomes = Vec::with_capacity(events.len());
            for new in events {
                let dedup_key = keys::dedup(&new.event.dedup_key());
                let seen = match claimed.get(&dedup_key) {
                    Some(id) => Some(*id),
                    None => self
                        .tree
                        .get(&dedup_key)?
                        .as_ref()
                        .and_then(parse_dedup_value)
                        .filter(|(_, at)| at.saturating_add(dedup_window_ms) > new.received_ms)
                        .map(|(id, _)| id),
                };
                if let Some(id) = seen {
                    outcomes.push(Enqueued::Duplicate { id });
                    continue;
                }
                claimed.insert(dedup_key.clone(), new.id);
                outcomes.push(Enqueued::Accepted {
                    id: new.id,
                    deliveries: new.deliveries.len(),
                });
                add_event(&mut batch, new, dedup_key);
            }
            // One batch: every event, its dedup key and every delivery land together or not at all.
            self.tree.apply_batch(batch)?;
            outcomes
        };
        // Duplicates wait too: the original may have been written but not yet flushed.
        self.committer.durable().await?;
        Ok(outcomes)
    }

    fn lease_due(
        &self,
        now_ms: u64,
        lease_until_ms: u64,
        limit: usize,
    ) -> Result<Vec<Leased>, StoreError> {
        let mut out = Vec::new();
        let mut batch = Batch::default();
        let range = self
            .tree
            .range([keys::DUE].as_slice()..keys::timed_upto(keys::DUE, now_ms).as_slice());
        for item in range.keys().take(limit) {
            let key = item?;
            batch.remove(key.clone());
            let Some((_, id)) = keys::parse_timed(&key) else {
                continue;
            };
            match self.get_delivery(&id)? {
                Some(record) if record.state == DeliveryState::Pending => {
                    batch.insert(&keys::timed(keys::LEASE, lease_until_ms, &id), &[]);
                    out.push(Leased {
                        lease_until_ms,
                        record,
                    });
                }
                // A stale index entry (record gone or already final): just drop it.
                _ => {}
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(out)
    }

    fn next_wakeup_ms(&self) -> Result<Option<u64>, StoreError> {
        let first = |prefix: u8| -> Result<Option<u64>, StoreError> {
            Ok(self
                .tree
                .scan_prefix([prefix])
                .keys()
                .next()
                .transpose()?
                .and_then(|k| keys::parse_timed(&k))
                .map(|(ms, _)| ms))
        };
        Ok(match (first(keys::DUE)?, first(keys::LEASE)?) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    fn expire_leases(
        &self,
        upto_ms: u64,
        due_ms: u64,
        busy: &dyn Fn(&DeliveryId) -> bool,
    ) -> Result<usize, StoreError> {
        let mut batch = Batch::default();
        let mut n = 0;
        let range = self
            .tree
            .range([keys::LEASE].as_slice()..keys::timed_upto(keys::LEASE, upto_ms).as_slice());
        for item in range.keys() {
            let key = item?;
            let Some((_, id)) = keys::parse_timed(&key) else {
                batch.remove(key);
                continue;
            };
            if busy(&id) {
                continue;
            }
            batch.remove(key);
            batch.insert(&keys::timed(keys::DUE, due_ms, &id), &[]);
            n += 1;
        }
        self.tree.apply_batch(batch)?;
        Ok(n)
    }

    fn complete(
        &self,
        leased: &Leased,
        completion: Completion,
        now_ms: u64,
    ) -> Result<DeliveryRecord, StoreError> {
        let id = leased.record.id;
        let mut rec = self
            .get_delivery(&id)?
            .unwrap_or_else(|| leased.record.clone());
        let mut batch = Batch::default();
        batch.remove(&keys::timed(keys::LEASE, leased.lease_until_ms, &id));
        batch.insert(&keys::attempt(&id, rec.tries), encode(&completion.attempt));
        rec.tries += 1;
        if completion.counted {
            rec.attempts += 1;
        }
        rec.updated_ms = now_ms;
        if completion.attempt.error.is_some() {
            rec.last_error = completion.attempt.error.clone();
        }
        if completion.attempt.receipt.is_some() {
            rec.receipt = completion.attempt.receipt.clone();
        }
        match completion.next {
            Next::Delivered => {
                rec.state = DeliveryState::Delivered;
                rec.next_ms = None;
            }
            Next::RetryAt(at) => {
                rec.state = DeliveryState::Pending;
                rec.next_ms = Some(at);
                batch.insert(&keys::timed(keys::DUE, at, &id), &[]);
            }
            Next::Dead => {
                rec.state = DeliveryState::Dead;
                rec.next_ms = None;
                batch.insert(&keys::timed(keys::DEAD, now_ms, &id), &[]);
            }
        }
        batch.insert(&keys::delivery(&id), encode(&rec));
        self.tree.apply_batch(batch)?;
        Ok(rec)
    }

    fn set_message(&self, id: &DeliveryId, message: Message) -> Result<(), StoreError> {
        if let Some(mut rec) = self.get_delivery(id)? {
            rec.message = Some(message);
            self.tree.insert(keys::delivery(id), encode(&rec))?;
        }
        Ok(())
    }

    fn event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        self.tree
            .get(keys::event(id))?
            .map(|v| decode(&v))
            .transpose()
    }

    fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        self.get_delivery(id)
    }

    fn deliveries_of(&self, id: &EventId) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.tree
            .scan_prefix(keys::deliveries_of(id))
            .map(|item| {
                let (k, v) = item?;
                let id = DeliveryId::from_bytes(&k[1..])
                    .ok_or_else(|| StoreError::Corrupt("bad delivery key".into()))?;
                decode_delivery(id, &v)
            })
            .collect()
    }

    fn attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptRecord>, StoreError> {
        self.tree
            .scan_prefix(keys::attempts_of(id))
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    fn dead_letters(
        &self,
        after: Option<&DeliveryId>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let start = match after {
            Some(id) => match self.get_delivery(id)? {
                Some(rec) => {
                    let mut k = keys::timed(keys::DEAD, rec.updated_ms, id).to_vec();
                    k.push(0);
                    k
                }
                None => vec![keys::DEAD],
            },
            None => vec![keys::DEAD],
        };
        let mut out = Vec::new();
        for item in self.tree.range(start..[keys::DEAD + 1].to_vec()).keys() {
            if out.len() >= limit {
                break;
            }
            if let Some((_, id)) = keys::parse_timed(&item?)
                && let Some(rec) = self.get_delivery(&id)?
            {
                out.push(rec);
            }
        }
        Ok(out)
    }

    fn replay(&self, id: &DeliveryId, now_ms: u64) -> Result<Replay, StoreError> {
        let Some(mut rec) = self.get_delivery(id)? else {
            return Ok(Replay::NotFound);
        };
        if rec.state != DeliveryState::Dead {
            return Ok(Replay::NotDead);
        }
        let mut batch = Batch::default();
        batch.remove(&keys::timed(keys::DEAD, rec.updated_ms, id));
        rec.state = DeliveryState::Pending;
        // A replay starts a fresh retry budget: attempts and age count from now.
        rec.attempts = 0;
        rec.created_ms = now_ms;
        rec.updated_ms = now_ms;
        rec.next_ms = Some(now_ms);
        batch.insert(&keys::timed(keys::DUE, now_ms, id), &[]);
        batch.insert(&keys::delivery(id), encode(&rec));
        self.tree.apply_batch(batch)?;
        Ok(Replay::Scheduled)
    }

    fn purge(
        &self,
        now_ms: u64,
        retention_ms: u64,
        dead_retention_ms: u64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let cutoff = now_ms.saturating_sub(retention_ms);
        let dead_cutoff = now_ms.saturating_sub(dead_retention_ms);
        let mut end = [0u8; 17];
        end[0] = keys::EVENT;
        end[1..9].copy_from_slice(&cutoff.to_be_bytes());
        let mut removed = 0;
        for item in self.tree.range([keys::EVENT].as_slice()..end.as_slice()) {
            if removed >= limit {
                break;
            }
            let (key, value) = item?;
            let record: EventRecord = decode(&value)?;
            let event_id = EventId(
                key[1..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("bad event key".into()))?,
            );
            let deliveries = self.deliveries_of(&event_id)?;
            let finished = deliveries.iter().all(|d| match d.state {
                DeliveryState::Delivered => true,
                DeliveryState::Dead => d.updated_ms < dead_cutoff,
                DeliveryState::Pending => false,
            });
            if !finished {
                continue;
            }
            let mut batch = Batch::default();
            for d in &deliveries {
                batch.remove(&keys::delivery(&d.id));
                if d.state == DeliveryState::Dead {
                    batch.remove(&keys::timed(keys::DEAD, d.updated_ms, &d.id));
                }
                for k in self.tree.scan_prefix(keys::attempts_of(&d.id)).keys() {
                    batch.remove(k?);
                }
            }
            let dedup_key = keys::dedup(&record.dedup_key);
            // Only drop the dedup key if it still points at this event.
            if self
                .tree
                .get(&dedup_key)?
                .as_ref()
                .and_then(parse_dedup_value)
                .is_some_and(|(id, _)| id == event_id)
            {
                batch.remove(dedup_key);
            }
            batch.remove(key);
            self.tree.apply_batch(batch)?;
            removed += 1;
        }
        Ok(removed)
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        Ok(Counts {
            events: self.count_prefix(keys::EVENT),
            deliveries: self.count_prefix(keys::DELIVERY),
            pending: self.count_prefix(keys::DUE),
            leased: self.count_prefix(keys::LEASE),
            dead: self.count_prefix(keys::DEAD),
            attempts: self.count_prefix(keys::ATTEMPT),
        })
    }

    fn fsyncs(&self) -> u64 {
        self.committer.fsyncs()
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        fn walk(p: &Path) -> std::io::Result<u64> {
            let mut total = 0;
            for entry in std::fs::read_dir(p)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                total += if meta.is_dir() {
                    walk(&entry.path())?
                } else {
                    meta.len()
                };
            }
            Ok(total)
        }
        walk(&self.dir).map_err(|e| StoreError::Io(e.to_string()))
    }

    fn close(&self) -> Result<(), StoreError> {
        self.committer.stop();
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewDelivery, NewEvent};

    fn open() -> (Box<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        (Box::new(store), dir)
    }

    crate::store_suite!(open());

    #[tokio::test]
    async fn pending_deliveries_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path(), 8 << 20).unwrap();
            let new = NewEvent {
                id: EventId::generate(0),
                event: serde_json::from_value(serde_json::json!({
                    "receiver": "r", "id": "1", "source": "/s", "type": "t", "specversion": "1.0",
                    "data": {"kind": "none"}
                }))
                .unwrap(),
                received_ms: 0,
                deliveries: vec![NewDelivery {
                    origin: "o".into(),
                    channel: "c".into(),
                    template: None,
                    to: Default::default(),
                    message: None,
                    failed: None,
                    due_ms: 0,
                }],
            };
            s.enqueue(vec![new], 1000).await.unwrap();
            // Leased but never completed: the process "crashes" holding it.
            assert_eq!(s.lease_due(0, 10_000, 10).unwrap().len(), 1);
            s.close().unwrap();
        }
        let s = SledStore::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(s.expire_leases(u64::MAX, 1, &|_| false).unwrap(), 1);
        assert_eq!(s.lease_due(1, 10_000, 10).unwrap().len(), 1);
    }

    #[test]
    fn an_unusable_data_dir_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let err = SledStore::open(&file, 8 << 20).err().expect("must fail");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }
}
