//! Parquet data files as the store keeps them: the hidden row-id column first, bounded file size
//! (a new file every `max_rows` rows) so that files can be read in parallel, small pages and an
//! offset index so that a row selection skips I/O, and no dictionary for unique-ish columns. Each
//! users file gets its row-addressable copy of the unique string columns alongside
//! ([`crate::store::addressable`]).

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{IoContext, Result};
use crate::store::StoreWriter;
use crate::store::addressable::{self, AddressableWriter};
use crate::store::day_times::{self, DayTimesWriter};
use crate::store::manifest::DataFile;
use crate::store::plain_columns::{self, PlainColumnsWriter};
use crate::store::{io, layout};
use crate::tables::{ORDER_ID, ROW_ID_COLUMN, TS, Table, UNIQUE_COLUMNS, USER_ID};

/// Rows per users data file.
pub const USERS_FILE_ROWS: u64 = 1 << 20;
/// Rows per fact data file.
pub const FACT_FILE_ROWS: u64 = 4 << 20;
/// Rows per page: small pages let a row selection skip I/O.
const PAGE_ROWS: usize = 8192;

/// Writes a table's rows into a sequence of bounded Parquet files of the store.
pub struct TableSink<'w> {
    writer: &'w StoreWriter,
    table: Table,
    schema: SchemaRef,
    props: WriterProperties,
    max_rows: u64,
    /// When set, nothing is written: rows are only counted (`--dry-run`).
    dry_run: bool,
    current: Option<OpenFile>,
    done: Vec<DataFile>,
    /// Closed files being made durable meanwhile ([`io::sync_later`]); `finish` waits for them.
    syncing: Vec<std::thread::JoinHandle<Result<()>>>,
    rows: u64,
}

struct OpenFile {
    writer: ArrowWriter<io::NewFile>,
    relative: String,
    abs: std::path::PathBuf,
    rows: u64,
    first_row_id: Option<u32>,
    ts_range: Option<(i64, i64)>,
    row_id_ranges: RowGroupRanges,
    /// Users files: the row-addressable copy written alongside, and its relative path.
    addressable: Option<(AddressableWriter, String)>,
    /// Fact files with a `ts` column: the plain copy written alongside, and its relative path.
    plain: Option<(PlainColumnsWriter, String)>,
    /// Events files: their day times, collected as rows are written.
    day_times: Option<DayTimesWriter>,
}

/// The smallest and largest row id of each row group of a file being written, from the row ids
/// in row order and the row groups' sizes.
#[derive(Debug)]
pub struct RowGroupRanges {
    /// Row count of each row group (the last one repeats for files written here).
    group_rows: Vec<u64>,
    /// Rows seen so far, and the ranges of the groups begun.
    rows: u64,
    ranges: Vec<(u32, u32)>,
    /// The last row id seen, and whether every id so far was at least the one before.
    last: Option<u32>,
    ascending: bool,
}

impl RowGroupRanges {
    /// For row groups of these sizes; a size of 0 ends the list.
    pub fn new(group_rows: Vec<u64>) -> RowGroupRanges {
        RowGroupRanges { group_rows, rows: 0, ranges: Vec::new(), last: None, ascending: true }
    }

    /// Where the current row group ends (in rows from the file's start).
    fn group_end(&self, group: usize) -> u64 {
        let fixed = self.group_rows.last().copied().unwrap_or(u64::MAX).max(1);
        let listed: u64 = self.group_rows.iter().take(group + 1).sum();
        if group < self.group_rows.len() { listed } else { listed + fixed * (group + 1 - self.group_rows.len()) as u64 }
    }

