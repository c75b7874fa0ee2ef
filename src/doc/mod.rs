//! What every hooks.d compiler shares: the [`DocCtx`] a document is compiled in, the
//! [`DocError`] it reports at a field path, and string [`pattern`]s.

pub mod pattern;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::Settings;
use crate::secret::{Secret, SecretRef, SecretUrl};

/// A problem inside one document, at a JSON-pointer-like field path (`/spec/auth/token`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocError {
    pub path: String,
    pub message: String,
}

impl DocError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> DocError {
        DocError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A document's `spec` as its compiler's type; what does not fit is an error at `/spec` (the
/// schema has caught most mistakes already, with better paths).
pub fn parse_spec<T: DeserializeOwned>(spec: &Value) -> Result<T, Vec<DocError>> {
    T::deserialize(spec).map_err(|e| vec![DocError::new("/spec", e.to_string())])
}

/// What compiling one document may use, and where it leaves warnings.
pub struct DocCtx<'a> {
    /// Directory of the file (relative `{file: …}` secrets resolve against it).
    pub base_dir: &'a Path,
    /// Where `{file: …}` secrets may be read from: hooks.d, then the `secret_dirs` setting.
    pub secret_roots: &'a [PathBuf],
    pub settings: &'a Settings,
    /// The shared outbound HTTP client channels send with.
    pub http: &'a reqwest::Client,
    pub warnings: Vec<DocError>,
    /// Every credential resolved while compiling the document (and any derived form a
    /// compiler registers): what its resource's errors are scrubbed of.
    pub credentials: Vec<Secret>,
}

impl<'a> DocCtx<'a> {
    pub fn new(
        base_dir: &'a Path,
        secret_roots: &'a [PathBuf],
        settings: &'a Settings,
        http: &'a reqwest::Client,
    ) -> DocCtx<'a> {
        DocCtx {
            base_dir,
            secret_roots,
            settings,
            http,
            warnings: Vec::new(),
            credentials: Vec::new(),
        }
    }

    /// Resolves a secret reference found at `path`; a literal is accepted with a warning.
    pub fn secret(&mut self, r: &SecretRef, path: &str) -> Result<Secret, DocError> {
        let resolved = r
            .resolve(self.base_dir, self.secret_roots)
            .map_err(|m| DocError::new(path, m))?;
        if resolved.literal {
            self.warnings.push(DocError::new(
                path,
                "secret written literally; prefer {env: NAME} or {file: PATH}",
            ));
        }
        self.credential(resolved.secret.expose());
        Ok(resolved.secret)
    }

    /// Resolves a URL that may carry credentials: a literal one is fine unless it visibly
    /// carries a credential (userinfo, `key=`, `access_token=`, a hook token, …). One from a
    /// reference is shown as scheme and host only.
    pub fn url(&mut self, r: &SecretRef, path: &str) -> Result<SecretUrl, DocError> {
        let resolved = r
            .resolve(self.base_dir, self.secret_roots)
            .map_err(|m| DocError::new(path, m))?;
        let url = SecretUrl::new(resolved.secret, !resolved.literal);
        if resolved.literal && url.shown() != url.expose() {
            self.warnings.push(DocError::new(
                path,
                "URL carries a credential written literally; prefer {env: NAME} or {file: PATH}",
            ));
        }
        for c in url.credentials() {
            self.credential(c);
        }
        Ok(url)
    }

    /// Registers a credential the document's resource holds in a form of its own (a key
    /// percent-encoded into a URL): its errors are scrubbed of it too.
    pub fn credential(&mut self, value: &str) {
        if !value.is_empty() && !self.credentials.iter().any(|c| c.expose() == value) {
            self.credentials.push(Secret::new(value));
        }
    }
}
