//! Users as sets and as rows: the users rows of a set of row ids (in row-id order, gathered from
//! the users files' row-addressable copies or read from the Parquet files with a row selection),
//! the row ids of `user_id` strings (through the id dictionary), suppression files of user_ids,
//! and the deterministic holdout.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use roaring::RoaringBitmap;

use crate::error::{Error, IoContext, Result};
use crate::index::IndexSet;
use crate::query::bitmap_scan::{UsersFile, file_row_selection, row_id_range};
use crate::store::addressable::AddressableCopy;
use crate::store::fact_rows::read_stored_rows;
use crate::tables::USER_ID;

/// What a reader thread hands over.
enum Item<T> {
    Part(T),
    /// The file's last part was sent.
    EndOfFile,
}

/// Work done on the reader threads on each users file's member batches, before the consumer
/// sees them: the consumer gets what [`FileStage::batch`] and [`FileStage::end`] return.
pub trait FileStage: Sync {
    type State;
    type Out: Send;
    /// Starts a users file.
    fn begin(&self) -> Result<Self::State>;
    /// A batch of the file's members (and their row ids).
    fn batch(&self, state: &mut Self::State, batch: RecordBatch, ids: Vec<u32>) -> Result<Option<Self::Out>>;
    /// The file's members were all read.
    fn end(&self, state: Self::State) -> Result<Option<Self::Out>>;
}

/// Hands every batch over as it is.
struct PassThrough;

impl FileStage for PassThrough {
    type State = ();
    type Out = (RecordBatch, Vec<u32>);
    fn begin(&self) -> Result<()> {
        Ok(())
    }
    fn batch(&self, _: &mut (), batch: RecordBatch, ids: Vec<u32>) -> Result<Option<Self::Out>> {
        Ok(Some((batch, ids)))
    }
    fn end(&self, _: ()) -> Result<Option<Self::Out>> {
        Ok(None)
    }
}

/// Calls `f` with batches of `columns` of the users in `set`, in row-id order, and the row ids of
/// their rows. Two threads read alternate files while `f` works on the batches already read, with
/// at most a few batches waiting per thread (bounded memory).
pub fn for_each_member_batch(
    files: &[UsersFile],
    set: &RoaringBitmap,
    columns: &[&str],
    mut f: impl FnMut(&RecordBatch, &[u32]) -> Result<()>,
) -> Result<()> {
    for_each_member_staged(files, set, columns, &PassThrough, |(batch, ids)| f(&batch, &ids))
}

