//! The backlog the relay restarts into: `n` pending deliveries written straight into a data dir
//! through the store, exactly as ingest would have stored them.

use std::path::Path;

use hookrelay::ids::now_ms;
use hookrelay::store::{self, Backend};

#[path = "../common/sample.rs"]
mod sample;

/// Events per atomic write (and per flush).
const BATCH: u64 = 2_000;

/// Stores events `1..=n` on `engine`, each with one delivery to `channel`, due now.
pub async fn preload(engine: Backend, dir: &Path, n: u64, channel: &str) -> Result<(), String> {
    let store = store::open(engine, dir, 64 << 20).map_err(|e| e.to_string())?;
    let mut next = 1;
    while next <= n {
        let end = (next + BATCH).min(n + 1);
        let at = now_ms();
        let batch = (next..end)
            .map(|i| sample::new_event(i, "bench", channel, at))
            .collect();
        store.enqueue(batch).await.map_err(|e| e.to_string())?;
        next = end;
    }
    store.close().await.map_err(|e| e.to_string())
}
