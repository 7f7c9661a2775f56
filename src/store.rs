//! The metric store: the one place sources write to and consumers read from.
//!
//! Collectors publish whole metric families per cycle ([`Store::publish`]); code on hot
//! paths bumps instruments in a [`prometheus::Registry`] ([`Store::registry`]). A snapshot
//! task merges both into one encoded text exposition, so `GET /metrics` is a copy of
//! [`Store::snapshot`] and never runs a collector.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

pub(crate) use crate::model::{Family, Kind, Labels, MetricDef, Sample, def};

pub(crate) mod index;
pub(crate) mod ring;
pub(crate) mod views;

pub(crate) const BUILD_INFO: MetricDef = def(
    "m4watch_build_info",
    Kind::Gauge,
    &["version", "revision"],
    "Always 1; labels name the version and git revision of this m4watch binary.",
);

pub(crate) const COLLECTOR_DURATION_SECONDS: MetricDef = def(
    "m4watch_collector_duration_seconds",
    Kind::Gauge,
    &["collector"],
    "How long the last run of a collector took, in seconds.",
);

pub(crate) const COLLECTOR_SUCCESS: MetricDef = def(
    "m4watch_collector_success",
    Kind::Gauge,
    &["collector"],
    "1 if the last run of a collector succeeded, 0 if it failed or timed out.",
);

pub(crate) const COLLECTOR_LAST_SUCCESS_TIMESTAMP_SECONDS: MetricDef = def(
    "m4watch_collector_last_success_timestamp_seconds",
    Kind::Gauge,
    &["collector"],
    "Unix time of the last successful run of a collector; absent until one succeeds.",
);

/// How the last run of one collector went.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CollectorStatus {
    pub success: bool,
    pub duration_seconds: f64,
    /// Unix time of the last successful run; absent until one succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_unix: Option<f64>,
    /// The last error, bounded to one line; absent after a success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub runs: u64,
    pub failures: u64,
}

#[derive(Default)]
struct Inner {
    /// Latest families per source; a publish replaces the source's whole set, so series
    /// that vanish at the source (a removed container) vanish here too.
    sources: BTreeMap<String, Vec<Family>>,
    collectors: BTreeMap<String, CollectorStatus>,
}

/// Shared metric store. Cheap to share behind an `Arc`; every lock is held only for
/// short, non-async sections.
pub(crate) struct Store {
    inner: Mutex<Inner>,
    registry: prometheus::Registry,
    snapshot: RwLock<Option<std::sync::Arc<Snapshot>>>,
    /// Which collector (`collect[]` name) each family belongs to.
    groups: Groups,
    changed: Notify,
    build: BuildInfo,
    /// Recent samples for the rule engine, appended after snapshot refreshes.
    ring: RwLock<ring::Ring>,
    /// Least time between two ring appends, in ms (0: the ring is off).
    ring_step_ms: std::sync::atomic::AtomicI64,
    /// The sources' typed views (the read path beside the families).
    views: views::Views,
}

/// Version and revision this binary was built from.
#[derive(Debug, Clone)]
pub(crate) struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
}

