//! Updating users in place (`UPDATE users SET … WHERE …`): one new version, under the writer lock
//! like an import, in which the users files holding updated rows are written again, one file at a
//! time, and the index bitmaps of the changed columns are rebuilt:
//!
//! ```text
//! for each users file holding updated rows (the others are kept as they are):
//!     read the file ─ take its updated rows ─ new values (the caller's expressions) ─┐
//!     the file again, same row ids: each changed column interleaves old and new ─────┴→ new file
//! the index ─ the changed columns' value, NULL and range bitmaps rebuilt from the users files
//!             (only those columns are read); every other bitmap copied byte for byte
//! ```
//!
//! **Memory is bounded by one users file** (at most [`super::writer::USERS_FILE_ROWS`] rows), not by the number
//! of users updated: the updated set is a bitmap, and the new values of one file are computed,
//! written and dropped before the next file is read. Rebuilding a changed column's bitmaps keeps
//! its bitmaps and, for a range-indexed column, a row id and a value per user (12 bytes).
//! `user_id` cannot change (the id dictionary and every fact row name users by it), and row ids
//! never move. Facts, tags and stored audience versions are untouched: an update changes
//! attributes, not who a user is; rule tags and audiences see it when they are next evaluated.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use arrow::compute::{interleave, take_record_batch};
use arrow::datatypes::{SchemaRef, UInt32Type};
use arrow::record_batch::RecordBatch;
use roaring::RoaringBitmap;

use super::job::read_aligned;
use super::writer::TableSink;
use crate::error::{Error, Result};
use crate::index::build::{build_users_values, write_index_with_columns};
use crate::store::catalog::read_set;
use crate::store::manifest::{IndexEntry, Manifest};
use crate::store::{StoreWriter, layout};
use crate::tables::{ColumnDef, Table, USER_ID, file_schema, sql_schema};

/// What an update did.
#[derive(Debug, Clone, Default)]
pub struct UpdateSummary {
    /// Users rows updated (every row the condition selected, whether or not a value changed).
    pub updated: u64,
    /// Files written again: users files and the index.
    pub rewritten_files: usize,
    pub elapsed: Duration,
}

/// Computes the new values of the changed columns for some users rows: given the rows (in the
/// users SQL schema: every column, no row id), returns one array per changed column, in the order
/// of `changed`, each of that column's type and as long as the rows.
pub type NewValues<'a> = dyn FnMut(&RecordBatch) -> Result<Vec<ArrayRef>> + 'a;

/// Writes the files of the next version in which the users of `row_ids` (forgotten ones and ids
/// never given out are ignored) have the columns `changed` set to what `new_values` computes, and
/// returns its manifest, to be committed by the caller (see the module doc).
pub fn update_rows(
    writer: &StoreWriter,
    row_ids: &RoaringBitmap,
    changed: &[String],
    new_values: &mut NewValues<'_>,
) -> Result<(Manifest, UpdateSummary)> {
    let started = Instant::now();
    let base = Arc::clone(writer.base());
    let root = writer.store().root().to_path_buf();
    let columns = &base.users_columns;
    let positions: Vec<usize> = changed
        .iter()
        .map(|name| match columns.iter().position(|c| &c.name == name) {
            Some(_) if name == USER_ID => Err(Error::Usage("user_id cannot be updated".into())),
            Some(i) => Ok(i + 1),
            None => Err(Error::Usage(format!("users has no column '{name}'"))),
        })
        .collect::<Result<_>>()?;
    let forgotten = match &base.forgotten {
        Some(f) => read_set(&root, &f.set)?,
        None => RoaringBitmap::new(),
    };
    let mut updating = row_ids - &forgotten;
    updating.remove_range(base.next_row_id..);
    let mut next = (*base).clone();
    let mut summary = UpdateSummary::default();
    if updating.is_empty() || changed.is_empty() {
        summary.elapsed = started.elapsed();
        return Ok((next, summary));
    }
    let schema = file_schema(columns);
    let sql = sql_schema(columns);
    let mut files = Vec::with_capacity(base.files(Table::Users).len());
    for file in base.files(Table::Users) {
        let first = file.first_row_id.ok_or_else(|| Error::corrupt(&file.path, "a users file has no first row id"))?;
        let end = u32::try_from(u64::from(first) + file.rows).unwrap_or(u32::MAX);
        if updating.range_cardinality(first..end) == 0 {
            files.push(file.clone());
            continue;
        }
        let old = read_aligned(&layout::resolve(&root, &file.path), columns, &schema)?;
        let (merged, rows) = update_file(&old, &updating, &positions, &sql, &schema, new_values)?;
        let mut sink = TableSink::new(writer, Table::Users, Arc::clone(&schema), u64::MAX, false);
        sink.write(&merged)?;
        files.extend(sink.finish()?.0);
        summary.updated += rows;
        summary.rewritten_files += 1;
    }
    files.sort_by_key(|f| f.first_row_id);
    next.tables.insert(Table::Users, files);
    if let Some(index) = &base.index {
        let changed_defs: Vec<ColumnDef> = columns.iter().filter(|c| changed.contains(&c.name)).cloned().collect();
        let names: BTreeSet<String> = changed_defs.iter().map(|c| c.name.clone()).collect();
        let users_files: Vec<_> = next.files(Table::Users).iter().map(|f| layout::resolve(&root, &f.path)).collect();
        let mut values = build_users_values(&users_files, &changed_defs)?;
        // Forgotten users' blanked rows read as NULL: they belong to no users bitmap.
        for bitmap in values.values_mut() {
            *bitmap -= &forgotten;
        }
        let (relative, abs) = writer.new_file(layout::new_index_file(writer.next_version()))?;
        let bytes = write_index_with_columns(&layout::resolve(&root, &index.path), &names, &values, &abs)?;
        next.index = Some(IndexEntry { path: relative, bytes });
        summary.rewritten_files += 1;
    }
    summary.elapsed = started.elapsed();
    Ok((next, summary))
}

