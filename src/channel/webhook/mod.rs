//! `webhook`: POST JSON (the normalized message, the original event, or a templated body) with
//! configured headers and optional Standard Webhooks signatures.

mod classify;
mod config;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::{Value, json};

pub(super) use self::classify::StatusOnly;
use self::config::{BodyMode, WebhookSpec};
use self::wire::normalized_json;
use super::reply::{call, judge};
use super::{Channel, DeliveryError, Outgoing, Preview, Receipt};
use crate::directory::User;
use crate::doc::{DocCtx, DocError, parse_spec};
use crate::message::Recipients;
use crate::reason::Reason;
use crate::render::{RenderCtx, Tpl};
use crate::secret::{Secret, SecretBytes, SecretUrl};
use crate::signature;

pub const KIND: &str = "webhook";

#[derive(Debug)]
enum Body {
    Message,
    Event,
    Template(Tpl),
}

/// A configured webhook destination.
#[derive(Debug)]
pub struct Webhook {
    url: SecretUrl,
    body: Body,
    content_type: HeaderValue,
    headers: Vec<(HeaderName, Secret)>,
    signing_key: Option<SecretBytes>,
    http: reqwest::Client,
}

pub fn build(
    _name: &str,
    spec: &Value,
    ctx: &mut DocCtx<'_>,
) -> Result<Arc<dyn Channel>, Vec<DocError>> {
    let spec: WebhookSpec = parse_spec(spec)?;
    let mut errors = Vec::new();
    let url = match ctx.url(&spec.url, "/spec/url") {
        Ok(u) => match reqwest::Url::parse(u.expose()) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Some(u),
            _ => {
                errors.push(DocError::new(
                    "/spec/url",
                    format!("{} is not an http(s) URL", u.shown()),
                ));
                None
            }
        },
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let body = match (spec.body, spec.template) {
        (BodyMode::Message, _) => Body::Message,
        (BodyMode::Event, _) => Body::Event,
        (BodyMode::Template, Some(t)) => match Tpl::compile(&t) {
            Ok(t) => Body::Template(t),
            Err(e) => {
                errors.push(DocError::new("/spec/template", e));
                Body::Message
            }
        },
        (BodyMode::Template, None) => {
            errors.push(DocError::new(
                "/spec/template",
                "body: template needs a template",
            ));
            Body::Message
        }
    };
    let content_type = spec.content_type.as_deref().unwrap_or("application/json");
    let content_type = HeaderValue::from_str(content_type).unwrap_or_else(|_| {
        errors.push(DocError::new(
            "/spec/contentType",
            "not a valid header value",
        ));
        HeaderValue::from_static("application/json")
    });
    let mut headers = Vec::new();
    for (name, value) in &spec.headers {
        let path = format!("/spec/headers/{name}");
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            errors.push(DocError::new(path, "not a valid header name"));
            continue;
        };
        match ctx.secret(value, &path) {
            Ok(v) if HeaderValue::from_str(v.expose()).is_ok() => headers.push((header, v)),
            Ok(_) => errors.push(DocError::new(path, "not a valid header value")),
            Err(e) => errors.push(e),
        }
    }
    let signing_key = match &spec.signing {
        None => None,
        Some(s) => match ctx.secret(&s.secret, "/spec/signing/secret").and_then(|k| {
            signature::decode_whsec(k.expose())
                .map_err(|m| DocError::new("/spec/signing/secret", m))
        }) {
            Ok(k) => Some(SecretBytes::new(k)),
            Err(e) => {
                errors.push(e);
                None
            }
        },
    };
    match url {
        Some(url) if errors.is_empty() => Ok(Arc::new(Webhook {
            url,
            body,
            content_type,
            headers,
            signing_key,
            http: ctx.http.clone(),
        })),
        _ => Err(errors),
    }
}

impl Webhook {
    fn render_body(&self, out: &Outgoing<'_>) -> Result<Vec<u8>, DeliveryError> {
        let message = || normalized_json(out.message, out.to);
        let missing_event =
            || DeliveryError::permanent(Reason::Config, "the event of this delivery is gone");
        match &self.body {
            Body::Message => Ok(serde_json::to_vec(&message()).expect("JSON values serialize")),
            Body::Event => {
                let event = out.event.ok_or_else(missing_event)?;
                Ok(serde_json::to_vec(event).expect("JSON values serialize"))
            }
            Body::Template(t) => {
                let mut root = out.event.ok_or_else(missing_event)?.clone();
                if let Value::Object(m) = &mut root {
                    m.insert("message".into(), message());
                }
                t.render(&RenderCtx::new(root))
                    .map(String::into_bytes)
                    .map_err(|e| {
                        DeliveryError::permanent(Reason::Render, format!("body template: {e}"))
                    })
            }
        }
    }
}

#[async_trait]
impl Channel for Webhook {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// A webhook is sent the platform user name itself.
    fn address(&self, user: &User) -> Option<Recipients> {
        Some(Recipients {
            users: vec![user.name.clone()],
            ..Recipients::default()
        })
    }

    fn address_unknown(&self, name: &str) -> Option<Recipients> {
        Some(Recipients {
            users: vec![name.to_string()],
            ..Recipients::default()
        })
    }

    fn needs_event(&self) -> bool {
        !matches!(self.body, Body::Message)
    }

    fn needs_message(&self) -> bool {
        !matches!(self.body, Body::Event)
    }

    async fn send(&self, out: &Outgoing<'_>) -> Result<Receipt, DeliveryError> {
        let body = self.render_body(out)?;
        let mut req = self
            .http
            .post(self.url.expose())
            .timeout(out.timeout)
            .header(CONTENT_TYPE, self.content_type.clone());
        for (name, value) in &self.headers {
            req = req.header(name.clone(), value.expose());
        }
        if let Some(key) = &self.signing_key {
            // The id is the delivery's, so it is the same on every retry: receivers dedupe on it.
            let id = out.id.to_string();
            let ts = crate::ids::now_ms() as i64 / 1000;
            let sig = signature::standard_webhooks_sign(key.expose(), &id, ts, &body);
            req = req
                .header("webhook-id", id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", sig);
        }
        let reply = call(req.body(body)).await?;
        judge(&StatusOnly, &reply)?;
        Ok(Receipt::of(json!({ "status": reply.status.as_u16() })))
    }

    fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError> {
        let bytes = self.render_body(out)?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Preview::post(self.url.shown(), body))
    }

    fn describe(&self) -> Value {
        json!({
            "type": KIND,
            "url": self.url.shown(),
            "body": match self.body { Body::Message => "message", Body::Event => "event", Body::Template(_) => "template" },
            "headers": self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            "signed": self.signing_key.is_some(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn leak_example(base: &str) -> (Value, Vec<&'static str>) {
        (
            json!({"url": format!("{base}/hook?token=WEBHOOK-TOKEN-LEAK-1"),
                   "headers": {"Authorization": "Bearer HEADER-SECRET-LEAK-1"},
                   "signing": {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}),
            vec![
                "WEBHOOK-TOKEN-LEAK-1",
                "HEADER-SECRET-LEAK-1",
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ],
        )
    }
}