    pub fn add(&mut self, ids: &[u32]) {
        if self.ascending {
            let mut last = self.last;
            for &id in ids {
                if last.is_some_and(|l| id < l) {
                    self.ascending = false;
                    break;
                }
                last = Some(id);
            }
            self.last = last;
        }
        let mut rest = ids;
        while !rest.is_empty() {
            let group = self.ranges.len().saturating_sub(1);
            let end = if self.ranges.is_empty() { 0 } else { self.group_end(group) };
            if self.rows >= end {
                self.ranges.push((u32::MAX, 0));
                continue;
            }
            let take = ((end - self.rows) as usize).min(rest.len());
            let (part, tail) = rest.split_at(take);
            let range = self.ranges.last_mut().expect("a group was begun");
            for &id in part {
                range.0 = range.0.min(id);
                range.1 = range.1.max(id);
            }
            self.rows += take as u64;
            rest = tail;
        }
    }

    /// Whether the rows seen came in ascending user row id order (grouped by user).
    pub fn ascending(&self) -> bool {
        self.ascending
    }

    pub fn finish(self) -> Vec<(u32, u32)> {
        self.ranges
    }
}

impl<'w> TableSink<'w> {
    /// `schema` is the file schema (row id first). `max_rows` bounds each file.
    pub fn new(writer: &'w StoreWriter, table: Table, schema: SchemaRef, max_rows: u64, dry_run: bool) -> Self {
        let row_group = if table == Table::Users { 128 * 1024 } else { 256 * 1024 };
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(row_group))
            .set_data_page_row_count_limit(PAGE_ROWS)
            .set_write_batch_size(PAGE_ROWS)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_column_dictionary_enabled(ColumnPath::from(ROW_ID_COLUMN), false)
            .set_column_encoding(ColumnPath::from(ROW_ID_COLUMN), Encoding::DELTA_BINARY_PACKED);
        // Nobody filters on a range of order ids: their statistics would only cost comparisons.
        if table == Table::Purchases {
            props = props.set_column_statistics_enabled(ColumnPath::from(ORDER_ID), EnabledStatistics::None);
        }
        for col in UNIQUE_COLUMNS {
            if schema.field_with_name(col).is_ok() && !(table.is_fact() && *col == USER_ID) {
                props = props.set_column_dictionary_enabled(ColumnPath::from(*col), false);
            }
        }
        TableSink {
            writer,
            table,
            schema,
            props: props.build(),
            max_rows,
            dry_run,
            current: None,
            done: Vec::new(),
            syncing: Vec::new(),
            rows: 0,
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Appends rows (in the file schema), starting new files at the size bound.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if self.dry_run {
                self.rows += (batch.num_rows() - offset) as u64;
                return Ok(());
            }
            if self.current.as_ref().is_some_and(|f| f.rows >= self.max_rows) {
                self.close_current()?;
            }
            if self.current.is_none() {
                self.open_file()?;
            }
            let file = self.current.as_mut().expect("a file was just opened");
            let room = (self.max_rows - file.rows) as usize;
            let take = room.min(batch.num_rows() - offset);
            let part = batch.slice(offset, take);
            if file.first_row_id.is_none() && self.table == Table::Users {
                file.first_row_id =
                    part.column(0).as_primitive::<arrow::datatypes::UInt32Type>().values().first().copied();
            }
            extend_ts_range(&mut file.ts_range, &part);
            if self.table.is_fact() {
                let ids = part.column(0).as_primitive::<arrow::datatypes::UInt32Type>().values();
                file.row_id_ranges.add(ids);
                if let Some((copy, _)) = &mut file.plain {
                    copy.push(&part, ids)?;
                }
                if let Some(times) = &mut file.day_times {
                    times.push(&part, ids)?;
                }
            }
            file.writer.write(&part)?;
            if let Some((copy, _)) = &mut file.addressable {
                copy.write(&part)?;
            }
            file.rows += take as u64;
            self.rows += take as u64;
            offset += take;
        }
        Ok(())
    }

    fn open_file(&mut self) -> Result<()> {
        let (relative, abs) =
            self.writer.new_file(layout::new_data_file(self.table.name(), self.writer.next_version()))?;
        let f = io::create(&abs)?;
        let writer = ArrowWriter::try_new(f, Arc::clone(&self.schema), Some(self.props.clone()))?;
        let row_group = self.props.max_row_group_row_count().unwrap_or(1 << 20) as u64;
        let addressable = if self.table == Table::Users {
            let (copy_relative, copy_abs) = self.writer.new_file(addressable::path_for(&relative))?;
            AddressableWriter::create(&copy_abs, &self.schema)?.map(|w| (w, copy_relative))
        } else {
            None
        };
        let plain = if self.table.keeps_plain_copy() {
            let (copy_relative, copy_abs) = self.writer.new_file(plain_columns::path_for(&relative))?;
            Some((PlainColumnsWriter::create(&copy_abs, &self.schema)?, copy_relative))
        } else {
            None
        };
        self.current = Some(OpenFile {
            writer,
            relative,
            abs,
            rows: 0,
            first_row_id: None,
            ts_range: None,
            row_id_ranges: RowGroupRanges::new(vec![row_group]),
            addressable,
            plain,
            day_times: self.table.day_times_columns().map(DayTimesWriter::new),
        });
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some(file) = self.current.take() {
            let f = file.writer.into_inner()?;
            let bytes = f.size().io_context("stat", &file.abs)?;
            self.syncing.push(io::sync_later(f, file.abs.clone()));
            let addressable = match file.addressable {
                Some((copy, relative)) => Some(self.copy_written(copy.finish()?, relative)),
                None => None,
            };
            let plain_columns = match file.plain {
                Some((copy, relative)) => Some(self.copy_written(copy.finish()?, relative)),
                None => None,
            };
            let day_times = match file.day_times {
                Some(times) => self.day_times_written(times, &file.relative)?,
                None => None,
            };
            self.done.push(DataFile {
                path: file.relative,
                rows: file.rows,
                bytes,
                first_row_id: file.first_row_id,
                ts_range: file.ts_range,
                row_ids: None,
                rows_by_user: file.row_id_ranges.ascending(),
                row_id_ranges: file.row_id_ranges.finish(),
                addressable,
                plain_columns,
                day_times,
                dead: None,
            });
        }
        Ok(())
    }

    /// Writes a data file's day times beside it (when its rows have them): their relative path.
    fn day_times_written(&mut self, times: DayTimesWriter, data_relative: &str) -> Result<Option<String>> {
        let (relative, abs) = self.writer.new_file(day_times::path_for(data_relative))?;
        Ok(times.finish(&abs)?.map(|file| self.copy_written(file, relative)))
    }

    /// A copy beside a data file, written: made durable in the background; its relative path.
    fn copy_written(&mut self, file: io::NewFile, relative: String) -> String {
        let path = layout::resolve(self.writer.store().root(), &relative);
        self.sync_later(file, path);
        relative
    }

    /// Makes `file` durable on a background thread; [`Self::finish`] waits for it.
    pub fn sync_later(&mut self, file: io::NewFile, path: std::path::PathBuf) {
        self.syncing.push(io::sync_later(file, path));
    }

    /// Closes the last file and waits until every file is durable; returns the files written and
    /// the rows written (or counted).
    pub fn finish(mut self) -> Result<(Vec<DataFile>, u64)> {
        self.close_current()?;
        io::wait_synced(std::mem::take(&mut self.syncing))?;
        Ok((std::mem::take(&mut self.done), self.rows))
    }
}

/// Widens `range` to the smallest and largest `ts` of `batch` (if it has a `ts` column).
pub fn extend_ts_range(range: &mut Option<(i64, i64)>, batch: &RecordBatch) {
    let Ok(i) = batch.schema().index_of(TS) else { return };
    let ts = batch.column(i).as_primitive::<TimestampMicrosecondType>();
    if let (Some(lo), Some(hi)) = (arrow::compute::min(ts), arrow::compute::max(ts)) {
        *range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
    }
}
