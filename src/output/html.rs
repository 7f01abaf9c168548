//! HTML and inline SVG building blocks for `persona report`: escaping of every string placed in
//! a page, number formats, and three chart builders drawn as plain SVG elements (horizontal bars
//! with an optional reference bar and marker line, a heat grid, and a two-column flow diagram).
//! No scripts, fonts or images: a chart is text the browser draws as it stands.

use std::fmt::Write as _;

use unicode_width::UnicodeWidthStr;

/// `s` made safe as HTML or SVG text and as a quoted attribute value: `&`, `<`, `>`, `"` and `'`
/// become character references; everything else (Chinese included) stays as UTF-8.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab and line breaks are not allowed in HTML text.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `1234567` → `1,234,567`.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A share (0..=1) as `12.3 %`.
pub fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

/// A tick's share: `20 %`, or `2.5 %` when it is not a whole percent.
pub fn percent_tick(share: f64) -> String {
    let p = share * 100.0;
    if (p - p.round()).abs() < 1e-9 { format!("{p:.0} %") } else { format!("{p:.1} %") }
}

/// `s` cut to at most `columns` terminal columns (a Chinese character is two), with `…` when cut.
fn clip(s: &str, columns: usize) -> String {
    if s.width() <= columns {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w + 1 > columns {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// Pixels per terminal column of label text at the page's 12px font (a CJK character is two
/// columns, about 12px).
const PX_PER_COLUMN: f64 = 6.6;
/// Width of every chart, in SVG user units (the SVG scales to the page width).
const WIDTH: f64 = 760.0;

/// One bar of a [`BarChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    /// The bar's length on the chart's scale.
    pub value: f64,
    /// A thinner comparison bar under it (e.g. the share among everyone), if any.
    pub reference: Option<f64>,
    /// The figures written at the right of the row.
    pub note: String,
    /// Drawn in the accent colour (e.g. a TGI above 100).
    pub highlight: bool,
}

/// A horizontal bar chart: one labelled row per bar, an x axis with ticks and a title, an
/// optional legend and an optional vertical marker (e.g. TGI 100).
#[derive(Debug, Clone)]
pub struct BarChart {
    /// What the chart shows, for screen readers (`aria-label`) and as the SVG's `<title>`.
    pub title: String,
    pub bars: Vec<Bar>,
    /// The largest value the axis must reach; it ends at the next round tick above.
    pub max: f64,
    /// The x axis's title, under the ticks.
    pub axis_label: String,
    /// Formats tick values.
    pub tick_format: fn(f64) -> String,
    /// A vertical line at this value with this text.
    pub marker: Option<(f64, String)>,
    /// Names of the main and reference bars, drawn as a legend above the bars.
    pub legend: Option<(String, String)>,
}

/// A round tick step (1, 2, 2.5 or 5 times a power of ten) and the number of steps that reach
/// `max` with at most five steps; (1, 1) for an empty or invalid `max`.
pub fn axis(max: f64) -> (f64, usize) {
    if !(max > 0.0 && max.is_finite()) {
        return (1.0, 1);
    }
    let magnitude = 10f64.powf((max / 5.0).log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| max / step <= 5.0 + 1e-9)
        .unwrap_or(10.0 * magnitude);
    (step, ((max / step) - 1e-9).ceil().max(1.0) as usize)
}

/// Row pitch and bar heights of [`BarChart`].
const ROW: f64 = 22.0;
const BAR: f64 = 12.0;
const REFERENCE_BAR: f64 = 4.0;

impl BarChart {
    /// The chart as an `<svg>` element.
    pub fn to_svg(&self) -> String {
        let label_columns = self.bars.iter().map(|b| b.label.width()).max().unwrap_or(0).clamp(4, 30);
        let label_w = label_columns as f64 * PX_PER_COLUMN + 12.0;
        let note_columns = self.bars.iter().map(|b| b.note.width()).max().unwrap_or(0).clamp(4, 40);
        let note_w = note_columns as f64 * PX_PER_COLUMN + 12.0;
        let x0 = label_w;
        let plot_w = (WIDTH - label_w - note_w).max(120.0);
        let top = if self.legend.is_some() { 26.0 } else { 8.0 };
        let plot_h = self.bars.len() as f64 * ROW;
        let height = top + plot_h + 44.0;
        let width = x0 + plot_w + note_w;
        let (step, ticks) = axis(self.max);
        let max = step * ticks as f64;
        let x = |v: f64| x0 + (v.clamp(0.0, max) / max) * plot_w;

        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="chart bars" viewBox="0 0 {width:.0} {height:.0}" width="{width:.0}" height="{height:.0}" role="img" aria-label="{title}"><title>{title}</title>"#,
            title = escape(&self.title)
        );
        if let Some((main, reference)) = &self.legend {
            let _ = write!(
                s,
                r#"<rect class="bar" x="{x0:.1}" y="6" width="12" height="{BAR}"/><text x="{:.1}" y="16">{}</text><rect class="ref" x="{:.1}" y="10" width="12" height="{REFERENCE_BAR}"/><text x="{:.1}" y="16">{}</text>"#,
                x0 + 16.0,
                escape(main),
                x0 + 180.0,
                x0 + 196.0,
                escape(reference)
            );
        }
        for i in 0..=ticks {
            let v = step * i as f64;
            let tx = x(v);
            let _ = write!(
                s,
                r#"<line class="grid" x1="{tx:.1}" y1="{top:.1}" x2="{tx:.1}" y2="{:.1}"/><text class="tick" x="{tx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                top + plot_h,
                top + plot_h + 14.0,
                escape(&(self.tick_format)(v))
            );
        }
        let _ = write!(
            s,
            r#"<line class="axis" x1="{x0:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/><text class="axis-label" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            top + plot_h,
            x0 + plot_w,
            top + plot_h,
            x0 + plot_w / 2.0,
            top + plot_h + 34.0,
            escape(&self.axis_label)
        );
        for (i, b) in self.bars.iter().enumerate() {
            let y = top + i as f64 * ROW;
            let class = if b.highlight { "bar hi" } else { "bar" };
            let _ = write!(
                s,
                r#"<g><title>{}: {}</title><text class="label" x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect class="track" x="{x0:.1}" y="{:.1}" width="{plot_w:.1}" height="{BAR}"/><rect class="{class}" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{BAR}"/>"#,
                escape(&b.label),
                escape(&b.note),
                x0 - 6.0,
                y + 14.0,
                escape(&clip(&b.label, label_columns)),
                y + 4.0,
                y + 4.0,
                x(b.value) - x0
            );
            if let Some(r) = b.reference {
                let _ = write!(
                    s,
                    r#"<rect class="ref" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{REFERENCE_BAR}"/>"#,
                    y + 4.0 + BAR + 1.0,
                    x(r) - x0
                );
            }
            let _ = write!(
                s,
                r#"<text class="note" x="{:.1}" y="{:.1}">{}</text></g>"#,
                x0 + plot_w + 8.0,
                y + 14.0,
                escape(&clip(&b.note, note_columns))
            );
        }
        if let Some((v, text)) = &self.marker
            && *v <= max
        {
            let mx = x(*v);
            let _ = write!(
                s,
                r#"<line class="marker" x1="{mx:.1}" y1="{:.1}" x2="{mx:.1}" y2="{:.1}"/><text class="marker-label" x="{:.1}" y="{:.1}">{}</text>"#,
                top - 4.0,
                top + plot_h,
                mx + 3.0,
                top - 6.0 + if self.legend.is_some() { 0.0 } else { 10.0 },
                escape(text)
            );
        }
        s.push_str("</svg>");
        s
    }
}

/// A grid of counts, each cell shaded by its share of the largest, with row and column labels
/// and an axis title on each side.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatGrid {
    pub title: String,
    /// Labels of the rows, top to bottom.
    pub rows: Vec<String>,
    /// Labels of the columns, left to right.
    pub columns: Vec<String>,
    /// `values[row][column]`.
    pub values: Vec<Vec<i64>>,
    pub row_axis: String,
    pub column_axis: String,
}

