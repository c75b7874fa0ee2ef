//! hooks.d: the resource catalog — read, validate against the schemas, resolve secrets,
//! cross-check references, and hand out one immutable [`Catalog`] that reloads swap atomically.

mod build;
pub mod channel;
pub mod error;
mod load;
pub mod pattern;
mod preset;
pub mod reload;
pub mod route;
mod schema;
pub mod source;
pub mod subscription;
pub mod template;
pub mod user;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::config::Settings;
use crate::route::Unresolved;
use crate::route::index::SubscriptionIndex;
use crate::secret::{Secret, SecretRef, SecretUrl};

pub use build::Loader;
pub use channel::ChannelDef;
pub use error::{CatalogError, DocError};
pub use route::RouteDef;
pub use source::SourceDef;
pub use template::TemplateDef;
pub use user::UserDef;

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
}

impl DocCtx<'_> {
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
        Ok(url)
    }
}

/// How one file fared in the last load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileStatus {
    Loaded,
    /// Rejected now; its last good version still serves.
    KeptPrevious,
    Rejected,
}

/// One file in the load report.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub file: PathBuf,
    pub documents: usize,
    pub status: FileStatus,
}

/// The outcome of a load: every file, every error and warning, and what is serving.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub files: Vec<FileReport>,
    pub errors: Vec<CatalogError>,
    pub warnings: Vec<CatalogError>,
    /// Resources serving, by kind.
    pub resources: BTreeMap<&'static str, usize>,
    /// Subscribers the directory cannot address on one of their channels.
    pub unresolved: Vec<Unresolved>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

/// An immutable, validated set of resources. Requests hold an `Arc` to the one current when
/// they started; a reload swaps in a new one without disturbing them.
#[derive(Debug, Default)]
pub struct Catalog {
    pub sources: HashMap<String, Arc<SourceDef>>,
    pub channels: HashMap<String, Arc<ChannelDef>>,
    pub templates: HashMap<String, Arc<TemplateDef>>,
    pub routes: Vec<Arc<RouteDef>>,
    pub subscriptions: SubscriptionIndex,
    /// The User directory, by platform user name.
    pub users: HashMap<String, Arc<UserDef>>,
    /// User names by mail address.
    pub users_by_mail: HashMap<String, String>,
    /// Settings' `vars`, as templates see them.
    pub vars: Value,
    pub report: Report,
}

impl Catalog {
    /// The template for an event type when a route names none: the most specific `types`
    /// match (exact over glob, longer glob over shorter); on a tie hooks.d beats the built-ins,
    /// then names decide.
    pub fn template_for(&self, event_type: &str) -> Option<&Arc<TemplateDef>> {
        self.templates
            .values()
            .filter_map(|t| t.types.specificity(event_type).map(|s| (s, t)))
            .max_by(|(sa, a), (sb, b)| {
                sa.cmp(sb)
                    .then_with(|| b.builtin.cmp(&a.builtin))
                    .then_with(|| b.name.cmp(&a.name))
            })
            .map(|(_, t)| t)
    }
}
