//! Event filters: exact / prefix / suffix on CloudEvents attributes and extensions, a CEL
//! expression over `ce`, and the Kubernetes object an event is about.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::cel::{CelFilter, CelInput, substitute};
use crate::doc::DocError;
use crate::event::Event;

/// A filter as written in hooks.d.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FilterSpec {
    #[serde(default)]
    pub exact: BTreeMap<String, String>,
    #[serde(default)]
    pub prefix: BTreeMap<String, String>,
    #[serde(default)]
    pub suffix: BTreeMap<String, String>,
    pub cel: Option<String>,
}

/// How an attribute is compared with the wanted value.
type Test = fn(&str, &str) -> bool;

/// One kind of attribute condition: its name, the (attribute, wanted) pairs, the comparison.
type Condition<'a> = (&'static str, &'a Vec<(String, String)>, Test);

/// A compiled filter. All parts must hold.
#[derive(Debug, Default)]
pub struct Filter {
    /// Exact attribute values (also what indexes use).
    pub exact: Vec<(String, String)>,
    prefix: Vec<(String, String)>,
    suffix: Vec<(String, String)>,
    pub cel: Option<CelFilter>,
}

impl Filter {
    /// Compiles `spec`; `placeholders` are the `$(…)` values the CEL text may use. `path` locates
    /// the filter in its document.
    pub fn compile(
        spec: &FilterSpec,
        placeholders: &[(&str, &str)],
        path: &str,
    ) -> Result<Filter, DocError> {
        let cel = match &spec.cel {
            None => None,
            Some(text) => {
                let cel_path = format!("{path}/cel");
                let source =
                    substitute(text, placeholders).map_err(|m| DocError::new(&cel_path, m))?;
                Some(CelFilter::compile(&source).map_err(|m| DocError::new(&cel_path, m))?)
            }
        };
        let pairs =
            |m: &BTreeMap<String, String>| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(Filter {
            exact: pairs(&spec.exact),
            prefix: pairs(&spec.prefix),
            suffix: pairs(&spec.suffix),
            cel,
        })
    }

    /// The attribute parts (cheap; no CEL).
    pub fn matches_attributes(&self, e: &Event) -> bool {
        self.first_failing(e).is_none()
    }

    /// The first attribute condition `e` fails: (exact | prefix | suffix, attribute, wanted).
    pub fn first_failing(&self, e: &Event) -> Option<(&'static str, &str, &str)> {
        let holds = |k: &str, test: &dyn Fn(&str) -> bool| e.attribute(k).is_some_and(|v| test(&v));
        let conditions: [Condition<'_>; 3] = [
            ("exact", &self.exact, |a, v| a == v),
            ("prefix", &self.prefix, |a, v| a.starts_with(v)),
            ("suffix", &self.suffix, |a, v| a.ends_with(v)),
        ];
        conditions.into_iter().find_map(|(kind, pairs, test)| {
            pairs
                .iter()
                .find(|(k, v)| !holds(k, &|a| test(a, v)))
                .map(|(k, v)| (kind, k.as_str(), v.as_str()))
        })
    }

    /// The CEL part; `Err` (a runtime error) is a non-match the caller counts.
    pub fn matches_cel(&self, input: &CelInput) -> Result<bool, String> {
        match &self.cel {
            None => Ok(true),
            Some(c) => c.matches(input),
        }
    }
}

/// A Kubernetes object filter: `object: {kind, apiVersion, namespace}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSpec {
    pub kind: Option<String>,
    pub api_version: Option<String>,
    pub namespace: Option<String>,
}

/// What an event says about the object it concerns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectFacts {
    pub kind: Option<String>,
    /// Lower-case plural resource name, when only the path told (ApiServerSource subjects).
    pub resource: Option<String>,
    pub group: Option<String>,
    pub version: Option<String>,
    pub namespace: Option<String>,
}

impl ObjectFacts {
    /// Reads enriched kube-event extensions (`involvedobject*`), else ApiServerSource's
    /// `kind`/`namespace` extensions and its `/apis/<group>/<version>/namespaces/<ns>/<resource>/<name>`
    /// subject.
    pub fn of(e: &Event) -> ObjectFacts {
        let ext = |k: &str| e.attribute(k).map(|v| v.into_owned());
        if let Some(kind) = ext("involvedobjectkind") {
            return ObjectFacts {
                kind: Some(kind),
                resource: None,
                group: ext("involvedobjectgroup"),
                version: ext("involvedobjectversion"),
                namespace: ext("involvedobjectnamespace"),
            };
        }
        let mut facts = ObjectFacts {
            kind: ext("kind"),
            namespace: ext("namespace"),
            ..ObjectFacts::default()
        };
        if let Some(subject) = &e.subject {
            let parts: Vec<&str> = subject.trim_matches('/').split('/').collect();
            let (group, version, rest) = match parts.as_slice() {
                ["apis", g, v, rest @ ..] => (*g, *v, rest),
                ["api", v, rest @ ..] => ("", *v, rest),
                _ => return facts,
            };
            facts.group = Some(group.to_string());
            facts.version = Some(version.to_string());
            match rest {
                ["namespaces", ns, resource, ..] => {
                    facts.namespace.get_or_insert_with(|| ns.to_string());
                    facts.resource = Some(resource.to_string());
                }
                [resource, ..] => facts.resource = Some(resource.to_string()),
                [] => {}
            }
        }
        facts
    }
}

