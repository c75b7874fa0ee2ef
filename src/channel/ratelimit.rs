//! Per-destination rate limits (e.g. 20/min for a robot, 5/s and 100/min for Feishu) as a
//! reservation log: a delivery that cannot send now is given its own future slot and told to
//! come back then, so throttled deliveries return one by one instead of all at once, and a
//! wait never holds a worker.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::ids::DeliveryId;

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

#[derive(Debug, Default)]
struct State {
    /// Send times (ms), past and reserved, in order.
    log: VecDeque<u64>,
    /// Slots reserved for deliveries that were told to come back.
    reserved: HashMap<DeliveryId, u64>,
    /// No sends before this (the vendor said to back off).
    paused_until: u64,
}

/// One destination's limits.
#[derive(Debug)]
pub struct RateLimiter {
    limits: Vec<Limit>,
    state: Mutex<State>,
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

    /// May `id` send at `now_ms`? `Err(wait)` reserves a later slot for it.
    pub fn acquire(&self, id: &DeliveryId, now_ms: u64) -> Result<(), Duration> {
        let mut s = self.state.lock().expect("rate limiter lock");
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
        if let Some(slot) = s.reserved.get(id).copied() {
            if slot <= now_ms + EARLY_MS && s.paused_until <= now_ms {
                s.reserved.remove(id);
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
            s.reserved.insert(*id, slot);
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
        let mut s = self.state.lock().expect("rate limiter lock");
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
}
