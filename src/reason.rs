//! Why an attempt failed: the one typed reason a channel gives, the store keeps, and the admin
//! API and metrics show.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an attempt failed (or was held back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Client,
    Server,
    Auth,
    RateLimited,
    Timeout,
    Network,
    Config,
    Render,
    /// Held back until the recipient's quiet hours end (a wait, not a failure).
    QuietHours,
    /// Collected until its digest's window closes (a wait, not a failure).
    Digest,
    /// A reason this build does not know (written by a newer one): kept readable, not lost.
    #[serde(other)]
    Other,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Client => "client",
            Reason::Server => "server",
            Reason::Auth => "auth",
            Reason::RateLimited => "rate-limited",
            Reason::Timeout => "timeout",
            Reason::Network => "network",
            Reason::Config => "config",
            Reason::Render => "render",
            Reason::QuietHours => "quiet-hours",
            Reason::Digest => "digest",
            Reason::Other => "other",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error and what caused it, one clause per cause ("error performing TLS handshake: invalid
/// peer certificate: UnknownIssuer"): drivers' own top-level words say too little. A cause whose
/// words the text already holds is not repeated.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_read_back_and_unknown_ones_are_other() {
        for r in [Reason::Client, Reason::RateLimited, Reason::Render] {
            let text = serde_json::to_string(&r).unwrap();
            assert_eq!(text, format!("\"{}\"", r.as_str()));
            assert_eq!(serde_json::from_str::<Reason>(&text).unwrap(), r);
        }
        assert_eq!(
            serde_json::from_str::<Reason>("\"quota\"").unwrap(),
            Reason::Other
        );
    }
}
