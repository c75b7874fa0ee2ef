//! Turns hooks.d into a [`Catalog`], one document at a time: compile each, keep the last good
//! version of one that broke (of a whole file that no longer parses), drop the documents whose
//! names clash or whose references dangle, assemble.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::compiled::{CompiledFile, Item, item_error};
use super::error::CatalogError;
use super::load::{self, RawDoc};
use super::{Catalog, FileReport, FileStatus, Report, Serving, classes, schema};
use crate::channel::{self, ChannelDef};
use crate::config::Settings;
use crate::directory;
use crate::doc::{DocCtx, DocError};
use crate::ingress::source::{self, SourceDef};
use crate::render::template::{self, TemplateDef};
use crate::route::def::{self as route, RouteDef};
use crate::route::index::SubscriptionIndex;
use crate::route::subscription;
use crate::route::{Unresolved, address};

/// Loads hooks.d, remembering each file as last compiled (its errors, and the last good version
/// of each of its documents) across reloads.
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

    /// Loads the directory. Files whose text did not change since their last load are reused
    /// as they are (channels keep their token caches; their errors are reported again) unless
    /// `recompile_all` (SIGHUP: secrets behind `{file: …}` may have rotated).
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
        let mut statuses = Vec::new();
        for path in &paths {
            let text = std::fs::read_to_string(path);
            let previous = self.last_good.get(path);
            if let (Ok(t), Some(prev), false) = (&text, previous, recompile_all)
                && *t == prev.text
            {
                files.push(prev.clone());
                statuses.push(None);
                continue;
            }
            let compiled = match text {
                Ok(t) => self.compile_file(path, t, previous),
                Err(e) => Err(CatalogError::file(
                    path.clone(),
                    format!("cannot read: {e}"),
                )),
            };
            match compiled {
                Ok(cf) => {
                    self.last_good.insert(path.clone(), cf.clone());
                    files.push(cf);
                    statuses.push(None);
                }
                Err(error) => {
                    report.errors.push(error);
                    match previous {
                        Some(prev) => {
                            files.push(prev.clone());
                            statuses.push(Some(FileStatus::KeptPrevious));
                        }
                        None => report.files.push(FileReport {
                            file: path.clone(),
                            documents: 0,
                            rejected: 0,
                            status: FileStatus::Rejected,
                        }),
                    }
                }
            }
        }
        self.last_good.retain(|p, _| paths.contains(p));
        for f in &files {
            report.errors.extend(f.errors.iter().cloned());
            report.warnings.extend(f.warnings.iter().cloned());
        }
        report.warnings.extend(classes::resolve(&mut files));
        let dropped = cross_check(&mut files, &mut report.errors);
        report.warnings.extend(cannot_deliver(&files));
        for (f, status) in files.iter().zip(statuses) {
            let rejected = f.rejected + dropped.get(&f.path).copied().unwrap_or(0);
            let status = status.unwrap_or(if rejected > 0 {
                FileStatus::Partial
            } else {
                FileStatus::Loaded
            });
            report.files.push(FileReport {
                file: f.path.clone(),
                documents: f.items.len(),
                rejected,
                status,
            });
        }
        report.files.sort_by(|a, b| a.file.cmp(&b.file));
        assemble(files, &self.settings, report)
    }

    /// Compiles every document of a file. `Err` only when the file as a whole cannot be read
    /// as documents; a document that does not compile is an error of its own and keeps the
    /// version of it in `previous`, if any.
    fn compile_file(
        &self,
        path: &Path,
        text: String,
        previous: Option<&CompiledFile>,
    ) -> Result<CompiledFile, CatalogError> {
        let docs = load::parse_documents(path, &text)?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let mut cf = CompiledFile {
            path: path.to_path_buf(),
            text: String::new(),
            items: Vec::new(),
            lines: docs
                .iter()
                .filter_map(|d| d.line.map(|l| (d.index, l)))
                .collect(),
            rejected: 0,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        for doc in &docs {
            let mut ctx = DocCtx::new(base_dir, &self.secret_roots, &self.settings, &self.http);
            let resource = describe(&doc.value);
            let at = |e| {
                CatalogError::in_doc(path.to_path_buf(), doc.index, resource.clone(), e)
                    .at_line(doc.line)
            };
            match compile_doc(doc, &mut ctx) {
                Ok(item) => cf.items.push((doc.index, item)),
                Err(errs) => {
                    cf.rejected += 1;
                    cf.errors.extend(errs.into_iter().map(at));
                    let kept = previous.and_then(|p| {
                        p.items
                            .iter()
                            .find(|(_, item)| same_resource(&doc.value, item))
                    });
                    if let Some((_, item)) = kept {
                        cf.items.push((doc.index, item.clone()));
                    }
                }
            }
            cf.warnings.extend(ctx.warnings.into_iter().map(at));
        }
        cf.text = text;
        Ok(cf)
    }
}

