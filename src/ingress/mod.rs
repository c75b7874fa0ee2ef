//! Ingress: `POST /hooks/{source}` — authentication, decoding into an [`Event`](crate::event::Event),
//! planning, and the durable acknowledgement.

mod auth;
mod cloudevents;
pub mod error;
mod extract;
mod handler;

use actix_web::web;

pub use error::IngressError;

/// Registers the hook endpoint.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/hooks/{source}")
            .route(web::post().to(handler::receive_hook))
            .default_service(web::to(handler::method_not_allowed)),
    );
}
