//! Planning: an event's audiences rendered into deliveries — one per outbound request, content
//! cut to the channel's limit, recipients split at the channel's per-request limits, held for a
//! person's quiet hours or a digest's window.

pub mod digest;

use std::collections::HashMap;
use std::sync::Arc;

use sha2::Digest;

use crate::catalog::Catalog;
use crate::channel::{ChannelDef, Limits};
use crate::directory::{User, quiet};
use crate::event::Event;
use crate::message::{Message, MsgType, Recipients, truncate_utf8};
use crate::reason::Reason;
use crate::render::RenderCtx;
use crate::route::{self, Audience, Unresolved};
use crate::store::{ErrorInfo, NewDelivery};

pub use self::digest::DigestBook;

/// The deliveries planned for one event, and what routing noticed on the way.
#[derive(Debug, Default)]
pub struct Plan {
    pub deliveries: Vec<NewDelivery>,
    /// CEL filters that failed at run time (non-matches).
    pub cel_errors: u32,
    /// Recipients the User directory could not address.
    pub unresolved: Vec<Unresolved>,
}

/// Plans every delivery for `event` received at `now_ms`; each is due after its channel's
/// `retry.schedule[0]` (or when its quiet hours or its digest window end: `book` holds the open
/// windows). Render errors become deliveries that are dead from the start, carrying the error,
/// so they show up as dead letters.
pub fn plan(catalog: &Catalog, event: &Event, now_ms: u64, book: &DigestBook) -> Plan {
    let ce = event.to_json();
    let routed = route::route(catalog.routing(), event, &ce);
    let mut plan = Plan {
        deliveries: Vec::new(),
        cel_errors: routed.cel_errors,
        unresolved: routed.unresolved,
    };
    if routed.audiences.is_empty() {
        return plan;
    }
    let quiet = catalog
        .directory
        .quiet_at(now_ms, &event.ty, quiet::severity(&ce));
    // Routing is done with `ce`; the template context takes it over instead of copying it.
    let ctx = RenderCtx::for_event(ce, &catalog.vars, event.message.as_ref());
    // Audiences that share a template and a channel get the same message: render it once.
    let mut rendered_for: HashMap<(Option<&str>, &str), Rendered> = HashMap::new();
    let out = &mut plan.deliveries;
    for a in routed.audiences {
        let (template, rendered, thread) = rendered_for
            .entry((a.template, a.channel.name.as_str()))
            .or_insert_with(|| render(catalog, event, &ctx, &a))
            .clone();
        // The Route's or Subscription's thread wins over the template's; one that does not
        // render (a field this event lacks) starts no thread.
        let thread = match a.thread {
            Some(t) => t.render(&ctx).ok(),
            None => thread,
        }
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
        let due_ms = now_ms + a.channel.retry.initial_delay().as_millis() as u64;
        let groups = hold_quiet(&a, &quiet, due_ms);
        let chunks = groups.into_iter().flat_map(|(to, due_ms, held)| {
            split(&to, &a.channel.channel.limits())
                .into_iter()
                .map(move |to| (to, due_ms, held.clone()))
        });
        for (to, due_ms, held) in chunks {
            let (digest, due_ms, held) = match a.digest {
                None => (None, due_ms, held),
                Some(def) => collect(catalog, book, &ctx, &a, def, &to, (now_ms, due_ms, held)),
            };
            let (message, failed) = match &rendered {
                Ok(m) => (Some(m.clone()), None),
                // A channel that sends the event itself does not need the message.
                Err(_) if !a.channel.channel.needs_message() => (Some(fallback(event)), None),
                Err(e) => (
                    None,
                    Some(ErrorInfo {
                        reason: Reason::Render,
                        detail: e.clone(),
                        status: None,
                    }),
                ),
            };
            out.push(NewDelivery {
                origin: a.origin.to_string(),
                channel: a.channel.name.clone(),
                template: template.clone(),
                message,
                failed,
                due_ms,
                held,
                digest,
                thread: thread
                    .as_deref()
                    .map(|t| thread_key(&a.channel.name, &to, t)),
                to,
            });
        }
    }
    plan
}

