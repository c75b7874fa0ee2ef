//! Exact-or-glob string patterns (`zadig.workflow.*`, `gitlab.{push,tag_push}`).

use std::collections::HashSet;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::doc::DocError;

/// A list of exact values and globs. An empty list matches nothing; callers decide whether
/// "not given" means "everything".
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    exact: HashSet<String>,
    globs: Option<GlobSet>,
    /// The glob texts, in the order the set numbers them.
    glob_texts: Vec<String>,
}

/// The characters that make a pattern a glob.
const GLOB: [char; 4] = ['*', '?', '[', '{'];

fn is_glob(p: &str) -> bool {
    p.contains(GLOB)
}

impl Patterns {
    /// Compiles `list`; `path` locates the list in its document for errors.
    pub fn compile(list: &[String], path: &str) -> Result<Patterns, DocError> {
        let mut exact = HashSet::new();
        let mut builder = GlobSetBuilder::new();
        let mut glob_texts = Vec::new();
        for (i, p) in list.iter().enumerate() {
            if is_glob(p) {
                let glob = GlobBuilder::new(p)
                    .literal_separator(false)
                    .build()
                    .map_err(|e| DocError::new(format!("{path}/{i}"), format!("bad glob: {e}")))?;
                builder.add(glob);
                glob_texts.push(p.clone());
            } else {
                exact.insert(p.clone());
            }
        }
        let globs = if glob_texts.is_empty() {
            None
        } else {
            Some(
                builder
                    .build()
                    .map_err(|e| DocError::new(path, format!("bad glob: {e}")))?,
            )
        };
        Ok(Patterns {
            exact,
            globs,
            glob_texts,
        })
    }

    /// What every value a pattern matches starts with: an exact value whole, a glob up to its
    /// first wildcard.
    pub fn literal_prefixes(&self) -> impl Iterator<Item = &str> {
        self.exact.iter().map(String::as_str).chain(
            self.glob_texts
                .iter()
                .map(|g| &g[..g.find(GLOB).unwrap_or(g.len())]),
        )
    }

    /// The exact (non-glob) values.
    pub fn exact(&self) -> impl Iterator<Item = &str> {
        self.exact.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.globs.is_none()
    }

    pub fn matches(&self, s: &str) -> bool {
        self.exact.contains(s) || self.globs.as_ref().is_some_and(|g| g.is_match(s))
    }

    /// Matches, treating an empty list as "everything".
    pub fn matches_or_empty(&self, s: &str) -> bool {
        self.is_empty() || self.matches(s)
    }

    /// Whether there is any glob.
    pub fn has_globs(&self) -> bool {
        self.globs.is_some()
    }

    /// How specifically `s` is matched: exact beats any glob; a longer glob beats a shorter one.
    pub fn specificity(&self, s: &str) -> Option<usize> {
        if self.exact.contains(s) {
            return Some(usize::MAX);
        }
        let set = self.globs.as_ref()?;
        set.matches(s)
            .into_iter()
            .map(|i| self.glob_texts[i].len())
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[&str]) -> Patterns {
        let owned: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        Patterns::compile(&owned, "/x").unwrap()
    }

    #[test]
    fn exact_and_globs() {
        let ps = p(&["cnb.notify", "zadig.workflow.*", "gitlab.{push,tag_push}"]);
        assert!(ps.matches("cnb.notify"));
        assert!(ps.matches("zadig.workflow.passed"));
        assert!(ps.matches("gitlab.tag_push"));
        assert!(!ps.matches("gitlab.merge_request"));
        assert!(!ps.matches("cnb.notify.x"));
        assert!(p(&[]).matches_or_empty("anything"));
        assert!(!p(&[]).matches("anything"));
    }

    #[test]
    fn specificity_prefers_exact_then_longer_globs() {
        let ps = p(&["*", "zadig.*", "zadig.workflow.passed"]);
        assert_eq!(ps.specificity("zadig.workflow.passed"), Some(usize::MAX));
        assert_eq!(
            ps.specificity("zadig.workflow.failed"),
            Some("zadig.*".len())
        );
        assert_eq!(ps.specificity("other"), Some(1));
        assert_eq!(p(&["a"]).specificity("b"), None);
    }

    #[test]
    fn bad_glob_is_located() {
        let err = Patterns::compile(&["ok".into(), "[".into()], "/spec/types").unwrap_err();
        assert_eq!(err.path, "/spec/types/1");
    }
}
