#!/usr/bin/env python3
"""Generates the Grafana dashboards in grafana-dashboards/ from the panel lists below.

    scripts/gen-dashboards.py          write the JSON files
    scripts/gen-dashboards.py --check  exit 1 if a committed file differs (scripts/test.sh)

Every query selects `instance=~"$instance"` so one Grafana watches several hosts, and
uses `$__rate_interval` for rates. tests/stack.rs parses every query with promql-parser,
checks its metric names against a live scrape and runs it against a real Prometheus.
"""
import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parent.parent / "grafana-dashboards"
I = 'instance=~"$instance"'
# m4watch's severity model, worst first (src/model/alert.rs).
SEVERITIES = ["emergency", "critical", "warning", "info"]


def q(expr, legend=""):
    return {"expr": expr, "legend": legend}


def panel(title, kind, queries, unit="short", w=12, h=8, desc="", **opts):
    return {"title": title, "type": kind, "queries": queries, "unit": unit, "w": w, "h": h,
            "description": desc, "opts": opts}


def row(title):
    return {"row": title}


DASHBOARDS = {
    "overview": ("m4watch / Overview", "Performance score, health, firing alerts, P vs E load, top containers.", [
        row("Performance"),
        panel("Performance score", "stat", [q(f'm4watch_performance_score{{{I}}}', "{{instance}}")], "none", w=6,
              desc="Weighted score 0..100: latency 40%, risk 20%, ML 20%, throughput 20%.",
              thresholds=[("red", None), ("orange", 70), ("green", 85)]),
        panel("Score components", "bargauge", [q(f'm4watch_performance_component_score{{{I}}}', "{{component}}")],
              "percentunit", w=6),
        panel("Collectors failing", "stat", [q(f'count(m4watch_collector_success{{{I}}} == 0) or vector(0)', "failing")],
              "none", w=6, thresholds=[("green", None), ("red", 1)]),
        panel("Firing alerts by severity", "stat",
              [q(f'sum(m4watch_alerts{{{I}, state="firing", severity="{sev}"}}) or vector(0)', sev)
               for sev in SEVERITIES], "none", w=6,
              desc="Firing alerts per severity, worst first (info < warning < critical < emergency, "
                   "the order Slack colours, PagerDuty levels and health follow).",
              thresholds=[("green", None), ("red", 1)]),
        row("CPU"),
        panel("Cluster utilisation: performance vs efficiency", "timeseries",
              [q(f'm4watch_cpu_cluster_utilization_ratio{{{I}}}', "{{instance}} {{type}}")], "percentunit", w=12),
        panel("Memory used", "timeseries",
              [q(f'm4watch_memory_bytes{{{I}, state="used"}}', "used"),
               q(f'm4watch_memory_total_bytes{{{I}}}', "total")], "bytes", w=12),
        row("Containers"),
        panel("Top containers by CPU", "bargauge",
              [q(f'topk(10, rate(m4watch_container_cpu_usage_seconds_total{{{I}}}[$__rate_interval]))', "{{name}}")],
              "percentunit", w=12),
        panel("Top containers by working set", "bargauge",
              [q(f'topk(10, m4watch_container_memory_working_set_bytes{{{I}}})', "{{name}}")], "bytes", w=12),
    ]),
    "hardware": ("m4watch / M4 Max hardware", "Per-core load by core type, GPU, ANE, power, temperatures, thermal and memory pressure.", [
        row("CPU"),
        panel("Per-core utilisation (performance cores)", "timeseries",
              [q(f'm4watch_cpu_utilization_ratio{{{I}, type="performance"}}', "cpu {{cpu}}")], "percentunit"),
        panel("Per-core utilisation (efficiency cores)", "timeseries",
              [q(f'm4watch_cpu_utilization_ratio{{{I}, type="efficiency"}}', "cpu {{cpu}}")], "percentunit"),
        panel("Per-core utilisation heatmap", "heatmap",
              [q(f'm4watch_cpu_utilization_ratio{{{I}}}', "{{type}} {{cpu}}")], "percentunit", w=24),
        panel("Cluster utilisation", "timeseries",
              [q(f'm4watch_cpu_cluster_utilization_ratio{{{I}}}', "{{type}}")], "percentunit"),
        panel("CPU time by mode", "timeseries",
              [q(f'sum by (type, mode) (rate(m4watch_cpu_seconds_total{{{I}, mode!="idle"}}[$__rate_interval]))',
                 "{{type}} {{mode}}")], "short"),
        panel("Cluster frequency", "timeseries",
              [q(f'm4watch_cpu_frequency_hertz{{{I}, cluster!=""}}', "{{cluster}}")], "hertz"),
        panel("Cores by type", "stat", [q(f'm4watch_cpu_cores{{{I}}}', "{{type}}")], "none"),
        row("GPU and Neural Engine"),
        panel("GPU utilisation", "timeseries", [q(f'm4watch_gpu_utilization_ratio{{{I}}}', "GPU")], "percentunit", w=8),
        panel("GPU memory in use", "timeseries", [q(f'm4watch_gpu_memory_used_bytes{{{I}}}', "in use")], "bytes", w=8),
        panel("GPU frequency", "timeseries", [q(f'm4watch_gpu_frequency_hertz{{{I}}}', "GPU")], "hertz", w=8),
        panel("ANE utilisation (estimate from power)", "timeseries",
              [q(f'm4watch_ane_utilization_estimate_ratio{{{I}}}', "ANE estimate")], "percentunit",
              desc="No public API measures Neural Engine utilisation: this is ANE power over the configured maximum."),
        panel("ANE power", "timeseries", [q(f'm4watch_ane_power_watts{{{I}}}', "ANE")], "watt"),
        row("Power and thermals"),
        panel("Power by rail", "timeseries", [q(f'm4watch_power_watts{{{I}}}', "{{rail}}")], "watt"),
        panel("Energy per hour by rail", "timeseries",
              [q(f'rate(m4watch_energy_joules_total{{{I}}}[$__rate_interval]) * 3600', "{{rail}}")], "joule"),
        panel("Temperatures", "timeseries", [q(f'm4watch_temperature_celsius{{{I}}}', "{{sensor}}")], "celsius"),
        panel("Thermal pressure", "state-timeline",
              [q(f'm4watch_thermal_pressure{{{I}}} == 1', "{{state}}")], "none"),
        panel("Fans", "timeseries", [q(f'm4watch_fan_speed_rpm{{{I}}}', "{{fan}}")], "rotrpm"),
        row("Memory"),
        panel("Memory by state", "timeseries", [q(f'm4watch_memory_bytes{{{I}}}', "{{state}}")], "bytes"),
        panel("Memory pressure", "timeseries",
              [q(f'm4watch_memory_pressure_ratio{{{I}}} or on (instance) (m4watch_memory_pressure_level{{{I}}} == 1)',
                 "{{window}}{{level}}")], "short",
              desc="Linux: share of time stalled on memory (PSI). macOS: the kernel's pressure level (normal, warn, critical)."),
    ]),
    "containers": ("m4watch / Containers", "Docker containers and the trading engines' health probes.", [
        row("Resources"),
        panel("CPU", "timeseries",
              [q(f'rate(m4watch_container_cpu_usage_seconds_total{{{I}}}[$__rate_interval])', "{{name}}")], "short"),
        panel("Memory working set vs limit", "timeseries",
              [q(f'm4watch_container_memory_working_set_bytes{{{I}}}', "{{name}}"),
               q(f'm4watch_container_memory_limit_bytes{{{I}}}', "{{name}} limit")], "bytes"),
        panel("Network receive", "timeseries",
              [q(f'sum by (name) (rate(m4watch_container_network_receive_bytes_total{{{I}}}[$__rate_interval]))', "{{name}}")], "Bps"),
        panel("Network transmit", "timeseries",
              [q(f'sum by (name) (rate(m4watch_container_network_transmit_bytes_total{{{I}}}[$__rate_interval]))', "{{name}}")], "Bps"),
        panel("Block I/O read", "timeseries",
              [q(f'rate(m4watch_container_blkio_read_bytes_total{{{I}}}[$__rate_interval])', "{{name}}")], "Bps"),
        panel("Block I/O write", "timeseries",
              [q(f'rate(m4watch_container_blkio_write_bytes_total{{{I}}}[$__rate_interval])', "{{name}}")], "Bps"),
        row("Lifecycle"),
        panel("Up", "state-timeline", [q(f'm4watch_container_up{{{I}}}', "{{name}}")], "none"),
        panel("Restarts", "timeseries", [q(f'm4watch_container_restarts_total{{{I}}}', "{{name}}")], "none"),
        panel("OOM kills", "timeseries", [q(f'm4watch_container_oom_kills_total{{{I}}}', "{{name}}")], "none"),
        panel("Health", "table", [q(f'm4watch_container_health_status{{{I}}} == 1', "{{name}} {{status}}")], "none"),
        row("Engine probes"),
        panel("Probe success", "state-timeline", [q(f'm4watch_probe_success{{{I}}}', "{{target}}")], "none"),
        panel("Probe latency", "timeseries", [q(f'm4watch_probe_duration_seconds{{{I}}}', "{{target}}")], "s"),
    ]),
    "trading": ("m4watch / Trading", "Latency quantiles, histograms, throughput and the performance score.", [
        row("Latency"),
        panel("p95 latency by operation (1m window)", "timeseries",
              [q(f'm4watch_trading_latency_quantile_seconds{{{I}, window="1m", quantile="0.95"}}', "{{operation}}")], "s"),
        panel("p99.9 latency by operation (5m window)", "timeseries",
              [q(f'm4watch_trading_latency_quantile_seconds{{{I}, window="5m", quantile="0.999"}}', "{{operation}}")], "s"),
        panel("p99 across hosts (from histograms)", "timeseries",
              [q(f'histogram_quantile(0.99, sum by (operation, le) (rate(m4watch_trading_latency_seconds_bucket{{{I}}}[$__rate_interval])))',
                 "{{operation}}")], "s"),
        panel("Latency histogram", "heatmap",
              [q(f'sum by (le) (rate(m4watch_trading_latency_seconds_bucket{{{I}}}[$__rate_interval]))', "{{le}}")], "s",
              format="heatmap"),
        row("Throughput and score"),
        panel("Throughput", "timeseries",
              [q(f'm4watch_trading_throughput_per_second{{{I}, window="1m"}}', "{{stream}}")], "ops"),
        panel("Measurements per second", "timeseries",
              [q(f'sum by (operation) (rate(m4watch_trading_latency_seconds_count{{{I}}}[$__rate_interval]))', "{{operation}}")], "ops"),
        panel("Performance score", "timeseries", [q(f'm4watch_performance_score{{{I}}}', "score")], "none"),
        panel("Score components", "timeseries",
              [q(f'm4watch_performance_component_score{{{I}}}', "{{component}}")], "percentunit"),
    ]),
    "alerts": ("m4watch / Alerts and self-health", "Alerts over time, notifications, queue, and the exporter itself.", [
        row("Alerts"),
        panel("Alerts by state", "timeseries",
              [q(f'sum by (state) (m4watch_alerts{{{I}}})', "{{state}}")], "none"),
        panel("Firing alerts", "table", [q(f'm4watch_alerts{{{I}, state="firing"}} > 0', "{{alertname}} {{severity}}")], "none"),
        panel("Rule evaluation time", "timeseries", [q(f'm4watch_rule_evaluation_duration_seconds{{{I}}}', "evaluation")], "s"),
        panel("Rules loaded", "stat", [q(f'm4watch_rules_loaded{{{I}}}', "rules")], "none"),
        row("Notifications"),
        panel("Notifications sent", "timeseries",
              [q(f'sum by (integration) (increase(m4watch_notifications_total{{{I}}}[$__rate_interval]))', "{{integration}}")], "none"),
        panel("Notifications failed", "timeseries",
              [q(f'sum by (integration, reason) (increase(m4watch_notifications_failed_total{{{I}}}[$__rate_interval]))',
                 "{{integration}} {{reason}}")], "none"),
        panel("Notification queue", "timeseries", [q(f'm4watch_notification_queue_length{{{I}}}', "queued")], "none"),
        row("Exporter"),
        panel("Collector success", "state-timeline", [q(f'm4watch_collector_success{{{I}}}', "{{collector}}")], "none"),
        panel("Collector duration", "timeseries", [q(f'm4watch_collector_duration_seconds{{{I}}}', "{{collector}}")], "s"),
        panel("m4watch memory", "timeseries", [q(f'm4watch_process_resident_memory_bytes{{{I}}}', "RSS")], "bytes"),
        panel("m4watch CPU", "timeseries",
              [q(f'rate(m4watch_process_cpu_seconds_total{{{I}}}[$__rate_interval])', "CPU")], "percentunit"),
    ]),
}


