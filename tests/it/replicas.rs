//! The relay on PostgreSQL: two relay processes on one database (events spread over both, one
//! SIGKILLed under load, every acknowledged event delivered by the survivor), and a stalled
//! outcome write that does not hold its destination. Skipped (saying so) when
//! `HOOKRELAY_TEST_POSTGRES_URL` is not set.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{APP_SOURCE, DEADLINE, FakeServer, Hooks, TestRelay, data_dir, settings};

const URL_VAR: &str = "HOOKRELAY_TEST_POSTGRES_URL";
/// Events posted in all; replica a is killed halfway.
const EVENTS: usize = 400;
/// Workers per replica: what a killed replica can have in flight bounds the duplicates.
const WORKERS: usize = 8;

/// The app source, its template and one webhook channel of cap `cap` to `receiver`.
fn hooks(receiver: &str, cap: usize) -> Hooks {
    Hooks::new(&[(
        "10-all.yaml",
        &format!(
            r#"
{APP_SOURCE}---
apiVersion: hookrelay.dev/v1alpha1
kind: Template
metadata: {{name: app}}
spec:
  types: ["app.*"]
  text: "<{{{{data.id}}}}>"
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: receiver}}
spec:
  type: webhook
  url: "{receiver}/in"
  maxInFlight: {cap}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Route
metadata: {{name: app}}
spec:
  sources: [app]
  channels: [receiver]
"#
        ),
    )])
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A relay process, replica `name`, on `schema`.
fn spawn(name: &str, schema: &str, hooks: &Path, dir: &Path) -> (Child, String) {
    let port = free_port();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOOKRELAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("HOOKRELAY_HOOKS_DIR", hooks)
        .env("HOOKRELAY_DATA_DIR", dir.join(name))
        .env("HOOKRELAY_STORE", "postgres")
        .env("HOOKRELAY_POSTGRES__URL", std::env::var(URL_VAR).unwrap())
        .env("HOOKRELAY_POSTGRES__SCHEMA", schema)
        .env("HOOKRELAY_POSTGRES__REPLICA", name)
        .env("HOOKRELAY_POSTGRES__LEASE", "2s")
        .env("HOOKRELAY_WORKERS", WORKERS.to_string())
        .env("HOOKRELAY_LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the relay binary starts");
    (child, format!("http://127.0.0.1:{port}"))
}

async fn wait_ready(http: &reqwest::Client, base: &str, dir: &Path) {
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} never became ready: {}", logs(dir));
}

