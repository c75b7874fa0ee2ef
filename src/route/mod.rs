//! Who must hear about an event: matching Routes and Subscriptions become audiences — a channel,
//! the template to render with, and recipients resolved through the User directory.

pub mod cel;
pub mod def;
pub mod digest;
pub mod filter;
pub mod index;
pub mod subscription;

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use self::cel::CelInput;
use self::def::{FromEvent, RouteDef};
use self::digest::DigestDef;
use self::filter::{Filter, ObjectFacts};
use self::index::SubscriptionIndex;
use self::subscription::Rule;
use crate::channel::ChannelDef;
use crate::directory::{Directory, User};
use crate::event::Event;
use crate::message::Recipients;

/// What routing reads: the Routes, the Subscriptions, the Channels they name and the User
/// directory (a view of the catalog, which owns them).
#[derive(Debug, Clone, Copy)]
pub struct Routing<'c> {
    pub routes: &'c [Arc<RouteDef>],
    pub subscriptions: &'c SubscriptionIndex,
    pub channels: &'c HashMap<String, Arc<ChannelDef>>,
    pub directory: &'c Directory,
}

/// One channel's worth of recipients for one event.
#[derive(Debug)]
pub struct Audience<'c> {
    /// The Route or Subscription that produced it.
    pub origin: &'c str,
    pub channel: &'c Arc<ChannelDef>,
    /// Template named by the Route, if any.
    pub template: Option<&'c str>,
    pub to: Recipients,
    /// The Route's or Subscription's digest, if its events are collected.
    pub digest: Option<&'c DigestDef>,
    /// The Route's or Subscription's thread, over the template's.
    pub thread: Option<&'c crate::render::Tpl>,
}

/// A user the directory cannot address on a channel: reported, never silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unresolved {
    pub origin: String,
    pub user: String,
    pub channel: String,
    /// Not in the directory, so sent as written (it may be the channel's id already, or a name
    /// the vendor will not recognise): reported, not dropped.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub as_written: bool,
}

/// Everything routing found for one event.
#[derive(Debug, Default)]
pub struct Routed<'c> {
    pub audiences: Vec<Audience<'c>>,
    /// CEL filters that failed at run time (counted as non-matches).
    pub cel_errors: u32,
    pub unresolved: Vec<Unresolved>,
}

/// Lazily prepared CEL input, shared by every filter that looks at this event.
struct Cel<'a> {
    ce: &'a Value,
    input: OnceCell<CelInput<'a>>,
    errors: u32,
}

/// Why a Route or a Subscription rule did not match an event.
#[derive(Debug)]
pub enum Miss<'a> {
    Source,
    Type,
    /// An object field the rule wants otherwise: (field, wanted).
    Object(&'static str, &'a str),
    /// An attribute condition: (exact | prefix | suffix, attribute, wanted).
    Attribute(&'static str, &'a str, &'a str),
    CelFalse,
    CelError(String),
}

impl std::fmt::Display for Miss<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::Source => f.write_str("not from one of its sources"),
            Miss::Type => f.write_str("type does not match"),
            Miss::Object(field, want) => write!(f, "object {field} is not {want:?}"),
            Miss::Attribute(kind, attr, want) => write!(f, "{kind} {attr}: wants {want:?}"),
            Miss::CelFalse => f.write_str("CEL false"),
            Miss::CelError(e) => write!(f, "CEL error: {e}"),
        }
    }
}

impl<'a> Cel<'a> {
    fn check<'f>(&mut self, filter: &'f Filter, origin: &str) -> Result<(), Miss<'f>> {
        if filter.cel.is_none() {
            return Ok(());
        }
        let input = self.input.get_or_init(|| CelInput::new(self.ce));
        match filter.matches_cel(input) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Miss::CelFalse),
            Err(e) => {
                self.errors += 1;
                tracing::debug!(origin, error = %e, "CEL error; treated as no match");
                Err(Miss::CelError(e))
            }
        }
    }
}

/// Whether Route `r` takes `event`; the cheap checks first, CEL last.
fn check_route<'r>(r: &'r RouteDef, event: &Event, cel: &mut Cel<'_>) -> Result<(), Miss<'r>> {
    if !r.sources.matches_or_empty(&event.receiver) {
        return Err(Miss::Source);
    }
    if !r.types.matches_or_empty(&event.ty) {
        return Err(Miss::Type);
    }
    if let Some((kind, attr, want)) = r.filter.first_failing(event) {
        return Err(Miss::Attribute(kind, attr, want));
    }
    cel.check(&r.filter, &r.name)
}

