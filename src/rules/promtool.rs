//! Runs promtool-format rule unit tests (`m4watch test-rules FILE...`): input series in
//! the expanding notation, `alert_rule_test` and `promql_expr_test`, reported the way
//! `promtool test rules` reports them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use serde::Deserialize;

use super::promql::{self, Evaluator, Value};
use super::{Engine, State, parse_prom_duration};
use crate::model::Labels;
use crate::store::ring::{Ring, stale_nan};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<String>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

/// Why a series description is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SeriesError {
    #[error("cannot parse series {series:?}: {reason}")]
    Parse { series: String, reason: String },
    #[error("series {0:?} is not a selector")]
    NotSelector(String),
    #[error("series {0:?}: only = matchers describe a series")]
    NotEqual(String),
}

/// A token of the expanding notation that is no number, `_`, `stale` or `axn`/`a+bxn`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {token:?} in {values:?}")]
pub(crate) struct ValueError {
    pub token: String,
    pub values: String,
}

/// Why a test file could not be run at all (a test that runs and fails is not this).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TestFileError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Not the test file format; `at` is the key path.
    #[error("{path}: {at}: {reason}")]
    Format {
        path: String,
        at: String,
        reason: serde_yaml_ng::Error,
    },
    #[error("unsupported construct: {0}")]
    Unsupported(&'static str),
    #[error(transparent)]
    Duration(#[from] super::DurationError),
    #[error(transparent)]
    Rules(#[from] super::LoadError),
    #[error(transparent)]
    Series(#[from] SeriesError),
    #[error(transparent)]
    Values(#[from] ValueError),
}

/// Parses a series description such as `metric{a="b"}` into sorted labels with
/// `__name__`, as promtool's `ParseSeriesDesc` does.
pub(crate) fn parse_series(s: &str) -> Result<Labels, SeriesError> {
    if s.trim() == "{}" {
        return Ok(Vec::new());
    }
    let e = promql_parser::parser::parse(s).map_err(|reason| SeriesError::Parse {
        series: s.to_string(),
        reason,
    })?;
    let Expr::VectorSelector(vs) = e else {
        return Err(SeriesError::NotSelector(s.to_string()));
    };
    let mut out: Labels = Vec::new();
    if let Some(n) = vs.name {
        out.push(("__name__".into(), n));
    }
    for m in vs.matchers.matchers {
        if m.op != MatchOp::Equal {
            return Err(SeriesError::NotEqual(s.to_string()));
        }
        if !out.iter().any(|(k, _)| *k == m.name) {
            out.push((m.name, m.value));
        }
    }
    out.retain(|(_, v)| !v.is_empty());
    out.sort();
    Ok(out)
}

/// One value of the expanding notation: a number, or `None` for `_`.
pub(crate) fn expand_values(s: &str) -> Result<Vec<Option<f64>>, ValueError> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        let bad = || ValueError {
            token: tok.to_string(),
            values: s.to_string(),
        };
        if tok == "_" {
            out.push(None);
            continue;
        }
        if tok == "stale" {
            out.push(Some(stale_nan()));
            continue;
        }
        if let Some((lhs, n)) = tok.rsplit_once('x') {
            if let Ok(n) = n.parse::<u64>() {
                if lhs == "_" {
                    out.extend(std::iter::repeat_n(None, n as usize));
                    continue;
                }
                // a+b or a-b: the operator is the first sign after the first character
                // that does not belong to an exponent.
                let bytes = lhs.as_bytes();
                let op = (1..bytes.len()).find(|&i| {
                    (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E')
                });
                let (a, b) = match op {
                    Some(i) => {
                        let a = promql::parse_float(&lhs[..i]).ok_or_else(bad)?;
                        let b = promql::parse_float(&lhs[i + 1..]).ok_or_else(bad)?;
                        (a, if bytes[i] == b'-' { -b } else { b })
                    }
                    None => (promql::parse_float(lhs).ok_or_else(bad)?, 0.0),
                };
                let mut cur = a;
                out.push(Some(cur));
                for _ in 0..n {
                    cur += b;
                    out.push(Some(cur));
                }
                continue;
            }
        }
        out.push(Some(promql::parse_float(tok).ok_or_else(bad)?));
    }
    Ok(out)
}

/// Runs every test file and writes promtool-style output to `out`; true when all pass.
pub fn run_files(files: &[PathBuf], out: &mut String) -> bool {
    let mut ok = true;
    for f in files {
        let _ = writeln!(out, "Unit Testing:  {}", f.display());
        match run_file(f) {
            Ok(errors) if errors.is_empty() => {
                let _ = writeln!(out, "  SUCCESS\n");
            }
            Ok(errors) => {
                ok = false;
                let _ = writeln!(out, "  FAILED:");
                for e in errors {
                    let _ = writeln!(out, "{}", indent(&e, "    "));
                }
                out.push('\n');
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(out, "  FAILED:\n{}\n", indent(&e.to_string(), "    "));
            }
        }
    }
    ok
}

fn indent(s: &str, by: &str) -> String {
    s.lines()
        .map(|l| format!("{by}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs one test file; `Ok` holds the failure messages (empty when all passed).
pub(crate) fn run_file(path: &Path) -> Result<Vec<String>, TestFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TestFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let de = serde_yaml_ng::Deserializer::from_str(&text);
    let tf: TestFile = serde_path_to_error::deserialize(de).map_err(|e| TestFileError::Format {
        path: path.display().to_string(),
        at: e.path().to_string(),
        reason: e.into_inner(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let rule_files: Vec<PathBuf> = tf
        .rule_files
        .iter()
        .flat_map(|r| super::expand_glob(&base.join(r)))
        .collect();
    let eval_interval = match &tf.evaluation_interval {
        Some(d) => parse_prom_duration(d)?,
        None => 60_000,
    };
    if !tf.group_eval_order.is_empty() {
        return Err(TestFileError::Unsupported("group_eval_order"));
    }
    let mut errors = Vec::new();
    for tg in &tf.tests {
        if !tg.external_labels.is_empty() || tg.external_url.is_some() {
            return Err(TestFileError::Unsupported("external_labels/external_url"));
        }
        let groups = super::load_files(&rule_files)?;
        let mut engine = Engine::new(groups, eval_interval);
        errors.extend(run_group(tg, &mut engine, eval_interval)?);
    }
    Ok(errors)
}

fn run_group(
    tg: &TestGroup,
    engine: &mut Engine,
    eval_interval: i64,
) -> Result<Vec<String>, TestFileError> {
    let prefix = tg
        .name
        .as_ref()
        .map(|n| format!("    name: {n},\n"))
        .unwrap_or_default();
    let interval = match &tg.interval {
        Some(d) => parse_prom_duration(d)?,
        None => 60_000,
    };
    let mut ring = Ring::new(0);
    for s in &tg.input_series {
        let labels = parse_series(&s.series)?;
        for (i, v) in expand_values(&s.values)?.into_iter().enumerate() {
            if let Some(v) = v {
                ring.append(labels.clone(), i as i64 * interval, v);
            }
        }
    }
    let mut alert_tests: Vec<(i64, &AlertTest)> = Vec::new();
    for a in &tg.alert_rule_test {
        alert_tests.push((parse_prom_duration(&a.eval_time)?, a));
    }
    alert_tests.sort_by_key(|a| a.0);
    let mut expr_tests = Vec::new();
    for e in &tg.promql_expr_test {
        expr_tests.push((parse_prom_duration(&e.eval_time)?, e));
    }
    let max_t = alert_tests
        .iter()
        .map(|a| a.0)
        .chain(expr_tests.iter().map(|e| e.0))
        .max()
        .unwrap_or(0);
    let mut errors = Vec::new();
    let mut next = 0;
    let mut ts = 0;
    while ts <= max_t {
        let cycle = engine.eval(&mut ring, ts);
        for (g, e) in cycle.failures {
            errors.push(format!(
                "{prefix}    group {g:?}: rule evaluation failed at {}: {e}",
                fmt_ms(ts)
            ));
        }
        // Alerts are checked at the last evaluation at or before their eval_time.
        while next < alert_tests.len() && alert_tests[next].0 < ts + eval_interval {
            let (at, test) = alert_tests[next];
            if let Some(e) = check_alerts(engine, test, at) {
                errors.push(format!("{prefix}{e}"));
            }
            next += 1;
        }
        ts += eval_interval;
    }
    for (at, test) in expr_tests {
        if let Some(e) = check_expr(&ring, test, at) {
            errors.push(format!("{prefix}{e}"));
        }
    }
    Ok(errors)
}

fn fmt_ms(ms: i64) -> String {
    let d = std::time::Duration::from_millis(ms as u64);
    if ms == 0 {
        "0s".into()
    } else {
        humantime::format_duration(d).to_string().replace(' ', "")
    }
}

fn fmt_map(m: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

type LabelsAndAnnotations = (BTreeMap<String, String>, BTreeMap<String, String>);

fn check_alerts(engine: &Engine, test: &AlertTest, at: i64) -> Option<String> {
    let mut got: Vec<LabelsAndAnnotations> = engine
        .active()
        .filter(|(_, r, a)| r.name == test.alertname && a.state == State::Firing)
        .map(|(_, _, a)| {
            (
                a.labels.iter().cloned().collect(),
                a.annotations.iter().cloned().collect(),
            )
        })
        .collect();
    let mut exp: Vec<LabelsAndAnnotations> = test
        .exp_alerts
        .iter()
        .map(|e| {
            let mut l = e.exp_labels.clone();
            l.insert("alertname".into(), test.alertname.clone());
            (l, e.exp_annotations.clone())
        })
        .collect();
    got.sort();
    exp.sort();
    if got == exp {
        return None;
    }
    let list = |v: &[LabelsAndAnnotations]| {
        let items: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(i, (l, a))| {
                format!(
                    "\n            {i}:\n              Labels:{}\n              Annotations:{}",
                    fmt_map(l),
                    fmt_map(a)
                )
            })
            .collect();
        format!("[{}\n            ]", items.join(""))
    };
    Some(format!(
        "    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
        test.alertname,
        fmt_ms(at),
        list(&exp),
        list(&got)
    ))
}

fn check_expr(ring: &Ring, test: &ExprTest, at: i64) -> Option<String> {
    let fail = |msg: String| {
        Some(format!(
            "    expr: {:?}, time: {}, err: {msg}",
            test.expr,
            fmt_ms(at)
        ))
    };
    let expr = match promql::parse(&test.expr) {
        Ok(e) => e,
        Err(e) => return fail(e.to_string()),
    };
    let got = match (Evaluator { ring, t: at }).eval(&expr) {
        Ok(Value::Vector(v)) => v
            .into_iter()
            .map(|s| (s.labels, s.value))
            .collect::<Vec<_>>(),
        Ok(Value::Scalar(s)) => vec![(Vec::new(), s)],
        Err(e) => return fail(e.0),
    };
    let mut exp = Vec::new();
    for s in &test.exp_samples {
        let labels = if s.labels.trim().is_empty() {
            Vec::new()
        } else {
            match parse_series(&s.labels) {
                Ok(l) => l,
                Err(e) => return fail(e.to_string()),
            }
        };
        exp.push((labels, s.value));
    }
    let key = |v: &(Labels, f64)| format!("{:?}", v.0);
    let mut got_sorted = got.clone();
    got_sorted.sort_by_key(key);
    exp.sort_by_key(key);
    let same = got_sorted.len() == exp.len()
        && got_sorted
            .iter()
            .zip(&exp)
            .all(|(g, e)| g.0 == e.0 && (g.1 == e.1 || (g.1.is_nan() && e.1.is_nan())));
    if same {
        return None;
    }
    let show = |v: &[(Labels, f64)]| {
        let items: Vec<String> = v
            .iter()
            .map(|(l, val)| {
                let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                format!(
                    "{{{}}} {}",
                    inner.join(", "),
                    super::template::go_g(*val, None)
                )
            })
            .collect();
        items.join(", ")
    };
    Some(format!(
        "    expr: {:?}, time: {},\n        exp: {}\n        got: {}",
        test.expr,
        fmt_ms(at),
        show(&exp),
        show(&got_sorted)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanding_notation() {
        assert_eq!(
            expand_values("1+2x3 _ -1-1x1 _x2 5 stale").unwrap()[..8],
            [
                Some(1.0),
                Some(3.0),
                Some(5.0),
                Some(7.0),
                None,
                Some(-1.0),
                Some(-2.0),
                None
            ]
        );
        let v = expand_values("1e3+1x1 stale").unwrap();
        assert_eq!(&v[..2], &[Some(1000.0), Some(1001.0)]);
        assert!(crate::store::ring::is_stale(v[2].unwrap()));
        assert!(expand_values("1+x").is_err());
    }

    #[test]
    fn series_descriptions() {
        assert_eq!(
            parse_series("up{job=\"a\", i=\"1\"}").unwrap(),
            vec![
                ("__name__".to_string(), "up".to_string()),
                ("i".into(), "1".into()),
                ("job".into(), "a".into())
            ]
        );
    }
}
