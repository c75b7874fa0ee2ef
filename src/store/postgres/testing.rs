//! Test support: a fresh schema on the PostgreSQL server named by `HOOKRELAY_TEST_POSTGRES_URL`
//! (`.ci/run` starts one; `scripts/pg-cluster.sh` does it by hand). Without it, PostgreSQL tests
//! say they are skipped and pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::PgSettings;
use crate::secret::Secret;
use crate::store::Store;

/// The variable that names the test server.
pub const URL_VAR: &str = "HOOKRELAY_TEST_POSTGRES_URL";

/// Whether a test server is configured (else the caller skips, saying so).
pub fn available() -> bool {
    let set = std::env::var(URL_VAR).is_ok_and(|v| !v.is_empty());
    if !set {
        eprintln!("skipped: {URL_VAR} is not set (see README: PostgreSQL tests)");
    }
    set
}

/// Settings for a schema of its own on the test server.
pub fn settings(schema: &str, replica: &str) -> PgSettings {
    PgSettings {
        url: Secret::new(std::env::var(URL_VAR).unwrap_or_default()),
        pool_size: 8,
        statement_timeout: Duration::from_secs(10),
        lease: Duration::from_secs(30),
        replica: replica.into(),
        schema: schema.into(),
        ca_file: None,
    }
}

/// The variable naming the test server's CA certificate (`scripts/pg-cluster.sh` makes one).
pub const CA_VAR: &str = "HOOKRELAY_TEST_POSTGRES_CA";

/// The test server's CA, if it offers TLS (else the caller skips, saying so).
pub fn ca() -> Option<std::path::PathBuf> {
    let ca = std::env::var(CA_VAR).ok().filter(|v| !v.is_empty());
    if ca.is_none() {
        eprintln!("skipped: {CA_VAR} is not set (the test server offers no TLS)");
    }
    ca.map(Into::into)
}

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}_{}_{:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

/// A store on a fresh schema, if a test server is configured.
pub async fn open() -> Option<(Arc<dyn Store>, ())> {
    if !available() {
        return None;
    }
    let s = settings(&fresh_schema(), "test");
    let store = super::open(&s).await.expect("PostgreSQL store opens");
    Some((Arc::new(store), ()))
}

/// Two replicas (`a`, `b`) on one fresh schema, if a test server is configured.
pub async fn pair() -> Option<(super::PgStore, super::PgStore, String)> {
    if !available() {
        return None;
    }
    let schema = fresh_schema();
    let a = super::open(&settings(&schema, "a")).await.unwrap();
    let b = super::open(&settings(&schema, "b")).await.unwrap();
    Some((a, b, schema))
}
