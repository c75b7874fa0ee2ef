//! The spine end to end: hooks.d → authenticated ingress → durable queue → retried webhook.

use serde_json::{Value, json};

use crate::support::*;

const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// A Source `app` (token auth), a signed webhook Channel to `receiver`, a Route, a Template.
pub fn hooks(receiver: &str) -> Hooks {
    Hooks::new(&[
        ("secrets/token", "s3cret-token\n"),
        ("secrets/whsec", WHSEC),
        (
            "10-app.yaml",
            r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {name: app}
spec:
  auth:
    token: {header: X-App-Token, secret: {file: secrets/token}}
  event:
    type: [{pointer: /kind, prefix: "app."}]
    id: [{header: X-Event-Id}, {pointer: /id}]
---
apiVersion: hookrelay.dev/v1alpha1
kind: Template
metadata: {name: app}
spec:
  types: ["app.*"]
  msgtype: markdown
  title: "{{type}}"
  text: "**{{data.title}}** by {{data.user}}"
---
apiVersion: hookrelay.dev/v1alpha1
kind: Route
metadata: {name: app}
spec:
  sources: [app]
  channels: [receiver]
  to: {users: [alice, bob]}
"#,
        ),
        (
            "20-channel.yaml",
            &format!(
                r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: receiver}}
spec:
  type: webhook
  url: "{receiver}/in"
  signing: {{secret: {{file: secrets/whsec}}}}
  headers: {{X-Extra: extra-value}}
"#
            ),
        ),
    ])
}

pub const TOKEN: (&str, &str) = ("X-App-Token", "s3cret-token");

async fn setup() -> (FakeServer, Hooks, tempfile::TempDir, TestRelay) {
    let receiver = FakeServer::start().await;
    let h = hooks(&receiver.base);
    let data = data_dir();
    let relay = TestRelay::start(settings(h.path(), data.path())).await;
    (receiver, h, data, relay)
}

async fn delivery_id(event: &Value, relay: &TestRelay) -> String {
    let id = hookrelay::ids::EventId::parse(event["event"].as_str().unwrap()).unwrap();
    relay.store.deliveries_of(&id).await.unwrap()[0]
        .id
        .to_string()
}

