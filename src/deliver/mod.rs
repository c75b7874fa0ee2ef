//! Delivery: a dispatcher leases due deliveries from the store and hands each to a worker task,
//! which sends it through its channel and records the outcome (while it sends the lane's next).
//! Retries are reschedules in the store, never sleeps in memory.
//!
//! Each channel is a lane with a cap on deliveries in flight (`maxInFlight`): a delivery leased
//! while its lane is full waits in the lane (in memory; its due entry stays in the store), and
//! the worker that finishes one of the lane's deliveries takes the next. So a hung destination
//! holds at most its cap of workers, and the others' deliveries go out meanwhile. A lane
//! whose waiting list is long enough is full: the store leaves its other deliveries in place
//! (for replicas with room, on PostgreSQL), so memory holds a bounded lead per channel however
//! long its backlog, and the lane's worker wakes the dispatcher when the list has drained to
//! half.

mod digest;
mod thread;
mod worker;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::catalog::Catalog;
use crate::catalog::reload::LiveCatalog;
use crate::config::Settings;
use crate::ids::{DeliveryId, now_ms};
use crate::metrics::Metrics;
use crate::store::{Busy, Leased, Store};

/// Most deliveries leased in one store round trip.
const LEASE_BATCH: usize = 512;
/// Fewest deliveries a lane keeps leased ahead of those it sends (at least its cap).
const MIN_AHEAD: usize = 32;
/// Longest the dispatcher sleeps without looking at the store (guards against clock jumps).
const MAX_IDLE: Duration = Duration::from_secs(5);
/// How long dispatch first pauses when the store cannot write; doubled on each failed
/// recovery, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// A store that fails again this soon after recovering keeps the longer pause.
const SETTLED: Duration = Duration::from_secs(60);

/// The delivery side of the relay.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    catalog: Arc<LiveCatalog>,
    metrics: Arc<Metrics>,
    settings: Arc<Settings>,
    wake: Arc<Notify>,
    held: Mutex<Held>,
    /// Set at shutdown: workers take no further deliveries from their lane.
    stopping: AtomicBool,
    /// When each channel's throttling was last logged (ms).
    throttle_logged: Mutex<HashMap<String, u64>>,
    threads: thread::Turns,
}

/// The bounded, exponential pause of dispatch while the store cannot write.
#[derive(Default)]
struct Pause {
    wait: Duration,
    recovered_at: Option<std::time::Instant>,
}

impl Pause {
    /// How long to wait before the next recovery.
    fn next(&mut self) -> Duration {
        let fresh = match self.recovered_at.take() {
            Some(at) => at.elapsed() >= SETTLED,
            None => self.wait.is_zero(),
        };
        self.wait = if fresh {
            FIRST_PAUSE
        } else {
            (self.wait * 2).min(MAX_PAUSE)
        };
        self.wait
    }

    fn recovered(&mut self) {
        self.recovered_at = Some(std::time::Instant::now());
    }
}

/// What the dispatcher holds in memory.
#[derive(Default)]
struct Held {
    /// Deliveries being sent or waiting in a lane (their due entries stay until the outcome).
    held: HashSet<DeliveryId>,
    lanes: HashMap<String, Lane>,
}

