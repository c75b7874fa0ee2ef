//! The chat channels against fake vendor servers: tokens, signatures, mentions, limits, every
//! error code that matters, rate limits, and no secret leaking anywhere.

use serde_json::{Value, json};

use crate::support::*;
use crate::vendors;

/// What every test here shares besides the `app` Source.
const SOURCE: &str = r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Template
metadata: {name: app}
spec:
  types: ["app.*"]
  msgtype: markdown
  title: "构建 {{data.id}}"
  text: "**{{data.title}}**\n> 状态：{{data.status}}"
  url: "https://zadig.example.com/tasks/{{data.id}}"
---
apiVersion: hookrelay.dev/v1alpha1
kind: User
metadata: {name: alice}
spec: {wecom: Alice.W, mobile: "13800000001", dingtalk: ding-alice, feishu: ou_alice}
---
apiVersion: hookrelay.dev/v1alpha1
kind: User
metadata: {name: bob}
spec: {wecom: bob, mobile: "13800000002"}
"#;

fn route(name: &str, channel: &str, to: &str) -> String {
    format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}}}\nspec: {{sources: [app], channels: [{channel}], to: {to}}}\n"
    )
}

async fn relay(files: &[(&str, &str)]) -> (Hooks, tempfile::TempDir, TestRelay) {
    let mut all = vec![("00-app.yaml", APP_SOURCE), ("00-source.yaml", SOURCE)];
    all.extend_from_slice(files);
    start_clean(&all, |_| {}).await
}

fn event(id: u32) -> String {
    json!({"kind": "build", "id": id, "title": format!("构建 {id} 失败"), "status": "failed"})
        .to_string()
}

/// Posts an event and returns its first delivery id.
async fn post(relay: &TestRelay, id: u32) -> String {
    let (status, body) = relay.post("app", &[], &event(id)).await;
    assert_eq!(status, 202, "{body}");
    let e = hookrelay::ids::EventId::parse(body["event"].as_str().unwrap()).unwrap();
    relay.store.deliveries_of(&e).await.unwrap()[0]
        .id
        .to_string()
}

fn wecom_app(base: &str, extra: &str) -> String {
    format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {{name: corp}}\nspec:\n  type: wecom-app\n  baseUrl: \"{base}\"\n  corpId: ww1\n  corpSecret: {{file: corp-secret}}\n  agentId: \"1000002\"\n{extra}"
    )
}

