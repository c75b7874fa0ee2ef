//! SMTP submission: connections (STARTTLS or implicit TLS, then AUTH) kept in a small idle
//! pool, and one mail sent with every recipient's own `RCPT TO` reply kept — lettre's
//! transport stops at the first refused recipient, so its connection API is driven here.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use lettre::Address;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials as Auth, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use serde::Serialize;

use super::classify::{self, Rcpt as Answer};
use super::config::Security;
use crate::channel::DeliveryError;
use crate::reason::Reason;

/// How long an idle connection is trusted before it is closed instead of reused (servers
/// close idle clients after a few minutes; RFC 5321 asks them to wait at least five).
const IDLE_FOR: Duration = Duration::from_secs(60);

/// One SMTP server and the connections kept open to it.
pub struct Server {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// For STARTTLS and implicit TLS.
    pub tls: Option<TlsParameters>,
    pub auth: Option<Auth>,
    pub hello: ClientId,
    pub pool_size: usize,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("auth", &self.auth.is_some())
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

/// A recipient the server (or the address check) refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    pub message: String,
    #[serde(skip)]
    pub transient: bool,
}

/// What one mail's submission came to, when at least the transaction itself went through.
#[derive(Debug, Default, PartialEq)]
pub struct Submitted {
    pub accepted: Vec<String>,
    pub refused: Vec<Refusal>,
}

