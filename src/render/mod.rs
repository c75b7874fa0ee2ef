//! Handlebars rendering — strict mode, no HTML escaping — of compiled templates against an
//! event's context.

mod helpers;
pub mod template;

use std::sync::OnceLock;

use handlebars::{Context, Handlebars, RenderContext, Renderable, StringOutput, Template};
use serde_json::{Map, Value};

use crate::message::ReadyMessage;

/// The registry every template renders with: strict (a missing field is an error, except
/// inside `{{#if}}`), no HTML escaping (chat messages are not HTML), and our helpers.
fn registry() -> &'static Handlebars<'static> {
    static REGISTRY: OnceLock<Handlebars<'static>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        helpers::register(&mut hb);
        hb
    })
}

/// A compiled handlebars template.
#[derive(Debug, Clone)]
pub struct Tpl(Template);

impl Tpl {
    /// Compiles `source`; the error names the line and column.
    pub fn compile(source: &str) -> Result<Tpl, String> {
        Template::compile(source)
            .map(Tpl)
            .map_err(|e| format!("template does not compile: {e}"))
    }

    /// Compiles a document's optional template field (`thread`) at `path`; an error goes to
    /// `errors`, naming the field.
    pub fn compile_field(
        source: Option<&str>,
        path: &str,
        errors: &mut Vec<crate::doc::DocError>,
    ) -> Option<Tpl> {
        Tpl::compile(source?)
            .map_err(|e| errors.push(crate::doc::DocError::new(path, e)))
            .ok()
    }

    /// Renders against `ctx`; the error says which field or helper failed.
    pub fn render(&self, ctx: &RenderCtx) -> Result<String, String> {
        let hb = registry();
        let mut rc = RenderContext::new(None);
        let mut out = StringOutput::new();
        self.0
            .render(hb, &ctx.0, &mut rc, &mut out)
            .map_err(describe_render_error)?;
        out.into_string().map_err(|e| e.to_string())
    }
}

fn describe_render_error(e: handlebars::RenderError) -> String {
    let place = match (e.line_no, e.column_no) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        _ => String::new(),
    };
    format!("{}{place}", e.reason())
}

/// The data a template sees.
pub struct RenderCtx(Context);

impl RenderCtx {
    /// Wraps any JSON value as the template root.
    pub fn new(root: Value) -> RenderCtx {
        RenderCtx(Context::from(root))
    }

    /// The root for an event: the event in CloudEvents JSON (`type`, `source`, `data`, extensions,
    /// …), plus `vars` (settings) and `message` (when the body was a ready message).
    pub fn for_event(ce: Value, vars: &Value, ready: Option<&ReadyMessage>) -> RenderCtx {
        let mut root = match ce {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("data".into(), other);
                m
            }
        };
        root.insert("vars".into(), vars.clone());
        if let Some(r) = ready {
            root.insert(
                "message".into(),
                serde_json::to_value(&r.message).unwrap_or(Value::Null),
            );
        }
        RenderCtx::new(Value::Object(root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strict_mode_reports_missing_fields_but_if_tolerates_them() {
        let ctx = RenderCtx::new(json!({"data": {"name": "demo"}}));
        let ok = Tpl::compile("{{data.name}}{{#if data.missing}}!{{/if}}").unwrap();
        assert_eq!(ok.render(&ctx).unwrap(), "demo");
        let err = Tpl::compile("x {{data.nope}}")
            .unwrap()
            .render(&ctx)
            .unwrap_err();
        assert!(err.contains("data.nope"), "{err}");
    }

    #[test]
    fn does_not_html_escape() {
        let ctx = RenderCtx::new(json!({"t": "<a href=\"x\">&</a>"}));
        assert_eq!(
            Tpl::compile("{{t}}").unwrap().render(&ctx).unwrap(),
            "<a href=\"x\">&</a>"
        );
    }

    #[test]
    fn compile_errors_are_reported() {
        assert!(
            Tpl::compile("{{#if x}}unclosed")
                .unwrap_err()
                .contains("compile")
        );
    }

    #[test]
    fn event_context_has_vars_and_message() {
        let ready = ReadyMessage::from_body(
            &json!({"touser":"u","msgtype":"text","text":{"content":"hi"}}),
        );
        let ctx = RenderCtx::for_event(
            json!({"type": "t", "data": {}}),
            &json!({"platform_url": "https://p"}),
            ready.as_ref(),
        );
        let out = Tpl::compile("{{type}} {{vars.platform_url}} {{message.content}}")
            .unwrap()
            .render(&ctx)
            .unwrap();
        assert_eq!(out, "t https://p hi");
    }
}
