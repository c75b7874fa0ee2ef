//! The shared store: PostgreSQL (tokio-postgres over a deadpool pool), for several relay
//! replicas on one database.
//!
//! - Ingest writes are group-committed (`commit.rs`): concurrent requests share one statement
//!   and one commit, with `synchronous_commit = on`; the dedup key is claimed by
//!   `INSERT … ON CONFLICT`, which serializes concurrent claims of one key across replicas.
//! - Due deliveries are leased with `FOR UPDATE SKIP LOCKED`: a lease names its replica and
//!   counts (`lease_seq`); it holds while that replica's heartbeat is fresh (`replicas`), so
//!   a killed replica's deliveries are taken over once its heartbeat lapses, and an outcome
//!   recorded under a lease that was taken over is refused.
//!   Claims read the head of each channel's due order and skip channels the caller has no room
//!   for, so a hung destination's backlog stays free for other replicas and is never scanned.
//! - Outcomes, leases and replays are written with `synchronous_commit = off`, as the embedded
//!   engines write them without a flush: one lost to a crash leaves the delivery due, and it
//!   is sent again (at least once, never lost). Outcomes are batched (`outcome.rs`).
//! - Per-destination in-flight caps hold across replicas: each takes its part (`Share`) of the
//!   live replicas seen at its heartbeat.
//! - Small documents every replica shares (a destination's rate log, a vendor token) are rows
//!   updated under a row lock (`update_shared`).
//! - A commit that makes deliveries due sends `NOTIFY`; every replica listens, so a delivery
//!   enqueued on one is sent by another within milliseconds (the dispatcher's poll is the
//!   fallback).

mod batch;
mod commit;
mod migrate;
mod outcome;
mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures_util::future::BoxFuture;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio_postgres::Row;
use tokio_postgres::types::Json;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    AttemptRecord, Backlog, Busy, Cause, Completion, Counts, DeliveryPage, DeliveryQuery,
    DeliveryRecord, DeliveryState, Enqueued, EventRecord, Fault, Leased, NewEvent, Purged, Replay,
    Store, StoreError, ThreadRecord, lock,
};
use crate::ids::{DeliveryId, EventId};
use crate::message::Message;
use crate::reason::with_causes;
use crate::secret::Secret;

/// How a relay reaches its database (`[postgres]` in the settings).
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// `postgres://user:password@host:port/db` (or key=value form); never printed.
    pub url: Secret,
    /// Connections per pool (`postgres.pool_size`, default 16).
    pub pool_size: usize,
    /// Longest a statement may run (`postgres.statement_timeout`, default 10s).
    pub statement_timeout: Duration,
    /// How long a silent replica keeps its leases (`postgres.lease`, default 30s).
    pub lease: Duration,
    /// This replica's name in leases (`postgres.replica`, default `<hostname>-<pid>`).
    pub replica: String,
    /// The schema the tables live in (`postgres.schema`, default `public`).
    pub schema: String,
    /// Certificates (PEM) the server's TLS certificate is verified against, besides the
    /// system's roots (`postgres.ca_file`). TLS itself follows the URL's `sslmode`.
    pub ca_file: Option<std::path::PathBuf>,
}

/// Most records one listing call examines (as the embedded engines).
const LIST_BUDGET: usize = 20_000;
/// Records a listing reads per round trip.
const LIST_CHUNK: i64 = 500;
/// The advisory lock one retention step holds, so replicas purge one at a time (with the
/// schema's hash as its second key: relays on other schemas of the database purge meanwhile).
const RETENTION_LOCK: i32 = 0x686f_6f6b;

/// Delivery states as stored in the `state` column.
fn state_code(s: DeliveryState) -> i16 {
    match s {
        DeliveryState::Pending => 0,
        DeliveryState::Delivered => 1,
        DeliveryState::Dead => 2,
    }
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A database error as a store error (the driver's words never hold the URL's password).
fn db_err(e: tokio_postgres::Error) -> StoreError {
    StoreError::Io(format!("PostgreSQL: {}", db_text(&e)))
}

fn db_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unwritable(Fault {
        cause: Cause::Database,
        detail: format!("no database connection: {}", with_causes(&e)),
    })
}

/// Told how long each group commit took.
type CommitObserver = Arc<dyn Fn(Duration) + Send + Sync>;

type Params<'a> = &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)];

/// Statements prepared once per connection (deadpool's statement cache), not parsed and planned
/// again on every call: that alone is a round trip and a plan per statement.
pub(crate) trait Cached {
    async fn run(&self, sql: &str, p: Params<'_>) -> Result<Vec<Row>, tokio_postgres::Error>;
    async fn run_opt(&self, sql: &str, p: Params<'_>)
    -> Result<Option<Row>, tokio_postgres::Error>;
    async fn run_one(&self, sql: &str, p: Params<'_>) -> Result<Row, tokio_postgres::Error>;
    async fn run_exec(&self, sql: &str, p: Params<'_>) -> Result<u64, tokio_postgres::Error>;
}

impl Cached for Object {
    async fn run(&self, sql: &str, p: Params<'_>) -> Result<Vec<Row>, tokio_postgres::Error> {
        let st = self.prepare_cached(sql).await?;
        self.query(&st, p).await
    }
    async fn run_opt(
        &self,
        sql: &str,
        p: Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let st = self.prepare_cached(sql).await?;
        self.query_opt(&st, p).await
    }
    async fn run_one(&self, sql: &str, p: Params<'_>) -> Result<Row, tokio_postgres::Error> {
        let st = self.prepare_cached(sql).await?;
        self.query_one(&st, p).await
    }
    async fn run_exec(&self, sql: &str, p: Params<'_>) -> Result<u64, tokio_postgres::Error> {
        let st = self.prepare_cached(sql).await?;
        self.execute(&st, p).await
    }
}

/// The PostgreSQL [`Store`].
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Ingest: `synchronous_commit = on`.
    durable: Pool,
    /// Everything else: `synchronous_commit = off` (see the module comment).
    pool: Pool,
    replica: String,
    channel: String,
    committer: commit::Committer,
    outcomes: outcome::Outcomes,
    commits: AtomicU64,
    failures: AtomicU64,
    fault: Mutex<Option<Fault>>,
    wake: Mutex<Option<Arc<Notify>>>,
    on_commit: Mutex<Option<CommitObserver>>,
    share: Mutex<Share>,
    /// What this replica leased and has not yet finished or let go, so that a delivery that
    /// waited in its lane is handed back without a round trip: under a live lease nothing
    /// else changes it (and an outcome after a lost lease is refused all the same).
    leased: Mutex<HashMap<DeliveryId, Leased>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Opens connections on the store's runtime, whichever runtime asks: a connection's task must
/// outlive the HTTP workers that may first ask for it.
struct OnRuntime(Handle, MakeRustlsConnect);

impl deadpool_postgres::Connect for OnRuntime {
    fn connect(
        &self,
        cfg: &tokio_postgres::Config,
    ) -> BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let (cfg, rt, tls) = (cfg.clone(), self.0.clone(), self.1.clone());
        Box::pin(async move {
            let inner = rt.clone();
            let connected = rt
                .spawn(async move {
                    let (client, conn) = cfg.connect(tls).await?;
                    let task = inner.spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "PostgreSQL connection ended");
                        }
                    });
                    Ok::<_, tokio_postgres::Error>((client, task))
                })
                .await;
            match connected {
                Ok(r) => r,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // The runtime is shutting down: nothing will use this connection.
                Err(_) => std::future::pending().await,
            }
        })
    }
}

