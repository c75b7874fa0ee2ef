//! The admin API under `/admin`, behind its own bearer token (disabled without one): the
//! catalog report, store figures, events, deliveries with their attempts, dead letters, replay.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::ids::{DeliveryId, EventId, now_ms};
use crate::route::explain;
use crate::signature::secrets_equal;
use crate::store::{DeliveryQuery, DeliveryRecord, DeliveryState, Replay};

/// Registers the admin routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .wrap(from_fn(require_token))
            .route("/overview", web::get().to(show_overview))
            .route("/catalog", web::get().to(show_catalog))
            .route("/templates/{name}", web::get().to(get_template))
            .route("/render", web::post().to(render_request))
            .route("/catalog/reload", web::post().to(reload_catalog))
            .route("/stats", web::get().to(show_stats))
            .route("/events/{id}", web::get().to(get_event))
            .route("/deliveries", web::get().to(list_deliveries))
            .route("/deliveries/{id}", web::get().to(get_delivery))
            .route("/deliveries/{id}/replay", web::post().to(replay_delivery))
            .route("/dead-letters", web::get().to(list_dead_letters))
            .route("/dead-letters/replay", web::post().to(replay_dead_letters)),
    );
}

fn error(
    status: actix_web::http::StatusCode,
    code: &str,
    message: impl Into<String>,
) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": code, "message": message.into() }))
}

/// Every admin route passes here first: without the bearer token nothing else runs.
async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let refused = match req.app_data::<web::Data<AppState>>() {
        Some(state) => authorize(req.request(), state).err(),
        None => Some(error(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the relay state is missing",
        )),
    };
    match refused {
        Some(r) => Ok(req.into_response(r)),
        None => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

/// Deny by default: no token configured means no admin API.
fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), HttpResponse> {
    use actix_web::http::StatusCode;
    let Some(token) = &state.settings.admin_token else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the admin API is disabled; set admin_token (HOOKRELAY_ADMIN_TOKEN) to enable it",
        ));
    };
    let given = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::signature::bearer_token);
    match given {
        Some(g) if secrets_equal(g.as_bytes(), token.expose().as_bytes()) => Ok(()),
        Some(_) => Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "bearer token does not match",
        )),
        None => Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing Authorization: Bearer <admin token>",
        )),
    }
}

fn store_error(e: crate::store::StoreError) -> HttpResponse {
    error(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        e.to_string(),
    )
}

/// A blocking task that did not finish (it panicked or was cancelled).
fn internal(e: actix_web::error::BlockingError) -> HttpResponse {
    error(
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        e.to_string(),
    )
}

fn not_found(what: &str) -> HttpResponse {
    error(actix_web::http::StatusCode::NOT_FOUND, "not_found", what)
}

/// A delivery for display, with its id in text form.
fn delivery_json(d: &DeliveryRecord) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), Value::String(d.id.to_string()));
        m.insert("event".into(), Value::String(d.id.event.to_string()));
        // A delivery held back by a rate limit is waiting, not failing.
        if d.is_waiting() {
            m.insert("state".into(), Value::String("waiting".into()));
        }
    }
    v
}

async fn show_catalog(state: web::Data<AppState>) -> HttpResponse {
    let c = state.catalog.current();
    let mut channels: Vec<Value> = c
        .channels
        .values()
        .map(|ch| json!({"name": ch.name, "config": ch.channel.describe()}))
        .collect();
    channels.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut sources: Vec<&String> = c.sources.keys().collect();
    sources.sort();
    HttpResponse::Ok().json(json!({
        "report": c.report,
        "sources": sources,
        "channels": channels,
    }))
}

/// One Template as loaded: its document (to show and edit in the playground).
async fn get_template(name: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    match state.catalog.current().templates.get(name.as_str()) {
        Some(t) => HttpResponse::Ok().json(json!({
            "name": t.name, "builtin": t.builtin, "document": t.document,
        })),
        None => not_found("no such template"),
    }
}

