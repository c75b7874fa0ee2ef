//! The `wecom-app` channel's settings as written in hooks.d.

use serde::Deserialize;

use crate::secret::SecretRef;

/// An id written as a number or a string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AgentId {
    Number(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WecomAppSpec {
    pub corp_id: String,
    pub corp_secret: SecretRef,
    pub agent_id: AgentId,
    /// Default `https://qyapi.weixin.qq.com/cgi-bin/`.
    pub base_url: Option<String>,
    /// Confidential messages (watermarked, not shareable).
    #[serde(default)]
    pub safe: bool,
    /// Identical messages inside the interval are not delivered twice (default on), so a retry
    /// after an ambiguous failure does not duplicate.
    pub enable_duplicate_check: Option<bool>,
    /// Seconds, default 1800, at most 4 h.
    pub duplicate_check_interval: Option<u32>,
    /// Send messages that have a title and a URL as text cards.
    #[serde(default)]
    pub textcard: bool,
    /// Send markdown as markdown (default); off, it degrades to text (for WeChat-plugin users,
    /// who cannot see markdown).
    pub markdown: Option<bool>,
}
