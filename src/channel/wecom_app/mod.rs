//! `wecom-app`: WeCom (CorpWeChat) application messages to users, departments and tags, with a
//! cached access token and the errcode table of PROTOCOLS.md §1.

pub(super) mod classify;
mod config;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

pub(super) use self::classify::common_code;
use self::config::{AgentId, WecomAppSpec};
use self::wire::CONTENT_BYTES;
use super::contact::Key;
use super::token::{App, Issuer, TokenCache, issued};
use super::{Channel, DeliveryError, Limits, Outgoing, Preview, Receipt};
use crate::directory::User;
use crate::doc::{DocCtx, DocError, parse_spec};
use crate::message::Recipients;
use crate::reason::Reason;
use crate::secret::{Secret, redact_url};

pub const KIND: &str = "wecom-app";

/// How long an interaction card's `response_code` works.
const UPDATABLE_FOR: Duration = Duration::from_secs(72 * 3600);

/// A configured WeCom application.
#[derive(Debug)]
pub struct WecomApp {
    base: String,
    corp_id: String,
    agent_id: Value,
    safe: bool,
    duplicate_check: Option<u32>,
    textcard: bool,
    markdown: bool,
    tokens: Arc<TokenCache>,
    http: reqwest::Client,
}

pub fn build(
    _name: &str,
    spec: &Value,
    ctx: &mut DocCtx<'_>,
) -> Result<Arc<dyn Channel>, Vec<DocError>> {
    let spec: WecomAppSpec = parse_spec(spec)?;
    let secret = ctx
        .secret(&spec.corp_secret, "/spec/corpSecret")
        .map_err(|e| vec![e])?;
    let origin = ctx.settings.vendors.wecom.clone();
    let base = super::api_url(ctx, spec.base_url.as_deref(), &origin, "/cgi-bin/");
    let agent_id = match spec.agent_id {
        AgentId::Number(n) => json!(n),
        AgentId::Text(t) => t
            .trim()
            .parse::<i64>()
            .map(|n| json!(n))
            .unwrap_or(json!(t)),
    };
    let duplicate_check = match (spec.enable_duplicate_check, spec.duplicate_check_interval) {
        (Some(false), _) => None,
        (_, interval) => Some(interval.unwrap_or(1800).min(4 * 3600)),
    };
    let tokens = TokenCache::shared(GetToken(App {
        origin: base.clone(),
        id: spec.corp_id.clone(),
        secret,
    }));
    Ok(Arc::new(WecomApp {
        tokens,
        base,
        corp_id: spec.corp_id,
        agent_id,
        safe: spec.safe,
        duplicate_check,
        textcard: spec.textcard,
        markdown: spec.markdown.unwrap_or(true),
        http: ctx.http.clone(),
    }))
}

impl WecomApp {
    /// Asks WeCom for the userid of `who` (a corporate mail first, then a personal one).
    async fn lookup(&self, who: Key, out: &Outgoing<'_>) -> Result<Option<String>, DeliveryError> {
        let asks: Vec<(&str, Value)> = match &who {
            Key::Mail(m) => vec![
                (
                    "user/get_userid_by_email",
                    json!({"email": m, "email_type": 1}),
                ),
                (
                    "user/get_userid_by_email",
                    json!({"email": m, "email_type": 2}),
                ),
            ],
            Key::Mobile(m) => vec![("user/getuserid", json!({"mobile": m}))],
        };
        for (path, body) in asks {
            let reply = self.call(path, out, &body, &classify::Lookup).await?;
            if let Some(id) = reply.body["userid"].as_str().filter(|id| !id.is_empty()) {
                return Ok(Some(id.to_string()));
            }
        }
        Ok(None)
    }
}

impl WecomApp {
    /// The delivery's recipients with mail addresses and mobile numbers resolved to userids;
    /// refused when nobody is left.
    async fn recipients(
        &self,
        out: &Outgoing<'_>,
    ) -> Result<(Recipients, super::contact::Found), DeliveryError> {
        let (to, found) = self
            .tokens
            .contacts
            .resolve_all(out.to, out.shared, |who| self.lookup(who, out))
            .await?;
        if to.is_empty() {
            return Err(DeliveryError::permanent(
                Reason::Client,
                found.nobody("WeCom"),
            ));
        }
        Ok((to, found))
    }

