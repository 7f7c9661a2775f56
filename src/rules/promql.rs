//! PromQL evaluation over the sample ring, for the documented subset.
//!
//! Expressions are parsed by the `promql-parser` crate; [`check`] rejects everything
//! outside the subset before a rule is accepted, so evaluation never meets an unknown
//! construct. Semantics follow Prometheus 2.x: instant selectors look back 5 minutes and
//! stop at a staleness marker, range selectors include both ends, `rate`/`increase`/
//! `delta` extrapolate as Prometheus does.

use std::collections::{BTreeMap, HashMap};

use promql_parser::label::Matchers;
use promql_parser::parser::{
    self, AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, VectorMatchCardinality,
    VectorSelector,
};

use crate::model::Labels;
use crate::store::ring::{Ring, Series, is_stale, label_of};

/// How far an instant selector looks back for the latest sample.
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub labels: Labels,
    pub value: f64,
}

/// The result of an expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Scalar(f64),
    Vector(Vec<Sample>),
}

/// A runtime evaluation error (duplicate series in a match, wrong result type).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct EvalError(pub String);

/// Why an expression is refused before any rule uses it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExprError {
    /// Not PromQL (promql-parser's message).
    #[error("cannot parse expression: {0}")]
    Parse(String),
    /// PromQL outside the supported subset; names the construct.
    #[error("unsupported construct: {0}")]
    Unsupported(String),
}

const AGGREGATIONS: &[&str] = &["sum", "avg", "min", "max", "count"];
const RANGE_FUNCTIONS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "sum_over_time",
    "count_over_time",
    "absent_over_time",
    "deriv",
    "predict_linear",
];
const FUNCTIONS: &[&str] = &[
    "absent",
    "clamp_min",
    "clamp_max",
    "abs",
    "round",
    "histogram_quantile",
    "time",
    "vector",
    "scalar",
];

/// Parses `text` and checks it stays inside the supported subset; the error names the
/// unsupported construct.
pub(crate) fn parse(text: &str) -> Result<Expr, ExprError> {
    let e = parser::parse(text).map_err(ExprError::Parse)?;
    check(&e, false)?;
    Ok(e)
}

/// Rejects what the evaluator does not implement.
pub(crate) fn check(e: &Expr, range_allowed: bool) -> Result<(), ExprError> {
    let unsupported = |what: String| Err(ExprError::Unsupported(what));
    match e {
        Expr::NumberLiteral(_) => Ok(()),
        Expr::StringLiteral(_) => unsupported("string literal".into()),
        Expr::Paren(p) => check(&p.expr, false),
        Expr::Unary(u) => check(&u.expr, false),
        Expr::Subquery(_) => unsupported("subquery".into()),
        Expr::Extension(_) => unsupported("extension expression".into()),
        Expr::VectorSelector(vs) => check_selector(vs),
        Expr::MatrixSelector(m) => {
            if !range_allowed {
                return unsupported("range selector outside a range function".into());
            }
            check_selector(&m.vs)
        }
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if !AGGREGATIONS.contains(&op.as_str()) || a.param.is_some() {
                return unsupported(format!("aggregation `{op}`"));
            }
            check(&a.expr, false)
        }
        Expr::Binary(b) => {
            let op = b.op.to_string();
            if op == "atan2" {
                return unsupported("operator `atan2`".into());
            }
            if let Some(m) = &b.modifier {
                match &m.card {
                    VectorMatchCardinality::ManyToOne(include) if !include.labels.is_empty() => {
                        return unsupported("group_left with labels to copy".into());
                    }
                    VectorMatchCardinality::OneToMany(_) => {
                        return unsupported("group_right".into());
                    }
                    _ => {}
                }
                if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                    return unsupported("fill modifier".into());
                }
            }
            check(&b.lhs, false)?;
            check(&b.rhs, false)
        }
        Expr::Call(c) => {
            let name = c.func.name;
            let ranged = RANGE_FUNCTIONS.contains(&name);
            if !ranged && !FUNCTIONS.contains(&name) {
                return unsupported(format!("function `{name}`"));
            }
            for a in &c.args.args {
                check(a, ranged)?;
            }
            Ok(())
        }
    }
}

