//! The page `persona report` writes: one self-contained HTML document (inline CSS and SVG, no
//! scripts, no external resources) with an audience's portrait and TGI, its overlap with its
//! most distinguishing tags, its RFM grid and its lifecycle, from figures the command gathered.

use std::fmt::Write as _;

use super::html::{Bar, BarChart, Flow, HeatGrid, count, escape, percent, percent_tick};

/// One group of a portrait: a row of `breakdown()` or `top_tags()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The value, band or tag; `None` for the users without a value (NULL).
    pub value: Option<String>,
    pub members: i64,
    pub share: Option<f64>,
    pub base: i64,
    pub base_share: Option<f64>,
    pub tgi: Option<f64>,
}

/// A portrait dimension and its groups, in `breakdown()`'s order.
#[derive(Debug, Clone, PartialEq)]
pub struct Dimension {
    pub name: String,
    pub groups: Vec<Group>,
}

/// A figure's SQL, shown under its chart so that a reader can run it again.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sources(pub Vec<String>);

/// Everything on the page. Figures only: the command ran the SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The audience as given (`vip`, `audience:vip`, `tag:vip`).
    pub audience: String,
    /// "saved audience" or "tag".
    pub kind: &'static str,
    pub members: i64,
    pub everyone: i64,
    pub store: String,
    pub version: u64,
    /// The instant the figures are computed at, and whether it was pinned (`--now`).
    pub now: String,
    pub now_pinned: bool,
    pub portrait: Vec<Dimension>,
    pub portrait_sql: Sources,
    /// The most distinguishing tags, and the share of the members each had to reach.
    pub top_tags: Vec<Group>,
    pub tag_support: f64,
    pub top_tags_sql: Sources,
    /// The sets of the overlap (the audience first) and its regions: (region, users, share).
    pub overlap_sets: Vec<String>,
    pub overlap: Vec<(String, i64, f64)>,
    pub overlap_sql: Sources,
    /// Members who are buyers, by `[r_score - 1][f_score - 1]`; all buyers of the store.
    pub rfm_grid: [[i64; 5]; 5],
    pub rfm_segments: Vec<(String, i64)>,
    pub rfm_buyers: i64,
    pub rfm_sql: Sources,
    /// Stages in order; members' and everyone's stage now; the store-wide flow between two
    /// instants (from, to, users).
    pub stages: Vec<String>,
    pub lifecycle_members: Vec<(String, i64)>,
    pub lifecycle_everyone: Vec<(String, i64)>,
    pub flow_from: String,
    pub flow_to: String,
    pub flow: Vec<(String, String, i64)>,
    pub lifecycle_sql: Sources,
}