/// Whether a subscription rule takes `event` (about the object `facts` describe).
fn check_rule<'r>(
    rule: &'r Rule,
    origin: &str,
    event: &Event,
    facts: &ObjectFacts,
    cel: &mut Cel<'_>,
) -> Result<(), Miss<'r>> {
    if !rule.types.matches(&event.ty) {
        return Err(Miss::Type);
    }
    if let Some((field, want)) = rule.object.mismatch(facts) {
        return Err(Miss::Object(field, want));
    }
    if let Some((kind, attr, want)) = rule.filter.first_failing(event) {
        return Err(Miss::Attribute(kind, attr, want));
    }
    cel.check(&rule.filter, origin)
}

/// Routes `event` (whose CloudEvents JSON is `ce`).
pub fn route<'c>(routing: Routing<'c>, event: &Event, ce: &Value) -> Routed<'c> {
    let mut out = Routed::default();
    let mut cel = Cel {
        ce,
        input: OnceCell::new(),
        errors: 0,
    };
    for r in routing.routes {
        if check_route(r, event, &mut cel).is_err() {
            continue;
        }
        let mut named = r.to.clone();
        // A ready message (CNB user notify) names its own recipients.
        if let Some(ready) = &event.message {
            named.merge(&ready.to);
        }
        let mut mails = Vec::new();
        if !r.from_event.is_empty() {
            mails = read_recipients(routing.directory, &r.from_event, ce, &mut named);
        }
        for name in &r.channels {
            // References were checked when the catalog loaded, so the channel exists.
            let Some(channel) = routing.channels.get(name) else {
                continue;
            };
            let to = resolve(
                (&named, &mails),
                channel,
                routing.directory,
                &r.name,
                &mut out.unresolved,
            );
            out.audiences.push(Audience {
                origin: &r.name,
                channel,
                template: r.template.as_deref(),
                to,
                digest: r.digest.as_ref(),
                thread: r.thread.as_ref(),
            });
        }
    }
    if !routing.subscriptions.is_empty() {
        let facts = ObjectFacts::of(event);
        let mut matched: Vec<u32> = Vec::new();
        for (s, rule) in routing
            .subscriptions
            .candidates(&event.ty, facts.namespace.as_deref(), ce)
        {
            if matched.last() == Some(&s) {
                continue; // this subscription already matched through another rule
            }
            let sub = routing.subscriptions.get(s);
            if check_rule(rule, &sub.name, event, &facts, &mut cel).is_ok() {
                matched.push(s);
            }
        }
        for s in matched {
            let sub = routing.subscriptions.get(s);
            for name in &sub.channels {
                let Some(channel) = routing.channels.get(name) else {
                    continue;
                };
                match address(
                    routing.directory.get(&sub.subscriber),
                    &sub.subscriber,
                    channel,
                ) {
                    Some(to) => out.audiences.push(Audience {
                        origin: &sub.name,
                        channel,
                        template: None,
                        to,
                        digest: sub.digest.as_deref(),
                        thread: sub.thread.as_ref(),
                    }),
                    None => out.unresolved.push(Unresolved {
                        origin: sub.name.clone(),
                        user: sub.subscriber.clone(),
                        channel: name.clone(),
                        as_written: false,
                    }),
                }
            }
        }
    }
    out.cel_errors = cel.errors;
    out
}

/// Whether each Route and Subscription takes `event`, and if not, why (every one, not only
/// the index's candidates: this is for people reading it, not for speed).
#[derive(Debug, serde::Serialize)]
pub struct Verdict {
    /// `Route <name>` or `Subscription <name>`.
    pub what: String,
    pub matched: bool,
    pub why: String,
}

