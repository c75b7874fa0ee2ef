//! Retention: finished events (with their deliveries and attempts) removed once they are older
//! than the retention, in bounded steps, once a minute, with the threads whose handles expired;
//! a pass that removed many compacts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Store, StoreError};
use crate::ids::now_ms;

/// How long finished events are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Delivered events.
    pub finished: Duration,
    /// Events with a dead letter (kept longer so they can be looked at and replayed).
    pub dead: Duration,
}

/// Events removed per atomic step.
const BATCH: usize = 1000;
/// A pass that removes this many events also compacts, so the data dir shrinks.
const COMPACT_AFTER: usize = 10_000;

/// Runs passes until `stop` turns true; `purged` is told how many events each step removed.
pub async fn run(
    store: Arc<dyn Store>,
    keep: Retention,
    purged: impl Fn(u64) + Clone + Send + 'static,
    mut stop: watch::Receiver<bool>,
) {
    // Once a minute, or as often as the retention itself when that is shorter.
    let every = keep
        .finished
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
        let (store, stopping, purged) = (store.clone(), stop.clone(), purged.clone());
        // Off the async workers: an embedded engine's steps are blocking I/O.
        let rt = tokio::runtime::Handle::current();
        let pass = tokio::task::spawn_blocking(move || {
            rt.block_on(pass(&*store, keep, &purged, &stopping))
        })
        .await;
        match pass {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(events = n, "retention removed finished events"),
            Ok(Err(e)) => tracing::error!(error = %e, "retention pass failed"),
            Err(e) => tracing::error!(error = %e, "retention task failed"),
        }
    }
}

/// One pass: steps of [`BATCH`] events in receive order, each one atomic write, resuming after
/// the last key it looked at. A long pass yields to shutdown between steps; the next start
/// picks it up where the keys say.
async fn pass(
    store: &dyn Store,
    keep: Retention,
    purged: &dyn Fn(u64),
    stopping: &watch::Receiver<bool>,
) -> Result<usize, StoreError> {
    let (mut total, mut after) = (0, None);
    while !*stopping.borrow() {
        let step = store
            .purge(
                after.as_ref(),
                now_ms(),
                keep.finished.as_millis() as u64,
                keep.dead.as_millis() as u64,
                BATCH,
            )
            .await?;
        total += step.removed;
        purged(step.removed as u64);
        match step.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    // Threads whose messages can no longer be changed: their handles are of no use.
    while !*stopping.borrow() && store.purge_threads(now_ms(), BATCH).await? >= BATCH {}
    if total >= COMPACT_AFTER && !*stopping.borrow() {
        store.compact().await?;
    }
    Ok(total)
}
