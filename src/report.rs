//! The HTML report of `driftwatch replay --report out.html`: platform engineers read it to tune
//! drift thresholds before a model goes live, so every chart shows the score next to its
//! threshold and the alerts that the threshold produced.
//!
//! This module owns only the rendering: [`render_html`] turns a [`ReportData`] into one
//! self-contained HTML string (inline CSS, inline SVG, no JavaScript, nothing fetched). It does
//! no I/O; the caller writes the file. It must not panic on any input: ids and feature names
//! come from events and are escaped, non-finite values are skipped, empty series still render.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike};
use plotters::prelude::*;
use serde::Serialize;

/// Beyond this many charts per model the page gets too slow to scan (and too large to open);
/// the remaining series are listed in the summary table only.
const MAX_CHARTS_PER_MODEL: usize = 40;
/// A chart is at most ~600 px wide, so more points than this only add bytes, not detail.
const MAX_POINTS_PER_LINE: usize = 1_200;
/// −log10 of the smallest positive f64 is ~324; 300 keeps the axis readable and finite.
const MAX_NEG_LOG10: f64 = 300.0;
/// Small enough that two charts sit side by side on a laptop screen.
const CHART_SIZE: (u32, u32) = (600, 260);
const SCORE_COLOR: RGBColor = RGBColor(37, 99, 235);
const FIRING_COLOR: &str = "#dc2626";
const RESOLVED_COLOR: &str = "#16a34a";
const RETRAIN_COLOR: &str = "#7c3aed";
const QUALITY_COLORS: [RGBColor; 6] = [
    RGBColor(37, 99, 235),
    RGBColor(234, 88, 12),
    RGBColor(5, 150, 105),
    RGBColor(147, 51, 234),
    RGBColor(202, 138, 4),
    RGBColor(71, 85, 105),
];

/// Everything one replay report shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReportData {
    /// Page title and top heading.
    pub title: String,
    /// Name of the replayed input file, shown in the header.
    pub input: String,
    /// Number of events replayed.
    pub events: u64,
    /// One section per model, in this order.
    pub models: Vec<ModelReport>,
}

/// The replay results of one model version.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelReport {
    /// Model id as it appears in events.
    pub model_id: String,
    /// Model version as it appears in events.
    pub model_version: String,
    /// Detector scores, one series per (subject, detector).
    pub series: Vec<ScoreSeries>,
    /// Model-quality metrics (accuracy, AUC, …) over time; may be empty.
    pub quality: Vec<QualitySeries>,
    /// Alert transitions; matched to series by (subject, detector).
    pub alerts: Vec<AlertMark>,
    /// Retrain requests that the replay would have sent.
    pub retrains: Vec<RetrainMark>,
}

/// Scores of one (subject, detector) over event time: one point per evaluation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScoreSeries {
    /// What is monitored: a feature name, `prediction`, …
    pub subject: String,
    /// Detector name, e.g. `psi` or `ks`.
    pub detector: String,
    /// The configured alert threshold, in the detector's own unit.
    pub threshold: f64,
    /// `true` when a score above the threshold breaches (PSI); `false` for p-values, which
    /// breach below it.
    pub higher_is_worse: bool,
    /// `(window_end in ms since the epoch, score)`; non-finite scores are skipped.
    pub points: Vec<(i64, f64)>,
}

/// One model-quality metric over event time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QualitySeries {
    /// Metric name, e.g. `accuracy`.
    pub metric: String,
    /// `(ms since the epoch, value)`; non-finite values are skipped.
    pub points: Vec<(i64, f64)>,
}

/// One alert state change.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertMark {
    /// Subject of the alerting series.
    pub subject: String,
    /// Detector of the alerting series.
    pub detector: String,
    /// Event time of the change, ms since the epoch.
    pub at: i64,
    /// `true` for FIRING, `false` for RESOLVED.
    pub firing: bool,
    /// Alert id, shown as a tooltip on the marker.
    pub alert_id: String,
}

/// One retrain request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetrainMark {
    /// Event time of the request, ms since the epoch.
    pub at: i64,
    /// What triggered it (alert, schedule, …).
    pub trigger: String,
    /// Request id.
    pub request_id: String,
}

