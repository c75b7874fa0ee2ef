//! Per-destination rate limits (e.g. 20/min for a robot, 5/s and 100/min for Feishu) as a
//! reservation log: a delivery that cannot send now is given its own future slot and told to
//! come back then, so throttled deliveries return one by one instead of all at once, and a
//! wait never holds a worker.
//!
//! On a shared store (PostgreSQL) the log lives in the database, one row per channel updated
//! under a row lock by the same logic, so N replicas together keep the limit instead of N× it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::ids::DeliveryId;
use crate::store::Store;

/// At most `count` sends per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub count: u32,
    pub window: Duration,
}

impl Limit {
    pub fn per_second(count: u32) -> Limit {
        Limit {
            count,
            window: Duration::from_secs(1),
        }
    }

    pub fn per_minute(count: u32) -> Limit {
        Limit {
            count,
            window: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    /// Send times (ms), past and reserved, in order.
    log: VecDeque<u64>,
    /// Slots reserved for deliveries that were told to come back (by delivery id).
    reserved: HashMap<String, u64>,
    /// No sends before this (the vendor said to back off).
    paused_until: u64,
}

/// One destination's limits.
#[derive(Debug)]
pub struct RateLimiter {
    limits: Vec<Limit>,
    state: Mutex<State>,
}

/// `change` applied to a log kept as a shared document (an unreadable or absent one starts empty).
fn on_shared(
    mut change: impl FnMut(&mut State) + Send,
) -> impl FnMut(Option<serde_json::Value>) -> serde_json::Value + Send {
    move |stored| {
        let mut s: State = stored
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        change(&mut s);
        serde_json::to_value(&s).unwrap_or_default()
    }
}

/// A reservation is honoured this early (the dispatcher wakes on the millisecond, not before).
const EARLY_MS: u64 = 25;

impl RateLimiter {
    pub fn new(limits: Vec<Limit>) -> RateLimiter {
        RateLimiter {
            limits: limits.into_iter().filter(|l| l.count > 0).collect(),
            state: Mutex::new(State::default()),
        }
    }

    /// [`RateLimiter::acquire`] across every replica of a shared store (`key` names the
    /// destination); on an embedded store, this process's own log.
    pub async fn acquire_in(
        &self,
        store: &dyn Store,
        key: &str,
        id: &DeliveryId,
        now_ms: u64,
    ) -> Result<(), Duration> {
        let mut verdict = Ok(());
        let shared = {
            let mut step = on_shared(|s| verdict = self.take(s, id, now_ms));
            store.update_shared(&format!("rate:{key}"), &mut step).await
        };
        match shared {
            Ok(true) => verdict,
            // Not shared, or the database cannot be asked: this replica's own log.
            Ok(false) | Err(_) => self.acquire(id, now_ms),
        }
    }

    /// [`RateLimiter::pause_until`] across every replica of a shared store.
    pub async fn pause_in(&self, store: &dyn Store, key: &str, until_ms: u64) {
        self.pause_until(until_ms);
        let mut step = on_shared(|s| s.paused_until = s.paused_until.max(until_ms));
        let _ = store.update_shared(&format!("rate:{key}"), &mut step).await;
    }

    /// May `id` send at `now_ms`? `Err(wait)` reserves a later slot for it.
    pub fn acquire(&self, id: &DeliveryId, now_ms: u64) -> Result<(), Duration> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.take(&mut s, id, now_ms)
    }

    /// The reservation logic, over any copy of the log.
    fn take(&self, s: &mut State, id: &DeliveryId, now_ms: u64) -> Result<(), Duration> {
        let id = id.to_string();
        let longest = self
            .limits
            .iter()
            .map(|l| l.window.as_millis() as u64)
            .max()
            .unwrap_or(0);
        while s.log.front().is_some_and(|t| t + longest <= now_ms) {
            s.log.pop_front();
        }
        s.reserved.retain(|_, slot| *slot + longest > now_ms);
        if let Some(slot) = s.reserved.get(&id).copied() {
            if slot <= now_ms + EARLY_MS && s.paused_until <= now_ms {
                s.reserved.remove(&id);
                return Ok(());
            }
            return Err(Duration::from_millis(
                slot.max(s.paused_until).saturating_sub(now_ms),
            ));
        }
        let slot = self.earliest(&s.log, now_ms.max(s.paused_until));
        s.log.push_back(slot);
        if slot <= now_ms {
            Ok(())
        } else {
            s.reserved.insert(id, slot);
            Err(Duration::from_millis(slot - now_ms))
        }
    }

    /// The earliest time at or after `from` (and after every entry already logged) that keeps
    /// every limit.
    fn earliest(&self, log: &VecDeque<u64>, from: u64) -> u64 {
        let mut t = from.max(log.back().copied().unwrap_or(0));
        loop {
            let mut moved = false;
            for l in &self.limits {
                let n = l.count as usize;
                let w = l.window.as_millis() as u64;
                // The n-th most recent send must have left the window ending at t.
                if log.len() >= n {
                    let nth = log[log.len() - n];
                    if nth + w > t {
                        t = nth + w;
                        moved = true;
                    }
                }
            }
            if !moved {
                return t;
            }
        }
    }

    /// The vendor said "too fast": nothing goes out before `until_ms`.
    pub fn pause_until(&self, until_ms: u64) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.paused_until = s.paused_until.max(until_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::EventId;

    fn id(i: u32) -> DeliveryId {
        DeliveryId {
            event: EventId([1; 16]),
            index: i,
        }
    }

    #[test]
    fn bursts_are_spread_over_reserved_slots() {
        let rl = RateLimiter::new(vec![Limit::per_minute(20)]);
        for i in 0..20 {
            assert_eq!(rl.acquire(&id(i), 1000), Ok(()), "send {i}");
        }
        // The 21st waits a minute after the first; the 22nd after the second.
        assert_eq!(
            rl.acquire(&id(20), 1000),
            Err(Duration::from_millis(60_000))
        );
        assert_eq!(
            rl.acquire(&id(21), 1000),
            Err(Duration::from_millis(60_000))
        );
        // Coming back early keeps the reservation; on time, it goes.
        assert_eq!(
            rl.acquire(&id(20), 30_000),
            Err(Duration::from_millis(31_000))
        );
        assert_eq!(rl.acquire(&id(20), 61_000), Ok(()));
        assert_eq!(rl.acquire(&id(21), 61_000), Ok(()));
    }

    #[test]
    fn several_windows_hold_together() {
        let rl = RateLimiter::new(vec![Limit::per_second(5), Limit::per_minute(100)]);
        let mut granted_at = Vec::new();
        let mut now = 0u64;
        for i in 0..12 {
            match rl.acquire(&id(i), now) {
                Ok(()) => granted_at.push(now),
                Err(wait) => {
                    now += wait.as_millis() as u64;
                    assert_eq!(rl.acquire(&id(i), now), Ok(()));
                    granted_at.push(now);
                }
            }
        }
        assert_eq!(&granted_at[..5], &[0; 5]);
        assert_eq!(&granted_at[5..10], &[1000; 5]);
        assert_eq!(granted_at[10], 2000);
    }

    #[test]
    fn a_vendor_pause_holds_everyone() {
        let rl = RateLimiter::new(vec![Limit::per_minute(20)]);
        rl.pause_until(600_000);
        assert_eq!(
            rl.acquire(&id(1), 1000),
            Err(Duration::from_millis(599_000))
        );
        assert_eq!(rl.acquire(&id(1), 600_000), Ok(()));
    }

    #[test]
    fn no_limits_never_wait() {
        let rl = RateLimiter::new(vec![]);
        for i in 0..1000 {
            assert_eq!(rl.acquire(&id(i), 5), Ok(()));
        }
    }

    #[tokio::test]
    async fn replicas_on_a_shared_store_keep_one_limit_between_them() {
        let Some((a, b, _)) = crate::store::postgres::testing::pair().await else {
            return;
        };
        // Each replica builds its own limiter from the same Channel document.
        let (on_a, on_b) = (
            RateLimiter::new(vec![Limit::per_minute(20)]),
            RateLimiter::new(vec![Limit::per_minute(20)]),
        );
        let mut granted = 0;
        for i in 0..15 {
            for (k, (limiter, store)) in [(&on_a, &a), (&on_b, &b)].into_iter().enumerate() {
                let id = id(100 * k as u32 + i);
                if limiter.acquire_in(store, "robot", &id, 1000).await.is_ok() {
                    granted += 1;
                }
            }
        }
        assert_eq!(granted, 20, "20/min across both replicas, not 20 each");
        // A vendor's pause seen by one replica holds the other too.
        on_a.pause_in(&a, "robot", 500_000).await;
        assert_eq!(
            on_b.acquire_in(&b, "robot", &id(7), 400_000).await,
            Err(Duration::from_millis(100_000))
        );
    }

    #[tokio::test]
    async fn an_embedded_store_keeps_the_log_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::fjall::open(dir.path(), 8 << 20).unwrap();
        let rl = RateLimiter::new(vec![Limit::per_minute(2)]);
        let mut granted = 0;
        for i in 0..5 {
            if rl.acquire_in(&store, "robot", &id(i), 0).await.is_ok() {
                granted += 1;
            }
        }
        assert_eq!(granted, 2);
    }
}
