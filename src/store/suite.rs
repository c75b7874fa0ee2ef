//! The contract test suite every [`Store`] backend must pass.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::event::{Data, Event};
use crate::ids::EventId;
use crate::message::{Message, MsgType, Recipients};

const DAY: u64 = 86_400_000;

/// Enqueues one event and returns its answer.
trait EnqueueOne {
    async fn enqueue_one(&self, e: NewEvent, window: u64) -> Result<Enqueued, StoreError>;
}

impl EnqueueOne for dyn Store + '_ {
    async fn enqueue_one(&self, mut e: NewEvent, window: u64) -> Result<Enqueued, StoreError> {
        e.dedup_window_ms = window;
        Ok(self.enqueue(vec![e]).await?.remove(0))
    }
}

fn event(id: &str) -> Event {
    Event {
        receiver: "src".into(),
        id: id.into(),
        source: "/hooks/src".into(),
        ty: "t".into(),
        specversion: "1.0".into(),
        subject: None,
        time: None,
        datacontenttype: None,
        dataschema: None,
        extensions: BTreeMap::new(),
        data: Data::Json(json!({"n": 1})),
        message: None,
    }
}

pub fn delivery(due_ms: u64) -> NewDelivery {
    NewDelivery {
        origin: "route".into(),
        channel: "ch".into(),
        template: None,
        to: Recipients::default(),
        message: Some(Message {
            msgtype: MsgType::Text,
            content: "hi".into(),
            title: None,
            url: None,
        }),
        failed: None,
        due_ms,
        held: None,
        digest: None,
        thread: None,
    }
}

pub fn new_event(id: &str, at: u64, deliveries: Vec<NewDelivery>) -> NewEvent {
    NewEvent {
        id: EventId::generate(at),
        event: event(id),
        received_ms: at,
        dedup_window_ms: DAY,
        deliveries,
    }
}

fn attempt(result: AttemptResult) -> AttemptRecord {
    AttemptRecord {
        at_ms: 0,
        duration_ms: 1,
        result,
        error: None,
        receipt: None,
    }
}

pub fn done(next: Ending) -> Completion {
    Completion {
        attempt: attempt(AttemptResult::Delivered),
        counted: true,
        next,
    }
}

/// Nothing is in flight.
pub fn idle() -> Busy {
    Busy::default()
}

/// Leases what is due at `now`, as a dispatcher holding nothing would.
async fn lease(s: &dyn Store, now: u64, limit: usize) -> Vec<Leased> {
    s.lease_due(now, limit, &idle()).await.unwrap()
}

pub async fn enqueue_then_lease_in_due_order(s: &dyn Store) {
    let e = new_event("a", 1000, vec![delivery(3000), delivery(2000)]);
    let r = s.enqueue_one(e, DAY).await.unwrap();
    assert!(matches!(r, Enqueued::Accepted { deliveries: 2, .. }));
    assert!(lease(s, 1999, 10).await.is_empty());
    let first = lease(s, 2500, 10).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].record.id.index, 1);
    let held = first[0].record.id;
    let busy = Busy::holding([held]);
    let second = s.lease_due(5000, 10, &busy).await.unwrap();
    assert_eq!(second.len(), 1, "what is in flight is skipped");
    assert_eq!(second[0].record.id.index, 0);
    assert_eq!(s.next_due_ms(&idle()).await.unwrap(), Some(2000));
    assert_eq!(s.next_due_ms(&busy).await.unwrap(), Some(3000));
}

/// A delivery of `channel` due at `due_ms`.
pub fn delivery_on(channel: &str, due_ms: u64) -> NewDelivery {
    NewDelivery {
        channel: channel.into(),
        ..delivery(due_ms)
    }
}

/// Channels `Busy` calls full.
fn full(channels: &[&str]) -> Busy {
    Busy {
        full: channels.iter().map(|c| c.to_string()).collect(),
        ..Busy::default()
    }
}

