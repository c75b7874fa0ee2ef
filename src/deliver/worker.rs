//! One attempt of one leased delivery: send through its channel, decide what comes next, record it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::OwnedSemaphorePermit;

use super::{Dispatcher, digest, thread};
use crate::catalog::Catalog;
use crate::channel::{DeliveryError, Outgoing, Receipt};
use crate::ids::now_ms;
use crate::plan::rerender;
use crate::reason::Reason;
use crate::retry::{Decision, RetryPolicy};
use crate::store::{
    AttemptRecord, AttemptResult, Completion, DeliveryRecord, Ending, ErrorInfo, Leased, StoreError,
};

/// Most outcomes one worker has being recorded while it sends the next of its lane.
const RECORDING: usize = 16;

/// A worker: delivers `leased`, then the deliveries waiting in its lane while there are any;
/// the permit frees its slot at the end. An attempt's outcome is recorded while the lane's
/// next delivery is sent: the store's write (a round trip on PostgreSQL) does not hold the
/// destination's slot, and the delivery stays held until it is written.
pub(super) async fn run(dispatcher: Arc<Dispatcher>, leased: Leased, _slot: OwnedSemaphorePermit) {
    let mut recording = FuturesUnordered::new();
    let mut next = Some(leased);
    while let Some(leased) = next {
        let sent = alongside(&mut recording, send(&dispatcher, &leased)).await;
        next = alongside(&mut recording, dispatcher.next_in_lane(&leased)).await;
        recording.push(record(&dispatcher, leased, sent));
        while recording.len() >= RECORDING {
            recording.next().await;
        }
    }
    while recording.next().await.is_some() {}
}

/// Runs `f` to its end while the outcomes being recorded make progress.
async fn alongside<R: Future<Output = ()>, F: Future>(
    recording: &mut FuturesUnordered<R>,
    f: F,
) -> F::Output {
    let mut f = std::pin::pin!(f);
    loop {
        tokio::select! {
            out = &mut f => return out,
            Some(()) = recording.next(), if !recording.is_empty() => {}
        }
    }
}

/// An attempt's result, to be recorded: the completion, the digest members it took along, and
/// when the attempt ended (the outcome's time, however long its write waits).
struct Sent {
    completion: Completion,
    others: Vec<Leased>,
    now: u64,
}

/// Sends one leased delivery (with the rest of its digest, if it has one) and decides what
/// comes next.
async fn send(dispatcher: &Arc<Dispatcher>, leased: &Leased) -> Sent {
    let catalog = dispatcher.catalog.current();
    let at_ms = now_ms();
    // A digest goes as one message with every pending delivery of its key.
    let others = digest::gather(dispatcher, &catalog, leased).await;
    let started = Instant::now();
    let result = attempt(dispatcher, &catalog, &leased.record, &others).await;
    let elapsed = started.elapsed();
    let channel = catalog.channels.get(&leased.record.channel);
    let policy = channel.map_or(&dispatcher.settings.retry, |c| &c.retry);
    let now = now_ms();
    let completion = decide(
        policy,
        &leased.record,
        result,
        at_ms,
        elapsed,
        now,
        rand::random_range(-1.0..=1.0),
    );
    // Each delivery of a digest counts as delivered (or failed) on its own.
    for _ in 0..=others.len() {
        dispatcher.metrics.delivery_outcome(
            &leased.record.channel,
            completion.attempt.result,
            completion.attempt.error.as_ref().map(|e| e.reason),
            elapsed.as_secs_f64(),
            matches!(completion.next, Ending::Dead),
        );
    }
    if let (AttemptResult::Throttled, Ending::RetryAt(at)) =
        (completion.attempt.result, &completion.next)
    {
        let wait = Duration::from_millis(at.saturating_sub(now));
        dispatcher.metrics.throttled(&leased.record.channel, wait);
    }
    report(dispatcher, &leased.record, &completion, now);
    Sent {
        completion,
        others,
        now,
    }
}

