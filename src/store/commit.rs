//! Group commit: one flush — the engine's flush, then a real `fdatasync` — covers every write
//! made before it, so concurrent requests share the cost of durability.
//!
//! Under load (the last flush covered more than one request, and requests have lately come
//! closer together than one step of lingering) the flusher, once woken, lingers while more
//! requests keep arriving — one short sleep at a time, never longer than [`MAX_LINGER`] — so
//! writers that arrived during the last flush land in this one instead of each starting a flush
//! of their own. A lone request is flushed at once, and so is each of a steady trickle: a sleep
//! that would wait for nobody costs its request the step and the flusher a wake-up.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::kv::Syncer;
use super::{Fault, StoreError};

/// How long one step of lingering waits for another request.
const LINGER_STEP: Duration = Duration::from_micros(250);
/// The most a flush is put off by lingering.
const MAX_LINGER: Duration = Duration::from_millis(1);

/// How far durability has come, in write tickets.
#[derive(Debug, Clone, Default)]
struct Durable {
    /// Every ticket up to this one is on disk.
    upto: u64,
    /// A flush that was to cover tickets up to this one failed, and why.
    failed_upto: u64,
    fault: Option<Fault>,
}

struct Shared {
    /// Tickets handed out: one per write that wants to be durable.
    tickets: AtomicU64,
    /// Set when a flush is wanted; the flag and `stop` are guarded together.
    wake: Mutex<Wake>,
    cv: Condvar,
    durable: watch::Sender<Durable>,
    fsyncs: AtomicU64,
}

#[derive(Default)]
struct Wake {
    pending: bool,
    stop: bool,
}

/// Makes writes durable in groups; see the module doc.
pub struct Committer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Committer {
    /// Starts the flusher thread; `sync` makes every write made before it durable.
    pub fn start(mut sync: Syncer) -> io::Result<Committer> {
        let (tx, _) = watch::channel(Durable::default());
        let shared = Arc::new(Shared {
            tickets: AtomicU64::new(0),
            wake: Mutex::new(Wake::default()),
            cv: Condvar::new(),
            durable: tx,
            fsyncs: AtomicU64::new(0),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hookrelay-commit".into())
            .spawn(move || {
                let (mut flushed, mut last_group) = (0, 0);
                let mut pace = Pace::default();
                while wait_for_work(&s) {
                    let grouped = last_group > 1 || s.tickets.load(Ordering::Acquire) > flushed + 1;
                    if grouped && pace.busy() {
                        linger(&s);
                    }
                    // Every ticket taken before this load belongs to a write that already
                    // happened, so the flush below covers it.
                    let target = s.tickets.load(Ordering::Acquire);
                    (flushed, last_group) = (target, target - flushed);
                    pace.saw(Instant::now(), last_group);
                    // A failure is the waiting writers' to report (the store logs it once).
                    let result = sync();
                    s.fsyncs.fetch_add(1, Ordering::Relaxed);
                    s.durable.send_modify(|d| match &result {
                        Ok(()) => d.upto = d.upto.max(target),
                        Err(e) => {
                            d.failed_upto = target;
                            d.fault = Some(Fault::of_io(e));
                        }
                    });
                }
            })?;
        Ok(Committer {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Waits until every write this caller made before calling is on disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let mut rx = self.shared.durable.subscribe();
        let ticket = self.shared.tickets.fetch_add(1, Ordering::AcqRel) + 1;
        self.request();
        let seen = rx
            .wait_for(|d| d.upto >= ticket || d.failed_upto >= ticket)
            .await
            .map_err(|_| StoreError::Closed)?;
        if seen.upto >= ticket {
            Ok(())
        } else {
            let fault = seen.fault.clone();
            Err(StoreError::Unwritable(
                fault.unwrap_or_else(|| Fault::other("flush to disk failed")),
            ))
        }
    }

    /// How many flush + fsync rounds have run.
    pub fn fsyncs(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    fn request(&self) {
        let mut w = self.shared.wake.lock().expect("commit lock");
        w.pending = true;
        self.shared.cv.notify_one();
    }

    /// Runs a last flush and stops the thread.
    pub fn stop(&self) {
        {
            let mut w = self.shared.wake.lock().expect("commit lock");
            w.pending = true;
            w.stop = true;
            self.shared.cv.notify_one();
        }
        if let Some(t) = self.thread.lock().expect("commit lock").take() {
            let _ = t.join();
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How closely requests have lately followed one another: a moving average of the time
/// between them, over the flushes that took them.
struct Pace {
    since: Instant,
    /// Mean time between requests, in microseconds (none seen yet: `None`).
    gap_us: Option<f64>,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace {
            since: Instant::now(),
            gap_us: None,
        }
    }
}

impl Pace {
    /// A flush at `now` is about to take `requests` that arrived since the last one.
    fn saw(&mut self, now: Instant, requests: u64) {
        let gap = now.duration_since(self.since).as_micros() as f64 / requests.max(1) as f64;
        self.since = now;
        // Half of each new sample: a burst shows within a few flushes, a lull too.
        self.gap_us = Some(self.gap_us.map_or(gap, |mean| (mean + gap) / 2.0));
    }

    /// Whether another request is likely within one step of lingering.
    fn busy(&self) -> bool {
        self.gap_us
            .is_some_and(|gap| gap < LINGER_STEP.as_micros() as f64)
    }
}

/// Puts the flush off while requests keep arriving, up to [`MAX_LINGER`].
fn linger(s: &Shared) {
    let deadline = Instant::now() + MAX_LINGER;
    let mut seen = s.tickets.load(Ordering::Acquire);
    while Instant::now() < deadline {
        std::thread::sleep(LINGER_STEP);
        let now = s.tickets.load(Ordering::Acquire);
        if now == seen {
            break;
        }
        seen = now;
    }
}

/// Blocks until a flush is wanted; false once stopped with nothing left to flush.
fn wait_for_work(s: &Shared) -> bool {
    let mut w = s.wake.lock().expect("commit lock");
    while !w.pending && !w.stop {
        w = s.cv.wait(w).expect("commit lock");
    }
    if w.pending {
        w.pending = false;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_closer_than_a_step_make_the_flusher_linger() {
        let start = Instant::now();
        let mut pace = Pace {
            since: start,
            gap_us: None,
        };
        assert!(!pace.busy(), "nothing seen yet");
        // A steady 1,000 requests a second, a flush each.
        for ms in 1..=5 {
            pace.saw(start + Duration::from_millis(ms), 1);
        }
        assert!(!pace.busy());
        // Then 32 requests a flush, a flush every 2 ms: one every ~60 µs.
        for i in 1..=5 {
            pace.saw(start + Duration::from_millis(5 + 2 * i), 32);
        }
        assert!(pace.busy());
        // And back to a trickle.
        for i in 1..=8 {
            pace.saw(start + Duration::from_millis(15 + 3 * i), 1);
        }
        assert!(!pace.busy());
    }
}