impl BuildInfo {
    pub(crate) fn current() -> Self {
        BuildInfo {
            version: env!("CARGO_PKG_VERSION"),
            revision: option_env!("M4WATCH_REVISION").unwrap_or("unknown"),
        }
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

/// The collectors a filtered scrape (`GET /metrics?collect[]=NAME`) can name, and the
/// one each family belongs to. The catalogue builds it; the store only indexes the
/// snapshot by it. A family no collector lists is served only unfiltered.
#[derive(Debug, Clone, Default)]
pub(crate) struct Groups {
    names: Vec<&'static str>,
    of: std::collections::HashMap<&'static str, u8>,
}

/// A set of collectors, one bit per position in [`Groups`]' names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Selection(u64);

impl Groups {
    /// The most collectors a selection can hold.
    pub(crate) const MAX: usize = 64;

    /// From (collector, family) pairs. Panics on a family listed twice or more than
    /// [`Groups::MAX`] collectors: the catalogue's tests rule both out.
    pub(crate) fn new(pairs: impl IntoIterator<Item = (&'static str, &'static str)>) -> Self {
        let mut g = Groups::default();
        for (collector, family) in pairs {
            let i = match g.names.iter().position(|n| *n == collector) {
                Some(i) => i,
                None => {
                    g.names.push(collector);
                    g.names.len() - 1
                }
            };
            assert!(i < Self::MAX, "more than {} collectors", Self::MAX);
            let previous = g.of.insert(family, i as u8);
            assert!(previous.is_none(), "{family} belongs to two collectors");
        }
        g
    }

    /// Every collector name, in the catalogue's order.
    pub(crate) fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// The selection of `names`, or the first name no collector has.
    pub(crate) fn select<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Selection, &'a str> {
        let mut bits = 0u64;
        for name in names {
            let i = self.names.iter().position(|n| *n == name).ok_or(name)?;
            bits |= 1 << i;
        }
        Ok(Selection(bits))
    }

    /// The selection of every collector but those of `sel`.
    pub(crate) fn complement(&self, sel: Selection) -> Selection {
        let all = if self.names.len() >= Self::MAX {
            u64::MAX
        } else {
            (1u64 << self.names.len()) - 1
        };
        Selection(all & !sel.0)
    }

    fn group_of(&self, family: &str) -> Option<u8> {
        self.of.get(family).copied()
    }
}

/// One encoded exposition and where each family's lines sit in it, so a filtered
/// scrape copies byte ranges of the same text instead of encoding or parsing again.
#[derive(Debug, Default)]
struct Snapshot {
    body: Bytes,
    /// (collector position, byte range) of every family in `body`, in body order;
    /// `None` for a family no collector lists.
    parts: Vec<(Option<u8>, std::ops::Range<usize>)>,
}

impl Snapshot {
    fn filtered(&self, sel: Selection) -> Bytes {
        let wanted = |g: Option<u8>| g.is_some_and(|g| sel.0 & (1 << g) != 0);
        let len = self
            .parts
            .iter()
            .filter(|(g, _)| wanted(*g))
            .map(|(_, r)| r.len())
            .sum();
        let mut out = Vec::with_capacity(len);
        for (g, r) in &self.parts {
            if wanted(*g) {
                out.extend_from_slice(&self.body[r.clone()]);
            }
        }
        Bytes::from(out)
    }
}

impl Store {
    pub(crate) fn new() -> Self {
        Self::with_groups(Groups::default())
    }

    /// A store whose snapshot `groups` can filter by collector.
    pub(crate) fn with_groups(groups: Groups) -> Self {
        Store {
            inner: Mutex::new(Inner::default()),
            registry: prometheus::Registry::new(),
            snapshot: RwLock::new(None),
            groups,
            changed: Notify::new(),
            build: BuildInfo::current(),
            ring: RwLock::new(ring::Ring::new(0)),
            ring_step_ms: std::sync::atomic::AtomicI64::new(0),
            views: views::Views::default(),
        }
    }

    /// Turns on the sample ring: after each snapshot refresh, if at least `step` has
    /// passed since the last append, every series is appended; samples older than
    /// `retention` are dropped.
    pub(crate) fn keep_ring(&self, retention: Duration, step: Duration) {
        let step_ms = step.as_millis().max(1) as i64;
        // Appends come at least 0.9 step apart (see `append_ring`).
        *self.ring.write().expect("ring lock") =
            ring::Ring::with_step(retention.as_millis() as i64, step_ms - step_ms / 10);
        self.ring_step_ms
            .store(step_ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Read access to the sample ring.
    pub(crate) fn ring(&self) -> std::sync::RwLockReadGuard<'_, ring::Ring> {
        self.ring.read().expect("ring lock")
    }

    /// Write access to the sample ring (the rule engine writes recording-rule results).
    pub(crate) fn ring_mut(&self) -> std::sync::RwLockWriteGuard<'_, ring::Ring> {
        self.ring.write().expect("ring lock")
    }

