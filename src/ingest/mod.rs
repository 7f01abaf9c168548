//! The import pipeline: input files → typed batches → the data contract's checks → dense row ids
//! → bounded Parquet data files → one atomic commit. Any error leaves the store unchanged (the
//! files written so far are removed and no manifest is published).
//!
//! ```text
//! users files ─ plan schema (custom columns typed) ─ upsert by user_id ─┬─ new users → new files (row-id order)
//!                                                                       └─ updated users → rewrite the files holding them
//! products/channels ─ upsert by key → one new file per table
//! purchases/events/user_tags ─ refuse already-loaded files ─ user_id → row id ─ append (a file queue, one worker per core)
//! ```

pub mod contract;
pub mod reader;
pub mod row_ids;
pub mod writer;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, UInt32Array, new_null_array};
use arrow::compute::{filter_record_batch, interleave};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use roaring::RoaringBitmap;
use rustc_hash::FxHashMap;

use crate::error::{Error, InputLocation, IoContext, Result};
use crate::index::build::{
    FAMILY_EVENT_TYPE, FAMILY_PURCHASE_CATEGORY, FAMILY_PURCHASE_CHANNEL, FAMILY_PURCHASES, IndexDelta,
    ProductCategories, build_users_values, write_next_index,
};
use crate::store::fact_rows;
use crate::store::id_dictionary::{self, EncodedSegment};
use crate::store::manifest::{DataFile, IndexEntry, LoadedFile, Manifest};
use crate::store::plain_columns::{self, PlainColumnsWriter};
use crate::store::{Store, StoreWriter, layout};
use crate::tables::{ColumnDef, ColumnType, ROW_ID_COLUMN, Table, file_schema};
use contract::{ColumnPlan, plan_columns, widen};
use reader::{BatchReader, SourceFile, TypedBatch};
use row_ids::IdMap;
use writer::{FACT_FILE_ROWS, TableSink, USERS_FILE_ROWS};

/// Called with (bytes done, bytes total) as the import progresses; must be cheap.
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// How to run an import.
#[derive(Clone, Default)]
pub struct ImportOptions {
    /// Load every input into this table instead of recognising tables by file or folder name.
    pub table: Option<Table>,
    /// Validate everything, write nothing.
    pub dry_run: bool,
    pub progress: Option<ProgressFn>,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// The committed version; `None` for a dry run.
    pub version: Option<u64>,
    /// Rows read per table, in load order.
    pub rows: Vec<(Table, u64)>,
    pub new_users: u64,
    pub updated_users: u64,
    /// Custom users columns this import added, in column order.
    pub new_columns: Vec<ColumnDef>,
    pub files: usize,
    pub elapsed: Duration,
}

impl Store {
    /// Imports files and folders into the store as one commit (see the module doc).
    pub fn import(&self, inputs: &[PathBuf], options: &ImportOptions) -> Result<ImportSummary> {
        let sources = reader::resolve_inputs(inputs, options.table)?;
        if options.dry_run {
            let snapshot = self.snapshot()?;
            return run_import(snapshot.manifest(), self.root(), None, &sources, options);
        }
        let writer = self.writer()?;
        let base = Arc::clone(writer.base());
        let root = self.root().to_path_buf();
        run_import(&base, &root, Some(writer), &sources, options)
    }
}

/// Validates `inputs` against an empty store (for `--dry-run` where no store exists yet).
pub fn dry_run_without_store(inputs: &[PathBuf], options: &ImportOptions) -> Result<ImportSummary> {
    let sources = reader::resolve_inputs(inputs, options.table)?;
    run_import(&Manifest::empty(), Path::new("."), None, &sources, options)
}

/// Shared state of one import run.
struct Job<'a> {
    base: &'a Manifest,
    root: &'a Path,
    /// `None` for a dry run.
    writer: Option<&'a StoreWriter>,
    total_bytes: u64,
    done_bytes: AtomicU64,
    progress: Option<ProgressFn>,
    /// Set when any table's thread failed, so that the others stop early.
    cancelled: AtomicBool,
}

impl Job<'_> {
    fn advance(&self, delta: u64) {
        let done = self.done_bytes.fetch_add(delta, Ordering::Relaxed) + delta;
        if let Some(p) = &self.progress {
            p(done.min(self.total_bytes), self.total_bytes);
        }
    }

    fn sink(&self, table: Table, schema: SchemaRef, max_rows: u64) -> Sink<'_> {
        match self.writer {
            Some(w) => Sink::Real(Box::new(TableSink::new(w, table, schema, max_rows, false))),
            None => Sink::DryRun(0),
        }
    }
}