#[tokio::test]
async fn accepted_event_reaches_the_receiver_signed() {
    let (receiver, _h, _data, relay) = setup().await;
    let (status, body) = relay
        .post(
            "app",
            &[TOKEN, ("X-Event-Id", "e-1")],
            r#"{"kind":"push","title":"Fix","user":"ann"}"#,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["id"], "e-1");
    assert_eq!(body["deliveries"], 1);
    assert!(body["event"].as_str().unwrap().starts_with("evt_"));

    let got = receiver.wait_for(1).await;
    let r = &got[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.query.as_str()),
        ("POST", "/in", "")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-extra"), Some("extra-value"));
    let msg = r.json();
    assert_eq!(msg["touser"], "alice|bob");
    assert_eq!(msg["msgtype"], "markdown");
    assert_eq!(msg["text"]["content"], "**Fix** by ann");
    assert_eq!(msg["title"], "app.push");

    // Standard Webhooks: verify exactly as a receiver would, with the shared secret.
    let key = hookrelay::signature::decode_whsec(WHSEC).unwrap();
    let ts: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
    hookrelay::signature::standard_webhooks_verify(
        &key,
        r.header("webhook-id"),
        r.header("webhook-timestamp"),
        r.header("webhook-signature"),
        &r.body,
        ts,
        300,
    )
    .expect("signature verifies");
    assert_eq!(
        r.header("webhook-id").unwrap(),
        delivery_id(&body, &relay).await
    );
    relay.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried_until_delivered() {
    let (receiver, _h, _data, relay) = setup().await;
    receiver.script([Reply::status(500), Reply::status(503)]);
    let (status, body) = relay
        .post("app", &[TOKEN], r#"{"kind":"push","title":"t","user":"u"}"#)
        .await;
    assert_eq!(status, 202);
    let got = receiver.wait_for(3).await;
    let id = delivery_id(&body, &relay).await;
    let d = relay.wait_delivery_state(&id, "delivered").await;
    assert_eq!(d["attempts"], 3);
    let log = d["attempt_log"].as_array().unwrap();
    let results: Vec<&str> = log.iter().map(|a| a["result"].as_str().unwrap()).collect();
    assert_eq!(results, ["retryable", "retryable", "delivered"]);
    assert_eq!(log[0]["error"]["status"], 500);
    assert_eq!(log[0]["error"]["reason"], "server");
    // The receiver's idempotency key is the same on every attempt.
    let ids: Vec<&str> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert!(ids.iter().all(|i| *i == id), "{ids:?}");
    relay.stop().await;
}

#[tokio::test]
async fn client_errors_become_dead_letters_that_can_be_replayed() {
    let (receiver, _h, _data, relay) = setup().await;
    receiver.script([Reply::json(400, json!({"error": "bad"}))]);
    let (_, body) = relay
        .post("app", &[TOKEN], r#"{"kind":"push","title":"t","user":"u"}"#)
        .await;
    let id = delivery_id(&body, &relay).await;
    let d = relay.wait_delivery_state(&id, "dead").await;
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["last_error"]["reason"], "client");
    assert_eq!(receiver.requests().len(), 1);
    let dead = relay.admin_get("/admin/dead-letters").await;
    assert_eq!(dead["dead_letters"][0]["id"], id.as_str());

    let (code, _) = relay
        .admin_post(&format!("/admin/deliveries/{id}/replay"))
        .await;
    assert_eq!(code, 202);
    relay.wait_delivery_state(&id, "delivered").await;
    assert_eq!(receiver.requests().len(), 2);
    let (code, _) = relay
        .admin_post(&format!("/admin/deliveries/{id}/replay"))
        .await;
    assert_eq!(code, 409, "only dead letters replay");
    relay.stop().await;
}

#[tokio::test]
async fn pending_deliveries_survive_a_restart() {
    let receiver = FakeServer::start().await;
    receiver.set_responder(|_| Reply::status(503));
    let h = hooks(&receiver.base);
    let data = data_dir();
    let relay = TestRelay::start(settings(h.path(), data.path())).await;
    let (status, body) = relay
        .post("app", &[TOKEN], r#"{"kind":"push","title":"t","user":"u"}"#)
        .await;
    assert_eq!(status, 202);
    let event = body["event"].as_str().unwrap().to_string();
    receiver.wait_for(1).await;
    relay.stop().await;

    // A new process on the same data dir finishes the job.
    receiver.set_responder(|_| Reply::status(200));
    let relay = TestRelay::start(settings(h.path(), data.path())).await;
    let id = hookrelay::ids::EventId::parse(&event).unwrap();
    let d = relay.store.deliveries_of(&id).await.unwrap();
    assert_eq!(d.len(), 1);
    relay
        .wait_delivery_state(&d[0].id.to_string(), "delivered")
        .await;
    let last = receiver.requests().last().cloned().unwrap();
    assert_eq!(last.header("webhook-id").unwrap(), d[0].id.to_string());
    relay.stop().await;
}

#[path = "../../benches/common/sample.rs"]
mod sample;

#[tokio::test]
async fn a_restart_into_a_backlog_of_several_read_chunks_delivers_each_once() {
    // More than the store reads before it opens (4,096 due keys): the rest is read from a
    // snapshot while the relay already sends.
    const N: u64 = 5_000;
    let receiver = FakeServer::start().await;
    let h = hooks(&receiver.base);
    let data = data_dir();
    let store =
        hookrelay::store::open(hookrelay::store::Backend::Fjall, data.path(), 8 << 20).unwrap();
    let events = (1..=N)
        .map(|n| sample::new_event(n, "app", "receiver", hookrelay::ids::now_ms()))
        .collect();
    store.enqueue(events).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let relay = TestRelay::start(settings(h.path(), data.path())).await;
    let got = receiver.wait_for(N as usize).await;
    let ids: std::collections::HashSet<_> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), N as usize, "each delivery");
    assert_eq!(got.len(), N as usize, "once");
    relay.stop().await;
}

#[tokio::test]
async fn rejected_requests_store_nothing() {
    let (receiver, _h, _data, relay) = setup().await;
    let wrong = ("X-App-Token", "wrong");
    let cases = [
        ("nope", &[TOKEN][..], "{}", 404, "unknown_source"),
        ("app", &[][..], r#"{"kind":"x"}"#, 401, "unauthorized"),
        ("app", &[wrong][..], r#"{"kind":"x"}"#, 401, "unauthorized"),
        ("app", &[TOKEN][..], "{not json", 400, "bad_request"),
        ("app", &[TOKEN][..], "", 400, "bad_request"),
    ];
    for (source, headers, body, code, error) in cases {
        let (status, json) = relay.post(source, headers, body).await;
        assert_eq!(status, code, "{source} {headers:?}: {json}");
        assert_eq!(json["error"], error);
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(
            !json.to_string().contains("s3cret-token"),
            "secret leaked: {json}"
        );
    }
    let get = relay
        .client
        .get(format!("{}/hooks/app", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(
        get.json::<Value>().await.unwrap()["error"],
        "method_not_allowed"
    );
    // Over the limit, declared up front and (no Content-Length) found while reading.
    for chunked in [false, true] {
        let (status, body) =
            raw_post(&relay.base, "/hooks/app", TOKEN, 3 * 1024 * 1024, chunked).await;
        assert_eq!(status, 413, "chunked={chunked}");
        assert!(body.contains("payload_too_large"), "{body}");
    }

    let counts = relay.store.counts().await.unwrap();
    assert_eq!(
        counts,
        hookrelay::store::Counts::default(),
        "something was stored"
    );
    assert!(receiver.requests().is_empty());
    relay.stop().await;
}

/// POSTs `n` bytes over a raw connection (chunked or with Content-Length) and returns the
/// status code and the response text. Writing stops early if the relay answers and closes,
/// which it may do as soon as it knows the body is too large.
async fn raw_post(
    base: &str,
    path: &str,
    header: (&str, &str),
    n: usize,
    chunked: bool,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {n}")
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{}: {}\r\n{framing}\r\nConnection: close\r\n\r\n",
        header.0, header.1
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'a'; 65536];
    for _ in 0..n / chunk.len() {
        let framed = if chunked {
            [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat()
        } else {
            chunk.clone()
        };
        if s.write_all(&framed).await.is_err() {
            break;
        }
    }
    if chunked {
        let _ = s.write_all(b"0\r\n\r\n").await;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .expect("a status line")
        .parse()
        .unwrap();
    (status, text)
}

#[tokio::test]
async fn duplicates_are_acknowledged_but_not_delivered_twice() {
    let (receiver, _h, _data, relay) = setup().await;
    let body = r#"{"kind":"push","title":"t","user":"u","id":"same-1"}"#;
    let (s1, first) = relay.post("app", &[TOKEN], body).await;
    let (s2, second) = relay.post("app", &[TOKEN], body).await;
    assert_eq!((s1, s2), (202, 200));
    assert_eq!(second["status"], "duplicate");
    assert_eq!(second["event"], first["event"]);
    // Same id through a header this time: still the same event.
    let (s3, _) = relay
        .post(
            "app",
            &[TOKEN, ("X-Event-Id", "same-1")],
            r#"{"kind":"other"}"#,
        )
        .await;
    assert_eq!(s3, 200);
    let counts = relay.store.counts().await.unwrap();
    assert_eq!((counts.events, counts.deliveries), (1, 1));
    receiver.wait_for(1).await;
    let (s4, _) = relay
        .post(
            "app",
            &[TOKEN],
            r#"{"kind":"push","title":"t","user":"u","id":"next"}"#,
        )
        .await;
    assert_eq!(s4, 202);
    let got = receiver.wait_for(2).await;
    assert_eq!(got.len(), 2, "the duplicate was delivered: {got:#?}");
    relay.stop().await;
}

#[tokio::test]
async fn a_bad_file_is_reported_and_the_good_ones_serve() {
    let receiver = FakeServer::start().await;
    let h = hooks(&receiver.base);
    h.write(
        "30-broken.yaml",
        r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Route
metadata: {name: fine}
spec: {channels: [receiver]}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {name: broken}
spec:
  auth:
    token: {header: X-T}
"#,
    );
    h.write("40-not-yaml.yml", "kind: [unclosed\n");
    let data = data_dir();
    let relay = TestRelay::start(settings(h.path(), data.path())).await;
    let (status, _) = relay
        .post("app", &[TOKEN], r#"{"kind":"push","title":"t","user":"u"}"#)
        .await;
    assert_eq!(status, 202, "good files serve");
    let (status, _) = relay.post("broken", &[], "{}").await;
    assert_eq!(status, 404, "the bad file's resources are not loaded");
    let catalog = relay.admin_get("/admin/catalog").await;
    let errors = catalog["report"]["errors"].as_array().unwrap();
    let broken = errors
        .iter()
        .find(|e| e["file"].as_str().unwrap().ends_with("30-broken.yaml"))
        .expect("error for 30-broken.yaml");
    assert_eq!(broken["document"], 2);
    assert_eq!(broken["path"], "/spec/auth/token");
    assert!(broken["message"].as_str().unwrap().contains("secret"));
    assert!(
        errors
            .iter()
            .any(|e| e["file"].as_str().unwrap().ends_with("40-not-yaml.yml")
                && e["message"].as_str().unwrap().contains("YAML"))
    );
    relay.stop().await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .arg("check")
        .arg(h.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let group = stdout
        .split("30-broken.yaml\n")
        .nth(1)
        .unwrap_or_else(|| panic!("errors grouped under their file: {stdout}"));
    assert!(
        group.starts_with("  error: line 7, document 2 (Source broken): /spec/auth/token"),
        "with the line the document starts on: {stdout}"
    );
}

#[tokio::test]
async fn a_render_error_is_recorded_and_replays_after_the_fix() {
    let (receiver, h, _data, relay) = setup().await;
    h.write(
        "50-template.yaml",
        r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Template
metadata: {name: exact}
spec:
  types: [app.deploy]
  text: "deployed {{data.missing.field}}"
"#,
    );
    let (code, _) = relay.admin_post("/admin/catalog/reload").await;
    assert_eq!(code, 200);
    let (status, body) = relay.post("app", &[TOKEN], r#"{"kind":"deploy"}"#).await;
    assert_eq!(status, 202, "a render error is not the sender's fault");
    let id = delivery_id(&body, &relay).await;
    let d = relay.wait_delivery_state(&id, "dead").await;
    assert_eq!(d["last_error"]["reason"], "render");
    assert!(
        d["last_error"]["detail"]
            .as_str()
            .unwrap()
            .contains("data.missing.field")
    );
    assert!(d["message"].is_null());
    let metrics = relay.metrics().await;
    assert!(
        metrics.contains("hookrelay_render_failures_total{channel=\"receiver\"} 1"),
        "{metrics}"
    );

    h.write(
        "50-template.yaml",
        r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Template
metadata: {name: exact}
spec:
  types: [app.deploy]
  text: "deployed {{data.kind}}"
"#,
    );
    relay.admin_post("/admin/catalog/reload").await;
    relay
        .admin_post(&format!("/admin/deliveries/{id}/replay"))
        .await;
    relay.wait_delivery_state(&id, "delivered").await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].json()["text"]["content"], "deployed deploy");
    relay.stop().await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (receiver, _h, _data, relay) = setup().await;
    receiver.script([Reply {
        status: 302,
        body: String::new(),
        headers: vec![("location".into(), "http://127.0.0.1:1/elsewhere".into())],
    }]);
    let (_, body) = relay
        .post("app", &[TOKEN], r#"{"kind":"push","title":"t","user":"u"}"#)
        .await;
    let d = relay
        .wait_delivery_state(&delivery_id(&body, &relay).await, "dead")
        .await;
    assert_eq!(d["last_error"]["status"], 302);
    assert_eq!(receiver.requests().len(), 1);
    relay.stop().await;
}

#[tokio::test]
async fn a_cnb_user_notification_is_relayed_as_it_came() {
    let receiver = FakeServer::start().await;
    let h = Hooks::new(&[
        ("cnb-token", "cnb-token"),
        (
            "cnb.yaml",
            &format!(
                r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {{name: cnb}}
spec:
  auth: {{token: {{header: X-CNB-Token, secret: {{file: cnb-token}}}}}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: sink}}
spec: {{type: webhook, url: "{}/cnb"}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Route
metadata: {{name: cnb}}
spec: {{sources: [cnb], channels: [sink]}}
"#,
                receiver.base
            ),
        ),
    ]);
    let data = data_dir();
    let relay = TestRelay::start(settings(h.path(), data.path())).await;
    let body = r#"{"touser":"123|456","msgtype":"text","text":{"content":"admin1 批准了 PR #1\n\nfeat: init"}}"#;
    let (status, _) = relay
        .post(
            "cnb",
            &[("X-CNB-Token", "cnb-token"), ("X-CNB-Event", "System Hook")],
            body,
        )
        .await;
    assert_eq!(status, 202);
    let got = receiver.wait_for(1).await;
    let msg = got[0].json();
    assert_eq!(msg["touser"], "123|456");
    assert_eq!(msg["msgtype"], "text");
    assert_eq!(msg["text"]["content"], "admin1 批准了 PR #1\n\nfeat: init");
    relay.stop().await;
}

#[tokio::test]
async fn admin_api_is_deny_by_default() {
    let receiver = FakeServer::start().await;
    let h = hooks(&receiver.base);
    let data = data_dir();
    let mut s = settings(h.path(), data.path());
    s.admin_token = None;
    let relay = TestRelay::start(s).await;
    let r = relay
        .client
        .get(format!("{}/admin/stats", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    relay.stop().await;

    let relay = TestRelay::start(settings(h.path(), data.path())).await;
    let r = relay
        .client
        .get(format!("{}/admin/stats", relay.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let ok = relay.admin_get("/admin/stats").await;
    assert_eq!(ok["counts"]["events"], 0);
    let metrics = relay.metrics().await;
    assert!(
        metrics.contains("hookrelay_store_fsyncs_total"),
        "{metrics}"
    );
    let ready = relay
        .client
        .get(format!("{}/readyz", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    relay.stop().await;
}
