//! Outcomes of attempts, written in batches: the workers' completions that arrive while one
//! statement is under way go together in the next (one round trip and one commit for many).
//! They commit with `synchronous_commit = off` (see the module comment of `postgres`).

use deadpool_postgres::Pool;
use tokio_postgres::types::Json;

use super::batch::Batcher;
use super::{Cached, db_text, ms, state_code};
use crate::store::{AttemptRecord, DeliveryRecord, StoreError};

/// Most outcomes one statement writes.
const MAX_OUTCOMES: usize = 512;

/// One attempt's outcome: the delivery as it is now, under the lease it was sent with.
pub struct Outcome {
    pub record: DeliveryRecord,
    pub token: u64,
    pub attempt: AttemptRecord,
    /// The attempt's number (the delivery's tries before it).
    pub n: u32,
    pub now: u64,
}

/// Whether the outcome was written (false: its lease was lost and nothing changed).
type Answer = Result<bool, String>;

pub struct Outcomes(Batcher<Outcome, Answer>);

impl Outcomes {
    pub fn start(pool: Pool, replica: String) -> Outcomes {
        Outcomes(Batcher::start(
            MAX_OUTCOMES,
            |_| 1,
            move |batch: Vec<Outcome>| {
                let (pool, replica) = (pool.clone(), replica.clone());
                async move {
                    let n = batch.len();
                    match write(&pool, &replica, &batch).await {
                        Ok(written) => batch
                            .iter()
                            .map(|o| Ok(written.contains(o.record.id.to_bytes().as_slice())))
                            .collect(),
                        Err(e) => vec![Err(e); n],
                    }
                }
            },
        ))
    }

    /// Writes `o`: `Ok(false)` if its lease was lost.
    pub async fn record(&self, o: Outcome) -> Result<bool, StoreError> {
        self.0.submit(o).await?.map_err(StoreError::Io)
    }

    pub fn stop(&self) {
        self.0.stop()
    }
}

/// One statement for the batch; the ids it wrote.
async fn write(
    pool: &Pool,
    replica: &str,
    batch: &[Outcome],
) -> Result<std::collections::HashSet<Vec<u8>>, String> {
    let ids: Vec<Vec<u8>> = batch
        .iter()
        .map(|o| o.record.id.to_bytes().to_vec())
        .collect();
    let states: Vec<i16> = batch.iter().map(|o| state_code(o.record.state)).collect();
    let next: Vec<Option<i64>> = batch.iter().map(|o| o.record.next_ms.map(ms)).collect();
    let at: Vec<i64> = batch.iter().map(|o| ms(o.now)).collect();
    let records: Vec<Json<&DeliveryRecord>> = batch.iter().map(|o| Json(&o.record)).collect();
    let tokens: Vec<i64> = batch.iter().map(|o| o.token as i64).collect();
    let n: Vec<i32> = batch.iter().map(|o| o.n as i32).collect();
    let attempts: Vec<Json<&AttemptRecord>> = batch.iter().map(|o| Json(&o.attempt)).collect();
    let client = super::batch::connection(pool).await?;
    let rows = client
        .run(
            "WITH i AS (
                SELECT * FROM unnest($1::bytea[], $2::int2[], $3::int8[], $4::int8[], $5::json[],
                    $6::int8[], $7::int4[], $8::json[]) AS i(id, st, nx, at, rec, seq, n, att)),
             u AS (
                UPDATE deliveries d SET state = i.st, next_ms = i.nx, updated_ms = i.at,
                    record = i.rec, lease_owner = NULL
                -- By the primary key (`ANY($1)`). No `state = 0`: it would match the partial
                -- due index, which a planner without fresh statistics picks and then scans
                -- whole; the lease implies it (only a pending delivery is ever leased).
                FROM i WHERE d.id = ANY($1) AND d.id = i.id
                    AND d.lease_owner = $9 AND d.lease_seq = i.seq
                RETURNING d.id),
             a AS (
                INSERT INTO attempts (delivery_id, n, record)
                SELECT i.id, i.n, i.att FROM i WHERE i.id IN (SELECT id FROM u)
                ON CONFLICT (delivery_id, n) DO UPDATE SET record = EXCLUDED.record)
             SELECT id FROM u",
            &[
                &ids, &states, &next, &at, &records, &tokens, &n, &attempts, &replica,
            ],
        )
        .await
        .map_err(|e| db_text(&e))?;
    Ok(rows.iter().map(|r| r.get::<_, Vec<u8>>(0)).collect())
}
