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
    /// Deliveries a worker holds right now (their due entries stay until the outcome).
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
    /// flight. Whatever is still in flight then stays due in the store for the next start.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.settings.workers));
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
            let leased = self
                .store
                .lease_due(now, free.min(LEASE_BATCH), &|id| self.is_inflight(id));
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
            for l in leased {
                let permit = slots
                    .clone()
                    .try_acquire_owned()
                    .expect("no more leased than free slots");
                // Marked before the next scan so the dispatcher never hands it out twice.
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

    /// Nothing is due: sleep until the next due time, a new event, a finished attempt, or
    /// shutdown.
    async fn idle(&self, now: u64, shutdown: &mut watch::Receiver<bool>) {
        let next = self
            .store
            .next_due_ms(&|id| self.is_inflight(id))
            .ok()
            .flatten();
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
