#!/usr/bin/env python3
"""Type-checks grafana-dashboards/*.json against Grafana's published schema.

    scripts/check-dashboard-schema.py NODE_MODULES

NODE_MODULES holds `@grafana/schema` at the version of the Grafana image in
docker-compose.yml, and `typescript` (scripts/test.sh installs both with npm). Each
dashboard becomes a TypeScript file that assigns the JSON to the schema's `Dashboard`
type, and each panel to that panel plugin's own `Options`/`FieldConfig` types and its
targets to `PrometheusDataQuery`; `tsc --noEmit --strict` must accept them. TypeScript
reports properties a type does not declare, so a misspelt field fails, not just a wrong
type. JSON cannot spell a TypeScript enum, so each enum is checked as the union of its
values. Before trusting a pass, the check proves it can fail: it breaks a copy of a
dashboard in several ways and requires tsc to reject each.
"""
import json
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "grafana-dashboards").glob("*.json"))
RAW = "@grafana/schema/dist/esm/raw/composable"
# Panel type -> (module under RAW, whether it declares a FieldConfig).
PLUGINS = {
    "timeseries": ("timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen", True),
    "stat": ("stat/panelcfg/x/StatPanelCfg_types.gen", False),
    "gauge": ("gauge/panelcfg/x/GaugePanelCfg_types.gen", False),
    "bargauge": ("bargauge/panelcfg/x/BarGaugePanelCfg_types.gen", False),
    "table": ("table/panelcfg/x/TablePanelCfg_types.gen", True),
    "state-timeline": ("statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen", True),
    "heatmap": ("heatmap/panelcfg/x/HeatmapPanelCfg_types.gen", True),
}

TYPES = """\
import type { AnnotationQuery, Dashboard, FieldConfig, FieldConfigSource, Panel, RowPanel } from '@grafana/schema';
import type { PrometheusDataQuery } from '@grafana/schema/dist/esm/raw/composable/prometheus/dataquery/x/PrometheusDataQuery_types.gen';
%(imports)s

type IsAny<T> = 0 extends 1 & T ? true : false;
/** What JSON can hold of T: a string enum as the union of its values, recursively. */
export type Json<T> = IsAny<T> extends true ? T
  : T extends string ? `${T}`
  : T extends number | boolean | null | undefined ? T
  : T extends ReadonlyArray<infer U> ? Array<Json<U>>
  : T extends object ? { [K in keyof T]: Json<T[K]> }
  : T;

type PanelOf<K extends string, O, F> = Omit<Panel, 'type' | 'options' | 'fieldConfig' | 'targets'> & {
  type: K;
  options: O;
  fieldConfig: {
    defaults: Omit<FieldConfig, 'custom'> & { custom?: F };
    overrides: FieldConfigSource['overrides'];
  };
  targets: PrometheusDataQuery[];
};

/**
 * The dashboard schema leaves an annotation's query generic (AnnotationQuery<TQuery>); a
 * Prometheus annotation has a PrometheusDataQuery target and the formatting fields the
 * Prometheus datasource reads beside it (public/app/plugins/datasource/prometheus).
 */
type PrometheusAnnotation = Json<AnnotationQuery<PrometheusDataQuery>> & {
  titleFormat?: string;
  textFormat?: string;
  tagKeys?: string;
  useValueForTime?: boolean;
};
export type CheckedDashboard = Json<Omit<Dashboard, 'annotations'>> & {
  annotations?: { list?: PrometheusAnnotation[] };
};
export type Panels = {
%(panels)s
  row: Json<Omit<RowPanel, 'panels'>> & { panels: unknown[] };
};
"""


def ident(kind):
    return re.sub(r"\W", "_", kind)


def types_ts():
    imports, panels = [], []
    for kind, (module, has_field_config) in PLUGINS.items():
        imports.append(f"import type * as {ident(kind)} from '{RAW}/{module}';")
        field = f"{ident(kind)}.FieldConfig" if has_field_config else "Record<string, never>"
        panels.append(f"  '{kind}': Json<PanelOf<'{kind}', {ident(kind)}.Options, {field}>>;")
    return TYPES % {"imports": "\n".join(imports), "panels": "\n".join(panels)}


