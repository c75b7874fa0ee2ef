//! End-to-end benchmark: the release relay, a fast receiver and a load driver on loopback.
//! `cargo bench --bench e2e`; knobs (environment):
//! E2E_SCENARIOS=webhook,open,fanout,backlog,alertmanager,alertmanager-open,ceiling (the peer:
//! Alertmanager, started when `prometheus-alertmanager` — or E2E_ALERTMANAGER — is found, and
//! skipped with a message otherwise; the ceiling: the driver straight to the receiver),
//! E2E_RUNS=3, E2E_N=100000, E2E_C=32, E2E_RATE=1000, E2E_OPEN_SECS=10, E2E_FAN_EVENTS=2000,
//! E2E_FAN_WIDTH=100, E2E_BACKLOG=1000000, E2E_STORE=fjall|sled|postgres (postgres: on
//! HOOKRELAY_TEST_POSTGRES_URL, else a throwaway cluster of its own from `scripts/pg-cluster.sh`,
//! a fresh schema per run; the backlog scenario is embedded-only), E2E_REPLICAS=1 (more: that
//! many relays on one PostgreSQL schema, the driver spreading events over them); for profiling, E2E_RELAY_BIN
//! (another build) and E2E_WRAP (a command put before it, e.g. `heaptrack -o /tmp/relay`).
//! Prints a table of medians and one `E2E_RESULT {json}` line with every run.

mod backlog;
mod driver;
mod peer;
mod receiver;
mod relay;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hookrelay::store::{Backend, dir_size};
use serde_json::{Value, json};

use driver::{Drive, Shape, Target};
use receiver::{Receiver, Stats};
use relay::{Relay, Scratch};

/// Waiting for deliveries never takes longer than this.
const DRAIN_LIMIT: Duration = Duration::from_secs(900);

struct Knobs {
    runs: usize,
    n: u64,
    c: usize,
    rate: u64,
    open_secs: u64,
    fan_events: u64,
    fan_width: usize,
    backlog: u64,
    store: String,
    /// Relays sharing the store (PostgreSQL only).
    replicas: usize,
    /// The database of `store = postgres`.
    postgres: Option<String>,
}

impl Knobs {
    /// The relay's store settings for one run (a fresh schema for each PostgreSQL run).
    fn store_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("HOOKRELAY_STORE", self.store.clone())];
        if let Some(url) = &self.postgres {
            env.push(("HOOKRELAY_POSTGRES__URL", url.clone()));
            let schema = format!("bench_{:08x}", rand::random::<u32>());
            env.push(("HOOKRELAY_POSTGRES__SCHEMA", schema));
        }
        env
    }
}

/// A PostgreSQL cluster of the bench's own, stopped when dropped.
struct Cluster(std::path::PathBuf);

impl Cluster {
    fn start() -> Result<(Cluster, String), String> {
        let dir = std::env::temp_dir().join(format!("hookrelay-bench-pg-{}", std::process::id()));
        let out = std::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/pg-cluster.sh"
        ))
        .arg(&dir)
        .output()
        .map_err(|e| format!("scripts/pg-cluster.sh: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok((Cluster(dir), url))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/pg-cluster.sh"
        ))
        .arg("stop")
        .arg(&self.0)
        .status();
    }
}

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One run's figures, by name.
type Figures = BTreeMap<&'static str, f64>;

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Ingest and delivery figures of a drive and what the receiver saw.
fn traffic(f: &mut Figures, drive: &mut Drive, got: &mut Stats) {
    let start = drive.first_send.expect("something was sent");
    let secs = |t: Option<std::time::Instant>| t.map_or(f64::NAN, |t| (t - start).as_secs_f64());
    drive.lat_us.sort_unstable();
    got.lat_us.sort_unstable();
    f.insert("events", (drive.accepted + drive.refused) as f64);
    f.insert("refused", drive.refused as f64);
    f.insert(
        "accepted/s",
        drive.accepted as f64 / secs(drive.last_answer),
    );
    f.insert("deliveries", got.count as f64);
    f.insert("delivered/s", got.count as f64 / secs(got.last));
    f.insert("ingest p50 ms", percentile(&drive.lat_us, 0.50) / 1000.0);
    f.insert("ingest p99 ms", percentile(&drive.lat_us, 0.99) / 1000.0);
    f.insert("e2e p50 ms", percentile(&got.lat_us, 0.50) / 1000.0);
    f.insert("e2e p99 ms", percentile(&got.lat_us, 0.99) / 1000.0);
    f.insert("e2e max ms", percentile(&got.lat_us, 1.0) / 1000.0);
    f.insert("duplicates", got.dups as f64);
}