    /// Appends the current families to the ring now, whatever the step (the rule
    /// engine's first evaluation wants the collectors' first readings at once).
    pub(crate) fn append_ring_now(&self) {
        if self.ring_step_ms.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return;
        }
        let families = self.families();
        let now = unix_now_ms();
        self.ring
            .write()
            .expect("ring lock")
            .append_families(&families, now);
    }

    fn append_ring(&self, families: &[Family]) {
        let step = self.ring_step_ms.load(std::sync::atomic::Ordering::Relaxed);
        if step == 0 {
            return;
        }
        let now = unix_now_ms();
        let mut ring = self.ring.write().expect("ring lock");
        // A tenth of a step of slack keeps a 1 s ticker from skipping every other tick.
        if ring
            .last_append()
            .is_none_or(|t| now - t >= step - step / 10)
        {
            ring.append_families(families, now);
        }
    }

    /// Registry for instruments updated in place (counters on ingest paths). Their
    /// families must be in the [`catalog`] like any other.
    pub(crate) fn registry(&self) -> &prometheus::Registry {
        &self.registry
    }

    /// Replaces every family of `source` and wakes the snapshot task.
    pub(crate) fn publish(&self, source: &str, families: Vec<Family>) {
        self.inner
            .lock()
            .expect("store lock")
            .sources
            .insert(source.to_string(), families);
        self.changed.notify_one();
    }

    /// The sources' typed views: what a JSON route or a recommendation needs beyond
    /// the families, published by the source, read by consumers.
    pub(crate) fn views(&self) -> &views::Views {
        &self.views
    }

    /// Records the outcome of one collector run.
    pub(crate) fn record_run(&self, collector: &str, result: Result<(), String>, took: Duration) {
        let mut inner = self.inner.lock().expect("store lock");
        let status = inner.collectors.entry(collector.to_string()).or_default();
        status.runs += 1;
        status.duration_seconds = took.as_secs_f64();
        match result {
            Ok(()) => {
                status.success = true;
                status.last_success_unix = Some(unix_now());
                status.last_error = None;
            }
            Err(e) => {
                status.success = false;
                status.failures += 1;
                status.last_error = Some(e);
            }
        }
    }

    /// Status of every collector that has run at least once, by name.
    pub(crate) fn collectors(&self) -> BTreeMap<String, CollectorStatus> {
        self.inner.lock().expect("store lock").collectors.clone()
    }

    /// Every family the store holds now, merged by name and sorted: collector families,
    /// the collector self-metrics, build info and the registry's instruments.
    pub(crate) fn families(&self) -> Vec<Family> {
        let mut merged: BTreeMap<String, Family> = BTreeMap::new();
        let mut add = |f: Family| match merged.get_mut(&f.name) {
            Some(existing) => existing.samples.extend(f.samples),
            None => {
                merged.insert(f.name.clone(), f);
            }
        };
        {
            let inner = self.inner.lock().expect("store lock");
            for families in inner.sources.values() {
                for f in families {
                    add(f.clone());
                }
            }
            for f in self.self_families(&inner.collectors) {
                add(f);
            }
        }
        for f in self.registry.gather().iter().map(from_proto) {
            add(f);
        }
        merged.into_values().collect()
    }

    fn self_families(&self, collectors: &BTreeMap<String, CollectorStatus>) -> Vec<Family> {
        let mut build = Family::new(&BUILD_INFO);
        build.push(
            [
                ("version", self.build.version),
                ("revision", self.build.revision),
            ],
            1.0,
        );
        let mut duration = Family::new(&COLLECTOR_DURATION_SECONDS);
        let mut success = Family::new(&COLLECTOR_SUCCESS);
        let mut last = Family::new(&COLLECTOR_LAST_SUCCESS_TIMESTAMP_SECONDS);
        for (name, s) in collectors {
            let label = [("collector", name.as_str())];
            duration.push(label, s.duration_seconds);
            success.push(label, if s.success { 1.0 } else { 0.0 });
            if let Some(t) = s.last_success_unix {
                last.push(label, t);
            }
        }
        vec![build, duration, success, last]
    }

