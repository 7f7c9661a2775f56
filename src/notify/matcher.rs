//! Label matchers in Alertmanager's syntax: `name="value"`, `name!="value"`,
//! `name=~"regex"`, `name!~"regex"` (quotes optional for simple values).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One label matcher; regexes are anchored like Prometheus's.
#[derive(Clone)]
pub struct Matcher {
    pub name: String,
    op: Op,
    value: String,
    re: Option<Regex>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Re,
    Nre,
}

impl Matcher {
    /// Whether the label set satisfies this matcher (a missing label reads as "").
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match self.op {
            Op::Eq => v == self.value,
            Op::Ne => v != self.value,
            Op::Re => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            Op::Nre => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

/// Whether every matcher holds.
pub fn all_match(ms: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    ms.iter().all(|m| m.matches(labels))
}

impl FromStr for Matcher {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid matcher {s:?}: write label=\"value\", !=, =~ or !~");
        let i = s.find(['=', '!']).ok_or_else(bad)?;
        let name = s[..i].trim();
        let rest = &s[i..];
        let (op, raw) = if let Some(r) = rest.strip_prefix("=~") {
            (Op::Re, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (Op::Nre, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (Op::Ne, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (Op::Eq, r)
        } else {
            return Err(bad());
        };
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid_name {
            return Err(bad());
        }
        let raw = raw.trim();
        let value = match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            Some(v) => v.replace("\\\"", "\"").replace("\\\\", "\\"),
            None if raw.contains('"') => return Err(bad()),
            None => raw.to_string(),
        };
        let re = match op {
            Op::Re | Op::Nre => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|_| format!("invalid regex in matcher {s:?}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value,
            re,
        })
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Re => "=~",
            Op::Nre => "!~",
        };
        write!(f, "{}{op}{:?}", self.name, self.value)
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::notify::test_labels as labels;

    #[test]
    fn operators() {
        let l = labels(&[("severity", "critical"), ("alertname", "HighCpu")]);
        let m = |s: &str| s.parse::<Matcher>().unwrap().matches(&l);
        assert!(m("severity=\"critical\""));
        assert!(m("severity = critical"));
        assert!(!m("severity!=critical"));
        assert!(m("alertname=~\"High.*\""));
        assert!(!m("alertname=~\"High\""), "regexes are anchored");
        assert!(m("alertname!~\"Low.*\""));
        assert!(m("tier=\"\""), "a missing label reads as empty");
    }

    #[test]
    fn bad_matchers() {
        assert_eq!(
            "severity".parse::<Matcher>().unwrap_err(),
            "invalid matcher \"severity\": write label=\"value\", !=, =~ or !~"
        );
        assert_eq!(
            "a=~\"(\"".parse::<Matcher>().unwrap_err(),
            "invalid regex in matcher \"a=~\\\"(\\\"\""
        );
        assert!("1a=b".parse::<Matcher>().is_err());
    }
}