/// Drives events of type `ty` (closed loop, or open at `rate`), waits for `per_event` deliveries
/// of each, and reports.
async fn run_traffic(
    k: &Knobs,
    receiver: &Receiver,
    base: Instant,
    ty: &'static str,
    n: u64,
    rate: Option<u64>,
    per_event: u64,
) -> Result<Figures, String> {
    let scratch = Scratch::new();
    relay::write_hooks(&scratch.path("hooks.d"), &receiver.url, k.fan_width)
        .map_err(|e| e.to_string())?;
    let mut f = Figures::new();
    f.insert("load avg", loadavg());
    receiver.reset();
    let env = k.store_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let mut relays = Vec::new();
    for i in 0..k.replicas {
        let name = format!("replica-{i}");
        let mut env = env.clone();
        env.push(("HOOKRELAY_POSTGRES__REPLICA", &name));
        let relay = Relay::start(
            &scratch.path("hooks.d"),
            &scratch.path(&format!("data-{i}")),
            &scratch.path(&format!("relay-{i}.log")),
            &env,
        )
        .await?;
        relays.push(relay);
    }
    let memory = |key: &str| {
        relays
            .iter()
            .map(|r| r.memory_mb(key))
            .fold(f64::NAN, f64::max)
    };
    f.insert("idle RSS MB", memory("VmRSS"));
    let fsyncs = async || {
        let mut n = 0;
        for r in &relays {
            n += r.metric("hookrelay_store_fsyncs_total").await;
        }
        n
    };
    let fsyncs_before = fsyncs().await;
    let cpu = || relays.iter().map(Relay::cpu_secs).sum::<f64>();
    let (cpu_before, since) = (cpu(), Instant::now());
    let switches = || relays.iter().map(Relay::switches).sum::<u64>();
    let switches_before = switches();
    let urls: Vec<&str> = relays.iter().map(|r| r.url.as_str()).collect();
    let target = Target::new(&urls, ty, base, k.c);
    let mut drive = match rate {
        None => driver::closed(&target, n, k.c).await,
        Some(rate) => driver::open(&target, n, rate, 4096).await,
    };
    let complete = receiver
        .wait_for(drive.accepted * per_event, DRAIN_LIMIT)
        .await;
    let (cpu_used, wall) = (cpu() - cpu_before, since.elapsed().as_secs_f64());
    let switched = switches().saturating_sub(switches_before);
    let mut got = receiver.take();
    traffic(&mut f, &mut drive, &mut got);
    f.insert("complete", if complete { 1.0 } else { 0.0 });
    f.insert(
        "relay µs/event",
        cpu_used * 1e6 / drive.accepted.max(1) as f64,
    );
    f.insert("relay cores", cpu_used / wall);
    f.insert(
        "switches/event",
        switched as f64 / drive.accepted.max(1) as f64,
    );
    let fsyncs = fsyncs().await.saturating_sub(fsyncs_before);
    f.insert(
        "fsyncs/1k events",
        fsyncs as f64 * 1000.0 / drive.accepted.max(1) as f64,
    );
    f.insert("peak RSS MB", memory("VmHWM"));
    f.insert(
        "data dir MB",
        mb(dir_size(&scratch.path("data-0")).unwrap_or(0)),
    );
    Ok(f)
}