pub fn explain(routing: Routing<'_>, event: &Event, ce: &Value) -> Vec<Verdict> {
    let mut cel = Cel {
        ce,
        input: OnceCell::new(),
        errors: 0,
    };
    let mut out = Vec::new();
    for r in routing.routes {
        let result = check_route(r, event, &mut cel);
        out.push(Verdict {
            what: format!("Route {}", r.name),
            matched: result.is_ok(),
            why: match result {
                Ok(()) => format!("→ {}", r.channels.join(", ")),
                Err(m) => m.to_string(),
            },
        });
    }
    let facts = ObjectFacts::of(event);
    for sub in routing.subscriptions.iter() {
        let mut misses = Vec::new();
        let mut hit = None;
        for (i, rule) in sub.rules.iter().enumerate() {
            match check_rule(rule, &sub.name, event, &facts, &mut cel) {
                Ok(()) => {
                    hit = Some(i);
                    break;
                }
                // A rule for another event type says nothing worth reading.
                Err(Miss::Type) => {}
                Err(m) => misses.push(format!("rule {}: {m}", i + 1)),
            }
        }
        out.push(Verdict {
            what: format!("Subscription {} ({})", sub.name, sub.subscriber),
            matched: hit.is_some(),
            why: match hit {
                Some(i) => format!("rule {} → {}", i + 1, sub.channels.join(", ")),
                None if misses.is_empty() => "no rule for this event type".to_string(),
                None => misses.join("; "),
            },
        });
    }
    out
}

/// Adds the recipients `from` points at in the event; mail addresses become user names through
/// the directory. Returns the mail addresses it does not know, for each channel to take or not.
fn read_recipients(
    directory: &Directory,
    from: &FromEvent,
    ce: &Value,
    into: &mut Recipients,
) -> Vec<String> {
    let read = |pointers: &[String]| -> Vec<String> {
        let mut out = Vec::new();
        for p in pointers {
            if let Some(v) = ce.pointer(p) {
                ids_in(v, &mut out);
            }
        }
        out
    };
    let mut users = read(&from.users);
    let mut unknown = Vec::new();
    for mail in read(&from.mails) {
        match directory.name_of_mail(&mail) {
            Some(name) => users.push(name.to_string()),
            None if !unknown.contains(&mail) => unknown.push(mail),
            None => {}
        }
    }
    into.merge(&Recipients {
        users,
        mobiles: read(&from.mobiles),
        parties: read(&from.parties),
        tags: read(&from.tags),
        ..Recipients::default()
    });
    unknown
}

/// The ids in a JSON value: strings split on `|` and `,`, numbers, and lists of those.
fn ids_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.extend(
            s.split(['|', ','])
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string),
        ),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|i| ids_in(i, out)),
        _ => {}
    }
}

/// How a subscriber is reached on a channel: through the directory, or as the channel takes a
/// name the directory does not know (a webhook any name, email a mail address).
pub fn address(user: Option<&Arc<User>>, name: &str, channel: &ChannelDef) -> Option<Recipients> {
    match user {
        Some(u) => channel.channel.address(u),
        None => channel.channel.address_unknown(name),
    }
}

/// Static recipients for a channel: user names the directory knows become that channel's ids;
/// other entries are taken as the channel takes unknown names, else as its ids already. `mails`
/// are payload addresses the directory does not know: the channel takes them or they are
/// reported.
fn resolve(
    (named, mails): (&Recipients, &[String]),
    channel: &ChannelDef,
    directory: &Directory,
    origin: &str,
    unresolved: &mut Vec<Unresolved>,
) -> Recipients {
    let mut to = Recipients {
        users: Vec::new(),
        ..named.clone()
    };
    let mut report = |user: &str, as_written: bool| {
        unresolved.push(Unresolved {
            origin: origin.to_string(),
            user: user.to_string(),
            channel: channel.name.clone(),
            as_written,
        })
    };
    for name in &named.users {
        match directory.get(name) {
            None => match channel.channel.address_unknown(name) {
                Some(r) => to.merge(&r),
                // A chat vendor needs its own id, which the directory did not give: sent as
                // written (it may be that id already), and said so instead of mentioning
                // `<@name>` silently.
                None => {
                    if !to.users.contains(name) {
                        to.users.push(name.clone());
                    }
                    report(name, true);
                }
            },
            Some(u) => match channel.channel.address(u) {
                Some(r) => to.merge(&r),
                None => report(name, false),
            },
        }
    }
    for mail in mails {
        match channel.channel.address_unknown(mail) {
            Some(r) => to.merge(&r),
            None => report(mail, false),
        }
    }
    to
}