/// Whether `doc` defines the resource `item` is (its last good version).
fn same_resource(doc: &Value, item: &Item) -> bool {
    let kind = match doc.get("kind").and_then(Value::as_str) {
        Some("ClusterSubscription") => "Subscription",
        Some(k) => k,
        None => return false,
    };
    let name = doc.pointer("/metadata/name").and_then(Value::as_str);
    kind == item.kind() && name == Some(item.name())
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

/// One Template document given as text (the console's playground edits one): parsed, checked
/// against the schema and compiled as hooks.d would, errors named as a load names them.
pub fn compile_template(text: &str) -> Result<Arc<TemplateDef>, Vec<CatalogError>> {
    let path = Path::new("(edited template)");
    let docs = load::parse_documents(path, text).map_err(|e| vec![e])?;
    let [doc] = docs.as_slice() else {
        return Err(vec![CatalogError::file(
            path.to_path_buf(),
            format!("expected one Template document, found {}", docs.len()),
        )]);
    };
    let at = |e| {
        CatalogError::in_doc(path.to_path_buf(), doc.index, describe(&doc.value), e)
            .at_line(doc.line)
    };
    let v = &doc.value;
    if v.get("kind").and_then(Value::as_str) != Some("Template") {
        return Err(vec![at(DocError::new(
            "/kind",
            "the document must be a Template",
        ))]);
    }
    let errors = schema::validate("Template", v).unwrap_or_default();
    if !errors.is_empty() {
        return Err(errors.into_iter().map(at).collect());
    }
    template::compile_document(v)
        .map(Arc::new)
        .map_err(|errs| errs.into_iter().map(at).collect())
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
        "Template" => Item::Template(Arc::new(template::compile_document(v)?)),
        "Route" => Item::Route(Arc::new(route::compile(name, spec)?)),
        "Subscription" | "ClusterSubscription" => {
            Item::Subscription(Arc::new(subscription::compile(name, v, &mut ctx.warnings)?))
        }
        "User" => Item::User(Arc::new(directory::compile(
            name,
            spec,
            ctx.settings.timezone,
        )?)),
        other => unreachable!("schema exists for {other} but no compiler"),
    })
}

