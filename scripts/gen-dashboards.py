#!/usr/bin/env python3
"""Generates the Grafana dashboards in grafana-dashboards/ from the panel lists below.

    scripts/gen-dashboards.py              write the JSON files
    scripts/gen-dashboards.py --check      exit 1 if a committed file differs (scripts/test.sh)
    scripts/gen-dashboards.py --not-shown  print NOT_SHOWN as JSON (tests/stack.rs reads it)

What it derives instead of repeating, so nothing drifts:
- alert thresholds: every rule in alert-rules/*.rules.yml and prometheus/stack.rules.yml
  is parsed; a panel names the rules it draws (`alerts=`) and gets each rule's threshold
  (a threshold step, a value mapping for a state, or the objective series the rule
  compares against) in the rule's severity colour. Generation fails when a rule is drawn
  on no panel, or on a panel whose queries do not use the rule's metrics.
- rule links: every rule's `dashboard_url` must name the first dashboard after the
  overview that draws it, and its `runbook_url` its runbooks section (check_rule_links).
- job selectors and min intervals: prometheus/prometheus.yml's two m4watch jobs. The
  fast job collects some collectors (`collect[]`; their families come from the README's
  metrics reference, whose headings name each section's collector), the slow one the
  rest (`exclude[]`). A family of the fast job's collectors is selected with
  `job=~"$job|$job-trading"`: in `<job>-trading` with the shipped two jobs, in `<job>`
  when one job scrapes everything (how most users add a target), so one dashboard
  works for both; every other family with `job=~"$job"`. A panel whose every query
  reads only the fast job's families sets that job's scrape interval as its min
  interval, every other panel inherits the datasource's `timeInterval`, which must be
  the slow job's scrape interval (checked here).

tests/stack.rs parses every query, checks its metric names against the catalogue and a
live scrape, checks that every exported family is on a panel or in NOT_SHOWN, that
every rule threshold is drawn, and runs every query against a real Prometheus at the
`$__rate_interval` Grafana computes for 1 h and 6 h ranges. scripts/check-dashboard-schema.py
type-checks the output against @grafana/schema.
"""
import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "grafana-dashboards"
RULE_FILES = sorted((ROOT / "alert-rules").glob("*.rules.yml")) + [ROOT / "prometheus/stack.rules.yml"]
DATASOURCE_FILE = OUT / "provisioning/datasources/prometheus.yml"
DS = {"type": "prometheus", "uid": "${datasource}"}

# m4watch's severity model, worst first (src/model/alert.rs), and the colour each
# severity's threshold is drawn in.
SEVERITIES = ["emergency", "critical", "warning", "info"]
SEVERITY_COLOR = {"emergency": "dark-red", "critical": "red", "warning": "orange", "info": "blue"}

# Families exported but deliberately on no panel, with the reason (tests/stack.rs checks
# that every catalogued family is on a panel or here, and that nothing here is shown).
NOT_SHOWN = {
    "m4watch_storage_fault_info": "absent while the data directory takes writes, so a panel of "
                                  "it is empty on a healthy stack; the Data directory writes "
                                  "panel shows the state, and the fault's writer and reason are "
                                  "in the M4watchStorageFailing runbook's checks",
    "m4watch_ntp_stratum": "the servers' stratum changes only when their own reference does; "
                           "a server that lost it stops answering validly, which the SNTP probe "
                           "panel's failed probes show",
    "m4watch_clock_tai_offset_seconds": "a constant (37 s since 2017) that changes only with a "
                                        "leap second, and absent unless a daemon sets it; for "
                                        "applications that convert to TAI, not for a panel",
    "m4watch_process_group_energy_joules_total": "macOS only (ri_energy_nj): the dashboards are "
                                                 "checked against a Linux stack, where it is "
                                                 "absent and a panel of it would be empty; "
                                                 "rate() of it is a group's average watts",
    "m4watch_trading_latency_window_observations": "the sample size behind a window's quantiles, "
                                                   "for rules that want enough of them; the "
                                                   "Measurements per second panel draws the rate",
    "m4watch_trading_latency_window_mean_seconds": "a mean hides the tail a desk watches: the "
                                                   "latency panels draw the windows' p95 and "
                                                   "p99.9 and the histogram's p99",
}


# --- the shipped Prometheus config -------------------------------------------------

def parse_duration(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", str(text))
    if not m:
        raise SystemExit(f"unsupported duration {text!r}")
    return int(m.group(1)) * units[m.group(2)]


def fmt_duration(seconds):
    return f"{seconds:g}s"


def collector_families():
    """collector -> the family names it serves (a histogram's `_bucket`, `_sum` and
    `_count` series too), from the README's metrics reference, which a unit test keeps
    equal to the catalogue (src/catalog.rs): each section heading names its collector."""
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- metrics-reference:start -->", "<!-- metrics-reference:end -->"
    ref = readme[readme.index(start):readme.index(end)]
    out, collector = {}, None
    for line in ref.splitlines():
        m = re.fullmatch(r"#### .* \(`collect\[\]=(\w+)`\)", line)
        if m:
            collector = m.group(1)
            out.setdefault(collector, set())
            continue
        m = re.match(r"\| `(\w+)` \| (\w+) \|", line)
        if m:
            name, kind = m.groups()
            out[collector].add(name)
            if kind in ("histogram", "summary"):
                out[collector].update(name + s for s in ("_bucket", "_sum", "_count"))
    assert out, "README.md: no metrics reference with collector headings"
    return out


COLLECTORS = collector_families()


def scrape_jobs():
    """The two m4watch jobs of prometheus.yml: (slow job, its interval), (fast job,
    its interval, the families it collects). The fast job names its collectors with
    `collect[]`, the slow one leaves exactly those out with `exclude[]`."""
    cfg = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())
    default = cfg["global"].get("scrape_interval", "1m")
    fast = slow = None
    for job in cfg["scrape_configs"]:
        params = job.get("params", {})
        interval = parse_duration(job.get("scrape_interval", default))
        if "collect[]" in params:
            fast = (job["job_name"], interval, sorted(params["collect[]"]))
        elif "exclude[]" in params:
            slow = (job["job_name"], interval, sorted(params["exclude[]"]))
    assert fast and slow and fast[2] == slow[2], \
        "prometheus.yml: expected a job with collect[] and one with exclude[] of the same collectors"
    unknown = [c for c in fast[2] if c not in COLLECTORS]
    assert not unknown, f"prometheus.yml: unknown collectors {unknown}; known: {sorted(COLLECTORS)}"
    suffix = fast[0][len(slow[0]):]
    assert fast[0].startswith(slow[0]) and suffix, \
        f"prometheus.yml: the fast job ({fast[0]}) must be named after the slow one ({slow[0]}) plus a suffix"
    families = set().union(*(COLLECTORS[c] for c in fast[2]))
    return slow, (fast[0], fast[1], families), suffix


(SLOW_JOB, SLOW_INTERVAL, _), (FAST_JOB, FAST_INTERVAL, FAST_FAMILIES), FAST_SUFFIX = scrape_jobs()
# The job selector of a family the fast job collects: with the shipped two jobs the
# family is in `<job>-trading`; with one job (no params, any name) it is in `<job>`.
FAST_JOBS = f"$job|$job{FAST_SUFFIX}"


def check_datasource_interval():
    ds = yaml.safe_load(DATASOURCE_FILE.read_text())["datasources"][0]
    got = parse_duration(ds["jsonData"]["timeInterval"])
    if got != SLOW_INTERVAL:
        raise SystemExit(f"{DATASOURCE_FILE}: timeInterval is {got}s but the slowest m4watch job "
                         f"({SLOW_JOB}) scrapes every {SLOW_INTERVAL}s: rate() windows would be empty")


# --- alert rules ---------------------------------------------------------------------

def _top_level(expr):
    """Yields (index, char) of expr outside brackets and quotes."""
    depth, quote = 0, None
    for i, c in enumerate(expr):
        if quote:
            if c == quote and expr[i - 1] != "\\":
                quote = None
        elif c in "\"'":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            yield i, c


def _split_and(expr):
    """The comparisons of `a > x and b < y` (each a condition) and of `a > x or b > y`
    (each an alternative with its own threshold)."""
    parts, start = [], 0
    for i, _ in _top_level(expr):
        for sep in (" and ", " or "):
            if expr[i:i + len(sep)] == sep and i >= start:
                parts.append(expr[start:i])
                start = i + len(sep)
    parts.append(expr[start:])
    return [p.strip() for p in parts]


def _strip_gate(expr):
    """`cond unless on () (gate)` -> `cond`: the right side of a top-level `unless` is when
    the rule stays silent (TradingThroughputLow outside market hours), no threshold."""
    for i, _ in _top_level(expr):
        if expr[i:i + 8] == " unless ":
            return expr[:i]
    return expr


def _comparison(expr):
    for i, c in _top_level(expr):
        two = expr[i:i + 2]
        if two in (">=", "<=", "==", "!="):
            return expr[:i].strip(), two, expr[i + 2:].strip()
        if c in "<>":
            return expr[:i].strip(), c, expr[i + 1:].strip()
    raise SystemExit(f"no comparison in rule expression {expr!r}")


def metrics_in(expr):
    """The metric names a PromQL expression selects (good enough for these files:
    names are m4watch_* or Prometheus' own `up`/`ALERTS`)."""
    text = re.sub(r'"[^"]*"', '""', expr)
    return set(re.findall(r"\b(m4watch_\w+|up|ALERTS)\b(?=\s*(?:\{|\[|\)|$|\s|/|\*|>|<|=|!))", text))


def _matchers(expr):
    return dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', expr))


# The always-firing dead-man's-switch alert (the shipped Watchdog rule) carries this
# label (src/model/alert.rs): it has no threshold to draw, and it is no problem, so the
# firing counts and tables leave it out by name (m4watch_alerts has no such label).
WATCHDOG_LABEL = "m4watch_watchdog"
WATCHDOG = "Watchdog"


def parse_rules():
    """{alertname: {"severity", "for", "conds": [cond]}}; a cond is one comparison of
    the rule's expression: lhs metrics, op, and either a literal value, a state label
    (`== 1` on a state set) or the series (with a factor) it is compared against."""
    rules = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for r in group["rules"]:
                if "alert" not in r or r.get("labels", {}).get(WATCHDOG_LABEL) == "true":
                    continue
                conds = []
                for part in _split_and(_strip_gate(" ".join(r["expr"].split()))):
                    part = re.sub(r"^on\s*\([^)]*\)\s*", "", part)
                    lhs, op, rhs = _comparison(part)
                    rhs = re.sub(r"^bool\s+", "", rhs)
                    rhs = re.sub(r"^(on|ignoring)\s*\([^)]*\)\s*(group_left|group_right)?\s*(\([^)]*\))?\s*", "", rhs)
                    cond = {"metrics": metrics_in(lhs), "op": op, "lhs": lhs}
                    matchers = _matchers(lhs)
                    if re.fullmatch(r"[0-9.]+", rhs):
                        cond["value"] = float(rhs)
                        state = [k for k in ("state", "status", "level") if k in matchers]
                        if op == "==" and cond["value"] == 1 and state:
                            cond["state"] = matchers[state[0]]
                    else:
                        m = re.fullmatch(r"([0-9.]+)\s*\*\s*(.+)", rhs)
                        factor, series = (float(m.group(1)), m.group(2)) if m else (1.0, rhs)
                        (name,) = metrics_in(series)
                        cond.update(series=name, factor=factor, series_matchers=_matchers(series),
                                    lhs_matchers=matchers)
                    conds.append(cond)
                rules[r["alert"]] = {"severity": r["labels"]["severity"], "for": r.get("for", "0s"),
                                     "expr": " ".join(r["expr"].split()), "conds": conds,
                                     "file": path.relative_to(ROOT).as_posix(),
                                     "annotations": r.get("annotations", {})}
    return rules


RULES = parse_rules()


# --- query helpers -------------------------------------------------------------------

# Families without the container's name label (the Docker collector's own health).
UNNAMED_CONTAINER_FAMILIES = {"m4watch_container_stats_streams", "m4watch_container_stats_fallbacks_total"}


