//! Reads over `advice.window` from the rule engine's sample ring: a mean and a
//! counter's rate, each only when the ring covers the window, and only of a series
//! the reading check declares.

use crate::store::ring::{Ring, Series, is_stale};

/// The sample ring as one check sees it: only the names its `Check::reads` declares.
#[derive(Clone, Copy)]
pub(crate) struct Declared<'a> {
    pub ring: &'a Ring,
    pub names: &'static [&'static str],
}

impl<'a> Declared<'a> {
    /// Series named `name`. Reading a name the check did not declare is a bug: the
    /// daemon does not keep it, so the read would find nothing in production while a
    /// test that fills the ring by hand finds it. Debug builds (every test) panic.
    pub(crate) fn named(&self, name: &str) -> impl Iterator<Item = &'a Series> + 'a {
        debug_assert!(
            self.names.contains(&name),
            "an advice check reads {name} from the sample ring without declaring it in its Check::reads"
        );
        self.ring.named(name)
    }
}

/// Mean of the samples of the series `name` whose labels include `want`, over the
/// last `window_ms` — only when the ring covers at least 90% of the window.
pub(crate) fn window_mean(
    ring: Declared<'_>,
    name: &str,
    want: &[(&str, &str)],
    now_ms: i64,
    window_ms: i64,
) -> Option<f64> {
    let from = now_ms - window_ms;
    let mut sum = 0.0;
    let mut n = 0u32;
    let mut earliest = i64::MAX;
    for s in ring.named(name) {
        if !want.iter().all(|(k, v)| s.label(k) == *v) {
            continue;
        }
        for &(t, v) in s.range(from, now_ms) {
            if is_stale(v) || v.is_nan() {
                continue;
            }
            earliest = earliest.min(t);
            sum += v;
            n += 1;
        }
    }
    (n > 0 && earliest <= from + window_ms / 10).then(|| sum / f64::from(n))
}

/// Per-second increase of a counter series over the window (resets ignored:
/// increases only), with the same coverage rule as [`window_mean`].
pub(super) fn window_rate(
    ring: Declared<'_>,
    name: &str,
    want: &[(&str, &str)],
    now_ms: i64,
    window_ms: i64,
) -> Option<f64> {
    let from = now_ms - window_ms;
    let s = ring
        .named(name)
        .find(|s| want.iter().all(|(k, v)| s.label(k) == *v))?;
    let pts: Vec<(i64, f64)> = s
        .range(from, now_ms)
        .iter()
        .copied()
        .filter(|(_, v)| !is_stale(*v) && !v.is_nan())
        .collect();
    let (first, last) = (pts.first()?, pts.last()?);
    if first.0 > from + window_ms / 10 || last.0 <= first.0 {
        return None;
    }
    let inc: f64 = pts.windows(2).map(|w| (w[1].1 - w[0].1).max(0.0)).sum();
    Some(inc / ((last.0 - first.0) as f64 / 1000.0))
}
