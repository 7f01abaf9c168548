//! The facts phase of an import: purchases, events and user_tags are appended. A file whose exact
//! content was loaded before is refused; every row's `user_id` must be a known user and is stored
//! with its row id; the rows' activity-stream and tag bitmaps are collected for the index (with
//! purchases' product categories, rebuilt for stored purchases when the products changed).
//!
//! ```text
//! fact files ─ fingerprint (refuse loaded ones) ─ queue, largest first ─┬─ worker 1 ─ user_id → row id ─┬─ sinks per table (own files)
//!                                                                       └─ worker N ─ …                 └─ bitmap entries (IndexDelta)
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{Array, ArrayRef, AsArray, StringArray, TimestampMicrosecondArray, UInt32Array};
use arrow::record_batch::RecordBatch;
use rustc_hash::FxHashMap;

use super::contract::plan_columns;
use super::job::{CANCELLED, Job, Sink, check_non_null, for_each_batch_of, to_file_batch};
use super::kept::KeptFile;
use super::reader::{self, SourceFile, TypedBatch};
use super::row_ids::IdMap;
use super::writer::FACT_FILE_ROWS;
use crate::error::{Error, InputLocation, IoContext, Result};
use crate::index::build::{
    FAMILY_EVENT_TYPE, FAMILY_EVENT_TYPE_CHANNEL, FAMILY_PURCHASE_CATEGORY, FAMILY_PURCHASE_CHANNEL, FAMILY_PURCHASES,
    IndexDelta, ProductCategories,
};
use crate::store::fact_rows;
use crate::store::manifest::{DataFile, LoadedFile, Manifest};
use crate::store::{StoreWriter, layout, plain_columns, typed};
use crate::tables::{
    CHANNEL_ID, ColumnType, EVENT_TYPE, PRODUCT_ID, TAG, TS, Table, USER_ID, contract_columns, file_schema,
};

/// Refuses fact files whose exact content was already loaded (or is given twice), since appending
/// them again would double their rows. Returns each file's fingerprint.
pub(super) fn check_not_loaded(root: &Path, base: &Manifest, sources: &[SourceFile]) -> Result<Vec<String>> {
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    let fingerprints = fingerprints(sources)?;
    let loaded = crate::store::load_log::loaded_files(root, base)?;
    let loaded: FxHashMap<(&str, Table), &LoadedFile> =
        loaded.iter().map(|l| ((l.fingerprint.as_str(), l.table), l)).collect();
    let mut seen: FxHashMap<String, &Path> = FxHashMap::default();
    let mut out = Vec::with_capacity(sources.len());
    for (src, fp) in sources.iter().zip(fingerprints) {
        if let Some(prev) = loaded.get(&(fp.as_str(), src.table)) {
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

/// The content fingerprints of `sources`, in order, hashed on every core: this runs before any
/// loading starts.
fn fingerprints(sources: &[SourceFile]) -> Result<Vec<String>> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(1);
    let chunk = sources.len().div_ceil(threads).max(1);
    let fingerprints = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|s| fingerprint(&s.path)).collect::<Result<Vec<_>>>()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::Internal("a hashing thread panicked".into()))))
            .collect::<Result<Vec<Vec<String>>>>()
    })?;
    Ok(fingerprints.into_iter().flatten().collect())
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

/// The product categories purchases are indexed by: those after this import's product upserts. A
/// changed products table means the category bitmaps of earlier purchases are rebuilt too.
pub(super) struct CategoryPlan {
    /// `None` when neither new purchases nor a rebuild need them.
    pub categories: Option<ProductCategories>,
    /// The products changed under stored purchases: their category streams are rebuilt
    /// ([`rebuild_category_streams`]).
    pub rebuild: bool,
}

