//! The ACP/Katanomi scenario: CloudEvents from a Knative Broker, the seed's ClusterSubscription
//! YAML as written, and each person notified only of what concerns them.

use serde_json::{Value, json};

use crate::support::*;

/// The seed's example, verbatim (with the `\$(subscriber.name)` escapes of its heredoc).
const SEED_SUBSCRIPTION: &str = include_str!("../fixtures/acp/clustersubscription-admin.yaml");
const RUN: &str = include_str!("../fixtures/acp/artifactpromotionrun.json");
const SHIPPED: &str = include_str!("../../hooks.d/20-acp.yaml");
const NS: &str = "devops";

/// The seed's subscription for another user, as the shell would have applied it (`$(…)`).
fn subscription_for(user: &str) -> String {
    SEED_SUBSCRIPTION
        .replace("admin", user)
        .replace("\\$(", "$(")
}

fn hooks(receiver: &str, extra: &[(&str, &str)]) -> Hooks {
    let channel = format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {{name: corpwechat}}\nspec: {{type: webhook, url: \"{receiver}/corpwechat\"}}\n"
    );
    let users = ["admin", "alice", "bob", "carol"]
        .iter()
        .map(|u| format!("apiVersion: hookrelay.dev/v1alpha1\nkind: User\nmetadata: {{name: {u}}}\nspec: {{mail: {u}@example.com}}\n"))
        .collect::<Vec<_>>()
        .join("---\n");
    let (alice, bob, carol) = (
        subscription_for("alice"),
        subscription_for("bob"),
        subscription_for("carol"),
    );
    let mut files: Vec<(&str, &str)> = vec![
        ("10-acp.yaml", SHIPPED),
        ("20-channel.yaml", &channel),
        ("30-users.yaml", &users),
        ("40-admin.yaml", SEED_SUBSCRIPTION),
        ("41-alice.yaml", &alice),
        ("42-bob.yaml", &bob),
        ("43-carol.yaml", &carol),
    ];
    files.extend_from_slice(extra);
    Hooks::new(&files)
}

const TYPE_PREFIX: &str = "dev.katanomi.cloudevents.kubeevent.artifactpromotionrun";

/// A Kube Event Enricher CloudEvent (structured) about the fixture run.
fn enriched(reason: &str, message: Option<&str>, namespace: &str, id: &str) -> Value {
    let mut run: Value = serde_json::from_str(RUN).unwrap();
    run["metadata"]["namespace"] = json!(namespace);
    let name = run["metadata"]["name"].as_str().unwrap().to_string();
    let mut event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{id}"), "namespace": namespace},
        "involvedObject": {
            "apiVersion": "artifacts.katanomi.dev/v1alpha1", "kind": "ArtifactPromotionRun",
            "name": name, "namespace": namespace, "uid": run["metadata"]["uid"]
        },
        "reason": reason,
        "type": "Normal",
        "source": {"component": "artifact-promotion-controller"},
        "count": 1
    });
    if let Some(m) = message {
        event["message"] = json!(m);
    }
    json!({
        "specversion": "1.0",
        "type": format!("{TYPE_PREFIX}.{}.v1alpha1", reason.to_lowercase()),
        "source": format!("/apis/artifacts.katanomi.dev/v1alpha1/namespaces/{namespace}/artifactpromotionrun/{name}/"),
        "id": id,
        "involvedobjectgroup": "artifacts.katanomi.dev",
        "involvedobjectversion": "v1alpha1",
        "involvedobjectkind": "ArtifactPromotionRun",
        "involvedobjectname": name,
        "involvedobjectnamespace": namespace,
        "eventreason": reason.to_lowercase(),
        "eventtype": "Normal",
        "data": {"event": event, "object": run}
    })
}

const STRUCTURED: (&str, &str) = (
    "Content-Type",
    "application/cloudevents+json; charset=UTF-8",
);

