//! `kind: Subscription` and `kind: ClusterSubscription` (core.katanomi.dev/v1alpha1, as the ACP
//! guide writes it): one subscriber, the objects and event types they follow, their channels.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::digest::{DigestDef, DigestSpec};
use super::filter::{Filter, FilterSpec, ObjectSelector, ObjectSpec};
use crate::doc::pattern::Patterns;
use crate::doc::{DocError, parse_spec};
use crate::render::Tpl;

/// The annotation ACP uses to name a subscription's channels (comma-separated).
pub const PLUGIN_CLASSES: &str = "core.katanomi.dev/sink.pluginclasses";
/// ACP's ownership annotation; it must name the subscriber.
pub const OWNED_BY: &str = "katanomi.dev/owned.username";

#[derive(Debug, Deserialize)]
struct SubscriptionSpec {
    subscriber: SubscriberSpec,
    #[serde(default)]
    channels: Vec<String>,
    subscriptions: Vec<EntrySpec>,
    digest: Option<DigestSpec>,
    thread: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SubscriberSpec {
    name: String,
    #[serde(default)]
    info: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
struct EntrySpec {
    #[serde(default)]
    object: ObjectSpec,
    events: Vec<EventSpec>,
}

#[derive(Debug, Deserialize)]
struct EventSpec {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    filter: FilterSpec,
}

/// One (object, event type, filter) a subscriber follows.
#[derive(Debug)]
pub struct Rule {
    /// The event type, exact or glob.
    pub ty: String,
    pub types: Patterns,
    pub object: ObjectSelector,
    pub filter: Filter,
}

/// A compiled subscription.
#[derive(Debug, Clone)]
pub struct SubscriptionDef {
    pub name: String,
    pub subscriber: String,
    /// The Channels it is delivered on: `spec.channels`, and once the catalog is assembled,
    /// the Channels its plugin classes stand for.
    pub channels: Vec<String>,
    /// ACP plugin classes (`core.katanomi.dev/sink.pluginclasses`), resolved to Channels by the
    /// catalog (a class with no Channel is a warning, not an error).
    pub classes: Vec<String>,
    /// Shared: a subscription is copied when its classes are resolved, its compiled rules are not.
    pub rules: Arc<Vec<Rule>>,
    /// The subscriber's events inside a window become one message.
    pub digest: Option<Arc<DigestDef>>,
    /// The thread its events continue, instead of the template's.
    pub thread: Option<Tpl>,
}

/// Compiles a Subscription / ClusterSubscription document (the whole document: channels may
/// come from its annotations). Warnings go to `warnings`.
pub fn compile(
    name: &str,
    doc: &Value,
    warnings: &mut Vec<DocError>,
) -> Result<SubscriptionDef, Vec<DocError>> {
    let spec: SubscriptionSpec = parse_spec(&doc["spec"])?;
    let annotations = doc
        .pointer("/metadata/annotations")
        .and_then(Value::as_object);
    let annotation = |key: &str| annotations.and_then(|a| a.get(key)).and_then(Value::as_str);
    let channels = spec.channels;
    let mut classes: Vec<String> = Vec::new();
    for c in annotation(PLUGIN_CLASSES)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        if !classes.iter().any(|x| x == c) {
            classes.push(c.to_string());
        }
    }
    let mut errors = Vec::new();
    if channels.is_empty() && classes.is_empty() {
        errors.push(DocError::new(
            "/spec/channels",
            format!("no channels: list them in spec.channels or the {PLUGIN_CLASSES} annotation"),
        ));
    }
    let subscriber = spec.subscriber.name;
    if let Some(owner) = annotation(OWNED_BY)
        && owner != subscriber
    {
        warnings.push(DocError::new(
            "/metadata/annotations",
            format!("{OWNED_BY} is {owner:?} but the subscriber is {subscriber:?}"),
        ));
    }
    let info = |k: &str| match spec.subscriber.info.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let (id, mail) = (info("id"), info("mail"));
    let placeholders = [
        ("subscriber.name", subscriber.as_str()),
        ("subscriber.info.id", id.as_str()),
        ("subscriber.info.mail", mail.as_str()),
    ];
    let mut rules = Vec::new();
    for (i, entry) in spec.subscriptions.iter().enumerate() {
        let object = ObjectSelector::new(&entry.object);
        for (j, ev) in entry.events.iter().enumerate() {
            let path = format!("/spec/subscriptions/{i}/events/{j}");
            let types =
                match Patterns::compile(std::slice::from_ref(&ev.ty), &format!("{path}/type")) {
                    Ok(p) => p,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
            match Filter::compile(&ev.filter, &placeholders, &format!("{path}/filter")) {
                Ok(filter) => rules.push(Rule {
                    ty: ev.ty.clone(),
                    types,
                    object: object.clone(),
                    filter,
                }),
                Err(e) => errors.push(e),
            }
        }
    }
    let digest = spec.digest.as_ref().and_then(|d| {
        DigestDef::compile(d, "/spec/digest")
            .map(Arc::new)
            .map_err(|e| errors.push(e))
            .ok()
    });
    let thread = Tpl::compile_field(spec.thread.as_deref(), "/spec/thread", &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(SubscriptionDef {
        name: name.to_string(),
        subscriber,
        channels,
        classes,
        rules: Arc::new(rules),
        digest,
        thread,
    })
}