pub async fn a_full_channel_is_left_where_it_is(s: &dyn Store) {
    let e = new_event(
        "f",
        0,
        vec![
            delivery_on("hung", 0),
            delivery_on("hung", 1),
            delivery_on("ok", 2),
        ],
    );
    s.enqueue_one(e, DAY).await.unwrap();
    let mine = s.lease_due(10, 10, &full(&["hung"])).await.unwrap();
    let channels = |l: &[Leased]| {
        l.iter()
            .map(|l| l.record.channel.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(channels(&mine), ["ok"]);
    let holding_ok = Busy {
        held: [mine[0].record.id].into(),
        ..full(&["hung"])
    };
    assert_eq!(s.next_due_ms(&holding_ok).await.unwrap(), None);
    assert_eq!(s.next_due_ms(&full(&["ok"])).await.unwrap(), Some(0));
    let rest = s
        .lease_due(10, 10, &Busy::holding([mine[0].record.id]))
        .await
        .unwrap();
    assert_eq!(
        channels(&rest),
        ["hung", "hung"],
        "in due order, once it has room"
    );
}

pub async fn duplicates_inside_the_window_plan_nothing(s: &dyn Store) {
    let a = s
        .enqueue_one(new_event("dup", 1000, vec![delivery(1000)]), DAY)
        .await
        .unwrap();
    let Enqueued::Accepted { id, .. } = a else {
        panic!("{a:?}")
    };
    let b = s
        .enqueue_one(new_event("dup", 2000, vec![delivery(2000)]), DAY)
        .await
        .unwrap();
    assert_eq!(b, Enqueued::Duplicate { id });
    assert_eq!(s.counts().await.unwrap().deliveries, 1);
    let c = s
        .enqueue_one(new_event("dup", 1000 + DAY, vec![delivery(0)]), DAY)
        .await
        .unwrap();
    assert!(
        matches!(c, Enqueued::Accepted { .. }),
        "after the window it is new again"
    );
}

pub async fn outcomes_move_deliveries_on(s: &dyn Store) {
    s.enqueue_one(
        new_event("o", 0, vec![delivery(0), delivery(0), delivery(0)]),
        DAY,
    )
    .await
    .unwrap();
    let leased = lease(s, 10, 10).await;
    assert_eq!(leased.len(), 3);
    let d = s
        .complete(&leased[0], done(Ending::Delivered), 20)
        .await
        .unwrap();
    assert_eq!(d.state, DeliveryState::Delivered);
    let r = s
        .complete(&leased[1], done(Ending::RetryAt(500)), 20)
        .await
        .unwrap();
    assert_eq!(
        (r.state, r.next_ms, r.attempts),
        (DeliveryState::Pending, Some(500), 1)
    );
    let x = s
        .complete(&leased[2], done(Ending::Dead), 20)
        .await
        .unwrap();
    assert_eq!(x.state, DeliveryState::Dead);
    let retried = leased[1].record.id;
    let in_flight = Busy::holding(
        leased
            .iter()
            .map(|l| l.record.id)
            .filter(|id| *id != retried),
    );
    assert!(s.lease_due(499, 10, &in_flight).await.unwrap().is_empty());
    let again = s.lease_due(500, 10, &in_flight).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].record.id, leased[1].record.id);
    assert_eq!(s.attempts(&leased[1].record.id).await.unwrap().len(), 1);
    let dead = s.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, leased[2].record.id);
    let counts = s.counts().await.unwrap();
    assert_eq!((counts.dead, counts.pending), (1, 1));
}

pub async fn throttles_do_not_use_the_budget(s: &dyn Store) {
    s.enqueue_one(new_event("t", 0, vec![delivery(0)]), DAY)
        .await
        .unwrap();
    let l = lease(s, 0, 1).await;
    let c = Completion {
        attempt: attempt(AttemptResult::Throttled),
        counted: false,
        next: Ending::RetryAt(50),
    };
    let rec = s.complete(&l[0], c, 1).await.unwrap();
    assert_eq!((rec.attempts, rec.tries), (0, 1));
}

pub async fn dead_letters_replay(s: &dyn Store) {
    s.enqueue_one(new_event("r", 0, vec![delivery(0)]), DAY)
        .await
        .unwrap();
    let l = lease(s, 0, 1).await;
    let id = l[0].record.id;
    assert_eq!(s.replay(&id, 5).await.unwrap(), Replay::NotDead);
    s.complete(&l[0], done(Ending::Dead), 10).await.unwrap();
    assert_eq!(s.replay(&id, 20).await.unwrap(), Replay::Scheduled);
    assert!(s.dead_letters(None, 10).await.unwrap().is_empty());
    let again = lease(s, 20, 1).await;
    assert_eq!(again[0].record.id, id);
    assert_eq!(
        again[0].record.attempts, 0,
        "a replay starts a fresh budget"
    );
    let unknown = crate::ids::DeliveryId {
        event: EventId::generate(1),
        index: 0,
    };
    assert_eq!(s.replay(&unknown, 1).await.unwrap(), Replay::NotFound);
}

