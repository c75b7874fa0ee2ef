//! Secrets: `{env: NAME}` / `{file: PATH}` references, a value that never prints, and redaction.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A secret value. `Debug` and `Display` never show it; only [`Secret::expose`] does.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value that must not be printed.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for signing and for building the outgoing request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Secret key bytes (e.g. a decoded signing key); never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(***)")
    }
}

/// How a hooks.d document names a secret.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SecretRef {
    /// `{env: NAME}`: read from the relay's environment.
    Env { env: String },
    /// `{file: PATH}`: read from a file (relative paths are relative to the hooks.d file).
    File { file: String },
    /// A literal value in the file: accepted, with a warning.
    Literal(String),
}

/// A resolved secret, and whether it was written literally (the caller warns).
#[derive(Debug)]
pub struct Resolved {
    pub secret: Secret,
    pub literal: bool,
}

impl SecretRef {
    /// Reads the secret; a `{file: …}` must lie (symlinks resolved) under one of `roots` (hooks.d
    /// and the `secret_dirs` setting). Errors name the reference, never the value.
    pub fn resolve(&self, base_dir: &Path, roots: &[PathBuf]) -> Result<Resolved, String> {
        match self {
            SecretRef::Env { env } => match std::env::var(env) {
                Ok(v) if !v.is_empty() => Ok(Resolved {
                    secret: Secret(v),
                    literal: false,
                }),
                Ok(_) => Err(format!("environment variable {env} is empty")),
                Err(_) => Err(format!("environment variable {env} is not set")),
            },
            SecretRef::File { file } => {
                let path = confined(&base_dir.join(file), roots)?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
                let value = text.trim_end_matches(['\n', '\r']).to_string();
                if value.is_empty() {
                    return Err(format!("secret file {} is empty", path.display()));
                }
                Ok(Resolved {
                    secret: Secret(value),
                    literal: false,
                })
            }
            SecretRef::Literal(v) => Ok(Resolved {
                secret: Secret(v.clone()),
                literal: true,
            }),
        }
    }
}

/// `path` with its symlinks resolved, if that lies under one of `roots` (resolved too): a
/// Kubernetes ConfigMap's `..data` link stays inside its mount, `../` or an absolute path
/// elsewhere does not.
fn confined(path: &Path, roots: &[PathBuf]) -> Result<PathBuf, String> {
    let real = path
        .canonicalize()
        .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let inside = roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|root| real.starts_with(root));
    if inside {
        Ok(real)
    } else {
        let allowed: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        Err(format!(
            "secret file {} lies outside hooks.d and the secret_dirs setting (allowed: {}); \
             list its directory in secret_dirs to allow it",
            path.display(),
            allowed.join(", ")
        ))
    }
}

/// A URL that may carry credentials: sent as it is, shown only as [`SecretUrl::shown`]. One
/// read from a secret reference is shown as its scheme and host alone (its path may be the
/// credential, as in Slack's `/services/T…/B…/<token>`); a literal one with its visible
/// credentials redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl {
    url: Secret,
    from_reference: bool,
    shown: String,
    hidden: Vec<String>,
}

impl SecretUrl {
    pub fn new(url: Secret, from_reference: bool) -> SecretUrl {
        let raw = url.expose();
        let mut hidden = url_credentials(raw);
        hidden.push(raw.to_string());
        let shown = if from_reference {
            let (origin, rest) = split_origin(raw);
            if !rest.is_empty() && rest != "/" {
                hidden.push(rest.to_string());
                hidden.extend(
                    rest.split(['/', '?', '&', '='])
                        .filter(|seg| seg.len() >= 8)
                        .map(str::to_string),
                );
                format!("{origin}/***")
            } else {
                origin
            }
        } else {
            redact_url(raw)
        };
        SecretUrl {
            url,
            from_reference,
            shown,
            hidden,
        }
    }

    /// The URL to send to.
    pub fn expose(&self) -> &str {
        self.url.expose()
    }

    /// The URL as it may be displayed.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// `sent` (this URL with parameters added, e.g. a signature) as it may be displayed.
    pub fn show(&self, sent: &str) -> String {
        if self.from_reference {
            self.shown.clone()
        } else {
            redact_url(sent)
        }
    }

    /// Everything of it that must be scrubbed from texts that may echo it.
    pub fn credentials(&self) -> &[String] {
        &self.hidden
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.shown)
    }
}

/// `scheme://host[:port]` (userinfo dropped) and what follows it.
fn split_origin(url: &str) -> (String, &str) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return ("***".to_string(), url);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (format!("{scheme}://{host}"), &rest[end..])
}

/// Query parameters whose values are credentials in the vendor APIs we call.
const SECRET_QUERY_KEYS: [&str; 8] = [
    "key",
    "access_token",
    "corpsecret",
    "token",
    "sign",
    "secret",
    "signature",
    "api_key",
];

