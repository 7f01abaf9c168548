//! Forgetting users (PIPL / GDPR erasure): `persona forget` and `DELETE FROM users` build one new
//! version without them, under the writer lock like an import. Files that hold none of them are
//! kept as they are; the others are written again:
//!
//! ```text
//! users files holding them      ─ kept: every reader of users leaves the forgotten set out; a
//!                                 purge blanks their rows in place (user_id '', all else NULL)
//! fact files holding their rows ─ written again without those rows (with their plain copies)
//! the index                     ─ every bitmap without them; a tag or value only they had goes
//! id-dictionary segments        ─ written again without their user_ids
//! rule tags, audience versions  ─ members and holdout without them; added/removed recounted
//! forgotten set                 ─ the row ids forgotten so far, plus theirs
//! identity resolution           ─ their components resolved again without their links (the
//!                                 links stay in the links files, hidden, until a purge)
//! ```
//!
//! **Row ids are never reused.** A forgotten user's row id becomes a hole: the row stays in its
//! users file (so that row `k` of a file is still row id `first_row_id + k` for every reader of
//! row positions), blanked by the next purge, and the manifest's `forgotten` set lists it. Every "all users"
//! computation subtracts that set ([`crate::index::IndexSet::universe`]), and no bitmap holds it.
//! The old version's files stay until `persona vacuum` removes them (docs/lifecycle.md).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{SchemaRef, UInt32Type};
use arrow::record_batch::RecordBatch;
use roaring::RoaringBitmap;

use super::job::read_aligned;
use super::writer::TableSink;
use crate::error::{Error, Result};
use crate::index::build::write_index_without;
use crate::store::catalog::{read_set, write_set};
use crate::store::fact_rows::read_stored_columns;
use crate::store::id_dictionary::{SegmentReader, segment_without};
use crate::store::identity::Split;
use crate::store::manifest::{BLANK_USER_ID, DataFile, ForgottenUsers, IndexEntry, Manifest};
use crate::store::{Store, StoreWriter, layout};
use crate::tables::{ROW_ID_COLUMN, Table, USER_ID, file_schema};

/// How many unknown user_ids a summary names.
const UNKNOWN_EXAMPLES: usize = 5;

/// What a forget did.
#[derive(Debug, Clone, Default)]
pub struct ForgetSummary {
    /// The committed version; `None` when nobody was forgotten.
    pub version: Option<u64>,
    /// Users forgotten by this operation.
    pub forgotten: u64,
    /// user_ids given that are no user of the store (already forgotten, or never loaded), and
    /// the first few of them.
    pub unknown: u64,
    pub unknown_examples: Vec<String>,
    /// Files written again without the forgotten users (data files, id segments, the index).
    pub rewritten_files: usize,
    pub elapsed: Duration,
}

impl Store {
    /// Forgets the users with these `user_ids` as one new version (see the module doc). Unknown
    /// ids are counted in the summary; it is an error only when none of them is known.
    pub fn forget(&self, user_ids: &[String]) -> Result<ForgetSummary> {
        self.forget_as(user_ids, true)
    }

    /// [`Store::forget`] resolving identities from the start instead of on the forgotten users'
    /// components: the same result, what the tests compare the components' resolution with.
    pub fn forget_resolving_from_start(&self, user_ids: &[String]) -> Result<ForgetSummary> {
        self.forget_as(user_ids, false)
    }

    fn forget_as(&self, user_ids: &[String], local: bool) -> Result<ForgetSummary> {
        let started = Instant::now();
        if user_ids.is_empty() {
            return Err(Error::Usage("no user_id was given; nothing was forgotten".into()));
        }
        let writer = self.writer()?;
        let (row_ids, unknown) = resolve_user_ids(self.root(), writer.base(), user_ids)?;
        if row_ids.is_empty() {
            let examples = unknown.iter().take(UNKNOWN_EXAMPLES).map(|u| format!("'{u}'")).collect::<Vec<_>>();
            return Err(Error::Usage(format!(
                "none of the {} user_id(s) given is a user of the store ({}{}); nothing was forgotten",
                unknown.len(),
                examples.join(", "),
                if unknown.len() > UNKNOWN_EXAMPLES { ", …" } else { "" }
            )));
        }
        let (next, rewritten) = forget_rows_as(&writer, &row_ids, local)?;
        let version = writer.commit(next)?;
        Ok(ForgetSummary {
            version: Some(version),
            forgotten: row_ids.len(),
            unknown: unknown.len() as u64,
            unknown_examples: unknown.into_iter().take(UNKNOWN_EXAMPLES).collect(),
            rewritten_files: rewritten,
            elapsed: started.elapsed(),
        })
    }
}

