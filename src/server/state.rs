//! What every request handler shares.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::catalog::reload::LiveCatalog;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::plan::DigestBook;
use crate::store::Store;

/// The relay's shared state, one per process.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub catalog: Arc<LiveCatalog>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Wakes the dispatcher when something became due now.
    pub wake: Arc<Notify>,
    /// The digest windows open in this process.
    pub digests: DigestBook,
}
