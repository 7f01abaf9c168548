//! Conforming fact files kept as loaded: a Parquet input that already is the contract's table
//! (names, order, types) is copied into the store byte for byte rather than re-encoded, with its
//! rows' user row ids in a companion Parquet file of one column, row for row (and, for purchases,
//! its plain copy). Its rows are still checked like any other's.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::UInt32Array;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::job::Sink;
use super::reader::SourceFile;
use super::writer;
use crate::error::{Error, IoContext, Result};
use crate::store::StoreWriter;
use crate::store::day_times::{self, DayTimesWriter};
use crate::store::io;
use crate::store::layout;
use crate::store::manifest::DataFile;
use crate::store::plain_columns::{self, PlainColumnsWriter};
use crate::tables::{ROW_ID_COLUMN, Table};

/// A conforming fact file copied into the store as it is, plus the Parquet file of its row ids.
pub(super) struct KeptFile {
    table: Table,
    copy: (String, PathBuf),
    row_ids: (String, PathBuf, parquet::arrow::ArrowWriter<io::NewFile>),
    row_ids_schema: SchemaRef,
    rows: u64,
    ts_range: Option<(i64, i64)>,
    row_id_ranges: writer::RowGroupRanges,
    /// The plain copy ([`plain_columns`]), once the first batch gives the columns decoded: its
    /// relative path and writer.
    plain: Option<(String, PathBuf, PlainColumnsWriter)>,
    /// Events files: their day times ([`day_times`]), collected as rows are read, and their path.
    day_times: Option<(String, PathBuf, DayTimesWriter)>,
}

impl KeptFile {
    pub fn new(writer: &StoreWriter, table: Table, src: &SourceFile) -> Result<KeptFile> {
        let (rel, abs) = writer.new_file(layout::new_data_file(table.name(), writer.next_version()))?;
        io::copy(&src.path, &abs)?;
        let (ids_rel, ids_abs) = writer.new_file(layout::new_row_ids_file(table.name(), writer.next_version()))?;
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            ROW_ID_COLUMN,
            arrow::datatypes::DataType::UInt32,
            false,
        )]));
        let props = parquet::file::properties::WriterProperties::builder()
            .set_dictionary_enabled(false)
            .set_encoding(parquet::basic::Encoding::DELTA_BINARY_PACKED)
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let out = io::create(&ids_abs)?;
        let ids_writer = parquet::arrow::ArrowWriter::try_new(out, Arc::clone(&schema), Some(props))?;
        let footer = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&File::open(&src.path).io_context("open", &src.path)?)
            .map_err(|e| Error::corrupt(&src.path, e.to_string()))?;
        let day_times = match table.day_times_columns() {
            Some(columns) => {
                let (rel, abs) = writer.new_file(day_times::path_for(&rel))?;
                Some((rel, abs, DayTimesWriter::new(columns)))
            }
            None => None,
        };
        let group_rows = footer.row_groups().iter().map(|rg| rg.num_rows().max(0) as u64).collect();
        Ok(KeptFile {
            table,
            row_id_ranges: writer::RowGroupRanges::new(group_rows),
            copy: (rel, abs),
            row_ids: (ids_rel, ids_abs, ids_writer),
            row_ids_schema: schema,
            rows: 0,
            ts_range: None,
            plain: None,
            day_times,
        })
    }

    pub fn add(&mut self, writer: &StoreWriter, batch: &RecordBatch, row_ids: Vec<u32>) -> Result<()> {
        writer::extend_ts_range(&mut self.ts_range, batch);
        if self.plain.is_none() && self.table.keeps_plain_copy() {
            let (rel, abs) = writer.new_file(plain_columns::path_for(&self.copy.0))?;
            let copy = PlainColumnsWriter::create(&abs, &batch.schema())?;
            self.plain = Some((rel, abs, copy));
        }
        if let Some((_, _, copy)) = &mut self.plain {
            copy.push(batch, &row_ids)?;
        }
        if let Some((_, _, times)) = &mut self.day_times {
            times.push(batch, &row_ids)?;
        }
        self.row_id_ranges.add(&row_ids);
        self.rows += row_ids.len() as u64;
        let ids = RecordBatch::try_new(Arc::clone(&self.row_ids_schema), vec![Arc::new(UInt32Array::from(row_ids))])?;
        self.row_ids.2.write(&ids)?;
        Ok(())
    }

    /// Closes the files; `sink` makes them durable on background threads before its table's
    /// files are committed.
    pub fn finish(self, sink: &mut Sink) -> Result<DataFile> {
        let (ids_rel, ids_abs, ids_writer) = self.row_ids;
        sink.sync_later(ids_writer.into_inner()?, ids_abs)?;
        let (rel, abs) = self.copy;
        let file = io::reopen(&abs)?;
        let bytes = file.size().io_context("stat", &abs)?;
        sink.sync_later(file, abs)?;
        let plain_columns = match self.plain {
            Some((rel, abs, copy)) => {
                sink.sync_later(copy.finish()?, abs)?;
                Some(rel)
            }
            None => None,
        };
        let day_times = match self.day_times {
            Some((rel, abs, times)) => match times.finish(&abs)? {
                Some(file) => {
                    sink.sync_later(file, abs)?;
                    Some(rel)
                }
                None => None,
            },
            None => None,
        };
        Ok(DataFile {
            path: rel,
            rows: self.rows,
            bytes,
            first_row_id: None,
            ts_range: self.ts_range,
            row_ids: Some(ids_rel),
            rows_by_user: self.row_id_ranges.ascending(),
            row_id_ranges: self.row_id_ranges.finish(),
            addressable: None,
            plain_columns,
            day_times,
            dead: None,
        })
    }
}
