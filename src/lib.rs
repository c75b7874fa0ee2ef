//! hookrelay relays system hooks and CloudEvents from DevOps platforms to the people who must act
//! on them, durably.
//!
//! The path of one event, module by module:
//!
//! ```text
//! ingress ──► event ──► route ──► plan (render) ──► store ══► deliver ──► channel
//! (HTTP, auth,  (one CE-   (who     (templates,       (sled,    (lease,     (webhook,
//!  decoding)     shaped     cares)   byte limits,      group     retry,      WeCom, …)
//!                value)              splitting)        commit)   record)
//! ```
//!
//! - [`config`]: settings (defaults → `hookrelay.toml` → `HOOKRELAY_*`).
//! - [`catalog`]: hooks.d resources, validated against `schemas/`, hot-reloaded.
//! - [`ingress`], [`event`], [`route`], [`plan`], [`render`], [`message`]: from request to planned deliveries.
//! - [`store`]: the durable queue behind the `Store` trait.
//! - [`deliver`], [`channel`]: from due delivery to vendor request and back.
//! - [`server`], [`admin`], [`metrics`]: the process and its operating surface; `edge`: what
//!   guards every request (panics answered 500, oversized request heads 431).
//!
//! [`server::Relay`] is the whole relay: `Relay::open(settings)?.serve(listener, shutdown)`.

#![forbid(unsafe_code)]

pub mod admin;
pub mod catalog;
pub mod channel;
pub mod config;
pub mod deliver;
pub mod dryrun;
mod edge;
pub mod event;
pub mod ids;
pub mod ingress;
pub mod message;
pub mod metrics;
pub mod plan;
pub mod render;
pub mod route;
pub mod secret;
pub mod server;
pub mod signature;
pub mod store;

pub use server::Relay;
