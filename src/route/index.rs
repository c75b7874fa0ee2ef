//! Finds the subscription rules an event may match without trying them all: by event type
//! first; then by a string the rule's CEL filter requires (typically the subscriber's name,
//! which must appear in the event), else by the namespace of the object it concerns. CEL runs
//! only on what is left.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::cel::strings;
use super::subscription::{Rule, SubscriptionDef};

/// A rule's position: (subscription, rule within it).
type RuleRef = (u32, u32);

#[derive(Debug, Default, Clone)]
struct Bucket {
    /// Rules that can only match an event containing one of these strings.
    by_literal: HashMap<String, Vec<RuleRef>>,
    by_namespace: HashMap<String, Vec<RuleRef>>,
    any_namespace: Vec<RuleRef>,
}

/// The subscriptions of a catalog, indexed.
#[derive(Debug, Default, Clone)]
pub struct SubscriptionIndex {
    subscriptions: Vec<Arc<SubscriptionDef>>,
    by_type: HashMap<String, Bucket>,
    /// Rules whose type is a glob: checked for every event.
    globbed: Vec<RuleRef>,
}

impl SubscriptionIndex {
    pub fn build(subscriptions: Vec<Arc<SubscriptionDef>>) -> SubscriptionIndex {
        let mut index = SubscriptionIndex::default();
        for (s, sub) in subscriptions.iter().enumerate() {
            for (r, rule) in sub.rules.iter().enumerate() {
                let at = (s as u32, r as u32);
                if rule.types.has_globs() {
                    index.globbed.push(at);
                    continue;
                }
                let bucket = index.by_type.entry(rule.ty.clone()).or_default();
                let literals = rule.filter.cel.as_ref().and_then(|c| c.required_literals());
                match (literals, &rule.object.namespace) {
                    (Some(lits), _) => {
                        for l in lits {
                            bucket.by_literal.entry(l.clone()).or_default().push(at);
                        }
                    }
                    (None, Some(ns)) => bucket.by_namespace.entry(ns.clone()).or_default().push(at),
                    (None, None) => bucket.any_namespace.push(at),
                }
            }
        }
        index.subscriptions = subscriptions;
        index
    }

    pub fn len(&self) -> usize {
        self.subscriptions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<SubscriptionDef>> {
        self.subscriptions.iter()
    }

    /// The rules an event of `event_type` about an object in `namespace`, whose CloudEvents
    /// JSON is `ce`, may match, in subscription order.
    pub fn candidates(
        &self,
        event_type: &str,
        namespace: Option<&str>,
        ce: &Value,
    ) -> Vec<(u32, &Rule)> {
        let mut out: Vec<RuleRef> = Vec::new();
        if let Some(bucket) = self.by_type.get(event_type) {
            if !bucket.by_literal.is_empty() {
                let mut present = HashSet::new();
                strings(ce, &mut present);
                for s in present {
                    if let Some(rules) = bucket.by_literal.get(s) {
                        out.extend_from_slice(rules);
                    }
                }
            }
            if let Some(ns) = namespace
                && let Some(rules) = bucket.by_namespace.get(ns)
            {
                out.extend_from_slice(rules);
            }
            out.extend_from_slice(&bucket.any_namespace);
        }
        out.extend(self.globbed.iter().filter(|(s, r)| {
            self.subscriptions[*s as usize].rules[*r as usize]
                .types
                .matches(event_type)
        }));
        out.sort_unstable();
        out.dedup();
        out.into_iter()
            .map(|(s, r)| (s, &self.subscriptions[s as usize].rules[r as usize]))
            .collect()
    }

    pub fn get(&self, s: u32) -> &Arc<SubscriptionDef> {
        &self.subscriptions[s as usize]
    }
}