#[tokio::test]
async fn wecom_app_caches_its_token_refreshes_it_and_records_partial_failures() {
    let (fake, state) = vendors::wecom("ww1", "corp-secret-value").await;
    let (_h, _d, relay) = relay(&[
        ("corp-secret", "corp-secret-value"),
        ("10-corp.yaml", &wecom_app(&fake.base, "")),
        (
            "20-route.yaml",
            &route("corp", "corp", "{users: [alice, bob], parties: [2]}"),
        ),
    ])
    .await;
    let first = post(&relay, 1).await;
    relay.wait_delivery_state(&first, "delivered").await;
    {
        let v = state.lock().unwrap();
        assert_eq!(v.tokens_issued, 1);
        let sent = &v.sent[0];
        assert_eq!(
            sent["touser"], "Alice.W|bob",
            "user names resolved through the directory"
        );
        assert_eq!(sent["toparty"], "2");
        assert_eq!(sent["agentid"], 1000002);
        assert_eq!(sent["msgtype"], "markdown");
        assert_eq!(sent["enable_duplicate_check"], 1);
        assert!(
            sent["markdown"]["content"]
                .as_str()
                .unwrap()
                .starts_with("**构建 1 失败**")
        );
    }
    let second = post(&relay, 2).await;
    relay.wait_delivery_state(&second, "delivered").await;
    assert_eq!(
        state.lock().unwrap().tokens_issued,
        1,
        "the token is cached"
    );

    // WeCom drops the token early: refresh once and succeed in the same attempt.
    state.lock().unwrap().valid_tokens.clear();
    let third = post(&relay, 3).await;
    let d = relay.wait_delivery_state(&third, "delivered").await;
    assert_eq!(d["attempts"], 1);
    assert_eq!(state.lock().unwrap().tokens_issued, 2);

    // One recipient does not exist: delivered to the rest, the refusal recorded, not retried.
    state.lock().unwrap().invalid_users.insert("bob".into());
    let fourth = post(&relay, 4).await;
    let d = relay.wait_delivery_state(&fourth, "delivered").await;
    assert_eq!(d["receipt"]["invaliduser"], "bob");
    assert!(d["receipt"]["msgid"].as_str().unwrap().starts_with("msg-"));

    // Too many calls: rescheduled without using the budget, then delivered.
    state.lock().unwrap().codes.push_back(45009);
    let fifth = post(&relay, 5).await;
    let d = relay.wait_delivery_state(&fifth, "delivered").await;
    let results: Vec<&str> = d["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["throttled", "delivered"]);
    assert_eq!(d["attempts"], 1);

    // WeCom reports ids lower-cased.
    state.lock().unwrap().invalid_users.insert("Alice.W".into());
    let sixth = post(&relay, 6).await;
    let d = relay.wait_delivery_state(&sixth, "delivered").await;
    assert_eq!(d["receipt"]["invaliduser"], "alice.w|bob");
    let metrics = relay.metrics().await;
    // bob on the 4th and 5th sends, both on the 6th.
    assert!(
        metrics.contains("hookrelay_recipients_rejected_total{channel=\"corp\"} 4"),
        "{metrics}"
    );

    // Every recipient invalid (81013): dead at once, not retried.
    state.lock().unwrap().codes.push_back(81013);
    let seventh = post(&relay, 7).await;
    let d = relay.wait_delivery_state(&seventh, "dead").await;
    assert_eq!(d["attempts"], 1);
    assert!(
        d["last_error"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("errcode 81013")
    );
    assert!(
        state.lock().unwrap().problems.is_empty(),
        "{:?}",
        state.lock().unwrap().problems
    );
    relay.stop().await;
}

#[tokio::test]
async fn wecom_app_fetches_one_token_for_a_crowd_and_splits_large_audiences() {
    let (fake, state) = vendors::wecom("ww1", "corp-secret-value").await;
    let users: Vec<String> = (0..1500).map(|i| format!("u{i}")).collect();
    let to = format!("{{users: [{}], parties: [1]}}", users.join(", "));
    let (_h, _d, relay) = relay(&[
        ("corp-secret", "corp-secret-value"),
        ("10-corp.yaml", &wecom_app(&fake.base, "  textcard: true\n")),
        ("20-route.yaml", &route("corp", "corp", &to)),
    ])
    .await;
    // Posted concurrently: the first deliveries reach a cold token cache together.
    let mut posts = tokio::task::JoinSet::new();
    for i in 0..6 {
        let (client, url, body) = (
            relay.client.clone(),
            format!("{}/hooks/app", relay.base),
            event(i),
        );
        posts.spawn(async move {
            let r = client.post(url).body(body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        });
    }
    while let Some(answer) = posts.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, 202);
        assert_eq!(body["deliveries"], 2, "1,500 users go out in two calls");
    }
    fake.wait_for(1 + 12).await;
    relay.stop().await;
    let v = state.lock().unwrap();
    assert_eq!(v.tokens_issued, 1, "concurrent sends share one token fetch");
    let sizes: Vec<usize> = v
        .sent
        .iter()
        .map(|b| b["touser"].as_str().unwrap().split('|').count())
        .collect();
    assert_eq!(sizes.iter().filter(|n| **n == 1000).count(), 6);
    assert_eq!(sizes.iter().filter(|n| **n == 500).count(), 6);
    let card = &v.sent[0]["textcard"];
    assert_eq!(v.sent[0]["msgtype"], "textcard");
    assert!(
        card["url"]
            .as_str()
            .unwrap()
            .starts_with("https://zadig.example.com/tasks/")
    );
    assert_eq!(card["btntxt"], "详情");
    assert!(
        !card["description"].as_str().unwrap().contains("**"),
        "markdown degraded in cards"
    );
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

#[tokio::test]
async fn wecom_robot_mentions_and_error_codes() {
    let (fake, state) = vendors::wecom_robot("robot-key-123").await;
    let channel = format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {{name: team}}\nspec: {{type: wecom-robot, key: {{file: robot-key}}, baseUrl: \"{}\"}}\n---\napiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {{name: wrong}}\nspec: {{type: wecom-robot, key: not-the-key, baseUrl: \"{}\"}}\n",
        fake.base, fake.base
    );
    let (_h, _d, relay) = relay(&[
        ("robot-key", "robot-key-123"),
        ("10-robot.yaml", &channel),
        ("20-route.yaml", &route("team", "team", "{users: [alice]}")),
        (
            "21-route.yaml",
            &route("mobiles", "team", "{mobiles: [\"13900000000\"]}"),
        ),
        ("22-route.yaml", &route("wrong", "wrong", "{}")),
    ])
    .await;
    let (_, body) = relay.post("app", &[], &event(1)).await;
    assert_eq!(body["deliveries"], 3);
    let e = hookrelay::ids::EventId::parse(body["event"].as_str().unwrap()).unwrap();
    let ds = relay.store.deliveries_of(&e).await.unwrap();
    let by_origin = |o: &str| ds.iter().find(|d| d.origin == o).unwrap().id.to_string();
    relay
        .wait_delivery_state(&by_origin("team"), "delivered")
        .await;
    relay
        .wait_delivery_state(&by_origin("mobiles"), "delivered")
        .await;
    let dead = relay.wait_delivery_state(&by_origin("wrong"), "dead").await;
    assert_eq!(dead["last_error"]["reason"], "auth");
    assert!(
        dead["last_error"]["detail"]
            .as_str()
            .unwrap()
            .contains("93000")
    );
    {
        let v = state.lock().unwrap();
        let md = v.sent.iter().find(|b| b["msgtype"] == "markdown").unwrap();
        assert!(
            md["markdown"]["content"]
                .as_str()
                .unwrap()
                .ends_with("<@Alice.W>"),
            "{md}"
        );
        let text = v.sent.iter().find(|b| b["msgtype"] == "text").unwrap();
        assert_eq!(
            text["text"]["mentioned_mobile_list"],
            json!(["13900000000"])
        );
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }
    state.lock().unwrap().codes.push_back(45009);
    let (_, body) = relay.post("app", &[], &event(2)).await;
    let e = hookrelay::ids::EventId::parse(body["event"].as_str().unwrap()).unwrap();
    let id = relay.store.deliveries_of(&e).await.unwrap()[0]
        .id
        .to_string();
    let d = relay.wait_delivery_state(&id, "delivered").await;
    assert_eq!(d["attempt_log"][0]["result"], "throttled");
    relay.stop().await;
}

#[tokio::test]
async fn dingtalk_signs_mentions_and_keeps_its_keyword() {
    let (fake, state) = vendors::dingtalk("ding-token", "SECdingsecret", "工作流").await;
    let channel = format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {{name: ding}}\nspec:\n  type: dingtalk-robot\n  baseUrl: \"{}\"\n  accessToken: {{file: ding-token}}\n  secret: {{file: ding-secret}}\n  keyword: 工作流\n",
        fake.base
    );
    let (_h, _d, relay) = relay(&[
        ("ding-token", "ding-token"),
        ("ding-secret", "SECdingsecret"),
        ("10-ding.yaml", &channel),
        (
            "20-route.yaml",
            &route(
                "ding",
                "ding",
                "{users: [alice], mobiles: [\"13900000000\"]}",
            ),
        ),
    ])
    .await;
    // The first signature is "stale": signed again with a fresh timestamp, same attempt.
    state.lock().unwrap().refuse_timestamps = 1;
    let id = post(&relay, 1).await;
    let d = relay.wait_delivery_state(&id, "delivered").await;
    assert_eq!(d["attempts"], 1);
    {
        let v = state.lock().unwrap();
        let b = &v.sent[0];
        assert_eq!(b["msgtype"], "markdown");
        let text = b["markdown"]["text"].as_str().unwrap();
        assert!(
            text.contains("@13900000000")
                && text.contains("@ding-alice")
                && text.contains("工作流"),
            "{text}"
        );
        assert_eq!(b["at"]["atMobiles"], json!(["13900000000"]));
        assert_eq!(b["at"]["atUserIds"], json!(["ding-alice"]));
        assert_eq!(b["markdown"]["title"], "构建 1");
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }
    // 130101: the robot is throttled; wait (capped in tests) without using the budget.
    state.lock().unwrap().codes.push_back(130101);
    let id = post(&relay, 2).await;
    let d = relay.wait_delivery_state(&id, "delivered").await;
    assert_eq!(d["attempt_log"][0]["result"], "throttled");
    assert_eq!(d["attempts"], 1);
    let metrics = relay.metrics().await;
    let waited: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hookrelay_throttle_wait_seconds_total{channel=\"ding\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no throttle wait for ding:\n{metrics}"));
    assert!(waited > 0.0, "{waited}");
    relay.stop().await;
}

#[tokio::test]
async fn feishu_signs_in_the_body_and_sends_rich_text() {
    let (fake, state) = vendors::feishu("hook-token", "feishu-secret").await;
    let channel = format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {{name: lark}}\nspec:\n  type: feishu-robot\n  baseUrl: \"{}\"\n  token: {{file: lark-token}}\n  secret: {{file: lark-secret}}\n",
        fake.base
    );
    let (_h, _d, relay) = relay(&[
        ("lark-token", "hook-token"),
        ("lark-secret", "feishu-secret"),
        ("10-lark.yaml", &channel),
        ("20-route.yaml", &route("lark", "lark", "{users: [alice]}")),
    ])
    .await;
    state.lock().unwrap().refuse_timestamps = 1;
    let id = post(&relay, 1).await;
    relay.wait_delivery_state(&id, "delivered").await;
    {
        let v = state.lock().unwrap();
        let post = &v.sent[0]["content"]["post"]["zh_cn"];
        assert_eq!(post["title"], "构建 1");
        let lines = post["content"].as_array().unwrap();
        assert_eq!(
            lines.last().unwrap(),
            &json!([{"tag": "at", "user_id": "ou_alice"}])
        );
        assert!(
            lines.iter().any(|l| l[0]["tag"] == "a"),
            "the URL became a link"
        );
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }
    state.lock().unwrap().codes.push_back(9499);
    let id = post(&relay, 2).await;
    let d = relay.wait_delivery_state(&id, "delivered").await;
    assert_eq!(d["attempt_log"][0]["result"], "throttled");
    relay.stop().await;
}

