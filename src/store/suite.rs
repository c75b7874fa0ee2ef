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
    async fn enqueue_one(&self, e: NewEvent, window: u64) -> Result<Enqueued, StoreError> {
        Ok(self.enqueue(vec![e], window).await?.remove(0))
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

fn delivery(due_ms: u64) -> NewDelivery {
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
    }
}

fn new_event(id: &str, at: u64, deliveries: Vec<NewDelivery>) -> NewEvent {
    NewEvent {
        id: EventId::generate(at),
        event: event(id),
        received_ms: at,
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

fn done(next: Next) -> Completion {
    Completion {
        attempt: attempt(AttemptResult::Delivered),
        counted: true,
        next,
    }
}

pub async fn enqueue_then_lease_in_due_order(s: &dyn Store) {
    let e = new_event("a", 1000, vec![delivery(3000), delivery(2000)]);
    let r = s.enqueue_one(e, DAY).await.unwrap();
    assert!(matches!(r, Enqueued::Accepted { deliveries: 2, .. }));
    assert!(s.lease_due(1999, 99_999, 10).unwrap().is_empty());
    let first = s.lease_due(2500, 99_999, 10).unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].record.id.index, 1);
    let second = s.lease_due(5000, 99_999, 10).unwrap();
    assert_eq!(second.len(), 1, "a leased delivery is not leased twice");
    assert_eq!(second[0].record.id.index, 0);
    assert_eq!(s.next_wakeup_ms().unwrap(), Some(99_999));
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
    assert_eq!(s.counts().unwrap().deliveries, 1);
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
    let leased = s.lease_due(10, 1000, 10).unwrap();
    assert_eq!(leased.len(), 3);
    let d = s.complete(&leased[0], done(Next::Delivered), 20).unwrap();
    assert_eq!(d.state, DeliveryState::Delivered);
    let r = s
        .complete(&leased[1], done(Next::RetryAt(500)), 20)
        .unwrap();
    assert_eq!(
        (r.state, r.next_ms, r.attempts),
        (DeliveryState::Pending, Some(500), 1)
    );
    let x = s.complete(&leased[2], done(Next::Dead), 20).unwrap();
    assert_eq!(x.state, DeliveryState::Dead);
    assert!(s.lease_due(499, 2000, 10).unwrap().is_empty());
    let again = s.lease_due(500, 2000, 10).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].record.id, leased[1].record.id);
    assert_eq!(s.attempts(&leased[1].record.id).unwrap().len(), 1);
    let dead = s.dead_letters(None, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, leased[2].record.id);
    let counts = s.counts().unwrap();
    assert_eq!((counts.dead, counts.leased, counts.pending), (1, 1, 0));
}

pub async fn throttles_do_not_use_the_budget(s: &dyn Store) {
    s.enqueue_one(new_event("t", 0, vec![delivery(0)]), DAY)
        .await
        .unwrap();
    let l = s.lease_due(0, 100, 1).unwrap();
    let c = Completion {
        attempt: attempt(AttemptResult::Throttled),
        counted: false,
        next: Next::RetryAt(50),
    };
    let rec = s.complete(&l[0], c, 1).unwrap();
    assert_eq!((rec.attempts, rec.tries), (0, 1));
}

pub async fn dead_letters_replay(s: &dyn Store) {
    s.enqueue_one(new_event("r", 0, vec![delivery(0)]), DAY)
        .await
        .unwrap();
    let l = s.lease_due(0, 100, 1).unwrap();
    let id = l[0].record.id;
    assert_eq!(s.replay(&id, 5).unwrap(), Replay::NotDead);
    s.complete(&l[0], done(Next::Dead), 10).unwrap();
    assert_eq!(s.replay(&id, 20).unwrap(), Replay::Scheduled);
    assert!(s.dead_letters(None, 10).unwrap().is_empty());
    let again = s.lease_due(20, 100, 1).unwrap();
    assert_eq!(again[0].record.id, id);
    assert_eq!(
        again[0].record.attempts, 0,
        "a replay starts a fresh budget"
    );
    let unknown = crate::ids::DeliveryId {
        event: EventId::generate(1),
        index: 0,
    };
    assert_eq!(s.replay(&unknown, 1).unwrap(), Replay::NotFound);
}

pub async fn failed_plans_are_dead_from_the_start(s: &dyn Store) {
    let mut d = delivery(0);
    d.message = None;
    d.failed = Some(ErrorInfo {
        reason: "render".into(),
        detail: "text: missing".into(),
        status: None,
    });
    s.enqueue_one(new_event("f", 0, vec![d]), DAY)
        .await
        .unwrap();
    assert!(s.lease_due(10, 100, 10).unwrap().is_empty());
    let dead = s.dead_letters(None, 10).unwrap();
    assert_eq!(dead[0].last_error.as_ref().unwrap().reason, "render");
}

pub async fn expired_leases_come_back_unless_busy(s: &dyn Store) {
    s.enqueue_one(new_event("l", 0, vec![delivery(0), delivery(0)]), DAY)
        .await
        .unwrap();
    let l = s.lease_due(0, 100, 10).unwrap();
    let busy = l[0].record.id;
    assert_eq!(
        s.expire_leases(99, 99, &|_| false).unwrap(),
        0,
        "not expired yet"
    );
    assert_eq!(s.expire_leases(100, 100, &|id| *id == busy).unwrap(), 1);
    let back = s.lease_due(100, 200, 10).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].record.id, l[1].record.id);
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
    let l = s.lease_due(0, 100, 1).unwrap();
    s.complete(&l[0], done(Next::Delivered), 5).unwrap();
    let removed = s.purge(2 * DAY + 10, DAY, 30 * DAY, 100).unwrap();
    assert_eq!(removed, 1);
    let c = s.counts().unwrap();
    assert_eq!((c.events, c.deliveries, c.attempts), (2, 1, 0));
    // Its dedup key went with it: the same id is new again.
    let again = s
        .enqueue_one(new_event("old-done", 2 * DAY + 20, vec![]), 30 * DAY)
        .await
        .unwrap();
    assert!(matches!(again, Enqueued::Accepted { .. }));
}

pub async fn a_batch_is_one_write_and_dedups_within_itself(s: &dyn Store) {
    let answers = s
        .enqueue(
            vec![
                new_event("b1", 0, vec![delivery(0)]),
                new_event("b2", 0, vec![delivery(0), delivery(0)]),
                new_event("b1", 0, vec![delivery(0)]),
            ],
            DAY,
        )
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
    assert_eq!(s.counts().unwrap().deliveries, 3);
}

pub async fn every_acknowledged_write_was_flushed(s: &dyn Store) {
    let before = s.fsyncs();
    s.enqueue_one(new_event("x", 0, vec![delivery(0)]), DAY)
        .await
        .unwrap();
    assert!(s.fsyncs() > before, "enqueue returned before a flush");
}

/// Runs the whole suite, each case against a fresh store from `open`.
#[macro_export]
macro_rules! store_suite {
    ($open:expr) => {
        $crate::store_suite!(@cases $open;
            enqueue_then_lease_in_due_order,
            duplicates_inside_the_window_plan_nothing,
            outcomes_move_deliveries_on,
            throttles_do_not_use_the_budget,
            dead_letters_replay,
            failed_plans_are_dead_from_the_start,
            expired_leases_come_back_unless_busy,
            purge_keeps_what_is_unfinished,
            a_batch_is_one_write_and_dedups_within_itself,
            every_acknowledged_write_was_flushed
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