async fn start(extra: &[(&str, &str)]) -> (FakeServer, Hooks, tempfile::TempDir, TestRelay) {
    let receiver = FakeServer::start().await;
    let h = hooks(&receiver.base, extra);
    let data = data_dir();
    let mut s = settings(h.path(), data.path());
    s.vars
        .insert("platform_url".into(), "https://acp.example.com".into());
    let relay = TestRelay::start(s).await;
    (receiver, h, data, relay)
}

#[tokio::test]
async fn the_seed_subscriptions_notify_exactly_the_right_people() {
    let (receiver, _h, _data, relay) = start(&[]).await;
    let catalog = relay.admin_get("/admin/catalog").await;
    assert_eq!(catalog["report"]["errors"], json!([]), "{catalog:#}");
    assert_eq!(catalog["report"]["resources"]["Subscription"], 4);

    // (event, who must hear about it)
    let cases = [
        (
            enriched("ApprovalPending", None, NS, "e-1"),
            vec!["alice", "bob"],
        ),
        (
            enriched("ApprovalDenied", Some("not this week"), NS, "e-2"),
            vec!["admin"],
        ),
        (enriched("Running", None, NS, "e-3"), vec!["admin"]),
        // A later running event carries a message: the requester heard already.
        (
            enriched("Running", Some("promoting layer 3/7"), NS, "e-4"),
            vec![],
        ),
        (
            enriched(
                "Failed",
                Some("target registry refused the push"),
                NS,
                "e-5",
            ),
            vec!["admin"],
        ),
        // Nobody subscribed to this namespace.
        (enriched("ApprovalPending", None, "devops-2", "e-6"), vec![]),
    ];
    let mut expected = Vec::new();
    for (event, people) in &cases {
        let (status, body) = relay.post("acp", &[STRUCTURED], &event.to_string()).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["deliveries"], people.len(), "{}: {body}", event["id"]);
        for p in people {
            expected.push((event["type"].as_str().unwrap().to_string(), p.to_string()));
        }
    }
    let got = receiver.wait_for(expected.len()).await;
    let mut seen: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let m = r.json();
            let kind = if m["title"] == "制品晋级待您审批" {
                "approvalpending"
            } else if m["title"] == "制品晋级被拒绝" {
                "approvaldenied"
            } else if m["title"] == "制品晋级已通过审批" {
                "running"
            } else {
                "failed"
            };
            (
                format!("{TYPE_PREFIX}.{kind}.v1alpha1"),
                m["touser"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);

    let pending = got
        .iter()
        .map(Recorded::json)
        .find(|m| m["touser"] == "alice")
        .unwrap();
    let content = pending["text"]["content"].as_str().unwrap();
    assert!(content.contains("发起人：admin"), "{content}");
    assert!(
        content.contains("registry.example.com/devops/web:v1.2.3"),
        "{content}"
    );
    assert_eq!(
        pending["url"],
        "https://acp.example.com/console-devops/workspace/devops/artifactpromotionruns/web-to-prod-x7k2p"
    );
    let failed = got
        .iter()
        .map(Recorded::json)
        .find(|m| m["title"] == "制品晋级失败")
        .unwrap();
    assert!(
        failed["text"]["content"]
            .as_str()
            .unwrap()
            .contains("错误：target registry refused the push")
    );
    relay.stop().await;
}

#[tokio::test]
async fn english_templates_on_request() {
    let receiver = FakeServer::start().await;
    let h = hooks(&receiver.base, &[]);
    let data = data_dir();
    let mut s = settings(h.path(), data.path());
    s.vars.insert("lang".into(), "en".into());
    let relay = TestRelay::start(s).await;
    let (status, _) = relay
        .post(
            "acp",
            &[STRUCTURED],
            &enriched("ApprovalDenied", None, NS, "en-1").to_string(),
        )
        .await;
    assert_eq!(status, 202);
    let m = receiver.wait_for(1).await[0].json();
    assert_eq!(m["title"], "Artifact promotion denied");
    assert!(
        m["text"]["content"]
            .as_str()
            .unwrap()
            .starts_with("**Your artifact promotion was denied**")
    );
    assert!(m.get("url").is_none(), "no platform_url, no link: {m}");
    relay.stop().await;
}

