//! The import pipeline: input files → typed batches → the data contract's checks → dense row ids
//! → bounded Parquet data files → one atomic commit. Any error leaves the store unchanged (the
//! files written so far are removed and no manifest is published). This module holds the entry
//! points and the order of the phases; each phase is its own module.
//!
//! ```text
//! users files ─ plan schema (custom columns typed) ─ upsert by user_id ─┬─ new users → new files (row-id order)   users
//!                                                                       └─ updated users → rewrite the files holding them
//! products/channels ─ upsert by key → one new file per table                                                  dimensions
//! purchases/events/user_tags ─ refuse already-loaded files ─ user_id → row id ─ append (a file queue,        facts
//!                              one worker per core; meanwhile the users bitmaps and the new dictionary segment)
//! index (previous + this import's bitmaps) ─ id-dictionary segment ─ manifest vN+1                            commit
//! ```

pub mod compact;
pub mod contract;
mod dimensions;
mod facts;
pub mod forget;
pub mod identifiers;
pub mod identity;
mod job;
mod kept;
pub mod purge;
pub mod reader;
pub mod repair;
pub mod resolve;
pub mod row_ids;
pub mod tag_rows;
pub mod update;
mod users;
pub mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::index::build::{IndexDelta, ProductCategories, build_users_values, write_next_index};
use crate::index::format::BitmapKey;
use crate::store::id_dictionary::{self, EncodedSegment};
use crate::store::manifest::{IndexEntry, Manifest};
use crate::store::{Store, StoreWriter, layout};
use crate::tables::{ColumnDef, Table};
use job::Job;
use reader::SourceFile;
use row_ids::IdMap;
use users::UserStats;

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
            return run_import(snapshot.manifest(), self.root(), None, &sources, options, Origin::Files);
        }
        let writer = self.writer()?;
        let base = Arc::clone(writer.base());
        let root = self.root().to_path_buf();
        run_import(&base, &root, Some(writer), &sources, options, Origin::Files)
    }
}

/// Validates `inputs` against an empty store (for `--dry-run` where no store exists yet).
pub fn dry_run_without_store(inputs: &[PathBuf], options: &ImportOptions) -> Result<ImportSummary> {
    let sources = reader::resolve_inputs(inputs, options.table)?;
    run_import(&Manifest::empty(), Path::new("."), None, &sources, options, Origin::Files)
}

/// Imports the rows of an `INSERT INTO table …` statement, staged in the Parquet file `staged`,
/// into `table` as one commit by `writer`: the same phases, contract checks and errors as
/// `persona import` of that file, except that its content is not recorded as a loaded file (the
/// same rows inserted twice are two inserts, not a repeated load).
pub fn import_statement_rows(writer: StoreWriter, table: Table, staged: &Path) -> Result<ImportSummary> {
    let sources = reader::resolve_inputs(&[staged.to_path_buf()], Some(table))?;
    let base = Arc::clone(writer.base());
    let root = writer.store().root().to_path_buf();
    let options = ImportOptions { table: Some(table), ..ImportOptions::default() };
    run_import(&base, &root, Some(writer), &sources, &options, Origin::Statement)
}

/// Where an import's rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Files given to `persona import`: a fact file already loaded is refused, and each one is
    /// recorded as loaded.
    Files,
    /// The rows of an `INSERT` statement.
    Statement,
}

/// The value and range bitmaps of the users columns, built from the users files.
type UsersValues = BTreeMap<BitmapKey, RoaringBitmap>;