/// The row ids of `user_ids` in `base` (each once), and the ids that are no user, in the order
/// given (each once).
fn resolve_user_ids(root: &Path, base: &Manifest, user_ids: &[String]) -> Result<(RoaringBitmap, Vec<String>)> {
    let mut sorted: Vec<&str> = user_ids.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let found = row_ids_of(root, base, &sorted)?;
    let row_ids: RoaringBitmap = found.iter().flatten().copied().collect();
    let known: std::collections::HashSet<&str> =
        sorted.iter().zip(&found).filter(|(_, f)| f.is_some()).map(|(k, _)| *k).collect();
    let mut unknown: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for id in user_ids {
        if !known.contains(id.as_str()) && seen.insert(id.as_str()) {
            unknown.push(id.clone());
        }
    }
    Ok((row_ids, unknown))
}

/// The row id in `base` of each of `sorted` (ascending, distinct user_ids): one pass over the
/// id dictionary's segments.
fn row_ids_of(root: &Path, base: &Manifest, sorted: &[&str]) -> Result<Vec<Option<u32>>> {
    let mut found: Vec<Option<u32>> = vec![None; sorted.len()];
    for segment in &base.id_segments {
        SegmentReader::open(&layout::resolve(root, &segment.path))?.get_sorted(sorted, &mut found)?;
    }
    Ok(found)
}

/// Writes the files of the next version without the users of `row_ids` (those already forgotten
/// or never given out are ignored) and returns its manifest, to be committed by the caller, with
/// the number of files written again.
pub fn forget_rows(writer: &StoreWriter, row_ids: &RoaringBitmap) -> Result<(Manifest, usize)> {
    forget_rows_as(writer, row_ids, true)
}

/// [`forget_rows`]; `local`: resolve identities on the forgotten users' components when the
/// stored state allows it (else, and when false, every link from the start).
pub fn forget_rows_as(writer: &StoreWriter, row_ids: &RoaringBitmap, local: bool) -> Result<(Manifest, usize)> {
    let base = Arc::clone(writer.base());
    let root = writer.store().root().to_path_buf();
    let before = match &base.forgotten {
        Some(f) => read_set(&root, &f.set)?,
        None => RoaringBitmap::new(),
    };
    let mut removed = row_ids - &before;
    removed.remove_range(base.next_row_id..);
    let mut next = (*base).clone();
    if removed.is_empty() {
        return Ok((next, 0));
    }
    forget_split_pairs(&root, &base, &removed, &mut next)?;
    let all = before | &removed;
    next.forgotten = Some(ForgottenUsers { users: all.len(), set: write_set(writer, "forgotten-users", &all)? });
    let mut rewritten = 0usize;
    // The identity resolution (the longest step at ten million users) runs on the second core
    // while the rest is written: it needs the splits and the forgotten set, and leaves the
    // forgotten users out of the base's dictionary itself. While an installed I/O
    // implementation counts operations, it runs first instead of beside the rest, so that their
    // order is fixed.
    let in_order = crate::store::io::counts_operations(&root);
    let resolved = std::thread::scope(|scope| -> Result<_> {
        let mut for_identity = next.clone();
        let (root, base, gone) = (&root, &base, &removed);
        let resolve = move || -> Result<_> {
            super::identity::resolve_after_forget(writer, root, base, &mut for_identity, gone, local)?;
            Ok(for_identity.identity.resolution)
        };
        let (first, identity) = match in_order {
            true => (Some(resolve()), None),
            false => (None, Some(scope.spawn(resolve))),
        };
        // Their fact rows are marked dead, not written again (a purge does that,
        // docs/lifecycle.md).
        let facts: Vec<Table> = Table::ALL.into_iter().filter(|t| t.is_fact()).collect();
        let (replaced, marked) = mark_fact_rows(writer, root, base, gone, &mut next, &facts)?;
        rewritten += marked;
        next.id_segments.clear();
        for segment in &base.id_segments {
            match segment_without(&layout::resolve(root, &segment.path), gone)? {
                None => next.id_segments.push(segment.clone()),
                Some(without) => {
                    rewritten += 1;
                    if without.entries > 0 {
                        next.id_segments.push(without.write(writer)?);
                    }
                }
            }
        }
        if let Some(index) = &base.index {
            let (relative, abs) = writer.new_file(layout::new_index_file(writer.next_version()))?;
            let bytes = write_index_without(&layout::resolve(root, &index.path), &removed, &abs)?;
            next.index = Some(IndexEntry { path: relative, bytes });
            rewritten += 1;
        }
        forget_in_catalog(writer, root, &removed, &replaced, &mut next)?;
        match (first, identity) {
            (Some(done), _) => done,
            (None, Some(thread)) => {
                thread.join().map_err(|_| Error::Internal("the identity resolution of a forget panicked".into()))?
            }
            (None, None) => Err(Error::Internal("a forget's identity resolution never ran".into())),
        }
    })?;
    // Their identifier links and person rows go too (ingest::identity).
    next.identity.resolution = resolved;
    Ok((next, rewritten))
}

