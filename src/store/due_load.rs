//! The embedded stores' due index and its loading at open: from a snapshot in a thread of its
//! own when the engine has snapshots, so a restart into a large backlog dispatches its earliest
//! deliveries at once instead of after reading every due key.
//!
//! The loader reads the due keys in key order — due order — and adds them a chunk at a time,
//! waking the dispatcher after each: what a lease finds meanwhile is the earliest of the
//! backlog (and whatever was written since open). The snapshot is taken before the store is
//! used, so it holds only what was durable then; a due entry it still lists after the store
//! moved the delivery on (an outcome, a digest's lease) is stale, and every lease drops a stale
//! entry by reading its record. Counts that must be whole wait for the end of the load.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::Notify;

use super::due::{DueIndex, Entry};
use super::keys;
use super::kv::{Kv, View, Visitor};
use super::{StoreError, lock};

/// Due entries read before they are added to the index (one lock, and one wake, per chunk).
pub(super) const CHUNK: usize = 4096;

/// The due index, how far its load has come, and whom to wake when it grows.
#[derive(Default)]
pub struct Due {
    index: Mutex<DueIndex>,
    load: Mutex<Load>,
    ended: Condvar,
    wake: Mutex<Option<Arc<Notify>>>,
}

/// Where the load of the due keys stands.
#[derive(Default, Clone, PartialEq, Debug)]
enum Load {
    #[default]
    Done,
    Running,
    /// The snapshot could not be read (a damaged table): the index lacks part of the backlog.
    Failed(String),
}

impl Due {
    /// The index as it stands (while loading, without the keys not read yet). No call that
    /// can panic runs while it is held, so a poisoned lock leaves it whole.
    pub fn lock(&self) -> MutexGuard<'_, DueIndex> {
        lock(&self.index)
    }

    /// The index once its load has ended, for counts that must be whole.
    pub fn whole(&self) -> MutexGuard<'_, DueIndex> {
        drop(
            self.ended
                .wait_while(lock(&self.load), |l| *l == Load::Running)
                .unwrap_or_else(PoisonError::into_inner),
        );
        self.lock()
    }

    /// An error while the index lacks deliveries that its load could not read: nothing may
    /// be leased from it as if it were whole.
    pub fn check(&self) -> Result<(), StoreError> {
        match &*lock(&self.load) {
            Load::Failed(why) => Err(StoreError::Damaged(format!(
                "the due deliveries could not all be read at open ({why}); \
                 restart after `hookrelay store verify`"
            ))),
            _ => Ok(()),
        }
    }

    /// Wakes `wake` each time the load adds deliveries.
    pub fn watch(&self, wake: Arc<Notify>) {
        *lock(&self.wake) = Some(wake);
    }

    fn woken(&self) {
        if let Some(wake) = &*lock(&self.wake) {
            wake.notify_one();
        }
    }

    fn ended(&self, load: Load) {
        *lock(&self.load) = load;
        self.ended.notify_all();
        self.woken();
    }
}

