//! The channel types hooks.d may name: one table, the one place a new channel is registered.

use std::sync::Arc;

use serde_json::Value;

use super::{Channel, dingtalk, email, feishu, feishu_app, webhook, wecom_app, wecom_robot};
use crate::doc::{DocCtx, DocError};

/// Builds a channel from its validated `spec` (the Channel's name, its spec, the context).
type Build = fn(&str, &Value, &mut DocCtx<'_>) -> Result<Arc<dyn Channel>, Vec<DocError>>;

/// One channel type.
pub struct Registration {
    /// `spec.type` in hooks.d.
    pub kind: &'static str,
    pub build: Build,
    /// A spec whose every URL points at `base` and whose secrets are the returned strings: the
    /// shared leak test sends through it to an echoing server.
    #[cfg(test)]
    pub leak_example: fn(base: &str) -> (Value, Vec<&'static str>),
    /// What the echoing server speaks to it.
    #[cfg(test)]
    pub leak_wire: super::leak_test::Wire,
}

/// Every channel type, in the order the docs list them.
pub const TYPES: &[Registration] = &[
    Registration {
        kind: webhook::KIND,
        build: webhook::build,
        #[cfg(test)]
        leak_example: webhook::tests::leak_example,
        #[cfg(test)]
        leak_wire: super::leak_test::Wire::Http,
    },
    Registration {
        kind: wecom_app::KIND,
        build: wecom_app::build,
        #[cfg(test)]
        leak_example: wecom_app::tests::leak_example,
        #[cfg(test)]
        leak_wire: super::leak_test::Wire::Http,
    },
    Registration {
        kind: wecom_robot::KIND,
        build: wecom_robot::build,
        #[cfg(test)]
        leak_example: wecom_robot::tests::leak_example,
        #[cfg(test)]
        leak_wire: super::leak_test::Wire::Http,
    },
    Registration {
        kind: dingtalk::KIND,
        build: dingtalk::build,
        #[cfg(test)]
        leak_example: dingtalk::tests::leak_example,
        #[cfg(test)]
        leak_wire: super::leak_test::Wire::Http,
    },
    Registration {
        kind: feishu::KIND,
        build: feishu::build,
        #[cfg(test)]
        leak_example: feishu::tests::leak_example,
        #[cfg(test)]
        leak_wire: super::leak_test::Wire::Http,
    },
    Registration {
        kind: feishu_app::KIND,
        build: feishu_app::build,
        #[cfg(test)]
        leak_example: feishu_app::tests::leak_example,
        #[cfg(test)]
        leak_wire: super::leak_test::Wire::Http,
    },
    Registration {
        kind: email::KIND,
        build: email::build,
        #[cfg(test)]
        leak_example: email::tests::leak_example,
        #[cfg(test)]
        leak_wire: super::leak_test::Wire::Smtp,
    },
];

/// The registration of `kind`.
pub fn find(kind: &str) -> Option<&'static Registration> {
    TYPES.iter().find(|r| r.kind == kind)
}

/// The type names, for error messages.
pub fn kinds() -> impl Iterator<Item = &'static str> {
    TYPES.iter().map(|r| r.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every registered type runs the shared leak test: a new channel cannot skip it.
    #[tokio::test]
    async fn no_registered_channel_leaks_a_secret() {
        for r in TYPES {
            super::super::leak_test::leaks_no_secret(r).await;
        }
    }

    /// Each channel type reads its own id from a User (robots fall back to the mobile number;
    /// a webhook takes the user name).
    #[test]
    fn each_type_addresses_a_user_by_its_own_id() {
        use crate::config::Settings;
        use crate::directory::compile as user;
        use crate::doc::DocCtx;
        use serde_json::json;
        let admin = user(
            "admin",
            &json!({"wecom": "ZhangSan", "mobile": "13800000000", "mail": "zs@example.com"}),
            chrono::FixedOffset::east_opt(0).unwrap(),
        )
        .unwrap();
        let (settings, http) = (Settings::defaults(), reqwest::Client::new());
        let mut ctx = DocCtx::new(std::path::Path::new("."), &[], &settings, &http);
        let address = |kind: &str, ctx: &mut DocCtx<'_>| {
            let r = find(kind).unwrap();
            let channel = (r.build)("c", &(r.leak_example)("http://127.0.0.1:9").0, ctx).unwrap();
            channel
                .address(&admin)
                .map(|to| [to.users, to.mobiles, to.mails])
        };
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        let none = Vec::new;
        // [ids, mobile numbers, mails to look up]
        for (kind, want) in [
            ("webhook", Some([ids(&["admin"]), none(), none()])),
            ("wecom-app", Some([ids(&["ZhangSan"]), none(), none()])),
            ("wecom-robot", Some([ids(&["ZhangSan"]), none(), none()])),
            (
                "dingtalk-robot",
                Some([none(), ids(&["13800000000"]), none()]),
            ),
            ("feishu-robot", None),
            // No feishu id: found by mail through the contact API.
            (
                "feishu-app",
                Some([none(), none(), ids(&["zs@example.com"])]),
            ),
            ("email", Some([ids(&["zs@example.com"]), none(), none()])),
        ] {
            assert_eq!(address(kind, &mut ctx), want, "{kind}");
        }
    }

    #[test]
    fn every_type_is_named_once() {
        let mut names: Vec<_> = kinds().collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TYPES.len());
        assert!(find("wecom-app").is_some() && find("slack").is_none());
    }
}
