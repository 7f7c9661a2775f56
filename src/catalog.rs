//! The catalogue of every metric family m4watch exports: name, type, labels, help.
//!
//! The top of the crate: each module declares its families as typed constants
//! ([`crate::model::MetricDef`]) and this module only lists them. The README's metrics reference is generated from it (`m4watch metrics-reference`), and a
//! black-box test checks that a live scrape exports nothing that is not listed here, so
//! code, docs and scrape cannot drift apart.

use crate::model::MetricDef;

/// Every catalogued family, section by section: (title, collector, families). A
/// feature module defines its own `pub const METRICS: &[MetricDef]` and adds one line
/// here. The collector is the name `GET /metrics?collect[]=NAME` selects the section
/// by (node_exporter's parameter); a family belongs to exactly one collector, a
/// collector may span several sections. Where a runtime collector publishes the
/// families, the name is its `m4watch_collector_success{collector}` label.
pub const SECTIONS: &[(&str, &str, &[MetricDef])] = &[
    ("The exporter itself", "exporter", SELF),
    ("The exporter's process", "process", PROCESS),
    ("Hardware", "hardware", HARDWARE),
    ("Host network", "host", crate::collect::host::METRICS),
    ("Host clock", "host", crate::collect::host::clock::METRICS),
    (
        "Host clock (SNTP)",
        "host",
        crate::collect::host::sntp::METRICS,
    ),
    (
        "Host disks and filesystems",
        "host",
        crate::collect::host::storage::METRICS,
    ),
    (
        "Trading processes",
        "process_groups",
        crate::collect::process_groups::METRICS,
    ),
    (
        "Rules and alerts",
        "rules",
        crate::alerts::evaluate::METRICS,
    ),
    (
        "Apple Silicon (macOS and replay)",
        "hardware",
        crate::collect::hardware::apple::METRICS,
    ),
    (
        "Trading latency and throughput",
        "trading",
        crate::collect::trading::METRICS,
    ),
    (
        "Trading latency histograms",
        "trading_histograms",
        crate::collect::trading::HISTOGRAMS,
    ),
    (
        "Trading ingest",
        "trading_ingest",
        crate::collect::trading::INGEST,
    ),
    ("Notifications", "notifications", crate::notify::METRICS),
    (
        "Heartbeat (dead-man's switch)",
        "heartbeat",
        crate::heartbeat::METRICS,
    ),
    (
        "Containers",
        "containers",
        crate::collect::containers::METRICS,
    ),
    ("Health probes", "probes", crate::collect::probes::METRICS),
    ("Recommendations", "advice", crate::advise::METRICS),
    ("HTTP API", "exporter", crate::api::METRICS),
];

/// Every family, in reference order.
pub fn all() -> impl Iterator<Item = &'static MetricDef> {
    SECTIONS.iter().flat_map(|(_, _, defs)| defs.iter())
}

/// Every collector name `collect[]` accepts, in reference order, once each.
pub fn collectors() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for (_, collector, _) in SECTIONS {
        if !out.contains(collector) {
            out.push(collector);
        }
    }
    out
}

/// The families of each collector, for the store's filtered scrapes.
pub(crate) fn family_groups() -> crate::store::Groups {
    crate::store::Groups::new(
        SECTIONS
            .iter()
            .flat_map(|(_, c, defs)| defs.iter().map(move |d| (*c, d.name))),
    )
}

const SELF: &[MetricDef] = &[
    crate::store::BUILD_INFO,
    crate::store::COLLECTOR_DURATION_SECONDS,
    crate::store::COLLECTOR_SUCCESS,
    crate::store::COLLECTOR_LAST_SUCCESS_TIMESTAMP_SECONDS,
    crate::reload::CONFIG_LAST_RELOAD_SUCCESSFUL,
    crate::reload::CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
];

const PROCESS: &[MetricDef] = &[
    crate::collect::process::PROCESS_RESIDENT_MEMORY_BYTES,
    crate::collect::process::PROCESS_VIRTUAL_MEMORY_BYTES,
    crate::collect::process::PROCESS_CPU_SECONDS_TOTAL,
    crate::collect::process::PROCESS_OPEN_FDS,
    crate::collect::process::PROCESS_MAX_FDS,
    crate::collect::process::PROCESS_START_TIME_SECONDS,
];

const HARDWARE: &[MetricDef] = &[
    crate::collect::hardware::CPU_INFO,
    crate::collect::hardware::CPU_SECONDS_TOTAL,
    crate::collect::hardware::CPU_UTILIZATION_RATIO,
    crate::collect::hardware::CPU_CLUSTER_UTILIZATION_RATIO,
    crate::collect::hardware::CPU_CORES,
    crate::collect::hardware::MEMORY_TOTAL_BYTES,
    crate::collect::hardware::MEMORY_BYTES,
    crate::collect::hardware::MEMORY_PRESSURE_RATIO,
    crate::collect::hardware::TEMPERATURE_CELSIUS,
    crate::collect::hardware::THERMAL_PRESSURE,
    crate::collect::hardware::POWER_WATTS,
    crate::collect::hardware::ENERGY_JOULES_TOTAL,
];

/// The definition of `name`, if catalogued.
pub fn lookup(name: &str) -> Option<&'static MetricDef> {
    all().find(|d| d.name == name)
}

/// The metrics reference as a Markdown table, the text the README embeds.
pub fn reference_markdown() -> String {
    let mut out = String::new();
    for (title, collector, defs) in SECTIONS {
        out.push_str(&format!("\n#### {title} (`collect[]={collector}`)\n\n"));
        out.push_str("| metric | type | labels | meaning |\n| --- | --- | --- | --- |\n");
        for d in *defs {
            out.push_str(&row(d));
        }
    }
    out
}

fn row(d: &MetricDef) -> String {
    let kind = d.kind.as_str();
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
    use crate::model::Kind;

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
    fn every_family_belongs_to_exactly_one_collector() {
        let mut owner: std::collections::HashMap<&str, &str> = Default::default();
        for (title, collector, defs) in SECTIONS {
            assert!(!defs.is_empty(), "{title}: an empty section");
            assert!(
                !collector.is_empty()
                    && collector
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{title}: collector {collector:?} is not a plain lower-case name"
            );
            for d in *defs {
                if let Some(other) = owner.insert(d.name, collector) {
                    panic!("{} belongs to {other} and to {collector}", d.name);
                }
            }
        }
        assert_eq!(owner.len(), all().count());
        let names = collectors();
        assert!(names.len() <= crate::store::Groups::MAX);
        // The filter the store builds agrees: each family in its collector only.
        let groups = family_groups();
        assert_eq!(groups.names(), names.as_slice());
        // Every runtime collector's name (its `m4watch_collector_success{collector}`
        // label) is a name collect[] takes.
        for kind in crate::collect::CollectorKind::ALL {
            assert!(names.contains(&kind.name()), "{}", kind.name());
        }
        // The shipped 1 s job's collector is the trading families a desk watches, not
        // the histograms or the ingest's health.
        let trading: Vec<&str> = SECTIONS
            .iter()
            .filter(|s| s.1 == "trading")
            .flat_map(|s| s.2.iter().map(|d| d.name))
            .collect();
        assert!(trading.contains(&"m4watch_trading_latency_quantile_seconds"));
        assert!(!trading.contains(&"m4watch_trading_latency_seconds"));
        assert!(!trading.contains(&"m4watch_statsd_packets_total"));
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