/// What the overview page shows: the last hour per minute, the backlog, the store's health
/// and the catalog's errors and warnings.
async fn show_overview(state: web::Data<AppState>) -> HttpResponse {
    let now = now_ms();
    let (counts, backlog) = match (state.store.counts().await, state.store.backlog(now).await) {
        (Ok(c), Ok(b)) => (c, b),
        (Err(e), _) | (_, Err(e)) => return store_error(e),
    };
    let c = state.catalog.current();
    let engine = match state.settings.postgres {
        Some(_) => "postgres",
        None => state.settings.store.name(),
    };
    let fault = state.store.fault();
    HttpResponse::Ok().json(json!({
        "now_ms": now,
        "timezone": state.settings.timezone.to_string(),
        "minutes": state.metrics.last_hour(now),
        "counts": counts,
        "backlog": {
            "pending": backlog.pending,
            "due": backlog.due,
            "oldest_due_ms": backlog.oldest_due_ms,
        },
        "store": {
            "engine": engine,
            "writable": fault.is_none(),
            "fault": fault.map(|f| f.to_string()),
            "fsyncs": state.store.fsyncs(),
            "write_failures": state.store.write_failures(),
            "bytes": state.store.size_on_disk().await.unwrap_or(0),
        },
        "catalog": {
            "files": c.report.files.len(),
            "resources": c.report.resources,
            "errors": c.report.errors,
            "warnings": c.report.warnings,
        },
    }))
}

/// A request to render in the playground: a body and headers for a Source, and optionally a
/// Template document (YAML or JSON) to use instead of the loaded one of its name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Playground {
    source: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    body: String,
    #[serde(default)]
    no_auth: bool,
    template: Option<String>,
}

/// `hookrelay render` over HTTP: nothing is stored or sent.
async fn render_request(payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    use actix_web::http::StatusCode;
    // A body escaped into JSON, with headers and a template beside it.
    let limit = state.settings.max_body_bytes * 6 + 256 * 1024;
    let bytes = match payload.to_bytes_limited(limit).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return bad_request(format!("reading the request: {e}")),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request is larger than {limit} bytes"),
            );
        }
    };
    let p: Playground = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => return bad_request(format!("the request is not a render request: {e}")),
    };
    let current = state.catalog.current();
    let edited;
    let catalog = match p.template.as_deref() {
        None => &*current,
        Some(text) => match crate::catalog::compile_template(text) {
            Ok(t) => {
                let mut c = (*current).clone();
                c.templates.insert(t.name.clone(), t);
                edited = c;
                &edited
            }
            Err(errors) => {
                return HttpResponse::BadRequest().json(json!({
                    "error": "bad_template",
                    "message": "the edited template does not compile",
                    "errors": errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }));
            }
        },
    };
    let req = crate::dryrun::Request {
        source: p.source,
        headers: p.headers,
        body: p.body.into_bytes(),
        no_auth: p.no_auth,
    };
    HttpResponse::Ok().json(crate::dryrun::render(catalog, &state.settings, &req).await)
}

async fn reload_catalog(state: web::Data<AppState>) -> HttpResponse {
    let live = state.catalog.clone();
    match web::block(move || live.reload(true)).await {
        Ok(c) => HttpResponse::Ok().json(json!({ "report": c.report })),
        Err(e) => internal(e),
    }
}

async fn show_stats(state: web::Data<AppState>) -> HttpResponse {
    match state.store.counts().await {
        Ok(counts) => HttpResponse::Ok().json(json!({
            "counts": counts,
            "fsyncs": state.store.fsyncs(),
            "bytes": state.store.size_on_disk().await.unwrap_or(0),
        })),
        Err(e) => store_error(e),
    }
}

async fn get_event(id: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let Some(id) = EventId::parse(&id) else {
        return not_found("no such event id");
    };
    match (
        state.store.event(&id).await,
        state.store.deliveries_of(&id).await,
    ) {
        (Ok(Some(e)), Ok(ds)) => {
            // The explanation is today's catalog's reading of the event (what `render` prints).
            let catalog = state.catalog.current();
            let routing = explain(catalog.routing(), &e.event, &e.event.to_json());
            HttpResponse::Ok().json(json!({
                "id": id.to_string(),
                "received_ms": e.received_ms,
                "event": e.event,
                "routing": routing,
                "deliveries": ds.iter().map(delivery_json).collect::<Vec<_>>(),
            }))
        }
        (Ok(None), _) => not_found("no such event"),
        (Err(e), _) | (_, Err(e)) => store_error(e),
    }
}