def s(metric, **matchers):
    """A selector of `metric` for the dashboard's variables: the job holding the family
    (prometheus.yml splits them), the host and, for containers, the container; then
    `label="value"` matchers (`label="!value"` for `!=`, `label="~regex"` for `=~`)."""
    job = FAST_JOBS if metric in FAST_FAMILIES else "$job"
    parts = [f'job=~"{job}"', 'instance=~"$instance"']
    if metric.startswith("m4watch_container_") and metric not in UNNAMED_CONTAINER_FAMILIES:
        parts.append('name=~"$container"')
    for label, value in matchers.items():
        op, value = {"!": ("!=", value[1:]), "~": ("=~", value[1:])}.get(value[:1], ("=", value))
        parts.append(f'{label}{op}"{value}"')
    return f'{metric}{{{", ".join(parts)}}}'


def q(expr, legend="", **opts):
    return {"expr": expr, "legend": legend, **opts}


def state_ordinal(metric, label, states, by):
    """One series per `by` whose value is the index of the current state of a state set
    (value mappings turn it back into the state's name)."""
    alts = " or ".join(f"({s(metric, **{label: st})} == 1) * {i}" for i, st in enumerate(states))
    return f"max by ({by}) ({alts})"


def panel(kind, title, queries, unit, desc, *, w=12, h=8, alerts=(), min=None, max=None,
          mappings=None, thresholds=None, legend="table", stack=False, decimals=None,
          overrides=None, transformations=None, options=None, custom=None):
    assert desc, f"{title}: every panel says what it shows and what to do"
    return {"kind": kind, "title": title, "queries": queries, "unit": unit, "desc": desc,
            "w": w, "h": h, "alerts": list(alerts), "min": min, "max": max, "mappings": mappings,
            "thresholds": thresholds, "legend": legend, "stack": stack, "decimals": decimals,
            "overrides": overrides or [], "transformations": transformations, "options": options or {},
            "custom": custom or {}}


def ts(*a, **k):
    return panel("timeseries", *a, **k)


def stat(*a, **k):
    k.setdefault("w", 4)
    k.setdefault("h", 4)
    return panel("stat", *a, **k)


def gauge(*a, **k):
    k.setdefault("w", 4)
    k.setdefault("h", 5)
    return panel("gauge", *a, **k)


def bars(*a, **k):
    return panel("bargauge", *a, **k)


def table(*a, **k):
    return panel("table", *a, **k)


def timeline(*a, **k):
    return panel("state-timeline", *a, **k)


def heatmap(*a, **k):
    return panel("heatmap", *a, **k)


def row(title, collapsed=True):
    return {"row": title, "collapsed": collapsed}


def instant(expr, legend="", fmt="time_series"):
    return q(expr, legend, instant=True, format=fmt)


RATIO = {"min": 0, "max": 1}
UP_DOWN = {0: ("down", "red"), 1: ("up", "green")}
OK_FAILING = {0: ("failing", "red"), 1: ("ok", "green")}
PRESENT_MISSING = {0: ("missing", "red"), 1: ("present", "green")}
THERMAL = ["nominal", "fair", "serious", "critical"]
THERMAL_MAP = {0: ("nominal", "green"), 1: ("fair", "yellow"), 2: ("serious", "orange"), 3: ("critical", "red")}
MEMORY_LEVELS = ["normal", "warn", "critical"]
MEMORY_LEVEL_MAP = {0: ("normal", "green"), 1: ("warn", "orange"), 2: ("critical", "red")}
SYNCED = {0: ("unsynchronised", "red"), 1: ("synchronised", "green")}
READ_ONLY = {0: ("writable", "green"), 1: ("read-only", "blue")}
FS_ERROR = {0: ("answering", "green"), 1: ("not answering", "red")}
HEALTH = ["healthy", "starting", "unhealthy", "none"]
HEALTH_MAP = {0: ("healthy", "green"), 1: ("starting", "blue"), 2: ("unhealthy", "orange"), 3: ("no healthcheck", "text")}
SEVERITY_TEXT_MAP = {sev: (sev, SEVERITY_COLOR[sev]) for sev in SEVERITIES}
# Columns Grafana's table would otherwise show for every instant query.
HIDE = {"Time": True, "__name__": True, "job": True}

MEM_USED = f'{s("m4watch_memory_used_bytes")} / {s("m4watch_memory_total_bytes")}'
MEM_AVAILABLE = f'{s("m4watch_memory_available_bytes")} / {s("m4watch_memory_total_bytes")}'
FS_USED = f'1 - {s("m4watch_filesystem_avail_bytes")} / {s("m4watch_filesystem_size_bytes")}'
P_CLUSTER = s("m4watch_cpu_cluster_utilization_ratio", type="performance")
E_CLUSTER = s("m4watch_cpu_cluster_utilization_ratio", type="efficiency")
CONTAINER_CPU = f'sum by (instance, name) (rate({s("m4watch_container_cpu_usage_seconds_total")}[$__rate_interval]))'
CONTAINER_MEM_RATIO = f'{s("m4watch_container_memory_working_set_bytes")} / {s("m4watch_container_memory_limit_bytes")}'
OPS = ["order_execution", "market_data", "risk_calculation", "ml_inference"]
OP_RULES = {"order_execution": "OrderExecutionLatencyHigh", "market_data": "MarketDataLatencyHigh",
            "risk_calculation": "RiskCalculationLatencyHigh", "ml_inference": "MlInferenceLatencyHigh"}


def error_ratio(op):
    """Failed operations' share per operation (`op` a value or `~regex`)."""
    ops = "m4watch_trading_operations_total"
    return (f'sum by (operation) (rate({s(ops, operation=op, outcome="error")}[$__rate_interval])) '
            f'/ sum by (operation) (rate({s(ops, operation=op)}[$__rate_interval]))')


def rates(*series):
    """One per-second rate query per (counter, legend) pair."""
    return [q(f'rate({s(metric)}[$__rate_interval])', legend) for metric, legend in series]


def p95(op):
    return s("m4watch_trading_latency_quantile_seconds", operation=op, window="1m", quantile="0.95")


def firing_by_severity(w=6):
    return stat("Firing alerts by severity",
                [instant(f'sum({s("m4watch_alerts", state="firing", severity=sev, alertname="!" + WATCHDOG)}) or vector(0)', sev)
                 for sev in SEVERITIES], "none",
                "Alerts firing now per severity, worst first (info < warning < critical < emergency, the "
                "order Slack colours, PagerDuty levels and health follow), the always-firing Watchdog "
                "left out. Anything above 0: open the Alerts dashboard's firing table for the rule "
                "and its runbook text.",
                w=w, thresholds=[("green", None), ("red", 1)], options={"textMode": "value_and_name"})


def firing_table(w=12):
    return table("Firing alerts",
                 [instant(f'{s("m4watch_alerts", state="firing", alertname="!" + WATCHDOG)} > 0', fmt="table")], "none",
                 "Every alert m4watch has firing now (its rule engine, every second), with severity and "
                 "host, but the Watchdog (it always fires, on purpose: the dead-man's switch). The "
                 "notification for each went to the configured receivers; acknowledge or silence "
                 "through the API. Empty means nothing fires.",
                 w=w, mappings={"severity": SEVERITY_TEXT_MAP},
                 transformations=[organize(HIDE | {"state": True, "Value": True})])


def organize(exclude, rename=None):
    return {"id": "organize", "options": {"excludeByName": exclude, "indexByName": {}, "renameByName": rename or {}}}


def objective_queries(op):
    """The series a latency rule compares against (its objective), drawn as a dashed line."""
    out = []
    for cond in RULES[OP_RULES[op]]["conds"]:
        if "series" in cond:
            factor = "" if cond["factor"] == 1 else f'{cond["factor"]:g} * '
            out.append(q(factor + s(cond["series"], **cond["series_matchers"]), "alert threshold"))
    return out


def limit_override(regex):
    return {"matcher": {"id": "byRegexp", "options": regex},
            "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                           {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
                           {"id": "custom.fillOpacity", "value": 0}]}


