//! `kind: Route` compiled — non-personal routing: events matching sources and types go to channels with
//! static recipients.

use serde::Deserialize;
use serde_json::Value;

use super::digest::{DigestDef, DigestSpec};
use super::filter::{Filter, FilterSpec};
use crate::doc::pattern::Patterns;
use crate::doc::{DocError, parse_spec};
use crate::message::Recipients;
use crate::render::Tpl;

#[derive(Debug, Deserialize)]
struct RouteSpec {
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    types: Vec<String>,
    channels: Vec<String>,
    template: Option<String>,
    #[serde(default)]
    to: RecipientsSpec,
    #[serde(default)]
    filter: FilterSpec,
    digest: Option<DigestSpec>,
    thread: Option<String>,
}

/// Recipients as written in hooks.d (department and tag ids may be numbers).
#[derive(Debug, Default, Deserialize)]
pub struct RecipientsSpec {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    mobiles: Vec<String>,
    #[serde(default)]
    parties: Vec<IdText>,
    #[serde(default)]
    tags: Vec<IdText>,
    #[serde(default)]
    all: bool,
    #[serde(default, rename = "fromEvent")]
    from_event: FromEvent,
}

/// Recipients read out of each event: JSON pointers into the event in CloudEvents JSON (so
/// `/data/workflow/task_creator`). A value may be a string (`|` or `,` separated), a number or
/// a list of those.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FromEvent {
    /// User names (through the directory) or ids.
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub mobiles: Vec<String>,
    /// Mail addresses, looked up in the User directory.
    #[serde(default)]
    pub mails: Vec<String>,
    #[serde(default)]
    pub parties: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl FromEvent {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.mobiles.is_empty()
            && self.mails.is_empty()
            && self.parties.is_empty()
            && self.tags.is_empty()
    }
}

/// An id written as a string or a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdText {
    Text(String),
    Number(i64),
}

impl IdText {
    fn into_string(self) -> String {
        match self {
            IdText::Text(s) => s,
            IdText::Number(n) => n.to_string(),
        }
    }
}

impl RecipientsSpec {
    /// The static recipients, and the pointers to read more from each event.
    pub fn split(self) -> (Recipients, FromEvent) {
        let to = Recipients {
            users: self.users,
            mobiles: self.mobiles,
            parties: self.parties.into_iter().map(IdText::into_string).collect(),
            tags: self.tags.into_iter().map(IdText::into_string).collect(),
            all: self.all,
            mails: Vec::new(),
        };
        (to, self.from_event)
    }
}

/// A compiled Route.
#[derive(Debug)]
pub struct RouteDef {
    pub name: String,
    /// Receiving Source names; empty = every source.
    pub sources: Patterns,
    /// Event types; empty = every type.
    pub types: Patterns,
    pub channels: Vec<String>,
    /// Template to render with instead of the one chosen by event type.
    pub template: Option<String>,
    /// Static recipients (user names go through the User directory).
    pub to: Recipients,
    /// Recipients read from each event.
    pub from_event: FromEvent,
    /// Attribute and CEL filters on top of sources and types.
    pub filter: Filter,
    /// Events inside a window become one message per recipient set.
    pub digest: Option<DigestDef>,
    /// The thread its events continue, instead of the template's.
    pub thread: Option<Tpl>,
}

/// Compiles a Route document's `spec`.
pub fn compile(name: &str, spec: &Value) -> Result<RouteDef, Vec<DocError>> {
    let spec: RouteSpec = parse_spec(spec)?;
    let mut errors = Vec::new();
    let mut patterns = |list: &[String], path: &str| {
        Patterns::compile(list, path).unwrap_or_else(|e| {
            errors.push(e);
            Patterns::default()
        })
    };
    let sources = patterns(&spec.sources, "/spec/sources");
    let types = patterns(&spec.types, "/spec/types");
    let (to, from_event) = spec.to.split();
    let filter = Filter::compile(&spec.filter, &[], "/spec/filter").unwrap_or_else(|e| {
        errors.push(e);
        Filter::default()
    });
    let digest = spec.digest.as_ref().and_then(|d| {
        DigestDef::compile(d, "/spec/digest")
            .map_err(|e| errors.push(e))
            .ok()
    });
    let thread = Tpl::compile_field(spec.thread.as_deref(), "/spec/thread", &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(RouteDef {
        name: name.to_string(),
        sources,
        types,
        channels: spec.channels,
        template: spec.template,
        to,
        from_event,
        filter,
        digest,
        thread,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_sources_and_types() {
        let r = compile(
            "r",
            &json!({"sources": ["zadig"], "types": ["zadig.workflow.*"], "channels": ["c"],
                    "to": {"mobiles": ["138"], "parties": [2, "3"]}}),
        )
        .unwrap();
        assert!(r.sources.matches_or_empty("zadig") && !r.sources.matches_or_empty("cnb"));
        assert!(r.types.matches_or_empty("zadig.workflow.failed"));
        assert!(!r.types.matches_or_empty("zadig.release_plan.x"));
        assert_eq!(r.to.parties, vec!["2", "3"]);
        let all = compile("all", &json!({"channels": ["c"]})).unwrap();
        assert!(all.sources.matches_or_empty("any") && all.types.matches_or_empty("thing"));
    }
}
