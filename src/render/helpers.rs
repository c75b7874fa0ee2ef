//! Template helpers beyond handlebars' built-ins (`if`, `each`, `eq`, `and`, `len`, …).
//!
//! - `{{json value}}` — the value as compact JSON.
//! - `{{default value "fallback"}}` — the value, or the fallback when it is missing, null or "".
//! - `{{join list ", "}}` — array items joined (separator defaults to ", ").
//! - `{{datetime value "+08:00"}}` — unix seconds (or milliseconds) or an RFC 3339 time as
//!   `2024-07-31 13:45:27` in the given offset (default `+08:00`).
//! - `{{duration end start}}` / `{{duration seconds}}` — `1h2m3s`.
//! - `{{map value "passed=成功;failed=失败" [fallback]}}` — a value through a table; unknown
//!   values print as themselves (or the fallback).

use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason,
};
use serde_json::Value;

pub fn register(hb: &mut Handlebars<'static>) {
    hb.register_helper("json", Box::new(json));
    hb.register_helper("default", Box::new(default));
    hb.register_helper("join", Box::new(join));
    hb.register_helper("datetime", Box::new(datetime));
    hb.register_helper("duration", Box::new(duration));
    hb.register_helper("map", Box::new(map));
}

/// A parameter's value, `None` when missing or null.
fn value<'a>(h: &'a Helper<'_>, i: usize) -> Option<&'a Value> {
    h.param(i)
        .filter(|p| !p.is_value_missing())
        .map(|p| p.value())
        .filter(|v| !v.is_null())
}

/// A number from a JSON number or a numeric string.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn datetime(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let Some(v) = value(h, 0) else {
        return Ok(());
    };
    let offset = value(h, 1)
        .and_then(Value::as_str)
        .and_then(|o| o.parse::<chrono::FixedOffset>().ok())
        .unwrap_or_else(|| chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset"));
    let at = match number(v) {
        // Milliseconds are written as 13 digits; seconds as 10.
        Some(n) if n > 1e11 => chrono::DateTime::from_timestamp_millis(n as i64),
        Some(n) => chrono::DateTime::from_timestamp(n as i64, 0),
        None => v
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.to_utc()),
    };
    match at {
        Some(t) => out.write(
            &t.with_timezone(&offset)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
        )?,
        None => out.write(&text(v))?,
    }
    Ok(())
}

fn duration(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let secs = match (value(h, 0).and_then(number), value(h, 1).and_then(number)) {
        (Some(end), Some(start)) => end - start,
        (Some(s), None) => s,
        _ => return Ok(()),
    };
    let mut left = secs.max(0.0).round() as u64;
    let mut s = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if left >= size {
            s.push_str(&format!("{}{unit}", left / size));
            left %= size;
        }
    }
    if left > 0 || s.is_empty() {
        s.push_str(&format!("{left}s"));
    }
    out.write(&s)?;
    Ok(())
}

fn map(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let table = value(h, 1)
        .and_then(Value::as_str)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("map", 1))?;
    let key = value(h, 0).map(text).unwrap_or_default();
    let mapped = table
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string());
    let fallback = || value(h, 2).map(text).unwrap_or_else(|| key.clone());
    out.write(&mapped.unwrap_or_else(fallback))?;
    Ok(())
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

    #[test]
    fn time_helpers() {
        let d = json!({"start": 1722404733, "end": 1722404783, "ms": 1722404733000u64, "at": "2024-07-31T05:45:33Z"});
        assert_eq!(
            render("{{datetime start}}", d.clone()).unwrap(),
            "2024-07-31 13:45:33"
        );
        assert_eq!(
            render("{{datetime ms}}", d.clone()).unwrap(),
            "2024-07-31 13:45:33"
        );
        assert_eq!(
            render("{{datetime at \"+00:00\"}}", d.clone()).unwrap(),
            "2024-07-31 05:45:33"
        );
        assert_eq!(render("{{duration end start}}", d.clone()).unwrap(), "50s");
        assert_eq!(render("{{duration 3725}}", d.clone()).unwrap(), "1h2m5s");
        assert_eq!(render("[{{datetime nope}}]", d).unwrap(), "[]");
    }

    #[test]
    fn map_helper() {
        let d = json!({"s": "passed", "t": "weird"});
        let table = "passed=成功;failed=失败";
        assert_eq!(
            render(&format!("{{{{map s \"{table}\"}}}}"), d.clone()).unwrap(),
            "成功"
        );
        assert_eq!(
            render(&format!("{{{{map t \"{table}\"}}}}"), d.clone()).unwrap(),
            "weird"
        );
        assert_eq!(
            render(&format!("{{{{map t \"{table}\" \"?\"}}}}"), d).unwrap(),
            "?"
        );
    }
}
