//! `kind: Template` — how an event type reads as a message, with per-channel overrides.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use serde::Deserialize;
use serde_json::Value;

use super::{RenderCtx, Tpl};
use crate::doc::pattern::Patterns;
use crate::doc::{DocError, parse_spec};
use crate::message::{Message, MsgType};

#[derive(Debug, Deserialize)]
struct TemplateSpec {
    #[serde(default)]
    types: Vec<String>,
    /// Renders a digest: sees `events`, one entry per collected event.
    #[serde(default)]
    digest: bool,
    /// Rendered per event: events with the same thread continue one message.
    thread: Option<String>,
    #[serde(flatten)]
    base: VariantSpec,
    #[serde(default)]
    channels: BTreeMap<String, VariantSpec>,
}

#[derive(Debug, Default, Deserialize)]
struct VariantSpec {
    msgtype: Option<MsgType>,
    title: Option<String>,
    text: Option<String>,
    url: Option<String>,
}

/// One compiled way of writing the message.
#[derive(Debug, Clone)]
struct Variant {
    msgtype: MsgType,
    title: Option<Tpl>,
    text: Tpl,
    url: Option<Tpl>,
}

/// A compiled Template.
#[derive(Debug, Clone)]
pub struct TemplateDef {
    pub name: String,
    /// Event types it renders when a Route names no template.
    pub types: Patterns,
    /// A digest template: it renders the list of a digest's events (`{{#each events}}`), and is
    /// chosen for digests only.
    pub digest: bool,
    /// Rendered per event (a run's id, an object's namespace/name): the events of one thread
    /// update the message its first one sent, on a channel that can change a message.
    pub thread: Option<Tpl>,
    base: Variant,
    /// Keyed by channel name or channel type.
    overrides: BTreeMap<String, Variant>,
    /// Shipped with hookrelay (`templates/`); a hooks.d Template of the same name replaces it.
    pub builtin: bool,
    /// The document it was compiled from (for the console to show and edit), `Null` when built
    /// from a bare spec.
    pub document: Value,
}

impl TemplateDef {
    /// Renders the message for a channel: an override for the channel's name wins over one for
    /// its type, which wins over the base.
    pub fn render(
        &self,
        ctx: &RenderCtx,
        channel_name: &str,
        channel_type: &str,
    ) -> Result<Message, String> {
        let v = self
            .overrides
            .get(channel_name)
            .or_else(|| self.overrides.get(channel_type))
            .unwrap_or(&self.base);
        let opt = |t: &Option<Tpl>, what: &str| -> Result<Option<String>, String> {
            t.as_ref()
                .map(|t| t.render(ctx).map_err(|e| format!("{what}: {e}")))
                .transpose()
                .map(|s| s.filter(|s| !s.trim().is_empty()))
        };
        Ok(Message {
            msgtype: v.msgtype,
            content: v
                .text
                .render(ctx)
                .map_err(|e| format!("text: {e}"))?
                .trim_end()
                .to_string(),
            title: opt(&v.title, "title")?,
            url: opt(&v.url, "url")?,
        })
    }
}

/// The templates shipped in `templates/`, built into the binary.
const BUILTIN: &[(&str, &str)] = &[
    (
        "templates/generic.yaml",
        include_str!("../../templates/generic.yaml"),
    ),
    (
        "templates/digest.yaml",
        include_str!("../../templates/digest.yaml"),
    ),
    (
        "templates/acp-artifactpromotionrun.yaml",
        include_str!("../../templates/acp-artifactpromotionrun.yaml"),
    ),
    (
        "templates/zadig.yaml",
        include_str!("../../templates/zadig.yaml"),
    ),
    (
        "templates/kubeevent.yaml",
        include_str!("../../templates/kubeevent.yaml"),
    ),
    (
        "templates/gitlab.yaml",
        include_str!("../../templates/gitlab.yaml"),
    ),
    (
        "templates/github-gitea.yaml",
        include_str!("../../templates/github-gitea.yaml"),
    ),
    (
        "templates/alertmanager.yaml",
        include_str!("../../templates/alertmanager.yaml"),
    ),
];

/// The built-in templates, compiled once. They are tested to compile; a failure here is a bug
/// in the shipped files.
pub fn builtin() -> &'static [Arc<TemplateDef>] {
    static COMPILED: LazyLock<Vec<Arc<TemplateDef>>> = LazyLock::new(|| {
        let mut out = Vec::new();
        for (file, text) in BUILTIN {
            let docs: Vec<Value> =
                serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{file}: {e}"));
            for doc in docs.into_iter().filter(|d| !d.is_null()) {
                let mut t = compile_document(&doc).unwrap_or_else(|e| panic!("{file}: {e:?}"));
                t.builtin = true;
                out.push(Arc::new(t));
            }
        }
        out
    });
    &COMPILED
}

/// Compiles a whole Template document (its `metadata.name` and `spec`), keeping the document.
pub fn compile_document(doc: &Value) -> Result<TemplateDef, Vec<DocError>> {
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut t = compile(name, &doc["spec"])?;
    t.document = doc.clone();
    Ok(t)
}

