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
    (
        "The exporter's process (standard names)",
        "process",
        STANDARD_PROCESS,
    ),
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
    ("Storage", "exporter", crate::persist::storage::METRICS),
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

/// The standard process families (`process_*`, no prefix), as Prometheus's client
/// libraries name them.
const STANDARD_PROCESS: &[MetricDef] = &[
    crate::collect::process::PROCESS_CPU_SECONDS_TOTAL,
    crate::collect::process::PROCESS_RESIDENT_MEMORY_BYTES,
    crate::collect::process::PROCESS_VIRTUAL_MEMORY_BYTES,
    crate::collect::process::PROCESS_OPEN_FDS,
    crate::collect::process::PROCESS_MAX_FDS,
    crate::collect::process::PROCESS_START_TIME_SECONDS,
];

const SELF: &[MetricDef] = &[
    crate::store::BUILD_INFO,
    crate::store::COLLECTOR_DURATION_SECONDS,
    crate::store::COLLECTOR_SUCCESS,
    crate::store::COLLECTOR_LAST_SUCCESS_TIMESTAMP_SECONDS,
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
    crate::collect::hardware::MEMORY_PARTITION_BYTES,
    crate::collect::hardware::MEMORY_USED_BYTES,
    crate::collect::hardware::MEMORY_AVAILABLE_BYTES,
    crate::collect::hardware::MEMORY_SWAP_TOTAL_BYTES,
    crate::collect::hardware::MEMORY_SWAP_USED_BYTES,
    crate::collect::hardware::MEMORY_PRESSURE_RATIO,
    crate::collect::hardware::TEMPERATURE_CELSIUS,
    crate::collect::hardware::THERMAL_PRESSURE,
    crate::collect::hardware::POWER_WATTS,
    crate::collect::hardware::SYSTEM_POWER_WATTS,
    crate::collect::hardware::ENERGY_JOULES_TOTAL,
    crate::collect::hardware::SYSTEM_ENERGY_JOULES_TOTAL,
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

/// Where an exposition breaks "one family, one label set": a family whose series carry
/// different label names (the old `m4watch_cpu_frequency_hertz`, per CPU and per
/// cluster in one family), or a catalogued family whose series carry other labels than
/// the catalogue lists. As Prometheus reads it, an empty label value is no label; a
/// histogram's `le` and a summary's `quantile` belong to their parts. Empty when sound.
pub fn label_set_errors(exposition: &str) -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut kinds: BTreeMap<&str, &str> = BTreeMap::new();
    let mut sets: BTreeMap<String, BTreeSet<BTreeSet<String>>> = BTreeMap::new();
    let mut errors = Vec::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                kinds.insert(name, kind.trim());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let series = &line[..end];
        let Some(labels) = label_names(&line[end..]) else {
            errors.push(format!("unparsable series line: {line}"));
            continue;
        };
        let (family, part_label) = family_of(series, &kinds);
        let set = labels
            .into_iter()
            .filter(|l| Some(l.as_str()) != part_label)
            .collect();
        sets.entry(family.to_string()).or_default().insert(set);
    }
    for (family, found) in sets {
        if found.len() > 1 {
            let shown: Vec<String> = found.iter().map(|s| format!("{s:?}")).collect();
            errors.push(format!(
                "{family} mixes label sets: {}",
                shown.join(" and ")
            ));
        } else if let (Some(def), Some(set)) = (lookup(&family), found.first()) {
            // A catalogue entry may list its parts' label (`quantile`), which the
            // family's own label set leaves out as the exposition's parts do.
            let part = match def.kind {
                crate::model::Kind::Histogram => "le",
                crate::model::Kind::Summary => "quantile",
                _ => "",
            };
            let declared: BTreeSet<String> = def
                .labels
                .iter()
                .filter(|l| **l != part)
                .map(|l| l.to_string())
                .collect();
            if *set != declared {
                errors.push(format!(
                    "{family} exports labels {set:?}, the catalogue lists {declared:?}"
                ));
            }
        }
    }
    errors
}

