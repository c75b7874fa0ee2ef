//! Settings: built-in defaults → optional `hookrelay.toml` → `HOOKRELAY_*` environment, validated.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::retry::RetryPolicy;
use crate::secret::Secret;
use crate::store::Backend;
use crate::store::postgres::PgSettings;

/// Settings as written in the file and environment (durations as text, e.g. `90s`, `24h`).
#[derive(Debug, Deserialize)]
struct RawSettings {
    listen: String,
    data_dir: PathBuf,
    hooks_dir: PathBuf,
    max_body_bytes: usize,
    workers: usize,
    http_workers: usize,
    admin_token: Option<String>,
    log_format: String,
    log_level: String,
    dedup_window: String,
    content_dedup_window: String,
    retention: String,
    dead_retention: String,
    store: String,
    cache_mb: u64,
    postgres: RawPostgres,
    reload_interval: String,
    shutdown_grace: String,
    retry: RawRetry,
    vendors: Vendors,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    #[serde(default)]
    secret_dirs: Vec<PathBuf>,
    timezone: String,
}

/// Where the vendor APIs are, for channels that do not set `baseUrl` (egress gateways, private
/// deployments, Lark instead of Feishu).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Vendors {
    /// WeCom API origin (`vendors.wecom`, default `https://qyapi.weixin.qq.com`).
    pub wecom: String,
    /// DingTalk API origin (`vendors.dingtalk`, default `https://oapi.dingtalk.com`).
    pub dingtalk: String,
    /// Feishu / Lark API origin (`vendors.feishu`, default `https://open.feishu.cn`).
    pub feishu: String,
}