DASHBOARDS = {
    "overview": ("m4watch / Overview", "Headlines of one trading host: score, firing alerts, CPU by core type, GPU, Neural Engine, memory, containers.", [
        row("Quick look", collapsed=False),
        gauge("Performance score", [instant(s("m4watch_performance_score"), "{{instance}}")], "none",
              "Weighted trading score 0..100 (latency 40%, risk 20%, ML 20%, throughput 20%) over the "
              "components with data. Below the line: open the Trading dashboard's component scores "
              "to see which part degraded.", min=0, max=100, alerts=["PerformanceScoreLow"]),
        gauge("Performance cores", [instant(P_CLUSTER, "{{instance}}")], "percentunit",
              "Busy share of the performance-core cluster now. Orange and red are the paging "
              "thresholds: move batch work to the efficiency cores before order execution queues.",
              **RATIO, alerts=["PerformanceCoresBusy", "PerformanceCoresSaturated", "ThermalEmergency"]),
        gauge("GPU", [instant(s("m4watch_gpu_utilization_ratio"), "{{instance}}")], "percentunit",
              "GPU busy share now. Sustained above the line slows GPU model inference: find the job "
              "holding the GPU.", **RATIO, alerts=["GpuBusy"]),
        gauge("Neural Engine (estimate)", [instant(s("m4watch_ane_utilization_estimate_ratio"), "{{instance}}")],
              "percentunit", "Neural Engine utilisation estimated from its power (no public API "
              "measures it). Near the red line, confirm with ML inference latency before shedding "
              "model load.", **RATIO, alerts=["NeuralEngineBusy", "NeuralEngineSaturated"]),
        gauge("Memory used", [instant(MEM_USED, "{{instance}}")], "percentunit",
              "Share of physical memory in use now. Past the lines the host compresses and swaps, "
              "which adds milliseconds to every trading path: find the largest containers.",
              **RATIO, alerts=["MemoryUsedHigh", "MemoryUsedCritical"]),
        stat("Thermal pressure", [instant(state_ordinal("m4watch_thermal_pressure", "state", THERMAL, "instance"), "{{instance}}")],
             "none", "macOS thermal pressure now. Serious and critical mean the CPU and GPU are "
             "throttled: check airflow and fans, reduce sustained load.",
             mappings=THERMAL_MAP, alerts=["ThermalPressureSerious", "ThermalPressureCritical", "ThermalEmergency"]),
        firing_by_severity(w=8),
        stat("Collectors failing", [instant(f'count({s("m4watch_collector_success")} == 0) or vector(0)', "failing")],
             "none", "Collectors whose last run failed. A failing collector's metrics are missing and "
             "its alerts cannot fire: /api/v1/monitoring/health names the error.",
             thresholds=[("green", None), ("red", 1)]),
        stat("Containers down", [instant(f'count({s("m4watch_container_up")} == 0) or vector(0)', "down")],
             "none", "Watched containers not running. Check `docker ps -a` and the container's logs.",
             thresholds=[("green", None), ("red", 1)]),
        stat("Probes failing", [instant(f'count({s("m4watch_probe_success")} == 0) or vector(0)', "failing")],
             "none", "Trading-engine health endpoints that did not answer 2xx in time on their last "
             "probe. See the Containers dashboard's probe panels for which.",
             thresholds=[("green", None), ("red", 1)]),
        stat("Active recommendations", [instant(f'sum({s("m4watch_recommendations")})', "active")],
             "none", "Changes m4watch advises (core placement, memory limits, throttling); "
             "GET /api/v1/monitoring/performance/optimizations lists them with evidence and action.",
             thresholds=[("green", None), ("orange", 1)]),
        row("Trends", collapsed=False),
        ts("CPU by core type", [q(s("m4watch_cpu_cluster_utilization_ratio"), "{{instance}} {{type}}")], "percentunit",
           "Busy share of the performance and efficiency clusters. Performance high while efficiency "
           "idles means work is placed badly; both high means the host is short of CPU.",
           **RATIO, alerts=["PerformanceCoresBusy", "PerformanceCoresSaturated", "ThermalEmergency"]),
        ts("Memory used", [q(MEM_USED, "{{instance}}")], "percentunit",
           "Share of physical memory in use, with the warning and critical lines. A steady climb "
           "is a leak: compare with the Containers dashboard's working sets.",
           **RATIO, alerts=["MemoryUsedHigh", "MemoryUsedCritical"]),
        row("Now", collapsed=False),
        firing_table(w=12),
        bars("Top containers by CPU", [instant(f"topk(10, {CONTAINER_CPU})", "{{name}}")], "percentunit",
             "The ten containers using most CPU now (100% = one core). A latency-critical engine "
             "near its limit gets throttled: see the Containers dashboard's throttling panel.", min=0, w=6),
        bars("Top containers by working set",
             [instant(f'topk(10, {s("m4watch_container_memory_working_set_bytes")})', "{{name}}")], "bytes",
             "The ten containers with the largest working set now (what the OOM killer looks at).", min=0, w=6),
        bars("Recommendations by kind", [instant(s("m4watch_recommendations"), "{{kind}}")], "none",
             "Active recommendations per kind; a kind whose inputs are unknown (a replayed recording, "
             "macOS placement) is absent. GET /api/v1/monitoring/performance/optimizations gives the "
             "evidence and the action for each.", min=0, w=24, h=6, thresholds=[("green", None), ("orange", 1)]),
    ]),
    "hardware": ("m4watch / M4 Max hardware", "Per-core load by core type, frequencies, GPU, Neural Engine, power, temperatures, thermal and memory pressure, the network stack's market-data loss signal, and the host's clock, disks and filesystems.", [
        row("Quick look", collapsed=False),
        gauge("Performance cores", [instant(P_CLUSTER, "{{instance}}")], "percentunit",
              "Busy share of the performance-core cluster now, with the warning and critical lines.",
              **RATIO, alerts=["PerformanceCoresBusy", "PerformanceCoresSaturated", "ThermalEmergency"]),
        gauge("Efficiency cores", [instant(E_CLUSTER, "{{instance}}")], "percentunit",
              "Busy share of the efficiency-core cluster now; batch work belongs here. No rule pages on it.",
              **RATIO, thresholds=[("green", None), ("orange", 0.9)]),
        gauge("GPU", [instant(s("m4watch_gpu_utilization_ratio"), "{{instance}}")], "percentunit",
              "GPU busy share now, with the GpuBusy line.", **RATIO, alerts=["GpuBusy"]),
        gauge("Neural Engine (estimate)", [instant(s("m4watch_ane_utilization_estimate_ratio"), "{{instance}}")],
              "percentunit", "Neural Engine utilisation estimated from power, with the busy and saturated lines.",
              **RATIO, alerts=["NeuralEngineBusy", "NeuralEngineSaturated"]),
        gauge("Memory used", [instant(MEM_USED, "{{instance}}")], "percentunit",
              "Share of physical memory in use now, with the warning and critical lines.",
              **RATIO, alerts=["MemoryUsedHigh", "MemoryUsedCritical"]),
        stat("Thermal pressure", [instant(state_ordinal("m4watch_thermal_pressure", "state", THERMAL, "instance"), "{{instance}}")],
             "none", "macOS thermal pressure now; serious and critical alert.",
             mappings=THERMAL_MAP, alerts=["ThermalPressureSerious", "ThermalPressureCritical", "ThermalEmergency"]),
        table("Machine",
              [instant(s("m4watch_chip_info"), fmt="table"),
               instant(s("m4watch_memory_total_bytes"), fmt="table")],
              "none", "The chip, its core counts and installed memory, per host: the denominators of "
                      "every share on this dashboard.", w=12, h=5,
              transformations=[{"id": "merge", "options": {}},
                               organize(HIDE | {"Value #A": True}, {"Value #B": "memory"})],
              overrides=[{"matcher": {"id": "byName", "options": "memory"},
                          "properties": [{"id": "unit", "value": "bytes"}]}]),
        stat("Cores by type", [instant(s("m4watch_cpu_cores"), "{{type}}")], "none",
             "Logical CPUs per core type as the collector sees them (12 performance and 4 "
             "efficiency on an M4 Max 16-core).", w=6, h=5, options={"textMode": "value_and_name"}),
        stat("Fans", [instant(s("m4watch_fan_speed_rpm"), "{{fan}}")], "rotrpm",
             "Fan speeds now. Fans at full speed with thermal pressure rising: check airflow.",
             w=6, h=5, options={"textMode": "value_and_name"}),
        row("CPU", collapsed=False),
        ts("Performance cores, per core", [q(s("m4watch_cpu_utilization_ratio", type="performance"), "cpu {{cpu}}")],
           "percentunit", "Busy share of each performance core. One core pinned near 100% while the "
           "cluster is calm is a hot thread (order execution, a feed handler): check what runs on it.",
           **RATIO, alerts=["PerformanceCoreSaturated"]),
        ts("Efficiency cores, per core", [q(s("m4watch_cpu_utilization_ratio", type="efficiency"), "cpu {{cpu}}")],
           "percentunit", "Busy share of each efficiency core. Saturated efficiency cores with idle "
           "performance cores: background work is starved, or QoS pins it there.", **RATIO),
        heatmap("Per-core utilisation", [q(s("m4watch_cpu_utilization_ratio"), "{{type}} {{cpu}}")], "percentunit",
                "Every core as one row, darker when busier: hot spots and imbalance between cores "
                "at a glance.", w=24, **RATIO),
        ts("Cluster utilisation", [q(s("m4watch_cpu_cluster_utilization_ratio"), "{{type}}")], "percentunit",
           "Busy share per core type with the performance cluster's warning and critical lines.",
           **RATIO, alerts=["PerformanceCoresBusy", "PerformanceCoresSaturated", "ThermalEmergency"]),
        ts("CPU time by mode", [q(f'sum by (type, mode) (rate({s("m4watch_cpu_seconds_total", mode="!idle")}[$__rate_interval])'
                                  f' * on (instance, job, cpu) group_left (type) {s("m4watch_cpu_info")})',
                                  "{{type}} {{mode}}")], "percentunit",
           "CPU seconds per second by core type and mode (1 = one core busy). Much system time "
           "points at syscalls or interrupts rather than trading code.", min=0, stack=True),
        ts("Cluster frequency", [q(s("m4watch_cpu_cluster_frequency_hertz"), "{{cluster}}")], "hertz",
           "Average active frequency per cluster. A drop under load while thermal pressure rises is "
           "throttling.", min=0),
        ts("Per-core frequency", [q(s("m4watch_cpu_frequency_hertz"), "cpu {{cpu}} {{type}}")], "hertz",
           "Average active frequency per core; an idle core reads its lowest step.", min=0),
        ts("Active residency per core", [q(s("m4watch_cpu_active_ratio"), "cpu {{cpu}} {{type}}")], "percentunit",
           "Share of time each core spent in an active frequency state (IOReport). High residency "
           "with low utilisation means spinning or frequent short wakeups.", **RATIO),
        row("GPU and Neural Engine"),
        ts("GPU utilisation", [q(s("m4watch_gpu_utilization_ratio"), "GPU")], "percentunit",
           "GPU busy share with the GpuBusy line; sustained above it, GPU inference slows.",
           **RATIO, w=8, alerts=["GpuBusy"]),
        ts("GPU memory in use", [q(s("m4watch_gpu_memory_used_bytes"), "in use")], "bytes",
           "Unified memory the GPU driver holds. It comes out of the same RAM as everything else: "
           "compare with Memory used.", min=0, w=8),
        ts("GPU frequency", [q(s("m4watch_gpu_frequency_hertz"), "GPU")], "hertz",
           "Average GPU frequency while active; falling under load means throttling.", min=0, w=8),
        ts("Neural Engine utilisation (estimate)", [q(s("m4watch_ane_utilization_estimate_ratio"), "ANE estimate")],
           "percentunit", "ANE power over the configured maximum (no public API measures ANE "
           "utilisation), with the busy and saturated lines. Confirm with ML inference latency.",
           **RATIO, alerts=["NeuralEngineBusy", "NeuralEngineSaturated"]),
        ts("Neural Engine power", [q(s("m4watch_power_watts", rail="ane"), "ANE")], "watt",
           "Neural Engine power, the input of the estimate beside it.", min=0),
        row("Power and thermals"),
        ts("Power by rail", [q(s("m4watch_power_watts"), "{{rail}}"), q(s("m4watch_system_power_watts"), "system")], "watt",
           "Power per rail (cpu, gpu, ane, dram) and of the whole machine (system, which contains "
           "the rails). A rail rising without more work done is a runaway process or thermal trouble.", min=0),
        bars("Energy over the range by rail",
             [instant(f'increase({s("m4watch_energy_joules_total")}[$__range]) / 3600', "{{rail}}"),
              instant(f'increase({s("m4watch_system_energy_joules_total")}[$__range]) / 3600', "system")], "watth",
             "Energy each rail and the whole machine (system) used over the selected time range, in "
             "watt-hours.", min=0),
        ts("Temperatures", [q(s("m4watch_temperature_celsius"), "{{sensor}}")], "celsius",
           "Temperature per sensor. Rising temperatures precede thermal pressure.", min=0),
        timeline("Thermal pressure", [q(state_ordinal("m4watch_thermal_pressure", "state", THERMAL, "instance"), "{{instance}}")],
                 "none", "macOS thermal pressure over time: nominal, fair, serious (warning), critical "
                 "(critical; with saturated performance cores an emergency). Serious means throttling.",
                 mappings=THERMAL_MAP, alerts=["ThermalPressureSerious", "ThermalPressureCritical", "ThermalEmergency"]),
        ts("Fan speed", [q(s("m4watch_fan_speed_rpm"), "{{fan}}")], "rotrpm",
           "Fan speed per fan; fans at maximum with rising temperatures: check airflow.", min=0),
        row("Memory"),
        ts("Memory used", [q(MEM_USED, "used")], "percentunit",
           "Share of physical memory in use with the warning and critical lines.",
           **RATIO, alerts=["MemoryUsedHigh", "MemoryUsedCritical"]),
        ts("Memory available", [q(MEM_AVAILABLE, "available")], "percentunit",
           "Share of physical memory available. Below the line the kernel starts killing "
           "processes: stop non-essential services now.", **RATIO, alerts=["MemoryExhaustionImminent"]),
        ts("Memory by state", [q(s("m4watch_memory_partition_bytes"), "{{state}}"), q(s("m4watch_memory_total_bytes"), "total")],
           "bytes", "Memory by state (macOS: app, wired, compressed, cached, free; Linux: other, cached, "
           "free), stacked against the installed total. Growing compressed means memory is short.",
           min=0, stack=True),
        ts("Swap", [q(s("m4watch_memory_swap_used_bytes"), "used"), q(s("m4watch_memory_swap_total_bytes"), "total")],
           "bytes", "Swap in use against the swap space. Swap in use on a trading host means memory "
           "ran short; it stays used until the pages are touched again.", min=0),
        timeline("Memory pressure (macOS)",
                 [q(state_ordinal("m4watch_memory_pressure_level", "level", MEMORY_LEVELS, "instance"), "{{instance}}")],
                 "none", "The macOS kernel's memory pressure level. Warn for long: free memory before it "
                 "turns critical.", mappings=MEMORY_LEVEL_MAP),
        ts("Memory stall (Linux PSI)", [q(s("m4watch_memory_pressure_ratio"), "{{window}}")], "percentunit",
           "Share of time some task waited for memory (Linux pressure stall information). Any "
           "sustained value means memory is the bottleneck.", **RATIO),
        row("Host network: market-data loss", collapsed=False),
        ts("UDP receive-buffer drops in 5 min",
           [q(f'increase({s("m4watch_udp_receive_buffer_errors_total")}[5m])', "receive buffer full")], "none",
           "UDP datagrams the kernel dropped in a sliding 5 minutes because the receiving socket's "
           "buffer was full (Linux RcvbufErrors, macOS udps_fullsock); any warns "
           "(UdpReceiveBufferErrors). A feed handler is too slow or its SO_RCVBUF too small: the "
           "watched sockets beside name which.", min=0, w=8, alerts=["UdpReceiveBufferErrors"]),
        ts("Feed sockets: drops in 5 min",
           [q(f'increase({s("m4watch_udp_socket_drops_total")}[5m])', "{{local_address}}:{{port}}")], "none",
           "Datagrams dropped per watched UDP socket (host.udp_ports) in a sliding 5 minutes; any "
           "pages (UdpFeedSocketDropping): that feed lost market data. Linux only.",
           min=0, w=8, alerts=["UdpFeedSocketDropping"]),
        ts("Feed sockets: receive queue", [q(s("m4watch_udp_socket_receive_queue_bytes"), "{{local_address}}:{{port}}")],
           "bytes", "Bytes waiting unread per watched UDP socket. A queue that climbs toward the "
           "socket's buffer size comes before drops: the reader is falling behind. Linux only.",
           min=0, w=8),
        ts("UDP datagrams", rates(("m4watch_udp_datagrams_received_total", "received"), ("m4watch_udp_datagrams_sent_total", "sent")), "pps",
           "UDP datagrams per second the kernel delivered and sent (IPv4 and IPv6): the feed rate "
           "the drops beside are a share of.", min=0),
        ts("UDP errors", rates(("m4watch_udp_receive_errors_total", "receive errors (all)"),
                               ("m4watch_udp_send_buffer_errors_total", "send buffer full"),
                               ("m4watch_udp_no_port_errors_total", "no socket on port"),
                               ("m4watch_udp_checksum_errors_total", "bad checksum")), "pps",
           "UDP errors per second. No socket on port: a feed arrives where nothing listens (a "
           "handler down, a wrong port). Bad checksums point at a NIC or cable. Series the kernel "
           "does not count (macOS: receive errors, send buffer) are absent.", min=0),
        ts("TCP listen queue overflows in 5 min",
           [q(f'increase({s("m4watch_tcp_listen_overflows_total")}[5m])', "accept queue full"),
            q(f'increase({s("m4watch_tcp_listen_drops_total")}[5m])', "listen drops (all)")], "none",
           "Incoming connections dropped in a sliding 5 minutes because a listening socket's accept "
           "queue was full; any warns (TcpListenOverflows). A gateway accepts too slowly or its "
           "backlog is too small.", min=0, alerts=["TcpListenOverflows"]),
        ts("TCP retransmits and resets", rates(("m4watch_tcp_retransmitted_segments_total", "retransmitted"),
                                               ("m4watch_tcp_resets_sent_total", "resets sent"),
                                               ("m4watch_tcp_established_resets_total", "established resets")),
           "pps", "TCP segments retransmitted and resets per second. Retransmits rising with order "
           "latency mean a lossy path to the venue; resets, connections torn down.", min=0),
        row("Host network: interfaces"),
        ts("Interface traffic", rates(("m4watch_network_receive_bytes_total", "{{device}} in"), ("m4watch_network_transmit_bytes_total", "{{device}} out")),
           "Bps", "Bytes per second per interface and direction. Compare with the link speed beside: "
           "a feed link near its speed drops bursts.", min=0),
        ts("Interface packets", rates(("m4watch_network_receive_packets_total", "{{device}} in"), ("m4watch_network_transmit_packets_total", "{{device}} out")),
           "pps", "Packets per second per interface and direction; market data is many small "
           "packets, so this limits before bytes do.", min=0),
        ts("Interface errors in 5 min",
           [q(f'increase({s("m4watch_network_receive_errs_total")}[5m])', "{{device}} receive"),
            q(f'increase({s("m4watch_network_transmit_errs_total")}[5m])', "{{device}} transmit")], "none",
           "Driver-counted errors per interface over a sliding 5 minutes; errors for 5 minutes on "
           "end warn (NetworkInterfaceErrors): a cable, optic, port or duplex problem.",
           min=0, alerts=["NetworkInterfaceErrors"]),
        ts("Interface drops", rates(("m4watch_network_receive_drop_total", "{{device}} receive"), ("m4watch_network_transmit_drop_total", "{{device}} transmit")),
           "pps", "Packets per second an interface dropped before the protocol stack (ring buffer "
           "full, no memory) or in its send queue. Receive drops under a burst: enlarge the NIC "
           "ring or spread its interrupts.", min=0),
        timeline("Interface up", [q(s("m4watch_network_up"), "{{device}}")], "none",
                 "Whether each interface is up and running; absent where the kernel does not know "
                 "(loopback on Linux).", mappings=UP_DOWN),
        ts("Link speed", [q(s("m4watch_network_speed_bytes"), "{{device}}")], "Bps",
           "Negotiated link speed per interface, in bytes per second; absent for virtual "
           "interfaces. A feed link that renegotiated down (10G to 1G) shows here first.", min=0),
        row("Host clock"),
        timeline("Clock synchronised", [q(s("m4watch_clock_synchronized"), "{{instance}}")], "none",
                 "Whether the kernel counts the clock as synchronised by a time daemon. Unsynchronised "
                 "with the error bound beside at 16 s for 10 minutes pages (ClockNotSynchronised); "
                 "chrony without rtcsync leaves the flag unset while its error bound stays small. "
                 "Linux only.", mappings=SYNCED, alerts=["ClockNotSynchronised"]),
        ts("Clock offset", [q(f'abs({s("m4watch_clock_offset_seconds")})', "|offset|"),
                            q(f'abs({s("m4watch_ntp_offset_seconds")}) - {s("m4watch_ntp_round_trip_seconds")} / 2',
                              "{{server}} (SNTP, beyond half the round trip)")], "s",
           "How far the clock is from its reference, either way, with the 1 ms line "
           "(ClockOffsetHigh; MiFID II RTS 25 for algorithmic trading): the time daemon's last "
           "measurement through the kernel (Linux; 0 under chrony, which corrects the clock "
           "itself), and m4watch's SNTP probe of each server in host.clock.ntp_servers less half "
           "its round trip, the least the clock is certainly off (every OS; the only view on "
           "macOS). The rule fires on the probe when every server is past the line.",
           min=0, alerts=["ClockOffsetHigh"]),
        ts("SNTP probe", [q(s("m4watch_ntp_round_trip_seconds"), "{{server}} round trip"),
                          q(f'increase({s("m4watch_ntp_probe_failures_total")}[$__rate_interval])',
                            "{{server}} failed probes")], "s",
           "Round trip of the last SNTP exchange with each server of host.clock.ntp_servers (an "
           "offset is known to within half of it) and probes that got no valid reply (timeout, "
           "kiss-o'-death, unsynchronised server): a server that stops answering loses its "
           "offset series.", min=0),
        ts("Clock error bounds", [q(s("m4watch_clock_max_error_seconds"), "maximum error"),
                                  q(s("m4watch_clock_estimated_error_seconds"), "estimated error")], "s",
           "The kernel's bound on the clock's error (it grows 0.5 ms a second until a daemon resets "
           "it; at 16 s the clock counts as unsynchronised) and the daemon's estimate. Linux only.",
           min=0, alerts=["ClockNotSynchronised"]),
        ts("Clock frequency adjustment", [q(f'{s("m4watch_clock_frequency_adjustment_ratio")} * 1e6', "adjustment")], "ppm",
           "How much faster (above 0) or slower the kernel runs the clock to keep it in step, in "
           "parts per million. A steady value is the oscillator's drift; jumps follow temperature "
           "or a daemon restart. Linux only."),
        row("Host disks"),
        ts("Disk throughput", rates(("m4watch_disk_read_bytes_total", "{{device}} read"), ("m4watch_disk_written_bytes_total", "{{device}} write")),
           "Bps", "Bytes per second read from and written to each whole disk (partitions count in "
           "their disk). A recorder or journal writing hard shows here before the latency beside "
           "rises.", min=0),
        ts("Disk operations", rates(("m4watch_disk_reads_completed_total", "{{device}} reads"),
                                    ("m4watch_disk_writes_completed_total", "{{device}} writes"),
                                    ("m4watch_disk_discards_completed_total", "{{device}} discards"),
                                    ("m4watch_disk_flush_requests_total", "{{device}} flushes")),
           "iops", "Operations per second per disk. Flushes are fsyncs reaching the device, each one "
           "a wait for a writer (a database commit, a journal). Discards and flushes are Linux only "
           "(4.18 and 5.5 on).", min=0),
        ts("Disk latency per operation",
           [q(f'rate({s("m4watch_disk_read_time_seconds_total")}[$__rate_interval]) / rate({s("m4watch_disk_reads_completed_total")}[$__rate_interval])', "{{device}} read"),
            q(f'rate({s("m4watch_disk_write_time_seconds_total")}[$__rate_interval]) / rate({s("m4watch_disk_writes_completed_total")}[$__rate_interval])', "{{device}} write")],
           "s", "Average time one read or write took, queueing included. Gaps are periods without "
           "I/O. Rising write latency stalls whatever fsyncs (order journals, SQLite).", min=0),
        ts("Disk busy", [q(f'rate({s("m4watch_disk_io_time_seconds_total")}[$__rate_interval])', "{{device}}")], "percentunit",
           "Share of time each disk had I/O in flight. Near 100% a disk that serves one request at "
           "a time is saturated (an NVMe drive with deep queues may not be). Linux only.", **RATIO),
        ts("Disk queue length", [q(f'rate({s("m4watch_disk_io_time_weighted_seconds_total")}[$__rate_interval])', "{{device}}")], "none",
           "Average requests queued or in service per disk (node-mixin's disk saturation). Above "
           "the disk's parallelism requests wait. Linux only.", min=0),
        row("Host filesystems"),
        ts("Filesystem space used", [q(FS_USED, "{{mountpoint}}")], "percentunit",
           "Share of each filesystem's space in use (as df counts it: space only root may use "
           "counts as used), with the 90% line (FilesystemAlmostFull, not for read-only mounts).",
           **RATIO, alerts=["FilesystemAlmostFull"]),
        ts("Filesystem space available, now and in 4 h",
           [q(s("m4watch_filesystem_avail_bytes"), "{{mountpoint}} now"),
            q(f'predict_linear({s("m4watch_filesystem_avail_bytes")}[15m], 4 * 3600)', "{{mountpoint}} in 4 h"),
            q(f'0.25 * {s("m4watch_filesystem_size_bytes")}', "{{mountpoint}} quarter of size")],
           "bytes", "Space still writable per filesystem, and where the trend of the last 15 minutes "
           "puts it in 4 hours. Predicted below 0 for 15 minutes while less than a quarter of the "
           "size (the dashed series) is left pages (FilesystemFillingUp).", alerts=["FilesystemFillingUp"],
           overrides=[limit_override("/quarter of size$/")]),
        ts("Filesystem size and free space", [q(s("m4watch_filesystem_size_bytes"), "{{mountpoint}} size"),
                                              q(s("m4watch_filesystem_free_bytes"), "{{mountpoint}} free")],
           "bytes", "Size and free space (the root-reserved blocks included) per filesystem; free "
           "minus available beside is the reserve.", min=0),
        ts("Filesystem inodes free", [q(f'{s("m4watch_filesystem_files_free")} / {s("m4watch_filesystem_files")}', "{{mountpoint}}")],
           "percentunit", "Share of each filesystem's inodes (file slots) still free. At 0 no file "
           "can be created however much space is left: many small files (a capture split per "
           "second) exhaust them. Absent where the filesystem has no fixed count.", **RATIO),
        timeline("Filesystem read-only", [q(s("m4watch_filesystem_readonly"), "{{mountpoint}}")], "none",
                 "Whether each filesystem is mounted read-only. The space alerts watch writable "
                 "filesystems only (coloured as the alerts). A data filesystem turning read-only is "
                 "the kernel's answer to I/O errors: check the disk.", mappings=READ_ONLY,
                 alerts=["FilesystemAlmostFull", "FilesystemFillingUp"]),
        timeline("Filesystem not answering", [q(s("m4watch_filesystem_device_error"), "{{mountpoint}}")], "none",
                 "Filesystems whose size could not be read: statvfs failed, or did not answer within "
                 "host.filesystems.stat_timeout (a dead NFS server). Their other series are absent "
                 "meanwhile.", mappings=FS_ERROR),
        row("Trading processes", collapsed=False),
        timeline("Process groups running", [q(s("m4watch_process_group_up"), "{{group}}")], "none",
                 "Whether each watched process group (processes.groups) has a process running; "
                 "down for 30 s pages (TradingProcessGroupDown): restart it and read its log.",
                 mappings=UP_DOWN, alerts=["TradingProcessGroupDown"]),
        ts("Processes per group", [q(s("m4watch_process_group_processes"), "{{group}}")], "none",
           "Processes each group matches. A count that changes when nothing was deployed is a "
           "crash loop or a runaway fork.", min=0, decimals=0),
        ts("CPU per group", [q(f'sum by (instance, group, mode) (rate({s("m4watch_process_group_cpu_seconds_total")}[$__rate_interval]))',
                               "{{group}} {{mode}}")], "percentunit",
           "CPU each group uses, in cores (100% is one core), by mode. The efficiency-core rule only "
           "looks at groups above its line (5% of a core): an idle group's share means nothing.",
           min=0, stack=True, alerts=["TradingProcessOnEfficiencyCores"]),
        ts("Share of CPU on efficiency cores",
           [q(f'sum by (instance, group) (rate({s("m4watch_process_group_core_type_cpu_seconds_total", type="efficiency")}[$__rate_interval])) '
              f'/ sum by (instance, group) (rate({s("m4watch_process_group_core_type_cpu_seconds_total")}[$__rate_interval]))',
              "{{group}}")], "percentunit",
           "Share of each group's CPU time that ran on efficiency cores. Above the line for 5 minutes "
           "warns (TradingProcessOnEfficiencyCores): raise its threads' QoS (macOS) or pin it to the "
           "performance cores (Linux). macOS measures it; Linux samples each thread's last CPU each "
           "collection (method label); on a machine with one core type it is 0.",
           **RATIO, alerts=["TradingProcessOnEfficiencyCores"]),
        ts("Waiting for a core", [q(f'sum by (instance, group) (rate({s("m4watch_process_group_scheduling_delay_seconds_total")}[$__rate_interval]))',
                                    "{{group}}")], "s",
           "Seconds per second each group's threads were runnable but waited for a core, summed over "
           "its threads (Linux run delay, macOS runnable time). Any sustained value is latency the "
           "process feels directly: the host is short of cores, or the group is pinned too tightly.",
           min=0),
        ts("Context switches", [q(f'sum by (instance, group, kind) (rate({s("m4watch_process_group_context_switches_total")}[$__rate_interval]))',
                                  "{{group}} {{kind}}")], "ops",
           "Context switches per second per group. Involuntary switches are preemptions: a "
           "latency-critical thread should see almost none. Linux only.", min=0),
        ts("Resident memory per group", [q(s("m4watch_process_group_resident_memory_bytes"), "{{group}}")], "bytes",
           "Resident memory of each group's processes. Steady growth is a leak; compare with the "
           "host's memory panels above.", min=0),
        ts("Threads and open files", [q(s("m4watch_process_group_threads"), "{{group}} threads"),
                                      q(s("m4watch_process_group_open_fds"), "{{group}} open fds")], "none",
           "Threads and open file descriptors per group. Descriptors climbing toward the process's "
           "limit (ulimit -n) end in failed connects and accepts.", min=0),
        stat("Oldest process started", [instant(f'time() - {s("m4watch_process_group_oldest_start_time_seconds")}', "{{group}}")], "s",
             "How long the longest-running process of each group has run. A short time that keeps "
             "resetting is a group that restarts.", w=12, thresholds=[("blue", None)]),
    ]),
    "containers": ("m4watch / Containers", "Docker containers of the trading stack and the trading engines' health probes.", [
        row("Quick look", collapsed=False),
        stat("Containers running", [instant(f'sum({s("m4watch_container_up")})', "running")], "none",
             "Watched containers running now.", thresholds=[("blue", None)]),
        stat("Containers down", [instant(f'count({s("m4watch_container_up")} == 0) or vector(0)', "down")], "none",
             "Watched containers not running; ContainerDown pages after 30 s.", thresholds=[("green", None), ("red", 1)]),
        stat("Restarts in 10 min", [instant(f'sum(increase({s("m4watch_container_restarts_total")}[10m]))', "restarts")],
             "none", "Container restarts over the last 10 minutes, all containers. Three of one "
             "container is a crash loop (ContainerRestarting).", thresholds=[("green", None), ("orange", 1)]),
        stat("OOM kills in 5 min", [instant(f'sum(increase({s("m4watch_container_oom_kills_total")}[5m]))', "OOM kills")],
             "none", "Kernel OOM kills of containers over the last 5 minutes: raise the limit or find the leak.",
             thresholds=[("green", None), ("red", 1)]),
        stat("Probes failing", [instant(f'count({s("m4watch_probe_success")} == 0) or vector(0)', "failing")], "none",
             "Engine health endpoints failing their last probe.", thresholds=[("green", None), ("red", 1)]),
        table("Docker Engine", [instant(s("m4watch_docker_info"), fmt="table")], "none",
              "The Engine m4watch watches: version, CPUs and memory (on a Mac, Docker Desktop's VM, "
              "not the Mac).", w=4, h=4, transformations=[organize(HIDE | {"Value": True, "instance": True})]),
        table("Containers",
              [instant(s("m4watch_container_info"), fmt="table"),
               instant(s("m4watch_container_up"), fmt="table"),
               instant(f'time() - {s("m4watch_container_start_time_seconds")}', fmt="table"),
               instant(f'increase({s("m4watch_container_restarts_total")}[10m])', fmt="table"),
               instant(s("m4watch_container_last_exit_code"), fmt="table")],
              "none", "Every watched container: image, cpuset, restart policy, whether it runs, since "
              "when, restarts in the last 10 minutes and its last exit code. A latency-critical "
              "container without a cpuset can land on efficiency cores.", w=24, h=7,
              mappings={"Value #B": UP_DOWN},
              transformations=[{"id": "merge", "options": {}},
                               organize(HIDE | {"Value #A": True, "compose_project": True, "compose_service": True},
                                        {"Value #B": "up", "Value #C": "uptime", "Value #D": "restarts (10m)",
                                         "Value #E": "last exit code"})],
              overrides=[{"matcher": {"id": "byName", "options": "uptime"}, "properties": [{"id": "unit", "value": "dtdurations"}]},
                         {"matcher": {"id": "byName", "options": "up"},
                          "properties": [{"id": "custom.cellOptions", "value": {"type": "color-background"}}]}]),
        row("CPU", collapsed=False),
        ts("CPU", [q(CONTAINER_CPU, "{{name}}"),
                   q(s("m4watch_container_cpu_limit_cores"), "{{name}} limit")], "percentunit",
           "CPU used per container (100% = one core) and its CPU limit (dashed). Near the limit "
           "the container is throttled: raise the limit or pin it to dedicated cores.", min=0,
           overrides=[limit_override("/ limit$/")]),
        ts("CPU throttling", [q(f'rate({s("m4watch_container_cpu_throttled_seconds_total")}[$__rate_interval])', "{{name}}")],
           "s", "Seconds per second the CPU quota held each container back. Above the line for "
           "5 minutes pages (ContainerCpuThrottled); any throttling adds latency to an engine.",
           min=0, alerts=["ContainerCpuThrottled"]),
        row("Memory", collapsed=False),
        ts("Working set of the limit", [q(CONTAINER_MEM_RATIO, "{{name}}")], "percentunit",
           "Working set over memory limit per container. At 100% the kernel OOM-kills it; the line "
           "is ContainerMemoryNearLimit.", min=0, max=1, alerts=["ContainerMemoryNearLimit"]),
        ts("Memory", [q(s("m4watch_container_memory_working_set_bytes"), "{{name}} working set"),
                      q(s("m4watch_container_memory_usage_bytes"), "{{name}} usage"),
                      q(s("m4watch_container_memory_limit_bytes"), "{{name}} limit")], "bytes",
           "Working set (what the OOM killer counts), usage with page cache, and the limit (dashed).",
           min=0, overrides=[limit_override("/ limit$/")]),
        row("Network, disk and processes"),
        ts("Network receive", [q(f'sum by (name) (rate({s("m4watch_container_network_receive_bytes_total")}[$__rate_interval]))', "{{name}}")],
           "Bps", "Bytes per second received per container; a feed handler's receive rate is the market's pace.", min=0, w=8),
        ts("Network transmit", [q(f'sum by (name) (rate({s("m4watch_container_network_transmit_bytes_total")}[$__rate_interval]))', "{{name}}")],
           "Bps", "Bytes per second sent per container.", min=0, w=8),
        ts("Processes and threads", [q(s("m4watch_container_pids"), "{{name}}")], "none",
           "Processes and threads per container; steady growth is a thread leak.", min=0, w=8),
        ts("Block I/O read", [q(f'rate({s("m4watch_container_blkio_read_bytes_total")}[$__rate_interval])', "{{name}}")],
           "Bps", "Bytes per second read from block devices per container.", min=0),
        ts("Block I/O write", [q(f'rate({s("m4watch_container_blkio_write_bytes_total")}[$__rate_interval])', "{{name}}")],
           "Bps", "Bytes per second written per container; a trading engine writing heavily is "
           "logging too much.", min=0),
        row("Lifecycle", collapsed=False),
        timeline("Running", [q(s("m4watch_container_up"), "{{name}}")], "none",
                 "Whether each container runs. Down for 30 s pages (ContainerDown): `docker logs` "
                 "says why it stopped.", mappings=UP_DOWN, alerts=["ContainerDown"]),
        timeline("Health", [q(state_ordinal("m4watch_container_health_status", "status", HEALTH, "instance, name"), "{{name}}")],
                 "none", "Docker HEALTHCHECK state per container. Unhealthy for 30 s warns "
                 "(ContainerUnhealthy); `docker inspect` shows the check's output.",
                 mappings=HEALTH_MAP, alerts=["ContainerUnhealthy"]),
        ts("Restarts in 10 min", [q(f'increase({s("m4watch_container_restarts_total")}[10m])', "{{name}}")], "none",
           "Restarts per container over a sliding 10 minutes. Three is a crash loop "
           "(ContainerRestarting): read its logs before the restart policy hides the cause.",
           min=0, alerts=["ContainerRestarting"]),
        ts("OOM kills in 5 min", [q(f'increase({s("m4watch_container_oom_kills_total")}[5m])', "{{name}}")], "none",
           "Kernel OOM kills per container over a sliding 5 minutes; any pages (ContainerOomKilled).",
           min=0, alerts=["ContainerOomKilled"]),
        ts("Failing healthcheck streak", [q(s("m4watch_container_health_failing_streak"), "{{name}}")], "none",
           "Consecutive failed HEALTHCHECK runs; Docker marks the container unhealthy at its retries.", min=0),
        timeline("Expected containers", [q(s("m4watch_container_expected_present"), "{{expected}}")], "none",
                 "Whether a running container matches each containers.expected entry (a name or "
                 "labels). Missing for 30 s pages (ExpectedContainerMissing), also after the "
                 "container was removed.", mappings=PRESENT_MISSING, alerts=["ExpectedContainerMissing"]),
        row("Engine probes", collapsed=False),
        timeline("Probe success", [q(s("m4watch_probe_success"), "{{target}}")], "none",
                 "Whether each engine's health endpoint answered 2xx in time. Failing for a minute "
                 "pages (ProbeFailing): the engine is down, hung or refusing requests.",
                 mappings=OK_FAILING, alerts=["ProbeFailing", "ProbeSlow"]),
        ts("Probe latency", [q(s("m4watch_probe_duration_seconds"), "{{target}}")], "s",
           "How long each probe took. Over the line for 3 minutes warns (ProbeSlow): the engine's "
           "request handling is stalled or starved of CPU.", min=0, alerts=["ProbeSlow"]),
        timeline("Probe HTTP status", [q(s("m4watch_probe_http_status_code"), "{{target}}")], "none",
                 "HTTP status of each target's last answer (absent when nothing answered). A non-2xx "
                 "answer means the engine is up but reports itself unwell.",
                 mappings={"ranges": [(200, 299, "green"), (300, 399, "orange"), (400, 599, "red")]}),
        ts("Certificate expiry", [q(f'{s("m4watch_probe_tls_certificate_expiry_timestamp_seconds")} - time()', "{{target}}")], "s",
           "Time left until the certificate each TLS target presents (the leaf of an https URL or a "
           "tcp probe with tls: true) expires. Under the line for a minute warns "
           "(ProbeCertificateExpiringSoon); once expired the handshake fails and ProbeFailing pages.",
           min=0, alerts=["ProbeCertificateExpiringSoon"]),
        row("Docker collector"),
        ts("Stats age", [q(s("m4watch_container_stats_age_seconds"), "{{name}}")], "s",
           "Seconds since each container's usage figures arrived from the Engine. Growing ages "
           "mean the stats stream stalled and the panels above are stale.", min=0),
        ts("Stats streams and fallbacks",
           [q(s("m4watch_container_stats_streams"), "streams open"),
            q(f'increase({s("m4watch_container_stats_fallbacks_total")}[$__rate_interval])', "one-shot fallbacks")],
           "none", "Stats streams open to the Engine, and one-shot reads for containers without a "
           "working stream. Steady fallbacks: raise containers.max_streams.", min=0),
    ]),
    "trading": ("m4watch / Trading", "Latency per operation against its alert threshold, histograms, throughput, the performance score and StatsD ingest.", [
        row("Quick look", collapsed=False),
        gauge("Performance score", [instant(s("m4watch_performance_score"), "{{instance}}")], "none",
              "Weighted score 0..100 over the components with data. Below the line for 5 minutes warns.",
              min=0, max=100, alerts=["PerformanceScoreLow"]),
        *[stat(f"{op} p95 (1m)",
               [instant(p95(op), "p95")] + [dict(o, instant=True) for o in objective_queries(op)], "s",
               f"95th percentile of {op} latency over the last minute, beside the alert threshold "
               f"of {OP_RULES[op]}.", alerts=[OP_RULES[op]], options={"textMode": "value_and_name"})
          for op in OPS],
        stat("Throughput", [instant(s("m4watch_trading_throughput_per_second", window="1m"), "{{stream}}")], "ops",
             "Events per second of each StatsD counter stream over the last minute. Zero while the "
             "market is open means the feed or the sender stopped.", options={"textMode": "value_and_name"}),
        stat("Market", [instant(s("m4watch_trading_market_open"), "{{instance}}")], "none",
             "Open while a time interval trading.market_hours names holds (always, when unset). "
             "TradingSourceSilent fires only while it is open (drawn in its colour): outside the hours "
             "silence is expected.",
             w=4, mappings={0: ("closed", "blue"), 1: ("open", "green")}, alerts=["TradingSourceSilent"]),
        ts("Since last sample", [q(f'time() - {s("m4watch_trading_last_sample_timestamp_seconds")}', "{{operation}}"),
                                 q(s("m4watch_trading_silence_after_seconds"), "silence_after")], "s",
           "Seconds since each operation's last latency sample (StatsD, HTTP ingest or the start/end "
           "API), beside trading.silence_after (dashed). Above the line while the market is open pages "
           "(TradingSourceSilent): the sender is hung, disconnected or dead, whatever its latency "
           "panels last said. Past an hour (blue) an operation counts as retired, not silent.",
           min=0, w=20, alerts=["TradingSourceSilent"], thresholds=[("green", None), ("blue", 3600)],
           overrides=[limit_override("/silence_after/")]),
        row("Latency", collapsed=False),
        *[ts(f"{op} p95 (1m window)",
             [q(p95(op), "p95 {{instance}}")] + objective_queries(op), "s",
             f"95th percentile of {op} latency over a sliding minute, with its alert threshold. "
             f"Above it for a minute alerts ({OP_RULES[op]}): check CPU saturation, thermal "
             f"throttling and the path the operation depends on.", min=0, w=6, alerts=[OP_RULES[op]],
             overrides=[limit_override("/threshold/")]) for op in OPS],
        ts("p95 vs baseline (5m window)",
           [q(s("m4watch_trading_latency_quantile_seconds", window="5m", quantile="0.95"), "{{operation}} p95"),
            q(f'1.5 * {s("m4watch_trading_latency_baseline_seconds", quantile="0.95")}', "{{operation}} 1.5 x baseline")],
           "s", "5-minute p95 per operation and 1.5 times its baseline (the median p95 of recent "
           "periods, dashed). Above it for 10 minutes warns (LatencyAboveBaseline): something "
           "changed, compare with the hardware and container dashboards.",
           min=0, alerts=["LatencyAboveBaseline"], overrides=[limit_override("/baseline$/")]),
        ts("p99.9 (5m window)", [q(s("m4watch_trading_latency_quantile_seconds", window="5m", quantile="0.999"), "{{operation}}")],
           "s", "The tail: 99.9th percentile per operation over 5 minutes. A tail far above p95 "
           "with a calm median is stalls (GC, page faults, preemption), not load.", min=0),
        ts("Baselines", [q(s("m4watch_trading_latency_baseline_seconds"), "{{operation}} p{{quantile}}")], "s",
           "Baseline p50 and p95 per operation: the median of the latest complete periods "
           "(history.baseline_period). A moving baseline means the norm itself drifts.", min=0),
        ts("p99 across hosts (histograms)",
           [q(f'histogram_quantile(0.99, sum by (operation, le) (rate({s("m4watch_trading_latency_seconds_bucket")}[$__rate_interval])))',
              "{{operation}}")], "s",
           "99th percentile per operation from the histograms, aggregated over every selected "
           "host (bucket resolution, unlike the exact per-host quantiles above).", min=0),
        heatmap("Latency histogram", [q(f'sum by (le) (increase({s("m4watch_trading_latency_seconds_bucket")}[$__rate_interval]))',
                                        "{{le}}", format="heatmap")], "s",
                "Distribution of every latency observation over time. A second band appearing is a "
                "second code path or a stall.", w=12),
        row("Throughput"),
        ts("Throughput", [q(s("m4watch_trading_throughput_per_second", window="1m"), "{{stream}}")], "ops",
           "Events per second per StatsD counter stream over a sliding minute.", min=0),
        ts("Measurements per second", [q(f'sum by (operation) (rate({s("m4watch_trading_latency_seconds_count")}[$__rate_interval]))',
                                         "{{operation}}")], "ops",
           "Latency observations per second per operation. A drop to zero means the sender stopped, "
           "not that latency is fine.", min=0),
        ts("Order execution errors", [q(error_ratio("order_execution"), "{{operation}}")], "percentunit",
           "Share of order executions that failed (StatsD tag outcome:error, HTTP success: false) "
           "per sliding rate window. Above 0.1% for a minute warns (OrderExecutionErrorRate), above "
           "1% is critical (OrderExecutionErrorRateCritical), judged only with at least one order "
           "per second: read the gateway's reject reasons.", min=0,
           alerts=["OrderExecutionErrorRate", "OrderExecutionErrorRateCritical"]),
        ts("Risk and ML errors", [q(error_ratio("~risk_calculation|ml_inference"), "{{operation}}")], "percentunit",
           "Share of risk calculations and ML inferences that failed. Above 1% for a minute with "
           "at least one operation per second warns (TradingErrorRateHigh): check that service's log.",
           min=0, alerts=["TradingErrorRateHigh"]),
        ts("Operations against throughput targets",
           [q(f'sum by (instance, operation) (rate({s("m4watch_trading_operations_total")}[$__rate_interval]))', "{{operation}} {{instance}}"),
            q(s("m4watch_trading_throughput_objective_per_second"), "{{operation}} {{instance}} target")], "ops",
           "Operations per second per operation (every outcome), with the least rate trading.throughput "
           "asks for (dashed). Under it for a minute while the market is open warns "
           "(TradingThroughputLow): a sender, feed or gateway is stalling.", min=0,
           alerts=["TradingThroughputLow"], overrides=[limit_override("/target$/")]),
        ts("Market data dropped",
           [q(f'sum by (instance, stream) (rate({s("m4watch_trading_events_total")}[$__rate_interval])) '
              f'* on (instance, stream) {s("m4watch_trading_score_stream_info", role="dropped")}', "{{stream}} {{instance}}")], "ops",
           "Messages per second the feed handler reports dropping (the score's dropped stream, "
           "trading.score.throughput.dropped_stream). Above 0 for two minutes warns "
           "(MarketDataDropping): strategies trade on gaps.", min=0, alerts=["MarketDataDropping"]),
        ts("Start/end measurements", [q(f'increase({s("m4watch_trading_measurements_total")}[$__rate_interval])', "{{outcome}}")],
           "none", "Latency measurements through the start/end API per interval: completed, or "
           "abandoned when never ended (a client that loses its measurement ids).", min=0),
        row("Performance score"),
        ts("Performance score", [q(s("m4watch_performance_score"), "score")], "none",
           "Weighted score 0..100 with the PerformanceScoreLow line.", min=0, max=100,
           alerts=["PerformanceScoreLow"]),
        ts("Component scores", [q(s("m4watch_performance_component_score"), "{{component}}")], "percentunit",
           "Score per component (1 at target, 0.5 at the alert threshold): the one that falls is "
           "where to look.", **RATIO),
        ts("Component weights", [q(s("m4watch_performance_component_weight"), "{{component}}")], "percentunit",
           "Weight each component had in the score, renormalised over the components with data.",
           **RATIO, stack=True),
        ts("Score coverage", [q(s("m4watch_performance_score_coverage_ratio"), "coverage")], "percentunit",
           "Share of the configured weight whose component had data. Below trading.score.min_coverage "
           "the score is absent, not low: a sender stopped.", **RATIO),
        row("StatsD ingest"),
        ts("Packets and lines", [q(f'rate({s("m4watch_statsd_packets_total")}[$__rate_interval])', "packets"),
                                 q(f'rate({s("m4watch_statsd_lines_total")}[$__rate_interval])', "lines")], "ops",
           "UDP datagrams and parsed lines per second at the StatsD listener.", min=0),
        ts("Errors and drops",
           [q(f'sum by (reason) (increase({s("m4watch_statsd_parse_errors_total")}[$__rate_interval]))', "malformed: {{reason}}"),
            q(f'sum by (reason) (increase({s("m4watch_statsd_dropped_total")}[$__rate_interval]))', "dropped: {{reason}}"),
            q(f'increase({s("m4watch_statsd_kernel_drops_total")}[$__rate_interval])', "kernel buffer full"),
            q(f'increase({s("m4watch_trading_series_expired_total")}[$__rate_interval])', "series expired"),
            q(f'increase({s("m4watch_trading_series_evicted_total")}[$__rate_interval])', "series evicted"),
            q(f'increase({s("m4watch_statsd_refused_datagrams_total")}[$__rate_interval])', "refused senders")],
           "none", "Lines dropped per interval: malformed (fix the sender), over the series limit "
           "(raise trading.max_series, cut label values or set trading.series_ttl), and datagrams "
           "the kernel dropped (raise the receive buffer; macOS does not report these). Series "
           "expired: quiet series removed after trading.series_ttl, freeing their slots; evicted: "
           "the least recently updated series replaced by a new name at trading.max_series (a flood "
           "of names). Refused senders: datagrams from outside trading.statsd_allow, dropped unread.", min=0),
        ts("Tracked series", [q(s("m4watch_trading_series"), "{{type}}")], "none",
           "Distinct StatsD series tracked per type; together at most trading.max_series, beyond "
           "which new series are dropped.", min=0, stack=True),
        ts("StatsD gauges", [q(s("m4watch_trading_value"), "{{name}}")], "none",
           "Last value of each StatsD gauge, in the unit its sender uses.", w=6),
        ts("StatsD sets", [q(s("m4watch_trading_set_unique_values"), "{{name}}")], "none",
           "Distinct values each StatsD set received per trading interval.", min=0, w=6),
    ]),
    "alerts": ("m4watch / Alerts and self-health", "Alerts, rule evaluation, notification delivery, and m4watch itself.", [
        row("Quick look", collapsed=False),
        firing_by_severity(w=8),
        stat("Pending alerts", [instant(f'sum({s("m4watch_alerts", state="pending")}) or vector(0)', "pending")],
             "none", "Alerts whose condition holds but not yet for their `for:` duration.",
             thresholds=[("green", None), ("orange", 1)]),
        stat("Rules loaded", [instant(s("m4watch_rules_loaded"), "rules")], "none",
             "Alerting and recording rules loaded. A drop after a reload means a rule file went missing.",
             thresholds=[("blue", None)]),
        stat("Notification queue", [instant(s("m4watch_notification_queue_length"), "queued")], "none",
             "Notifications waiting in the outbox. Growing: a receiver is failing, see below.",
             thresholds=[("green", None), ("orange", 10)]),
        stat("Config reload", [instant(s("m4watch_config_last_reload_successful"), "reload")], "none",
             "Whether the last config reload worked; failed means the previous config still runs: "
             "fix the file (m4watch check-config) and reload again.", mappings=OK_FAILING),
        row("Alerts", collapsed=False),
        firing_table(w=12),
        ts("Alerts by state", [q(f'sum by (state) ({s("m4watch_alerts")})', "{{state}}")], "none",
           "Pending and firing alerts over time; a saw-tooth of pending is a flapping rule.", min=0),
        ts("Rule evaluation time", [q(s("m4watch_rule_evaluation_duration_seconds"), "evaluation")], "s",
           "Time one evaluation cycle of every rule took. Near a second, alerts lag behind.", min=0),
        ts("Rule evaluation failures",
           [q(f'increase({s("m4watch_rule_evaluation_failures_total")}[$__rate_interval])', "{{group}}")], "none",
           "Failed evaluations per rule group per interval; any pages (RuleEvaluationFailing) because "
           "those alerts cannot fire. The m4watch log names the rule.", min=0, alerts=["RuleEvaluationFailing"]),
        row("Notifications", collapsed=False),
        ts("Delivery attempts", [q(f'sum by (receiver, integration) (increase({s("m4watch_notifications_total")}[$__rate_interval]))',
                                   "{{receiver}} {{integration}}")], "none",
           "Notification delivery attempts per receiver and integration per interval.", min=0),
        ts("Failed deliveries",
           [q(f'sum by (receiver, integration, reason) (increase({s("m4watch_notifications_failed_total")}[$__rate_interval]))',
              "{{receiver}} {{integration}} {{reason}}"),
            q(f'sum by (receiver, integration) (increase({s("m4watch_notifications_moved_aside_total")}[$__rate_interval]))',
              "moved aside: {{receiver}} {{integration}}")], "none",
           "Failed attempts by bounded reason, and notifications moved aside from the head of their "
           "receiver's queue after 3 failed attempts (still retried) so later ones go out. Failing for "
           "5 minutes pages through Alertmanager "
           "(M4watchNotificationsFailing): check the receiver's credentials and reachability.",
           min=0, alerts=["M4watchNotificationsFailing"]),
        ts("Delivery latency p95",
           [q(f'histogram_quantile(0.95, sum by (integration, le) (rate({s("m4watch_notification_latency_seconds_bucket")}[$__rate_interval])))',
              "{{integration}}")], "s",
           "95th percentile of one delivery attempt's duration per integration. Seconds here delay "
           "every page.", min=0),
        ts("Outbox and dispatcher",
           [q(s("m4watch_notification_queue_length"), "queued"),
            q(f'increase({s("m4watch_notification_submit_waits_total")}[$__rate_interval])', "submit waits"),
            q(f'increase({s("m4watch_notification_transitions_missed_total")}[$__rate_interval])', "transitions missed")],
           "none", "Outbox length, alert events that waited for room in the dispatcher's queue, and "
           "transitions the notifier missed (each logged as an error): any missed means lost pages.", min=0),
        timeline("Data directory writes", [q(s("m4watch_storage_healthy"), "writes commit")], "none",
                 "Failing while a write to the data directory fails (disk full, read-only, permission "
                 "denied) or the directory was moved or replaced: posted alerts and silences are "
                 "refused with 503, notifications go out from memory, and M4watchStorageFailing pages.",
                 mappings=OK_FAILING, alerts=["M4watchStorageFailing"]),
        ts("Notifications sent from memory",
           [q(f'sum by (receiver, integration) (increase({s("m4watch_notifications_unqueued_total")}[$__rate_interval]))',
              "{{receiver}} {{integration}}")],
           "none", "Notifications the outbox could not store (the data directory took no writes), "
           "sent from memory instead: lost if m4watch stops before they go out. "
           "m4watch_storage_fault_info says which writer failed and why.", min=0),
        ts("Alertmanager forwarding",
           [q(f'sum by (alertmanager) (increase({s("m4watch_alertmanager_posts_total")}[$__rate_interval]))',
              "{{alertmanager}} posts"),
            q(f'sum by (alertmanager) (increase({s("m4watch_alertmanager_post_failures_total")}[$__rate_interval]))',
              "{{alertmanager}} failures")],
           "none", "Posts to each Alertmanager of the `alertmanager` integration (first notices, "
           "resolves, and a re-post of every firing alert each resend_delay) and those it did not "
           "take. Failures on one peer of a cluster are harmless while another takes them; on "
           "every peer, Alertmanager resolves this host's alerts within four resend delays.", min=0),
        ts("Heartbeat (dead-man's switch)",
           [q(f'increase({s("m4watch_heartbeat_sent_total")}[$__rate_interval])', "sent"),
            q(f'sum(increase({s("m4watch_heartbeat_skipped_total")}[$__rate_interval]))', "skipped"),
            q(f'sum(increase({s("m4watch_heartbeat_failures_total")}[$__rate_interval]))', "failed")], "none",
           "Beats sent to the dead-man's service off the host, and those not sent: skipped because m4watch "
           "is not healthy (the reason label of m4watch_heartbeat_skipped_total: rules_stalled, "
           "outbox_stalled, delivery_backlog; the service will page), or failed on the way (the reason "
           "label of m4watch_heartbeat_failures_total: timeout, connection, server_error, ...). Flat "
           "zero: no heartbeat is configured.", min=0),
        bars("Since last heartbeat",
             [instant(f'time() - {s("m4watch_heartbeat_last_success_timestamp_seconds")}', "since last beat"),
              instant(s("m4watch_heartbeat_interval_seconds"), "interval")], "s",
             "Seconds since the dead-man's service last accepted a beat, beside the configured interval. "
             "Two intervals or more and the service is about to page: see the skipped and failed beats.",
             min=0),
        row("Exporter", collapsed=False),
        timeline("Scrapes", [q(f'up{{job=~"{FAST_JOBS}", instance=~"$instance"}}', "{{job}} {{instance}}")],
                 "none", "Whether Prometheus could scrape m4watch, per job. Down for a minute pages "
                 "through Alertmanager (M4watchDown): host alerts are not being evaluated.",
                 mappings=UP_DOWN, alerts=["M4watchDown"]),
        timeline("Collector success", [q(s("m4watch_collector_success"), "{{collector}}")], "none",
                 "Whether each collector's last run succeeded. Failing for a minute warns "
                 "(CollectorFailing): its metrics are missing and its alerts cannot fire.",
                 mappings=OK_FAILING, alerts=["CollectorFailing"]),
        ts("Collector duration", [q(s("m4watch_collector_duration_seconds"), "{{collector}}")], "s",
           "How long each collector's last run took; near its timeout it will start failing.", min=0),
        bars("Since last success", [instant(f'time() - {s("m4watch_collector_last_success_timestamp_seconds")}', "{{collector}}")],
             "s", "Seconds since each collector last succeeded; more than a few intervals means its "
                  "figures are stale.", min=0, thresholds=[("green", None), ("orange", 60)]),
        ts("m4watch memory", [q(s("process_resident_memory_bytes"), "resident"),
                              q(s("process_virtual_memory_bytes"), "virtual")], "bytes",
           "Resident and virtual memory of m4watch itself; steady growth of resident is a leak.", min=0, w=8),
        ts("m4watch CPU", [q(f'rate({s("process_cpu_seconds_total")}[$__rate_interval])', "CPU")], "percentunit",
           "CPU m4watch itself uses (100% = one core); it should stay a few percent.", min=0, w=8),
        ts("m4watch file descriptors", [q(s("process_open_fds"), "open"), q(s("process_max_fds"), "limit")],
           "none", "Open file descriptors against the limit; at the limit scrapes and "
                   "deliveries fail.", min=0, w=8, overrides=[limit_override("/limit/")]),
        stat("Uptime", [instant(f'time() - {s("process_start_time_seconds")}', "{{instance}}")], "dtdurations",
             "Time since m4watch started; a short uptime you did not cause is a crash.", w=6, h=5,
             thresholds=[("blue", None)]),
        stat("Config age", [instant(f'time() - {s("m4watch_config_last_reload_success_timestamp_seconds")}', "{{instance}}")],
             "dtdurations", "Time since the running config was last loaded successfully.", w=6, h=5,
             thresholds=[("blue", None)]),
        stat("HTTP handler panics", [instant(f'sum(increase({s("m4watch_http_panics_total")}[$__range]))', "panics")], "none",
             "API requests whose handler panicked over the selected range (answered 500 and logged): "
             "report them with the log.", w=6, h=5, thresholds=[("green", None), ("red", 1)]),
        table("Version", [instant(s("m4watch_build_info"), fmt="table")], "none",
              "Version and git revision of each m4watch.", w=6, h=5,
              transformations=[organize(HIDE | {"Value": True})]),
    ]),
}


