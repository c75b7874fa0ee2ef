//! `hookrelay render` and the console's playground: one request through the real ingest path —
//! auth, decoding, routing, templates, the vendor request — worked out with nothing stored or
//! sent, as a [`Rendering`] that the command prints for a person and the admin API returns.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};

use crate::catalog::{Catalog, Loader};
use crate::channel::{Outgoing, Preview};
use crate::config::Settings;
use crate::event::Event;
use crate::ids::{DeliveryId, EventId, now_ms};
use crate::ingress::source::Auth;
use crate::ingress::{SourceDef, decode, prepare_auth};
use crate::message::Message;
use crate::plan::plan;
use crate::route::{Unresolved, Verdict, explain};

/// What to render.
pub struct Request {
    /// The Source it is sent to (needed when the catalog has more than one).
    pub source: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Skip the Source's authentication (for when the credential is not at hand).
    pub no_auth: bool,
}

/// What the relay would make of a request.
#[derive(Debug, Serialize)]
pub struct Rendering {
    /// The Source it went to, when one was found.
    pub source: Option<String>,
    pub body_bytes: usize,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_skipped: bool,
    /// Why the relay would refuse it; then there are no events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    pub events: Vec<RenderedEvent>,
}

/// A refusal as the sender would see it (`status` `None`: no request can be made yet).
#[derive(Debug, Serialize)]
pub struct Refusal {
    pub status: Option<u16>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// One decoded event: who takes it and the deliveries it becomes.
#[derive(Debug, Serialize)]
pub struct RenderedEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub source: String,
    pub subject: Option<String>,
    /// The body is a ready message, sent as it came to its `touser`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ready_message: bool,
    pub routing: Vec<Verdict>,
    pub unresolved: Vec<Unresolved>,
    pub deliveries: Vec<RenderedDelivery>,
}

/// One planned delivery: its message, or why it cannot render, and the vendor request.
#[derive(Debug, Serialize)]
pub struct RenderedDelivery {
    pub channel: String,
    /// The channel's type.
    pub kind: String,
    pub origin: String,
    pub template: Option<String>,
    pub to: Value,
    pub message: Option<Message>,
    /// Why it would wait (the recipient's quiet hours), and until when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<u64>,
    /// The thread it continues (its key) and what the thread's later events do on its channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<Value>,
    /// The render error that would make it a dead letter from the start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The request as the vendor would receive it, credentials redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Preview>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_error: Option<String>,
}

impl Rendering {
    /// Whether the relay would accept the request and every delivery it plans can render.
    pub fn is_clean(&self) -> bool {
        self.refused.is_none() && self.dead() == 0
    }

    fn dead(&self) -> usize {
        self.events
            .iter()
            .flat_map(|e| &e.deliveries)
            .filter(|d| d.error.is_some())
            .count()
    }
}

/// Works out what `catalog` makes of `req`. An OIDC Source fetches its issuer's keys as the
/// relay would at the first token.
pub async fn render(catalog: &Catalog, settings: &Settings, req: &Request) -> Rendering {
    let mut r = Rendering {
        source: None,
        body_bytes: req.body.len(),
        auth_skipped: req.no_auth,
        refused: None,
        events: Vec::new(),
    };
    let refuse = |status, message: String| Refusal {
        status,
        message,
        hint: None,
    };
    let source = match pick_source(catalog, req.source.as_deref()) {
        Ok(s) => s,
        Err(refusal) => {
            r.refused = Some(refusal);
            return r;
        }
    };
    r.source = Some(source.name.clone());
    let headers = match header_map(&req.headers, &req.body) {
        Ok(h) => h,
        Err(e) => {
            r.refused = Some(refuse(Some(400), format!("{e:#}")));
            return r;
        }
    };
    let limit = source.max_body_bytes.unwrap_or(settings.max_body_bytes);
    if req.body.len() > limit {
        r.refused = Some(refuse(
            Some(413),
            format!("body is larger than the {limit}-byte limit"),
        ));
        return r;
    }
    let open;
    let checked = if req.no_auth {
        open = SourceDef {
            auth: Auth::None,
            ..(**source).clone()
        };
        &open
    } else {
        source
    };
    prepare_auth(checked, &headers).await;
    let now = now_ms();
    match decode(checked, &headers, &req.body, now) {
        Ok(d) => {
            r.events = d
                .events
                .iter()
                .map(|e| render_event(catalog, e, now))
                .collect();
        }
        Err(e) => {
            let status = actix_web::ResponseError::status_code(&e).as_u16();
            r.refused = Some(Refusal {
                status: Some(status),
                message: e.to_string(),
                hint: (status == 401).then(|| {
                    "pass the credential as a header, or skip the check (--no-auth)".into()
                }),
            });
        }
    }
    r
}

