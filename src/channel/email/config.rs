//! The `email` channel's settings as written in hooks.d.

use serde::Deserialize;

use crate::secret::SecretRef;

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Submission (587): plain TCP upgraded with STARTTLS, which the server must offer.
    #[default]
    Starttls,
    /// Implicit TLS (465).
    Tls,
    /// No TLS at all: for a relay on this host or inside the pod.
    None,
}

impl Security {
    pub fn default_port(self) -> u16 {
        match self {
            Security::Starttls => 587,
            Security::Tls => 465,
            Security::None => 25,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Security::Starttls => "starttls",
            Security::Tls => "tls",
            Security::None => "none",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailSpec {
    /// The SMTP server's host name (also the name its certificate must carry).
    pub host: String,
    /// Default by `tls`: 587, 465 or 25.
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: Security,
    /// A PEM file of CA certificates trusted besides the system's (a company CA), relative to
    /// hooks.d.
    pub ca: Option<String>,
    /// AUTH PLAIN/LOGIN, sent only over TLS (or to a loopback host).
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    /// The sender: `hookrelay@example.com` or `hookrelay <hookrelay@example.com>`.
    pub from: String,
    pub reply_to: Option<String>,
    /// The name given in EHLO; default this host's name.
    pub hello: Option<String>,
    /// Idle connections kept open for the next messages (default 4; 0: one connection per
    /// message).
    pub pool_size: Option<usize>,
}
