//! Writing a generated table as numbered, bounded CSV or Parquet files (`users/users-00000.parquet`,
//! ...), and counting the rows, files and bytes written.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::GenFormat;
use super::batches::schema;
use crate::error::{Error, IoContext, Result};
use crate::tables::{ORDER_ID, PRODUCT_ID, Table, USER_ID};

/// Rows per Parquet row group.
pub(super) const ROW_GROUP_ROWS: usize = 262_144;

/// Rows, files and bytes written for one table.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TableStats {
    pub(super) rows: u64,
    pub(super) files: usize,
    pub(super) bytes: u64,
}

enum FileWriter {
    Parquet(ArrowWriter<BufWriter<File>>),
    Csv(arrow::csv::Writer<BufWriter<File>>),
}

/// Writes one generated table as a sequence of numbered files `<table>/<table>-NNNNN.<ext>` of at
/// most `max_rows` rows each.
pub(super) struct TableFileWriter {
    table: Table,
    dir: PathBuf,
    format: GenFormat,
    schema: SchemaRef,
    max_rows: usize,
    current: Option<(FileWriter, PathBuf)>,
    rows_in_file: usize,
    stats: TableStats,
}

fn format_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Format { context: format!("writing {}", path.display()), message: e.to_string() }
}

impl TableFileWriter {
    /// A writer of `table` into its folder under `out` (the folder must exist).
    pub(super) fn new(table: Table, out: &Path, format: GenFormat, max_rows: usize) -> Self {
        TableFileWriter {
            table,
            dir: out.join(table.name()),
            format,
            schema: schema(table),
            max_rows: max_rows.max(1),
            current: None,
            rows_in_file: 0,
            stats: TableStats::default(),
        }
    }

    fn properties(&self) -> WriterProperties {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
        // Unique columns: a dictionary would only be built to be thrown away.
        let unique: &[&str] = match self.table {
            Table::Users => &[USER_ID, "phone", "email"],
            Table::Purchases => &[ORDER_ID],
            Table::Products => &[PRODUCT_ID],
            _ => &[],
        };
        for col in unique {
            props = props.set_column_dictionary_enabled(ColumnPath::from(*col), false);
        }
        props.build()
    }

    fn open(&mut self) -> Result<()> {
        let ext = match self.format {
            GenFormat::Parquet => "parquet",
            GenFormat::Csv => "csv",
        };
        let path = self.dir.join(format!("{}-{:05}.{ext}", self.table, self.stats.files));
        let file = File::create(&path).io_context("create", &path)?;
        let buf = BufWriter::with_capacity(1 << 20, file);
        let writer = match self.format {
            GenFormat::Parquet => FileWriter::Parquet(
                ArrowWriter::try_new(buf, self.schema.clone(), Some(self.properties()))
                    .map_err(|e| format_error(&path, e))?,
            ),
            GenFormat::Csv => FileWriter::Csv(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .with_date_format("%Y-%m-%d".to_string())
                    .with_timestamp_format("%Y-%m-%d %H:%M:%S".to_string())
                    .build(buf),
            ),
        };
        self.current = Some((writer, path));
        self.rows_in_file = 0;
        self.stats.files += 1;
        Ok(())
    }

    fn write_current(&mut self, batch: &RecordBatch) -> Result<()> {
        if let Some((writer, path)) = &mut self.current {
            match writer {
                FileWriter::Parquet(w) => w.write(batch).map_err(|e| format_error(path, e))?,
                FileWriter::Csv(w) => w.write(batch).map_err(|e| format_error(path, e))?,
            }
        }
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        let Some((writer, path)) = self.current.take() else {
            return Ok(());
        };
        let buf = match writer {
            FileWriter::Parquet(w) => w.into_inner().map_err(|e| format_error(&path, e))?,
            FileWriter::Csv(w) => w.into_inner(),
        };
        let mut file = buf.into_inner().map_err(|e| e.into_error()).io_context("write", &path)?;
        file.flush().io_context("write", &path)?;
        let len = file.metadata().io_context("stat", &path)?.len();
        self.stats.bytes += len;
        Ok(())
    }

    /// Appends rows, starting a new file whenever the current one is full.
    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        let mut offset = 0;
        while offset < n {
            if self.current.is_none() {
                self.open()?;
            }
            let take = (self.max_rows - self.rows_in_file).min(n - offset);
            self.write_current(&batch.slice(offset, take))?;
            self.rows_in_file += take;
            self.stats.rows += take as u64;
            offset += take;
            if self.rows_in_file >= self.max_rows {
                self.close_current()?;
            }
        }
        Ok(())
    }

    /// Closes the last file; a table without rows still gets one (empty) file with its schema.
    pub(super) fn finish(mut self) -> Result<TableStats> {
        if self.stats.files == 0 {
            self.open()?;
            self.write_current(&RecordBatch::new_empty(self.schema.clone()))?;
        }
        self.close_current()?;
        Ok(self.stats)
    }
}