/// [`for_each_member_batch`] with `stage` run on the reader threads: `f` gets, in file order,
/// what the stage made of each file's batches.
pub fn for_each_member_staged<S: FileStage>(
    files: &[UsersFile],
    set: &RoaringBitmap,
    columns: &[&str],
    stage: &S,
    mut f: impl FnMut(S::Out) -> Result<()>,
) -> Result<()> {
    const READERS: usize = 2;
    let mut senders = Vec::with_capacity(READERS);
    let mut receivers = Vec::with_capacity(READERS);
    for _ in 0..READERS {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Item<S::Out>>>(4);
        senders.push(tx);
        receivers.push(rx);
    }
    let stopped = || Error::Internal("the reader's consumer stopped".into());
    std::thread::scope(|scope| {
        for (reader, tx) in senders.into_iter().enumerate() {
            scope.spawn(move || {
                for file in files.iter().skip(reader).step_by(READERS) {
                    let sent = stage.begin().and_then(|mut state| {
                        read_member_file(file, set, columns, &mut |batch, ids| match stage
                            .batch(&mut state, batch, ids)?
                        {
                            Some(out) => tx.send(Ok(Item::Part(out))).map_err(|_| stopped()),
                            None => Ok(()),
                        })?;
                        if let Some(out) = stage.end(state)? {
                            tx.send(Ok(Item::Part(out))).map_err(|_| stopped())?;
                        }
                        tx.send(Ok(Item::EndOfFile)).map_err(|_| stopped())
                    });
                    if let Err(e) = sent {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            });
        }
        // Files in order: file k comes from reader k mod READERS. Returning early drops the
        // receivers, which stops the readers at their next send.
        for k in 0..files.len() {
            let rx = &receivers[k % READERS];
            loop {
                match rx.recv() {
                    Ok(Ok(Item::Part(out))) => f(out)?,
                    Ok(Ok(Item::EndOfFile)) => break,
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(Error::Internal("a users file reader stopped without a word".into())),
                }
            }
        }
        Ok(())
    })
}

/// Reads the members' rows of one users file: the columns its row-addressable copy holds are
/// gathered from the copy, the others read from the Parquet file with a row selection.
fn read_member_file(
    file: &UsersFile,
    set: &RoaringBitmap,
    columns: &[&str],
    f: &mut dyn FnMut(RecordBatch, Vec<u32>) -> Result<()>,
) -> Result<()> {
    let range = row_id_range(file);
    if set.range_cardinality(range) == 0 {
        return Ok(());
    }
    let ids: Vec<u32> = set.range(range).collect();
    let copy = match &file.addressable {
        Some(path) => Some(AddressableCopy::open_cached(path, columns)?),
        None => None,
    };
    // (position in `columns`, position in the copy) of the columns the copy holds.
    let copied: Vec<(usize, usize)> = copy
        .as_ref()
        .map(|copy| {
            columns
                .iter()
                .enumerate()
                .filter_map(|(i, c)| copy.names().iter().position(|n| n == c).map(|k| (i, k)))
                .collect()
        })
        .unwrap_or_default();
    let Some(copy) = copy.filter(|_| !copied.is_empty()) else {
        return read_parquet_rows(file, set, &ids, columns, f);
    };
    copy.check_rows(file.rows)?;
    let positions: Vec<u32> = ids.iter().map(|id| id - file.first_row_id).collect();
    let in_copy: Vec<usize> = copied.iter().map(|&(_, k)| k).collect();
    let rest: Vec<&str> =
        columns.iter().enumerate().filter(|(i, _)| !copied.iter().any(|(c, _)| c == i)).map(|(_, c)| *c).collect();
    if rest.is_empty() {
        let mut at = 0usize;
        return copy.gather(&positions, &in_copy, |gathered, n| {
            let batch = assemble(columns, &copied, gathered, None)?;
            at += n;
            f(batch, ids[at - n..at].to_vec())
        });
    }
    let mut at = 0usize;
    read_parquet_rows(file, set, &ids, &rest, &mut |batch, slice| {
        let mut pieces: Vec<Vec<ArrayRef>> = Vec::new();
        copy.gather(&positions[at..at + slice.len()], &in_copy, |gathered, _| {
            pieces.push(gathered);
            Ok(())
        })?;
        at += slice.len();
        let gathered = (0..in_copy.len())
            .map(|c| {
                let parts: Vec<&dyn Array> = pieces.iter().map(|p| p[c].as_ref()).collect();
                arrow::compute::concat(&parts)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        f(assemble(columns, &copied, gathered, Some(&batch))?, slice)
    })
}

/// A batch of `columns` in order: those `copied` lists (by position in `columns`) from `gathered`
/// (in the same order), the others from `read`.
fn assemble(
    columns: &[&str],
    copied: &[(usize, usize)],
    gathered: Vec<ArrayRef>,
    read: Option<&RecordBatch>,
) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays = Vec::with_capacity(columns.len());
    for (c, name) in columns.iter().enumerate() {
        if let Some(i) = copied.iter().position(|&(at, _)| at == c) {
            fields.push(Field::new(*name, DataType::Utf8, true));
            arrays.push(Arc::clone(&gathered[i]));
        } else {
            let read = read.ok_or_else(|| Error::Internal(format!("{name} was neither gathered nor read")))?;
            let i = read.schema().index_of(name)?;
            fields.push(read.schema().field(i).clone());
            arrays.push(Arc::clone(read.column(i)));
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// Reads the rows of `ids` (the members in `file`) from the Parquet file.
fn read_parquet_rows(
    file: &UsersFile,
    set: &RoaringBitmap,
    ids: &[u32],
    columns: &[&str],
    f: &mut dyn FnMut(RecordBatch, Vec<u32>) -> Result<()>,
) -> Result<()> {
    let selection = file_row_selection(set, file).map_err(|e| Error::corrupt(&file.path, e.to_string()))?;
    let mut at = 0usize;
    read_stored_rows(&file.path, columns, selection, |batch| {
        let end = at + batch.num_rows();
        let slice = ids
            .get(at..end)
            .ok_or_else(|| Error::corrupt(&file.path, "the users file has more rows than its row-id range"))?;
        at = end;
        f(batch, slice.to_vec())
    })?;
    if at != ids.len() {
        return Err(Error::corrupt(&file.path, "the users file has fewer rows than its row-id range"));
    }
    Ok(())
}

/// Calls `f` with each member's row id and user_id, in row-id order.
pub fn for_each_member_id(files: &[UsersFile], set: &RoaringBitmap, mut f: impl FnMut(u32, &str)) -> Result<()> {
    for_each_member_batch(files, set, &[USER_ID], |batch, ids| {
        let column = batch.column(0);
        let text = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8)?;
        let text = text.as_string::<i32>();
        for (row, id) in ids.iter().enumerate() {
            if text.is_valid(row) {
                f(*id, text.value(row));
            }
        }
        Ok(())
    })
}

/// The row ids of user_id strings, resolved together at [`IdResolver::finish`] (one ordered pass
/// over the id dictionary); ids that belong to no user are counted, not kept.
#[derive(Debug, Default)]
pub struct IdResolver {
    keys: Vec<String>,
}

/// The users a list of user_ids names.
#[derive(Debug, Default)]
pub struct Resolved {
    pub set: RoaringBitmap,
    pub unknown: u64,
}

impl IdResolver {
    /// Adds every non-NULL string of `column` (any string type).
    pub fn add_column(&mut self, column: &dyn Array) -> Result<()> {
        let text = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8)?;
        let text = text.as_string::<i32>();
        self.keys.extend((0..text.len()).filter(|&row| text.is_valid(row)).map(|row| text.value(row).to_string()));
        Ok(())
    }

    pub fn add(&mut self, user_id: &str) {
        self.keys.push(user_id.to_string());
    }

    pub fn finish(self, index: &IndexSet) -> Result<Resolved> {
        let keys: Vec<&str> = self.keys.iter().map(String::as_str).collect();
        let mut out = Resolved::default();
        for id in index.row_ids(&keys)? {
            match id {
                Some(id) => {
                    out.set.insert(id);
                }
                None => out.unknown += 1,
            }
        }
        Ok(out)
    }
}

/// The users listed in a suppression file: Parquet or CSV with a `user_id` column, or a text file
/// of one user_id per line (a first line `user_id` is a header). Unknown ids are counted.
pub fn read_id_file(path: &Path, index: &IndexSet) -> Result<Resolved> {
    let mut out = IdResolver::default();
    let is_parquet = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    if is_parquet {
        let file = File::open(path).io_context("open", path)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| Error::Usage(format!("{} is not a readable Parquet file: {e}", path.display())))?;
        let schema = builder.parquet_schema();
        let Some(i) = (0..schema.num_columns()).find(|&i| schema.column(i).name() == USER_ID) else {
            return Err(Error::Usage(format!("{} has no user_id column", path.display())));
        };
        let mask = ProjectionMask::leaves(schema, [i]);
        let reader =
            builder.with_projection(mask).build().map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
        for batch in reader {
            let batch = batch.map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
            out.add_column(batch.column(0))?;
        }
        return out.finish(index);
    }
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).from_path(path).map_err(|e| {
            match e.into_kind() {
                csv::ErrorKind::Io(io) => Error::Io { op: "open", path: path.to_path_buf(), source: io },
                other => Error::Usage(format!("{}: {other:?}", path.display())),
            }
        })?;
    let mut column: Option<usize> = None;
    for (i, record) in reader.records().enumerate() {
        let line = i + 1;
        let record =
            record.map_err(|e| Error::Usage(format!("{}: line {line}: not readable as CSV: {e}", path.display())))?;
        if i == 0 {
            let header: Vec<String> =
                record.iter().map(|f| f.trim().trim_start_matches('\u{feff}').to_ascii_lowercase()).collect();
            if let Some(c) = header.iter().position(|h| h == USER_ID) {
                column = Some(c);
                continue;
            }
            if record.len() > 1 {
                return Err(Error::Usage(format!(
                    "{}: line 1: a suppression file with several columns needs a user_id header",
                    path.display()
                )));
            }
        }
        let value = record.get(column.unwrap_or(0)).map(str::trim).unwrap_or_default();
        if !value.is_empty() {
            out.add(value.trim_start_matches('\u{feff}'));
        }
    }
    out.finish(index)
}

/// Whether `user_id` is in the holdout of `audience` for `basis_points` (hundredths of a percent):
/// a hash of both names, so that a user stays in or out of a holdout from version to version and
/// on every machine.
pub fn in_holdout(audience: &str, user_id: &str, basis_points: u32) -> bool {
    if basis_points == 0 {
        return false;
    }
    let mut key = Vec::with_capacity(audience.len() + user_id.len() + 1);
    key.extend_from_slice(audience.as_bytes());
    key.push(0);
    key.extend_from_slice(user_id.as_bytes());
    xxhash_rust::xxh3::xxh3_64(&key) % 10_000 < u64::from(basis_points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_come_in_row_id_order_across_files_read_in_parallel() {
        use arrow::array::{StringArray, UInt32Array};
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        // Five users files of 3 rows each: row ids 0..15, user_id "u<row id>".
        for f in 0..5u32 {
            let path = dir.path().join(format!("users-{f}.parquet"));
            let ids: Vec<u32> = (f * 3..f * 3 + 3).collect();
            let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new("__row_id", arrow::datatypes::DataType::UInt32, false),
                arrow::datatypes::Field::new("user_id", arrow::datatypes::DataType::Utf8, true),
            ]));
            let batch = RecordBatch::try_new(
                std::sync::Arc::clone(&schema),
                vec![
                    std::sync::Arc::new(UInt32Array::from(ids.clone())),
                    std::sync::Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("u{i}")))),
                ],
            )
            .unwrap();
            let mut w = parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            let bytes = std::fs::metadata(&path).unwrap().len();
            files.push(UsersFile { path, first_row_id: f * 3, rows: 3, bytes, addressable: None });
        }
        let set: RoaringBitmap = [0u32, 2, 4, 5, 9, 13, 14].into_iter().collect();
        let mut seen = Vec::new();
        for_each_member_id(&files, &set, |id, user| seen.push((id, user.to_string()))).unwrap();
        let expected: Vec<(u32, String)> = set.iter().map(|i| (i, format!("u{i}"))).collect();
        assert_eq!(seen, expected);
        // A failing consumer stops the readers and its error comes back.
        let err = for_each_member_batch(&files, &set, &["user_id"], |_, _| Err(Error::Usage("stop".into())));
        assert!(matches!(err, Err(Error::Usage(m)) if m == "stop"));
        // A damaged file is reported with its path.
        std::fs::write(&files[3].path, b"not parquet").unwrap();
        let err = for_each_member_id(&files, &set, |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("users-3.parquet"), "{err}");
    }

    #[test]
    fn the_holdout_is_stable_and_near_its_share() {
        let held = (0..100_000).filter(|i| in_holdout("spring", &format!("u{i}"), 500)).count();
        assert!((4_500..5_500).contains(&held), "{held}");
        assert_eq!(in_holdout("spring", "u42", 500), in_holdout("spring", "u42", 500));
        assert!(!in_holdout("spring", "u42", 0));
        assert!(in_holdout("spring", "u42", 10_000));
        let other = (0..1000)
            .filter(|i| in_holdout("spring", &format!("u{i}"), 5000) != in_holdout("autumn", &format!("u{i}"), 5000))
            .count();
        assert!(other > 300, "holdouts of different audiences are independent: {other}");
    }
}
