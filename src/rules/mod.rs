//! The rule engine: Prometheus rule files, evaluated against the store's sample ring.
//!
//! - [`load_files`] / [`load_str`]: rule files -> [`Group`]s; anything outside the
//!   supported subset is rejected naming file, group, rule and construct.
//! - [`Engine`]: evaluates groups at an instant, keeps each alerting rule's
//!   pending/firing alerts with Prometheus' `for` and `keep_firing_for` semantics, and
//!   writes recording-rule results back into the ring.
//! - [`promql`], [`template`]: the expression and template subsets.
//! - [`promtool`]: the runner for promtool-format unit tests (`m4watch test-rules`).
//! - [`runbooks`]: the embedded `docs/runbooks.md` and the check of a rule's `runbook_url`.

pub(crate) mod promql;
pub(crate) mod promtool;
pub(crate) mod runbooks;
pub(crate) mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::RulesConfig;

use serde::Deserialize;

use crate::model::Labels;
use crate::model::alert::{State, fingerprint};
use crate::store::ring::Ring;
use promql::{EvalError, Evaluator, Value};
use template::Template;

/// The shipped rule files, embedded so a fresh binary alerts with no files around.
pub(crate) const EMBEDDED: &[(&str, &str)] = &[
    (
        "alert-rules/hardware.rules.yml",
        include_str!("../../alert-rules/hardware.rules.yml"),
    ),
    (
        "alert-rules/containers.rules.yml",
        include_str!("../../alert-rules/containers.rules.yml"),
    ),
    (
        "alert-rules/trading.rules.yml",
        include_str!("../../alert-rules/trading.rules.yml"),
    ),
    (
        "alert-rules/probes.rules.yml",
        include_str!("../../alert-rules/probes.rules.yml"),
    ),
    (
        "alert-rules/host.rules.yml",
        include_str!("../../alert-rules/host.rules.yml"),
    ),
    (
        "alert-rules/processes.rules.yml",
        include_str!("../../alert-rules/processes.rules.yml"),
    ),
    (
        "alert-rules/exporter.rules.yml",
        include_str!("../../alert-rules/exporter.rules.yml"),
    ),
    (
        "alert-rules/watchdog.rules.yml",
        include_str!("../../alert-rules/watchdog.rules.yml"),
    ),
];

/// A duration Prometheus would not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}")]
pub(crate) struct DurationError(pub String);

