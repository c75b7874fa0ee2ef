//! Threads: a run's later events update the card its first one sent (WeCom template cards by
//! their single-use `response_code`, Feishu cards by `PATCH`), across a restart; a used or
//! expired handle sends a new card; a late older event does not bring a card back; a robot
//! sends a new message each time and says so.

use serde_json::{Value, json};

use crate::support::*;
use crate::vendors;

/// A template whose events are threaded by their run, a user and a route to `channel`.
fn hooks(
    channel: &str,
    channel_doc: &str,
    secret: (&'static str, &'static str),
) -> Vec<(String, String)> {
    let common = r#"apiVersion: hookrelay.dev/v1alpha1
kind: Template
metadata: {name: run}
spec:
  types: ["app.*"]
  thread: "run/{{data.run}}"
  msgtype: markdown
  title: "构建 {{data.run}} {{data.status}}"
  text: "**构建 {{data.run}} {{data.status}}**\n> 执行人：alice"
  url: "https://ci.example/runs/{{data.run}}"
---
apiVersion: hookrelay.dev/v1alpha1
kind: User
metadata: {name: alice}
spec: {wecom: Alice.W, feishu: ou_alice}
"#;
    let route = format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: Route\nmetadata: {{name: runs}}\nspec: {{sources: [app], channels: [{channel}], to: {{users: [alice]}}}}\n"
    );
    vec![
        ("00-app.yaml".into(), APP_SOURCE.into()),
        ("01-common.yaml".into(), common.into()),
        (secret.0.into(), secret.1.into()),
        ("10-channel.yaml".into(), channel_doc.into()),
        ("20-route.yaml".into(), route),
    ]
}

async fn start(files: &[(String, String)], data: &std::path::Path) -> (Hooks, TestRelay) {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let h = Hooks::new(&refs);
    let relay = TestRelay::start(settings(h.path(), data)).await;
    let report = relay.admin_get("/admin/catalog").await;
    assert_eq!(report["report"]["errors"], json!([]), "{report:#}");
    (h, relay)
}

/// Posts one event of run `run` and returns its delivery id.
async fn post(relay: &TestRelay, id: u32, run: u32, status: &str) -> String {
    let body = json!({"kind": "build", "id": id, "run": run, "status": status});
    let (code, answer) = relay.post("app", &[], &body.to_string()).await;
    assert_eq!(code, 202, "{answer}");
    let e = hookrelay::ids::EventId::parse(answer["event"].as_str().unwrap()).unwrap();
    relay.store.deliveries_of(&e).await.unwrap()[0]
        .id
        .to_string()
}

async fn delivered(relay: &TestRelay, id: &str) -> Value {
    relay.wait_delivery_state(id, "delivered").await
}

