//! Turns hooks.d into a [`Catalog`]: compile each file's documents, keep the last good version of
//! a file that broke, drop files whose names clash or whose references dangle, assemble.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::error::CatalogError;
use super::load::{self, RawDoc};
use super::{Catalog, FileReport, FileStatus, Report, schema};
use crate::channel::{self, ChannelDef};
use crate::config::Settings;
use crate::directory::{self, User};
use crate::doc::{DocCtx, DocError};
use crate::ingress::source::{self, SourceDef};
use crate::render::template::{self, TemplateDef};
use crate::route::def::{self as route, RouteDef};
use crate::route::index::SubscriptionIndex;
use crate::route::subscription::{self, SubscriptionDef};
use crate::route::{Unresolved, address};

/// One compiled resource.
#[derive(Debug, Clone)]
enum Item {
    Source(Arc<SourceDef>),
    Channel(Arc<ChannelDef>),
    Template(Arc<TemplateDef>),
    Route(Arc<RouteDef>),
    Subscription(Arc<SubscriptionDef>),
    User(Arc<User>),
}

impl Item {
    fn kind(&self) -> &'static str {
        match self {
            Item::Source(_) => "Source",
            Item::Channel(_) => "Channel",
            Item::Template(_) => "Template",
            Item::Route(_) => "Route",
            Item::Subscription(_) => "Subscription",
            Item::User(_) => "User",
        }
    }

    fn name(&self) -> &str {
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
    fn references(&self) -> Vec<(&'static str, &str, String)> {
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
                refs
            }
            Item::Subscription(s) => s
                .channels
                .iter()
                .map(|c| ("Channel", c.as_str(), "/spec/channels".to_string()))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A file's compiled documents, with the text they came from.
#[derive(Debug, Clone)]
struct CompiledFile {
    path: PathBuf,
    text: String,
    items: Vec<(usize, Item)>,
    warnings: Vec<CatalogError>,
}

/// Loads hooks.d, remembering the last good version of every file across reloads.
pub struct Loader {
    dir: PathBuf,
    /// hooks.d, then the `secret_dirs` setting: where `{file: …}` secrets may be read.
    secret_roots: Vec<PathBuf>,
    settings: Arc<Settings>,
    http: reqwest::Client,
    last_good: HashMap<PathBuf, CompiledFile>,
}

impl Loader {
    pub fn new(dir: &Path, settings: Arc<Settings>, http: reqwest::Client) -> Loader {
        crate::message::set_language(&settings.vars);
        let secret_roots = std::iter::once(dir.to_path_buf())
            .chain(settings.secret_dirs.iter().cloned())
            .collect();
        Loader {
            dir: dir.to_path_buf(),
            secret_roots,
            settings,
            http,
            last_good: HashMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the directory. Files whose text did not change since their last good load are
    /// reused as they are (channels keep their token caches) unless `recompile_all`
    /// (SIGHUP: secrets behind `{file: …}` may have rotated).
    pub fn load(&mut self, recompile_all: bool) -> Catalog {
        let mut report = Report::default();
        let paths = match load::resource_files(&self.dir) {
            Ok(p) => p,
            Err(e) => {
                report.errors.push(CatalogError::file(
                    self.dir.clone(),
                    format!("cannot read the hooks directory: {e}"),
                ));
                Vec::new()
            }
        };
        let mut files = Vec::new();
        let mut fresh = HashSet::new();
        for path in &paths {
            let text = std::fs::read_to_string(path);
            let previous = self.last_good.get(path);
            if let (Ok(t), Some(prev), false) = (&text, previous, recompile_all)
                && *t == prev.text
            {
                report.files.push(file_report(prev, FileStatus::Loaded));
                files.push(prev.clone());
                continue;
            }
            let compiled = match text {
                Ok(t) => self.compile_file(path, t),
                Err(e) => Err(vec![CatalogError::file(
                    path.clone(),
                    format!("cannot read: {e}"),
                )]),
            };
            match compiled {
                Ok(cf) => {
                    report.files.push(file_report(&cf, FileStatus::Loaded));
                    fresh.insert(path.clone());
                    files.push(cf);
                }
                Err(errors) => {
                    report.errors.extend(errors);
                    match previous {
                        Some(prev) => {
                            report
                                .files
                                .push(file_report(prev, FileStatus::KeptPrevious));
                            files.push(prev.clone());
                        }
                        None => report.files.push(FileReport {
                            file: path.clone(),
                            documents: 0,
                            status: FileStatus::Rejected,
                        }),
                    }
                }
            }
        }
        let (files, rejected) = cross_check(files, &mut report.errors);
        for r in report.files.iter_mut() {
            if rejected.contains(&r.file) {
                r.status = FileStatus::Rejected;
            }
        }
        self.last_good.retain(|p, _| paths.contains(p));
        for f in &files {
            if fresh.contains(&f.path) {
                self.last_good.insert(f.path.clone(), f.clone());
            }
            report.warnings.extend(f.warnings.iter().cloned());
        }
        assemble(files, &self.settings, report)
    }

    fn compile_file(&self, path: &Path, text: String) -> Result<CompiledFile, Vec<CatalogError>> {
        let docs = load::parse_documents(path, &text).map_err(|e| vec![e])?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let mut items = Vec::new();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for doc in &docs {
            let mut ctx = DocCtx::new(base_dir, &self.secret_roots, &self.settings, &self.http);
            let resource = describe(&doc.value);
            match compile_doc(doc, &mut ctx) {
                Ok(item) => items.push((doc.index, item)),
                Err(errs) => errors.extend(errs.into_iter().map(|e| {
                    CatalogError::in_doc(path.to_path_buf(), doc.index, resource.clone(), e)
                })),
            }
            warnings.extend(
                ctx.warnings.into_iter().map(|w| {
                    CatalogError::in_doc(path.to_path_buf(), doc.index, resource.clone(), w)
                }),
            );
        }
        if errors.is_empty() {
            Ok(CompiledFile {
                path: path.to_path_buf(),
                text,
                items,
                warnings,
            })
        } else {
            Err(errors)
        }
    }
}

fn file_report(f: &CompiledFile, status: FileStatus) -> FileReport {
    FileReport {
        file: f.path.clone(),
        documents: f.items.len(),
        status,
    }
}

/// "Kind name" of a document, when it says.
fn describe(doc: &Value) -> Option<String> {
    let kind = doc.get("kind")?.as_str()?;
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    Some(format!("{kind} {name}"))
}

fn compile_doc(doc: &RawDoc, ctx: &mut DocCtx<'_>) -> Result<Item, Vec<DocError>> {
    let v = &doc.value;
    let Some(kind) = v.get("kind").and_then(Value::as_str) else {
        return Err(vec![DocError::new("/kind", "every document needs a kind")]);
    };
    let errors = schema::validate(kind, v).ok_or_else(|| {
        let known: Vec<&str> = schema::kinds().collect();
        vec![DocError::new(
            "/kind",
            format!(
                "unknown kind {kind:?}; expected one of {}",
                known.join(", ")
            ),
        )]
    })?;
    if !errors.is_empty() {
        return Err(errors);
    }
    let name = v
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let spec = &v["spec"];
    Ok(match kind {
        "Source" => Item::Source(Arc::new(source::compile(name, spec, ctx)?)),
        "Channel" => Item::Channel(Arc::new(channel::def::compile(name, spec, ctx)?)),
        "Template" => Item::Template(Arc::new(template::compile(name, spec)?)),
        "Route" => Item::Route(Arc::new(route::compile(name, spec)?)),
        "Subscription" | "ClusterSubscription" => {
            Item::Subscription(Arc::new(subscription::compile(name, v, &mut ctx.warnings)?))
        }
        "User" => Item::User(Arc::new(directory::compile(name, spec)?)),
        other => unreachable!("schema exists for {other} but no compiler"),
    })
}

/// Removes files whose resources clash by name with an earlier file or name resources that do
/// not exist, until what remains is consistent. Returns the survivors and the rejected paths.
fn cross_check(
    mut files: Vec<CompiledFile>,
    errors: &mut Vec<CatalogError>,
) -> (Vec<CompiledFile>, HashSet<PathBuf>) {
    let mut rejected = HashSet::new();
    loop {
        let mut defined: HashMap<(&'static str, String), PathBuf> = HashMap::new();
        let mut bad = HashSet::new();
        for f in &files {
            for (doc, item) in &f.items {
                let key = (item.kind(), item.name().to_string());
                if let Some(first) = defined.get(&key) {
                    errors.push(CatalogError::in_doc(
                        f.path.clone(),
                        *doc,
                        Some(format!("{} {}", item.kind(), item.name())),
                        DocError::new(
                            "/metadata/name",
                            format!(
                                "{} {} is already defined in {}",
                                item.kind(),
                                item.name(),
                                first.display()
                            ),
                        ),
                    ));
                    bad.insert(f.path.clone());
                } else {
                    defined.insert(key, f.path.clone());
                }
            }
        }
        let mut dangling = HashSet::new();
        for f in files.iter().filter(|f| !bad.contains(&f.path)) {
            for (doc, item) in &f.items {
                for (kind, name, path) in item.references() {
                    if !defined.contains_key(&(kind, name.to_string())) {
                        errors.push(CatalogError::in_doc(
                            f.path.clone(),
                            *doc,
                            Some(format!("{} {}", item.kind(), item.name())),
                            DocError::new(path, format!("no {kind} named {name:?} is loaded")),
                        ));
                        dangling.insert(f.path.clone());
                    }
                }
            }
        }
        bad.extend(dangling);
        if bad.is_empty() {
            return (files, rejected);
        }
        files.retain(|f| !bad.contains(&f.path));
        rejected.extend(bad);
    }
}

fn assemble(files: Vec<CompiledFile>, settings: &Settings, mut report: Report) -> Catalog {
    let mut c = Catalog {
        vars: serde_json::to_value(&settings.vars).unwrap_or(Value::Null),
        ..Catalog::default()
    };
    let mut subscriptions = Vec::new();
    for f in files {
        for (_, item) in f.items {
            *report.resources.entry(item.kind()).or_default() += 1;
            match item {
                Item::Source(x) => {
                    c.sources.insert(x.name.clone(), x);
                }
                Item::Channel(x) => {
                    c.channels.insert(x.name.clone(), x);
                }
                Item::Template(x) => {
                    c.templates.insert(x.name.clone(), x);
                }
                Item::Route(x) => c.routes.push(x),
                Item::Subscription(x) => subscriptions.push(x),
                Item::User(x) => c.directory.insert(x),
            }
        }
    }
    // Built-in templates serve unless hooks.d defines one with the same name.
    for t in template::builtin() {
        if !c.templates.contains_key(&t.name) {
            *report.resources.entry("Template (built-in)").or_default() += 1;
            c.templates.insert(t.name.clone(), t.clone());
        }
    }
    c.routes.sort_by(|a, b| a.name.cmp(&b.name));
    subscriptions.sort_by(|a, b| a.name.cmp(&b.name));
    // Report every subscriber the directory cannot reach on one of their channels now, rather
    // than when their first event is silently lost.
    for s in &subscriptions {
        for name in &s.channels {
            if let Some(ch) = c.channels.get(name)
                && address(c.directory.get(&s.subscriber), &s.subscriber, ch).is_none()
            {
                report.unresolved.push(Unresolved {
                    origin: s.name.clone(),
                    user: s.subscriber.clone(),
                    channel: name.clone(),
                    as_written: false,
                });
            }
        }
    }
    c.subscriptions = SubscriptionIndex::build(subscriptions);
    c.report = report;
    c
}
