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
use super::reply::{Rounds, call, judge};
use super::token::{Issuer, TokenCache};
use super::{Channel, DeliveryError, Limits, Outgoing, Preview, Receipt};
use crate::directory::User;
use crate::doc::{DocCtx, DocError, parse_spec};
use crate::message::Recipients;
use crate::reason::Reason;
use crate::secret::{Scrubber, Secret, redact_url};

pub const KIND: &str = "wecom-app";

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
    Ok(Arc::new(WecomApp {
        tokens: TokenCache::shared(GetToken {
            base: base.clone(),
            corp_id: spec.corp_id.clone(),
            secret,
        }),
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

#[async_trait]
impl Channel for WecomApp {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// Sent to the WeCom userid.
    fn address(&self, user: &User) -> Option<Recipients> {
        super::by_id(user, "wecom")
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
        if out.to.is_empty() {
            return Err(DeliveryError::permanent(
                Reason::Client,
                "no WeCom users, departments or tags to send to",
            ));
        }
        let body = self.body(out);
        let mut rounds = Rounds::default();
        loop {
            let token = self.tokens.get(&self.http, out.timeout, out.shared).await?;
            // The access token is a credential fetched at run time, not one registered when
            // the channel was built: scrubbed here.
            let secrets = Scrubber::new([token.expose()]);
            let req = self
                .http
                .post(format!("{}message/send", self.base))
                .query(&[("access_token", token.expose())])
                .timeout(out.timeout)
                .json(&body);
            let reply = call(req).await.map_err(|e| e.scrubbed(&secrets))?;
            match rounds.judge(&classify::Send, reply) {
                Ok(Some(reply)) => return Ok(WecomApp::receipt(&reply)),
                // The token was refused: drop it, so the next round fetches another.
                Ok(None) => self.tokens.invalidate(&token, out.shared).await,
                Err(e) => return Err(e.scrubbed(&secrets)),
            }
        }
    }

    fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError> {
        Ok(Preview::post(
            &format!("{}message/send?access_token=***", self.base),
            self.body(out),
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

/// WeCom's `gettoken`, with the corp secret: the application's access token.
struct GetToken {
    base: String,
    corp_id: String,
    secret: Secret,
}

#[async_trait]
impl Issuer for GetToken {
    fn vendor(&self) -> &'static str {
        "wecom"
    }

    fn identity(&self) -> String {
        format!("{}\n{}\n{}", self.base, self.corp_id, self.secret.expose())
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<(Secret, Duration), DeliveryError> {
        let req = http
            .get(format!("{}gettoken", self.base))
            .query(&[
                ("corpid", self.corp_id.as_str()),
                ("corpsecret", self.secret.expose()),
            ])
            .timeout(timeout);
        // The corp secret in the query is a registered credential: the caller's errors are
        // scrubbed of it.
        let reply = call(req).await?;
        judge(&classify::GetToken, &reply)?;
        match reply.body.get("access_token").and_then(|t| t.as_str()) {
            Some(t) if !t.is_empty() => {
                let ttl = reply.int("expires_in").unwrap_or(7200).max(60) as u64;
                Ok((Secret::new(t), Duration::from_secs(ttl)))
            }
            _ => Err(DeliveryError::retryable(
                Reason::Server,
                "unrecognised reply: gettoken answered errcode 0 without a token",
            )),
        }
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
