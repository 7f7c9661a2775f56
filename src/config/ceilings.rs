//! Upper bounds of every duration in the config (issue 25, item 7). A duration has a
//! lower bound where it is checked with the rest of its section; its upper bound is
//! here, in one table, so a new duration key without one fails a unit test.
//!
//! Two layers: any duration over [`MAX_ANY_DURATION`] is refused while the file is
//! parsed (naming its key), so no key can carry a value that overflows `Instant`
//! arithmetic (`500000000000y` made every HTTP handler panic); and each key has its own
//! ceiling below, the longest value that still means something for it. Every ceiling
//! is at least ten times the shipped default.

use std::time::Duration;

use serde_json::Value;

use super::{Dur, heartbeat};

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// The longest duration any key takes (10 years): above it a value is a typo, and
/// `Instant + d` could overflow (a panic in whatever task computes a deadline).
pub const MAX_ANY_DURATION: Duration = Duration::from_secs(10 * 31_557_600);

/// The ceiling of a duration key, `path` written with `[]` for a list index and with
/// nested `routes[].` collapsed (a child route has the root's keys). `None`: not a
/// duration key.
///
/// Why each ceiling:
/// - A loop's interval or a collector's timeout: 1 h. A sample an hour old is no
///   monitoring; the shipped rules' `for:` clauses are minutes.
/// - HTTP server timeouts: `api.header_read_timeout` 5 min, `api.idle_timeout` 1 h.
///   Longer, an idle or slow peer holds one of `api.max_connections` for that long (a
///   huge one made every handler panic).
/// - Outbound request timeouts: 5 min; a receiver or probe that has not answered
///   in 5 min will not, and its lane waits behind it.
/// - Notification timing: `group_wait` 1 h (a first page held longer is a page
///   missed), `group_interval` 24 h, `repeat_interval` 30 d, `escalation.after` 7 d,
///   `delivery.max_backoff` 24 h, `delivery.max_age` 7 d (the outbox holds what it
///   has not delivered that long). A huge one silenced every notification.
/// - Retention: `history.retention` 1 y (SQLite grows with it), `resolved_retention`
///   30 d, silences (`api.max_silence_duration`) 10 y.
/// - Trading latency targets and alert thresholds: 1 min. They are per-operation
///   latencies (shipped: 1 ms to 100 ms) read over a window of a minute or so.
/// - The heartbeat's, as documented in [`heartbeat`] (interval 24 h, timeout 1 min).
/// - `trading.silence_after`: 30 min, under the one-hour horizon of the shipped
///   `TradingSourceSilent` (an operation quiet for over an hour is retired, not silent).
/// - Windows: `rules.max_range` 24 h and the trading windows 24 h (kept in memory),
///   `history.baseline_period` 30 d, `advice.window` 24 h.
pub(crate) fn ceiling(path: &str) -> Option<Duration> {
    let s = |n: u64| Some(Duration::from_secs(n));
    match path {
        "metrics.snapshot_interval"
        | "hardware.interval"
        | "hardware.timeout"
        | "process.interval"
        | "host.interval"
        | "host.filesystems.stat_timeout"
        | "processes.interval"
        | "trading.interval"
        | "rules.evaluation_interval"
        | "containers.interval"
        | "containers.timeout"
        | "probes.interval"
        | "history.interval"
        | "notifications.delivery.initial_backoff"
        | "notifications.receivers[].alertmanager.resend_delay"
        | "notifications.route.group_wait"
        | "api.idle_timeout" => s(HOUR),
        "api.header_read_timeout"
        | "notifications.delivery.timeout"
        | "probes.targets[].timeout" => s(5 * MINUTE),
        "heartbeat.interval" => Some(heartbeat::MAX_INTERVAL),
        "heartbeat.timeout" => Some(heartbeat::MAX_TIMEOUT),
        "heartbeat.max_delivery_delay" => Some(heartbeat::MAX_DELIVERY_DELAY),
        "host.clock.ntp_timeout" => s(5),
        "trading.score.latency.target"
        | "trading.score.latency.alert"
        | "trading.score.risk.target"
        | "trading.score.risk.alert"
        | "trading.score.ml.target"
        | "trading.score.ml.alert" => s(MINUTE),
        "trading.silence_after" => s(30 * MINUTE),
        "host.clock.ntp_interval"
        | "containers.resync_interval"
        | "rules.max_range"
        | "trading.windows[]"
        | "trading.score.window"
        | "trading.measurement_ttl"
        | "advice.window"
        | "notifications.route.group_interval"
        | "notifications.delivery.max_backoff" => s(DAY),
        "notifications.escalation.after" | "notifications.delivery.max_age" => s(7 * DAY),
        "rules.resolved_retention"
        | "trading.series_ttl"
        | "history.baseline_period"
        | "notifications.route.repeat_interval" => s(30 * DAY),
        "history.retention" => s(365 * DAY),
        "api.max_silence_duration" => Some(MAX_ANY_DURATION),
        _ => None,
    }
}