#[tokio::test]
async fn a_wecom_card_is_updated_once_by_its_response_code_even_after_a_restart() {
    let (fake, state) = vendors::wecom("ww1", "corp-secret-value").await;
    let channel = format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {{name: corp}}\nspec:\n  type: wecom-app\n  baseUrl: \"{}\"\n  corpId: ww1\n  corpSecret: {{file: corp-secret}}\n  agentId: 1000002\n",
        fake.base
    );
    let files = hooks("corp", &channel, ("corp-secret", "corp-secret-value"));
    let data = data_dir();
    let (h, relay) = start(&files, data.path()).await;

    let first = post(&relay, 1, 7, "running").await;
    let d = delivered(&relay, &first).await;
    assert_eq!(d["receipt"]["thread"]["message"], "new");
    assert_eq!(d["threadMessage"]["message"]["updatable"], true, "{d:#}");
    assert!(
        !d.to_string().contains("RC-"),
        "the response code is never shown: {d}"
    );
    {
        let v = state.lock().unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        let sent = &v.sent[0];
        assert_eq!(sent["msgtype"], "template_card");
        let card = &sent["template_card"];
        assert_eq!(card["card_type"], "button_interaction");
        assert_eq!(card["task_id"], first.as_str());
        assert_eq!(card["main_title"]["title"], "构建 7 running");
        assert_eq!(
            card["sub_title_text"], "执行人：alice",
            "the title is not repeated"
        );
        assert_eq!(card["button_list"][0]["url"], "https://ci.example/runs/7");
        assert_eq!(card["card_action"]["url"], "https://ci.example/runs/7");
    }

    // The handle is in the store: a restart between the send and the update changes nothing.
    relay.stop().await;
    let relay = TestRelay::start(settings(h.path(), data.path())).await;
    let second = post(&relay, 2, 7, "passed").await;
    let d = delivered(&relay, &second).await;
    assert_eq!(d["receipt"]["thread"]["message"], "updated", "{d:#}");
    assert_eq!(d["receipt"]["thread"]["sentBy"], first.as_str());
    {
        let v = state.lock().unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.sent.len(), 1, "updated, not sent again");
        let update = &v.updates[0];
        assert_eq!(update["response_code"], "RC-1");
        assert_eq!(update["userids"], json!(["Alice.W"]));
        assert_eq!(update["agentid"], 1000002);
        assert_eq!(update["template_card"]["task_id"], first.as_str());
        assert_eq!(
            update["template_card"]["main_title"]["title"],
            "构建 7 passed"
        );
    }

    // The code served its one update: the next event is a new card, with a code of its own.
    let third = post(&relay, 3, 7, "failed").await;
    let d = delivered(&relay, &third).await;
    assert_eq!(d["receipt"]["thread"]["message"], "new", "{d:#}");
    assert_eq!(state.lock().unwrap().sent.len(), 2);

    // WeCom has let that code expire (72 h on its clock): refused, so a new card goes instead.
    state.lock().unwrap().skew_secs = 73 * 3600;
    let fourth = post(&relay, 4, 7, "failed").await;
    let d = delivered(&relay, &fourth).await;
    assert_eq!(d["receipt"]["thread"]["message"], "new", "{d:#}");
    assert!(
        d["receipt"]["thread"]["note"]
            .as_str()
            .unwrap()
            .contains("can no longer be changed"),
        "{d:#}"
    );
    // Another run is another thread.
    let other = post(&relay, 5, 8, "running").await;
    delivered(&relay, &other).await;
    {
        let v = state.lock().unwrap();
        assert_eq!((v.sent.len(), v.updates.len()), (4, 1));
        assert_eq!(
            v.sent[3]["template_card"]["main_title"]["title"],
            "构建 8 running"
        );
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_feishu_card_follows_its_run_and_a_late_older_event_does_not_bring_it_back() {
    let (fake, state) = vendors::feishu_app("cli_a1", "app-secret-value").await;
    // Cards off: a thread's message is a card all the same (only a card can be updated).
    let channel = format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {{name: lark}}\nspec:\n  type: feishu-app\n  baseUrl: \"{}\"\n  appId: cli_a1\n  appSecret: {{file: app-secret}}\n  card: false\n  retry: {{schedule: [0s, 1s]}}\n",
        fake.base
    );
    let files = hooks("lark", &channel, ("app-secret", "app-secret-value"));
    let data = data_dir();
    let (_h, relay) = start(&files, data.path()).await;

    let first = post(&relay, 1, 7, "running").await;
    delivered(&relay, &first).await;
    for (id, status) in [(2, "passed"), (3, "deployed")] {
        let d = delivered(&relay, &post(&relay, id, 7, status).await).await;
        assert_eq!(d["receipt"]["thread"]["message"], "updated", "{d:#}");
    }
    {
        let v = state.lock().unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.sent.len(), 1);
        assert_eq!(v.sent[0]["body"]["msg_type"], "interactive");
        assert_eq!(
            v.sent[0]["content"]["header"]["title"]["content"],
            "构建 7 running"
        );
        let updates: Vec<(&str, &str)> = v
            .updates
            .iter()
            .map(|u| {
                (
                    u["message_id"].as_str().unwrap(),
                    u["content"]["header"]["title"]["content"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            updates,
            [("om_1", "构建 7 passed"), ("om_1", "构建 7 deployed")]
        );
    }

    // Run 9's first event is throttled and tried again a second later; its second event is
    // sent meanwhile. The later try must not turn the card back to "running".
    state.lock().unwrap().codes.push_back(230020);
    let late = post(&relay, 10, 9, "running").await;
    let parsed = hookrelay::ids::DeliveryId::parse(&late).unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while relay.store.delivery(&parsed).await.unwrap().unwrap().tries == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first try never happened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let newer = post(&relay, 11, 9, "passed").await;
    let d = delivered(&relay, &newer).await;
    assert_eq!(d["receipt"]["thread"]["message"], "new");
    let d = delivered(&relay, &late).await;
    assert_eq!(d["receipt"]["thread"]["message"], "none", "{d:#}");
    assert_eq!(d["tries"], 2);
    {
        let v = state.lock().unwrap();
        assert_eq!(v.sent.len(), 2, "nothing sent for the superseded event");
        assert_eq!(
            v.sent[1]["content"]["header"]["title"]["content"],
            "构建 9 passed"
        );
        assert_eq!(v.updates.len(), 2);
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_robot_sends_each_event_of_a_thread_as_a_new_message_and_says_so() {
    let (fake, state) = vendors::wecom_robot("robot-key-123").await;
    let channel = "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {name: group}\nspec:\n  type: wecom-robot\n  url: {file: robot-url}\n";
    let url = format!("{}/cgi-bin/webhook/send?key=robot-key-123", fake.base);
    let mut files = hooks("group", channel, ("robot-url", "x"));
    files[2].1 = url;
    let data = data_dir();
    let (h, relay) = start(&files, data.path()).await;
    for (id, status) in [(1, "running"), (2, "passed")] {
        let d = delivered(&relay, &post(&relay, id, 7, status).await).await;
        assert_eq!(d["receipt"]["thread"]["message"], "new");
        let note = d["threadMessage"]["note"].as_str().unwrap();
        assert!(
            note.contains("wecom-robot cannot change a message"),
            "{note}"
        );
    }
    assert_eq!(state.lock().unwrap().sent.len(), 2);
    relay.stop().await;

    let shown = render_cli(
        h.path(),
        &json!({"kind": "build", "id": 3, "run": 7, "status": "failed"}).to_string(),
    );
    assert!(shown.contains("↻ thread"), "{shown}");
    assert!(
        shown.contains("each event of the thread sends a new one"),
        "{shown}"
    );
}
