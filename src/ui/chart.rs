//! Line charts drawn on the server as inline SVG: no script and nothing fetched, so
//! they show on an offline site and in a page saved to disk.

use maud::{Markup, html};

/// One line: its legend and CSS class, and its points (unix seconds, value).
pub struct Series<'a> {
    pub name: &'a str,
    pub class: &'a str,
    pub points: Vec<(u64, f64)>,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 84.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

/// A chart of `series` on one time axis and one value axis from 0, the axis labelled
/// by `label`; a note instead when there is nothing to draw yet.
pub fn line_chart(title: &str, series: &[Series<'_>], label: fn(f64) -> String) -> Markup {
    let times = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (t0, t1) = (times.clone().min(), times.max());
    let (Some(t0), Some(t1)) = (t0, t1) else {
        return html! { p.empty { (title) ": no points yet." } };
    };
    let span = (t1.saturating_sub(t0)).max(1) as f64;
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let x = |t: u64| LEFT + (t.saturating_sub(t0)) as f64 / span * (WIDTH - LEFT - 4.0);
    let y = |v: f64| TOP + (1.0 - v / top) * (HEIGHT - TOP - BOTTOM);
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(title) {
                line.axis x1=(LEFT) y1=(y(0.0)) x2=(WIDTH) y2=(y(0.0)) {}
                line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(y(0.0)) {}
                text.tick x=(LEFT - 6.0) y=(y(top / 1.1) + 4.0) text-anchor="end" { (label(top / 1.1)) }
                text.tick x=(LEFT - 6.0) y=(y(0.0)) text-anchor="end" { (label(0.0)) }
                text.tick x=(LEFT) y=(HEIGHT - 4.0) { (stamp(t0)) }
                text.tick x=(WIDTH - 4.0) y=(HEIGHT - 4.0) text-anchor="end" { (stamp(t1)) }
                @for s in series {
                    polyline class=(s.class) fill="none" points=(
                        s.points.iter().map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
                            .collect::<Vec<_>>().join(" ")
                    ) {}
                }
            }
            ul.legend {
                @for s in series { li class=(s.class) { (s.name) } }
            }
        }
    }
}

/// A unix time as "YYYY-MM-DD HH:MM" UTC.
pub fn stamp(secs: u64) -> String {
    let t = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok());
    match t {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        None => secs.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_each_series_within_its_box() {
        let s = [
            Series {
                name: "logical",
                class: "a",
                points: vec![(100, 0.0), (200, 50.0), (300, 100.0)],
            },
            Series {
                name: "stored",
                class: "b",
                points: vec![(100, 0.0), (300, 10.0)],
            },
        ];
        let svg = line_chart("bytes", &s, |v| format!("{v:.0}")).into_string();
        assert_eq!(svg.matches("<polyline").count(), 2);
        // The highest point is near the top, the first at the left axis.
        assert!(svg.contains(&format!("{LEFT:.1},")), "{svg}");
        assert!(svg.contains("1970-01-01 00:01") && svg.contains("1970-01-01 00:05"));
        let empty = line_chart("bytes", &[], |v| format!("{v}")).into_string();
        assert!(empty.contains("no points yet"));
    }
}
