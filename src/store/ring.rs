//! The sample ring: recent samples of every series, for range selectors and the
//! look-back of instant selectors in the rule engine.
//!
//! The store appends the merged families after each snapshot refresh (at most once per
//! step), so the ring holds what a Prometheus scraping m4watch every step would hold.
//! A series that vanishes gets a staleness marker, as Prometheus writes one.

use std::collections::HashMap;

use crate::model::Labels;
use crate::store::Family;

/// The NaN bit pattern Prometheus uses as its staleness marker.
pub(crate) const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker value.
pub(crate) fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the staleness marker (not any NaN).
pub(crate) fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One series and its samples, oldest first, timestamps in milliseconds.
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
    /// How long its samples are kept, in ms (the ring's retention without a filter).
    keep_ms: i64,
}

impl Series {
    /// The value of label `name`, or "" when absent (as PromQL treats it).
    pub fn label(&self, name: &str) -> &str {
        label_of(&self.labels, name)
    }

    /// Samples with `from <= t <= to`.
    pub fn range(&self, from: i64, to: i64) -> &[(i64, f64)] {
        let a = self.samples.partition_point(|s| s.0 < from);
        let b = self.samples.partition_point(|s| s.0 <= to);
        &self.samples[a..b.max(a)]
    }
}

/// The value of label `name` in sorted pairs, or "".
pub(crate) fn label_of<'a>(labels: &'a [(String, String)], name: &str) -> &'a str {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Decides whether the ring keeps a series of a filtered family (labels sorted, with
/// `__name__`).
pub(crate) type Keep = Box<dyn Fn(&[(String, String)]) -> bool + Send + Sync>;

/// What the ring keeps: only what its readers read.
pub struct Filter {
    /// Metric name (`__name__`) → how long its samples are kept, in ms. A name not
    /// here is not kept at all.
    pub reach: HashMap<String, i64>,
    /// Families whose series are kept only when [`Keep`] says so.
    pub families: std::collections::HashSet<String>,
    pub keep: Keep,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("reach", &self.reach)
            .field("families", &self.families)
            .finish_non_exhaustive()
    }
}

/// Recent samples of every series, bounded by a retention, or with a [`Filter`] by
/// what is read of each metric name.
#[derive(Debug, Default)]
pub struct Ring {
    series: Vec<Series>,
    index: HashMap<Labels, usize>,
    by_name: HashMap<String, Vec<usize>>,
    retention_ms: i64,
    last_append: Option<i64>,
    /// Series written by the last [`Ring::append_families`], to mark the missing ones stale.
    live: Vec<bool>,
    filter: Option<Filter>,
    /// The shortest time between appends (ms), when known: a series' sample vector is
    /// then sized once for what it keeps instead of growing by doubling.
    step_ms: i64,
}

/// Samples past their time are drained once at least this many are due, or a 32nd
/// of what is held (or half of it): each drain moves what is left, so an append costs
/// at most 32 sample moves amortised, and a series holds at most about 3% more than
/// it keeps. A fixed batch of 64 held up to 21% more for a five-minute series, and
/// every held sample is resident memory (issue 17).
const DRAIN_MIN: usize = 8;

/// The drain batch for a series holding `held` samples.
fn drain_batch(held: usize) -> usize {
    (held / 32).max(DRAIN_MIN)
}

impl Ring {
    /// An empty ring keeping `retention_ms` of samples (0 keeps everything).
    pub fn new(retention_ms: i64) -> Self {
        Ring {
            retention_ms,
            ..Default::default()
        }
    }

    /// Like [`Ring::new`], for appends at least `step_ms` apart: each series' samples
    /// are then allocated once, for as many as it keeps (a vector grown by doubling
    /// holds up to twice that: 16 KiB instead of 11 for ten minutes at 1 s).
    pub fn with_step(retention_ms: i64, step_ms: i64) -> Self {
        Ring {
            retention_ms,
            step_ms,
            ..Default::default()
        }
    }

    /// How many samples a series kept `keep_ms` holds at most: one per step, the
    /// batch not yet drained, and one for a staleness marker.
    fn capacity(&self, keep_ms: i64) -> usize {
        if self.step_ms <= 0 || keep_ms <= 0 {
            return 0;
        }
        let kept = (keep_ms / self.step_ms) as usize;
        kept + kept / 30 + DRAIN_MIN + 2
    }

    /// From now on keeps only the metric names in `filter.reach`, each for its own
    /// time, and of `filter.families` only the series `filter.keep` selects (what is
    /// held already ages out by the new times); `None` keeps every series for the
    /// whole retention. Kept whole, every series holds a sample per step for the
    /// retention: a family with a series per sender-chosen name, or a host with many
    /// containers, costs far more here than where it is computed.
    pub fn set_filter(&mut self, filter: Option<Filter>) {
        self.filter = filter;
        for i in 0..self.series.len() {
            let keep = self.keep_ms(label_of(&self.series[i].labels, "__name__"));
            self.series[i].keep_ms = keep;
            let want = self.capacity(keep);
            let s = &mut self.series[i].samples;
            if want > s.capacity() {
                s.reserve_exact(want - s.len());
            }
        }
    }

