//! Outbound channels: the [`Channel`] contract, classified delivery errors, a channel's
//! registered [`Credentials`], and the [`registry`] of channel types.
//!
//! Every channel folder has one shape: `config.rs` (its spec as hooks.d writes it), `wire.rs`
//! (the vendor's request and reply types), `classify.rs` (its [`reply::ReplyTable`], tested row
//! by row), `mod.rs` (the [`Channel`] impl, including how a directory [`User`] is addressed).

pub mod contact;
mod credentials;
pub mod def;
mod dingtalk;
mod email;
mod feishu;
mod feishu_app;
pub mod http;
#[cfg(test)]
mod leak_test;
pub mod ratelimit;
pub mod registry;
pub mod reply;
pub mod sink;
pub mod token;
mod webhook;
mod wecom_app;
mod wecom_robot;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::directory::User;
use crate::doc::{DocCtx, DocError};
use crate::ids::DeliveryId;
use crate::message::{Message, MsgType, Recipients};
use crate::reason::Reason;
use crate::secret::{Scrubber, Secret, SecretRef, SecretUrl};

pub use credentials::Credentials;
pub use def::ChannelDef;

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
pub struct Outgoing<'a> {
    /// Stable across retries: the receiver's idempotency key (`webhook-id`).
    pub id: &'a DeliveryId,
    pub message: &'a Message,
    pub to: &'a Recipients,
    /// The event in CloudEvents JSON, for channels that say [`Channel::needs_event`].
    pub event: Option<&'a Value>,
    pub timeout: Duration,
    /// The store, when state must be shared with other replicas (vendor tokens); `None` in
    /// previews and tests.
    pub shared: Option<&'a dyn crate::store::Store>,
    /// The first message of a thread: sent in a form its channel can change later (a card),
    /// with the [`Receipt::handle`] that changes it.
    pub threaded: bool,
}