/// One channel's deliveries in memory.
#[derive(Default)]
struct Lane {
    sending: usize,
    /// Leased while the lane was full: (due ms, lease token, delivery), in lease order.
    waiting: VecDeque<(u64, u64, DeliveryId)>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        catalog: Arc<LiveCatalog>,
        metrics: Arc<Metrics>,
        settings: Arc<Settings>,
        wake: Arc<Notify>,
    ) -> Dispatcher {
        Dispatcher {
            store,
            catalog,
            metrics,
            settings,
            wake,
            held: Mutex::default(),
            stopping: AtomicBool::new(false),
            throttle_logged: Mutex::default(),
            threads: thread::Turns::default(),
        }
    }

    /// The dispatcher's memory. Nothing panics while holding it; a poisoned lock would only
    /// mean a panic elsewhere in a thread that held it, and the sets stay consistent.
    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What is held now and which channels have no room, for the store to skip.
    fn busy(&self) -> Busy {
        let catalog = self.catalog.current();
        let d = self.held();
        let mut full: std::collections::HashSet<String> = d
            .lanes
            .iter()
            .filter(|(channel, lane)| lane.waiting.len() >= ahead(self.cap_in(&catalog, channel)))
            .map(|(channel, _)| channel.clone())
            .collect();
        // Channels whose whole cap is another replica's right now.
        full.extend(
            catalog
                .channels
                .iter()
                .filter(|(_, c)| self.store.share_of(c.max_in_flight) == 0)
                .map(|(name, _)| name.clone()),
        );
        Busy {
            held: d.held.clone(),
            full,
        }
    }

    /// This replica's cap of `channel` (of the default for one no longer loaded): its part of
    /// the channel's `maxInFlight`, which holds across replicas.
    fn cap(&self, channel: &str) -> usize {
        self.cap_in(&self.catalog.current(), channel)
    }

    /// [`Self::cap`] in `catalog` (one snapshot for a whole round).
    fn cap_in(&self, catalog: &Catalog, channel: &str) -> usize {
        let configured = catalog
            .channels
            .get(channel)
            .map_or(crate::channel::def::DEFAULT_MAX_IN_FLIGHT, |c| {
                c.max_in_flight
            });
        self.store.share_of(configured)
    }

    /// Whether a throttle of `channel` at `now` is the first in a minute (then it is logged).
    fn first_throttle_in_a_minute(&self, channel: &str, now: u64) -> bool {
        let mut logged = self
            .throttle_logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match logged.get(channel) {
            Some(&at) if now < at + 60_000 => false,
            _ => {
                logged.insert(channel.to_string(), now);
                true
            }
        }
    }

    /// Takes `l` into its lane: `true` if it may be sent now, `false` if it waits for a turn
    /// (or is held already: a digest being sent took it along). A delivery of a digest that
    /// another of this round (`digests`, their keys) is sent for waits in the lane, where that
    /// one's worker takes it along.
    fn admit(&self, l: &Leased, cap: usize, digests: &mut HashSet<String>) -> bool {
        let mut d = self.held();
        if !d.held.insert(l.record.id) {
            return false;
        }
        let lane = d.lanes.entry(l.record.channel.clone()).or_default();
        let joins = l
            .record
            .digest
            .as_ref()
            .is_some_and(|key| !digests.insert(key.clone()));
        let admitted = lane.sending < cap && !joins;
        if admitted {
            lane.sending += 1;
        } else {
            lane.waiting.push_back((l.due_ms, l.token, l.record.id));
        }
        self.metrics.in_flight(&l.record.channel, lane.sending);
        admitted
    }

    /// Holds those of `ids` (deliveries of `channel`) for a digest being sent, and returns them:
    /// those nothing here holds yet, and those waiting in the channel's lane (no worker has
    /// them). The dispatcher does not hand them out meanwhile.
    fn claim(&self, channel: &str, ids: &[DeliveryId]) -> Vec<DeliveryId> {
        let mut d = self.held();
        let Held { held, lanes } = &mut *d;
        let mut lane = lanes.get_mut(channel);
        ids.iter()
            .copied()
            .filter(|id| {
                held.insert(*id)
                    || lane.as_mut().is_some_and(|lane| {
                        let before = lane.waiting.len();
                        lane.waiting.retain(|(_, _, w)| w != id);
                        lane.waiting.len() < before
                    })
            })
            .collect()
    }

    /// Lets go of held deliveries: their outcome is recorded (or they stay due), or they were
    /// claimed for a digest.
    fn let_go(&self, ids: impl IntoIterator<Item = DeliveryId>) {
        let mut d = self.held();
        for id in ids {
            d.held.remove(&id);
        }
    }

    /// Frees the lane slot of `done` (sent; it stays held until its outcome is recorded) and
    /// hands its lane's next waiting delivery to the caller, which keeps its worker slot for it.
    async fn next_in_lane(&self, done: &Leased) -> Option<Leased> {
        let channel = &done.record.channel;
        let cap = self.cap(channel);
        let moved: Vec<DeliveryId> = {
            let mut d = self.held();
            let lane = d.lanes.entry(channel.clone()).or_default();
            lane.sending = lane.sending.saturating_sub(1);
            // The channel's part moved to another replica: what waits here goes to it.
            let moved: Vec<_> = match cap {
                0 => lane.waiting.drain(..).map(|(_, _, id)| id).collect(),
                _ => Vec::new(),
            };
            for id in &moved {
                d.held.remove(id);
            }
            moved
        };
        self.release(&moved).await;
        let mut next = self.take_waiting(&mut self.held(), channel, cap);
        if self.lane_has_room(channel, cap) {
            self.wake.notify_one();
        }
        while let Some((due_ms, token, id)) = next {
            // Read again: it waited in memory while the store may have moved on.
            match self.store.relet(&id, due_ms, token).await {
                Ok(Some(leased)) => return Some(leased),
                _ => {
                    let mut d = self.held();
                    d.held.remove(&id);
                    if let Some(lane) = d.lanes.get_mut(channel) {
                        lane.sending = lane.sending.saturating_sub(1);
                    }
                    next = self.take_waiting(&mut d, channel, cap);
                }
            }
        }
        None
    }

    /// Whether the lane of `channel` has just drained to where the dispatcher should lease
    /// more of it: to half its lead, or to nothing waiting. (It is skipped while full.)
    fn lane_has_room(&self, channel: &str, cap: usize) -> bool {
        let d = self.held();
        let waiting = d.lanes.get(channel).map_or(0, |l| l.waiting.len());
        waiting == 0 || waiting == ahead(cap) / 2
    }

    /// Gives up leases this replica will not use (another may take them at once).
    async fn release(&self, ids: &[DeliveryId]) {
        if ids.is_empty() {
            return;
        }
        if let Err(e) = self.store.release(ids).await {
            tracing::warn!(error = %e, deliveries = ids.len(),
                "releasing leases failed: they are taken over when this replica's heartbeat lapses");
        }
    }

    /// The next waiting delivery of `channel`, counted as sending, if its cap allows and the
    /// relay is not stopping; the lane is forgotten once idle. While the store cannot write,
    /// the lane's waiting deliveries are let go (they stay due for after its recovery).
    fn take_waiting(
        &self,
        d: &mut Held,
        channel: &str,
        cap: usize,
    ) -> Option<(u64, u64, DeliveryId)> {
        let lane = d.lanes.get_mut(channel)?;
        let paused = self.store.fault().is_some();
        if paused {
            let dropped: Vec<_> = lane.waiting.drain(..).map(|(_, _, id)| id).collect();
            for id in dropped {
                d.held.remove(&id);
            }
        }
        let lane = d.lanes.get_mut(channel)?;
        let next = if lane.sending < cap && !paused && !self.stopping.load(Ordering::Relaxed) {
            lane.waiting.pop_front()
        } else {
            None
        };
        if next.is_some() {
            lane.sending += 1;
        }
        // Every change of a lane's count ends here or in `admit`: the gauge follows it.
        self.metrics.in_flight(channel, lane.sending);
        if next.is_none() && lane.sending == 0 && lane.waiting.is_empty() {
            d.lanes.remove(channel);
        }
        next
    }

    /// Runs until `shutdown` turns true, then waits up to the grace period for deliveries in
    /// flight. Whatever is still in flight then stays due in the store for the next start.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.settings.workers));
        let mut tasks = JoinSet::new();
        let mut pause = Pause::default();
        while !*shutdown.borrow() {
            while tasks.try_join_next().is_some() {}
            if self.store.fault().is_some() {
                // Outcomes cannot be recorded: anything sent now would be sent again.
                self.recover(&mut pause, &mut shutdown).await;
                continue;
            }
            let free = slots.available_permits();
            if free == 0 {
                tokio::select! {
                    permit = slots.clone().acquire_owned() => drop(permit),
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let now = now_ms();
            let busy = self.busy();
            let leased = self
                .store
                .lease_due(now, free.min(LEASE_BATCH), &busy)
                .await;
            let leased = match leased {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "reading due deliveries failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            };
            if leased.is_empty() {
                self.idle(now, &mut shutdown).await;
                continue;
            }
            // Every delivery of the round is admitted before any worker starts, so that a
            // digest's worker finds the rest of its digest waiting in the lane.
            let mut digests = HashSet::new();
            let mut start = Vec::new();
            let catalog = self.catalog.current();
            for l in leased {
                // Held before the next scan so the dispatcher never hands it out twice.
                let cap = self.cap_in(&catalog, &l.record.channel);
                if cap == 0 {
                    // Leased just before its channel's part moved to another replica.
                    self.release(&[l.record.id]).await;
                    continue;
                }
                if self.admit(&l, cap, &mut digests) {
                    start.push(l);
                }
            }
            for l in start {
                let permit = slots
                    .clone()
                    .try_acquire_owned()
                    .expect("no more sent than free slots");
                tasks.spawn(worker::run(self.clone(), l, permit));
            }
        }
        self.stopping.store(true, Ordering::Relaxed);
        let grace = self.settings.shutdown_grace;
        if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = tasks.len(),
                "shutdown grace over; unfinished deliveries resume at the next start"
            );
            tasks.abort_all();
        }
    }

    /// The store cannot write: waits (longer each time it still cannot), then has it recover.
    async fn recover(&self, pause: &mut Pause, shutdown: &mut watch::Receiver<bool>) {
        let wait = pause.next();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        let store = self.store.clone();
        // Off the async workers: an embedded engine reopens its files.
        let rt = tokio::runtime::Handle::current();
        match tokio::task::spawn_blocking(move || rt.block_on(store.recover())).await {
            Ok(Ok(())) => pause.recovered(),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, retry_in_ms = pause.wait.as_millis() as u64,
                    "the store still cannot write")
            }
            Err(e) => tracing::error!(error = %e, "store recovery task failed"),
        }
    }

    /// Nothing is due: sleep until the next due time, a new event, a finished attempt, or
    /// shutdown.
    async fn idle(&self, now: u64, shutdown: &mut watch::Receiver<bool>) {
        let next = self.store.next_due_ms(&self.busy()).await.ok().flatten();
        let wait = match next {
            Some(t) => Duration::from_millis(t.saturating_sub(now)).min(MAX_IDLE),
            None => MAX_IDLE,
        };
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// How many waiting deliveries make a lane of cap `cap` full.
fn ahead(cap: usize) -> usize {
    cap.max(MIN_AHEAD)
}
