//! `kind: User` — the directory: a platform user name and the id each channel needs.

use serde::Deserialize;
use serde_json::Value;

use super::error::DocError;
use crate::channel::ChannelKind;
use crate::message::Recipients;

#[derive(Debug, Deserialize)]
struct UserSpec {
    wecom: Option<String>,
    mobile: Option<String>,
    dingtalk: Option<String>,
    feishu: Option<String>,
    mail: Option<String>,
}

/// One directory entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDef {
    pub name: String,
    pub wecom: Option<String>,
    pub mobile: Option<String>,
    pub dingtalk: Option<String>,
    pub feishu: Option<String>,
    pub mail: Option<String>,
}

impl UserDef {
    /// How this user is addressed on a channel of `kind`: a user id where the channel has
    /// them (robots fall back to the mobile number), `None` when the directory lacks it.
    pub fn address(&self, kind: ChannelKind) -> Option<Recipients> {
        let user = |id: &Option<String>| {
            id.clone().map(|id| Recipients {
                users: vec![id],
                ..Recipients::default()
            })
        };
        let mobile = || {
            self.mobile.clone().map(|m| Recipients {
                mobiles: vec![m],
                ..Recipients::default()
            })
        };
        match kind {
            ChannelKind::Webhook => user(&Some(self.name.clone())),
            ChannelKind::WecomApp => user(&self.wecom),
            ChannelKind::WecomRobot => user(&self.wecom).or_else(mobile),
            ChannelKind::DingtalkRobot => user(&self.dingtalk).or_else(mobile),
            ChannelKind::FeishuRobot => user(&self.feishu),
        }
    }
}

/// Compiles a User document's `spec`.
pub fn compile(name: &str, spec: &Value) -> Result<UserDef, Vec<DocError>> {
    let s: UserSpec = serde_json::from_value(spec.clone())
        .map_err(|e| vec![DocError::new("/spec", e.to_string())])?;
    Ok(UserDef {
        name: name.to_string(),
        wecom: s.wecom,
        mobile: s.mobile,
        dingtalk: s.dingtalk,
        feishu: s.feishu,
        mail: s.mail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn addresses_per_channel_type() {
        let u = compile(
            "admin",
            &json!({"wecom": "ZhangSan", "mobile": "13800000000"}),
        )
        .unwrap();
        assert_eq!(
            u.address(ChannelKind::WecomApp).unwrap().users,
            vec!["ZhangSan"]
        );
        assert_eq!(
            u.address(ChannelKind::WecomRobot).unwrap().users,
            vec!["ZhangSan"]
        );
        assert_eq!(
            u.address(ChannelKind::DingtalkRobot).unwrap().mobiles,
            vec!["13800000000"]
        );
        assert!(u.address(ChannelKind::FeishuRobot).is_none());
        assert_eq!(
            u.address(ChannelKind::Webhook).unwrap().users,
            vec!["admin"]
        );
    }
}