/// `hookrelay render`: loads `hooks`, renders `req` and prints it to `out`. `Ok(false)`: the
/// relay would refuse the request, or a delivery it plans would be a dead letter from the start.
pub fn run(
    settings: Settings,
    hooks: PathBuf,
    req: Request,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let settings = Arc::new(settings);
    let catalog = Loader::new(&hooks, settings.clone(), crate::channel::http::client()).load(true);
    let rep = &catalog.report;
    writeln!(
        out,
        "hooks.d {}: {} files, {} errors, {} warnings",
        hooks.display(),
        rep.files.len(),
        rep.errors.len(),
        rep.warnings.len()
    )?;
    for e in &rep.errors {
        writeln!(out, "  error: {e}")?;
    }
    let rendering = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(render(&catalog, &settings, &req));
    print(&rendering, out)?;
    Ok(rendering.is_clean())
}

/// The Source named, or the only one; otherwise a refusal that says which exist.
fn pick_source<'c>(
    catalog: &'c Catalog,
    name: Option<&str>,
) -> Result<&'c Arc<SourceDef>, Refusal> {
    let mut names: Vec<&str> = catalog.sources.keys().map(String::as_str).collect();
    names.sort_unstable();
    let found = match name {
        Some(n) => catalog.sources.get(n),
        None if names.len() == 1 => catalog.sources.get(names[0]),
        None => None,
    };
    found.ok_or_else(|| {
        let list = names.join(", ");
        match name {
            Some(n) => Refusal {
                status: Some(404),
                message: format!("no source named {n:?}; loaded: {list}"),
                hint: None,
            },
            None => Refusal {
                status: None,
                message: format!("name the source with --source; loaded: {list}"),
                hint: None,
            },
        }
    })
}

/// The request headers; without a Content-Type, one is guessed from the body (a CloudEvent in
/// JSON, a batch of them, or plain JSON).
fn header_map(pairs: &[(String, String)], body: &[u8]) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        let name = HeaderName::from_bytes(k.trim().as_bytes())
            .with_context(|| format!("header name {k:?}"))?;
        let value =
            HeaderValue::from_str(v.trim()).with_context(|| format!("header value for {k}"))?;
        map.append(name, value);
    }
    if !map.contains_key(CONTENT_TYPE) {
        let guess = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) if o.contains_key("specversion") => "application/cloudevents+json",
            Ok(Value::Array(a)) if a.first().is_some_and(|e| e.get("specversion").is_some()) => {
                "application/cloudevents-batch+json"
            }
            _ => "application/json",
        };
        map.insert(CONTENT_TYPE, HeaderValue::from_static(guess));
    }
    Ok(map)
}

/// What `event` becomes.
fn render_event(catalog: &Catalog, event: &Event, now: u64) -> RenderedEvent {
    let ce = event.to_json();
    let routing = explain(catalog.routing(), event, &ce);
    // A fresh book: each rendered event is the first of its digest.
    let planned = plan(catalog, event, now, &crate::plan::DigestBook::default());
    let event_id = EventId::generate(now);
    let deliveries = planned
        .deliveries
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let ch = catalog.channels.get(&d.channel)?;
            let mut out = RenderedDelivery {
                channel: d.channel.clone(),
                kind: ch.kind.to_string(),
                origin: d.origin.clone(),
                template: d.template.clone(),
                to: serde_json::to_value(&d.to).unwrap_or(Value::Null),
                message: d.message.clone(),
                held: d.held.as_ref().map(|h| h.detail.clone()),
                due_ms: d.held.as_ref().map(|_| d.due_ms),
                thread: d
                    .thread
                    .as_ref()
                    .map(|key| json!({"key": key, "note": ch.thread_note()})),
                error: None,
                request: None,
                request_error: None,
            };
            let Some(message) = &d.message else {
                let why = d
                    .failed
                    .as_ref()
                    .map_or("no message", |f| f.detail.as_str());
                out.error = Some(why.to_string());
                return Some(out);
            };
            let id = DeliveryId {
                event: event_id,
                index: i as u32,
            };
            let outgoing = Outgoing {
                id: &id,
                message,
                to: &d.to,
                event: Some(&ce),
                timeout: ch.timeout,
                shared: None,
                threaded: ch.previews_thread(d.thread.as_deref()),
            };
            match ch.preview(&outgoing) {
                Ok(p) => out.request = Some(p),
                Err(e) => out.request_error = Some(e.to_string()),
            }
            Some(out)
        })
        .collect();
    RenderedEvent {
        id: event.id.clone(),
        ty: event.ty.clone(),
        source: event.source.clone(),
        subject: event.subject.clone(),
        ready_message: event.message.is_some(),
        routing,
        unresolved: planned.unresolved,
        deliveries,
    }
}