/// A delivery of a digest: its key, and its due time and reason once it joined its window
/// (quiet hours that end later keep it longer, and say so).
fn collect(
    catalog: &Catalog,
    book: &DigestBook,
    ctx: &RenderCtx,
    a: &Audience<'_>,
    def: &crate::route::digest::DigestDef,
    to: &Recipients,
    (now_ms, due_ms, held): (u64, u64, Option<ErrorInfo>),
) -> (Option<String>, u64, Option<ErrorInfo>) {
    // A key that does not render (a field this event lacks) keys by the recipients alone.
    let rendered = def
        .key
        .as_ref()
        .and_then(|k| k.render(ctx).ok())
        .unwrap_or_default();
    let key = digest::key(a.origin, &a.channel.name, to, &rendered);
    let joined = book.join(&key, now_ms, def);
    if joined.full || held.is_some() && due_ms >= joined.due_ms {
        return (Some(key), due_ms, held);
    }
    let local = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(joined.due_ms as i64)
        .unwrap_or_default()
        .with_timezone(
            &catalog
                .timezone
                .unwrap_or(chrono::Offset::fix(&chrono::Utc)),
        )
        .format("%Y-%m-%d %H:%M %:z");
    let why = ErrorInfo {
        reason: Reason::Digest,
        detail: format!(
            "collected into a digest until {local} ({} so far)",
            joined.count
        ),
        status: None,
    };
    (Some(key), joined.due_ms.max(due_ms), Some(why))
}

/// An audience's recipients grouped by when they may be reached: those in quiet hours (on a
/// personal channel — a group robot's message goes to the group) wait until theirs end.
fn hold_quiet(
    a: &Audience<'_>,
    quiet: &[(&Arc<User>, u64)],
    due_ms: u64,
) -> Vec<(Recipients, u64, Option<ErrorInfo>)> {
    if quiet.is_empty() || !a.channel.channel.needs_recipients() {
        return vec![(a.to.clone(), due_ms, None)];
    }
    let mut now = a.to.clone();
    let mut held: Vec<(Recipients, u64, Option<ErrorInfo>)> = Vec::new();
    for (user, until) in quiet {
        let Some(ids) = a.channel.channel.address(user) else {
            continue;
        };
        let theirs = Recipients {
            users: take(&mut now.users, &ids.users),
            mobiles: take(&mut now.mobiles, &ids.mobiles),
            mails: take(&mut now.mails, &ids.mails),
            ..Recipients::default()
        };
        if theirs.is_empty() {
            continue;
        }
        let until = (*until).max(due_ms);
        let why = format!(
            "held until {} by {}'s quiet hours",
            user.quiet
                .as_ref()
                .map_or(String::new(), |q| q.local(until)),
            user.name
        );
        held.push((
            theirs,
            until,
            Some(ErrorInfo {
                reason: Reason::QuietHours,
                detail: why,
                status: None,
            }),
        ));
    }
    let mut groups = Vec::with_capacity(held.len() + 1);
    if !now.is_empty() {
        groups.push((now, due_ms, None));
    }
    groups.extend(held);
    groups
}

/// Moves the entries of `list` that are among `ids` out of it.
fn take(list: &mut Vec<String>, ids: &[String]) -> Vec<String> {
    let (taken, kept) = std::mem::take(list)
        .into_iter()
        .partition(|x| ids.contains(x));
    *list = kept;
    taken
}

/// The template used (if any), the message it gave, and its thread as rendered.
type Rendered = (Option<String>, Result<Message, String>, Option<String>);

/// The key of a message thread: the channel, the recipients and the thread as rendered for
/// the event — hashed, so that it has a fixed size whatever a payload puts into it.
pub fn thread_key(channel: &str, to: &Recipients, rendered: &str) -> String {
    hashed(&serde_json::json!(["thread", channel, to, rendered]))
}

/// A key made of `parts`: the hex SHA-256 of their JSON.
fn hashed(parts: &serde_json::Value) -> String {
    hex::encode(sha2::Sha256::digest(parts.to_string().as_bytes()))
}

/// Renders the message for one audience.
pub fn render(catalog: &Catalog, event: &Event, ctx: &RenderCtx, a: &Audience<'_>) -> Rendered {
    let template = match a.template {
        Some(name) => catalog.templates.get(name),
        // A ready message is sent as it came unless the route asks for a template.
        None if event.message.is_some() => None,
        None => catalog.template_for(&event.ty),
    };
    let rendered = match template {
        Some(t) => t.render(ctx, &a.channel.name, a.channel.kind),
        None => Ok(match &event.message {
            Some(ready) => ready.message.clone(),
            None => fallback(event),
        }),
    };
    let thread = template
        .and_then(|t| t.thread.as_ref())
        .and_then(|t| t.render(ctx).ok());
    (
        template.map(|t| t.name.clone()),
        rendered.map(|m| fit(m, a.channel)),
        thread,
    )
}

