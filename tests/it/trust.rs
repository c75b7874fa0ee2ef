//! Delivery you can trust: gateway errors are never deliveries, throttles are not failures,
//! Knative gets empty replies, dedup keeps real notifications, the schedule's first step is
//! applied, every valid event renders, and one hung destination does not hold the others.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// The Sources besides `app` ([`APP_SOURCE`]).
const SOURCES: &str = r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {name: plain}
spec:
  auth: none
  event:
    type: {value: plain.note}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {name: ce}
spec: {auth: none, formats: [cloudevents]}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Template
metadata: {name: app}
spec:
  types: ["app.*"]
  msgtype: text
  text: "{{data.title}}"
"#;

fn doc(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {spec}\n---\n"
    )
}

async fn relay_with(
    files: &str,
    tune: impl FnOnce(&mut hookrelay::config::Settings),
) -> (Hooks, tempfile::TempDir, TestRelay) {
    start_clean(
        &[
            ("00-app.yaml", APP_SOURCE),
            ("00-sources.yaml", SOURCES),
            ("10-rest.yaml", files),
        ],
        tune,
    )
    .await
}

/// A webhook Channel `gone` at `base` and a Route `r` from the `plain` Source to it.
fn plain_to_gone(base: &str) -> String {
    doc(
        "Channel",
        "gone",
        &format!("{{type: webhook, url: \"{base}/in\"}}"),
    ) + &doc("Route", "r", "{sources: [plain], channels: [gone]}")
}

/// The deliveries of the event an answer names.
async fn deliveries(relay: &TestRelay, answer: &Value) -> Vec<hookrelay::store::DeliveryRecord> {
    let e = hookrelay::ids::EventId::parse(answer["event"].as_str().unwrap()).unwrap();
    relay.store.deliveries_of(&e).await.unwrap()
}

