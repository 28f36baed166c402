//! The dashboard's charts, drawn on the server as SVG: nothing to load, nothing to run in the
//! browser. Each chart has a title and a description for screen readers, and the page shows
//! the same figures as a table.

use crate::i18n::{Arg, Speaker};
use callwarden_proto::v1 as pb;
use serde_json::json;
use std::fmt::Write;

/// Colours that keep 3:1 contrast against white and stay apart for common colour blindness
/// (Okabe–Ito, darkened).
const PALETTE: [&str; 10] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#8a6d00", "#56b4e9", "#e69f00", "#5a5a5a",
    "#117733", "#882255",
];
const SEVERITY_COLOURS: [(&str, &str); 4] = [
    ("critical", "#a50026"),
    ("high", "#d55e00"),
    ("medium", "#8a6d00"),
    ("low", "#0072b2"),
];

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;

/// Escapes text for SVG (XML) content and attributes.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round upper bound for an axis, so its ticks read well.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= max)
        .unwrap_or(max)
}

/// One series of a stacked bar chart.
pub struct Series {
    pub label: String,
    pub colour: &'static str,
    pub values: Vec<u64>,
}

/// Bars per day, each stacked by series, with an axis and a legend.
pub fn stacked_bars(title: &str, days: &[String], series: &[Series]) -> String {
    let totals: Vec<u64> = (0..days.len())
        .map(|i| series.iter().map(|s| s.values[i]).sum())
        .collect();
    // At least 4, so that the four grid lines fall on whole incidents.
    let max = nice_max((totals.iter().copied().max().unwrap_or(0) as f64).max(4.0));
    let plot_w = WIDTH - LEFT - 8.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let step = plot_w / days.len().max(1) as f64;
    let bar_w = (step * 0.75).max(1.0);
    let mut svg = open_svg(title, HEIGHT);
    axis(&mut svg, max, plot_w, plot_h);
    for (i, _) in days.iter().enumerate() {
        let x = LEFT + i as f64 * step + (step - bar_w) / 2.0;
        let mut y = TOP + plot_h;
        for s in series {
            let v = s.values[i];
            if v == 0 {
                continue;
            }
            let h = v as f64 / max * plot_h;
            y -= h;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}" fill="{c}"><title>{d}: {l} {v}</title></rect>"#,
                c = s.colour,
                d = esc(&days[i]),
                l = esc(&s.label)
            );
        }
    }
    // Label about eight days along the axis, whatever the period.
    let every = days.len().div_ceil(8).max(1);
    for (i, day) in days.iter().enumerate().step_by(every) {
        let x = LEFT + i as f64 * step + step / 2.0;
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{y:.1}" class="tick" text-anchor="middle">{d}</text>"#,
            y = HEIGHT - 8.0,
            d = esc(day.get(5..).unwrap_or(day))
        );
    }
    svg.push_str("</svg>");
    svg
}

fn axis(svg: &mut String, max: f64, plot_w: f64, plot_h: f64) {
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        let y = TOP + plot_h - plot_h * k as f64 / 4.0;
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" x2="{x2:.1}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{tx:.1}" y="{ty:.1}" class="tick" text-anchor="end">{v:.0}</text>"#,
            x2 = LEFT + plot_w,
            tx = LEFT - 6.0,
            ty = y + 4.0,
        );
    }
}