/// Redacts credentials from a URL for display: userinfo, the values of credential-like query
/// parameters, and any path segment that follows a `hook` segment (Feishu puts its token there).
pub fn redact_url(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    match before_query.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            match authority.rsplit_once('@') {
                Some((_, host)) => {
                    out.push_str("***@");
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(&redact_path(path));
        }
        None => out.push_str(&redact_path(before_query)),
    }
    if let Some(q) = query {
        out.push('?');
        let parts: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if SECRET_QUERY_KEYS.contains(&k.to_ascii_lowercase().as_str()) => {
                    format!("{k}=***")
                }
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    out
}

/// The credentials a URL carries (userinfo, credential-like query values, the path segment after
/// `hook`): what [`redact_url`] hides, for scrubbing error texts that echo them.
pub fn url_credentials(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    let (before_query, query) = url.split_once('?').unwrap_or((url, ""));
    let rest = before_query
        .split_once("://")
        .map_or(before_query, |(_, r)| r);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        found.extend(userinfo.split(':').map(str::to_string));
    }
    found.extend(
        secret_segments(path)
            .into_iter()
            .filter(|(_, secret)| *secret)
            .map(|(seg, _)| seg.to_string()),
    );
    for pair in query.split('&') {
        if let Some((k, v)) = pair.split_once('=')
            && SECRET_QUERY_KEYS.contains(&k.to_ascii_lowercase().as_str())
        {
            found.push(v.to_string());
            if let Ok(decoded) = percent_encoding::percent_decode_str(v).decode_utf8() {
                found.push(decoded.into_owned());
            }
        }
    }
    found.retain(|s| !s.is_empty());
    found
}

fn redact_path(path: &str) -> String {
    secret_segments(path)
        .into_iter()
        .map(|(seg, secret)| if secret { "***" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// The segments of a URL path, each with whether it is a credential: what follows `hook`
/// (Feishu, DingTalk-style), `services` (Slack) or `webhooks` (Discord, Teams), and anything
/// shaped like a token (20 characters or more, letters and digits mixed).
fn secret_segments(path: &str) -> Vec<(&str, bool)> {
    let token_like = |seg: &str| {
        seg.len() >= 20
            && seg.chars().any(|c| c.is_ascii_digit())
            && seg.chars().any(|c| c.is_ascii_alphabetic())
    };
    let mut after_marker = false;
    path.split('/')
        .map(|seg| {
            let secret = !seg.is_empty() && (after_marker || token_like(seg));
            after_marker |= matches!(seg, "hook" | "services" | "webhooks");
            (seg, secret)
        })
        .collect()
}

/// What to scrub from texts that may echo secrets: each secret as is and percent-encoded the
/// ways a URL may carry it, worked out once (a channel builds one when it is built).
#[derive(Clone, Default)]
pub struct Scrubber {
    forms: Vec<String>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} forms)", self.forms.len())
    }
}

impl Scrubber {
    /// Secrets shorter than 4 bytes are not scrubbed: they would blank ordinary words.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Scrubber {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let mut forms: Vec<String> = Vec::new();
        for s in secrets.into_iter().filter(|s| s.len() >= 4) {
            for form in [
                s.to_string(),
                utf8_percent_encode(s, NON_ALPHANUMERIC).to_string(),
                utf8_percent_encode(s, URL_VALUE).to_string(),
            ] {
                if !forms.contains(&form) {
                    forms.push(form);
                }
            }
        }
        Scrubber { forms }
    }

    /// `text` with every form replaced by `***`; `None` when it holds none (nothing is
    /// allocated for the common case of a text without secrets).
    pub fn changed(&self, text: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for form in &self.forms {
            let current = out.as_deref().unwrap_or(text);
            if current.contains(form.as_str()) {
                out = Some(current.replace(form.as_str(), "***"));
            }
        }
        out
    }

    pub fn scrub(&self, text: &str) -> String {
        self.changed(text).unwrap_or_else(|| text.to_string())
    }
}

/// Replaces every occurrence of any of `secrets` in `text` — as is, or percent-encoded the ways
/// a URL may carry it — with `***`.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    Scrubber::new(secrets.iter().copied()).scrub(text)
}

