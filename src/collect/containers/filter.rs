//! Which containers are watched: `containers.include` / `containers.exclude`, by name
//! glob or label.

use std::collections::HashMap;

use crate::config::{ContainerMatch, ExpectedContainer};

/// `*` matches any run of characters, `?` exactly one; everything else literally.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Classic two-pointer wildcard match with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn matches(m: &ContainerMatch, name: &str, labels: &HashMap<String, String>) -> bool {
    m.names.iter().any(|p| glob(p, name))
        || m.labels.iter().any(|spec| match spec.split_once('=') {
            Some((k, v)) => labels.get(k.trim()).is_some_and(|have| glob(v, have)),
            None => labels.contains_key(spec.trim()),
        })
}

/// Whether a container is watched: included (or no include rule) and not excluded.
pub(crate) fn selected(
    include: &ContainerMatch,
    exclude: &ContainerMatch,
    name: &str,
    labels: &HashMap<String, String>,
) -> bool {
    (include.is_empty() || matches(include, name, labels)) && !matches(exclude, name, labels)
}

/// Whether a container is one `containers.expected` entry asks for: its name matches
/// the entry's (when given) and it carries every label the entry lists.
pub(crate) fn expected(
    e: &ExpectedContainer,
    name: &str,
    labels: &HashMap<String, String>,
) -> bool {
    e.name.as_deref().is_none_or(|p| glob(p, name))
        && e.labels
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|have| glob(v, have)))
}

/// The indexes of the `containers.expected` entries a container matches.
pub(crate) fn expected_indexes(
    all: &[ExpectedContainer],
    name: &str,
    labels: &HashMap<String, String>,
) -> Vec<usize> {
    all.iter()
        .enumerate()
        .filter(|(_, e)| expected(e, name, labels))
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("nautilus-*", "nautilus-risk-engine"));
        assert!(glob("*engine", "nautilus-ml-engine"));
        assert!(glob("a?c", "abc"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(!glob("nautilus-*", "grafana"));
        assert!(!glob("abc", "abcd"));
    }

    #[test]
    fn include_and_exclude_by_name_and_label() {
        let labels: HashMap<String, String> = [
            ("m4watch.tier".to_string(), "engine".to_string()),
            (
                "com.docker.compose.project".to_string(),
                "nautilus".to_string(),
            ),
        ]
        .into();
        let m = |names: &[&str], labels: &[&str]| ContainerMatch {
            names: names.iter().map(|s| s.to_string()).collect(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
        };
        let none = ContainerMatch::default();
        assert!(selected(&none, &none, "anything", &HashMap::new()));
        assert!(selected(
            &m(&["nautilus-*"], &[]),
            &none,
            "nautilus-redis",
            &labels
        ));
        assert!(!selected(
            &m(&["nautilus-*"], &[]),
            &none,
            "redis",
            &HashMap::new()
        ));
        assert!(selected(
            &m(&[], &["m4watch.tier=eng*"]),
            &none,
            "x",
            &labels
        ));
        assert!(selected(&m(&[], &["m4watch.tier"]), &none, "x", &labels));
        assert!(!selected(
            &m(&[], &["m4watch.tier=db"]),
            &none,
            "x",
            &labels
        ));
        assert!(!selected(
            &none,
            &m(&[], &["com.docker.compose.project=nautilus"]),
            "x",
            &labels
        ));
        assert!(!selected(
            &m(&["*"], &[]),
            &m(&["*-test"], &[]),
            "a-test",
            &labels
        ));
    }

    #[test]
    fn expected_entries_match_by_name_and_every_label() {
        let labels: HashMap<String, String> = [
            ("app".to_string(), "fix-gateway".to_string()),
            ("venue".to_string(), "xlon".to_string()),
        ]
        .into();
        let e = |name: Option<&str>, l: &[(&str, &str)]| ExpectedContainer {
            name: name.map(str::to_string),
            labels: l
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert!(expected(
            &e(Some("order-gateway"), &[]),
            "order-gateway",
            &labels
        ));
        assert!(!expected(
            &e(Some("order-gateway"), &[]),
            "order-gateway-2",
            &labels
        ));
        assert!(expected(
            &e(Some("order-gateway*"), &[]),
            "order-gateway-2",
            &labels
        ));
        assert!(expected(&e(None, &[("app", "fix-gateway")]), "x", &labels));
        assert!(expected(
            &e(None, &[("app", "fix-*"), ("venue", "xlon")]),
            "x",
            &labels
        ));
        // Every label must match, and the name too when given.
        assert!(!expected(
            &e(None, &[("app", "fix-gateway"), ("venue", "xpar")]),
            "x",
            &labels
        ));
        assert!(!expected(
            &e(Some("y"), &[("app", "fix-gateway")]),
            "x",
            &labels
        ));
        assert!(!expected(
            &e(None, &[("app", "fix-gateway")]),
            "x",
            &HashMap::new()
        ));
        let all = [
            e(Some("x"), &[]),
            e(Some("z"), &[]),
            e(None, &[("venue", "xlon")]),
        ];
        assert_eq!(expected_indexes(&all, "x", &labels), vec![0, 2]);
    }
}
