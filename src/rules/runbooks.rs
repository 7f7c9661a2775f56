//! The runbooks: `docs/runbooks.md`, embedded, one `## <AlertName>` section per
//! shipped alert. A rule's `runbook_url` annotation names its section relative to the
//! daemon (`/runbooks#<anchor>`); m4watch serves the file at `GET /runbooks`
//! (api::pages) and `m4watch validate` checks that every rule an instance runs links
//! to a section that exists.

/// `docs/runbooks.md` as shipped.
pub(crate) const MARKDOWN: &str = include_str!("../../docs/runbooks.md");

/// Where m4watch serves the runbooks, and the prefix of a relative `runbook_url`.
pub(crate) const PATH: &str = "/runbooks";

/// The fragment GitHub gives a heading, so one `runbook_url` works on GitHub and on
/// `/runbooks`: lower case, letters, digits, `-` and `_` kept, spaces become `-`,
/// everything else dropped (`## ContainerDown` -> `containerdown`).
pub(crate) fn anchor(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The `## ` headings of a Markdown text (outside fenced code blocks), in order.
pub(crate) fn sections(markdown: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && let Some(h) = line.strip_prefix("## ") {
            out.push(h.trim());
        }
    }
    out
}

/// Why a `runbook_url` does not lead to a section of the shipped runbooks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("no runbook_url annotation")]
    Missing,
    #[error("{0:?} is not /runbooks#<section>")]
    NotRunbooks(String),
    #[error("docs/runbooks.md has no section #{0}")]
    NoSection(String),
}

/// What a rule's `runbook_url` leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Link {
    /// A section of the shipped runbooks (its anchor).
    Section(String),
    /// Somewhere else (a desk's own wiki): not ours to check.
    External,
}

