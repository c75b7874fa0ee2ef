//! Source presets: what a platform's hooks look like — auth header, where the event type and
//! id come from, the dedup key — so that `preset: gitlab` plus a secret is a whole Source.
//! Anything written explicitly in the Source wins over the preset.
//!
//! Event types (stable; Templates and Routes match on them):
//!
//! | preset | type | id (dedup key) | dedup window |
//! |---|---|---|---|
//! | cnb | `cnb.notify` | content hash (CNB sends no id) | content (10m) |
//! | zadig | `zadig.workflow.<status>`, `zadig.release_plan.<status>` | workflow name + task id + status (Zadig's UUID headers are new on every send) | content (10m) |
//! | gitlab | `gitlab.system.<event_name>` for system hooks, else `gitlab.<object_kind>` | `Idempotency-Key`, else `X-Gitlab-Event-UUID` | explicit (24h) |
//! | github | `github.<X-GitHub-Event>[.<action>]` | `X-GitHub-Delivery` | explicit (24h) |
//! | gitea | `gitea.<X-Gitea-Event>[.<action>]` | `X-Gitea-Delivery` | explicit (24h) |
//! | alertmanager | `alertmanager.<status>` (firing, resolved) | groupKey + status + every alert's fingerprint (or labels), status and startsAt | content (10m) |
//! | cloudevents | the CloudEvent's own `type` | (`source`, `id`) | explicit (24h) |

use serde_json::{Value, json};

/// The names `spec.preset` accepts.
pub const PRESETS: [&str; 7] = [
    "cnb",
    "zadig",
    "gitlab",
    "github",
    "gitea",
    "alertmanager",
    "cloudevents",
];

/// Whether a preset's events name their own recipients (CNB user notifications are
/// `{touser, msgtype, text}` already).
pub fn carries_recipients(preset: &str) -> bool {
    preset == "cnb"
}

/// The spec fragment a preset contributes.
fn defaults(preset: &str) -> Option<Value> {
    Some(match preset {
        "cnb" => json!({
            "auth": {"token": {"header": "X-CNB-Token"}},
            "event": {"type": {"value": "cnb.notify"}}
        }),
        "zadig" => json!({
            "auth": {"token": {"header": "X-Zadig-Token"}},
            "event": {
                "type": [
                    {"template": "{{#if body.workflow.status}}zadig.workflow.{{body.workflow.status}}{{/if}}"},
                    {"template": "{{#if body.release_plan.status}}zadig.release_plan.{{body.release_plan.status}}{{/if}}"},
                    {"pointer": "/object_kind", "prefix": "zadig."}
                ],
                "id": [
                    {"template": "{{#if body.workflow.task_id}}{{body.workflow.workflow_name}}:{{body.workflow.task_id}}:{{body.workflow.status}}{{/if}}"},
                    {"template": "{{#if body.release_plan.id}}release_plan:{{body.release_plan.id}}:{{body.release_plan.status}}{{/if}}"}
                ],
                "subject": [{"pointer": "/workflow/project_name"}, {"pointer": "/release_plan/name"}],
                "extensions": {"zadiginstance": {"header": "X-Zadig-Instance"}}
            }
        }),
        "gitlab" => json!({
            "auth": {"token": {"header": "X-Gitlab-Token"}},
            "event": {
                "type": [
                    {"template": "{{#if body.event_name}}{{#if (eq headers.[x-gitlab-event] \"System Hook\")}}gitlab.system.{{body.event_name}}{{/if}}{{/if}}"},
                    {"pointer": "/object_kind", "prefix": "gitlab."},
                    {"pointer": "/event_name", "prefix": "gitlab.system."}
                ],
                "id": [{"header": "Idempotency-Key"}, {"header": "X-Gitlab-Event-UUID"}],
                "subject": [{"pointer": "/project/path_with_namespace"}, {"pointer": "/path_with_namespace"}],
                "extensions": {"gitlabinstance": {"header": "X-Gitlab-Instance"}}
            }
        }),
        "github" => json!({
            "auth": {"hmac": {"header": "X-Hub-Signature-256", "style": "github"}},
            "event": {
                "type": {"template": "github.{{headers.[x-github-event]}}{{#if body.action}}.{{body.action}}{{/if}}"},
                "id": {"header": "X-GitHub-Delivery"},
                "subject": {"pointer": "/repository/full_name"}
            }
        }),
        "gitea" => json!({
            "auth": {"hmac": {"header": "X-Gitea-Signature", "style": "hex"}},
            "event": {
                "type": {"template": "gitea.{{headers.[x-gitea-event]}}{{#if body.action}}.{{body.action}}{{/if}}"},
                "id": {"header": "X-Gitea-Delivery"},
                "subject": {"pointer": "/repository/full_name"}
            }
        }),
        "alertmanager" => json!({
            "auth": {"token": {"header": "Authorization"}},
            "event": {
                "type": {"pointer": "/status", "prefix": "alertmanager."},
                // Every alert's identity, status and start: a group that gains, loses or
                // resolves an alert is a new event; a repeat_interval reminder is a new event
                // once the short content window has passed.
                "id": {"template": "{{body.groupKey}}:{{body.status}}:{{#each body.alerts}}{{#if fingerprint}}{{fingerprint}}{{else}}{{json labels}}{{/if}}/{{status}}/{{startsAt}};{{/each}}"},
                "subject": {"pointer": "/groupLabels/alertname"}
            }
        }),
        "cloudevents" => json!({"formats": ["cloudevents"]}),
        _ => return None,
    })
}

