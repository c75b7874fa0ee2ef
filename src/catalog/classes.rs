//! ACP's plugin classes (`core.katanomi.dev/sink.pluginclasses`) resolved to loaded Channels:
//! a Channel of the class's name, else the one Channel of the type the class stands for. A class
//! with no Channel is a warning for its subscription — the seed guide's own value
//! `"wechat,corpwechat,email"` names classes an installation may not have — never an error that
//! drops the document.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::compiled::{CompiledFile, Item, item_error};
use super::error::CatalogError;

/// The channel types each of ACP's class names stands for, when no Channel has the class's
/// name: a personal subscription is best served by an application that can write to one
/// person, so Feishu's app bot comes before its group robot. A class that is itself a type
/// (`wecom-app`) stands for that type.
const CLASS_TYPES: &[(&str, &[&str])] = &[
    ("corpwechat", &["wecom-app"]),
    ("wecom", &["wecom-app"]),
    ("dingtalk", &["dingtalk-robot"]),
    ("feishu", &["feishu-app", "feishu-robot"]),
    ("lark", &["feishu-app", "feishu-robot"]),
    ("email", &["email"]),
    ("webhook", &["webhook"]),
];

/// Resolves every subscription's classes against the Channels in `files`, adding the Channels
/// found to its `channels`; returns a warning per class that names none (or more than one).
pub(super) fn resolve(files: &mut [CompiledFile]) -> Vec<CatalogError> {
    // Channel names by type, in name order (the message for an ambiguous class lists them).
    let mut by_type: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut names = std::collections::HashSet::new();
    for f in files.iter() {
        for (_, item) in &f.items {
            if let Item::Channel(c) = item {
                by_type.entry(c.kind).or_default().push(c.name.clone());
                names.insert(c.name.clone());
            }
        }
    }
    for list in by_type.values_mut() {
        list.sort();
    }
    let mut warnings = Vec::new();
    for f in files.iter_mut() {
        let mut resolved_items = Vec::new();
        for (i, (doc, item)) in f.items.iter().enumerate() {
            let Item::Subscription(s) = item else {
                continue;
            };
            if s.classes.is_empty() {
                continue;
            }
            let mut channels = s.channels.clone();
            let mut problems = Vec::new();
            for class in &s.classes {
                let found = if names.contains(class) {
                    Ok(class.clone())
                } else {
                    let own = [class.as_str()];
                    let types: &[&str] = CLASS_TYPES
                        .iter()
                        .find(|(c, _)| c.eq_ignore_ascii_case(class))
                        .map_or(&own, |(_, t)| t);
                    // The Channels of the first of its types that has any.
                    let of = types
                        .iter()
                        .find_map(|ty| by_type.get(ty).filter(|l| !l.is_empty()).map(|l| (ty, l)));
                    match of {
                        Some((_, list)) if list.len() == 1 => Ok(list[0].clone()),
                        Some((ty, many)) => Err(format!(
                            "plugin class {class:?} stands for type {ty}, and Channels {} are of \
                             it: name the one to use as the class",
                            many.join(", ")
                        )),
                        None => {
                            let or_type = if types == own {
                                String::new()
                            } else {
                                format!(" or of type {}", types.join(" or "))
                            };
                            Err(format!(
                                "plugin class {class:?} has no Channel (none is named \
                                 {class}{or_type}): not notified on it"
                            ))
                        }
                    }
                };
                match found {
                    Ok(name) if !channels.contains(&name) => channels.push(name),
                    Ok(_) => {}
                    Err(why) => problems.push(why),
                }
            }
            for why in problems {
                warnings.push(item_error(f, *doc, item, "/metadata/annotations", why));
            }
            if channels.is_empty() {
                warnings.push(item_error(
                    f,
                    *doc,
                    item,
                    "/metadata/annotations",
                    "none of its plugin classes has a Channel: this subscription notifies no one"
                        .into(),
                ));
            }
            resolved_items.push((i, channels));
        }
        for (i, channels) in resolved_items {
            if let (_, Item::Subscription(s)) = &mut f.items[i] {
                *s = Arc::new(crate::route::subscription::SubscriptionDef {
                    channels,
                    ..(**s).clone()
                });
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::catalog::{Catalog, Loader};
    use crate::config::Settings;

    fn wecom_app(name: &str) -> String {
        format!(
            "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {{name: {name}}}\n\
             spec: {{type: wecom-app, corpId: ww1, corpSecret: s, agentId: 1}}\n"
        )
    }

    /// The seed guide's subscription with `classes` as its plugin classes.
    fn subscription(classes: &str) -> String {
        format!(
            "kind: ClusterSubscription\napiVersion: core.katanomi.dev/v1alpha1\nmetadata:\n  \
             name: admin-sub\n  annotations:\n    \"core.katanomi.dev/sink.pluginclasses\": \
             \"{classes}\"\nspec:\n  subscriber: {{name: admin}}\n  subscriptions:\n  - events:\n    \
             - type: dev.katanomi.cloudevents.kubeevent.artifactpromotionrun.approvalpending.v1alpha1\n"
        )
    }

    fn load(dir: &Path, docs: &[String]) -> Catalog {
        std::fs::write(dir.join("10.yaml"), docs.join("---\n")).unwrap();
        Loader::new(dir, Settings::defaults().into(), reqwest::Client::new()).load(true)
    }

    fn channels(c: &Catalog) -> Vec<String> {
        c.subscriptions
            .iter()
            .next()
            .expect("loaded")
            .channels
            .clone()
    }

    #[test]
    fn the_seed_guides_classes_load_with_a_warning_per_class_without_a_channel() {
        let dir = tempfile::tempdir().unwrap();
        // By type: the one wecom-app Channel is what `corpwechat` stands for.
        let c = load(
            dir.path(),
            &[wecom_app("ops"), subscription("wechat,corpwechat,email")],
        );
        assert!(c.report.errors.is_empty(), "{:?}", c.report.errors);
        assert_eq!(channels(&c), ["ops"]);
        let classes: Vec<_> = c
            .report
            .warnings
            .iter()
            .filter(|w| w.path == "/metadata/annotations")
            .collect();
        let warned: Vec<&str> = classes.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(warned.len(), 2, "{warned:?}");
        assert!(
            warned[0].contains("\"wechat\" has no Channel"),
            "{warned:?}"
        );
        assert!(warned[1].contains("\"email\" has no Channel"), "{warned:?}");
        assert!(warned[0].contains("(none is named wechat)"), "{warned:?}");
        assert_eq!(
            classes[0].resource.as_deref(),
            Some("Subscription admin-sub")
        );

        // By name first; a type with two Channels and no name is ambiguous, not a guess.
        let c = load(
            dir.path(),
            &[
                wecom_app("corpwechat"),
                wecom_app("other"),
                subscription("corpwechat, wecom-app"),
            ],
        );
        assert_eq!(channels(&c), ["corpwechat"]);
        let warned: Vec<&str> = c
            .report
            .warnings
            .iter()
            .filter(|w| w.path == "/metadata/annotations")
            .map(|w| w.message.as_str())
            .collect();
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(
            warned[0].contains("Channels corpwechat, other are of it"),
            "{warned:?}"
        );

        // No class with a Channel: loaded, warned that it notifies no one.
        let c = load(dir.path(), &[subscription("email")]);
        assert!(c.report.errors.is_empty(), "{:?}", c.report.errors);
        assert_eq!(c.subscriptions.len(), 1);
        assert!(channels(&c).is_empty());
        assert!(
            c.report
                .warnings
                .iter()
                .any(|w| w.message.contains("notifies no one"))
        );
    }

    /// `feishu` stands for the app bot (it can write to one person) before the group robot.
    #[test]
    fn feishu_means_the_app_bot_before_the_group_robot() {
        let dir = tempfile::tempdir().unwrap();
        let app = "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {name: lark-app}\n\
                   spec: {type: feishu-app, appId: cli_1, appSecret: s}\n"
            .to_string();
        let robot =
            "apiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {name: lark-group}\n\
                     spec: {type: feishu-robot, token: t}\n"
                .to_string();
        let c = load(dir.path(), &[app, robot.clone(), subscription("feishu")]);
        assert_eq!(channels(&c), ["lark-app"]);
        let c = load(dir.path(), &[robot, subscription("lark")]);
        assert_eq!(
            channels(&c),
            ["lark-group"],
            "the robot when there is no app bot"
        );
        let c = load(dir.path(), &[subscription("feishu")]);
        assert!(
            c.report
                .warnings
                .iter()
                .any(|w| w.message.contains("or of type feishu-app or feishu-robot")),
            "{:?}",
            c.report.warnings
        );
    }
}
