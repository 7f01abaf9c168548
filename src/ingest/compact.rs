//! Compaction: a store fed by many small imports (hourly loads) gathers many small data files
//! and id-dictionary segments; `persona compact` (and the policy an import applies after it
//! commits, [`compaction_due`]) rewrites them into bounded ones as one new version, without
//! changing any answer:
//!
//! ```text
//! fact files (purchases, events, user_tags) ─ consecutive small files, up to `fact_rows` rows a
//!                                              group, read and written again as one file sorted
//!                                              by user row id (so its rows are grouped by user)
//! users files                                ─ consecutive small files with adjacent row ids, up
//!                                              to `users_rows` rows a group, as one file
//! id-dictionary segments                     ─ small segments, up to `segment_entries` a group,
//!                                              as one
//! ```
//!
//! Row ids, the index, the catalog and every other file stay as they are; a file a rule tag owns
//! (its `user_tags` rows, replaced whole when the tag is refreshed) is never merged. Readers keep
//! the version they pinned; the replaced files stay until `persona vacuum` removes them. Memory
//! is bounded by one group: `fact_rows` rows at a time.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{cast, concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;

use super::job::read_aligned;
use super::writer::{FACT_FILE_ROWS, TableSink, USERS_FILE_ROWS};
use crate::error::{Error, Result};
use crate::store::fact_rows::for_each_fact_batch;
use crate::store::id_dictionary::{encode_segment, for_each_entry};
use crate::store::manifest::{DataFile, IdSegment, Manifest};
use crate::store::{Store, StoreWriter, layout};
use crate::tables::{Table, contract_columns, file_schema};

/// Entries per id-dictionary segment written by compaction.
pub const SEGMENT_ENTRIES: u64 = 1 << 22;
/// A table with this many small files (or a store with this many small segments) is due for
/// compaction after an import.
pub const DUE_SMALL_FILES: usize = 64;

/// How large compacted files and segments may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactOptions {
    /// Rows per compacted fact file (also the most rows held in memory at once).
    pub fact_rows: u64,
    /// Rows per compacted users file.
    pub users_rows: u64,
    /// Entries per compacted id-dictionary segment.
    pub segment_entries: u64,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions { fact_rows: FACT_FILE_ROWS, users_rows: USERS_FILE_ROWS, segment_entries: SEGMENT_ENTRIES }
    }
}

/// What a compaction did: per table, and for the id segments, the file counts before and after.
#[derive(Debug, Clone, Default)]
pub struct CompactSummary {
    /// The committed version; `None` when there was nothing to merge.
    pub version: Option<u64>,
    /// `(table, files before, files after)` for each table that changed.
    pub tables: Vec<(Table, usize, usize)>,
    /// Id-dictionary segments before and after.
    pub segments: (usize, usize),
    /// Identity state deltas merged into a new base (0: none).
    pub identity_deltas: usize,
    pub elapsed: Duration,
}

impl CompactSummary {
    /// Whether anything was merged.
    pub fn merged(&self) -> bool {
        self.version.is_some()
    }
}

/// A file is small when it holds less than a quarter of what a compacted file may.
fn is_small(rows: u64, target: u64) -> bool {
    rows.saturating_mul(4) < target
}

/// Whether `manifest` has enough small files or segments that an import should compact after
/// committing (the automatic policy; docs/lifecycle.md).
pub fn compaction_due(manifest: &Manifest) -> bool {
    let options = CompactOptions::default();
    let owned = rule_owned(manifest);
    let small_files = |table: Table, target: u64| {
        manifest.files(table).iter().filter(|f| is_small(f.live_rows(), target) && !owned.contains(&f.path)).count()
    };
    Table::ALL.into_iter().filter(|t| t.is_fact()).any(|t| small_files(t, options.fact_rows) >= DUE_SMALL_FILES)
        || small_files(Table::Users, options.users_rows) >= DUE_SMALL_FILES
        || manifest.id_segments.iter().filter(|s| is_small(s.entries, options.segment_entries)).count()
            >= DUE_SMALL_FILES
        || super::identity::merge_due(manifest)
}

/// The `user_tags` files rule tags own (never merged).
fn rule_owned(manifest: &Manifest) -> BTreeSet<String> {
    manifest.catalog.tags.iter().flat_map(|t| t.rows_files.iter().cloned()).collect()
}

impl Store {
    /// Merges small files and segments as one new version (see the module doc); nothing is
    /// committed when there is nothing to merge.
    pub fn compact(&self, options: &CompactOptions) -> Result<CompactSummary> {
        let started = Instant::now();
        if options.fact_rows == 0 || options.users_rows == 0 || options.segment_entries == 0 {
            return Err(Error::Usage("compacted files must be allowed at least one row".into()));
        }
        let writer = self.writer()?;
        let (next, mut summary) = compact_version(&writer, options)?;
        if summary.tables.is_empty() && summary.segments.0 == summary.segments.1 && summary.identity_deltas == 0 {
            summary.elapsed = started.elapsed();
            return Ok(summary);
        }
        summary.version = Some(writer.commit(next)?);
        summary.elapsed = started.elapsed();
        Ok(summary)
    }
}

