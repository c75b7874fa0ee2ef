//! The `dingtalk-robot` channel's settings as written in hooks.d.

use serde::Deserialize;

use crate::secret::SecretRef;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DingtalkSpec {
    pub access_token: Option<SecretRef>,
    /// Or the whole webhook URL (`…/robot/send?access_token=…`).
    pub url: Option<SecretRef>,
    pub base_url: Option<String>,
    /// The robot's signing secret (`SEC…`), when its security setting is 加签.
    pub secret: Option<SecretRef>,
    /// The robot's keyword, when its security setting is 自定义关键词: always present in the text.
    pub keyword: Option<String>,
    /// Messages with a URL go as an actionCard with a button.
    #[serde(default)]
    pub action_card: bool,
}
