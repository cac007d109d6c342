//! A hand-written SVG of the time line: packets per second (ingress, egress)
//! on top, latency percentiles (p50, p99, p99.9) below; the warm-up is shaded.

use std::fmt::Write as _;

use crate::engine::Bucket;

const W: f64 = 900.0;
const PANEL_H: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;

/// A line of a panel: legend, colour, value of a bucket.
type Series<'a> = (&'a str, &'a str, fn(&Bucket) -> f64);

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn panel(
    svg: &mut String,
    buckets: &[Bucket],
    y0: f64,
    title: &str,
    unit: &str,
    series: &[Series<'_>],
) {
    let t_max = buckets.last().map_or(1.0, |b| {
        b.t_s + (b.t_s / buckets.len().max(1) as f64).max(0.001)
    });
    let v_max = nice_max(
        buckets
            .iter()
            .flat_map(|b| series.iter().map(move |(_, _, f)| f(b)))
            .fold(0.0, f64::max),
    );
    let pw = W - LEFT - RIGHT;
    let x = |t: f64| LEFT + t / t_max * pw;
    let y = |v: f64| y0 + PANEL_H - v / v_max * PANEL_H;
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{}" font-size="14" font-weight="bold">{title}</text>"#,
        y0 - 10.0
    );
    // Warm-up shading.
    if let Some(end) = buckets.iter().rfind(|b| b.warmup) {
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{y0}" width="{:.1}" height="{PANEL_H}" fill="#eeeeee"/><text x="{}" y="{}" font-size="10" fill="#888">warm-up</text>"##,
            x(end.t_s) - LEFT,
            LEFT + 4.0,
            y0 + 12.0
        );
    }
    for k in 0..=4 {
        let v = v_max * f64::from(k) / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{v:.0}</text>"##,
            LEFT + pw,
            LEFT - 4.0,
            y(v) + 3.0,
            yy = y(v)
        );
    }
    for k in 0..=5 {
        let t = t_max * f64::from(k) / 5.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{t:.1} s</text>"#,
            x(t),
            y0 + PANEL_H + 14.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="12" y="{:.1}" font-size="11" transform="rotate(-90 12 {:.1})" text-anchor="middle">{unit}</text>"#,
        y0 + PANEL_H / 2.0,
        y0 + PANEL_H / 2.0
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{y0}" width="{pw}" height="{PANEL_H}" fill="none" stroke="#333"/>"##
    );
    for (i, (name, color, f)) in series.iter().enumerate() {
        let pts: Vec<String> = buckets
            .iter()
            .map(|b| format!("{:.1},{:.1}", x(b.t_s), y(f(b))))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = y0 + 14.0 + 16.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{:.1}" x2="{:.1}" y1="{ly:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="11">{name}</text>"#,
            W - RIGHT + 10.0,
            W - RIGHT + 30.0,
            W - RIGHT + 35.0,
            ly + 4.0
        );
    }
}

/// The SVG document for `buckets`, titled `title`.
pub fn svg(title: &str, buckets: &[Bucket]) -> String {
    let h = TOP + 2.0 * PANEL_H + GAP + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="18" font-size="13" text-anchor="middle">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    panel(
        &mut s,
        buckets,
        TOP + 10.0,
        "packets per second",
        "pps",
        &[
            ("ingress", "#1f77b4", |b| b.ingress_pps),
            ("egress", "#ff7f0e", |b| b.egress_pps),
        ],
    );
    panel(
        &mut s,
        buckets,
        TOP + 10.0 + PANEL_H + GAP,
        "one-way latency",
        "µs",
        &[
            ("p50", "#2ca02c", |b| b.p50_us),
            ("p99", "#d62728", |b| b.p99_us),
            ("p99.9", "#9467bd", |b| b.p999_us),
        ],
    );
    s.push_str("</svg>\n");
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_both_panels_and_every_series() {
        let b: Vec<Bucket> = (0..10)
            .map(|i| Bucket {
                t_s: f64::from(i) * 0.5,
                warmup: i < 2,
                ingress_pps: 100.0,
                egress_pps: 200.0,
                p50_us: 40.0,
                p99_us: 90.0,
                p999_us: 150.0,
            })
            .collect();
        let s = svg("meeting <3>", &b);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 5);
        assert!(s.contains("warm-up") && s.contains("meeting &lt;3&gt;"));
        assert!(!s.contains("NaN"));
        assert!(!svg("empty", &[]).contains("NaN"));
    }
}
