//! Every built-in template, rendered whole in both languages: what a person reads.

use std::path::Path;
use std::sync::Arc;

use hookrelay::catalog::{Catalog, Loader};
use hookrelay::render::RenderCtx;
use serde_json::{Value, json};

fn catalog(lang: &str) -> Catalog {
    let dir = tempfile::tempdir().unwrap();
    let mut s = hookrelay::config::Settings::defaults();
    s.vars.insert("lang".into(), lang.into());
    s.vars.insert("timezone".into(), "Asia/Shanghai".into());
    let c = Loader::new(dir.path(), Arc::new(s), hookrelay::channel::http::client()).load(true);
    assert!(c.report.errors.is_empty(), "{:?}", c.report.errors);
    c
}

fn example_body(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
        .join("request.json");
    let request: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    request["body"].clone()
}

/// A CloudEvent of `ty` carrying `data`, as a system hook becomes one.
fn hook(ty: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": "id-1", "source": "/hooks/x", "type": ty, "data": data})
}

/// `title`, `content` and `url` of template `name` rendered for `ce`.
fn render(c: &Catalog, name: &str, ce: &Value) -> String {
    let t = c
        .templates
        .get(name)
        .unwrap_or_else(|| panic!("no template {name}"));
    let ctx = RenderCtx::for_event(ce.clone(), &c.vars, None);
    let m = t
        .render(&ctx, "team", "webhook")
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    shown(m)
}

/// A message as the golden files hold it: title, URL, content.
fn shown(m: hookrelay::message::Message) -> String {
    format!(
        "title: {}\nurl: {}\n{}",
        m.title.unwrap_or_default(),
        m.url.unwrap_or_default(),
        m.content
    )
}

/// Asserts that `got` is the text a person reviewed for template `name` in `lang`
/// (`tests/it/messages/<name>.<lang>.txt`); `HOOKRELAY_BLESS=1` writes it instead, for review.
fn golden(name: &str, lang: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/messages")
        .join(format!("{name}.{lang}.txt"));
    if std::env::var_os("HOOKRELAY_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(got, want, "{name} in {lang}");
}

fn cases() -> Vec<(&'static str, Value)> {
    vec![
        (
            "alertmanager",
            hook("alertmanager.firing", example_body("kubesphere-alerts")),
        ),
        (
            "gitlab.system",
            hook("gitlab.system.user_create", example_body("gitlab-webhook")),
        ),
        (
            "gitlab.merge_request",
            hook(
                "gitlab.merge_request",
                json!({"object_kind": "merge_request", "user": {"name": "Li Si"},
                       "project": {"path_with_namespace": "devops/web"},
                       "object_attributes": {"iid": 12, "title": "fix: retry on 502", "action": "open",
                           "state": "opened", "source_branch": "fix/retry", "target_branch": "main",
                           "url": "https://gitlab.example.com/devops/web/-/merge_requests/12"}}),
            ),
        ),
        (
            "gitlab.push",
            hook(
                "gitlab.push",
                json!({"object_kind": "push", "user_name": "Li Si", "ref": "refs/heads/main",
                       "total_commits_count": 2, "project": {"path_with_namespace": "devops/web"},
                       "commits": [{"title": "fix: retry on 502", "url": "https://gitlab.example.com/c/1", "author": {"name": "Li Si"}},
                                   {"title": "docs", "url": "https://gitlab.example.com/c/2", "author": {"name": "Li Si"}}]}),
            ),
        ),
        (
            "zadig.workflow",
            hook("zadig.workflow.passed", example_body("zadig-robots")),
        ),
        (
            "zadig.release_plan",
            hook(
                "zadig.release_plan.success",
                json!({"object_kind": "release_plan", "release_plan": {"name": "v2.3", "status": "success",
                       "manager": "admin", "description": "季度发布", "detail_url": "https://zadig.example.com/rp/1"}}),
            ),
        ),
        (
            "git.push",
            hook(
                "github.push",
                json!({"ref": "refs/heads/main", "compare": "https://github.com/o/r/compare/a...b",
                       "repository": {"full_name": "o/r"}, "pusher": {"name": "octocat"},
                       "commits": [{"message": "fix: retry", "author": {"name": "Octo Cat"}}]}),
            ),
        ),
        (
            "git.pull_request",
            hook(
                "github.pull_request.opened",
                json!({"action": "opened", "sender": {"login": "octocat"}, "repository": {"full_name": "o/r"},
                       "pull_request": {"number": 7, "title": "Add retries", "html_url": "https://github.com/o/r/pull/7",
                           "merged": false, "head": {"ref": "retries"}, "base": {"ref": "main"}}}),
            ),
        ),
        ("generic", hook("x.y", json!({"a": 1}))),
        ("kubeevent", pod_backoff()),
        ("knative.apiserver", apiserver_event()),
    ]
}

/// A Pod's BackOff warning as ACP's Kube Event Enricher sends it.
fn pod_backoff() -> Value {
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web-7d9f8-x2x.17a2b3c4", "namespace": "devops"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "web-7d9f8-x2x", "namespace": "devops"},
        "reason": "BackOff", "type": "Warning",
        "message": "Back-off restarting failed container web in pod web-7d9f8-x2x",
        "count": 12,
        "firstTimestamp": "2026-12-01T02:00:00Z", "lastTimestamp": "2026-12-01T02:14:30Z",
        "source": {"component": "kubelet", "host": "node-3"}
    });
    json!({
        "specversion": "1.0", "id": "ke-1",
        "type": "dev.katanomi.cloudevents.kubeevent.pod.backoff.v1alpha1",
        "source": "/api/v1/namespaces/devops/pods/web-7d9f8-x2x",
        "involvedobjectkind": "Pod", "involvedobjectname": "web-7d9f8-x2x",
        "involvedobjectnamespace": "devops", "eventreason": "backoff", "eventtype": "Warning",
        "data": {"event": event, "object": {"kind": "Pod", "metadata": {"name": "web-7d9f8-x2x"}}}
    })
}

