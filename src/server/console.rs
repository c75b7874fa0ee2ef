//! The web console at `/console`: plain HTML and ES modules built into the binary, behind a
//! strict Content-Security-Policy; it speaks the admin API with the token the person enters.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

/// Every file of `console/`, by its path under `/console/`.
const ASSETS: &[(&str, &str, &str)] = &[
    ("", "text/html", include_str!("../../console/index.html")),
    (
        "app.js",
        "text/javascript",
        include_str!("../../console/app.js"),
    ),
    (
        "dom.js",
        "text/javascript",
        include_str!("../../console/dom.js"),
    ),
    (
        "i18n.js",
        "text/javascript",
        include_str!("../../console/i18n.js"),
    ),
    (
        "preview.js",
        "text/javascript",
        include_str!("../../console/preview.js"),
    ),
    (
        "style.css",
        "text/css",
        include_str!("../../console/style.css"),
    ),
    (
        "views/overview.js",
        "text/javascript",
        include_str!("../../console/views/overview.js"),
    ),
    (
        "views/deliveries.js",
        "text/javascript",
        include_str!("../../console/views/deliveries.js"),
    ),
    (
        "views/event.js",
        "text/javascript",
        include_str!("../../console/views/event.js"),
    ),
    (
        "views/dead.js",
        "text/javascript",
        include_str!("../../console/views/dead.js"),
    ),
    (
        "views/catalog.js",
        "text/javascript",
        include_str!("../../console/views/catalog.js"),
    ),
    (
        "views/playground.js",
        "text/javascript",
        include_str!("../../console/views/playground.js"),
    ),
];

/// Only the console's own files run and only the relay is spoken to: event payloads are the
/// sender's text, and no inline script or foreign origin can turn them into code.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Registers `/console` and its files.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/console", web::get().to(to_index))
        .route("/console/", web::get().to(index))
        .route("/console/{file}", web::get().to(file))
        .route("/console/views/{file}", web::get().to(view));
}

async fn index(state: web::Data<AppState>) -> HttpResponse {
    asset("", &state)
}

async fn file(name: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    asset(&name, &state)
}

async fn view(name: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    asset(&format!("views/{name}"), &state)
}

async fn to_index() -> HttpResponse {
    HttpResponse::MovedPermanently()
        .insert_header(("Location", "/console/"))
        .finish()
}

fn asset(path: &str, state: &AppState) -> HttpResponse {
    if state.settings.admin_token.is_none() {
        return HttpResponse::build(StatusCode::FORBIDDEN).json(json!({
            "error": "forbidden",
            "message": "the console is off; set admin_token (HOOKRELAY_ADMIN_TOKEN) to enable it",
        }));
    }
    let Some((_, content_type, body)) = ASSETS.iter().find(|(p, _, _)| *p == path) else {
        return HttpResponse::NotFound()
            .json(json!({"error": "not_found", "message": "no such console file"}));
    };
    HttpResponse::Ok()
        .content_type(format!("{content_type}; charset=utf-8"))
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Cache-Control", "no-cache"))
        .body(*body)
}
