//! The console's server side: its files under a strict policy (off without an admin token),
//! and the admin API it reads — the overview, delivery previews, templates, the playground.
//! The pages themselves are tested in a browser by `scripts/console_test.py`.

use serde_json::{Value, json};

use crate::support::*;

const CI: &str = r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {name: ci}
spec:
  auth: none
  event:
    type: [{pointer: /kind, prefix: "ci."}]
    id: [{pointer: /id}]
---
apiVersion: hookrelay.dev/v1alpha1
kind: Template
metadata: {name: ci}
spec:
  types: ["ci.*"]
  text: "build {{data.title}}"
---
apiVersion: hookrelay.dev/v1alpha1
kind: Route
metadata: {name: to-hook}
spec: {sources: [ci], channels: [hook]}
"#;

fn channel(url: &str) -> String {
    format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {{name: hook}}\n\
         spec: {{type: webhook, url: \"{url}/in?token=s3cret-in-url\"}}\n"
    )
}

async fn start(fake: &FakeServer) -> (Hooks, tempfile::TempDir, TestRelay) {
    let hook = channel(&fake.base);
    start_clean(&[("10-ci.yaml", CI), ("20-channel.yaml", &hook)], |_| {}).await
}

async fn render(relay: &TestRelay, body: Value) -> (u16, Value) {
    let resp = relay
        .client
        .post(format!("{}/admin/render", relay.base))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn the_console_is_served_under_a_strict_policy_and_off_without_a_token() {
    let fake = FakeServer::start().await;
    let (_h, _d, relay) = start(&fake).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str| client.get(format!("{}{path}", relay.base)).send();
    let resp = get("/console").await.unwrap();
    assert_eq!(resp.status(), 301);
    assert_eq!(resp.headers()["location"], "/console/");

    let resp = get("/console/").await.unwrap();
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let html = resp.text().await.unwrap();
    // No inline script for the policy to forbid: every script is a file of the console.
    for tag in html.split("<script").skip(1) {
        assert!(tag.trim_start().contains("src="), "inline script: {tag}");
    }

    // Every module the pages import is served (a file missing from the build is a blank page).
    let mut pending = vec!["app.js".to_string()];
    let mut seen = std::collections::HashSet::new();
    while let Some(path) = pending.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let resp = get(&format!("/console/{path}")).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/javascript"),
            "{path}"
        );
        let text = resp.text().await.unwrap();
        assert!(!text.contains("innerHTML"), "{path} writes markup");
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        for import in text.split(" from \"").skip(1) {
            let target = import.split('"').next().unwrap();
            let mut parts: Vec<&str> = if dir.is_empty() {
                vec![]
            } else {
                dir.split('/').collect()
            };
            for seg in target.split('/') {
                match seg {
                    "." => {}
                    ".." => {
                        parts.pop();
                    }
                    s => parts.push(s),
                }
            }
            pending.push(parts.join("/"));
        }
    }
    assert!(seen.len() >= 8, "{seen:?}");
    let css = get("/console/style.css").await.unwrap();
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let missing = get("/console/nope.js").await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"], "not_found");
    relay.stop().await;

    // Off without an admin token.
    let (_h, _d, relay) = {
        let h = Hooks::new(&[
            ("10-ci.yaml", CI),
            ("20-channel.yaml", &channel(&fake.base)),
        ]);
        let d = data_dir();
        let mut s = settings(h.path(), d.path());
        s.admin_token = None;
        let relay = TestRelay::start(s).await;
        (h, d, relay)
    };
    let resp = reqwest::get(format!("{}/console/", relay.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("admin_token"));
    relay.stop().await;
}

#[tokio::test]
async fn the_playground_renders_without_storing_or_sending() {
    let fake = FakeServer::start().await;
    let (_h, _d, relay) = start(&fake).await;
    let body = r#"{"kind": "push", "id": "p1", "title": "<b>main</b>"}"#;
    let (status, r) = render(&relay, json!({"source": "ci", "body": body})).await;
    assert_eq!(status, 200, "{r:#}");
    let event = &r["events"][0];
    assert_eq!(event["type"], "ci.push");
    assert_eq!(event["routing"][0]["what"], "Route to-hook");
    assert_eq!(event["routing"][0]["matched"], true);
    let d = &event["deliveries"][0];
    assert_eq!(d["channel"], "hook");
    assert_eq!(d["template"], "ci");
    assert_eq!(d["message"]["content"], "build <b>main</b>");
    let url = d["request"]["url"].as_str().unwrap();
    assert!(!url.contains("s3cret-in-url"), "{url}");
    assert_eq!(d["request"]["body"]["text"]["content"], "build <b>main</b>");

    // The loaded template's document, edited and rendered in its place.
    let t = relay.admin_get("/admin/templates/ci").await;
    assert_eq!(t["builtin"], false);
    let mut doc = t["document"].clone();
    assert_eq!(doc["spec"]["text"], "build {{data.title}}");
    doc["spec"]["text"] = json!("edited {{data.title}}");
    let (status, r) = render(
        &relay,
        json!({"source": "ci", "body": body, "template": doc.to_string()}),
    )
    .await;
    assert_eq!(status, 200, "{r:#}");
    assert_eq!(
        r["events"][0]["deliveries"][0]["message"]["content"],
        "edited <b>main</b>"
    );
    // A built-in one is there to edit too.
    let builtin = relay.admin_get("/admin/templates/zadig.workflow").await;
    assert_eq!(builtin["builtin"], true);
    assert_eq!(builtin["document"]["kind"], "Template");

    // A template that does not compile is named; nothing renders with it.
    let broken = "apiVersion: hookrelay.dev/v1alpha1\nkind: Template\nmetadata: {name: ci}\nspec: {text: '{{#if}}'}\n";
    let (status, r) = render(
        &relay,
        json!({"source": "ci", "body": body, "template": broken}),
    )
    .await;
    assert_eq!(status, 400, "{r:#}");
    assert_eq!(r["error"], "bad_template");
    assert!(
        r["errors"][0].as_str().unwrap().contains("/spec/text"),
        "{r:#}"
    );

    // Refusals are the relay's own: an unknown Source, a body over the limit, bad JSON.
    let (_, r) = render(&relay, json!({"source": "nope", "body": body})).await;
    assert_eq!(r["refused"]["status"], 404);
    assert!(r["refused"]["message"].as_str().unwrap().contains("ci"));
    let (_, r) = render(&relay, json!({"source": "ci", "body": "not json"})).await;
    assert_eq!(r["refused"]["status"], 400, "{r:#}");
    let (status, r) = render(&relay, json!({"source": "ci", "bodyy": body})).await;
    assert_eq!(status, 400);
    assert_eq!(r["error"], "bad_request");

    // Nothing stored, nothing sent.
    let stats = relay.admin_get("/admin/stats").await;
    assert_eq!(stats["counts"]["events"], 0, "{stats:#}");
    assert!(fake.requests().is_empty());
    let resp = relay
        .client
        .get(format!("{}/admin/templates/none", relay.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    relay.stop().await;
}

#[tokio::test]
async fn the_overview_and_a_delivery_show_what_happened() {
    let fake = FakeServer::start().await;
    let (_h, _d, relay) = start(&fake).await;
    let (status, answer) = relay
        .post("ci", &[], r#"{"kind": "push", "id": "o1", "title": "t"}"#)
        .await;
    assert_eq!(status, 202, "{answer}");
    let event = answer["event"].as_str().unwrap();
    let stored = relay.admin_get(&format!("/admin/events/{event}")).await;
    let id = stored["deliveries"][0]["id"].as_str().unwrap().to_string();
    relay.wait_delivery_state(&id, "delivered").await;

    let o = relay.admin_get("/admin/overview").await;
    assert_eq!(o["timezone"], "+08:00");
    let minutes = o["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    let events: u64 = minutes.iter().map(|m| m["events"].as_u64().unwrap()).sum();
    let delivered: u64 = minutes
        .iter()
        .map(|m| m["delivered"].as_u64().unwrap())
        .sum();
    assert_eq!((events, delivered), (1, 1), "{o:#}");
    assert!(
        minutes
            .windows(2)
            .all(|w| w[0]["minute"].as_u64() < w[1]["minute"].as_u64())
    );
    assert_eq!(o["counts"]["events"], 1);
    assert_eq!(o["counts"]["dead"], 0);
    assert_eq!(o["store"]["writable"], true);
    assert_eq!(o["store"]["engine"], "fjall");
    assert_eq!(o["catalog"]["errors"], json!([]));

    // The delivery carries the request as the receiver got it, its credential redacted.
    let d = relay.admin_get(&format!("/admin/deliveries/{id}")).await;
    assert_eq!(d["request"]["body"]["text"]["content"], "build t");
    assert!(!d["request"]["url"].as_str().unwrap().contains("s3cret"));
    let got = fake.requests();
    assert_eq!(got[0].json()["text"]["content"], "build t");

    // The catalog names each resource's origin.
    let c = relay.admin_get("/admin/catalog").await;
    let serving = c["report"]["serving"].as_array().unwrap();
    let source = serving.iter().find(|s| s["kind"] == "Source").unwrap();
    assert!(source["file"].as_str().unwrap().ends_with("10-ci.yaml"));
    assert_eq!(source["document"], 1);
    let builtin = serving
        .iter()
        .find(|s| s["name"] == "zadig.workflow")
        .unwrap();
    assert!(builtin.get("file").is_none(), "{builtin}");
    relay.stop().await;
}
