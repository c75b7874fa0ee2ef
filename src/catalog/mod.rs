//! hooks.d: the loader. Files → documents (`load`), validated against the schemas (`schema`),
//! each compiled where its definition lives (Sources in `ingress`, Channels in `channel`,
//! Templates in `render`, Routes and Subscriptions in `route`, Users in `directory`), assembled
//! with name clashes, references and last-good versions checked (`build`), and handed out as one
//! immutable [`Catalog`] that reloads swap atomically (`reload`).

mod build;
mod classes;
mod compiled;
pub mod error;
mod load;
pub mod reload;
mod schema;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::channel::ChannelDef;
use crate::directory::Directory;
use crate::ingress::SourceDef;
use crate::render::template::{self, TemplateDef};
use crate::route::def::RouteDef;
use crate::route::digest::DigestDef;
use crate::route::index::SubscriptionIndex;
use crate::route::{Routing, Unresolved};

pub use build::{Loader, compile_template};
pub use error::CatalogError;

/// How one file fared in the last load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileStatus {
    Loaded,
    /// Some documents were rejected (each keeps its last good version if it had one); the
    /// others serve.
    Partial,
    /// Unreadable or unparseable now; its last good version still serves.
    KeptPrevious,
    Rejected,
}

/// One file in the load report.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub file: PathBuf,
    /// Documents serving from it.
    pub documents: usize,
    /// Documents rejected in this load.
    #[serde(skip_serializing_if = "is_zero")]
    pub rejected: usize,
    pub status: FileStatus,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A resource serving and its origin: a document of a hooks.d file, or built in.
#[derive(Debug, Clone, Serialize)]
pub struct Serving {
    pub kind: &'static str,
    pub name: String,
    /// `None`: shipped with hookrelay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The document's place in its file (the first is 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// The outcome of a load: every file, every error and warning, and what is serving.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub files: Vec<FileReport>,
    pub errors: Vec<CatalogError>,
    pub warnings: Vec<CatalogError>,
    /// Resources serving, by kind.
    pub resources: BTreeMap<&'static str, usize>,
    /// Every resource serving and where it came from, by kind and name.
    pub serving: Vec<Serving>,
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
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    pub sources: HashMap<String, Arc<SourceDef>>,
    pub channels: HashMap<String, Arc<ChannelDef>>,
    pub templates: HashMap<String, Arc<TemplateDef>>,
    pub routes: Vec<Arc<RouteDef>>,
    pub subscriptions: SubscriptionIndex,
    /// The User directory.
    pub directory: Directory,
    /// Settings' `vars`, as templates see them.
    pub vars: Value,
    /// The UTC offset people read times in (`timezone`), for what planning says.
    pub timezone: Option<chrono::FixedOffset>,
    pub report: Report,
}

impl Catalog {
    /// What routing reads.
    pub fn routing(&self) -> Routing<'_> {
        Routing {
            routes: &self.routes,
            subscriptions: &self.subscriptions,
            channels: &self.channels,
            directory: &self.directory,
        }
    }

    /// The template for an event type when a route names none.
    pub fn template_for(&self, event_type: &str) -> Option<&Arc<TemplateDef>> {
        template::for_type(&self.templates, event_type, false)
    }

    /// The `digest:` of the Route or Subscription named `origin`.
    pub fn digest_of(&self, origin: &str) -> Option<&DigestDef> {
        match self.routes.iter().find(|r| r.name == origin) {
            Some(r) => r.digest.as_ref(),
            None => self
                .subscriptions
                .iter()
                .find(|s| s.name == origin)
                .and_then(|s| s.digest.as_deref()),
        }
    }

    /// The digest template for a digest whose first event has `event_type`, when its
    /// `digest.template` names none.
    pub fn digest_template_for(&self, event_type: &str) -> Option<&Arc<TemplateDef>> {
        template::for_type(&self.templates, event_type, true)
    }
}
