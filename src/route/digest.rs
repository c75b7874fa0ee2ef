//! `digest:` on a Route or Subscription — events for the same recipients (and key) inside a
//! window become one message: how long the window is, what else keys it, when it is sent early.

use std::time::Duration;

use serde::Deserialize;

use crate::config::parse_duration;
use crate::doc::DocError;
use crate::render::Tpl;

/// Events one digest holds unless the document says otherwise.
pub const DEFAULT_MAX: u32 = 50;
/// Longest window: a digest is a delay people accept, not a daily report.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestSpec {
    window: String,
    key: Option<String>,
    max: Option<u32>,
    template: Option<String>,
}

/// A compiled `digest:`.
#[derive(Debug)]
pub struct DigestDef {
    pub window: Duration,
    /// Rendered per event: events whose keys differ go in different digests (a Zadig
    /// workflow name, an Alertmanager groupKey). Without it, the recipients alone key it.
    pub key: Option<Tpl>,
    /// A digest is sent as soon as it holds this many events.
    pub max: u32,
    /// The digest Template to render with, instead of the one chosen by event type.
    pub template: Option<String>,
}

impl DigestDef {
    /// Compiles the `digest` of the document at `path` (`/spec/digest`).
    pub fn compile(spec: &DigestSpec, path: &str) -> Result<DigestDef, DocError> {
        let window = parse_duration("window", &spec.window)
            .map_err(|e| DocError::new(format!("{path}/window"), e.to_string()))?;
        if window.is_zero() || window > MAX_WINDOW {
            return Err(DocError::new(
                format!("{path}/window"),
                "a digest window is more than 0 and at most 24h",
            ));
        }
        let key = spec
            .key
            .as_deref()
            .map(Tpl::compile)
            .transpose()
            .map_err(|e| DocError::new(format!("{path}/key"), e))?;
        let max = spec.max.unwrap_or(DEFAULT_MAX);
        if max < 2 {
            return Err(DocError::new(
                format!("{path}/max"),
                "a digest holds at least 2 events",
            ));
        }
        Ok(DigestDef {
            window,
            key,
            max,
            template: spec.template.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(window: &str, max: Option<u32>, key: Option<&str>) -> DigestSpec {
        DigestSpec {
            window: window.into(),
            key: key.map(str::to_string),
            max,
            template: None,
        }
    }

    #[test]
    fn a_digest_needs_a_sensible_window_and_max() {
        let d = DigestDef::compile(&spec("15m", None, Some("{{data.id}}")), "/spec/digest");
        let d = d.unwrap();
        assert_eq!((d.window, d.max), (Duration::from_secs(900), DEFAULT_MAX));
        for (s, field) in [
            (spec("0s", None, None), "/spec/digest/window"),
            (spec("2d", None, None), "/spec/digest/window"),
            (spec("soon", None, None), "/spec/digest/window"),
            (spec("1m", Some(1), None), "/spec/digest/max"),
            (spec("1m", None, Some("{{#if x}}")), "/spec/digest/key"),
        ] {
            let e = DigestDef::compile(&s, "/spec/digest").unwrap_err();
            assert_eq!(e.path, field, "{e:?}");
        }
    }
}