/// A rule file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileYaml {
    groups: Vec<GroupYaml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupYaml {
    name: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    rules: Vec<RuleYaml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleYaml {
    #[serde(default)]
    record: Option<String>,
    #[serde(default)]
    alert: Option<String>,
    expr: String,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// One rule group.
#[derive(Debug)]
pub struct Group {
    pub name: String,
    pub file: String,
    /// Evaluation interval of this group; `None` uses the global one.
    pub interval_ms: Option<i64>,
    pub rules: Vec<Rule>,
}

/// What a rule does with its result.
#[derive(Debug)]
pub enum RuleKind {
    Record {
        /// Series written last evaluation, to mark the ones that vanish stale.
        written: std::collections::HashSet<Labels>,
    },
    Alert {
        for_ms: i64,
        keep_firing_for_ms: i64,
        annotations: Vec<(String, Template)>,
        /// Alerts of this rule now pending or firing, by id.
        active: BTreeMap<String, Alert>,
    },
}

/// One alerting or recording rule.
#[derive(Debug)]
pub struct Rule {
    /// The alert name or the recorded metric name.
    pub name: String,
    pub expr_text: String,
    pub expr: promql_parser::parser::Expr,
    pub labels: Vec<(String, Template)>,
    pub kind: RuleKind,
}

impl Rule {
    /// The severity label as written in the rule ("" when none).
    pub fn severity(&self) -> String {
        self.labels
            .iter()
            .find(|(k, _)| k == "severity")
            .map(|(_, t)| t.render(&[], 0.0))
            .unwrap_or_default()
    }
}

/// Where an alert stands.
/// One alert instance of an alerting rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Stable fingerprint of the label set.
    pub id: String,
    pub labels: Labels,
    pub annotations: Labels,
    pub value: f64,
    pub state: State,
    /// When the condition first held (ms).
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub(crate) keep_firing_since: Option<i64>,
    /// Restored after a restart and not yet seen by an evaluation: it waits for its
    /// rule's data (up to the rule's `for`) instead of resolving at the first
    /// evaluation, before a StatsD sender or a scrape has delivered anything.
    pub(crate) awaiting_data: bool,
}

impl Alert {
    /// An alert as saved before a restart.
    #[allow(clippy::too_many_arguments)]
    pub fn restored(
        id: String,
        labels: Labels,
        annotations: Labels,
        value: f64,
        state: State,
        active_at: i64,
        fired_at: Option<i64>,
    ) -> Alert {
        Alert {
            id,
            labels,
            annotations,
            value,
            state,
            active_at,
            fired_at,
            resolved_at: None,
            keep_firing_since: None,
            awaiting_data: true,
        }
    }
}

/// A state change of one alert, as the engine saw it.
#[derive(Debug, Clone)]
pub struct Change {
    pub group: String,
    pub from: State,
    pub alert: Alert,
}

/// The rule files `rc`'s globs name, in order.
fn paths(rc: &RulesConfig) -> Vec<PathBuf> {
    rc.files.iter().flat_map(|f| expand_glob(f)).collect()
}

/// Loads the configured rule files (or the embedded ones) and checks their ranges
/// against `rules.max_range`. The wiring calls this once at start-up, and
/// `check-config` once.
pub(crate) fn load(rc: &RulesConfig) -> Result<Vec<Group>, LoadError> {
    let groups = if rc.files.is_empty() {
        load_embedded()?
    } else {
        for f in &rc.files {
            if expand_glob(f).is_empty() {
                return Err(LoadError(format!("{} matches no file", f.display())));
            }
        }
        load_files(&paths(rc))?
    };
    check_max_range(&groups, rc.max_range.get().as_millis() as i64)?;
    Ok(groups)
}

/// Parses a Prometheus duration (`5m`, `1h30m`, `90s`).
pub(crate) fn parse_prom_duration(s: &str) -> Result<i64, DurationError> {
    humantime::parse_duration(s.trim())
        .map(|d| d.as_millis() as i64)
        .map_err(|_| DurationError(s.to_string()))
}

/// Loads rule files from disk.
pub(crate) fn load_files(paths: &[std::path::PathBuf]) -> Result<Vec<Group>, LoadError> {
    let mut groups = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(p)
            .map_err(|e| LoadError(format!("{}: cannot read: {e}", p.display())))?;
        groups.extend(load_str(&p.display().to_string(), &text)?);
    }
    Ok(groups)
}

/// The embedded shipped rules.
pub fn load_embedded() -> Result<Vec<Group>, LoadError> {
    let mut groups = Vec::new();
    for (name, text) in EMBEDDED {
        groups.extend(load_str(name, text)?);
    }
    Ok(groups)
}

/// Expands a glob such as `alert-rules/*.rules.yml` (a `*` in the file name only).
pub(crate) fn expand_glob(pattern: &Path) -> Vec<std::path::PathBuf> {
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if !name.contains('*') {
        return vec![pattern.to_path_buf()];
    }
    let dir = pattern
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (pre, post) = name.split_once('*').unwrap_or((&name, ""));
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            n.len() >= pre.len() + post.len() && n.starts_with(pre) && n.ends_with(post)
        })
        .collect();
    out.sort();
    out
}