/// A table sink, or a row counter in a dry run.
enum Sink<'w> {
    Real(Box<TableSink<'w>>),
    DryRun(u64),
}

impl Sink<'_> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            Sink::Real(s) => s.write(batch),
            Sink::DryRun(n) => {
                *n += batch.num_rows() as u64;
                Ok(())
            }
        }
    }

    /// Makes a file written beside the sink durable before the sink finishes.
    fn sync_later(&mut self, file: File, path: PathBuf) -> Result<()> {
        match self {
            Sink::Real(s) => {
                s.sync_later(file, path);
                Ok(())
            }
            Sink::DryRun(_) => file.sync_all().io_context("fsync", &path),
        }
    }

    fn finish(self) -> Result<Vec<DataFile>> {
        match self {
            Sink::Real(s) => Ok(s.finish()?.0),
            Sink::DryRun(_) => Ok(Vec::new()),
        }
    }
}

fn run_import(
    base: &Manifest,
    root: &Path,
    writer: Option<StoreWriter>,
    sources: &[SourceFile],
    options: &ImportOptions,
) -> Result<ImportSummary> {
    let started = Instant::now();
    let job = Job {
        base,
        root,
        writer: writer.as_ref(),
        total_bytes: sources.iter().map(|s| s.size).sum(),
        done_bytes: AtomicU64::new(0),
        progress: options.progress.clone(),
        cancelled: AtomicBool::new(false),
    };
    let by_table = |t: Table| sources.iter().filter(move |s| s.table == t).cloned().collect::<Vec<_>>();
    let mut next = base.clone();
    let mut rows: BTreeMap<Table, u64> = BTreeMap::new();

    let fact_sources: Vec<SourceFile> = sources.iter().filter(|s| s.table.is_fact()).cloned().collect();
    let fingerprints = check_not_loaded(base, &fact_sources)?;

    let users = by_table(Table::Users);
    let needs_ids = !users.is_empty() || !fact_sources.is_empty();
    let mut ids = if needs_ids {
        let paths: Vec<PathBuf> = base.id_segments.iter().map(|s| layout::resolve(root, &s.path)).collect();
        // Room for the known users and the incoming ones (counted from Parquet footers), so the
        // map does not rehash its way up to 10 M entries.
        let incoming: u64 = users.iter().map(reader::row_count_hint).sum();
        IdMap::load(&paths, base.next_row_id as usize + incoming as usize)?
    } else {
        IdMap::default()
    };

    let mut user_stats = UserStats::default();
    if !users.is_empty() {
        user_stats = load_users(&job, &users, &mut ids, &mut next)?;
        rows.insert(Table::Users, user_stats.rows);
    }
    for table in [Table::Products, Table::Channels] {
        let files = by_table(table);
        if !files.is_empty() {
            let n = load_dimension(&job, table, &files, &mut next)?;
            rows.insert(table, n);
        }
    }
    // Purchases are indexed per product category: the categories after this import's upserts. A
    // changed products table means the category bitmaps of earlier purchases are rebuilt too.
    let loads_purchases = fact_sources.iter().any(|s| s.table == Table::Purchases);
    let loads_products = !by_table(Table::Products).is_empty();
    let next_categories =
        if loads_purchases || loads_products { Some(fact_rows::product_categories(root, &next)?) } else { None };
    let products_changed = match &next_categories {
        Some(next_map) if loads_products => &fact_rows::product_categories(root, base)? != next_map,
        _ => false,
    };
    let rebuild_categories = products_changed && !base.files(Table::Purchases).is_empty() && writer.is_some();
    let categories =
        if loads_purchases || rebuild_categories { next_categories.map(ProductCategories::new) } else { None };
    // The users value and range bitmaps are built from the new users files while the facts load.
    let users_files: Vec<PathBuf> = next.files(Table::Users).iter().map(|f| layout::resolve(root, &f.path)).collect();
    let users_columns = next.users_columns.clone();
    let build_users_index = !users.is_empty() && writer.is_some();
    // Fact files go to a queue (largest first) served by one worker per core, each with its own
    // sinks, so that one big table does not leave a core idle.
    let mut queue: Vec<SourceFile> = fact_sources.clone();
    queue.sort_by_key(|s| std::cmp::Reverse(s.size));
    let queue = std::sync::Mutex::new(std::collections::VecDeque::from(queue));
    let workers =
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, fact_sources.len().max(1));
    let encode_ids = user_stats.new_users > 0 && writer.is_some();
    let (results, users_values, id_segment) = std::thread::scope(|scope| {
        let users_index = build_users_index.then(|| scope.spawn(|| build_users_values(&users_files, &users_columns)));
        // The dictionary segment of the new users is encoded meanwhile too (sorting 10 M keys takes seconds).
        let ids_ref = &ids;
        let id_segment = encode_ids
            .then(|| scope.spawn(move || id_dictionary::encode_segment(ids_ref.entries_from(base.next_row_id))));
        let handles: Vec<_> = (0..if fact_sources.is_empty() { 0 } else { workers })
            .map(|_| {
                let (job, ids, queue, categories) = (&job, &ids, &queue, categories.as_ref());
                scope.spawn(move || {
                    let r = load_facts(job, queue, ids, categories);
                    if r.is_err() {
                        job.cancelled.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        let results = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::Internal("an import thread panicked".into()))))
            .collect();
        let results: Vec<Result<Vec<FactLoad>>> = results;
        let users_values =
            users_index.map(|h| h.join().unwrap_or_else(|_| Err(Error::Internal("the index thread panicked".into()))));
        let id_segment: Option<Result<EncodedSegment>> = id_segment
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::Internal("the dictionary thread panicked".into()))));
        (results, users_values, id_segment)
    });
    let id_segment = id_segment.transpose()?;
    let users_values = users_values.transpose()?;
    // Report the first real error, not the "cancelled" of the threads it stopped.
    let mut first_error = None;
    let mut delta = IndexDelta::default();
    let mut rows_per_source: FxHashMap<PathBuf, u64> = FxHashMap::default();
    for r in results {
        match r {
            Ok(loads) => {
                for load in loads {
                    next.tables.entry(load.table).or_default().extend(load.files);
                    *rows.entry(load.table).or_default() += load.per_source.iter().map(|(_, n)| n).sum::<u64>();
                    rows_per_source.extend(load.per_source);
                    delta.merge(load.delta);
                }
            }
            Err(Error::Internal(m)) if m == CANCELLED => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    // Families that start with this import hold every row; the others merge into what exists.
    let starts = |t: Table| base.files(t).is_empty() && rows.get(&t).is_some_and(|&n| n > 0);
    if starts(Table::Purchases) {
        delta
            .complete_families
            .extend([FAMILY_PURCHASES, FAMILY_PURCHASE_CHANNEL, FAMILY_PURCHASE_CATEGORY].map(str::to_string));
    }
    if starts(Table::Events) {
        delta.complete_families.insert(FAMILY_EVENT_TYPE.to_string());
    }
    if rebuild_categories && let Some(categories) = &categories {
        rebuild_category_streams(root, base, categories, &mut delta)?;
    }
    let version = next.version + 1;
    for (src, fingerprint) in fact_sources.iter().zip(fingerprints) {
        next.loaded_files.push(LoadedFile {
            table: src.table,
            fingerprint,
            source: src.path.display().to_string(),
            rows: rows_per_source.get(&src.path).copied().unwrap_or(0),
            version,
        });
    }

    let new_columns: Vec<ColumnDef> =
        next.users_columns.iter().filter(|c| base.users_columns.iter().all(|b| b.name != c.name)).cloned().collect();
    let committed = match writer {
        Some(w) => {
            let has_delta = !delta.is_empty();
            if users_values.is_some() || has_delta {
                let previous = base.index.as_ref().map(|i| layout::resolve(root, &i.path));
                let (relative, abs) = w.new_file(layout::new_index_file(w.next_version()))?;
                let bytes = write_next_index(previous.as_deref(), delta, users_values, &abs)?;
                next.index = Some(IndexEntry { path: relative, bytes });
            }
            if let Some(segment) = id_segment {
                next.id_segments.push(segment.write(&w)?);
            }
            Some(w.commit(next)?)
        }
        None => None,
    };
    // Freeing ten million dictionary keys takes a second: let it happen off the caller's path.
    std::thread::spawn(move || drop(ids));
    Ok(ImportSummary {
        version: committed,
        rows: rows.into_iter().collect(),
        new_users: user_stats.new_users,
        updated_users: user_stats.updated_users,
        new_columns,
        files: sources.len(),
        elapsed: started.elapsed(),
    })
}

const CANCELLED: &str = "cancelled";

/// Refuses fact files whose exact content was already loaded (or is given twice), since appending
/// them again would double their rows. Returns each file's fingerprint.
fn check_not_loaded(base: &Manifest, sources: &[SourceFile]) -> Result<Vec<String>> {
    // Hash the files on every core: this runs before any loading starts.
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(1);
    let chunk = sources.len().div_ceil(threads).max(1);
    let fingerprints: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|s| fingerprint(&s.path)).collect::<Result<Vec<_>>>()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::Internal("a hashing thread panicked".into()))))
            .collect::<Result<Vec<Vec<String>>>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    let mut seen: FxHashMap<String, &Path> = FxHashMap::default();
    let mut out = Vec::with_capacity(sources.len());
    for (src, fp) in sources.iter().zip(fingerprints) {
        if let Some(prev) = base.loaded_files.iter().find(|l| l.fingerprint == fp && l.table == src.table) {
            return Err(Error::input(
                &src.path,
                InputLocation::File,
                None,
                format!(
                    "this exact file was already loaded into {} at version {} (from {}); loading it again would double its rows",
                    src.table, prev.version, prev.source
                ),
            ));
        }
        if let Some(prev) = seen.insert(fp.clone(), &src.path) {
            return Err(Error::input(
                &src.path,
                InputLocation::File,
                None,
                format!("it has the same content as {}, given in the same import", prev.display()),
            ));
        }
        out.push(fp);
    }
    Ok(out)
}