/// Drops the cannot-link pairs (`UNLINK 'a', 'b'`) that name a user of `removed`: the manifest
/// would keep their user_id in every later version, and the pair keeps nobody apart any more (a
/// pair naming an unknown user is ignored by the resolution). Blocked values are rules about a
/// value, kept (docs/lifecycle.md, the erasure procedure).
fn forget_split_pairs(root: &Path, base: &Manifest, removed: &RoaringBitmap, next: &mut Manifest) -> Result<()> {
    let mut named: Vec<&str> = Vec::new();
    for split in &next.identity.splits {
        if let Split::Pair { a, b, .. } = split {
            named.extend([a.as_str(), b.as_str()]);
        }
    }
    if named.is_empty() {
        return Ok(());
    }
    named.sort_unstable();
    named.dedup();
    let rows = row_ids_of(root, base, &named)?;
    let forgotten: std::collections::HashSet<String> = named
        .iter()
        .zip(&rows)
        .filter(|(_, row)| row.is_some_and(|r| removed.contains(r)))
        .map(|(name, _)| name.to_string())
        .collect();
    next.identity.splits.retain(|split| match split {
        Split::Pair { a, b, .. } => !forgotten.contains(a) && !forgotten.contains(b),
        Split::Value { .. } => true,
    });
    Ok(())
}

/// Rewrites the users files holding a row of `removed` that is not blank yet with those rows
/// blanked in place (what a purge does: a forget only adds them to the forgotten set, which
/// every reader of users leaves out); returns how many files were written.
pub(super) fn blank_users(
    writer: &StoreWriter,
    root: &Path,
    base: &Manifest,
    removed: &RoaringBitmap,
    next: &mut Manifest,
) -> Result<usize> {
    let columns = &base.users_columns;
    let schema = file_schema(columns);
    let mut files = Vec::with_capacity(base.files(Table::Users).len());
    let mut rewritten = 0;
    for file in base.files(Table::Users) {
        let first = file.first_row_id.ok_or_else(|| Error::corrupt(&file.path, "a users file has no first row id"))?;
        let end = u32::try_from(u64::from(first) + file.rows).unwrap_or(u32::MAX);
        if removed.range_cardinality(first..end) == 0 {
            files.push(file.clone());
            continue;
        }
        let old = read_aligned(&layout::resolve(root, &file.path), columns, &schema)?;
        if blank_already(&old, removed, &schema)? {
            files.push(file.clone());
            continue;
        }
        let blanked = blank_rows(&old, removed, &schema)?;
        let mut sink = TableSink::new(writer, Table::Users, Arc::clone(&schema), u64::MAX, false);
        sink.write(&blanked)?;
        files.extend(sink.finish()?.0);
        rewritten += 1;
    }
    files.sort_by_key(|f| f.first_row_id);
    next.tables.insert(Table::Users, files);
    Ok(rewritten)
}