fn config(s: &PgSettings, synchronous: bool) -> Result<tokio_postgres::Config, StoreError> {
    let mut cfg: tokio_postgres::Config = s
        .url
        .expose()
        .parse()
        .map_err(|e| StoreError::Io(format!("postgres.url does not parse: {e}")))?;
    cfg.application_name("hookrelay");
    cfg.connect_timeout(Duration::from_secs(5));
    // Every query here finds its rows through an index. Without `enable_seqscan = off`, the
    // generic plan of a prepared statement made while a table was small (a new database)
    // scans it whole long after it has grown; planning each execution instead costs more.
    cfg.options(format!(
        "-c search_path={} -c statement_timeout={} -c synchronous_commit={} \
         -c enable_seqscan=off",
        s.schema,
        s.statement_timeout.as_millis(),
        if synchronous { "on" } else { "off" }
    ));
    Ok(cfg)
}

fn pool(s: &PgSettings, synchronous: bool, size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_connect(
        config(s, synchronous)?,
        OnRuntime(Handle::current(), tls::connector(s)?),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(2))
        .wait_timeout(Some(s.statement_timeout))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Io(format!("PostgreSQL pool: {e}")))
}

/// Connects, migrates the schema (under its advisory lock) and starts the heartbeat and the
/// listener.
pub async fn open(s: &PgSettings) -> Result<PgStore, StoreError> {
    if !s
        .schema
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(StoreError::Io(format!(
            "postgres.schema {:?} must be letters, digits and _",
            s.schema
        )));
    }
    let pool_all = pool(s, false, s.pool_size)?;
    let durable = pool(s, true, commit::CONNECTIONS)?;
    {
        let mut client = durable.get().await.map_err(|e| {
            StoreError::Io(format!(
                "cannot connect to PostgreSQL (postgres.url): {}",
                with_causes(&e)
            ))
        })?;
        migrate::run(&mut client, &s.schema).await?;
    }
    let inner = Arc::new(Inner {
        committer: commit::Committer::start(durable.clone(), channel_of(s)),
        outcomes: outcome::Outcomes::start(pool_all.clone(), s.replica.clone()),
        durable,
        pool: pool_all,
        replica: s.replica.clone(),
        channel: channel_of(s),
        commits: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        fault: Mutex::default(),
        wake: Mutex::default(),
        on_commit: Mutex::default(),
        share: Mutex::new(Share::ALONE),
        leased: Mutex::default(),
        tasks: Mutex::default(),
    });
    heartbeat_once(&inner, s.lease).await?;
    // Every connection opened now, not by the first requests (a connection takes a few
    // round trips and a process on the server: the first second under load paid for them).
    let warm = futures_util::future::join_all(
        (0..s.pool_size.max(2))
            .map(|_| inner.pool.get())
            .chain((0..commit::CONNECTIONS).map(|_| inner.durable.get())),
    )
    .await;
    drop(warm);
    let tasks = vec![
        tokio::spawn(heartbeat(inner.clone(), s.lease)),
        tokio::spawn(listen(Arc::downgrade(&inner), s.clone())),
    ];
    *lock(&inner.tasks) = tasks;
    tracing::info!(replica = %s.replica, schema = %s.schema, version = migrate::latest(),
        "PostgreSQL store open");
    Ok(PgStore { inner })
}

/// The NOTIFY channel of a schema (replicas of another schema are not woken).
fn channel_of(s: &PgSettings) -> String {
    format!("hookrelay_due_{}", s.schema)
}

/// Says this replica is alive for one more lease and reads who else is, for [`Share`].
async fn heartbeat_once(inner: &Inner, lease: Duration) -> Result<(), StoreError> {
    let client = inner.pool.get().await.map_err(pool_err)?;
    client
        .run_exec(
            "INSERT INTO replicas (name, incarnation, alive_until)
             VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
             ON CONFLICT (name) DO UPDATE SET incarnation = EXCLUDED.incarnation,
                 alive_until = EXCLUDED.alive_until,
                 joined = CASE WHEN replicas.incarnation = EXCLUDED.incarnation
                     THEN replicas.joined ELSE clock_timestamp() END",
            &[
                &inner.replica,
                &std::process::id().to_string(),
                &lease.as_secs_f64(),
            ],
        )
        .await
        .map_err(db_err)?;
    // Each live replica, whether it joined before this one, and whether this one is new.
    let live = client
        .run(
            "WITH me AS (SELECT joined, name FROM replicas WHERE name = $1)
             SELECT r.name, (r.joined, r.name) < (SELECT joined, name FROM me),
                 (SELECT joined FROM me) > clock_timestamp() - make_interval(secs => $2)
             FROM replicas r WHERE r.alive_until > clock_timestamp()",
            &[&inner.replica, &Share::settle(lease).as_secs_f64()],
        )
        .await
        .map_err(db_err)?;
    let new = live
        .first()
        .and_then(|r| r.get::<_, Option<bool>>(2))
        .unwrap_or(false);
    let live: Vec<(String, bool)> = live
        .iter()
        .map(|r| (r.get(0), r.get::<_, Option<bool>>(1).unwrap_or(false)))
        .collect();
    *lock(&inner.share) = Share::of(&inner.replica, &live, new);
    Ok(())
}

