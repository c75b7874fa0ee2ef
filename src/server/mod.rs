//! The running relay: opens the store and the catalog, serves HTTP (`http.rs` assembles the
//! server; `hooks.rs`, `admin.rs` and `health.rs` answer), runs delivery, reload and retention
//! until told to stop, then stops them in order.

mod admin;
mod console;
mod edge;
mod health;
mod hooks;
mod http;
mod state;

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::web;
use anyhow::Context;
use tokio::sync::{Notify, watch};

use crate::catalog::Loader;
use crate::catalog::reload::{self, LiveCatalog};
use crate::config::Settings;
use crate::deliver::Dispatcher;
use crate::metrics::Metrics;
use crate::store::retention::{self, Retention};
use crate::store::{self, Store};

pub use state::AppState;

/// An opened relay, ready to serve.
pub struct Relay {
    state: web::Data<AppState>,
}

impl Relay {
    /// Opens the store in the data dir and loads hooks.d. A store that cannot be opened is an
    /// error; a bad hooks.d file is reported and the rest serves.
    pub async fn open(settings: Settings) -> anyhow::Result<Relay> {
        let store: Arc<dyn Store> = match &settings.postgres {
            Some(pg) => Arc::new(
                store::postgres::open(pg)
                    .await
                    .context("opening the PostgreSQL store")?,
            ),
            None => store::open(
                settings.store,
                &settings.data_dir,
                settings.cache_mb * 1024 * 1024,
            )
            .with_context(|| format!("opening the data dir {}", settings.data_dir.display()))?,
        };
        Ok(Relay::with_store(settings, store))
    }

    /// A relay over a store opened by the caller (tests wrap the engine to watch it).
    pub fn with_store(settings: Settings, store: Arc<dyn Store>) -> Relay {
        let settings = Arc::new(settings);
        let loader = Loader::new(
            &settings.hooks_dir,
            settings.clone(),
            crate::channel::http::client(),
        );
        let catalog = Arc::new(LiveCatalog::start(loader));
        let metrics = Arc::new(Metrics::new());
        metrics.set_catalog_errors(catalog.current().report.errors.len());
        let observer = metrics.clone();
        store.observe_commits(Arc::new(move |took| observer.commit(took)));
        let wake = Arc::new(Notify::new());
        store.watch_due(wake.clone());
        Relay {
            state: web::Data::new(AppState {
                settings,
                catalog,
                store,
                metrics,
                wake,
                digests: Default::default(),
            }),
        }
    }

    /// The store (tests inspect it).
    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store.clone()
    }

    /// The live catalog.
    pub fn catalog(&self) -> Arc<LiveCatalog> {
        self.state.catalog.clone()
    }

    /// Serves on `listener` until `shutdown` completes (or the server fails), then stops
    /// accepting, lets requests and deliveries in flight finish within the grace period, and
    /// closes the store.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let state = self.state;
        let settings = state.settings.clone();
        // Events after a restart join the digest windows the store still holds open.
        match state.store.open_digests().await {
            Ok(open) => state.digests.seed(open, crate::ids::now_ms()),
            Err(e) => tracing::warn!(error = %e,
                "could not read the open digests; new events open new windows"),
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let dispatcher = Arc::new(Dispatcher::new(
            state.store.clone(),
            state.catalog.clone(),
            state.metrics.clone(),
            settings.clone(),
            state.wake.clone(),
        ));
        let dispatcher_task = tokio::spawn(dispatcher.run(stop_rx.clone()));
        let watcher = tokio::spawn(watch_catalog(state.clone(), stop_rx.clone()));
        let keep = Retention {
            finished: settings.retention,
            dead: settings.dead_retention,
        };
        let metrics = state.metrics.clone();
        let retention = tokio::spawn(retention::run(
            state.store.clone(),
            keep,
            move |n| metrics.events_purged(n),
            stop_rx,
        ));
        let server = http::server(state.clone(), listener)?;
        let handle = server.handle();
        let mut server_task = tokio::spawn(server);
        tracing::info!(listen = ?settings.listen, "hookrelay serving");
        let served = tokio::select! {
            _ = shutdown => None,
            r = &mut server_task => Some(r),
        };
        tracing::info!("shutting down");
        // Order matters: stop taking hooks first, then let deliveries finish, then close.
        handle.stop(true).await;
        if served.is_none() {
            let _ = server_task.await;
        }
        let _ = stop_tx.send(true);
        let _ = dispatcher_task.await;
        let _ = watcher.await;
        let _ = retention.await;
        state.store.close().await.context("closing the store")?;
        match served {
            Some(Ok(Err(e))) => Err(anyhow::Error::new(e).context("HTTP server failed")),
            _ => Ok(()),
        }
    }
}

async fn watch_catalog(state: web::Data<AppState>, stop: watch::Receiver<bool>) {
    let live = state.catalog.clone();
    let interval = state.settings.reload_interval;
    reload::watch(live, interval, stop).await;
}