/// Re-renders a stored delivery's message from its event (a replay after a template fix).
pub fn rerender(
    catalog: &Catalog,
    event: &Event,
    template: Option<&str>,
    channel: &Arc<ChannelDef>,
) -> Result<Message, String> {
    let ctx = RenderCtx::for_event(event.to_json(), &catalog.vars, event.message.as_ref());
    let a = Audience {
        origin: "",
        channel,
        template,
        to: Recipients::default(),
        digest: None,
        thread: None,
    };
    render(catalog, event, &ctx, &a).1
}

/// When no template applies and the event carried no message: say what arrived.
fn fallback(event: &Event) -> Message {
    let mut content = format!("{}\nsource: {}\nid: {}", event.ty, event.source, event.id);
    if let Some(s) = &event.subject {
        content.push_str(&format!("\nsubject: {s}"));
    }
    Message {
        msgtype: MsgType::Text,
        content,
        title: None,
        url: None,
    }
}

/// Cuts content to what the channel accepts.
pub(crate) fn fit(mut m: Message, channel: &ChannelDef) -> Message {
    if let Some(limit) = channel.content_limit(m.msgtype) {
        truncate_utf8(&mut m.content, limit);
    }
    m
}

/// Splits recipients into groups no larger than the channel accepts per request. People count
/// against the channel's user limit however they are named: by id, or by the mail or mobile
/// number its contact lookup turns into one.
pub fn split(to: &Recipients, limits: &Limits) -> Vec<Recipients> {
    fn pieces<T: Clone>(ids: &[T], per: Option<usize>) -> Vec<Vec<T>> {
        match per {
            Some(n) if n > 0 && ids.len() > n => ids.chunks(n).map(<[T]>::to_vec).collect(),
            _ => vec![ids.to_vec()],
        }
    }
    if to.all {
        return vec![to.clone()];
    }
    #[derive(Clone)]
    enum Person<'a> {
        User(&'a String),
        Mobile(&'a String),
        Mail(&'a String),
    }
    let people: Vec<Person<'_>> = (to.users.iter().map(Person::User))
        .chain(to.mobiles.iter().map(Person::Mobile))
        .chain(to.mails.iter().map(Person::Mail))
        .collect();
    let people = pieces(&people, limits.users_per_request);
    let parties = pieces(&to.parties, limits.parties_per_request);
    let tags = pieces(&to.tags, limits.tags_per_request);
    let n = people.len().max(parties.len()).max(tags.len());
    (0..n)
        .map(|i| {
            let mut r = Recipients {
                parties: parties.get(i).cloned().unwrap_or_default(),
                tags: tags.get(i).cloned().unwrap_or_default(),
                ..Recipients::default()
            };
            for p in people.get(i).into_iter().flatten() {
                match p {
                    Person::User(u) => r.users.push((*u).clone()),
                    Person::Mobile(m) => r.mobiles.push((*m).clone()),
                    Person::Mail(m) => r.mails.push((*m).clone()),
                }
            }
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("u{i}")).collect()
    }

    #[test]
    fn splits_at_per_request_limits() {
        let limits = Limits {
            users_per_request: Some(1000),
            parties_per_request: Some(100),
            tags_per_request: Some(100),
            ..Limits::default()
        };
        let to = Recipients {
            users: ids(2500),
            parties: ids(150),
            ..Recipients::default()
        };
        let parts = split(&to, &limits);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].users.len(), 1000);
        assert_eq!(parts[2].users.len(), 500);
        assert_eq!(parts[0].parties.len(), 100);
        assert_eq!(parts[1].parties.len(), 50);
        assert!(parts[2].parties.is_empty());
        let total: usize = parts.iter().map(|p| p.users.len()).sum();
        assert_eq!(total, 2500);
    }

    #[test]
    fn people_named_by_mail_or_mobile_count_against_the_user_limit() {
        let one = Limits {
            users_per_request: Some(1),
            ..Limits::default()
        };
        let to = Recipients {
            users: ids(1),
            mobiles: vec!["138".into()],
            mails: vec!["a@x".into()],
            ..Recipients::default()
        };
        let parts = split(&to, &one);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1].mobiles, ["138"]);
        assert_eq!(parts[2].mails, ["a@x"]);
        assert!(
            parts
                .iter()
                .all(|p| p.users.len() + p.mobiles.len() + p.mails.len() == 1)
        );
        // A robot has no limit: its mentions go in one message.
        assert_eq!(split(&to, &Limits::default()), vec![to.clone()]);
    }

    #[test]
    fn no_limits_means_one_request() {
        let to = Recipients {
            users: ids(5),
            ..Recipients::default()
        };
        assert_eq!(split(&to, &Limits::default()), vec![to.clone()]);
        assert_eq!(split(&Recipients::default(), &Limits::default()).len(), 1);
    }
}