    /// Re-encodes the exposition text from the current families, noting where each
    /// family's lines start and end.
    pub(crate) fn refresh_snapshot(&self) {
        let families = self.families();
        let mut text = String::with_capacity(families.len() * 256);
        let mut parts = Vec::with_capacity(families.len());
        for f in &families {
            let start = text.len();
            encode_family(&mut text, f);
            if text.len() > start {
                parts.push((self.groups.group_of(&f.name), start..text.len()));
            }
        }
        let snapshot = Snapshot {
            body: Bytes::from(text),
            parts,
        };
        *self.snapshot.write().expect("snapshot lock") = Some(std::sync::Arc::new(snapshot));
        self.append_ring(&families);
    }

    /// The last encoded exposition, or `None` before the first snapshot.
    pub(crate) fn snapshot(&self) -> Option<Bytes> {
        let snap = self.snapshot.read().expect("snapshot lock");
        snap.as_ref().map(|s| s.body.clone())
    }

    /// The families of the selected collectors from the last snapshot (the same text
    /// `snapshot` serves, cut to them), or `None` before the first snapshot.
    pub(crate) fn snapshot_of(&self, sel: Selection) -> Option<Bytes> {
        let snap = self.snapshot.read().expect("snapshot lock").clone()?;
        Some(snap.filtered(sel))
    }

    /// The collectors a filtered scrape can name.
    pub(crate) fn groups(&self) -> &Groups {
        &self.groups
    }

    /// Notified whenever a source publishes.
    pub(crate) fn change_signal(&self) -> &Notify {
        &self.changed
    }
}

use crate::clock::{unix_now, unix_now_ms};

fn from_proto(mf: &prometheus::proto::MetricFamily) -> Family {
    use prometheus::proto::MetricType;
    let kind = match mf.get_field_type() {
        MetricType::COUNTER => Kind::Counter,
        MetricType::GAUGE => Kind::Gauge,
        MetricType::HISTOGRAM => Kind::Histogram,
        _ => Kind::Untyped,
    };
    let mut family = Family {
        name: mf.name().to_string(),
        help: mf.help().to_string(),
        kind,
        samples: Vec::new(),
    };
    for m in mf.get_metric() {
        let labels: Labels = m
            .get_label()
            .iter()
            .map(|l| (l.name().to_string(), l.value().to_string()))
            .collect();
        match kind {
            Kind::Counter => family.push(labels, m.get_counter().get_value()),
            Kind::Gauge => family.push(labels, m.get_gauge().get_value()),
            Kind::Histogram => {
                let h = m.get_histogram();
                for b in h.get_bucket() {
                    let mut l = labels.clone();
                    l.push(("le".into(), format_value(b.upper_bound())));
                    family.samples.push(Sample {
                        suffix: "_bucket",
                        labels: l,
                        value: b.cumulative_count() as f64,
                    });
                }
                let mut inf = labels.clone();
                inf.push(("le".into(), "+Inf".into()));
                let count = h.get_sample_count() as f64;
                family.samples.push(Sample {
                    suffix: "_bucket",
                    labels: inf,
                    value: count,
                });
                family.samples.push(Sample {
                    suffix: "_sum",
                    labels: labels.clone(),
                    value: h.get_sample_sum(),
                });
                family.samples.push(Sample {
                    suffix: "_count",
                    labels,
                    value: count,
                });
                continue;
            }
            // m4watch registers no untyped or summary instruments.
            Kind::Untyped | Kind::Summary => continue,
        };
    }
    family
}

/// Encodes families in the Prometheus text exposition format 0.0.4.
pub fn encode(families: &[Family]) -> String {
    let mut out = String::with_capacity(families.len() * 256);
    for f in families {
        encode_family(&mut out, f);
    }
    out
}

