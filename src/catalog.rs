//! The catalogue of every metric family m4watch exports: name, type, labels, help.
//!
//! The top of the crate: each module declares its families as typed constants
//! ([`crate::model::MetricDef`]) and this module only lists them. The README's metrics reference is generated from it (`m4watch metrics-reference`), and a
//! black-box test checks that a live scrape exports nothing that is not listed here, so
//! code, docs and scrape cannot drift apart.

use crate::model::MetricDef;

/// Every catalogued family, section by section. A feature module defines its own
/// `pub const METRICS: &[MetricDef]` and adds one line here.
pub const SECTIONS: &[(&str, &[MetricDef])] = &[
    ("The exporter itself", SELF),
    ("Hardware", HARDWARE),
    ("Host network", crate::collect::host::METRICS),
    ("Host clock", crate::collect::host::clock::METRICS),
    ("Host clock (SNTP)", crate::collect::host::sntp::METRICS),
    (
        "Host disks and filesystems",
        crate::collect::host::storage::METRICS,
    ),
    ("Trading processes", crate::collect::process_groups::METRICS),
    ("Rules and alerts", crate::alerts::evaluate::METRICS),
    (
        "Apple Silicon (macOS and replay)",
        crate::collect::hardware::apple::METRICS,
    ),
    (
        "Trading latency and throughput",
        crate::collect::trading::METRICS,
    ),
    ("Storage", crate::persist::storage::METRICS),
    ("Notifications", crate::notify::METRICS),
    ("Heartbeat (dead-man's switch)", crate::heartbeat::METRICS),
    ("Containers", crate::collect::containers::METRICS),
    ("Health probes", crate::collect::probes::METRICS),
    ("Recommendations", crate::advise::METRICS),
    ("HTTP API", crate::api::METRICS),
];

/// Every family, in reference order.
pub fn all() -> impl Iterator<Item = &'static MetricDef> {
    SECTIONS.iter().flat_map(|(_, defs)| defs.iter())
}

const SELF: &[MetricDef] = &[
    crate::store::BUILD_INFO,
    crate::store::COLLECTOR_DURATION_SECONDS,
    crate::store::COLLECTOR_SUCCESS,
    crate::store::COLLECTOR_LAST_SUCCESS_TIMESTAMP_SECONDS,
    crate::collect::process::PROCESS_RESIDENT_MEMORY_BYTES,
    crate::collect::process::PROCESS_VIRTUAL_MEMORY_BYTES,
    crate::collect::process::PROCESS_CPU_SECONDS_TOTAL,
    crate::collect::process::PROCESS_OPEN_FDS,
    crate::collect::process::PROCESS_MAX_FDS,
    crate::collect::process::PROCESS_START_TIME_SECONDS,
    crate::reload::CONFIG_LAST_RELOAD_SUCCESSFUL,
    crate::reload::CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
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
