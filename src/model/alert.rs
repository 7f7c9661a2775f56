//! The alert model every layer shares: an alert's state, label sets, the one
//! fingerprint of a label set and the one compiled label matcher (silences, routes,
//! inhibition). A leaf: it imports nothing of the crate but the shared [`Labels`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Labels;

/// Anything that holds labels: the sorted pairs of the rule engine and the alert store,
/// or the map of the notifier's wire format.
pub trait LabelSet {
    /// The value of label `name`, if set.
    fn label(&self, name: &str) -> Option<&str>;
    /// Every pair, sorted by name.
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)>;
}

impl LabelSet for [(String, String)] {
    fn label(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl LabelSet for Labels {
    fn label(&self, name: &str) -> Option<&str> {
        self.as_slice().label(name)
    }
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.as_slice().pairs()
    }
}

impl LabelSet for BTreeMap<String, String> {
    fn label(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The id of a label set: FNV-1a 64 over `name\xffvalue\xff` pairs in name order, in
/// hex. Stable across builds, platforms and restarts (unlike `DefaultHasher`); the ids
/// stored in `m4watch.db` since the first release are these.
pub fn fingerprint<L: LabelSet + ?Sized>(labels: &L) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels.pairs() {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Where an alert of a rule stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Inactive,
    Pending,
    Firing,
    Resolved,
}

impl State {
    /// The lowercase name used in the API, metrics and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }

    /// Parses [`State::as_str`].
    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "inactive" => State::Inactive,
            "pending" => State::Pending,
            "firing" => State::Firing,
            "resolved" => State::Resolved,
            _ => return None,
        })
    }
}