pub async fn failed_plans_are_dead_from_the_start(s: &dyn Store) {
    let mut d = delivery(0);
    d.message = None;
    d.failed = Some(ErrorInfo {
        reason: crate::reason::Reason::Render,
        detail: "text: missing".into(),
        status: None,
    });
    s.enqueue_one(new_event("f", 0, vec![d]), DAY)
        .await
        .unwrap();
    assert!(lease(s, 10, 10).await.is_empty());
    let dead = s.dead_letters(None, 10).await.unwrap();
    assert_eq!(
        dead[0].last_error.as_ref().unwrap().reason,
        crate::reason::Reason::Render
    );
}

pub async fn purge_keeps_what_is_unfinished(s: &dyn Store) {
    s.enqueue_one(new_event("old-done", 0, vec![delivery(0)]), DAY)
        .await
        .unwrap();
    s.enqueue_one(new_event("old-pending", 1, vec![delivery(10 * DAY)]), DAY)
        .await
        .unwrap();
    s.enqueue_one(new_event("young", 3 * DAY, vec![]), DAY)
        .await
        .unwrap();
    let l = lease(s, 0, 1).await;
    s.complete(&l[0], done(Ending::Delivered), 5).await.unwrap();
    let step = s
        .purge(None, 2 * DAY + 10, DAY, 30 * DAY, 100)
        .await
        .unwrap();
    assert_eq!(
        step,
        Purged {
            removed: 1,
            next: None
        }
    );
    let c = s.counts().await.unwrap();
    assert_eq!((c.events, c.deliveries, c.attempts), (2, 1, 0));
    // Its dedup key went with it: the same id is new again.
    let again = s
        .enqueue_one(new_event("old-done", 2 * DAY + 20, vec![]), 30 * DAY)
        .await
        .unwrap();
    assert!(matches!(again, Enqueued::Accepted { .. }));
}

pub async fn purge_leaves_a_dedup_key_a_newer_event_claimed(s: &dyn Store) {
    s.enqueue_one(new_event("x", 0, vec![]), DAY).await.unwrap();
    // The window has passed: the same id is a new event, and the dedup key now points at it.
    let newer = s
        .enqueue_one(new_event("x", 2 * DAY, vec![]), DAY)
        .await
        .unwrap();
    let Enqueued::Accepted { id, .. } = newer else {
        panic!("{newer:?}")
    };
    let step = s
        .purge(None, 2 * DAY + 10, DAY, 30 * DAY, 100)
        .await
        .unwrap();
    assert_eq!(step.removed, 1);
    let again = s
        .enqueue_one(new_event("x", 2 * DAY + 20, vec![]), DAY)
        .await
        .unwrap();
    assert_eq!(
        again,
        Enqueued::Duplicate { id },
        "the newer event's key survived"
    );
}

