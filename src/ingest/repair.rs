//! Repair: `persona check --repair` rebuilds what is derived from the data files — everything
//! [`crate::store::check`] finds damaged that the Parquet data can give again — as one new
//! version:
//!
//! ```text
//! a plain copy, day times or row-addressable copy ─ its data file written again (with fresh
//!                                                   companions; its live rows and row ids
//!                                                   unchanged, dead rows purged)
//! the index                                       ─ rebuilt from every data file
//! an id-dictionary segment                        ─ the dictionary rebuilt from the users files
//! the identity persons, state or link overrides   ─ resolved again from the stored links
//! a fact file's dead rows                         ─ marked again from the forgotten users
//! ```
//!
//! The data files themselves, row-id companions of files kept as loaded, catalog sets, the
//! forgotten set and the identity links (they keep identifiers the users files no longer show)
//! are not derived: damage to them is reported as unrepairable (restore them from a backup). [`rebuild_index`] is also what a deep check compares the stored index with.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt32Type;
use roaring::RoaringBitmap;

use super::compact::{SEGMENT_ENTRIES, merge_users, with_row_ids};
use super::facts::add_to_index;
use super::job::read_aligned;
use super::writer::{FACT_FILE_ROWS, TableSink};
use crate::error::Result;
use crate::index::build::{
    FAMILY_EVENT_TYPE, FAMILY_EVENT_TYPE_CHANNEL, FAMILY_PURCHASE_CATEGORY, FAMILY_PURCHASE_CHANNEL, FAMILY_PURCHASES,
    IndexDelta, ProductCategories, build_users_values, write_next_index,
};
use crate::index::format::verify_file;
use crate::store::catalog::read_set;
use crate::store::check::{DICTIONARY_COUNT, Problem, check};
use crate::store::fact_rows::{for_each_fact_batch, product_categories};
use crate::store::id_dictionary::encode_segment;
use crate::store::manifest::{BLANK_USER_ID, DataFile, IndexEntry, Manifest};
use crate::store::{Store, StoreWriter, layout};
use crate::tables::{CHANNEL_ID, EVENT_TYPE, PRODUCT_ID, TAG, TS, Table, USER_ID, contract_columns, file_schema};

/// What a repair did.
#[derive(Debug, Clone, Default)]
pub struct RepairSummary {
    /// The committed version; `None` when nothing could be or needed to be repaired.
    pub version: Option<u64>,
    /// What was rebuilt, one line each (`data/purchases/…parquet: written again with its copies`).
    pub rebuilt: Vec<String>,
    /// The problems a repair cannot fix (primary data): restore those files from a backup.
    pub unrepairable: Vec<Problem>,
}

/// What to do about the problems of a check.
#[derive(Debug, Default)]
struct Plan {
    /// Data files (by relative path) whose companions are damaged.
    rewrite: BTreeSet<String>,
    /// Fact files (by relative path) whose dead rows' set is damaged: marked again from the
    /// forgotten users (their rows are exactly the dead ones).
    dead: BTreeSet<String>,
    index: bool,
    dictionary: bool,
    /// The identity resolution's persons file, state or link overrides, with its links sound.
    identity: bool,
    unrepairable: Vec<Problem>,
}

/// Sorts `problems` into what the data gives again and what it does not.
fn plan(root: &Path, manifest: &Manifest, problems: Vec<Problem>) -> Plan {
    let abs = |relative: &str| layout::resolve(root, relative);
    let damaged: BTreeSet<PathBuf> = problems.iter().map(|p| p.path.clone()).collect();
    let mut companions: BTreeMap<PathBuf, (String, bool)> = BTreeMap::new();
    let mut dead_sets: BTreeMap<PathBuf, (String, bool)> = BTreeMap::new();
    let forgotten_sound = manifest.forgotten.as_ref().is_some_and(|f| !damaged.contains(&abs(&f.set.path)));
    for table in Table::ALL {
        for f in manifest.files(table) {
            // A file is written again from its Parquet data and row ids: both must be sound.
            let sound =
                !damaged.contains(&abs(&f.path)) && f.row_ids.as_ref().is_none_or(|r| !damaged.contains(&abs(r)));
            for companion in [&f.plain_columns, &f.day_times, &f.addressable].into_iter().flatten() {
                companions.insert(abs(companion), (f.path.clone(), sound));
            }
            if let Some(dead) = &f.dead {
                dead_sets.insert(abs(&dead.set.path), (f.path.clone(), sound && forgotten_sound));
            }
        }
    }
    let index = manifest.index.as_ref().map(|i| abs(&i.path));
    let segments: BTreeSet<PathBuf> = manifest.id_segments.iter().map(|s| abs(&s.path)).collect();
    // The persons, state and overrides are resolved again from the links, if those are sound
    // (the links keep identifiers the users files no longer show: they are primary).
    let (resolved, links_sound): (BTreeSet<PathBuf>, bool) = match &manifest.identity.resolution {
        Some(r) => {
            let links: BTreeSet<String> = r.link_files().into_iter().cloned().collect();
            let derived = r.files().into_iter().filter(|f| !links.contains(*f)).map(|f| abs(f)).collect();
            (derived, links.iter().all(|f| !damaged.contains(&abs(f))))
        }
        None => (BTreeSet::new(), false),
    };
    let mut out = Plan::default();
    for problem in problems {
        if let Some((data, sound)) = dead_sets.get(&problem.path) {
            if *sound {
                out.dead.insert(data.clone());
                continue;
            }
            out.unrepairable.push(problem);
            continue;
        }
        match companions.get(&problem.path) {
            Some((data, true)) => {
                out.rewrite.insert(data.clone());
                continue;
            }
            Some((_, false)) => {}
            None if index.as_ref() == Some(&problem.path) => {
                out.index = true;
                continue;
            }
            None if segments.contains(&problem.path) || problem.what.contains(DICTIONARY_COUNT) => {
                out.dictionary = true;
                continue;
            }
            None if links_sound && resolved.contains(&problem.path) => {
                out.identity = true;
                continue;
            }
            None => {}
        }
        out.unrepairable.push(problem);
    }
    out
}

