//! Prometheus metrics: what arrived, what was planned, how attempts went, and the health of the
//! catalog and the store. No label ever carries a secret or an unbounded value.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::plan::Plan;
use crate::reason::Reason;
use crate::store::{AttemptResult, Backlog};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IngressLabels {
    /// The Source name, or `(unknown)` for paths that name none (bounded cardinality).
    source: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    /// A configured Source name (requests to unknown ones are never counted here).
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    channel: String,
    /// delivered, retryable, throttled, permanent.
    result: &'static str,
    /// ok, client, server, auth, rate-limited, timeout, network, config, render, other.
    reason: &'static str,
}

type HistogramFamily = Family<ChannelLabels, Histogram, fn() -> Histogram>;

/// Every metric the relay exports.
pub struct Metrics {
    registry: Registry,
    ingress: Family<IngressLabels, Counter>,
    duplicates: Family<SourceLabels, Counter>,
    planned: Family<ChannelLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    attempt_seconds: HistogramFamily,
    dead: Family<ChannelLabels, Counter>,
    cel_errors: Counter,
    rejected: Family<ChannelLabels, Counter>,
    unresolved: Family<ChannelLabels, Counter>,
    catalog_errors: Gauge,
    store_fsyncs: Counter,
    store_bytes: Gauge,
    /// 1 while the store can write, 0 while it refuses writes (full disk, read-only, I/O).
    store_writable: Gauge,
    events_purged: Counter,
    pending: Gauge,
    due: Gauge,
    oldest_due_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    in_flight: Family<ChannelLabels, Gauge>,
    commit_seconds: Histogram,
    write_failures: Counter,
    render_failures: Family<ChannelLabels, Counter>,
    throttle_wait_seconds: Family<ChannelLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// Conditions already logged once (unresolved recipients).
    seen: Mutex<HashSet<String>>,
    minutes: Mutex<[Minute; MINUTES]>,
}

/// Minutes of activity remembered for the console's overview.
const MINUTES: usize = 60;

/// What happened in one minute (`at`: minutes since the epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Minute {
    #[serde(rename = "minute")]
    pub at: u64,
    pub events: u64,
    pub planned: u64,
    pub delivered: u64,
    /// Attempts that failed (retried later or given up).
    pub failed: u64,
    /// Deliveries that became dead letters.
    pub dead: u64,
}

fn channel(name: &str) -> ChannelLabels {
    ChannelLabels {
        channel: name.to_string(),
    }
}

/// Most conditions remembered as logged; then the memory starts over.
const SEEN_LIMIT: usize = 10_000;