fn check_selector(vs: &VectorSelector) -> Result<(), ExprError> {
    let unsupported = |what: &str| Err(ExprError::Unsupported(what.into()));
    if vs.offset.is_some() {
        return unsupported("offset modifier");
    }
    if vs.at.is_some() {
        return unsupported("@ modifier");
    }
    if !vs.matchers.or_matchers.is_empty() {
        return unsupported("`or` inside a selector");
    }
    Ok(())
}

/// A series and its non-stale samples inside a range.
type Ranged<'a> = (&'a Series, Vec<(i64, f64)>);

/// Evaluates expressions against a ring at one instant.
pub(crate) struct Evaluator<'a> {
    pub ring: &'a Ring,
    /// Evaluation time, ms since the epoch.
    pub t: i64,
}

fn drop_name(l: &mut Labels) {
    l.retain(|(k, _)| k != "__name__");
}

fn without_name(l: &[(String, String)]) -> Labels {
    l.iter().filter(|(k, _)| k != "__name__").cloned().collect()
}

/// The metric name a selector asks for, if it names one.
pub(crate) fn selector_name(vs: &VectorSelector) -> Option<&str> {
    vs.name.as_deref().or_else(|| {
        vs.matchers
            .matchers
            .iter()
            .find(|m| m.name == "__name__" && matches!(m.op, promql_parser::label::MatchOp::Equal))
            .map(|m| m.value.as_str())
    })
}

fn matches(m: &Matchers, s: &Series) -> bool {
    m.matchers.iter().all(|m| m.is_match(s.label(&m.name)))
}

/// Whether selector `vs` picks the series with `labels` (sorted, with `__name__`).
pub(crate) fn selects(vs: &VectorSelector, labels: &[(String, String)]) -> bool {
    selector_name(vs).is_none_or(|n| label_of(labels, "__name__") == n)
        && vs
            .matchers
            .matchers
            .iter()
            .all(|m| m.is_match(label_of(labels, &m.name)))
}