/// The family a series line belongs to, and the label its part adds (`le`,
/// `quantile`), from the `# TYPE` lines seen so far.
fn family_of<'a>(
    series: &'a str,
    kinds: &std::collections::BTreeMap<&str, &str>,
) -> (&'a str, Option<&'static str>) {
    match kinds.get(series) {
        Some(&"summary") => return (series, Some("quantile")),
        Some(_) => return (series, None),
        None => {}
    }
    for (suffix, label) in [("_bucket", Some("le")), ("_sum", None), ("_count", None)] {
        if let Some(base) = series.strip_suffix(suffix) {
            if matches!(kinds.get(base), Some(&"histogram") | Some(&"summary")) {
                return (base, label);
            }
        }
    }
    (series, None)
}

/// The names of the labels with a non-empty value in `{a="1",b=""} 2`; `None` when the
/// braces do not parse.
fn label_names(rest: &str) -> Option<Vec<String>> {
    let Some(body) = rest.strip_prefix('{') else {
        return Some(Vec::new());
    };
    let mut names = Vec::new();
    let mut chars = body.chars();
    loop {
        let mut name = String::new();
        for c in chars.by_ref() {
            match c {
                '=' => break,
                '}' if name.trim().is_empty() => return Some(names),
                _ => name.push(c),
            }
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        let mut escaped = false;
        for c in chars.by_ref() {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => break,
                _ => {
                    escaped = false;
                    value.push(c);
                }
            }
        }
        if !value.is_empty() {
            names.push(name.trim().trim_start_matches(',').trim().to_string());
        }
        match chars.next()? {
            ',' => continue,
            '}' => return Some(names),
            _ => return None,
        }
    }
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
            // The standard self-metrics keep the names every client library gives them.
            let standard = STANDARD_PROCESS.iter().any(|p| p.name == d.name);
            assert!(
                d.name.starts_with("m4watch_") || standard,
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

    /// Issue 30: a family that mixes label sets is refused, as is one whose labels are
    /// not the catalogue's; one label set, histogram parts and empty values pass.
    #[test]
    fn a_family_that_mixes_label_sets_is_refused() {
        let old = "# TYPE m4watch_cpu_frequency_hertz gauge\n\
                   m4watch_cpu_frequency_hertz{cpu=\"0\",type=\"efficiency\"} 1e9\n\
                   m4watch_cpu_frequency_hertz{cluster=\"E\",type=\"efficiency\"} 1e9\n";
        let errors = label_set_errors(old);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("m4watch_cpu_frequency_hertz mixes label sets"));
        let undeclared = "m4watch_cpu_cluster_frequency_hertz{cpu=\"0\",type=\"p\"} 1\n";
        assert_eq!(
            label_set_errors(undeclared),
            [
                "m4watch_cpu_cluster_frequency_hertz exports labels {\"cpu\", \"type\"}, the catalogue lists {\"cluster\", \"type\"}"
            ]
        );
        let sound = "# TYPE m4watch_chip_info gauge\n\
                     m4watch_chip_info{chip=\"M4 Max\",performance_cores=\"12\",efficiency_cores=\"4\",gpu_cores=\"40\"} 1\n\
                     # TYPE x_latency_seconds histogram\n\
                     x_latency_seconds_bucket{probe=\"a, \\\"b\\\"\",le=\"0.1\"} 1\n\
                     x_latency_seconds_sum{probe=\"x\"} 1\n\
                     x_latency_seconds_count{probe=\"x\"} 1\n\
                     m4watch_build_info{version=\"0.1.0\",revision=\"\"} 1\n";
        let errors = label_set_errors(sound);
        // build_info's empty revision is no label: the catalogue's set is not met.
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("m4watch_build_info exports labels"),
            "{errors:?}"
        );
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
