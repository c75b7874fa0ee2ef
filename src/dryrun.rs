//! `hookrelay render`: one request through the real ingest path — auth, decoding, routing,
//! templates, the vendor request — printed for a person, with nothing stored or sent.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use anyhow::Context;
use serde_json::Value;

use crate::catalog::{Catalog, Loader};
use crate::channel::Outgoing;
use crate::config::Settings;
use crate::event::Event;
use crate::ids::{DeliveryId, EventId, now_ms};
use crate::ingress::source::Auth;
use crate::ingress::{SourceDef, decode, prepare_auth};
use crate::plan::plan;
use crate::route::explain;

/// What to render.
pub struct Request {
    pub hooks: PathBuf,
    /// The Source it is sent to (needed when hooks.d has more than one).
    pub source: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Skip the Source's authentication (for when the credential is not at hand).
    pub no_auth: bool,
}

/// Renders `req` to `out`. `Ok(false)`: the relay would refuse the request, or a delivery it
/// plans would be a dead letter from the start (its template cannot render the event).
pub fn run(settings: Settings, req: Request, out: &mut dyn Write) -> anyhow::Result<bool> {
    let settings = Arc::new(settings);
    let catalog =
        Loader::new(&req.hooks, settings.clone(), crate::channel::http::client()).load(true);
    let r = &catalog.report;
    writeln!(
        out,
        "hooks.d {}: {} files, {} errors, {} warnings",
        req.hooks.display(),
        r.files.len(),
        r.errors.len(),
        r.warnings.len()
    )?;
    for e in &r.errors {
        writeln!(out, "  error: {e}")?;
    }
    let Some(source) = pick_source(&catalog, req.source.as_deref(), out)? else {
        return Ok(false);
    };
    let headers = header_map(&req.headers, &req.body)?;
    writeln!(
        out,
        "\nPOST /hooks/{} ({} bytes)",
        source.name,
        req.body.len()
    )?;
    let limit = source.max_body_bytes.unwrap_or(settings.max_body_bytes);
    if req.body.len() > limit {
        writeln!(
            out,
            "✘ refused (413): body is larger than the {limit}-byte limit"
        )?;
        return Ok(false);
    }
    let open;
    let checked = if req.no_auth {
        open = SourceDef {
            auth: Auth::None,
            ..(**source).clone()
        };
        writeln!(out, "  auth: not checked (--no-auth)")?;
        &open
    } else {
        source
    };
    // An OIDC Source fetches its issuer's keys as the relay would at the first token.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(prepare_auth(checked, &headers));
    let now = now_ms();
    let decoded = match decode(checked, &headers, &req.body, now) {
        Ok(d) => d,
        Err(e) => {
            let status = actix_web::ResponseError::status_code(&e).as_u16();
            writeln!(out, "✘ refused ({status}): {e}")?;
            if status == 401 {
                writeln!(
                    out,
                    "  pass the credential with --header, or skip the check with --no-auth"
                )?;
            }
            return Ok(false);
        }
    };
    let mut all_rendered = true;
    for event in &decoded.events {
        all_rendered &= render_event(&catalog, event, now, out)?;
    }
    Ok(all_rendered)
}

/// The Source named, or the only one; otherwise says which exist.
fn pick_source<'c>(
    catalog: &'c Catalog,
    name: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<Option<&'c Arc<SourceDef>>> {
    let mut names: Vec<&String> = catalog.sources.keys().collect();
    names.sort();
    let found = match name {
        Some(n) => catalog.sources.get(n),
        None if names.len() == 1 => catalog.sources.get(names[0]),
        None => None,
    };
    if found.is_none() {
        let list = names
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        match name {
            Some(n) => writeln!(
                out,
                "✘ refused (404): no source named {n:?}; loaded: {list}"
            )?,
            None => writeln!(out, "✘ name the source with --source; loaded: {list}")?,
        }
    }
    Ok(found)
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

/// Prints what `event` becomes; `Ok(false)` when a planned delivery could not be rendered.
fn render_event(
    catalog: &Catalog,
    event: &Event,
    now: u64,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    writeln!(out, "\nevent {}", event.ty)?;
    writeln!(out, "  id: {}   source: {}", event.id, event.source)?;
    if let Some(s) = &event.subject {
        writeln!(out, "  subject: {s}")?;
    }
    if event.message.is_some() {
        writeln!(
            out,
            "  the body is a ready message: it goes as it came, to its touser"
        )?;
    }
    let ce = event.to_json();
    writeln!(out, "\nrouting")?;
    let verdicts = explain(catalog.routing(), event, &ce);
    if verdicts.is_empty() {
        writeln!(out, "  (no Routes or Subscriptions are loaded)")?;
    }
    for v in &verdicts {
        writeln!(
            out,
            "  {} {}: {}",
            if v.matched { "✔" } else { "✘" },
            v.what,
            v.why
        )?;
    }
    let planned = plan(catalog, event, now);
    for u in &planned.unresolved {
        let what = if u.as_written {
            "is not in the User directory; sent as written"
        } else {
            "cannot be reached (no id in the User directory)"
        };
        writeln!(out, "  ! {} {what} on {}: {}", u.user, u.channel, u.origin)?;
    }
    writeln!(out, "\n{} deliveries", planned.deliveries.len())?;
    let dead = planned
        .deliveries
        .iter()
        .filter(|d| d.failed.is_some())
        .count();
    let event_id = EventId::generate(now);
    for (i, d) in planned.deliveries.iter().enumerate() {
        let Some(ch) = catalog.channels.get(&d.channel) else {
            continue;
        };
        writeln!(
            out,
            "\n{}. {} ({}) ← {}{}",
            i + 1,
            d.channel,
            ch.kind,
            d.origin,
            d.template
                .as_deref()
                .map(|t| format!(", template {t}"))
                .unwrap_or_default()
        )?;
        writeln!(out, "   to: {}", serde_json::to_string(&d.to)?)?;
        let Some(message) = &d.message else {
            let why = d
                .failed
                .as_ref()
                .map(|f| f.detail.as_str())
                .unwrap_or("no message");
            writeln!(
                out,
                "   ✘ render error (the delivery would be a dead letter): {why}"
            )?;
            continue;
        };
        writeln!(
            out,
            "   message ({}){}",
            message.msgtype.as_str(),
            message
                .title
                .as_deref()
                .map(|t| format!(": {t}"))
                .unwrap_or_default()
        )?;
        for line in message.content.lines() {
            writeln!(out, "   │ {line}")?;
        }
        if let Some(url) = &message.url {
            writeln!(out, "   link: {url}")?;
        }
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
        };
        match ch.preview(&outgoing) {
            Ok(p) => {
                writeln!(out, "   {} {}", p.method, p.url)?;
                for line in serde_json::to_string_pretty(&p.body)?.lines() {
                    writeln!(out, "   {line}")?;
                }
            }
            Err(e) => writeln!(out, "   ✘ {e}")?,
        }
    }
    if dead > 0 {
        writeln!(
            out,
            "\n✘ {dead} of {} deliveries would be dead letters (render errors)",
            planned.deliveries.len()
        )?;
    }
    Ok(dead == 0)
}
