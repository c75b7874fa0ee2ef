//! `kind: Channel` — the settings every channel shares (type, timeout, retry, byte limit, rate
//! limit, in-flight cap); the type-specific part is built by its [`registry`] entry.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::ratelimit::{Limit, RateLimiter};
use super::{Channel, Credentials, DeliveryError, Outgoing, Preview, Receipt, registry};
use crate::config::parse_duration;
use crate::doc::{DocCtx, DocError, parse_spec};
use crate::message::MsgType;
use crate::retry::RetryPolicy;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommonSpec {
    #[serde(rename = "type")]
    ty: String,
    timeout: Option<String>,
    retry: Option<RetrySpec>,
    max_bytes: Option<usize>,
    max_in_flight: Option<usize>,
    rate_limit: Option<RateLimitSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RateLimitSpec {
    None(Unlimited),
    Limits {
        #[serde(rename = "perSecond")]
        per_second: Option<u32>,
        #[serde(rename = "perMinute")]
        per_minute: Option<u32>,
        #[serde(rename = "perHour")]
        per_hour: Option<u32>,
    },
}

/// The literal `none`.
#[derive(Debug, Deserialize)]
enum Unlimited {
    #[serde(rename = "none")]
    None,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetrySpec {
    schedule: Option<Vec<String>>,
    max_age: Option<String>,
    max_attempts: Option<u32>,
    jitter: Option<f64>,
}

/// A compiled Channel.
#[derive(Debug, Clone)]
pub struct ChannelDef {
    pub name: String,
    /// Its type (`wecom-app`, …).
    pub kind: &'static str,
    pub channel: Arc<dyn Channel>,
    /// What every error, receipt and preview of it is scrubbed of.
    pub credentials: Credentials,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    /// Operator's cap on content bytes, on top of the vendor's.
    pub max_bytes: Option<usize>,
    /// Sends per destination, if limited.
    pub limiter: Option<Arc<RateLimiter>>,
    /// Deliveries sent to it at once, at most.
    pub max_in_flight: usize,
}

impl ChannelDef {
    /// The byte limit content of `msgtype` is cut to, if any.
    pub fn content_limit(&self, msgtype: MsgType) -> Option<usize> {
        let vendor = self.channel.limits().content_bytes(msgtype);
        match (vendor, self.max_bytes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends through the channel; the outcome carries none of its credentials.
    pub async fn send(&self, out: &Outgoing<'_>) -> Result<Receipt, DeliveryError> {
        match self.channel.send(out).await {
            Ok(r) => Ok(self.credentials.receipt(r)),
            Err(e) => Err(self.credentials.error(e)),
        }
    }

    /// Updates a thread's message through the channel (see [`Channel::update`]); the outcome
    /// carries none of its credentials.
    pub async fn update(
        &self,
        out: &Outgoing<'_>,
        handle: &Value,
    ) -> Result<Option<Receipt>, DeliveryError> {
        match self.channel.update(out, handle).await {
            Ok(r) => Ok(r.map(|r| self.credentials.receipt(r))),
            Err(e) => Err(self.credentials.error(e)),
        }
    }

    /// Whether a delivery that continues `thread` is previewed as its thread's first message
    /// (the form this channel can change later).
    pub fn previews_thread(&self, thread: Option<&str>) -> bool {
        thread.is_some() && self.channel.updatable().is_some()
    }

    /// What a thread's later events do on this channel, in words (`render`, the admin API).
    pub fn thread_note(&self) -> String {
        match self.channel.updatable() {
            Some(d) => format!(
                "the thread's first event sends a message that its later events update in place \
                 (for {} after it is sent)",
                in_words(d)
            ),
            None => format!(
                "{} cannot change a message it sent: each event of the thread sends a new one",
                self.kind
            ),
        }
    }

    /// The request a send would make, without its credentials.
    pub fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError> {
        match self.channel.preview(out) {
            Ok(p) => Ok(self.credentials.preview(p)),
            Err(e) => Err(self.credentials.error(e)),
        }
    }
}

/// A vendor's window in whole days or hours ("14 days", "72 hours").
fn in_words(d: Duration) -> String {
    let hours = d.as_secs() / 3600;
    match hours {
        h if h > 72 && h % 24 == 0 => format!("{} days", h / 24),
        h => format!("{h} hours"),
    }
}

/// Default per-attempt timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Default cap on deliveries in flight to one channel: enough to keep a healthy vendor busy,
/// small enough that a hung one cannot hold the worker pool.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 8;

/// Compiles a Channel document's `spec`.
pub fn compile(
    name: &str,
    spec: &Value,
    ctx: &mut DocCtx<'_>,
) -> Result<ChannelDef, Vec<DocError>> {
    let common: CommonSpec = parse_spec(spec)?;
    let mut errors = Vec::new();
    let Some(registered) = registry::find(&common.ty) else {
        return Err(vec![DocError::new(
            "/spec/type",
            format!(
                "unknown channel type {:?}; expected one of {}",
                common.ty,
                registry::kinds().collect::<Vec<_>>().join(", ")
            ),
        )]);
    };
    let mut duration = |text: &Option<String>, path: &str, default: Duration| match text {
        None => default,
        Some(t) => parse_duration("duration", t).unwrap_or_else(|e| {
            errors.push(DocError::new(path, e.to_string()));
            default
        }),
    };
    let timeout = duration(&common.timeout, "/spec/timeout", DEFAULT_TIMEOUT);
    let mut retry = ctx.settings.retry.clone();
    if let Some(r) = &common.retry {
        if let Some(schedule) = &r.schedule {
            retry.schedule = schedule
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    duration(
                        &Some(s.clone()),
                        &format!("/spec/retry/schedule/{i}"),
                        Duration::ZERO,
                    )
                })
                .collect();
        }
        retry.max_age = duration(&r.max_age, "/spec/retry/maxAge", retry.max_age);
        retry.max_attempts = r.max_attempts.or(retry.max_attempts);
        retry.jitter = r.jitter.unwrap_or(retry.jitter);
    }
    let built = (registered.build)(name, spec, ctx);
    match built {
        Ok(channel) if errors.is_empty() => {
            let limits = match common.rate_limit {
                None => channel.default_limits(),
                Some(RateLimitSpec::None(_)) => Vec::new(),
                Some(RateLimitSpec::Limits {
                    per_second,
                    per_minute,
                    per_hour,
                }) => [
                    per_second.map(Limit::per_second),
                    per_minute.map(Limit::per_minute),
                    per_hour.map(|n| Limit {
                        count: n,
                        window: Duration::from_secs(3600),
                    }),
                ]
                .into_iter()
                .flatten()
                .collect(),
            };
            Ok(ChannelDef {
                name: name.to_string(),
                kind: registered.kind,
                channel,
                credentials: Credentials::new(std::mem::take(&mut ctx.credentials)),
                retry,
                timeout,
                max_bytes: common.max_bytes,
                limiter: (!limits.is_empty()).then(|| Arc::new(RateLimiter::new(limits))),
                max_in_flight: common.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT).max(1),
            })
        }
        Ok(_) => Err(errors),
        Err(mut more) => {
            errors.append(&mut more);
            Err(errors)
        }
    }
}