impl std::fmt::Debug for Outgoing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("id", self.id)
            .field("message", self.message)
            .field("to", self.to)
            .field("event", &self.event)
            .field("timeout", &self.timeout)
            .field("threaded", &self.threaded)
            .finish_non_exhaustive()
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

    /// The answer to an update: one refused for good means the vendor no longer lets the
    /// message be changed (a used or expired handle, a message gone): `None`, and a new message
    /// goes instead. A retryable failure or a throttle stays one.
    pub fn unless_refused<T>(r: Result<T, DeliveryError>) -> Result<Option<T>, DeliveryError> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(DeliveryError::Permanent { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The same error with its detail scrubbed of what `scrubber` holds.
    pub fn scrubbed(mut self, scrubber: &Scrubber) -> DeliveryError {
        match &mut self {
            DeliveryError::Retryable { detail, .. }
            | DeliveryError::Permanent { detail, .. }
            | DeliveryError::Throttled { detail, .. } => {
                if let Some(clean) = scrubber.changed(detail) {
                    *detail = clean;
                }
            }
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
    /// What changes the message later ([`Channel::update`]), when it was sent [`Outgoing::threaded`]
    /// or updated and may be again. Kept in the store's thread record, not shown.
    pub handle: Option<Value>,
}

impl Receipt {
    pub fn of(detail: Value) -> Receipt {
        Receipt {
            detail: Some(detail),
            ..Receipt::default()
        }
    }

    /// The receipt with `note` under `key` in its detail (what the relay adds to the vendor's
    /// answer: people resolved, a digest, a thread).
    pub fn noted(mut self, key: &str, note: Value) -> Receipt {
        self.detail = Some(with_note(self.detail.take(), key, note));
        self
    }
}

/// A receipt's `detail` with `note` under `key`; a detail that is not an object is kept under
/// `vendor` beside it.
pub fn with_note(detail: Option<Value>, key: &str, note: Value) -> Value {
    match detail {
        Some(Value::Object(mut o)) => {
            o.insert(key.into(), note);
            Value::Object(o)
        }
        Some(other) => serde_json::json!({"vendor": other, key: note}),
        None => serde_json::json!({ key: note }),
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
    /// Its type as hooks.d names it (`wecom-app`), from its [`registry`] entry.
    fn kind(&self) -> &'static str;

    /// How a directory user is addressed here: the vendor id this channel reads from the User
    /// document (a robot may fall back to the mobile number); `None` when the entry lacks it.
    fn address(&self, user: &User) -> Option<Recipients>;

    /// How a name (or a payload's mail address) the directory does not know is addressed: a
    /// webhook passes names on as they are, email takes a mail address. `None`: it cannot be,
    /// and routing reports it as unresolved.
    fn address_unknown(&self, _name: &str) -> Option<Recipients> {
        None
    }

    /// Whether a message must name recipients to be sent at all (an application message does;
    /// a group robot or a webhook posts without any).
    fn needs_recipients(&self) -> bool {
        false
    }

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

    /// How long a message it sent can still be changed, if it can: a thread's later events
    /// update it. `None`: each event is a new message (a robot cannot change what it posted).
    fn updatable(&self) -> Option<Duration> {
        None
    }

    /// Changes the message `handle` names (the [`Receipt::handle`] of an earlier send or
    /// update) to `out`'s. `Ok(None)`: the vendor no longer lets it be changed (a used or
    /// expired handle, a deleted message), and the caller sends a new one.
    async fn update(
        &self,
        _out: &Outgoing<'_>,
        _handle: &Value,
    ) -> Result<Option<Receipt>, DeliveryError> {
        Ok(None)
    }

    /// The request [`Channel::send`] would make, credentials redacted, without sending it
    /// (`hookrelay render`).
    fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError>;

    /// The channel's settings for display, credentials redacted.
    fn describe(&self) -> Value;
}

/// A directory user by their id on the vendor whose User field is `field`.
pub(crate) fn by_id(user: &User, field: &str) -> Option<Recipients> {
    user.id(field).map(|id| Recipients {
        users: vec![id.to_string()],
        ..Recipients::default()
    })
}

/// A directory user by their vendor id, or else by mobile number (robots mention either).
pub(crate) fn by_id_or_mobile(user: &User, field: &str) -> Option<Recipients> {
    by_id(user, field).or_else(|| {
        user.mobile.clone().map(|m| Recipients {
            mobiles: vec![m],
            ..Recipients::default()
        })
    })
}

/// A directory user by their vendor id, or else by the mail or mobile number the channel
/// looks up through the vendor's contact API when it sends (an application message).
pub(crate) fn by_id_or_lookup(user: &User, field: &str) -> Option<Recipients> {
    by_id(user, field)
        .or_else(|| user.mail.as_deref().and_then(lookup_mail))
        .or_else(|| {
            user.mobile.clone().map(|m| Recipients {
                mobiles: vec![m],
                ..Recipients::default()
            })
        })
}

/// `text` as a mail address, if it is one.
pub(crate) fn mail_address(text: &str) -> Option<String> {
    let mail = text.trim();
    <lettre::Address as std::str::FromStr>::from_str(mail).ok()?;
    Some(mail.to_string())
}

/// A mail address to find through the contact API, if `text` is one.
pub(crate) fn lookup_mail(text: &str) -> Option<Recipients> {
    Some(Recipients {
        mails: vec![mail_address(text)?],
        ..Recipients::default()
    })
}

/// A mail address sent to as it is, if `text` is one.
pub(crate) fn by_mail(text: &str) -> Option<Recipients> {
    Some(Recipients {
        users: vec![mail_address(text)?],
        ..Recipients::default()
    })
}

/// A robot's send URL: made from its token (the spec's `field`, put into the URL by `with`), or
/// given whole as `url` (then shown as scheme and host only when it came from a reference).
pub(crate) fn robot_url(
    ctx: &mut DocCtx<'_>,
    (field, token): (&str, Option<&SecretRef>),
    url: Option<&SecretRef>,
    with: impl FnOnce(&Secret) -> String,
) -> Result<SecretUrl, Vec<DocError>> {
    match (token, url) {
        (Some(t), None) => {
            let token = ctx
                .secret(t, &format!("/spec/{field}"))
                .map_err(|e| vec![e])?;
            Ok(SecretUrl::new(Secret::new(with(&token)), false))
        }
        (None, Some(u)) => ctx.url(u, "/spec/url").map_err(|e| vec![e]),
        _ => Err(vec![DocError::new(
            "/spec",
            format!("give either {field} or url"),
        )]),
    }
}

/// Where a channel's API lives: `base` (its `baseUrl`: an origin, as `vendors.*` are) or else
/// `origin`, with the channel's `path` appended. A `baseUrl` that already has a path is taken as
/// the whole prefix, as older configurations wrote it, with a warning.
pub(crate) fn api_url(
    ctx: &mut DocCtx<'_>,
    base: Option<&str>,
    origin: &str,
    path: &str,
) -> String {
    let Some(base) = base.map(|b| b.trim_end_matches('/')) else {
        return format!("{}{path}", origin.trim_end_matches('/'));
    };
    let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
    if after_scheme.contains('/') {
        ctx.warnings.push(DocError::new(
            "/spec/baseUrl",
            format!(
                "baseUrl is an origin (scheme://host[:port]); a path is taken as the whole API \
                 prefix instead of {path}"
            ),
        ));
        // Kept as it was written, trailing slash included where the API path had one.
        return if path.ends_with('/') {
            format!("{base}/")
        } else {
            base.to_string()
        };
    }
    format!("{base}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn a_base_url_is_an_origin_the_channel_appends_its_path_to() {
        let (settings, http) = (Settings::defaults(), reqwest::Client::new());
        let mut ctx = DocCtx::new(std::path::Path::new("."), &[], &settings, &http);
        let origin = "https://open.feishu.cn";
        let path = "/open-apis/bot/v2/hook/";
        assert_eq!(
            api_url(&mut ctx, None, origin, path),
            "https://open.feishu.cn/open-apis/bot/v2/hook/"
        );
        let lark = Some("https://open.larksuite.com/");
        assert_eq!(
            api_url(&mut ctx, lark, origin, path),
            "https://open.larksuite.com/open-apis/bot/v2/hook/"
        );
        assert!(ctx.warnings.is_empty());
        let written = Some("http://gw:8080/feishu/hook");
        assert_eq!(
            api_url(&mut ctx, written, origin, path),
            "http://gw:8080/feishu/hook/"
        );
        assert_eq!(ctx.warnings.len(), 1, "a path in baseUrl is warned about");
        assert_eq!(ctx.warnings[0].path, "/spec/baseUrl");
    }
}