/// Plans the categories for an import that loads `fact_sources` and, if `loads_products`,
/// products (already upserted into `next`); `writes` is false for a dry run.
pub(super) fn plan_categories(
    root: &Path,
    base: &Manifest,
    next: &Manifest,
    fact_sources: &[SourceFile],
    loads_products: bool,
    writes: bool,
) -> Result<CategoryPlan> {
    let loads_purchases = fact_sources.iter().any(|s| s.table == Table::Purchases);
    let next_categories =
        if loads_purchases || loads_products { Some(fact_rows::product_categories(root, next)?) } else { None };
    let products_changed = match &next_categories {
        Some(next_map) if loads_products => &fact_rows::product_categories(root, base)? != next_map,
        _ => false,
    };
    let rebuild = products_changed && !base.files(Table::Purchases).is_empty() && writes;
    let categories = if loads_purchases || rebuild { next_categories.map(ProductCategories::new) } else { None };
    Ok(CategoryPlan { categories, rebuild })
}

impl CategoryPlan {
    /// Rebuilds the category streams of the stored purchases into `delta` if the plan says so.
    pub fn rebuild_streams(&self, root: &Path, base: &Manifest, delta: &mut IndexDelta) -> Result<()> {
        match &self.categories {
            Some(categories) if self.rebuild => rebuild_category_streams(root, base, categories, delta),
            _ => Ok(()),
        }
    }
}

/// What loading one fact table produced.
pub(super) struct FactLoad {
    table: Table,
    files: Vec<DataFile>,
    /// Rows read from each input file.
    per_source: Vec<(PathBuf, u64)>,
    /// The bitmap entries these rows add.
    delta: IndexDelta,
}

/// Loads the fact files from a queue (largest first) served by one worker per core, each with
/// its own sinks, so that one big table does not leave a core idle. Reports the first real error,
/// not the "cancelled" of the workers it stopped.
pub(super) fn load_all(
    job: &Job<'_>,
    sources: &[SourceFile],
    ids: &IdMap,
    categories: Option<&ProductCategories>,
) -> Result<Vec<FactLoad>> {
    let mut queue: Vec<SourceFile> = sources.to_vec();
    queue.sort_by_key(|s| std::cmp::Reverse(s.size));
    let queue = Mutex::new(VecDeque::from(queue));
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, sources.len().max(1));
    let identifiers = match sources.iter().any(|s| s.table == Table::Identities) {
        true => Some(super::identifiers::Normaliser::new(&job.base.identity.rules())?),
        false => None,
    };
    let results: Vec<Result<Vec<FactLoad>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..if sources.is_empty() { 0 } else { workers })
            .map(|_| {
                let queue = &queue;
                // Each thread its own normaliser: a regular expression shared between threads
                // hands its search caches around under a lock.
                let identifiers = identifiers.clone();
                scope.spawn(move || {
                    let worker = Worker { job, ids, categories, identifiers: identifiers.as_ref() };
                    let r = worker.run(queue);
                    if r.is_err() {
                        job.cancelled.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::Internal("an import thread panicked".into()))))
            .collect()
    });
    let mut first_error = None;
    let mut loads = Vec::new();
    for r in results {
        match r {
            Ok(l) => loads.extend(l),
            Err(Error::Internal(m)) if m == CANCELLED => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(loads),
    }
}

/// One worker's view of the import.
struct Worker<'j, 'a> {
    job: &'j Job<'a>,
    ids: &'j IdMap,
    categories: Option<&'j ProductCategories>,
    /// The identity rules, compiled, when the import loads identities (normalised as loaded).
    identifiers: Option<&'j super::identifiers::Normaliser>,
}

