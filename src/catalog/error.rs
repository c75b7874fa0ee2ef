//! What went wrong (or deserves a warning) in which file, document and field of hooks.d.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::doc::DocError;

/// A problem located in hooks.d: file, document (1-based; 0 = the file as a whole), the
/// resource if known, field path and reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogError {
    pub file: PathBuf,
    pub document: usize,
    /// The line the document starts on, where the file is YAML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    pub path: String,
    pub message: String,
}

impl CatalogError {
    pub fn file(file: PathBuf, message: impl Into<String>) -> CatalogError {
        CatalogError {
            file,
            document: 0,
            line: None,
            resource: None,
            path: String::new(),
            message: message.into(),
        }
    }

    pub fn in_doc(
        file: PathBuf,
        document: usize,
        resource: Option<String>,
        e: DocError,
    ) -> CatalogError {
        CatalogError {
            file,
            document,
            line: None,
            resource,
            path: e.path,
            message: e.message,
        }
    }
}

impl CatalogError {
    /// The same, located at the line its document starts on.
    pub fn at_line(self, line: Option<usize>) -> CatalogError {
        CatalogError { line, ..self }
    }

    /// What it says without the file name, for a listing grouped by file.
    pub fn within_file(&self) -> String {
        let mut out = String::new();
        if let Some(line) = self.line {
            out.push_str(&format!("line {line}, "));
        }
        if self.document > 0 {
            out.push_str(&format!("document {}", self.document));
        }
        if let Some(r) = &self.resource {
            out.push_str(&format!(" ({r})"));
        }
        if !self.path.is_empty() {
            out.push_str(&format!(": {}", self.path));
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&self.message);
        out
    }
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.document > 0 {
            write!(f, ": document {}", self.document)?;
        }
        if let Some(r) = &self.resource {
            write!(f, " ({r})")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_document_resource_and_field() {
        let e = CatalogError::in_doc(
            "hooks.d/10-cnb.yaml".into(),
            2,
            Some("Source cnb".into()),
            DocError::new("/spec/auth/token", "\"secret\" is a required property"),
        );
        assert_eq!(
            e.to_string(),
            "hooks.d/10-cnb.yaml: document 2 (Source cnb): /spec/auth/token: \"secret\" is a required property"
        );
        assert_eq!(
            CatalogError::file("x.yaml".into(), "not YAML").to_string(),
            "x.yaml: not YAML"
        );
    }
}
