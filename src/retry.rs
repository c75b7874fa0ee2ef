//! Retry schedule math as pure functions (shared by the settings' default, each Channel's own
//! policy and the delivery worker): failures so far, age, `Retry-After`, policy → next step.

use std::time::Duration;

/// When to try again after a failed attempt, and when to give up.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay before each attempt: `schedule[0]` precedes the first attempt, `schedule[n]` follows
    /// the n-th failure; the last entry repeats.
    pub schedule: Vec<Duration>,
    /// A delivery older than this is dead instead of rescheduled.
    pub max_age: Duration,
    /// Optional cap on the number of attempts.
    pub max_attempts: Option<u32>,
    /// Relative jitter applied to each scheduled delay (0.2 = ±20 %).
    pub jitter: f64,
    /// The longest `Retry-After` (or vendor throttle window) that is honoured.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        let s = Duration::from_secs;
        RetryPolicy {
            schedule: vec![s(0), s(5), s(30), s(120), s(600), s(1800), s(3600), s(7200)],
            max_age: s(24 * 3600),
            max_attempts: None,
            jitter: 0.2,
            max_retry_after: s(3600),
        }
    }
}

/// Why a delivery is not retried any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// `max_attempts` reached.
    Attempts,
    /// The next attempt would fall after `max_age`.
    MaxAge,
}

/// The next step after a retryable failure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    RetryIn(Duration),
    GiveUp(GiveUp),
}

impl RetryPolicy {
    /// The step after the `failures`-th failed attempt of a delivery that is `age` old.
    /// `jitter_sample` is a uniform sample in [-1, 1] (passed in so the math needs no RNG).
    pub fn after_failure(
        &self,
        failures: u32,
        age: Duration,
        retry_after: Option<Duration>,
        jitter_sample: f64,
    ) -> Decision {
        if self.max_attempts.is_some_and(|max| failures >= max) {
            return Decision::GiveUp(GiveUp::Attempts);
        }
        let mut delay = self.step(failures, jitter_sample);
        // The receiver asked for a pause: never come back sooner than it asked (within bounds),
        // and never sooner than our own schedule says.
        if let Some(ra) = retry_after {
            delay = delay.max(ra.min(self.max_retry_after));
        }
        // Decided now, not when the late attempt comes due: an attempt that would fall past
        // `max_age` is never made, so the dead letter shows as soon as the last permitted
        // attempt has failed instead of a whole retry step later.
        if age + delay > self.max_age {
            return Decision::GiveUp(GiveUp::MaxAge);
        }
        Decision::RetryIn(delay)
    }

    /// The scheduled delay after the `failures`-th failure, jittered (`schedule[0]` for none).
    pub fn step(&self, failures: u32, jitter_sample: f64) -> Duration {
        let base = self
            .schedule
            .get(failures as usize)
            .or(self.schedule.last())
            .copied()
            .unwrap_or(Duration::from_secs(60));
        let factor = 1.0 + self.jitter * jitter_sample.clamp(-1.0, 1.0);
        base.mul_f64(factor.max(0.0))
    }

    /// How long to wait for a throttle window (not a failed attempt), bounded by the policy.
    /// A throttle that did not say how long waits the schedule's next step.
    pub fn throttle_wait(&self, wait: Option<Duration>, failures: u32, jitter: f64) -> Duration {
        wait.unwrap_or_else(|| self.step(failures + 1, jitter))
            .min(self.max_retry_after)
    }

    /// Delay before the first attempt.
    pub fn initial_delay(&self) -> Duration {
        self.schedule.first().copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn follows_the_schedule_and_repeats_its_last_step() {
        let p = RetryPolicy {
            max_age: s(100 * 3600),
            ..RetryPolicy::default()
        };
        assert_eq!(p.initial_delay(), s(0));
        assert_eq!(p.after_failure(1, s(0), None, 0.0), Decision::RetryIn(s(5)));
        assert_eq!(
            p.after_failure(2, s(5), None, 0.0),
            Decision::RetryIn(s(30))
        );
        assert_eq!(
            p.after_failure(7, s(0), None, 0.0),
            Decision::RetryIn(s(7200))
        );
        assert_eq!(
            p.after_failure(30, s(0), None, 0.0),
            Decision::RetryIn(s(7200))
        );
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.after_failure(2, s(0), None, 1.0),
            Decision::RetryIn(s(36))
        );
        assert_eq!(
            p.after_failure(2, s(0), None, -1.0),
            Decision::RetryIn(s(24))
        );
        // Out-of-range samples are clamped rather than trusted.
        assert_eq!(
            p.after_failure(2, s(0), None, 9.0),
            Decision::RetryIn(s(36))
        );
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.after_failure(1, s(0), Some(s(90)), 0.0),
            Decision::RetryIn(s(90))
        );
        // Shorter than our schedule: the schedule wins.
        assert_eq!(
            p.after_failure(2, s(0), Some(s(1)), 0.0),
            Decision::RetryIn(s(30))
        );
        // Absurdly long: capped.
        assert_eq!(
            p.after_failure(1, s(0), Some(s(10 * 86400)), 0.0),
            Decision::RetryIn(s(3600))
        );
    }

    #[test]
    fn gives_up_on_age_and_attempts() {
        let p = RetryPolicy {
            max_attempts: Some(3),
            ..RetryPolicy::default()
        };
        assert_eq!(
            p.after_failure(3, s(0), None, 0.0),
            Decision::GiveUp(GiveUp::Attempts)
        );
        let p = RetryPolicy::default();
        assert_eq!(
            p.after_failure(7, s(23 * 3600), None, 0.0),
            Decision::GiveUp(GiveUp::MaxAge)
        );
    }

    #[test]
    fn throttle_wait_is_bounded() {
        let p = RetryPolicy::default();
        assert_eq!(p.throttle_wait(Some(s(600)), 0, 0.0), s(600));
        assert_eq!(p.throttle_wait(Some(s(86400)), 0, 0.0), s(3600));
        // Unsaid: the schedule's next step, as if the attempt had failed.
        assert_eq!(p.throttle_wait(None, 0, 0.0), s(5));
        assert_eq!(p.throttle_wait(None, 2, 0.0), s(120));
    }
}