/// Renders the whole report as one self-contained HTML document.
#[must_use]
pub fn render_html(data: &ReportData) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let title = escape(&data.title);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title><style>{CSS}</style></head><body>\n<header><h1>{title}</h1>\
         <p>Input: <code>{}</code> · {} events · {} models</p><p class=\"legend\">Dashed line: \
         threshold. <span class=\"firing\">Red</span>: FIRING alert, \
         <span class=\"resolved\">green</span>: RESOLVED. p-value detectors are plotted as \
         −log10(p), so on every chart higher means more drift. Hover a marker for its id. \
         Times are UTC.</p></header>\n",
        escape(&data.input),
        data.events,
        data.models.len()
    );
    for (m, model) in data.models.iter().enumerate() {
        render_model(&mut out, m, model);
    }
    out.push_str("</body></html>\n");
    out
}

const CSS: &str = "body{font-family:sans-serif;margin:1.5em;color:#111}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;\
text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}\
tr.breached{background:#fee2e2}.charts{display:flex;flex-wrap:wrap;gap:8px}\
figure{margin:0}svg{max-width:100%;height:auto}.firing{color:#dc2626}\
.resolved{color:#16a34a}.note{color:#555}section.model{border-top:2px solid #999;margin-top:2em}";

/// Escapes text for HTML element content and quoted attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Per-series facts for the table, computed once.
struct Summary {
    last: Option<f64>,
    /// The most drifted raw value: max for scores, min for p-values.
    worst: Option<f64>,
    firing: usize,
    first_firing: Option<i64>,
    /// Ranks series for the chart budget: firing first, then closest to the threshold.
    rank: (bool, f64),
}

fn summarize(s: &ScoreSeries, alerts: &[AlertMark]) -> Summary {
    let finite = s.points.iter().map(|p| p.1).filter(|v| v.is_finite());
    let worst = if s.higher_is_worse {
        finite.clone().reduce(f64::max)
    } else {
        finite.clone().reduce(f64::min)
    };
    let mut firing = 0;
    let mut first_firing: Option<i64> = None;
    for a in alerts.iter().filter(|a| a.firing && owns(s, a)) {
        firing += 1;
        first_firing = Some(first_firing.map_or(a.at, |f| f.min(a.at)));
    }
    // Compared on the plotted scale, where higher is always worse, so the ratio means the same
    // for PSI and for p-values.
    let limit = plot_value(s.higher_is_worse, s.threshold);
    let peak = worst
        .map(|w| plot_value(s.higher_is_worse, w))
        .filter(|p| !p.is_nan())
        .unwrap_or(0.0);
    let ratio = if limit > 0.0 { peak / limit } else { peak };
    Summary {
        // Latest by event time, not by position: the caller need not sort the points.
        last: s
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .max_by_key(|p| p.0)
            .map(|p| p.1),
        worst,
        firing,
        first_firing,
        rank: (firing > 0, ratio),
    }
}

fn owns(s: &ScoreSeries, a: &AlertMark) -> bool {
    a.subject == s.subject && a.detector == s.detector
}

/// Maps a raw value onto the plotted scale. p-values span hundreds of decades (1e-300 is a
/// normal KS result on large windows), so they are drawn as −log10(p) clamped to [0, 300];
/// other scores are clamped to ±1e300 so that an axis span can never overflow to infinity.
fn plot_value(higher_is_worse: bool, v: f64) -> f64 {
    if higher_is_worse {
        v.clamp(-1e300, 1e300)
    } else if v.is_nan() || v < 0.0 {
        f64::NAN
    } else {
        (-v.log10()).clamp(0.0, MAX_NEG_LOG10)
    }
}