# --- thresholds from the rules ---------------------------------------------------------

def rule_marks(p):
    """The threshold steps and mapping colours the panel's rules ask for; fails when a
    rule's metrics are not what the panel queries."""
    metrics = set().union(*(metrics_in(t["expr"]) for t in p["queries"]))
    literal, states, values = [], {}, {}
    # Rules that are only one comparison first: their colour wins a shared state or value.
    for name in sorted(p["alerts"], key=lambda n: len(RULES[n]["conds"]) if n in RULES else 0):
        rule = RULES.get(name) or sys.exit(f"{p['title']}: no alert rule named {name}")
        color = SEVERITY_COLOR[rule["severity"]]
        drawn = False
        for cond in rule["conds"]:
            if not cond["metrics"] <= metrics:
                continue
            drawn = True
            if "series" in cond:
                if cond["series"] not in metrics:
                    sys.exit(f"{p['title']}: {name} compares against {cond['series']}, which the panel does not query")
            elif "state" in cond:
                states.setdefault(cond["state"], color)
            elif cond["op"] in ("==", "!="):
                values.setdefault(cond["value"], color)
            else:
                literal.append((cond["value"], cond["op"], color, len(rule["conds"]) == 1))
        if not drawn:
            sys.exit(f"{p['title']}: draws {name}, but queries none of {[sorted(c['metrics']) for c in rule['conds']]}")
    return literal, states, values


