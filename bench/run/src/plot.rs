//! SVG charts drawn by hand: log-log line charts in the style of a classic
//! benchmark report (one line per channel, dashed horizontal lines for the
//! floors, min..p99 whiskers on latency points).

use std::fmt::Write;

/// One line of points.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// SVG colour.
    pub color: &'static str,
    /// (x, y) points, x ascending; non-positive values are dropped (log axes).
    pub points: Vec<(f64, f64)>,
    /// Optional (low, high) y range per point, same order as `points`.
    pub whiskers: Vec<(f64, f64)>,
}

/// A horizontal reference line.
#[derive(Clone, Debug)]
pub struct HLine {
    /// Legend text.
    pub name: String,
    /// SVG colour.
    pub color: &'static str,
    /// The value.
    pub y: f64,
}

/// One chart.
#[derive(Clone, Debug, Default)]
pub struct Chart {
    /// Title above the plot area.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Format of x tick labels.
    pub x_fmt: Option<fn(f64) -> String>,
    /// Format of y tick labels.
    pub y_fmt: Option<fn(f64) -> String>,
    /// Lines.
    pub series: Vec<Series>,
    /// Reference lines.
    pub hlines: Vec<HLine>,
}

/// A logarithmic axis mapping [lo, hi] (decades or powers of the base) to
/// [from, to] pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogAxis {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
}

impl LogAxis {
    /// An axis covering `values` rounded out to whole powers of `base`.
    pub fn covering(values: &[f64], base: f64, from: f64, to: f64) -> Self {
        let logs: Vec<f64> = values
            .iter()
            .filter(|v| v.is_finite() && **v > 0.0)
            .map(|v| v.log(base))
            .collect();
        let min = logs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (mut lo, mut hi) = if min.is_finite() {
            (min.floor(), max.ceil())
        } else {
            (0.0, 1.0)
        };
        if hi <= lo {
            hi = lo + 1.0;
        }
        if lo == hi {
            lo -= 1.0;
        }
        LogAxis {
            lo: base.powf(lo),
            hi: base.powf(hi),
            from,
            to,
        }
    }

    /// Pixel position of `v` (clamped to the axis).
    pub fn map(&self, v: f64) -> f64 {
        let v = v.clamp(self.lo, self.hi);
        let t = (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln());
        self.from + t * (self.to - self.from)
    }

