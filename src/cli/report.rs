//! `persona report`: one self-contained HTML page about a saved audience or tag — its portrait and
//! TGI, its overlap with its most distinguishing tags, its RFM grid and its lifecycle — from SQL
//! run on one session (the `persona sql` one, `now()` pinned), written atomically.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type};
use chrono::{DateTime, Datelike, Utc};

use crate::engine::{Session, SessionOptions};
use crate::error::{Error, Result};
use crate::output::report::{Dimension, Group, Report, Sources, render};
use crate::query::sql_text::{quoted_identifier, string_literal};
use crate::store::Store;

/// Tags listed as most distinguishing, the share of the members each must reach, and how many of
/// them join the audience in the overlap.
const TOP_TAGS: usize = 10;
const TAG_SUPPORT: f64 = 0.05;
const OVERLAP_TAGS: usize = 3;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  persona report --store ./crm --audience winback --now 2026-11-01 --out winback.html"
)]
pub struct ReportArgs {
    /// The store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// The saved audience or tag to portray; write audience:NAME or tag:NAME when a name is both
    /// (a saved audience wins otherwise).
    #[arg(long)]
    pub audience: String,
    /// The HTML file to write (replaced atomically: a temporary file, then a rename).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Pin now() / current_date to this instant, e.g. 2026-11-01, so that the report reproduces
    /// (default: the time the report starts, the same for every figure).
    #[arg(long, value_parser = super::parse_now)]
    pub now: Option<DateTime<Utc>>,
    /// Days before now that the lifecycle flow starts from.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub flow_days: u32,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let out =
        std::path::absolute(&args.out).map_err(|e| Error::Io { op: "resolve", path: args.out.clone(), source: e })?;
    // Checked before the queries run: the page is written beside where it goes, then renamed.
    if let Some(folder) = out.parent()
        && !folder.is_dir()
    {
        return Err(Error::Usage(format!(
            "the folder {} for --out does not exist; create it first, so no report was written",
            folder.display()
        )));
    }
    let store = Store::open(&args.store)?;
    // One instant for every figure, so that the RFM and lifecycle sections agree with each other.
    let now = args.now.unwrap_or_else(Utc::now);
    let options = SessionOptions { now: Some(now), ..Default::default() };
    let session = store.session_with(&options)?;
    let rt = super::runtime()?;
    let mut report = rt.block_on(gather(&session, &args.audience, now, args.flow_days))?;
    report.now_pinned = args.now.is_some();
    let page = render(&report);
    let out =
        std::path::absolute(&args.out).map_err(|e| Error::Io { op: "resolve", path: args.out.clone(), source: e })?;
    crate::store::io::atomic_replace(&out, page.as_bytes())?;
    eprintln!(
        "wrote {} ({} of {} users; {} KiB)",
        args.out.display(),
        report.members,
        report.everyone,
        page.len().div_ceil(1024)
    );
    Ok(())
}

/// What the report's name stands for: its kind for the page and the users predicate picking its
/// members, chosen as `breakdown()` chooses (a saved audience wins unless `tag:` is written).
fn resolve(session: &Session, name: &str, store: &std::path::Path) -> Result<(&'static str, String, String)> {
    let (kind, bare) = crate::audience::analytics::name_kind(name);
    let index = session.index();
    if kind != Some("tag") && index.has_audience(bare) {
        return Ok(("saved audience", bare.to_string(), format!("in_audience({})", string_literal(bare))));
    }
    if kind != Some("audience") && index.tag_names().iter().any(|t| t == bare) {
        return Ok(("tag", bare.to_string(), format!("has_tag({})", string_literal(bare))));
    }
    let what = match kind {
        Some("audience") => "saved audience",
        Some(_) => "tag",
        None => "saved audience or tag",
    };
    Err(Error::Usage(format!(
        "there is no {what} '{bare}' in store {} (SHOW AUDIENCES and SHOW TAGS list them), so no report was written",
        store.display()
    )))
}

/// One column of the batches as `T`, through an Arrow cast (views, dictionaries and narrower
/// integers read alike).
fn column<T>(batches: &[RecordBatch], i: usize, to: &DataType, read: impl Fn(&ArrayRef, usize) -> T) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for b in batches {
        let c = arrow::compute::cast(b.column(i), to)?;
        out.extend((0..c.len()).map(|row| read(&c, row)));
    }
    Ok(out)
}