/// Why a matcher was refused; the message names the matcher as written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MatcherError {
    /// Not `label="value"` (or `!=`, `=~`, `!~`) with a valid label name.
    #[error("invalid matcher {0:?}: write label=\"value\", !=, =~ or !~")]
    Syntax(String),
    /// `=~` or `!~` with a regex that does not compile.
    #[error("invalid regex in matcher {0:?}")]
    Regex(String),
    /// A [`MatcherSpec`] without a name.
    #[error("matcher name is empty")]
    EmptyName,
    /// A [`MatcherSpec`] whose regex does not compile.
    #[error("matcher {name}: invalid regex: {source}")]
    SpecRegex { name: String, source: regex::Error },
}

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
    pub fn matches<L: LabelSet + ?Sized>(&self, labels: &L) -> bool {
        let v = labels.label(&self.name).unwrap_or("");
        match self.op {
            Op::Eq => v == self.value,
            Op::Ne => v != self.value,
            Op::Re => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            Op::Nre => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

impl Matcher {
    /// Whether this matcher selects `labels` by naming label `name` positively (`=`
    /// or `=~`) and holding: what a route must do to take a [`WATCHDOG_LABEL`] alert.
    pub(crate) fn names<L: LabelSet + ?Sized>(&self, name: &str, labels: &L) -> bool {
        self.name == name && matches!(self.op, Op::Eq | Op::Re) && self.matches(labels)
    }
}

/// The label that marks an always-firing dead-man's-switch alert (the shipped
/// `Watchdog` rule): it fires on purpose, to prove the pipeline works, so it is no
/// problem. The notifier delivers it only through a route whose matchers name its
/// `alertname` (`alertname="Watchdog"`), never through a catch-all; health and the
/// firing-alert counts leave it out.
pub(crate) const WATCHDOG_LABEL: &str = "m4watch_watchdog";

/// Whether `labels` carry [`WATCHDOG_LABEL`]`="true"`.
pub(crate) fn is_watchdog<L: LabelSet + ?Sized>(labels: &L) -> bool {
    labels.label(WATCHDOG_LABEL) == Some("true")
}

/// Whether `name` is a Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn is_label_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Whether every matcher holds.
pub(crate) fn all_match<L: LabelSet + ?Sized>(ms: &[Matcher], labels: &L) -> bool {
    ms.iter().all(|m| m.matches(labels))
}

impl FromStr for Matcher {
    type Err = MatcherError;
    fn from_str(s: &str) -> Result<Self, MatcherError> {
        let bad = || MatcherError::Syntax(s.to_string());
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
        if !is_label_name(name) {
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
                    .map_err(|_| MatcherError::Regex(s.to_string()))?,
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

/// A matcher in the API's and the silence store's shape (Alertmanager's silence
/// matcher); [`MatcherSpec::compile`] turns it into a [`Matcher`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Matcher)]
pub(crate) struct MatcherSpec {
    /// Label name.
    #[schema(min_length = 1)]
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub is_regex: bool,
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl MatcherSpec {
    /// The compiled matcher; refused when the name is empty or the regex is bad.
    pub(crate) fn compile(&self) -> Result<Matcher, MatcherError> {
        if self.name.is_empty() {
            return Err(MatcherError::EmptyName);
        }
        let op = match (self.is_regex, self.is_equal) {
            (false, true) => Op::Eq,
            (false, false) => Op::Ne,
            (true, true) => Op::Re,
            (true, false) => Op::Nre,
        };
        let re = if self.is_regex {
            Some(
                Regex::new(&format!("^(?:{})$", self.value)).map_err(|source| {
                    MatcherError::SpecRegex {
                        name: self.name.clone(),
                        source,
                    }
                })?,
            )
        } else {
            None
        };
        Ok(Matcher {
            name: self.name.clone(),
            op,
            value: self.value.clone(),
            re,
        })
    }
}

impl From<&Matcher> for MatcherSpec {
    fn from(m: &Matcher) -> Self {
        MatcherSpec {
            name: m.name.clone(),
            value: m.value.clone(),
            is_regex: matches!(m.op, Op::Re | Op::Nre),
            is_equal: matches!(m.op, Op::Eq | Op::Re),
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

// --- Inhibition -------------------------------------------------------------------

/// An inhibition rule with Alertmanager's semantics: while an alert matching every
/// `source` matcher fires, alerts matching every `target` matcher whose `equal` labels
/// have the same values (a label missing on both counts as equal) are not notified.
/// An alert never inhibits itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    #[serde(rename = "source_matchers")]
    pub source: Vec<Matcher>,
    #[serde(rename = "target_matchers")]
    pub target: Vec<Matcher>,
    #[serde(default)]
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// Whether the firing alert `source` inhibits `target` under this rule.
    pub fn inhibits<S, T>(&self, source: &S, target: &T) -> bool
    where
        S: LabelSet + ?Sized,
        T: LabelSet + ?Sized,
    {
        all_match(&self.target, target)
            && all_match(&self.source, source)
            && self
                .equal
                .iter()
                .all(|l| source.label(l).unwrap_or("") == target.label(l).unwrap_or(""))
            && !source.pairs().eq(target.pairs())
    }
}

/// The first firing alert of `firing` that inhibits `target` under any of `rules`.
pub(crate) fn inhibited_by<'a, S, T>(
    rules: &[InhibitRule],
    firing: impl IntoIterator<Item = &'a S>,
    target: &T,
) -> Option<&'a S>
where
    S: LabelSet + ?Sized + 'a,
    T: LabelSet + ?Sized,
{
    if !rules.iter().any(|r| all_match(&r.target, target)) {
        return None;
    }
    firing
        .into_iter()
        .find(|s| rules.iter().any(|r| r.inhibits(*s, target)))
}

// --- Severity ---------------------------------------------------------------------

/// The one ordered severity model: `info < warning < critical < emergency`. Slack
/// colours, email subjects, PagerDuty levels, health, escalation, the alert list's
/// order and the dashboards all read it from here.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
    Emergency,
}

impl Severity {
    /// Lowest first.
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::Critical,
        Severity::Emergency,
    ];

    /// The words accepted in a `severity` label, case-insensitively: the four names
    /// and the aliases users write.
    pub const WORDS: &'static str = "info, warning, critical or emergency (aliases: none, informational, warn, page, error, fatal)";

    /// The severity a word names, aliases included; `None` for any other word.
    pub fn parse(word: &str) -> Option<Severity> {
        Some(match word.trim().to_ascii_lowercase().as_str() {
            "info" | "informational" | "none" => Severity::Info,
            "warning" | "warn" => Severity::Warning,
            "critical" | "page" | "error" => Severity::Critical,
            "emergency" | "fatal" => Severity::Emergency,
            _ => return None,
        })
    }

    /// The severity of an alert whose label may be anything (alerts received from
    /// Prometheus): an unknown or missing word is a warning, so it is neither lost
    /// among the infos nor paged.
    pub fn of_label(word: Option<&str>) -> Severity {
        word.and_then(Severity::parse).unwrap_or(Severity::Warning)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
            Severity::Emergency => "emergency",
        }
    }

    /// Critical and emergency: the severities that page and escalate.
    pub fn pages(self) -> bool {
        self >= Severity::Critical
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// --- Alerts as the alert store keeps them --------------------------------------

/// Who acknowledged an alert, why and when (ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Ack {
    pub by: String,
    pub comment: String,
    pub at: i64,
}

/// Where an alert comes from; its word (`m4watch`, `prometheus`) is what the API, the
/// notifications and the database show.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum AlertSource {
    /// m4watch's own rule engine.
    #[serde(rename = "m4watch")]
    Rules,
    /// Posted to `POST /api/v2/alerts` (Prometheus).
    #[serde(rename = "prometheus")]
    Prometheus,
}

impl AlertSource {
    /// The word used in the API, notifications and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSource::Rules => "m4watch",
            AlertSource::Prometheus => "prometheus",
        }
    }

    /// Parses [`AlertSource::as_str`].
    pub fn parse(s: &str) -> Option<AlertSource> {
        Some(match s {
            "m4watch" => AlertSource::Rules,
            "prometheus" => AlertSource::Prometheus,
            _ => return None,
        })
    }
}

impl fmt::Display for AlertSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert as stored: the engine's view (or what Prometheus posted) plus
/// acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredAlert {
    pub source: AlertSource,
    /// A received alert resolves at this time (ms) unless Prometheus posts it again
    /// (its `endsAt`); `None` for m4watch's own alerts.
    pub expires_at: Option<i64>,
    /// Link back to the alert's origin (Prometheus's `generatorURL`).
    pub generator_url: Option<String>,
    pub id: String,
    pub alertname: String,
    pub group: String,
    pub severity: Severity,
    pub state: State,
    pub labels: Labels,
    pub annotations: Labels,
    pub value: f64,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub ack: Option<Ack>,
}

/// A silence: alerts matching every matcher are silenced until `ends_at` (ms).
/// Its matchers are compiled once, when it is made or loaded; the API and the database
/// see them as [`MatcherSpec`]s.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: i64,
    pub ends_at: i64,
    /// When it was made or last changed (ms); Alertmanager's `updatedAt`.
    pub updated_at: i64,
    pub created_by: String,
    pub comment: String,
}

