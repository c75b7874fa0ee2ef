//! The personal layer through the real relay: quiet hours hold a person's application messages
//! durably until their window ends (across a restart), others go now, an exception goes now.

use serde_json::{Value, json};

use crate::support::*;
use crate::vendors;

/// A window around the present minute, in UTC: the relay's clock is inside it whenever the
/// test runs, and it ends an hour from now.
fn window_around_now() -> String {
    let now = chrono::Utc::now();
    let at = |h: i64| {
        (now + chrono::Duration::hours(h))
            .format("%H:%M")
            .to_string()
    };
    format!("{}-{}", at(-1), at(1))
}

fn files(wecom: &str) -> Vec<(&'static str, String)> {
    vec![
        ("corp-secret", "corp-secret-value".into()),
        (
            "10-all.yaml",
            format!(
                r#"
{APP_SOURCE}---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: corp}}
spec: {{type: wecom-app, baseUrl: "{wecom}", corpId: ww1, corpSecret: {{file: corp-secret}}, agentId: 1000002}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Route
metadata: {{name: builds}}
spec: {{sources: [app], channels: [corp], to: {{users: [alice, bob]}}}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: User
metadata: {{name: alice}}
spec:
  wecom: Alice.W
  quietHours:
    timezone: "+00:00"
    windows: ["{window}"]
    except: {{types: ["app.approval.*"], severities: [critical]}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: User
metadata: {{name: bob}}
spec: {{wecom: bob}}
"#,
                window = window_around_now()
            ),
        ),
    ]
}

async fn deliveries(relay: &TestRelay, body: Value) -> Vec<Value> {
    let (status, answer) = relay.post("app", &[], &body.to_string()).await;
    assert_eq!(status, 202, "{answer}");
    let event = answer["event"].as_str().unwrap();
    relay.admin_get(&format!("/admin/events/{event}")).await["deliveries"]
        .as_array()
        .unwrap()
        .clone()
}

fn to(d: &Value) -> &str {
    d["to"]["users"][0].as_str().unwrap()
}

#[tokio::test]
async fn quiet_hours_hold_a_persons_messages_until_their_window_ends() {
    let (fake, state) = vendors::wecom("ww1", "corp-secret-value").await;
    let owned = files(&fake.base);
    let refs: Vec<(&str, &str)> = owned.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let (h, data, relay) = start_clean(&refs, |_| {}).await;
    let before = hookrelay::ids::now_ms();
    let ds = deliveries(&relay, json!({"kind": "build", "id": "b1"})).await;
    assert_eq!(ds.len(), 2, "{ds:#?}");
    let (bob, alice) = if to(&ds[0]) == "bob" {
        (&ds[0], &ds[1])
    } else {
        (&ds[1], &ds[0])
    };
    assert_eq!(to(alice), "Alice.W");
    relay
        .wait_delivery_state(bob["id"].as_str().unwrap(), "delivered")
        .await;
    // Alice's waits, durably, until her window ends in an hour.
    assert_eq!(alice["state"], "waiting", "{alice:#}");
    assert_eq!(alice["waiting"]["reason"], "quiet-hours");
    let detail = alice["waiting"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("held until ") && detail.contains("by alice's quiet hours"),
        "{detail}"
    );
    let due = alice["next_ms"].as_u64().unwrap();
    assert!(
        due >= before + 59 * 60_000 && due <= before + 61 * 60_000,
        "due {due}, {} minutes from now",
        (due as i64 - before as i64) / 60_000
    );
    // An exception goes to her now: by type, and by severity.
    for body in [
        json!({"kind": "approval.pending", "id": "a1"}),
        json!({"kind": "alert", "id": "c1", "labels": {"severity": "critical"}}),
    ] {
        let ds = deliveries(&relay, body).await;
        assert_eq!(ds.len(), 1, "one delivery to both: {ds:#?}");
        relay
            .wait_delivery_state(ds[0]["id"].as_str().unwrap(), "delivered")
            .await;
    }
    let id = alice["id"].as_str().unwrap().to_string();
    relay.stop().await;

    // After a restart it is still held, with the same due time, and nothing went to Alice.
    let relay = TestRelay::start(settings(h.path(), data.path())).await;
    let again = relay.admin_get(&format!("/admin/deliveries/{id}")).await;
    assert_eq!(again["state"], "waiting");
    assert_eq!(again["next_ms"].as_u64(), Some(due));
    let sent = state.lock().unwrap().sent.clone();
    assert_eq!(sent.len(), 3, "{sent:#?}");
    assert_eq!(sent[0]["touser"], "bob");
    assert!(
        sent[1..].iter().all(|s| s["touser"] == "Alice.W|bob"),
        "{sent:#?}"
    );
    relay.stop().await;
}

#[test]
fn render_says_who_is_held_and_until_when() {
    let h = Hooks::new(&[]);
    for (name, text) in files("http://127.0.0.1:9") {
        h.write(name, &text);
    }
    let text = render_cli(h.path(), r#"{"kind": "build", "id": "r1"}"#);
    assert!(text.contains("   to: {\"users\":[\"bob\"]}"), "{text}");
    assert!(
        text.contains("   to: {\"users\":[\"Alice.W\"]}\n   ⏸ held until "),
        "{text}"
    );
    assert!(text.contains("+00:00 by alice's quiet hours"), "{text}");
}
