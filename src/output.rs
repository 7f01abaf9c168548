//! Writers for query results: aligned tables, vertical records, CSV, JSON (an array of objects on
//! one line, NULLs kept as `null`) and Parquet, from a stream of record batches. Only tables and
//! vertical records collect the rows first (to align columns). A result without columns (`SET`)
//! writes nothing. `html` and `report` build the self-contained HTML page of `persona report`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod html;
pub mod report;

use std::io::Write;

use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use parquet::arrow::ArrowWriter;

use crate::error::{Error, IoContext, Result};

/// The formats `persona sql` and `persona shell` write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    /// One block of `column | value` lines per row, for rows too wide for a table.
    Vertical,
    Csv,
    Json,
    Parquet,
}

/// Writes every batch of `stream` to `out` in `format`; returns the number of rows.
pub async fn write_stream(
    mut stream: SendableRecordBatchStream,
    format: OutputFormat,
    out: &mut (dyn Write + Send),
    target: &std::path::Path,
) -> Result<u64> {
    let schema = stream.schema();
    let mut rows = 0u64;
    let io_err = |e: std::io::Error| Error::Io { op: "write", path: target.to_path_buf(), source: e };
    // Statements such as SET return no columns: print nothing in any format (not an empty frame,
    // an empty CSV header or `[]`).
    if schema.fields().is_empty() {
        while let Some(b) = stream.next().await {
            rows += b?.num_rows() as u64;
        }
        return Ok(rows);
    }
    match format {
        OutputFormat::Table | OutputFormat::Vertical => {
            let mut batches: Vec<RecordBatch> = Vec::new();
            while let Some(b) = stream.next().await {
                let b = b?;
                rows += b.num_rows() as u64;
                batches.push(b);
            }
            if format == OutputFormat::Vertical {
                write!(out, "{}", vertical_text(&batches)?).map_err(io_err)?;
            } else {
                if batches.is_empty() {
                    batches.push(RecordBatch::new_empty(schema));
                }
                let table = arrow::util::pretty::pretty_format_batches(&batches)?;
                writeln!(out, "{table}").map_err(io_err)?;
            }
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut *out);
            let mut wrote = false;
            while let Some(b) = stream.next().await {
                let b = b?;
                rows += b.num_rows() as u64;
                w.write(&b)?;
                wrote = true;
            }
            if !wrote {
                w.write(&RecordBatch::new_empty(schema))?;
            }
        }
        OutputFormat::Json => {
            // NULLs are written as `"n": null`: a reader should not have to know the columns to
            // tell a NULL from a missing key.
            let mut w = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(&mut *out);
            while let Some(b) = stream.next().await {
                let b = b?;
                rows += b.num_rows() as u64;
                w.write(&b)?;
            }
            w.finish()?;
            writeln!(out).map_err(io_err)?;
        }
        OutputFormat::Parquet => {
            let mut w = ArrowWriter::try_new(&mut *out, schema, None)?;
            while let Some(b) = stream.next().await {
                let b = b?;
                rows += b.num_rows() as u64;
                w.write(&b)?;
            }
            w.close()?;
        }
    }
    out.flush().io_context("flush", target)?;
    Ok(rows)
}

/// Rows as blocks of `column | value` lines, each under a `-[ RECORD n ]` rule (the layout psql
/// calls expanded). NULL shows as an empty value, as in tables; nothing for no rows.
pub fn vertical_text(batches: &[RecordBatch]) -> Result<String> {
    use unicode_width::UnicodeWidthStr;
    let Some(first) = batches.first() else { return Ok(String::new()) };
    let schema = first.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let options = FormatOptions::default();
    let mut records: Vec<Vec<String>> = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            records.push(formatters.iter().map(|f| f.value(row).to_string()).collect());
        }
    }
    let name_width = names.iter().map(|n| n.width()).max().unwrap_or(0);
    let value_width = records.iter().flatten().flat_map(|v| v.split('\n')).map(|l| l.width()).max().unwrap_or(0);
    let mut out = String::new();
    for (i, values) in records.iter().enumerate() {
        let header = format!("-[ RECORD {} ]", i + 1);
        // The rule's `+` sits above the `|` of the lines below.
        let left = (name_width + 1).max(header.len());
        out.push_str(&header);
        out.push_str(&"-".repeat(left - header.len()));
        out.push('+');
        out.push_str(&"-".repeat(value_width + 1));
        out.push('\n');
        for (name, value) in names.iter().zip(values) {
            for (j, line) in value.split('\n').enumerate() {
                let label = if j == 0 { *name } else { "" };
                let pad = left - 1 - label.width();
                out.push_str(format!("{label}{} | {line}", " ".repeat(pad)).trim_end_matches(' '));
                out.push('\n');
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, true),
            Field::new("points", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("u1"), Some("u2")])),
                Arc::new(Int64Array::from(vec![Some(100), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn vertical_text_prints_one_block_per_row_with_aligned_names() {
        let text = vertical_text(&[batch()]).unwrap();
        assert_eq!(
            text,
            "-[ RECORD 1 ]+----\nuser_id      | u1\npoints       | 100\n\
             -[ RECORD 2 ]+----\nuser_id      | u2\npoints       |\n"
        );
        assert_eq!(vertical_text(&[]).unwrap(), "");
    }

    fn stream_of(b: RecordBatch) -> SendableRecordBatchStream {
        Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            b.schema(),
            futures::stream::iter(vec![Ok(b)]),
        ))
    }

    async fn written(b: RecordBatch, format: OutputFormat) -> String {
        let mut out: Vec<u8> = Vec::new();
        write_stream(stream_of(b), format, &mut out, std::path::Path::new("<memory>")).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Before, a NULL value dropped its key (`{"user_id":"u2"}`), so a reader could not tell a
    /// NULL from a column that is not there.
    #[tokio::test]
    async fn json_keeps_null_values_as_null() {
        let text = written(batch(), OutputFormat::Json).await;
        assert_eq!(text, "[{\"user_id\":\"u1\",\"points\":100},{\"user_id\":\"u2\",\"points\":null}]\n");
    }

    /// Before, `SET` printed an empty line in CSV and `[]` in JSON.
    #[tokio::test]
    async fn a_result_without_columns_writes_nothing_in_any_format() {
        let empty = RecordBatch::new_empty(Arc::new(Schema::empty()));
        for format in [OutputFormat::Table, OutputFormat::Vertical, OutputFormat::Csv, OutputFormat::Json] {
            assert_eq!(written(empty.clone(), format).await, "", "{format:?}");
        }
    }

    #[tokio::test]
    async fn write_stream_writes_vertical_records() {
        let b = batch();
        let stream: SendableRecordBatchStream =
            Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                b.schema(),
                futures::stream::iter(vec![Ok(b)]),
            ));
        let mut out: Vec<u8> = Vec::new();
        let rows =
            write_stream(stream, OutputFormat::Vertical, &mut out, std::path::Path::new("<memory>")).await.unwrap();
        assert_eq!(rows, 2);
        assert!(String::from_utf8(out).unwrap().starts_with("-[ RECORD 1 ]+"));
    }
}
