//! CEL filters over `ce` (the event as CloudEvents JSON): `$(subscriber.*)` substituted as
//! quoted-safe literals, compiled once when the catalog loads, evaluated in one shared
//! environment per thread with the event converted once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
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
    /// String literals of which at least one must occur in the event for the filter to be
    /// true (see [`required_literals`]); `None` when no such set is known.
    required: Option<Vec<String>>,
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
        let required = required_literals(program.expression(), &[]);
        Ok(CelFilter { program, required })
    }

    /// String literals one of which must occur among the event's strings (values or keys) for
    /// this filter to be true, if the expression guarantees that. Indexes use it to skip the
    /// filter for events that cannot match.
    pub fn required_literals(&self) -> Option<&[String]> {
        self.required.as_deref()
    }

    /// Evaluates against an event; anything but `true` (false, an error, a non-bool) is a
    /// non-match, and an error is returned for counting.
    pub fn matches(&self, input: &CelInput) -> Result<bool, String> {
        input.eval(&self.program)
    }
}

/// A sound over-approximation of when `e` can be true: `Some(lits)` means "true only if some
/// literal in `lits` equals a string read out of `ce`", i.e. occurs among the event's string
/// values or map keys. `bound` are comprehension variables that range over parts of `ce`.
///
/// - `path == "lit"` / `"lit" == path`, where `path` reads from `ce` → {lit}
/// - `a && b` → whichever side has a set (the smaller)
/// - `a || b` → the union, if both sides have one
/// - `path.exists(x, p)` (its macro expansion) → the set of `p`, with `x` bound
/// - anything else → unknown
fn required_literals(e: &IdedExpr, bound: &[&str]) -> Option<Vec<String>> {
    match &e.expr {
        Expr::Call(call) if call.target.is_none() && call.args.len() == 2 => {
            let (a, b) = (&call.args[0], &call.args[1]);
            match call.func_name.as_str() {
                operators::EQUALS => match (string_literal(a), string_literal(b)) {
                    (Some(lit), None) if reads_event(b, bound) => Some(vec![lit.to_string()]),
                    (None, Some(lit)) if reads_event(a, bound) => Some(vec![lit.to_string()]),
                    _ => None,
                },
                operators::LOGICAL_AND => {
                    match (required_literals(a, bound), required_literals(b, bound)) {
                        (Some(x), Some(y)) => Some(if x.len() <= y.len() { x } else { y }),
                        (x, y) => x.or(y),
                    }
                }
                operators::LOGICAL_OR => {
                    let mut x = required_literals(a, bound)?;
                    x.extend(required_literals(b, bound)?);
                    Some(x)
                }
                _ => None,
            }
        }
        Expr::Comprehension(c) => {
            // `range.exists(x, pred)`: starts false, ORs the predicate in, returns the accumulator.
            let is_exists = matches!(&c.accu_init.expr, Expr::Literal(LiteralValue::Boolean(b)) if !*b.inner())
                && matches!(&c.result.expr, Expr::Ident(r) if *r == c.accu_var)
                && c.iter_var2.is_none();
            let Expr::Call(step) = &c.loop_step.expr else {
                return None;
            };
            let pred = match step.args.as_slice() {
                [acc, pred]
                    if step.func_name == operators::LOGICAL_OR
                        && matches!(&acc.expr, Expr::Ident(a) if *a == c.accu_var) =>
                {
                    pred
                }
                _ => return None,
            };
            if !is_exists || !reads_event(&c.iter_range, bound) {
                return None;
            }
            let mut inner: Vec<&str> = bound.to_vec();
            inner.push(&c.iter_var);
            required_literals(pred, &inner)
        }
        _ => None,
    }
}

fn string_literal(e: &IdedExpr) -> Option<&str> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s.inner()),
        _ => None,
    }
}

/// Whether `e` only reads a value out of the event: `ce`, a bound comprehension variable, and
/// field selections or indexing from those.
fn reads_event(e: &IdedExpr, bound: &[&str]) -> bool {
    match &e.expr {
        Expr::Ident(name) => name == "ce" || bound.contains(&name.as_str()),
        Expr::Select(s) => !s.test && reads_event(&s.operand, bound),
        Expr::Call(c)
            if c.func_name == operators::INDEX && c.target.is_none() && c.args.len() == 2 =>
        {
            reads_event(&c.args[0], bound)
        }
        _ => false,
    }
}

/// Every string in a JSON value, object keys included: what [`required_literals`] sets are
/// checked against.
pub fn strings<'a>(v: &'a serde_json::Value, out: &mut HashSet<&'a str>) {
    use serde_json::Value as J;
    match v {
        J::String(s) => {
            out.insert(s);
        }
        J::Array(a) => a.iter().for_each(|x| strings(x, out)),
        J::Object(o) => {
            for (k, x) in o {
                out.insert(k);
                strings(x, out);
            }
        }
        _ => {}
    }
}