/// `[postgres]`, read when `store = "postgres"`.
#[derive(Debug, Deserialize)]
struct RawPostgres {
    url: Option<String>,
    /// A file holding the URL (a mounted Secret), instead of `url`.
    url_file: Option<PathBuf>,
    pool_size: usize,
    statement_timeout: String,
    lease: String,
    replica: Option<String>,
    schema: String,
    /// PEM certificates the server's is verified against, besides the system's roots.
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct RawRetry {
    schedule: Vec<String>,
    max_age: String,
    max_attempts: Option<u32>,
    jitter: f64,
    max_retry_after: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Validated settings of one relay process.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address the HTTP server listens on (`listen`, default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Where the store keeps its files (`data_dir`, default `./data`).
    pub data_dir: PathBuf,
    /// The drop-in resource directory (`hooks_dir`, default `./hooks.d`).
    pub hooks_dir: PathBuf,
    /// Largest accepted request body in bytes (`max_body_bytes`, default 1 MiB).
    pub max_body_bytes: usize,
    /// Deliveries in flight at once (`workers`, default 64).
    pub workers: usize,
    /// HTTP server threads; 0 = one per CPU (`http_workers`).
    pub http_workers: usize,
    /// Bearer token for `/admin` (`admin_token`); without one the admin API answers 403.
    pub admin_token: Option<Secret>,
    /// `pretty` or `json` (`log_format`).
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info` or `hookrelay=debug` (`log_level`).
    pub log_level: String,
    /// How long an event id is remembered for de-duplication (`dedup_window`, default 24h).
    pub dedup_window: Duration,
    /// How long an id made from an event's content is remembered (`content_dedup_window`,
    /// default 10m): it absorbs a sender's retries without swallowing later notifications.
    pub content_dedup_window: Duration,
    /// How long finished events and deliveries are kept (`retention`, default 7d).
    pub retention: Duration,
    /// How long dead letters are kept (`dead_retention`, default 30d).
    pub dead_retention: Duration,
    /// The embedded storage engine: `fjall` (default) or `sled` (`store`).
    pub store: Backend,
    /// The shared store, when `store = "postgres"`: it replaces the embedded one.
    pub postgres: Option<PgSettings>,
    /// Store block cache in MiB (`cache_mb`, default 16).
    pub cache_mb: u64,
    /// How often hooks.d is checked for changes; 0 disables (`reload_interval`, default 2s).
    pub reload_interval: Duration,
    /// How long shutdown waits for deliveries in flight (`shutdown_grace`, default 10s).
    pub shutdown_grace: Duration,
    /// Default retry policy for channels that do not set their own (`retry.*`).
    pub retry: RetryPolicy,
    /// Vendor API origins (`vendors.*`).
    pub vendors: Vendors,
    /// Values templates can read as `{{vars.NAME}}`, e.g. `platform_url` (`vars.*`).
    pub vars: BTreeMap<String, String>,
    /// Directories besides hooks.d that `{file: …}` secrets may be read from (`secret_dirs`,
    /// e.g. `["/run/secrets"]`; `HOOKRELAY_SECRET_DIRS=/run/secrets,/etc/hookrelay`).
    pub secret_dirs: Vec<PathBuf>,
    /// The UTC offset people read times in: the console's dates (`timezone`, default `+08:00`).
    pub timezone: chrono::FixedOffset,
}

/// A setting that could not be read or makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading settings: {0}")]
    Read(#[from] config::ConfigError),
    #[error("setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

const DEFAULTS: &[(&str, &str)] = &[
    ("listen", "127.0.0.1:8080"),
    ("data_dir", "./data"),
    ("hooks_dir", "./hooks.d"),
    ("log_format", "pretty"),
    ("log_level", "info"),
    ("dedup_window", "24h"),
    ("content_dedup_window", "10m"),
    ("retention", "7d"),
    ("dead_retention", "30d"),
    ("store", "fjall"),
    ("postgres.statement_timeout", "10s"),
    ("postgres.lease", "30s"),
    ("postgres.schema", "public"),
    ("reload_interval", "2s"),
    ("timezone", "+08:00"),
    ("shutdown_grace", "10s"),
    ("retry.max_age", "24h"),
    ("retry.max_retry_after", "1h"),
    // Templates may rely on these two: the shipped ones switch language on `lang` (zh | en)
    // and link to the platform when `platform_url` is set.
    ("vendors.wecom", "https://qyapi.weixin.qq.com"),
    ("vendors.dingtalk", "https://oapi.dingtalk.com"),
    ("vendors.feishu", "https://open.feishu.cn"),
    ("vars.lang", "zh"),
    ("vars.platform_url", ""),
];

impl Settings {
    /// Loads settings: defaults, then `file` (required when given, else `./hookrelay.toml` if
    /// present), then `HOOKRELAY_*` variables (`__` separates nested keys: `HOOKRELAY_RETRY__MAX_AGE`).
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let b = match file {
            Some(path) => with_defaults()?.add_source(config::File::from(path).required(true)),
            None => with_defaults()?
                .add_source(config::File::with_name("hookrelay.toml").required(false)),
        };
        let b = b.add_source(
            config::Environment::with_prefix("HOOKRELAY")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("retry.schedule")
                .with_list_parse_key("secret_dirs"),
        );
        Settings::validate(b.build()?.try_deserialize()?)
    }

    /// Built-in defaults only, ignoring files and environment (tests start here).
    pub fn defaults() -> Settings {
        with_defaults()
            .and_then(|b| Ok(b.build()?.try_deserialize()?))
            .and_then(Settings::validate)
            .expect("built-in defaults are valid")
    }

    fn validate(raw: RawSettings) -> Result<Settings, ConfigError> {
        let listen = raw
            .listen
            .parse()
            .map_err(|e| invalid("listen", format!("{:?} is not host:port: {e}", raw.listen)))?;
        let log_format = match raw.log_format.as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log_format",
                    format!("{other:?} is neither \"pretty\" nor \"json\""),
                ));
            }
        };
        if raw.max_body_bytes < 1024 {
            return Err(invalid("max_body_bytes", "must be at least 1024".into()));
        }
        if raw.workers == 0 {
            return Err(invalid("workers", "must be at least 1".into()));
        }
        let schedule = raw
            .retry
            .schedule
            .iter()
            .map(|s| parse_duration("retry.schedule", s))
            .collect::<Result<Vec<_>, _>>()?;
        if schedule.is_empty() {
            return Err(invalid("retry.schedule", "needs at least one step".into()));
        }
        if !(0.0..=1.0).contains(&raw.retry.jitter) {
            return Err(invalid("retry.jitter", "must be between 0 and 1".into()));
        }
        let dedup_window = parse_duration("dedup_window", &raw.dedup_window)?;
        let retention = parse_duration("retention", &raw.retention)?;
        let content_dedup_window =
            parse_duration("content_dedup_window", &raw.content_dedup_window)?;
        for (key, window) in [
            ("dedup_window", dedup_window),
            ("content_dedup_window", content_dedup_window),
        ] {
            if window > retention {
                return Err(invalid(
                    key,
                    "cannot be longer than retention (events are the dedup memory)".into(),
                ));
            }
        }
        let postgres = if raw.store == "postgres" {
            Some(postgres(raw.postgres)?)
        } else {
            None
        };
        let store = match postgres {
            Some(_) => Backend::Fjall,
            None => Backend::parse(&raw.store).ok_or_else(|| {
                invalid(
                    "store",
                    format!(
                        "{:?} is none of \"fjall\", \"sled\", \"postgres\"",
                        raw.store
                    ),
                )
            })?,
        };
        Ok(Settings {
            listen,
            data_dir: raw.data_dir,
            hooks_dir: raw.hooks_dir,
            max_body_bytes: raw.max_body_bytes,
            workers: raw.workers,
            http_workers: raw.http_workers,
            admin_token: raw.admin_token.filter(|t| !t.is_empty()).map(Secret::new),
            log_format,
            log_level: raw.log_level,
            dedup_window,
            content_dedup_window,
            retention,
            dead_retention: parse_duration("dead_retention", &raw.dead_retention)?,
            store,
            postgres,
            cache_mb: raw.cache_mb.max(4),
            reload_interval: parse_duration("reload_interval", &raw.reload_interval)?,
            shutdown_grace: parse_duration("shutdown_grace", &raw.shutdown_grace)?,
            retry: RetryPolicy {
                schedule,
                max_age: parse_duration("retry.max_age", &raw.retry.max_age)?,
                max_attempts: raw.retry.max_attempts,
                jitter: raw.retry.jitter,
                max_retry_after: parse_duration(
                    "retry.max_retry_after",
                    &raw.retry.max_retry_after,
                )?,
            },
            vendors: Vendors {
                wecom: raw.vendors.wecom.trim_end_matches('/').to_string(),
                dingtalk: raw.vendors.dingtalk.trim_end_matches('/').to_string(),
                feishu: raw.vendors.feishu.trim_end_matches('/').to_string(),
            },
            vars: raw.vars,
            secret_dirs: raw.secret_dirs,
            timezone: raw.timezone.trim().parse().map_err(|_| {
                invalid(
                    "timezone",
                    format!("{:?} is not a UTC offset such as +08:00", raw.timezone),
                )
            })?,
        })
    }
}

fn invalid(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

fn postgres(raw: RawPostgres) -> Result<PgSettings, ConfigError> {
    let url = match (raw.url.filter(|u| !u.is_empty()), raw.url_file) {
        (Some(u), None) => u,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map(|t| t.trim().to_string())
            .map_err(|e| invalid("postgres.url_file", format!("{}: {e}", path.display())))?,
        (Some(_), Some(_)) => {
            return Err(invalid(
                "postgres.url",
                "give url or url_file, not both".into(),
            ));
        }
        (None, None) => {
            return Err(invalid(
                "postgres.url",
                "store = \"postgres\" needs postgres.url (or HOOKRELAY_POSTGRES__URL, or postgres.url_file)"
                    .into(),
            ));
        }
    };
    let lease = parse_duration("postgres.lease", &raw.lease)?;
    if lease < std::time::Duration::from_secs(1) {
        return Err(invalid("postgres.lease", "must be at least 1s".into()));
    }
    let replica = raw.replica.filter(|r| !r.is_empty()).unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "relay".into());
        format!("{host}-{}", std::process::id())
    });
    Ok(PgSettings {
        url: Secret::new(url),
        pool_size: raw.pool_size.max(2),
        statement_timeout: parse_duration("postgres.statement_timeout", &raw.statement_timeout)?,
        lease,
        replica,
        schema: raw.schema,
        ca_file: raw.ca_file,
    })
}

fn with_defaults() -> Result<config::ConfigBuilder<config::builder::DefaultState>, ConfigError> {
    let mut b = config::Config::builder();
    for (k, v) in DEFAULTS {
        b = b.set_default(*k, *v)?;
    }
    let retry = RetryPolicy::default();
    let schedule: Vec<String> = retry
        .schedule
        .iter()
        .map(|d| humantime::format_duration(*d).to_string())
        .collect();
    Ok(b.set_default("max_body_bytes", 1024 * 1024)?
        .set_default("workers", 64)?
        .set_default("http_workers", 0)?
        .set_default("cache_mb", 16)?
        .set_default("postgres.pool_size", 16)?
        .set_default("retry.jitter", retry.jitter)?
        .set_default("retry.schedule", schedule)?)
}

/// Parses `500ms`, `5s`, `2m`, `24h`, `7d`, `1h 30m`; a bare number is seconds.
pub fn parse_duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t).map_err(|e| ConfigError::Invalid {
        key,
        reason: format!("{text:?} is not a duration: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::defaults();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert_eq!(s.retry, RetryPolicy::default());
        assert_eq!(s.dedup_window, Duration::from_secs(86400));
        assert!(s.admin_token.is_none());
    }

    #[test]
    fn file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookrelay.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\nworkers = 3\n[retry]\nschedule = [\"0s\", \"1s\"]\nmax_age = \"1h\"\n[vars]\nplatform_url = \"https://acp.example\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&path)).unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.workers, 3);
        assert_eq!(
            s.retry.schedule,
            vec![Duration::ZERO, Duration::from_secs(1)]
        );
        assert_eq!(s.retry.max_age, Duration::from_secs(3600));
        assert_eq!(s.vars["platform_url"], "https://acp.example");
    }

    #[test]
    fn bad_values_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "dedup_window = \"soon\"\n").unwrap();
        let err = Settings::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("dedup_window"), "{err}");
        std::fs::write(&path, "store = \"rocks\"\n").unwrap();
        let err = Settings::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("store"), "{err}");
        std::fs::write(&path, "log_format = \"xml\"\n").unwrap();
        let err = Settings::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("log_format"), "{err}");
    }

    #[test]
    fn durations_accept_bare_seconds_and_units() {
        assert_eq!(parse_duration("x", "90").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("x", "7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(
            parse_duration("x", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert!(parse_duration("x", "later").is_err());
    }
}
