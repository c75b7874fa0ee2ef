//! `email`: mail over SMTP (STARTTLS, implicit TLS, AUTH, pooled connections), plain text and
//! HTML alternatives from the same message, each recipient's refusal kept (PROTOCOLS.md §9).

mod classify;
mod config;
mod smtp;
mod wire;

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use lettre::Address;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials as Auth;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use serde_json::{Value, json};

use self::config::{EmailSpec, Security};
use self::smtp::{Refusal, Server};
use super::{Channel, DeliveryError, Limits, Outgoing, Preview, Receipt};
use crate::directory::User;
use crate::doc::{DocCtx, DocError, parse_spec};
use crate::message::Recipients;
use crate::reason::Reason;

pub const KIND: &str = "email";

/// Idle connections kept by default.
const POOL_SIZE: usize = 4;
/// Addresses one mail is sent to at most (larger audiences become several mails).
const RECIPIENTS_PER_MAIL: usize = 50;

/// A configured SMTP submission server and sender.
#[derive(Debug)]
pub struct Email {
    server: Server,
    from: Mailbox,
    reply_to: Option<Mailbox>,
}

pub fn build(
    _name: &str,
    spec: &Value,
    ctx: &mut DocCtx<'_>,
) -> Result<Arc<dyn Channel>, Vec<DocError>> {
    let spec: EmailSpec = parse_spec(spec)?;
    let mut errors = Vec::new();
    let mut mailbox = |text: &str, path: &str| match Mailbox::from_str(text) {
        Ok(m) => Some(m),
        Err(e) => {
            errors.push(DocError::new(
                path,
                format!("{text:?} is not a mail address: {e}"),
            ));
            None
        }
    };
    let from = mailbox(&spec.from, "/spec/from");
    let reply_to = spec
        .reply_to
        .as_deref()
        .and_then(|r| mailbox(r, "/spec/replyTo"));
    let host = spec.host.trim().to_string();
    if host.is_empty() {
        errors.push(DocError::new(
            "/spec/host",
            "the SMTP server's host is empty",
        ));
    }
    let tls = match spec.tls {
        Security::None => None,
        Security::Starttls | Security::Tls => tls_parameters(&host, spec.ca.as_deref(), ctx)
            .map_err(|e| errors.push(e))
            .ok(),
    };
    let auth = match (&spec.username, &spec.password) {
        (None, None) => None,
        (Some(user), Some(password)) => {
            if spec.tls == Security::None && !loopback(&host) {
                errors.push(DocError::new(
                    "/spec/tls",
                    "AUTH would send the password in the clear: use tls: starttls or tls \
                     (tls: none is for a relay on this host)",
                ));
            }
            ctx.secret(password, "/spec/password")
                .map_err(|e| errors.push(e))
                .ok()
                .map(|password| {
                    // AUTH PLAIN and LOGIN send these encodings: a server that echoes its
                    // input in an error must not put them in ours either.
                    let b64 = base64::engine::general_purpose::STANDARD;
                    ctx.credential(&b64.encode(password.expose()));
                    ctx.credential(&b64.encode(format!("\0{user}\0{}", password.expose())));
                    Auth::new(user.clone(), password.expose().to_string())
                })
        }
        (Some(_), None) => {
            errors.push(DocError::new("/spec/password", "username needs a password"));
            None
        }
        (None, Some(_)) => {
            errors.push(DocError::new("/spec/username", "password needs a username"));
            None
        }
    };
    let hello = spec.hello.map_or_else(ClientId::default, ClientId::Domain);
    match (from, errors.is_empty()) {
        (Some(from), true) => Ok(Arc::new(Email {
            server: Server::new(
                (host, spec.port.unwrap_or(spec.tls.default_port()), spec.tls),
                tls,
                auth,
                hello,
                spec.pool_size.unwrap_or(POOL_SIZE),
            ),
            from,
            reply_to,
        })),
        _ => Err(errors),
    }
}

/// TLS for `host`: the system's roots, and the CA file `ca` if given.
fn tls_parameters(
    host: &str,
    ca: Option<&str>,
    ctx: &DocCtx<'_>,
) -> Result<TlsParameters, DocError> {
    let mut builder = TlsParameters::builder(host.to_string());
    if let Some(ca) = ca {
        let path = ctx.base_dir.join(ca);
        let pem = std::fs::read(&path).map_err(|e| {
            DocError::new("/spec/ca", format!("cannot read {}: {e}", path.display()))
        })?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| DocError::new("/spec/ca", format!("{}: {e}", path.display())))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build_rustls()
        .map_err(|e| DocError::new("/spec/tls", e.to_string()))
}

