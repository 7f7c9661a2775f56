//! statsd_exporter-style mapping rules: a dotted Graphite-style name such as
//! `orders.nyse.execution` becomes a series name and labels (`order_execution`,
//! `venue="nyse"`). Rules are tried in order and the first match wins; a name no rule
//! matches is kept as sent.
//!
//! Each glob compiles to one anchored regular expression (`*` becomes `([^.]+)`), so
//! matching is linear in the name whatever the pattern. The trading store maps a name
//! only when it first sees it: the series index remembers the outcome, so a busy series
//! pays nothing per line.

use regex::Regex;

use super::line::{MetricType, valid_name};
use crate::config::{Mapping, StatsdType};

/// A mapped identity: the series name and the labels the rule sets.
pub(crate) type Mapped = (String, Vec<(String, String)>);

struct Rule {
    re: Regex,
    kind: Option<MetricType>,
    name: String,
    labels: Vec<(String, String)>,
}

/// The compiled `trading.mappings`.
#[derive(Default)]
pub(crate) struct Mapper {
    rules: Vec<Rule>,
}

impl Mapper {
    /// Compiles validated rules (config validation has checked their text).
    pub(crate) fn new(mappings: &[Mapping]) -> Result<Mapper, regex::Error> {
        let rules = mappings
            .iter()
            .map(|m| {
                Ok(Rule {
                    re: Regex::new(&glob_regex(&m.pattern))?,
                    kind: m.match_type.map(|t| match t {
                        StatsdType::Timer => MetricType::Timer,
                        StatsdType::Counter => MetricType::Counter,
                        StatsdType::Gauge => MetricType::Gauge,
                        StatsdType::Set => MetricType::Set,
                    }),
                    name: m.name.clone(),
                    labels: m
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                })
            })
            .collect::<Result<_, regex::Error>>()?;
        Ok(Mapper { rules })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// What `name` of type `kind` maps to; `None` when no rule matches, or the first
    /// matching rule would make a name StatsD could not carry (then it is kept as sent).
    pub(crate) fn map(&self, kind: MetricType, name: &str) -> Option<Mapped> {
        let (rule, caps) = self
            .rules
            .iter()
            .filter(|r| r.kind.is_none_or(|k| k == kind))
            .find_map(|r| Some((r, r.re.captures(name)?)))?;
        let part = |n: usize| caps.get(n).map_or("", |m| m.as_str());
        let mapped = expand(&rule.name, part);
        if !valid_name(&mapped) {
            return None;
        }
        let labels = rule
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), expand(v, part)))
            .collect();
        Some((mapped, labels))
    }
}

/// The anchored expression of a glob: `*` matches one or more characters other than a
/// dot; every other character matches itself.
fn glob_regex(glob: &str) -> String {
    let mut re = String::with_capacity(glob.len() * 2 + 2);
    re.push('^');
    let mut buf = [0u8; 4];
    for c in glob.chars() {
        if c == '*' {
            re.push_str("([^.]+)");
        } else {
            re.push_str(&regex::escape(c.encode_utf8(&mut buf)));
        }
    }
    re.push('$');
    re
}

/// `template` with `$n` and `${n}` replaced by capture `n`, and `$$` by `$` (the text
/// was validated, so every `$` is one of those).
fn expand<'a>(template: &str, part: impl Fn(usize) -> &'a str) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let b = after.as_bytes();
        let (text, used) = match b.first() {
            Some(b'$') => ("$", 1),
            Some(d @ b'1'..=b'9') => (part(usize::from(d - b'0')), 1),
            Some(b'{') if b.len() >= 3 && b[2] == b'}' && b[1].is_ascii_digit() => {
                (part(usize::from(b[1] - b'0')), 3)
            }
            _ => ("$", 0),
        };
        out.push_str(text);
        rest = &after[used..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        pattern: &str,
        kind: Option<StatsdType>,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Mapping {
        Mapping {
            pattern: pattern.into(),
            match_type: kind,
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn first_matching_rule_names_the_series_and_fills_labels_from_the_stars() {
        let m = Mapper::new(&[
            rule(
                "orders.*.execution",
                Some(StatsdType::Timer),
                "order_execution",
                &[("venue", "$1")],
            ),
            rule(
                "orders.*.*",
                None,
                "orders_$2",
                &[("venue", "${1}"), ("note", "$$1")],
            ),
        ])
        .unwrap();
        let l = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            m.map(MetricType::Timer, "orders.nyse.execution"),
            Some(("order_execution".into(), l(&[("venue", "nyse")])))
        );
        // The first rule is for timers only: a counter falls through to the second.
        assert_eq!(
            m.map(MetricType::Counter, "orders.nyse.execution"),
            Some((
                "orders_execution".into(),
                l(&[("note", "$1"), ("venue", "nyse")])
            ))
        );
        // `*` never crosses a dot, and matches at least one character.
        assert_eq!(m.map(MetricType::Timer, "orders.ny.se.execution"), None);
        assert_eq!(m.map(MetricType::Timer, "orders..execution"), None);
        assert_eq!(m.map(MetricType::Timer, "xorders.nyse.execution"), None);
        assert_eq!(m.map(MetricType::Gauge, "orders.nyse"), None);
    }

    #[test]
    fn regex_characters_in_a_glob_match_themselves() {
        let m = Mapper::new(&[rule("a+b.(x).*", None, "n_$1", &[])]).unwrap();
        assert_eq!(m.map(MetricType::Counter, "a+b.(x).q").unwrap().0, "n_q");
        assert_eq!(m.map(MetricType::Counter, "aab.x.q"), None);
    }

    #[test]
    fn stars_inside_a_part_capture_what_they_match() {
        let m = Mapper::new(&[rule(
            "feed_*_*.lag",
            None,
            "feed_lag",
            &[("feed", "$1"), ("side", "$2")],
        )])
        .unwrap();
        let (_, labels) = m.map(MetricType::Gauge, "feed_cme_a.lag").unwrap();
        assert_eq!(
            labels,
            vec![("feed".into(), "cme".into()), ("side".into(), "a".into())]
        );
    }

    #[test]
    fn a_mapped_name_statsd_could_not_carry_is_left_as_sent() {
        let long = "x".repeat(150);
        let m = Mapper::new(&[rule("*", None, "$1$1", &[])]).unwrap();
        assert_eq!(m.map(MetricType::Counter, &long), None);
        assert_eq!(m.map(MetricType::Counter, "ab").unwrap().0, "abab");
    }
}
