//! Outbound channels: the [`Channel`] contract, classified delivery errors, and [`build`], the
//! one place that turns a channel type into an implementation.
//!
//! Adding a channel: a folder here (config, wire message, signing/token, tests), its fields in
//! `schemas/channel.json`, an arm in [`build`], a classification table with a row-by-row test,
//! a no-secret-leak test and a fake-server test in `tests/it`, and a line in ARCHITECTURE.md.

pub mod dingtalk;
pub mod feishu;
pub mod http;
pub mod ratelimit;
pub mod reply;
pub mod webhook;
pub mod wecom_app;
pub mod wecom_robot;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::catalog::{DocCtx, DocError};
use crate::ids::DeliveryId;
use crate::message::{Message, MsgType, Recipients};
use crate::secret::scrub;

/// The channel types hooks.d may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelKind {
    Webhook,
    WecomApp,
    WecomRobot,
    DingtalkRobot,
    FeishuRobot,
}

impl ChannelKind {
    pub fn parse(s: &str) -> Option<ChannelKind> {
        Some(match s {
            "webhook" => ChannelKind::Webhook,
            "wecom-app" => ChannelKind::WecomApp,
            "wecom-robot" => ChannelKind::WecomRobot,
            "dingtalk-robot" => ChannelKind::DingtalkRobot,
            "feishu-robot" => ChannelKind::FeishuRobot,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::WecomApp => "wecom-app",
            ChannelKind::WecomRobot => "wecom-robot",
            ChannelKind::DingtalkRobot => "dingtalk-robot",
            ChannelKind::FeishuRobot => "feishu-robot",
        }
    }
}

/// What a channel's vendor accepts per request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub text_bytes: Option<usize>,
    pub markdown_bytes: Option<usize>,
    /// Most user ids one request may address (plans split larger audiences).
    pub users_per_request: Option<usize>,
    pub parties_per_request: Option<usize>,
    pub tags_per_request: Option<usize>,
}

impl Limits {
    pub fn content_bytes(&self, msgtype: MsgType) -> Option<usize> {
        match msgtype {
            MsgType::Text => self.text_bytes,
            MsgType::Markdown => self.markdown_bytes,
        }
    }
}

/// One delivery as a channel sees it.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// Stable across retries: the receiver's idempotency key (`webhook-id`).
    pub id: &'a DeliveryId,
    pub message: &'a Message,
    pub to: &'a Recipients,
    /// The event in CloudEvents JSON, for channels that say [`Channel::needs_event`].
    pub event: Option<&'a Value>,
    pub timeout: Duration,
}

/// Why an attempt failed, for metrics and the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Client,
    Server,
    Auth,
    RateLimited,
    Timeout,
    Network,
    Config,
    Render,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Client => "client",
            Reason::Server => "server",
            Reason::Auth => "auth",
            Reason::RateLimited => "rate-limited",
            Reason::Timeout => "timeout",
            Reason::Network => "network",
            Reason::Config => "config",
            Reason::Render => "render",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed attempt, classified. Details are already free of secrets.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// Try again later (after `retry_after` if the receiver said so).
    #[error("{reason}: {detail}")]
    Retryable {
        reason: Reason,
        detail: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
    /// The destination asked us to slow down; waiting does not count as a failed attempt.
    /// Without a `wait`, the retry schedule's next step is waited (still not counted).
    #[error("throttled: {detail}")]
    Throttled {
        detail: String,
        wait: Option<Duration>,
    },
    /// Will never succeed as it is.
    #[error("{reason}: {detail}")]
    Permanent {
        reason: Reason,
        detail: String,
        status: Option<u16>,
    },
}

impl DeliveryError {
    pub fn retryable(reason: Reason, detail: impl Into<String>) -> DeliveryError {
        DeliveryError::Retryable {
            reason,
            detail: detail.into(),
            status: None,
            retry_after: None,
        }
    }

    pub fn permanent(reason: Reason, detail: impl Into<String>) -> DeliveryError {
        DeliveryError::Permanent {
            reason,
            detail: detail.into(),
            status: None,
        }
    }

