//! Test support: the real relay on port 0 with temp dirs, and fake HTTP servers that record what
//! they receive and answer as scripted.

use std::collections::{BTreeMap, VecDeque};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hookrelay::config::Settings;
use hookrelay::retry::RetryPolicy;
use hookrelay::store::Store;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

/// The admin token every test relay uses.
pub const ADMIN: &str = "test-admin-token";

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// Longer than any wait a test makes on purpose: past it, a request or a shutdown is stuck.
const STUCK: Duration = Duration::from_secs(60);

/// A hooks.d directory written from (file name, contents) pairs.
pub struct Hooks {
    pub dir: tempfile::TempDir,
}

impl Hooks {
    pub fn new(files: &[(&str, &str)]) -> Hooks {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(path, text).unwrap();
        }
        Hooks { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }
}

/// The Source most tests post to: `/hooks/app`, no auth, type `app.<kind>`, id from `/id`.
pub const APP_SOURCE: &str = r#"apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {name: app}
spec:
  auth: none
  event:
    type: [{pointer: /kind, prefix: "app."}]
    id: [{pointer: /id}]
"#;

/// What `hookrelay render --hooks <hooks> <body>` prints (it must succeed).
pub fn render_cli(hooks: &Path, body: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("e.json");
    std::fs::write(&event, body).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["render", "--hooks"])
        .arg(hooks)
        .arg(&event)
        .env("HOOKRELAY_LOG_LEVEL", "error")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text
}

/// A relay on `files` (settings changed by `tune`) whose catalog loaded without an error.
pub async fn start_clean(
    files: &[(&str, &str)],
    tune: impl FnOnce(&mut Settings),
) -> (Hooks, tempfile::TempDir, TestRelay) {
    let h = Hooks::new(files);
    let data = data_dir();
    let mut s = settings(h.path(), data.path());
    tune(&mut s);
    let relay = TestRelay::start(s).await;
    let report = relay.admin_get("/admin/catalog").await;
    assert_eq!(
        report["report"]["errors"],
        serde_json::json!([]),
        "{report:#}"
    );
    (h, data, relay)
}

/// Settings for tests: loopback, temp dirs, fast retries, admin enabled, no file polling.
pub fn settings(hooks: &Path, data: &Path) -> Settings {
    let mut s = Settings::defaults();
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.hooks_dir = hooks.to_path_buf();
    s.data_dir = data.to_path_buf();
    s.http_workers = 1;
    s.workers = 8;
    s.reload_interval = Duration::ZERO;
    s.shutdown_grace = Duration::from_secs(2);
    s.admin_token = Some(hookrelay::secret::Secret::new(ADMIN));
    s.retry = RetryPolicy {
        schedule: vec![
            Duration::ZERO,
            Duration::from_millis(50),
            Duration::from_millis(100),
        ],
        max_age: Duration::from_secs(3600),
        max_attempts: None,
        jitter: 0.0,
        max_retry_after: Duration::from_secs(1),
    };
    s
}

