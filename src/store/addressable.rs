//! Row-addressable copies of a users file's unique string columns (`user_id`, `name`, `phone`,
//! `email`): an uncompressed Arrow IPC file beside the Parquet file, row for row, which an audience
//! export maps into memory and gathers its members' values from by row number, without reading or
//! decoding the pages of the members' neighbours. With one user in nine a member, every Parquet
//! page of an exported column holds members, so the Parquet path decodes every value of it.
//!
//! The columns are stored as `Binary` so that opening a copy validates only offsets, not the
//! UTF-8 of every value: the gathered values are validated when they become strings. Writing and
//! mapping are [`crate::store::ipc`]'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};

use crate::error::{Error, Result};
use crate::store::ipc::{IpcFileWriter, MappedIpc, OpenedFiles};
use crate::store::ipc_checksums::Checksums;
use crate::tables::UNIQUE_COLUMNS;

/// Rows per IPC batch: small batches from the import are coalesced up to this.
const BATCH_ROWS: usize = 128 * 1024;

/// The relative path of the copy of the users file at `parquet_relative`.
pub fn path_for(parquet_relative: &str) -> String {
    crate::store::layout::beside_data_file(parquet_relative, "arrow")
}

/// Whether copies hold users column `name` (when the users file has it as a string column).
pub fn holds(name: &str) -> bool {
    UNIQUE_COLUMNS.contains(&name)
}

/// The columns of a users file schema that get a copy: unique string columns.
fn copied_columns(schema: &Schema) -> Vec<usize> {
    schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| holds(f.name()) && *f.data_type() == DataType::Utf8)
        .map(|(i, _)| i)
        .collect()
}

/// Writes the copy while the users file is written, batch for batch.
pub struct AddressableWriter {
    columns: Vec<usize>,
    file: IpcFileWriter,
}

impl std::fmt::Debug for AddressableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressableWriter").field("path", &self.file.path()).finish_non_exhaustive()
    }
}

impl AddressableWriter {
    /// A writer for the copy of users files in `file_schema` at `path`, or `None` when the schema
    /// has no column to copy.
    pub fn create(path: &Path, file_schema: &Schema) -> Result<Option<AddressableWriter>> {
        let columns = copied_columns(file_schema);
        if columns.is_empty() {
            return Ok(None);
        }
        let fields: Vec<Field> =
            columns.iter().map(|&i| Field::new(file_schema.field(i).name(), DataType::Binary, true)).collect();
        let file = IpcFileWriter::create(path, Arc::new(Schema::new(fields)), BATCH_ROWS)?;
        Ok(Some(AddressableWriter { columns, file }))
    }

    /// Appends the rows of `batch` (in the users file schema).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|&i| arrow::compute::cast(batch.column(i), &DataType::Binary))
            .collect::<std::result::Result<_, _>>()?;
        self.file.push(RecordBatch::try_new(Arc::clone(self.file.schema()), columns)?)
    }

    /// Completes the file; returns it (to be made durable by the caller, see [`sync_later`]).
    ///
    /// [`sync_later`]: crate::store::io::sync_later
    pub fn finish(self) -> Result<crate::store::io::NewFile> {
        self.file.finish(Vec::new())
    }
}

/// An opened copy: its batches map the file; nothing is read until rows are gathered.
#[derive(Debug)]
pub struct AddressableCopy {
    path: PathBuf,
    names: Vec<String>,
    batches: Vec<RecordBatch>,
    /// The file row of each batch's first row.
    starts: Vec<u64>,
    rows: u64,
    /// Verifies the columns gathered from before they are read (see `ipc_checksums`).
    checks: Option<Arc<Checksums>>,
}

/// Copies opened by this process (a copy costs a mapping, not memory), so that repeated exports
/// map and validate each file once.
static OPENED: OpenedFiles<AddressableCopy> = OpenedFiles::new(64);

impl AddressableCopy {
    /// The copy at `path` opened for `wanted` columns, once per process, and kept among the
    /// recently used ones.
    pub fn open_cached(path: &Path, wanted: &[&str]) -> Result<Arc<AddressableCopy>> {
        let copy = OPENED.get_or_open(path, wanted, || AddressableCopy::open(path, wanted).map(Some))?;
        copy.ok_or_else(|| Error::Internal(format!("the copy {} could not be opened", path.display())))
    }

    /// Opens the copy at `path` for those of `wanted` columns it holds (see [`Self::names`]): maps
    /// it and validates their offsets (the others are not looked at).
    pub fn open(path: &Path, wanted: &[&str]) -> Result<AddressableCopy> {
        let mapped = MappedIpc::open(path, wanted)?;
        let mut starts = Vec::with_capacity(mapped.batches.len());
        let mut rows = 0u64;
        for batch in &mapped.batches {
            starts.push(rows);
            rows += batch.num_rows() as u64;
        }
        let (names, batches, checks) = (mapped.names, mapped.batches, mapped.checks);
        Ok(AddressableCopy { path: path.to_path_buf(), names, batches, starts, rows, checks })
    }