fn texts(batches: &[RecordBatch], i: usize) -> Result<Vec<Option<String>>> {
    column(batches, i, &DataType::Utf8, |c, r| c.is_valid(r).then(|| c.as_string::<i32>().value(r).to_string()))
}

fn ints(batches: &[RecordBatch], i: usize) -> Result<Vec<i64>> {
    column(batches, i, &DataType::Int64, |c, r| if c.is_valid(r) { c.as_primitive::<Int64Type>().value(r) } else { 0 })
}

fn floats(batches: &[RecordBatch], i: usize) -> Result<Vec<Option<f64>>> {
    column(batches, i, &DataType::Float64, |c, r| c.is_valid(r).then(|| c.as_primitive::<Float64Type>().value(r)))
}

fn dates(batches: &[RecordBatch], i: usize) -> Result<Vec<Option<i32>>> {
    column(batches, i, &DataType::Date32, |c, r| c.is_valid(r).then(|| c.as_primitive::<Date32Type>().value(r)))
}

/// Runs one query on the report's session, noting its SQL for the page.
async fn query(session: &Session, sql: String, sources: &mut Sources) -> Result<Vec<RecordBatch>> {
    let batches = session.query(&sql).await?;
    sources.0.push(sql);
    Ok(batches)
}

/// The rows of a `breakdown()` or `top_tags()` query selecting dimension, value, members, share,
/// base, base_share and tgi, grouped by dimension in their order.
fn groups(batches: &[RecordBatch]) -> Result<Vec<Dimension>> {
    let (d, v, m, s) = (texts(batches, 0)?, texts(batches, 1)?, ints(batches, 2)?, floats(batches, 3)?);
    let (b, bs, t) = (ints(batches, 4)?, floats(batches, 5)?, floats(batches, 6)?);
    let mut out: Vec<Dimension> = Vec::new();
    for i in 0..d.len() {
        let name = d[i].clone().unwrap_or_default();
        let group = Group { value: v[i].clone(), members: m[i], share: s[i], base: b[i], base_share: bs[i], tgi: t[i] };
        match out.last_mut() {
            Some(last) if last.name == name => last.groups.push(group),
            _ => out.push(Dimension { name, groups: vec![group] }),
        }
    }
    Ok(out)
}

const GROUP_COLUMNS: &str = "dimension, value, members, share, base, base_share, tgi";

/// `x` rounded to two significant digits (band edges that read well: 230, 700, 2,000).
fn round_two_digits(x: f64) -> i64 {
    if x.abs() < 10.0 {
        return x.round() as i64;
    }
    let unit = 10f64.powf(x.abs().log10().floor() - 1.0);
    ((x / unit).round() * unit) as i64
}

/// Band dimensions for `breakdown()` over the users columns with a range index and no value
/// dimension already: quartiles of integers (two significant digits), years or decades of dates.
async fn band_dimensions(session: &Session, skip: &[String], sources: &mut Sources) -> Result<Vec<String>> {
    let schema = session.sql("SELECT * FROM users LIMIT 0").await?.schema().inner().clone();
    let index = session.index();
    let mut out = Vec::new();
    for field in schema.fields() {
        let name = field.name();
        if name.starts_with("__") || skip.contains(name) || index.range_index(name).is_none() {
            continue;
        }
        let c = quoted_identifier(name);
        if field.data_type().is_integer() {
            let sql = format!(
                "SELECT percentile_cont(0.25) WITHIN GROUP (ORDER BY {c}), percentile_cont(0.5) WITHIN GROUP (ORDER BY {c}), \
                 percentile_cont(0.75) WITHIN GROUP (ORDER BY {c}), min({c}), max({c}) FROM users"
            );
            let batches = query(session, sql, sources).await?;
            let q: Vec<Option<f64>> =
                (0..5).map(|i| floats(&batches, i).map(|v| v.first().copied().flatten())).collect::<Result<_>>()?;
            let (Some(lo), Some(hi)) = (q[3], q[4]) else { continue };
            let mut edges: Vec<i64> = Vec::new();
            for e in q[..3].iter().flatten().map(|e| round_two_digits(*e)) {
                if e as f64 > lo && e as f64 <= hi && edges.last().is_none_or(|last| e > *last) {
                    edges.push(e);
                }
            }
            if !edges.is_empty() {
                let edges: Vec<String> = edges.iter().map(i64::to_string).collect();
                out.push(format!("{name}:{}", edges.join(",")));
            }
        } else if field.data_type() == &DataType::Date32 {
            let batches = query(session, format!("SELECT min({c}), max({c}) FROM users"), sources).await?;
            let (lo, hi) = (dates(&batches, 0)?, dates(&batches, 1)?);
            let year = |d: Option<&Option<i32>>| {
                d.copied()
                    .flatten()
                    .and_then(|d| chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163).map(|date| date.year()))
            };
            let (Some(lo), Some(hi)) = (year(lo.first()), year(hi.first())) else { continue };
            // The smallest round step that leaves at most 7 edges.
            let step = [1, 2, 5, 10, 20, 25, 50, 100].into_iter().find(|s| (hi - lo) / s <= 7).unwrap_or(100);
            let edges: Vec<String> =
                ((lo / step + 1) * step..=hi).step_by(step as usize).map(|y| format!("{y:04}-01-01")).collect();
            if !edges.is_empty() {
                out.push(format!("{name}:{}", edges.join(",")));
            }
        }
    }
    Ok(out)
}