impl HeatGrid {
    /// The grid as an `<svg>` element.
    pub fn to_svg(&self) -> String {
        const CELL_W: f64 = 96.0;
        const CELL_H: f64 = 44.0;
        let left = 40.0 + self.rows.iter().map(|r| r.width()).max().unwrap_or(0) as f64 * PX_PER_COLUMN;
        let top = 30.0;
        let width = left + CELL_W * self.columns.len() as f64 + 10.0;
        let height = top + CELL_H * self.rows.len() as f64 + 44.0;
        let largest = self.values.iter().flatten().copied().max().unwrap_or(0).max(1);
        let total: i64 = self.values.iter().flatten().sum();
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="chart grid" viewBox="0 0 {width:.0} {height:.0}" width="{width:.0}" height="{height:.0}" role="img" aria-label="{title}"><title>{title}</title>"#,
            title = escape(&self.title)
        );
        for (c, label) in self.columns.iter().enumerate() {
            let _ = write!(
                s,
                r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                left + CELL_W * (c as f64 + 0.5),
                top - 8.0,
                escape(label)
            );
        }
        for (r, label) in self.rows.iter().enumerate() {
            let y = top + CELL_H * r as f64;
            let _ = write!(
                s,
                r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                left - 8.0,
                y + CELL_H / 2.0 + 4.0,
                escape(label)
            );
            for c in 0..self.columns.len() {
                let n = self.values.get(r).and_then(|row| row.get(c)).copied().unwrap_or(0);
                let level = n as f64 / largest as f64;
                let share = if total > 0 { n as f64 / total as f64 } else { 0.0 };
                let x = left + CELL_W * c as f64;
                let text_class = if level > 0.55 { "cell-text dark" } else { "cell-text" };
                let _ = write!(
                    s,
                    r#"<g><title>{} {}, {} {}: {} ({})</title><rect class="cell" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill-opacity="{:.3}"/><text class="{text_class}" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text></g>"#,
                    escape(&self.row_axis),
                    escape(label),
                    escape(&self.column_axis),
                    escape(&self.columns[c]),
                    count(n),
                    percent(share),
                    x + 1.0,
                    y + 1.0,
                    CELL_W - 2.0,
                    CELL_H - 2.0,
                    0.06 + 0.94 * level,
                    x + CELL_W / 2.0,
                    y + CELL_H / 2.0 + 4.0,
                    count(n)
                );
            }
        }
        let bottom = top + CELL_H * self.rows.len() as f64;
        let _ = write!(
            s,
            r#"<text class="axis-label" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text class="axis-label" x="12" y="{:.1}" text-anchor="middle" transform="rotate(-90 12 {:.1})">{}</text></svg>"#,
            left + CELL_W * self.columns.len() as f64 / 2.0,
            bottom + 30.0,
            escape(&self.column_axis),
            top + (bottom - top) / 2.0,
            top + (bottom - top) / 2.0,
            escape(&self.row_axis)
        );
        s
    }
}