impl<'a> Evaluator<'a> {
    /// Series a selector picks.
    fn select(&self, vs: &VectorSelector) -> Vec<&'a Series> {
        let ring = self.ring;
        match selector_name(vs) {
            Some(n) => ring.named(n).filter(|s| matches(&vs.matchers, s)).collect(),
            None => ring.all().filter(|s| matches(&vs.matchers, s)).collect(),
        }
    }

    pub(crate) fn instant(&self, vs: &VectorSelector) -> Vec<Sample> {
        self.select(vs)
            .into_iter()
            .filter_map(|s| {
                let last = s.range(self.t - LOOKBACK_MS, self.t).last()?;
                (!is_stale(last.1)).then(|| Sample {
                    labels: s.labels.clone(),
                    value: last.1,
                })
            })
            .collect()
    }

    /// Evaluates `e` at the evaluator's instant.
    pub(crate) fn eval(&self, e: &Expr) -> Result<Value, EvalError> {
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => Ok(match self.eval(&u.expr)? {
                Value::Scalar(v) => Value::Scalar(-v),
                Value::Vector(mut v) => {
                    for s in &mut v {
                        s.value = -s.value;
                        drop_name(&mut s.labels);
                    }
                    Value::Vector(v)
                }
            }),
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.instant(vs))),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Binary(b) => self.binary(b),
            Expr::Call(c) => self.call(c),
            other => Err(EvalError(format!("cannot evaluate {other}"))),
        }
    }

    fn vector(&self, e: &Expr) -> Result<Vec<Sample>, EvalError> {
        match self.eval(e)? {
            Value::Vector(v) => Ok(v),
            Value::Scalar(_) => Err(EvalError(format!("expected a vector from {e}"))),
        }
    }

    fn scalar(&self, e: &Expr) -> Result<f64, EvalError> {
        match self.eval(e)? {
            Value::Scalar(v) => Ok(v),
            Value::Vector(_) => Err(EvalError(format!("expected a scalar from {e}"))),
        }
    }

    fn aggregate(&self, a: &AggregateExpr) -> Result<Value, EvalError> {
        let op = a.op.to_string();
        let input = self.vector(&a.expr)?;
        // (sum or extreme or mean, count)
        let mut groups: BTreeMap<Labels, (f64, f64)> = BTreeMap::new();
        for s in input {
            let key: Labels = match &a.modifier {
                Some(LabelModifier::Include(by)) => s
                    .labels
                    .into_iter()
                    .filter(|(k, _)| by.labels.iter().any(|b| b == k))
                    .collect(),
                Some(LabelModifier::Exclude(w)) => s
                    .labels
                    .into_iter()
                    .filter(|(k, _)| k != "__name__" && !w.labels.iter().any(|b| b == k))
                    .collect(),
                None => Vec::new(),
            };
            let v = s.value;
            match groups.get_mut(&key) {
                None => {
                    let first = if op == "count" { 1.0 } else { v };
                    groups.insert(key, (first, 1.0));
                }
                Some((acc, n)) => {
                    *n += 1.0;
                    match op.as_str() {
                        "sum" => *acc += v,
                        "count" => *acc += 1.0,
                        "min" => {
                            if *acc > v || acc.is_nan() {
                                *acc = v
                            }
                        }
                        "max" => {
                            if *acc < v || acc.is_nan() {
                                *acc = v
                            }
                        }
                        // Incremental mean, as Prometheus 2.x computes it.
                        _ => {
                            if acc.is_infinite() {
                                if v.is_finite() || *acc == v {
                                    continue;
                                }
                                *acc = f64::NAN;
                                continue;
                            }
                            *acc += v / *n - *acc / *n;
                        }
                    }
                }
            }
        }
        Ok(Value::Vector(
            groups
                .into_iter()
                .map(|(labels, (value, _))| Sample { labels, value })
                .collect(),
        ))
    }

    fn binary(&self, b: &BinaryExpr) -> Result<Value, EvalError> {
        let op = b.op.to_string();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let comparison = b.op.is_comparison_operator();
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => Ok(Value::Scalar(if comparison {
                bool_value(compare(&op, l, r))
            } else {
                arith(&op, l, r)
            })),
            (Value::Vector(v), Value::Scalar(s)) => Ok(Value::Vector(vector_scalar(
                &op,
                v,
                s,
                false,
                comparison,
                return_bool,
            ))),
            (Value::Scalar(s), Value::Vector(v)) => Ok(Value::Vector(vector_scalar(
                &op,
                v,
                s,
                true,
                comparison,
                return_bool,
            ))),
            (Value::Vector(l), Value::Vector(r)) => {
                let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
                if b.op.is_set_operator() {
                    Ok(Value::Vector(set_op(&op, l, r, matching)))
                } else {
                    let many_to_one = b
                        .modifier
                        .as_ref()
                        .is_some_and(|m| matches!(m.card, VectorMatchCardinality::ManyToOne(_)));
                    vector_vector(
                        &op,
                        l,
                        r,
                        Matching {
                            on: matching,
                            many_to_one,
                        },
                        comparison,
                        return_bool,
                    )
                    .map(Value::Vector)
                }
            }
        }
    }

    /// Non-stale samples of every series `e` (a matrix selector) picks.
    fn ranges(&self, e: &Expr) -> Result<(Vec<Ranged<'a>>, i64), EvalError> {
        let Expr::MatrixSelector(m) = e else {
            return Err(EvalError(format!("expected a range selector, got {e}")));
        };
        let range = m.range.as_millis() as i64;
        let out = self
            .select(&m.vs)
            .into_iter()
            .map(|s| {
                let pts: Vec<(i64, f64)> = s
                    .range(self.t - range, self.t)
                    .iter()
                    .filter(|p| !is_stale(p.1))
                    .copied()
                    .collect();
                (s, pts)
            })
            .filter(|(_, p)| !p.is_empty())
            .collect();
        Ok((out, range))
    }

    fn call(&self, c: &Call) -> Result<Value, EvalError> {
        let args = &c.args.args;
        let name = c.func.name;
        let map = |f: &dyn Fn(f64) -> f64| -> Result<Value, EvalError> {
            let mut v = self.vector(&args[0])?;
            for s in &mut v {
                s.value = f(s.value);
                drop_name(&mut s.labels);
            }
            Ok(Value::Vector(v))
        };
        match name {
            "time" => Ok(Value::Scalar(self.t as f64 / 1000.0)),
            "vector" => Ok(Value::Vector(vec![Sample {
                labels: Vec::new(),
                value: self.scalar(&args[0])?,
            }])),
            "scalar" => {
                let v = self.vector(&args[0])?;
                Ok(Value::Scalar(if v.len() == 1 {
                    v[0].value
                } else {
                    f64::NAN
                }))
            }
            "abs" => map(&f64::abs),
            "round" => {
                let to = match args.get(1) {
                    Some(a) => self.scalar(a)?,
                    None => 1.0,
                };
                let inv = 1.0 / to;
                map(&|v: f64| (v * inv + 0.5).floor() / inv)
            }
            "clamp_min" => {
                let m = self.scalar(&args[1])?;
                map(&|v: f64| v.max(m))
            }
            "clamp_max" => {
                let m = self.scalar(&args[1])?;
                map(&|v: f64| v.min(m))
            }
            "absent" => {
                let v = self.vector(&args[0])?;
                Ok(Value::Vector(if v.is_empty() {
                    vec![Sample {
                        labels: absent_labels(&args[0]),
                        value: 1.0,
                    }]
                } else {
                    Vec::new()
                }))
            }
            "absent_over_time" => {
                let (r, _) = self.ranges(&args[0])?;
                Ok(Value::Vector(if r.is_empty() {
                    vec![Sample {
                        labels: absent_labels(&args[0]),
                        value: 1.0,
                    }]
                } else {
                    Vec::new()
                }))
            }
            "histogram_quantile" => {
                let q = self.scalar(&args[0])?;
                Ok(Value::Vector(histogram_quantile(q, self.vector(&args[1])?)))
            }
            _ => {
                let (ranges, range_ms) = self.ranges(&args[0])?;
                let ahead = match name {
                    "predict_linear" => self.scalar(&args[1])?,
                    _ => 0.0,
                };
                let mut out = Vec::with_capacity(ranges.len());
                for (s, pts) in ranges {
                    let value = match name {
                        "deriv" | "predict_linear" => {
                            let Some((slope, intercept)) = linear_regression(&pts, self.t) else {
                                continue;
                            };
                            match name {
                                "deriv" => slope,
                                _ => slope * ahead + intercept,
                            }
                        }
                        "rate" | "increase" | "delta" => {
                            match extrapolated_rate(
                                &pts,
                                self.t,
                                range_ms,
                                name != "delta",
                                name == "rate",
                            ) {
                                Some(v) => v,
                                None => continue,
                            }
                        }
                        "count_over_time" => pts.len() as f64,
                        "sum_over_time" => pts.iter().map(|p| p.1).sum(),
                        "max_over_time" => pts
                            .iter()
                            .fold(pts[0].1, |m, p| if p.1 > m || m.is_nan() { p.1 } else { m }),
                        "min_over_time" => pts
                            .iter()
                            .fold(pts[0].1, |m, p| if p.1 < m || m.is_nan() { p.1 } else { m }),
                        "avg_over_time" => {
                            let mut mean = 0.0;
                            for (i, p) in pts.iter().enumerate() {
                                let n = (i + 1) as f64;
                                mean += p.1 / n - mean / n;
                            }
                            mean
                        }
                        other => {
                            return Err(EvalError(format!("function {other} is not implemented")));
                        }
                    };
                    out.push(Sample {
                        labels: without_name(&s.labels),
                        value,
                    });
                }
                Ok(Value::Vector(out))
            }
        }
    }
}