impl Store {
    /// Checks the current version and rebuilds every damaged derived file as one new version
    /// (see the module doc). Problems with primary data are returned, not fixed.
    pub fn repair(&self) -> Result<RepairSummary> {
        let writer = self.writer()?;
        // Under the writer lock the current version is the writer's base.
        let report = check(self, verify_file)?;
        let base = Arc::clone(writer.base());
        let root = self.root().to_path_buf();
        let plan = plan(&root, &base, report.problems);
        let mut summary = RepairSummary { unrepairable: plan.unrepairable, ..Default::default() };
        if plan.rewrite.is_empty() && plan.dead.is_empty() && !plan.index && !plan.dictionary && !plan.identity {
            return Ok(summary);
        }
        let mut next = (*base).clone();
        let forgotten = match (&base.forgotten, plan.dead.is_empty()) {
            (Some(f), false) => read_set(&root, &f.set)?,
            _ => RoaringBitmap::new(),
        };
        for table in Table::ALL {
            let Some(files) = next.tables.get(&table).cloned() else { continue };
            let mut out = Vec::with_capacity(files.len());
            for mut f in files {
                if plan.dead.contains(&f.path) {
                    let positions = super::forget::rows_of(&root, &f, &forgotten)?;
                    f.dead = crate::store::dead_rows::write(&writer, &positions)?;
                    let what = f.dead.as_ref().map_or("none".to_string(), |d| d.set.path.clone());
                    summary
                        .rebuilt
                        .push(format!("{}: its dead rows marked again from the forgotten users as {what}", f.path));
                }
                if !plan.rewrite.contains(&f.path) {
                    out.push(f);
                    continue;
                }
                let written = rewrite(&writer, &root, &base, table, &f)?;
                let paths: Vec<String> = written.iter().map(|w| w.path.clone()).collect();
                summary.rebuilt.push(format!("{}: written again with its copies as {}", f.path, paths.join(", ")));
                // A rule tag owning the file owns its replacement.
                for tag in &mut next.catalog.tags {
                    if let Some(at) = tag.rows_files.iter().position(|p| *p == f.path) {
                        tag.rows_files.splice(at..=at, paths.iter().cloned());
                    }
                }
                out.extend(written);
            }
            if table == Table::Users {
                out.sort_by_key(|f| f.first_row_id);
            }
            next.tables.insert(table, out);
        }
        if plan.dictionary {
            let segments = rebuild_dictionary(&writer, &root, &base)?;
            summary
                .rebuilt
                .push(format!("the id dictionary: rebuilt from the users files as {} segment(s)", segments.len()));
            next.id_segments = segments;
        }
        if plan.index {
            let (relative, abs) = writer.new_file(layout::new_index_file(writer.next_version()))?;
            let bytes = rebuild_index(&root, &next, &abs)?;
            summary.rebuilt.push(format!("the index: rebuilt from every data file as {relative}"));
            next.index = Some(IndexEntry { path: relative, bytes });
        }
        if plan.identity {
            // From the start over the stored links: without a state to resume, the resolution
            // reads every links segment and writes the persons, a state base and the links again.
            if let Some(r) = next.identity.resolution.as_mut() {
                (r.state, r.state_base, r.link_overrides) = (None, None, None);
                r.state_deltas.clear();
            }
            let paths: Vec<PathBuf> = next.id_segments.iter().map(|s| layout::resolve(&root, &s.path)).collect();
            let mut ids = crate::ingest::row_ids::IdMap::load_names(&paths, next.next_row_id as usize)?;
            super::identity::resolve(&writer, &root, &base, &mut next, &mut ids)?;
            summary.rebuilt.push("the identity resolution: resolved again from its stored links".into());
        }
        summary.version = Some(writer.commit(next)?);
        Ok(summary)
    }
}

