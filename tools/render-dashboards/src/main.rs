//! Renders every panel of the shipped Grafana dashboards from a live Prometheus into
//! one PNG per dashboard: a stand-in for Grafana screenshots on machines where Grafana
//! cannot be installed.
//!
//! render-dashboards PROMETHEUS_URL DASHBOARD_DIR OUT_DIR MINUTES FONT.ttf

use std::collections::BTreeMap;
use std::error::Error;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use serde_json::Value;

type Series = (String, Vec<(f64, f64)>);

const PANEL_W: u32 = 640;
const PANEL_H: u32 = 300;
const COLS: u32 = 3;
const PALETTE: [RGBColor; 8] = [
    RGBColor(115, 191, 105),
    RGBColor(242, 204, 12),
    RGBColor(87, 148, 242),
    RGBColor(255, 120, 10),
    RGBColor(242, 73, 92),
    RGBColor(184, 119, 217),
    RGBColor(112, 219, 237),
    RGBColor(250, 100, 200),
];

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        return Err(
            "usage: render-dashboards PROMETHEUS_URL DASHBOARD_DIR OUT_DIR MINUTES FONT.ttf".into(),
        );
    }
    let (prom, dir, out, minutes) = (
        &args[1],
        Path::new(&args[2]),
        Path::new(&args[3]),
        args[4].parse::<f64>()?,
    );
    let font: &'static [u8] = Box::leak(std::fs::read(&args[5])?.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, font).map_err(|_| "bad font")?;
    std::fs::create_dir_all(out)?;
    let end = now();
    let start = end - minutes * 60.0;
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for path in files {
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let panels: Vec<&Value> = dash["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["type"] != "row")
            .collect();
        let rows = (panels.len() as u32).div_ceil(COLS);
        let png = out.join(path.with_extension("png").file_name().unwrap());
        let root =
            BitMapBackend::new(&png, (PANEL_W * COLS, 40 + PANEL_H * rows)).into_drawing_area();
        root.fill(&RGBColor(24, 27, 31))?;
        let (title, body) = root.split_vertically(40);
        title.draw_text(
            dash["title"].as_str().unwrap_or("?"),
            &("sans-serif", 24).into_font().color(&WHITE),
            (12, 8),
        )?;
        let cells = body.split_evenly((rows as usize, COLS as usize));
        for (panel, cell) in panels.iter().zip(cells.iter()) {
            let mut series = Vec::new();
            for t in panel["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or_default();
                let legend = t["legendFormat"].as_str().unwrap_or_default();
                series.extend(query_range(prom, expr, legend, start, end)?);
            }
            draw_panel(
                cell,
                panel["title"].as_str().unwrap_or("?"),
                &series,
                start,
                end,
            )?;
        }
        root.present()?;
        println!("{}: {} panels", png.display(), panels.len());
    }
    Ok(())
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn query_range(
    prom: &str,
    expr: &str,
    legend: &str,
    start: f64,
    end: f64,
) -> Result<Vec<Series>, Box<dyn Error>> {
    let step = ((end - start) / 240.0).max(1.0);
    let expr = expr
        .replace(
            "$__rate_interval",
            &format!("{}s", (step * 4.0).max(4.0) as u64),
        )
        .replace("$instance", ".*");
    let text = ureq::get(&format!("{prom}/api/v1/query_range"))
        .query("query", &expr)
        .query("start", start.to_string())
        .query("end", end.to_string())
        .query("step", step.to_string())
        .call()?
        .body_mut()
        .read_to_string()?;
    let body: Value = serde_json::from_str(&text)?;
    let mut out = Vec::new();
    for r in body["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .take(12)
    {
        let labels: BTreeMap<String, String> = r["metric"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let points = r["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p[0].as_f64()?, p[1].as_str()?.parse::<f64>().ok()?)))
            .filter(|(_, v)| v.is_finite())
            .collect();
        out.push((format_legend(legend, &labels), points));
    }
    Ok(out)
}

/// Grafana's `{{label}}` legend substitution.
fn format_legend(legend: &str, labels: &BTreeMap<String, String>) -> String {
    let mut s = legend.to_string();
    for (k, v) in labels {
        s = s.replace(&format!("{{{{{k}}}}}"), v);
    }
    // Labels the series lacks render as nothing, as in Grafana.
    while let (Some(a), Some(b)) = (s.find("{{"), s.find("}}")) {
        if b < a {
            break;
        }
        s.replace_range(a..b + 2, "");
    }
    let s = s.trim().to_string();
    if s.is_empty() {
        labels.get("__name__").cloned().unwrap_or_default()
    } else {
        s
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    series: &[Series],
    start: f64,
    end: f64,
) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    let area = area.margin(6, 6, 6, 6);
    area.fill(&RGBColor(34, 37, 43))?;
    let text = ("sans-serif", 14)
        .into_font()
        .color(&RGBColor(204, 204, 220));
    let values = series.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| *v));
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        area.draw_text(title, &text, (10, 8))?;
        area.draw_text(
            "no data",
            &("sans-serif", 18).into_font().color(&RGBColor(242, 73, 92)),
            (PANEL_W as i32 / 2 - 40, PANEL_H as i32 / 2),
        )?;
        return Ok(());
    }
    let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.05).max(1e-9);
    let (lo, hi) = (
        if lo >= 0.0 {
            (lo - pad).max(0.0)
        } else {
            lo - pad
        },
        hi + pad,
    );
    let mut chart = ChartBuilder::on(&area)
        .caption(title, text.clone())
        .margin(8)
        .x_label_area_size(22)
        .y_label_area_size(56)
        .build_cartesian_2d(start..end, lo..hi)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(44, 47, 53))
        .bold_line_style(RGBColor(54, 57, 63))
        .axis_style(RGBColor(90, 90, 100))
        .label_style(
            ("sans-serif", 11)
                .into_font()
                .color(&RGBColor(160, 160, 170)),
        )
        .x_labels(5)
        .x_label_formatter(&|t| format!("-{:.0}m", (end - t) / 60.0))
        .y_labels(5)
        .y_label_formatter(&|v| short(*v))
        .draw()?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 3), (x + 12, y + 3)], color.filled()));
    }
    chart
        .configure_series_labels()
        .label_font(
            ("sans-serif", 11)
                .into_font()
                .color(&RGBColor(204, 204, 220)),
        )
        .background_style(RGBColor(34, 37, 43).mix(0.8))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 1.0 || a == 0.0 {
        format!("{v:.1}")
    } else if a >= 1e-3 {
        format!("{:.1}m", v * 1e3)
    } else {
        format!("{:.0}µ", v * 1e6)
    }
}
