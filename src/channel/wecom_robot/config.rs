//! The `wecom-robot` channel's settings as written in hooks.d.

use serde::Deserialize;

use crate::secret::SecretRef;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WecomRobotSpec {
    /// The robot's webhook key.
    pub key: Option<SecretRef>,
    /// Or its whole webhook URL (`…/webhook/send?key=…`).
    pub url: Option<SecretRef>,
    /// Default `https://qyapi.weixin.qq.com/cgi-bin/webhook/send` (with `key`).
    pub base_url: Option<String>,
}
