//! Digests through the real relay: events for the same recipients and key inside a window wait
//! durably and go as one message when the window is full — across a restart too — with the
//! built-in digest template; other keys wait apart.

use serde_json::{Value, json};

use crate::support::*;

fn files(receiver: &str) -> Vec<(&'static str, String)> {
    with_digest(receiver, r#"{window: 1h, max: 3, key: "{{data.group}}"}"#)
}

fn with_digest(receiver: &str, digest: &str) -> Vec<(&'static str, String)> {
    vec![(
        "10-digest.yaml",
        format!(
            r#"
{APP_SOURCE}---
apiVersion: hookrelay.dev/v1alpha1
kind: Template
metadata: {{name: app}}
spec:
  types: ["app.*"]
  title: "build {{{{data.id}}}}"
  text: "build {{{{data.id}}}} of {{{{data.group}}}} failed"
  url: "https://ci.example/{{{{data.id}}}}"
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: receiver}}
spec: {{type: webhook, url: "{receiver}/in"}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Route
metadata: {{name: builds}}
spec:
  sources: [app]
  channels: [receiver]
  to: {{users: [alice]}}
  digest: {digest}
"#
        ),
    )]
}

/// Posts build `id` of `group` and returns its one delivery as the admin API shows it.
async fn post(relay: &TestRelay, id: &str, group: &str) -> Value {
    let body = json!({"kind": "build", "id": id, "group": group});
    let (status, answer) = relay.post("app", &[], &body.to_string()).await;
    assert_eq!(status, 202, "{answer}");
    let event = answer["event"].as_str().unwrap();
    let ds = relay.admin_get(&format!("/admin/events/{event}")).await["deliveries"].clone();
    assert_eq!(ds.as_array().unwrap().len(), 1, "{ds:#}");
    ds[0].clone()
}

fn id(d: &Value) -> &str {
    d["id"].as_str().unwrap()
}

#[tokio::test]
async fn a_full_window_goes_as_one_message_and_other_keys_wait_apart() {
    let receiver = FakeServer::start().await;
    let owned = files(&receiver.base);
    let refs: Vec<(&str, &str)> = owned.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let (_h, _d, relay) = start_clean(&refs, |_| {}).await;
    let before = hookrelay::ids::now_ms();
    let first = post(&relay, "1", "api").await;
    assert_eq!(first["state"], "waiting", "{first:#}");
    assert_eq!(first["waiting"]["reason"], "digest");
    let detail = first["waiting"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("collected into a digest until ") && detail.ends_with("(1 so far)"),
        "{detail}"
    );
    let due = first["next_ms"].as_u64().unwrap();
    assert!(
        due >= before + 3_600_000 && due <= before + 3_610_000,
        "due {due}"
    );
    let second = post(&relay, "2", "api").await;
    assert_eq!(second["next_ms"].as_u64(), Some(due), "the same window");
    let other = post(&relay, "3", "web").await;
    assert_eq!(other["state"], "waiting");
    assert!(
        other["waiting"]["detail"]
            .as_str()
            .unwrap()
            .ends_with("(1 so far)")
    );
    assert!(
        receiver.requests().is_empty(),
        "nothing sent before the window is done"
    );

    // The third of the same key fills the window: one message with all three.
    let third = post(&relay, "4", "api").await;
    let done = relay.wait_delivery_state(id(&third), "delivered").await;
    let sent = receiver.wait_for(1).await;
    let body = sent[0].json();
    assert_eq!(body["touser"], "alice");
    assert_eq!(body["title"], "3 条通知");
    assert_eq!(
        body["text"]["content"],
        "**3 条通知**\n- [build 1](https://ci.example/1)\n- [build 2](https://ci.example/2)\n- [build 4](https://ci.example/4)"
    );
    assert_eq!(done["receipt"]["digest"]["events"], 3);
    let sender = done["receipt"]["digest"]["sentWith"].as_str().unwrap();
    for d in [&first, &second] {
        let now = relay.wait_delivery_state(id(d), "delivered").await;
        assert_eq!(now["receipt"]["digest"]["sentWith"], sender, "{now:#}");
        assert_eq!(now["attempts"], 1);
    }
    // The other key still waits, with the message it would be on its own.
    let web = relay
        .admin_get(&format!("/admin/deliveries/{}", id(&other)))
        .await;
    assert_eq!(web["state"], "waiting");
    assert_eq!(web["message"]["content"], "build 3 of web failed");
    assert_eq!(receiver.requests().len(), 1, "one message for the three");
    relay.stop().await;
}

#[tokio::test]
async fn an_open_digest_survives_a_restart_and_later_events_join_it() {
    let receiver = FakeServer::start().await;
    let owned = files(&receiver.base);
    let refs: Vec<(&str, &str)> = owned.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let (h, data, relay) = start_clean(&refs, |_| {}).await;
    let first = post(&relay, "5", "api").await;
    let second = post(&relay, "6", "api").await;
    let due = first["next_ms"].as_u64().unwrap();
    relay.stop().await;

    let relay = TestRelay::start(settings(h.path(), data.path())).await;
    let kept = relay
        .admin_get(&format!("/admin/deliveries/{}", id(&first)))
        .await;
    assert_eq!(kept["state"], "waiting");
    assert_eq!(kept["next_ms"].as_u64(), Some(due));
    // The third joins the window the store kept open: full, so all three go now.
    let third = post(&relay, "7", "api").await;
    relay.wait_delivery_state(id(&third), "delivered").await;
    relay.wait_delivery_state(id(&second), "delivered").await;
    let sent = receiver.wait_for(1).await;
    let content = sent[0].json()["text"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    for n in ["build 5", "build 6", "build 7"] {
        assert!(content.contains(n), "{content}");
    }
    assert_eq!(receiver.requests().len(), 1);
    relay.stop().await;
}

/// A window that closes with several deliveries due at once: they go as one message (the
/// dispatcher starts one of them, the rest wait in the lane for its worker to take along).
/// The window is the real clock's second: the relay has no other.
#[tokio::test]
async fn a_closing_window_sends_its_deliveries_as_one_message() {
    let receiver = FakeServer::start().await;
    let owned = with_digest(&receiver.base, "{window: 1s, max: 50}");
    let refs: Vec<(&str, &str)> = owned.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let (_h, _d, relay) = start_clean(&refs, |_| {}).await;
    // The first send fails: the retry is one message again (all five come due together).
    receiver.script([Reply::status(500)]);
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(id(&post(&relay, &n.to_string(), "api").await).to_string());
    }
    for d in &ids {
        relay.wait_delivery_state(d, "delivered").await;
    }
    let bodies: Vec<Value> = receiver.requests().iter().map(|r| r.json()).collect();
    assert_eq!(bodies.len(), 2, "one message, sent twice: {bodies:#?}");
    assert!(
        bodies.iter().all(|b| b["title"] == "5 条通知"),
        "{bodies:#?}"
    );
    for d in &ids {
        let d = relay.admin_get(&format!("/admin/deliveries/{d}")).await;
        assert_eq!(d["attempts"], 2, "{d:#}");
    }
    relay.stop().await;
}

/// `render` says a delivery is collected, and until when.
#[test]
fn render_says_a_delivery_is_collected_into_a_digest() {
    let h = Hooks::new(&[]);
    for (name, text) in files("http://127.0.0.1:9") {
        h.write(name, &text);
    }
    let text = render_cli(h.path(), r#"{"kind": "build", "id": "r1", "group": "api"}"#);
    assert!(
        text.contains("collected into a digest until ") && text.contains("(1 so far)"),
        "{text}"
    );
}