/// The same traffic as `run_traffic`, sent to Alertmanager (`peer`) or straight to the
/// receiver (`None`: the ceiling of this driver and receiver on this box). `Ok(None)`: no
/// Alertmanager here.
async fn run_peer(
    k: &Knobs,
    receiver: &Receiver,
    base: Instant,
    alertmanager: bool,
    n: u64,
    rate: Option<u64>,
) -> Result<Option<Figures>, String> {
    let scratch = Scratch::new();
    let am = if alertmanager {
        match peer::Alertmanager::start(&scratch.path("alertmanager"), &receiver.url).await? {
            Some(am) => Some(am),
            None => return Ok(None),
        }
    } else {
        None
    };
    let mut f = Figures::new();
    f.insert("load avg", loadavg());
    receiver.reset();
    let (url, shape) = match &am {
        Some(am) => (format!("{}/api/v2/alerts", am.url), Shape::Alert),
        None => (format!("{}/direct", receiver.url), Shape::Direct),
    };
    let target = Target::peer(url, shape, base, k.c);
    let mut drive = match rate {
        None => driver::closed(&target, n, k.c).await,
        Some(rate) => driver::open(&target, n, rate, 4096).await,
    };
    let complete = receiver.wait_for(drive.accepted, DRAIN_LIMIT).await;
    let mut got = receiver.take();
    traffic(&mut f, &mut drive, &mut got);
    f.insert("complete", if complete { 1.0 } else { 0.0 });
    if let Some(am) = &am {
        f.insert("peak RSS MB", am.memory_mb("VmHWM"));
    }
    Ok(Some(f))
}

/// hookrelay's figure over the peer's, for the scenarios measured against each other.
fn print_ratios(results: &[(&str, Vec<Figures>)]) {
    let med = |name: &str, key: &str| {
        let runs = &results.iter().find(|(n, _)| *n == name)?.1;
        let mut vals: Vec<f64> = runs.iter().filter_map(|r| r.get(key).copied()).collect();
        (!vals.is_empty()).then(|| median(&mut vals))
    };
    for (ours, theirs, key) in [
        ("webhook", "alertmanager", "delivered/s"),
        ("webhook", "ceiling", "delivered/s"),
        ("open-loop", "alertmanager-open", "e2e p99 ms"),
    ] {
        if let (Some(a), Some(b)) = (med(ours, key), med(theirs, key)) {
            println!("{ours} / {theirs} {key}: {:.2} ({a:.0} / {b:.0})", a / b);
        }
    }
}