/// Everything the relays of this test binary logged (debug and up).
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the relay's logs for [`logs`] (once per test binary).
fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("hookrelay=debug")
            .with_writer(|| LogSink)
            .with_ansi(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// What has been logged so far.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

/// A relay running in this process.
pub struct TestRelay {
    pub base: String,
    pub store: Arc<dyn Store>,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestRelay {
    pub async fn start(settings: Settings) -> TestRelay {
        TestRelay::serve(hookrelay::Relay::open(settings).await.expect("relay opens")).await
    }

    /// Serves an opened relay.
    pub async fn serve(relay: hookrelay::Relay) -> TestRelay {
        capture_logs();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let store = relay.store();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(relay.serve(listener, async {
            let _ = rx.await;
        }));
        TestRelay {
            base,
            store,
            // Bounded, so a request the relay never answers fails its test with its place
            // instead of hanging the run.
            client: reqwest::Client::builder()
                .timeout(STUCK)
                .build()
                .expect("test client"),
            stop: Some(tx),
            task,
        }
    }

    /// Stops the relay and waits until it has released the data dir.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let TestRelay {
            task,
            store,
            client,
            ..
        } = self;
        // Idle keep-alive connections would hold the graceful shutdown until its timeout.
        drop(client);
        drop(store);
        tokio::time::timeout(STUCK, task)
            .await
            .expect("the relay stops")
            .unwrap()
            .unwrap();
    }

    /// POSTs `body` to `/hooks/{source}` with `headers`.
    pub async fn post(&self, source: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/hooks/{source}", self.base))
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ids = resp
            .headers()
            .get("x-hookrelay-event")
            .map(|v| v.to_str().unwrap().to_string());
        let duplicate = resp.headers().get("x-hookrelay-status").is_some();
        let bytes = resp.bytes().await.unwrap();
        let Some(ids) = ids.filter(|_| (200..300).contains(&status)) else {
            return (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            );
        };
        // A CloudEvents answer: Knative retries any 2xx whose body is not a CloudEvent.
        assert!(bytes.is_empty(), "a CloudEvents 2xx has no body: {bytes:?}");
        let batch = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("content-type") && v.contains("cloudevents-batch")
        });
        let mut answers = Vec::new();
        for id in ids.split(',') {
            let stored = self.admin_get(&format!("/admin/events/{id}")).await;
            let status = if duplicate { "duplicate" } else { "accepted" };
            answers.push(serde_json::json!({
                "status": status, "event": id, "id": stored["event"]["id"],
                "deliveries": stored["deliveries"].as_array().map_or(0, Vec::len),
            }));
        }
        if batch {
            return (status, serde_json::json!({ "events": answers }));
        }
        (status, answers.remove(0))
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let resp = self.client.get(format!("{}/metrics", self.base)).send();
        resp.await.unwrap().text().await.unwrap()
    }

    /// GETs an admin path with the admin token.
    pub async fn admin_get(&self, path: &str) -> Value {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    /// POSTs to an admin path with the admin token.
    pub async fn admin_post(&self, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    /// Waits until `/readyz` answers `status`, and returns its body.
    pub async fn wait_ready(&self, status: u16) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let resp = self
                .client
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .unwrap();
            let got = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if got == status {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/readyz never answered {status}: {got} {body}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the delivery reaches `state` ("delivered", "dead", "pending").
    pub async fn wait_delivery_state(&self, id: &str, state: &str) -> Value {
        let parsed = hookrelay::ids::DeliveryId::parse(id).expect("delivery id");
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let d = self
                .store
                .delivery(&parsed)
                .await
                .unwrap()
                .expect("delivery exists");
            let now = serde_json::to_value(&d).unwrap();
            if now["state"] == state {
                return self.admin_get(&format!("/admin/deliveries/{id}")).await;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "delivery {id} never became {state}: {now}"
            );
            // The store has no change feed; a short poll of the real state is the honest wait.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One request a fake server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What a fake server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            body: String::new(),
            headers: Vec::new(),
        }
    }

    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: body.to_string(),
            headers: vec![("content-type".into(), "application/json".into())],
        }
    }
}

type Responder = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

struct FakeState {
    requests: Mutex<Vec<Recorded>>,
    script: Mutex<VecDeque<Reply>>,
    responder: Mutex<Responder>,
    count: watch::Sender<usize>,
}

/// A fake HTTP server: records every request; answers from a script, then from a responder.
pub struct FakeServer {
    pub base: String,
    state: Arc<FakeState>,
}

impl FakeServer {
    /// Answers 200 to everything until told otherwise.
    pub async fn start() -> FakeServer {
        FakeServer::with_responder(|_| Reply::status(200)).await
    }

    pub async fn with_responder(
        f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> FakeServer {
        let (count, _) = watch::channel(0);
        let state = Arc::new(FakeState {
            requests: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            responder: Mutex::new(Arc::new(f)),
            count,
        });
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(record))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        tokio::spawn(server.run());
        FakeServer {
            base: format!("http://{addr}"),
            state,
        }
    }

    /// The next answers, in order, before the responder takes over again.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    pub fn set_responder(&self, f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) {
        *self.state.responder.lock().unwrap() = Arc::new(f);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests have arrived, and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Recorded> {
        let mut rx = self.state.count.subscribe();
        let got = tokio::time::timeout(DEADLINE, rx.wait_for(|c| *c >= n)).await;
        assert!(
            got.is_ok(),
            "expected {n} requests, got {:#?}",
            self.requests()
        );
        self.requests()
    }
}

async fn record(req: HttpRequest, body: web::Bytes, state: web::Data<FakeState>) -> HttpResponse {
    let recorded = Recorded {
        method: req.method().to_string(),
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.to_vec(),
    };
    let scripted = state.script.lock().unwrap().pop_front();
    let reply = scripted.unwrap_or_else(|| {
        let responder = state.responder.lock().unwrap().clone();
        responder(&recorded)
    });
    state.requests.lock().unwrap().push(recorded);
    state.count.send_modify(|c| *c += 1);
    let mut r = HttpResponse::build(actix_web::http::StatusCode::from_u16(reply.status).unwrap());
    for (k, v) in &reply.headers {
        r.insert_header((k.as_str(), v.as_str()));
    }
    r.body(reply.body)
}

/// A temp data dir that outlives relay restarts within a test.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