/// A load running in its thread.
pub struct Loading {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Loading {
    /// Stops the load and waits for its thread (which holds the engine open).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

/// Empties `due` and fills it from `kv`'s due keys: the first chunk (the earliest due) before
/// returning, the rest in a thread from a snapshot taken now when `kv` has snapshots (the
/// returned load is the caller's to stop), else all before returning. Call it before anything
/// else writes to `kv`.
pub fn start<K: Kv>(kv: &K, due: &Arc<Due>) -> Result<Option<Loading>, StoreError> {
    *due.lock() = DueIndex::default();
    let go_on = AtomicBool::new(false);
    let Some(view) = kv.snapshot() else {
        return load(&Now(kv), due, &[keys::DUE], usize::MAX, &go_on).map(|_| None);
    };
    let Some(rest) = load(&*view, due, &[keys::DUE], CHUNK, &go_on)? else {
        due.ended(Load::Done);
        return Ok(None);
    };
    due.ended(Load::Running);
    let stop = Arc::new(AtomicBool::new(false));
    let (due, stopped) = (due.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name("hookrelay-due".into())
        .spawn(move || {
            let ended = match load(&*view, &due, &rest, usize::MAX, &stopped) {
                Ok(_) => Load::Done,
                Err(e) => {
                    tracing::error!(error = %e, "reading the due deliveries failed: \
                        none is dispatched until the relay restarts");
                    Load::Failed(e.to_string())
                }
            };
            due.ended(ended);
        })
        .map_err(|e| StoreError::Io(format!("cannot start the due index's loader: {e}")))?;
    Ok(Some(Loading { stop, thread }))
}

/// Reads the due keys of `view` from `from` into `due`, a chunk at a time, until `stop` or
/// `limit` keys: the key to go on from when it stopped at `limit`. A key written before due
/// keys named their channel (an empty value) takes it from its delivery's record; one without
/// a record goes under no channel, and the first lease that meets it drops it.
fn load(
    view: &dyn View,
    due: &Due,
    from: &[u8],
    limit: usize,
    stop: &AtomicBool,
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut chunk: HashMap<String, Vec<Entry>> = HashMap::new();
    let mut read = 0;
    let (mut failed, mut rest) = (None, None);
    view.scan(from, &[keys::DUE + 1], &mut |k, v| {
        if stop.load(Ordering::Acquire) {
            return ControlFlow::Break(());
        }
        if read == limit {
            rest = Some(k.to_vec());
            return ControlFlow::Break(());
        }
        let Some(entry) = keys::parse_timed(k) else {
            return ControlFlow::Continue(());
        };
        let channel = match std::str::from_utf8(v) {
            Ok(channel) if !channel.is_empty() => channel.to_owned(),
            _ => match channel_of(view, &entry) {
                Ok(channel) => channel,
                Err(e) => {
                    failed = Some(e);
                    return ControlFlow::Break(());
                }
            },
        };
        chunk.entry(channel).or_default().push(entry);
        read += 1;
        if read % CHUNK == 0 {
            add(due, &mut chunk);
        }
        ControlFlow::Continue(())
    })?;
    add(due, &mut chunk);
    failed.map_or(Ok(rest), Err)
}

/// The channel of a due entry's delivery, from its record ("" when it has none).
fn channel_of(view: &dyn View, entry: &Entry) -> Result<String, StoreError> {
    Ok(match view.get(&keys::delivery(&entry.1))? {
        Some(v) => super::record::decode_delivery(entry.1, &v)
            .map(|r| r.channel)
            .unwrap_or_default(),
        None => String::new(),
    })
}

/// Moves a chunk into the index and wakes the dispatcher.
fn add(due: &Due, chunk: &mut HashMap<String, Vec<Entry>>) {
    if chunk.is_empty() {
        return;
    }
    let mut index = due.lock();
    for (channel, entries) in chunk.drain() {
        index.extend(&channel, entries);
    }
    drop(index);
    due.woken();
}

/// The engine read in place, for one that has no snapshots (nothing writes to it yet).
struct Now<'a, K>(&'a K);

impl<K: Kv> View for Now<'_, K> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key)
    }

    fn scan(&self, from: &[u8], to: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        self.0.scan(from, to, visit)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ids::{DeliveryId, EventId};
    use crate::store::Busy;
    use crate::store::kv::{Op, Syncer};

    /// Keys in memory; its snapshots are the keys as they are, and fail at the key of due
    /// entry `fail_at`.
    struct Listed {
        keys: BTreeMap<Vec<u8>, Vec<u8>>,
        snapshots: bool,
        fail_at: Option<usize>,
    }

    impl Listed {
        fn due(n: usize) -> Listed {
            let keys = (0..n)
                .map(|i| {
                    let channel = if i % 2 == 0 { "a" } else { "b" };
                    (
                        keys::timed(keys::DUE, i as u64, &id(i)).to_vec(),
                        channel.into(),
                    )
                })
                .collect();
            Listed {
                keys,
                snapshots: true,
                fail_at: None,
            }
        }
    }

    fn id(i: usize) -> DeliveryId {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
        DeliveryId {
            event: EventId(bytes),
            index: 0,
        }
    }

    impl View for Listed {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.keys.get(key).cloned())
        }

