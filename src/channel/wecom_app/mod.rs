//! `wecom-app`: WeCom (CorpWeChat) application messages to users, departments and tags, with a
//! cached access token and the errcode table of PROTOCOLS.md §1.

mod config;
mod token;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use self::config::{AgentId, WecomAppSpec};
use self::token::TokenCache;
use super::reply::{ReplyTable, Rounds, Spent, VendorReply, Verdict, call};
use super::{Channel, ChannelKind, DeliveryError, Limits, Outgoing, Preview, Reason, Receipt};
use crate::catalog::{DocCtx, DocError};
use crate::message::{Message, MsgType, markdown_to_text, split_ids, truncate_utf8};
use crate::secret::{Secret, redact_url};

/// Content limit of text and markdown messages (WeCom cuts text, and refuses long markdown).
const CONTENT_BYTES: usize = 2048;

/// A configured WeCom application.
#[derive(Debug)]
pub struct WecomApp {
    base: String,
    corp_id: String,
    secret: Secret,
    agent_id: Value,
    safe: bool,
    duplicate_check: Option<u32>,
    textcard: bool,
    markdown: bool,
    tokens: Arc<TokenCache>,
    http: reqwest::Client,
}

/// What every WeCom API (app messages, gettoken, group robots) means by its shared codes: 0,
/// busy (-1) and too fast (45009, 45033: back off a minute).
pub(crate) fn common_code(errcode: i64) -> Option<Verdict> {
    match errcode {
        0 => Some(Verdict::Sent),
        -1 => Some(Verdict::Retry(Reason::Server)),
        45009 | 45033 => Some(Verdict::Throttle(Some(Duration::from_secs(60)))),
        _ => None,
    }
}

/// The errcode table of `message/send` (PROTOCOLS.md §1). Codes not listed are permanent:
/// WeCom's unknown codes are parameter errors, and retrying them only repeats the refusal.
struct Send;

impl ReplyTable for Send {
    const CODE: &'static [&'static str] = &["errcode"];
    const MESSAGE: &'static [&'static str] = &["errmsg"];

    fn classify(&self, errcode: i64, _: &VendorReply) -> Verdict {
        if let Some(v) = common_code(errcode) {
            return v;
        }
        match errcode {
            // The token is bad: drop it, fetch another, try once more.
            40014 | 42001 | 41001 => Verdict::Again(Spent::Retry(Reason::Auth)),
            40001 | 40013 | 60020 => Verdict::Fail(Reason::Auth),
            _ => Verdict::Fail(Reason::Client),
        }
    }
}

impl WecomApp {
    pub fn build(spec: &Value, ctx: &mut DocCtx<'_>) -> Result<WecomApp, Vec<DocError>> {
        let spec: WecomAppSpec = serde_json::from_value(spec.clone())
            .map_err(|e| vec![DocError::new("/spec", e.to_string())])?;
        let secret = ctx
            .secret(&spec.corp_secret, "/spec/corpSecret")
            .map_err(|e| vec![e])?;
        let base = match spec.base_url.as_deref() {
            Some(b) => normalize_base(b),
            None => format!("{}/cgi-bin/", ctx.settings.vendors.wecom),
        };
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
        Ok(WecomApp {
            tokens: TokenCache::shared(&base, &spec.corp_id, &secret),
            base,
            corp_id: spec.corp_id,
            secret,
            agent_id,
            safe: spec.safe,
            duplicate_check,
            textcard: spec.textcard,
            markdown: spec.markdown.unwrap_or(true),
            http: ctx.http.clone(),
        })
    }

    /// The `message/send` body for one delivery.
    fn body(&self, out: &Outgoing<'_>) -> Value {
        let to = out.to;
        let mut b = Map::new();
        if to.all {
            b.insert("touser".into(), json!("@all"));
        } else {
            if !to.users.is_empty() {
                b.insert("touser".into(), json!(to.users.join("|")));
            }
            if !to.parties.is_empty() {
                b.insert("toparty".into(), json!(to.parties.join("|")));
            }
            if !to.tags.is_empty() {
                b.insert("totag".into(), json!(to.tags.join("|")));
            }
        }
        b.insert("agentid".into(), self.agent_id.clone());
        let (msgtype, payload) = self.payload(out.message);
        b.insert("msgtype".into(), json!(msgtype));
        b.insert(msgtype.into(), payload);
        b.insert("safe".into(), json!(u8::from(self.safe)));
        if let Some(interval) = self.duplicate_check {
            b.insert("enable_duplicate_check".into(), json!(1));
            b.insert("duplicate_check_interval".into(), json!(interval));
        }
        Value::Object(b)
    }

