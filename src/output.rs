//! Writers for query results: aligned tables, CSV, JSON (an array of objects) and Parquet, from a
//! stream of record batches. Only table output collects the rows first (to align columns).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

use arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use parquet::arrow::ArrowWriter;

use crate::error::{Error, IoContext, Result};

/// The formats `persona sql` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
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
    match format {
        OutputFormat::Table => {
            let mut batches: Vec<RecordBatch> = Vec::new();
            while let Some(b) = stream.next().await {
                let b = b?;
                rows += b.num_rows() as u64;
                batches.push(b);
            }
            // Statements such as SET return nothing: print nothing rather than an empty frame.
            if schema.fields().is_empty() {
                out.flush().io_context("flush", target)?;
                return Ok(rows);
            }
            if batches.is_empty() {
                batches.push(RecordBatch::new_empty(schema));
            }
            let table = arrow::util::pretty::pretty_format_batches(&batches)?;
            writeln!(out, "{table}").map_err(io_err)?;
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
            let mut w = arrow::json::ArrayWriter::new(&mut *out);
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
