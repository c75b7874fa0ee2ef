//! The compiled form of hooks.d: each resource as an [`Item`], each file's items with the text
//! and lines they came from ([`CompiledFile`]), and an error pointed at one of them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::error::CatalogError;
use crate::channel::ChannelDef;
use crate::directory::User;
use crate::doc::DocError;
use crate::ingress::source::SourceDef;
use crate::render::template::TemplateDef;
use crate::route::def::RouteDef;
use crate::route::subscription::SubscriptionDef;

/// One compiled resource.
#[derive(Debug, Clone)]
pub(super) enum Item {
    Source(Arc<SourceDef>),
    Channel(Arc<ChannelDef>),
    Template(Arc<TemplateDef>),
    Route(Arc<RouteDef>),
    Subscription(Arc<SubscriptionDef>),
    User(Arc<User>),
}

impl Item {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Item::Source(_) => "Source",
            Item::Channel(_) => "Channel",
            Item::Template(_) => "Template",
            Item::Route(_) => "Route",
            Item::Subscription(_) => "Subscription",
            Item::User(_) => "User",
        }
    }

    pub(super) fn name(&self) -> &str {
        match self {
            Item::Source(x) => &x.name,
            Item::Channel(x) => &x.name,
            Item::Template(x) => &x.name,
            Item::Route(x) => &x.name,
            Item::Subscription(x) => &x.name,
            Item::User(x) => &x.name,
        }
    }

    /// Other resources this one names: (kind, name, field path).
    pub(super) fn references(&self) -> Vec<(&'static str, &str, String)> {
        match self {
            Item::Route(r) => {
                let mut refs: Vec<_> = r
                    .channels
                    .iter()
                    .enumerate()
                    .map(|(i, c)| ("Channel", c.as_str(), format!("/spec/channels/{i}")))
                    .collect();
                if let Some(t) = &r.template {
                    refs.push(("Template", t.as_str(), "/spec/template".into()));
                }
                if let Some(t) = r.digest.as_ref().and_then(|d| d.template.as_deref()) {
                    refs.push(("Template", t, "/spec/digest/template".into()));
                }
                // A glob may match a Source loaded later; a name that matches none never will.
                let mut sources: Vec<&str> = r.sources.exact().collect();
                sources.sort_unstable();
                refs.extend(
                    sources
                        .into_iter()
                        .map(|s| ("Source", s, "/spec/sources".into())),
                );
                refs
            }
            Item::Subscription(s) => s
                .channels
                .iter()
                .map(|c| ("Channel", c.as_str(), "/spec/channels".to_string()))
                .chain(
                    s.digest
                        .as_ref()
                        .and_then(|d| d.template.as_deref())
                        .map(|t| ("Template", t, "/spec/digest/template".to_string())),
                )
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A file's compiled documents, with the text they came from. Each document is its own unit:
/// one that does not compile is reported in `errors`, and serves its last good version if the
/// file had one with the same kind and name.
#[derive(Debug, Clone)]
pub(super) struct CompiledFile {
    pub(super) path: PathBuf,
    pub(super) text: String,
    pub(super) items: Vec<(usize, Item)>,
    /// The line each document starts on, by index.
    pub(super) lines: HashMap<usize, usize>,
    /// Documents that did not compile now.
    pub(super) rejected: usize,
    pub(super) errors: Vec<CatalogError>,
    pub(super) warnings: Vec<CatalogError>,
}

pub(super) fn item_error(
    f: &CompiledFile,
    doc: usize,
    item: &Item,
    path: &str,
    message: String,
) -> CatalogError {
    CatalogError::in_doc(
        f.path.clone(),
        doc,
        Some(format!("{} {}", item.kind(), item.name())),
        DocError::new(path, message),
    )
    .at_line(f.lines.get(&doc).copied())
}