        fn scan(&self, from: &[u8], to: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError> {
            let bad = self
                .fail_at
                .map(|i| keys::timed(keys::DUE, i as u64, &id(i)));
            for (k, v) in self.keys.range(from.to_vec()..to.to_vec()) {
                if bad.is_some_and(|bad| bad[..] == k[..]) {
                    return Err(StoreError::Io("checksum mismatch in a table".into()));
                }
                if visit(k, v).is_break() {
                    break;
                }
            }
            Ok(())
        }
    }

    impl Kv for Listed {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            View::get(self, key)
        }
        fn scan(&self, from: &[u8], to: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError> {
            View::scan(self, from, to, visit)
        }
        fn scan_rev(&self, _: &[u8], _: &[u8], _: &mut Visitor<'_>) -> Result<(), StoreError> {
            unreachable!("loading scans forwards")
        }
        fn write(&self, _: Vec<Op>) -> Result<(), StoreError> {
            unreachable!("loading writes nothing")
        }
        fn syncer(&self) -> Result<Syncer, StoreError> {
            unreachable!("loading writes nothing")
        }
        fn size_on_disk(&self) -> Result<u64, StoreError> {
            Ok(0)
        }
        fn compact(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn snapshot(&self) -> Option<Box<dyn View>> {
            self.snapshots.then(|| {
                Box::new(Listed {
                    keys: self.keys.clone(),
                    snapshots: true,
                    fail_at: self.fail_at,
                }) as Box<dyn View>
            })
        }
    }

    #[test]
    fn the_earliest_chunk_is_there_at_once_and_the_rest_follows() {
        let kv = Listed::due(3 * CHUNK + 1);
        let due = Arc::new(Due::default());
        let loading = start(&kv, &due).unwrap();
        assert!(loading.is_some(), "the rest loads in a thread");
        let first = due.lock().take(u64::MAX, 10, &Busy::default());
        let ms: Vec<u64> = first.iter().map(|((ms, _), _)| *ms).collect();
        assert_eq!(
            ms,
            (0..10).collect::<Vec<_>>(),
            "the earliest, in due order"
        );
        assert_eq!(due.whole().len(), 3 * CHUNK + 1, "all of it once loaded");
        assert!(due.check().is_ok());
        loading.unwrap().stop();
    }

    #[test]
    fn an_engine_without_snapshots_is_loaded_before_it_is_used() {
        let kv = Listed {
            snapshots: false,
            ..Listed::due(2 * CHUNK + 3)
        };
        let due = Arc::new(Due::default());
        assert!(start(&kv, &due).unwrap().is_none());
        assert_eq!(due.lock().len(), 2 * CHUNK + 3);
    }

    #[test]
    fn a_load_that_cannot_read_its_first_chunk_fails_the_open() {
        let kv = Listed {
            fail_at: Some(10),
            ..Listed::due(2 * CHUNK)
        };
        assert!(start(&kv, &Arc::new(Due::default())).is_err());
    }

    #[test]
    fn a_load_that_cannot_read_its_snapshot_refuses_every_lease() {
        let kv = Listed {
            fail_at: Some(CHUNK + 10),
            ..Listed::due(2 * CHUNK)
        };
        let due = Arc::new(Due::default());
        let loading = start(&kv, &due).unwrap().unwrap();
        let loaded = due.whole().len();
        assert!((CHUNK..2 * CHUNK).contains(&loaded), "{loaded}");
        let err = due.check().unwrap_err().to_string();
        assert!(err.contains("could not all be read"), "{err}");
        loading.stop();
    }

    #[test]
    fn a_stopped_load_ends_and_lets_waiters_go() {
        let kv = Listed::due(40 * CHUNK);
        let due = Arc::new(Due::default());
        start(&kv, &due).unwrap().unwrap().stop();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiting = due.clone();
        std::thread::spawn(move || tx.send(waiting.whole().len()));
        let loaded = rx.recv_timeout(std::time::Duration::from_secs(20));
        assert!(loaded.is_ok(), "a count waiting for the load is let go");
        assert!(due.check().is_ok(), "stopped is not failed");
    }
}