def grafana_panel(p, pid, x, y):
    targets = []
    for i, t in enumerate(p["queries"]):
        tgt = {"refId": chr(ord("A") + i), "expr": t["expr"], "legendFormat": t["legend"],
               "datasource": {"type": "prometheus", "uid": "${datasource}"}}
        if p["opts"].get("format"):
            tgt["format"] = p["opts"]["format"]
        targets.append(tgt)
    defaults = {"unit": p["unit"]}
    if "thresholds" in p["opts"]:
        defaults["thresholds"] = {"mode": "absolute", "steps": [
            {"color": c, "value": v} for c, v in p["opts"]["thresholds"]]}
    return {"id": pid, "type": p["type"], "title": p["title"], "description": p["description"],
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"x": x, "y": y, "w": p["w"], "h": p["h"]},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {}, "targets": targets}


def dashboard(uid, title, description, items):
    panels, x, y, row_h, pid = [], 0, 0, 0, 1
    for it in items:
        if "row" in it:
            if x:
                y, x = y + row_h, 0
            panels.append({"id": pid, "type": "row", "title": it["row"], "collapsed": False,
                           "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
            pid, y, row_h = pid + 1, y + 1, 0
            continue
        if x + it["w"] > 24:
            y, x, row_h = y + row_h, 0, 0
        panels.append(grafana_panel(it, pid, x, y))
        pid, x, row_h = pid + 1, x + it["w"], max(row_h, it["h"])
    return {
        "uid": f"m4watch-{uid}", "title": title, "description": description,
        "tags": ["m4watch"], "schemaVersion": 39, "version": 1, "editable": True,
        "refresh": "5s", "time": {"from": "now-1h", "to": "now"}, "timezone": "browser",
        "graphTooltip": 1,
        "links": [{"type": "dashboards", "tags": ["m4watch"], "asDropdown": True, "title": "m4watch"}],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            {"name": "instance", "label": "Host", "type": "query",
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(m4watch_build_info, instance)", "refId": "instance"},
             "definition": "label_values(m4watch_build_info, instance)",
             "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*", "current": {}, "hide": 0},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for uid, (title, description, items) in DASHBOARDS.items():
        text = json.dumps(dashboard(uid, title, description, items), indent=2) + "\n"
        path = OUT / f"{uid}.json"
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("stale dashboards (run scripts/gen-dashboards.py):", *stale, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