/// Parses one rule file's text; `file` names it in errors.
pub(crate) fn load_str(file: &str, text: &str) -> Result<Vec<Group>, LoadError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let parsed: FileYaml = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        LoadError(format!("{file}: {path}: {}", e.into_inner()))
    })?;
    let mut groups = Vec::new();
    let mut names = std::collections::HashSet::new();
    for g in parsed.groups {
        let at = |r: Option<&str>, what: String| match r {
            Some(r) => LoadError(format!("{file}: group {:?}: rule {r:?}: {what}", g.name)),
            None => LoadError(format!("{file}: group {:?}: {what}", g.name)),
        };
        if !names.insert(g.name.clone()) {
            return Err(at(None, "group name repeated in the file".into()));
        }
        if g.limit.is_some_and(|l| l > 0) {
            return Err(at(None, "unsupported construct: group limit".into()));
        }
        let interval_ms = match &g.interval {
            Some(i) => {
                Some(parse_prom_duration(i).map_err(|e| at(None, format!("interval: {e}")))?)
            }
            None => None,
        };
        let mut rules = Vec::new();
        for (i, r) in g.rules.into_iter().enumerate() {
            let (name, is_alert) = match (&r.alert, &r.record) {
                (Some(a), None) => (a.clone(), true),
                (None, Some(rec)) => (rec.clone(), false),
                _ => {
                    return Err(at(
                        Some(&format!("#{}", i + 1)),
                        "a rule needs exactly one of `alert` and `record`".into(),
                    ));
                }
            };
            let err = |what: String| at(Some(&name), what);
            let expr = promql::parse(&r.expr).map_err(|e| err(format!("expr: {e}")))?;
            let mut labels = Vec::new();
            for (k, v) in &r.labels {
                // A literal severity must be one of the model's words; an alias is
                // written as the word it stands for, so routes, inhibition and
                // escalation match one spelling. A templated one is judged per alert.
                let v = if k == "severity" && !v.contains("{{") {
                    match crate::model::alert::Severity::parse(v) {
                        Some(sev) => sev.as_str(),
                        None => {
                            return Err(err(format!(
                                "labels.severity: unknown severity {v:?}: write {}",
                                crate::model::alert::Severity::WORDS
                            )));
                        }
                    }
                } else {
                    v.as_str()
                };
                labels.push((
                    k.clone(),
                    Template::parse(v).map_err(|e| err(format!("labels.{k}: {e}")))?,
                ));
            }
            let kind = if is_alert {
                let mut annotations = Vec::new();
                for (k, v) in &r.annotations {
                    annotations.push((
                        k.clone(),
                        Template::parse(v).map_err(|e| err(format!("annotations.{k}: {e}")))?,
                    ));
                }
                let dur = |d: &Option<String>, key: &str| match d {
                    Some(d) => parse_prom_duration(d).map_err(|e| err(format!("{key}: {e}"))),
                    None => Ok(0),
                };
                RuleKind::Alert {
                    for_ms: dur(&r.for_, "for")?,
                    keep_firing_for_ms: dur(&r.keep_firing_for, "keep_firing_for")?,
                    annotations,
                    active: BTreeMap::new(),
                }
            } else {
                if r.for_.is_some() || r.keep_firing_for.is_some() || !r.annotations.is_empty() {
                    return Err(err(
                        "recording rules take no for, keep_firing_for or annotations".into(),
                    ));
                }
                RuleKind::Record {
                    written: Default::default(),
                }
            };
            rules.push(Rule {
                name,
                expr_text: r.expr,
                expr,
                labels,
                kind,
            });
        }
        groups.push(Group {
            name: g.name,
            file: file.to_string(),
            interval_ms,
            rules,
        });
    }
    Ok(groups)
}

/// Every vector selector in `e` with how far back it reads, in ms: a range
/// selector's range, 0 for an instant selector (its newest sample).
pub(crate) fn selectors<'e>(
    e: &'e promql_parser::parser::Expr,
    out: &mut Vec<(&'e promql_parser::parser::VectorSelector, i64)>,
) {
    use promql_parser::parser::Expr as E;
    match e {
        E::VectorSelector(v) => out.push((v, 0)),
        E::MatrixSelector(m) => out.push((&m.vs, m.range.as_millis() as i64)),
        E::Call(c) => c.args.args.iter().for_each(|a| selectors(a, out)),
        E::Binary(b) => {
            selectors(&b.lhs, out);
            selectors(&b.rhs, out);
        }
        E::Aggregate(a) => {
            selectors(&a.expr, out);
            if let Some(p) = &a.param {
                selectors(p, out);
            }
        }
        E::Paren(p) => selectors(&p.expr, out),
        E::Unary(u) => selectors(&u.expr, out),
        E::Subquery(q) => selectors(&q.expr, out),
        _ => {}
    }
}