impl Worker<'_, '_> {
    /// Appends fact files taken from `queue` until it is empty. Returns what was loaded per table.
    fn run(&self, queue: &Mutex<VecDeque<SourceFile>>) -> Result<Vec<FactLoad>> {
        let mut loads: BTreeMap<Table, (Sink<'_>, FactLoad)> = BTreeMap::new();
        while let Some(src) = pop(queue) {
            let table = src.table;
            let (sink, load) = loads.entry(table).or_insert_with(|| {
                let load = FactLoad { table, files: Vec::new(), per_source: Vec::new(), delta: IndexDelta::default() };
                (self.job.sink(table, file_schema(&contract_columns(table)), FACT_FILE_ROWS), load)
            });
            let rows = self.load_file(&src, sink, load)?;
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

    /// Appends one file's rows: to `sink`, or kept as loaded. Returns the rows read.
    fn load_file(&self, src: &SourceFile, sink: &mut Sink<'_>, load: &mut FactLoad) -> Result<u64> {
        let (job, table) = (self.job, src.table);
        let columns = contract_columns(table);
        let schema = file_schema(&columns);
        let mut rows = 0u64;
        let header = reader::read_header(src)?;
        let plan = plan_columns(table, &src.path, &header, &columns, |_| Ok(ColumnType::Utf8))?;
        // A Parquet file that is exactly the contract's table is kept as it is, byte for byte, with
        // its row ids in a companion file: re-encoding it would be most of the import's work.
        let mut kept = match job.writer {
            // Identities are normalised, so never kept as they came.
            Some(w) if table != Table::Identities && reader::matches_contract(src, table)? => {
                Some(KeptFile::new(w, table, src)?)
            }
            _ => None,
        };
        // A kept file is not rewritten: decode only what the row ids and the indexes need, and the
        // required columns whose footer statistics do not already prove them present.
        let only = match kept {
            Some(_) => Some(kept_columns(src, table, &header)?),
            None => None,
        };
        for_each_batch_of(job, src, plan, only.as_deref(), |tb| {
            check_non_null(table, src, &tb)?;
            let row_ids = resolve_row_ids(self.ids, src, &tb)?;
            rows += tb.batch.num_rows() as u64;
            add_to_index(&mut load.delta, table, (&src.path, &tb.batch), &row_ids, self.categories)?;
            if let (Some(kept), Some(w)) = (kept.as_mut(), job.writer) {
                return kept.add(w, &tb.batch, row_ids);
            }
            if let Some(n) = self.identifiers.filter(|_| table == Table::Identities) {
                let batch = super::identity::normalise_batch(n, src, &tb)?;
                return sink.write(&to_file_batch(&batch, Arc::new(UInt32Array::from(row_ids)), &columns, &schema)?);
            }
            sink.write(&to_file_batch(&tb.batch, Arc::new(UInt32Array::from(row_ids)), &columns, &schema)?)
        })?;
        if let Some(kept) = kept {
            load.files.push(kept.finish(sink)?);
        }
        Ok(rows)
    }
}

/// The next file of the queue (the lock is held only to take it).
fn pop(queue: &Mutex<VecDeque<SourceFile>>) -> Option<SourceFile> {
    queue.lock().unwrap_or_else(PoisonError::into_inner).pop_front()
}

/// The row id of each row's user; every user must be known.
fn resolve_row_ids(ids: &IdMap, src: &SourceFile, tb: &TypedBatch) -> Result<Vec<u32>> {
    let users = tb.batch.column(tb.batch.schema().index_of(USER_ID)?).as_string::<i32>();
    let unknown = |row: usize, user: &str| {
        Error::input(
            &src.path,
            tb.location(row),
            Some(USER_ID),
            format!("user_id '{user}' is not a known user (load it into users first)"),
        )
    };
    if ids.is_on_demand() {
        // The batch's distinct user_ids looked up at once, in the segments' order.
        let mut keys: Vec<&str> = users.iter().map(Option::unwrap_or_default).collect();
        keys.sort_unstable();
        keys.dedup();
        let found = ids.get_sorted(&keys)?;
        return users
            .iter()
            .enumerate()
            .map(|(row, user)| {
                let user = user.unwrap_or_default();
                keys.binary_search(&user).ok().and_then(|k| found[k]).ok_or_else(|| unknown(row, user))
            })
            .collect();
    }
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
                let id = ids.get_near(user, hint).ok_or_else(|| unknown(row, user))?;
                last = Some((user, id));
                id
            }
        };
        row_ids.push(id);
    }
    Ok(row_ids)
}

