//! The `webhook` channel's settings as written in hooks.d.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::secret::SecretRef;

/// What the POST body is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyMode {
    /// The normalized message `{touser, msgtype, text:{content}, …}`.
    #[default]
    Message,
    /// The original event in CloudEvents JSON.
    Event,
    /// `template`, rendered against the event with `message` added.
    Template,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// Where to POST; may be a secret (URLs often carry tokens).
    pub url: SecretRef,
    #[serde(default)]
    pub body: BodyMode,
    pub template: Option<String>,
    pub content_type: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, SecretRef>,
    pub signing: Option<SigningSpec>,
}

/// Standard Webhooks signing of every request.
#[derive(Debug, Deserialize)]
pub struct SigningSpec {
    /// `whsec_` + Base64.
    pub secret: SecretRef,
}