/// Writes data file `f` of `table` again, its live rows and their row ids as they are (dead
/// rows left out), with fresh companions.
pub(super) fn rewrite(
    writer: &StoreWriter,
    root: &Path,
    base: &Manifest,
    table: Table,
    f: &DataFile,
) -> Result<Vec<DataFile>> {
    if table == Table::Users {
        return merge_users(writer, root, base, &[f]);
    }
    if !table.is_fact() {
        return Err(crate::error::Error::Internal(format!("{table} files have no companions to rebuild")));
    }
    let columns = contract_columns(table);
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let schema = file_schema(&columns);
    let mut sink = TableSink::new(writer, table, Arc::clone(&schema), FACT_FILE_ROWS, false);
    for_each_fact_batch(root, f, &names, |batch, ids| sink.write(&with_row_ids(batch, ids, &schema)?))?;
    Ok(sink.finish()?.0)
}

/// The id dictionary written again from the users files: every user_id with its row id (rows of
/// forgotten users left out), in segments of up to [`SEGMENT_ENTRIES`].
fn rebuild_dictionary(
    writer: &StoreWriter,
    root: &Path,
    base: &Manifest,
) -> Result<Vec<crate::store::manifest::IdSegment>> {
    let columns = &base.users_columns;
    let schema = file_schema(columns);
    let at = schema.index_of(USER_ID)?;
    let mut segments = Vec::new();
    let mut entries: Vec<(String, u32)> = Vec::new();
    let flush = |entries: &mut Vec<(String, u32)>, segments: &mut Vec<_>| -> Result<()> {
        if !entries.is_empty() {
            let refs: Vec<(&str, u32)> = entries.iter().map(|(k, id)| (k.as_str(), *id)).collect();
            segments.push(encode_segment(refs)?.write(writer)?);
            entries.clear();
        }
        Ok(())
    };
    // Forgotten users' rows stay in place until a purge blanks them.
    let forgotten = match &base.forgotten {
        Some(f) => read_set(root, &f.set)?,
        None => RoaringBitmap::new(),
    };
    for f in base.files(Table::Users) {
        let batch = read_aligned(&layout::resolve(root, &f.path), columns, &schema)?;
        let ids = batch.column(0).as_primitive::<UInt32Type>();
        let users = batch.column(at).as_string::<i32>();
        for row in 0..batch.num_rows() {
            if users.is_valid(row) && users.value(row) != BLANK_USER_ID && !forgotten.contains(ids.value(row)) {
                entries.push((users.value(row).to_string(), ids.value(row)));
            }
        }
        if entries.len() as u64 >= SEGMENT_ENTRIES {
            flush(&mut entries, &mut segments)?;
        }
    }
    flush(&mut entries, &mut segments)?;
    Ok(segments)
}

/// Builds the index of `manifest` from its data files alone into `out` (returns its size): the
/// tag bitmaps from `user_tags` (a rule tag's rows excepted: its members are a catalog set), the
/// purchase and event streams, and the users value and range bitmaps without forgotten users.
pub fn rebuild_index(root: &Path, manifest: &Manifest, out: &Path) -> Result<u64> {
    let categories = ProductCategories::new(product_categories(root, manifest)?);
    let rule_owned: BTreeSet<&String> = manifest.catalog.tags.iter().flat_map(|t| &t.rows_files).collect();
    let mut delta = IndexDelta::default();
    for (table, names) in [
        (Table::UserTags, &[TAG][..]),
        (Table::Purchases, &[TS, CHANNEL_ID, PRODUCT_ID][..]),
        (Table::Events, &[TS, EVENT_TYPE, CHANNEL_ID][..]),
    ] {
        for f in manifest.files(table).iter().filter(|f| !rule_owned.contains(&f.path)) {
            let path = layout::resolve(root, &f.path);
            for_each_fact_batch(root, f, names, |batch, ids| {
                add_to_index(&mut delta, table, (&path, batch), ids, Some(&categories))
            })?;
        }
    }
    if !manifest.files(Table::Purchases).is_empty() {
        delta
            .complete_families
            .extend([FAMILY_PURCHASES, FAMILY_PURCHASE_CHANNEL, FAMILY_PURCHASE_CATEGORY].map(str::to_string));
    }
    if !manifest.files(Table::Events).is_empty() {
        delta.complete_families.extend([FAMILY_EVENT_TYPE, FAMILY_EVENT_TYPE_CHANNEL].map(str::to_string));
    }
    let users_files: Vec<PathBuf> =
        manifest.files(Table::Users).iter().map(|f| layout::resolve(root, &f.path)).collect();
    let users_values = if users_files.is_empty() {
        None
    } else {
        let mut values = build_users_values(&users_files, &manifest.users_columns)?;
        if let Some(forgotten) = &manifest.forgotten {
            let forgotten: RoaringBitmap = read_set(root, &forgotten.set)?;
            for bitmap in values.values_mut() {
                *bitmap -= &forgotten;
            }
        }
        Some(values)
    };
    write_next_index(None, delta, users_values, out)
}

