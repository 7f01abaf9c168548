//! The shell's pictures of the analytics functions: `\portrait AUDIENCE` draws each value's share
//! of an audience as a bar with its TGI (from `breakdown(..., 'columns')` and `top_tags()`), and
//! `\overlap A B ...` the regions of a Venn diagram as bars (from `overlap()`), and `\rfm` the
//! recency-by-frequency grid of the `rfm` view with its segments. Bars are Unicode block
//! characters, eighths of a cell wide.

use std::fmt::Write as _;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};

use super::exec::Shell;
use crate::error::{Error, Result};
use crate::query::sql_text::string_literal;

/// Cells of the longest bar.
const BAR_CELLS: usize = 30;
/// Tags listed under a portrait, and the share of the audience each must reach.
const PORTRAIT_TAGS: usize = 10;
const PORTRAIT_TAG_SUPPORT: f64 = 0.05;

/// A bar `fraction` (0..=1) of `cells` wide, in eighths of a cell.
fn bar(fraction: f64, cells: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = (fraction.clamp(0.0, 1.0) * (cells * 8) as f64).round() as usize;
    let mut out = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        out.push(PARTS[eighths % 8]);
    }
    let drawn = out.chars().count();
    out.push_str(&" ".repeat(cells.saturating_sub(drawn)));
    out
}

/// The rows of a portrait table: (dimension, value, members, share, tgi).
type PortraitRow = (String, String, i64, Option<f64>, Option<f64>);

fn portrait_rows(batches: &[RecordBatch]) -> Vec<PortraitRow> {
    let mut out = Vec::new();
    for b in batches {
        let (d, v) = (b.column(0).as_string::<i32>(), b.column(1).as_string::<i32>());
        let m = b.column(2).as_primitive::<Int64Type>();
        let (s, t) = (b.column(3).as_primitive::<Float64Type>(), b.column(4).as_primitive::<Float64Type>());
        for i in 0..b.num_rows() {
            let value = if v.is_null(i) { "(null)".to_string() } else { v.value(i).to_string() };
            out.push((
                d.value(i).to_string(),
                value,
                m.value(i),
                s.is_valid(i).then(|| s.value(i)),
                t.is_valid(i).then(|| t.value(i)),
            ));
        }
    }
    out
}

fn write_rows(out: &mut String, rows: &[PortraitRow]) {
    let label = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0).min(24);
    for (_, value, members, share, tgi) in rows {
        let shown: String = value.chars().take(label).collect();
        let pad = " ".repeat(label.saturating_sub(shown.chars().count()));
        let share = share.unwrap_or(0.0);
        let tgi = tgi.map_or("   –".to_string(), |t| format!("{t:>4.0}"));
        let _ =
            writeln!(out, "  {shown}{pad} {} {:>5.1} % {members:>9}  TGI {tgi}", bar(share, BAR_CELLS), share * 100.0);
    }
}

/// `\portrait AUDIENCE`: the audience's size, then per value-indexed column the share of its
/// members with each value (bars) and the TGI, then its most distinguishing tags.
pub async fn portrait(shell: &mut Shell, name: &str) -> Result<()> {
    let name_sql = string_literal(name);
    let size = shell.query(&format!("SELECT users FROM overlap({name_sql})")).await?;
    let size = size.iter().find(|b| b.num_rows() > 0).map_or(0, |b| b.column(0).as_primitive::<Int64Type>().value(0));
    let everyone = shell.query("SELECT count(*) FROM users").await?;
    let everyone =
        everyone.iter().find(|b| b.num_rows() > 0).map_or(0, |b| b.column(0).as_primitive::<Int64Type>().value(0));
    let columns = shell
        .query(&format!("SELECT dimension, value, members, share, tgi FROM breakdown({name_sql}, 'columns')"))
        .await?;
    let tags = shell
        .query(&format!(
            "SELECT dimension, value, members, share, tgi FROM top_tags({name_sql}, {PORTRAIT_TAGS}, {PORTRAIT_TAG_SUPPORT})"
        ))
        .await?;
    let mut out = String::new();
    let share = if everyone > 0 { size as f64 / everyone as f64 * 100.0 } else { 0.0 };
    let _ = writeln!(out, "portrait of {name}: {size} users ({share:.1} % of {everyone})");
    let rows = portrait_rows(&columns);
    let mut dimensions: Vec<&str> = Vec::new();
    for r in &rows {
        if !dimensions.contains(&r.0.as_str()) {
            dimensions.push(&r.0);
        }
    }
    for d in dimensions {
        let of: Vec<PortraitRow> = rows.iter().filter(|r| r.0 == d).cloned().collect();
        let _ = writeln!(out, "\n{d}");
        write_rows(&mut out, &of);
    }
    let tag_rows = portrait_rows(&tags);
    if !tag_rows.is_empty() {
        let _ = writeln!(
            out,
            "\nmost distinguishing tags (highest TGI, carried by at least {:.0} % of the audience)",
            PORTRAIT_TAG_SUPPORT * 100.0
        );
        write_rows(&mut out, &tag_rows);
    }
    shell.say(out.trim_end());
    Ok(())
}

