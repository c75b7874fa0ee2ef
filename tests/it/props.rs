//! Property tests for every decoder: arbitrary bodies, headers and lengths through token,
//! HMAC, Standard Webhooks and the three CloudEvents modes never panic the relay, never get a
//! 5xx, and a refusal stores nothing and says why in JSON. Half the signed cases carry a valid
//! signature over their arbitrary body, so decoding is reached too.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::support::*;

const HOOKS: &str = r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {name: tok}
spec:
  auth: {token: {header: X-Hook-Token, secret: "tok-secret-1"}}
  event:
    type: [{pointer: /kind, prefix: "app."}]
    id: [{header: X-Event-Id}, {pointer: /id}]
---
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {name: gh}
spec: {preset: github, auth: {hmac: {secret: "hmac-secret-1"}}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {name: sw}
spec:
  auth: {standardWebhooks: {secret: "whsec_c2VjcmV0LWtleS1mb3ItcHJvcHM="}}
  event:
    type: [{pointer: /type}]
---
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {name: ce}
spec: {auth: none, formats: [cloudevents]}
"#;

/// One generated request.
#[derive(Debug, Clone)]
struct Case {
    body: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    /// Sign the body correctly (for the signed Sources).
    sign: bool,
}

/// Header names the decoders read, and some they do not.
const NAMES: &[&str] = &[
    "content-type",
    "x-hook-token",
    "x-event-id",
    "x-hub-signature-256",
    "x-github-event",
    "x-github-delivery",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "ce-specversion",
    "ce-id",
    "ce-source",
    "ce-type",
    "ce-time",
    "ce-subject",
    "ce-dataschema",
    "ce-x",
    "x-other",
];

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
    "text/plain",
    "application/cloudevents+json; charset=utf-8",
];

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        // JSON-shaped, so the decoders get past the parser.
        (
            "[a-z.]{0,12}",
            "[ -~]{0,40}",
            proptest::collection::vec(("[a-z]{1,10}", "[ -~]{0,300}"), 0..6)
        )
            .prop_map(|(t, id, extra)| {
                let mut v = serde_json::json!({"specversion": "1.0", "id": id, "source": "/s",
                    "type": t, "kind": t, "data": {"x": 1}});
                for (k, x) in extra {
                    v[k] = serde_json::json!(x);
                }
                let s = v.to_string();
                if t.len() % 3 == 0 {
                    format!("[{s},{s}]")
                } else {
                    s
                }
                .into_bytes()
            }),
    ]
}

fn header() -> impl Strategy<Value = (String, Vec<u8>)> {
    let value = prop_oneof![
        proptest::sample::select(CONTENT_TYPES).prop_map(|s| s.as_bytes().to_vec()),
        "[ -~]{0,80}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..40),
        Just(b"1.0".to_vec()),
    ];
    (
        proptest::sample::select(NAMES).prop_map(str::to_string),
        value,
    )
}

fn case() -> impl Strategy<Value = Case> {
    (
        body(),
        proptest::collection::vec(header(), 0..10),
        any::<bool>(),
    )
        .prop_map(|(body, headers, sign)| Case {
            body,
            headers,
            sign,
        })
}

/// The headers that sign `body` correctly for `source`.
fn signature(source: &str, body: &[u8]) -> Vec<(String, String)> {
    match source {
        "tok" => vec![("x-hook-token".into(), "tok-secret-1".into())],
        "gh" => {
            let mac = hookrelay::signature::hmac_sha256(b"hmac-secret-1", &[body]);
            vec![(
                "x-hub-signature-256".into(),
                format!("sha256={}", hex::encode(mac)),
            )]
        }
        "sw" => {
            let key = base64::engine::general_purpose::STANDARD
                .decode("c2VjcmV0LWtleS1mb3ItcHJvcHM=")
                .unwrap();
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let sig = hookrelay::signature::standard_webhooks_sign(&key, "msg_1", ts, body);
            vec![
                ("webhook-id".into(), "msg_1".into()),
                ("webhook-timestamp".into(), ts.to_string()),
                ("webhook-signature".into(), sig),
            ]
        }
        _ => Vec::new(),
    }
}

/// Sends `case` to `source` and checks the answer; returns a failure to report.
async fn check(relay: &TestRelay, source: &str, case: &Case) -> Result<(), TestCaseError> {
    let before = relay.store.counts().await.unwrap().events;
    let mut req = relay
        .client
        .post(format!("{}/hooks/{source}", relay.base))
        .body(case.body.clone());
    for (k, v) in &case.headers {
        // What a client cannot send (control bytes) never reaches the relay.
        if let Ok(v) = reqwest::header::HeaderValue::from_bytes(v) {
            req = req.header(k.as_str(), v);
        }
    }
    if case.sign {
        for (k, v) in signature(source, &case.body) {
            req = req.header(k, v);
        }
    }
    let resp = req
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    let after = relay.store.counts().await.unwrap().events;
    prop_assert!(
        status < 500,
        "{source}: HTTP {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    if !(200..300).contains(&status) {
        prop_assert_eq!(
            after,
            before,
            "{}: refused with {} but stored",
            source,
            status
        );
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| TestCaseError::fail(format!("{source}: {status} without a JSON body")))?;
        prop_assert!(
            json["error"].is_string() && json["message"].is_string(),
            "{json}"
        );
    }
    Ok(())
}

#[test]
fn every_decoder_survives_arbitrary_requests() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_hooks, _data, relay) = rt.block_on(start_clean(&[("10-sources.yaml", HOOKS)], |s| {
        s.max_body_bytes = 4096
    }));
    for source in ["tok", "gh", "sw", "ce"] {
        let mut runner = TestRunner::new(Config {
            cases: 96,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&case(), |c| rt.block_on(check(&relay, source, &c)));
        if let Err(e) = result {
            panic!("{source}: {e}");
        }
    }
    // The relay still serves after all of it.
    let (status, _) = rt.block_on(relay.post(
        "tok",
        &[("X-Hook-Token", "tok-secret-1")],
        r#"{"kind":"push","id":"after-props"}"#,
    ));
    assert_eq!(status, 202);
    rt.block_on(relay.stop());
}