impl Server {
    pub fn new(
        (host, port, security): (String, u16, Security),
        tls: Option<TlsParameters>,
        auth: Option<Auth>,
        hello: ClientId,
        pool_size: usize,
    ) -> Server {
        Server {
            host,
            port,
            security,
            tls,
            auth,
            hello,
            pool_size,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Submits `body` from `from` to `to`, offering in a further transaction the recipients a
    /// server deferred with 452 (too many recipients). Fails as a whole only when nothing was
    /// submitted; refused recipients beside accepted ones are a partial success.
    pub async fn submit(
        &self,
        from: &Address,
        to: &[Address],
        body: &[u8],
        timeout: Duration,
    ) -> Result<Submitted, DeliveryError> {
        let mut conn = self.take(timeout).await?;
        match tokio::time::timeout(timeout, transactions(&mut conn, from, to, body)).await {
            Ok(Ok(done)) => {
                self.give_back(conn);
                Ok(done)
            }
            Ok(Err(Failed { error, reusable })) => {
                if reusable {
                    self.give_back(conn);
                }
                Err(error)
            }
            Err(_) => Err(DeliveryError::retryable(
                Reason::Timeout,
                format!("no answer from the SMTP server within {timeout:?}"),
            )),
        }
    }

    /// An open connection: an idle one that still answers NOOP, or a new one.
    async fn take(&self, timeout: Duration) -> Result<AsyncSmtpConnection, DeliveryError> {
        loop {
            let popped = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some((mut conn, since)) = popped else {
                break;
            };
            if since.elapsed() < IDLE_FOR && conn.test_connected().await {
                return Ok(conn);
            }
            conn.abort().await;
        }
        match tokio::time::timeout(timeout, self.connect(timeout)).await {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::retryable(
                Reason::Timeout,
                format!("connecting to the SMTP server took over {timeout:?}"),
            )),
        }
    }

    async fn connect(&self, timeout: Duration) -> Result<AsyncSmtpConnection, DeliveryError> {
        let implicit = match self.security {
            Security::Tls => self.tls.clone(),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(timeout),
            &self.hello,
            implicit,
            None,
        )
        .await
        .map_err(|e| failure("connect", &e))?;
        if let (Security::Starttls, Some(tls)) = (self.security, &self.tls) {
            if !conn.can_starttls() {
                conn.abort().await;
                return Err(DeliveryError::permanent(
                    Reason::Config,
                    "the SMTP server does not offer STARTTLS (tls: starttls); use tls: tls for \
                     implicit TLS, or tls: none for a relay on this host",
                ));
            }
            conn.starttls(tls.clone(), &self.hello)
                .await
                .map_err(|e| failure("STARTTLS", &e))?;
        }
        if let Some(auth) = &self.auth {
            if let Err(e) = conn.auth(&[Mechanism::Plain, Mechanism::Login], auth).await {
                conn.abort().await;
                return Err(failure("AUTH", &e));
            }
        }
        Ok(conn)
    }

    /// Keeps `conn` for the next mail, or closes it when the pool is full.
    fn give_back(&self, mut conn: AsyncSmtpConnection) {
        if conn.has_broken() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.pool_size {
            idle.push((conn, Instant::now()));
        } else {
            drop(idle);
            tokio::spawn(async move {
                let _ = conn.quit().await;
            });
        }
    }
}

/// A submission that failed, and whether its connection is still in a known state.
struct Failed {
    error: DeliveryError,
    reusable: bool,
}

impl Failed {
    /// A refusing reply leaves the connection usable (after RSET); anything else does not.
    fn of(step: &str, e: &SmtpError) -> Failed {
        Failed {
            error: failure(step, e),
            reusable: e.status().is_some(),
        }
    }
}

async fn transactions(
    conn: &mut AsyncSmtpConnection,
    from: &Address,
    to: &[Address],
    body: &[u8],
) -> Result<Submitted, Failed> {
    let mut done = Submitted::default();
    let mut offer: Vec<&Address> = to.iter().collect();
    while !offer.is_empty() {
        let mut params = Vec::new();
        if offer.iter().any(|a| !AsRef::<str>::as_ref(*a).is_ascii()) {
            params.push(MailParameter::SmtpUtfEight);
        }
        if !body.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        if let Err(e) = conn.command(Mail::new(Some(from.clone()), params)).await {
            return unless_some_went(done, &offer, Failed::of("MAIL FROM", &e), conn).await;
        }
        let (mut accepted, mut later) = (Vec::new(), Vec::new());
        for &addr in &offer {
            match conn.command(Rcpt::new(addr.clone(), Vec::new())).await {
                Ok(_) => accepted.push(addr),
                Err(e) => match e.status().map(u16::from) {
                    None => return Err(Failed::of("RCPT TO", &e)),
                    Some(code) => match classify::recipient(code) {
                        Answer::Later => later.push(addr),
                        Answer::Refused { transient } => done.refused.push(Refusal {
                            to: addr.to_string(),
                            code: Some(code),
                            message: reply_text(&e),
                            transient,
                        }),
                        Answer::Accepted => accepted.push(addr),
                    },
                },
            }
        }
        if accepted.is_empty() {
            // Nothing to send this mail to: the rest are refused as they were deferred.
            let _ = conn.command(Rset).await;
            done.refused.extend(later.iter().map(|a| Refusal {
                to: a.to_string(),
                code: Some(452),
                message: "too many recipients".into(),
                transient: true,
            }));
            break;
        }
        let sent = match conn.command(Data).await {
            Ok(_) => conn.message(body).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            return unless_some_went(done, &accepted, Failed::of("DATA", &e), conn).await;
        }
        done.accepted.extend(accepted.iter().map(|a| a.to_string()));
        offer = later;
    }
    Ok(done)
}

/// A later transaction's failure after an earlier one went through is a partial delivery
/// (retrying it would send the mail twice to the first ones): its recipients are refused.
async fn unless_some_went(
    mut done: Submitted,
    these: &[&Address],
    failed: Failed,
    conn: &mut AsyncSmtpConnection,
) -> Result<Submitted, Failed> {
    if failed.reusable {
        let _ = conn.command(Rset).await;
    }
    if done.accepted.is_empty() {
        return Err(failed);
    }
    let transient = matches!(failed.error, DeliveryError::Retryable { .. });
    done.refused.extend(these.iter().map(|a| Refusal {
        to: a.to_string(),
        code: None,
        message: failed.error.detail().to_string(),
        transient,
    }));
    Ok(done)
}

/// The server's words in a refusing reply (lettre keeps them as the error's source).
fn reply_text(e: &SmtpError) -> String {
    std::error::Error::source(e).map_or_else(String::new, ToString::to_string)
}

/// A failed step as a classified error: the reply's code when there was one, else the
/// connection (network, TLS, timeout).
fn failure(step: &str, e: &SmtpError) -> DeliveryError {
    match e.status() {
        Some(code) => classify::error(step, u16::from(code), &reply_text(e)),
        None if e.is_timeout() => DeliveryError::retryable(
            Reason::Timeout,
            format!("{step}: {}", crate::reason::with_causes(e)),
        ),
        None if e.is_client() => DeliveryError::permanent(
            Reason::Config,
            format!("{step}: {}", crate::reason::with_causes(e)),
        ),
        None => DeliveryError::retryable(
            Reason::Network,
            format!("{step}: {}", crate::reason::with_causes(e)),
        ),
    }
}