/// A Knative ApiServerSource watching Events (resource mode): the Event is the data.
fn apiserver_event() -> Value {
    json!({
        "specversion": "1.0", "id": "as-1",
        "type": "dev.knative.apiserver.resource.add",
        "source": "https://10.96.0.1:443",
        "subject": "/apis/v1/namespaces/devops/events/web.17a2b3c4",
        "data": {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.17a2b3c4", "namespace": "devops"},
            "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "devops"},
            "reason": "ScalingReplicaSet", "type": "Normal",
            "message": "Scaled up replica set web-7d9f8 to 3", "count": 1,
            "lastTimestamp": "2026-12-01T02:14:30Z"
        }
    })
}

/// The whole message each built-in template gives, in each language, against the text a person
/// reviewed (`tests/it/messages/<template>.<lang>.txt`).
#[test]
fn every_builtin_template_reads_whole_in_both_languages() {
    let mut seen = 0;
    for lang in ["zh", "en"] {
        let c = catalog(lang);
        let mut cases: Vec<(String, Value)> = cases()
            .into_iter()
            .map(|(n, ce)| (n.to_string(), ce))
            .collect();
        let acp = example_body("acp-artifact-promotion");
        for t in c
            .templates
            .values()
            .filter(|t| t.name.starts_with("kubeevent."))
        {
            let reason = t.name.rsplit('.').next().unwrap();
            let mut ce = acp.clone();
            ce["type"] = json!(format!(
                "dev.katanomi.cloudevents.kubeevent.artifactpromotionrun.{reason}.v1alpha1"
            ));
            cases.push((t.name.clone(), ce));
        }
        let builtin = c
            .templates
            .values()
            .filter(|t| t.builtin && !t.digest)
            .count();
        assert_eq!(cases.len(), builtin, "every built-in template has a case");
        for (name, ce) in cases {
            golden(&name, lang, &render(&c, &name, &ce));
            seen += 1;
        }
    }
    assert!(seen >= 2 * 13, "{seen}");
}