fn fingerprint(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut f = File::open(path).io_context("open", path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).io_context("read", path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:032x}", hasher.digest128()))
}

/// Reads all batches of one source, reporting progress, and hands each to `f`.
fn for_each_batch(
    job: &Job<'_>,
    src: &SourceFile,
    plan: ColumnPlan,
    f: impl FnMut(TypedBatch) -> Result<()>,
) -> Result<()> {
    for_each_batch_of(job, src, plan, None, f)
}

/// [`for_each_batch`] decoding only the columns at `only` (sorted file positions; Parquet).
fn for_each_batch_of(
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
fn check_non_null(table: Table, src: &SourceFile, batch: &TypedBatch) -> Result<()> {
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
fn to_file_batch(
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

#[derive(Default)]
struct UserStats {
    rows: u64,
    new_users: u64,
    updated_users: u64,
}

/// Upserts users: new user_ids get the next row ids and go to new files; known ones replace their
/// rows in rewritten copies of the files that hold them. Columns a file lacks keep their values.
fn load_users(job: &Job<'_>, files: &[SourceFile], ids: &mut IdMap, next: &mut Manifest) -> Result<UserStats> {
    // 1. The final users schema: known columns, then new custom columns typed across all files.
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
    let schema = file_schema(&columns);

    // 2. Stream: new users out, updates buffered by row id.
    let mut stats = UserStats::default();
    let sink = job.sink(Table::Users, Arc::clone(&schema), USERS_FILE_ROWS);
    let mut seen = RoaringBitmap::new();
    let mut update_batches: Vec<(RecordBatch, Vec<bool>)> = Vec::new();
    let mut updates: FxHashMap<u32, (u32, u32)> = FxHashMap::default();
    let mut updated = RoaringBitmap::new();
    let mut next_row_id = job.base.next_row_id;
    // New users are encoded to Parquet on a second thread while this one reads and assigns ids.
    let (to_writer, from_reader) = std::sync::mpsc::sync_channel::<RecordBatch>(4);
    let (read, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<Vec<DataFile>> {
            let mut sink = sink;
            for batch in from_reader {
                sink.write(&batch)?;
            }
            sink.finish()
        });
        let read = (|| -> Result<()> {
            for src in files {
                let header = reader::read_header(src)?;
                let plan = plan_columns(Table::Users, &src.path, &header, &columns, |_| Ok(ColumnType::Utf8))?;
                let present: Vec<bool> = columns.iter().map(|c| header.iter().any(|h| h.trim() == c.name)).collect();
                for_each_batch(job, src, plan, |tb| {
                    check_non_null(Table::Users, src, &tb)?;
                    let user_col = tb.batch.column(tb.batch.schema().index_of("user_id")?).as_string::<i32>().clone();
                    let mut row_ids = Vec::with_capacity(user_col.len());
                    let mut is_new = Vec::with_capacity(user_col.len());
                    for (row, user) in user_col.iter().enumerate() {
                        let user = user.unwrap_or_default();
                        if user.len() > usize::from(u16::MAX) {
                            return Err(Error::input(
                                &src.path,
                                tb.location(row),
                                Some("user_id"),
                                "the user_id is longer than 65535 bytes",
                            ));
                        }
                        let id = match ids.get(user) {
                            Some(id) => {
                                is_new.push(false);
                                id
                            }
                            None => {
                                let id = next_row_id;
                                next_row_id = next_row_id.checked_add(1).ok_or_else(|| {
                                    Error::input(
                                        &src.path,
                                        tb.location(row),
                                        Some("user_id"),
                                        "the store cannot hold more than 4,294,967,295 users",
                                    )
                                })?;
                                ids.insert(user, id);
                                is_new.push(true);
                                id
                            }
                        };
                        if !seen.insert(id) {
                            return Err(Error::input(
                                &src.path,
                                tb.location(row),
                                Some("user_id"),
                                format!("user_id '{user}' appears more than once in this load"),
                            ));
                        }
                        row_ids.push(id);
                    }
                    stats.rows += tb.batch.num_rows() as u64;
                    let full =
                        to_file_batch(&tb.batch, Arc::new(UInt32Array::from(row_ids.clone())), &columns, &schema)?;
                    let new_count = is_new.iter().filter(|n| **n).count();
                    let new_mask = arrow::array::BooleanArray::from(is_new.clone());
                    // A first load is all new users: no copy through a filter then.
                    let new_rows = match new_count {
                        0 => full.slice(0, 0),
                        n if n == full.num_rows() => full.clone(),
                        _ => filter_record_batch(&full, &new_mask)?,
                    };
                    stats.new_users += new_rows.num_rows() as u64;
                    if new_rows.num_rows() > 0 {
                        // A closed channel means the writer failed; its error is reported below.
                        to_writer.send(new_rows).map_err(|_| Error::Internal(CANCELLED.into()))?;
                    }
                    if new_count < full.num_rows() {
                        let upd_rows = filter_record_batch(&full, &arrow::compute::not(&new_mask)?)?;
                        let batch_idx = update_batches.len() as u32;
                        for (k, id) in row_ids.iter().zip(&is_new).filter(|(_, n)| !**n).map(|(id, _)| *id).enumerate()
                        {
                            updates.insert(id, (batch_idx, k as u32));
                            updated.insert(id);
                        }
                        stats.updated_users += upd_rows.num_rows() as u64;
                        update_batches.push((upd_rows, present.clone()));
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })();
        drop(to_writer);
        let written = writer.join().unwrap_or_else(|_| Err(Error::Internal("the users writer thread panicked".into())));
        (read, written)
    });
    // The writer's own error explains a reader stopped by the closed channel.
    let mut new_files = match (read, written) {
        (_, Err(e)) => return Err(e),
        (Err(e), _) => return Err(e),
        (Ok(()), Ok(files)) => files,
    };

    // 3. Rewrite the files that hold updated users.
    let mut kept = Vec::new();
    for file in job.base.files(Table::Users) {
        let first = file.first_row_id.ok_or_else(|| Error::corrupt(&file.path, "a users file has no first row id"))?;
        let end = u64::from(first) + file.rows;
        let end = u32::try_from(end).unwrap_or(u32::MAX);
        if updated.range_cardinality(first..end) == 0 {
            kept.push(file.clone());
            continue;
        }
        let old = read_aligned(&layout::resolve(job.root, &file.path), &columns, &schema)?;
        let merged = apply_updates(&old, first, &updates, &update_batches, &schema)?;
        let mut sink = job.sink(Table::Users, Arc::clone(&schema), u64::MAX);
        sink.write(&merged)?;
        kept.extend(sink.finish()?);
    }
    kept.append(&mut new_files);
    kept.sort_by_key(|f| f.first_row_id);
    next.tables.insert(Table::Users, kept);
    next.users_columns = columns;
    next.next_row_id = next_row_id;
    Ok(stats)
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

/// Reads a stored file whole, aligned to `columns` (columns it predates become NULL).
fn read_aligned(path: &Path, columns: &[ColumnDef], schema: &SchemaRef) -> Result<RecordBatch> {
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
        parts.push(to_file_batch(&batch, row_ids, columns, schema)?);
    }
    Ok(arrow::compute::concat_batches(schema, &parts)?)
}

/// Replaces the updated rows of `old` (whose first row id is `first`): each column takes the new
/// value where the update's file had that column, the old value otherwise.
fn apply_updates(
    old: &RecordBatch,
    first: u32,
    updates: &FxHashMap<u32, (u32, u32)>,
    batches: &[(RecordBatch, Vec<bool>)],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let mut arrays = Vec::with_capacity(old.num_columns());
    for col in 0..old.num_columns() {
        let mut sources: Vec<&dyn Array> = vec![old.column(col).as_ref()];
        sources.extend(batches.iter().map(|(b, _)| b.column(col).as_ref()));
        let indices: Vec<(usize, usize)> = (0..old.num_rows())
            .map(|row| match updates.get(&(first + row as u32)) {
                // Column 0 is the row id; the others follow `present` shifted by one.
                Some(&(b, r)) if col == 0 || batches[b as usize].1[col - 1] => (b as usize + 1, r as usize),
                _ => (0, row),
            })
            .collect();
        arrays.push(interleave(&sources, &indices)?);
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), arrays)?)
}

/// Upserts a dimension table by its key: the table is rewritten as one file.
fn load_dimension(job: &Job<'_>, table: Table, files: &[SourceFile], next: &mut Manifest) -> Result<u64> {
    let columns = next.columns(table);
    let schema = file_schema(&columns);
    let key = table.key_column().expect("dimensions have a key");
    let mut incoming: Vec<RecordBatch> = Vec::new();
    let mut keys: FxHashMap<String, ()> = FxHashMap::default();
    let mut rows = 0u64;
    for src in files {
        let header = reader::read_header(src)?;
        let plan = plan_columns(table, &src.path, &header, &columns, |_| Ok(ColumnType::Utf8))?;
        for_each_batch(job, src, plan, |tb| {
            check_non_null(table, src, &tb)?;
            let key_col = tb.batch.column(tb.batch.schema().index_of(key)?).as_string::<i32>().clone();
            for (row, k) in key_col.iter().enumerate() {
                let k = k.unwrap_or_default();
                if keys.insert(k.to_string(), ()).is_some() {
                    return Err(Error::input(
                        &src.path,
                        tb.location(row),
                        Some(key),
                        format!("{key} '{k}' appears more than once in this load"),
                    ));
                }
            }
            rows += tb.batch.num_rows() as u64;
            let zeros = Arc::new(UInt32Array::from(vec![0u32; tb.batch.num_rows()]));
            incoming.push(to_file_batch(&tb.batch, zeros, &columns, &schema)?);
            Ok(())
        })?;
    }
    let mut sink = job.sink(table, Arc::clone(&schema), u64::MAX);
    for file in job.base.files(table) {
        let old = read_aligned(&layout::resolve(job.root, &file.path), &columns, &schema)?;
        let key_col = old.column(old.schema().index_of(key)?).as_string::<i32>().clone();
        let keep: arrow::array::BooleanArray =
            key_col.iter().map(|k| Some(!keys.contains_key(k.unwrap_or_default()))).collect();
        sink.write(&filter_record_batch(&old, &keep)?)?;
    }
    for batch in &incoming {
        sink.write(batch)?;
    }
    next.tables.insert(table, sink.finish()?);
    Ok(rows)
}

/// What loading one fact table produced.
struct FactLoad {
    table: Table,
    files: Vec<DataFile>,
    /// Rows read from each input file.
    per_source: Vec<(PathBuf, u64)>,
    /// The bitmap entries these rows add.
    delta: IndexDelta,
}

/// Appends fact files taken from `queue` until it is empty: every user_id must be known; the row
/// id is stored beside it. Returns what was loaded per table.
fn load_facts(
    job: &Job<'_>,
    queue: &std::sync::Mutex<std::collections::VecDeque<SourceFile>>,
    ids: &IdMap,
    categories: Option<&ProductCategories>,
) -> Result<Vec<FactLoad>> {
    let mut loads: BTreeMap<Table, (Sink<'_>, FactLoad)> = BTreeMap::new();
    loop {
        let next = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front();
        let Some(src) = next else { break };
        let table = src.table;
        let columns = crate::tables::contract_columns(table);
        let schema = file_schema(&columns);
        let (sink, load) = loads.entry(table).or_insert_with(|| {
            let load = FactLoad { table, files: Vec::new(), per_source: Vec::new(), delta: IndexDelta::default() };
            (job.sink(table, Arc::clone(&schema), FACT_FILE_ROWS), load)
        });
        let mut rows = 0u64;
        let header = reader::read_header(&src)?;
        let plan = plan_columns(table, &src.path, &header, &columns, |_| Ok(ColumnType::Utf8))?;
        // A Parquet file that is exactly the contract's table is kept as it is, byte for byte, with
        // its row ids in a companion file: re-encoding it would be most of the import's work.
        let mut kept = match job.writer {
            Some(w) if reader::matches_contract(&src, table)? => Some(KeptFile::new(w, table, &src)?),
            _ => None,
        };
        // A kept file is not rewritten: decode only what the row ids and the indexes need, and the
        // required columns whose footer statistics do not already prove them present.
        let only = match kept {
            Some(_) => Some(kept_columns(&src, table, &header)?),
            None => None,
        };
        for_each_batch_of(job, &src, plan, only.as_deref(), |tb| {
            check_non_null(table, &src, &tb)?;
            let users = tb.batch.column(tb.batch.schema().index_of("user_id")?).as_string::<i32>();
            let mut row_ids = Vec::with_capacity(users.len());
            // Facts usually come grouped by user: remember the last lookup.
            let mut last: Option<(&str, u32)> = None;
            for (row, user) in users.iter().enumerate() {
                let user = user.unwrap_or_default();
                let id = match last {
                    Some((u, id)) if u == user => id,
                    _ => {
                        // The next user is usually the next row id (facts in users' order).
                        let hint = last.map_or(0, |(_, id)| id.wrapping_add(1));
                        let id = ids.get_near(user, hint).ok_or_else(|| {
                            Error::input(
                                &src.path,
                                tb.location(row),
                                Some("user_id"),
                                format!("user_id '{user}' is not a known user (load it into users first)"),
                            )
                        })?;
                        last = Some((user, id));
                        id
                    }
                };
                row_ids.push(id);
            }
            rows += tb.batch.num_rows() as u64;
            match table {
                Table::UserTags => {
                    load.delta.add_tags(tb.batch.column(tb.batch.schema().index_of("tag")?).as_ref(), &row_ids)
                }
                Table::Purchases => {
                    let column =
                        |name: &str| -> Result<&ArrayRef> { Ok(tb.batch.column(tb.batch.schema().index_of(name)?)) };
                    load.delta.add_purchases(
                        column("ts")?.as_ref(),
                        column("channel_id")?.as_ref(),
                        column("product_id")?.as_ref(),
                        categories,
                        &row_ids,
                    )
                }
                Table::Events => {
                    let column =
                        |name: &str| -> Result<&ArrayRef> { Ok(tb.batch.column(tb.batch.schema().index_of(name)?)) };
                    load.delta.add_events(column("ts")?.as_ref(), column("event_type")?.as_ref(), &row_ids)
                }
                _ => {}
            }
            if let (Some(kept), Some(w)) = (kept.as_mut(), job.writer) {
                return kept.add(w, &tb.batch, row_ids);
            }
            sink.write(&to_file_batch(&tb.batch, Arc::new(UInt32Array::from(row_ids)), &columns, &schema)?)
        })?;
        if let Some(kept) = kept {
            load.files.push(kept.finish(sink)?);
        }
        load.per_source.push((src.path.clone(), rows));
    }
    loads
        .into_values()
        .map(|(sink, mut load)| {
            load.files.extend(sink.finish()?);
            Ok(load)
        })
        .collect()
}

/// The file positions of a kept fact file's columns that the import must decode.
fn kept_columns(src: &SourceFile, table: Table, header: &[String]) -> Result<Vec<usize>> {
    let indexed: &[&str] = match table {
        Table::Purchases => &["user_id", "ts", "channel_id", "product_id"],
        Table::Events => &["user_id", "ts", "event_type"],
        Table::UserTags => &["user_id", "tag"],
        _ => &["user_id"],
    };
    let proven = reader::proven_present(src)?;
    // The plain copy takes every column but unique strings.
    let copied = table.keeps_plain_copy();
    let mut only = Vec::new();
    for (i, name) in header.iter().enumerate() {
        let required = table.non_null_columns().contains(&name.as_str());
        if indexed.contains(&name.as_str())
            || (copied && plain_columns::copies_column(name))
            || (required && !proven.get(i).copied().unwrap_or(false))
        {
            only.push(i);
        }
    }
    Ok(only)
}

/// Rebuilds the category streams of the purchases already in the store (their products' categories
/// changed); the new purchases are in `delta` already, so the family becomes complete.
fn rebuild_category_streams(
    root: &Path,
    base: &Manifest,
    categories: &ProductCategories,
    delta: &mut IndexDelta,
) -> Result<()> {
    let mut rebuilt = IndexDelta::default();
    for file in base.files(Table::Purchases) {
        fact_rows::for_each_fact_batch(root, file, &["ts", "product_id"], |batch, row_ids| {
            let none = new_null_array(&arrow::datatypes::DataType::Utf8, batch.num_rows());
            rebuilt.add_purchases(
                batch.column(0).as_ref(),
                none.as_ref(),
                batch.column(1).as_ref(),
                Some(categories),
                row_ids,
            );
            Ok(())
        })?;
    }
    // The rebuild also passed every old purchase through the all-purchases stream: keep only the
    // category streams of it.
    rebuilt.streams.retain_family(FAMILY_PURCHASE_CATEGORY);
    delta.merge(rebuilt);
    delta.complete_families.insert(FAMILY_PURCHASE_CATEGORY.to_string());
    Ok(())
}

/// A conforming fact file copied into the store as it is, plus the Parquet file of its row ids.
struct KeptFile {
    table: Table,
    copy: (String, PathBuf),
    row_ids: (String, PathBuf, parquet::arrow::ArrowWriter<File>),
    row_ids_schema: SchemaRef,
    rows: u64,
    ts_range: Option<(i64, i64)>,
    row_id_ranges: writer::RowGroupRanges,
    /// The plain copy ([`plain_columns`]), once the first batch gives the columns decoded: its
    /// relative path and writer.
    plain: Option<(String, PathBuf, PlainColumnsWriter)>,
}

impl KeptFile {
    fn new(writer: &StoreWriter, table: Table, src: &SourceFile) -> Result<KeptFile> {
        let (rel, abs) = writer.new_file(layout::new_data_file(table.name(), writer.next_version()))?;
        std::fs::copy(&src.path, &abs).io_context("copy into the store", &abs)?;
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
        let out = File::create(&ids_abs).io_context("create", &ids_abs)?;
        let ids_writer = parquet::arrow::ArrowWriter::try_new(out, Arc::clone(&schema), Some(props))?;
        let footer = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&File::open(&src.path).io_context("open", &src.path)?)
            .map_err(|e| Error::corrupt(&src.path, e.to_string()))?;
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
        })
    }

    fn add(&mut self, writer: &StoreWriter, batch: &RecordBatch, row_ids: Vec<u32>) -> Result<()> {
        writer::extend_ts_range(&mut self.ts_range, batch);
        if self.plain.is_none() && self.table.keeps_plain_copy() {
            let (rel, abs) = writer.new_file(plain_columns::path_for(&self.copy.0))?;
            let copy = PlainColumnsWriter::create(&abs, &batch.schema())?;
            self.plain = Some((rel, abs, copy));
        }
        if let Some((_, _, copy)) = &mut self.plain {
            copy.push(batch, &row_ids)?;
        }
        self.row_id_ranges.add(&row_ids);
        self.rows += row_ids.len() as u64;
        let ids = RecordBatch::try_new(Arc::clone(&self.row_ids_schema), vec![Arc::new(UInt32Array::from(row_ids))])?;
        self.row_ids.2.write(&ids)?;
        Ok(())
    }

    /// Closes the files; `sink` makes them durable on background threads before its table's
    /// files are committed.
    fn finish(self, sink: &mut Sink) -> Result<DataFile> {
        let (ids_rel, ids_abs, ids_writer) = self.row_ids;
        sink.sync_later(ids_writer.into_inner()?, ids_abs)?;
        let (rel, abs) = self.copy;
        let file = File::open(&abs).io_context("open", &abs)?;
        let bytes = file.metadata().io_context("stat", &abs)?.len();
        sink.sync_later(file, abs)?;
        let plain_columns = match self.plain {
            Some((rel, abs, copy)) => {
                sink.sync_later(copy.finish()?, abs)?;
                Some(rel)
            }
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
        })
    }
}
