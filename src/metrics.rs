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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngressLabels {
    /// The Source name, or `(unknown)` for paths that name none (bounded cardinality).
    pub source: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// A configured Source name (requests to unknown ones are never counted here).
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub channel: String,
    /// delivered, retryable, throttled, permanent.
    pub result: &'static str,
    /// ok, client, server, auth, rate-limited, timeout, network, config, render.
    pub reason: &'static str,
}

type HistogramFamily = Family<ChannelLabels, Histogram, fn() -> Histogram>;

/// Every metric the relay exports.
pub struct Metrics {
    registry: Registry,
    pub ingress: Family<IngressLabels, Counter>,
    pub duplicates: Family<SourceLabels, Counter>,
    pub planned: Family<ChannelLabels, Counter>,
    pub attempts: Family<AttemptLabels, Counter>,
    pub attempt_seconds: HistogramFamily,
    pub dead: Family<ChannelLabels, Counter>,
    pub cel_errors: Counter,
    pub rejected: Family<ChannelLabels, Counter>,
    pub unresolved: Family<ChannelLabels, Counter>,
    pub catalog_errors: Gauge,
    pub store_fsyncs: Counter,
    pub store_bytes: Gauge,
    /// 1 while the store can write, 0 while it refuses writes (full disk, read-only, I/O).
    pub store_writable: Gauge,
    pub events_purged: Counter,
    /// Conditions already logged once (unresolved recipients).
    seen: Mutex<HashSet<String>>,
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
            seen: Mutex::default(),
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

    /// Counts what planning one event noticed, and logs each unresolved recipient the first
    /// time it is seen (every later one is counted only).
    pub fn record_plan(&self, plan: &crate::plan::Plan) {
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
            self.unresolved
                .get_or_create(&ChannelLabels {
                    channel: u.channel.clone(),
                })
                .inc();
        }
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
    pub fn set_store(&self, fsyncs: u64, bytes: u64, writable: bool) {
        self.store_fsyncs.inner().store(fsyncs, Ordering::Relaxed);
        self.store_bytes.set(bytes as i64);
        self.store_writable.set(i64::from(writable));
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
    fn unknown_sources_share_one_label() {
        let m = Metrics::new();
        m.ingress("cnb", true, 202);
        m.ingress("random-1", false, 404);
        m.ingress("random-2", false, 404);
        m.set_store(7, 1024, false);
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
        assert!(text.contains("hookrelay_store_writable 0"), "{text}");
    }
}
