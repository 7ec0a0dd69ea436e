//! Charts as server-rendered SVG: no script, no inline style (colours come from
//! classes in the console's CSS), a `<title>` for screen readers, and every
//! chart sits next to a table of the same numbers.

use std::fmt::Write as _;

/// Escapes text for SVG (XML) content and attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A round upper bound for an axis: 1, 2, 5 × 10^n.
fn nice_max(max: u64) -> u64 {
    if max <= 5 {
        return 5;
    }
    let mut base = 1u64;
    loop {
        for m in [1, 2, 5] {
            if base * m >= max {
                return base * m;
            }
        }
        base = base.saturating_mul(10);
    }
}

fn open(w: u32, h: u32, title: &str) -> String {
    format!(
        "<svg class=\"chart-svg\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         xmlns=\"http://www.w3.org/2000/svg\" preserveAspectRatio=\"xMinYMin meet\">\
         <title>{}</title>",
        esc(title)
    )
}

/// A label short enough for the space beside a bar (the table has it whole).
fn clip(label: &str) -> String {
    const MAX: usize = 27;
    if label.chars().count() <= MAX {
        return label.to_owned();
    }
    let mut s: String = label.chars().take(MAX - 1).collect();
    s.push('…');
    s
}

/// `MM-DD` of a `YYYY-MM-DD` week start, for axis labels.
fn short_date(d: &str) -> &str {
    d.get(5..).unwrap_or(d)
}

/// Horizontal bars, one per label.
pub fn bars(title: &str, rows: &[(String, u64)]) -> String {
    let (w, row_h, label_w) = (480u32, 30u32, 200u32);
    let h = (rows.len() as u32).max(1) * row_h + 10;
    let max = nice_max(rows.iter().map(|r| r.1).max().unwrap_or(0));
    let span = (w - label_w - 50) as f64;
    let mut s = open(w, h, title);
    for (i, (label, n)) in rows.iter().enumerate() {
        let y = i as u32 * row_h + 5;
        let bw = (*n as f64 / max as f64 * span).round();
        let _ = write!(
            s,
            "<text class=\"c-label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect class=\"c-track\" x=\"{label_w}\" y=\"{}\" width=\"{span}\" height=\"18\" rx=\"3\"/>\
             <rect class=\"c-bar\" x=\"{label_w}\" y=\"{}\" width=\"{bw}\" height=\"18\" rx=\"3\"/>\
             <text class=\"c-value\" x=\"{}\" y=\"{}\">{n}</text>",
            label_w - 10,
            y + 14,
            esc(&clip(label)),
            y + 1,
            y + 1,
            label_w as f64 + bw + 6.0,
            y + 14,
        );
    }
    s.push_str("</svg>");
    s
}

