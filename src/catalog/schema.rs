//! The JSON Schema of each resource kind (from `schemas/`, built into the binary) and validation
//! of documents against them.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::doc::DocError;

const COMMON: &str = include_str!("../../schemas/common.json");

/// (kind, schema text) for every kind hooks.d accepts.
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
        let common: Value = serde_json::from_str(COMMON).expect("schemas/common.json is JSON");
        KINDS
            .iter()
            .map(|(kind, text)| (*kind, compile(kind, text, &common)))
            .collect()
    })
}

/// Compiles a kind's schema with the shared `$defs` of `common.json` merged into its own.
fn compile(kind: &str, text: &str, common: &Value) -> jsonschema::Validator {
    let mut schema: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("schema for {kind} is not JSON: {e}"));
    let defs = schema
        .as_object_mut()
        .expect("schema is an object")
        .entry("$defs")
        .or_insert_with(|| Value::Object(Default::default()));
    if let (Some(defs), Some(shared)) = (defs.as_object_mut(), common["$defs"].as_object()) {
        for (k, v) in shared {
            defs.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    jsonschema::draft202012::new(&schema)
        .unwrap_or_else(|e| panic!("schema for {kind} does not compile: {e}"))
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
}