impl Engine {
    /// Every vector selector of every rule, with how far back it reads (ms).
    pub fn selectors(&self) -> Vec<(&promql_parser::parser::VectorSelector, i64)> {
        let mut out = Vec::new();
        for r in self.groups.iter().flat_map(|g| &g.rules) {
            selectors(&r.expr, &mut out);
        }
        out
    }
}

/// The longest range selector in `e`, in ms (0 when it has none).
pub(crate) fn longest_range(e: &promql_parser::parser::Expr) -> i64 {
    use promql_parser::parser::Expr as E;
    match e {
        E::MatrixSelector(m) => m.range.as_millis() as i64,
        E::Call(c) => c
            .args
            .args
            .iter()
            .map(|a| longest_range(a))
            .max()
            .unwrap_or(0),
        E::Binary(b) => longest_range(&b.lhs).max(longest_range(&b.rhs)),
        E::Aggregate(a) => longest_range(&a.expr),
        E::Paren(p) => longest_range(&p.expr),
        E::Unary(u) => longest_range(&u.expr),
        _ => 0,
    }
}

/// Rejects rules whose range selectors reach further back than the sample ring keeps.
pub(crate) fn check_max_range(groups: &[Group], max_range_ms: i64) -> Result<(), LoadError> {
    for g in groups {
        for r in &g.rules {
            let longest = longest_range(&r.expr);
            if longest > max_range_ms {
                let d = |ms: i64| {
                    humantime::format_duration(std::time::Duration::from_millis(ms as u64))
                };
                return Err(LoadError(format!(
                    "{}: group {:?}: rule {:?}: expr: a range of {} exceeds rules.max_range ({})",
                    g.file,
                    g.name,
                    r.name,
                    d(longest),
                    d(max_range_ms)
                )));
            }
        }
    }
    Ok(())
}

/// Evaluates rule groups and keeps alert state between evaluations.
#[derive(Debug)]
pub struct Engine {
    pub groups: Vec<Group>,
    /// Global evaluation interval (ms), for groups without their own.
    pub interval_ms: i64,
    last_eval: Vec<Option<i64>>,
    /// Added to every alert's labels it lacks (`external_labels`); none for
    /// `test-rules`, as promtool adds none.
    external_labels: Labels,
}

/// An alerting rule as its file writes it, for showing rather than evaluating.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlertingRuleText {
    pub group: String,
    pub name: String,
    /// Annotations before templating.
    pub annotations: BTreeMap<String, String>,
}

/// The outcome of one evaluation cycle.
#[derive(Debug, Default)]
pub struct Cycle {
    pub changes: Vec<Change>,
    /// `(group, error)` for each rule that failed.
    pub failures: Vec<(String, String)>,
    /// Groups evaluated this cycle.
    pub evaluated: Vec<String>,
}

impl Engine {
    pub fn new(groups: Vec<Group>, interval_ms: i64) -> Self {
        let n = groups.len();
        Engine {
            groups,
            interval_ms,
            last_eval: vec![None; n],
            external_labels: Labels::new(),
        }
    }

    /// The engine labelling every alert with `labels` where the alert lacks them, so
    /// two hosts' alerts of one rule are two alerts wherever they meet.
    pub fn with_external_labels(mut self, labels: Labels) -> Self {
        self.external_labels = labels;
        self
    }

    /// The labels [`Engine::with_external_labels`] set.
    pub fn external_labels(&self) -> &Labels {
        &self.external_labels
    }