/// Whether every row of `removed` in `batch` (users rows in the file schema, row ids first) is
/// blank already.
fn blank_already(batch: &RecordBatch, removed: &RoaringBitmap, schema: &SchemaRef) -> Result<bool> {
    let ids = batch.column(0).as_primitive::<UInt32Type>();
    let users = batch.column(schema.index_of(USER_ID)?).as_string::<i32>();
    Ok(ids.values().iter().enumerate().all(|(r, id)| !removed.contains(*id) || users.value(r) == BLANK_USER_ID))
}

/// `batch` (users rows in the file schema, row ids first) with the rows of `removed` blanked:
/// `user_id` empty ([`BLANK_USER_ID`]) and every other column NULL; the row ids stay.
fn blank_rows(batch: &RecordBatch, removed: &RoaringBitmap, schema: &SchemaRef) -> Result<RecordBatch> {
    let ids = batch.column(0).as_primitive::<UInt32Type>();
    let hit = BooleanArray::from_iter(ids.values().iter().map(|id| Some(removed.contains(*id))));
    let keep = UInt32Array::from_iter((0..batch.num_rows() as u32).map(|r| (!hit.value(r as usize)).then_some(r)));
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    arrays.push(Arc::clone(batch.column(0)));
    for (i, field) in schema.fields().iter().enumerate().skip(1) {
        let column = batch.column(i);
        arrays.push(if field.name() == USER_ID {
            let text = column.as_string::<i32>();
            let values = (0..text.len()).map(|r| match (hit.value(r), text.is_null(r)) {
                (true, _) => Some(BLANK_USER_ID),
                (false, true) => None,
                (false, false) => Some(text.value(r)),
            });
            Arc::new(StringArray::from_iter(values))
        } else {
            // `take` with a NULL index copies no byte of the value (`nullif` would keep the bytes
            // under a NULL, and an uncompressed copy writes them out).
            take(column.as_ref(), &keep, None)?
        });
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), arrays)?)
}

/// Marks the rows of the users of `removed` in the fact files of `tables` dead
/// ([`crate::store::dead_rows`]): each file holding some gets its dead positions (those marked
/// before included), and a file left with no live row leaves the version. Returns the files that
/// left (each replaced by none, for the rule tags' lists) and how many files were marked.
fn mark_fact_rows(
    writer: &StoreWriter,
    root: &Path,
    base: &Manifest,
    removed: &RoaringBitmap,
    next: &mut Manifest,
    tables: &[Table],
) -> Result<(BTreeMap<String, Vec<String>>, usize)> {
    let mut replaced = BTreeMap::new();
    let mut marked = 0usize;
    for &table in tables {
        let files = base.files(table);
        // The files' dead positions are found on both cores: reading row ids is the work.
        let next_file = std::sync::atomic::AtomicUsize::new(0);
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(files.len()).max(1);
        let found: Vec<Result<Vec<(usize, RoaringBitmap)>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next_file.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(file) = files.get(i) else { break };
                            let positions = rows_of(root, file, removed)?;
                            if !positions.is_empty() {
                                out.push((i, positions));
                            }
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(Error::Internal("a forget's reader thread panicked".into()))))
                .collect()
        });
        let mut dead: BTreeMap<usize, RoaringBitmap> = BTreeMap::new();
        for part in found {
            dead.extend(part?);
        }
        if dead.is_empty() {
            continue;
        }
        let mut kept = Vec::with_capacity(files.len());
        for (i, file) in files.iter().enumerate() {
            let Some(positions) = dead.remove(&i) else {
                kept.push(file.clone());
                continue;
            };
            let mut all = crate::store::dead_rows::of(root, file)?.map(|d| (*d).clone()).unwrap_or_default();
            all |= positions;
            marked += 1;
            if all.len() >= file.rows {
                replaced.insert(file.path.clone(), Vec::new());
                continue;
            }
            let mut file = file.clone();
            file.dead = crate::store::dead_rows::write(writer, &all)?;
            kept.push(file);
        }
        if !kept.is_empty() || next.tables.contains_key(&table) {
            next.tables.insert(table, kept);
        }
    }
    Ok((replaced, marked))
}