fn loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Email {
    /// The mail's addresses: those that parse, and a refusal for each that does not.
    fn addresses(to: &Recipients) -> (Vec<Address>, Vec<Refusal>) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for text in &to.users {
            match Address::from_str(text.trim()) {
                Ok(a) => good.push(a),
                Err(e) => bad.push(Refusal {
                    to: text.clone(),
                    code: None,
                    message: format!("not a mail address: {e}"),
                    transient: false,
                }),
            }
        }
        (good, bad)
    }

    fn message_id(&self, out: &Outgoing<'_>) -> String {
        format!("{}@{}", out.id, self.from.email.domain())
    }

    /// The MIME message and its envelope for `out`.
    fn mail(&self, out: &Outgoing<'_>, to: &[Address]) -> Result<Vec<u8>, DeliveryError> {
        let mailboxes: Vec<Mailbox> = to.iter().map(|a| Mailbox::new(None, a.clone())).collect();
        wire::mime(
            &self.from,
            self.reply_to.as_ref(),
            &mailboxes,
            &wire::compose(out.message),
            &self.message_id(out),
        )
        .map_err(|e| DeliveryError::permanent(Reason::Render, format!("building the mail: {e}")))
    }

    fn origin(&self) -> String {
        let scheme = match self.server.security {
            Security::Tls => "smtps",
            Security::Starttls | Security::None => "smtp",
        };
        format!("{scheme}://{}:{}", self.server.host, self.server.port)
    }
}

#[async_trait]
impl Channel for Email {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// Sent to the User's `mail`.
    fn address(&self, user: &User) -> Option<Recipients> {
        user.mail.as_ref().map(|m| Recipients {
            users: vec![m.clone()],
            ..Recipients::default()
        })
    }

    /// A mail address the directory does not know (a payload's `task_creator_email`) is
    /// written to as it is.
    fn address_unknown(&self, name: &str) -> Option<Recipients> {
        super::by_mail(name)
    }

    fn needs_recipients(&self) -> bool {
        true
    }

    fn limits(&self) -> Limits {
        Limits {
            users_per_request: Some(RECIPIENTS_PER_MAIL),
            ..Limits::default()
        }
    }

    async fn send(&self, out: &Outgoing<'_>) -> Result<Receipt, DeliveryError> {
        let (to, mut refused) = Email::addresses(out.to);
        if to.is_empty() {
            let why = match refused.first() {
                Some(r) => format!("{}: {}", r.to, r.message),
                None => "no mail addresses to send to".into(),
            };
            return Err(DeliveryError::permanent(Reason::Client, why));
        }
        let body = self.mail(out, &to)?;
        let done = self
            .server
            .submit(&self.from.email, &to, &body, out.timeout)
            .await?;
        refused.extend(done.refused);
        if done.accepted.is_empty() {
            let detail = format!(
                "every recipient was refused: {}",
                refused
                    .iter()
                    .map(|r| match r.code {
                        Some(c) => format!("{} (SMTP {c} {})", r.to, r.message),
                        None => format!("{} ({})", r.to, r.message),
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            // One recipient refused only for now is worth the whole mail again later.
            return Err(if refused.iter().any(|r| r.transient) {
                DeliveryError::retryable(Reason::Server, detail)
            } else {
                DeliveryError::permanent(Reason::Client, detail)
            });
        }
        let mut detail = json!({
            "messageId": self.message_id(out),
            "accepted": done.accepted.len(),
        });
        if !refused.is_empty() {
            detail["refused"] = json!(refused);
        }
        Ok(Receipt {
            detail: Some(detail),
            rejected: refused.len() as u32,
            handle: None,
        })
    }

    fn preview(&self, out: &Outgoing<'_>) -> Result<Preview, DeliveryError> {
        let mail = wire::compose(out.message);
        Ok(Preview {
            method: "SMTP",
            url: self.origin(),
            body: json!({
                "from": self.from.to_string(),
                "to": out.to.users,
                "subject": mail.subject,
                "messageId": self.message_id(out),
                "text": mail.text,
                "html": mail.html,
            }),
        })
    }

    fn describe(&self) -> Value {
        json!({
            "type": KIND,
            "server": self.origin(),
            "tls": self.server.security.as_str(),
            "auth": self.server.auth.is_some(),
            "from": self.from.to_string(),
            "poolSize": self.server.pool_size,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The leak test's SMTP echo server speaks plain SMTP on loopback, so AUTH goes in the
    /// clear there (allowed to a loopback host only) and can be echoed back.
    pub fn leak_example(base: &str) -> (Value, Vec<&'static str>) {
        let addr = base.trim_start_matches("http://");
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        (
            json!({"host": host, "port": port.parse::<u16>().expect("port"), "tls": "none",
                   "username": "relay", "password": "SMTP-PASSWORD-LEAK-1",
                   "from": "hookrelay <relay@example.com>"}),
            vec!["SMTP-PASSWORD-LEAK-1"],
        )
    }
}