def dashboard_ts(d):
    lines = ["import type { CheckedDashboard, Panels } from './types';",
             f"export const dashboard: CheckedDashboard = {json.dumps(d, indent=2)};"]
    for p in d.get("panels", []):
        for panel in [p] + p.get("panels", []):
            kind = panel.get("type")
            if kind not in PLUGINS and kind != "row":
                raise SystemExit(f"{d.get('uid')}: panel {panel.get('title')!r} is a {kind!r}, "
                                 f"which this check has no schema for (add it to PLUGINS)")
            lines.append(f"export const panel_{panel.get('id')}: Panels['{kind}'] = {json.dumps(panel, indent=2)};")
    return "\n".join(lines) + "\n"


def tsc(node_modules, dashboards):
    """Runs tsc over the dashboards ({file stem: JSON}); returns (ok, output)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "node_modules").symlink_to(node_modules.resolve())
        (tmp / "types.ts").write_text(types_ts())
        for stem, d in dashboards.items():
            (tmp / f"{stem}.ts").write_text(dashboard_ts(d))
        (tmp / "tsconfig.json").write_text(json.dumps({
            "compilerOptions": {"strict": True, "noEmit": True, "target": "es2020", "module": "commonjs",
                                "moduleResolution": "node", "skipLibCheck": True, "types": []},
            "include": ["*.ts"]}))
        r = subprocess.run(["node", str((node_modules / "typescript/bin/tsc").resolve()), "-p", "."],
                           capture_output=True, text=True, cwd=tmp)
        return r.returncode == 0, r.stdout + r.stderr


def grafana_version():
    m = re.search(r"image:\s*grafana/grafana:([0-9.]+)", (ROOT / "docker-compose.yml").read_text())
    return m.group(1)


# Each breaks one thing a user would get wrong; tsc must reject every one.
def _misspelt_option(d):
    next(p for p in d["panels"] if p["type"] == "timeseries")["options"]["legend"]["displayMode"] = "tabel"


def _unknown_panel_field(d):
    next(p for p in d["panels"] if p["type"] == "timeseries")["fieldconfig"] = {}


def _unknown_dashboard_field(d):
    d["refreshInterval"] = "5s"


def _target_without_expr(d):
    del next(p for p in d["panels"] if p["type"] == "timeseries")["targets"][0]["expr"]


def _wrong_threshold_type(d):
    p = next(p for p in d["panels"] if p["type"] == "timeseries")
    p["fieldConfig"]["defaults"]["thresholds"]["steps"][0]["value"] = "0.9"


MUTANTS = [_misspelt_option, _unknown_panel_field, _unknown_dashboard_field, _target_without_expr,
           _wrong_threshold_type]


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    node_modules = pathlib.Path(sys.argv[1])
    pkg = node_modules / "@grafana/schema/package.json"
    if not pkg.exists():
        raise SystemExit(f"{pkg} is missing: npm install @grafana/schema@{grafana_version()} typescript "
                         f"(scripts/test.sh does)")
    have, want = json.loads(pkg.read_text())["version"], grafana_version()
    if have != want:
        raise SystemExit(f"@grafana/schema {have} installed, but docker-compose.yml runs Grafana {want}")
    dashboards = {p.stem: json.loads(p.read_text()) for p in DASHBOARDS}
    if len(dashboards) < 5:
        raise SystemExit(f"expected the five dashboards, found {sorted(dashboards)}")

    # One tsc run over the dashboards and copies broken on purpose: the check must reject
    # every broken copy, or its pass means nothing.
    base = json.loads(DASHBOARDS[0].read_text())
    files = dict(dashboards)
    for mutate in MUTANTS:
        broken = json.loads(json.dumps(base))
        mutate(broken)
        files[f"mutant{mutate.__name__}"] = broken
    ok, out = tsc(node_modules, files)
    accepted = [m.__name__ for m in MUTANTS if f"mutant{m.__name__}.ts(" not in out]
    if accepted:
        raise SystemExit(f"the schema check accepted {DASHBOARDS[0].name} broken by {', '.join(accepted)}:\n{out}")
    real = [line for line in out.splitlines() if line and not line.startswith("mutant")]
    if real:
        print("\n".join(real))
        raise SystemExit("dashboards do not type-check against @grafana/schema " + have)
    print(f"schema check rejects all {len(MUTANTS)} broken copies of {DASHBOARDS[0].name}")
    panels = sum(1 + len(p.get("panels", [])) for d in dashboards.values() for p in d["panels"])
    print(f"{len(dashboards)} dashboards, {panels} panels and rows type-check against @grafana/schema {have}")


if __name__ == "__main__":
    main()