/// Horizontal bars with their labels and values written out.
pub fn horizontal_bars(title: &str, rows: &[(String, f64, String)]) -> String {
    let max = rows
        .iter()
        .map(|r| r.1)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let row_h = 26.0;
    let label_w = 190.0;
    // Room on the right for the value written after the longest bar.
    let bar_room = WIDTH - label_w - 230.0;
    let height = TOP + rows.len() as f64 * row_h + 8.0;
    let mut svg = open_svg(title, height);
    for (i, (label, value, shown)) in rows.iter().enumerate() {
        let y = TOP + i as f64 * row_h;
        let w = (value / max * bar_room).max(if *value > 0.0 { 2.0 } else { 0.0 });
        let _ = write!(
            svg,
            r#"<text x="{lx:.1}" y="{ty:.1}" class="label" text-anchor="end">{l}</text><rect x="{label_w}" y="{y:.1}" width="{w:.1}" height="18" fill="{c}"/><text x="{vx:.1}" y="{ty:.1}" class="value">{v}</text>"#,
            lx = label_w - 8.0,
            ty = y + 14.0,
            l = esc(label),
            c = PALETTE[0],
            vx = label_w + w + 6.0,
            v = esc(shown)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A chart's opening tag and its title, which names it to screen readers.
fn open_svg(title: &str, height: f64) -> String {
    format!(
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="{id}-t"><title id="{id}-t">{t}</title>"#,
        id = slug(title),
        t = esc(title)
    )
}

fn slug(s: &str) -> String {
    let h = s
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    format!("c{h:x}")
}

fn count(counts: &[pb::Count], key: &str) -> u64 {
    counts.iter().find(|c| c.key == key).map_or(0, |c| c.count)
}

/// Everything the dashboard page shows, from one GetStats answer.
pub fn dashboard(s: &Speaker, stats: &pb::GetStatsResponse, days: u32) -> serde_json::Value {
    let day_labels: Vec<String> = stats.by_day.iter().map(|d| d.day.clone()).collect();
    let categories: Vec<&str> = callwarden_domain::incident::Category::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| stats.by_day.iter().any(|d| count(&d.by_category, c) > 0))
        .collect();
    let by_category: Vec<Series> = categories
        .iter()
        .enumerate()
        .map(|(i, c)| Series {
            label: s.name("category", c),
            colour: PALETTE[i % PALETTE.len()],
            values: stats
                .by_day
                .iter()
                .map(|d| count(&d.by_category, c))
                .collect(),
        })
        .collect();
    let by_severity: Vec<Series> = SEVERITY_COLOURS
        .iter()
        .rev()
        .map(|(sev, colour)| Series {
            label: s.name("severity", sev),
            colour,
            values: stats
                .by_day
                .iter()
                .map(|d| count(&d.by_severity, sev))
                .collect(),
        })
        .collect();
    let ack = stats.time_to_acknowledge.unwrap_or_default();
    let percentile_rows: Vec<(String, f64, String)> = [
        ("percentile-p50", ack.p50_seconds),
        ("percentile-p90", ack.p90_seconds),
        ("percentile-p99", ack.p99_seconds),
        ("percentile-max", ack.max_seconds),
    ]
    .iter()
    .map(|(id, v)| (s.t(id), *v, s.duration(*v as i64)))
    .collect();
    let daily_ack: Vec<(String, f64, String)> = stats
        .by_day
        .iter()
        .filter(|d| d.acknowledge_p50_seconds > 0.0)
        .map(|d| {
            (
                d.day.clone(),
                d.acknowledge_p50_seconds,
                s.duration(d.acknowledge_p50_seconds as i64),
            )
        })
        .collect();
    let callers: Vec<(String, f64, String)> = stats
        .top_callers
        .iter()
        .map(|c| {
            (
                c.caller_e164.clone(),
                c.incidents as f64,
                s.t_with(
                    "chart-caller-counts",
                    &[
                        ("incidents", Arg::Number(c.incidents as f64)),
                        ("reporters", Arg::Number(c.reporters as f64)),
                    ],
                ),
            )
        })
        .collect();
    let legend = |series: &[Series]| -> Vec<serde_json::Value> {
        series
            .iter()
            .map(|x| json!({ "label": x.label, "colour": x.colour, "total": x.values.iter().sum::<u64>() }))
            .collect()
    };
    let title_category = s.t("chart-by-category");
    let title_severity = s.t("chart-by-severity");
    let has_data = stats.total > 0;
    json!({ "period": s.t_with("dashboard-period", &[
            ("days", Arg::Number(days.into())),
            ("total", Arg::Number(stats.total as f64)),
        ]), "days": days, "has_data": has_data, "category_svg": has_data.then(|| stacked_bars(&title_category, &day_labels, &by_category)), "category_legend": legend(&by_category), "severity_svg": has_data.then(|| stacked_bars(&title_severity, &day_labels, &by_severity)), "severity_legend": legend(&by_severity), "ack_svg": (ack.count > 0).then(|| horizontal_bars(&s.t("chart-acknowledge"), &percentile_rows)), "ack_rows": percentile_rows.iter().map(|r| (r.0.clone(), r.2.clone())).collect::<Vec<_>>(), "ack_count": ack.count, "daily_ack_svg": (!daily_ack.is_empty()).then(|| horizontal_bars(&s.t("chart-acknowledge-daily"), &daily_ack)), "callers_svg": (!callers.is_empty()).then(|| horizontal_bars(&s.t("chart-top-callers"), &callers)), "callers": stats.top_callers.iter().map(|c| json!({ "caller": c.caller_e164, "incidents": c.incidents, "reporters": c.reporters })).collect::<Vec<_>>(), "table": stats.by_day.iter().filter(|d| d.total > 0).map(|d| json!({ "day": d.day, "total": d.total, "categories": d.by_category.iter().map(|c| format!("{} {}", s.name("category", &c.key), c.count)).collect::<Vec<_>>().join(", "), "severities": d.by_severity.iter().map(|c| format!("{} {}", s.name("severity", &c.key), c.count)).collect::<Vec<_>>().join(", ") })).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_stack_to_each_days_total_and_escape_labels() {
        let days = vec!["2026-11-20".to_owned(), "2026-11-21".to_owned()];
        let series = [
            Series {
                label: "A<b>".into(),
                colour: PALETTE[0],
                values: vec![3, 0],
            },
            Series {
                label: "C".into(),
                colour: PALETTE[1],
                values: vec![1, 2],
            },
        ];
        let svg = stacked_bars("Per day", &days, &series);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 3, "zero values draw nothing");
        assert!(svg.contains("A&lt;b&gt;") && !svg.contains("A<b>"));
        // The axis tops out at a round number at or above the tallest day (4).
        assert!(svg.contains(">4</text>"), "{svg}");
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(23.0), 25.0);
        assert_eq!(nice_max(180.0), 200.0);
    }
}
