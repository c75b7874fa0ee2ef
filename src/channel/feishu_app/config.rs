//! The `feishu-app` channel's settings as written in hooks.d.

use serde::Deserialize;

use crate::secret::SecretRef;

/// Which id a recipient is given by (`receive_id_type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdType {
    /// The directory's `feishu` field.
    #[default]
    OpenId,
    UserId,
    UnionId,
    /// The directory's `mail`, or any mail address.
    Email,
}

impl IdType {
    pub fn as_str(self) -> &'static str {
        match self {
            IdType::OpenId => "open_id",
            IdType::UserId => "user_id",
            IdType::UnionId => "union_id",
            IdType::Email => "email",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeishuAppSpec {
    pub app_id: String,
    pub app_secret: SecretRef,
    /// The API origin; default the `vendors.feishu` setting (Lark: its own origin).
    pub base_url: Option<String>,
    #[serde(default)]
    pub receive_id_type: IdType,
    /// Send to this group chat (`oc_…`) instead of to people.
    pub chat_id: Option<String>,
    /// Messages with a title go as interactive cards (default); off, as text or rich text.
    pub card: Option<bool>,
}