/// The positions in the fact file `file` of the rows of users in `removed`: its row groups'
/// row-id ranges rule most files out without reading; the others' row ids are read.
pub(super) fn rows_of(root: &Path, file: &DataFile, removed: &RoaringBitmap) -> Result<RoaringBitmap> {
    let mut positions = RoaringBitmap::new();
    if !file.row_id_ranges.is_empty()
        && file.row_id_ranges.iter().all(|(lo, hi)| lo > hi || removed.range_cardinality(*lo..=*hi) == 0)
    {
        return Ok(positions);
    }
    let path = layout::resolve(root, file.row_ids.as_deref().unwrap_or(&file.path));
    let removed = crate::index::dense::DenseSet::of(removed)?;
    let mut at = 0u32;
    read_stored_columns(&path, &[ROW_ID_COLUMN], crate::store::fact_rows::Strings::Plain, |batch| {
        let ids = crate::store::typed::column::<UInt32Array>(&path, ROW_ID_COLUMN, batch.column(0).as_ref())?;
        positions.extend(
            ids.values().iter().enumerate().filter(|(_, id)| removed.contains(**id)).map(|(k, _)| at + k as u32),
        );
        at += ids.len() as u32;
        Ok(())
    })?;
    Ok(positions)
}

/// Takes `removed` out of rule tags and of every audience version (members, holdout, and the
/// added/removed counts recounted from the new sets); a rule tag's replaced `user_tags` files are
/// renamed in its list as `replaced` says.
fn forget_in_catalog(
    writer: &StoreWriter,
    root: &Path,
    removed: &RoaringBitmap,
    replaced: &BTreeMap<String, Vec<String>>,
    next: &mut Manifest,
) -> Result<()> {
    for tag in &mut next.catalog.tags {
        tag.rows_files =
            tag.rows_files.iter().flat_map(|f| replaced.get(f).cloned().unwrap_or_else(|| vec![f.clone()])).collect();
        let members = read_set(root, &tag.bitmap)?;
        if !members.is_disjoint(removed) {
            let kept = members - removed;
            tag.members = kept.len();
            tag.bitmap = write_set(writer, &format!("tag-{}", tag.name), &kept)?;
        }
    }
    for audience in &mut next.catalog.audiences {
        let mut previous: Option<RoaringBitmap> = None;
        for version in &mut audience.versions {
            let what = format!("audience-{}-v{}", audience.name, version.number);
            let mut members = read_set(root, &version.members_file)?;
            if !members.is_disjoint(removed) {
                members -= removed;
                version.members_file = write_set(writer, &format!("{what}-members"), &members)?;
            }
            let holdout = read_set(root, &version.holdout_file)?;
            if !holdout.is_disjoint(removed) {
                let kept = holdout - removed;
                version.holdout_file = write_set(writer, &format!("{what}-holdout"), &kept)?;
                version.holdout = kept.len();
            }
            version.members = members.len();
            (version.added, version.removed) = match &previous {
                Some(before) => ((&members - before).len(), (before - &members).len()),
                None => (members.len(), 0),
            };
            previous = Some(members);
        }
    }
    Ok(())
}

/// Reads a file of user_ids to forget: one per line, optionally quoted as in CSV (`"a,b"`,
/// `""` for a quote), with an optional first line `user_id` as a header. Blank lines are
/// skipped. Anything else (several columns, an unclosed quote, bytes that are not UTF-8) is an
/// error naming the file and the line.
pub fn read_user_id_file(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io { op: "read", path: path.to_path_buf(), source: e })?;
    parse_user_ids(&bytes).map_err(|(line, message)| {
        Error::Usage(format!("{}: line {line}: {message}; nothing was forgotten", path.display()))
    })
}