    pub fn reason(&self) -> Reason {
        match self {
            DeliveryError::Retryable { reason, .. } | DeliveryError::Permanent { reason, .. } => {
                *reason
            }
            DeliveryError::Throttled { .. } => Reason::RateLimited,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            DeliveryError::Retryable { status, .. } | DeliveryError::Permanent { status, .. } => {
                *status
            }
            DeliveryError::Throttled { .. } => None,
        }
    }

    /// The same error with every occurrence of `secrets` in its detail replaced by `***`.
    pub fn scrubbed(mut self, secrets: &[&str]) -> DeliveryError {
        match &mut self {
            DeliveryError::Retryable { detail, .. }
            | DeliveryError::Permanent { detail, .. }
            | DeliveryError::Throttled { detail, .. } => *detail = scrub(detail, secrets),
        }
        self
    }

    pub fn detail(&self) -> &str {
        match self {
            DeliveryError::Retryable { detail, .. }
            | DeliveryError::Permanent { detail, .. }
            | DeliveryError::Throttled { detail, .. } => detail,
        }
    }
}

/// What a successful send returns, stored on the delivery.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Receipt {
    /// The vendor's receipt (e.g. WeCom `msgid`, `invaliduser`), free of secrets.
    pub detail: Option<Value>,
    /// Recipients the vendor refused while delivering to the rest (a partial success: reported
    /// and counted, never retried).
    pub rejected: u32,
}

impl Receipt {
    pub fn of(detail: Value) -> Receipt {
        Receipt {
            detail: Some(detail),
            rejected: 0,
        }
    }
}

/// A vendor request as it would go out, with its credentials redacted.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub method: &'static str,
    pub url: String,
    pub body: Value,
}

impl Preview {
    /// `shown`: the URL as it may be displayed (`SecretUrl::shown`, or redacted).
    pub fn post(shown: &str, body: Value) -> Preview {
        Preview {
            method: "POST",
            url: shown.to_string(),
            body,
        }
    }
}

/// A destination type. Implementations map their vendor's answers into [`DeliveryError`]s in
/// one classification table and never put secrets in errors or receipts.
#[async_trait]
pub trait Channel: Send + Sync + fmt::Debug {
    fn kind(&self) -> ChannelKind;

    fn limits(&self) -> Limits {
        Limits::default()
    }

    /// Rate limits applied per destination unless the Channel sets its own.
    fn default_limits(&self) -> Vec<ratelimit::Limit> {
        Vec::new()
    }

    /// Whether [`Outgoing::event`] must be filled in.
    fn needs_event(&self) -> bool {
        false
    }

    /// Whether what it sends is made from the rendered message (a webhook that sends the event
    /// as it came is not: a template that cannot render the event must not stop it).
    fn needs_message(&self) -> bool {
        true
    }

    async fn send(&self, out: &Outgoing<'_>) -> Result<Receipt, DeliveryError>;

    /// The request [`Channel::send`] would make, credentials redacted, without sending it
    /// (`hookrelay render`).
    fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError>;

    /// The channel's settings for display, credentials redacted.
    fn describe(&self) -> Value;
}

/// Builds the channel of `kind` from its validated `spec`.
pub fn build(
    kind: ChannelKind,
    name: &str,
    spec: &Value,
    ctx: &mut DocCtx<'_>,
) -> Result<Arc<dyn Channel>, Vec<DocError>> {
    Ok(match kind {
        ChannelKind::Webhook => Arc::new(webhook::Webhook::build(name, spec, ctx)?),
        ChannelKind::WecomApp => Arc::new(wecom_app::WecomApp::build(spec, ctx)?),
        ChannelKind::WecomRobot => Arc::new(wecom_robot::WecomRobot::build(spec, ctx)?),
        ChannelKind::DingtalkRobot => Arc::new(dingtalk::Dingtalk::build(spec, ctx)?),
        ChannelKind::FeishuRobot => Arc::new(feishu::Feishu::build(spec, ctx)?),
    })
}