async fn get_delivery(id: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let Some(id) = DeliveryId::parse(&id) else {
        return not_found("no such delivery id");
    };
    match (
        state.store.delivery(&id).await,
        state.store.attempts(&id).await,
    ) {
        (Ok(Some(d)), Ok(attempts)) => {
            let mut v = delivery_json(&d);
            v["attempt_log"] = serde_json::to_value(attempts).unwrap_or(Value::Null);
            v["request"] = preview(&state, &d).await;
            if let Some(key) = &d.thread {
                v["threadMessage"] = thread(&state, key, &d.channel).await;
            }
            HttpResponse::Ok().json(v)
        }
        (Ok(None), _) => not_found("no such delivery"),
        (Err(e), _) | (_, Err(e)) => store_error(e),
    }
}

/// The thread a delivery continues (`key`): what its channel does with a thread's events, and
/// the message the thread updates (never its handle: that changes the message).
async fn thread(state: &AppState, key: &str, channel: &str) -> Value {
    let catalog = state.catalog.current();
    let mut v = json!({});
    if let Some(ch) = catalog.channels.get(channel) {
        v["note"] = json!(ch.thread_note());
    }
    match state.store.thread(key).await {
        Ok(Some(t)) => {
            v["message"] = json!({"sentBy": t.sent_by, "shows": t.shows, "updates": t.updates,
                "updatable": t.handle.is_some(), "expiresMs": t.expires_ms});
        }
        Ok(None) => v["message"] = Value::Null,
        Err(e) => v["error"] = json!(e.to_string()),
    }
    v
}

