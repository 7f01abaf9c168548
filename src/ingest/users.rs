//! The users phase of an import: an upsert by `user_id`. The load's schema is planned first (known
//! columns, then new custom columns typed across all files); new user_ids get the next dense row
//! ids and go to new files, written on a second thread while this one reads; known ones replace
//! their rows in rewritten copies of the files that hold them. Columns a file lacks keep their
//! values. Updated rows are spilled to temporary Arrow IPC files by the users file they go to, so
//! memory holds one users file's updates at a time, however many users a load updates.
//!
//! ```text
//! files ─ plan columns ─ read ─ assign row ids ─┬─ new users ─→ writer thread ─→ new files (row-id order)
//!                                               └─ updates ─→ spills per users file ─→ rewrite each file holding some
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};

use arrow::array::{Array, AsArray, BooleanArray, UInt32Array};
use arrow::compute::{filter_record_batch, interleave, take_record_batch};
use arrow::datatypes::{SchemaRef, UInt32Type};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use roaring::RoaringBitmap;
use rustc_hash::FxHashMap;

use super::contract::{plan_columns, widen};
use super::job::{CANCELLED, Job, check_non_null, for_each_batch, read_aligned, to_file_batch};
use super::reader::{self, SourceFile, TypedBatch};
use super::row_ids::IdMap;
use super::writer::USERS_FILE_ROWS;
use crate::error::{Error, InputLocation, IoContext, Result};
use crate::store::layout;
use crate::store::manifest::{DataFile, Manifest};
use crate::tables::{ColumnDef, ColumnType, Table, USER_ID, file_schema};

/// What the users phase did.
#[derive(Default)]
pub(super) struct UserStats {
    pub rows: u64,
    pub new_users: u64,
    pub updated_users: u64,
}

/// Upserts users from `files` into `next` (see the module doc).
pub(super) fn load_users(
    job: &Job<'_>,
    files: &[SourceFile],
    ids: &mut IdMap,
    next: &mut Manifest,
) -> Result<UserStats> {
    let columns = plan_load_columns(job, files)?;
    let schema = file_schema(&columns);
    let mut read = UsersRead {
        columns: &columns,
        schema: &schema,
        ids,
        next_row_id: job.base.next_row_id,
        seen: RoaringBitmap::new(),
        updates: SpilledUpdates::new(job.base.files(Table::Users))?,
        stats: UserStats::default(),
    };
    let mut new_files = write_new_users(job, &schema, |to_writer| read.all(job, files, to_writer))?;
    let mut files = rewrite_updated(job, &columns, &schema, &mut read.updates)?;
    files.append(&mut new_files);
    files.sort_by_key(|f| f.first_row_id);
    let (next_row_id, stats) = (read.next_row_id, read.stats);
    next.tables.insert(Table::Users, files);
    next.users_columns = columns;
    next.next_row_id = next_row_id;
    Ok(stats)
}

/// The final users schema: the known columns, then new custom columns typed across all files.
fn plan_load_columns(job: &Job<'_>, files: &[SourceFile]) -> Result<Vec<ColumnDef>> {
    let mut columns = job.base.users_columns.clone();
    for src in files {
        let header = reader::read_header(src)?;
        refuse_near_duplicate_columns(src, &header, &columns)?;
        let unknown: Vec<usize> = (0..header.len()).filter(|&i| !columns.iter().any(|c| c.name == header[i])).collect();
        let types = if unknown.is_empty() { Vec::new() } else { reader::infer_types(src, &unknown)? };
        let mut inferred = unknown.iter().zip(types);
        let plan = plan_columns(Table::Users, &src.path, &header, &columns, |i| {
            Ok(inferred.find(|(j, _)| **j == i).map(|(_, t)| t).unwrap_or(ColumnType::Utf8))
        })?;
        for c in plan.columns {
            match columns.iter_mut().find(|k| k.name == c.name) {
                Some(k) if job.base.users_columns.iter().all(|b| b.name != c.name) => k.ty = widen(k.ty, c.ty),
                Some(_) => {}
                None => columns.push(c),
            }
        }
    }
    Ok(columns)
}

