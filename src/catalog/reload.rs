//! The live catalog: one atomic pointer swapped on reload (file change or SIGHUP), and the task
//! that watches for those.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::{Catalog, Loader, load};

/// The catalog currently serving, and the loader that makes the next one.
pub struct LiveCatalog {
    current: ArcSwap<Catalog>,
    loader: Mutex<Loader>,
}

impl LiveCatalog {
    /// Loads hooks.d for the first time and logs what it found.
    pub fn start(mut loader: Loader) -> LiveCatalog {
        let catalog = loader.load(true);
        log_report(&catalog, "loaded");
        LiveCatalog {
            current: ArcSwap::from_pointee(catalog),
            loader: Mutex::new(loader),
        }
    }

    /// The catalog in force now; holders keep it alive across a reload.
    pub fn current(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    /// Reloads hooks.d and swaps the result in.
    pub fn reload(&self, recompile_all: bool) -> Arc<Catalog> {
        let mut loader = self.loader.lock().expect("loader lock");
        let catalog = Arc::new(loader.load(recompile_all));
        log_report(&catalog, "reloaded");
        self.current.store(catalog.clone());
        catalog
    }

    fn fingerprint(&self) -> Vec<load::Fingerprint> {
        let loader = self.loader.lock().expect("loader lock");
        load::fingerprint(loader.dir())
    }
}

fn log_report(c: &Catalog, what: &str) {
    for e in &c.report.errors {
        tracing::error!(file = %e.file.display(), document = e.document, path = %e.path, "hooks.d: {e}");
    }
    for w in &c.report.warnings {
        tracing::warn!(file = %w.file.display(), document = w.document, path = %w.path, "hooks.d: {w}");
    }
    tracing::info!(
        resources = ?c.report.resources,
        errors = c.report.errors.len(),
        "hooks.d {what}"
    );
}

/// Reloads when hooks.d changes (checked every `interval`; zero disables) or on SIGHUP
/// (which also re-reads every file's secrets), until `shutdown` turns true.
pub async fn watch(
    live: Arc<LiveCatalog>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload on file change only");
            None
        }
    };
    let mut seen = live.fingerprint();
    loop {
        tokio::select! {
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => return,
            _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: reloading hooks.d");
                let l = live.clone();
                let _ = tokio::task::spawn_blocking(move || l.reload(true)).await;
                seen = live.fingerprint();
            }
            _ = tokio::time::sleep(interval), if !interval.is_zero() => {
                let now = live.fingerprint();
                if now != seen {
                    seen = now;
                    let l = live.clone();
                    let _ = tokio::task::spawn_blocking(move || l.reload(false)).await;
                }
            }
        }
    }
}
