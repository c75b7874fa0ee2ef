//! `dingtalk-robot`: a DingTalk custom robot — optional `SEC…` signing, text / markdown /
//! actionCard, `at` mentions echoed into the text, keyword guarantee (PROTOCOLS.md §3).

mod classify;
mod config;
pub(super) mod signing;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use self::config::DingtalkSpec;
use self::wire::CONTENT_BYTES;
use super::ratelimit::Limit;
use super::reply::{Rounds, call};
use super::{Channel, DeliveryError, Limits, Outgoing, Preview, Receipt};
use crate::directory::User;
use crate::doc::{DocCtx, DocError, parse_spec};
use crate::ids::now_ms;
use crate::message::Recipients;
use crate::secret::{Secret, SecretUrl};

pub const KIND: &str = "dingtalk-robot";

/// A configured DingTalk robot.
#[derive(Debug)]
pub struct Dingtalk {
    url: SecretUrl,
    secret: Option<Secret>,
    keyword: Option<String>,
    action_card: bool,
    http: reqwest::Client,
}

pub fn build(
    _name: &str,
    spec: &Value,
    ctx: &mut DocCtx<'_>,
) -> Result<Arc<dyn Channel>, Vec<DocError>> {
    let spec: DingtalkSpec = parse_spec(spec)?;
    let token = ("accessToken", spec.access_token.as_ref());
    let origin = ctx.settings.vendors.dingtalk.clone();
    let base = super::api_url(ctx, spec.base_url.as_deref(), &origin, "/robot/send");
    let url = super::robot_url(ctx, token, spec.url.as_ref(), |token| {
        format!("{base}?access_token={}", signing::encode(token.expose()))
    })?;
    let secret = match &spec.secret {
        Some(s) => Some(ctx.secret(s, "/spec/secret").map_err(|e| vec![e])?),
        None => None,
    };
    Ok(Arc::new(Dingtalk {
        url,
        secret,
        keyword: spec.keyword.filter(|k| !k.is_empty()),
        action_card: spec.action_card,
        http: ctx.http.clone(),
    }))
}

impl Dingtalk {
    /// The send URL, signed with a fresh timestamp when the robot has a secret.
    fn signed_url(&self) -> String {
        match &self.secret {
            Some(secret) => {
                let ts = now_ms();
                let sign = signing::sign(secret.expose(), ts);
                format!(
                    "{}&timestamp={ts}&sign={}",
                    self.url.expose(),
                    signing::encode(&sign)
                )
            }
            None => self.url.expose().to_string(),
        }
    }
}

#[async_trait]
impl Channel for Dingtalk {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// Mentioned by DingTalk userId, or else by mobile number.
    fn address(&self, user: &User) -> Option<Recipients> {
        super::by_id_or_mobile(user, "dingtalk")
    }

    fn limits(&self) -> Limits {
        Limits {
            text_bytes: Some(CONTENT_BYTES),
            markdown_bytes: Some(CONTENT_BYTES),
            ..Limits::default()
        }
    }

    fn default_limits(&self) -> Vec<Limit> {
        vec![Limit::per_minute(20)]
    }

    async fn send(&self, out: &Outgoing<'_>) -> Result<Receipt, DeliveryError> {
        let body = self.body(out);
        // Signed per round: a second round needs a fresh timestamp.
        let mut rounds = Rounds::default();
        loop {
            let req = self
                .http
                .post(self.signed_url())
                .timeout(out.timeout)
                .json(&body);
            if rounds.judge(&classify::Send, call(req).await?)?.is_some() {
                return Ok(Receipt::default());
            }
        }
    }

    fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError> {
        Ok(Preview::post(
            &self.url.show(&self.signed_url()),
            self.body(out),
        ))
    }

    fn describe(&self) -> Value {
        json!({
            "type": KIND,
            "url": self.url.shown(),
            "signed": self.secret.is_some(),
            "keyword": self.keyword,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn leak_example(base: &str) -> (Value, Vec<&'static str>) {
        (
            json!({"accessToken": "DING-TOKEN-LEAK-1", "secret": "SECDING-LEAK-1",
                   "baseUrl": base}),
            vec!["DING-TOKEN-LEAK-1", "SECDING-LEAK-1"],
        )
    }
}