/// Labels `absent()` gives its 1: the equality matchers of the selector.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(m) => &m.vs,
        _ => return Vec::new(),
    };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for m in &vs.matchers.matchers {
        *seen.entry(m.name.as_str()).or_default() += 1;
    }
    let mut out: Labels = vs
        .matchers
        .matchers
        .iter()
        .filter(|m| {
            m.name != "__name__"
                && matches!(m.op, promql_parser::label::MatchOp::Equal)
                && seen[m.name.as_str()] == 1
        })
        .map(|m| (m.name.clone(), m.value.clone()))
        .collect();
    out.sort();
    out
}

/// The least-squares line through `pts` as Prometheus' `linearRegression` fits it:
/// `(slope per second, value at t_ms)`; `None` for fewer than two points (Prometheus
/// gives no sample there either).
fn linear_regression(pts: &[(i64, f64)], t_ms: i64) -> Option<(f64, f64)> {
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let (mut sx, mut sy, mut sxy, mut sxx) = (0.0, 0.0, 0.0, 0.0);
    let const_y = pts.iter().all(|p| p.1 == pts[0].1);
    for &(t, y) in pts {
        let x = (t - t_ms) as f64 / 1000.0;
        sx += x;
        sy += y;
        sxy += x * y;
        sxx += x * x;
    }
    if const_y {
        // A flat series has slope 0 exactly, whatever rounding says.
        return Some((0.0, pts[0].1));
    }
    let slope = (sxy - sx * sy / n) / (sxx - sx * sx / n);
    Some((slope, sy / n - slope * sx / n))
}

