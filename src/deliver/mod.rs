//! Delivery: a dispatcher leases due deliveries from the store and hands each to a worker task,
//! which sends it through its channel and records the outcome. Retries are reschedules in the
//! store, never sleeps in memory.

pub mod retry;
mod worker;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::catalog::reload::LiveCatalog;
use crate::config::Settings;
use crate::ids::{DeliveryId, now_ms};
use crate::metrics::Metrics;
use crate::store::Store;

/// Most deliveries leased in one store round trip.
const LEASE_BATCH: usize = 512;
/// Longest the dispatcher sleeps without looking at the store (guards against clock jumps).
const MAX_IDLE: Duration = Duration::from_secs(5);

/// The delivery side of the relay.
pub struct Engine {
    store: Arc<dyn Store>,
    catalog: Arc<LiveCatalog>,
    metrics: Arc<Metrics>,
    settings: Arc<Settings>,
    wake: Arc<Notify>,
    /// Deliveries a worker holds right now; their leases are not expired under them.
    inflight: Mutex<HashSet<DeliveryId>>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        catalog: Arc<LiveCatalog>,
        metrics: Arc<Metrics>,
        settings: Arc<Settings>,
        wake: Arc<Notify>,
    ) -> Engine {
        Engine {
            store,
            catalog,
            metrics,
            settings,
            wake,
            inflight: Mutex::new(HashSet::new()),
        }
    }

    fn is_inflight(&self, id: &DeliveryId) -> bool {
        self.inflight.lock().expect("inflight lock").contains(id)
    }

    /// Runs until `shutdown` turns true, then waits up to the grace period for deliveries in
    /// flight. Anything still leased then is due again at the next start.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        // The store belongs to this process alone, so every lease in it was held by a process
        // that is gone: those deliveries are due now.
        match self.store.expire_leases(u64::MAX, now_ms(), &|_| false) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deliveries = n,
                "resuming deliveries leased before the last stop"
            ),
            Err(e) => tracing::error!(error = %e, "could not recover leases"),
        }
        let slots = Arc::new(Semaphore::new(self.settings.workers));
        let lease_ms = self.settings.lease.as_millis() as u64;
        let mut tasks = JoinSet::new();
        while !*shutdown.borrow() {
            while tasks.try_join_next().is_some() {}
            let free = slots.available_permits();
            if free == 0 {
                tokio::select! {
                    permit = slots.clone().acquire_owned() => drop(permit),
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let now = now_ms();
            let leased = match self
                .store
                .lease_due(now, now + lease_ms, free.min(LEASE_BATCH))
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "leasing due deliveries failed");
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
            for l in leased {
                let permit = slots
                    .clone()
                    .try_acquire_owned()
                    .expect("no more leased than free slots");
                self.inflight
                    .lock()
                    .expect("inflight lock")
                    .insert(l.record.id);
                tasks.spawn(worker::deliver(self.clone(), l, permit));
            }
        }
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

    /// Nothing is due: expire stuck leases, then sleep until the next due time, a new event, or
    /// shutdown.
    async fn idle(&self, now: u64, shutdown: &mut watch::Receiver<bool>) {
        if let Err(e) = self
            .store
            .expire_leases(now, now, &|id| self.is_inflight(id))
        {
            tracing::error!(error = %e, "expiring leases failed");
        }
        let next = self.store.next_wakeup_ms().ok().flatten();
        let wait = match next {
            // Something is due but in flight past its lease: look again shortly.
            Some(t) if t <= now => Duration::from_millis(50),
            Some(t) => Duration::from_millis(t - now).min(MAX_IDLE),
            None => MAX_IDLE,
        };
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}