/// Runs `read` with a channel to a second thread that encodes the new users' rows to Parquet
/// meanwhile; returns the files written.
fn write_new_users(
    job: &Job<'_>,
    schema: &SchemaRef,
    read: impl FnOnce(&SyncSender<RecordBatch>) -> Result<()>,
) -> Result<Vec<DataFile>> {
    let sink = job.sink(Table::Users, Arc::clone(schema), USERS_FILE_ROWS);
    let (to_writer, from_reader) = sync_channel::<RecordBatch>(4);
    let (read, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<Vec<DataFile>> {
            let mut sink = sink;
            for batch in from_reader {
                sink.write(&batch)?;
            }
            sink.finish()
        });
        let read = read(&to_writer);
        drop(to_writer);
        let written = writer.join().unwrap_or_else(|_| Err(Error::Internal("the users writer thread panicked".into())));
        (read, written)
    });
    // The writer's own error explains a reader stopped by the closed channel.
    match (read, written) {
        (_, Err(e)) => Err(e),
        (Err(e), _) => Err(e),
        (Ok(()), Ok(files)) => Ok(files),
    }
}

/// Reading a users load: the row ids assigned so far and the updates kept for the rewrite.
struct UsersRead<'a> {
    columns: &'a [ColumnDef],
    schema: &'a SchemaRef,
    ids: &'a mut IdMap,
    /// The row id the next new user gets.
    next_row_id: u32,
    /// Row ids of the users this load has seen, to refuse a user_id given twice.
    seen: RoaringBitmap,
    updates: SpilledUpdates,
    stats: UserStats,
}

impl UsersRead<'_> {
    fn all(&mut self, job: &Job<'_>, files: &[SourceFile], to_writer: &SyncSender<RecordBatch>) -> Result<()> {
        for (source, src) in files.iter().enumerate() {
            let header = reader::read_header(src)?;
            let plan = plan_columns(Table::Users, &src.path, &header, self.columns, |_| Ok(ColumnType::Utf8))?;
            let present: Vec<bool> = self.columns.iter().map(|c| header.iter().any(|h| h.trim() == c.name)).collect();
            self.updates.present.push(present);
            for_each_batch(job, src, plan, |tb| self.batch(src, source, &tb, to_writer))?;
        }
        Ok(())
    }

    /// Sends a batch's new users to the writer and spills its updates; `source` is the index of
    /// the batch's file in the load.
    fn batch(
        &mut self,
        src: &SourceFile,
        source: usize,
        tb: &TypedBatch,
        to_writer: &SyncSender<RecordBatch>,
    ) -> Result<()> {
        check_non_null(Table::Users, src, tb)?;
        let (row_ids, is_new) = self.assign(src, tb)?;
        self.stats.rows += tb.batch.num_rows() as u64;
        let full = to_file_batch(&tb.batch, Arc::new(UInt32Array::from(row_ids.clone())), self.columns, self.schema)?;
        let new_count = is_new.iter().filter(|n| **n).count();
        let new_mask = BooleanArray::from(is_new.clone());
        // A first load is all new users: no copy through a filter then.
        let new_rows = match new_count {
            0 => full.slice(0, 0),
            n if n == full.num_rows() => full.clone(),
            _ => filter_record_batch(&full, &new_mask)?,
        };
        self.stats.new_users += new_rows.num_rows() as u64;
        if new_rows.num_rows() > 0 {
            // A closed channel means the writer failed; its error is reported instead.
            to_writer.send(new_rows).map_err(|_| Error::Internal(CANCELLED.into()))?;
        }
        if new_count < full.num_rows() {
            let updated_rows = filter_record_batch(&full, &arrow::compute::not(&new_mask)?)?;
            self.stats.updated_users += updated_rows.num_rows() as u64;
            self.updates.add(&updated_rows, source)?;
        }
        Ok(())
    }

    /// The row id of each row's user: known users keep theirs, new ones get the next free id.
    /// Returns the row ids and which of them are new.
    fn assign(&mut self, src: &SourceFile, tb: &TypedBatch) -> Result<(Vec<u32>, Vec<bool>)> {
        let user_col = tb.batch.column(tb.batch.schema().index_of(USER_ID)?).as_string::<i32>().clone();
        let mut row_ids = Vec::with_capacity(user_col.len());
        let mut is_new = Vec::with_capacity(user_col.len());
        for (row, user) in user_col.iter().enumerate() {
            let user = user.unwrap_or_default();
            let refuse = |message: String| Error::input(&src.path, tb.location(row), Some(USER_ID), message);
            if user.len() > usize::from(u16::MAX) {
                return Err(refuse("the user_id is longer than 65535 bytes".into()));
            }
            let id = match self.ids.get(user) {
                Some(id) => {
                    is_new.push(false);
                    id
                }
                None => {
                    let id = self.next_row_id;
                    self.next_row_id = id
                        .checked_add(1)
                        .ok_or_else(|| refuse("the store cannot hold more than 4,294,967,295 users".into()))?;
                    self.ids.insert(user, id);
                    is_new.push(true);
                    id
                }
            };
            if !self.seen.insert(id) {
                return Err(refuse(format!("user_id '{user}' appears more than once in this load")));
            }
            row_ids.push(id);
        }
        Ok((row_ids, is_new))
    }
}