/// Records the outcome of `leased`'s attempt (and of the digest members it took along), then
/// lets it go.
async fn record(dispatcher: &Dispatcher, leased: Leased, sent: Sent) {
    let Sent {
        completion,
        others,
        now,
    } = sent;
    let id = leased.record.id;
    let retry = matches!(completion.next, Ending::RetryAt(_));
    // Every delivery of a digest carries the same note: the one it was sent with, and how many.
    let completion = match others.len() {
        0 => completion,
        n => digest::noted(&completion, &id, n + 1),
    };
    for other in &others {
        if let Err(e) = dispatcher
            .store
            .complete(other, completion.clone(), now)
            .await
        {
            tracing::debug!(delivery = %other.record.id, error = %e,
                "could not record a digest member's attempt");
        }
    }
    match dispatcher.store.complete(&leased, completion, now).await {
        Ok(rec) => {
            tracing::debug!(delivery = %id, state = ?rec.state, attempts = rec.attempts, "attempt recorded")
        }
        Err(StoreError::LeaseLost) => tracing::warn!(delivery = %id,
            "outcome not recorded: this replica was presumed dead and another one took the delivery over"),
        // The due entry stays: the delivery is handed out again once the store writes (the
        // store logs the failure once; dispatch pauses meanwhile).
        Err(e) => tracing::debug!(delivery = %id, error = %e, "could not record an attempt"),
    }
    dispatcher.let_go(others.iter().map(|l| l.record.id).chain([id]));
    if retry {
        // The dispatcher may be asleep until a later time than this retry's.
        dispatcher.wake.notify_one();
    }
}

/// Says what became of an attempt at the level an operator must see: a dead letter at WARN, a
/// retry at INFO, a throttled destination at INFO once a minute (every wait is in the metrics).
fn report(dispatcher: &Dispatcher, rec: &DeliveryRecord, c: &Completion, now: u64) {
    let Some(error) = &c.attempt.error else {
        return;
    };
    let (id, event, channel) = (rec.id, rec.id.event, rec.channel.as_str());
    let (reason, detail) = (error.reason.as_str(), error.detail.as_str());
    match c.next {
        Ending::Dead => tracing::warn!(delivery = %id, %event, channel, reason, detail,
            attempts = rec.attempts + u32::from(c.counted), "dead letter: delivery given up"),
        Ending::RetryAt(at) if c.counted => tracing::info!(delivery = %id, %event, channel, reason,
            detail, attempt = rec.attempts + 1, retry_in_s = at.saturating_sub(now) / 1000,
            "delivery failed; retry scheduled"),
        Ending::RetryAt(at) => {
            if dispatcher.first_throttle_in_a_minute(channel, now) {
                tracing::info!(
                    channel,
                    detail,
                    wait_s = at.saturating_sub(now) / 1000,
                    "destination throttled; deliveries wait (logged once a minute per channel)"
                );
            }
        }
        Ending::Delivered => {}
    }
}