pub async fn a_purge_pass_steps_past_what_it_keeps(s: &dyn Store) {
    for (name, at) in [("p1", 0), ("p2", 1), ("p3", 2)] {
        s.enqueue_one(new_event(name, at, vec![]), DAY)
            .await
            .unwrap();
    }
    // Unfinished, between the finished ones: a step that keeps it must not end the pass.
    s.enqueue_one(new_event("kept", 1, vec![delivery(10 * DAY)]), DAY)
        .await
        .unwrap();
    let (mut removed, mut after, mut steps) = (0, None, 0);
    loop {
        let step = s
            .purge(after.as_ref(), 2 * DAY, DAY, 30 * DAY, 1)
            .await
            .unwrap();
        removed += step.removed;
        steps += 1;
        match step.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(removed, 3);
    assert!(steps >= 4, "one event per step: {steps}");
    assert_eq!(s.counts().await.unwrap().events, 1);
}

pub async fn a_batch_is_one_write_and_dedups_within_itself(s: &dyn Store) {
    let answers = s
        .enqueue(vec![
            new_event("b1", 0, vec![delivery(0)]),
            new_event("b2", 0, vec![delivery(0), delivery(0)]),
            new_event("b1", 0, vec![delivery(0)]),
        ])
        .await
        .unwrap();
    let Enqueued::Accepted { id, deliveries: 1 } = answers[0] else {
        panic!("{answers:?}")
    };
    assert!(matches!(
        answers[1],
        Enqueued::Accepted { deliveries: 2, .. }
    ));
    assert_eq!(answers[2], Enqueued::Duplicate { id });
    assert_eq!(s.counts().await.unwrap().deliveries, 3);
}

pub async fn every_acknowledged_write_was_flushed(s: &dyn Store) {
    let before = s.fsyncs();
    s.enqueue_one(new_event("x", 0, vec![delivery(0)]), DAY)
        .await
        .unwrap();
    assert!(s.fsyncs() > before, "enqueue returned before a flush");
}

/// A store opened again on the same data.
pub type Reopened = futures_util::future::BoxFuture<'static, Box<dyn Store>>;

/// A store opened synchronously, as a [`Reopened`].
pub fn ready(s: Box<dyn Store>) -> Reopened {
    Box::pin(std::future::ready(s))
}

/// What survives closing a store and opening its directory again.
pub async fn pending_and_in_flight_deliveries_survive_a_restart(
    open: &dyn Fn(&std::path::Path) -> Reopened,
) {
    let dir = tempfile::tempdir().unwrap();
    // A third is held by its recipient's quiet hours until 10 000, in an open digest.
    let held = NewDelivery {
        held: Some(ErrorInfo {
            reason: crate::reason::Reason::QuietHours,
            detail: "held until 08:00".into(),
            status: None,
        }),
        digest: Some("k".into()),
        ..delivery(10_000)
    };
    let event = {
        let s = open(dir.path()).await;
        let Enqueued::Accepted { id, .. } = s
            .enqueue_one(
                new_event("r1", 0, vec![delivery(0), delivery(0), held]),
                DAY,
            )
            .await
            .unwrap()
        else {
            panic!("a new event is accepted")
        };
        // One is in flight when the process stops; the other was never touched.
        assert_eq!(lease(&*s, 0, 1).await.len(), 1);
        s.set_thread("t", &thread_record(id, u64::MAX))
            .await
            .unwrap();
        s.close().await.unwrap();
        id
    };
    let s = open(dir.path()).await;
    assert!(
        s.lease_due(1, 10, &full(&["ch"])).await.unwrap().is_empty(),
        "each is still known by its channel"
    );
    assert_eq!(lease(&*s, 1, 10).await.len(), 2, "both are due again");
    let held = DeliveryId { event, index: 2 };
    assert_eq!(s.open_digests().await.unwrap(), [("k".to_string(), 10_000)]);
    assert_eq!(s.digest_members("k").await.unwrap(), [held]);
    let rec = s.delivery(&held).await.unwrap().unwrap();
    assert!(rec.is_waiting(), "{rec:?}");
    assert_eq!(rec.next_ms, Some(10_000));
    assert_eq!(
        rec.waiting.map(|w| w.reason),
        Some(crate::reason::Reason::QuietHours)
    );
    let ids = |l: Vec<Leased>| l.into_iter().map(|l| l.record.id).collect::<Vec<_>>();
    assert!(
        !ids(lease(&*s, 9_999, 10).await).contains(&held),
        "held until its window ends"
    );
    assert!(
        ids(lease(&*s, 10_000, 10).await).contains(&held),
        "due at its window's end"
    );
    assert_eq!(
        s.thread("t").await.unwrap(),
        Some(thread_record(event, u64::MAX)),
        "a thread's message is still known"
    );
    let again = s
        .enqueue_one(new_event("r1", 1, vec![delivery(0)]), DAY)
        .await
        .unwrap();
    assert!(
        matches!(again, Enqueued::Duplicate { .. }),
        "the dedup key survived too"
    );
}

/// A thread record as [`Store::set_thread`] keeps it.
fn thread_record(event: EventId, expires_ms: u64) -> ThreadRecord {
    ThreadRecord {
        channel: "c".into(),
        handle: Some(json!({"response_code": "RC-1", "task_id": "dlv_1"})),
        sent_by: DeliveryId { event, index: 0 },
        shows: event,
        updates: 0,
        expires_ms,
    }
}

/// A thread's record is read back as written, replaced by the next, and purged once expired.
pub async fn a_thread_record_is_replaced_and_purged_once_expired(s: &dyn Store) {
    assert_eq!(s.thread("a").await.unwrap(), None);
    let first = thread_record(EventId::generate(1), 5_000);
    s.set_thread("a", &first).await.unwrap();
    assert_eq!(s.thread("a").await.unwrap().as_ref(), Some(&first));
    let updated = ThreadRecord {
        handle: None,
        updates: 1,
        shows: EventId::generate(2),
        ..first.clone()
    };
    s.set_thread("a", &updated).await.unwrap();
    assert_eq!(s.thread("a").await.unwrap().as_ref(), Some(&updated));
    s.set_thread("b", &thread_record(EventId::generate(3), 9_000))
        .await
        .unwrap();
    assert_eq!(
        s.purge_threads(5_000, 10).await.unwrap(),
        0,
        "not yet expired"
    );
    assert_eq!(s.purge_threads(6_000, 10).await.unwrap(), 1);
    assert_eq!(s.thread("a").await.unwrap(), None);
    assert!(s.thread("b").await.unwrap().is_some(), "b expires later");
}

/// Deliveries of one digest are found by its key whatever their due times, leased together,
/// and no longer found once finished.
pub async fn a_digest_is_found_leased_together_and_forgotten_when_done(s: &dyn Store) {
    let of = |key: &str, due: u64| NewDelivery {
        digest: Some(key.into()),
        ..delivery(due)
    };
    let first = s
        .enqueue_one(
            new_event(
                "g1",
                0,
                vec![of("a", 1_000), of("b", 500), delivery(0), of("a", 1_000)],
            ),
            DAY,
        )
        .await
        .unwrap();
    let second = s
        .enqueue_one(new_event("g2", 1, vec![of("a", 1_000)]), DAY)
        .await
        .unwrap();
    let (Enqueued::Accepted { id: e1, .. }, Enqueued::Accepted { id: e2, .. }) = (first, second)
    else {
        panic!("both accepted")
    };
    let d = |event, index| DeliveryId { event, index };
    let a = vec![d(e1, 0), d(e1, 3), d(e2, 0)];
    assert_eq!(s.digest_members("a").await.unwrap(), a);
    assert_eq!(s.digest_members("b").await.unwrap(), [d(e1, 1)]);
    assert!(s.digest_members("none").await.unwrap().is_empty());
    let mut open = s.open_digests().await.unwrap();
    open.sort();
    let want = |k: &str, ms| (k.to_string(), ms);
    assert_eq!(
        open,
        [
            want("a", 1_000),
            want("a", 1_000),
            want("a", 1_000),
            want("b", 500)
        ]
    );
    // Leased now, though due later.
    let leased = s.lease_now(&a).await.unwrap();
    assert_eq!(leased.len(), 3);
    assert!(leased.iter().all(|l| l.due_ms == 1_000));
    let by_id = |id: DeliveryId| leased.iter().find(|l| l.record.id == id).unwrap();
    s.complete(by_id(a[0]), done(Ending::Delivered), 10)
        .await
        .unwrap();
    s.complete(by_id(a[1]), done(Ending::Dead), 10)
        .await
        .unwrap();
    s.complete(by_id(a[2]), done(Ending::RetryAt(2_000)), 10)
        .await
        .unwrap();
    assert_eq!(
        s.digest_members("a").await.unwrap(),
        [a[2]],
        "a retry stays in it"
    );
    assert!(
        s.lease_now(&a[..1]).await.unwrap().is_empty(),
        "delivered: not pending"
    );
    let mut open = s.open_digests().await.unwrap();
    open.sort();
    assert_eq!(open, [want("a", 2_000), want("b", 500)]);
}

pub async fn the_backlog_follows_the_due_index(s: &dyn Store) {
    assert_eq!(s.backlog(0).await.unwrap(), Backlog::default());
    s.enqueue_one(
        new_event("b", 0, vec![delivery(100), delivery(300), delivery(900)]),
        DAY,
    )
    .await
    .unwrap();
    assert_eq!(
        s.backlog(50).await.unwrap(),
        Backlog {
            pending: 3,
            due: 0,
            oldest_due_ms: None
        }
    );
    assert_eq!(
        s.backlog(300).await.unwrap(),
        Backlog {
            pending: 3,
            due: 2,
            oldest_due_ms: Some(100)
        }
    );
    let leased = lease(s, 300, 10).await;
    s.complete(&leased[0], done(Ending::Delivered), 300)
        .await
        .unwrap();
    assert_eq!(
        s.backlog(300).await.unwrap(),
        Backlog {
            pending: 2,
            due: 1,
            oldest_due_ms: Some(300)
        },
        "in flight still counts; what is recorded leaves"
    );
}

pub async fn listings_are_newest_first_filtered_and_paged(s: &dyn Store) {
    for (i, at) in [1000u64, 2000, 3000, 4000].into_iter().enumerate() {
        let mut d = delivery(at);
        if i % 2 == 1 {
            d.channel = "other".into();
            d.to.users = vec!["alice".into()];
        }
        s.enqueue_one(new_event(&format!("l{i}"), at, vec![d]), DAY)
            .await
            .unwrap();
    }
    let all = DeliveryQuery::default();
    let first = s.deliveries(&all, None, 3).await.unwrap();
    let times: Vec<u64> = first.deliveries.iter().map(|d| d.created_ms).collect();
    assert_eq!(times, [4000, 3000, 2000], "newest first");
    let rest = s.deliveries(&all, first.next.as_ref(), 3).await.unwrap();
    assert_eq!(rest.deliveries.len(), 1);
    assert_eq!(rest.deliveries[0].created_ms, 1000);
    assert!(rest.next.is_none(), "the last page says so");
    let alice = DeliveryQuery {
        recipient: Some("alice".into()),
        ..DeliveryQuery::default()
    };
    let times: Vec<u64> = s
        .deliveries(&alice, None, 10)
        .await
        .unwrap()
        .deliveries
        .iter()
        .map(|d| d.created_ms)
        .collect();
    assert_eq!(times, [4000, 2000]);
    let window = DeliveryQuery {
        channel: Some("ch".into()),
        since_ms: Some(2000),
        until_ms: Some(4000),
        ..DeliveryQuery::default()
    };
    let found = s.deliveries(&window, None, 10).await.unwrap();
    assert_eq!(found.deliveries.len(), 1);
    assert_eq!(found.deliveries[0].created_ms, 3000);
    let dead = DeliveryQuery {
        state: Some(DeliveryState::Dead),
        ..DeliveryQuery::default()
    };
    assert!(
        s.deliveries(&dead, None, 10)
            .await
            .unwrap()
            .deliveries
            .is_empty()
    );
}

/// Runs the whole suite, each case against a fresh store from `open`; `reopen` opens a store
/// on a given directory (for the restart cases). With a leading `available` expression, every
/// case returns early (skipped) when it is false; `open` may `return` too.
#[macro_export]
macro_rules! store_suite {
    ($open:expr, $reopen:expr) => {
        $crate::store_suite!(true, $open, $reopen);
    };
    ($available:expr, $open:expr, $reopen:expr) => {
        #[tokio::test]
        async fn pending_and_in_flight_deliveries_survive_a_restart() {
            if !$available {
                return;
            }
            $crate::store::suite::pending_and_in_flight_deliveries_survive_a_restart(&$reopen).await;
        }
        $crate::store_suite!(@cases $open;
            enqueue_then_lease_in_due_order,
            a_full_channel_is_left_where_it_is,
            duplicates_inside_the_window_plan_nothing,
            outcomes_move_deliveries_on,
            throttles_do_not_use_the_budget,
            dead_letters_replay,
            failed_plans_are_dead_from_the_start,
            purge_keeps_what_is_unfinished,
            a_purge_pass_steps_past_what_it_keeps,
            purge_leaves_a_dedup_key_a_newer_event_claimed,
            a_batch_is_one_write_and_dedups_within_itself,
            every_acknowledged_write_was_flushed,
            the_backlog_follows_the_due_index,
            a_digest_is_found_leased_together_and_forgotten_when_done,
            a_thread_record_is_replaced_and_purged_once_expired,
            listings_are_newest_first_filtered_and_paged
        );
    };
    (@cases $open:expr; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $open;
                $crate::store::suite::$case(&*store).await;
            }
        )*
    };
}