/// Percent-encodes all but RFC 3986 unreserved characters: one round of encoding for a URL
/// query value or path segment.
pub const URL_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redacts_vendor_urls() {
        assert_eq!(
            redact_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc-123&debug=1"),
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***&debug=1"
        );
        assert_eq!(
            redact_url("https://oapi.dingtalk.com/robot/send?access_token=t0k&timestamp=1&sign=x"),
            "https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=1&sign=***"
        );
        assert_eq!(
            redact_url("https://open.feishu.cn/open-apis/bot/v2/hook/0b1c-token"),
            "https://open.feishu.cn/open-apis/bot/v2/hook/***"
        );
        assert_eq!(
            redact_url("http://user:pw@example.com:8080/x"),
            "http://***@example.com:8080/x"
        );
    }

    #[test]
    fn redacts_tokens_in_paths() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0AAA/B0BBB/xoxbSECRET"),
            "https://hooks.slack.com/services/***/***/***"
        );
        assert_eq!(
            redact_url("https://ci.example/api/notify/a1b2c3d4e5f6g7h8i9j0k1/run"),
            "https://ci.example/api/notify/***/run"
        );
    }

    #[test]
    fn a_url_from_a_reference_shows_scheme_and_host_only() {
        let u = SecretUrl::new(
            Secret::new("https://u:p@hooks.example.com:8443/x/hunter2-path?q=v"),
            true,
        );
        assert_eq!(u.shown(), "https://hooks.example.com:8443/***");
        let echoed =
            "POST https://u:p@hooks.example.com:8443/x/hunter2-path?q=v failed: hunter2-path";
        let hidden: Vec<&str> = u.credentials().iter().map(String::as_str).collect();
        let scrubbed = scrub(echoed, &hidden);
        assert!(!scrubbed.contains("hunter2"), "{scrubbed}");
        let literal = SecretUrl::new(Secret::new("https://example.com/notify?key=abc123"), false);
        assert_eq!(literal.shown(), "https://example.com/notify?key=***");
    }

    #[test]
    fn file_secrets_stay_inside_their_roots() {
        let dir = tempfile::tempdir().unwrap();
        let hooks = dir.path().join("hooks.d");
        // A ConfigMap mount: `tok` -> `..data/tok`, `..data` -> `..2026_12_01/`.
        let version = hooks.join("..2026_12_01");
        std::fs::create_dir_all(&version).unwrap();
        std::fs::write(version.join("tok"), "inside\n").unwrap();
        std::os::unix::fs::symlink("..2026_12_01", hooks.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/tok", hooks.join("tok")).unwrap();
        std::fs::write(dir.path().join("outside"), "shadow\n").unwrap();
        let roots = [hooks.clone()];
        let file = |f: &str| SecretRef::File { file: f.into() }.resolve(&hooks, &roots);
        assert_eq!(file("tok").unwrap().secret.expose(), "inside");
        for escape in ["../outside", dir.path().join("outside").to_str().unwrap()] {
            let err = file(escape).unwrap_err();
            assert!(err.contains("outside hooks.d"), "{err}");
            assert!(!err.contains("shadow"), "{err}");
        }
        std::os::unix::fs::symlink("../outside", hooks.join("sneaky")).unwrap();
        assert!(file("sneaky").is_err(), "a symlink out is an escape too");
        let allowed = [hooks.clone(), dir.path().to_path_buf()];
        let r = SecretRef::File {
            file: "../outside".into(),
        }
        .resolve(&hooks, &allowed);
        assert_eq!(
            r.unwrap().secret.expose(),
            "shadow",
            "secret_dirs allows it"
        );
    }

    #[test]
    fn finds_the_credentials_a_url_carries() {
        let found = url_credentials(
            "https://u:p@x.example/open-apis/bot/v2/hook/tok-1?access_token=a%2Bb&keep=1",
        );
        assert_eq!(found, ["u", "p", "tok-1", "a%2Bb", "a+b"]);
        assert!(url_credentials("https://x.example/a?b=c").is_empty());
    }

    #[test]
    fn scrub_finds_encoded_forms_too() {
        assert_eq!(scrub("key=ab+cd/ef", &["ab+cd/ef"]), "key=***");
        assert_eq!(scrub("k=ab%2Bcd%2Fef", &["ab+cd/ef"]), "k=***");
    }

    #[test]
    fn scrub_replaces_known_values() {
        assert_eq!(
            scrub("bad key abcdef in url", &["abcdef", ""]),
            "bad key *** in url"
        );
    }

    #[test]
    fn resolves_env_and_file_refs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "s3cret\n").unwrap();
        let roots = [dir.path().to_path_buf()];
        let r = SecretRef::File { file: "tok".into() }
            .resolve(dir.path(), &roots)
            .unwrap();
        assert_eq!(r.secret.expose(), "s3cret");
        assert!(!r.literal);
        let missing = SecretRef::Env {
            env: "HOOKRELAY_TEST_SURELY_UNSET".into(),
        }
        .resolve(dir.path(), &roots);
        assert!(missing.unwrap_err().contains("HOOKRELAY_TEST_SURELY_UNSET"));
        assert!(
            SecretRef::Literal("x".into())
                .resolve(dir.path(), &roots)
                .unwrap()
                .literal
        );
    }
}