/// Sends the delivery once (in one digest with `others`, if any).
async fn attempt(
    dispatcher: &Dispatcher,
    catalog: &Catalog,
    rec: &DeliveryRecord,
    others: &[Leased],
) -> Result<Receipt, DeliveryError> {
    let ch = catalog.channels.get(&rec.channel).ok_or_else(|| {
        DeliveryError::retryable(
            Reason::Config,
            format!("channel {:?} is not loaded (check hooks.d)", rec.channel),
        )
    })?;
    let store_err =
        |e: crate::store::StoreError| DeliveryError::retryable(Reason::Config, e.to_string());
    let event = if ch.channel.needs_event() || rec.message.is_none() {
        let stored = dispatcher
            .store
            .event(&rec.id.event)
            .await
            .map_err(store_err)?;
        Some(
            stored
                .ok_or_else(|| {
                    DeliveryError::permanent(Reason::Config, "the event of this delivery is gone")
                })?
                .event,
        )
    } else {
        None
    };
    let rerendered;
    let message = match (&rec.message, &event) {
        _ if !others.is_empty() => {
            rerendered = digest::message(dispatcher, catalog, ch, rec, others).await?;
            &rerendered
        }
        (Some(m), _) => m,
        // A delivery replayed after a render error: render again with today's templates.
        (None, Some(event)) => {
            rerendered = rerender(catalog, event, rec.template.as_deref(), ch)
                .map_err(|e| DeliveryError::permanent(Reason::Render, e))?;
            dispatcher
                .store
                .set_message(&rec.id, rerendered.clone())
                .await
                .map_err(store_err)?;
            &rerendered
        }
        (None, None) => unreachable!("the event is loaded whenever the message is missing"),
    };
    let ce = event.as_ref().map(|e| e.to_json());
    let out = Outgoing {
        id: &rec.id,
        message,
        to: &rec.to,
        event: ce.as_ref(),
        timeout: ch.timeout,
        shared: Some(&*dispatcher.store),
        threaded: false,
    };
    let store = &*dispatcher.store;
    if let Some(limiter) = &ch.limiter
        && let Err(wait) = limiter.acquire_in(store, &ch.name, &rec.id, now_ms()).await
    {
        // Not an attempt: the delivery comes back at its reserved slot.
        return Err(DeliveryError::Throttled {
            detail: format!("rate limit of channel {}", ch.name),
            wait: Some(wait),
        });
    }
    let result = match &rec.thread {
        Some(key) => thread::send(dispatcher, ch, rec, key, out).await,
        None => ch.send(&out).await,
    };
    if let (Err(DeliveryError::Throttled { wait: Some(w), .. }), Some(limiter)) =
        (&result, &ch.limiter)
    {
        // The vendor says this destination is saturated: hold everything bound for it, as long
        // as this delivery will wait (the policy bounds what a vendor may ask).
        let wait = ch.retry.throttle_wait(Some(*w), rec.attempts, 0.0);
        limiter
            .pause_in(store, &ch.name, now_ms() + wait.as_millis() as u64)
            .await;
    }
    if let Ok(r) = &result
        && r.rejected > 0
    {
        dispatcher.metrics.recipients_rejected(&ch.name, r.rejected);
    }
    result
}

