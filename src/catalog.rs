//! The catalogue of every metric family m4watch exports: name, type, labels, help.
//!
//! Collectors take help text and type from here ([`crate::store::Family::new`]), the
//! README's metrics reference is generated from it (`m4watch metrics-reference`), and a
//! black-box test checks that a live scrape exports nothing that is not listed here, so
//! code, docs and scrape cannot drift apart.

use crate::store::Kind;

/// One exported metric family.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

/// Shorthand for a [`MetricDef`] in the `METRICS` tables.
pub const fn def(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        labels,
        help,
    }
}

use Kind::{Counter, Gauge};

/// Every catalogued family, section by section. A feature module defines its own
/// `pub const METRICS: &[MetricDef]` and adds one line here.
pub const SECTIONS: &[(&str, &[MetricDef])] = &[
    ("The exporter itself", SELF),
    ("Hardware", HARDWARE),
    ("Rules and alerts", crate::rules::task::METRICS),
    (
        "Apple Silicon (macOS and replay)",
        crate::collect::hardware::apple::METRICS,
    ),
    (
        "Trading latency and throughput",
        crate::collect::trading::METRICS,
    ),
    ("Notifications", crate::notify::METRICS),
    ("Containers", crate::collect::containers::METRICS),
    ("Health probes", crate::collect::probes::METRICS),
    ("Recommendations", crate::advise::METRICS),
];

/// Every family, in reference order.
pub fn all() -> impl Iterator<Item = &'static MetricDef> {
    SECTIONS.iter().flat_map(|(_, defs)| defs.iter())
}

const SELF: &[MetricDef] = &[
    def(
        "m4watch_build_info",
        Gauge,
        &["version", "revision"],
        "Always 1; labels name the version and git revision of this m4watch binary.",
    ),
    def(
        "m4watch_collector_duration_seconds",
        Gauge,
        &["collector"],
        "How long the last run of a collector took, in seconds.",
    ),
    def(
        "m4watch_collector_success",
        Gauge,
        &["collector"],
        "1 if the last run of a collector succeeded, 0 if it failed or timed out.",
    ),
    def(
        "m4watch_collector_last_success_timestamp_seconds",
        Gauge,
        &["collector"],
        "Unix time of the last successful run of a collector; absent until one succeeds.",
    ),
    def(
        "m4watch_process_resident_memory_bytes",
        Gauge,
        &[],
        "Resident memory of the m4watch process, in bytes.",
    ),
    def(
        "m4watch_process_virtual_memory_bytes",
        Gauge,
        &[],
        "Virtual memory of the m4watch process, in bytes.",
    ),
    def(
        "m4watch_process_cpu_seconds_total",
        Counter,
        &[],
        "CPU time (user and system) used by the m4watch process, in seconds.",
    ),
    def(
        "m4watch_process_open_fds",
        Gauge,
        &[],
        "File descriptors the m4watch process has open (Linux only).",
    ),
    def(
        "m4watch_process_max_fds",
        Gauge,
        &[],
        "Limit on open file descriptors of the m4watch process (Linux only).",
    ),
    def(
        "m4watch_process_start_time_seconds",
        Gauge,
        &[],
        "Unix time the m4watch process started.",
    ),
];

const HARDWARE: &[MetricDef] = &[
    def(
        "m4watch_cpu_info",
        Gauge,
        &["cpu", "type", "cluster"],
        "Always 1; labels give each logical CPU's core type (performance or efficiency) and cluster.",
    ),
    def(
        "m4watch_cpu_seconds_total",
        Counter,
        &["cpu", "type", "mode"],
        "CPU time spent in each mode, per logical CPU, in seconds.",
    ),
    def(
        "m4watch_cpu_utilization_ratio",
        Gauge,
        &["cpu", "type"],
        "Busy share (0..1) of each logical CPU over the last collection interval.",
    ),
    def(
        "m4watch_cpu_cluster_utilization_ratio",
        Gauge,
        &["type"],
        "Busy share (0..1) of all CPUs of one core type over the last collection interval.",
    ),
    def(
        "m4watch_cpu_cores",
        Gauge,
        &["type"],
        "Number of logical CPUs of each core type.",
    ),
    // Memory.
    def(
        "m4watch_memory_total_bytes",
        Gauge,
        &[],
        "Physical memory installed, in bytes.",
    ),
    def(
        "m4watch_memory_bytes",
        Gauge,
        &["state"],
        "Memory by state (used, available, free, cached, wired, compressed, swap_used, swap_total), in bytes.",
    ),
    def(
        "m4watch_memory_pressure_ratio",
        Gauge,
        &["window"],
        "Share of time (0..1) some task stalled waiting for memory, averaged over the window (Linux PSI).",
    ),
    // Thermal and power.
    def(
        "m4watch_temperature_celsius",
        Gauge,
        &["sensor"],
        "Temperature reported by a sensor, in degrees Celsius.",
    ),
    def(
        "m4watch_thermal_pressure",
        Gauge,
        &["state"],
        "Thermal pressure as a state set: 1 for the current state (nominal, fair, serious, critical), 0 for the others.",
    ),
    def(
        "m4watch_power_watts",
        Gauge,
        &["rail"],
        "Power drawn by a rail over the last collection interval, in watts (macOS rails: cpu, gpu, ane, dram, system).",
    ),
    def(
        "m4watch_energy_joules_total",
        Counter,
        &["rail"],
        "Energy used by a rail since m4watch started reading it, in joules.",
    ),
];

/// The definition of `name`, if catalogued.
pub fn lookup(name: &str) -> Option<&'static MetricDef> {
    all().find(|d| d.name == name)
}

/// The metrics reference as a Markdown table, the text the README embeds.
pub fn reference_markdown() -> String {
    let mut out = String::new();
    for (title, defs) in SECTIONS {
        out.push_str(&format!("\n#### {title}\n\n"));
        out.push_str("| metric | type | labels | meaning |\n| --- | --- | --- | --- |\n");
        for d in *defs {
            out.push_str(&row(d));
        }
    }
    out
}

fn row(d: &MetricDef) -> String {
    let kind = match d.kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
        Kind::Summary => "summary",
        Kind::Untyped => "untyped",
    };
    let labels = d
        .labels
        .iter()
        .map(|l| format!("`{l}`"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("| `{}` | {kind} | {labels} | {} |\n", d.name, d.help)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_practice() {
        let mut seen = std::collections::HashSet::new();
        for d in all() {
            assert!(seen.insert(d.name), "{} listed twice", d.name);
            assert!(
                d.name.starts_with("m4watch_"),
                "{} lacks the prefix",
                d.name
            );
            assert_eq!(
                d.kind == Kind::Counter,
                d.name.ends_with("_total"),
                "{}: only counters end in _total",
                d.name
            );
            assert!(
                !d.name.contains("milliseconds"),
                "{}: use base units",
                d.name
            );
            assert!(d.help.ends_with('.'), "{}: help is a full sentence", d.name);
        }
    }

    #[test]
    fn readme_reference_matches_the_catalogue() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let start = "<!-- metrics-reference:start -->\n";
        let end = "<!-- metrics-reference:end -->";
        let from = readme
            .find(start)
            .expect("README has the reference start marker")
            + start.len();
        let to = readme
            .find(end)
            .expect("README has the reference end marker");
        assert_eq!(
            &readme[from..to],
            reference_markdown(),
            "README metrics reference is stale: regenerate it with `m4watch metrics-reference`"
        );
    }
}