#[tokio::test]
async fn binary_structured_and_batched_modes_are_accepted() {
    let (receiver, _h, _data, relay) = start(&[]).await;
    // Binary: attributes in ce- headers (percent-encoded), data as the body.
    let ce = enriched("ApprovalDenied", None, NS, "bin-1");
    let mut headers: Vec<(String, String)> =
        vec![("Content-Type".into(), "application/json".into())];
    for (k, v) in ce.as_object().unwrap() {
        if k != "data" {
            let text = v.as_str().unwrap();
            let encoded = text.replace('%', "%25").replace(' ', "%20");
            headers.push((format!("ce-{k}"), encoded));
        }
    }
    headers.push(("ce-note".into(), "Euro%20%E2%82%AC".into()));
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, body) = relay.post("acp", &h, &ce["data"].to_string()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["deliveries"], 1);
    let stored = relay
        .admin_get(&format!(
            "/admin/events/{}",
            body["event"].as_str().unwrap()
        ))
        .await;
    assert_eq!(stored["event"]["extensions"]["note"], "Euro €");
    assert_eq!(stored["event"]["data"]["kind"], "json");

    // Batched: all accepted in one request.
    let batch = json!([
        enriched("Failed", None, NS, "b-1"),
        enriched("Running", None, NS, "b-2")
    ]);
    let (status, body) = relay
        .post(
            "acp",
            &[("Content-Type", "application/cloudevents-batch+json")],
            &batch.to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e["status"] == "accepted" && e["deliveries"] == 1)
    );
    receiver.wait_for(3).await;

    // (source, id) is the dedup key.
    let (status, body) = relay
        .post(
            "acp",
            &[STRUCTURED],
            &enriched("Failed", None, NS, "b-1").to_string(),
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
    relay.stop().await;
}

