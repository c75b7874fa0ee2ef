//! Route + render per event with 10, 1,000 and 10,000 personal subscriptions (one
//! ClusterSubscription per person, as the ACP guide has it).
//!
//! Two shapes of company: people spread over team namespaces (ten per namespace, so an event's
//! namespace narrows the candidates to ten), and everyone subscribed to one shared namespace
//! (only the event type and CEL can tell them apart).
//!
//! `cargo bench --bench route` (`ROUTE_BENCH_SIZES=10,1000` for fewer sizes)

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hookrelay::catalog::{Catalog, Loader};
use hookrelay::config::Settings;
use hookrelay::event::{Data, Event};
use serde_json::json;

const SEED: &str = include_str!("../tests/fixtures/acp/clustersubscription-admin.yaml");
const RUN: &str = include_str!("../tests/fixtures/acp/artifactpromotionrun.json");
const TEMPLATES: &str = include_str!("../hooks.d/20-acp.yaml");

fn user(i: usize) -> String {
    format!("user{i:05}")
}

/// A catalog of `n` people, each with a User entry and the seed's subscription, in namespace
/// `namespace_of(i)`.
fn catalog(n: usize, namespace_of: impl Fn(usize) -> String) -> Catalog {
    let dir = tempfile::tempdir().unwrap();
    let mut docs = vec![
        "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {name: corpwechat}\nspec: {type: webhook, url: \"http://127.0.0.1:9/\"}\n".to_string(),
    ];
    for i in 0..n {
        let u = user(i);
        docs.push(format!(
            "apiVersion: hookrelay.dev/v1alpha1\nkind: User\nmetadata: {{name: {u}}}\nspec: {{wecom: {u}}}\n"
        ));
        docs.push(SEED.replace("admin", &u).replace(
            "namespace: \"devops\"",
            &format!("namespace: \"{}\"", namespace_of(i)),
        ));
    }
    std::fs::write(dir.path().join("10-acp.yaml"), TEMPLATES).unwrap();
    std::fs::write(dir.path().join("20-people.yaml"), docs.join("---\n")).unwrap();
    let settings = Arc::new(Settings::defaults());
    let c = Loader::new(dir.path(), settings, reqwest::Client::new()).load(true);
    assert!(c.report.errors.is_empty(), "{:?}", c.report.errors.first());
    assert_eq!(c.subscriptions.len(), n);
    c
}

/// An approval-pending event in `namespace` naming two approvers.
fn event(namespace: &str, approvers: [&str; 2]) -> Event {
    let mut run: serde_json::Value = serde_json::from_str(RUN).unwrap();
    run["metadata"]["namespace"] = json!(namespace);
    run["status"]["artifactPromotionSpec"]["approvalSpec"]["users"] =
        json!([{"kind": "User", "name": approvers[0]}, {"kind": "User", "name": approvers[1]}]);
    let ext = |v: &str| json!(v);
    Event {
        receiver: "acp".into(),
        id: "bench-1".into(),
        source: "/apis/artifacts.katanomi.dev/v1alpha1/namespaces/x/artifactpromotionrun/web/"
            .into(),
        ty: "dev.katanomi.cloudevents.kubeevent.artifactpromotionrun.approvalpending.v1alpha1"
            .into(),
        specversion: "1.0".into(),
        subject: None,
        time: None,
        datacontenttype: None,
        dataschema: None,
        extensions: [
            ("involvedobjectgroup", ext("artifacts.katanomi.dev")),
            ("involvedobjectversion", ext("v1alpha1")),
            ("involvedobjectkind", ext("ArtifactPromotionRun")),
            ("involvedobjectname", ext("web-to-prod-x7k2p")),
            ("involvedobjectnamespace", ext(namespace)),
            ("eventreason", ext("approvalpending")),
            ("eventtype", ext("Normal")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        data: Data::Json(
            json!({"event": {"reason": "ApprovalPending", "type": "Normal"}, "object": run}),
        ),
        message: None,
    }
}

fn route_and_render(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    // ROUTE_BENCH_SIZES=10,1000 narrows the sizes (building 10,000 subscriptions takes a while).
    let sizes: Vec<usize> = std::env::var("ROUTE_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 1_000, 10_000]);
    let book = hookrelay::plan::DigestBook::default();
    for n in sizes {
        let teams = catalog(n, |i| format!("team-{}", i / 10));
        let e = event(
            &format!("team-{}", (n - 1) / 10),
            [&user(n - 1), &user(n - 2)],
        );
        assert_eq!(
            hookrelay::plan::plan(&teams, &e, 0, &book).deliveries.len(),
            2
        );
        group.bench_with_input(BenchmarkId::new("team-namespaces", n), &e, |b, e| {
            b.iter(|| hookrelay::plan::plan(&teams, e, 0, &book))
        });
        drop(teams);
        let shared = catalog(n, |_| "devops".to_string());
        let e = event("devops", [&user(n / 2), &user(n - 1)]);
        assert_eq!(
            hookrelay::plan::plan(&shared, &e, 0, &book)
                .deliveries
                .len(),
            2
        );
        group.bench_with_input(BenchmarkId::new("one-namespace", n), &e, |b, e| {
            b.iter(|| hookrelay::plan::plan(&shared, e, 0, &book))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = route_and_render
}
criterion_main!(benches);
