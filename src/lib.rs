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
//! - [`doc`]: what every hooks.d compiler shares; [`catalog`]: the loader that reads hooks.d,
//!   validates it against `schemas/`, has each kind compiled where it lives, hot-reloads.
//! - [`ingress`] (Sources), [`event`], [`directory`] (Users), [`route`] (Routes, Subscriptions),
//!   [`plan`], [`render`] (Templates), [`message`]: from request to planned deliveries.
//! - [`store`]: the durable queue behind the `Store` trait (and its retention).
//! - [`deliver`], [`channel`] (Channels), [`retry`], [`reason`]: from due delivery to vendor
//!   request and back.
//! - [`ctl`]: the admin API from a terminal.
//! - [`server`], [`metrics`]: the process and its HTTP surface (hooks, admin API, health; what
//!   guards every request).
//!
//! [`server::Relay`] is the whole relay: `Relay::open(settings)?.serve(listener, shutdown)`.

#![forbid(unsafe_code)]

pub mod catalog;
pub mod channel;
pub mod config;
pub mod ctl;
pub mod deliver;
pub mod directory;
pub mod doc;
pub mod dryrun;
pub mod event;
pub mod ids;
pub mod ingress;
pub mod message;
pub mod metrics;
pub mod plan;
pub mod reason;
pub mod render;
pub mod retry;
pub mod route;
pub mod secret;
pub mod server;
pub mod signature;
pub mod store;

pub use server::Relay;