def threshold_steps(p, literal):
    if p["thresholds"]:
        return [{"color": c, "value": v} for c, v in p["thresholds"]]
    if not literal:
        return [{"color": "green", "value": None}]
    above = {op[0] == ">" for _, op, _, _ in literal}
    if len(above) > 1:
        sys.exit(f"{p['title']}: rules alert both above and below; draw them on two panels")
    # One line per value: a rule that is only this comparison colours it (ThermalEmergency
    # shares PerformanceCoresSaturated's 0.98 but also needs critical thermal pressure).
    by_value = {}
    for v, op, color, alone in sorted(literal, key=lambda c: not c[3]):
        by_value.setdefault(v, (v, op, color))
    literal = sorted(by_value.values())
    if above.pop():
        return [{"color": "green", "value": None}] + [{"color": c, "value": v} for v, _, c in literal]
    # Alerting below a value: the colour below each line is that rule's, green above all.
    steps = [{"color": literal[0][2], "value": None}]
    for i, (v, _, _) in enumerate(literal):
        steps.append({"color": literal[i + 1][2] if i + 1 < len(literal) else "green", "value": v})
    return steps


def value_mappings(p, states, values):
    spec = p["mappings"]
    if not spec:
        if states or values:
            sys.exit(f"{p['title']}: rules compare states or values, but the panel maps none")
        return []
    if "ranges" in spec:
        return [{"type": "range", "options": {"from": lo, "to": hi, "result": {"color": c, "index": i}}}
                for i, (lo, hi, c) in enumerate(spec["ranges"])]
    if isinstance(next(iter(spec)), str) and isinstance(next(iter(spec.values())), dict):
        return []  # per-column mappings, applied as overrides
    options = {}
    for i, (value, (text, color)) in enumerate(sorted(spec.items(), key=lambda kv: str(kv[0]))):
        color = states.get(text, values.get(float(value), color) if not isinstance(value, str) else color)
        options[str(value)] = {"text": text, "color": color, "index": i}
    for st in states:
        if st not in {t for t, _ in spec.values()}:
            sys.exit(f"{p['title']}: a rule alerts on state {st!r}, which the panel's mappings do not name")
    for v in values:
        if v not in {float(k) for k in spec if not isinstance(k, str)}:
            sys.exit(f"{p['title']}: a rule alerts on value {v:g}, which the panel's mappings do not name")
    return [{"type": "value", "options": options}]