/// Prometheus' `extrapolatedRate`.
fn extrapolated_rate(
    pts: &[(i64, f64)],
    t: i64,
    range_ms: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let (first, last) = (pts[0], pts[pts.len() - 1]);
    let range_start = t - range_ms;
    let mut result = last.1 - first.1;
    if is_counter {
        let mut prev = 0.0;
        for p in pts {
            if p.1 < prev {
                result += prev;
            }
            prev = p.1;
        }
    }
    let mut to_start = (first.0 - range_start) as f64 / 1000.0;
    let to_end = (t - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg_step = sampled / (pts.len() - 1) as f64;
    if is_counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_step * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_step / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg_step / 2.0
    };
    result *= interval / sampled;
    if is_rate {
        result /= range_ms as f64 / 1000.0;
    }
    Some(result)
}

fn histogram_quantile(q: f64, v: Vec<Sample>) -> Vec<Sample> {
    let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    for s in v {
        let Some(le) = s
            .labels
            .iter()
            .find(|(k, _)| k == "le")
            .and_then(|(_, v)| parse_float(v))
        else {
            continue;
        };
        let key: Labels = s
            .labels
            .into_iter()
            .filter(|(k, _)| k != "le" && k != "__name__")
            .collect();
        groups.entry(key).or_default().push((le, s.value));
    }
    groups
        .into_iter()
        .map(|(labels, buckets)| Sample {
            labels,
            value: bucket_quantile(q, buckets),
        })
        .collect()
}

/// Parses a float as Prometheus writes them (`+Inf`, `NaN` included).
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    match s.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        t => t.parse().ok(),
    }
}