/// Waits until every delivery of `origin` has had at least one attempt; returns them.
async fn attempted(relay: &TestRelay, answer: &Value) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let ds = deliveries(relay, answer).await;
        if ds.iter().all(|d| d.tries >= 1) {
            let mut out = Vec::new();
            for d in ds {
                out.push(
                    relay
                        .admin_get(&format!("/admin/deliveries/{}", d.id))
                        .await,
                );
            }
            return out;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never attempted: {ds:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_gateway_error_or_an_unrecognised_reply_is_never_a_delivery() {
    // An egress gateway in front of every vendor, answering for them.
    let gateway = FakeServer::with_responder(|r| {
        if r.path.ends_with("gettoken") {
            return Reply::json(
                200,
                json!({"errcode": 0, "access_token": "tok", "expires_in": 7200}),
            );
        }
        if r.path.contains("/ok/") {
            Reply::json(200, json!({"message": "hi"}))
        } else {
            Reply::json(502, json!({"message": "upstream unavailable"}))
        }
    })
    .await;
    let g = &gateway.base;
    let retry = "retry: {schedule: [0s, 10m]}";
    let mut files = String::new();
    for (name, spec) in [
        (
            "app",
            format!(
                "{{type: wecom-app, baseUrl: \"{g}\", corpId: ww1, corpSecret: s, agentId: 1, {retry}}}"
            ),
        ),
        (
            "robot",
            format!("{{type: wecom-robot, key: k, baseUrl: \"{g}\", {retry}}}"),
        ),
        (
            "ding",
            format!("{{type: dingtalk-robot, accessToken: t, baseUrl: \"{g}\", {retry}}}"),
        ),
        (
            "lark",
            format!("{{type: feishu-robot, token: t, baseUrl: \"{g}\", {retry}}}"),
        ),
        (
            "ok-robot",
            format!("{{type: wecom-robot, key: k, baseUrl: \"{g}/ok/send\", {retry}}}"),
        ),
        (
            "ok-lark",
            format!("{{type: feishu-robot, token: t, baseUrl: \"{g}/ok/hook/\", {retry}}}"),
        ),
    ] {
        files.push_str(&doc("Channel", name, &spec));
    }
    files.push_str(&doc(
        "Route",
        "all",
        "{sources: [app], channels: [app, robot, ding, lark, ok-robot, ok-lark], to: {users: [u1]}}",
    ));
    let (_h, _d, relay) = relay_with(&files, |_| {}).await;
    let (status, answer) = relay
        .post(
            "app",
            &[],
            r#"{"kind":"build","id":"1","title":"构建失败"}"#,
        )
        .await;
    assert_eq!(
        (status, answer["deliveries"].as_u64()),
        (202, Some(6)),
        "{answer}"
    );
    for d in attempted(&relay, &answer).await {
        assert_eq!(d["state"], "pending", "retried, not delivered: {d:#}");
        assert_eq!(d["attempts"], 1, "{d:#}");
        assert_eq!(d["last_error"]["reason"], "server", "{d:#}");
        let detail = d["last_error"]["detail"].as_str().unwrap();
        if d["channel"].as_str().unwrap().starts_with("ok-") {
            assert!(
                detail.starts_with("unrecognised reply: HTTP 200 without"),
                "{detail}"
            );
        } else {
            assert!(
                detail.starts_with("HTTP 502: {\"message\":\"upstream unavailable\"}"),
                "{detail}"
            );
            assert_eq!(d["last_error"]["status"], 502);
        }
    }
    relay.stop().await;
}

#[tokio::test]
async fn throttled_webhooks_wait_without_spending_attempts_and_show_as_waiting() {
    let receiver = FakeServer::start().await;
    let waiting = FakeServer::with_responder(|_| Reply {
        headers: vec![("retry-after".into(), "1".into())],
        ..Reply::status(429)
    })
    .await;
    let throttle = || Reply {
        headers: vec![("retry-after".into(), "0".into())],
        ..Reply::status(429)
    };
    receiver.script([throttle(), throttle(), throttle()]);
    let mut files = doc(
        "Channel",
        "hook",
        &format!(
            "{{type: webhook, url: \"{}/in\", retry: {{maxAttempts: 1}}}}",
            receiver.base
        ),
    );
    files.push_str(&doc(
        "Channel",
        "busy",
        &format!(
            "{{type: webhook, url: \"{}/in\", retry: {{maxAttempts: 1}}}}",
            waiting.base
        ),
    ));
    files.push_str(&doc("Route", "r", "{sources: [app], channels: [hook]}"));
    files.push_str(&doc("Route", "b", "{sources: [plain], channels: [busy]}"));
    let (_h, _d, relay) = relay_with(&files, |_| {}).await;
    let (_, answer) = relay
        .post("app", &[], r#"{"kind":"build","id":"1","title":"t"}"#)
        .await;
    let id = deliveries(&relay, &answer).await[0].id.to_string();
    let d = relay.wait_delivery_state(&id, "delivered").await;
    assert_eq!(d["attempts"], 1, "three throttles and one send: {d:#}");
    let results: Vec<&str> = d["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        ["throttled", "throttled", "throttled", "delivered"]
    );
    assert!(
        d.get("last_error").is_none(),
        "a throttle is not an error: {d:#}"
    );

    let (_, answer) = relay.post("plain", &[], r#"{"note":"x"}"#).await;
    let d = &attempted(&relay, &answer).await[0];
    assert_eq!(d["state"], "waiting", "{d:#}");
    assert_eq!(d["attempts"], 0, "{d:#}");
    assert!(d.get("last_error").is_none(), "{d:#}");
    assert_eq!(d["waiting"]["reason"], "rate-limited", "{d:#}");
    relay.stop().await;
}

#[tokio::test]
async fn cloudevents_answers_have_no_body_and_a_missing_specversion_is_named() {
    let receiver = FakeServer::start().await;
    let mut files = doc(
        "Channel",
        "hook",
        &format!("{{type: webhook, url: \"{}/in\"}}", receiver.base),
    );
    files.push_str(&doc("Route", "r", "{sources: [ce], channels: [hook]}"));
    let (_h, _d, relay) = relay_with(&files, |_| {}).await;
    let ce = json!({"specversion": "1.0", "id": "x-1", "source": "/s", "type": "t"}).to_string();
    for _ in 0..2 {
        let resp = relay
            .client
            .post(format!("{}/hooks/ce", relay.base))
            .header("content-type", "application/cloudevents+json")
            .body(ce.clone())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        assert!(resp.headers().contains_key("x-hookrelay-event"));
        assert_eq!(
            resp.bytes().await.unwrap().len(),
            0,
            "Knative retries a 2xx with a body"
        );
    }
    let (status, body) = relay
        .post(
            "ce",
            &[("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t")],
            "{}",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("specversion is missing"),
        "{body}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn dedup_keeps_changed_groups_and_later_identical_notifications() {
    let receiver = FakeServer::start().await;
    let mut files = doc(
        "Source",
        "am",
        "{preset: alertmanager, auth: {token: {secret: am-token}}}",
    );
    files.push_str(&doc(
        "Source",
        "gl",
        "{preset: gitlab, auth: {token: {secret: gl-token}}}",
    ));
    // Its content window is set to nothing: an identical body later is a new notification,
    // while an explicit id is still remembered for the whole window.
    files.push_str(&doc(
        "Source",
        "notes",
        "{auth: none, event: {type: {value: note}}, dedup: {contentWindow: 0s}}",
    ));
    files.push_str(&doc(
        "Channel",
        "hook",
        &format!("{{type: webhook, url: \"{}/in\"}}", receiver.base),
    ));
    files.push_str(&doc(
        "Route",
        "r",
        "{sources: [am, gl, notes], channels: [hook]}",
    ));
    let (_h, _d, relay) = relay_with(&files, |_| {}).await;
    let alert = |name: &str, fp: &str| {
        json!({"labels": {"alertname": name}, "status": "firing", "fingerprint": fp,
               "startsAt": "2026-12-01T10:00:00Z", "annotations": {}})
    };
    let group = |alerts: Vec<Value>| {
        json!({"version": "4", "groupKey": "{}:{alertname=\"Disk\"}", "status": "firing",
               "receiver": "r", "groupLabels": {"alertname": "Disk"}, "commonLabels": {},
               "commonAnnotations": {}, "externalURL": "http://am:9093", "alerts": alerts})
        .to_string()
    };
    let am = [("Authorization", "am-token")];
    let two = group(vec![alert("Disk", "a1"), alert("Disk", "a2")]);
    let three = group(vec![
        alert("Disk", "a1"),
        alert("Disk", "a2"),
        alert("Disk", "a3"),
    ]);
    // A group that gains an alert is news; the same group again (Alertmanager's retry) is not.
    for (body, want) in [(&two, 202), (&three, 202), (&three, 200)] {
        let (status, answer) = relay.post("am", &am, body).await;
        assert_eq!(status, want, "{answer}");
    }
    let gl = [
        ("X-Gitlab-Token", "gl-token"),
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Event-UUID", "uuid-7"),
    ];
    let push = r#"{"object_kind":"push","ref":"main","user_name":"u","total_commits_count":0,"project":{"path_with_namespace":"g/p"}}"#;
    let (status, _) = relay.post("gl", &gl, push).await;
    assert_eq!(status, 202);
    let (status, answer) = relay.post("gl", &gl, push).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("duplicate")),
        "{answer}"
    );
    for _ in 0..2 {
        let (status, _) = relay.post("notes", &[], r#"{"note":"same text"}"#).await;
        assert_eq!(status, 202);
    }
    receiver.wait_for(5).await;
    relay.stop().await;
}

#[tokio::test]
async fn the_first_step_of_the_schedule_delays_the_first_attempt() {
    let receiver = FakeServer::start().await;
    let mut files = doc(
        "Channel",
        "later",
        &format!(
            "{{type: webhook, url: \"{}/in\", retry: {{schedule: [1h, 5s]}}}}",
            receiver.base
        ),
    );
    files.push_str(&doc("Route", "r", "{sources: [plain], channels: [later]}"));
    let (_h, _d, relay) = relay_with(&files, |_| {}).await;
    let (_, answer) = relay.post("plain", &[], r#"{"note":"x"}"#).await;
    let d = &deliveries(&relay, &answer).await[0];
    let due = d.next_ms.unwrap();
    assert!(
        due >= d.created_ms + 3_600_000,
        "due {} ms after receipt",
        due - d.created_ms
    );
    relay.stop().await;
}

#[tokio::test]
async fn every_valid_event_renders_and_event_webhooks_do_not_need_the_template() {
    let receiver = FakeServer::start().await;
    let mut files = doc(
        "Channel",
        "msg",
        &format!("{{type: webhook, url: \"{}/msg\"}}", receiver.base),
    );
    files.push_str(&doc(
        "Channel",
        "raw",
        &format!(
            "{{type: webhook, url: \"{}/raw\", body: event}}",
            receiver.base
        ),
    ));
    files.push_str(&doc(
        "Template",
        "broken",
        "{types: [nothing], msgtype: text, text: \"{{data.missing.field}}\"}",
    ));
    files.push_str(&doc("Route", "generic", "{sources: [ce], channels: [msg]}"));
    files.push_str(&doc(
        "Route",
        "raw",
        "{sources: [ce, plain], channels: [raw], template: broken}",
    ));
    files.push_str(&doc(
        "Route",
        "dead",
        "{sources: [plain], channels: [msg], template: broken}",
    ));
    let (_h, _d, relay) = relay_with(&files, |_| {}).await;
    let structured = [("Content-Type", "application/cloudevents+json")];
    for ce in [
        json!({"specversion": "1.0", "id": "none", "source": "/s", "type": "t"}),
        json!({"specversion": "1.0", "id": "bin", "source": "/s", "type": "t", "data_base64": "AP8="}),
        json!({"specversion": "1.0", "id": "txt", "source": "/s", "type": "t", "datacontenttype": "text/plain", "data": "hello"}),
    ] {
        let (status, answer) = relay.post("ce", &structured, &ce.to_string()).await;
        assert_eq!(status, 202);
        for d in deliveries(&relay, &answer).await {
            let id = d.id.to_string();
            relay.wait_delivery_state(&id, "delivered").await;
        }
    }
    let got = receiver.wait_for(6).await;
    let msg: Vec<String> = got
        .iter()
        .filter(|r| r.path == "/msg")
        .map(|r| r.json()["text"]["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        msg,
        [
            "[t] 来自 /s\nid：none",
            "[t] 来自 /s\nid：bin\n二进制数据 (base64): AP8=",
            "[t] 来自 /s\nid：txt\n\"hello\"",
        ]
    );
    let raw = got.iter().find(|r| r.path == "/raw").unwrap().json();
    assert_eq!(raw["id"], "none", "the event goes as it came: {raw}");
    // A system hook whose message cannot render says so in its answer.
    let (status, answer) = relay.post("plain", &[], r#"{"note":"x"}"#).await;
    assert_eq!(status, 202);
    assert_eq!(
        (answer["deliveries"].as_u64(), answer["dead"].as_u64()),
        (Some(2), Some(1)),
        "{answer}"
    );
    assert!(logs().contains("dead letter: the template cannot render this event"));
    relay.stop().await;
}

/// A server that accepts connections and never answers.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_hung_destination_does_not_delay_the_others() {
    let hung = black_hole().await;
    let healthy = FakeServer::start().await;
    let mut files = doc(
        "Channel",
        "hung",
        &format!("{{type: webhook, url: \"{hung}/in\", timeout: 60s}}"),
    );
    files.push_str(&doc(
        "Channel",
        "healthy",
        &format!("{{type: webhook, url: \"{}/in\"}}", healthy.base),
    ));
    files.push_str(&doc("Route", "hung", "{sources: [app], channels: [hung]}"));
    files.push_str(&doc(
        "Route",
        "healthy",
        "{sources: [plain], channels: [healthy]}",
    ));
    // As many workers as the hung lane's cap would take them all without lanes.
    let (_h, _d, relay) = relay_with(&files, |s| s.workers = 12).await;
    for i in 0..30 {
        let (status, _) = relay
            .post(
                "app",
                &[],
                &json!({"kind": "build", "id": i, "title": "t"}).to_string(),
            )
            .await;
        assert_eq!(status, 202);
    }
    for i in 0..20 {
        relay
            .post("plain", &[], &json!({"note": i}).to_string())
            .await;
    }
    // Well inside the hung receiver's 60 s timeout: the healthy one never waits for it.
    healthy.wait_for(20).await;
    relay.stop().await;
}

#[tokio::test]
async fn the_backlog_and_a_held_lane_show_in_metrics() {
    let hung = black_hole().await;
    let files = doc(
        "Channel",
        "hung",
        &format!("{{type: webhook, url: \"{hung}/in\", timeout: 60s, maxInFlight: 2}}"),
    ) + &doc("Route", "hung", "{sources: [app], channels: [hung]}");
    let (_h, _d, relay) = relay_with(&files, |_| {}).await;
    for i in 0..5 {
        let body = json!({"kind": "build", "id": i, "title": "t"}).to_string();
        assert_eq!(relay.post("app", &[], &body).await.0, 202);
    }
    let want = [
        "hookrelay_deliveries_in_flight{channel=\"hung\"} 2\n",
        "hookrelay_deliveries_pending 5\n",
        "hookrelay_deliveries_due 5\n",
    ];
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let text = loop {
        let text = relay.metrics().await;
        if want.iter().all(|w| text.contains(w)) || tokio::time::Instant::now() > deadline {
            break text;
        }
        // The dispatcher leases on its own time; a short poll of the real figures.
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for w in want {
        assert!(text.contains(w), "{w:?} in:\n{text}");
    }
    let oldest: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("hookrelay_oldest_due_seconds "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no oldest_due_seconds in:\n{text}"));
    assert!(oldest > 0.0, "{oldest}");
    let commits: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("hookrelay_store_commit_seconds_count "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        commits >= 1,
        "every 202 followed a commit that was timed:\n{text}"
    );
    assert!(
        text.contains("hookrelay_store_write_failures_total 0\n"),
        "{text}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn deliveries_are_found_by_filter_explained_and_dead_letters_replayed_in_bulk() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let fixed = Arc::new(AtomicBool::new(false));
    let f = fixed.clone();
    let receiver = FakeServer::with_responder(move |_| {
        Reply::status(if f.load(Ordering::SeqCst) { 200 } else { 404 })
    })
    .await;
    let files = plain_to_gone(&receiver.base);
    let (_h, _d, relay) = relay_with(&files, |_| {}).await;
    let mut ids = Vec::new();
    let mut event = String::new();
    for i in 0..3 {
        let (_, answer) = relay
            .post("plain", &[], &json!({"note": i}).to_string())
            .await;
        event = answer["event"].as_str().unwrap().to_string();
        ids.push(deliveries(&relay, &answer).await[0].id.to_string());
    }
    for id in &ids {
        relay.wait_delivery_state(id, "dead").await;
    }
    let first = relay
        .admin_get("/admin/deliveries?state=dead&channel=gone&limit=2")
        .await;
    let listed: Vec<&str> = first["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()], "newest first");
    let next = first["next"].as_str().expect("a cursor");
    let rest = relay
        .admin_get(&format!("/admin/deliveries?state=dead&before={next}"))
        .await;
    assert_eq!(rest["deliveries"][0]["id"], ids[0].as_str());
    assert!(rest["next"].is_null(), "{rest}");
    let none = relay.admin_get("/admin/deliveries?source=app").await;
    assert!(none["deliveries"].as_array().unwrap().is_empty());
    for query in ["state=lost", "since=1h&until=tomorrow", "before=nope"] {
        let resp = relay
            .client
            .get(format!("{}/admin/deliveries?{query}", relay.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "bad_request", "{query}: {body}");
    }

    let explained = relay.admin_get(&format!("/admin/events/{event}")).await;
    let routing = explained["routing"].as_array().unwrap();
    assert!(
        routing
            .iter()
            .any(|v| v["what"] == "Route r" && v["matched"] == true),
        "{explained}"
    );

    fixed.store(true, Ordering::SeqCst);
    let (code, replayed) = relay
        .admin_post("/admin/dead-letters/replay?channel=gone")
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        replayed,
        json!({"matched": 3, "scheduled": 3, "skipped": 0})
    );
    for id in &ids {
        relay.wait_delivery_state(id, "delivered").await;
    }
    let (_, again) = relay.admin_post("/admin/dead-letters/replay").await;
    assert_eq!(again["matched"], 0, "idempotent: nothing is dead any more");
    relay.stop().await;
}

/// Runs the `hookrelay` admin commands against `relay` with `token`.
async fn ctl(relay: &TestRelay, token: &str, args: &[&str]) -> (bool, String, String) {
    let (base, token) = (relay.base.clone(), token.to_string());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    // The command blocks; the relay it talks to runs on this test's runtime.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(&args)
            .env("HOOKRELAY_URL", base)
            .env("HOOKRELAY_ADMIN_TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn the_admin_commands_list_explain_and_replay_from_a_terminal() {
    let receiver = FakeServer::with_responder(|_| Reply::status(404)).await;
    let files = plain_to_gone(&receiver.base);
    let (_h, _d, relay) = relay_with(&files, |_| {}).await;
    let (_, answer) = relay.post("plain", &[], r#"{"note":"构建失败"}"#).await;
    let id = deliveries(&relay, &answer).await[0].id.to_string();
    let event = answer["event"].as_str().unwrap().to_string();
    relay.wait_delivery_state(&id, "dead").await;

    let (ok, table, _) = ctl(&relay, ADMIN, &["deliveries", "--state", "dead"]).await;
    assert!(
        ok && table.contains(&id) && table.contains("gone"),
        "{table}"
    );
    let (ok, json, _) = ctl(
        &relay,
        ADMIN,
        &["--json", "deliveries", "--channel", "gone"],
    )
    .await;
    let listed: Value = serde_json::from_str(&json).unwrap();
    assert!(ok && listed["deliveries"][0]["id"] == id.as_str(), "{json}");
    let (ok, shown, _) = ctl(&relay, ADMIN, &["delivery", &id]).await;
    assert!(
        ok && shown.contains("HTTP 404"),
        "the attempt timeline: {shown}"
    );
    let (ok, explained, _) = ctl(&relay, ADMIN, &["event", &event]).await;
    assert!(ok && explained.contains("Route r"), "{explained}");
    let (ok, replayed, _) = ctl(&relay, ADMIN, &["dead", "--replay", "--json"]).await;
    let counts: Value = serde_json::from_str(replayed.trim()).unwrap();
    assert!(
        ok && counts == json!({"matched": 1, "scheduled": 1, "skipped": 0}),
        "{replayed}"
    );

    let (ok, _, refused) = ctl(&relay, "wrong", &["stats"]).await;
    assert!(
        !ok && refused.contains("refused the admin token"),
        "{refused}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_dead_letter_is_logged_as_a_warning() {
    let receiver = FakeServer::with_responder(|_| Reply::status(404)).await;
    let files = plain_to_gone(&receiver.base);
    let (_h, _d, relay) = relay_with(&files, |_| {}).await;
    let (_, answer) = relay.post("plain", &[], r#"{"note":"dead"}"#).await;
    let id = deliveries(&relay, &answer).await[0].id.to_string();
    relay.wait_delivery_state(&id, "dead").await;
    let line = logs()
        .lines()
        .find(|l| l.contains(&id) && l.contains("dead letter"))
        .map(str::to_string);
    let line = line.unwrap_or_else(|| panic!("no dead-letter line for {id}:\n{}", logs()));
    assert!(line.contains("WARN") && line.contains("HTTP 404"), "{line}");
    relay.stop().await;
}

#[tokio::test]
async fn an_oversized_attribute_is_refused_and_ingest_keeps_working() {
    let receiver = FakeServer::start().await;
    let mut files = doc(
        "Channel",
        "hook",
        &format!("{{type: webhook, url: \"{}/in\"}}", receiver.base),
    );
    files.push_str(&doc("Route", "r", "{sources: [ce, app], channels: [hook]}"));
    let (_h, _d, relay) = relay_with(&files, |s| s.max_body_bytes = 1 << 20).await;
    let huge = "x".repeat(70 * 1024);
    let structured = [("Content-Type", "application/cloudevents+json")];
    for (ce, attribute) in [
        (
            json!({"specversion": "1.0", "id": huge, "source": "/s", "type": "t"}),
            "id",
        ),
        (
            json!({"specversion": "1.0", "id": "1", "source": huge, "type": "t"}),
            "source",
        ),
        (
            json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "note": huge}),
            "note",
        ),
    ] {
        let (status, body) = relay.post("ce", &structured, &ce.to_string()).await;
        assert_eq!(status, 400, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("attribute {attribute} is")) && message.contains("limit"),
            "{message}"
        );
    }
    let binary = [
        ("ce-specversion", "1.0"),
        ("ce-id", huge.as_str()),
        ("ce-source", "/s"),
        ("ce-type", "t"),
    ];
    let (status, _) = relay.post("ce", &binary, "{}").await;
    assert!(status == 400 || status == 431, "{status}");
    let (status, body) = relay
        .post(
            "app",
            &[],
            &json!({"kind": "k", "id": huge, "title": "t"}).to_string(),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        relay.store.counts().await.unwrap().events,
        0,
        "nothing refused was stored"
    );
    // Ingest still works.
    let ok = json!({"specversion": "1.0", "id": "fine", "source": "/s", "type": "t"});
    let (status, _) = relay.post("ce", &structured, &ok.to_string()).await;
    assert_eq!(status, 202);
    receiver.wait_for(1).await;
    relay.stop().await;
}