def rule_note(p):
    notes = []
    for name in p["alerts"]:
        r = RULES[name]
        notes.append(f"{name} ({r['severity']}, for {r['for']}): {r['expr']}")
    return ("\n\nAlert rules drawn here: " + "; ".join(notes)) if notes else ""


# --- Grafana JSON ------------------------------------------------------------------------

LEGEND_CALCS = ["min", "mean", "max", "lastNotNull"]


def panel_interval(p):
    """The fast job's interval when every query reads only its families, else None (the
    datasource's timeInterval, the slow job's interval, applies)."""
    metrics = set().union(*(metrics_in(t["expr"]) for t in p["queries"]))
    if metrics and all(m in FAST_FAMILIES for m in metrics):
        return fmt_duration(FAST_INTERVAL)
    return None


def reduce_options():
    return {"values": False, "calcs": ["lastNotNull"], "fields": ""}


def legend(p, show=True):
    table_mode = p["legend"] == "table"
    return {"showLegend": show, "displayMode": "table" if table_mode else "list",
            "placement": "bottom", "calcs": LEGEND_CALCS if table_mode else []}


def panel_options(p):
    kind = p["kind"]
    tooltip = {"mode": "multi", "sort": "desc"}
    if kind == "timeseries":
        o = {"legend": legend(p), "tooltip": tooltip}
    elif kind == "stat":
        o = {"reduceOptions": reduce_options(), "orientation": "auto", "textMode": "auto",
             "colorMode": "background" if p["mappings"] or p["alerts"] or p["thresholds"] else "value",
             "graphMode": "none", "justifyMode": "auto", "showPercentChange": False, "wideLayout": True}
    elif kind == "gauge":
        o = {"reduceOptions": reduce_options(), "orientation": "auto", "showThresholdLabels": False,
             "showThresholdMarkers": True, "sizing": "auto", "minVizHeight": 75, "minVizWidth": 75}
    elif kind == "bargauge":
        o = {"reduceOptions": reduce_options(), "orientation": "horizontal", "displayMode": "gradient",
             "valueMode": "color", "namePlacement": "auto", "showUnfilled": True, "sizing": "auto",
             "minVizHeight": 16, "minVizWidth": 8, "maxVizHeight": 300}
    elif kind == "table":
        o = {"showHeader": True, "frameIndex": 0, "cellHeight": "sm",
             "footer": {"show": False, "reducer": ["sum"], "countRows": False, "fields": []}}
    elif kind == "state-timeline":
        o = {"showValue": "auto", "rowHeight": 0.9, "mergeValues": True, "alignValue": "left",
             "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom", "calcs": []},
             "tooltip": {"mode": "single", "sort": "none"}}
    elif kind == "heatmap":
        o = {"calculate": False, "cellGap": 1, "showValue": "never",
             "color": {"mode": "scheme", "scheme": "Oranges", "fill": "dark-orange", "scale": "exponential",
                       "exponent": 0.5, "steps": 64, "reverse": False},
             "exemplars": {"color": "rgba(255,0,255,0.7)"}, "legend": {"show": True},
             "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": False},
             "yAxis": {"axisPlacement": "left", "reverse": False, "unit": p["unit"]},
             "rowsFrame": {"layout": "auto"}, "filterValues": {"le": 1e-9}}
    else:
        raise SystemExit(f"unknown panel kind {kind}")
    o.update(p["options"])
    return o


