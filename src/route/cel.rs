//! CEL filters over `ce` (the event as CloudEvents JSON): `$(subscriber.*)` substituted as
//! quoted-safe literals, compiled once when the catalog loads, evaluated in one shared
//! environment per thread with the event converted once.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::objects::{Key, Map};
use cel::{Context, Env, Program, Value};

/// Longest accepted expression, in bytes.
pub const MAX_LEN: usize = 4096;
/// Deepest accepted nesting of brackets (the parser recurses on it).
pub const MAX_DEPTH: usize = 32;

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

thread_local! {
    /// The standard environment costs tens of microseconds to build: build it once per thread
    /// and give each event a child scope.
    static ROOT: Context<'static, 'static> = Context::with_env(ENV.clone());
}

/// A compiled CEL filter.
#[derive(Debug)]
pub struct CelFilter {
    program: Program,
}

/// Replaces `$(name)` placeholders (also written `\$(name)`, as a shell heredoc leaves them)
/// with values, so that no value can change the expression's structure: inside a string literal
/// the value is escaped for that literal; outside one it becomes a quoted string literal.
/// An unknown placeholder is an error.
pub fn substitute(template: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut quote: Option<char> = None;
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let rest = &template[i..];
        let placeholder = if rest.starts_with("\\$(") {
            Some(2)
        } else if rest.starts_with("$(") {
            Some(1)
        } else {
            None
        };
        if let Some(skip) = placeholder {
            let open = i + skip + 1;
            let close = template[open..]
                .find(')')
                .ok_or_else(|| format!("unclosed placeholder at byte {i}"))?;
            let name = &template[open..open + close];
            let value = values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| format!("unknown placeholder $({name})"))?;
            match quote {
                Some(q) => out.push_str(&escape(value, q)),
                None => {
                    out.push('"');
                    out.push_str(&escape(value, '"'));
                    out.push('"');
                }
            }
            // Skip the placeholder text.
            while let Some(&(j, _)) = chars.peek() {
                if j > open + close {
                    break;
                }
                chars.next();
            }
            continue;
        }
        match (quote, c) {
            (Some(_), '\\') => {
                out.push(c);
                if let Some((_, next)) = chars.next() {
                    out.push(next);
                }
                continue;
            }
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            _ => {}
        }
        out.push(c);
    }
    Ok(out)
}

/// Escapes `value` for a CEL string literal delimited by `quote`.
fn escape(value: &str, quote: char) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if c == quote => {
                s.push('\\');
                s.push(c);
            }
            c => s.push(c),
        }
    }
    s
}