/// A compiled object filter.
#[derive(Debug, Clone, Default)]
pub struct ObjectSelector {
    pub kind: Option<String>,
    pub group: Option<String>,
    pub version: Option<String>,
    pub namespace: Option<String>,
}

impl ObjectSelector {
    pub fn new(spec: &ObjectSpec) -> ObjectSelector {
        let (group, version) = match spec.api_version.as_deref() {
            Some(av) => match av.split_once('/') {
                Some((g, v)) => (Some(g.to_string()), Some(v.to_string())),
                None => (Some(String::new()), Some(av.to_string())),
            },
            None => (None, None),
        };
        ObjectSelector {
            kind: spec.kind.clone(),
            group,
            version,
            namespace: spec.namespace.clone().filter(|n| !n.is_empty()),
        }
    }

    pub fn matches(&self, f: &ObjectFacts) -> bool {
        self.mismatch(f).is_none()
    }

    /// The first part of the object `f` describes that this selector does not accept:
    /// (field, wanted).
    pub fn mismatch(&self, f: &ObjectFacts) -> Option<(&'static str, &str)> {
        let same = |want: &Option<String>, have: &Option<String>| match (want, have) {
            (None, _) => true,
            (Some(w), Some(h)) => w == h,
            (Some(_), None) => false,
        };
        let kind_ok = match (&self.kind, &f.kind, &f.resource) {
            (None, _, _) => true,
            (Some(k), Some(have), _) => k == have,
            // Only a resource path: `ArtifactPromotionRun` ~ `artifactpromotionruns`.
            (Some(k), None, Some(resource)) => {
                resource.trim_end_matches('s') == k.to_lowercase().trim_end_matches('s')
            }
            (Some(_), None, None) => false,
        };
        fn wanted(w: &Option<String>) -> &str {
            w.as_deref().unwrap_or_default()
        }
        if !kind_ok {
            return Some(("kind", wanted(&self.kind)));
        }
        [
            ("group", &self.group, &f.group),
            ("version", &self.version, &f.version),
            ("namespace", &self.namespace, &f.namespace),
        ]
        .into_iter()
        .find(|(_, want, have)| !same(want, have))
        .map(|(field, want, _)| (field, wanted(want)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Data;
    use serde_json::json;

    fn event(extensions: serde_json::Value, subject: Option<&str>) -> Event {
        Event {
            receiver: "acp".into(),
            id: "1".into(),
            source: "/s".into(),
            ty: "t".into(),
            specversion: "1.0".into(),
            subject: subject.map(str::to_string),
            time: None,
            datacontenttype: None,
            dataschema: None,
            extensions: serde_json::from_value(extensions).unwrap(),
            data: Data::None,
            message: None,
        }
    }

    #[test]
    fn attribute_filters() {
        let spec: FilterSpec = serde_json::from_value(json!({
            "exact": {"involvedobjectkind": "ArtifactPromotionRun"},
            "prefix": {"type": "t"},
            "suffix": {"involvedobjectname": "-prod"}
        }))
        .unwrap();
        let f = Filter::compile(&spec, &[], "/f").unwrap();
        let e = event(
            json!({"involvedobjectkind": "ArtifactPromotionRun", "involvedobjectname": "app-prod"}),
            None,
        );
        assert!(f.matches_attributes(&e));
        let e = event(
            json!({"involvedobjectkind": "ArtifactPromotionRun", "involvedobjectname": "app-dev"}),
            None,
        );
        assert!(!f.matches_attributes(&e));
        assert!(!f.matches_attributes(&event(json!({}), None)));
    }

    #[test]
    fn cel_errors_are_located() {
        let spec = FilterSpec {
            cel: Some("ce.data ==".into()),
            ..FilterSpec::default()
        };
        let err = Filter::compile(&spec, &[], "/spec/subscriptions/0/events/1/filter").unwrap_err();
        assert_eq!(err.path, "/spec/subscriptions/0/events/1/filter/cel");
    }

    #[test]
    fn enriched_and_apiserver_events_describe_their_object() {
        let enriched = event(
            json!({"involvedobjectkind": "ArtifactPromotionRun", "involvedobjectgroup": "artifacts.katanomi.dev",
                   "involvedobjectversion": "v1alpha1", "involvedobjectnamespace": "devops"}),
            None,
        );
        let sel = ObjectSelector::new(&ObjectSpec {
            kind: Some("ArtifactPromotionRun".into()),
            api_version: Some("artifacts.katanomi.dev/v1alpha1".into()),
            namespace: Some("devops".into()),
        });
        assert!(sel.matches(&ObjectFacts::of(&enriched)));
        let other_ns = ObjectSelector {
            namespace: Some("devops-2".into()),
            ..sel.clone()
        };
        assert!(!other_ns.matches(&ObjectFacts::of(&enriched)));
        let raw = event(
            json!({}),
            Some(
                "/apis/artifacts.katanomi.dev/v1alpha1/namespaces/devops/artifactpromotionruns/run-1",
            ),
        );
        let facts = ObjectFacts::of(&raw);
        assert_eq!(facts.namespace.as_deref(), Some("devops"));
        assert!(sel.matches(&facts));
        let core = event(json!({}), Some("/api/v1/namespaces/devops/events/e1"));
        let events = ObjectSelector::new(&ObjectSpec {
            kind: Some("Event".into()),
            api_version: Some("v1".into()),
            namespace: None,
        });
        assert!(events.matches(&ObjectFacts::of(&core)));
    }
}
