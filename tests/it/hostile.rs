//! Hostile input and unlucky operators: credentials in URL paths and secret files never show,
//! `{file: …}` secrets stay inside hooks.d, a panic on a request path is a 500 that leaves the
//! relay working, oversized headers get a JSON 431.

use hookrelay::store::StoreError;
use hookrelay::store::kv::{Kv, Op, Syncer, Visitor};
use hookrelay::store::kv_store::KvStore;
use serde_json::Value;

use crate::support::*;

const TOKEN: &str = "xoxbT0kenInThePath42";

fn doc(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {spec}\n---\n"
    )
}

/// An open Source whose events are `plain.note`.
fn plain_source() -> String {
    doc(
        "Source",
        "plain",
        "{auth: none, event: {type: {value: plain.note}}}",
    )
}

/// A Slack-style webhook whose credential is its path, read from a file; a plain Source.
fn path_credential_hooks(base: &str) -> (Hooks, String) {
    let mut files = plain_source();
    files.push_str(&doc(
        "Channel",
        "slack",
        "{type: webhook, url: {file: secrets/slack-url}}",
    ));
    files.push_str(&doc("Route", "r", "{sources: [plain], channels: [slack]}"));
    let hooks = Hooks::new(&[("10-all.yaml", &files)]);
    std::fs::create_dir_all(hooks.path().join("secrets")).unwrap();
    let url = format!("{base}/services/T0AAA/B0BBB/{TOKEN}");
    hooks.write("secrets/slack-url", &url);
    (hooks, url)
}

#[tokio::test]
async fn a_credential_in_a_url_path_never_shows() {
    // The receiver refuses, echoing the URL it was called on (as gateways do).
    let receiver = FakeServer::with_responder(|r| {
        Reply::json(
            400,
            serde_json::json!({"error": format!("no such hook: {}", r.path)}),
        )
    })
    .await;
    let (hooks, url) = path_credential_hooks(&receiver.base);
    let data = data_dir();
    let relay = TestRelay::start(settings(hooks.path(), data.path())).await;
    let catalog = relay.admin_get("/admin/catalog").await;
    assert_eq!(
        catalog["report"]["errors"],
        serde_json::json!([]),
        "{catalog:#}"
    );
    let shown = catalog.to_string();
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(
        shown.contains(&format!("{}/***", receiver.base)),
        "shown as scheme and host: {shown}"
    );

    let (status, answer) = relay.post("plain", &[], r#"{"note":"x"}"#).await;
    assert_eq!(status, 202, "{answer}");
    let event = answer["event"].as_str().unwrap().to_string();
    let got = receiver.wait_for(1).await;
    assert!(got[0].path.ends_with(TOKEN), "sent to the real URL");
    let ev = relay.admin_get(&format!("/admin/events/{event}")).await;
    let id = ev["deliveries"][0]["id"].as_str().unwrap().to_string();
    let dead = relay.wait_delivery_state(&id, "dead").await;
    let letters = relay.admin_get("/admin/dead-letters").await;
    for (what, text) in [
        ("delivery", dead.to_string()),
        ("dead letters", letters.to_string()),
        ("event", ev.to_string()),
        ("logs", logs()),
    ] {
        assert!(!text.contains(TOKEN), "{what} shows the credential: {text}");
    }
    assert!(dead.to_string().contains("HTTP 400"), "{dead}");

    // `hookrelay render` and `check` show no more than the admin API.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["render", "--hooks"])
        .arg(hooks.path())
        .args(["--source", "plain", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(br#"{"note":"x"}"#)?;
            c.wait_with_output()
        })
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("POST"), "{printed}");
    assert!(
        !printed.contains(TOKEN) && !printed.contains(&url),
        "{printed}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn file_secrets_outside_hooks_d_are_refused_and_never_echoed() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("shadow"), "root:$6$SHADOWHASH:19000\n").unwrap();
    let escape = format!("{}/shadow", outside.path().display());
    let mut files = plain_source();
    files.push_str(&doc(
        "Channel",
        "up",
        "{type: webhook, url: {file: ../../../../../../../etc/passwd}}",
    ));
    files.push_str(&doc(
        "Channel",
        "abs",
        &format!("{{type: webhook, url: {{file: {escape}}}}}"),
    ));
    // Inside hooks.d, but not a URL: the error must not quote the file's content.
    files.push_str(&doc(
        "Channel",
        "notaurl",
        "{type: webhook, url: {file: secrets/not-a-url}}",
    ));
    let hooks = Hooks::new(&[("10-all.yaml", &files)]);
    std::fs::create_dir_all(hooks.path().join("secrets")).unwrap();
    hooks.write("secrets/not-a-url", "hunter2-not-a-url-SECRET");
    let data = data_dir();
    let relay = TestRelay::start(settings(hooks.path(), data.path())).await;
    let catalog = relay.admin_get("/admin/catalog").await;
    let errors: Vec<Value> = catalog["report"]["errors"].as_array().unwrap().clone();
    let text = serde_json::to_string(&errors).unwrap();
    assert!(text.contains("outside hooks.d"), "{text}");
    for leaked in ["SHADOWHASH", "root:", "hunter2", "SECRET"] {
        assert!(!text.contains(leaked), "{leaked} leaked: {text}");
    }
    assert!(
        errors.iter().any(|e| e.to_string().contains("notaurl")),
        "{text}"
    );
    // The operator may allow a directory explicitly.
    let mut s = settings(hooks.path(), data_dir().path());
    s.secret_dirs = vec![outside.path().to_path_buf()];
    relay.stop().await;
    let http = hookrelay::channel::http::client();
    let allowed =
        hookrelay::catalog::Loader::new(hooks.path(), std::sync::Arc::new(s), http).load(true);
    let allowed_errors = serde_json::to_string(&allowed.report.errors).unwrap();
    assert_eq!(text.matches("outside hooks.d").count(), 2, "{text}");
    assert_eq!(
        allowed_errors.matches("outside hooks.d").count(),
        1,
        "only ../etc/passwd is still outside: {allowed_errors}"
    );
    assert!(!allowed_errors.contains("SHADOWHASH"), "{allowed_errors}");
}

/// fjall that panics on a write carrying a marked value, as an engine bug would — inside the
/// store's ingest lock.
struct Panicky(hookrelay::store::fjall::FjallKv);

const BOOM: &[u8] = b"PANIC-IN-THE-ENGINE";

impl Kv for Panicky {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key)
    }

    fn scan(&self, from: &[u8], to: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        self.0.scan(from, to, visit)
    }

    fn scan_rev(&self, from: &[u8], to: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        self.0.scan_rev(from, to, visit)
    }

    fn write(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let marked = ops.iter().any(|op| match op {
            Op::Put(_, v) => v.windows(BOOM.len()).any(|w| w == BOOM),
            Op::Delete(_) => false,
        });
        assert!(!marked, "injected: the engine panics on this write");
        self.0.write(ops)
    }

    fn syncer(&self) -> Result<Syncer, StoreError> {
        self.0.syncer()
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.0.size_on_disk()
    }

    fn compact(&self) -> Result<(), StoreError> {
        self.0.compact()
    }
}