/// Drops the documents whose resources clash by name with an earlier one or name resources
/// that do not exist, until what remains is consistent (dropping one may leave another's
/// reference dangling). Returns how many were dropped per file.
fn cross_check(
    files: &mut [CompiledFile],
    errors: &mut Vec<CatalogError>,
) -> HashMap<PathBuf, usize> {
    let mut dropped: HashMap<PathBuf, usize> = HashMap::new();
    loop {
        let mut defined: HashMap<(&'static str, String), PathBuf> = HashMap::new();
        let mut bad: HashSet<(PathBuf, usize)> = HashSet::new();
        for f in files.iter() {
            for (doc, item) in &f.items {
                let key = (item.kind(), item.name().to_string());
                match defined.get(&key) {
                    Some(first) => {
                        errors.push(item_error(
                            f,
                            *doc,
                            item,
                            "/metadata/name",
                            format!(
                                "{} {} is already defined in {}",
                                item.kind(),
                                item.name(),
                                first.display()
                            ),
                        ));
                        bad.insert((f.path.clone(), *doc));
                    }
                    None => {
                        defined.insert(key, f.path.clone());
                    }
                }
            }
        }
        for f in files.iter() {
            for (doc, item) in &f.items {
                if bad.contains(&(f.path.clone(), *doc)) {
                    continue;
                }
                for (kind, name, path) in item.references() {
                    // A built-in Template is there unless hooks.d replaces it.
                    let builtin =
                        kind == "Template" && template::builtin().iter().any(|t| t.name == name);
                    if !builtin && !defined.contains_key(&(kind, name.to_string())) {
                        errors.push(item_error(
                            f,
                            *doc,
                            item,
                            &path,
                            format!("no {kind} named {name:?} is loaded"),
                        ));
                        bad.insert((f.path.clone(), *doc));
                    }
                }
            }
        }
        if bad.is_empty() {
            return dropped;
        }
        for f in files.iter_mut() {
            let before = f.items.len();
            f.items
                .retain(|(doc, _)| !bad.contains(&(f.path.clone(), *doc)));
            *dropped.entry(f.path.clone()).or_default() += before - f.items.len();
        }
    }
}

/// What loads but can deliver nothing, as warnings: a Source no Route takes (and no
/// Subscription exists to); a Route to a channel that needs recipients (a WeCom application)
/// naming none, from Sources whose events do not name their own; a Template for event types
/// no Source can produce (judged only when every Source's types are known).
fn cannot_deliver(files: &[CompiledFile]) -> Vec<CatalogError> {
    let items = || {
        files
            .iter()
            .flat_map(|f| f.items.iter().map(move |(d, i)| (f, *d, i)))
    };
    let routes: Vec<&RouteDef> = items()
        .filter_map(|(_, _, i)| match i {
            Item::Route(r) => Some(&**r),
            _ => None,
        })
        .collect();
    let subscribed = items().any(|(_, _, i)| matches!(i, Item::Subscription(_)));
    let sources: Vec<&SourceDef> = items()
        .filter_map(|(_, _, i)| match i {
            Item::Source(s) => Some(&**s),
            _ => None,
        })
        .collect();
    let channels: HashMap<&str, &ChannelDef> = items()
        .filter_map(|(_, _, i)| match i {
            Item::Channel(c) => Some((c.name.as_str(), &**c)),
            _ => None,
        })
        .collect();
    let produced: Option<Vec<String>> = sources
        .iter()
        .map(|s| s.type_prefixes())
        .collect::<Option<Vec<_>>>()
        .map(|v| v.concat());
    let mut out = Vec::new();
    for (f, doc, item) in items() {
        if let (Item::Template(t), Some(produced)) = (item, &produced)
            && !t.types.is_empty()
            && !t.types.literal_prefixes().any(|want| {
                produced
                    .iter()
                    .any(|p| want.starts_with(p.as_str()) || p.starts_with(want))
            })
        {
            out.push(item_error(
                f,
                doc,
                item,
                "/spec/types",
                "no loaded Source produces events of these types".into(),
            ));
        }
        if let Item::Source(s) = item
            && !subscribed
            && !routes.iter().any(|r| r.sources.matches_or_empty(&s.name))
        {
            out.push(item_error(
                f,
                doc,
                item,
                "/metadata/name",
                "no Route takes events from this Source (and there is no Subscription): \
                     what it receives is stored and goes nowhere"
                    .into(),
            ));
        }
        if let Item::Route(r) = item
            && r.to.is_empty()
            && r.from_event.is_empty()
            && !sources
                .iter()
                .any(|s| s.carries_recipients && r.sources.matches_or_empty(&s.name))
        {
            for (i, name) in r.channels.iter().enumerate() {
                if channels
                    .get(name.as_str())
                    .is_some_and(|c| c.channel.needs_recipients())
                {
                    out.push(item_error(
                        f,
                        doc,
                        item,
                        &format!("/spec/channels/{i}"),
                        format!(
                            "Channel {name} sends only to named recipients and this Route names \
                             none (`to`): only events that carry their own `touser` reach it"
                        ),
                    ));
                }
            }
        }
    }
    out
}

fn assemble(files: Vec<CompiledFile>, settings: &Settings, mut report: Report) -> Catalog {
    let mut c = Catalog {
        vars: serde_json::to_value(&settings.vars).unwrap_or(Value::Null),
        timezone: Some(settings.timezone),
        ..Catalog::default()
    };
    let mut subscriptions = Vec::new();
    for f in files {
        for (index, item) in f.items {
            *report.resources.entry(item.kind()).or_default() += 1;
            report.serving.push(Serving {
                kind: item.kind(),
                name: item.name().to_string(),
                file: Some(f.path.clone()),
                document: Some(index),
                line: f.lines.get(&index).copied(),
            });
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
            report.serving.push(Serving {
                kind: "Template",
                name: t.name.clone(),
                file: None,
                document: None,
                line: None,
            });
            c.templates.insert(t.name.clone(), t.clone());
        }
    }
    report
        .serving
        .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
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

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE_OK: &str = "apiVersion: hookrelay.dev/v1alpha1\nkind: Source\nmetadata: {name: a}\nspec: {auth: none}\n";
    const SOURCE_BAD: &str = "apiVersion: hookrelay.dev/v1alpha1\nkind: Source\nmetadata: {name: a}\nspec: {auth: {token: {header: X-T}}}\n";
    const CHANNEL: &str = "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {name: c}\nspec: {type: webhook, url: \"http://127.0.0.1:9/in\"}\n";

    fn route(name: &str, channel: &str) -> String {
        format!(
            "apiVersion: hookrelay.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}}}\nspec: {{channels: [{channel}]}}\n"
        )
    }

    fn loader(dir: &Path) -> Loader {
        Loader::new(dir, Arc::new(Settings::defaults()), reqwest::Client::new())
    }

    fn status(c: &Catalog, file: &str) -> (FileStatus, usize, usize) {
        let r = c
            .report
            .files
            .iter()
            .find(|f| f.file.ends_with(file))
            .unwrap();
        (r.status, r.documents, r.rejected)
    }

    #[test]
    fn a_bad_oidc_key_set_names_its_field_and_the_rest_loads() {
        let dir = tempfile::tempdir().unwrap();
        let source = "apiVersion: hookrelay.dev/v1alpha1\nkind: Source\nmetadata: {name: k}\nspec:\n  auth: {oidc: {issuer: https://i, audience: a, jwks: '{\"keys\": []}'}}\n";
        std::fs::write(dir.path().join("10.yaml"), [CHANNEL, source].join("---\n")).unwrap();
        let c = loader(dir.path()).load(false);
        assert_eq!(status(&c, "10.yaml"), (FileStatus::Partial, 1, 1));
        assert!(c.channels.contains_key("c") && c.sources.is_empty());
        let e = &c.report.errors[0];
        assert_eq!((e.document, e.path.as_str()), (2, "/spec/auth/oidc/jwks"));
        assert!(e.message.contains("no keys"), "{}", e.message);
    }

    #[test]
    fn a_bad_document_is_skipped_and_its_siblings_load() {
        let dir = tempfile::tempdir().unwrap();
        let text = [CHANNEL, &route("r", "c"), SOURCE_BAD].join("---\n");
        std::fs::write(dir.path().join("10.yaml"), text).unwrap();
        let c = loader(dir.path()).load(false);
        assert_eq!(status(&c, "10.yaml"), (FileStatus::Partial, 2, 1));
        assert!(c.channels.contains_key("c") && c.routes.len() == 1);
        assert!(c.sources.is_empty());
        assert_eq!(c.report.errors.len(), 1, "{:?}", c.report.errors);
        assert_eq!(c.report.errors[0].document, 3);
    }

    #[test]
    fn a_document_that_breaks_keeps_its_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("10.yaml");
        std::fs::write(&file, [SOURCE_OK, CHANNEL].join("---\n")).unwrap();
        let mut l = loader(dir.path());
        assert_eq!(
            status(&l.load(false), "10.yaml"),
            (FileStatus::Loaded, 2, 0)
        );
        std::fs::write(&file, [SOURCE_BAD, CHANNEL].join("---\n")).unwrap();
        let c = l.load(false);
        assert!(c.sources.contains_key("a"), "the last good Source serves");
        assert_eq!(status(&c, "10.yaml"), (FileStatus::Partial, 2, 1));
        assert_eq!(c.report.errors[0].path, "/spec/auth/token");
        let again = l.load(false);
        assert_eq!(
            again.report.errors.len(),
            1,
            "an unchanged file is reported again"
        );
        assert!(again.sources.contains_key("a"));
    }

    #[test]
    fn clashes_and_dangling_references_drop_only_their_documents_in_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("10.yaml"),
            [CHANNEL, &route("r", "c")].join("---\n"),
        )
        .unwrap();
        let text = [CHANNEL, &route("lost", "nowhere"), &route("fine", "c")].join("---\n");
        std::fs::write(dir.path().join("20.yaml"), text).unwrap();
        let c = loader(dir.path()).load(false);
        let names: Vec<&str> = c.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["fine", "r"]);
        assert_eq!(status(&c, "20.yaml"), (FileStatus::Partial, 1, 2));
        let paths: Vec<&str> = c.report.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/metadata/name", "/spec/channels/0"],
            "{:?}",
            c.report.errors
        );
    }

    #[test]
    fn a_template_that_is_not_loaded_is_an_error_naming_its_field_and_a_built_in_one_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let digest = |name: &str, template: &str| {
            format!(
                "apiVersion: hookrelay.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}}}\nspec: {{channels: [c], digest: {{window: 15m, template: {template}}}}}\n"
            )
        };
        let named = "apiVersion: hookrelay.dev/v1alpha1\nkind: Route\nmetadata: {name: named}\nspec: {channels: [c], template: zadig.workflow}\n";
        let text = [
            SOURCE_OK,
            CHANNEL,
            &digest("typo", "zadig.workflow.digets"),
            &digest("ok", "zadig.workflow.digest"),
            named,
        ];
        std::fs::write(dir.path().join("10.yaml"), text.join("---\n")).unwrap();
        let c = loader(dir.path()).load(false);
        let names: Vec<&str> = c.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["named", "ok"],
            "built-in templates are found by name"
        );
        assert_eq!(c.report.errors.len(), 1, "{:?}", c.report.errors);
        let e = &c.report.errors[0];
        assert_eq!((e.document, e.path.as_str()), (3, "/spec/digest/template"));
        assert!(e.message.contains("zadig.workflow.digets"), "{}", e.message);
    }

    #[test]
    fn a_route_from_a_source_that_is_not_loaded_is_an_error_and_an_unused_source_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let from = |name: &str, source: &str| {
            format!(
                "apiVersion: hookrelay.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}}}\nspec: {{sources: [{source}], channels: [c]}}\n"
            )
        };
        let other = SOURCE_OK.replace("name: a}", "name: idle}");
        let text = [
            SOURCE_OK,
            &other,
            CHANNEL,
            &from("typo", "zadgi"),
            &from("ok", "a"),
        ];
        std::fs::write(dir.path().join("10.yaml"), text.join("---\n")).unwrap();
        let c = loader(dir.path()).load(false);
        let names: Vec<&str> = c.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["ok"]);
        assert_eq!(c.report.errors.len(), 1, "{:?}", c.report.errors);
        let e = &c.report.errors[0];
        assert_eq!((e.document, e.path.as_str()), (4, "/spec/sources"));
        assert!(
            e.message.contains("no Source named \"zadgi\""),
            "{}",
            e.message
        );
        let unused: Vec<_> = c
            .report
            .warnings
            .iter()
            .filter(|w| w.message.contains("no Route takes"))
            .collect();
        assert_eq!(unused.len(), 1, "{:?}", c.report.warnings);
        assert_eq!(unused[0].resource.as_deref(), Some("Source idle"));
    }

    #[test]
    fn a_route_to_an_application_without_recipients_is_a_warning_unless_events_name_them() {
        let app = "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {name: corp}\nspec: {type: wecom-app, corpId: ww1, corpSecret: s, agentId: 1}\n";
        let to_corp = "apiVersion: hookrelay.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {sources: [a], channels: [corp]}\n";
        let warned = |source: &str| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(
                dir.path().join("10.yaml"),
                [source, app, to_corp].join("---\n"),
            )
            .unwrap();
            let c = loader(dir.path()).load(false);
            c.report
                .warnings
                .iter()
                .any(|w| w.message.contains("sends only to named recipients"))
        };
        assert!(warned(SOURCE_OK));
        let cnb = "apiVersion: hookrelay.dev/v1alpha1\nkind: Source\nmetadata: {name: a}\nspec: {preset: cnb, auth: {token: {header: X-T, secret: t}}}\n";
        assert!(!warned(cnb), "CNB notifications carry their own touser");
    }

    #[test]
    fn a_template_for_types_no_source_produces_is_a_warning() {
        let source = "apiVersion: hookrelay.dev/v1alpha1\nkind: Source\nmetadata: {name: a}\nspec: {auth: none, event: {type: {value: app.build}}}\n";
        let template = |types: &str| {
            format!(
                "apiVersion: hookrelay.dev/v1alpha1\nkind: Template\nmetadata: {{name: t}}\nspec: {{types: [{types}], text: x}}\n"
            )
        };
        let warned = |types: &str| {
            let dir = tempfile::tempdir().unwrap();
            let text = [source, CHANNEL, &route("r", "c"), &template(types)].join("---\n");
            std::fs::write(dir.path().join("10.yaml"), text).unwrap();
            let c = loader(dir.path()).load(false);
            c.report.warnings.iter().any(|w| w.path == "/spec/types")
        };
        assert!(warned("\"zadig.*\""));
        assert!(!warned("\"app.*\""));
        assert!(!warned("app.build"));
    }
}
