//! Deleting loaded `user_tags` rows (`DELETE FROM user_tags WHERE …`): one new version, under the
//! writer lock like an import, in which the files holding deleted rows are written again without
//! them and the index's bitmaps of the tags they had follow:
//!
//! ```text
//! user_tags files holding deleted rows ─ written again without them (others kept as they are)
//! each tag that lost rows              ─ its bitmap minus the users who have no row of it left:
//!                                        all of them when the index knows no user has two rows of
//!                                        the tag; else those not found among the remaining rows
//! a tag left without users             ─ goes from the index, with its repeat mark
//! ```
//!
//! The rows to delete are chosen by the caller (the engine evaluates the predicate) as positions in
//! each file. Rule tags' rows are the rule's: the caller never chooses them, and they are not read
//! here. Memory is bounded by a batch of a file plus the deleted users of each tag (bitmaps).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, StringArray, UInt32Array};
use arrow::compute::{cast, filter};
use arrow::record_batch::RecordBatch;
use roaring::RoaringBitmap;

use super::writer::{FACT_FILE_ROWS, TableSink};
use crate::error::{Error, Result};
use crate::index::build::write_index_with_tags;
use crate::index::format::{BitmapKind, IndexFile};
use crate::store::fact_rows::for_each_fact_batch;
use crate::store::manifest::{DataFile, IndexEntry, Manifest};
use crate::store::{StoreWriter, layout, typed};
use crate::tables::{TAG, Table, contract_columns, file_schema};

/// Positions (0-based rows) to delete in each user_tags file, by the file's relative path.
pub type RowsToDelete = BTreeMap<String, RoaringBitmap>;

/// The loaded `user_tags` files of `manifest`: every one but the rule tags' rows.
pub fn loaded_tag_files(manifest: &Manifest) -> Vec<&DataFile> {
    let rule_rows: BTreeSet<&str> =
        manifest.catalog.tags.iter().flat_map(|t| t.rows_files.iter().map(String::as_str)).collect();
    manifest.files(Table::UserTags).iter().filter(|f| !rule_rows.contains(f.path.as_str())).collect()
}

/// Writes the files of the next version without the rows `deleting` names and returns its
/// manifest, to be committed by the caller, with the number of rows deleted (see the module doc).
pub fn delete_tag_rows(writer: &StoreWriter, deleting: &RowsToDelete) -> Result<(Manifest, u64)> {
    let base = Arc::clone(writer.base());
    let root = writer.store().root().to_path_buf();
    let columns = contract_columns(Table::UserTags);
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let tag_at = names.iter().position(|n| *n == TAG).ok_or_else(|| Error::Internal("user_tags has no tag".into()))?;
    let schema = file_schema(&columns);
    let mut next = (*base).clone();
    let mut files = Vec::with_capacity(base.files(Table::UserTags).len());
    // The users whose rows of each tag were deleted.
    let mut lost: BTreeMap<String, RoaringBitmap> = BTreeMap::new();
    let mut deleted = 0u64;
    for file in base.files(Table::UserTags) {
        let Some(positions) = deleting.get(&file.path).filter(|p| !p.is_empty()) else {
            files.push(file.clone());
            continue;
        };
        let mut sink = TableSink::new(writer, Table::UserTags, Arc::clone(&schema), FACT_FILE_ROWS, false);
        let mut at = 0u32;
        let path = layout::resolve(&root, &file.path);
        for_each_fact_batch(&root, file, &names, |batch, ids| {
            let n = batch.num_rows() as u32;
            let gone = BooleanArray::from_iter((at..at + n).map(|p| Some(positions.contains(p))));
            at += n;
            if gone.true_count() == 0 {
                return write_kept(&mut sink, &schema, batch, ids, None);
            }
            let tags = typed::column::<StringArray>(&path, TAG, batch.column(tag_at).as_ref())?;
            for row in (0..gone.len()).filter(|&r| gone.value(r)) {
                lost.entry(tags.value(row).to_string()).or_default().insert(ids[row]);
            }
            deleted += gone.true_count() as u64;
            write_kept(&mut sink, &schema, batch, ids, Some(&arrow::compute::not(&gone)?))
        })?;
        files.extend(sink.finish()?.0);
    }
    if deleted == 0 {
        return Ok((next, 0));
    }
    next.tables.insert(Table::UserTags, files);
    if let Some(index) = &base.index {
        let previous = layout::resolve(&root, &index.path);
        let bitmaps = tags_without(&root, &previous, &next, lost)?;
        let (relative, abs) = writer.new_file(layout::new_index_file(writer.next_version()))?;
        let bytes = write_index_with_tags(&previous, &bitmaps, &abs)?;
        next.index = Some(IndexEntry { path: relative, bytes });
    }
    Ok((next, deleted))
}