/// `\overlap A B ...`: every region of the Venn diagram of tags and saved audiences as a bar of
/// its share of the union.
pub async fn overlap(shell: &mut Shell, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Err(Error::Usage(
            "\\overlap needs one to eight tags or saved audiences; \\? lists the commands".into(),
        ));
    }
    let args: Vec<String> = names.iter().map(|n| string_literal(n)).collect();
    let batches = shell.query(&format!("SELECT * FROM overlap({})", args.join(", "))).await?;
    let mut rows: Vec<(String, i64, f64)> = Vec::new();
    for b in &batches {
        let region = b.column(0).as_string::<i32>();
        let (users, share) = (b.num_columns() - 2, b.num_columns() - 1);
        let users = b.column(users).as_primitive::<Int64Type>();
        let share = b.column(share).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            let s = if share.is_valid(i) { share.value(i) } else { 0.0 };
            rows.push((region.value(i).to_string(), users.value(i), s));
        }
    }
    let union: i64 = rows.iter().map(|r| r.1).sum();
    let label = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0).min(40);
    let mut out = format!("overlap of {}: {union} users in any\n", names.join(", "));
    for (region, users, share) in rows {
        let shown: String = region.chars().take(label).collect();
        let pad = " ".repeat(label.saturating_sub(shown.chars().count()));
        let _ = writeln!(out, "  {shown}{pad} {} {users:>9} {:>5.1} %", bar(share, BAR_CELLS), share * 100.0);
    }
    shell.say(out.trim_end());
    Ok(())
}

/// `\rfm`: the buyers of the `rfm` view on a grid of recency (rows, 5 = most recent) by frequency
/// (columns), each cell its count shaded by its share of the largest cell, then the segments.
pub async fn rfm(shell: &mut Shell) -> Result<()> {
    let cells = shell.query("SELECT r_score, f_score, count(*) AS users FROM rfm GROUP BY r_score, f_score").await?;
    let mut grid = [[0i64; 5]; 5];
    for b in &cells {
        let (r, f, n) = (
            b.column(0).as_primitive::<Int64Type>(),
            b.column(1).as_primitive::<Int64Type>(),
            b.column(2).as_primitive::<Int64Type>(),
        );
        for i in 0..b.num_rows() {
            let (r, f) = (r.value(i), f.value(i));
            if (1..=5).contains(&r) && (1..=5).contains(&f) {
                grid[(r - 1) as usize][(f - 1) as usize] = n.value(i);
            }
        }
    }
    let segments =
        shell.query("SELECT segment, count(*) AS users FROM rfm GROUP BY segment ORDER BY users DESC, segment").await?;
    let largest = grid.iter().flatten().copied().max().unwrap_or(0).max(1);
    let total: i64 = grid.iter().flatten().sum();
    let shade = |n: i64| match n * 4 / largest {
        0 if n == 0 => ' ',
        0 => '░',
        1 => '▒',
        2 => '▓',
        _ => '█',
    };
    let mut out = format!("rfm: {total} buyers, recency (R, 5 = most recent) by frequency (F, 5 = most frequent)\n\n");
    out.push_str("          F=1        F=2        F=3        F=4        F=5\n");
    for r in (0..5).rev() {
        let _ = write!(out, "  R={} ", r + 1);
        for &n in &grid[r] {
            let _ = write!(out, " {n:>7} {}{}", shade(n), shade(n));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "\nsegments (R, F and M each high at a score of 3 or more)");
    for b in &segments {
        let (name, users) = (b.column(0).as_string::<i32>(), b.column(1).as_primitive::<Int64Type>());
        for i in 0..b.num_rows() {
            let share = if total > 0 { users.value(i) as f64 / total as f64 } else { 0.0 };
            let _ = writeln!(
                out,
                "  {:<22} {} {:>9} {:>5.1} %",
                name.value(i),
                bar(share, BAR_CELLS),
                users.value(i),
                share * 100.0
            );
        }
    }
    shell.say(out.trim_end());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_drawn_in_eighths_of_a_cell() {
        assert_eq!(bar(0.0, 4), "    ");
        assert_eq!(bar(1.0, 4), "████");
        assert_eq!(bar(0.5, 4), "██  ");
        assert_eq!(bar(1.0 / 32.0, 4), "▏   ");
        assert_eq!(bar(2.0, 2), "██");
    }
}