impl CelFilter {
    /// Checks the size limits and compiles. Errors are meant for the catalog report.
    pub fn compile(source: &str) -> Result<CelFilter, String> {
        if source.len() > MAX_LEN {
            return Err(format!(
                "expression is {} bytes; the limit is {MAX_LEN}",
                source.len()
            ));
        }
        let mut depth = 0usize;
        let mut deepest = 0usize;
        for c in source.chars() {
            match c {
                '(' | '[' | '{' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if deepest > MAX_DEPTH {
            return Err(format!(
                "expression nests {deepest} deep; the limit is {MAX_DEPTH}"
            ));
        }
        let program = ENV
            .compile(source.trim())
            .map_err(|e| format!("CEL does not compile: {e}"))?;
        Ok(CelFilter { program })
    }

    /// Evaluates against an event; anything but `true` (false, an error, a non-bool) is a
    /// non-match, and an error is returned for counting.
    pub fn matches(&self, input: &CelInput) -> Result<bool, String> {
        input.eval(&self.program)
    }
}

/// An event prepared for CEL once, evaluated by any number of filters.
pub struct CelInput {
    ce: Value,
}

impl CelInput {
    pub fn new(ce: &serde_json::Value) -> CelInput {
        CelInput { ce: to_cel(ce) }
    }

    fn eval(&self, program: &Program) -> Result<bool, String> {
        ROOT.with(|root| {
            let mut scope = root.new_inner_scope();
            scope.add_variable_from_value("ce", self.ce.clone());
            match program.execute(&scope) {
                Ok(Value::Bool(b)) => Ok(b),
                Ok(other) => Err(format!("evaluated to {other:?}, not a bool")),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// JSON → CEL. Integers that fit in i64 become `int` (so `count + 1` works); larger ones
/// `uint`; everything else as expected.
pub fn to_cel(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Int(i),
            (None, Some(u), _) => Value::UInt(u),
            (_, _, Some(f)) => Value::Float(f),
            _ => Value::Null,
        },
        J::String(s) => Value::String(Arc::new(s.clone())),
        J::Array(a) => Value::List(Arc::new(a.iter().map(to_cel).collect())),
        J::Object(o) => {
            let map: HashMap<Key, Value> = o
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(src: &str, ce: serde_json::Value) -> Result<bool, String> {
        CelFilter::compile(src)?.matches(&CelInput::new(&ce))
    }

    #[test]
    fn substitutes_inside_and_outside_string_literals() {
        let vals = [("subscriber.name", "admin")];
        assert_eq!(
            substitute(r#"x == "$(subscriber.name)""#, &vals).unwrap(),
            r#"x == "admin""#
        );
        assert_eq!(
            substitute(r#"x == "\$(subscriber.name)""#, &vals).unwrap(),
            r#"x == "admin""#
        );
        assert_eq!(
            substitute("x == $(subscriber.name)", &vals).unwrap(),
            r#"x == "admin""#
        );
        assert_eq!(
            substitute("x == 'pre-$(subscriber.name)'", &vals).unwrap(),
            "x == 'pre-admin'"
        );
        assert!(
            substitute("$(subscriber.nope)", &vals)
                .unwrap_err()
                .contains("nope")
        );
    }

    #[test]
    fn substituted_values_cannot_inject() {
        let evil = [("subscriber.name", r#"a" || true || ""#)];
        let src = substitute(r#"ce.data.user == "$(subscriber.name)""#, &evil).unwrap();
        assert_eq!(eval(&src, json!({"data": {"user": "bob"}})), Ok(false));
        assert_eq!(
            eval(&src, json!({"data": {"user": r#"a" || true || ""#}})),
            Ok(true)
        );
        let bare = substitute(
            "ce.data.user == $(subscriber.name)",
            &[("subscriber.name", "x\\\"")],
        )
        .unwrap();
        assert_eq!(eval(&bare, json!({"data": {"user": "x\\\""}})), Ok(true));
    }

    #[test]
    fn seed_expressions_evaluate() {
        let ce = json!({
            "type": "t",
            "data": {
                "event": {"reason": "Running"},
                "object": {"status": {
                    "triggeredBy": {"user": {"name": "alice"}},
                    "artifactPromotionSpec": {"approvalSpec": {"users": [{"name": "bob"}, {"name": "carol"}]}}
                }}
            }
        });
        let approver = r#"ce.data.object.status.artifactPromotionSpec.approvalSpec.users.exists(item, item.name == "carol")"#;
        assert_eq!(eval(approver, ce.clone()), Ok(true));
        let first_running = r#"!has(ce.data.event.message) && ce.data.object.status.triggeredBy.user.name == "alice""#;
        assert_eq!(eval(first_running, ce.clone()), Ok(true));
        let mut later = ce.clone();
        later["data"]["event"]["message"] = json!("step 2");
        assert_eq!(eval(first_running, later), Ok(false));
    }

    #[test]
    fn json_integers_are_cel_ints() {
        assert_eq!(
            eval("ce.data.count + 1 == 3", json!({"data": {"count": 2}})),
            Ok(true)
        );
        assert_eq!(
            eval("ce.data.ratio > 0.5", json!({"data": {"ratio": 0.75}})),
            Ok(true)
        );
    }

    #[test]
    fn runtime_errors_are_errors_not_panics() {
        assert!(eval("ce.data.missing.field == 1", json!({"data": {}})).is_err());
        assert!(eval("ce.data.n", json!({"data": {"n": 1}})).is_err());
    }

    #[test]
    fn limits_and_syntax_are_checked_at_compile_time() {
        assert!(
            CelFilter::compile(&"a".repeat(MAX_LEN + 1))
                .unwrap_err()
                .contains("limit")
        );
        let deep = format!("{}1{}", "(".repeat(40), ")".repeat(40));
        assert!(CelFilter::compile(&deep).unwrap_err().contains("nests"));
        assert!(
            CelFilter::compile("ce.data ==")
                .unwrap_err()
                .contains("compile")
        );
    }
}