/// Writes the rows of `batch` (contract columns; `ids` their row ids) that `keep` keeps (all when
/// `None`) to `sink` in the file schema.
fn write_kept(
    sink: &mut TableSink<'_>,
    schema: &arrow::datatypes::SchemaRef,
    batch: &RecordBatch,
    ids: &[u32],
    keep: Option<&BooleanArray>,
) -> Result<()> {
    let pick = |a: &dyn Array| -> Result<ArrayRef> {
        Ok(match keep {
            Some(k) => filter(a, k)?,
            None => arrow::array::make_array(a.to_data()),
        })
    };
    let row_ids = pick(&UInt32Array::from(ids.to_vec()))?;
    if row_ids.is_empty() {
        return Ok(());
    }
    let mut arrays: Vec<ArrayRef> = vec![row_ids];
    for (i, field) in schema.fields().iter().enumerate().skip(1) {
        let kept = pick(batch.column(i - 1).as_ref())?;
        arrays.push(if kept.data_type() == field.data_type() { kept } else { cast(&kept, field.data_type())? });
    }
    sink.write(&RecordBatch::try_new(Arc::clone(schema), arrays)?)
}

/// The new bitmap of each tag that lost rows: its bitmap minus the users of `lost` who have no
/// row of it left in `next`'s loaded files (read only for tags that may repeat).
fn tags_without(
    root: &std::path::Path,
    previous: &std::path::Path,
    next: &Manifest,
    mut lost: BTreeMap<String, RoaringBitmap>,
) -> Result<BTreeMap<String, RoaringBitmap>> {
    let index = IndexFile::open(previous)?;
    let key = |kind, name: &str| (kind, name.to_string(), String::new());
    let checked = index.directory.contains_key(&key(BitmapKind::TagRowsChecked, ""));
    let may_repeat: BTreeSet<String> = lost
        .keys()
        .filter(|t| !checked || index.directory.contains_key(&key(BitmapKind::TagRepeated, t)))
        .cloned()
        .collect();
    if !may_repeat.is_empty() {
        for file in loaded_tag_files(next) {
            let path = layout::resolve(root, &file.path);
            for_each_fact_batch(root, file, &[TAG], |batch, ids| {
                let tags = typed::column::<StringArray>(&path, TAG, batch.column(0).as_ref())?;
                for (row, id) in ids.iter().enumerate() {
                    if tags.is_null(row) || !may_repeat.contains(tags.value(row)) {
                        continue;
                    }
                    // Still has a row of the tag: keeps it.
                    if let Some(users) = lost.get_mut(tags.value(row)) {
                        users.remove(*id);
                    }
                }
                Ok(())
            })?;
        }
    }
    let mut out = BTreeMap::new();
    for (tag, users) in lost {
        let bitmap = match index.directory.get(&key(BitmapKind::Tag, &tag)) {
            Some(extent) => index.read(*extent)? - users,
            None => continue,
        };
        out.insert(tag, bitmap);
    }
    Ok(out)
}