/// One users file (`old`, in the file schema) with the rows of `updating` given new values in the
/// columns at `positions` (file-schema positions); returns it and how many rows were updated.
fn update_file(
    old: &RecordBatch,
    updating: &RoaringBitmap,
    positions: &[usize],
    sql: &SchemaRef,
    schema: &SchemaRef,
    new_values: &mut NewValues<'_>,
) -> Result<(RecordBatch, u64)> {
    let ids = old.column(0).as_primitive::<UInt32Type>();
    let hit: Vec<u32> =
        ids.values().iter().enumerate().filter(|(_, id)| updating.contains(**id)).map(|(r, _)| r as u32).collect();
    let rows = take_record_batch(old, &UInt32Array::from(hit.clone()))?;
    let rows = RecordBatch::try_new(Arc::clone(sql), rows.columns()[1..].to_vec())?;
    let new = new_values(&rows)?;
    if new.len() != positions.len() || new.iter().any(|a| a.len() != rows.num_rows()) {
        return Err(Error::Internal("an update computed a wrong number of values; please report this bug".to_string()));
    }
    // Row r of the file takes (1, k) when it is the k-th updated row, else (0, r).
    let mut k = 0usize;
    let picks: Vec<(usize, usize)> = (0..old.num_rows())
        .map(|r| {
            if hit.get(k).is_some_and(|&h| h as usize == r) {
                k += 1;
                (1, k - 1)
            } else {
                (0, r)
            }
        })
        .collect();
    let mut arrays: Vec<ArrayRef> = old.columns().to_vec();
    for (&at, values) in positions.iter().zip(new) {
        let want = schema.field(at).data_type();
        if values.data_type() != want {
            return Err(Error::Internal(format!(
                "an update computed {} values for column '{}' of type {want}; please report this bug",
                values.data_type(),
                schema.field(at).name()
            )));
        }
        // `interleave` copies the chosen values only: no byte of an old value stays behind.
        arrays[at] = interleave(&[old.column(at).as_ref(), values.as_ref()], &picks)?;
    }
    Ok((RecordBatch::try_new(Arc::clone(schema), arrays)?, hit.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::ColumnType;
    use arrow::array::{Int64Array, StringArray};

    #[test]
    fn an_updated_file_keeps_its_row_ids_and_other_rows() {
        let columns = vec![
            ColumnDef { name: USER_ID.into(), ty: ColumnType::Utf8 },
            ColumnDef { name: "points".into(), ty: ColumnType::Int64 },
            ColumnDef { name: "tier".into(), ty: ColumnType::Utf8 },
        ];
        let (schema, sql) = (file_schema(&columns), sql_schema(&columns));
        let old = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(UInt32Array::from(vec![10, 11, 12, 13])),
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])),
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4)])),
                Arc::new(StringArray::from(vec![Some("x"), Some("y"), Some("secret"), None])),
            ],
        )
        .unwrap();
        let mut seen = Vec::new();
        let mut compute = |rows: &RecordBatch| -> Result<Vec<ArrayRef>> {
            seen.push(rows.num_rows());
            let users = rows.column(0).as_string::<i32>();
            let tier: ArrayRef = Arc::new(StringArray::from_iter(users.iter().map(|u| u.map(|u| format!("{u}!")))));
            let points: ArrayRef = Arc::new(Int64Array::from(vec![None::<i64>; rows.num_rows()]));
            Ok(vec![tier, points])
        };
        let updating = RoaringBitmap::from_iter([11u32, 12, 99]);
        let (new, rows) = update_file(&old, &updating, &[3, 2], &sql, &schema, &mut compute).unwrap();
        assert_eq!((rows, seen), (2, vec![2]));
        assert_eq!(new.column(0).as_primitive::<UInt32Type>().values().to_vec(), vec![10, 11, 12, 13]);
        let tier = new.column(3).as_string::<i32>();
        assert_eq!(tier.iter().collect::<Vec<_>>(), vec![Some("x"), Some("b!"), Some("c!"), None]);
        assert!(!tier.value_data().windows(6).any(|w| w == b"secret"), "no byte of a replaced value stays");
        let points = new.column(2).as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(points.iter().collect::<Vec<_>>(), vec![Some(1), None, None, Some(4)]);
    }
}