/// `a.b[3].c` -> `a.b[].c`, with nested `routes[].` collapsed: the key of the table.
pub(crate) fn normalise(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    while out.contains(".routes[].") {
        out = out.replace(".routes[].", ".");
    }
    out
}

/// Every leaf of the config as serialised: `(path, value)`, paths written as in
/// errors (`a.b[3].c`).
pub(crate) fn leaves(v: &Value) -> Vec<(String, &Value)> {
    fn walk<'v>(v: &'v Value, path: String, out: &mut Vec<(String, &'v Value)>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(x, p, out);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, format!("{path}[{i}]"), out);
                }
            }
            _ => out.push((path, v)),
        }
    }
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out
}

/// Refuses the first duration above its key's ceiling, naming the key, its value and
/// the limit.
pub(crate) fn check(config: &impl serde::Serialize) -> Result<(), (String, String)> {
    let Ok(v) = serde_json::to_value(config) else {
        return Ok(());
    };
    for (path, leaf) in leaves(&v) {
        let (Some(max), Some(text)) = (ceiling(&normalise(&path)), leaf.as_str()) else {
            continue;
        };
        let Ok(d) = super::parse_duration(text) else {
            continue;
        };
        if d > max {
            return Err((
                path,
                format!("{} is above the limit of {}", Dur(d), Dur(max)),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// Every config text the tests know, together holding every duration key: the
    /// shipped example, the embedded default, and keys both leave out.
    fn configs() -> Vec<(&'static str, String)> {
        vec![
            (
                "m4watch.example.yml",
                std::fs::read_to_string("m4watch.example.yml").unwrap(),
            ),
            ("default", crate::config::DEFAULT_YAML.to_string()),
            (
                "extra",
                r#"
heartbeat: {url: "https://hc.example/ping"}
notifications:
  receivers:
    - name: ops
      alertmanager: {urls: ["http://127.0.0.1:9093"]}
  route:
    receiver: ops
    group_wait: 1s
    group_interval: 1m
    repeat_interval: 1h
    routes:
      - {receiver: ops, group_wait: 2s, routes: [{receiver: ops, group_interval: 2m}]}
  escalation: {receiver: ops, after: 10m}
probes:
  targets:
    - {name: a, url: "http://127.0.0.1:1/", timeout: 1s}
"#
                .to_string(),
            ),
        ]
    }

    /// Every duration leaf of a parsed config, as `(path, value)`.
    fn durations(c: &Config) -> Vec<(String, String)> {
        let v = serde_json::to_value(c).unwrap();
        leaves(&v)
            .into_iter()
            .filter_map(|(p, l)| {
                let s = l.as_str()?;
                super::super::parse_duration(s).ok()?;
                Some((p, s.to_string()))
            })
            .collect()
    }

    /// Sets the leaf at `path` (`a.b[2].c`) of a YAML document.
    fn set(doc: &mut serde_json::Value, path: &str, to: &str) {
        let mut cur = doc;
        for part in path.split('.') {
            let (key, idx) = match part.split_once('[') {
                Some((k, i)) => (k, Some(i.trim_end_matches(']').parse::<usize>().unwrap())),
                None => (part, None),
            };
            cur = &mut cur[key];
            if let Some(i) = idx {
                cur = &mut cur[i];
            }
        }
        *cur = serde_json::Value::String(to.into());
    }

    #[test]
    fn every_duration_key_has_a_ceiling() {
        let mut seen = 0;
        let mut missing = Vec::new();
        for (name, text) in configs() {
            let c = Config::parse(&text, name, Path::new("."), &no_env).unwrap();
            for (path, _) in durations(&c) {
                seen += 1;
                if ceiling(&normalise(&path)).is_none() {
                    missing.push(format!("{name}: {path}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "duration keys without an upper bound in config::ceilings: {missing:?}"
        );
        assert!(seen > 40, "only {seen} duration keys found");
    }

    /// Each duration key set to `500000000000y` (which `check-config` once passed in
    /// 12 keys), and to one second above its own ceiling, is refused naming that key.
    #[test]
    fn a_huge_or_over_the_ceiling_duration_is_refused_naming_its_key() {
        let mut tried = 0;
        for (name, text) in configs() {
            let c = Config::parse(&text, name, Path::new("."), &no_env).unwrap();
            // The file as written (defaults left out stay out): every key is set in a
            // copy of the full serialised config, which parses back as it is.
            let full = serde_json::to_value(&c).unwrap();
            for (path, _) in durations(&c) {
                let max = ceiling(&normalise(&path)).unwrap();
                let over = format!("{}s", max.as_secs() + 1);
                for value in ["500000000000y", over.as_str()] {
                    let mut doc = full.clone();
                    set(&mut doc, &path, value);
                    strip_resolved(&mut doc);
                    let yaml = serde_yaml_ng::to_string(&doc).unwrap();
                    let err = Config::parse(&yaml, "<t>", Path::new("."), &no_env)
                        .expect_err(&format!("{path}: {value} must be refused"))
                        .to_string();
                    assert!(
                        err.contains(&format!("{path}: ")) && err.contains("above the limit"),
                        "{path} = {value}: {err}"
                    );
                    tried += 1;
                }
            }
        }
        assert!(tried > 80, "{tried}");
    }

    /// What serialising wrote that a file cannot say back: redacted secrets (given a
    /// value that passes as a token and a URL) and nulls.
    fn strip_resolved(doc: &mut serde_json::Value) {
        match doc {
            serde_json::Value::Object(m) => {
                m.retain(|_, v| !v.is_null());
                for v in m.values_mut() {
                    if v.as_str() == Some("<redacted>") {
                        *v = "https://secret.example/x".into();
                    }
                }
                m.values_mut().for_each(strip_resolved);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip_resolved),
            _ => {}
        }
    }

    #[test]
    fn the_limit_is_named_in_the_error() {
        let text = "notifications:\n  receivers: [{name: ops, webhook: {url: \"http://127.0.0.1:1/\"}}]\n  route: {receiver: ops, group_wait: 2h}\n";
        let err = Config::parse(text, "<t>", Path::new("."), &no_env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "<t>:3:38: notifications.route.group_wait: 2h is above the limit of 1h"
        );
        let err = Config::parse(
            "api: {idle_timeout: 500000000000y}\n",
            "<t>",
            Path::new("."),
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("api.idle_timeout: 500000000000y is above the limit of 10years"),
            "{err}"
        );
    }

    #[test]
    fn paths_normalise_to_table_keys() {
        assert_eq!(
            normalise("notifications.route.routes[2].routes[0].group_wait"),
            "notifications.route.group_wait"
        );
        assert_eq!(normalise("trading.windows[1]"), "trading.windows[]");
    }
}