/// Polls `probe` every 200 ms until it holds or `limit` passes; the time it took.
async fn until(limit: Duration, mut probe: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if probe().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// A relay restarted into `k.backlog` pending deliveries while the receiver is up: restart to
/// first delivery, memory and bytes per pending delivery, drain rate, and the data dir after the
/// backlog drains and retention removes it.
async fn run_backlog(k: &Knobs, receiver: &Receiver) -> Result<Figures, String> {
    let engine = Backend::parse(&k.store).ok_or("E2E_STORE is fjall or sled")?;
    let scratch = Scratch::new();
    let data = scratch.path("data");
    relay::write_hooks(&scratch.path("hooks.d"), &receiver.url, 0).map_err(|e| e.to_string())?;
    let mut f = Figures::new();
    f.insert("load avg", loadavg());
    let loading = Instant::now();
    backlog::preload(engine, &data, k.backlog, "sink").await?;
    f.insert("preload s", loading.elapsed().as_secs_f64());
    let pending_bytes = dir_size(&data).unwrap_or(0);
    f.insert("events", k.backlog as f64);
    f.insert("data dir MB", mb(pending_bytes));
    f.insert("bytes/pending", pending_bytes as f64 / k.backlog as f64);
    receiver.reset();
    let restart = Instant::now();
    let env = [("HOOKRELAY_STORE", k.store.as_str())];
    let relay = Relay::start(
        &scratch.path("hooks.d"),
        &data,
        &scratch.path("relay.log"),
        &env,
    )
    .await?;
    if !receiver.wait_for(1, Duration::from_secs(60)).await {
        return Err("no delivery within 60 s of the restart".into());
    }
    f.insert("restart→first ms", restart.elapsed().as_secs_f64() * 1000.0);
    // `/metrics` answers once the due index is whole (its backlog waits for the load).
    relay.metric("hookrelay_deliveries_pending").await;
    f.insert(
        "restart→indexed ms",
        restart.elapsed().as_secs_f64() * 1000.0,
    );
    f.insert("pending RSS MB", relay.memory_mb("VmRSS"));
    let complete = receiver.wait_for(k.backlog, DRAIN_LIMIT).await;
    let got = receiver.take();
    let span = match (got.first, got.last) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => f64::NAN,
    };
    f.insert("complete", if complete { 1.0 } else { 0.0 });
    f.insert("deliveries", got.count as f64);
    f.insert("delivered/s", got.count as f64 / span);
    f.insert("duplicates", got.dups as f64);
    f.insert("peak RSS MB", relay.memory_mb("VmHWM"));
    drop(relay);
    f.insert("dir drained MB", mb(dir_size(&data).unwrap_or(0)));
    // Retention passes: the relay restarts with a short one and removes everything delivered.
    let purging = Instant::now();
    let relay = Relay::start(
        &scratch.path("hooks.d"),
        &data,
        &scratch.path("relay.log2"),
        &[
            env[0],
            ("HOOKRELAY_RETENTION", "1s"),
            ("HOOKRELAY_DEDUP_WINDOW", "1s"),
            ("HOOKRELAY_CONTENT_DEDUP_WINDOW", "1s"),
        ],
    )
    .await?;
    let purged = until(DRAIN_LIMIT, async || {
        relay.metric("hookrelay_events_purged_total").await >= k.backlog
    })
    .await;
    f.insert(
        "purge s",
        purged.map_or(f64::NAN, |_| purging.elapsed().as_secs_f64()),
    );
    // Compaction reclaims space after the purge: wait until the size has not fallen for 10 s.
    let (mut last, mut since) = (u64::MAX, Instant::now());
    let _ = until(Duration::from_secs(180), async || {
        let now = dir_size(&data).unwrap_or(0);
        if now < last {
            (last, since) = (now, Instant::now());
        }
        since.elapsed() >= Duration::from_secs(10)
    })
    .await;
    f.insert("dir purged MB", mb(last));
    Ok(f)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The metrics shown, in order.
const ROWS: &[&str] = &[
    "events",
    "deliveries",
    "accepted/s",
    "delivered/s",
    "ingest p50 ms",
    "ingest p99 ms",
    "e2e p50 ms",
    "e2e p99 ms",
    "e2e max ms",
    "duplicates",
    "refused",
    "complete",
    "fsyncs/1k events",
    "relay µs/event",
    "relay cores",
    "switches/event",
    "idle RSS MB",
    "peak RSS MB",
    "data dir MB",
    "preload s",
    "bytes/pending",
    "restart→first ms",
    "restart→indexed ms",
    "pending RSS MB",
    "dir drained MB",
    "purge s",
    "dir purged MB",
    "load avg",
];

fn print_table(results: &[(&str, Vec<Figures>)]) {
    let medians: Vec<Figures> = results
        .iter()
        .map(|(_, runs)| {
            let mut m = Figures::new();
            for key in ROWS {
                let mut vals: Vec<f64> = runs.iter().filter_map(|r| r.get(key).copied()).collect();
                if !vals.is_empty() {
                    m.insert(key, median(&mut vals));
                }
            }
            m
        })
        .collect();
    print!("{:<18}", "median of runs");
    for (name, runs) in results {
        print!("{:>16}", format!("{name} (×{})", runs.len()));
    }
    println!();
    for key in ROWS {
        if medians.iter().all(|m| !m.contains_key(key)) {
            continue;
        }
        print!("{key:<18}");
        for m in &medians {
            match m.get(key) {
                Some(v) if v.abs() >= 100.0 => print!("{v:>16.0}"),
                Some(v) => print!("{v:>16.2}"),
                None => print!("{:>16}", "-"),
            }
        }
        println!();
    }
}

fn main() {
    let k = Knobs {
        runs: knob("E2E_RUNS", 3),
        n: knob("E2E_N", 100_000),
        c: knob("E2E_C", 32),
        rate: knob("E2E_RATE", 1_000),
        open_secs: knob("E2E_OPEN_SECS", 10),
        fan_events: knob("E2E_FAN_EVENTS", 2_000),
        fan_width: knob("E2E_FAN_WIDTH", 100),
        backlog: knob("E2E_BACKLOG", 1_000_000),
        store: knob("E2E_STORE", "fjall".to_string()),
        replicas: knob("E2E_REPLICAS", 1).max(1),
        postgres: None,
    };
    if k.replicas > 1 && k.store != "postgres" {
        eprintln!(
            "E2E_REPLICAS > 1 needs E2E_STORE=postgres (embedded stores belong to one process)"
        );
        std::process::exit(2);
    }
    let mut k = k;
    let _cluster = if k.store == "postgres" {
        match std::env::var("HOOKRELAY_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => {
                k.postgres = Some(url);
                None
            }
            _ => match Cluster::start() {
                Ok((cluster, url)) => {
                    k.postgres = Some(url);
                    Some(cluster)
                }
                Err(e) => {
                    eprintln!("E2E_STORE=postgres, but no PostgreSQL could be started: {e}");
                    std::process::exit(2);
                }
            },
        }
    } else {
        None
    };
    let k = k;
    let scenarios: String = knob(
        "E2E_SCENARIOS",
        "webhook,open,fanout,backlog,alertmanager,alertmanager-open,ceiling".to_string(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let base = Instant::now();
    let receiver = Receiver::start(base);
    let mut results: Vec<(&str, Vec<Figures>)> = Vec::new();
    for name in scenarios.split(',').map(str::trim) {
        let name: &'static str = match name {
            "webhook" => "webhook",
            "open" => "open-loop",
            "fanout" => "fan-out",
            "backlog" => "backlog",
            "alertmanager" => "alertmanager",
            "alertmanager-open" => "alertmanager-open",
            "ceiling" => "ceiling",
            other => {
                eprintln!("unknown scenario {other:?}");
                std::process::exit(2);
            }
        };
        let mut runs = Vec::new();
        for run in 1..=k.runs {
            let peer = match name {
                "alertmanager" => Some((true, k.n, None)),
                "alertmanager-open" => Some((true, k.rate * k.open_secs, Some(k.rate))),
                "ceiling" => Some((false, k.n, None)),
                _ => None,
            };
            if let Some((am, n, rate)) = peer {
                match runtime.block_on(run_peer(&k, &receiver, base, am, n, rate)) {
                    Ok(Some(f)) => {
                        eprintln!("{name} run {run}: {}", json!(f));
                        runs.push(f);
                    }
                    Ok(None) => {
                        eprintln!(
                            "{name}: skipped, no Alertmanager here (apt install \
                             prometheus-alertmanager, or set E2E_ALERTMANAGER)"
                        );
                        break;
                    }
                    Err(e) => {
                        eprintln!("{name} run {run} failed: {e}");
                        std::process::exit(1);
                    }
                }
                continue;
            }
            let result = runtime.block_on(async {
                match name {
                    "webhook" => {
                        run_traffic(&k, &receiver, base, "bench.event", k.n, None, 1).await
                    }
                    "open-loop" => {
                        let n = k.rate * k.open_secs;
                        run_traffic(&k, &receiver, base, "bench.event", n, Some(k.rate), 1).await
                    }
                    "fan-out" => {
                        let (n, w) = (k.fan_events, k.fan_width as u64);
                        run_traffic(&k, &receiver, base, "bench.fan", n, None, w).await
                    }
                    _ => run_backlog(&k, &receiver).await,
                }
            });
            match result {
                Ok(f) => {
                    eprintln!("{name} run {run}: {}", json!(f));
                    runs.push(f);
                }
                Err(e) => {
                    eprintln!("{name} run {run} failed: {e}");
                    std::process::exit(1);
                }
            }
        }
        if !runs.is_empty() {
            results.push((name, runs));
        }
    }
    print_table(&results);
    print_ratios(&results);
    let machine = json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "load_avg_end": loadavg(),
        "store": k.store,
        "replicas": k.replicas,
    });
    let scenarios: Value = results
        .iter()
        .map(|(name, runs)| (name.to_string(), json!(runs)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    println!(
        "E2E_RESULT {}",
        json!({"machine": machine, "scenarios": scenarios})
    );
}
