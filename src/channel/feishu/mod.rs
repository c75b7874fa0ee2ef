//! `feishu-robot` (Lark through `baseUrl`): a Feishu custom bot — optional signing in the body,
//! text with `<at>` mentions, rich-text `post` for markdown (PROTOCOLS.md §4).

pub(super) mod classify;
mod config;
pub(super) mod signing;
pub(super) mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use self::config::FeishuSpec;
use self::wire::CONTENT_BYTES;
use super::ratelimit::Limit;
use super::reply::{Rounds, call};
use super::{Channel, DeliveryError, Limits, Outgoing, Preview, Receipt};
use crate::directory::User;
use crate::doc::{DocCtx, DocError, parse_spec};
use crate::ids::now_ms;
use crate::message::Recipients;
use crate::secret::{Secret, SecretUrl};

pub const KIND: &str = "feishu-robot";

/// A configured Feishu / Lark bot.
#[derive(Debug)]
pub struct Feishu {
    url: SecretUrl,
    secret: Option<Secret>,
    http: reqwest::Client,
}

pub fn build(
    _name: &str,
    spec: &Value,
    ctx: &mut DocCtx<'_>,
) -> Result<Arc<dyn Channel>, Vec<DocError>> {
    let spec: FeishuSpec = parse_spec(spec)?;
    let origin = ctx.settings.vendors.feishu.clone();
    let base = super::api_url(
        ctx,
        spec.base_url.as_deref(),
        &origin,
        "/open-apis/bot/v2/hook/",
    );
    let url = super::robot_url(
        ctx,
        ("token", spec.token.as_ref()),
        spec.url.as_ref(),
        |token| format!("{}/{}", base.trim_end_matches('/'), token.expose()),
    )?;
    let secret = match &spec.secret {
        Some(s) => Some(ctx.secret(s, "/spec/secret").map_err(|e| vec![e])?),
        None => None,
    };
    Ok(Arc::new(Feishu {
        url,
        secret,
        http: ctx.http.clone(),
    }))
}

impl Feishu {
    /// The body for one delivery, signed with a fresh timestamp when the bot has a secret.
    fn body(&self, out: &Outgoing<'_>) -> Value {
        let mut body = wire::body(out.message, out.to);
        if let Some(secret) = &self.secret {
            let ts = now_ms() / 1000;
            body["timestamp"] = json!(ts.to_string());
            body["sign"] = json!(signing::sign(secret.expose(), ts));
        }
        body
    }
}

#[async_trait]
impl Channel for Feishu {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// Mentioned by Feishu open_id.
    fn address(&self, user: &User) -> Option<Recipients> {
        super::by_id(user, "feishu")
    }

    fn limits(&self) -> Limits {
        Limits {
            text_bytes: Some(CONTENT_BYTES),
            markdown_bytes: Some(CONTENT_BYTES),
            ..Limits::default()
        }
    }

    fn default_limits(&self) -> Vec<Limit> {
        vec![Limit::per_second(5), Limit::per_minute(100)]
    }

    async fn send(&self, out: &Outgoing<'_>) -> Result<Receipt, DeliveryError> {
        // Built per round: a re-sign needs a fresh timestamp.
        let mut rounds = Rounds::default();
        loop {
            let req = self
                .http
                .post(self.url.expose())
                .timeout(out.timeout)
                .json(&self.body(out));
            if rounds.judge(&classify::Send, call(req).await?)?.is_some() {
                return Ok(Receipt::default());
            }
        }
    }

    fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError> {
        let mut body = self.body(out);
        if body.get("sign").is_some() {
            body["sign"] = json!("***");
        }
        Ok(Preview::post(self.url.shown(), body))
    }

    fn describe(&self) -> Value {
        json!({"type": KIND, "url": self.url.shown(), "signed": self.secret.is_some()})
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn leak_example(base: &str) -> (Value, Vec<&'static str>) {
        (
            json!({"token": "FEISHU-TOKEN-LEAK-1", "secret": "FEISHU-SECRET-LEAK-1",
                   "baseUrl": base}),
            vec!["FEISHU-TOKEN-LEAK-1", "FEISHU-SECRET-LEAK-1"],
        )
    }
}
