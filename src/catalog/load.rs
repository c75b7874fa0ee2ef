//! Reading hooks.d: which files count, splitting them into documents, and a fingerprint of the
//! directory for change detection.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use super::error::CatalogError;

/// One document of a file, 1-based index.
#[derive(Debug, Clone)]
pub struct RawDoc {
    pub index: usize,
    /// The 1-based line it starts on (YAML files; `None` for JSON).
    pub line: Option<usize>,
    pub value: Value,
}

/// The resource files in `dir`: `*.yaml`, `*.yml`, `*.json`, not hidden, sorted by name.
/// Subdirectories are not read (they hold secrets and data, e.g. `secrets/`).
pub fn resource_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let wanted = [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext));
        if wanted && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Splits a file into its documents. YAML files may hold several (`---`); a JSON file holds one
/// document or an array of them. Empty YAML documents are skipped but keep their index.
pub fn parse_documents(path: &Path, text: &str) -> Result<Vec<RawDoc>, CatalogError> {
    let is_json = path.extension().is_some_and(|e| e == "json");
    let values: Vec<Value> = if is_json {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => items,
            Ok(v) => vec![v],
            Err(e) => {
                return Err(CatalogError::file(
                    path.to_path_buf(),
                    format!("not valid JSON: {e}"),
                ));
            }
        }
    } else {
        serde_saphyr::from_multiple_with_options(text, yaml_options())
            .map_err(|e| CatalogError::file(path.to_path_buf(), format!("not valid YAML: {e}")))?
    };
    let starts = (!is_json).then(|| document_starts(text));
    Ok(values
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_null())
        .map(|(i, value)| RawDoc {
            index: i + 1,
            line: starts.as_ref().and_then(|s| s.get(i).copied()),
            value,
        })
        .collect())
}

/// The line each YAML document starts on: the first line, then the line after each `---`
/// (a separator on the first line opens the first document instead of closing one).
fn document_starts(text: &str) -> Vec<usize> {
    let mut starts = vec![1];
    for (i, line) in text.lines().enumerate() {
        let separator = line == "---" || line.starts_with("--- ");
        if separator {
            if i == 0 {
                starts[0] = 2;
            } else {
                starts.push(i + 2);
            }
        }
    }
    starts
}

/// The parser's resource budget, raised so one file may hold a large company's subscriptions
/// (10,000 people is ~20,000 documents) while still bounding what a hostile file can cost.
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 200_000;
    budget.max_nodes = 20_000_000;
    budget.max_events = 50_000_000;
    // No source snippet in errors: the lines around a mistake may hold a literal secret.
    serde_saphyr::options! { budget: Some(budget), with_snippet: false }
}

/// A cheap summary of the directory (names, sizes, modification times) that changes whenever a
/// resource file is added, removed or edited.
pub fn fingerprint(dir: &Path) -> Vec<Fingerprint> {
    resource_files(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            Fingerprint {
                // A Kubernetes ConfigMap swaps its `..data` symlink to a new directory: the
                // file's resolved path changes even where its size and time do not.
                target: std::fs::canonicalize(&p).ok(),
                len: meta.as_ref().map_or(0, |m| m.len()),
                modified: meta.and_then(|m| m.modified().ok()),
                path: p,
            }
        })
        .collect()
}

/// What tells a resource file's change without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    path: PathBuf,
    target: Option<PathBuf>,
    len: u64,
    modified: Option<SystemTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout the kubelet gives a mounted ConfigMap, and its update: the files are
    /// symlinks through `..data` to a timestamped directory, and an update writes a new
    /// directory and swaps `..data` to it.
    #[test]
    fn a_configmap_update_is_seen_through_its_data_symlink() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let write = |version: &str, text: &str| {
            let v = dir.path().join(version);
            std::fs::create_dir(&v).unwrap();
            std::fs::write(v.join("10-acp.yaml"), text).unwrap();
            v
        };
        let first = write("..2026_12_02_10_00_00.1", "kind: A\n");
        symlink(first.file_name().unwrap(), dir.path().join("..data")).unwrap();
        symlink("..data/10-acp.yaml", dir.path().join("10-acp.yaml")).unwrap();
        let files = resource_files(dir.path()).unwrap();
        assert_eq!(
            files,
            [dir.path().join("10-acp.yaml")],
            "the hidden entries are not read"
        );
        let before = fingerprint(dir.path());
        // Same size, same time: only where the link leads differs.
        let second = write("..2026_12_02_10_05_00.2", "kind: B\n");
        let t = std::fs::metadata(first.join("10-acp.yaml"))
            .unwrap()
            .modified()
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(second.join("10-acp.yaml"))
            .unwrap()
            .set_modified(t)
            .unwrap();
        symlink(second.file_name().unwrap(), dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
        std::fs::remove_dir_all(&first).unwrap();
        assert_ne!(fingerprint(dir.path()), before);
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert_eq!(
            parse_documents(&files[0], &text).unwrap()[0].value["kind"],
            "B"
        );
    }

    #[test]
    fn yaml_files_hold_several_documents() {
        let docs =
            parse_documents(Path::new("a.yaml"), "---\nkind: A\n---\n---\nkind: B\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].value["kind"], "A");
        assert_eq!(docs[1].value["kind"], "B");
        assert!(docs[1].index > docs[0].index);
    }

    #[test]
    fn each_yaml_document_knows_its_first_line() {
        let docs =
            parse_documents(Path::new("a.yaml"), "---\nkind: A\n---\n# note\nkind: B\n").unwrap();
        let lines: Vec<_> = docs.iter().map(|d| d.line).collect();
        assert_eq!(lines, [Some(2), Some(4)]);
        let bare = parse_documents(Path::new("a.yaml"), "kind: A\n---\nkind: B\n").unwrap();
        assert_eq!(bare[1].line, Some(3));
        assert_eq!(bare[1].index, 2);
    }

    #[test]
    fn json_files_hold_one_document_or_a_list() {
        let one = parse_documents(Path::new("a.json"), r#"{"kind":"A"}"#).unwrap();
        assert_eq!(one.len(), 1);
        let many = parse_documents(Path::new("a.json"), r#"[{"kind":"A"},{"kind":"B"}]"#).unwrap();
        assert_eq!(many[1].index, 2);
        let err = parse_documents(Path::new("a.json"), "{").unwrap_err();
        assert!(err.message.contains("JSON"));
    }

    #[test]
    fn a_file_may_hold_thousands_of_documents() {
        let text = "kind: A\n---\n".repeat(5000);
        assert_eq!(
            parse_documents(Path::new("big.yaml"), &text).unwrap().len(),
            5000
        );
    }

    #[test]
    fn bad_yaml_is_a_file_error() {
        let err = parse_documents(Path::new("a.yaml"), "kind: [unclosed\n").unwrap_err();
        assert_eq!(err.document, 0);
        assert!(err.message.contains("YAML"), "{}", err.message);
    }

    #[test]
    fn only_resource_files_count() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.yaml", "a.yml", "c.json", "notes.md", ".hidden.yaml"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("secrets.yaml")).unwrap();
        let names: Vec<String> = resource_files(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.yml", "b.yaml", "c.json"]);
    }
}