fn render_model(out: &mut String, m: usize, model: &ModelReport) {
    let summaries: Vec<Summary> = model
        .series
        .iter()
        .map(|s| summarize(s, &model.alerts))
        .collect();
    // Stable sort: ties keep the caller's order, so the page is deterministic.
    let mut order: Vec<usize> = (0..model.series.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (summaries[a].rank, summaries[b].rank);
        rb.0.cmp(&ra.0).then(rb.1.total_cmp(&ra.1))
    });
    order.truncate(MAX_CHARTS_PER_MODEL);
    let mut chart_of = vec![None; model.series.len()];
    for (c, &s) in order.iter().enumerate() {
        chart_of[s] = Some(c);
    }
    let x_range = time_range(model);

    let _ = write!(
        out,
        "<section class=\"model\" id=\"model-{m}\"><h2>{} <small>version {}</small></h2>\
         <p class=\"note\">Event time {} – {}</p>",
        escape(&model.model_id),
        escape(&model.model_version),
        iso_utc(x_range.0),
        iso_utc(x_range.1)
    );
    out.push_str(
        "<table class=\"summary\"><tr><th>subject</th><th>detector</th><th>last value</th>\
         <th>worst value</th><th>threshold</th><th>FIRING alerts</th><th>first FIRING</th>\
         <th>chart</th></tr>",
    );
    for (i, (s, sum)) in model.series.iter().zip(&summaries).enumerate() {
        let chart = match chart_of[i] {
            Some(c) => format!("<a href=\"#m{m}-c{c}\">#{}</a>", c + 1),
            None => "table only".to_owned(),
        };
        let _ = write!(
            out,
            "<tr{}><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{} {}</td><td class=\"num\">{}</td><td>{}</td><td>{chart}</td></tr>",
            if sum.firing > 0 {
                " class=\"breached\""
            } else {
                ""
            },
            escape(&s.subject),
            escape(&s.detector),
            sum.last.map_or("–".to_owned(), fmt_value),
            sum.worst.map_or("–".to_owned(), fmt_value),
            if s.higher_is_worse { "&gt;" } else { "&lt;" },
            fmt_value(s.threshold),
            sum.firing,
            sum.first_firing.map_or("–".to_owned(), iso_utc),
        );
    }
    out.push_str("</table>");
    let hidden = model.series.len() - order.len();
    if hidden > 0 {
        let _ = write!(
            out,
            "<p class=\"note\">{hidden} more series are listed in the table only: charts are \
             limited to {MAX_CHARTS_PER_MODEL} per model, series with FIRING alerts first, then \
             those closest to their threshold.</p>"
        );
    }
    let orphans = model
        .alerts
        .iter()
        .filter(|a| !model.series.iter().any(|s| owns(s, a)))
        .count();
    if orphans > 0 {
        let _ = write!(
            out,
            "<p class=\"note\">{orphans} alert transitions refer to no score series.</p>"
        );
    }

    out.push_str("<div class=\"charts\">");
    for (c, &i) in order.iter().enumerate() {
        let s = &model.series[i];
        let marks = model
            .alerts
            .iter()
            .filter(|a| owns(s, a))
            .map(|a| {
                let (class, color, state) = if a.firing {
                    ("alert firing", FIRING_COLOR, "FIRING")
                } else {
                    ("alert resolved", RESOLVED_COLOR, "RESOLVED")
                };
                let title = format!("{state} {} at {}", a.alert_id, iso_utc(a.at));
                Mark {
                    at: a.at,
                    class,
                    color,
                    title,
                    id: a.alert_id.clone(),
                }
            })
            .collect();
        let line = plot_points(
            s.points
                .iter()
                .map(|&(t, v)| (t, plot_value(s.higher_is_worse, v))),
        );
        let chart = Chart {
            caption: format!("{} · {}", s.subject, s.detector),
            y_desc: if s.higher_is_worse {
                "score"
            } else {
                "−log10(p), clamped to [0, 300]"
            },
            lines: vec![(String::new(), line)],
            threshold: Some(plot_value(s.higher_is_worse, s.threshold))
                .filter(|t| t.is_finite())
                .map(|t| (t, threshold_label(s))),
            marks,
        };
        let _ = write!(
            out,
            "<figure id=\"m{m}-c{c}\">{}</figure>",
            render_chart(&chart, x_range)
        );
    }
    out.push_str("</div>");

    if !model.quality.is_empty() {
        let chart = Chart {
            caption: "model quality".to_owned(),
            y_desc: "metric value",
            lines: model
                .quality
                .iter()
                .map(|q| (q.metric.clone(), plot_points(q.points.iter().copied())))
                .collect(),
            threshold: None,
            marks: model
                .retrains
                .iter()
                .map(|r| Mark {
                    at: r.at,
                    class: "retrain",
                    color: RETRAIN_COLOR,
                    title: format!(
                        "retrain {} ({}) at {}",
                        r.request_id,
                        r.trigger,
                        iso_utc(r.at)
                    ),
                    id: r.request_id.clone(),
                })
                .collect(),
        };
        let _ = write!(
            out,
            "<h3>Quality</h3><p class=\"note\">Purple lines: retrain requests.</p>{}",
            render_chart(&chart, x_range)
        );
    }

    out.push_str("<h3>Retrain requests</h3>");
    if model.retrains.is_empty() {
        out.push_str("<p class=\"note\">None.</p>");
    } else {
        out.push_str("<table><tr><th>time</th><th>trigger</th><th>request id</th></tr>");
        for r in &model.retrains {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                iso_utc(r.at),
                escape(&r.trigger),
                escape(&r.request_id)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>\n");
}

/// The x span shared by all charts of a model, so detectors can be compared by eye. It covers
/// alerts and retrains too, so that no marker falls outside its chart.
fn time_range(model: &ModelReport) -> (i64, i64) {
    let times = model
        .series
        .iter()
        .flat_map(|s| s.points.iter().filter(|p| p.1.is_finite()).map(|p| p.0))
        .chain(
            model
                .quality
                .iter()
                .flat_map(|q| q.points.iter().map(|p| p.0)),
        )
        .chain(model.alerts.iter().map(|a| a.at))
        .chain(model.retrains.iter().map(|r| r.at));
    let (lo, hi) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    match (lo, hi) {
        (i64::MAX, i64::MIN) => (0, 60_000),
        // A zero-width axis cannot be drawn: one minute either side of a lone instant.
        (lo, hi) if lo == hi => (lo.saturating_sub(60_000), hi.saturating_add(60_000)),
        range => range,
    }
}

/// Drops non-finite values, sorts by time and thins long series while keeping every bucket's
/// minimum and maximum, because the peaks are what a threshold is tuned against.
fn plot_points(points: impl Iterator<Item = (i64, f64)>) -> Vec<(i64, f64)> {
    let mut pts: Vec<(i64, f64)> = points.filter(|p| p.1.is_finite()).collect();
    pts.sort_by_key(|p| p.0);
    if pts.len() <= MAX_POINTS_PER_LINE {
        return pts;
    }
    let bucket = pts.len().div_ceil(MAX_POINTS_PER_LINE / 2);
    let mut thinned = Vec::with_capacity(MAX_POINTS_PER_LINE);
    for chunk in pts.chunks(bucket) {
        let lo = chunk.iter().min_by(|a, b| a.1.total_cmp(&b.1));
        let hi = chunk.iter().max_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some(&lo), Some(&hi)) = (lo, hi) {
            thinned.extend(if lo.0 <= hi.0 { [lo, hi] } else { [hi, lo] });
        }
    }
    thinned
}