/// Writes the merged files of the next version; returns its manifest (to commit) and what
/// changed.
pub fn compact_version(writer: &StoreWriter, options: &CompactOptions) -> Result<(Manifest, CompactSummary)> {
    let base = Arc::clone(writer.base());
    let root = writer.store().root().to_path_buf();
    let owned = rule_owned(&base);
    let mut next = (*base).clone();
    let mut summary = CompactSummary::default();
    for table in Table::ALL.into_iter().filter(|t| t.is_fact()) {
        let files = base.files(table);
        let groups = groups_of(files, options.fact_rows, |f| !owned.contains(&f.path), |_, _| true);
        if groups.iter().all(|g| g.len() < 2) {
            continue;
        }
        let mut out = Vec::with_capacity(files.len());
        for group in groups {
            match group.as_slice() {
                [one] => out.push((*one).clone()),
                many => out.extend(merge_facts(writer, &root, table, many, options.fact_rows)?),
            }
        }
        summary.tables.push((table, files.len(), out.len()));
        next.tables.insert(table, out);
    }
    let users = base.files(Table::Users);
    // Users files are merged only with their neighbours in row-id order.
    let adjacent = |a: &DataFile, b: &DataFile| match (a.first_row_id, b.first_row_id) {
        (Some(a0), Some(b0)) => u64::from(a0) + a.rows == u64::from(b0),
        _ => false,
    };
    let mut sorted: Vec<DataFile> = users.to_vec();
    sorted.sort_by_key(|f| f.first_row_id);
    let groups = groups_of(&sorted, options.users_rows, |_| true, adjacent);
    if groups.iter().any(|g| g.len() >= 2) {
        let mut out = Vec::with_capacity(sorted.len());
        for group in groups {
            match group.as_slice() {
                [one] => out.push((*one).clone()),
                many => out.extend(merge_users(writer, &root, &base, many)?),
            }
        }
        out.sort_by_key(|f| f.first_row_id);
        summary.tables.push((Table::Users, users.len(), out.len()));
        next.tables.insert(Table::Users, out);
    }
    let segments = &base.id_segments;
    summary.segments = (segments.len(), segments.len());
    let groups = groups_by_size(segments, options.segment_entries, |s| s.entries);
    if groups.iter().any(|g| g.len() >= 2) {
        let mut out = Vec::with_capacity(segments.len());
        for group in groups {
            match group.as_slice() {
                [one] => out.push((*one).clone()),
                many => out.push(merge_segments(writer, &root, many)?),
            }
        }
        summary.segments.1 = out.len();
        next.id_segments = out;
    }
    // The identity state's deltas, once due, into a new base (docs/identity.md).
    if super::identity::merge_due(&base) {
        let deltas = base.identity.resolution.as_ref().map_or(0, |r| r.state_deltas.len());
        if super::identity::merge_state(writer, &root, &mut next)? {
            summary.identity_deltas = deltas;
        }
    }
    Ok((next, summary))
}

/// `files` in order, cut into groups to merge: runs of small files that `mergeable` allows, each
/// next one `follows` the previous, up to `target` rows; every other file is a group of its own.
/// A file's size is its live rows: one that a forget left mostly dead is merged (and purged).
fn groups_of(
    files: &[DataFile],
    target: u64,
    mergeable: impl Fn(&DataFile) -> bool,
    follows: impl Fn(&DataFile, &DataFile) -> bool,
) -> Vec<Vec<&DataFile>> {
    let mut groups: Vec<Vec<&DataFile>> = Vec::new();
    let mut rows = 0u64;
    let mut open = false;
    for file in files {
        let small = is_small(file.live_rows(), target) && mergeable(file);
        let joins = open
            && small
            && rows + file.live_rows() <= target
            && groups.last().and_then(|g| g.last()).is_some_and(|last| follows(last, file));
        if joins {
            groups.last_mut().expect("an open group").push(file);
            rows += file.live_rows();
        } else {
            groups.push(vec![file]);
            rows = file.live_rows();
            open = small;
        }
    }
    groups
}

/// [`groups_of`] for id segments (all mergeable, in any order).
fn groups_by_size<T>(items: &[T], target: u64, size: impl Fn(&T) -> u64) -> Vec<Vec<&T>> {
    let mut groups: Vec<Vec<&T>> = Vec::new();
    let mut total = 0u64;
    let mut open = false;
    for item in items {
        let n = size(item);
        let small = is_small(n, target);
        if open && small && total + n <= target {
            groups.last_mut().expect("an open group").push(item);
            total += n;
        } else {
            groups.push(vec![item]);
            total = n;
            open = small;
        }
    }
    groups
}