    /// How long the samples of metric `name` are kept (ms); 0 when not at all.
    fn keep_ms(&self, name: &str) -> i64 {
        match &self.filter {
            None => self.retention_ms,
            Some(f) => f.reach.get(name).copied().unwrap_or(0),
        }
    }

    /// Whether the series `labels` of `family`, a name kept, is kept.
    fn kept(&self, family: &str, labels: &[(String, String)]) -> bool {
        let Some(f) = &self.filter else { return true };
        !f.families.contains(family) || (f.keep)(labels)
    }

    /// Adds one sample; `labels` must be sorted by name and include `__name__`.
    /// Samples must arrive in time order per series; an older one is ignored.
    pub fn append(&mut self, labels: Labels, t: i64, v: f64) {
        let i = match self.index.get(&labels) {
            Some(&i) => i,
            None => {
                let i = self.series.len();
                let name = label_of(&labels, "__name__").to_string();
                let keep_ms = self.keep_ms(&name);
                self.by_name.entry(name).or_default().push(i);
                self.index.insert(labels.clone(), i);
                self.series.push(Series {
                    labels,
                    samples: Vec::with_capacity(self.capacity(keep_ms)),
                    keep_ms,
                });
                self.live.push(false);
                i
            }
        };
        let s = &mut self.series[i].samples;
        if s.last().is_none_or(|l| l.0 < t) {
            s.push((t, v));
        } else if let Some(l) = s.last_mut().filter(|l| l.0 == t) {
            l.1 = v;
        }
        self.live[i] = true;
    }

    /// When the last [`Ring::append_families`] ran, in milliseconds.
    pub fn last_append(&self) -> Option<i64> {
        self.last_append
    }

    /// Appends every sample of `families` at time `t` (ms), writes a staleness marker
    /// for series that were present last time and are gone now, and drops samples
    /// older than the retention.
    pub fn append_families(&mut self, families: &[Family], t: i64) {
        let before = std::mem::replace(&mut self.live, vec![false; self.series.len()]);
        for f in families {
            for s in &f.samples {
                let name = format!("{}{}", f.name, s.suffix);
                if self
                    .filter
                    .as_ref()
                    .is_some_and(|x| !x.reach.contains_key(&name))
                {
                    continue;
                }
                let mut labels: Labels = Vec::with_capacity(s.labels.len() + 1);
                labels.push(("__name__".into(), name));
                labels.extend(s.labels.iter().cloned());
                labels.sort();
                if !self.kept(&f.name, &labels) {
                    continue;
                }
                self.append(labels, t, s.value);
            }
        }
        for (i, was) in before.into_iter().enumerate() {
            if was && !self.live[i] {
                let s = &mut self.series[i].samples;
                if s.last().is_some_and(|l| l.0 < t) {
                    s.push((t, stale_nan()));
                }
            }
        }
        self.last_append = Some(t);
        self.trim(t);
    }

    /// Drops samples older than their series' time and series left with none.
    pub fn trim(&mut self, now: i64) {
        if self.retention_ms <= 0 {
            return;
        }
        let mut emptied = false;
        for s in &mut self.series {
            let cutoff = now - s.keep_ms;
            let n = s.samples.partition_point(|x| x.0 < cutoff);
            // Draining in batches (see `drain_batch`, or half of what is held) keeps
            // appends amortised cheap and what is held close to what is kept.
            if n > 0 && (n >= drain_batch(s.samples.len()) || 2 * n >= s.samples.len()) {
                s.samples.drain(..n);
                emptied |= s.samples.is_empty();
            }
        }
        if emptied {
            let (series, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.series)
                .into_iter()
                .zip(std::mem::take(&mut self.live))
                .filter(|(s, _)| !s.samples.is_empty())
                .unzip();
            self.series = series;
            self.live = live;
            self.reindex();
        }
    }

    fn reindex(&mut self) {
        self.index.clear();
        self.by_name.clear();
        for (i, s) in self.series.iter().enumerate() {
            self.index.insert(s.labels.clone(), i);
            self.by_name
                .entry(label_of(&s.labels, "__name__").to_string())
                .or_default()
                .push(i);
        }
    }