/// Runs the phases in order: users first (facts need their row ids), then dimensions (purchases
/// are indexed by the products' categories), then facts, then the commit. `writer` is `None` for a
/// dry run.
fn run_import(
    base: &Manifest,
    root: &Path,
    writer: Option<StoreWriter>,
    sources: &[SourceFile],
    options: &ImportOptions,
    origin: Origin,
) -> Result<ImportSummary> {
    let started = Instant::now();
    let job = Job::new(base, root, writer.as_ref(), sources, options.progress.clone());
    let mut next = base.clone();
    let mut rows: BTreeMap<Table, u64> = BTreeMap::new();

    let fact_sources: Vec<SourceFile> = sources.iter().filter(|s| s.table.is_fact()).cloned().collect();
    // No fingerprints for a statement's rows: none is checked, none recorded.
    let fingerprints = match origin {
        Origin::Files => facts::check_not_loaded(root, base, &fact_sources)?,
        Origin::Statement => Vec::new(),
    };
    let users: Vec<SourceFile> = sources.iter().filter(|s| s.table == Table::Users).cloned().collect();
    // An import of identities alone is resolved afterwards, which names every row: the names are
    // loaded now (their lookups go to the segments, as on demand), the segments read once.
    let names_now = !sources.is_empty()
        && sources.iter().all(|s| s.table == Table::Identities)
        && writer.is_some()
        && !base.id_segments.is_empty();
    let mut ids = match names_now {
        true => {
            let paths = segment_paths(base, root);
            IdMap::load_names(&paths, base.next_row_id as usize)?
        }
        false => load_ids(base, root, &users, !fact_sources.is_empty())?,
    };
    let mut user_stats = UserStats::default();
    if !users.is_empty() {
        user_stats = users::load_users(&job, &users, &mut ids, &mut next)?;
        rows.insert(Table::Users, user_stats.rows);
    }
    dimensions::load_dimensions(&job, sources, &mut next, &mut rows)?;
    let loads_products = sources.iter().any(|s| s.table == Table::Products);
    let plan = facts::plan_categories(root, base, &next, &fact_sources, loads_products, writer.is_some())?;
    let encode_ids = user_stats.new_users > 0 && writer.is_some();
    let loaded = load_facts_meanwhile(
        &job,
        &next,
        &ids,
        &fact_sources,
        plan.categories.as_ref(),
        !users.is_empty(),
        encode_ids,
    )?;
    let (mut delta, rows_per_source) = facts::merge_loads(loaded.facts, base, &mut next, &mut rows);
    plan.rebuild_streams(root, base, &mut delta)?;
    if let Some(w) = writer.as_ref() {
        facts::record_loaded(w, &mut next, &fact_sources, fingerprints, &rows_per_source)?;
    }

    let new_columns: Vec<ColumnDef> =
        next.users_columns.iter().filter(|c| base.users_columns.iter().all(|b| b.name != c.name)).cloned().collect();
    if let Some(w) = writer.as_ref().filter(|_| identity::needs_resolution(base, &next)) {
        if users.is_empty() && !names_now {
            // The facts were resolved on demand; resolution names every row.
            let paths = segment_paths(base, root);
            ids = IdMap::load_names(&paths, base.next_row_id as usize)?;
        }
        identity::resolve(w, root, base, &mut next, &mut ids)?;
    }
    let committed = match writer {
        Some(w) => Some(commit(w, root, next, delta, loaded.users_values, loaded.id_segment)?),
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

/// The files of the id dictionary's segments of `base`.
fn segment_paths(base: &Manifest, root: &Path) -> Vec<PathBuf> {
    base.id_segments.iter().map(|s| layout::resolve(root, &s.path)).collect()
}

/// The id dictionary of an import: in memory when it has users, looked up on demand when it has
/// facts only (no user is added; identity resolution loads the names it needs afterwards), empty
/// otherwise.
fn load_ids(base: &Manifest, root: &Path, users: &[SourceFile], has_facts: bool) -> Result<IdMap> {
    if users.is_empty() && !has_facts {
        return Ok(IdMap::default());
    }
    let paths = segment_paths(base, root);
    if users.is_empty() {
        return IdMap::on_demand(&paths);
    }
    // Room for the known users and the incoming ones (counted from Parquet footers), so the map
    // does not rehash its way up to 10 M entries.
    let incoming: u64 = users.iter().map(reader::row_count_hint).sum();
    IdMap::load(&paths, base.next_row_id as usize + incoming as usize)
}

/// What the facts phase and the work done meanwhile produced.
struct FactsLoaded {
    facts: Vec<facts::FactLoad>,
    /// `None` unless users were loaded (and this is no dry run).
    users_values: Option<UsersValues>,
    /// The dictionary segment of the new users, if any.
    id_segment: Option<EncodedSegment>,
}

/// Loads the facts while other threads build the users value and range bitmaps from the users
/// files of `next` (when `users_loaded` and this is no dry run) and encode the dictionary segment
/// of the new users (when `encode_ids`: sorting 10 M keys takes seconds).
fn load_facts_meanwhile(
    job: &Job<'_>,
    next: &Manifest,
    ids: &IdMap,
    fact_sources: &[SourceFile],
    categories: Option<&ProductCategories>,
    users_loaded: bool,
    encode_ids: bool,
) -> Result<FactsLoaded> {
    let users_files: Vec<PathBuf> =
        next.files(Table::Users).iter().map(|f| layout::resolve(job.root, &f.path)).collect();
    let build_users_index = users_loaded && job.writer.is_some();
    let first_new = job.base.next_row_id;
    let (facts, users_values, id_segment) = std::thread::scope(|scope| {
        let users_index =
            build_users_index.then(|| scope.spawn(|| build_users_values(&users_files, &next.users_columns)));
        let id_segment =
            encode_ids.then(|| scope.spawn(move || id_dictionary::encode_segment(ids.entries_from(first_new))));
        let facts = facts::load_all(job, fact_sources, ids, categories);
        let users_values =
            users_index.map(|h| h.join().unwrap_or_else(|_| Err(Error::Internal("the index thread panicked".into()))));
        let id_segment = id_segment
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::Internal("the dictionary thread panicked".into()))));
        (facts, users_values, id_segment)
    });
    // The dictionary's and the index's errors come first, as they always have.
    let id_segment = id_segment.transpose()?;
    let users_values = users_values.transpose()?;
    Ok(FactsLoaded { facts: facts?, users_values, id_segment })
}

/// Writes the next index (the previous one merged with `delta`, the users bitmaps replaced when
/// given) and the new dictionary segment, then commits `next`.
fn commit(
    w: StoreWriter,
    root: &Path,
    mut next: Manifest,
    delta: IndexDelta,
    users_values: Option<UsersValues>,
    id_segment: Option<EncodedSegment>,
) -> Result<u64> {
    // Forgotten users' blanked rows read as NULL everywhere: they belong to no users bitmap.
    let mut users_values = users_values;
    if let (Some(values), Some(forgotten)) = (users_values.as_mut(), &next.forgotten) {
        let forgotten = crate::store::catalog::read_set(root, &forgotten.set)?;
        for bitmap in values.values_mut() {
            *bitmap -= &forgotten;
        }
    }
    if users_values.is_some() || !delta.is_empty() {
        let previous = w.base().index.as_ref().map(|i| layout::resolve(root, &i.path));
        let (relative, abs) = w.new_file(layout::new_index_file(w.next_version()))?;
        let bytes = write_next_index(previous.as_deref(), delta, users_values, &abs)?;
        next.index = Some(IndexEntry { path: relative, bytes });
    }
    if let Some(segment) = id_segment {
        next.id_segments.push(segment.write(&w)?);
    }
    w.commit(next)
}
