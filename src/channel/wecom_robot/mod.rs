//! `wecom-robot`: a WeCom group robot (webhook key), text with `mentioned_list` /
//! `mentioned_mobile_list`, markdown with `<@userid>` mentions (PROTOCOLS.md §2).

mod classify;
mod config;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use self::config::WecomRobotSpec;
use self::wire::{MARKDOWN_BYTES, TEXT_BYTES};
use super::ratelimit::Limit;
use super::reply::{call, judge};
use super::{Channel, DeliveryError, Limits, Outgoing, Preview, Receipt};
use crate::directory::User;
use crate::doc::{DocCtx, DocError, parse_spec};
use crate::message::Recipients;
use crate::secret::{SecretUrl, URL_VALUE};
use percent_encoding::utf8_percent_encode;

pub const KIND: &str = "wecom-robot";

/// A configured WeCom group robot.
#[derive(Debug)]
pub struct WecomRobot {
    /// The full send URL, key included.
    url: SecretUrl,
    http: reqwest::Client,
}

pub fn build(
    _name: &str,
    spec: &Value,
    ctx: &mut DocCtx<'_>,
) -> Result<Arc<dyn Channel>, Vec<DocError>> {
    let spec: WecomRobotSpec = parse_spec(spec)?;
    let origin = ctx.settings.vendors.wecom.clone();
    let base = super::api_url(
        ctx,
        spec.base_url.as_deref(),
        &origin,
        "/cgi-bin/webhook/send",
    );
    let url = super::robot_url(ctx, ("key", spec.key.as_ref()), spec.url.as_ref(), |key| {
        format!(
            "{base}?key={}",
            utf8_percent_encode(key.expose(), URL_VALUE)
        )
    })?;
    Ok(Arc::new(WecomRobot {
        url,
        http: ctx.http.clone(),
    }))
}

#[async_trait]
impl Channel for WecomRobot {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// Mentioned by WeCom userid, or else by mobile number.
    fn address(&self, user: &User) -> Option<Recipients> {
        super::by_id_or_mobile(user, "wecom")
    }

    fn limits(&self) -> Limits {
        Limits {
            text_bytes: Some(TEXT_BYTES),
            markdown_bytes: Some(MARKDOWN_BYTES),
            ..Limits::default()
        }
    }

    fn default_limits(&self) -> Vec<Limit> {
        vec![Limit::per_minute(20)]
    }

    async fn send(&self, out: &Outgoing<'_>) -> Result<Receipt, DeliveryError> {
        let req = self
            .http
            .post(self.url.expose())
            .timeout(out.timeout)
            .json(&wire::body(out));
        judge(&classify::Send, &call(req).await?)?;
        Ok(Receipt::default())
    }

    fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError> {
        Ok(Preview::post(self.url.shown(), wire::body(out)))
    }

    fn describe(&self) -> Value {
        json!({"type": KIND, "url": self.url.shown()})
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn leak_example(base: &str) -> (Value, Vec<&'static str>) {
        (
            json!({"key": "ROBOT-KEY-LEAK-1", "baseUrl": base}),
            vec!["ROBOT-KEY-LEAK-1"],
        )
    }
}
