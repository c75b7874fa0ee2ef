//! Group commit for PostgreSQL: requests that arrive while a commit is under way are written
//! together by the next one — one statement (multi-row inserts from arrays) and one commit —
//! so throughput does not fall to one commit per request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio_postgres::types::Json;

use super::batch::Batcher;
use super::{Cached, db_text, ms, state_code};
use crate::ids::{DeliveryId, EventId};
use crate::store::{DeliveryRecord, Enqueued, EventRecord, NewEvent, StoreError};

/// Most events one commit writes.
const MAX_EVENTS: usize = 1024;
/// Connections the committer uses (one spare for a reconnect).
pub const CONNECTIONS: usize = 2;

/// The answers of one request, and the commit's duration for the first request it carried
/// (so each commit is counted once).
type Answer = Result<(Vec<Enqueued>, Option<Duration>), String>;

pub struct Committer(Batcher<Vec<NewEvent>, Answer>);

impl Committer {
    pub fn start(pool: Pool, channel: String) -> Committer {
        let channel: Arc<str> = channel.into();
        Committer(Batcher::start(
            MAX_EVENTS,
            Vec::len,
            move |batches: Vec<Vec<NewEvent>>| {
                let (pool, channel) = (pool.clone(), channel.clone());
                async move {
                    let n = batches.len();
                    let started = Instant::now();
                    match write(&pool, batches, &channel).await {
                        Ok(answers) => {
                            let took = started.elapsed();
                            answers
                                .into_iter()
                                .enumerate()
                                .map(|(i, a)| Ok((a, (i == 0).then_some(took))))
                                .collect()
                        }
                        Err(e) => vec![Err(e); n],
                    }
                }
            },
        ))
    }