/// Reads the rows of `files` (a fact table's) and writes them as one file sorted by user row id
/// (rows of one user keep their order).
fn merge_facts(
    writer: &StoreWriter,
    root: &Path,
    table: Table,
    files: &[&DataFile],
    max_rows: u64,
) -> Result<Vec<DataFile>> {
    let columns = contract_columns(table);
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let schema = file_schema(&columns);
    let mut batches = Vec::new();
    for file in files {
        for_each_fact_batch(root, file, &names, |batch, ids| {
            batches.push(with_row_ids(batch, ids, &schema)?);
            Ok(())
        })?;
    }
    let all = concat_batches(&schema, &batches)?;
    drop(batches);
    let ids = all
        .column(0)
        .as_any()
        .downcast_ref::<UInt32Array>()
        .ok_or_else(|| Error::Internal("compacted fact rows have no row ids".into()))?;
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    // Stable: one user's rows stay in the order they were loaded.
    order.sort_by_key(|&r| ids.value(r as usize));
    let sorted = take_record_batch(&all, &UInt32Array::from(order))?;
    drop(all);
    let mut sink = TableSink::new(writer, table, Arc::clone(&schema), max_rows, false);
    sink.write(&sorted)?;
    Ok(sink.finish()?.0)
}

/// A fact batch as the file schema has it: row ids first, columns cast to the contract's types.
pub(super) fn with_row_ids(batch: &RecordBatch, ids: &[u32], schema: &SchemaRef) -> Result<RecordBatch> {
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(UInt32Array::from(ids.to_vec()))];
    for (i, field) in schema.fields().iter().enumerate().skip(1) {
        let column = batch.column(i - 1);
        arrays.push(match column.data_type() == field.data_type() {
            true => Arc::clone(column),
            false => cast(column, field.data_type())?,
        });
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), arrays)?)
}

/// Reads adjacent users files and writes them as one.
pub(super) fn merge_users(
    writer: &StoreWriter,
    root: &Path,
    base: &Manifest,
    files: &[&DataFile],
) -> Result<Vec<DataFile>> {
    let columns = &base.users_columns;
    let schema = file_schema(columns);
    let mut sink = TableSink::new(writer, Table::Users, Arc::clone(&schema), u64::MAX, false);
    for file in files {
        sink.write(&read_aligned(&layout::resolve(root, &file.path), columns, &schema)?)?;
    }
    Ok(sink.finish()?.0)
}

/// Reads small id-dictionary segments and writes their entries as one.
fn merge_segments(writer: &StoreWriter, root: &Path, segments: &[&IdSegment]) -> Result<IdSegment> {
    let mut entries: Vec<(String, u32)> = Vec::new();
    for segment in segments {
        for_each_entry(&layout::resolve(root, &segment.path), |key, id| entries.push((key.to_string(), id)))?;
    }
    let refs: Vec<(&str, u32)> = entries.iter().map(|(k, id)| (k.as_str(), *id)).collect();
    encode_segment(refs)?.write(writer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rows: u64, first: u32) -> DataFile {
        DataFile {
            path: format!("f{first}"),
            rows,
            bytes: 0,
            first_row_id: Some(first),
            ts_range: None,
            row_ids: None,
            row_id_ranges: Vec::new(),
            rows_by_user: false,
            addressable: None,
            plain_columns: None,
            day_times: None,
            dead: None,
        }
    }

    #[test]
    fn groups_take_runs_of_small_files_up_to_the_target() {
        // 100-row target: small is under 25 rows.
        let files = vec![file(10, 0), file(10, 10), file(30, 20), file(20, 50), file(5, 70), file(24, 75)];
        let groups = groups_of(&files, 100, |_| true, |_, _| true);
        let rows: Vec<Vec<u64>> = groups.iter().map(|g| g.iter().map(|f| f.rows).collect()).collect();
        assert_eq!(rows, vec![vec![10, 10], vec![30], vec![20, 5, 24]]);
        // Up to the target, then a new group.
        let many: Vec<DataFile> = (0..9).map(|i| file(24, i * 24)).collect();
        let sizes: Vec<usize> = groups_of(&many, 100, |_| true, |_, _| true).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![4, 4, 1]);
        // A file that may not be merged, or that does not follow, cuts the run.
        let cut: Vec<usize> = groups_of(&files, 100, |f| f.path != "f50", |_, _| true).iter().map(Vec::len).collect();
        assert_eq!(cut, vec![2, 1, 1, 2]);
        let adjacent = |a: &DataFile, b: &DataFile| {
            u64::from(a.first_row_id.unwrap()) + a.rows == u64::from(b.first_row_id.unwrap())
        };
        let gap = vec![file(10, 0), file(10, 10), file(10, 25), file(10, 35)];
        let sizes: Vec<usize> = groups_of(&gap, 100, |_| true, adjacent).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 2]);
    }

    #[test]
    fn segments_group_by_entries() {
        let sizes = [3u64, 3, 90, 10, 10, 10];
        let groups = groups_by_size(&sizes, 50, |s| *s);
        let got: Vec<Vec<u64>> = groups.iter().map(|g| g.iter().map(|s| **s).collect()).collect();
        assert_eq!(got, vec![vec![3, 3], vec![90], vec![10, 10, 10]]);
    }
}
