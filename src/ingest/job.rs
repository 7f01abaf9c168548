//! What every phase of an import shares: the run's state ([`Job`]: base version, writer, progress,
//! cancellation), the table sink that is a row counter in a dry run, reading a source's batches
//! with the contract's required-value check, and aligning rows to a stored file's schema.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, AsArray, new_null_array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::ProgressFn;
use super::contract::ColumnPlan;
use super::reader::{BatchReader, SourceFile, TypedBatch};
use super::writer::TableSink;
use crate::error::{Error, IoContext, Result};
use crate::store::StoreWriter;
use crate::store::manifest::{DataFile, Manifest};
use crate::tables::{ColumnDef, ROW_ID_COLUMN, Table};

/// The message of the internal error a thread stops with when another one failed; the caller
/// reports the first real error instead.
pub(super) const CANCELLED: &str = "cancelled";

/// Shared state of one import run.
pub(super) struct Job<'a> {
    pub base: &'a Manifest,
    pub root: &'a Path,
    /// `None` for a dry run.
    pub writer: Option<&'a StoreWriter>,
    total_bytes: u64,
    done_bytes: AtomicU64,
    progress: Option<ProgressFn>,
    /// Set when any table's thread failed, so that the others stop early.
    pub cancelled: AtomicBool,
}

impl<'a> Job<'a> {
    pub fn new(
        base: &'a Manifest,
        root: &'a Path,
        writer: Option<&'a StoreWriter>,
        sources: &[SourceFile],
        progress: Option<ProgressFn>,
    ) -> Job<'a> {
        Job {
            base,
            root,
            writer,
            total_bytes: sources.iter().map(|s| s.size).sum(),
            done_bytes: AtomicU64::new(0),
            progress,
            cancelled: AtomicBool::new(false),
        }
    }

    fn advance(&self, delta: u64) {
        let done = self.done_bytes.fetch_add(delta, Ordering::Relaxed) + delta;
        if let Some(p) = &self.progress {
            p(done.min(self.total_bytes), self.total_bytes);
        }
    }

    pub fn sink(&self, table: Table, schema: SchemaRef, max_rows: u64) -> Sink<'_> {
        match self.writer {
            Some(w) => Sink::Real(Box::new(TableSink::new(w, table, schema, max_rows, false))),
            None => Sink::DryRun(0),
        }
    }
}

/// A table sink, or a row counter in a dry run.
pub(super) enum Sink<'w> {
    Real(Box<TableSink<'w>>),
    DryRun(u64),
}

impl Sink<'_> {
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            Sink::Real(s) => s.write(batch),
            Sink::DryRun(n) => {
                *n += batch.num_rows() as u64;
                Ok(())
            }
        }
    }

    /// Makes a file written beside the sink durable before the sink finishes.
    pub fn sync_later(&mut self, mut file: crate::store::io::NewFile, path: PathBuf) -> Result<()> {
        match self {
            Sink::Real(s) => {
                s.sync_later(file, path);
                Ok(())
            }
            Sink::DryRun(_) => file.sync_all().io_context("fsync", &path),
        }
    }

    pub fn finish(self) -> Result<Vec<DataFile>> {
        match self {
            Sink::Real(s) => Ok(s.finish()?.0),
            Sink::DryRun(_) => Ok(Vec::new()),
        }
    }
}

/// Reads all batches of one source, reporting progress, and hands each to `f`.
pub(super) fn for_each_batch(
    job: &Job<'_>,
    src: &SourceFile,
    plan: ColumnPlan,
    f: impl FnMut(TypedBatch) -> Result<()>,
) -> Result<()> {
    for_each_batch_of(job, src, plan, None, f)
}

/// [`for_each_batch`] decoding only the columns at `only` (sorted file positions; Parquet).
pub(super) fn for_each_batch_of(
    job: &Job<'_>,
    src: &SourceFile,
    plan: ColumnPlan,
    only: Option<&[usize]>,
    mut f: impl FnMut(TypedBatch) -> Result<()>,
) -> Result<()> {
    let mut rdr = BatchReader::open_columns(src, plan, only)?;
    let mut reported = 0;
    while let Some(batch) = rdr.next_batch()? {
        if job.cancelled.load(Ordering::Relaxed) {
            return Err(Error::Internal(CANCELLED.into()));
        }
        f(batch)?;
        job.advance(rdr.bytes_done.saturating_sub(reported));
        reported = rdr.bytes_done;
    }
    job.advance(src.size.saturating_sub(reported));
    Ok(())
}

/// Checks the columns that may not be NULL or empty.
pub(super) fn check_non_null(table: Table, src: &SourceFile, batch: &TypedBatch) -> Result<()> {
    for name in table.non_null_columns() {
        let Ok(i) = batch.batch.schema().index_of(name) else { continue };
        let col = batch.batch.column(i);
        let missing = match col.as_string_opt::<i32>() {
            // An empty string is as missing as a NULL; offsets tell both apart without a downcast per row.
            Some(text) => {
                let offsets = text.value_offsets();
                (0..text.len()).find(|&r| offsets[r + 1] == offsets[r] || text.is_null(r))
            }
            None if col.null_count() > 0 => (0..col.len()).find(|&r| col.is_null(r)),
            None => None,
        };
        if let Some(row) = missing {
            return Err(Error::input(
                &src.path,
                batch.location(row),
                Some(name),
                "the value is missing (it is required)",
            ));
        }
    }
    Ok(())
}

/// Aligns a batch in file-plan order to `columns` (absent columns become NULL), with the row id
/// column first.
pub(super) fn to_file_batch(
    batch: &RecordBatch,
    row_ids: ArrayRef,
    columns: &[ColumnDef],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let mut arrays = Vec::with_capacity(columns.len() + 1);
    arrays.push(row_ids);
    for c in columns {
        arrays.push(match batch.schema().index_of(&c.name) {
            Ok(i) => Arc::clone(batch.column(i)),
            Err(_) => new_null_array(&c.ty.arrow_type(), batch.num_rows()),
        });
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), arrays)?)
}

/// Reads a stored file whole, aligned to `columns` (columns it predates become NULL).
pub(super) fn read_aligned(path: &Path, columns: &[ColumnDef], schema: &SchemaRef) -> Result<RecordBatch> {
    let f = File::open(path).io_context("open", path)?;
    let rdr = ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| Error::corrupt(path, e.to_string()))?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| Error::corrupt(path, e.to_string()))?;
    let mut parts = Vec::new();
    for batch in rdr {
        let batch = batch.map_err(|e| Error::corrupt(path, e.to_string()))?;
        let row_ids = Arc::clone(
            batch.column(batch.schema().index_of(ROW_ID_COLUMN).map_err(|e| Error::corrupt(path, e.to_string()))?),
        );
        // The file schema fixes every column's type: a file that differs is damaged.
        parts.push(to_file_batch(&batch, row_ids, columns, schema).map_err(|e| Error::corrupt(path, e.to_string()))?);
    }
    Ok(arrow::compute::concat_batches(schema, &parts)?)
}