/// The vendor request `d` makes with today's channel, credentials redacted (`null` when its
/// channel is gone or it has no message).
async fn preview(state: &AppState, d: &DeliveryRecord) -> Value {
    let catalog = state.catalog.current();
    let (Some(ch), Some(message)) = (catalog.channels.get(&d.channel), &d.message) else {
        return Value::Null;
    };
    let event = if ch.channel.needs_event() {
        match state.store.event(&d.id.event).await {
            Ok(Some(e)) => Some(e.event.to_json()),
            _ => return Value::Null,
        }
    } else {
        None
    };
    let outgoing = crate::channel::Outgoing {
        id: &d.id,
        message,
        to: &d.to,
        event: event.as_ref(),
        timeout: ch.timeout,
        shared: None,
        // A thread's message as its first event would send it (a later one updates it).
        threaded: ch.previews_thread(d.thread.as_deref()),
    };
    match ch.preview(&outgoing) {
        Ok(p) => serde_json::to_value(p).unwrap_or(Value::Null),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

#[derive(Deserialize)]
struct Page {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_dead_letters(page: web::Query<Page>, state: web::Data<AppState>) -> HttpResponse {
    let after = page.after.as_deref().and_then(DeliveryId::parse);
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    match state.store.dead_letters(after.as_ref(), limit).await {
        Ok(list) => {
            let next = (list.len() == limit)
                .then(|| list.last().map(|d| d.id.to_string()))
                .flatten();
            HttpResponse::Ok().json(json!({
                "dead_letters": list.iter().map(delivery_json).collect::<Vec<_>>(),
                "next": next,
            }))
        }
        Err(e) => store_error(e),
    }
}

async fn replay_delivery(id: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let Some(id) = DeliveryId::parse(&id) else {
        return not_found("no such delivery id");
    };
    match state.store.replay(&id, now_ms()).await {
        Ok(Replay::Scheduled) => {
            state.wake.notify_one();
            HttpResponse::Accepted().json(json!({"status": "scheduled", "id": id.to_string()}))
        }
        Ok(Replay::NotDead) => error(
            actix_web::http::StatusCode::CONFLICT,
            "not_dead",
            "only dead letters can be replayed",
        ),
        Ok(Replay::NotFound) => not_found("no such delivery"),
        Err(e) => store_error(e),
    }
}

/// The filters of a delivery listing, as query parameters.
#[derive(Deserialize)]
struct Filters {
    /// `pending`, `waiting` (pending, held back by a throttle), `delivered` or `dead`.
    state: Option<String>,
    channel: Option<String>,
    source: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    recipient: Option<String>,
    /// RFC 3339, ms since the epoch, or a duration ago (`30m`, `2h`).
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
    limit: Option<usize>,
}

impl Filters {
    fn query(&self, now_ms: u64) -> Result<DeliveryQuery, HttpResponse> {
        let (state, waiting) = match self.state.as_deref() {
            None => (None, None),
            Some("pending") => (Some(DeliveryState::Pending), None),
            Some("waiting") => (Some(DeliveryState::Pending), Some(true)),
            Some("delivered") => (Some(DeliveryState::Delivered), None),
            Some("dead") => (Some(DeliveryState::Dead), None),
            Some(other) => {
                return Err(bad_request(format!(
                    "state {other:?} is none of pending, waiting, delivered, dead"
                )));
            }
        };
        Ok(DeliveryQuery {
            state,
            waiting,
            channel: self.channel.clone(),
            source: self.source.clone(),
            event_type: self.event_type.clone(),
            recipient: self.recipient.clone(),
            since_ms: time_param("since", self.since.as_deref(), now_ms)?,
            until_ms: time_param("until", self.until.as_deref(), now_ms)?,
        })
    }
}

fn bad_request(message: String) -> HttpResponse {
    error(
        actix_web::http::StatusCode::BAD_REQUEST,
        "bad_request",
        message,
    )
}

/// A point in time given as RFC 3339, ms since the epoch, or a duration before `now_ms`.
fn time_param(name: &str, text: Option<&str>, now_ms: u64) -> Result<Option<u64>, HttpResponse> {
    let Some(t) = text.map(str::trim) else {
        return Ok(None);
    };
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(Some(at.timestamp_millis().max(0) as u64));
    }
    if let Ok(ms) = t.parse::<u64>() {
        return Ok(Some(ms));
    }
    match humantime::parse_duration(t) {
        Ok(ago) => Ok(Some(now_ms.saturating_sub(ago.as_millis() as u64))),
        Err(_) => Err(bad_request(format!(
            "{name} {t:?} is not RFC 3339, ms since the epoch, or a duration ago (30m, 2h)"
        ))),
    }
}

/// Deliveries matching the filters, newest first; `next` is the cursor of the next page.
async fn list_deliveries(filters: web::Query<Filters>, state: web::Data<AppState>) -> HttpResponse {
    let q = match filters.query(now_ms()) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let before = match filters.before.as_deref() {
        None => None,
        Some(b) => match DeliveryId::parse(b) {
            Some(id) => Some(id),
            None => return bad_request(format!("before {b:?} is not a delivery id")),
        },
    };
    let limit = filters.limit.unwrap_or(100).clamp(1, 1000);
    let store = state.store.clone();
    // Off the HTTP workers: a listing may read thousands of records.
    let rt = tokio::runtime::Handle::current();
    let page = web::block(move || rt.block_on(store.deliveries(&q, before.as_ref(), limit))).await;
    match page {
        Ok(Ok(page)) => HttpResponse::Ok().json(json!({
            "deliveries": page.deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
            "next": page.next.map(|id| id.to_string()),
        })),
        Ok(Err(e)) => store_error(e),
        Err(e) => internal(e),
    }
}

/// Replays every dead letter matching the filters (`state` is implied). Idempotent: one
/// replayed already is no longer dead and is counted as skipped.
async fn replay_dead_letters(
    filters: web::Query<Filters>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let q = match filters.query(now_ms()) {
        Ok(q) => DeliveryQuery {
            state: Some(DeliveryState::Dead),
            waiting: None,
            ..q
        },
        Err(r) => return r,
    };
    let store = state.store.clone();
    let rt = tokio::runtime::Handle::current();
    let counted = web::block(move || {
        // The whole dead index is read before replaying any: a replay moves its letter out of
        // the index the cursor walks.
        let mut matching = Vec::new();
        let mut after = None;
        loop {
            let page = rt.block_on(store.dead_letters(after.as_ref(), 500))?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            matching.extend(page.iter().filter(|d| q.matches(d)).map(|d| d.id));
        }
        let (mut scheduled, mut skipped) = (0u64, 0u64);
        for id in &matching {
            match rt.block_on(store.replay(id, now_ms()))? {
                Replay::Scheduled => scheduled += 1,
                Replay::NotDead | Replay::NotFound => skipped += 1,
            }
        }
        Ok::<_, crate::store::StoreError>((matching.len(), scheduled, skipped))
    })
    .await;
    match counted {
        Ok(Ok((matched, scheduled, skipped))) => {
            if scheduled > 0 {
                state.wake.notify_one();
            }
            HttpResponse::Ok().json(json!({
                "matched": matched, "scheduled": scheduled, "skipped": skipped,
            }))
        }
        Ok(Err(e)) => store_error(e),
        Err(e) => internal(e),
    }
}