/// Two bars per label (for example, due now and due within 30 days).
pub fn paired(title: &str, rows: &[(String, u64, u64)], names: (&str, &str)) -> String {
    let (w, row_h, label_w) = (480u32, 44u32, 200u32);
    let h = (rows.len() as u32).max(1) * row_h + 34;
    let max = nice_max(rows.iter().map(|r| r.1.max(r.2)).max().unwrap_or(0));
    let span = (w - label_w - 50) as f64;
    let mut s = open(w, h, title);
    legend(&mut s, label_w, 12, &[(names.0, "c-s1"), (names.1, "c-s2")]);
    for (i, (label, a, b)) in rows.iter().enumerate() {
        let y = i as u32 * row_h + 30;
        let _ = write!(
            s,
            "<text class=\"c-label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            label_w - 10,
            y + 19,
            esc(&clip(label))
        );
        for (j, (n, class)) in [(*a, "c-s1"), (*b, "c-s2")].iter().enumerate() {
            let yy = y + j as u32 * 16;
            let bw = (*n as f64 / max as f64 * span).round();
            let _ = write!(
                s,
                "<rect class=\"{class}\" x=\"{label_w}\" y=\"{yy}\" width=\"{bw}\" height=\"13\" rx=\"2\"/>\
                 <text class=\"c-value\" x=\"{}\" y=\"{}\">{n}</text>",
                label_w as f64 + bw + 6.0,
                yy + 11
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn legend(s: &mut String, x: u32, y: u32, items: &[(&str, &str)]) {
    let mut x = x;
    for (name, class) in items {
        let _ = write!(
            s,
            "<rect class=\"{class}\" x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" rx=\"2\"/>\
             <text class=\"c-legend\" x=\"{}\" y=\"{y}\">{}</text>",
            y - 10,
            x + 18,
            esc(name)
        );
        x += 30 + 8 * name.chars().count() as u32;
    }
}

/// Grouped vertical bars per week: received and closed.
pub fn weekly(title: &str, weeks: &[(String, u64, u64)]) -> String {
    let (w, h) = (480u32, 240u32);
    let (left, top, bottom) = (40u32, 30u32, 40u32);
    let plot_h = (h - top - bottom) as f64;
    let max = nice_max(weeks.iter().map(|x| x.1.max(x.2)).max().unwrap_or(0));
    let slot = (w - left - 10) as f64 / weeks.len().max(1) as f64;
    let bar = (slot * 0.34).max(2.0);
    let mut s = open(w, h, title);
    legend(
        &mut s,
        left,
        16,
        &[("Received", "c-s1"), ("Closed", "c-s2")],
    );
    for k in 0..=5u64 {
        let v = max * k / 5;
        let y = top as f64 + plot_h - plot_h * k as f64 / 5.0;
        let _ = write!(
            s,
            "<line class=\"c-grid\" x1=\"{left}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\"/>\
             <text class=\"c-tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{v}</text>",
            w - 10,
            left - 6,
            y + 4.0
        );
    }
    for (i, (week, received, closed)) in weeks.iter().enumerate() {
        let x0 = left as f64 + slot * i as f64 + slot * 0.14;
        for (j, (n, class)) in [(*received, "c-s1"), (*closed, "c-s2")].iter().enumerate() {
            let bh = *n as f64 / max as f64 * plot_h;
            let x = x0 + j as f64 * (bar + 2.0);
            let _ = write!(
                s,
                "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\"/>",
                top as f64 + plot_h - bh
            );
        }
        if i % 2 == 0 || weeks.len() <= 6 {
            let _ = write!(
                s,
                "<text class=\"c-tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                left as f64 + slot * i as f64 + slot / 2.0,
                h - bottom + 18,
                esc(short_date(week))
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// One line of a rate chart: its label and (week, rate) points.
pub type Series = (String, Vec<(String, Option<f64>)>);

/// Lines of rates (0 to 1) per week, one per series; weeks without a rate
/// break the line.
pub fn rates(title: &str, series: &[Series]) -> String {
    let w = 860u32;
    let (left, top, bottom) = (46u32, 20u32, 40u32);
    let legend_rows = series.len().div_ceil(2) as u32;
    let plot_h = 200f64;
    let h = top + plot_h as u32 + bottom + legend_rows * 22 + 6;
    let weeks = series.first().map(|x| x.1.len()).unwrap_or(0).max(1);
    let step = (w - left - 20) as f64 / (weeks.saturating_sub(1)).max(1) as f64;
    let mut s = open(w, h, title);
    for k in 0..=4u32 {
        let y = top as f64 + plot_h - plot_h * k as f64 / 4.0;
        let _ = write!(
            s,
            "<line class=\"c-grid\" x1=\"{left}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\"/>\
             <text class=\"c-tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}%</text>",
            w - 20,
            left - 6,
            y + 4.0,
            k * 25
        );
    }
    if let Some((_, points)) = series.first() {
        for (i, (week, _)) in points.iter().enumerate() {
            if i % 2 == 0 || weeks <= 6 {
                let _ = write!(
                    s,
                    "<text class=\"c-tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                    left as f64 + step * i as f64,
                    top + plot_h as u32 + 18,
                    esc(short_date(week))
                );
            }
        }
    }
    for (n, (label, points)) in series.iter().enumerate() {
        let class = format!("c-line c-l{}", n % 6);
        let mut path = String::new();
        let mut pen_down = false;
        for (i, (_, rate)) in points.iter().enumerate() {
            match rate {
                Some(r) => {
                    let x = left as f64 + step * i as f64;
                    let y = top as f64 + plot_h - plot_h * r.clamp(0.0, 1.0);
                    let _ = write!(path, "{}{x:.1},{y:.1} ", if pen_down { "L" } else { "M" });
                    let _ = write!(
                        s,
                        "<circle class=\"{class} c-dot\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\"/>"
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !path.is_empty() {
            let _ = write!(s, "<path class=\"{class}\" d=\"{}\"/>", path.trim_end());
        }
        let lx = left + (n as u32 % 2) * 400;
        let ly = top + plot_h as u32 + bottom + (n as u32 / 2) * 22 + 10;
        let _ = write!(
            s,
            "<line class=\"{class}\" x1=\"{lx}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>\
             <text class=\"c-legend\" x=\"{}\" y=\"{ly}\">{}</text>",
            lx + 20,
            ly - 4,
            ly - 4,
            lx + 28,
            esc(label)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_no_inline_style() {
        let svg = bars("t", &[("<script>&".into(), 3)]);
        assert!(svg.contains("&lt;script&gt;&amp;"), "{svg}");
        assert!(!svg.contains("<script"));
        assert!(!svg.contains("style="));
        let svg = rates(
            "r",
            &[("a\"b".into(), vec![("2026-11-02".into(), Some(0.5))])],
        );
        assert!(svg.contains("a&quot;b"));
        assert!(!svg.contains("style="));
    }

    #[test]
    fn axes_are_round() {
        assert_eq!(nice_max(0), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(130), 200);
        assert_eq!(nice_max(501), 1000);
    }
}