#[tokio::test]
async fn wecom_app_finds_people_known_by_mail_or_mobile_through_the_contact_api() {
    let (fake, state) = vendors::wecom("ww1", "corp-secret-value").await;
    {
        let mut v = state.lock().unwrap();
        v.contacts
            .insert("carol@corp.example".into(), "CarolW".into());
        v.contacts.insert("13800000004".into(), "DaveW".into());
        v.contacts.insert("eve@corp.example".into(), "EveW".into());
    }
    let users = r#"
apiVersion: hookrelay.dev/v1alpha1
kind: User
metadata: {name: carol}
spec: {mail: carol@corp.example}
---
apiVersion: hookrelay.dev/v1alpha1
kind: User
metadata: {name: dave}
spec: {mobile: "13800000004"}
---
apiVersion: hookrelay.dev/v1alpha1
kind: User
metadata: {name: frank}
spec: {wecom: FrankW, mail: frank@corp.example}
"#;
    let (_h, _d, relay) = relay(&[
        ("corp-secret", "corp-secret-value"),
        ("10-corp.yaml", &wecom_app(&fake.base, "")),
        ("15-users.yaml", users),
        (
            "20-route.yaml",
            &route(
                "corp",
                "corp",
                "{users: [carol, dave, frank, eve@corp.example, ghost@corp.example]}",
            ),
        ),
    ])
    .await;
    let first = post(&relay, 1).await;
    let d = relay.wait_delivery_state(&first, "delivered").await;
    {
        let v = state.lock().unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        // An id in the User entry wins: frank is never looked up. A mail is asked as a
        // corporate mail, then as a personal one.
        assert_eq!(
            v.lookups,
            [
                "mail:carol@corp.example",
                "mail:eve@corp.example",
                "mail:ghost@corp.example",
                "mail:ghost@corp.example",
                "mobile:13800000004"
            ]
        );
        assert_eq!(v.sent[0]["touser"], "FrankW|CarolW|EveW|DaveW");
    }
    assert_eq!(d["receipt"]["resolved"]["carol@corp.example"], "CarolW");
    assert_eq!(d["receipt"]["resolved"]["13800000004"], "DaveW");
    assert_eq!(d["receipt"]["unresolved"], json!(["ghost@corp.example"]));
    // The next event asks no one: found ids and "no such user" are both remembered.
    let second = post(&relay, 2).await;
    relay.wait_delivery_state(&second, "delivered").await;
    assert_eq!(state.lock().unwrap().lookups.len(), 5);
    assert_eq!(
        state.lock().unwrap().sent[1]["touser"],
        "FrankW|CarolW|EveW|DaveW"
    );
    let metrics = relay.metrics().await;
    for line in [
        "hookrelay_contact_lookups_total{vendor=\"wecom\",result=\"found\"} ",
        "hookrelay_contact_lookups_total{vendor=\"wecom\",result=\"not_found\"} ",
        "hookrelay_contact_lookups_total{vendor=\"wecom\",result=\"cached\"} ",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn feishu_app_sends_cards_to_people_with_a_cached_tenant_token() {
    let (fake, state) = vendors::feishu_app("cli_a1", "app-secret-value").await;
    let channel = format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {{name: lark-app}}\nspec:\n  type: feishu-app\n  baseUrl: \"{}\"\n  appId: cli_a1\n  appSecret: {{file: app-secret}}\n",
        fake.base
    );
    let (_h, _d, relay) = relay(&[
        ("app-secret", "app-secret-value"),
        ("10-lark.yaml", &channel),
        (
            "20-route.yaml",
            &route("lark", "lark-app", "{users: [alice]}"),
        ),
        (
            "30-gina.yaml",
            "apiVersion: hookrelay.dev/v1alpha1\nkind: Route\nmetadata: {name: gina}\nspec: {sources: [app], types: [app.assign], channels: [lark-app], to: {fromEvent: {mails: [/data/creator]}}}\n",
        ),
    ])
    .await;
    let first = post(&relay, 1).await;
    let d = relay.wait_delivery_state(&first, "delivered").await;
    assert_eq!(d["receipt"]["message_id"], "om_1");
    {
        let v = state.lock().unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        let sent = &v.sent[0];
        assert_eq!(sent["receive_id_type"], "open_id");
        assert_eq!(sent["body"]["receive_id"], "ou_alice");
        assert_eq!(sent["body"]["msg_type"], "interactive");
        assert_eq!(
            sent["body"]["uuid"],
            first.as_str(),
            "the delivery id de-duplicates"
        );
        assert_eq!(sent["content"]["header"]["title"]["content"], "构建 1");
        assert_eq!(
            sent["content"]["elements"][1]["actions"][0]["url"],
            "https://zadig.example.com/tasks/1"
        );
    }
    // The token is cached; when Feishu drops it, one fresh token and the same attempt succeeds.
    state.lock().unwrap().codes.push_back(99991663);
    let second = post(&relay, 2).await;
    let d = relay.wait_delivery_state(&second, "delivered").await;
    assert_eq!(d["attempts"], 1);
    assert_eq!(state.lock().unwrap().tokens_issued, 2);
    // A throttle waits without spending the budget.
    state.lock().unwrap().codes.push_back(230020);
    let third = post(&relay, 3).await;
    let d = relay.wait_delivery_state(&third, "delivered").await;
    assert_eq!(d["attempt_log"][0]["result"], "throttled");
    // A person known only by mail is found through the contact API, once.
    state
        .lock()
        .unwrap()
        .contacts
        .insert("gina@corp.example".into(), "ou_gina".into());
    for n in [5, 6] {
        let body = json!({"kind": "assign", "id": n, "title": "x", "status": "failed",
                          "creator": "gina@corp.example"});
        let (status, answer) = relay.post("app", &[], &body.to_string()).await;
        assert_eq!(status, 202, "{answer}");
        let e = hookrelay::ids::EventId::parse(answer["event"].as_str().unwrap()).unwrap();
        let ds = relay.store.deliveries_of(&e).await.unwrap();
        let gina = ds
            .iter()
            .find(|d| d.origin == "gina")
            .expect("a delivery to gina");
        let d = relay
            .wait_delivery_state(&gina.id.to_string(), "delivered")
            .await;
        assert_eq!(d["receipt"]["resolved"]["gina@corp.example"], "ou_gina");
        // The event's delivery to alice too: none may still be in flight when a later send is
        // scripted to fail.
        for other in ds.iter().filter(|d| d.origin != "gina") {
            relay
                .wait_delivery_state(&other.id.to_string(), "delivered")
                .await;
        }
    }
    {
        let v = state.lock().unwrap();
        assert_eq!(v.lookups, ["email:gina@corp.example"], "asked once");
        let to_gina: Vec<&Value> = v
            .sent
            .iter()
            .filter(|s| s["body"]["receive_id"] == "ou_gina")
            .collect();
        assert_eq!(to_gina.len(), 2);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }
    // A user the bot cannot reach is dead at once.
    state.lock().unwrap().codes.push_back(230013);
    let fourth = post(&relay, 4).await;
    let d = relay.wait_delivery_state(&fourth, "dead").await;
    assert_eq!(d["attempts"], 1);
    let text = d.to_string();
    assert!(
        !text.contains("app-secret-value") && !text.contains("t-2"),
        "{text}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn rate_limits_hold_one_destination_without_blocking_others() {
    let (slow, slow_state) = vendors::wecom_robot("slow-key").await;
    let (fast, fast_state) = vendors::wecom_robot("fast-key").await;
    let channels = format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {{name: slow}}\nspec: {{type: wecom-robot, key: slow-key, baseUrl: \"{}\", rateLimit: {{perMinute: 2}}}}\n---\napiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {{name: fast}}\nspec: {{type: wecom-robot, key: fast-key, baseUrl: \"{}\"}}\n",
        slow.base, fast.base
    );
    let (_h, _d, relay) = relay(&[
        ("10-robots.yaml", &channels),
        ("20-route.yaml", &route("both", "slow, fast", "{}")),
    ])
    .await;
    let mut events = Vec::new();
    for i in 0..6 {
        let (status, body) = relay.post("app", &[], &event(i)).await;
        assert_eq!(status, 202);
        events.push(hookrelay::ids::EventId::parse(body["event"].as_str().unwrap()).unwrap());
    }
    fast.wait_for(6).await;
    slow.wait_for(2).await;
    // The other four to the slow robot are held for their slots: each has a throttled attempt
    // on record and has used none of its retry budget.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut held = Vec::new();
        for e in &events {
            held.extend(
                relay
                    .store
                    .deliveries_of(e)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|d| {
                        d.channel == "slow" && d.state == hookrelay::store::DeliveryState::Pending
                    }),
            );
        }
        if held.len() == 4 && held.iter().all(|d| d.tries >= 1) {
            for d in &held {
                assert_eq!(d.attempts, 0);
                let log = relay.store.attempts(&d.id).await.unwrap();
                assert!(
                    log.iter()
                        .all(|a| a.result == hookrelay::store::AttemptResult::Throttled)
                );
            }
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "held: {held:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(slow_state.lock().unwrap().sent.len(), 2);
    assert_eq!(fast_state.lock().unwrap().sent.len(), 6);
    relay.stop().await;
}

#[tokio::test]
async fn no_channel_leaks_a_secret() {
    // Every vendor answers with an error that echoes the whole request back.
    let echo = FakeServer::with_responder(|r| {
        let echoed = format!(
            "{} {}?{} {:?} {}",
            r.method,
            r.path,
            r.query,
            r.headers,
            String::from_utf8_lossy(&r.body)
        );
        if r.path.starts_with("/open-apis") {
            Reply::json(
                200,
                json!({"code": 19024, "msg": format!("Key Words Not Found {echoed}")}),
            )
        } else if r.path.starts_with("/hook") {
            Reply::json(500, json!({"error": echoed}))
        } else if r.path.ends_with("gettoken") {
            Reply::json(
                200,
                json!({"errcode": 0, "access_token": "ACCESS-TOKEN-VALUE-42", "expires_in": 7200}),
            )
        } else {
            Reply::json(
                200,
                json!({"errcode": 40058, "errmsg": format!("invalid parameter {echoed}")}),
            )
        }
    })
    .await;
    let base = &echo.base;
    let secrets = [
        "CORP-SECRET-VALUE-42",
        "ACCESS-TOKEN-VALUE-42",
        "ROBOT-KEY-VALUE-42",
        "DING-TOKEN-VALUE-42",
        "SECDING-SECRET-VALUE-42",
        "FEISHU-TOKEN-VALUE-42",
        "FEISHU-SECRET-VALUE-42",
        "WEBHOOK-TOKEN-VALUE-42",
        "HEADER-SECRET-VALUE-42",
    ];
    let channels = format!(
        r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: c-app}}
spec: {{type: wecom-app, baseUrl: "{base}", corpId: ww1, corpSecret: {{file: s1}}, agentId: 1}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: c-robot}}
spec: {{type: wecom-robot, key: {{file: s3}}, baseUrl: "{base}"}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: c-ding}}
spec: {{type: dingtalk-robot, accessToken: {{file: s4}}, secret: {{file: s5}}, baseUrl: "{base}"}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: c-lark}}
spec: {{type: feishu-robot, token: {{file: s6}}, secret: {{file: s7}}, baseUrl: "{base}"}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: c-hook}}
spec: {{type: webhook, url: {{file: s8}}, headers: {{Authorization: {{file: s9}}}}}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: c-down}}
spec: {{type: dingtalk-robot, accessToken: {{file: s4}}, secret: {{file: s5}}, baseUrl: "http://127.0.0.1:9"}}
"#
    );
    let hook_url = format!("{base}/hook?token=WEBHOOK-TOKEN-VALUE-42");
    let (_h, _d, relay) = relay(&[
        ("s1", secrets[0]),
        ("s3", secrets[2]),
        ("s4", secrets[3]),
        ("s5", secrets[4]),
        ("s6", secrets[5]),
        ("s7", secrets[6]),
        ("s8", &hook_url),
        ("s9", &format!("Bearer {}", secrets[8])),
        ("10-channels.yaml", &channels),
        (
            "20-route.yaml",
            &route(
                "all",
                "c-app, c-robot, c-ding, c-lark, c-hook, c-down",
                "{users: [alice]}",
            ),
        ),
    ])
    .await;
    let (_, body) = relay.post("app", &[], &event(1)).await;
    let e = hookrelay::ids::EventId::parse(body["event"].as_str().unwrap()).unwrap();
    let ids: Vec<String> = relay
        .store
        .deliveries_of(&e)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id.to_string())
        .collect();
    assert_eq!(ids.len(), 6);
    let mut seen = String::new();
    for id in &ids {
        // Each one failed at least once (dead, or pending a retry): its record is written.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let d = relay.admin_get(&format!("/admin/deliveries/{id}")).await;
            if !d["attempt_log"].as_array().unwrap().is_empty() {
                seen.push_str(&d.to_string());
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no attempt for {id}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    assert!(
        seen.contains("invalid parameter"),
        "the vendor's answer is recorded: {seen}"
    );
    seen.push_str(&relay.admin_get("/admin/catalog").await.to_string());
    seen.push_str(
        &relay
            .admin_get(&format!("/admin/events/{}", e))
            .await
            .to_string(),
    );
    seen.push_str(&relay.metrics().await);
    relay.stop().await;
    seen.push_str(&logs());
    for s in secrets {
        assert!(!seen.contains(s), "{s} leaked:\n{seen}");
    }
    assert!(seen.contains("***"), "redaction marks are visible");
}

#[tokio::test]
async fn an_unaddressable_subscriber_is_reported_not_dropped() {
    let (fake, state) = vendors::wecom("ww1", "corp-secret-value").await;
    let subs = r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Subscription
metadata: {name: alice-builds}
spec:
  subscriber: {name: alice}
  channels: [corp]
  subscriptions: [{events: [{type: app.build}]}]
---
apiVersion: hookrelay.dev/v1alpha1
kind: Subscription
metadata: {name: zed-builds}
spec:
  subscriber: {name: zed}
  channels: [corp]
  subscriptions: [{events: [{type: app.build}]}]
"#;
    let (h, _d, relay) = relay(&[
        ("corp-secret", "corp-secret-value"),
        ("10-corp.yaml", &wecom_app(&fake.base, "")),
        ("30-subs.yaml", subs),
    ])
    .await;
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .arg("check")
        .arg(h.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        stdout.contains("warning: zed-builds: zed has no id for Channel corp"),
        "check names the unaddressable subscriber: {stdout}"
    );
    let catalog = relay.admin_get("/admin/catalog").await;
    assert_eq!(
        catalog["report"]["unresolved"],
        json!([{"origin": "zed-builds", "user": "zed", "channel": "corp"}])
    );
    let (_, body) = relay.post("app", &[], &event(1)).await;
    assert_eq!(body["deliveries"], 1, "alice only");
    fake.wait_for(2).await;
    assert_eq!(state.lock().unwrap().sent[0]["touser"], "Alice.W");
    let metrics = relay.metrics().await;
    assert!(
        metrics.contains("hookrelay_recipients_unresolved_total{channel=\"corp\"} 1"),
        "{metrics}"
    );
    assert!(
        logs().contains("zed"),
        "the unaddressable subscriber is logged"
    );
    relay.stop().await;
}

/// The sink process, its address, and what it printed so far.
struct Sink {
    child: std::process::Child,
    base: String,
    printed: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sink(args: &[&str]) -> Sink {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["sink", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let p = printed.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let mut p = p.lock().unwrap();
            p.push_str(&line);
            p.push('\n');
        }
    });
    Sink {
        child,
        base,
        printed,
    }
}