/// [`read_user_id_file`] on the file's bytes; an error is (1-based line, what is wrong).
fn parse_user_ids(bytes: &[u8]) -> std::result::Result<Vec<String>, (usize, String)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut ids = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = i + 1;
        let text = std::str::from_utf8(raw).map_err(|_| (line, "the line is not UTF-8 text".to_string()))?;
        let text = text.strip_suffix('\r').unwrap_or(text).trim();
        if text.is_empty() || (ids.is_empty() && line == 1 && text.eq_ignore_ascii_case(USER_ID)) {
            continue;
        }
        let id = match text.strip_prefix('"') {
            Some(rest) => {
                let inner =
                    rest.strip_suffix('"').ok_or_else(|| (line, "a quoted user_id is not closed".to_string()))?;
                if inner.replace("\"\"", "").contains('"') {
                    return Err((line, "a quote inside a quoted user_id must be doubled (\"\")".to_string()));
                }
                inner.replace("\"\"", "\"")
            }
            None if text.contains(',') => {
                return Err((
                    line,
                    "expected one user_id per line, found several values (quote a user_id that holds a comma)"
                        .to_string(),
                ));
            }
            None if text.contains('"') => return Err((line, "a quote inside an unquoted user_id".to_string())),
            None => text.to_string(),
        };
        if id.is_empty() {
            return Err((line, "the user_id is empty".to_string()));
        }
        ids.push(id);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::contract_columns;

    #[test]
    fn id_files_take_one_id_per_line_with_an_optional_header_and_quotes() {
        let ids = parse_user_ids(b"\xEF\xBB\xBFuser_id\r\nu1\n\n  u2  \n\"a,b\"\n\"say \"\"hi\"\"\"\n").unwrap();
        assert_eq!(ids, vec!["u1", "u2", "a,b", "say \"hi\""]);
        assert_eq!(parse_user_ids(b"u1\nuser_id\n").unwrap(), vec!["u1", "user_id"], "a header only on line 1");
        assert_eq!(parse_user_ids(b"").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn malformed_id_files_name_the_line() {
        let line = |bytes: &[u8]| parse_user_ids(bytes).unwrap_err().0;
        assert_eq!(line(b"u1\nu2,extra\n"), 2);
        assert_eq!(line(b"u1\n\"open\n"), 2);
        assert_eq!(line(b"user_id\nu1\n\"\"\n"), 3);
        assert_eq!(line(b"u1\nu\xFF2\n"), 2);
        assert_eq!(line(b"a\"b\n"), 1);
    }

    #[test]
    fn blanked_rows_keep_their_row_ids_and_lose_everything_else() {
        let columns = contract_columns(Table::Users);
        let schema = file_schema(&columns);
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(UInt32Array::from(vec![10, 11, 12]))];
        for field in schema.fields().iter().skip(1) {
            arrays.push(match field.name().as_str() {
                USER_ID => Arc::new(StringArray::from(vec!["a", "b", "c"])),
                _ => arrow::array::new_null_array(field.data_type(), 3),
            });
        }
        let phone = schema.index_of("phone").unwrap();
        arrays[phone] = Arc::new(StringArray::from(vec![Some("111"), Some("222"), None]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), arrays).unwrap();
        let blanked = blank_rows(&batch, &RoaringBitmap::from_iter([11u32]), &schema).unwrap();
        assert_eq!(blanked.column(0).as_primitive::<UInt32Type>().values().to_vec(), vec![10, 11, 12]);
        let users = blanked.column(schema.index_of(USER_ID).unwrap()).as_string::<i32>();
        assert_eq!(users.iter().collect::<Vec<_>>(), vec![Some("a"), Some(""), Some("c")]);
        let phones = blanked.column(phone).as_string::<i32>();
        assert_eq!(phones.iter().collect::<Vec<_>>(), vec![Some("111"), None, None]);
        assert!(!phones.value_data().windows(3).any(|w| w == b"222"), "no byte of the value stays under the NULL");
    }
}