def field_custom(p, thresholds_drawn):
    kind = p["kind"]
    if kind == "timeseries":
        c = {"drawStyle": "line", "lineInterpolation": "linear", "lineWidth": 1,
             "fillOpacity": 10 if not p["stack"] else 30, "gradientMode": "none", "showPoints": "never",
             "pointSize": 4, "spanNulls": False, "axisPlacement": "auto", "axisLabel": "",
             "axisBorderShow": False, "axisCenteredZero": False, "axisColorMode": "text",
             "barAlignment": 0, "scaleDistribution": {"type": "linear"},
             "hideFrom": {"legend": False, "tooltip": False, "viz": False},
             "stacking": {"mode": "normal" if p["stack"] else "none", "group": "A"},
             "thresholdsStyle": {"mode": "dashed" if thresholds_drawn else "off"}}
    elif kind == "state-timeline":
        c = {"fillOpacity": 80, "lineWidth": 0, "hideFrom": {"legend": False, "tooltip": False, "viz": False}}
    elif kind == "heatmap":
        c = {"hideFrom": {"legend": False, "tooltip": False, "viz": False},
             "scaleDistribution": {"type": "linear"}}
    elif kind == "table":
        c = {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False}
    else:
        return None
    c.update(p["custom"])
    return c


def grafana_panel(p, pid, x, y):
    interval = panel_interval(p)
    targets = []
    for i, t in enumerate(p["queries"]):
        tgt = {"refId": chr(ord("A") + i), "datasource": DS, "editorMode": "code", "expr": t["expr"],
               "legendFormat": t["legend"] or "__auto", "range": not t.get("instant", False),
               "instant": t.get("instant", False)}
        if t.get("format"):
            tgt["format"] = t["format"]
        targets.append(tgt)
    literal, states, values = rule_marks(p)
    steps = threshold_steps(p, literal)
    defaults = {"unit": p["unit"], "color": {"mode": "thresholds" if p["kind"] in ("stat", "gauge", "bargauge")
                                             else "palette-classic"},
                "thresholds": {"mode": "absolute", "steps": steps},
                "mappings": value_mappings(p, states, values)}
    if p["kind"] == "state-timeline":
        defaults["color"] = {"mode": "thresholds"}
    for key in ("min", "max", "decimals"):
        if p[key] is not None:
            defaults[key] = p[key]
    custom = field_custom(p, len(steps) > 1 and (p["alerts"] or p["thresholds"]))
    if custom is not None:
        defaults["custom"] = custom
    overrides = list(p["overrides"])
    if p["kind"] == "table" and p["mappings"]:
        for column, spec in p["mappings"].items():
            opts = {str(v): {"text": t, "color": c, "index": i} for i, (v, (t, c)) in enumerate(spec.items())}
            overrides.append({"matcher": {"id": "byName", "options": column},
                              "properties": [{"id": "mappings", "value": [{"type": "value", "options": opts}]},
                                             {"id": "custom.cellOptions", "value": {"type": "color-text"}}]})
    out = {"id": pid, "type": p["kind"], "title": p["title"], "description": p["desc"] + rule_note(p),
           "datasource": DS, "gridPos": {"h": p["h"], "w": p["w"], "x": x, "y": y},
           "fieldConfig": {"defaults": defaults, "overrides": overrides},
           "options": panel_options(p), "targets": targets}
    if interval:
        out["interval"] = interval
    if p["transformations"]:
        out["transformations"] = p["transformations"]
    return out