fn logs(dir: &Path) -> String {
    ["a", "b"]
        .iter()
        .map(|n| std::fs::read_to_string(dir.join(format!("{n}.log"))).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n----\n")
}

/// How often the receiver got each event.
fn delivered(receiver: &FakeServer) -> BTreeMap<usize, usize> {
    let mut counts = BTreeMap::new();
    for r in receiver.requests() {
        let text = String::from_utf8_lossy(&r.body).into_owned();
        if let Some(n) = text
            .split("<e")
            .nth(1)
            .and_then(|t| t.split('>').next())
            .and_then(|n| n.parse().ok())
        {
            *counts.entry(n).or_default() += 1;
        }
    }
    counts
}

/// A fresh schema name for one test.
fn fresh_schema() -> String {
    format!("it{}_{:08x}", std::process::id(), rand::random::<u32>())
}

/// Posts event `i` to `base`; whether it was acknowledged.
async fn post(http: &reqwest::Client, base: &str, i: usize) -> bool {
    let body = format!(r#"{{"kind":"push","id":"e{i}"}}"#);
    match http
        .post(format!("{base}/hooks/app"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_replica_killed_under_load_loses_nothing_it_acknowledged() {
    if std::env::var(URL_VAR).is_err() {
        eprintln!("skipped: {URL_VAR} is not set (see README: PostgreSQL tests)");
        return;
    }
    // A receiver slow to answer (one at a time), so the killed replica has deliveries in
    // flight and more waiting when it dies.
    let receiver = FakeServer::with_responder(|_| {
        std::thread::sleep(Duration::from_millis(10));
        crate::support::Reply::status(200)
    })
    .await;
    let h = hooks(&receiver.base, 8);
    let dir = tempfile::tempdir().unwrap();
    let schema = fresh_schema();
    let (mut a, base_a) = spawn("a", &schema, h.path(), dir.path());
    let (mut b, base_b) = spawn("b", &schema, h.path(), dir.path());
    let http = reqwest::Client::new();
    wait_ready(&http, &base_a, dir.path()).await;
    wait_ready(&http, &base_b, dir.path()).await;

    let mut acked = Vec::new();
    let mut killed = false;
    for i in 0..EVENTS {
        if i == EVENTS / 2 {
            a.kill().expect("SIGKILL replica a");
            let _ = a.wait();
            killed = true;
            let seen = delivered(&receiver);
            let orphaned = acked
                .iter()
                .filter(|i| *i % 2 == 0 && !seen.contains_key(i))
                .count();
            eprintln!("replica a killed with {orphaned} of its events undelivered");
            assert!(orphaned > 0, "the kill must leave a's events to b");
        }
        // Alternate while both live; after the kill only b answers.
        let base = if i % 2 == 0 && !killed {
            &base_a
        } else {
            &base_b
        };
        if post(&http, base, i).await {
            acked.push(i);
        }
    }
    assert!(
        acked.len() >= EVENTS - 1,
        "both replicas took events: {}",
        acked.len()
    );

    // Every acknowledged event reaches the receiver, the killed replica's through b once its
    // leases lapse.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let counts = delivered(&receiver);
        if acked.iter().all(|i| counts.contains_key(i)) {
            break counts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acknowledged but never delivered: {:?}\n{}",
            acked
                .iter()
                .filter(|i| !counts.contains_key(i))
                .collect::<Vec<_>>(),
            logs(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    eprintln!(
        "{} acknowledged, all delivered; {duplicates} delivered twice",
        acked.len()
    );
    assert!(
        duplicates <= WORKERS,
        "{duplicates} duplicates: more than replica a could have had in flight"
    );
    let _ = b.kill();
    let _ = b.wait();
}

#[tokio::test]
async fn a_stalled_outcome_write_does_not_hold_the_destinations_slot() {
    if std::env::var(URL_VAR).is_err() {
        eprintln!("skipped: {URL_VAR} is not set (see README: PostgreSQL tests)");
        return;
    }
    let receiver = FakeServer::start().await;
    let h = hooks(&receiver.base, 1);
    let schema = fresh_schema();
    let url = std::env::var(URL_VAR).unwrap();
    let store = hookrelay::store::postgres::open(&hookrelay::store::postgres::PgSettings {
        url: hookrelay::secret::Secret::new(url.clone()),
        pool_size: 8,
        statement_timeout: Duration::from_secs(30),
        lease: Duration::from_secs(30),
        replica: "solo".into(),
        schema: schema.clone(),
        ca_file: None,
    })
    .await
    .expect("PostgreSQL store opens");
    let data = data_dir();
    let relay = TestRelay::serve(hookrelay::Relay::with_store(
        settings(h.path(), data.path()),
        std::sync::Arc::new(store),
    ))
    .await;
    // Another session holds the attempts table: no outcome can be written until it lets go.
    let (mut db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let lock = db.transaction().await.unwrap();
    lock.batch_execute(&format!(
        "SET LOCAL search_path = {schema}; LOCK TABLE attempts IN EXCLUSIVE MODE"
    ))
    .await
    .unwrap();
    let http = reqwest::Client::new();
    for i in 0..4 {
        assert!(post(&http, &relay.base, i).await, "event {i} acknowledged");
    }
    // One at a time (maxInFlight 1), each sent while the outcomes before it wait to be written.
    receiver.wait_for(4).await;
    let counts = relay.store.counts().await.unwrap();
    assert_eq!(counts.pending, 4, "no outcome written yet: {counts:?}");
    lock.rollback().await.unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while relay.store.counts().await.unwrap().pending > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "outcomes recorded once the lock is gone"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(relay.store.counts().await.unwrap().dead, 0);
    assert_eq!(
        delivered(&receiver).values().sum::<usize>(),
        4,
        "each sent once"
    );
    relay.stop().await;
}
