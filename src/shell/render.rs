//! How the shell shows things on the terminal: result tables folded into vertical records when
//! they are wider than the terminal, small text tables for command output, the footer with the row
//! count and elapsed time, and the spinner of a query that runs longer than half a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use unicode_width::UnicodeWidthStr;

use crate::error::Result;
use crate::output::vertical_text;

/// How long a query runs before the spinner appears.
pub const SPINNER_AFTER: Duration = Duration::from_millis(500);

/// `batches` as an aligned table, or as vertical records when the table would be wider than
/// `width` columns (like psql's `\x auto`). Without a width the table is never folded.
pub fn fit(schema: &SchemaRef, batches: &[RecordBatch], width: Option<usize>) -> Result<String> {
    let table = if batches.is_empty() {
        arrow::util::pretty::pretty_format_batches(&[RecordBatch::new_empty(Arc::clone(schema))])?
    } else {
        arrow::util::pretty::pretty_format_batches(batches)?
    }
    .to_string();
    let widest = table.lines().map(UnicodeWidthStr::width).max().unwrap_or(0);
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    match width {
        Some(w) if widest > w && rows > 0 => Ok(vertical_text(batches)?.trim_end().to_string()),
        _ => Ok(table),
    }
}

/// A table of text cells, for command output (`\d`, `\tags`).
pub fn text_table(header: &[&str], rows: &[Vec<String>]) -> Result<String> {
    let fields: Vec<Field> = header.iter().map(|h| Field::new(*h, DataType::Utf8, false)).collect();
    let columns: Vec<ArrayRef> = (0..header.len())
        .map(|i| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[i].as_str()))) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    Ok(arrow::util::pretty::pretty_format_batches(&[batch])?.to_string())
}

/// The line under a result: `(3 rows, 12.5 ms)`; `to` names where the rows went when not to the
/// screen.
pub fn footer(rows: u64, elapsed: Option<Duration>, to: Option<&std::path::Path>) -> String {
    let mut out = format!("({rows} row{}", if rows == 1 { "" } else { "s" });
    if let Some(path) = to {
        out.push_str(&format!(" written to {}", path.display()));
    }
    if let Some(d) = elapsed {
        out.push_str(&format!(", {}", duration(d)));
    }
    out.push(')');
    out
}

/// `12.5 ms` under a second, `3.21 s` above.
pub fn duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 { format!("{ms:.1} ms") } else { format!("{:.2} s", ms / 1000.0) }
}

/// The spinner on standard error while a slow query runs; cleared when dropped (the query ended
/// or was cancelled).
pub struct Spinner(indicatif::ProgressBar);

impl Spinner {
    /// Starts spinning for a query that started at `started`, on a terminal `width` columns wide;
    /// nothing shows when standard error is not a terminal.
    pub fn start(started: Instant, width: usize) -> Spinner {
        use std::io::IsTerminal;
        let target = if std::io::stderr().is_terminal() {
            indicatif::ProgressDrawTarget::term_like_with_hz(Box::new(SpinnerTerm { width }), 10)
        } else {
            indicatif::ProgressDrawTarget::hidden()
        };
        let bar = indicatif::ProgressBar::with_draw_target(None, target).with_elapsed(started.elapsed());
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} running for {elapsed} (Ctrl-C cancels)") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        Spinner(bar)
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Standard error as indicatif draws on it, a little narrower than the terminal: indicatif pads
/// its line to the right edge, and the `^C` the terminal echoes there would wrap onto a new line
/// and leave the spinner's line behind.
#[derive(Debug)]
struct SpinnerTerm {
    width: usize,
}

impl SpinnerTerm {
    fn write(&self, s: &str) -> std::io::Result<()> {
        use std::io::Write;
        std::io::stderr().write_all(s.as_bytes())
    }

    fn move_by(&self, n: usize, code: char) -> std::io::Result<()> {
        if n == 0 { Ok(()) } else { self.write(&format!("\x1b[{n}{code}")) }
    }
}

impl indicatif::TermLike for SpinnerTerm {
    fn width(&self) -> u16 {
        u16::try_from(self.width.saturating_sub(4).max(20)).unwrap_or(u16::MAX)
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.move_by(n, 'A')
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.move_by(n, 'B')
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.move_by(n, 'C')
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.move_by(n, 'D')
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write(&format!("{s}\n"))
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.write(s)
    }

    fn clear_line(&self) -> std::io::Result<()> {
        self.write("\r\x1b[2K")
    }

    fn flush(&self) -> std::io::Result<()> {
        use std::io::Write;
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;

    use super::*;

    fn wide() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, true),
            Field::new("a_rather_long_column_name", DataType::Int64, true),
        ]));
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["u1"])), Arc::new(Int64Array::from(vec![7]))])
            .unwrap()
    }

    #[test]
    fn a_table_wider_than_the_terminal_folds_into_records() {
        let b = wide();
        let table = fit(&b.schema(), std::slice::from_ref(&b), Some(80)).unwrap();
        assert!(table.starts_with("+---------+"), "{table}");
        let folded = fit(&b.schema(), std::slice::from_ref(&b), Some(20)).unwrap();
        assert_eq!(
            folded,
            "-[ RECORD 1 ]-------------+---\nuser_id                   | u1\na_rather_long_column_name | 7"
        );
        // No width (not a terminal): never folded.
        assert!(fit(&b.schema(), std::slice::from_ref(&b), None).unwrap().starts_with("+---"));
    }

    #[test]
    fn an_empty_result_still_shows_its_header() {
        let b = wide();
        let table = fit(&b.schema(), &[], Some(10)).unwrap();
        assert!(table.contains("| user_id | a_rather_long_column_name |"), "{table}");
    }

    #[test]
    fn footers_count_rows_and_time() {
        assert_eq!(footer(1, None, None), "(1 row)");
        assert_eq!(footer(3, Some(Duration::from_micros(12_345)), None), "(3 rows, 12.3 ms)");
        assert_eq!(
            footer(2, Some(Duration::from_millis(3_210)), Some(std::path::Path::new("out.csv"))),
            "(2 rows written to out.csv, 3.21 s)"
        );
    }

    #[test]
    fn text_tables_align_cells() {
        let t = text_table(&["tag", "users"], &[vec!["vip".into(), "12".into()]]).unwrap();
        assert_eq!(t, "+-----+-------+\n| tag | users |\n+-----+-------+\n| vip | 12    |\n+-----+-------+");
    }
}