    /// POSTs `body` to the API `path` with the access token, its answer read by `table`.
    async fn call(
        &self,
        path: &str,
        out: &Outgoing<'_>,
        body: &Value,
        table: &impl super::reply::ReplyTable,
    ) -> Result<super::reply::VendorReply, DeliveryError> {
        let url = format!("{}{path}", self.base);
        self.tokens
            .send(&self.http, out, table, |token| {
                self.http
                    .post(&url)
                    .query(&[("access_token", token.expose())])
                    .timeout(out.timeout)
                    .json(body)
            })
            .await
    }
}

#[async_trait]
impl Channel for WecomApp {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// Sent to the WeCom userid; a User with only `mail` or `mobile` is found through the
    /// contact API when sent (an id in the entry always wins).
    fn address(&self, user: &User) -> Option<Recipients> {
        super::by_id_or_lookup(user, "wecom")
    }

    /// A mail address the directory does not know is found through the contact API.
    fn address_unknown(&self, name: &str) -> Option<Recipients> {
        super::lookup_mail(name)
    }

    fn needs_recipients(&self) -> bool {
        true
    }

    fn limits(&self) -> Limits {
        Limits {
            text_bytes: Some(CONTENT_BYTES),
            markdown_bytes: Some(CONTENT_BYTES),
            users_per_request: Some(1000),
            parties_per_request: Some(100),
            tags_per_request: Some(100),
        }
    }

    async fn send(&self, out: &Outgoing<'_>) -> Result<Receipt, DeliveryError> {
        let (to, found) = self.recipients(out).await?;
        let out = &Outgoing { to: &to, ..*out };
        let body = match out.threaded {
            true => self.card_body(out),
            false => self.body(out),
        };
        let reply = self
            .call("message/send", out, &body, &classify::Send)
            .await?;
        let mut receipt = WecomApp::receipt(&reply);
        // Kept for the one update it allows; not shown in the receipt.
        if let Some(code) = reply.body["response_code"]
            .as_str()
            .filter(|c| !c.is_empty())
        {
            receipt.handle = Some(json!({"response_code": code, "task_id": out.id.to_string()}));
        }
        Ok(found.noted(receipt))
    }

    /// An interaction card's `response_code` changes it once, within 72 hours.
    fn updatable(&self) -> Option<Duration> {
        Some(UPDATABLE_FOR)
    }

    async fn update(
        &self,
        out: &Outgoing<'_>,
        handle: &Value,
    ) -> Result<Option<Receipt>, DeliveryError> {
        let (Some(code), Some(task_id)) =
            (handle["response_code"].as_str(), handle["task_id"].as_str())
        else {
            return Ok(None);
        };
        let (to, found) = self.recipients(out).await?;
        let out = &Outgoing { to: &to, ..*out };
        let body = self.update_body(out, code, task_id);
        // A used or expired code (or a card WeCom no longer knows) is refused: a new card goes
        // instead. One that worked is used up: no handle comes back.
        let updated = self
            .call("message/update_template_card", out, &body, &classify::Send)
            .await;
        Ok(DeliveryError::unless_refused(updated)?
            .map(|reply| found.noted(WecomApp::receipt(&reply))))
    }

    fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError> {
        let mut body = match out.threaded {
            true => self.card_body(out),
            false => self.body(out),
        };
        super::contact::preview_lookups(&mut body, out.to);
        Ok(Preview::post(
            &format!("{}message/send?access_token=***", self.base),
            body,
        ))
    }

    fn describe(&self) -> Value {
        json!({
            "type": KIND,
            "baseUrl": redact_url(&self.base),
            "corpId": self.corp_id,
            "agentId": self.agent_id,
            "safe": self.safe,
            "duplicateCheckInterval": self.duplicate_check,
        })
    }
}

/// WeCom's `gettoken` (the corp id and secret, at the API base): the application's token.
struct GetToken(App);

#[async_trait]
impl Issuer for GetToken {
    fn vendor(&self) -> &'static str {
        "wecom"
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
            .get(format!("{}gettoken", self.0.origin))
            .query(&[
                ("corpid", self.0.id.as_str()),
                ("corpsecret", self.0.secret.expose()),
            ])
            .timeout(timeout);
        // The corp secret in the query is a registered credential: the caller's errors are
        // scrubbed of it.
        issued(req, &classify::GetToken, ("access_token", "expires_in")).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn leak_example(base: &str) -> (Value, Vec<&'static str>) {
        (
            json!({"baseUrl": base, "corpId": "ww1",
                   "corpSecret": "CORP-SECRET-LEAK-1", "agentId": 1}),
            vec!["CORP-SECRET-LEAK-1"],
        )
    }
}
