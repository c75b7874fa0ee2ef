//! The running relay: opens the store and the catalog, serves HTTP, runs delivery, reload and
//! retention until told to stop, then stops them in order.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, web};
use anyhow::Context;
use serde_json::json;
use tokio::sync::{Notify, watch};

use crate::catalog::Loader;
use crate::catalog::reload::{self, LiveCatalog};
use crate::channel::http;
use crate::config::Settings;
use crate::deliver::Engine;
use crate::ids::now_ms;
use crate::metrics::Metrics;
use crate::store::{self, Store, StoreError};
use crate::{admin, edge, ingress};

/// What request handlers share.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub catalog: Arc<LiveCatalog>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Wakes the dispatcher when something became due now.
    pub wake: Arc<Notify>,
}

/// An opened relay, ready to serve.
pub struct Relay {
    state: web::Data<AppState>,
}

impl Relay {
    /// Opens the store in the data dir and loads hooks.d. A store that cannot be opened is an
    /// error; a bad hooks.d file is reported and the rest serves.
    pub fn open(settings: Settings) -> anyhow::Result<Relay> {
        let store = store::open(
            settings.store,
            &settings.data_dir,
            settings.cache_mb * 1024 * 1024,
        )
        .with_context(|| format!("opening the data dir {}", settings.data_dir.display()))?;
        Ok(Relay::with_store(settings, store))
    }

    /// A relay over a store opened by the caller (tests wrap the engine to watch it).
    pub fn with_store(settings: Settings, store: Arc<dyn Store>) -> Relay {
        let settings = Arc::new(settings);
        let loader = Loader::new(&settings.hooks_dir, settings.clone(), http::client());
        let catalog = Arc::new(LiveCatalog::start(loader));
        let metrics = Arc::new(Metrics::new());
        metrics
            .catalog_errors
            .set(catalog.current().report.errors.len() as i64);
        Relay {
            state: web::Data::new(AppState {
                settings,
                catalog,
                store,
                metrics,
                wake: Arc::new(Notify::new()),
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
        let (stop_tx, stop_rx) = watch::channel(false);
        let engine = Arc::new(Engine::new(
            state.store.clone(),
            state.catalog.clone(),
            state.metrics.clone(),
            settings.clone(),
            state.wake.clone(),
        ));
        let engine_task = tokio::spawn(engine.run(stop_rx.clone()));
        let watcher = tokio::spawn(watch_catalog(state.clone(), stop_rx.clone()));
        let retention = tokio::spawn(retention(state.clone(), stop_rx));
        let server = http_server(state.clone(), listener)?;
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
        let _ = engine_task.await;
        let _ = watcher.await;
        let _ = retention.await;
        state.store.close().context("closing the store")?;
        match served {
            Some(Ok(Err(e))) => Err(anyhow::Error::new(e).context("HTTP server failed")),
            _ => Ok(()),
        }
    }
}

/// Builds the HTTP server (kept out of `serve`: the builder is not `Send`). It is actix-web's
/// `HttpServer` assembled by hand, for one difference: each connection goes through
/// [`edge::Guarded`], which answers actix's own protocol-level refusals in JSON.
fn http_server(
    state: web::Data<AppState>,
    listener: TcpListener,
) -> anyhow::Result<actix_web::dev::Server> {
    use actix_service::{ServiceFactoryExt, fn_service, map_config};
    let settings = state.settings.clone();
    let addr = listener.local_addr().context("listening")?;
    let mut server = actix_server::Server::build()
        .disable_signals()
        .shutdown_timeout(settings.shutdown_grace.as_secs().max(1));
    if settings.http_workers > 0 {
        server = server.workers(settings.http_workers);
    }
    let server = server
        .listen("hookrelay", listener, move || {
            let app = App::new()
                .wrap_fn(edge::catch_panics)
                .app_data(state.clone())
                .configure(ingress::configure)
                .configure(admin::configure)
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
                .route("/metrics", web::get().to(metrics));
            let http = actix_http::HttpService::build()
                .keep_alive(Duration::from_secs(5))
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(addr)
                .finish(map_config(app, |_| actix_web::dev::AppConfig::default()));
            fn_service(|io: tokio::net::TcpStream| async {
                let peer = io.peer_addr().ok();
                Ok((edge::Guarded::new(io), actix_http::Protocol::Http1, peer))
            })
            .and_then(http)
        })
        .context("listening")?;
    Ok(server.run())
}

async fn watch_catalog(state: web::Data<AppState>, stop: watch::Receiver<bool>) {
    let live = state.catalog.clone();
    let interval = state.settings.reload_interval;
    reload::watch(live, interval, stop).await;
}

/// Removes finished events past retention, in bounded batches, once a minute.
async fn retention(state: web::Data<AppState>, mut stop: watch::Receiver<bool>) {
    const BATCH: usize = 1000;
    /// A pass that removes this many events also compacts, so the data dir shrinks.
    const COMPACT_AFTER: usize = 10_000;
    // Once a minute, or as often as the retention itself when that is shorter.
    let every = state
        .settings
        .retention
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
        let (s, stopping) = (state.clone(), stop.clone());
        let purged = tokio::task::spawn_blocking(move || {
            let (mut total, mut after) = (0, None);
            // A long pass yields to shutdown between steps; the next start picks it up.
            while !*stopping.borrow() {
                let step = s.store.purge(
                    after.as_ref(),
                    now_ms(),
                    s.settings.retention.as_millis() as u64,
                    s.settings.dead_retention.as_millis() as u64,
                    BATCH,
                )?;
                total += step.removed;
                s.metrics.events_purged.inc_by(step.removed as u64);
                match step.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            if total >= COMPACT_AFTER && !*stopping.borrow() {
                s.store.compact()?;
            }
            Ok::<_, StoreError>(total)
        })
        .await;
        match purged {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(events = n, "retention removed finished events"),
            Ok(Err(e)) => tracing::error!(error = %e, "retention pass failed"),
            Err(e) => tracing::error!(error = %e, "retention task failed"),
        }
    }
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
        state.store.size_on_disk().unwrap_or(0),
        state.store.fault().is_none(),
    );
    m.catalog_errors
        .set(state.catalog.current().report.errors.len() as i64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(m.encode())
}