/// The updated users' rows of a load, spilled to temporary Arrow IPC files by the stored users
/// file that holds them and the source file they come from, so that the rewrite holds the
/// updates of one users file at a time, not every updated user of the load.
struct SpilledUpdates {
    /// Each stored users file's row ids, `first..end`, in file order.
    bounds: Vec<(u32, u32)>,
    /// Created on the first update; removed with everything in it when dropped.
    dir: Option<SpillDir>,
    /// An open spill per (users file, source file).
    writers: BTreeMap<(usize, usize), StreamWriter<BufWriter<File>>>,
    /// Which of the load's columns each source file has: a column it lacks keeps the stored value.
    present: Vec<Vec<bool>>,
    /// The updated row ids, to find the files that hold them.
    updated: RoaringBitmap,
}

impl SpilledUpdates {
    fn new(files: &[DataFile]) -> Result<SpilledUpdates> {
        let bounds = files
            .iter()
            .map(|f| {
                let first =
                    f.first_row_id.ok_or_else(|| Error::corrupt(&f.path, "a users file has no first row id"))?;
                Ok((first, u32::try_from(u64::from(first) + f.rows).unwrap_or(u32::MAX)))
            })
            .collect::<Result<_>>()?;
        Ok(SpilledUpdates {
            bounds,
            dir: None,
            writers: BTreeMap::new(),
            present: Vec::new(),
            updated: RoaringBitmap::new(),
        })
    }

    /// Spills `rows` (updated users, in the file schema: row ids first) of source file `source`.
    fn add(&mut self, rows: &RecordBatch, source: usize) -> Result<()> {
        let ids = rows.column(0).as_primitive::<UInt32Type>().values();
        let mut by_file: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
        for (row, &id) in ids.iter().enumerate() {
            let file = self.bounds.partition_point(|(first, _)| *first <= id).checked_sub(1);
            let file = file.filter(|&f| id < self.bounds[f].1).ok_or_else(|| {
                Error::Internal(format!("updated row id {id} is in no users file; please report this bug"))
            })?;
            by_file.entry(file).or_default().push(row as u32);
            self.updated.insert(id);
        }
        for (file, picked) in by_file {
            let part = take_record_batch(rows, &UInt32Array::from(picked))?;
            let writer = match self.writers.entry((file, source)) {
                std::collections::btree_map::Entry::Occupied(w) => w.into_mut(),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    let dir = match &mut self.dir {
                        Some(dir) => dir,
                        none => none.insert(SpillDir::create()?),
                    };
                    let path = dir.spill(file, source);
                    let f = File::create(&path).io_context("create", &path)?;
                    slot.insert(StreamWriter::try_new(BufWriter::with_capacity(1 << 20, f), &rows.schema())?)
                }
            };
            writer.write(&part)?;
        }
        Ok(())
    }

    /// The updates of users file `file`, read back from their spills (which are then removed).
    fn of_file(&mut self, file: usize) -> Result<FileUpdates> {
        let mut out = FileUpdates::default();
        let sources: Vec<usize> = self.writers.range((file, 0)..=(file, usize::MAX)).map(|(k, _)| k.1).collect();
        for source in sources {
            let Some(dir) = &self.dir else { continue };
            let path = dir.spill(file, source);
            if let Some(mut writer) = self.writers.remove(&(file, source)) {
                writer.finish()?;
                writer.into_inner()?.flush().io_context("write", &path)?;
            }
            let reader = StreamReader::try_new(BufReader::new(File::open(&path).io_context("open", &path)?), None)?;
            let present = self.present.get(source).cloned().unwrap_or_default();
            for batch in reader {
                out.add(batch?, present.clone());
            }
            std::fs::remove_file(&path).io_context("remove", &path)?;
        }
        Ok(out)
    }
}

/// A temporary folder of update spills, removed with its content when dropped.
struct SpillDir(PathBuf);