/// The whole message each built-in digest template gives for two events, in each language
/// (`tests/it/messages/<template>.<lang>.txt`).
#[test]
fn every_builtin_digest_template_reads_whole_in_both_languages() {
    let zadig = |id: u64, status: &str| {
        let mut body = example_body("zadig-robots");
        body["workflow"]["task_id"] = json!(id);
        body["workflow"]["status"] = json!(status);
        hook(&format!("zadig.workflow.{status}"), body)
    };
    let resolved = {
        let mut body = example_body("kubesphere-alerts");
        body["status"] = json!("resolved");
        hook("alertmanager.resolved", body)
    };
    let cases = [
        (
            "digest",
            "generic",
            vec![hook("x.y", json!({"a": 1})), hook("x.z", json!({"a": 2}))],
        ),
        (
            "zadig.workflow.digest",
            "zadig.workflow",
            vec![zadig(41, "failed"), zadig(42, "passed")],
        ),
        (
            "alertmanager.digest",
            "alertmanager",
            vec![
                hook("alertmanager.firing", example_body("kubesphere-alerts")),
                resolved,
            ],
        ),
    ];
    for lang in ["zh", "en"] {
        let c = catalog(lang);
        let digests = c.templates.values().filter(|t| t.digest).count();
        assert_eq!(
            digests,
            cases.len(),
            "every built-in digest template has a case"
        );
        for (name, single, events) in &cases {
            let events: Vec<Value> = events
                .iter()
                .map(|ce| {
                    let ctx = RenderCtx::for_event(ce.clone(), &c.vars, None);
                    let alone = c.templates[*single]
                        .render(&ctx, "team", "webhook")
                        .unwrap();
                    let mut ce = ce.clone();
                    ce["message"] = serde_json::to_value(alone).unwrap();
                    ce
                })
                .collect();
            let m = c.templates[*name]
                .render(
                    &hookrelay::plan::digest::context(&c.vars, events),
                    "team",
                    "webhook",
                )
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            golden(name, lang, &shown(m));
        }
    }
}

/// An ApiServerSource in reference mode (the default) sends only the object's reference: the
/// message names it and what happened to it.
#[test]
fn an_apiserver_reference_reads_as_what_happened_to_which_object() {
    let c = catalog("en");
    let ce = json!({
        "specversion": "1.0", "id": "as-2", "type": "dev.knative.apiserver.ref.delete",
        "source": "https://10.96.0.1:443",
        "data": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "devops"}
    });
    let text = render(&c, "knative.apiserver", &ce);
    assert!(
        text.starts_with("title: Deployment devops/web deleted\n"),
        "{text}"
    );
    assert!(text.contains("**Deployment devops/web deleted**"), "{text}");
    assert!(text.contains("> apiVersion: apps/v1"), "{text}");
    let zh = render(&catalog("zh"), "knative.apiserver", &ce);
    assert!(
        zh.starts_with("title: Deployment devops/web 已删除\n"),
        "{zh}"
    );
    // An unknown kube event type goes to the kube-event template, not the JSON dump.
    let unknown = json!({"type": "dev.katanomi.cloudevents.kubeevent.job.failed.v1alpha1"});
    assert_eq!(
        c.template_for(unknown["type"].as_str().unwrap())
            .map(|t| t.name.as_str()),
        Some("kubeevent")
    );
    assert_eq!(
        c.template_for("dev.katanomi.cloudevents.kubeevent.artifactpromotionrun.failed.v1alpha1")
            .map(|t| t.name.as_str()),
        Some("kubeevent.artifactpromotionrun.failed")
    );
}
