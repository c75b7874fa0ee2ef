//! A channel's credentials, registered once when it is built: every error detail, receipt and
//! preview of a send is scrubbed of them in one place ([`super::ChannelDef`]), so a channel
//! cannot forget to.

use std::fmt;

use serde_json::Value;

use super::{DeliveryError, Preview, Receipt};
use crate::secret::{Scrubber, Secret};

/// The secrets one Channel holds (as resolved, and any derived form its compiler registered),
/// with their scrubbed forms worked out once.
#[derive(Clone, Default)]
pub struct Credentials(Scrubber);

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?})", self.0)
    }
}

impl Credentials {
    pub fn new(secrets: Vec<Secret>) -> Credentials {
        Credentials(Scrubber::new(secrets.iter().map(Secret::expose)))
    }

    /// `text` with every registered credential replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        self.0.scrub(text)
    }

    pub fn error(&self, e: DeliveryError) -> DeliveryError {
        e.scrubbed(&self.0)
    }

    pub fn receipt(&self, mut r: Receipt) -> Receipt {
        if let Some(d) = &mut r.detail {
            self.value(d);
        }
        r
    }

    pub fn preview(&self, mut p: Preview) -> Preview {
        p.url = self.scrub(&p.url);
        self.value(&mut p.body);
        p
    }

    /// Scrubs every string (and key) inside a JSON value; what holds no credential is left as
    /// it is, without copying (the receipt of every successful send passes here).
    fn value(&self, v: &mut Value) {
        match v {
            Value::String(s) => {
                if let Some(clean) = self.0.changed(s) {
                    *s = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.value(i)),
            Value::Object(m) if m.keys().any(|k| self.0.changed(k).is_some()) => {
                let entries = std::mem::take(m);
                for (k, mut item) in entries {
                    self.value(&mut item);
                    m.insert(self.scrub(&k), item);
                }
            }
            Value::Object(m) => m.values_mut().for_each(|i| self.value(i)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::Reason;
    use serde_json::json;

    #[test]
    fn errors_receipts_and_previews_lose_every_registered_credential() {
        let c = Credentials::new(vec![Secret::new("TOKEN-1234"), Secret::new("KEY-5678")]);
        let e = c.error(DeliveryError::permanent(
            Reason::Client,
            "echo ?key=KEY-5678 Bearer TOKEN-1234",
        ));
        assert_eq!(e.detail(), "echo ?key=*** Bearer ***");
        let r = c.receipt(Receipt::of(json!({"msgid": "m", "echo": ["TOKEN-1234"]})));
        assert_eq!(r.detail.unwrap(), json!({"msgid": "m", "echo": ["***"]}));
        let p = c.preview(Preview::post(
            "https://x/send?key=KEY-5678",
            json!({"TOKEN-1234": 1}),
        ));
        assert_eq!(p.url, "https://x/send?key=***");
        assert_eq!(p.body, json!({"***": 1}));
        assert!(!format!("{c:?}").contains("TOKEN"));
    }
}