impl SpillDir {
    fn create() -> Result<SpillDir> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("persona-upsert-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).io_context("create", &path)?;
        Ok(SpillDir(path))
    }

    fn spill(&self, file: usize, source: usize) -> PathBuf {
        self.0.join(format!("file-{file}-source-{source}.arrows"))
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The updated users' rows of one stored users file, in memory for its rewrite.
#[derive(Default)]
struct FileUpdates {
    /// Each batch of updated rows (in the file schema), with which of the load's columns its
    /// source file has.
    batches: Vec<(RecordBatch, Vec<bool>)>,
    /// Row id → (batch, row in it) of its update.
    by_row_id: FxHashMap<u32, (u32, u32)>,
}

impl FileUpdates {
    fn add(&mut self, rows: RecordBatch, present: Vec<bool>) {
        let batch_idx = self.batches.len() as u32;
        for (k, id) in rows.column(0).as_primitive::<UInt32Type>().values().iter().enumerate() {
            self.by_row_id.insert(*id, (batch_idx, k as u32));
        }
        self.batches.push((rows, present));
    }
}

/// The stored users files: those holding updated users rewritten with their updates, the others
/// kept. One file's updates are in memory at a time.
fn rewrite_updated(
    job: &Job<'_>,
    columns: &[ColumnDef],
    schema: &SchemaRef,
    updates: &mut SpilledUpdates,
) -> Result<Vec<DataFile>> {
    let mut files = Vec::new();
    for (i, file) in job.base.files(Table::Users).iter().enumerate() {
        let (first, end) = updates.bounds[i];
        if updates.updated.range_cardinality(first..end) == 0 {
            files.push(file.clone());
            continue;
        }
        let of_file = updates.of_file(i)?;
        let old = read_aligned(&layout::resolve(job.root, &file.path), columns, schema)?;
        let merged = apply_updates(&old, first, &of_file, schema)?;
        let mut sink = job.sink(Table::Users, Arc::clone(schema), u64::MAX);
        sink.write(&merged)?;
        files.extend(sink.finish()?);
    }
    Ok(files)
}

/// Replaces the updated rows of `old` (whose first row id is `first`): each column takes the new
/// value where the update's file had that column, the old value otherwise.
fn apply_updates(old: &RecordBatch, first: u32, updates: &FileUpdates, schema: &SchemaRef) -> Result<RecordBatch> {
    let batches = &updates.batches;
    let mut arrays = Vec::with_capacity(old.num_columns());
    for col in 0..old.num_columns() {
        let mut sources: Vec<&dyn Array> = vec![old.column(col).as_ref()];
        sources.extend(batches.iter().map(|(b, _)| b.column(col).as_ref()));
        let indices: Vec<(usize, usize)> = (0..old.num_rows())
            .map(|row| match updates.by_row_id.get(&(first + row as u32)) {
                // Column 0 is the row id; the others follow `present` shifted by one.
                Some(&(b, r)) if col == 0 || batches[b as usize].1[col - 1] => (b as usize + 1, r as usize),
                _ => (0, row),
            })
            .collect();
        arrays.push(interleave(&sources, &indices)?);
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), arrays)?)
}

/// A column name as people mean it: case, spaces, `_` and `-` left out, so that `Tier`,
/// `tier ` and `TIER` are one column.
fn column_key(name: &str) -> String {
    name.chars().filter(|c| !c.is_whitespace() && *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

/// Refuses a header column that would be a new custom column although its name differs from a
/// known column (or an earlier one of the same header) only by case, spaces, `_` or `-`: `Tier`
/// beside `tier` is a spelling of it, and a silent second column would split the data.
fn refuse_near_duplicate_columns(src: &SourceFile, header: &[String], known: &[ColumnDef]) -> Result<()> {
    for (i, name) in header.iter().enumerate() {
        let name = name.trim();
        let key = column_key(name);
        if key.is_empty() || known.iter().any(|c| c.name == name) {
            continue;
        }
        let earlier = header[..i].iter().map(|h| h.trim());
        if let Some(other) = known.iter().map(|c| c.name.as_str()).chain(earlier).find(|o| column_key(o) == key) {
            return Err(Error::input(
                &src.path,
                InputLocation::File,
                Some(name),
                format!(
                    "'{name}' would be a new column but differs from the column '{other}' only by case, spaces or underscores; rename it to '{other}' in the header to load into that column, or give it a clearly different name"
                ),
            ));
        }
    }
    Ok(())
}
