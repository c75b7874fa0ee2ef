//! Template helpers beyond handlebars' built-ins (`if`, `each`, `eq`, `and`, `len`, …).
//!
//! - `{{json value}}` — the value as compact JSON.
//! - `{{default value "fallback"}}` — the value, or the fallback when it is missing, null or "".
//! - `{{join list ", "}}` — array items joined (separator defaults to ", ").

use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason,
};
use serde_json::Value;

pub fn register(hb: &mut Handlebars<'static>) {
    hb.register_helper("json", Box::new(json));
    hb.register_helper("default", Box::new(default));
    hb.register_helper("join", Box::new(join));
}

/// Plain text of a value: strings as they are, other scalars and structures as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn json(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let p = h
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("json", 0))?;
    if p.is_value_missing() {
        return Err(RenderErrorReason::MissingVariable(p.relative_path().cloned()).into());
    }
    out.write(&p.value().to_string())?;
    Ok(())
}

fn default(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let fallback = h
        .param(1)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("default", 1))?;
    let chosen = match h.param(0) {
        Some(p)
            if !p.is_value_missing() && !matches!(p.value(), Value::Null) && p.value() != "" =>
        {
            p.value()
        }
        _ => fallback.value(),
    };
    out.write(&text(chosen))?;
    Ok(())
}

fn join(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let p = h
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("join", 0))?;
    let sep = h
        .param(1)
        .and_then(|s| s.value().as_str().map(str::to_string))
        .unwrap_or_else(|| ", ".to_string());
    let joined = match p.value() {
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(&sep),
        other => text(other),
    };
    out.write(&joined)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::render::{RenderCtx, Tpl};
    use serde_json::json;

    fn render(src: &str, data: serde_json::Value) -> Result<String, String> {
        Tpl::compile(src).unwrap().render(&RenderCtx::new(data))
    }

    #[test]
    fn helpers_render() {
        let d = json!({"a": [1, "b"], "o": {"k": true}, "e": ""});
        assert_eq!(render("{{json o}}", d.clone()).unwrap(), "{\"k\":true}");
        assert_eq!(render("{{join a}}", d.clone()).unwrap(), "1, b");
        assert_eq!(render("{{join a \"|\"}}", d.clone()).unwrap(), "1|b");
        assert_eq!(render("{{default e \"-\"}}", d.clone()).unwrap(), "-");
        assert_eq!(render("{{default nope \"-\"}}", d.clone()).unwrap(), "-");
        assert_eq!(render("{{default o.k \"-\"}}", d.clone()).unwrap(), "true");
        assert!(render("{{json nope}}", d).is_err());
    }
}