#[tokio::test]
async fn malformed_cloudevents_are_rejected_and_store_nothing() {
    let (receiver, _h, _data, relay) = start(&[]).await;
    let mut no_id = enriched("Failed", None, NS, "x");
    no_id.as_object_mut().unwrap().remove("id");
    let (status, body) = relay.post("acp", &[STRUCTURED], &no_id.to_string()).await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("id is missing"),
        "{body}"
    );

    let binary_base = [
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "/x"),
        ("ce-type", "t"),
        ("Content-Type", "application/json"),
    ];
    let with = |extra: (&'static str, &'static str)| {
        let mut v = binary_base.to_vec();
        v.push(extra);
        v
    };
    let (status, body) = relay.post("acp", &with(("ce-bad_name", "x")), "{}").await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("bad_name"),
        "{body}"
    );
    let (status, body) = relay
        .post("acp", &with(("ce-subject", "%C0%A0")), "{}")
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("UTF-8"),
        "{body}"
    );
    let (status, _) = relay.post("acp", &with(("ce-subject", "100%")), "{}").await;
    assert_eq!(status, 400);

    let mut bad = enriched("Running", None, NS, "bad-2");
    bad["Bad-Ext"] = json!("x");
    let batch = json!([enriched("Running", None, NS, "ok-1"), bad]);
    let (status, body) = relay
        .post(
            "acp",
            &[("Content-Type", "application/cloudevents-batch+json")],
            &batch.to_string(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("batch event 1"),
        "{body}"
    );

    let (status, body) = relay
        .post(
            "acp",
            &[("Content-Type", "application/json")],
            r#"{"plain":"json"}"#,
        )
        .await;
    assert_eq!(status, 415, "{body}");
    let (status, _) = relay
        .post(
            "acp",
            &[("Content-Type", "application/cloudevents+xml")],
            "<x/>",
        )
        .await;
    assert_eq!(status, 415);
    let get = relay
        .client
        .get(format!("{}/hooks/acp", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);

    assert_eq!(
        relay.store.counts().await.unwrap(),
        hookrelay::store::Counts::default()
    );
    assert!(receiver.requests().is_empty());
    relay.stop().await;
}

#[tokio::test]
async fn raw_apiserversource_events_route_by_their_subject() {
    let raw_sub = r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Subscription
metadata: {name: carol-raw}
spec:
  subscriber: {name: carol}
  channels: [corpwechat]
  subscriptions:
  - object: {kind: ArtifactPromotionRun, apiVersion: artifacts.katanomi.dev/v1alpha1, namespace: devops}
    events:
    - type: "dev.knative.apiserver.resource.*"
      filter:
        cel: 'ce.data.status.triggeredBy.user.name == "admin"'
    - type: dev.knative.apiserver.ref.update
"#;
    let (receiver, _h, _data, relay) = start(&[("50-raw.yaml", raw_sub)]).await;
    let run: Value = serde_json::from_str(RUN).unwrap();
    let subject = "/apis/artifacts.katanomi.dev/v1alpha1/namespaces/devops/artifactpromotionruns/web-to-prod-x7k2p";
    let resource = [
        ("ce-specversion", "1.0"),
        ("ce-id", "api-1"),
        ("ce-source", "https://10.96.0.1:443"),
        ("ce-type", "dev.knative.apiserver.resource.update"),
        ("ce-subject", subject),
        ("Content-Type", "application/json"),
    ];
    let (status, body) = relay.post("acp", &resource, &run.to_string()).await;
    assert_eq!(
        (status, body["deliveries"].as_u64()),
        (202, Some(1)),
        "{body}"
    );
    let reference = json!({
        "specversion": "1.0", "id": "api-2", "source": "https://10.96.0.1:443",
        "type": "dev.knative.apiserver.ref.update", "subject": subject,
        "data": {"apiVersion": "artifacts.katanomi.dev/v1alpha1", "kind": "ArtifactPromotionRun", "name": "web-to-prod-x7k2p", "namespace": "devops"}
    });
    let (status, body) = relay
        .post("acp", &[STRUCTURED], &reference.to_string())
        .await;
    assert_eq!(
        (status, body["deliveries"].as_u64()),
        (202, Some(1)),
        "{body}"
    );
    let got = receiver.wait_for(2).await;
    assert!(got.iter().all(|r| r.json()["touser"] == "carol"));
    relay.stop().await;
}

#[tokio::test]
async fn a_cel_compile_error_is_located_and_the_rest_serves() {
    let broken = subscription_for("dave").replace(
        "ce.data.object.status.triggeredBy.user.name == \"$(subscriber.name)\"\n\n    # 3.",
        "ce.data.object.status.triggeredBy.user.name == == \"$(subscriber.name)\"\n\n    # 3.",
    );
    assert_ne!(
        broken,
        subscription_for("dave"),
        "the fixture changed shape"
    );
    let runtime_error = r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Subscription
metadata: {name: erin}
spec:
  subscriber: {name: erin}
  channels: [corpwechat]
  subscriptions:
  - events:
    - type: dev.katanomi.cloudevents.kubeevent.artifactpromotionrun.failed.v1alpha1
      filter: {cel: 'size(ce.data.object.status.nonexistent.field) > 0'}
"#;
    let (receiver, _h, _data, relay) =
        start(&[("50-dave.yaml", &broken), ("60-erin.yaml", runtime_error)]).await;
    let catalog = relay.admin_get("/admin/catalog").await;
    let errors = catalog["report"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = &errors[0];
    assert!(e["file"].as_str().unwrap().ends_with("50-dave.yaml"));
    assert_eq!(e["document"], 1);
    assert_eq!(e["path"], "/spec/subscriptions/0/events/1/filter/cel");
    assert!(e["message"].as_str().unwrap().contains("CEL"), "{e}");

    let (status, body) = relay
        .post(
            "acp",
            &[STRUCTURED],
            &enriched("Failed", None, NS, "f-1").to_string(),
        )
        .await;
    assert_eq!(
        (status, body["deliveries"].as_u64()),
        (202, Some(1)),
        "admin still hears; erin's error is a non-match"
    );
    assert_eq!(receiver.wait_for(1).await[0].json()["touser"], "admin");
    let metrics = relay.metrics().await;
    assert!(
        metrics.contains("hookrelay_cel_errors_total 1"),
        "{metrics}"
    );
    relay.stop().await;
}

/// Knative with `authentication-oidc` on: the Broker's token is checked against the cluster
/// issuer's JWK Set; a missing, expired, unsigned or foreign token is a 401 and nothing is kept.
#[tokio::test]
async fn knative_oidc_tokens_are_checked_before_anything_is_stored() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/oidc");
    let source = format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: Source\nmetadata: {{name: acp-oidc}}\nspec:\n  formats: [cloudevents]\n  auth:\n    oidc:\n      issuer: https://kubernetes.default.svc.cluster.local\n      audience: hookrelay\n      jwks: {{file: {fixtures}/jwks.json}}\n      subjects: [\"system:serviceaccount:knative-eventing:mt-broker-filter\"]\n"
    );
    let receiver = FakeServer::start().await;
    let h = hooks(&receiver.base, &[("15-acp-oidc.yaml", &source)]);
    let data = data_dir();
    let mut s = settings(h.path(), data.path());
    s.secret_dirs.push(fixtures.into());
    let relay = TestRelay::start(s).await;
    let catalog = relay.admin_get("/admin/catalog").await;
    assert_eq!(catalog["report"]["errors"], json!([]), "{catalog:#}");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let token = |pem: &str, sub: &str, exp: i64| {
        let key = EncodingKey::from_rsa_pem(&std::fs::read(format!("{fixtures}/{pem}")).unwrap())
            .unwrap();
        let header = Header {
            kid: Some("rsa-1".into()),
            ..Header::new(Algorithm::RS256)
        };
        let claims = json!({"iss": "https://kubernetes.default.svc.cluster.local",
            "aud": "hookrelay", "sub": sub, "exp": exp, "iat": now});
        format!("Bearer {}", encode(&header, &claims, &key).unwrap())
    };
    let broker = "system:serviceaccount:knative-eventing:mt-broker-filter";
    let event = enriched("ApprovalPending", None, NS, "o-1").to_string();
    let refused = [
        None,
        Some(token("rsa.pem", broker, now - 3600)),
        Some(token("other-rsa.pem", broker, now + 300)),
        Some(token(
            "rsa.pem",
            "system:serviceaccount:evil:pod",
            now + 300,
        )),
        Some("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.".to_string()),
    ];
    for auth in &refused {
        let mut headers = vec![STRUCTURED];
        if let Some(a) = auth {
            headers.push(("Authorization", a.as_str()));
        }
        let (status, body) = relay.post("acp-oidc", &headers, &event).await;
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert!(body["message"].is_string(), "{body}");
    }
    let none = relay.admin_get("/admin/deliveries?source=acp-oidc").await;
    assert_eq!(
        none["deliveries"],
        json!([]),
        "a refused request stores nothing"
    );

    let good = token("rsa.pem", broker, now + 300);
    let (status, body) = relay
        .post(
            "acp-oidc",
            &[STRUCTURED, ("Authorization", good.as_str())],
            &event,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["deliveries"], 2, "{body}");
    assert_eq!(receiver.wait_for(2).await.len(), 2);
}

