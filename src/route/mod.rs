//! Who must hear about an event: matching Routes and Subscriptions become audiences — a channel,
//! the template to render with, and recipients resolved through the User directory.

pub mod cel;
pub mod filter;
pub mod index;

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use self::cel::CelInput;
use self::filter::{Filter, ObjectFacts};
use crate::catalog::route::FromEvent;
use crate::catalog::user::UserDef;
use crate::catalog::{Catalog, ChannelDef};
use crate::event::Event;
use crate::message::Recipients;

/// One channel's worth of recipients for one event.
#[derive(Debug)]
pub struct Audience<'c> {
    /// The Route or Subscription that produced it.
    pub origin: &'c str,
    pub channel: &'c Arc<ChannelDef>,
    /// Template named by the Route, if any.
    pub template: Option<&'c str>,
    pub to: Recipients,
}

/// A user the directory cannot address on a channel: reported, never silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unresolved {
    pub origin: String,
    pub user: String,
    pub channel: String,
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

impl Cel<'_> {
    fn passes(&mut self, filter: &Filter, origin: &str) -> bool {
        if filter.cel.is_none() {
            return true;
        }
        let input = self.input.get_or_init(|| CelInput::new(self.ce));
        match filter.matches_cel(input) {
            Ok(m) => m,
            Err(e) => {
                self.errors += 1;
                tracing::debug!(origin, error = %e, "CEL error; treated as no match");
                false
            }
        }
    }
}

/// Routes `event` (whose CloudEvents JSON is `ce`) through `catalog`.
pub fn route<'c>(catalog: &'c Catalog, event: &Event, ce: &Value) -> Routed<'c> {
    let mut out = Routed::default();
    let mut cel = Cel {
        ce,
        input: OnceCell::new(),
        errors: 0,
    };
    for r in &catalog.routes {
        if !(r.matches(&event.receiver, &event.ty)
            && r.filter.matches_attributes(event)
            && cel.passes(&r.filter, &r.name))
        {
            continue;
        }
        let mut named = r.to.clone();
        // A ready message (CNB user notify) names its own recipients.
        if let Some(ready) = &event.message {
            named.merge(&ready.to);
        }
        if !r.from_event.is_empty() {
            read_recipients(
                catalog,
                &r.from_event,
                ce,
                &r.name,
                &mut named,
                &mut out.unresolved,
            );
        }
        for name in &r.channels {
            // References were checked when the catalog loaded, so the channel exists.
            let Some(channel) = catalog.channels.get(name) else {
                continue;
            };
            let to = resolve(
                &named,
                channel,
                &catalog.users,
                &r.name,
                &mut out.unresolved,
            );
            out.audiences.push(Audience {
                origin: &r.name,
                channel,
                template: r.template.as_deref(),
                to,
            });
        }
    }
    if !catalog.subscriptions.is_empty() {
        let facts = ObjectFacts::of(event);
        let mut matched: Vec<u32> = Vec::new();
        for (s, rule) in catalog
            .subscriptions
            .candidates(&event.ty, facts.namespace.as_deref(), ce)
        {
            if matched.last() == Some(&s) {
                continue; // this subscription already matched through another rule
            }
            let sub = catalog.subscriptions.get(s);
            if rule.object.matches(&facts)
                && rule.filter.matches_attributes(event)
                && cel.passes(&rule.filter, &sub.name)
            {
                matched.push(s);
            }
        }
        for s in matched {
            let sub = catalog.subscriptions.get(s);
            for name in &sub.channels {
                let Some(channel) = catalog.channels.get(name) else {
                    continue;
                };
                match address(catalog.users.get(&sub.subscriber), &sub.subscriber, channel) {
                    Some(to) => out.audiences.push(Audience {
                        origin: &sub.name,
                        channel,
                        template: None,
                        to,
                    }),
                    None => out.unresolved.push(Unresolved {
                        origin: sub.name.clone(),
                        user: sub.subscriber.clone(),
                        channel: name.clone(),
                    }),
                }
            }
        }
    }
    out.cel_errors = cel.errors;
    out
}

/// Adds the recipients `from` points at in the event; mail addresses become user names through
/// the directory (or are reported).
fn read_recipients(
    catalog: &Catalog,
    from: &FromEvent,
    ce: &Value,
    origin: &str,
    into: &mut Recipients,
    unresolved: &mut Vec<Unresolved>,
) {
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
    for mail in read(&from.mails) {
        match catalog.users_by_mail.get(&mail.to_lowercase()) {
            Some(name) => users.push(name.clone()),
            None => unresolved.push(Unresolved {
                origin: origin.to_string(),
                user: mail,
                channel: "(directory)".into(),
            }),
        }
    }
    into.merge(&Recipients {
        users,
        mobiles: read(&from.mobiles),
        parties: read(&from.parties),
        tags: read(&from.tags),
        all: false,
    });
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

/// How a subscriber is reached on a channel: through the directory; a webhook also takes the
/// bare user name.
pub fn address(
    user: Option<&Arc<UserDef>>,
    name: &str,
    channel: &ChannelDef,
) -> Option<Recipients> {
    match user {
        Some(u) => u.address(channel.kind),
        None if channel.kind == crate::channel::ChannelKind::Webhook => Some(Recipients {
            users: vec![name.to_string()],
            ..Recipients::default()
        }),
        None => None,
    }
}

/// Static recipients for a channel: user names the directory knows become that channel's ids;
/// other entries are taken as ids already.
fn resolve(
    named: &Recipients,
    channel: &ChannelDef,
    users: &HashMap<String, Arc<UserDef>>,
    origin: &str,
    unresolved: &mut Vec<Unresolved>,
) -> Recipients {
    let mut to = Recipients {
        users: Vec::new(),
        ..named.clone()
    };
    for name in &named.users {
        match users.get(name) {
            None => {
                if !to.users.contains(name) {
                    to.users.push(name.clone());
                }
            }
            Some(u) => match u.address(channel.kind) {
                Some(r) => to.merge(&r),
                None => unresolved.push(Unresolved {
                    origin: origin.to_string(),
                    user: name.clone(),
                    channel: channel.name.clone(),
                }),
            },
        }
    }
    to
}