    /// Series whose metric name is `name`.
    pub fn named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Series> + 'a {
        self.by_name
            .get(name)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
            .iter()
            .map(|&i| &self.series[i])
    }

    /// Every series.
    pub fn all(&self) -> impl Iterator<Item = &Series> {
        self.series.iter()
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether the ring holds no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, MetricDef, def};

    /// A family as a collector would define it (the store knows no collector).
    const CPU_UTILIZATION_RATIO: MetricDef = def(
        "m4watch_cpu_utilization_ratio",
        Kind::Gauge,
        &["cpu", "type"],
        "Busy share (0..1) of each logical CPU over the last collection interval.",
    );

    fn fam(v: Option<f64>) -> Vec<Family> {
        let mut f = Family::new(&CPU_UTILIZATION_RATIO);
        if let Some(v) = v {
            f.push([("cpu", "0"), ("type", "performance")], v);
        }
        vec![f]
    }

    #[test]
    fn appends_marks_vanished_series_stale_and_trims() {
        let mut r = Ring::new(10_000);
        r.append_families(&fam(Some(0.5)), 1_000);
        r.append_families(&fam(Some(0.7)), 2_000);
        r.append_families(&fam(None), 3_000);
        let s: Vec<_> = r.named("m4watch_cpu_utilization_ratio").collect();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].label("cpu"), "0");
        assert_eq!(&s[0].samples[..2], &[(1_000, 0.5), (2_000, 0.7)]);
        assert!(is_stale(s[0].samples[2].1));
        assert_eq!(s[0].range(1_500, 2_000), &[(2_000, 0.7)]);
        // Past the retention the series is gone.
        r.append_families(&fam(None), 20_000);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn with_a_step_each_series_is_allocated_once_for_what_it_keeps() {
        // Ten minutes at one append a second: 600 samples plus the drain batch.
        let mut r = Ring::with_step(600_000, 1_000);
        r.append_families(&fam(Some(0.5)), 1_000);
        let cap = r.all().next().unwrap().samples.capacity();
        assert_eq!(cap, 600 + 20 + DRAIN_MIN + 2);
        let mut most = 0;
        for t in 2..=3_000 {
            r.append_families(&fam(Some(t as f64)), t * 1_000);
            most = most.max(r.all().next().unwrap().samples.len());
        }
        // It holds at most 3% more than it keeps (the drain batch of 64 it had was 10%).
        assert!((601..=620).contains(&most), "{most}");
        let s = r.all().next().unwrap();
        assert_eq!(s.samples.capacity(), cap, "never grown");
        assert!(s.samples.len() > 600 && s.samples.len() <= cap);
        assert_eq!(
            s.samples[0].0,
            3_000_000 - s.samples.len() as i64 * 1_000 + 1_000
        );
        // Grown by doubling, as without a step, it would hold 1024.
        let mut plain = Ring::new(600_000);
        for t in 1..=3_000 {
            plain.append_families(&fam(Some(t as f64)), t * 1_000);
        }
        assert_eq!(plain.all().next().unwrap().samples.capacity(), 1024);
    }

    #[test]
    fn a_filter_keeps_only_the_series_it_names() {
        let mut r = Ring::new(10_000);
        r.set_filter(Some(Filter {
            reach: [("m4watch_cpu_utilization_ratio".to_string(), 10_000)].into(),
            families: ["m4watch_cpu_utilization_ratio".to_string()].into(),
            keep: Box::new(|l| label_of(l, "cpu") == "1"),
        }));
        let mut f = fam(Some(0.5));
        f[0].push([("cpu", "1"), ("type", "performance")], 0.25);
        r.append_families(&f, 1_000);
        let kept: Vec<_> = r.all().map(|s| s.label("cpu").to_string()).collect();
        assert_eq!(kept, ["1"]);
    }

    #[test]
    fn each_name_is_kept_as_far_back_as_it_is_read_and_no_further() {
        const OTHER: MetricDef = def("m4watch_other", Kind::Gauge, &["cpu"], "Other.");
        const UNREAD: MetricDef = def("m4watch_unread", Kind::Gauge, &["cpu"], "Unread.");
        let mut r = Ring::new(900_000);
        let fams = |v: f64| {
            let mut f = fam(Some(v));
            for d in [&OTHER, &UNREAD] {
                let mut x = Family::new(d);
                x.push([("cpu", "0")], v);
                f.push(x);
            }
            f
        };
        for t in 0..100 {
            r.append_families(&fams(t as f64), t * 1_000);
        }
        // Unfiltered, everything is kept for the retention.
        assert_eq!(r.len(), 3);
        assert_eq!(r.named("m4watch_unread").next().unwrap().samples.len(), 100);
        r.set_filter(Some(Filter {
            // A range of 60 s, and the newest 3 s of an instant selector.
            reach: [
                ("m4watch_cpu_utilization_ratio".to_string(), 60_000),
                ("m4watch_other".to_string(), 3_000),
            ]
            .into(),
            families: Default::default(),
            keep: Box::new(|_| true),
        }));
        for t in 100..400 {
            r.append_families(&fams(t as f64), t * 1_000);
            let cpu = &r
                .named("m4watch_cpu_utilization_ratio")
                .next()
                .unwrap()
                .samples;
            // The whole range is there, and at most twice it.
            assert!(cpu.first().unwrap().0 <= t * 1_000 - 60_000, "{t}");
            assert!(cpu.len() <= 2 * 61, "{t}: {}", cpu.len());
            let other = &r.named("m4watch_other").next().unwrap().samples;
            assert_eq!(other.last().unwrap(), &(t * 1_000, t as f64));
            assert!(other.len() <= 2 * 4, "{t}: {}", other.len());
        }
        // A name nobody reads leaves once its held samples are stale.
        assert_eq!(r.named("m4watch_unread").count(), 0);
        assert_eq!(r.len(), 2);
    }
}
