//! The request path before the store: authenticate and decode a hook (token, HMAC, Standard
//! Webhooks; CloudEvents binary, structured and batch), and render one message from an event.
//!
//! `cargo bench --bench ingress`

use std::path::Path;
use std::sync::Arc;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hookrelay::catalog::{Catalog, Loader};
use hookrelay::config::Settings;
use hookrelay::event::Event;
use hookrelay::ids::now_ms;
use hookrelay::signature;
use serde_json::{Value, json};

const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const HMAC_KEY: &str = "bench-hmac-secret";

const SOURCES: &str = r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {name: gitlab}
spec: {preset: gitlab, auth: {token: {secret: {file: token}}}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {name: github}
spec: {preset: github, auth: {hmac: {secret: {file: hmac}}}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {name: zadig}
spec: {preset: zadig, auth: {standardWebhooks: {secret: {file: whsec}}}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {name: acp}
spec: {preset: cloudevents, auth: none}
"#;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn load(dir: &Path) -> Catalog {
    let c = Loader::new(dir, Arc::new(Settings::defaults()), reqwest::Client::new()).load(true);
    assert!(c.report.errors.is_empty(), "{:?}", c.report.errors.first());
    c
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::try_from(*k).unwrap(),
                HeaderValue::try_from(*v).unwrap(),
            )
        })
        .collect()
}

/// A request to one Source: its name, headers and body.
struct Request {
    source: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// The ACP example's CloudEvent, in structured and binary mode and as a batch of ten.
fn cloudevents() -> [(&'static str, Request); 3] {
    let example: Value =
        serde_json::from_slice(&fixture("examples/acp-artifact-promotion/request.json")).unwrap();
    let ce = example["body"].clone();
    let mut binary = vec![("content-type".to_string(), "application/json".to_string())];
    for (k, v) in ce.as_object().unwrap() {
        if k != "data" {
            binary.push((format!("ce-{k}"), v.as_str().unwrap().to_string()));
        }
    }
    let binary: Vec<(&str, &str)> = binary
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let batch: Vec<Value> = (0..10)
        .map(|i| {
            let mut e = ce.clone();
            e["id"] = json!(format!("batch-{i}"));
            e
        })
        .collect();
    [
        (
            "cloudevent-structured",
            Request {
                source: "acp".into(),
                headers: headers(&[("content-type", "application/cloudevents+json")]),
                body: serde_json::to_vec(&ce).unwrap(),
            },
        ),
        (
            "cloudevent-binary",
            Request {
                source: "acp".into(),
                headers: headers(&binary),
                body: serde_json::to_vec(&ce["data"]).unwrap(),
            },
        ),
        (
            "cloudevent-batch-10",
            Request {
                source: "acp".into(),
                headers: headers(&[("content-type", "application/cloudevents-batch+json")]),
                body: serde_json::to_vec(&batch).unwrap(),
            },
        ),
    ]
}

/// System hooks with each kind of authentication.
fn system_hooks() -> [(&'static str, Request); 3] {
    let gitlab = fixture("tests/fixtures/gitlab/merge-request.json");
    let github = fixture("tests/fixtures/github/pull-request-opened.json");
    let zadig = fixture("tests/fixtures/zadig/workflow-passed.json");
    let hub = format!(
        "sha256={}",
        hex::encode(signature::hmac_sha256(HMAC_KEY.as_bytes(), &[&github]))
    );
    let now = (now_ms() / 1000) as i64;
    let key = signature::decode_whsec(WHSEC).unwrap();
    let sig = signature::standard_webhooks_sign(&key, "msg_1", now, &zadig);
    let ts = now.to_string();
    [
        (
            "token-gitlab",
            Request {
                source: "gitlab".into(),
                headers: headers(&[
                    ("content-type", "application/json"),
                    ("x-gitlab-token", "bench-token"),
                    ("x-gitlab-event", "Merge Request Hook"),
                ]),
                body: gitlab,
            },
        ),
        (
            "hmac-github",
            Request {
                source: "github".into(),
                headers: headers(&[
                    ("content-type", "application/json"),
                    ("x-hub-signature-256", &hub),
                    ("x-github-event", "pull_request"),
                    ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                ]),
                body: github,
            },
        ),
        (
            "standard-webhooks-zadig",
            Request {
                source: "zadig".into(),
                headers: headers(&[
                    ("content-type", "application/json"),
                    ("webhook-id", "msg_1"),
                    ("webhook-timestamp", &ts),
                    ("webhook-signature", &sig),
                ]),
                body: zadig,
            },
        ),
    ]
}

fn decode(catalog: &Catalog, r: &Request) -> Vec<Event> {
    let source = &catalog.sources[&r.source];
    hookrelay::ingress::decode(source, &r.headers, &r.body, now_ms())
        .unwrap()
        .events
}

fn ingress(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "bench-token").unwrap();
    std::fs::write(dir.path().join("hmac"), HMAC_KEY).unwrap();
    std::fs::write(dir.path().join("whsec"), WHSEC).unwrap();
    std::fs::write(dir.path().join("10-sources.yaml"), SOURCES).unwrap();
    let catalog = load(dir.path());
    let mut group = c.benchmark_group("ingress");
    for (name, r) in system_hooks().into_iter().chain(cloudevents()) {
        assert!(!decode(&catalog, &r).is_empty(), "{name} decodes");
        group.throughput(Throughput::Bytes(r.body.len() as u64));
        group.bench_with_input(BenchmarkId::new("decode", name), &r, |b, r| {
            b.iter(|| decode(&catalog, r))
        });
    }
    group.finish();
}

/// One message per example whose templates render it: the ACP approval (WeCom app message, a
/// built-in template) and a Zadig run (DingTalk robot markdown).
fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    for (example, channel) in [
        ("acp-artifact-promotion", "corpwechat"),
        ("zadig-robots", "dev-dingtalk"),
    ] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(example);
        let catalog = load(&root.join("hooks.d"));
        let request: Value =
            serde_json::from_slice(&std::fs::read(root.join("request.json")).unwrap()).unwrap();
        let r = Request {
            source: request["source"].as_str().unwrap().into(),
            headers: headers(
                &request["headers"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
                    .collect::<Vec<_>>(),
            ),
            body: serde_json::to_vec(&request["body"]).unwrap(),
        };
        let event = decode(&catalog, &r).remove(0);
        let channel = catalog.channels[channel].clone();
        let template = catalog.template_for(&event.ty).map(|t| t.name.clone());
        assert!(template.is_some(), "{example} has a template");
        let render = || hookrelay::plan::rerender(&catalog, &event, template.as_deref(), &channel);
        assert!(render().is_ok(), "{example} renders");
        group.bench_function(BenchmarkId::new("message", example), |b| b.iter(render));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = ingress, render
}
criterion_main!(benches);