/// Where a silence stands at a moment: Alertmanager's three states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SilenceState {
    /// In force now.
    Active,
    /// Starts later.
    Pending,
    /// Ended (it ran out or was expired).
    Expired,
}

impl Silence {
    /// Whether the silence applies to `labels` at `now` (ms).
    pub(crate) fn silences(&self, labels: &[(String, String)], now: i64) -> bool {
        self.state(now) == SilenceState::Active && all_match(&self.matchers, labels)
    }

    /// Its state at `now` (ms).
    pub(crate) fn state(&self, now: i64) -> SilenceState {
        if now >= self.ends_at {
            SilenceState::Expired
        } else if now < self.starts_at {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    /// The matchers in the API's and the database's shape.
    pub(crate) fn specs(&self) -> Vec<MatcherSpec> {
        self.matchers.iter().map(MatcherSpec::from).collect()
    }
}

/// A state change, as saved and broadcast. An acknowledgement of a firing alert is
/// broadcast (not saved) as `firing -> firing` with `acknowledged`; the rule engine
/// never reports a firing alert changing to firing.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Transition {
    pub id: String,
    pub source: AlertSource,
    pub generator_url: Option<String>,
    pub alertname: String,
    pub severity: Severity,
    pub from: State,
    pub to: State,
    /// When it happened (ms).
    pub at: i64,
    pub labels: Labels,
    pub annotations: Labels,
    pub value: f64,
    /// When the alert began firing (ms), on every transition of an alert that fired:
    /// a resolve or an acknowledgement says when its incident began without looking
    /// the alert up (a resolved alert is no longer among the active ones).
    pub fired_at: Option<i64>,
    /// The alert was acknowledged when this happened.
    pub acknowledged: bool,
    /// A silence covered the alert when this happened.
    pub silenced: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inhibition_has_alertmanagers_semantics() {
        let rule: InhibitRule = serde_yaml_ng::from_str(
            "source_matchers: ['alertname=\"PerformanceCoresSaturated\"']\n\
             target_matchers: ['alertname=\"PerformanceCoresBusy\"']\n\
             equal: [instance]\n",
        )
        .unwrap();
        let crit = labels(&[
            ("alertname", "PerformanceCoresSaturated"),
            ("severity", "critical"),
        ]);
        let warn = labels(&[
            ("alertname", "PerformanceCoresBusy"),
            ("severity", "warning"),
        ]);
        assert!(
            rule.inhibits(&crit, &warn),
            "instance missing on both is equal"
        );
        assert!(!rule.inhibits(&warn, &crit), "only source over target");
        let mut other_host = warn.clone();
        other_host.insert("instance".into(), "b".into());
        assert!(
            !rule.inhibits(&crit, &other_host),
            "equal labels must agree"
        );
        // An alert matching both sides does not inhibit itself.
        let both: InhibitRule = serde_yaml_ng::from_str(
            "source_matchers: ['severity=\"critical\"']\ntarget_matchers: ['severity=\"critical\"']\n",
        )
        .unwrap();
        assert!(!both.inhibits(&crit, &crit));
        let rules = [rule];
        assert_eq!(inhibited_by(&rules, [&crit, &warn], &warn), Some(&crit));
        assert_eq!(inhibited_by(&rules, [&warn], &warn), None);
    }

    #[test]
    fn severities_are_ordered_and_aliases_map_onto_the_four() {
        assert!(Severity::Info < Severity::Warning);
        assert!(Severity::Warning < Severity::Critical);
        assert!(Severity::Critical < Severity::Emergency);
        for (word, want) in [
            ("info", Severity::Info),
            ("none", Severity::Info),
            ("WARNING", Severity::Warning),
            ("warn", Severity::Warning),
            ("critical", Severity::Critical),
            ("page", Severity::Critical),
            ("error", Severity::Critical),
            ("Emergency", Severity::Emergency),
            ("fatal", Severity::Emergency),
        ] {
            assert_eq!(Severity::parse(word), Some(want), "{word}");
        }
        assert_eq!(Severity::parse("whatever"), None);
        assert_eq!(Severity::of_label(Some("whatever")), Severity::Warning);
        assert_eq!(Severity::of_label(None), Severity::Warning);
        assert!(Severity::Emergency.pages() && Severity::Critical.pages());
        assert!(!Severity::Warning.pages());
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

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
            "severity".parse::<Matcher>().unwrap_err().to_string(),
            "invalid matcher \"severity\": write label=\"value\", !=, =~ or !~"
        );
        assert_eq!(
            "a=~\"(\"".parse::<Matcher>().unwrap_err().to_string(),
            "invalid regex in matcher \"a=~\\\"(\\\"\""
        );
        assert!("1a=b".parse::<Matcher>().is_err());
    }
}