/// This replica's part of every per-destination in-flight cap: the cap is split over the live
/// replicas in name order, so the parts add up to it. A replica that joined after others takes
/// no part until each of them has beaten once since and counts it (until then they use parts
/// sized for one replica fewer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Share {
    rank: usize,
    of: usize,
    settling: bool,
}

impl Share {
    const ALONE: Share = Share {
        rank: 0,
        of: 1,
        settling: false,
    };

    /// How long a newcomer waits: one beat interval of the others, and a margin for the beat
    /// itself.
    fn settle(lease: Duration) -> Duration {
        beat_interval(lease) + Duration::from_secs(1)
    }

    /// `me`'s share among `live` (name, joined before `me`), `me` having joined within the
    /// settle time if `new`.
    fn of(me: &str, live: &[(String, bool)], new: bool) -> Share {
        let others = live.iter().filter(|(n, _)| n != me).count();
        Share {
            rank: live.iter().filter(|(n, _)| n.as_str() < me).count(),
            of: others + 1,
            settling: new && live.iter().any(|(n, older)| n != me && *older),
        }
    }

    fn part(self, cap: usize) -> usize {
        if self.settling {
            return 0;
        }
        cap / self.of + usize::from(self.rank < cap % self.of)
    }
}

/// Time between heartbeats: at least three per lease, so one missed beat loses nothing, and
/// often enough that a replica that joins gets its part of the caps within seconds.
fn beat_interval(lease: Duration) -> Duration {
    (lease / 3).min(Duration::from_secs(2))
}

/// Keeps the heartbeat fresh and the view of the live replicas current.
async fn heartbeat(inner: Arc<Inner>, lease: Duration) {
    let every = beat_interval(lease);
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = heartbeat_once(&inner, lease).await {
            tracing::warn!(error = %e, "PostgreSQL heartbeat failed: leases lapse if it keeps failing");
        }
    }
}