#[tokio::test]
async fn a_panic_while_answering_is_a_500_and_ingest_keeps_working() {
    let receiver = FakeServer::start().await;
    let mut files = plain_source();
    files.push_str(&doc(
        "Channel",
        "hook",
        &format!("{{type: webhook, url: \"{}/in\"}}", receiver.base),
    ));
    files.push_str(&doc("Route", "r", "{sources: [plain], channels: [hook]}"));
    let hooks = Hooks::new(&[("10-all.yaml", &files)]);
    let data = data_dir();
    let path = data.path().to_path_buf();
    let store = std::sync::Arc::new(
        KvStore::new(move || Ok(Panicky(hookrelay::store::fjall::open_kv(&path, 8 << 20)?)))
            .unwrap(),
    );
    let relay = TestRelay::serve(hookrelay::Relay::with_store(
        settings(hooks.path(), data.path()),
        store,
    ))
    .await;
    let marked = format!(r#"{{"note":"{}"}}"#, String::from_utf8_lossy(BOOM));
    let (status, answer) = relay.post("plain", &[], &marked).await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["error"], "internal", "{answer}");
    assert!(
        logs()
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("injected: the engine panics")),
        "the panic is logged"
    );
    // The same relay, its store and its ingest lock, all still work.
    for i in 0..3 {
        let (status, answer) = relay
            .post("plain", &[], &format!(r#"{{"note":"ok {i}"}}"#))
            .await;
        assert_eq!(status, 202, "{answer}");
    }
    relay.wait_ready(200).await;
    assert_eq!(receiver.wait_for(3).await.len(), 3);
    assert_eq!(
        relay.store.counts().await.unwrap().events,
        3,
        "nothing of the panicked request"
    );
    relay.stop().await;
}

/// Sends raw bytes and returns what came back before the connection closed (or reset).
async fn raw(base: &str, request: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(&request).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn oversized_or_malformed_request_heads_get_a_json_answer() {
    let files = plain_source();
    let (_h, _d, relay) = start_clean(&[("10-all.yaml", &files)], |_| {}).await;
    let head = |extra: Vec<u8>| {
        let mut r = b"POST /hooks/plain HTTP/1.1\r\nHost: x\r\n".to_vec();
        r.extend(extra);
        r.extend_from_slice(b"Content-Length: 2\r\n\r\n{}");
        r
    };
    let many: Vec<u8> = (0..500)
        .flat_map(|i| format!("X-H{i}: v\r\n").into_bytes())
        .collect();
    let mut big = b"X-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 200_000));
    big.extend_from_slice(b"\r\n");
    for (what, request, status, error) in [
        ("500 headers", head(many), "431", "headers_too_large"),
        ("a 200 KB header", head(big), "431", "headers_too_large"),
        (
            "a malformed header",
            head(b"No colon here\r\n".to_vec()),
            "400",
            "malformed_request",
        ),
    ] {
        let answer = raw(&relay.base, request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {answer}"
        );
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
        let json: Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {answer}"));
        assert_eq!(json["error"], error, "{what}");
    }
    assert_eq!(relay.store.counts().await.unwrap().events, 0);
    let (status, _) = relay.post("plain", &[], r#"{"n":1}"#).await;
    assert_eq!(status, 202, "the relay still serves");
    relay.stop().await;
}
