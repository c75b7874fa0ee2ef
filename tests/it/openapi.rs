//! `schemas/openapi.yaml` against the server, both ways: every route the server registers is
//! documented and every documented route answers, with bodies that fit the documented schemas.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::*;

fn spec() -> Value {
    let text = include_str!("../../schemas/openapi.yaml");
    serde_saphyr::from_str(text).expect("openapi.yaml is YAML")
}

/// (method, path) of every route `src/server/` registers, read from its route tables.
fn registered() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let mut out = BTreeSet::new();
    for file in ["hooks.rs", "admin.rs", "console.rs", "health.rs"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let scope = text
            .split("web::scope(\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("");
        for part in text.split(".route(\"").skip(1) {
            let path = part.split('"').next().unwrap();
            let method = part
                .split("web::")
                .nth(1)
                .unwrap()
                .split("()")
                .next()
                .unwrap();
            out.insert((method.to_string(), format!("{scope}{path}")));
        }
        for part in text.split("web::resource(\"").skip(1) {
            let path = part.split('"').next().unwrap();
            let method = part
                .split(".route(web::")
                .nth(1)
                .unwrap()
                .split("()")
                .next()
                .unwrap();
            out.insert((method.to_string(), path.to_string()));
        }
    }
    out
}

#[test]
fn every_registered_route_is_documented_and_only_those() {
    let documented: BTreeSet<(String, String)> = spec()["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let registered = registered();
    assert!(
        registered.len() >= 14,
        "the route tables were read: {registered:?}"
    );
    assert_eq!(documented, registered);
}

/// Validates `body` against the documented schema of `path`/`method`/`status`.
fn conforms(spec: &Value, path: &str, method: &str, status: u16, body: &Value) {
    // A JSON pointer in a URI fragment: `~` and `/` escaped, braces percent-encoded.
    let escape = |s: &str| {
        s.replace('~', "~0")
            .replace('/', "~1")
            .replace('{', "%7B")
            .replace('}', "%7D")
    };
    let at = format!("#/paths/{}/{method}/responses/{status}", escape(path));
    let response = spec.pointer(&at[1..].replace("%7B", "{").replace("%7D", "}"));
    let response = response.unwrap_or_else(|| panic!("{method} {path} {status} is not documented"));
    // A shared response is a reference to `components/responses`.
    let at = response["$ref"].as_str().map_or(at.clone(), str::to_string);
    let resolved = spec
        .pointer(&at[1..].replace("%7B", "{").replace("%7D", "}"))
        .unwrap();
    if resolved["content"]["application/json"].is_null() {
        return;
    }
    let mut root = spec.clone();
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["$ref"] = json!(format!("{at}/content/application~1json/schema"));
    let validator = jsonschema::draft202012::new(&root).expect("the document compiles");
    let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:?}\n{body}"
    );
}

#[tokio::test]
async fn every_documented_route_answers_as_documented() {
    let spec = spec();
    let receiver = FakeServer::with_responder(|_| Reply::status(404)).await;
    let files = format!(
        "apiVersion: hookrelay.dev/v1alpha1\nkind: Source\nmetadata: {{name: plain}}\nspec: {{auth: none, event: {{type: {{value: plain.note}}}}}}\n---\napiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {{name: gone}}\nspec: {{type: webhook, url: \"{}/in\"}}\n---\napiVersion: hookrelay.dev/v1alpha1\nkind: Route\nmetadata: {{name: r}}\nspec: {{sources: [plain], channels: [gone]}}\n",
        receiver.base
    );
    let (_h, _d, relay) = start_clean(&[("10.yaml", &files)], |_| {}).await;
    let (status, answer) = relay.post("plain", &[], r#"{"note":"n"}"#).await;
    conforms(&spec, "/hooks/{source}", "post", status, &answer);
    let event = answer["event"].as_str().unwrap().to_string();
    let page = relay.admin_get("/admin/deliveries").await;
    let delivery = page["deliveries"][0]["id"].as_str().unwrap().to_string();
    relay.wait_delivery_state(&delivery, "dead").await;
    let (status, dup) = relay.post("plain", &[], r#"{"note":"n"}"#).await;
    conforms(&spec, "/hooks/{source}", "post", status, &dup);
    let (status, missing) = relay.post("nowhere", &[], "{}").await;
    conforms(&spec, "/hooks/{source}", "post", status, &missing);

    let client = &relay.client;
    let call = |method: &str, path: String| {
        let url = format!("{}{path}", relay.base);
        let req = if method == "post" {
            client.post(url)
        } else {
            client.get(url)
        };
        req.bearer_auth(ADMIN).send()
    };
    for (method, template, path) in [
        ("get", "/healthz", "/healthz".to_string()),
        ("get", "/readyz", "/readyz".to_string()),
        ("get", "/admin/catalog", "/admin/catalog".to_string()),
        ("get", "/admin/stats", "/admin/stats".to_string()),
        ("get", "/admin/overview", "/admin/overview".to_string()),
        (
            "get",
            "/admin/templates/{name}",
            "/admin/templates/zadig.workflow".to_string(),
        ),
        (
            "get",
            "/admin/templates/{name}",
            "/admin/templates/nope".to_string(),
        ),
        ("post", "/admin/render", "/admin/render".to_string()),
        (
            "get",
            "/admin/deliveries",
            "/admin/deliveries?state=dead&limit=5".to_string(),
        ),
        (
            "get",
            "/admin/deliveries/{id}",
            format!("/admin/deliveries/{delivery}"),
        ),
        (
            "get",
            "/admin/events/{id}",
            format!("/admin/events/{event}"),
        ),
        (
            "get",
            "/admin/dead-letters",
            "/admin/dead-letters".to_string(),
        ),
        (
            "post",
            "/admin/deliveries/{id}/replay",
            format!("/admin/deliveries/{delivery}/replay"),
        ),
        (
            "post",
            "/admin/dead-letters/replay",
            "/admin/dead-letters/replay".to_string(),
        ),
        (
            "post",
            "/admin/catalog/reload",
            "/admin/catalog/reload".to_string(),
        ),
        (
            "get",
            "/admin/deliveries/{id}",
            "/admin/deliveries/dlv_nope".to_string(),
        ),
        (
            "get",
            "/admin/deliveries",
            "/admin/deliveries?state=lost".to_string(),
        ),
    ] {
        let resp = call(method, path.clone()).await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        conforms(&spec, template, method, status, &body);
    }
    for (path, media) in [
        ("/metrics", "text/plain"),
        ("/openapi.yaml", "application/yaml"),
    ] {
        let resp = call("get", path.to_string()).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with(media), "{path}: {ct}");
    }
    relay.stop().await;
}
