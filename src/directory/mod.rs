//! `kind: User` — the User directory: a platform user name, their mobile and mail, and the id
//! each vendor knows them by. Which id a channel reads is that channel's business
//! (`Channel::address`); the directory only keeps them — and each person's quiet hours
//! (`quiet`).

pub mod quiet;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::FixedOffset;
use serde::Deserialize;
use serde_json::Value;

use quiet::QuietHours;

use crate::doc::{DocError, parse_spec};

#[derive(Debug, Deserialize)]
struct UserSpec {
    mobile: Option<String>,
    mail: Option<String>,
    #[serde(rename = "quietHours")]
    quiet_hours: Option<Value>,
    /// The vendor ids, by the field `schemas/user.json` names them (`wecom`, `dingtalk`, …).
    #[serde(flatten)]
    ids: BTreeMap<String, String>,
}

/// One directory entry.
#[derive(Debug, Clone, Default)]
pub struct User {
    pub name: String,
    pub mobile: Option<String>,
    pub mail: Option<String>,
    ids: BTreeMap<String, String>,
    /// When their personal deliveries wait.
    pub quiet: Option<QuietHours>,
}

impl User {
    /// The user's id on the vendor whose field in the User document is `field`.
    pub fn id(&self, field: &str) -> Option<&str> {
        self.ids.get(field).map(String::as_str)
    }
}

/// Compiles a User document's `spec`; quiet hours without a timezone are in `default_zone`
/// (the relay's `timezone`).
pub fn compile(name: &str, spec: &Value, default_zone: FixedOffset) -> Result<User, Vec<DocError>> {
    let s: UserSpec = parse_spec(spec)?;
    let mut errors = Vec::new();
    let quiet = s
        .quiet_hours
        .as_ref()
        .and_then(|q| QuietHours::compile(q, default_zone, &mut errors));
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(User {
        name: name.to_string(),
        mobile: s.mobile,
        mail: s.mail,
        ids: s.ids,
        quiet,
    })
}

/// Every User, by platform user name and by mail address.
#[derive(Debug, Default, Clone)]
pub struct Directory {
    users: HashMap<String, Arc<User>>,
    /// User names by lower-cased mail address.
    by_mail: HashMap<String, String>,
    /// Those with quiet hours (most directories have none: planning then skips the check).
    quiet: Vec<Arc<User>>,
}

impl Directory {
    pub fn insert(&mut self, user: Arc<User>) {
        if let Some(mail) = &user.mail {
            self.by_mail.insert(mail.to_lowercase(), user.name.clone());
        }
        if user.quiet.is_some() {
            self.quiet.push(user.clone());
        }
        self.users.insert(user.name.clone(), user);
    }

    /// Everyone whose quiet hours hold an event of `ty` and `severity` at `now_ms`, with when
    /// they end.
    pub fn quiet_at(
        &self,
        now_ms: u64,
        ty: &str,
        severity: Option<&str>,
    ) -> Vec<(&Arc<User>, u64)> {
        self.quiet
            .iter()
            .filter_map(|u| {
                let q = u.quiet.as_ref()?;
                if q.excepts(ty, severity) {
                    return None;
                }
                Some((u, q.held_until(now_ms)?))
            })
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<User>> {
        self.users.get(name)
    }

    /// The user name a mail address belongs to (case does not matter).
    pub fn name_of_mail(&self, mail: &str) -> Option<&str> {
        self.by_mail.get(&mail.to_lowercase()).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_each_vendor_id_and_finds_users_by_mail() {
        let u = compile(
            "admin",
            &json!({"wecom": "ZhangSan", "mobile": "13800000000", "mail": "Admin@Example.com"}),
            FixedOffset::east_opt(0).unwrap(),
        )
        .unwrap();
        assert_eq!(u.id("wecom"), Some("ZhangSan"));
        assert_eq!(u.id("feishu"), None);
        assert_eq!(u.mobile.as_deref(), Some("13800000000"));
        let mut d = Directory::default();
        d.insert(Arc::new(u));
        assert_eq!(d.name_of_mail("admin@example.COM"), Some("admin"));
        assert!(d.get("admin").is_some() && d.get("nobody").is_none());
    }
}
