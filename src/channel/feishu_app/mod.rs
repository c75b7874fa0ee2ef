//! `feishu-app`: a Feishu / Lark app bot (自建应用) sending to people by open_id, user_id,
//! union_id or mail, or to a group chat, with a cached tenant access token (PROTOCOLS.md §4).

mod classify;
mod config;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use self::config::{FeishuAppSpec, IdType};
use self::wire::CONTENT_BYTES;
use super::contact::Key;
use super::reply::VendorReply;
use super::token::{App, Issuer, TokenCache, issued};
use super::{Channel, DeliveryError, Limits, Outgoing, Preview, Receipt};
use crate::directory::User;
use crate::doc::{DocCtx, DocError, parse_spec};
use crate::message::Recipients;
use crate::reason::Reason;
use crate::secret::Secret;

pub const KIND: &str = "feishu-app";

/// How long Feishu lets a sent card be updated.
const UPDATABLE_FOR: Duration = Duration::from_secs(14 * 24 * 3600);

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
    let tokens = TokenCache::shared(TenantToken(App {
        origin: origin.clone(),
        id: spec.app_id.clone(),
        secret,
    }));
    Ok(Arc::new(FeishuApp {
        tokens,
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

    /// Asks Feishu for the id (of `receiveIdType`) of `who`.
    async fn lookup(&self, who: Key, out: &Outgoing<'_>) -> Result<Option<String>, DeliveryError> {
        let body = match &who {
            Key::Mail(m) => json!({"emails": [m]}),
            Key::Mobile(m) => json!({"mobiles": [m]}),
        };
        let url = format!(
            "{}/open-apis/contact/v3/users/batch_get_id?user_id_type={}",
            self.origin,
            self.id_type.as_str()
        );
        let reply = self.call(reqwest::Method::POST, &url, out, &body).await?;
        // An entry without `user_id`: no such user.
        Ok(reply.body["data"]["user_list"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|u| u["user_id"].as_str().filter(|id| !id.is_empty()))
            .map(str::to_string))
    }

    /// Sends `body` to `url` with the tenant token, read by the message API's table.
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        out: &Outgoing<'_>,
        body: &Value,
    ) -> Result<VendorReply, DeliveryError> {
        self.tokens
            .send(&self.http, out, &classify::Send, |token| {
                self.http
                    .request(method.clone(), url)
                    .bearer_auth(token.expose())
                    .timeout(out.timeout)
                    .json(body)
            })
            .await
    }

    /// The card header, when the message goes as a card: always for a thread's first message
    /// (only a card can be updated), else when cards are on and the template gave a title.
    fn card_title(&self, out: &Outgoing<'_>) -> Option<String> {
        let m = out.message;
        if out.threaded {
            return Some(wire::title_of(m));
        }
        m.title
            .clone()
            .filter(|t| self.card && !t.trim().is_empty())
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

    /// Sent to the User's `feishu` id, else found by their `mail` or `mobile` through the
    /// contact API when sent (with `receiveIdType: email`, to their `mail` itself).
    fn address(&self, user: &User) -> Option<Recipients> {
        match self.id_type {
            IdType::Email => user.mail.as_deref().and_then(|m| self.address_unknown(m)),
            _ => super::by_id_or_lookup(user, "feishu"),
        }
    }

    /// Any mail address: sent to as it is with `receiveIdType: email`, else looked up.
    fn address_unknown(&self, name: &str) -> Option<Recipients> {
        match self.id_type {
            IdType::Email => super::by_mail(name),
            _ => super::lookup_mail(name),
        }
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
        let (to, found) = self
            .tokens
            .contacts
            .resolve_all(out.to, out.shared, |who| self.lookup(who, out))
            .await?;
        if to.users.is_empty() && self.chat_id.is_none() {
            return Err(DeliveryError::permanent(
                Reason::Client,
                found.nobody("Feishu"),
            ));
        }
        let (id_type, receive_id) = self.target(&to)?;
        let title = self.card_title(out);
        let body = wire::body(
            out.message,
            receive_id,
            &out.id.to_string(),
            title.as_deref(),
        );
        let reply = self
            .call(reqwest::Method::POST, &self.url(id_type), out, &body)
            .await?;
        let id = &reply.body["data"]["message_id"];
        let mut receipt = Receipt::of(json!({ "message_id": id }));
        // A card can be changed later by its message id.
        if title.is_some() && id.is_string() {
            receipt.handle = Some(id.clone());
        }
        Ok(found.noted(receipt))
    }

    /// Cards sent with `update_multi` are changed for everyone by `PATCH im/v1/messages/{id}`,
    /// for 14 days.
    fn updatable(&self) -> Option<Duration> {
        Some(UPDATABLE_FOR)
    }

    async fn update(
        &self,
        out: &Outgoing<'_>,
        handle: &Value,
    ) -> Result<Option<Receipt>, DeliveryError> {
        let Some(id) = handle.as_str() else {
            return Ok(None);
        };
        let card = wire::card(out.message, &wire::title_of(out.message));
        let url = format!(
            "{}/open-apis/im/v1/messages/{}",
            self.origin,
            percent_encoding::utf8_percent_encode(id, crate::secret::URL_VALUE)
        );
        let body = json!({ "content": card.to_string() });
        // A message gone, too old, or not an updatable card is refused: a new one goes instead.
        let patched = self.call(reqwest::Method::PATCH, &url, out, &body).await;
        Ok(DeliveryError::unless_refused(patched)?.map(|_| Receipt {
            handle: Some(handle.clone()),
            ..Receipt::of(json!({ "message_id": id, "updated": true }))
        }))
    }

    fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError> {
        let (id_type, receive_id) = self.target(out.to).unwrap_or(("open_id", ""));
        let title = self.card_title(out);
        let mut body = wire::body(
            out.message,
            receive_id,
            &out.id.to_string(),
            title.as_deref(),
        );
        super::contact::preview_lookups(&mut body, out.to);
        Ok(Preview::post(&self.url(id_type), body))
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
