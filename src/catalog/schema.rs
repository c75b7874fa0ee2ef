//! The JSON Schema of each resource kind (from `schemas/`, built into the binary) and validation
//! of documents against them.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::doc::DocError;

/// (kind, standalone schema) for every kind hooks.d accepts: `schemas/<kind>.json`, bundled
/// from `schemas/parts/` (the kind's own file with the shared `$defs` of `common.json`) by the
/// test below, so editors and other validators can use each file on its own.
const KINDS: &[(&str, &str)] = &[
    ("Source", include_str!("../../schemas/source.json")),
    ("Channel", include_str!("../../schemas/channel.json")),
    ("Template", include_str!("../../schemas/template.json")),
    ("Route", include_str!("../../schemas/route.json")),
    (
        "Subscription",
        include_str!("../../schemas/subscription.json"),
    ),
    (
        "ClusterSubscription",
        include_str!("../../schemas/subscription.json"),
    ),
    ("User", include_str!("../../schemas/user.json")),
];

/// Names of the kinds with a schema.
pub fn kinds() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|(k, _)| *k)
}

fn validators() -> &'static HashMap<&'static str, jsonschema::Validator> {
    static V: OnceLock<HashMap<&'static str, jsonschema::Validator>> = OnceLock::new();
    V.get_or_init(|| {
        KINDS
            .iter()
            .map(|(kind, text)| {
                let schema: Value = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("schema for {kind} is not JSON: {e}"));
                let v = jsonschema::draft202012::new(&schema)
                    .unwrap_or_else(|e| panic!("schema for {kind} does not compile: {e}"));
                (*kind, v)
            })
            .collect()
    })
}

/// Validates a whole document against its kind's schema; `None` when the kind is unknown.
pub fn validate(kind: &str, doc: &Value) -> Option<Vec<DocError>> {
    let validator = validators().get(kind)?;
    let mut errors: Vec<DocError> = validator
        .iter_errors(doc)
        .map(|e| DocError::new(e.instance_path().to_string(), e.to_string()))
        .collect();
    // The deepest errors say the most; drop an error whose path is a prefix of another's
    // (e.g. "/spec: not valid under oneOf" next to "/spec/auth/token: secret is required").
    let paths: Vec<String> = errors.iter().map(|e| e.path.clone()).collect();
    errors.retain(|e| {
        !paths
            .iter()
            .any(|p| p.len() > e.path.len() && p.starts_with(&format!("{}/", e.path)))
    });
    errors.dedup();
    Some(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_schema_compiles() {
        for kind in kinds() {
            assert!(validate(kind, &json!({})).is_some(), "{kind}");
        }
        assert!(validate("Nope", &json!({})).is_none());
    }

    #[test]
    fn errors_point_at_the_field() {
        let doc = json!({
            "apiVersion": "hookrelay.dev/v1alpha1", "kind": "Source",
            "metadata": {"name": "cnb"},
            "spec": {"auth": {"token": {"header": "X-CNB-Token"}}}
        });
        let errs = validate("Source", &doc).unwrap();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "/spec/auth/token");
        assert!(errs[0].message.contains("secret"), "{}", errs[0].message);
    }

    #[test]
    fn auth_must_be_explicit() {
        let doc = json!({
            "apiVersion": "hookrelay.dev/v1alpha1", "kind": "Source",
            "metadata": {"name": "open"}, "spec": {}
        });
        let errs = validate("Source", &doc).unwrap();
        assert!(errs.iter().any(|e| e.message.contains("auth")), "{errs:?}");
        let none = json!({
            "apiVersion": "hookrelay.dev/v1alpha1", "kind": "Source",
            "metadata": {"name": "open"}, "spec": {"auth": "none"}
        });
        assert!(validate("Source", &none).unwrap().is_empty());
        let typo = json!({
            "apiVersion": "hookrelay.dev/v1alpha1", "kind": "Source",
            "metadata": {"name": "open"}, "spec": {"auth": "nothing"}
        });
        assert!(!validate("Source", &typo).unwrap().is_empty());
    }

    #[test]
    fn channel_type_specific_fields_are_checked() {
        let doc = json!({
            "apiVersion": "hookrelay.dev/v1alpha1", "kind": "Channel",
            "metadata": {"name": "w"},
            "spec": {"type": "webhook", "url": "http://x", "bogus": 1}
        });
        let errs = validate("Channel", &doc).unwrap();
        assert!(errs.iter().any(|e| e.message.contains("bogus")), "{errs:?}");
        let missing = json!({
            "apiVersion": "hookrelay.dev/v1alpha1", "kind": "Channel",
            "metadata": {"name": "w"}, "spec": {"type": "webhook", "body": "template"}
        });
        let errs = validate("Channel", &missing).unwrap();
        assert!(errs.iter().any(|e| e.message.contains("url")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.message.contains("template")),
            "{errs:?}"
        );
    }

    /// The shipped schemas are the bundle of `schemas/parts/`; `HOOKRELAY_BLESS=1 cargo test`
    /// writes them after a change there.
    #[test]
    fn shipped_schemas_are_bundled_from_their_parts() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let read = |p: std::path::PathBuf| -> Value {
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let common = read(root.join("parts/common.json"));
        let mut files: Vec<(String, Value)> = Vec::new();
        let mut by_kind = serde_json::Map::new();
        let mut cases = Vec::new();
        for file in [
            "source",
            "channel",
            "template",
            "route",
            "subscription",
            "user",
        ] {
            let mut schema = read(root.join(format!("parts/{file}.json")));
            let defs = schema
                .as_object_mut()
                .unwrap()
                .entry("$defs")
                .or_insert_with(|| json!({}));
            for (k, v) in common["$defs"].as_object().unwrap() {
                defs.as_object_mut()
                    .unwrap()
                    .entry(k.clone())
                    .or_insert_with(|| v.clone());
            }
            let kinds: Vec<&str> = KINDS
                .iter()
                .filter(|(_, text)| {
                    serde_json::from_str::<Value>(text).unwrap()["$id"] == schema["$id"]
                })
                .map(|(k, _)| *k)
                .collect();
            cases.push(json!({
                "if": {"properties": {"kind": {"enum": kinds}}, "required": ["kind"]},
                "then": {"$ref": format!("#/$defs/{file}")},
            }));
            by_kind.insert(file.to_string(), schema.clone());
            files.push((format!("{file}.json"), schema));
        }
        files.push((
            "hooks.d.json".into(),
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": "https://hookrelay.dev/schemas/hooks.d.json",
                "title": "Any hooks.d document, validated by its kind",
                "type": "object",
                "required": ["kind"],
                "properties": {"kind": {"enum": kinds().collect::<Vec<_>>()}},
                "allOf": cases,
                "$defs": by_kind,
            }),
        ));
        let bless = std::env::var_os("HOOKRELAY_BLESS").is_some();
        for (name, schema) in files {
            let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            let path = root.join(&name);
            if bless {
                std::fs::write(&path, &text).unwrap();
            }
            let shipped = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                shipped == text,
                "schemas/{name} is not the bundle of schemas/parts/: run HOOKRELAY_BLESS=1 cargo test"
            );
        }
    }
}