    /// Writes `events` durably; resolves once their commit is done.
    pub async fn submit(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<(Vec<Enqueued>, Option<Duration>), StoreError> {
        self.0.submit(events).await?.map_err(StoreError::Io)
    }

    pub fn stop(&self) {
        self.0.stop()
    }
}

/// What one event of the batch is.
enum Plan {
    /// Claims its dedup key (if the database agrees).
    Claim { key: String, id: EventId, n: usize },
    /// Same key as an earlier event of this batch.
    Copy { key: String },
}

/// One statement for the whole batch; answers per request, in order.
async fn write(
    pool: &Pool,
    batches: Vec<Vec<NewEvent>>,
    channel: &str,
) -> Result<Vec<Vec<Enqueued>>, String> {
    let mut seen: HashMap<String, EventId> = HashMap::new();
    let mut plans: Vec<Vec<Plan>> = Vec::with_capacity(batches.len());
    let (mut k_key, mut k_id, mut k_at, mut k_window) = (vec![], vec![], vec![], vec![]);
    let (mut e_id, mut e_ms, mut e_rec) = (vec![], vec![], vec![]);
    let (mut d_id, mut d_ev, mut d_state, mut d_next, mut d_created, mut d_chan, mut d_rec) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for batch in batches {
        let mut plan = Vec::with_capacity(batch.len());
        for new in batch {
            let key = new.event.dedup_key();
            if seen.contains_key(&key) {
                plan.push(Plan::Copy { key });
                continue;
            }
            seen.insert(key.clone(), new.id);
            k_key.push(key.as_bytes().to_vec());
            k_id.push(new.id.0.to_vec());
            k_at.push(ms(new.received_ms));
            k_window.push(ms(new.dedup_window_ms));
            let n = new.deliveries.len();
            for (i, d) in new.deliveries.into_iter().enumerate() {
                let id = DeliveryId {
                    event: new.id,
                    index: i as u32,
                };
                let rec = DeliveryRecord::planned(id, &new.event, new.received_ms, d);
                d_id.push(id.to_bytes().to_vec());
                d_ev.push(new.id.0.to_vec());
                d_state.push(state_code(rec.state));
                d_next.push(rec.next_ms.map(ms));
                d_created.push(ms(new.received_ms));
                d_chan.push(rec.channel.clone());
                d_rec.push(Json(rec));
            }
            e_id.push(new.id.0.to_vec());
            e_ms.push(ms(new.received_ms));
            e_rec.push(Json(EventRecord {
                dedup_key: key.clone(),
                event: new.event,
                received_ms: new.received_ms,
                deliveries: n as u32,
            }));
            plan.push(Plan::Claim { key, id: new.id, n });
        }
        plans.push(plan);
    }
    let client = super::batch::connection(pool).await?;
    // Keys are claimed in key order, so two commits claiming the same keys never deadlock.
    let rows = client
        .run(
            "WITH c AS (
                INSERT INTO dedup (key, event_id, at_ms, window_ms)
                SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::int8[], $4::int8[]) ORDER BY 1
                ON CONFLICT (key) DO UPDATE SET event_id = EXCLUDED.event_id,
                    at_ms = EXCLUDED.at_ms, window_ms = EXCLUDED.window_ms
                WHERE dedup.at_ms + EXCLUDED.window_ms <= EXCLUDED.at_ms
                RETURNING event_id),
             e AS (
                INSERT INTO events (id, received_ms, record)
                SELECT i.id, i.ms, i.rec FROM unnest($5::bytea[], $6::int8[], $7::json[])
                    AS i(id, ms, rec)
                WHERE i.id IN (SELECT event_id FROM c)),
             d AS (
                INSERT INTO deliveries
                    (id, event_id, state, next_ms, created_ms, updated_ms, channel, record)
                SELECT i.id, i.ev, i.st, i.nx, i.cr, i.cr, i.ch, i.rec
                FROM unnest($8::bytea[], $9::bytea[], $10::int2[], $11::int8[], $12::int8[],
                    $13::text[], $14::json[]) AS i(id, ev, st, nx, cr, ch, rec)
                WHERE i.ev IN (SELECT event_id FROM c)
                RETURNING state),
             n AS (SELECT pg_notify($15, '') WHERE EXISTS (SELECT 1 FROM d WHERE state = 0))
             SELECT event_id, (SELECT count(*) FROM n) FROM c",
            &[
                &k_key, &k_id, &k_at, &k_window, &e_id, &e_ms, &e_rec, &d_id, &d_ev, &d_state,
                &d_next, &d_created, &d_chan, &d_rec, &channel,
            ],
        )
        .await
        .map_err(|e| db_text(&e))?;
    let claimed: std::collections::HashSet<Vec<u8>> =
        rows.iter().map(|r| r.get::<_, Vec<u8>>(0)).collect();
    // Keys another event holds (committed before, here or on another replica): read now, in
    // a statement of its own, so a claim that committed while this one waited is seen.
    let mut holder: HashMap<String, EventId> = HashMap::new();
    let lost: Vec<Vec<u8>> = seen
        .iter()
        .filter(|(_, id)| !claimed.contains(id.0.as_slice()))
        .map(|(k, _)| k.as_bytes().to_vec())
        .collect();
    if !lost.is_empty() {
        for r in client
            .run(
                "SELECT key, event_id FROM dedup WHERE key = ANY($1)",
                &[&lost],
            )
            .await
            .map_err(|e| db_text(&e))?
        {
            let (key, raw): (Vec<u8>, Vec<u8>) = (r.get(0), r.get(1));
            if let (Ok(key), Some(id)) = (String::from_utf8(key), EventId::parse_key(&raw)) {
                holder.insert(key, id);
            }
        }
    }
    let owner = |key: &str| -> Result<EventId, String> {
        match seen.get(key) {
            Some(id) if claimed.contains(id.0.as_slice()) => Ok(*id),
            _ => holder
                .get(key)
                .copied()
                .ok_or_else(|| format!("dedup key {key:?} was neither claimed nor held")),
        }
    };
    plans
        .into_iter()
        .map(|plan| {
            plan.into_iter()
                .map(|p| match p {
                    Plan::Claim { id, n, .. } if claimed.contains(id.0.as_slice()) => {
                        Ok(Enqueued::Accepted { id, deliveries: n })
                    }
                    Plan::Claim { key, .. } | Plan::Copy { key } => {
                        Ok(Enqueued::Duplicate { id: owner(&key)? })
                    }
                })
                .collect()
        })
        .collect()
}