/// Compiles a Template document's `spec`.
pub fn compile(name: &str, spec: &Value) -> Result<TemplateDef, Vec<DocError>> {
    let spec: TemplateSpec = parse_spec(spec)?;
    let mut errors = Vec::new();
    let types = Patterns::compile(&spec.types, "/spec/types").unwrap_or_else(|e| {
        errors.push(e);
        Patterns::default()
    });
    let thread = Tpl::compile_field(spec.thread.as_deref(), "/spec/thread", &mut errors);
    let base = compile_variant(&spec.base, None, "/spec", &mut errors);
    let mut overrides = BTreeMap::new();
    for (key, v) in &spec.channels {
        let path = format!("/spec/channels/{key}");
        if let Some(base) = &base
            && let Some(variant) = compile_variant(v, Some(base), &path, &mut errors)
        {
            overrides.insert(key.clone(), variant);
        }
    }
    match base {
        Some(base) if errors.is_empty() => Ok(TemplateDef {
            name: name.to_string(),
            types,
            digest: spec.digest,
            thread,
            base,
            overrides,
            builtin: false,
            document: Value::Null,
        }),
        _ => Err(errors),
    }
}

/// Compiles a variant; fields it leaves out come from `base`.
fn compile_variant(
    v: &VariantSpec,
    base: Option<&Variant>,
    path: &str,
    errors: &mut Vec<DocError>,
) -> Option<Variant> {
    let mut compile = |src: &Option<String>, field: &str| -> Option<Option<Tpl>> {
        match src {
            None => Some(None),
            Some(s) => match Tpl::compile(s) {
                Ok(t) => Some(Some(t)),
                Err(e) => {
                    errors.push(DocError::new(format!("{path}/{field}"), e));
                    None
                }
            },
        }
    };
    let text = compile(&v.text, "text")?;
    let title = compile(&v.title, "title")?;
    let url = compile(&v.url, "url")?;
    let text = match (text, base) {
        (Some(t), _) => t,
        (None, Some(b)) => b.text.clone(),
        (None, None) => {
            errors.push(DocError::new(format!("{path}/text"), "text is required"));
            return None;
        }
    };
    Some(Variant {
        msgtype: v.msgtype.or(base.map(|b| b.msgtype)).unwrap_or_default(),
        title: title.or_else(|| base.and_then(|b| b.title.clone())),
        text,
        url: url.or_else(|| base.and_then(|b| b.url.clone())),
    })
}

/// The template for an event type when a route names none: among the digest templates or the
/// others (`digest`), the most specific `types` match (exact over glob, longer glob over
/// shorter); on a tie hooks.d beats the built-ins, then names decide.
pub fn for_type<'t>(
    templates: &'t HashMap<String, Arc<TemplateDef>>,
    event_type: &str,
    digest: bool,
) -> Option<&'t Arc<TemplateDef>> {
    templates
        .values()
        .filter(|t| t.digest == digest)
        .filter_map(|t| t.types.specificity(event_type).map(|s| (s, t)))
        .max_by(|(sa, a), (sb, b)| {
            sa.cmp(sb)
                .then_with(|| b.builtin.cmp(&a.builtin))
                .then_with(|| b.name.cmp(&a.name))
        })
        .map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn overrides_by_channel_name_then_type() {
        let t = compile(
            "t",
            &json!({
                "types": ["zadig.*"],
                "msgtype": "markdown",
                "title": "{{type}}",
                "text": "base {{data.x}}",
                "channels": {
                    "wecom-robot": {"msgtype": "text", "text": "robot {{data.x}}"},
                    "ops": {"text": "ops {{data.x}}"}
                }
            }),
        )
        .unwrap();
        let ctx = RenderCtx::new(json!({"type": "zadig.workflow.passed", "data": {"x": 1}}));
        let base = t.render(&ctx, "w", "webhook").unwrap();
        assert_eq!(
            (base.msgtype, base.content.as_str()),
            (MsgType::Markdown, "base 1")
        );
        assert_eq!(base.title.as_deref(), Some("zadig.workflow.passed"));
        let robot = t.render(&ctx, "team-robot", "wecom-robot").unwrap();
        assert_eq!(
            (robot.msgtype, robot.content.as_str()),
            (MsgType::Text, "robot 1")
        );
        let ops = t.render(&ctx, "ops", "wecom-robot").unwrap();
        assert_eq!(
            (ops.msgtype, ops.content.as_str()),
            (MsgType::Markdown, "ops 1")
        );
        assert!(t.types.matches("zadig.workflow.passed"));
    }

    #[test]
    fn builtin_templates_compile_and_claim_their_types() {
        let names: Vec<&str> = builtin().iter().map(|t| t.name.as_str()).collect();
        for expected in [
            "generic",
            "zadig.workflow",
            "gitlab.system",
            "gitlab.merge_request",
            "git.push",
            "git.pull_request",
            "alertmanager",
            "kubeevent.artifactpromotionrun.failed",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        assert!(builtin().iter().all(|t| t.builtin));
    }

    #[test]
    fn errors_name_the_field() {
        let errs = compile(
            "t",
            &json!({"text": "ok", "channels": {"x": {"title": "{{#if}}"}}}),
        )
        .unwrap_err();
        assert_eq!(errs[0].path, "/spec/channels/x/title");
    }

    #[test]
    fn render_errors_say_which_part() {
        let t = compile("t", &json!({"text": "{{data.missing}}"})).unwrap();
        let err = t
            .render(&RenderCtx::new(json!({"data": {}})), "c", "webhook")
            .unwrap_err();
        assert!(err.starts_with("text:"), "{err}");
    }
}