/// Compares the current version's index with one rebuilt from its data files alone (a deep
/// check): every tag, value, NULL, range-slice and activity bitmap must hold the same users.
/// Marks (complete families, tag repeats) are not compared: an index merged over imports may
/// know less about them than a rebuild, without any answer differing. Returns one problem per
/// bitmap that differs (one missing on a side counts as empty), at the index's path.
pub fn index_differences(store: &Store) -> Result<Vec<Problem>> {
    use crate::index::format::{BitmapKind, IndexFile};
    let snapshot = store.snapshot()?;
    let manifest = snapshot.manifest();
    let Some(entry) = &manifest.index else { return Ok(Vec::new()) };
    let path = layout::resolve(snapshot.root(), &entry.path);
    /// Removes the scratch index however the comparison ends.
    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "persona-deep-check-{}-{:016x}.idx",
        std::process::id(),
        rand::random::<u64>()
    )));
    rebuild_index(snapshot.root(), manifest, &scratch.0)?;
    let rebuilt_path = scratch.0.clone();
    let stored = IndexFile::open(&path)?;
    let rebuilt = IndexFile::open(&rebuilt_path)?;
    let compared = |kind: BitmapKind| {
        matches!(
            kind,
            BitmapKind::Tag
                | BitmapKind::Value
                | BitmapKind::Null
                | BitmapKind::RangeBit
                | BitmapKind::RangeBase
                | BitmapKind::ValueColumn
                | BitmapKind::ActivityDay
                | BitmapKind::ActivityMonth
        )
    };
    let describe = |(kind, name, key): &crate::index::format::BitmapKey| format!("{kind:?} bitmap '{name}' '{key}'");
    let mut problems = Vec::new();
    let keys: BTreeSet<_> = stored.directory.keys().chain(rebuilt.directory.keys()).filter(|k| compared(k.0)).collect();
    // A bitmap missing on one side holds no user (forgetting may leave a day with nobody).
    let read = |file: &IndexFile, key| -> Result<RoaringBitmap> {
        file.directory.get(key).map_or_else(|| Ok(RoaringBitmap::new()), |extent| file.read(*extent))
    };
    for key in keys {
        let (a, b) = (read(&stored, key)?, read(&rebuilt, key)?);
        if a != b {
            problems.push(Problem {
                path: path.clone(),
                what: format!(
                    "the {} holds {} users, the data gives {} ({} differ)",
                    describe(key),
                    a.len(),
                    b.len(),
                    (&a ^ &b).len()
                ),
            });
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_with_data_or_catalog_are_not_repairable_and_companions_of_damaged_data_neither() {
        let root = Path::new("/s");
        let mut manifest = Manifest::empty();
        let file = |path: &str, plain: Option<&str>| DataFile {
            path: path.into(),
            rows: 1,
            bytes: 1,
            first_row_id: None,
            ts_range: None,
            row_ids: None,
            row_id_ranges: Vec::new(),
            rows_by_user: true,
            addressable: None,
            plain_columns: plain.map(str::to_string),
            day_times: None,
            dead: None,
        };
        manifest.tables.insert(
            Table::Purchases,
            vec![
                file("data/p/a.parquet", Some("data/p/a.plain.arrow")),
                file("data/p/b.parquet", Some("data/p/b.plain.arrow")),
            ],
        );
        manifest.index = Some(IndexEntry { path: "index/v1.idx".into(), bytes: 1 });
        let problem = |p: &str| Problem { path: root.join(p), what: "damaged".into() };
        let planned = plan(
            root,
            &manifest,
            vec![
                problem("data/p/a.plain.arrow"),
                problem("data/p/b.parquet"),
                problem("data/p/b.plain.arrow"),
                problem("index/v1.idx"),
                problem("catalog/set"),
            ],
        );
        assert_eq!(planned.rewrite, BTreeSet::from(["data/p/a.parquet".to_string()]));
        assert!(planned.index && !planned.dictionary);
        let unrepairable: Vec<_> = planned.unrepairable.iter().map(|p| p.path.clone()).collect();
        assert_eq!(
            unrepairable,
            vec![root.join("data/p/b.parquet"), root.join("data/p/b.plain.arrow"), root.join("catalog/set")]
        );
    }
}