#[tokio::test]
async fn the_sink_answers_like_each_vendor_and_shows_each_message() {
    let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let sink = sink(&[
        "--webhook-secret",
        whsec,
        "--dingtalk-secret",
        "SECding",
        "--feishu-secret",
        "lark-secret",
    ]);
    let base = &sink.base;
    let channels = format!(
        r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: corp}}
spec: {{type: wecom-app, baseUrl: "{base}", corpId: ww1, corpSecret: s, agentId: 1000002}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: robot}}
spec: {{type: wecom-robot, key: k, baseUrl: "{base}"}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: ding}}
spec: {{type: dingtalk-robot, accessToken: t, secret: SECding, baseUrl: "{base}"}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: lark}}
spec: {{type: feishu-robot, token: t, secret: lark-secret, baseUrl: "{base}"}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: lark-app}}
spec: {{type: feishu-app, appId: cli_a1, appSecret: s, baseUrl: "{base}"}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: hook}}
spec: {{type: webhook, url: "{base}/in", signing: {{secret: "{whsec}"}}}}
"#
    );
    let (_h, _d, relay) = relay(&[
        ("10-channels.yaml", &channels),
        (
            "20-route.yaml",
            &route(
                "all",
                "corp, robot, ding, lark, lark-app, hook",
                "{users: [alice]}",
            ),
        ),
    ])
    .await;
    let (_, body) = relay.post("app", &[], &event(7)).await;
    let e = hookrelay::ids::EventId::parse(body["event"].as_str().unwrap()).unwrap();
    for d in relay.store.deliveries_of(&e).await.unwrap() {
        relay
            .wait_delivery_state(&d.id.to_string(), "delivered")
            .await;
    }
    let headers = [
        "── WeCom app (agent 1000002) → users Alice.W [markdown]",
        "── WeCom robot [markdown]",
        "── DingTalk robot [markdown] @ ding-alice",
        "── Feishu bot (signature ✔)",
        "── Feishu app → receive_id_type=open_id ou_alice [interactive]",
        "── webhook /in → alice (signature ✔)",
    ];
    // Each was answered after it was printed; the pipe may still hold the last lines.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let printed = loop {
        let printed = sink.printed.lock().unwrap().clone();
        if headers.iter().all(|h| printed.contains(h)) || tokio::time::Instant::now() > deadline {
            break printed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    for header in headers {
        assert!(printed.contains(header), "{header} in:\n{printed}");
    }
    assert!(
        printed.contains("DingTalk robot") && !printed.contains("✘"),
        "every signature verifies:\n{printed}"
    );
    assert!(
        printed.contains("构建 7 失败"),
        "the message is shown:\n{printed}"
    );
    relay.stop().await;
}
