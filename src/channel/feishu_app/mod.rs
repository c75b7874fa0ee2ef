//! `feishu-app`: a Feishu / Lark app bot (自建应用) sending to people by open_id, user_id,
//! union_id or mail, or to a group chat, with a cached tenant access token (PROTOCOLS.md §4).

mod classify;
mod config;
mod wire;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use self::config::{FeishuAppSpec, IdType};
use self::wire::CONTENT_BYTES;
use super::token::{App, Issuer, TokenCache, issued};
use super::{Channel, DeliveryError, Limits, Outgoing, Preview, Receipt};
use crate::directory::User;
use crate::doc::{DocCtx, DocError, parse_spec};
use crate::message::Recipients;
use crate::reason::Reason;
use crate::secret::Secret;

pub const KIND: &str = "feishu-app";

/// A configured Feishu app bot.
#[derive(Debug)]
pub struct FeishuApp {
    origin: String,
    app_id: String,
    id_type: IdType,
    chat_id: Option<String>,
    card: bool,
    tokens: Arc<TokenCache>,
    http: reqwest::Client,
}

pub fn build(
    _name: &str,
    spec: &Value,
    ctx: &mut DocCtx<'_>,
) -> Result<Arc<dyn Channel>, Vec<DocError>> {
    let spec: FeishuAppSpec = parse_spec(spec)?;
    let secret = ctx
        .secret(&spec.app_secret, "/spec/appSecret")
        .map_err(|e| vec![e])?;
    let default = ctx.settings.vendors.feishu.clone();
    // `api_url` checks the origin; the paths are appended per call.
    let origin = super::api_url(ctx, spec.base_url.as_deref(), &default, "");
    Ok(Arc::new(FeishuApp {
        tokens: TokenCache::shared(TenantToken(App {
            origin: origin.clone(),
            id: spec.app_id.clone(),
            secret,
        })),
        origin,
        app_id: spec.app_id,
        id_type: spec.receive_id_type,
        chat_id: spec.chat_id,
        card: spec.card.unwrap_or(true),
        http: ctx.http.clone(),
    }))
}

impl FeishuApp {
    /// The recipient of one request: the chat, or the one person it is for.
    fn target<'a>(&'a self, to: &'a Recipients) -> Result<(&'static str, &'a str), DeliveryError> {
        if let Some(chat) = &self.chat_id {
            return Ok(("chat_id", chat));
        }
        match to.users.as_slice() {
            [one] => Ok((self.id_type.as_str(), one)),
            [] => Err(DeliveryError::permanent(
                Reason::Client,
                "no Feishu user to send to",
            )),
            // Plans split at one user per request; more here is a stored delivery from before.
            [first, ..] => Ok((self.id_type.as_str(), first)),
        }
    }

    fn url(&self, id_type: &str) -> String {
        format!(
            "{}/open-apis/im/v1/messages?receive_id_type={id_type}",
            self.origin
        )
    }
}

#[async_trait]
impl Channel for FeishuApp {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// Sent to the User's `feishu` id (or their `mail` with `receiveIdType: email`).
    fn address(&self, user: &User) -> Option<Recipients> {
        match self.id_type {
            IdType::Email => user.mail.as_ref().map(|m| Recipients {
                users: vec![m.clone()],
                ..Recipients::default()
            }),
            _ => super::by_id(user, "feishu"),
        }
    }

    /// With `receiveIdType: email`, any mail address.
    fn address_unknown(&self, name: &str) -> Option<Recipients> {
        (self.id_type == IdType::Email && lettre::Address::from_str(name).is_ok()).then(|| {
            Recipients {
                users: vec![name.to_string()],
                ..Recipients::default()
            }
        })
    }

    fn needs_recipients(&self) -> bool {
        self.chat_id.is_none()
    }

    fn limits(&self) -> Limits {
        Limits {
            text_bytes: Some(CONTENT_BYTES),
            markdown_bytes: Some(CONTENT_BYTES),
            // One receive_id per request.
            users_per_request: Some(1),
            ..Limits::default()
        }
    }

    async fn send(&self, out: &Outgoing<'_>) -> Result<Receipt, DeliveryError> {
        let (id_type, receive_id) = self.target(out.to)?;
        let body = wire::body(out.message, receive_id, &out.id.to_string(), self.card);
        let url = self.url(id_type);
        let reply = self
            .tokens
            .send(&self.http, out, &classify::Send, |token| {
                self.http
                    .post(&url)
                    .bearer_auth(token.expose())
                    .timeout(out.timeout)
                    .json(&body)
            })
            .await?;
        Ok(Receipt::of(
            json!({"message_id": reply.body["data"]["message_id"]}),
        ))
    }

    fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError> {
        let (id_type, receive_id) = self.target(out.to).unwrap_or(("open_id", ""));
        Ok(Preview::post(
            &self.url(id_type),
            wire::body(out.message, receive_id, &out.id.to_string(), self.card),
        ))
    }

    fn describe(&self) -> Value {
        json!({
            "type": KIND,
            "baseUrl": self.origin,
            "appId": self.app_id,
            "receiveIdType": self.id_type.as_str(),
            "chatId": self.chat_id,
            "card": self.card,
        })
    }
}

/// Feishu's `tenant_access_token/internal`, with the app id and secret.
struct TenantToken(App);

#[async_trait]
impl Issuer for TenantToken {
    fn vendor(&self) -> &'static str {
        "feishu"
    }

    fn app(&self) -> &App {
        &self.0
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<(Secret, Duration), DeliveryError> {
        let req = http
            .post(format!(
                "{}/open-apis/auth/v3/tenant_access_token/internal",
                self.0.origin
            ))
            .timeout(timeout)
            .json(&json!({"app_id": self.0.id, "app_secret": self.0.secret.expose()}));
        issued(
            req,
            &classify::TenantToken,
            ("tenant_access_token", "expire"),
        )
        .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn leak_example(base: &str) -> (Value, Vec<&'static str>) {
        (
            json!({"baseUrl": base, "appId": "cli_a1", "appSecret": "FEISHU-APP-SECRET-LEAK-1"}),
            vec!["FEISHU-APP-SECRET-LEAK-1"],
        )
    }
}