/// Prints a rendering for a person.
pub fn print(r: &Rendering, out: &mut dyn Write) -> anyhow::Result<()> {
    if let Some(source) = &r.source {
        writeln!(out, "\nPOST /hooks/{source} ({} bytes)", r.body_bytes)?;
        if r.auth_skipped {
            writeln!(out, "  auth: not checked (--no-auth)")?;
        }
    }
    if let Some(f) = &r.refused {
        match f.status {
            Some(status) => writeln!(out, "✘ refused ({status}): {}", f.message)?,
            None => writeln!(out, "✘ {}", f.message)?,
        }
        if let Some(hint) = &f.hint {
            writeln!(out, "  {hint}")?;
        }
    }
    for e in &r.events {
        print_event(e, out)?;
    }
    let dead = r.dead();
    if dead > 0 {
        let all: usize = r.events.iter().map(|e| e.deliveries.len()).sum();
        writeln!(
            out,
            "\n✘ {dead} of {all} deliveries would be dead letters (render errors)"
        )?;
    }
    Ok(())
}

fn print_event(e: &RenderedEvent, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(out, "\nevent {}", e.ty)?;
    writeln!(out, "  id: {}   source: {}", e.id, e.source)?;
    if let Some(s) = &e.subject {
        writeln!(out, "  subject: {s}")?;
    }
    if e.ready_message {
        writeln!(
            out,
            "  the body is a ready message: it goes as it came, to its touser"
        )?;
    }
    writeln!(out, "\nrouting")?;
    if e.routing.is_empty() {
        writeln!(out, "  (no Routes or Subscriptions are loaded)")?;
    }
    for v in &e.routing {
        let mark = if v.matched { "✔" } else { "✘" };
        writeln!(out, "  {mark} {}: {}", v.what, v.why)?;
    }
    for u in &e.unresolved {
        let what = if u.as_written {
            "is not in the User directory; sent as written"
        } else {
            "cannot be reached (no id in the User directory)"
        };
        writeln!(out, "  ! {} {what} on {}: {}", u.user, u.channel, u.origin)?;
    }
    writeln!(out, "\n{} deliveries", e.deliveries.len())?;
    for (i, d) in e.deliveries.iter().enumerate() {
        let template = d
            .template
            .as_deref()
            .map(|t| format!(", template {t}"))
            .unwrap_or_default();
        writeln!(
            out,
            "\n{}. {} ({}) ← {}{template}",
            i + 1,
            d.channel,
            d.kind,
            d.origin
        )?;
        writeln!(out, "   to: {}", serde_json::to_string(&d.to)?)?;
        if let Some(held) = &d.held {
            writeln!(out, "   ⏸ {held}")?;
        }
        if let Some(thread) = &d.thread {
            let key = thread["key"].as_str().unwrap_or_default();
            let note = thread["note"].as_str().unwrap_or_default();
            writeln!(out, "   ↻ thread {}…: {note}", &key[..key.len().min(12)])?;
        }
        let Some(message) = &d.message else {
            let why = d.error.as_deref().unwrap_or("no message");
            writeln!(
                out,
                "   ✘ render error (the delivery would be a dead letter): {why}"
            )?;
            continue;
        };
        let title = message
            .title
            .as_deref()
            .map(|t| format!(": {t}"))
            .unwrap_or_default();
        writeln!(out, "   message ({}){title}", message.msgtype.as_str())?;
        for line in message.content.lines() {
            writeln!(out, "   │ {line}")?;
        }
        if let Some(url) = &message.url {
            writeln!(out, "   link: {url}")?;
        }
        if let Some(p) = &d.request {
            writeln!(out, "   {} {}", p.method, p.url)?;
            for line in serde_json::to_string_pretty(&p.body)?.lines() {
                writeln!(out, "   {line}")?;
            }
        }
        if let Some(e) = &d.request_error {
            writeln!(out, "   ✘ {e}")?;
        }
    }
    Ok(())
}