/// Checks a `runbook_url` (as written in the rule, before templating) against the
/// shipped runbooks: a relative `/runbooks#x` or a templated
/// `http://{{ $labels.instance }}/runbooks#x` must name a section; an absolute URL
/// elsewhere is external.
pub(crate) fn check_link(url: Option<&str>) -> Result<Link, LinkError> {
    let url = url
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or(LinkError::Missing)?;
    let own = if url.starts_with('/') {
        Some(url)
    } else {
        // The stack rules' links: scheme, a templated host, then our path.
        url.split_once("://")
            .filter(|(_, rest)| rest.starts_with("{{"))
            .and_then(|(_, rest)| rest.find("}}/").map(|i| &rest[i + 2..]))
    };
    let Some(path) = own else {
        return Ok(Link::External);
    };
    let fragment = path
        .strip_prefix(PATH)
        .and_then(|rest| rest.strip_prefix('#'))
        .filter(|f| !f.is_empty())
        .ok_or_else(|| LinkError::NotRunbooks(url.to_string()))?;
    if sections(MARKDOWN).iter().any(|h| anchor(h) == fragment) {
        Ok(Link::Section(fragment.to_string()))
    } else {
        Err(LinkError::NoSection(fragment.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{RuleKind, load_embedded};
    use std::collections::BTreeSet;
    use std::path::Path;

    /// The alerts of a rule file as written: (name, runbook_url, dashboard_url).
    fn alerts_in(text: &str) -> Vec<(String, Option<String>, Option<String>)> {
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).unwrap();
        let mut out = Vec::new();
        for g in doc["groups"].as_sequence().unwrap() {
            for r in g["rules"].as_sequence().unwrap() {
                let Some(name) = r["alert"].as_str() else {
                    continue;
                };
                let a = &r["annotations"];
                let get = |k: &str| a[k].as_str().map(str::to_string);
                out.push((name.to_string(), get("runbook_url"), get("dashboard_url")));
            }
        }
        out
    }

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    /// The `uid` of every shipped Grafana dashboard.
    fn dashboard_uids() -> BTreeSet<String> {
        let dir = root().join("grafana-dashboards");
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| {
                let d: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                d["uid"].as_str().unwrap().to_string()
            })
            .collect()
    }

    #[test]
    fn anchors_follow_githubs_rule() {
        assert_eq!(anchor("ContainerDown"), "containerdown");
        assert_eq!(anchor(" M4watchDown "), "m4watchdown");
        assert_eq!(anchor("What to do: now!"), "what-to-do-now");
        assert_eq!(anchor("a_b-c"), "a_b-c");
    }

    #[test]
    fn sections_skip_code_blocks_and_other_levels() {
        let md = "# T\n## One\ntext\n### Sub\n```\n## Not\n```\n##Two\n## Three \n";
        assert_eq!(sections(md), ["One", "Three"]);
    }

    #[test]
    fn links_are_checked_against_the_shipped_sections() {
        assert_eq!(
            check_link(Some("/runbooks#containerdown")),
            Ok(Link::Section("containerdown".into()))
        );
        assert_eq!(
            check_link(Some("http://{{ $labels.instance }}/runbooks#m4watchdown")),
            Ok(Link::Section("m4watchdown".into()))
        );
        assert_eq!(
            check_link(Some("https://wiki.example/desk/cpu")),
            Ok(Link::External)
        );
        assert_eq!(check_link(None), Err(LinkError::Missing));
        assert_eq!(check_link(Some(" ")), Err(LinkError::Missing));
        assert_eq!(
            check_link(Some("/runbooks#nosuchalert")),
            Err(LinkError::NoSection("nosuchalert".into()))
        );
        assert_eq!(
            check_link(Some("/docs#containerdown")),
            Err(LinkError::NotRunbooks("/docs#containerdown".into()))
        );
        assert_eq!(
            check_link(Some("/runbooks")),
            Err(LinkError::NotRunbooks("/runbooks".into()))
        );
    }

    /// Every rule m4watch ships (embedded) links to its own section and to a shipped
    /// dashboard; the rules Prometheus evaluates link to their sections on the
    /// instance; and every section is about an alert that exists.
    #[test]
    fn every_shipped_rule_has_a_runbook_section_and_a_dashboard_and_no_section_is_orphaned() {
        let uids = dashboard_uids();
        let mut alerts = BTreeSet::new();
        // The embedded rules as loaded, so a rule file the binary does not ship is not
        // counted, and the annotations as written, before templating.
        let loaded: BTreeSet<String> = load_embedded()
            .unwrap()
            .iter()
            .flat_map(|g| &g.rules)
            .filter(|r| matches!(r.kind, RuleKind::Alert { .. }))
            .map(|r| r.name.clone())
            .collect();
        for (file, text) in crate::rules::EMBEDDED {
            for (name, runbook, dashboard) in alerts_in(text) {
                assert!(loaded.contains(&name), "{file}: {name}");
                let want = format!("/runbooks#{}", anchor(&name));
                assert_eq!(runbook.as_deref(), Some(want.as_str()), "{file}: {name}");
                assert_eq!(
                    check_link(runbook.as_deref()),
                    Ok(Link::Section(anchor(&name))),
                    "{file}: {name}"
                );
                let uid = dashboard
                    .as_deref()
                    .and_then(|d| d.strip_prefix("/d/"))
                    .unwrap_or_else(|| panic!("{file}: {name}: dashboard_url {dashboard:?}"));
                assert!(uids.contains(uid), "{file}: {name}: no dashboard {uid}");
                alerts.insert(name);
            }
        }
        assert_eq!(alerts, loaded, "every embedded alert was read");
        let stack = std::fs::read_to_string(root().join("prometheus/stack.rules.yml")).unwrap();
        for (name, runbook, _) in alerts_in(&stack) {
            // The Watchdog (`vector(1)`) has no instance to link back to.
            let want = if name == "Watchdog" {
                "/runbooks#watchdog".to_string()
            } else {
                format!(
                    "http://{{{{ $labels.instance }}}}/runbooks#{}",
                    anchor(&name)
                )
            };
            assert_eq!(runbook.as_deref(), Some(want.as_str()), "stack: {name}");
            assert!(check_link(runbook.as_deref()).is_ok(), "stack: {name}");
            alerts.insert(name);
        }
        let written = sections(MARKDOWN);
        let have: BTreeSet<String> = written.iter().map(|s| s.to_string()).collect();
        assert_eq!(have.len(), written.len(), "a section is there twice");
        let orphans: Vec<&String> = have.difference(&alerts).collect();
        assert!(
            orphans.is_empty(),
            "runbook sections for no alert: {orphans:?}"
        );
        let missing: Vec<&String> = alerts.difference(&have).collect();
        assert!(
            missing.is_empty(),
            "alerts without a runbook section: {missing:?}"
        );
    }
}