/// Prometheus' `bucketQuantile`.
fn bucket_quantile(q: f64, mut b: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    if b.last().is_none_or(|l| l.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce equal bounds, then force monotonic counts.
    let mut c: Vec<(f64, f64)> = Vec::with_capacity(b.len());
    for x in b {
        match c.last_mut() {
            Some(l) if l.0 == x.0 => l.1 += x.1,
            _ => c.push(x),
        }
    }
    let mut max = f64::NEG_INFINITY;
    for x in &mut c {
        if x.1 > max {
            max = x.1;
        } else {
            x.1 = max;
        }
    }
    if c.len() < 2 {
        return f64::NAN;
    }
    let observations = c[c.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let idx = c[..c.len() - 1].partition_point(|x| x.1 < rank);
    if idx == c.len() - 1 {
        return c[c.len() - 2].0;
    }
    if idx == 0 && c[0].0 <= 0.0 {
        return c[0].0;
    }
    let (mut start, end, mut count) = (0.0, c[idx].0, c[idx].1);
    if idx > 0 {
        start = c[idx - 1].0;
        count -= c[idx - 1].1;
        rank -= c[idx - 1].1;
    }
    start + (end - start) * (rank / count)
}

fn bool_value(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

fn compare(op: &str, l: f64, r: f64) -> bool {
    match op {
        "==" => l == r,
        "!=" => l != r,
        ">" => l > r,
        "<" => l < r,
        ">=" => l >= r,
        _ => l <= r,
    }
}

fn arith(op: &str, l: f64, r: f64) -> f64 {
    match op {
        "+" => l + r,
        "-" => l - r,
        "*" => l * r,
        "/" => l / r,
        "%" => l % r,
        _ => l.powf(r),
    }
}

fn vector_scalar(
    op: &str,
    v: Vec<Sample>,
    s: f64,
    swap: bool,
    comparison: bool,
    return_bool: bool,
) -> Vec<Sample> {
    let mut out = Vec::with_capacity(v.len());
    for mut e in v {
        let (l, r) = if swap { (s, e.value) } else { (e.value, s) };
        if comparison {
            let keep = compare(op, l, r);
            if return_bool {
                e.value = bool_value(keep);
                drop_name(&mut e.labels);
            } else if !keep {
                continue;
            }
        } else {
            e.value = arith(op, l, r);
            drop_name(&mut e.labels);
        }
        out.push(e);
    }
    out
}

/// The labels two elements are matched on.
fn signature(l: &[(String, String)], matching: Option<&LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => l
            .iter()
            .filter(|(k, _)| on.labels.iter().any(|o| o == k))
            .cloned()
            .collect(),
        Some(LabelModifier::Exclude(ign)) => l
            .iter()
            .filter(|(k, _)| k != "__name__" && !ign.labels.iter().any(|o| o == k))
            .cloned()
            .collect(),
        None => without_name(l),
    }
}

fn fmt_labels(l: &[(String, String)]) -> String {
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// How the two sides of a vector operation pair up: the `on`/`ignoring` labels, and
/// whether several left series may share one right series (`group_left`, whose result
/// keeps each left series' labels).
struct Matching<'m> {
    on: Option<&'m LabelModifier>,
    many_to_one: bool,
}

fn vector_vector(
    op: &str,
    l: Vec<Sample>,
    r: Vec<Sample>,
    m: Matching<'_>,
    comparison: bool,
    return_bool: bool,
) -> Result<Vec<Sample>, EvalError> {
    let matching = m.on;
    let mut right: HashMap<Labels, f64> = HashMap::with_capacity(r.len());
    for s in r {
        let sig = signature(&s.labels, matching);
        if right.insert(sig.clone(), s.value).is_some() {
            return Err(EvalError(format!(
                "found duplicate series for the match group {} on the right hand-side of the operation: many-to-many matching not allowed",
                fmt_labels(&sig)
            )));
        }
    }
    let mut out = Vec::with_capacity(l.len());
    let mut seen: HashMap<Labels, ()> = HashMap::new();
    for mut s in l {
        let sig = signature(&s.labels, matching);
        let Some(&rv) = right.get(&sig) else { continue };
        let value = if comparison {
            let keep = compare(op, s.value, rv);
            if return_bool {
                bool_value(keep)
            } else if keep {
                s.value
            } else {
                continue;
            }
        } else {
            arith(op, s.value, rv)
        };
        if !comparison || return_bool {
            drop_name(&mut s.labels);
        }
        match matching {
            _ if m.many_to_one => {}
            Some(LabelModifier::Include(on)) => {
                s.labels.retain(|(k, _)| on.labels.iter().any(|o| o == k))
            }
            Some(LabelModifier::Exclude(ign)) => {
                s.labels.retain(|(k, _)| !ign.labels.iter().any(|o| o == k))
            }
            None => {}
        }
        if seen.insert(s.labels.clone(), ()).is_some() {
            return Err(EvalError(format!(
                "multiple matches for labels {}: many-to-one matching must be explicit (group_left/group_right)",
                fmt_labels(&s.labels)
            )));
        }
        s.value = value;
        out.push(s);
    }
    Ok(out)
}

fn set_op(
    op: &str,
    l: Vec<Sample>,
    r: Vec<Sample>,
    matching: Option<&LabelModifier>,
) -> Vec<Sample> {
    let rsigs: std::collections::HashSet<Labels> =
        r.iter().map(|s| signature(&s.labels, matching)).collect();
    match op {
        "and" => l
            .into_iter()
            .filter(|s| rsigs.contains(&signature(&s.labels, matching)))
            .collect(),
        "unless" => l
            .into_iter()
            .filter(|s| !rsigs.contains(&signature(&s.labels, matching)))
            .collect(),
        _ => {
            let lsigs: std::collections::HashSet<Labels> =
                l.iter().map(|s| signature(&s.labels, matching)).collect();
            let mut out = l;
            out.extend(
                r.into_iter()
                    .filter(|s| !lsigs.contains(&signature(&s.labels, matching))),
            );
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(series: &[(&str, &[(i64, f64)])]) -> Ring {
        let mut r = Ring::new(0);
        for (sel, pts) in series {
            let labels = super::super::promtool::parse_series(sel).unwrap();
            for &(t, v) in *pts {
                r.append(labels.clone(), t * 1000, v);
            }
        }
        r
    }

    fn eval(r: &Ring, t: i64, q: &str) -> Value {
        Evaluator {
            ring: r,
            t: t * 1000,
        }
        .eval(&parse(q).unwrap())
        .unwrap()
    }

    fn values(v: Value) -> Vec<(String, f64)> {
        match v {
            Value::Vector(v) => {
                let mut out: Vec<_> = v
                    .into_iter()
                    .map(|s| (fmt_labels(&s.labels), s.value))
                    .collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                out
            }
            Value::Scalar(s) => vec![(String::new(), s)],
        }
    }

    #[test]
    fn lookback_and_staleness() {
        let r = ring(&[
            ("up{job=\"a\"}", &[(0, 1.0), (10, 2.0)]),
            (
                "up{job=\"b\"}",
                &[(0, 1.0), (10, crate::store::ring::stale_nan())],
            ),
        ]);
        assert_eq!(
            values(eval(&r, 10, "up")),
            vec![("{__name__=\"up\", job=\"a\"}".into(), 2.0)]
        );
        assert_eq!(values(eval(&r, 5, "up")).len(), 2);
        assert_eq!(values(eval(&r, 300, "up")).len(), 1);
        assert_eq!(values(eval(&r, 311, "up")).len(), 0);
    }

    #[test]
    fn predict_linear_and_deriv_fit_the_least_squares_line() {
        // Available bytes falling 1 MB a minute from 100 MB, with noise that cancels.
        let pts: Vec<(i64, f64)> = (0..=10)
            .map(|i| {
                let noise = if i % 2 == 0 { 0.25e6 } else { -0.25e6 };
                (
                    i * 60,
                    100e6 - i as f64 * 1e6 + if i == 10 { 0.0 } else { noise },
                )
            })
            .collect();
        let r = ring(&[("avail", &pts)]);
        let d = values(eval(&r, 600, "deriv(avail[15m])"))[0].1;
        // The least-squares fit (numpy.polyfit gives the same): -16856.06 bytes a
        // second, 89.94 MB at t = 600 s.
        assert!((d + 16856.060606).abs() < 1e-3, "deriv {d}");
        let p = values(eval(&r, 600, "predict_linear(avail[15m], 4 * 3600)"))[0].1;
        assert!((p + 152784090.909).abs() < 1.0, "predict_linear {p}");
        assert!(values(eval(&r, 600, "predict_linear(avail[15m], 4 * 3600) < 0")).len() == 1);
        // One point is no line; a flat series has slope 0.
        let one = ring(&[("avail", &[(0, 5.0)])]);
        assert!(values(eval(&one, 0, "deriv(avail[15m])")).is_empty());
        let flat = ring(&[("avail", &[(0, 5.0), (60, 5.0), (120, 5.0)])]);
        assert_eq!(
            values(eval(&flat, 120, "predict_linear(avail[15m], 3600)"))[0].1,
            5.0
        );
    }

    #[test]
    fn rate_matches_prometheus_extrapolation() {
        let pts: Vec<(i64, f64)> = (0..=10).map(|i| (i * 60, i as f64 * 60.0)).collect();
        let r = ring(&[("c_total", &pts)]);
        // 1 per second, exactly, as Prometheus gives for a perfect counter.
        assert_eq!(
            values(eval(&r, 600, "rate(c_total[5m])")),
            vec![("{}".into(), 1.0)]
        );
        assert_eq!(
            values(eval(&r, 600, "increase(c_total[5m])")),
            vec![("{}".into(), 300.0)]
        );
    }

    #[test]
    fn aggregation_matching_and_sets() {
        let r = ring(&[
            ("m{cpu=\"0\",type=\"p\"}", &[(0, 0.5)]),
            ("m{cpu=\"1\",type=\"p\"}", &[(0, 1.0)]),
            ("m{cpu=\"2\",type=\"e\"}", &[(0, 0.25)]),
            ("lim{type=\"p\"}", &[(0, 2.0)]),
        ]);
        assert_eq!(
            values(eval(&r, 0, "avg by (type) (m)")),
            vec![("{type=\"e\"}".into(), 0.25), ("{type=\"p\"}".into(), 0.75)]
        );
        assert_eq!(values(eval(&r, 0, "count without (cpu) (m)")).len(), 2);
        assert_eq!(
            values(eval(&r, 0, "sum by (type) (m) / on (type) lim")),
            vec![("{type=\"p\"}".into(), 0.75)]
        );
        assert_eq!(values(eval(&r, 0, "m > 0.4")).len(), 2);
        assert_eq!(values(eval(&r, 0, "m > bool 0.4")).len(), 3);
        assert_eq!(values(eval(&r, 0, "m unless m{type=\"e\"}")).len(), 2);
        assert_eq!(
            values(eval(&r, 0, "absent(nope{a=\"b\"})")),
            vec![("{a=\"b\"}".into(), 1.0)]
        );
        let err = Evaluator { ring: &r, t: 0 }
            .eval(&parse("m / ignoring(cpu) m").unwrap())
            .unwrap_err();
        assert!(err.0.contains("many-to-many"), "{err}");
        // Several left series against one right series: only with group_left, and
        // each result keeps its left labels (as Prometheus does).
        let err = Evaluator { ring: &r, t: 0 }
            .eval(&parse("m > on (type) lim * 0.2").unwrap())
            .unwrap_err();
        assert!(err.0.contains("group_left"), "{err}");
        assert_eq!(
            values(eval(&r, 0, "m > on (type) group_left lim * 0.2")),
            vec![
                ("{__name__=\"m\", cpu=\"0\", type=\"p\"}".into(), 0.5),
                ("{__name__=\"m\", cpu=\"1\", type=\"p\"}".into(), 1.0)
            ]
        );
    }

    #[test]
    fn histogram_quantile_interpolates() {
        let r = ring(&[
            ("h_bucket{le=\"0.1\"}", &[(0, 50.0)]),
            ("h_bucket{le=\"1\"}", &[(0, 100.0)]),
            ("h_bucket{le=\"+Inf\"}", &[(0, 100.0)]),
        ]);
        assert_eq!(
            values(eval(&r, 0, "histogram_quantile(0.75, h_bucket)")),
            vec![("{}".into(), 0.55)]
        );
    }

    #[test]
    fn unsupported_constructs_are_named() {
        for (q, what) in [
            ("irate(x[5m])", "function `irate`"),
            ("topk(3, x)", "aggregation `topk`"),
            ("x offset 5m", "offset modifier"),
            (
                "a * on(x) group_left(y) b",
                "group_left with labels to copy",
            ),
            ("max_over_time(x[5m:1m])", "subquery"),
        ] {
            assert_eq!(
                parse(q).unwrap_err().to_string(),
                format!("unsupported construct: {what}"),
                "{q}"
            );
        }
    }
}