    /// Tick values: every power of `base` from lo to hi, thinned to at most
    /// `max` ticks.
    pub fn ticks(&self, base: f64, max: usize) -> Vec<f64> {
        let n = ((self.hi / self.lo).log(base).round() as usize) + 1;
        let step = n.div_ceil(max.max(1)).max(1);
        (0..n)
            .step_by(step)
            .map(|i| self.lo * base.powi(i as i32))
            .collect()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Byte sizes for tick labels: 1, 32, 1K, 64K, 1M, 1G.
pub fn fmt_size(v: f64) -> String {
    let v = v.round() as u64;
    match v {
        v if v >= 1 << 30 && v % (1 << 30) == 0 => format!("{}G", v >> 30),
        v if v >= 1 << 20 && v % (1 << 20) == 0 => format!("{}M", v >> 20),
        v if v >= 1 << 10 && v % (1 << 10) == 0 => format!("{}K", v >> 10),
        v => v.to_string(),
    }
}

/// Plain numbers for tick labels: 0.01, 1, 100, 10k, 1M.
pub fn fmt_num(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

const W: f64 = 560.0;
const H: f64 = 530.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 220.0;

/// Renders `charts` side by side, with footer lines (split at `\n`), as one
/// SVG document.
pub fn render(charts: &[Chart], footer: &str) -> String {
    let total_w = W * charts.len().max(1) as f64;
    let footer: Vec<&str> = footer.lines().collect();
    // The footer goes below the longest legend (a legend can outgrow the
    // space under its chart when many channels ran).
    let body = charts.iter().map(legend_end).fold(H, f64::max);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{h}" viewBox="0 0 {total_w} {h}" font-family="sans-serif" font-size="11">"#,
        h = body + 6.0 + 14.0 * footer.len() as f64
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (i, c) in charts.iter().enumerate() {
        let _ = writeln!(s, r#"<g transform="translate({},0)">"#, i as f64 * W);
        chart(&mut s, c);
        s.push_str("</g>\n");
    }
    for (i, line) in footer.iter().enumerate() {
        let _ = writeln!(
            s,
            r##"<text x="10" y="{}" fill="#555">{}</text>"##,
            body + 12.0 + 14.0 * i as f64,
            esc(line)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// First legend row's baseline offset below the plot area, and row height.
const LEGEND_TOP: f64 = 52.0;
const LEGEND_ROW: f64 = 15.0;

/// Where `c`'s legend ends (y of the row after its last entry).
fn legend_end(c: &Chart) -> f64 {
    H - BOTTOM + LEGEND_TOP + LEGEND_ROW * (c.series.len() + c.hlines.len()) as f64
}

/// The plot area: left, right, bottom and top pixel edges.
const X0: f64 = LEFT;
const X1: f64 = W - RIGHT;
const Y0: f64 = H - BOTTOM;
const Y1: f64 = TOP;

/// One chart: frame and grid, reference lines, series on top, legend.
fn chart(s: &mut String, c: &Chart) {
    let (xa, ya) = axes(c);
    frame(s, c, &xa, &ya);
    // Reference lines, then series on top.
    for h in &c.hlines {
        let y = ya.map(h.y);
        let _ = writeln!(
            s,
            r#"<line x1="{X0}" y1="{y:.1}" x2="{X1}" y2="{y:.1}" stroke="{}" stroke-dasharray="6,4" stroke-width="1.5"/>"#,
            h.color
        );
    }
    for se in &c.series {
        series(s, se, &xa, &ya);
    }
    legend(s, c);
}

/// Log axes covering every point, whisker and reference line: x in powers
/// of 2, y in decades.
fn axes(c: &Chart) -> (LogAxis, LogAxis) {
    let xs: Vec<f64> = c
        .series
        .iter()
        .flat_map(|se| se.points.iter().map(|p| p.0))
        .collect();
    let mut ys: Vec<f64> = c
        .series
        .iter()
        .flat_map(|se| {
            se.points
                .iter()
                .map(|p| p.1)
                .chain(se.whiskers.iter().flat_map(|w| [w.0, w.1]))
        })
        .collect();
    ys.extend(c.hlines.iter().map(|h| h.y));
    (
        LogAxis::covering(&xs, 2.0, X0, X1),
        LogAxis::covering(&ys, 10.0, Y0, Y1),
    )
}

/// Title, grid lines with their tick labels, the plot area's border and
/// the axis labels.
fn frame(s: &mut String, c: &Chart, xa: &LogAxis, ya: &LogAxis) {
    let xf = c.x_fmt.unwrap_or(fmt_num);
    let yf = c.y_fmt.unwrap_or(fmt_num);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
        (X0 + X1) / 2.0,
        esc(&c.title)
    );
    for t in xa.ticks(2.0, 11) {
        let x = xa.map(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{Y1}" x2="{x:.1}" y2="{Y0}" stroke="#e4e4e4"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            Y0 + 15.0,
            esc(&xf(t))
        );
    }
    for t in ya.ticks(10.0, 10) {
        let y = ya.map(t);
        let _ = writeln!(
            s,
            r##"<line x1="{X0}" y1="{y:.1}" x2="{X1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            X0 - 5.0,
            y + 4.0,
            esc(&yf(t))
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{X0}" y="{Y1}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        X1 - X0,
        Y0 - Y1
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (X0 + X1) / 2.0,
        Y0 + 32.0,
        esc(&c.x_label)
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(16,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (Y0 + Y1) / 2.0,
        esc(&c.y_label)
    );
}

/// One series: whiskers, the line, then a dot per point (nothing when no
/// point can sit on the log axes).
fn series(s: &mut String, se: &Series, xa: &LogAxis, ya: &LogAxis) {
    let pts: Vec<(f64, f64)> = se
        .points
        .iter()
        .filter(|p| p.0 > 0.0 && p.1 > 0.0)
        .map(|p| (xa.map(p.0), ya.map(p.1)))
        .collect();
    if pts.is_empty() {
        return;
    }
    for (p, w) in se.points.iter().zip(&se.whiskers) {
        if p.0 > 0.0 && w.0 > 0.0 && w.1 > 0.0 {
            let x = xa.map(p.0);
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{}" stroke-opacity="0.5"/>"#,
                ya.map(w.0),
                ya.map(w.1),
                se.color
            );
        }
    }
    let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(
        s,
        r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
        path.join(" "),
        se.color
    );
    for (x, y) in &pts {
        let _ = writeln!(
            s,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{}"/>"#,
            se.color
        );
    }
}

/// The legend below the axis label: series as solid lines, then reference
/// lines dashed.
fn legend(s: &mut String, c: &Chart) {
    let mut ly = Y0 + LEGEND_TOP;
    let mut entry = |name: &str, color: &str, dashed: bool| {
        let dash = if dashed {
            r#" stroke-dasharray="6,4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<line x1="{X0}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            X0 + 24.0,
            X0 + 30.0,
            ly + 4.0,
            esc(name)
        );
        ly += LEGEND_ROW;
    };
    for se in &c.series {
        entry(&se.name, se.color, false);
    }
    for h in &c.hlines {
        entry(&h.name, h.color, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_rounds_out_to_powers_and_maps_ends() {
        let a = LogAxis::covering(&[3.0, 700.0], 10.0, 0.0, 300.0);
        assert_eq!((a.lo, a.hi), (1.0, 1000.0));
        assert!((a.map(1.0) - 0.0).abs() < 1e-9);
        assert!((a.map(1000.0) - 300.0).abs() < 1e-9);
        assert!((a.map(10.0) - 100.0).abs() < 1e-9);
        // Out of range values are clamped; the mapping can run downwards.
        let down = LogAxis::covering(&[1.0, 100.0], 10.0, 200.0, 0.0);
        assert!((down.map(1e9) - 0.0).abs() < 1e-9);
        assert_eq!(a.ticks(10.0, 10), vec![1.0, 10.0, 100.0, 1000.0]);
    }

    #[test]
    fn degenerate_axes_still_span_something() {
        let one = LogAxis::covering(&[64.0], 2.0, 0.0, 100.0);
        assert!(one.hi > one.lo);
        let none = LogAxis::covering(&[0.0, -1.0, f64::NAN], 10.0, 0.0, 100.0);
        assert!(none.hi > none.lo);
        let many = LogAxis::covering(&[1.0, 1073741824.0], 2.0, 0.0, 100.0);
        assert!(many.ticks(2.0, 11).len() <= 11);
    }

    #[test]
    fn labels() {
        assert_eq!(fmt_size(1.0), "1");
        assert_eq!(fmt_size(32.0), "32");
        assert_eq!(fmt_size(65536.0), "64K");
        assert_eq!(fmt_size(1073741824.0), "1G");
        assert_eq!(fmt_num(0.1), "0.1");
        assert_eq!(fmt_num(10000.0), "10k");
    }

    #[test]
    fn svg_has_every_series_floor_and_escaped_text() {
        let c = Chart {
            title: "latency <a&b>".into(),
            x_label: "size".into(),
            y_label: "us".into(),
            x_fmt: Some(fmt_size),
            y_fmt: None,
            series: vec![Series {
                name: "shm-poll".into(),
                color: "#1f77b4",
                points: vec![(1.0, 4.0), (64.0, 5.0), (65536.0, 600.0)],
                whiskers: vec![(3.0, 50.0), (4.0, 60.0), (500.0, 2000.0)],
            }],
            hlines: vec![HLine {
                name: "cache line".into(),
                color: "#888",
                y: 0.12,
            }],
        };
        let svg = render(&[c.clone(), c.clone()], "footer one\nfooter two");
        assert!(svg.contains(">footer one<") && svg.contains(">footer two<"));
        // With a legend longer than the space under the chart, the footer
        // moves below it.
        let mut long = c;
        long.series = (0..20).map(|_| long.series[0].clone()).collect();
        let end = legend_end(&long);
        assert!(end > H);
        let tall = render(&[long], "foot");
        assert!(tall.contains(&format!(r##"y="{}" fill="#555">foot<"##, end + 12.0)));
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("stroke-dasharray").count(), 4);
        assert!(svg.contains("latency &lt;a&amp;b&gt;"));
        assert!(!svg.contains("<a&b>"));
        assert!(!svg.contains("NaN"));
    }
}