fn attempt_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hookrelay");
        let ingress = Family::default();
        registry.register(
            "ingress_requests",
            "Requests to /hooks by source and HTTP answer",
            ingress.clone(),
        );
        let duplicates = Family::default();
        registry.register(
            "ingress_duplicates",
            "Events answered as duplicates (received before inside the dedup window), by source",
            duplicates.clone(),
        );
        let planned = Family::default();
        registry.register(
            "deliveries_planned",
            "Deliveries planned, by channel",
            planned.clone(),
        );
        let attempts = Family::default();
        registry.register(
            "delivery_attempts",
            "Delivery attempts by channel, result and reason",
            attempts.clone(),
        );
        let attempt_seconds: HistogramFamily = Family::new_with_constructor(attempt_histogram);
        registry.register(
            "delivery_attempt_seconds",
            "Duration of delivery attempts",
            attempt_seconds.clone(),
        );
        let dead = Family::default();
        registry.register(
            "deliveries_dead",
            "Deliveries that became dead letters",
            dead.clone(),
        );
        let cel_errors = Counter::default();
        registry.register(
            "cel_errors",
            "CEL filters that failed at run time (treated as no match)",
            cel_errors.clone(),
        );
        let rejected = Family::default();
        registry.register(
            "recipients_rejected",
            "Recipients a vendor refused while delivering to the others (e.g. WeCom invaliduser)",
            rejected.clone(),
        );
        registry.register(
            "contact_lookups",
            "People known by mail or mobile looked up through a vendor's contact API, by result \
             (found, not_found, cached, error)",
            crate::channel::contact::LOOKUPS.clone(),
        );
        let unresolved = Family::default();
        registry.register(
            "recipients_unresolved",
            "Recipients the User directory could not address on a channel",
            unresolved.clone(),
        );
        let catalog_errors = Gauge::default();
        registry.register(
            "catalog_errors",
            "Errors in the last hooks.d load",
            catalog_errors.clone(),
        );
        let store_fsyncs = Counter::default();
        registry.register(
            "store_fsyncs",
            "Group-commit flush+fsync rounds of the store",
            store_fsyncs.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register(
            "store_bytes",
            "Bytes the store occupies on disk",
            store_bytes.clone(),
        );
        let store_writable = Gauge::default();
        registry.register(
            "store_writable",
            "1 while the store can write; 0 while writes fail (full disk, read-only, I/O error)",
            store_writable.clone(),
        );
        let events_purged = Counter::default();
        registry.register(
            "events_purged",
            "Finished events (with their deliveries and attempts) removed by retention",
            events_purged.clone(),
        );
        let pending = Gauge::default();
        registry.register(
            "deliveries_pending",
            "Deliveries not yet delivered or dead: due now or later, in flight included",
            pending.clone(),
        );
        let due = Gauge::default();
        registry.register(
            "deliveries_due",
            "Pending deliveries whose time has come (waiting for a worker, a lane or in flight)",
            due.clone(),
        );
        let oldest_due_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "oldest_due_seconds",
            "How long the longest-waiting due delivery has been due (0 when none is)",
            oldest_due_seconds.clone(),
        );
        let in_flight = Family::default();
        registry.register(
            "deliveries_in_flight",
            "Deliveries being sent now, by channel (each capped by its maxInFlight)",
            in_flight.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "store_commit_seconds",
            "Duration of each group commit (the engine's flush and fdatasync)",
            commit_seconds.clone(),
        );
        let write_failures = Counter::default();
        registry.register(
            "store_write_failures",
            "Store writes and flushes that failed (full disk, read-only, I/O error)",
            write_failures.clone(),
        );
        let render_failures = Family::default();
        registry.register(
            "render_failures",
            "Deliveries planned dead because their template could not render the event, by channel",
            render_failures.clone(),
        );
        let throttle_wait_seconds = Family::default();
        registry.register(
            "throttle_wait_seconds",
            "Time deliveries were told to wait by a throttle (vendor or rate limit), by channel",
            throttle_wait_seconds.clone(),
        );
        Metrics {
            registry,
            ingress,
            duplicates,
            planned,
            attempts,
            attempt_seconds,
            dead,
            cel_errors,
            rejected,
            unresolved,
            catalog_errors,
            store_fsyncs,
            store_bytes,
            store_writable,
            events_purged,
            pending,
            due,
            oldest_due_seconds,
            in_flight,
            commit_seconds,
            write_failures,
            render_failures,
            throttle_wait_seconds,
            seen: Mutex::default(),
            minutes: Mutex::new([Minute::default(); MINUTES]),
        }
    }

    /// Counts one answer of `/hooks/{source}`.
    pub fn ingress(&self, source: &str, known: bool, code: u16) {
        let source = if known { source } else { "(unknown)" };
        self.ingress
            .get_or_create(&IngressLabels {
                source: source.to_string(),
                code,
            })
            .inc();
    }

    /// Counts an event answered as a duplicate.
    pub fn duplicate(&self, source: &str) {
        self.duplicates
            .get_or_create(&SourceLabels {
                source: source.to_string(),
            })
            .inc();
    }

    /// Counts what planning one event gave and noticed: deliveries per channel, CEL errors,
    /// and each unresolved recipient (logged the first time it is seen, counted always).
    pub fn record_plan(&self, plan: &Plan) {
        self.this_minute(|m| {
            m.events += 1;
            m.planned += plan.deliveries.len() as u64;
        });
        for d in &plan.deliveries {
            self.planned.get_or_create(&channel(&d.channel)).inc();
            if d.failed.is_some() {
                self.render_failures
                    .get_or_create(&channel(&d.channel))
                    .inc();
            }
        }
        self.cel_errors.inc_by(plan.cel_errors as u64);
        for u in &plan.unresolved {
            if !self.first_sight(format!("{}\n{}\n{}", u.origin, u.user, u.channel)) {
                // Logged before; counted below.
            } else if u.as_written {
                tracing::warn!(origin = %u.origin, user = %u.user, channel = %u.channel,
                    "recipient is not in the User directory; sent as written, the vendor may \
                     not recognise it (logged once, counted in hookrelay_recipients_unresolved)");
            } else {
                tracing::warn!(origin = %u.origin, user = %u.user, channel = %u.channel,
                    "recipient has no id for this channel in the User directory; not notified \
                     (logged once, counted in hookrelay_recipients_unresolved)");
            }
            self.unresolved.get_or_create(&channel(&u.channel)).inc();
        }
    }

    /// Counts one attempt's outcome on `channel`: its result, why it failed (`None`: it did
    /// not), how long it took, and whether the delivery became a dead letter.
    pub fn delivery_outcome(
        &self,
        channel_name: &str,
        result: AttemptResult,
        reason: Option<Reason>,
        seconds: f64,
        dead: bool,
    ) {
        let ch = channel(channel_name);
        self.attempt_seconds.get_or_create(&ch).observe(seconds);
        self.attempts
            .get_or_create(&AttemptLabels {
                channel: ch.channel.clone(),
                result: result.as_str(),
                reason: reason.map_or("ok", Reason::as_str),
            })
            .inc();
        if dead {
            self.dead.get_or_create(&ch).inc();
        }
        self.this_minute(|m| {
            match result {
                AttemptResult::Delivered => m.delivered += 1,
                AttemptResult::Retryable | AttemptResult::Permanent => m.failed += 1,
                AttemptResult::Throttled => {}
            }
            m.dead += u64::from(dead);
        });
    }

    /// Counts into the current minute's slot, starting it over when it held an older minute.
    fn this_minute(&self, count: impl FnOnce(&mut Minute)) {
        let at = crate::ids::now_ms() / 60_000;
        let mut minutes = self
            .minutes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = &mut minutes[(at % MINUTES as u64) as usize];
        if slot.at != at {
            *slot = Minute {
                at,
                ..Minute::default()
            };
        }
        count(slot);
    }

    /// The last hour up to `now_ms`, a minute at a time, oldest first (quiet minutes as zeros).
    pub fn last_hour(&self, now_ms: u64) -> Vec<Minute> {
        let now = now_ms / 60_000;
        let minutes = self
            .minutes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (now + 1 - MINUTES as u64..=now)
            .map(|at| {
                let slot = minutes[(at % MINUTES as u64) as usize];
                if slot.at == at {
                    slot
                } else {
                    Minute {
                        at,
                        ..Minute::default()
                    }
                }
            })
            .collect()
    }

    /// Adds how long a throttle on `channel` holds a delivery back.
    pub fn throttled(&self, channel_name: &str, wait: std::time::Duration) {
        self.throttle_wait_seconds
            .get_or_create(&channel(channel_name))
            .inc_by(wait.as_secs_f64());
    }

    /// Observes one group commit of the store.
    pub fn commit(&self, took: std::time::Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// Counts recipients a vendor refused while delivering to the others.
    pub fn recipients_rejected(&self, channel_name: &str, n: u32) {
        self.rejected
            .get_or_create(&channel(channel_name))
            .inc_by(u64::from(n));
    }

    /// Counts events removed by retention.
    pub fn events_purged(&self, n: u64) {
        self.events_purged.inc_by(n);
    }

    /// Sets the number of errors in the last hooks.d load.
    pub fn set_catalog_errors(&self, n: usize) {
        self.catalog_errors.set(n as i64);
    }

    /// Whether `key` is new to this process (a bounded memory: past its size, everything is).
    fn first_sight(&self, key: String) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= SEEN_LIMIT {
            seen.clear();
        }
        seen.insert(key)
    }

    /// Sets the store figures that are read rather than counted.
    pub fn set_store(&self, fsyncs: u64, failures: u64, bytes: u64, writable: bool) {
        self.store_fsyncs.inner().store(fsyncs, Ordering::Relaxed);
        self.write_failures
            .inner()
            .store(failures, Ordering::Relaxed);
        self.store_bytes.set(bytes as i64);
        self.store_writable.set(i64::from(writable));
    }

    /// Sets the backlog figures, read at each scrape.
    pub fn set_backlog(&self, b: Backlog, now_ms: u64) {
        self.pending.set(b.pending as i64);
        self.due.set(b.due as i64);
        let waited = b.oldest_due_ms.map_or(0, |at| now_ms.saturating_sub(at));
        self.oldest_due_seconds.set(waited as f64 / 1000.0);
    }

    /// Sets how many deliveries of `channel` are being sent now.
    pub fn in_flight(&self, channel_name: &str, sending: usize) {
        self.in_flight
            .get_or_create(&channel(channel_name))
            .set(sending as i64);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_hour_counts_each_minute_and_forgets_older_ones() {
        let m = Metrics::new();
        let plan = Plan::default();
        m.record_plan(&plan);
        m.record_plan(&plan);
        m.delivery_outcome("c", AttemptResult::Delivered, None, 0.1, false);
        m.delivery_outcome(
            "c",
            AttemptResult::Retryable,
            Some(Reason::Server),
            0.1,
            false,
        );
        m.delivery_outcome(
            "c",
            AttemptResult::Permanent,
            Some(Reason::Client),
            0.1,
            true,
        );
        m.delivery_outcome(
            "c",
            AttemptResult::Throttled,
            Some(Reason::RateLimited),
            0.0,
            false,
        );
        let now = crate::ids::now_ms();
        let hour = m.last_hour(now);
        assert_eq!(hour.len(), MINUTES);
        let last = hour[MINUTES - 1];
        // The clock may have turned a minute between the counting and the reading.
        let counted = if last.events == 0 {
            hour[MINUTES - 2]
        } else {
            last
        };
        assert_eq!(
            (
                counted.events,
                counted.delivered,
                counted.failed,
                counted.dead
            ),
            (2, 1, 2, 1)
        );
        assert_eq!(last.at, now / 60_000);
        // An hour later the slot is another minute's: nothing of the old one shows.
        let later = m.last_hour(now + 3_600_000);
        assert!(later.iter().all(|x| x.events == 0 && x.delivered == 0));
        assert_eq!(later[MINUTES - 1].at, now / 60_000 + 60);
    }

    #[test]
    fn unknown_sources_share_one_label() {
        let m = Metrics::new();
        m.ingress("cnb", true, 202);
        m.ingress("random-1", false, 404);
        m.ingress("random-2", false, 404);
        m.set_store(7, 2, 1024, false);
        m.set_backlog(
            Backlog {
                pending: 5,
                due: 2,
                oldest_due_ms: Some(1_000),
            },
            91_500,
        );
        m.in_flight("corp", 3);
        let text = m.encode();
        assert!(
            text.contains("hookrelay_ingress_requests_total{source=\"cnb\",code=\"202\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("source=\"(unknown)\",code=\"404\"} 2"),
            "{text}"
        );
        assert!(!text.contains("random-1"));
        assert!(text.contains("hookrelay_store_fsyncs_total 7"), "{text}");
        assert!(
            text.contains("hookrelay_store_write_failures_total 2"),
            "{text}"
        );
        assert!(text.contains("hookrelay_store_writable 0"), "{text}");
        assert!(text.contains("hookrelay_deliveries_pending 5"), "{text}");
        assert!(text.contains("hookrelay_deliveries_due 2"), "{text}");
        assert!(text.contains("hookrelay_oldest_due_seconds 90.5"), "{text}");
        assert!(
            text.contains("hookrelay_deliveries_in_flight{channel=\"corp\"} 3"),
            "{text}"
        );
    }

    /// The `hookrelay_…` names in a text (a PromQL expression, a rules file, a dashboard).
    fn names_in(text: &str) -> std::collections::BTreeSet<String> {
        text.match_indices("hookrelay_")
            .map(|(i, _)| {
                text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            })
            .collect()
    }

    /// Every sample name the exposition carries: each family's name with the suffixes its
    /// type gives its samples.
    fn exported(text: &str) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for rest in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            out.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        }
        out
    }

    /// The alert rules and the dashboard under `deploy/monitoring/` name only metrics the
    /// relay exports (each family given a sample, so that it is written out).
    #[test]
    fn the_monitoring_files_use_only_exported_metrics() {
        use crate::route::Unresolved;
        use crate::store::{ErrorInfo, NewDelivery};
        let m = Metrics::new();
        m.ingress("s", true, 202);
        m.duplicate("s");
        let failed = ErrorInfo {
            reason: Reason::Render,
            detail: "x".into(),
            status: None,
        };
        m.record_plan(&Plan {
            deliveries: vec![NewDelivery {
                origin: "r".into(),
                channel: "c".into(),
                template: None,
                to: Default::default(),
                message: None,
                failed: Some(failed),
                due_ms: 0,
                held: None,
                digest: None,
                thread: None,
            }],
            cel_errors: 1,
            unresolved: vec![Unresolved {
                origin: "r".into(),
                user: "u".into(),
                channel: "c".into(),
                as_written: false,
            }],
        });
        m.delivery_outcome(
            "c",
            AttemptResult::Permanent,
            Some(Reason::Client),
            0.1,
            true,
        );
        m.recipients_rejected("c", 1);
        m.throttled("c", std::time::Duration::from_secs(1));
        m.in_flight("c", 1);
        m.commit(std::time::Duration::from_millis(1));
        let exported = exported(&m.encode());
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring");
        let mut used = std::collections::BTreeSet::new();
        for f in ["alerts.yaml", "grafana-dashboard.json"] {
            used.extend(names_in(&std::fs::read_to_string(root.join(f)).unwrap()));
        }
        assert!(used.len() >= 15, "the files name the metrics: {used:?}");
        let missing: Vec<&String> = used.difference(&exported).collect();
        assert!(missing.is_empty(), "not exported: {missing:?}");
    }
}
