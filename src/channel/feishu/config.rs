//! The `feishu-robot` channel's settings as written in hooks.d.

use serde::Deserialize;

use crate::secret::SecretRef;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeishuSpec {
    /// The hook token (the last segment of the webhook URL).
    pub token: Option<SecretRef>,
    /// Or the whole webhook URL.
    pub url: Option<SecretRef>,
    /// Default `https://open.feishu.cn/open-apis/bot/v2/hook/`; Lark:
    /// `https://open.larksuite.com/open-apis/bot/v2/hook/`.
    pub base_url: Option<String>,
    /// The bot's signing secret (签名校验).
    pub secret: Option<SecretRef>,
}