/// A two-column flow (Sankey) diagram: the users in each stage at a first instant (left) moving
/// to each stage at a second (right), each band as wide as its users.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub title: String,
    /// The stages, in the order drawn top to bottom on both sides.
    pub stages: Vec<String>,
    /// (from stage, to stage, users).
    pub links: Vec<(String, String, i64)>,
    pub left_label: String,
    pub right_label: String,
}

impl Flow {
    /// The diagram as an `<svg>` element.
    pub fn to_svg(&self) -> String {
        const NODE_W: f64 = 14.0;
        const GAP: f64 = 14.0;
        const PLOT_H: f64 = 320.0;
        let (left_x, right_x) = (170.0, WIDTH - 170.0 - NODE_W);
        let top = 34.0;
        let total: i64 = self.links.iter().map(|l| l.2.max(0)).sum();
        let gaps = GAP * self.stages.len().saturating_sub(1) as f64;
        let scale = if total > 0 { (PLOT_H - gaps) / total as f64 } else { 0.0 };
        let sum = |pick: &dyn Fn(&(String, String, i64)) -> bool| -> i64 {
            self.links.iter().filter(|l| pick(l)).map(|l| l.2.max(0)).sum()
        };
        let outgoing: Vec<i64> = self.stages.iter().map(|st| sum(&|l| &l.0 == st)).collect();
        let incoming: Vec<i64> = self.stages.iter().map(|st| sum(&|l| &l.1 == st)).collect();
        // The top of each node; a band leaves (enters) its node below the bands before it.
        let tops = |sizes: &[i64]| -> Vec<f64> {
            let mut y = top;
            sizes
                .iter()
                .map(|n| {
                    let t = y;
                    y += *n as f64 * scale + GAP;
                    t
                })
                .collect()
        };
        let (left_tops, right_tops) = (tops(&outgoing), tops(&incoming));
        let height = top + PLOT_H + 20.0;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="chart flow" viewBox="0 0 {WIDTH:.0} {height:.0}" width="{WIDTH:.0}" height="{height:.0}" role="img" aria-label="{title}"><title>{title}</title><text class="axis-label" x="{:.1}" y="16" text-anchor="middle">{}</text><text class="axis-label" x="{:.1}" y="16" text-anchor="middle">{}</text>"#,
            left_x + NODE_W / 2.0,
            escape(&self.left_label),
            right_x + NODE_W / 2.0,
            escape(&self.right_label),
            title = escape(&self.title)
        );
        let mut left_used = vec![0.0; self.stages.len()];
        let mut right_used = vec![0.0; self.stages.len()];
        let position = |name: &str| self.stages.iter().position(|st| st == name);
        let mid = (left_x + NODE_W + right_x) / 2.0;
        for (from, to, users) in &self.links {
            let (Some(a), Some(b)) = (position(from), position(to)) else { continue };
            let h = (*users).max(0) as f64 * scale;
            let (y0, z0) = (left_tops[a] + left_used[a], right_tops[b] + right_used[b]);
            left_used[a] += h;
            right_used[b] += h;
            let (x0, x1) = (left_x + NODE_W, right_x);
            let _ = write!(
                s,
                r#"<path class="link s{a}" d="M{x0:.1} {y0:.1}C{mid:.1} {y0:.1} {mid:.1} {z0:.1} {x1:.1} {z0:.1}L{x1:.1} {:.1}C{mid:.1} {:.1} {mid:.1} {:.1} {x0:.1} {:.1}Z"><title>{} → {}: {}</title></path>"#,
                z0 + h,
                z0 + h,
                y0 + h,
                y0 + h,
                escape(from),
                escape(to),
                count(*users)
            );
        }
        for (i, stage) in self.stages.iter().enumerate() {
            for (x, y, n, anchor, text_x) in [
                (left_x, left_tops[i], outgoing[i], "end", left_x - 6.0),
                (right_x, right_tops[i], incoming[i], "start", right_x + NODE_W + 6.0),
            ] {
                let h = (n as f64 * scale).max(1.0);
                let _ = write!(
                    s,
                    r#"<g><title>{}: {}</title><rect class="node s{i}" x="{x:.1}" y="{y:.1}" width="{NODE_W}" height="{h:.1}"/><text class="label" x="{text_x:.1}" y="{:.1}" text-anchor="{anchor}">{} {}</text></g>"#,
                    escape(stage),
                    count(n),
                    y + h / 2.0 + 4.0,
                    escape(stage),
                    count(n)
                );
            }
        }
        s.push_str("</svg>");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_quotes_and_keeps_chinese() {
        assert_eq!(escape(r#"<b>&"x"'</b>"#), "&lt;b&gt;&amp;&quot;x&quot;&#39;&lt;/b&gt;");
        assert_eq!(escape("王芳 & 李"), "王芳 &amp; 李");
        assert_eq!(escape("&amp;"), "&amp;amp;", "escaping is not idempotent: text, not markup");
        assert_eq!(escape("a\u{0}b\tc"), "a\u{fffd}b\tc");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(-12345), "-12,345");
        assert_eq!(percent(0.7214), "72.1 %");
        assert_eq!(percent_tick(0.2), "20 %");
        assert_eq!(percent_tick(0.025), "2.5 %");
    }

    #[test]
    fn axes_end_at_a_round_tick() {
        assert_eq!(axis(0.525), (0.2, 3));
        assert_eq!(axis(714.0), (200.0, 4));
        assert_eq!(axis(1.0), (0.2, 5));
        assert_eq!(axis(0.25), (0.05, 5));
        assert_eq!(axis(0.0), (1.0, 1));
        assert_eq!(axis(f64::NAN), (1.0, 1));
        let (step, n) = axis(0.131);
        assert!((step - 0.05).abs() < 1e-12 && n == 3, "{step} {n}");
    }

    #[test]
    fn labels_are_clipped_by_display_width() {
        assert_eq!(clip("gold", 10), "gold");
        assert_eq!(clip("abcdefghij", 5), "abcd…");
        assert_eq!(clip("王芳王芳王芳", 6), "王芳…");
    }

    fn chart(bars: Vec<Bar>) -> BarChart {
        BarChart {
            title: "tier of <vip>".into(),
            bars,
            max: 1.0,
            axis_label: "share of members".into(),
            tick_format: |v| percent(v),
            marker: None,
            legend: None,
        }
    }

    fn bar(label: &str, value: f64) -> Bar {
        Bar { label: label.into(), value, reference: None, note: format!("{value}"), highlight: false }
    }

    /// The `width` attributes of the `rect`s with `class`, in order.
    fn widths(svg: &str, class: &str) -> Vec<f64> {
        svg.split("<rect")
            .skip(1)
            .filter(|r| r.contains(&format!(r#"class="{class}""#)))
            .map(|r| {
                let w = r.split(r#"width=""#).nth(1).expect("a width");
                w[..w.find('"').expect("a closing quote")].parse().expect("a number")
            })
            .collect()
    }

    #[test]
    fn bars_are_as_long_as_their_values_on_one_scale() {
        let svg = chart(vec![bar("gold", 1.0), bar("silver", 0.5), bar("bronze", 0.0), bar("over", 3.0)]).to_svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        let w = widths(&svg, "bar");
        assert_eq!(w.len(), 4);
        assert!(w[0] > 100.0);
        assert!((w[1] - w[0] / 2.0).abs() < 0.11, "{w:?}");
        assert_eq!(w[2], 0.0);
        assert_eq!(w[3], w[0], "a value beyond the axis is clamped to it");
        // One track per row, ticks every 20 % up to 100 %, and the axis title.
        assert_eq!(widths(&svg, "track").len(), 4);
        assert_eq!(svg.matches(r#"class="tick""#).count(), 6);
        assert!(svg.contains(">100.0 %</text>") && svg.contains(">share of members</text>"));
    }

    #[test]
    fn bar_chart_escapes_every_string_it_places() {
        let mut c = chart(vec![Bar {
            label: "<script>alert('x')</script>".into(),
            value: 0.5,
            reference: Some(0.25),
            note: "a & b".into(),
            highlight: true,
        }]);
        c.legend = Some(("members \"A\"".into(), "everyone".into()));
        c.marker = Some((0.5, "<mid>".into()));
        let svg = c.to_svg();
        assert!(!svg.contains("<script") && !svg.contains("<mid>") && !svg.contains("<vip>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;") && svg.contains("a &amp; b") && svg.contains("&quot;A&quot;"));
        assert!(svg.contains(r#"class="bar hi""#) && widths(&svg, "ref").len() == 2, "legend and reference bars");
        assert!(svg.contains(r#"class="marker""#));
    }

    #[test]
    fn empty_and_zero_charts_still_draw_a_valid_svg() {
        let svg = chart(Vec::new()).to_svg();
        assert!(svg.ends_with("</svg>") && !svg.contains("NaN"));
        let mut zero = chart(vec![bar("a", 0.0)]);
        zero.max = 0.0;
        let svg = zero.to_svg();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn heat_grid_draws_one_cell_per_value() {
        let g = HeatGrid {
            title: "rfm".into(),
            rows: vec!["R=2".into(), "R=1".into()],
            columns: vec!["F=1".into(), "F=2".into(), "F=3".into()],
            values: vec![vec![1, 2, 3], vec![0, 0, 6]],
            row_axis: "recency".into(),
            column_axis: "frequency <F>".into(),
        };
        let svg = g.to_svg();
        assert_eq!(svg.matches(r#"class="cell""#).count(), 6);
        assert!(svg.contains(r#"fill-opacity="1.000""#) && svg.contains("frequency &lt;F&gt;"));
    }

    #[test]
    fn flow_bands_leave_and_enter_their_nodes() {
        let f = Flow {
            title: "flow".into(),
            stages: vec!["a".into(), "b".into()],
            links: vec![("a".into(), "a".into(), 3), ("a".into(), "b".into(), 1), ("b".into(), "b".into(), 4)],
            left_label: "then".into(),
            right_label: "now".into(),
        };
        let svg = f.to_svg();
        assert_eq!(svg.matches(r#"<path class="link"#).count(), 3);
        assert_eq!(svg.matches(r#"class="node"#).count(), 4);
        assert!(svg.contains(">a 4</text>") && svg.contains(">b 5</text>"), "{svg}");
        assert!(!svg.contains("NaN"));
    }
}