    /// Every alerting rule loaded, as written.
    pub(crate) fn alerting_rules(&self) -> Vec<AlertingRuleText> {
        let mut out = Vec::new();
        for g in &self.groups {
            for r in &g.rules {
                let RuleKind::Alert { annotations, .. } = &r.kind else {
                    continue;
                };
                out.push(AlertingRuleText {
                    group: g.name.clone(),
                    name: r.name.clone(),
                    annotations: annotations
                        .iter()
                        .map(|(k, t)| (k.clone(), t.source().to_string()))
                        .collect(),
                });
            }
        }
        out
    }

    /// Number of rules loaded.
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|g| g.rules.len()).sum()
    }

    /// Puts back an alert known from before a restart, so `for` keeps counting from
    /// the original start and a firing alert stays firing.
    pub fn restore(&mut self, alertname: &str, alert: Alert) -> bool {
        for g in &mut self.groups {
            for r in &mut g.rules {
                if let RuleKind::Alert { active, .. } = &mut r.kind {
                    if r.name == alertname {
                        active.insert(alert.id.clone(), alert);
                        return true;
                    }
                }
            }
        }
        false
    }

    /// Every pending or firing alert with its rule name.
    pub fn active(&self) -> impl Iterator<Item = (&Group, &Rule, &Alert)> {
        self.groups.iter().flat_map(|g| {
            g.rules.iter().flat_map(move |r| match &r.kind {
                RuleKind::Alert { active, .. } => {
                    Box::new(active.values().map(move |a| (g, r, a))) as Box<dyn Iterator<Item = _>>
                }
                RuleKind::Record { .. } => Box::new(std::iter::empty()),
            })
        })
    }

    /// Evaluates every group that is due at `t` (ms). Recording rules write into `ring`.
    pub fn eval(&mut self, ring: &mut Ring, t: i64) -> Cycle {
        let mut cycle = Cycle::default();
        for gi in 0..self.groups.len() {
            let every = self.groups[gi].interval_ms.unwrap_or(self.interval_ms);
            if let Some(last) = self.last_eval[gi] {
                // A little slack so a 1 s ticker does not skip a 1 s group.
                if t - last < every - every / 10 {
                    continue;
                }
            }
            self.last_eval[gi] = Some(t);
            let g = &mut self.groups[gi];
            cycle.evaluated.push(g.name.clone());
            for rule in &mut g.rules {
                if let Err(e) = eval_rule(
                    rule,
                    &g.name,
                    ring,
                    t,
                    &self.external_labels,
                    &mut cycle.changes,
                ) {
                    tracing::warn!(group = %g.name, rule = %rule.name, error = %e, "rule evaluation failed");
                    cycle.failures.push((g.name.clone(), e.0));
                }
            }
        }
        cycle
    }
}