fn threshold_label(s: &ScoreSeries) -> String {
    if s.higher_is_worse {
        format!("threshold: breach above {}", fmt_value(s.threshold))
    } else {
        let t = plot_value(false, s.threshold);
        format!(
            "threshold: breach below p = {} ({} on this axis)",
            fmt_value(s.threshold),
            fmt_value(t)
        )
    }
}

/// A vertical event line drawn over a chart.
struct Mark {
    at: i64,
    class: &'static str,
    color: &'static str,
    title: String,
    id: String,
}

struct Chart {
    caption: String,
    y_desc: &'static str,
    /// `(legend label, points)`; points are already finite and on the plotted scale.
    lines: Vec<(String, Vec<(i64, f64)>)>,
    /// `(value on the plotted scale, tooltip in the detector's own unit)`.
    threshold: Option<(f64, String)>,
    marks: Vec<Mark>,
}

/// Draws the chart with plotters, then appends the threshold and the event markers as plain
/// SVG elements: plotters cannot attach classes, ids or `<title>` tooltips, and those make the
/// markers countable in tests and identifiable by hovering.
fn render_chart(chart: &Chart, x_range: (i64, i64)) -> String {
    let mut svg = String::new();
    let mut overlay = String::new();
    match draw_chart(chart, x_range, &mut svg, &mut overlay) {
        Ok(()) => {
            let end = svg.rfind("</svg>").unwrap_or(svg.len());
            svg.insert_str(end, &overlay);
            svg
        }
        Err(error) => format!(
            "<p class=\"note\">Chart “{}” could not be drawn: {}</p>",
            escape(&chart.caption),
            escape(&error.to_string())
        ),
    }
}

