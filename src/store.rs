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
    snapshot: RwLock<Option<Bytes>>,
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

impl Store {
    pub(crate) fn new() -> Self {
        Store {
            inner: Mutex::new(Inner::default()),
            registry: prometheus::Registry::new(),
            snapshot: RwLock::new(None),
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

    /// Re-encodes the exposition text from the current families.
    pub(crate) fn refresh_snapshot(&self) {
        let families = self.families();
        let text = encode(&families);
        *self.snapshot.write().expect("snapshot lock") = Some(Bytes::from(text));
        self.append_ring(&families);
    }

    /// The last encoded exposition, or `None` before the first snapshot.
    pub(crate) fn snapshot(&self) -> Option<Bytes> {
        self.snapshot.read().expect("snapshot lock").clone()
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
        if f.samples.is_empty() {
            continue;
        }
        out.push_str("# HELP ");
        out.push_str(&f.name);
        out.push(' ');
        escape_into(&mut out, &f.help, false);
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
                    escape_into(&mut out, v, true);
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            out.push_str(&format_value(s.value));
            out.push('\n');
        }
    }
    out
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