/// `t` as a SQL timestamp literal's text, and as the page shows it (the date alone at midnight).
fn instant(t: DateTime<Utc>) -> (String, String) {
    let sql = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let shown = if t.time() == chrono::NaiveTime::MIN { t.format("%Y-%m-%d").to_string() } else { sql.clone() };
    (sql, shown)
}

/// Every figure of the report, from SQL on `session`.
async fn gather(session: &Session, name: &str, now: DateTime<Utc>, flow_days: u32) -> Result<Report> {
    let root = session.snapshot().root().to_path_buf();
    let (kind, bare, members_of) = resolve(session, name, &root)?;
    let n = string_literal(name);
    let in_members = format!("user_id IN (SELECT user_id FROM users WHERE {members_of})");

    let mut portrait_sql = Sources::default();
    let size = query(session, format!("SELECT users FROM overlap({n})"), &mut portrait_sql).await?;
    let members = ints(&size, 0)?.first().copied().unwrap_or(0);
    let everyone = query(session, "SELECT count(*) FROM users".into(), &mut portrait_sql).await?;
    let everyone = ints(&everyone, 0)?.first().copied().unwrap_or(0);
    let columns =
        query(session, format!("SELECT {GROUP_COLUMNS} FROM breakdown({n}, 'columns')"), &mut portrait_sql).await?;
    let mut portrait = groups(&columns)?;
    let value_dimensions: Vec<String> = portrait.iter().map(|d| d.name.clone()).collect();
    let bands = band_dimensions(session, &value_dimensions, &mut portrait_sql).await?;
    if !bands.is_empty() {
        let args: Vec<String> = bands.iter().map(|b| string_literal(b)).collect();
        let banded = query(
            session,
            format!("SELECT {GROUP_COLUMNS} FROM breakdown({n}, {})", args.join(", ")),
            &mut portrait_sql,
        )
        .await?;
        portrait.extend(groups(&banded)?);
    }

    let mut top_tags_sql = Sources::default();
    let tags = query(
        session,
        format!("SELECT {GROUP_COLUMNS} FROM top_tags({n}, {TOP_TAGS}, {TAG_SUPPORT})"),
        &mut top_tags_sql,
    )
    .await?;
    let top_tags: Vec<Group> = groups(&tags)?.into_iter().flat_map(|d| d.groups).collect();

    // The audience with its most distinguishing tags (never its own name twice).
    let mut overlap_sql = Sources::default();
    let partners: Vec<String> =
        top_tags.iter().filter_map(|g| g.value.clone()).filter(|t| *t != bare).take(OVERLAP_TAGS).collect();
    let mut overlap_args = vec![n.clone()];
    overlap_args.extend(partners.iter().map(|t| string_literal(&format!("tag:{t}"))));
    let regions =
        query(session, format!("SELECT * FROM overlap({})", overlap_args.join(", ")), &mut overlap_sql).await?;
    let width = regions.first().map_or(0, RecordBatch::num_columns);
    let overlap = if width >= 3 {
        let (region, users, share) = (texts(&regions, 0)?, ints(&regions, width - 2)?, floats(&regions, width - 1)?);
        (0..region.len()).map(|i| (region[i].clone().unwrap_or_default(), users[i], share[i].unwrap_or(0.0))).collect()
    } else {
        Vec::new()
    };
    let mut overlap_sets = vec![bare.clone()];
    overlap_sets.extend(partners);

    let mut rfm_sql = Sources::default();
    let cells = query(
        session,
        format!("SELECT r_score, f_score, count(*) AS users FROM rfm WHERE {in_members} GROUP BY r_score, f_score"),
        &mut rfm_sql,
    )
    .await?;
    let mut rfm_grid = [[0i64; 5]; 5];
    let (r, f, c) = (ints(&cells, 0)?, ints(&cells, 1)?, ints(&cells, 2)?);
    for i in 0..r.len() {
        if (1..=5).contains(&r[i]) && (1..=5).contains(&f[i]) {
            rfm_grid[(r[i] - 1) as usize][(f[i] - 1) as usize] = c[i];
        }
    }
    let segments = query(
        session,
        format!(
            "SELECT segment, count(*) AS users FROM rfm WHERE {in_members} GROUP BY segment ORDER BY users DESC, segment"
        ),
        &mut rfm_sql,
    )
    .await?;
    let (names, counts) = (texts(&segments, 0)?, ints(&segments, 1)?);
    let rfm_segments = names.into_iter().zip(counts).map(|(s, n)| (s.unwrap_or_default(), n)).collect();
    let buyers = query(session, "SELECT count(*) FROM rfm".into(), &mut rfm_sql).await?;
    let rfm_buyers = ints(&buyers, 0)?.first().copied().unwrap_or(0);

    let mut lifecycle_sql = Sources::default();
    let stage_counts = |batches: &[RecordBatch]| -> Result<Vec<(String, i64)>> {
        let (s, n) = (texts(batches, 0)?, ints(batches, 1)?);
        Ok(s.into_iter().zip(n).map(|(s, n)| (s.unwrap_or_default(), n)).collect())
    };
    let of_members = query(
        session,
        format!("SELECT stage, count(*) AS users FROM lifecycle WHERE {in_members} GROUP BY stage"),
        &mut lifecycle_sql,
    )
    .await?;
    let of_everyone =
        query(session, "SELECT stage, count(*) AS users FROM lifecycle GROUP BY stage".into(), &mut lifecycle_sql)
            .await?;
    let (from_sql, flow_from) = instant(now - chrono::Duration::days(i64::from(flow_days)));
    let (to_sql, flow_to) = instant(now);
    let flow = query(
        session,
        format!(
            "SELECT from_stage, to_stage, users FROM lifecycle_flow(TIMESTAMP {}, TIMESTAMP {})",
            string_literal(&from_sql),
            string_literal(&to_sql)
        ),
        &mut lifecycle_sql,
    )
    .await?;
    let (from, to, users) = (texts(&flow, 0)?, texts(&flow, 1)?, ints(&flow, 2)?);
    let flow = (0..from.len())
        .map(|i| (from[i].clone().unwrap_or_default(), to[i].clone().unwrap_or_default(), users[i]))
        .collect();

    Ok(Report {
        audience: name.to_string(),
        kind,
        members,
        everyone,
        store: root.display().to_string(),
        version: session.version(),
        now: now.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        now_pinned: false,
        portrait,
        portrait_sql,
        top_tags,
        tag_support: TAG_SUPPORT,
        top_tags_sql,
        overlap_sets,
        overlap,
        overlap_sql,
        rfm_grid,
        rfm_segments,
        rfm_buyers,
        rfm_sql,
        stages: crate::audience::lifecycle::STAGES.iter().map(|s| s.to_string()).collect(),
        lifecycle_members: stage_counts(&of_members)?,
        lifecycle_everyone: stage_counts(&of_everyone)?,
        flow_from,
        flow_to,
        flow,
        lifecycle_sql,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_edges_round_to_two_significant_digits() {
        assert_eq!(round_two_digits(229.39), 230);
        assert_eq!(round_two_digits(703.5), 700);
        assert_eq!(round_two_digits(2_345.0), 2_300);
        assert_eq!(round_two_digits(7.4), 7);
        assert_eq!(round_two_digits(-1_560.0), -1_600);
    }

    #[test]
    fn an_instant_is_also_its_day() {
        assert_eq!(instant(DateTime::from_timestamp(1_793_491_200, 0).expect("a valid instant")).1, "2026-11-01");
    }
}
