//! `/healthz`, `/readyz`, `/metrics` and `/openapi.yaml`.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

/// Registers the health and metrics routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/openapi.yaml", web::get().to(openapi));
}

/// The OpenAPI 3.1 description of every route (`schemas/openapi.yaml`, built in).
async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml")
        .body(include_str!("../../schemas/openapi.yaml"))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when the store can write and hooks.d gave at least one Source to receive on.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let c = state.catalog.current();
    if let Some(fault) = state.store.fault() {
        HttpResponse::ServiceUnavailable().json(json!({
            "status": "not ready", "reason": format!("the store cannot write: {fault}"),
            "cause": fault.cause.as_str(), "errors": c.report.errors.len(),
        }))
    } else if c.sources.is_empty() {
        HttpResponse::ServiceUnavailable().json(json!({
            "status": "not ready", "reason": "no Source is loaded from hooks.d", "errors": c.report.errors.len(),
        }))
    } else {
        HttpResponse::Ok().json(json!({"status": "ready", "errors": c.report.errors.len()}))
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    m.set_store(
        state.store.fsyncs(),
        state.store.write_failures(),
        state.store.size_on_disk().await.unwrap_or(0),
        state.store.fault().is_none(),
    );
    m.set_catalog_errors(state.catalog.current().report.errors.len());
    let now = crate::ids::now_ms();
    if let Ok(backlog) = state.store.backlog(now).await {
        m.set_backlog(backlog, now);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(m.encode())
}