/// Listens for due deliveries written by any replica and wakes the dispatcher; reconnects
/// after a failure (the dispatcher polls meanwhile).
async fn listen(inner: std::sync::Weak<Inner>, s: PgSettings) {
    loop {
        let Some(channel) = inner.upgrade().map(|i| i.channel.clone()) else {
            return;
        };
        let connected = match config(&s, false) {
            Ok(cfg) => match tls::connector(&s) {
                Ok(tls) => cfg.connect(tls).await.map_err(|e| db_text(&e)),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        match connected {
            Ok((client, mut conn)) => {
                // The connection's messages are read by a task of their own, which wakes the
                // dispatcher on each notification, while `client` subscribes.
                let waker = inner.clone();
                let driver = tokio::spawn(async move {
                    use futures_util::StreamExt;
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                    while let Some(Ok(msg)) = messages.next().await {
                        let Some(i) = waker.upgrade() else { return };
                        if let tokio_postgres::AsyncMessage::Notification(_) = msg
                            && let Some(w) = lock(&i.wake).as_ref()
                        {
                            w.notify_one();
                        }
                    }
                });
                if client
                    .batch_execute(&format!("LISTEN {channel}"))
                    .await
                    .is_ok()
                {
                    // Until the connection ends; `client` keeps it open meanwhile.
                    let _ = driver.await;
                } else {
                    driver.abort();
                }
            }
            Err(e) => tracing::debug!(error = %e, "PostgreSQL listener cannot connect"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The SQL condition under which replica `$me` may take delivery `d`: it is not in the held
/// set `$held`, and nobody holds it, `$me` does (a delivery it let go of), or its holder's
/// heartbeat lapsed.
macro_rules! claimable {
    ($me:literal, $held:literal) => {
        concat!(
            "NOT (d.id = ANY(",
            $held,
            ")) AND (d.lease_owner IS NULL OR d.lease_owner = ",
            $me,
            " OR NOT EXISTS (SELECT 1 FROM replicas r
                WHERE r.name = d.lease_owner AND r.alive_until > clock_timestamp()))"
        )
    };
}

/// The channels with due deliveries, as `chans(name)`, one index probe each (a skip scan):
/// claims then read the head of each channel not in `$full`, never a full channel's backlog.
macro_rules! channels_due {
    () => {
        "WITH RECURSIVE chans(name) AS (
            SELECT min(channel) FROM deliveries WHERE state = 0
          UNION ALL
            SELECT (SELECT min(d.channel) FROM deliveries d
                    WHERE d.state = 0 AND d.channel > chans.name)
            FROM chans WHERE chans.name IS NOT NULL)"
    };
}

/// The held set and the full channels as the arrays the claim queries skip.
fn skip_lists(busy: &Busy) -> (Vec<Vec<u8>>, Vec<&str>) {
    (
        busy.held.iter().map(|id| id.to_bytes().to_vec()).collect(),
        busy.full.iter().map(String::as_str).collect(),
    )
}

fn delivery_of(row: &Row, id_col: usize, rec_col: usize) -> Result<DeliveryRecord, StoreError> {
    let raw: &[u8] = row.get(id_col);
    let Json(mut rec): Json<DeliveryRecord> = row.get(rec_col);
    rec.id =
        DeliveryId::from_bytes(raw).ok_or_else(|| StoreError::Corrupt("bad delivery id".into()))?;
    Ok(rec)
}

impl PgStore {
    /// The leases a claim's rows (`id, record, next_ms, lease_seq`) stand for, kept in memory
    /// for `relet`.
    fn kept_leases(&self, rows: &[Row]) -> Result<Vec<Leased>, StoreError> {
        let out = rows
            .iter()
            .map(|r| {
                Ok(Leased {
                    record: delivery_of(r, 0, 1)?,
                    due_ms: r.get::<_, i64>(2) as u64,
                    token: r.get::<_, i64>(3) as u64,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        lock(&self.inner.leased).extend(out.iter().map(|l| (l.record.id, l.clone())));
        Ok(out)
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.inner.pool.get().await.map_err(pool_err)
    }

    /// Reads deliveries by a query whose columns are (id, record).
    async fn read(&self, sql: &str, params: Params<'_>) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .run(sql, params)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| delivery_of(r, 0, 1)).collect()
    }
}

#[async_trait]
impl Store for PgStore {
    async fn enqueue(&self, events: Vec<NewEvent>) -> Result<Vec<Enqueued>, StoreError> {
        match self.inner.committer.submit(events).await {
            Ok((answers, commit)) => {
                // The first request of a commit carries its duration: each is counted once.
                if let Some(took) = commit {
                    self.inner.commits.fetch_add(1, Ordering::Relaxed);
                    if let Some(f) = lock(&self.inner.on_commit).as_ref() {
                        f(took);
                    }
                }
                Ok(answers)
            }
            Err(e) => {
                self.inner.failures.fetch_add(1, Ordering::Relaxed);
                let fault = Fault {
                    cause: Cause::Database,
                    detail: e.to_string(),
                };
                let first = lock(&self.inner.fault).replace(fault.clone()).is_none();
                if first {
                    tracing::error!(error = %fault, "PostgreSQL refused an ingest write: ingest answers 503 and dispatch pauses until it writes again");
                }
                Err(StoreError::Unwritable(fault))
            }
        }
    }

    async fn lease_due(
        &self,
        now: u64,
        limit: usize,
        busy: &Busy,
    ) -> Result<Vec<Leased>, StoreError> {
        let (held, full) = skip_lists(busy);
        let rows = self
            .client()
            .await?
            .run(
                concat!(
                    channels_due!(),
                    ", c AS (
                    SELECT x.id FROM chans CROSS JOIN LATERAL (
                        SELECT d.id, d.next_ms FROM deliveries d
                        WHERE d.state = 0 AND d.channel = chans.name AND d.next_ms <= $1 AND ",
                    claimable!("$4", "$3"),
                    "
                        ORDER BY d.next_ms, d.id LIMIT $2
                        FOR UPDATE OF d SKIP LOCKED) x
                    WHERE NOT (chans.name = ANY($5))
                    ORDER BY x.next_ms, x.id LIMIT $2)
                 UPDATE deliveries d SET lease_owner = $4, lease_seq = d.lease_seq + 1
                 FROM c WHERE d.id = c.id
                 RETURNING d.id, d.record, d.next_ms, d.lease_seq"
                ),
                &[&ms(now), &(limit as i64), &held, &self.inner.replica, &full],
            )
            .await
            .map_err(db_err)?;
        let mut out = self.kept_leases(&rows)?;
        out.sort_by_key(|l| (l.due_ms, l.record.id));
        Ok(out)
    }

    async fn digest_members(&self, key: &str) -> Result<Vec<DeliveryId>, StoreError> {
        let rows = self
            .client()
            .await?
            .run(
                "SELECT id FROM deliveries
                 WHERE state = 0 AND record->>'digest' = $1 ORDER BY id",
                &[&key],
            )
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                DeliveryId::from_bytes(r.get::<_, &[u8]>(0))
                    .ok_or_else(|| StoreError::Corrupt("bad delivery id".into()))
            })
            .collect()
    }

    async fn lease_now(&self, ids: &[DeliveryId]) -> Result<Vec<Leased>, StoreError> {
        let wanted: Vec<Vec<u8>> = ids.iter().map(|id| id.to_bytes().to_vec()).collect();
        let none: Vec<Vec<u8>> = Vec::new();
        let rows = self
            .client()
            .await?
            .run(
                concat!(
                    "WITH c AS (
                    SELECT d.id FROM deliveries d
                    WHERE d.id = ANY($1) AND d.state = 0 AND ",
                    claimable!("$2", "$3"),
                    " FOR UPDATE OF d SKIP LOCKED)
                 UPDATE deliveries d SET lease_owner = $2, lease_seq = d.lease_seq + 1
                 FROM c WHERE d.id = c.id
                 RETURNING d.id, d.record, d.next_ms, d.lease_seq"
                ),
                &[&wanted, &self.inner.replica, &none],
            )
            .await
            .map_err(db_err)?;
        self.kept_leases(&rows)
    }

    async fn open_digests(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self
            .client()
            .await?
            .run(
                "SELECT record->>'digest', next_ms FROM deliveries
                 WHERE state = 0 AND record->>'digest' IS NOT NULL",
                &[],
            )
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<i64>>(1)? as u64,
                ))
            })
            .collect())
    }

    async fn next_due_ms(&self, busy: &Busy) -> Result<Option<u64>, StoreError> {
        let (held, full) = skip_lists(busy);
        let row = self
            .client()
            .await?
            .run_opt(
                concat!(
                    channels_due!(),
                    " SELECT min(x.next_ms) FROM chans CROSS JOIN LATERAL (
                        SELECT d.next_ms FROM deliveries d
                        WHERE d.state = 0 AND d.channel = chans.name AND ",
                    claimable!("$2", "$1"),
                    " ORDER BY d.next_ms, d.id LIMIT 1) x
                    WHERE NOT (chans.name = ANY($3))"
                ),
                &[&held, &self.inner.replica, &full],
            )
            .await
            .map_err(db_err)?;
        Ok(row
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map(|v| v as u64))
    }

    async fn relet(
        &self,
        id: &DeliveryId,
        due_ms: u64,
        token: u64,
    ) -> Result<Option<Leased>, StoreError> {
        let kept = lock(&self.inner.leased)
            .get(id)
            .filter(|l| l.token == token && l.due_ms == due_ms)
            .cloned();
        if kept.is_some() {
            return Ok(kept);
        }
        let found = self
            .read(
                "SELECT id, record FROM deliveries
                 WHERE id = $1 AND state = 0 AND next_ms = $2 AND lease_owner = $3 AND lease_seq = $4",
                &[&id.to_bytes().as_slice(), &ms(due_ms), &self.inner.replica, &(token as i64)],
            )
            .await?;
        Ok(found.into_iter().next().map(|record| Leased {
            due_ms,
            token,
            record,
        }))
    }

    async fn complete(
        &self,
        leased: &Leased,
        c: Completion,
        now: u64,
    ) -> Result<DeliveryRecord, StoreError> {
        lock(&self.inner.leased).remove(&leased.record.id);
        let rec = leased.record.after(&c, now);
        let written = self
            .inner
            .outcomes
            .record(outcome::Outcome {
                record: rec.clone(),
                token: leased.token,
                attempt: c.attempt,
                n: leased.record.tries,
                now,
            })
            .await
            .map_err(|e| match e {
                StoreError::Io(e) => StoreError::Io(format!("PostgreSQL: {e}")),
                e => e,
            })?;
        // No NOTIFY for a retry: its own dispatcher is woken by the worker, and it is due later.
        match written {
            true => Ok(rec),
            false => Err(StoreError::LeaseLost),
        }
    }

    async fn thread(&self, key: &str) -> Result<Option<ThreadRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .run_opt("SELECT record FROM threads WHERE key = $1", &[&key])
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| r.get::<_, Json<ThreadRecord>>(0).0))
    }

    async fn set_thread(&self, key: &str, record: &ThreadRecord) -> Result<(), StoreError> {
        self.client()
            .await?
            .run_exec(
                "INSERT INTO threads (key, expires_ms, record) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET expires_ms = $2, record = $3",
                &[&key, &ms(record.expires_ms), &Json(record)],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn purge_threads(&self, now_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let n = self
            .client()
            .await?
            .run_exec(
                "DELETE FROM threads WHERE key IN
                 (SELECT key FROM threads WHERE expires_ms < $1 LIMIT $2)",
                &[&ms(now_ms), &(limit as i64)],
            )
            .await
            .map_err(db_err)?;
        Ok(n as usize)
    }

    async fn set_message(&self, id: &DeliveryId, message: Message) -> Result<(), StoreError> {
        // Only the leaseholder re-renders, so nothing else changes the record meanwhile.
        let Some(mut rec) = self.delivery(id).await? else {
            return Ok(());
        };
        rec.message = Some(message);
        self.client()
            .await?
            .run_exec(
                "UPDATE deliveries SET record = $2 WHERE id = $1",
                &[&id.to_bytes().as_slice(), &Json(&rec)],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .run_opt(
                "SELECT record FROM events WHERE id = $1",
                &[&id.0.as_slice()],
            )
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| r.get::<_, Json<EventRecord>>(0).0))
    }

    async fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        let found = self
            .read(
                "SELECT id, record FROM deliveries WHERE id = $1",
                &[&id.to_bytes().as_slice()],
            )
            .await?;
        Ok(found.into_iter().next())
    }

    async fn deliveries_of(&self, id: &EventId) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.read(
            "SELECT id, record FROM deliveries WHERE event_id = $1 ORDER BY id",
            &[&id.0.as_slice()],
        )
        .await
    }

    async fn attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .run(
                "SELECT record FROM attempts WHERE delivery_id = $1 ORDER BY n",
                &[&id.to_bytes().as_slice()],
            )
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| r.get::<_, Json<AttemptRecord>>(0).0)
            .collect())
    }

    async fn dead_letters(
        &self,
        after: Option<&DeliveryId>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let start = match after {
            Some(id) => self
                .delivery(id)
                .await?
                .map(|d| (ms(d.updated_ms), id.to_bytes().to_vec())),
            None => None,
        };
        let (at, from) = start.unwrap_or((i64::MIN, Vec::new()));
        self.read(
            "SELECT id, record FROM deliveries WHERE state = 2 AND (updated_ms, id) > ($1, $2)
             ORDER BY updated_ms, id LIMIT $3",
            &[&at, &from, &(limit as i64)],
        )
        .await
    }

    async fn replay(&self, id: &DeliveryId, now: u64) -> Result<Replay, StoreError> {
        let Some(mut rec) = self.delivery(id).await? else {
            return Ok(Replay::NotFound);
        };
        if rec.state != DeliveryState::Dead {
            return Ok(Replay::NotDead);
        }
        rec.replayed(now);
        let n = self
            .client()
            .await?
            .run_exec(
                "UPDATE deliveries SET state = 0, next_ms = $2, created_ms = $2, updated_ms = $2,
                    record = $3, lease_owner = NULL
                 WHERE id = $1 AND state = 2",
                &[&id.to_bytes().as_slice(), &ms(now), &Json(&rec)],
            )
            .await
            .map_err(db_err)?;
        if n == 0 {
            return Ok(Replay::NotDead);
        }
        self.notify().await;
        Ok(Replay::Scheduled)
    }

    async fn purge(
        &self,
        after: Option<&EventId>,
        now: u64,
        retention_ms: u64,
        dead_retention_ms: u64,
        limit: usize,
    ) -> Result<Purged, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let mine: bool = tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock($1, hashtext(current_schema()))",
                &[&RETENTION_LOCK],
            )
            .await
            .map_err(db_err)?
            .get(0);
        if !mine {
            // Another replica is purging: this pass is over, the next one comes in a minute.
            return Ok(Purged {
                removed: 0,
                next: None,
            });
        }
        let end = now.saturating_sub(retention_ms).to_be_bytes().to_vec();
        let from = after.map_or_else(Vec::new, |id| id.0.to_vec());
        let row = tx
            .query_one(
                "WITH cand AS (
                    SELECT id FROM events WHERE id > $1 AND id < $2 ORDER BY id LIMIT $3),
                 keep AS (
                    SELECT DISTINCT d.event_id FROM deliveries d JOIN cand ON d.event_id = cand.id
                    WHERE d.state = 0 OR (d.state = 2 AND d.updated_ms >= $4)),
                 gone AS (SELECT id FROM cand WHERE id NOT IN (SELECT event_id FROM keep)),
                 da AS (DELETE FROM attempts a USING deliveries d, gone g
                        WHERE a.delivery_id = d.id AND d.event_id = g.id),
                 dd AS (DELETE FROM deliveries d USING gone g WHERE d.event_id = g.id),
                 dk AS (DELETE FROM dedup k USING gone g WHERE k.event_id = g.id),
                 de AS (DELETE FROM events e USING gone g WHERE e.id = g.id RETURNING e.id)
                 SELECT (SELECT count(*) FROM de), (SELECT count(*) FROM cand), (SELECT id FROM cand ORDER BY id DESC LIMIT 1)",
                &[&from, &end, &(limit as i64), &ms(now.saturating_sub(dead_retention_ms))],
            )
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        let removed = row.get::<_, i64>(0) as usize;
        let examined = row.get::<_, i64>(1) as usize;
        let last: Option<Vec<u8>> = row.get(2);
        let next = (examined >= limit)
            .then(|| last.as_deref().and_then(EventId::parse_key))
            .flatten();
        Ok(Purged { removed, next })
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let r = self
            .client()
            .await?
            .run_one(
                "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM deliveries),
                    (SELECT count(*) FROM deliveries WHERE state = 0),
                    (SELECT count(*) FROM deliveries WHERE state = 2),
                    (SELECT count(*) FROM attempts)",
                &[],
            )
            .await
            .map_err(db_err)?;
        let n = |i| r.get::<_, i64>(i) as u64;
        Ok(Counts {
            events: n(0),
            deliveries: n(1),
            pending: n(2),
            dead: n(3),
            attempts: n(4),
        })
    }

    fn fsyncs(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    async fn deliveries(
        &self,
        q: &DeliveryQuery,
        before: Option<&DeliveryId>,
        limit: usize,
    ) -> Result<DeliveryPage, StoreError> {
        let mut page = DeliveryPage::default();
        let mut cursor = before.map(|id| id.to_bytes().to_vec());
        let mut examined = 0;
        loop {
            let chunk = self
                .read(
                    "SELECT id, record FROM deliveries WHERE $1::bytea IS NULL OR id < $1
                     ORDER BY id DESC LIMIT $2",
                    &[&cursor, &LIST_CHUNK],
                )
                .await?;
            let full = chunk.len() as i64 == LIST_CHUNK;
            for rec in chunk {
                // Ids are in receive order: past `since`, nothing older can match.
                if q.since_ms.is_some_and(|t| rec.created_ms < t) {
                    return Ok(page);
                }
                examined += 1;
                cursor = Some(rec.id.to_bytes().to_vec());
                let id = rec.id;
                if q.matches(&rec) {
                    page.deliveries.push(rec);
                }
                if page.deliveries.len() >= limit || examined >= LIST_BUDGET {
                    page.next = Some(id);
                    return Ok(page);
                }
            }
            if !full {
                return Ok(page);
            }
        }
    }

    fn write_failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    fn observe_commits(&self, f: Arc<dyn Fn(Duration) + Send + Sync>) {
        *lock(&self.inner.on_commit) = Some(f);
    }

    async fn update_shared(
        &self,
        key: &str,
        f: &mut (dyn FnMut(Option<serde_json::Value>) -> serde_json::Value + Send),
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        tx.execute(
            "INSERT INTO shared (key, value) VALUES ($1, 'null') ON CONFLICT DO NOTHING",
            &[&key],
        )
        .await
        .map_err(db_err)?;
        // The row lock serializes the replicas' updates of this key.
        let row = tx
            .query_one(
                "SELECT value FROM shared WHERE key = $1 FOR UPDATE",
                &[&key],
            )
            .await
            .map_err(db_err)?;
        let Json(current): Json<serde_json::Value> = row.get(0);
        let new = f((!current.is_null()).then_some(current));
        tx.execute(
            "UPDATE shared SET value = $2 WHERE key = $1",
            &[&key, &Json(&new)],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn release(&self, ids: &[DeliveryId]) -> Result<(), StoreError> {
        {
            let mut leased = lock(&self.inner.leased);
            for id in ids {
                leased.remove(id);
            }
        }
        let ids: Vec<Vec<u8>> = ids.iter().map(|id| id.to_bytes().to_vec()).collect();
        self.client()
            .await?
            .run_exec(
                "UPDATE deliveries SET lease_owner = NULL
                 WHERE id = ANY($1) AND state = 0 AND lease_owner = $2",
                &[&ids, &self.inner.replica],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    fn share_of(&self, cap: usize) -> usize {
        lock(&self.inner.share).part(cap)
    }

    fn watch_due(&self, wake: Arc<Notify>) {
        *lock(&self.inner.wake) = Some(wake);
    }

    async fn backlog(&self, now: u64) -> Result<Backlog, StoreError> {
        let r = self
            .client()
            .await?
            .run_one(
                "SELECT count(*), count(*) FILTER (WHERE next_ms <= $1),
                    min(next_ms) FILTER (WHERE next_ms <= $1)
                 FROM deliveries WHERE state = 0",
                &[&ms(now)],
            )
            .await
            .map_err(db_err)?;
        Ok(Backlog {
            pending: r.get::<_, i64>(0) as u64,
            due: r.get::<_, i64>(1) as u64,
            oldest_due_ms: r.get::<_, Option<i64>>(2).map(|v| v as u64),
        })
    }

    async fn size_on_disk(&self) -> Result<u64, StoreError> {
        let r = self
            .client()
            .await?
            .run_one(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = current_schema() AND c.relkind = 'r'
                   AND c.relname IN ('events', 'dedup', 'deliveries', 'attempts', 'replicas')",
                &[],
            )
            .await
            .map_err(db_err)?;
        Ok(r.get::<_, i64>(0) as u64)
    }

    async fn compact(&self) -> Result<(), StoreError> {
        self.client()
            .await?
            .batch_execute("VACUUM events, dedup, deliveries, attempts")
            .await
            .map_err(db_err)
    }

    async fn close(&self) -> Result<(), StoreError> {
        for t in lock(&self.inner.tasks).drain(..) {
            t.abort();
        }
        self.inner.committer.stop();
        self.inner.outcomes.stop();
        // What this replica still holds goes to the others at once, not after its lease: a
        // lease whose holder has no heartbeat row is free.
        let released = async {
            self.client()
                .await?
                .run_exec(
                    "DELETE FROM replicas WHERE name = $1",
                    &[&self.inner.replica],
                )
                .await
                .map_err(db_err)?;
            self.notify().await;
            Ok::<_, StoreError>(())
        }
        .await;
        self.inner.pool.close();
        self.inner.durable.close();
        released
    }

    fn fault(&self) -> Option<Fault> {
        lock(&self.inner.fault).clone()
    }

    async fn recover(&self) -> Result<(), StoreError> {
        let client = self.inner.durable.get().await.map_err(pool_err)?;
        client.batch_execute("SELECT 1").await.map_err(|e| {
            StoreError::Unwritable(Fault {
                cause: Cause::Database,
                detail: db_text(&e),
            })
        })?;
        // What waited while the database was away is leased again from the table.
        lock(&self.inner.leased).clear();
        if let Some(was) = lock(&self.inner.fault).take() {
            tracing::info!(was = %was, "PostgreSQL writes again: ingest and dispatch resume");
        }
        Ok(())
    }
}

impl PgStore {
    /// Wakes every replica's dispatcher (best effort: they poll as well).
    async fn notify(&self) {
        if let Ok(client) = self.client().await {
            let _ = client
                .run_exec("SELECT pg_notify($1, '')", &[&self.inner.channel])
                .await;
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Cached, testing};
    use crate::store::suite::{delivery, delivery_on, done, idle, new_event};
    use crate::store::{Busy, Ending, Enqueued, Store, StoreError};

    crate::store_suite!(
        testing::available(),
        match testing::open().await {
            Some(s) => s,
            None => return,
        },
        {
            let schema = testing::fresh_schema();
            move |_: &std::path::Path| -> crate::store::suite::Reopened {
                let s = testing::settings(&schema, "test");
                Box::pin(async move {
                    Box::new(super::open(&s).await.expect("reopens")) as Box<dyn Store>
                })
            }
        }
    );

    /// What a SIGKILL does to a replica's heartbeat, without waiting out a lease: it stops, and
    /// its last beat is in the past.
    async fn kill(s: &super::PgStore) {
        for t in super::lock(&s.inner.tasks).drain(..) {
            t.abort();
        }
        s.client()
            .await
            .unwrap()
            .run_exec(
                "UPDATE replicas SET alive_until = clock_timestamp() - interval '1 second'
                 WHERE name = $1",
                &[&s.inner.replica],
            )
            .await
            .unwrap();
    }

    /// Two replicas, and one delivery that `a` holds.
    async fn leased_by_a() -> Option<(super::PgStore, super::PgStore, Vec<crate::store::Leased>)> {
        let (a, b, _) = testing::pair().await?;
        a.enqueue(vec![new_event("k", 0, vec![delivery(0)])])
            .await
            .unwrap();
        let held = a.lease_due(10, 10, &idle()).await.unwrap();
        Some((a, b, held))
    }

    #[tokio::test]
    async fn a_dead_replicas_lease_is_taken_over_and_its_late_outcome_refused() {
        let Some((a, b, held)) = leased_by_a().await else {
            return;
        };
        assert_eq!(held.len(), 1);
        assert!(
            b.lease_due(10, 10, &idle()).await.unwrap().is_empty(),
            "a live replica's lease holds"
        );
        assert_eq!(b.next_due_ms(&idle()).await.unwrap(), None);
        kill(&a).await;
        let taken = b.lease_due(10, 10, &idle()).await.unwrap();
        assert_eq!(taken.len(), 1, "taken over once the heartbeat lapsed");
        assert!(taken[0].token > held[0].token);
        let late = a.complete(&held[0], done(Ending::Dead), 20).await;
        assert!(matches!(late, Err(StoreError::LeaseLost)), "{late:?}");
        let rec = b
            .complete(&taken[0], done(Ending::Delivered), 30)
            .await
            .unwrap();
        assert_eq!(rec.state, crate::store::DeliveryState::Delivered);
        let id = taken[0].record.id;
        assert_eq!(
            b.attempts(&id).await.unwrap().len(),
            1,
            "only the owner's attempt"
        );
        assert_eq!(
            b.delivery(&id).await.unwrap().unwrap().state,
            crate::store::DeliveryState::Delivered,
            "the late outcome did not overwrite the owner's"
        );
    }

    #[tokio::test]
    async fn claims_leave_a_full_channel_to_replicas_with_room() {
        let Some((a, b, _)) = testing::pair().await else {
            return;
        };
        a.enqueue(vec![new_event(
            "k",
            0,
            vec![
                delivery_on("hung", 0),
                delivery_on("hung", 1),
                delivery_on("ok", 2),
            ],
        )])
        .await
        .unwrap();
        let hung_is_full = Busy {
            full: ["hung".to_string()].into(),
            ..Busy::default()
        };
        let mine = a.lease_due(10, 10, &hung_is_full).await.unwrap();
        assert_eq!(
            mine.iter()
                .map(|l| l.record.channel.as_str())
                .collect::<Vec<_>>(),
            ["ok"]
        );
        let holding_ok = Busy {
            held: [mine[0].record.id].into(),
            ..hung_is_full
        };
        assert_eq!(a.next_due_ms(&holding_ok).await.unwrap(), None);
        let theirs = b.lease_due(10, 10, &idle()).await.unwrap();
        assert_eq!(
            theirs.len(),
            2,
            "a full channel's deliveries stay free for others"
        );
        assert!(theirs.iter().all(|l| l.record.channel == "hung"));
    }

    #[tokio::test]
    async fn a_released_lease_is_free_for_another_replica_at_once() {
        let Some((a, b, held)) = leased_by_a().await else {
            return;
        };
        assert!(b.lease_due(10, 10, &idle()).await.unwrap().is_empty());
        a.release(&[held[0].record.id]).await.unwrap();
        let taken = b.lease_due(10, 10, &idle()).await.unwrap();
        assert_eq!(taken.len(), 1);
        assert!(
            a.relet(&held[0].record.id, held[0].due_ms, held[0].token)
                .await
                .unwrap()
                .is_none(),
            "the releaser no longer holds it"
        );
    }

    #[tokio::test]
    async fn in_flight_caps_are_split_over_live_replicas() {
        let Some((a, b, _)) = testing::pair().await else {
            return;
        };
        let lease = testing::settings("unused", "x").lease;
        super::heartbeat_once(&a.inner, lease).await.unwrap();
        super::heartbeat_once(&b.inner, lease).await.unwrap();
        assert_eq!(a.share_of(8), 4, "a counts b from its next beat");
        assert_eq!(
            b.share_of(8),
            0,
            "b just joined: it waits until every other counts it"
        );
        // Time passes (on the database's clock): b has been counted by now.
        a.client()
            .await
            .unwrap()
            .run_exec(
                "UPDATE replicas SET joined = joined - interval '1 hour'",
                &[],
            )
            .await
            .unwrap();
        super::heartbeat_once(&a.inner, lease).await.unwrap();
        super::heartbeat_once(&b.inner, lease).await.unwrap();
        for cap in [1, 5, 8] {
            assert_eq!(a.share_of(cap) + b.share_of(cap), cap, "cap {cap}");
        }
        assert_eq!((a.share_of(5), b.share_of(5)), (3, 2));
        a.close().await.unwrap();
        super::heartbeat_once(&b.inner, lease).await.unwrap();
        assert_eq!(b.share_of(5), 5, "a replica that left leaves its part");
    }

    #[tokio::test]
    async fn tls_connections_verify_the_server_against_the_ca_file() {
        if !testing::available() {
            return;
        }
        let Some(ca) = testing::ca() else {
            return;
        };
        let mut s = testing::settings(&testing::fresh_schema(), "tls");
        let url = s.url.expose().replace("sslmode=disable", "sslmode=require");
        s.url = crate::secret::Secret::new(url.clone());
        let refused = super::open(&s)
            .await
            .err()
            .expect("an unknown CA is refused");
        let shown = refused.to_string();
        assert!(
            shown.contains("certificate") || shown.contains("UnknownIssuer"),
            "{shown}"
        );
        assert!(!shown.contains(&url), "the URL is not shown: {shown}");
        s.ca_file = Some(ca);
        let store = super::open(&s).await.expect("opens over TLS with the CA");
        let on_tls: bool = store
            .client()
            .await
            .unwrap()
            .run_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(on_tls);
        store
            .enqueue(vec![new_event("tls", 0, vec![delivery(0)])])
            .await
            .unwrap();
        let mut bad = s.clone();
        bad.ca_file = Some("/nonexistent/ca.crt".into());
        let e = super::open(&bad).await.err().unwrap().to_string();
        assert!(e.contains("postgres.ca_file"), "{e}");
    }

    #[test]
    fn shares_add_up_to_the_cap() {
        let live = |names: &[(&str, bool)]| -> Vec<(String, bool)> {
            names.iter().map(|(n, new)| (n.to_string(), *new)).collect()
        };
        let three = live(&[("a", false), ("b", false), ("c", false)]);
        for cap in 0..20 {
            let total: usize = ["a", "b", "c"]
                .iter()
                .map(|me| super::Share::of(me, &three, false).part(cap))
                .sum();
            assert_eq!(total, cap);
        }
        let alone = live(&[("a", false)]);
        assert_eq!(
            super::Share::of("a", &alone, true).part(8),
            8,
            "nobody to wait for"
        );
        let after_b = live(&[("a", false), ("b", true)]);
        assert_eq!(
            super::Share::of("a", &after_b, true).part(8),
            0,
            "b counts a later"
        );
        assert_eq!(super::Share::of("a", &after_b, false).part(8), 4);
        let missing_me = live(&[("b", false)]);
        let s = super::Share::of("a", &missing_me, false);
        assert_eq!((s.rank, s.of), (0, 2), "a replica counts itself");
    }

    #[tokio::test]
    async fn dedup_holds_across_replicas() {
        let Some((a, b, _)) = testing::pair().await else {
            return;
        };
        let (a, b) = (Arc::new(a), Arc::new(b));
        let mut rounds = Vec::new();
        for i in 0..20 {
            let (a, b) = (a.clone(), b.clone());
            let name = format!("same-{i}");
            rounds.push(tokio::spawn(async move {
                let (x, y) = tokio::join!(
                    a.enqueue(vec![new_event(&name, 0, vec![delivery(0)])]),
                    b.enqueue(vec![new_event(&name, 0, vec![delivery(0)])]),
                );
                (x.unwrap().remove(0), y.unwrap().remove(0))
            }));
        }
        for r in rounds {
            let answers = r.await.unwrap();
            match answers {
                (Enqueued::Accepted { id, .. }, Enqueued::Duplicate { id: d })
                | (Enqueued::Duplicate { id: d }, Enqueued::Accepted { id, .. }) => {
                    assert_eq!(id, d)
                }
                other => panic!("one must win: {other:?}"),
            }
        }
        assert_eq!(a.counts().await.unwrap().deliveries, 20);
    }

    #[tokio::test]
    async fn a_delivery_enqueued_on_one_replica_wakes_the_other() {
        let Some((a, b, _)) = testing::pair().await else {
            return;
        };
        let wake = Arc::new(tokio::sync::Notify::new());
        b.watch_due(wake.clone());
        // The listener subscribes in the background: a first event proves it is listening.
        let mut n = 0;
        loop {
            n += 1;
            a.enqueue(vec![new_event(&format!("w{n}"), 0, vec![delivery(0)])])
                .await
                .unwrap();
            if tokio::time::timeout(Duration::from_millis(500), wake.notified())
                .await
                .is_ok()
            {
                break;
            }
            assert!(n < 20, "replica b was never woken by a's commits");
        }
        a.enqueue(vec![new_event("after", 0, vec![delivery(0)])])
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), wake.notified())
            .await
            .expect("woken by the other replica's commit");
    }

    #[tokio::test]
    async fn a_database_newer_than_the_binary_is_refused() {
        let Some((a, _b, schema)) = testing::pair().await else {
            return;
        };
        a.client()
            .await
            .unwrap()
            .run_exec(
                "INSERT INTO hookrelay_schema (version, name) VALUES ($1, 'from the future')",
                &[&(super::migrate::latest() + 1)],
            )
            .await
            .unwrap();
        let refused = super::open(&testing::settings(&schema, "c")).await;
        let text = refused.err().expect("refused").to_string();
        assert!(text.contains("newer than this hookrelay"), "{text}");
    }

    #[tokio::test]
    async fn closing_hands_what_it_held_to_the_others_at_once() {
        let Some((a, b, _)) = testing::pair().await else {
            return;
        };
        a.enqueue(vec![new_event("c", 0, vec![delivery(0)])])
            .await
            .unwrap();
        assert_eq!(a.lease_due(10, 10, &idle()).await.unwrap().len(), 1);
        a.close().await.unwrap();
        assert_eq!(b.lease_due(10, 10, &idle()).await.unwrap().len(), 1);
    }
}