/// Adds the bitmap entries of a batch of `table`'s rows, whose users have `row_ids`, read from the
/// file at `path` (a column of the wrong type is a corrupt error naming it).
pub(super) fn add_to_index(
    delta: &mut IndexDelta,
    table: Table,
    (path, batch): (&Path, &RecordBatch),
    row_ids: &[u32],
    categories: Option<&ProductCategories>,
) -> Result<()> {
    let column = |name: &str| -> Result<&ArrayRef> { Ok(batch.column(batch.schema().index_of(name)?)) };
    let strings = |name: &str| typed::column::<StringArray>(path, name, column(name)?.as_ref());
    let times = || typed::column::<TimestampMicrosecondArray>(path, TS, column(TS)?.as_ref());
    match table {
        Table::UserTags => delta.add_tags(strings(TAG)?, row_ids),
        Table::Purchases => {
            delta.add_purchases(times()?, strings(CHANNEL_ID)?, strings(PRODUCT_ID)?, categories, row_ids)
        }
        Table::Events => delta.add_events(times()?, strings(EVENT_TYPE)?, strings(CHANNEL_ID)?, row_ids),
        _ => {}
    }
    Ok(())
}

/// The file positions of a kept fact file's columns that the import must decode.
fn kept_columns(src: &SourceFile, table: Table, header: &[String]) -> Result<Vec<usize>> {
    let indexed: &[&str] = match table {
        Table::Purchases => &[USER_ID, TS, CHANNEL_ID, PRODUCT_ID],
        Table::Events => &[USER_ID, TS, EVENT_TYPE, CHANNEL_ID],
        Table::UserTags => &[USER_ID, TAG],
        _ => &[USER_ID],
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

/// What the fact loads add up to: their files go into `next` and their rows into `rows`; returns
/// their bitmap entries (with the families they start marked complete) and the rows read from
/// each input file.
pub(super) fn merge_loads(
    loads: Vec<FactLoad>,
    base: &Manifest,
    next: &mut Manifest,
    rows: &mut BTreeMap<Table, u64>,
) -> (IndexDelta, FxHashMap<PathBuf, u64>) {
    let mut delta = IndexDelta::default();
    let mut rows_per_source: FxHashMap<PathBuf, u64> = FxHashMap::default();
    for load in loads {
        next.tables.entry(load.table).or_default().extend(load.files);
        *rows.entry(load.table).or_default() += load.per_source.iter().map(|(_, n)| n).sum::<u64>();
        rows_per_source.extend(load.per_source);
        delta.merge(load.delta);
    }
    mark_complete_families(base, rows, &mut delta);
    (delta, rows_per_source)
}

/// Marks complete the stream families this import starts (their table had no rows before): they
/// hold every row; the others merge into what exists.
fn mark_complete_families(base: &Manifest, rows: &BTreeMap<Table, u64>, delta: &mut IndexDelta) {
    let starts = |t: Table| base.files(t).is_empty() && rows.get(&t).is_some_and(|&n| n > 0);
    if starts(Table::Purchases) {
        delta
            .complete_families
            .extend([FAMILY_PURCHASES, FAMILY_PURCHASE_CHANNEL, FAMILY_PURCHASE_CATEGORY].map(str::to_string));
    }
    if starts(Table::Events) {
        delta.complete_families.extend([FAMILY_EVENT_TYPE, FAMILY_EVENT_TYPE_CHANNEL].map(str::to_string));
    }
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
        let path = layout::resolve(root, &file.path);
        fact_rows::for_each_fact_batch(root, file, &[TS, PRODUCT_ID], |batch, row_ids| {
            let none = StringArray::new_null(batch.num_rows());
            rebuilt.add_purchases(
                typed::column(&path, TS, batch.column(0).as_ref())?,
                &none,
                typed::column(&path, PRODUCT_ID, batch.column(1).as_ref())?,
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

/// Records the fact files `writer` loads (with their fingerprints, in `sources` order) in its
/// version's load log, so that a second load of one is refused.
pub(super) fn record_loaded(
    writer: &StoreWriter,
    next: &mut Manifest,
    sources: &[SourceFile],
    fingerprints: Vec<String>,
    rows_per_source: &FxHashMap<PathBuf, u64>,
) -> Result<()> {
    let loaded = sources
        .iter()
        .zip(fingerprints)
        .map(|(src, fingerprint)| LoadedFile {
            table: src.table,
            fingerprint,
            source: src.path.display().to_string(),
            rows: rows_per_source.get(&src.path).copied().unwrap_or(0),
            version: writer.next_version(),
        })
        .collect();
    crate::store::load_log::record(writer, writer.store().root(), next, loaded)
}