/// Inline style sheet: system fonts only (nothing fetched), print-friendly.
const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif; color: #1d2733; margin: 0 auto; max-width: 980px; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 36px 0 6px; border-bottom: 1px solid #d5dbe3; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 2px; } p.meta, p.note { color: #5b6675; margin: 4px 0 8px; }
svg.chart { display: block; max-width: 100%; height: auto; font-size: 12px; }
svg text { fill: #1d2733; } svg .tick, svg .note { fill: #5b6675; } svg .axis-label { fill: #5b6675; font-style: italic; }
svg .track { fill: #f1f3f6; } svg .bar { fill: #3b6fb6; } svg .bar.hi { fill: #d9822b; } svg .ref { fill: #9aa5b1; }
svg .grid { stroke: #e3e7ec; } svg .axis { stroke: #9aa5b1; } svg .marker { stroke: #c23b3b; stroke-dasharray: 4 3; } svg .marker-label { fill: #c23b3b; }
svg .cell { fill: #3b6fb6; } svg .cell-text.dark { fill: #ffffff; }
svg .link { fill-opacity: 0.35; } svg .s0 { fill: #9aa5b1; } svg .s1 { fill: #5aa0d8; } svg .s2 { fill: #3b6fb6; } svg .s3 { fill: #d9822b; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; } th, td { border: 1px solid #d5dbe3; padding: 3px 8px; text-align: right; } th:first-child, td:first-child { text-align: left; }
details { margin: 6px 0 0; color: #5b6675; } pre { white-space: pre-wrap; background: #f6f8fa; padding: 8px; font-size: 12px; }
"#;

/// The report as one HTML document.
pub fn render(r: &Report) -> String {
    let mut page = String::with_capacity(64 * 1024);
    let name = escape(&r.audience);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>Portrait of {name}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
    );
    let share = if r.everyone > 0 { r.members as f64 / r.everyone as f64 } else { 0.0 };
    let _ = write!(
        page,
        "<header>\n<h1>Portrait of {name}</h1>\n<p class=\"meta\">{} {name}: <strong>{}</strong> users, {} of {} users. Store {} at version {}; figures as of {} ({}).</p>\n</header>\n",
        r.kind,
        count(r.members),
        percent(share),
        count(r.everyone),
        escape(&r.store),
        r.version,
        escape(&r.now),
        if r.now_pinned { "pinned with --now" } else { "the time of writing" },
    );
    portrait(&mut page, r);
    overlap(&mut page, r);
    rfm(&mut page, r);
    lifecycle(&mut page, r);
    page.push_str(
        "<footer><p class=\"note\">Written by <code>persona report</code>. Every figure comes from the SQL shown under its chart, run on one pinned version of the store.</p></footer>\n</body>\n</html>\n",
    );
    page
}

fn sources(page: &mut String, sql: &Sources) {
    if sql.0.is_empty() {
        return;
    }
    let text: Vec<String> = sql.0.iter().map(|s| escape(s)).collect();
    let _ = writeln!(page, "<details><summary>SQL</summary><pre>{}</pre></details>", text.join(";\n"));
}

/// The label of a group: its value, or `(none)` for NULL.
fn label(g: &Group) -> String {
    g.value.clone().unwrap_or_else(|| "(none)".to_string())
}

fn tgi_text(tgi: Option<f64>) -> String {
    tgi.map_or("TGI –".to_string(), |t| format!("TGI {t:.0}"))
}

fn portrait(page: &mut String, r: &Report) {
    page.push_str("<section id=\"portrait\">\n<h2>Portrait and TGI</h2>\n");
    page.push_str("<p class=\"note\">Each value's share of the members (blue; orange when the TGI is 120 or more) against its share of everyone (grey). TGI = share among members ÷ share among everyone × 100: above 100, the value is over-represented in the audience.</p>\n");
    if r.portrait.is_empty() {
        page.push_str("<p>No profile column has a value index with at most 24 values.</p>\n");
    }
    for d in &r.portrait {
        let top =
            d.groups.iter().flat_map(|g| [g.share.unwrap_or(0.0), g.base_share.unwrap_or(0.0)]).fold(0.0, f64::max);
        let bars = d
            .groups
            .iter()
            .map(|g| Bar {
                label: label(g),
                value: g.share.unwrap_or(0.0),
                reference: Some(g.base_share.unwrap_or(0.0)),
                note: format!("{} · {} · {}", count(g.members), percent(g.share.unwrap_or(0.0)), tgi_text(g.tgi)),
                highlight: g.tgi.is_some_and(|t| t >= 120.0),
            })
            .collect();
        let chart = BarChart {
            title: format!("{} of {} against everyone", d.name, r.audience),
            bars,
            max: top.min(1.0),
            axis_label: format!("share of users, by {}", d.name),
            tick_format: percent_tick,
            marker: None,
            legend: Some((format!("members of {}", r.audience), "everyone".to_string())),
        };
        let _ = write!(page, "<h3>{}</h3>\n{}\n", escape(&d.name), chart.to_svg());
    }
    sources(page, &r.portrait_sql);
    page.push_str("<h3>Most distinguishing tags</h3>\n");
    if r.top_tags.is_empty() {
        let _ = writeln!(
            page,
            "<p>No tag other than the audience's own is carried by {} of its members.</p>",
            percent(r.tag_support)
        );
    } else {
        let top = r.top_tags.iter().filter_map(|g| g.tgi).fold(100.0, f64::max);
        let bars = r
            .top_tags
            .iter()
            .map(|g| Bar {
                label: label(g),
                value: g.tgi.unwrap_or(0.0),
                reference: None,
                note: format!(
                    "{} of {} carry it · {} · {}",
                    count(g.members),
                    count(g.base),
                    percent(g.share.unwrap_or(0.0)),
                    tgi_text(g.tgi)
                ),
                highlight: g.tgi.is_some_and(|t| t >= 120.0),
            })
            .collect();
        let chart = BarChart {
            title: format!("tags with the highest TGI in {}", r.audience),
            bars,
            max: top,
            axis_label: "TGI (100 = as common as among everyone)".to_string(),
            tick_format: |v| format!("{v:.0}"),
            marker: Some((100.0, "100".to_string())),
            legend: None,
        };
        let _ = writeln!(
            page,
            "<p class=\"note\">The tags with the highest TGI among those at least {} of the members carry; next to each, the members and all users carrying it.</p>\n{}",
            percent(r.tag_support),
            chart.to_svg()
        );
    }
    sources(page, &r.top_tags_sql);
    page.push_str("</section>\n");
}

fn overlap(page: &mut String, r: &Report) {
    let names: Vec<String> = r.overlap_sets.iter().map(|s| escape(s)).collect();
    let union: i64 = r.overlap.iter().map(|o| o.1).sum();
    let _ = writeln!(
        page,
        "<section id=\"overlap\">\n<h2>Overlap with its top tags</h2>\n<p class=\"note\">Every region of the Venn diagram of {}: the users in exactly those sets, as a share of the {} users in any of them.</p>",
        names.join(", "),
        count(union)
    );
    let top = r.overlap.iter().map(|o| o.2).fold(0.0, f64::max);
    let bars = r
        .overlap
        .iter()
        .map(|(region, users, share)| Bar {
            label: region.clone(),
            value: *share,
            reference: None,
            note: format!("{} · {}", count(*users), percent(*share)),
            highlight: false,
        })
        .collect();
    let chart = BarChart {
        title: format!("overlap of {}", r.overlap_sets.join(", ")),
        bars,
        max: top.min(1.0),
        axis_label: "share of the union".to_string(),
        tick_format: percent_tick,
        marker: None,
        legend: None,
    };
    let _ = writeln!(page, "{}", chart.to_svg());
    sources(page, &r.overlap_sql);
    page.push_str("</section>\n");
}

fn rfm(page: &mut String, r: &Report) {
    let members_buyers: i64 = r.rfm_grid.iter().flatten().sum();
    let _ = writeln!(
        page,
        "<section id=\"rfm\">\n<h2>RFM</h2>\n<p class=\"note\">The {} members who are buyers ({} of the members), by recency and frequency score. Scores are quintiles over all {} buyers of the store (5 = most recent, most frequent), so an even audience fills each cell with 4 % of its buyers.</p>",
        count(members_buyers),
        percent(if r.members > 0 { members_buyers as f64 / r.members as f64 } else { 0.0 }),
        count(r.rfm_buyers)
    );
    let grid = HeatGrid {
        title: format!("buyers of {} by recency and frequency score", r.audience),
        rows: (1..=5).rev().map(|s| format!("R={s}")).collect(),
        columns: (1..=5).map(|s| format!("F={s}")).collect(),
        values: (0..5).rev().map(|row| r.rfm_grid[row].to_vec()).collect(),
        row_axis: "recency score (R)".to_string(),
        column_axis: "frequency score (F)".to_string(),
    };
    let _ = writeln!(page, "{}", grid.to_svg());
    page.push_str("<h3>Segments</h3>\n");
    let top = r.rfm_segments.iter().map(|s| s.1).max().unwrap_or(0);
    let share = |n: i64| if members_buyers > 0 { n as f64 / members_buyers as f64 } else { 0.0 };
    let bars = r
        .rfm_segments
        .iter()
        .map(|(segment, n)| Bar {
            label: segment.clone(),
            value: share(*n),
            reference: None,
            note: format!("{} · {}", count(*n), percent(share(*n))),
            highlight: false,
        })
        .collect();
    let chart = BarChart {
        title: format!("RFM segments of the buyers of {}", r.audience),
        bars,
        max: share(top).min(1.0),
        axis_label: "share of the members who are buyers".to_string(),
        tick_format: percent_tick,
        marker: None,
        legend: None,
    };
    let _ = writeln!(page, "{}", chart.to_svg());
    sources(page, &r.rfm_sql);
    page.push_str("</section>\n");
}

fn lifecycle(page: &mut String, r: &Report) {
    page.push_str("<section id=\"lifecycle\">\n<h2>Lifecycle</h2>\n");
    let members: i64 = r.lifecycle_members.iter().map(|s| s.1).sum();
    let everyone: i64 = r.lifecycle_everyone.iter().map(|s| s.1).sum();
    let of = |list: &[(String, i64)], stage: &str| list.iter().find(|s| s.0 == stage).map_or(0, |s| s.1);
    let ratio = |n: i64, d: i64| if d > 0 { n as f64 / d as f64 } else { 0.0 };
    let mut top: f64 = 0.0;
    let bars = r
        .stages
        .iter()
        .map(|stage| {
            let (m, e) = (of(&r.lifecycle_members, stage), of(&r.lifecycle_everyone, stage));
            let (sm, se) = (ratio(m, members), ratio(e, everyone));
            top = top.max(sm).max(se);
            let tgi = (se > 0.0).then(|| sm / se * 100.0);
            Bar {
                label: stage.clone(),
                value: sm,
                reference: Some(se),
                note: format!("{} · {} · {}", count(m), percent(sm), tgi_text(tgi)),
                highlight: tgi.is_some_and(|t| t >= 120.0),
            }
        })
        .collect();
    let chart = BarChart {
        title: format!("lifecycle stage of the members of {} now", r.audience),
        bars,
        max: top.min(1.0),
        axis_label: "share of users, by stage now".to_string(),
        tick_format: percent_tick,
        marker: None,
        legend: Some((format!("members of {}", r.audience), "everyone".to_string())),
    };
    let _ = writeln!(
        page,
        "<h3>Stage now</h3>\n<p class=\"note\">Each member's stage as of {} (the <code>lifecycle</code> view), against everyone's.</p>\n{}",
        escape(&r.now),
        chart.to_svg()
    );
    let total: i64 = r.flow.iter().map(|f| f.2).sum();
    let _ = writeln!(
        page,
        "<h3>Flow between stages, all users (store-wide)</h3>\n<p class=\"note\"><code>lifecycle_flow</code> counts users, not members: all {} users of the store, by their stage on {} (left) and on {} (right).</p>",
        count(total),
        escape(&r.flow_from),
        escape(&r.flow_to)
    );
    let flow = Flow {
        title: format!("lifecycle flow of all users from {} to {}", r.flow_from, r.flow_to),
        stages: r.stages.clone(),
        links: r.flow.clone(),
        left_label: r.flow_from.clone(),
        right_label: r.flow_to.clone(),
    };
    let _ = writeln!(page, "{}", flow.to_svg());
    // The same figures as a table: from (rows) by to (columns).
    page.push_str("<table><thead><tr><th>from \\ to</th>");
    for s in &r.stages {
        let _ = write!(page, "<th>{}</th>", escape(s));
    }
    page.push_str("</tr></thead><tbody>");
    for from in &r.stages {
        let _ = write!(page, "<tr><td>{}</td>", escape(from));
        for to in &r.stages {
            let n = r.flow.iter().find(|f| &f.0 == from && &f.1 == to).map_or(0, |f| f.2);
            let _ = write!(page, "<td>{}</td>", count(n));
        }
        page.push_str("</tr>");
    }
    page.push_str("</tbody></table>\n");
    sources(page, &r.lifecycle_sql);
    page.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(value: &str, members: i64, share: f64, tgi: f64) -> Group {
        Group {
            value: Some(value.into()),
            members,
            share: Some(share),
            base: members * 2,
            base_share: Some(0.1),
            tgi: Some(tgi),
        }
    }

    fn sample() -> Report {
        Report {
            audience: "<vip> & \"王芳\"".into(),
            kind: "saved audience",
            members: 280,
            everyone: 2000,
            store: "/tmp/crm's store".into(),
            version: 3,
            now: "2026-11-01 00:00:00 UTC".into(),
            now_pinned: true,
            portrait: vec![Dimension {
                name: "tier".into(),
                groups: vec![group("gold", 202, 0.72, 714.0), Group { value: None, ..group("x", 0, 0.0, 0.0) }],
            }],
            portrait_sql: Sources(vec!["SELECT * FROM breakdown('<vip>', 'columns')".into()]),
            top_tags: vec![group("foodie", 32, 0.11, 133.0)],
            tag_support: 0.05,
            top_tags_sql: Sources::default(),
            overlap_sets: vec!["<vip>".into(), "foodie".into()],
            overlap: vec![("<vip>".into(), 248, 0.8), ("foodie".into(), 30, 0.1), ("<vip> & foodie".into(), 32, 0.1)],
            overlap_sql: Sources::default(),
            rfm_grid: [[1, 2, 3, 4, 5]; 5],
            rfm_segments: vec![("important value".into(), 40)],
            rfm_buyers: 1364,
            rfm_sql: Sources::default(),
            stages: ["aware", "interested", "purchased", "loyal"].map(String::from).to_vec(),
            lifecycle_members: vec![("loyal".into(), 200), ("aware".into(), 80)],
            lifecycle_everyone: vec![("loyal".into(), 863), ("aware".into(), 241)],
            flow_from: "2026-08-03".into(),
            flow_to: "2026-11-01".into(),
            flow: vec![("aware".into(), "loyal".into(), 73), ("loyal".into(), "loyal".into(), 689)],
            lifecycle_sql: Sources::default(),
        }
    }

    #[test]
    fn the_page_is_self_contained_utf8_and_escaped() {
        let page = render(&sample());
        assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<meta charset=\"utf-8\">"));
        for outside in ["http://", "https://", "src=", "<script", "@import", "url("] {
            assert!(!page.contains(outside), "the page refers to {outside}");
        }
        assert!(!page.contains("<vip>"), "the audience name is escaped everywhere");
        assert!(page.contains("&lt;vip&gt; &amp; &quot;王芳&quot;"));
        assert!(page.contains("crm&#39;s store") && page.contains("breakdown(&#39;&lt;vip&gt;&#39;"));
    }

    #[test]
    fn every_section_has_a_chart_with_drawn_shapes() {
        let page = render(&sample());
        for id in ["portrait", "overlap", "rfm", "lifecycle"] {
            let start = page.find(&format!("<section id=\"{id}\">")).expect("the section");
            let end = start + page[start..].find("</section>").expect("its end");
            let section = &page[start..end];
            assert!(section.contains("<svg") && section.matches("<rect").count() > 0, "{id}");
        }
        assert!(page.contains(">(none)</text>"), "a NULL value is labelled");
    }
}