/// Appends one family (nothing when it has no samples).
fn encode_family(out: &mut String, f: &Family) {
    if f.samples.is_empty() {
        return;
    }
    out.push_str("# HELP ");
    out.push_str(&f.name);
    out.push(' ');
    escape_into(out, &f.help, false);
    out.push_str("\n# TYPE ");
    out.push_str(&f.name);
    out.push(' ');
    out.push_str(f.kind.as_str());
    out.push('\n');
    for s in &f.samples {
        out.push_str(&f.name);
        out.push_str(s.suffix);
        if !s.labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in s.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                escape_into(out, v, true);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        out.push_str(&format_value(s.value));
        out.push('\n');
    }
}

/// Formats a sample value the way Prometheus parses it back.
pub(crate) fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        let mut s = String::new();
        let _ = write!(s, "{v}");
        s
    }
}

fn escape_into(out: &mut String, s: &str, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// A family as a collector would define it (the store knows no collector).
    const TEMPERATURE_CELSIUS: MetricDef = def(
        "m4watch_temperature_celsius",
        Kind::Gauge,
        &["sensor"],
        "Temperature reported by a sensor, in degrees Celsius.",
    );

    #[test]
    fn encodes_help_type_labels_and_escapes() {
        let mut f = Family::new(&TEMPERATURE_CELSIUS);
        f.push([("sensor", "a\"b\\c\nd")], 41.5);
        let text = encode(&[f]);
        assert_eq!(
            text,
            "# HELP m4watch_temperature_celsius Temperature reported by a sensor, in degrees Celsius.\n\
             # TYPE m4watch_temperature_celsius gauge\n\
             m4watch_temperature_celsius{sensor=\"a\\\"b\\\\c\\nd\"} 41.5\n"
        );
    }

    #[test]
    fn empty_families_are_not_written() {
        assert_eq!(encode(&[Family::new(&TEMPERATURE_CELSIUS)]), "");
    }

    #[test]
    fn special_values_use_prometheus_spelling() {
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.25), "0.25");
    }

    #[test]
    fn publish_replaces_a_sources_families_and_merges_by_name() {
        let store = Store::new();
        let mut a = Family::new(&TEMPERATURE_CELSIUS);
        a.push([("sensor", "x")], 1.0);
        let mut b = Family::new(&TEMPERATURE_CELSIUS);
        b.push([("sensor", "y")], 2.0);
        store.publish("one", vec![a]);
        store.publish("two", vec![b]);
        let temps = |s: &Store| {
            s.families()
                .into_iter()
                .find(|f| f.name == "m4watch_temperature_celsius")
                .map(|f| f.samples.len())
        };
        assert_eq!(temps(&store), Some(2));
        store.publish("one", vec![]);
        assert_eq!(temps(&store), Some(1));
    }

    const FAN_RPM: MetricDef = def(
        "m4watch_fan_rpm",
        Kind::Gauge,
        &["fan"],
        "Fan speed, in revolutions per minute.",
    );

    /// A store whose two families belong to two collectors, published and encoded.
    fn grouped_store() -> Store {
        let store = Store::with_groups(Groups::new([
            ("thermal", "m4watch_temperature_celsius"),
            ("fans", "m4watch_fan_rpm"),
            ("exporter", BUILD_INFO.name),
        ]));
        let mut t = Family::new(&TEMPERATURE_CELSIUS);
        t.push([("sensor", "x")], 41.0);
        let mut f = Family::new(&FAN_RPM);
        f.push([("fan", "0")], 1200.0);
        store.publish("hw", vec![t, f]);
        store.refresh_snapshot();
        store
    }

    #[test]
    fn a_selection_serves_exactly_its_collectors_families_from_the_snapshot() {
        let store = grouped_store();
        let full = String::from_utf8(store.snapshot().unwrap().to_vec()).unwrap();
        let groups = store.groups();
        let of = |names: &[&str]| {
            let sel = groups.select(names.iter().copied()).unwrap();
            String::from_utf8(store.snapshot_of(sel).unwrap().to_vec()).unwrap()
        };
        let fans = of(&["fans"]);
        assert_eq!(
            fans,
            "# HELP m4watch_fan_rpm Fan speed, in revolutions per minute.\n\
             # TYPE m4watch_fan_rpm gauge\n\
             m4watch_fan_rpm{fan=\"0\"} 1200\n"
        );
        // Every collector's families together are the full exposition, in its order,
        // byte for byte: the cut copies ranges of the same text.
        assert_eq!(of(&["thermal", "fans", "exporter"]), full);
        // A repeated name is the same selection; the empty one serves nothing.
        assert_eq!(of(&["fans", "fans"]), fans);
        assert_eq!(of(&[]), "");
        // exclude[]: every collector but the named ones.
        let rest = groups.complement(groups.select(["fans"]).unwrap());
        let rest = String::from_utf8(store.snapshot_of(rest).unwrap().to_vec()).unwrap();
        assert!(!rest.contains("m4watch_fan_rpm") && rest.contains("m4watch_temperature_celsius"));
        assert!(rest.contains("m4watch_build_info"));
        assert_eq!(rest.len() + fans.len(), full.len());
        // An unknown name is reported as itself.
        assert_eq!(groups.select(["fans", "gpu"]), Err("gpu"));
        assert_eq!(groups.names(), ["thermal", "fans", "exporter"]);
    }

    #[test]
    fn a_family_no_collector_lists_is_served_only_unfiltered() {
        let store = Store::with_groups(Groups::new([("thermal", "m4watch_temperature_celsius")]));
        let mut f = Family::new(&FAN_RPM);
        f.push([("fan", "0")], 1200.0);
        store.publish("hw", vec![f]);
        assert!(
            store.snapshot_of(Selection::default()).is_none(),
            "no snapshot yet"
        );
        store.refresh_snapshot();
        let all = store.groups().select(["thermal"]).unwrap();
        assert!(
            store
                .snapshot()
                .unwrap()
                .starts_with(b"# HELP m4watch_build_info")
        );
        assert_eq!(store.snapshot_of(all).unwrap(), "");
        let none = store.groups().complement(Selection::default());
        assert_eq!(store.snapshot_of(none).unwrap(), "");
    }

    #[test]
    #[should_panic(expected = "belongs to two collectors")]
    fn a_family_in_two_collectors_is_refused() {
        Groups::new([("a", "m4watch_fan_rpm"), ("b", "m4watch_fan_rpm")]);
    }

    #[test]
    fn collector_failures_show_as_a_label_value_and_keep_last_success() {
        let store = Store::new();
        store.record_run("hardware", Ok(()), Duration::from_millis(3));
        store.record_run("hardware", Err("boom".into()), Duration::from_millis(1));
        store.refresh_snapshot();
        let text = String::from_utf8(store.snapshot().unwrap().to_vec()).unwrap();
        assert!(text.contains("m4watch_collector_success{collector=\"hardware\"} 0\n"));
        assert!(
            text.contains(
                "m4watch_collector_last_success_timestamp_seconds{collector=\"hardware\"} "
            )
        );
        let status = &store.collectors()["hardware"];
        assert_eq!((status.runs, status.failures), (2, 1));
        assert_eq!(status.last_error.as_deref(), Some("boom"));
    }

    #[test]
    fn registry_histograms_are_merged_with_buckets_sum_and_count() {
        let store = Store::new();
        let h = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("m4watch_test_histogram_seconds", "Test.")
                .buckets(vec![0.1, 1.0]),
        )
        .unwrap();
        store.registry().register(Box::new(h.clone())).unwrap();
        h.observe(0.5);
        let f = store
            .families()
            .into_iter()
            .find(|f| f.name == "m4watch_test_histogram_seconds")
            .unwrap();
        let text = encode(&[f]);
        assert!(
            text.contains("m4watch_test_histogram_seconds_bucket{le=\"0.1\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("m4watch_test_histogram_seconds_bucket{le=\"1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("m4watch_test_histogram_seconds_bucket{le=\"+Inf\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("m4watch_test_histogram_seconds_count 1\n"),
            "{text}"
        );
    }
}