fn draw_chart(
    chart: &Chart,
    (x0, x1): (i64, i64),
    svg: &mut String,
    overlay: &mut String,
) -> Result<(), Box<dyn std::error::Error>> {
    let (y0, y1) = y_range(chart);
    // Plotted on an f64 axis: plotters' integer key-point search overflows on spans near
    // i64::MAX (a garbage timestamp in the input), its float search does not. The axis counts
    // seconds, minutes, hours or days, so that its round ticks (1-2-5 steps) fall on round times.
    let span = x1.saturating_sub(x0);
    let unit = if span <= 900_000 {
        1_000.0
    } else if span <= 172_800_000 {
        60_000.0
    } else if span <= 345_600_000 {
        3_600_000.0
    } else {
        86_400_000.0
    };
    let at = |t: i64| t as f64 / unit;
    let (xf0, mut xf1) = (at(x0), at(x1));
    if xf1 <= xf0 {
        xf1 = xf0 + 1.0;
    }
    let root = SVGBackend::with_string(svg, CHART_SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut ctx = ChartBuilder::on(&root)
        .caption(&chart.caption, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(xf0..xf1, y0..y1)?;
    ctx.configure_mesh()
        // Dates make labels twice as wide; fewer of them keeps them from overlapping.
        .x_labels(if span > 86_400_000 { 5 } else { 8 })
        .y_labels(5)
        .x_label_formatter(&|x| axis_time((x * unit).round() as i64, span))
        .y_label_formatter(&|v| fmt_value(*v))
        .x_desc("event time (UTC)")
        .y_desc(chart.y_desc)
        .label_style(("sans-serif", 12))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;
    let legend = chart.lines.len() > 1;
    for (i, (label, points)) in chart.lines.iter().enumerate() {
        let color = if legend {
            QUALITY_COLORS[i % QUALITY_COLORS.len()]
        } else {
            SCORE_COLOR
        };
        let drawn = ctx.draw_series(LineSeries::new(
            points.iter().map(|&(t, v)| (at(t), v)),
            color.stroke_width(2),
        ))?;
        if legend {
            drawn.label(label.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        }
        // Dots only where there are few points: they make a lone evaluation visible, but on a
        // long series they would hide the line.
        if points.len() <= 60 {
            ctx.draw_series(
                points
                    .iter()
                    .map(|&(t, v)| Circle::new((at(t), v), 3, color.filled())),
            )?;
        }
    }
    if legend {
        ctx.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 12))
            .draw()?;
    }

    let (xs, ys) = ctx.plotting_area().get_pixel_range();
    if let Some((t, label)) = &chart.threshold {
        let (_, y) = ctx.backend_coord(&(xf0, *t));
        let _ = writeln!(
            overlay,
            "<line class=\"threshold\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#444\" \
             stroke-width=\"1.5\" stroke-dasharray=\"6 4\"><title>{}</title></line>",
            xs.start,
            xs.end,
            escape(label)
        );
    }
    for mark in &chart.marks {
        let (x, _) = ctx.backend_coord(&(at(mark.at), y0));
        let _ = writeln!(
            overlay,
            "<line class=\"{}\" data-id=\"{}\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" \
             stroke=\"{}\" stroke-width=\"2\" opacity=\"0.7\"><title>{}</title></line>",
            mark.class,
            escape(&mark.id),
            ys.start,
            ys.end,
            mark.color,
            escape(&mark.title)
        );
    }
    root.present()?;
    Ok(())
}

/// The y span covering every point and the threshold, padded by 5 % so nothing sits on the
/// frame. A flat series gets an artificial span, because a zero-width axis cannot be drawn.
fn y_range(chart: &Chart) -> (f64, f64) {
    let values = chart.lines.iter().flat_map(|l| l.1.iter().map(|p| p.1));
    let (lo, hi) = values
        .chain(chart.threshold.as_ref().map(|t| t.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = if hi - lo > f64::EPSILON * hi.abs().max(lo.abs()) {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.1
    };
    (lo - pad, hi + pad)
}

/// Compact number for tables and axis ticks: fixed notation where it is readable, scientific
/// notation for tiny p-values and huge scores.
fn fmt_value(v: f64) -> String {
    if v == 0.0 {
        "0".to_owned()
    } else if !v.is_finite() || (1e-3..1e6).contains(&v.abs()) {
        let s = format!("{v:.4}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    } else {
        format!("{v:.3e}")
    }
}

/// ISO-8601 UTC, with milliseconds only when they are not zero. Formatted by hand because
/// chrono is built without its `alloc` formatting.
fn iso_utc(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => {
            let base = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
            match ms.rem_euclid(1000) {
                0 => base + "Z",
                milli => format!("{base}.{milli:03}Z"),
            }
        }
        None => format!("{ms} ms"),
    }
}

/// Axis tick label: as short as the model's time span allows.
fn axis_time(ms: i64, span: i64) -> String {
    let Some(t) = DateTime::from_timestamp_millis(ms) else {
        return ms.to_string();
    };
    if span <= 3_600_000 {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    } else if span <= 86_400_000 {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else {
        format!(
            "{:02}-{:02} {:02}:{:02}",
            t.month(),
            t.day(),
            t.hour(),
            t.minute()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_714_564_800_000; // 2024-05-01T12:00:00Z

    fn series(subject: &str, detector: &str, higher_is_worse: bool, n: i64) -> ScoreSeries {
        ScoreSeries {
            subject: subject.to_owned(),
            detector: detector.to_owned(),
            threshold: if higher_is_worse { 0.2 } else { 0.01 },
            higher_is_worse,
            points: (0..n).map(|i| (T0 + i * 60_000, 0.05 * i as f64)).collect(),
        }
    }

    fn alert(subject: &str, detector: &str, at: i64, firing: bool) -> AlertMark {
        AlertMark {
            subject: subject.to_owned(),
            detector: detector.to_owned(),
            at,
            firing,
            alert_id: format!("a-{at}"),
        }
    }

    fn one_model(series: Vec<ScoreSeries>) -> ReportData {
        ReportData {
            models: vec![ModelReport {
                series,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn escape_neutralises_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert(\"x\" & 'y')</script>"),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn two_models_render_charts_markers_and_thresholds() {
        let fraud = ModelReport {
            model_id: "<script>fraud</script>".to_owned(),
            model_version: "v\"2\"".to_owned(),
            series: vec![
                series("amount", "psi", true, 10),
                series("amount", "ks", false, 10),
                series("<b>country</b>", "psi", true, 10),
            ],
            quality: vec![QualitySeries {
                metric: "accuracy".to_owned(),
                points: vec![(T0, 0.9), (T0 + 60_000, 0.85)],
            }],
            alerts: vec![
                alert("amount", "psi", T0 + 300_000, true),
                alert("amount", "psi", T0 + 500_000, false),
                alert("<b>country</b>", "psi", T0 + 400_000, true),
            ],
            retrains: vec![RetrainMark {
                at: T0 + 420_000,
                trigger: "alert".to_owned(),
                request_id: "r-1".to_owned(),
            }],
        };
        let churn = ModelReport {
            model_id: "churn".to_owned(),
            series: vec![series("tenure", "wasserstein", true, 5)],
            ..Default::default()
        };
        let html = render_html(&ReportData {
            title: "Replay".to_owned(),
            input: "events.avro".to_owned(),
            events: 1234,
            models: vec![fraud, churn],
        });
        // 3 + 1 score charts and one quality chart.
        assert_eq!(html.matches("<svg").count(), 5);
        assert!(html.contains("&lt;script&gt;fraud&lt;/script&gt;"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("<b>country"));
        assert_eq!(html.matches("class=\"alert firing\"").count(), 2);
        assert_eq!(html.matches("class=\"alert resolved\"").count(), 1);
        assert_eq!(html.matches("class=\"threshold\"").count(), 4);
        assert_eq!(html.matches("class=\"retrain\"").count(), 1);
        assert!(html.contains("stroke-dasharray"));
        assert!(html.contains("−log10(p)"));
        // Titles and axis labels are SVG text, rendered without any font file.
        assert!(html.contains("<text") && html.contains("event time (UTC)"));
        assert!(
            html.contains("2024-05-01T12:05:00Z"),
            "first FIRING in ISO-8601"
        );
        assert!(html.contains("1234 events") && html.contains("r-1"));
    }

    #[test]
    fn empty_report_and_empty_model_render() {
        let html = render_html(&ReportData::default());
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
        assert!(!html.contains("<svg"));
        let mut data = one_model(vec![ScoreSeries::default()]);
        data.models[0].quality.push(QualitySeries::default());
        assert_eq!(render_html(&data).matches("<svg").count(), 2);
    }

    #[test]
    fn non_finite_points_are_skipped() {
        let mut s = series("x", "psi", true, 4);
        s.points.push((T0 + 1, f64::NAN));
        s.points.push((T0 + 2, f64::INFINITY));
        let mut p = series("x", "ks", false, 0);
        p.points = vec![
            (T0, f64::NAN),
            (T0 + 1, 1e-300),
            (T0 + 2, 0.0),
            (T0 + 3, -1.0),
        ];
        let html = render_html(&one_model(vec![s, p]));
        assert_eq!(html.matches("<svg").count(), 2);
        assert!(!html.contains("NaN") && !html.contains("inf"));
        let plotted = plot_points([(1, f64::NAN), (2, 1.0), (0, f64::NEG_INFINITY)].into_iter());
        assert_eq!(plotted, vec![(2, 1.0)]);
        assert_eq!(plot_value(false, 1e-300), 300.0);
        assert_eq!(plot_value(false, 0.0), 300.0);
        assert!(plot_value(false, -1.0).is_nan());
    }

    #[test]
    fn charts_per_model_are_bounded() {
        let many = (0..200)
            .map(|i| series(&format!("f{i}"), "psi", true, 3))
            .collect();
        let mut data = one_model(many);
        data.models[0].alerts.push(alert("f150", "psi", T0, true));
        let html = render_html(&data);
        assert_eq!(html.matches("<svg").count(), MAX_CHARTS_PER_MODEL);
        assert_eq!(
            html.matches("<td>table only</td>").count(),
            200 - MAX_CHARTS_PER_MODEL
        );
        assert!(html.contains("160 more series"));
        // The firing series is charted first, whatever its position in the input.
        assert!(html.contains("id=\"m0-c0\"><svg") && html.contains("href=\"#m0-c0\""));
        let row = html.find("<td>f150</td>").unwrap();
        assert!(html[row..].starts_with("<td>f150</td><td>psi</td>"));
        assert!(html[row..html[row..].find("</tr>").unwrap() + row].contains("#m0-c0"));
    }

    #[test]
    fn degenerate_series_do_not_panic() {
        let single = ScoreSeries {
            points: vec![(T0, 0.3)],
            ..series("a", "psi", true, 0)
        };
        let same_x = ScoreSeries {
            points: vec![(T0, 0.1), (T0, 0.5), (T0, 0.2)],
            ..series("b", "psi", true, 0)
        };
        let flat = ScoreSeries {
            points: vec![(T0, 1e-300), (T0 + 1, 1e-300)],
            threshold: f64::NAN,
            ..series("c", "psi", true, 0)
        };
        let huge = ScoreSeries {
            points: vec![(T0, -f64::MAX), (T0 + 1, f64::MAX), (i64::MAX, 1.0)],
            ..series("d", "psi", true, 0)
        };
        let html = render_html(&one_model(vec![single, same_x, flat, huge]));
        assert_eq!(html.matches("<svg").count(), 4);
        assert!(!html.contains("could not be drawn"));
    }

    #[test]
    fn summary_uses_event_time_and_direction() {
        let mut s = series("x", "ks", false, 0);
        s.points = vec![(T0 + 2, 0.5), (T0, 1e-9), (T0 + 1, f64::NAN)];
        let alerts = [
            alert("x", "ks", T0 + 9, true),
            alert("x", "ks", T0 + 5, true),
        ];
        let sum = summarize(&s, &alerts);
        assert_eq!((sum.last, sum.worst), (Some(0.5), Some(1e-9)));
        assert_eq!((sum.firing, sum.first_firing), (2, Some(T0 + 5)));
    }

    #[test]
    fn long_series_keep_their_peaks() {
        let mut pts: Vec<(i64, f64)> = (0..100_000).map(|i| (i, 0.1)).collect();
        pts[54_321].1 = 9.0;
        let thinned = plot_points(pts.into_iter());
        assert!(thinned.len() <= MAX_POINTS_PER_LINE);
        assert!(thinned.contains(&(54_321, 9.0)));
        assert!(thinned.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn times_and_numbers_format_compactly() {
        assert_eq!(iso_utc(T0), "2024-05-01T12:00:00Z");
        assert_eq!(iso_utc(T0 + 7), "2024-05-01T12:00:00.007Z");
        assert_eq!(iso_utc(i64::MAX), format!("{} ms", i64::MAX));
        assert_eq!(axis_time(T0, 60_000), "12:00:00");
        assert_eq!(fmt_value(0.25), "0.25");
        assert_eq!(fmt_value(1e-300), "1.000e-300");
        assert_eq!(fmt_value(0.0), "0");
    }
}