fn eval_rule(
    rule: &mut Rule,
    group: &str,
    ring: &mut Ring,
    t: i64,
    external: &Labels,
    changes: &mut Vec<Change>,
) -> Result<(), EvalError> {
    let result = Evaluator { ring, t }.eval(&rule.expr)?;
    let samples = match result {
        Value::Vector(v) => v,
        Value::Scalar(s) => match rule.kind {
            RuleKind::Record { .. } => vec![promql::Sample {
                labels: Vec::new(),
                value: s,
            }],
            RuleKind::Alert { .. } => {
                return Err(EvalError("alert expression returned a scalar".into()));
            }
        },
    };
    match &mut rule.kind {
        RuleKind::Record { written } => {
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::with_capacity(samples.len());
            for s in samples {
                let mut labels: Labels = s
                    .labels
                    .into_iter()
                    .filter(|(k, _)| k != "__name__")
                    .collect();
                for (k, tpl) in &rule.labels {
                    let v = tpl.render(&labels, s.value);
                    labels.retain(|(lk, _)| lk != k);
                    if !v.is_empty() {
                        labels.push((k.clone(), v));
                    }
                }
                labels.push(("__name__".into(), rule.name.clone()));
                labels.sort();
                if !seen.insert(labels.clone()) {
                    return Err(EvalError(
                        "vector contains metrics with the same labelset after applying rule labels"
                            .into(),
                    ));
                }
                out.push((labels, s.value));
            }
            // Like Prometheus, a recorded series that disappears gets a staleness marker.
            for gone in written.difference(&seen) {
                ring.append(gone.clone(), t, crate::store::ring::stale_nan());
            }
            for (labels, v) in out {
                ring.append(labels, t, v);
            }
            *written = seen;
            Ok(())
        }
        RuleKind::Alert {
            for_ms,
            keep_firing_for_ms,
            annotations,
            active,
        } => {
            let mut seen = std::collections::HashSet::new();
            for s in samples {
                let base: Labels = s
                    .labels
                    .into_iter()
                    .filter(|(k, _)| k != "__name__")
                    .collect();
                let mut labels = base.clone();
                for (k, tpl) in &rule.labels {
                    let v = tpl.render(&base, s.value);
                    labels.retain(|(lk, _)| lk != k);
                    if !v.is_empty() {
                        labels.push((k.clone(), v));
                    }
                }
                labels.retain(|(k, _)| k != "alertname");
                labels.push(("alertname".into(), rule.name.clone()));
                for (k, v) in external {
                    if !labels.iter().any(|(lk, _)| lk == k) {
                        labels.push((k.clone(), v.clone()));
                    }
                }
                labels.sort();
                let id = fingerprint(&labels);
                if !seen.insert(id.clone()) {
                    return Err(EvalError(
                        "vector contains metrics with the same labelset after applying alert labels"
                            .into(),
                    ));
                }
                let ann: Labels = annotations
                    .iter()
                    .map(|(k, tpl)| (k.clone(), tpl.render(&base, s.value)))
                    .collect();
                match active.get_mut(&id) {
                    Some(a) => {
                        a.value = s.value;
                        a.annotations = ann;
                        a.keep_firing_since = None;
                        a.awaiting_data = false;
                    }
                    None => {
                        active.insert(
                            id.clone(),
                            Alert {
                                id: id.clone(),
                                labels,
                                annotations: ann,
                                value: s.value,
                                state: State::Pending,
                                active_at: t,
                                fired_at: None,
                                resolved_at: None,
                                keep_firing_since: None,
                                awaiting_data: false,
                            },
                        );
                        changes.push(Change {
                            group: group.to_string(),
                            from: State::Inactive,
                            alert: active[&id].clone(),
                        });
                    }
                }
            }
            let mut gone = Vec::new();
            for (id, a) in active.iter_mut() {
                if seen.contains(id) {
                    if a.state == State::Pending && t - a.active_at >= *for_ms {
                        a.state = State::Firing;
                        a.fired_at = Some(t);
                        // A new alert that fires at once reports one change, not two.
                        match changes
                            .last_mut()
                            .filter(|c| c.alert.id == *id && c.from == State::Inactive)
                        {
                            Some(c) => c.alert = a.clone(),
                            None => changes.push(Change {
                                group: group.to_string(),
                                from: State::Pending,
                                alert: a.clone(),
                            }),
                        }
                    }
                    continue;
                }
                // Firing with keep_firing_for, or restored and still waiting for data:
                // hold the state until the grace is over.
                let grace = match (a.state, a.awaiting_data) {
                    (_, true) => (*for_ms).max(*keep_firing_for_ms),
                    (State::Firing, false) => *keep_firing_for_ms,
                    _ => 0,
                };
                if grace > 0 {
                    let since = *a.keep_firing_since.get_or_insert(t);
                    if t - since < grace {
                        continue;
                    }
                }
                gone.push(id.clone());
            }
            for id in gone {
                let mut a = active.remove(&id).expect("present");
                let from = a.state;
                a.state = if from == State::Firing {
                    State::Resolved
                } else {
                    State::Inactive
                };
                a.resolved_at = Some(t);
                changes.push(Change {
                    group: group.to_string(),
                    from,
                    alert: a,
                });
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_rules_load() {
        let groups = load_embedded().unwrap();
        assert!(groups.iter().map(|g| g.rules.len()).sum::<usize>() >= 20);
    }

    /// Prometheus loads `alert-rules/*.rules.yml`; the binary must ship the same set.
    #[test]
    fn every_shipped_rule_file_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let on_disk: BTreeMap<String, String> = expand_glob(&root.join("alert-rules/*.rules.yml"))
            .into_iter()
            .map(|p| {
                let name = format!("alert-rules/{}", p.file_name().unwrap().to_string_lossy());
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        let embedded: BTreeMap<String, String> = EMBEDDED
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(
            embedded.keys().collect::<Vec<_>>(),
            on_disk.keys().collect::<Vec<_>>()
        );
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn shipped_rules_include_the_probe_alerts() {
        let groups = load_embedded().unwrap();
        let probes: Vec<&str> = groups
            .iter()
            .filter(|g| g.file == "alert-rules/probes.rules.yml")
            .flat_map(|g| &g.rules)
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(
            probes,
            ["ProbeFailing", "ProbeSlow", "ProbeCertificateExpiringSoon"]
        );
    }

    #[test]
    fn load_errors_name_file_group_rule_and_construct() {
        let text = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: irate(x[5m]) > 1\n";
        assert_eq!(
            load_str("f.yml", text).unwrap_err().0,
            "f.yml: group \"g\": rule \"A\": expr: unsupported construct: function `irate`"
        );
        let text = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: x > 1\n    annotations:\n      summary: '{{ range $labels }}x{{ end }}'\n";
        assert_eq!(
            load_str("f.yml", text).unwrap_err().0,
            "f.yml: group \"g\": rule \"A\": annotations.summary: unsupported construct: template `range`"
        );
        let text = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: x\n    bogus: 1\n";
        let e = load_str("f.yml", text).unwrap_err().0;
        assert!(
            e.starts_with("f.yml: groups[0].rules[0]") && e.contains("unknown field `bogus`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_severities_are_refused_and_aliases_normalised() {
        let rule = |sev: &str| {
            format!(
                "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: x > 1\n    labels: {{severity: {sev}}}\n"
            )
        };
        let e = load_str("f.yml", &rule("urgent")).unwrap_err().0;
        assert!(
            e.starts_with(
                "f.yml: group \"g\": rule \"A\": labels.severity: unknown severity \"urgent\""
            ),
            "{e}"
        );
        for (word, canonical) in [
            ("page", "critical"),
            ("fatal", "emergency"),
            ("Warning", "warning"),
        ] {
            let g = load_str("f.yml", &rule(word)).unwrap();
            assert_eq!(g[0].rules[0].severity(), canonical, "{word}");
        }
        // A templated severity is judged per alert, not at load.
        assert!(load_str("f.yml", &rule("'{{ $labels.level }}'")).is_ok());
    }

    #[test]
    fn ranges_longer_than_the_ring_are_rejected() {
        let text = "groups:\n- name: g\n  rules:\n  - record: r\n    expr: sum(rate(x[1h]))\n";
        let groups = load_str("f.yml", text).unwrap();
        assert_eq!(
            check_max_range(&groups, 15 * 60 * 1000).unwrap_err().0,
            "f.yml: group \"g\": rule \"r\": expr: a range of 1h exceeds rules.max_range (15m)"
        );
        assert!(check_max_range(&groups, 3_600_000).is_ok());
    }

    #[test]
    fn a_restored_alert_waits_for_its_data_up_to_its_for() {
        let text =
            "groups:\n- name: g\n  rules:\n  - alert: Slow\n    expr: lat > 1\n    for: 3s\n";
        let mut e = Engine::new(load_str("f", text).unwrap(), 1000);
        let labels = vec![("alertname".to_string(), "Slow".to_string())];
        let id = fingerprint(&labels);
        assert!(e.restore(
            "Slow",
            Alert::restored(id, labels, Vec::new(), 2.0, State::Firing, 0, Some(0))
        ));
        let mut ring = Ring::new(0);
        // No data yet (the sender has not come back): it stays firing for 3 s.
        for t in [10_000, 11_000, 12_000] {
            assert!(e.eval(&mut ring, t).changes.is_empty(), "t={t}");
        }
        let c = e.eval(&mut ring, 13_000);
        assert_eq!(c.changes.len(), 1);
        assert_eq!(
            (c.changes[0].from, c.changes[0].alert.state),
            (State::Firing, State::Resolved)
        );

        // Data that still crosses keeps it firing without a new notification, and
        // data that no longer crosses resolves it at once.
        let mut e = Engine::new(load_str("f", text).unwrap(), 1000);
        let labels = vec![("alertname".to_string(), "Slow".to_string())];
        e.restore(
            "Slow",
            Alert::restored(
                fingerprint(&labels),
                labels,
                Vec::new(),
                2.0,
                State::Firing,
                0,
                Some(0),
            ),
        );
        let lbl = vec![("__name__".to_string(), "lat".to_string())];
        ring.append(lbl.clone(), 10_000, 5.0);
        assert!(e.eval(&mut ring, 10_000).changes.is_empty());
        ring.append(lbl, 11_000, 0.5);
        let c = e.eval(&mut ring, 11_000);
        assert_eq!(c.changes[0].alert.state, State::Resolved);
    }

    /// Issue 27: one rule on two hosts is two alerts, each naming its host; a label
    /// the series carries wins over the external one.
    #[test]
    fn external_labels_name_the_host_and_part_the_fingerprints() {
        let text = "groups:\n- name: g\n  rules:\n  - alert: Slow\n    expr: lat > 1\n";
        let mut ring = Ring::new(0);
        ring.append(
            vec![
                ("__name__".to_string(), "lat".to_string()),
                ("desk".to_string(), "rates".to_string()),
            ],
            10_000,
            5.0,
        );
        let fire = |host: &str, ring: &mut Ring| {
            let mut e = Engine::new(load_str("f", text).unwrap(), 1000).with_external_labels(vec![
                ("desk".to_string(), "fx".to_string()),
                ("host".to_string(), host.to_string()),
            ]);
            e.eval(ring, 10_000).changes.remove(0).alert
        };
        let (a, b) = (fire("mac-a", &mut ring), fire("mac-b", &mut ring));
        assert_ne!(a.id, b.id);
        assert!(
            a.labels
                .contains(&("host".to_string(), "mac-a".to_string()))
        );
        assert!(
            a.labels
                .contains(&("desk".to_string(), "rates".to_string()))
        );
        assert!(!a.labels.contains(&("desk".to_string(), "fx".to_string())));
        assert_eq!(a.id, fingerprint(&a.labels));
        // test-rules, like promtool, adds none.
        let mut plain = Engine::new(load_str("f", text).unwrap(), 1000);
        let c = plain.eval(&mut ring, 10_000);
        assert!(!c.changes[0].alert.labels.iter().any(|(k, _)| k == "host"));
    }

    #[test]
    fn pending_firing_keep_firing_resolved() {
        let text = "groups:\n- name: g\n  rules:\n  - alert: Hot\n    expr: t > 1\n    for: 2s\n    keep_firing_for: 2s\n    labels: {severity: warning}\n";
        let mut e = Engine::new(load_str("f", text).unwrap(), 1000);
        let mut ring = Ring::new(0);
        let lbl = vec![("__name__".to_string(), "t".to_string())];
        let mut states = Vec::new();
        for (i, v) in [0.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0].into_iter().enumerate() {
            let t = i as i64 * 1000;
            ring.append(lbl.clone(), t, v);
            let c = e.eval(&mut ring, t);
            states.push(
                c.changes
                    .iter()
                    .map(|c| (c.from, c.alert.state))
                    .collect::<Vec<_>>(),
            );
        }
        use State::*;
        assert_eq!(
            states,
            vec![
                vec![],
                vec![(Inactive, Pending)],
                vec![],
                vec![(Pending, Firing)],
                vec![],
                vec![],
                vec![(Firing, Resolved)],
            ]
        );
    }
}
