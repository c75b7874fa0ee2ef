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
use crate::signature::secrets_equal;
use crate::store::{DeliveryRecord, DeliveryState, Replay};

/// Registers the admin routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .wrap(from_fn(require_token))
            .route("/catalog", web::get().to(show_catalog))
            .route("/catalog/reload", web::post().to(reload_catalog))
            .route("/stats", web::get().to(show_stats))
            .route("/events/{id}", web::get().to(get_event))
            .route("/deliveries/{id}", web::get().to(get_delivery))
            .route("/deliveries/{id}/replay", web::post().to(replay_delivery))
            .route("/dead-letters", web::get().to(list_dead_letters)),
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
        .and_then(|v| v.strip_prefix("Bearer "));
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
        if d.state == DeliveryState::Pending && d.waiting.is_some() {
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

async fn reload_catalog(state: web::Data<AppState>) -> HttpResponse {
    let live = state.catalog.clone();
    match web::block(move || live.reload(true)).await {
        Ok(c) => HttpResponse::Ok().json(json!({ "report": c.report })),
        Err(e) => error(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        ),
    }
}

async fn show_stats(state: web::Data<AppState>) -> HttpResponse {
    match state.store.counts() {
        Ok(counts) => HttpResponse::Ok().json(json!({
            "counts": counts,
            "fsyncs": state.store.fsyncs(),
            "bytes": state.store.size_on_disk().unwrap_or(0),
        })),
        Err(e) => store_error(e),
    }
}

async fn get_event(id: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let Some(id) = EventId::parse(&id) else {
        return not_found("no such event id");
    };
    match (state.store.event(&id), state.store.deliveries_of(&id)) {
        (Ok(Some(e)), Ok(ds)) => HttpResponse::Ok().json(json!({
            "id": id.to_string(),
            "received_ms": e.received_ms,
            "event": e.event,
            "deliveries": ds.iter().map(delivery_json).collect::<Vec<_>>(),
        })),
        (Ok(None), _) => not_found("no such event"),
        (Err(e), _) | (_, Err(e)) => store_error(e),
    }
}

async fn get_delivery(id: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let Some(id) = DeliveryId::parse(&id) else {
        return not_found("no such delivery id");
    };
    match (state.store.delivery(&id), state.store.attempts(&id)) {
        (Ok(Some(d)), Ok(attempts)) => {
            let mut v = delivery_json(&d);
            v["attempt_log"] = serde_json::to_value(attempts).unwrap_or(Value::Null);
            HttpResponse::Ok().json(v)
        }
        (Ok(None), _) => not_found("no such delivery"),
        (Err(e), _) | (_, Err(e)) => store_error(e),
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
    match state.store.dead_letters(after.as_ref(), limit) {
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
    match state.store.replay(&id, now_ms()) {
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