    /// The columns opened, in the order of `wanted`.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Fails (the store is damaged) unless the copy holds as many rows as its users file.
    pub fn check_rows(&self, users_rows: u64) -> Result<()> {
        if self.rows == users_rows {
            return Ok(());
        }
        Err(Error::corrupt(&self.path, format!("the copy holds {} rows, its users file {users_rows}", self.rows)))
    }

    /// Columns `columns` (positions in [`Self::names`]) as `Utf8`, of file rows `rows`
    /// (ascending), in pieces that follow the copy's batches: `f` gets each piece's columns and
    /// how many of `rows` it covers.
    pub fn gather(
        &self,
        rows: &[u32],
        columns: &[usize],
        mut f: impl FnMut(Vec<ArrayRef>, usize) -> Result<()>,
    ) -> Result<()> {
        let mut at = 0usize;
        for (batch, &start) in self.batches.iter().zip(&self.starts) {
            if at == rows.len() {
                break;
            }
            let end = start + batch.num_rows() as u64;
            let take = rows[at..].partition_point(|&r| u64::from(r) < end);
            if take == 0 {
                continue;
            }
            // Rows are ascending and every earlier batch took the rows before `start`.
            let local = UInt32Array::from_iter_values(rows[at..at + take].iter().map(|&r| r - start as u32));
            let gathered = columns
                .iter()
                .map(|&c| {
                    if let Some(checks) = &self.checks {
                        checks.ensure_array(batch.column(c).as_ref())?;
                    }
                    let values = arrow::compute::take(batch.column(c).as_ref(), &local, None)?;
                    arrow::compute::cast(&values, &DataType::Utf8)
                        .map_err(|e| Error::corrupt(&self.path, format!("a value is not UTF-8 text: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            f(gathered, take)?;
            at += take;
        }
        if at != rows.len() {
            return Err(Error::corrupt(
                &self.path,
                format!("row {} was asked for, but the copy holds {} rows", rows[at], self.rows),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, StringArray, UInt32Array as RowIds};

    fn users_batch(from: u32, n: u32) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("__row_id", DataType::UInt32, false),
            Field::new("user_id", DataType::Utf8, false),
            Field::new("tier", DataType::Utf8, true),
            Field::new("email", DataType::Utf8, true),
        ]));
        let ids = RowIds::from_iter_values(from..from + n);
        let users = StringArray::from_iter_values((from..from + n).map(|i| format!("u{i}")));
        let tiers = StringArray::from_iter((from..from + n).map(|_| Some("gold")));
        let emails = StringArray::from_iter((from..from + n).map(|i| (i % 3 != 0).then(|| format!("{i}@x.com"))));
        RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(users), Arc::new(tiers), Arc::new(emails)]).unwrap()
    }

    #[test]
    fn gathered_rows_are_the_written_rows_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.arrow");
        let first = users_batch(0, 100_000);
        let mut writer = AddressableWriter::create(&path, &first.schema()).unwrap().unwrap();
        // Uneven batches, coalesced into IPC batches of BATCH_ROWS.
        writer.write(&first).unwrap();
        writer.write(&users_batch(100_000, 70_000)).unwrap();
        writer.write(&users_batch(170_000, 5)).unwrap();
        writer.finish().unwrap();

        let wanted = ["email", "tier", "user_id"];
        let copy = AddressableCopy::open_cached(&path, &wanted).unwrap();
        assert_eq!(copy.names(), ["email", "user_id"], "tier is not a unique column");
        assert!(Arc::ptr_eq(&copy, &AddressableCopy::open_cached(&path, &wanted).unwrap()), "opened once");
        assert_eq!(copy.rows(), 170_005);
        let rows: Vec<u32> = vec![0, 3, 4, 131_071, 131_072, 150_000, 170_004];
        let mut got = Vec::new();
        copy.gather(&rows, &[0, 1], |columns, n| {
            assert_eq!(columns[0].len(), n);
            let (email, user) = (columns[0].as_string::<i32>(), columns[1].as_string::<i32>());
            for k in 0..n {
                got.push((user.value(k).to_string(), email.is_valid(k).then(|| email.value(k).to_string())));
            }
            Ok(())
        })
        .unwrap();
        let want: Vec<(String, Option<String>)> =
            rows.iter().map(|&i| (format!("u{i}"), (i % 3 != 0).then(|| format!("{i}@x.com")))).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_row_beyond_the_copy_and_a_damaged_file_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.arrow");
        let batch = users_batch(0, 10);
        let mut writer = AddressableWriter::create(&path, &batch.schema()).unwrap().unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        let copy = AddressableCopy::open(&path, &["user_id"]).unwrap();
        let err = copy.gather(&[9, 10], &[0], |_, _| Ok(())).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();
        let err = AddressableCopy::open(&path, &["user_id"]).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}