/// What an attempt's result means for the delivery (pure; `jitter` in [-1, 1]).
fn decide(
    policy: &RetryPolicy,
    rec: &DeliveryRecord,
    result: Result<Receipt, DeliveryError>,
    at_ms: u64,
    elapsed: Duration,
    now: u64,
    jitter: f64,
) -> Completion {
    let since = rec.held_until_ms.unwrap_or(0).max(rec.created_ms);
    let age = Duration::from_millis(now.saturating_sub(since));
    let record = |result, error: Option<&DeliveryError>, receipt| AttemptRecord {
        at_ms,
        duration_ms: elapsed.as_millis() as u64,
        result,
        error: error.map(|e| ErrorInfo {
            reason: e.reason(),
            detail: e.detail().to_string(),
            status: e.status(),
        }),
        receipt,
    };
    match result {
        Ok(receipt) => Completion {
            attempt: record(AttemptResult::Delivered, None, receipt.detail),
            counted: true,
            next: Ending::Delivered,
        },
        Err(e @ DeliveryError::Throttled { .. }) => {
            let DeliveryError::Throttled { wait, .. } = &e else {
                unreachable!()
            };
            let wait = policy.throttle_wait(*wait, rec.attempts, jitter);
            let next = if age + wait > policy.max_age {
                Ending::Dead
            } else {
                Ending::RetryAt(now + wait.as_millis() as u64)
            };
            Completion {
                attempt: record(AttemptResult::Throttled, Some(&e), None),
                counted: false,
                next,
            }
        }
        Err(e @ DeliveryError::Retryable { .. }) => {
            let DeliveryError::Retryable { retry_after, .. } = &e else {
                unreachable!()
            };
            let next = match policy.after_failure(rec.attempts + 1, age, *retry_after, jitter) {
                Decision::RetryIn(d) => Ending::RetryAt(now + d.as_millis() as u64),
                Decision::GiveUp(_) => Ending::Dead,
            };
            Completion {
                attempt: record(AttemptResult::Retryable, Some(&e), None),
                counted: true,
                next,
            }
        }
        Err(e @ DeliveryError::Permanent { .. }) => Completion {
            attempt: record(AttemptResult::Permanent, Some(&e), None),
            counted: true,
            next: Ending::Dead,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DeliveryState;

    fn rec(attempts: u32, created_ms: u64) -> DeliveryRecord {
        DeliveryRecord {
            id: Default::default(),
            receiver: "s".into(),
            event_type: "t".into(),
            origin: "r".into(),
            channel: "c".into(),
            template: None,
            to: Default::default(),
            message: None,
            state: DeliveryState::Pending,
            attempts,
            tries: attempts,
            created_ms,
            updated_ms: created_ms,
            next_ms: None,
            last_error: None,
            waiting: None,
            held_until_ms: None,
            receipt: None,
            digest: None,
            thread: None,
        }
    }

    fn run(result: Result<Receipt, DeliveryError>, r: &DeliveryRecord, now: u64) -> Completion {
        decide(
            &RetryPolicy::default(),
            r,
            result,
            now,
            Duration::from_millis(3),
            now,
            0.0,
        )
    }

    #[test]
    fn success_is_final() {
        let c = run(Ok(Receipt::default()), &rec(0, 0), 1000);
        assert!(matches!(c.next, Ending::Delivered));
        assert!(c.counted);
        assert_eq!(c.attempt.duration_ms, 3);
    }

    #[test]
    fn retryable_follows_the_schedule_until_max_age() {
        let e = DeliveryError::retryable(Reason::Server, "HTTP 500");
        let c = run(Err(e.clone()), &rec(0, 0), 1000);
        assert!(matches!(c.next, Ending::RetryAt(6000)), "{:?}", c.next);
        assert_eq!(c.attempt.error.as_ref().unwrap().reason, Reason::Server);
        let day = 24 * 3600 * 1000;
        let c = run(Err(e), &rec(7, 0), day - 1000);
        assert!(matches!(c.next, Ending::Dead));
    }

    #[test]
    fn a_hold_by_quiet_hours_does_not_use_up_the_retry_age() {
        let e = DeliveryError::retryable(Reason::Server, "HTTP 500");
        let day = 24 * 3600 * 1000;
        // Received on Friday, held for the weekend, failing on Monday: retried, not dead.
        let held = DeliveryRecord {
            held_until_ms: Some(2 * day + 1000),
            ..rec(0, 0)
        };
        let c = run(Err(e.clone()), &held, 2 * day + 2000);
        assert!(matches!(c.next, Ending::RetryAt(_)), "{:?}", c.next);
        let c = run(Err(e), &rec(0, 0), 2 * day + 2000);
        assert!(matches!(c.next, Ending::Dead), "{:?}", c.next);
    }

    #[test]
    fn throttles_do_not_count() {
        let e = DeliveryError::Throttled {
            detail: "130101".into(),
            wait: Some(Duration::from_secs(600)),
        };
        let c = run(Err(e), &rec(2, 0), 1000);
        assert!(!c.counted);
        assert!(matches!(c.next, Ending::RetryAt(601_000)));
        assert_eq!(c.attempt.result, AttemptResult::Throttled);
    }

    #[test]
    fn permanent_errors_are_dead_at_once() {
        let c = run(
            Err(DeliveryError::permanent(Reason::Client, "HTTP 400")),
            &rec(0, 0),
            1,
        );
        assert!(matches!(c.next, Ending::Dead));
    }
}