    fn payload(&self, m: &Message) -> (&'static str, Value) {
        if let (true, Some(title), Some(url)) = (self.textcard, &m.title, &m.url) {
            let mut title = title.clone();
            truncate_utf8(&mut title, 128);
            let mut description = markdown_to_text(&m.content);
            truncate_utf8(&mut description, 512);
            return (
                "textcard",
                json!({"title": title, "description": description, "url": url, "btntxt": "详情"}),
            );
        }
        if m.msgtype == MsgType::Markdown && self.markdown {
            let mut content = m.content.clone();
            if let Some(url) = m.url.as_deref().filter(|u| !content.contains(u)) {
                content.push_str(&format!("\n[{url}]({url})"));
            }
            truncate_utf8(&mut content, CONTENT_BYTES);
            return ("markdown", json!({ "content": content }));
        }
        let mut content = match m.msgtype {
            MsgType::Markdown => markdown_to_text(&m.content),
            MsgType::Text => m.content.clone(),
        };
        if let Some(title) = m.title.as_deref().filter(|t| !content.contains(*t)) {
            content = format!("{title}\n{content}");
        }
        if let Some(url) = m.url.as_deref().filter(|u| !content.contains(*u)) {
            content.push('\n');
            content.push_str(url);
        }
        truncate_utf8(&mut content, CONTENT_BYTES);
        ("text", json!({ "content": content }))
    }

    /// The receipt of a successful send: `msgid`, and the recipients WeCom refused.
    fn receipt(reply: &VendorReply) -> Receipt {
        let mut detail = Map::new();
        let mut rejected = 0;
        if let Some(id) = reply.body.get("msgid") {
            detail.insert("msgid".into(), id.clone());
        }
        for field in [
            "invaliduser",
            "invalidparty",
            "invalidtag",
            "unlicenseduser",
        ] {
            let ids = split_ids(reply.text(field));
            if !ids.is_empty() {
                rejected += ids.len() as u32;
                detail.insert(field.into(), json!(ids.join("|")));
            }
        }
        Receipt {
            detail: Some(Value::Object(detail)),
            rejected,
        }
    }
}

/// A base URL with exactly one trailing slash.
pub(crate) fn normalize_base(base: &str) -> String {
    format!("{}/", base.trim_end_matches('/'))
}

#[async_trait]
impl Channel for WecomApp {
    fn kind(&self) -> ChannelKind {
        ChannelKind::WecomApp
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
            let token = self.tokens.get(&self.http, out.timeout).await?;
            let secrets = [token.expose(), self.secret.expose()];
            let req = self
                .http
                .post(format!("{}message/send", self.base))
                .query(&[("access_token", token.expose())])
                .timeout(out.timeout)
                .json(&body);
            let reply = call(req).await.map_err(|e| e.scrubbed(&secrets))?;
            match rounds.judge(&Send, reply) {
                Ok(Some(reply)) => return Ok(WecomApp::receipt(&reply)),
                // The token was refused: drop it, so the next round fetches another.
                Ok(None) => self.tokens.invalidate(&token).await,
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
            "type": "wecom-app",
            "baseUrl": redact_url(&self.base),
            "corpId": self.corp_id,
            "agentId": self.agent_id,
            "safe": self.safe,
            "duplicateCheckInterval": self.duplicate_check,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::channel::reply::table_test::{first_round, shared_rows};

    #[test]
    fn reply_table() {
        shared_rows(&Send, r#"{"errcode":0,"errmsg":"ok","msgid":"m"}"#);
        let again = Verdict::Again(Spent::Retry(Reason::Auth));
        let minute = Verdict::Throttle(Some(Duration::from_secs(60)));
        let rows: &[(u16, &str, Verdict)] = &[
            (
                200,
                r#"{"errcode":0,"errmsg":"ok","invaliduser":"a"}"#,
                Verdict::Sent,
            ),
            (
                200,
                r#"{"errcode":40014,"errmsg":"invalid access_token"}"#,
                again,
            ),
            (200, r#"{"errcode":42001}"#, again),
            (200, r#"{"errcode":41001}"#, again),
            (
                200,
                r#"{"errcode":-1,"errmsg":"system busy"}"#,
                Verdict::Retry(Reason::Server),
            ),
            (200, r#"{"errcode":45009}"#, minute),
            (200, r#"{"errcode":45033}"#, minute),
            (200, r#"{"errcode":40001}"#, Verdict::Fail(Reason::Auth)),
            (200, r#"{"errcode":40013}"#, Verdict::Fail(Reason::Auth)),
            (200, r#"{"errcode":60020}"#, Verdict::Fail(Reason::Auth)),
            (200, r#"{"errcode":40008}"#, Verdict::Fail(Reason::Client)),
            (200, r#"{"errcode":40058}"#, Verdict::Fail(Reason::Client)),
            (200, r#"{"errcode":44004}"#, Verdict::Fail(Reason::Client)),
            (200, r#"{"errcode":45002}"#, Verdict::Fail(Reason::Client)),
            (200, r#"{"errcode":81013}"#, Verdict::Fail(Reason::Client)),
            // An error status is never read as errcode 0, even with a WeCom-shaped body.
            (
                502,
                r#"{"errcode":0,"errmsg":"ok"}"#,
                Verdict::Retry(Reason::Server),
            ),
        ];
        for (status, body, want) in rows {
            assert_eq!(
                &first_round(&Send, *status, &[], body),
                want,
                "HTTP {status} {body}"
            );
        }
    }

    #[test]
    fn bases_end_in_one_slash() {
        assert_eq!(normalize_base("https://x/cgi-bin"), "https://x/cgi-bin/");
        assert_eq!(normalize_base("https://x/cgi-bin//"), "https://x/cgi-bin/");
    }
}
