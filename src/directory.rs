//! `kind: User` — the User directory: a platform user name, their mobile and mail, and the id
//! each vendor knows them by. Which id a channel reads is that channel's business
//! (`Channel::address`); the directory only keeps them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::doc::{DocError, parse_spec};

#[derive(Debug, Deserialize)]
struct UserSpec {
    mobile: Option<String>,
    mail: Option<String>,
    /// The vendor ids, by the field `schemas/user.json` names them (`wecom`, `dingtalk`, …).
    #[serde(flatten)]
    ids: BTreeMap<String, String>,
}

/// One directory entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub mobile: Option<String>,
    pub mail: Option<String>,
    ids: BTreeMap<String, String>,
}

impl User {
    /// The user's id on the vendor whose field in the User document is `field`.
    pub fn id(&self, field: &str) -> Option<&str> {
        self.ids.get(field).map(String::as_str)
    }
}

/// Compiles a User document's `spec`.
pub fn compile(name: &str, spec: &Value) -> Result<User, Vec<DocError>> {
    let s: UserSpec = parse_spec(spec)?;
    Ok(User {
        name: name.to_string(),
        mobile: s.mobile,
        mail: s.mail,
        ids: s.ids,
    })
}

/// Every User, by platform user name and by mail address.
#[derive(Debug, Default, Clone)]
pub struct Directory {
    users: HashMap<String, Arc<User>>,
    /// User names by lower-cased mail address.
    by_mail: HashMap<String, String>,
}

impl Directory {
    pub fn insert(&mut self, user: Arc<User>) {
        if let Some(mail) = &user.mail {
            self.by_mail.insert(mail.to_lowercase(), user.name.clone());
        }
        self.users.insert(user.name.clone(), user);
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