/// Posts `event` to the `acp-oidc` Source with `authorization`.
async fn post_with(relay: &TestRelay, authorization: &str, event: &str) -> (u16, Value) {
    relay
        .post(
            "acp-oidc",
            &[STRUCTURED, ("Authorization", authorization)],
            event,
        )
        .await
}

/// The issuer's keys from its discovery document: fetched at the first token, and again when
/// the issuer rotates to a key the relay has not seen.
#[tokio::test]
async fn oidc_keys_come_from_the_issuers_discovery_document_and_follow_a_rotation() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/oidc");
    let all: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{fixtures}/jwks.json")).unwrap())
            .unwrap();
    let only = |kid: &str| {
        json!({"keys": all["keys"].as_array().unwrap().iter()
            .filter(|k| k["kid"] == kid).cloned().collect::<Vec<_>>()})
    };
    let issuer = FakeServer::start().await;
    let base = issuer.base.clone();
    let serve = move |keys: Value| {
        let base = base.clone();
        move |r: &Recorded| match r.path.as_str() {
            // Like the Kubernetes API server: discovery for authenticated callers only.
            _ if r.headers.get("authorization").map(String::as_str)
                != Some("Bearer sa-token-1") =>
            {
                Reply::status(401)
            }
            "/.well-known/openid-configuration" => Reply::json(
                200,
                json!({"issuer": base, "jwks_uri": format!("{base}/keys")}),
            ),
            "/keys" => Reply::json(200, keys.clone()),
            _ => Reply::status(404),
        }
    };
    issuer.set_responder(serve(only("rsa-1")));
    let source = format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: Source\nmetadata: {{name: acp-oidc}}\nspec:\n  formats: [cloudevents]\n  auth:\n    oidc:\n      issuer: https://kubernetes.default.svc.cluster.local\n      audience: hookrelay\n      discovery: {}/.well-known/openid-configuration\n      tokenFile: issuer-token\n",
        issuer.base
    );
    let receiver = FakeServer::start().await;
    let h = hooks(
        &receiver.base,
        &[
            ("15-acp-oidc.yaml", &source),
            ("issuer-token", "sa-token-1\n"),
        ],
    );
    let data = data_dir();
    let relay = TestRelay::start(settings(h.path(), data.path())).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({"iss": "https://kubernetes.default.svc.cluster.local", "aud": "hookrelay",
        "sub": "system:serviceaccount:knative-eventing:mt-broker-filter", "exp": now + 300});
    let sign = |kid: &str, alg: Algorithm, key: EncodingKey, id: &str| {
        let header = Header {
            kid: Some(kid.into()),
            ..Header::new(alg)
        };
        let token = format!("Bearer {}", encode(&header, &claims, &key).unwrap());
        (token, enriched("ApprovalPending", None, NS, id).to_string())
    };
    let rsa = || {
        EncodingKey::from_rsa_pem(&std::fs::read(format!("{fixtures}/rsa.pem")).unwrap()).unwrap()
    };
    let ec =
        || EncodingKey::from_ec_pem(&std::fs::read(format!("{fixtures}/ec.pem")).unwrap()).unwrap();

    let (token, event) = sign("rsa-1", Algorithm::RS256, rsa(), "d-1");
    let (status, body) = post_with(&relay, &token, &event).await;
    assert_eq!(status, 202, "the first token fetches the keys: {body}");
    let fetched = issuer.requests().len();
    assert_eq!(fetched, 2, "discovery document, then the key set");
    let (token, event) = sign("rsa-1", Algorithm::RS256, rsa(), "d-2");
    let (status, _) = post_with(&relay, &token, &event).await;
    assert_eq!(status, 202);
    assert_eq!(
        issuer.requests().len(),
        fetched,
        "a known key is not fetched again"
    );

    // The issuer rotates to the EC key: the first token signed with it fetches the set again.
    issuer.set_responder(serve(only("ec-1")));
    let (token, event) = sign("ec-1", Algorithm::ES256, ec(), "d-3");
    let (status, body) = post_with(&relay, &token, &event).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(issuer.requests().len(), fetched + 2);
    // Made-up key ids do not make the relay hammer the issuer.
    for i in 0..5 {
        let (token, event) = sign(&format!("made-up-{i}"), Algorithm::ES256, ec(), "d-x");
        let (status, _) = relay
            .post(
                "acp-oidc",
                &[STRUCTURED, ("Authorization", token.as_str())],
                &event,
            )
            .await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        issuer.requests().len(),
        fetched + 4,
        "one more fetch of the budget (three at once, then one per 10 s), then none"
    );
}