/// An event prepared for CEL once — its values borrowed, not copied — and evaluated by any
/// number of filters.
pub struct CelInput<'a> {
    vars: EventVars<'a>,
}

/// Resolves `ce` to the converted event, by reference: no copy per evaluation.
struct EventVars<'a> {
    ce: Box<dyn Val + 'a>,
}

impl VariableResolver for EventVars<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        (variable == "ce").then(|| CowVal::Borrowed(&*self.ce))
    }
}

/// A child of the shared root scope that resolves the event's variables.
fn scope<'r, 'v>(root: &'r Context<'r, 'v>, vars: &'v dyn VariableResolver) -> Context<'r, 'v> {
    let mut s = root.new_inner_scope();
    s.set_variable_resolver(vars);
    s
}

impl<'a> CelInput<'a> {
    pub fn new(ce: &'a serde_json::Value) -> CelInput<'a> {
        CelInput {
            vars: EventVars { ce: to_val(ce) },
        }
    }

    fn eval(&self, program: &Program) -> Result<bool, String> {
        ROOT.with(|root| match program.execute(&scope(root, &self.vars)) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("evaluated to {other:?}, not a bool")),
            Err(e) => Err(e.to_string()),
        })
    }
}

/// JSON → CEL, borrowing strings. Integers that fit in i64 become `int` (so `count + 1` works),
/// larger ones `uint`, other numbers `double`.
fn to_val(v: &serde_json::Value) -> Box<dyn Val + '_> {
    use serde_json::Value as J;
    match v {
        J::Null => Box::new(CelNull),
        J::Bool(b) => Box::new(CelBool::from(*b)),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Box::new(CelInt::from(i)),
            (None, Some(u), _) => Box::new(CelUInt::from(u)),
            (_, _, Some(f)) => Box::new(CelDouble::from(f)),
            _ => Box::new(CelNull),
        },
        J::String(s) => Box::new(CelString::from(s.as_str())),
        J::Array(a) => Box::new(CelList::from(a.iter().map(to_val).collect::<Vec<_>>())),
        J::Object(o) => Box::new(CelMap::from(
            o.iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), to_val(v)))
                .collect::<HashMap<_, _>>(),
        )),
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

    fn required(src: &str) -> Option<Vec<String>> {
        CelFilter::compile(src)
            .unwrap()
            .required_literals()
            .map(<[String]>::to_vec)
    }

    #[test]
    fn required_literals_are_found_only_where_sound() {
        let seed_approver = r#"ce.data.object.status.artifactPromotionSpec.approvalSpec.users.exists(item, item.name == "carol")"#;
        assert_eq!(required(seed_approver), Some(vec!["carol".to_string()]));
        let seed_running = r#"!has(ce.data.event.message) && ce.data.object.status.triggeredBy.user.name == "alice""#;
        assert_eq!(required(seed_running), Some(vec!["alice".to_string()]));
        assert_eq!(
            required(r#""x" == ce.data["k"]"#),
            Some(vec!["x".to_string()])
        );
        assert_eq!(
            required(r#"ce.data.a == "x" || ce.data.b == "y""#),
            Some(vec!["x".to_string(), "y".to_string()])
        );
        assert_eq!(
            required(r#"ce.data.tags.exists(t, t == "hot")"#),
            Some(vec!["hot".to_string()])
        );
        for unsound in [
            r#"ce.data.a != "x""#,
            r#"ce.data.a == "x" || true"#,
            r#"!(ce.data.a == "x")"#,
            r#"ce.data.a + "b" == "xb""#,
            r#"ce.data.list.all(i, i == "x")"#,
            r#"size(ce.data.a) == 1"#,
            r#"ce.data.a.startsWith("x")"#,
        ] {
            assert_eq!(required(unsound), None, "{unsound}");
        }
    }

    #[test]
    fn an_indexed_filter_never_matches_an_event_without_its_literal() {
        // The soundness claim, checked by evaluation: events lacking the literal never match.
        let cases = [
            (
                r#"ce.data.users.exists(u, u.name == "carol")"#,
                json!({"data": {"users": [{"name": "bob"}]}}),
            ),
            (
                r#"ce.data.owner == "carol" && ce.type == "t""#,
                json!({"type": "t", "data": {"owner": "dave"}}),
            ),
            (
                r#"ce.data.m.exists(k, k == "carol")"#,
                json!({"data": {"m": {"carol": 1}}}),
            ),
        ];
        for (src, ce) in cases {
            let f = CelFilter::compile(src).unwrap();
            let lits = f.required_literals().unwrap();
            let mut set = HashSet::new();
            strings(&ce, &mut set);
            let present = lits.iter().any(|l| set.contains(l.as_str()));
            let matched = f.matches(&CelInput::new(&ce)).unwrap_or(false);
            assert!(present || !matched, "{src} matched without its literal");
        }
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
