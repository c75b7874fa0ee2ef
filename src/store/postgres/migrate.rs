//! The PostgreSQL schema, embedded and versioned: applied at start under an advisory lock, so
//! replicas starting together apply each step once; a database newer than this binary is refused.

use tokio_postgres::Client;

use super::db_err;
use crate::store::StoreError;

/// The advisory lock every replica takes while it migrates (any fixed number; "hookrelay").
const LOCK: i64 = 0x686f_6f6b_7265_6c61;

/// The steps, in order; step N brings the schema to version N. Never edit a shipped step: add one.
const STEPS: &[(&str, &str)] = &[
    (
        "events, dedup keys, deliveries, attempts, replicas",
        r#"
    CREATE TABLE events (
        id bytea PRIMARY KEY,
        received_ms bigint NOT NULL,
        record json NOT NULL
    );
    -- One row per dedup key: the event that claimed it, when, and the window it was claimed for.
    -- Keys are bytes: an event's key may hold any character, NUL included.
    CREATE TABLE dedup (
        key bytea PRIMARY KEY,
        event_id bytea NOT NULL,
        at_ms bigint NOT NULL,
        window_ms bigint NOT NULL
    );
    CREATE INDEX dedup_event ON dedup (event_id);
    -- The columns are what the queries filter on; `record` is the whole delivery. Records are
    -- `json`, not `jsonb`: payloads may hold \u0000, which jsonb refuses.
    CREATE TABLE deliveries (
        id bytea PRIMARY KEY,
        event_id bytea NOT NULL,
        state smallint NOT NULL,
        next_ms bigint,
        created_ms bigint NOT NULL,
        updated_ms bigint NOT NULL,
        lease_owner text,
        lease_seq bigint NOT NULL DEFAULT 0,
        record json NOT NULL
    -- Room on each page, so a lease (no indexed column changes) is a HOT update: no index writes.
    ) WITH (fillfactor = 70);
    CREATE INDEX deliveries_due ON deliveries (next_ms, id) WHERE state = 0;
    CREATE INDEX deliveries_dead ON deliveries (updated_ms, id) WHERE state = 2;
    CREATE INDEX deliveries_event ON deliveries (event_id);
    CREATE TABLE attempts (
        delivery_id bytea NOT NULL,
        n integer NOT NULL,
        record json NOT NULL,
        PRIMARY KEY (delivery_id, n)
    );
    -- Replicas alive: a lease is held while its owner's heartbeat is fresh.
    CREATE TABLE replicas (
        name text PRIMARY KEY,
        incarnation text NOT NULL,
        alive_until timestamptz NOT NULL
    );
    "#,
    ),
    (
        "documents shared by every replica (destination rate logs, vendor tokens)",
        r#"
    CREATE TABLE shared (
        key text PRIMARY KEY,
        value json NOT NULL
    );
    "#,
    ),
    (
        "due deliveries by channel (claims skip full channels); when each replica joined",
        r#"
    ALTER TABLE deliveries ADD COLUMN channel text;
    UPDATE deliveries SET channel = record->>'channel';
    ALTER TABLE deliveries ALTER COLUMN channel SET NOT NULL;
    ALTER TABLE replicas ADD COLUMN joined timestamptz NOT NULL DEFAULT clock_timestamp();
    -- Due order within each channel: a claim reads the head of every channel with room, so
    -- the backlog of a full (or hung) destination is never scanned past.
    CREATE INDEX deliveries_due_by_channel ON deliveries (channel, next_ms, id) WHERE state = 0;
    DROP INDEX deliveries_due;
    "#,
    ),
    (
        "pending deliveries by digest key (a digest is sent with every one of its key)",
        r#"
    CREATE INDEX deliveries_digest ON deliveries ((record->>'digest'), id)
        WHERE state = 0 AND record->>'digest' IS NOT NULL;
    "#,
    ),
    (
        "the messages that threads of events update",
        r#"
    CREATE TABLE threads (
        key text PRIMARY KEY,
        expires_ms bigint NOT NULL,
        record json NOT NULL
    );
    CREATE INDEX threads_expiry ON threads (expires_ms);
    "#,
    ),
];

/// The schema version this binary writes.
pub fn latest() -> i32 {
    STEPS.len() as i32
}

/// Creates `schema` if needed and brings it to [`latest`], or refuses one that is newer.
pub async fn run(client: &mut Client, schema: &str) -> Result<i32, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await
        .map_err(db_err)?;
    // Under the lock: two replicas creating the schema at once would clash.
    let result = match client
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .await
    {
        Ok(()) => apply(client).await,
        Err(e) => Err(db_err(e)),
    };
    // Released whatever happened (the session ends with the connection anyway).
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await;
    result
}

async fn apply(client: &mut Client) -> Result<i32, StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS hookrelay_schema (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(db_err)?;
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM hookrelay_schema",
            &[],
        )
        .await
        .map_err(db_err)?;
    let current: i32 = row.get(0);
    if current > latest() {
        return Err(StoreError::Damaged(format!(
            "the PostgreSQL database is at schema version {current}, newer than this hookrelay \
             knows ({}): run a hookrelay at least as new as the one that migrated it",
            latest()
        )));
    }
    for (i, (name, sql)) in STEPS.iter().enumerate().skip(current as usize) {
        let version = i as i32 + 1;
        let tx = client.transaction().await.map_err(db_err)?;
        tx.batch_execute(sql).await.map_err(db_err)?;
        tx.execute(
            "INSERT INTO hookrelay_schema (version, name) VALUES ($1, $2)",
            &[&version, name],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        tracing::info!(version, name, "PostgreSQL schema migrated");
    }
    Ok(latest())
}