def layout(items):
    """Places panels left to right in rows of 24 columns; a collapsed row holds its
    panels, an open one is followed by them."""
    panels, x, y, row_h, pid, current = [], 0, 0, 0, 1, None
    for it in items:
        if "row" in it:
            if x:
                y, x = y + row_h, 0
            current = {"id": pid, "type": "row", "title": it["row"], "collapsed": it["collapsed"],
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []}
            panels.append(current)
            pid, y, row_h = pid + 1, y + 1, 0
            continue
        if x + it["w"] > 24:
            y, x, row_h = y + row_h, 0, 0
        gp = grafana_panel(it, pid, x, y)
        (current["panels"] if current and current["collapsed"] else panels).append(gp)
        pid, x, row_h = pid + 1, x + it["w"], max(row_h, it["h"])
    return panels


def variable(name, label, query, hide=0):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": f"{name}-variable"},
            "refresh": 2, "regex": "", "sort": 1, "multi": True, "includeAll": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [], "hide": hide,
            "skipUrlSync": False}


def annotation(name, color, expr, title):
    """A Prometheus annotation as Grafana 10 stores it: the query in `target`, the
    formatting beside it."""
    return {"name": name, "enable": True, "hide": False, "iconColor": color, "datasource": DS,
            "target": {"refId": "Anno", "datasource": DS, "expr": expr, "range": True, "instant": False},
            "titleFormat": title, "tagKeys": "severity,instance", "textFormat": "", "useValueForTime": False}


def dashboard(uid, title, description, items):
    uses_container = any("$container" in t["expr"] for it in items if "queries" in it for t in it["queries"])
    variables = [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {"selected": False, "text": "Prometheus", "value": "prometheus"}, "options": [],
         "regex": "", "refresh": 1, "hide": 0, "skipUrlSync": False, "multi": False, "includeAll": False},
        variable("job", "Job", "label_values(m4watch_build_info, job)"),
        variable("instance", "Host", 'label_values(m4watch_build_info{job=~"$job"}, instance)'),
    ]
    if uses_container:
        variables.append(variable("container", "Container",
                                  'label_values(m4watch_container_info{job=~"$job", instance=~"$instance"}, name)'))
    return {
        "uid": f"m4watch-{uid}", "title": title, "description": description,
        "tags": ["m4watch"], "schemaVersion": 39, "version": 1, "editable": True,
        "refresh": "30s", "time": {"from": "now-1h", "to": "now"}, "timezone": "browser",
        "graphTooltip": 1, "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
        "timepicker": {"refresh_intervals": ["5s", "10s", "30s", "1m", "5m", "15m"]},
        "links": [{"title": "m4watch", "type": "dashboards", "tags": ["m4watch"], "asDropdown": True,
                   "keepTime": True, "includeVars": True, "targetBlank": False, "icon": "external link",
                   "tooltip": "", "url": ""}],
        "templating": {"list": variables},
        "annotations": {"list": [
            {"name": "Annotations & Alerts", "builtIn": 1, "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
             "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "type": "dashboard"},
            annotation("m4watch alerts", "red", f'{s("m4watch_alerts", state="firing", alertname="!" + WATCHDOG)} > 0',
                       "{{alertname}} ({{severity}})"),
            annotation("Prometheus alerts (ALERTS)", "purple",
                       f'ALERTS{{alertstate="firing", alertname!="{WATCHDOG}", instance=~"$instance"}}',
                       "{{alertname}}"),
        ]},
        "panels": layout(items),
    }


def shown_families(rendered):
    names = set()
    for d in rendered.values():
        for p in all_panels(d):
            for t in p.get("targets", []):
                names |= metrics_in(t["expr"])
    return names


def all_panels(d):
    for p in d["panels"]:
        yield p
        yield from p.get("panels", [])


def check_every_rule_drawn():
    claimed = {name for _, _, items in DASHBOARDS.values() for it in items if "alerts" in it for name in it["alerts"]}
    missing = sorted(set(RULES) - claimed)
    if missing:
        sys.exit(f"alert rules drawn on no panel (add them to a panel's alerts=): {', '.join(missing)}")
    for name, rule in RULES.items():
        panels = [it for _, _, items in DASHBOARDS.values() for it in items if name in it.get("alerts", [])]
        for cond in rule["conds"]:
            if not any(cond["metrics"] <= set().union(*(metrics_in(t["expr"]) for t in p["queries"])) for p in panels):
                sys.exit(f"{name}: the condition on {sorted(cond['metrics'])} is drawn on no panel")


def home_dashboard(name):
    """The dashboard a rule's `dashboard_url` opens: the first in DASHBOARDS, after the
    overview, that draws it (the overview only repeats the detail dashboards' headlines)."""
    for uid, (_, _, items) in DASHBOARDS.items():
        if uid != "overview" and any(name in it.get("alerts", []) for it in items):
            return f"m4watch-{uid}"
    return "m4watch-overview"


def check_rule_links():
    """The links notifications carry (README "Runbooks and links"): every rule m4watch
    evaluates (alert-rules/) names its runbook section and its home dashboard, relative
    (m4watch resolves them against external_url and the Grafana base URL); the rules
    Prometheus evaluates (prometheus/stack.rules.yml) name the runbook on the instance
    itself, as Alertmanager resolves nothing. tests in src/rules/runbooks.rs check that
    the sections exist."""
    for name, rule in RULES.items():
        a = rule["annotations"]
        if rule["file"].startswith("alert-rules/"):
            want = {"runbook_url": f"/runbooks#{name.lower()}", "dashboard_url": f"/d/{home_dashboard(name)}"}
        else:
            want = {"runbook_url": "http://{{ $labels.instance }}/runbooks#" + name.lower()}
        for key, value in want.items():
            if a.get(key) != value:
                sys.exit(f"{rule['file']}: {name}: annotation {key} is {a.get(key)!r}, want {value!r}")


def main():
    if "--not-shown" in sys.argv[1:]:
        print(json.dumps(NOT_SHOWN, indent=2, sort_keys=True))
        return
    check = "--check" in sys.argv[1:]
    check_datasource_interval()
    check_every_rule_drawn()
    check_rule_links()
    rendered = {uid: dashboard(uid, *spec) for uid, spec in DASHBOARDS.items()}
    shown = shown_families(rendered) & set(NOT_SHOWN)
    if shown:
        sys.exit(f"listed in NOT_SHOWN but on a panel: {sorted(shown)}")
    stale = []
    for uid, d in rendered.items():
        text = json.dumps(d, indent=2) + "\n"
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