/// Fills `spec` with the preset's defaults where `spec` says nothing. The preset's auth only
/// names headers: which kind of auth (and the secret) is always the Source's own choice, so a
/// preset's `auth` applies only to the kind the Source picked.
pub fn apply(spec: &mut Value) -> Result<(), String> {
    let Some(name) = spec
        .get("preset")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Ok(());
    };
    let preset = defaults(&name)
        .ok_or_else(|| format!("unknown preset {name:?}; known: {}", PRESETS.join(", ")))?;
    if let Some(obj) = spec.as_object_mut() {
        obj.remove("preset");
    }
    merge(spec, &preset);
    Ok(())
}

/// Adds what `base` lacks from `defaults`, recursively; `auth` kinds the Source did not choose
/// are not added.
fn merge(base: &mut Value, defaults: &Value) {
    let (Some(b), Some(d)) = (base.as_object_mut(), defaults.as_object()) else {
        return;
    };
    for (k, dv) in d {
        match b.get_mut(k) {
            None if k == "auth" => {}
            None => {
                b.insert(k.clone(), dv.clone());
            }
            Some(bv) if k == "auth" => {
                if let (Some(chosen), Some(offered)) = (bv.as_object_mut(), dv.as_object()) {
                    for (kind, fields) in offered {
                        if let Some(c) = chosen.get_mut(kind) {
                            merge(c, fields);
                        }
                    }
                }
            }
            Some(bv) if bv.is_object() => merge(bv, dv),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_fill_only_what_is_missing() {
        let mut spec = json!({
            "preset": "gitlab",
            "auth": {"token": {"secret": {"env": "T"}}},
            "event": {"id": [{"header": "X-Request-Id"}]}
        });
        apply(&mut spec).unwrap();
        assert_eq!(spec["auth"]["token"]["header"], "X-Gitlab-Token");
        assert_eq!(
            spec["event"]["id"],
            json!([{"header": "X-Request-Id"}]),
            "explicit wins"
        );
        assert_eq!(spec["event"]["type"][1]["prefix"], "gitlab.");
        assert!(spec.get("preset").is_none());
    }

    #[test]
    fn a_preset_never_chooses_the_auth() {
        let mut open = json!({"preset": "github", "auth": "none"});
        apply(&mut open).unwrap();
        assert_eq!(open["auth"], "none");
        let mut token =
            json!({"preset": "github", "auth": {"token": {"header": "X-Token", "secret": "s"}}});
        apply(&mut token).unwrap();
        assert!(token["auth"].get("hmac").is_none());
        let mut bare = json!({"preset": "cnb"});
        apply(&mut bare).unwrap();
        assert!(bare.get("auth").is_none(), "deny by default stays");
    }

    #[test]
    fn unknown_presets_are_errors() {
        assert!(
            apply(&mut json!({"preset": "jenkins"}))
                .unwrap_err()
                .contains("jenkins")
        );
    }
}
