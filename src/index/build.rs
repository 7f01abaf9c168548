//! Building and merging indexes at commit time. Facts only ever grow, so their bitmaps (tags,
//! purchase days) merge by union with what the import adds; bitmaps the import does not touch are
//! copied byte for byte. Users value bitmaps are rebuilt from the users files when users change
//! (an upsert can move a user from one value to another).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Field, Int32Type, Int64Type, Schema, TimestampMicrosecondType, UInt32Type,
};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use roaring::RoaringBitmap;
use rustc_hash::FxHashMap;

use crate::error::{Error, IoContext, Result};
use crate::index::day_of;
use crate::index::format::{BitmapKey, BitmapKind, IndexFile, IndexWriter};
use crate::tables::{ColumnDef, ColumnType, ROW_ID_COLUMN};

/// A users column with more distinct values than this gets no value bitmaps.
pub const MAX_DISTINCT_VALUES: usize = 1024;

/// Bitmap entries an import adds.
#[derive(Debug, Default)]
pub struct IndexDelta {
    pub tags: FxHashMap<String, BitmapBuilder>,
    pub purchase_days: FxHashMap<i64, BitmapBuilder>,
}

impl IndexDelta {
    /// Records user_tags rows.
    pub fn add_tags(&mut self, tags: &dyn Array, row_ids: &[u32]) {
        let tags = tags.as_string::<i32>();
        for (tag, id) in tags.iter().zip(row_ids) {
            if let Some(tag) = tag {
                match self.tags.get_mut(tag) {
                    Some(bm) => bm.add(*id),
                    None => {
                        let mut bm = BitmapBuilder::default();
                        bm.add(*id);
                        self.tags.insert(tag.to_string(), bm);
                    }
                }
            }
        }
    }

    /// Records purchases rows.
    pub fn add_purchases(&mut self, ts: &dyn Array, row_ids: &[u32]) {
        let ts = ts.as_primitive::<TimestampMicrosecondType>();
        for (t, id) in ts.iter().zip(row_ids) {
            if let Some(t) = t {
                self.purchase_days.entry(day_of(t)).or_default().add(*id);
            }
        }
    }

    pub fn merge(&mut self, other: IndexDelta) {
        for (k, bm) in other.tags {
            self.tags.entry(k).or_default().merge(bm);
        }
        for (k, bm) in other.purchase_days {
            self.purchase_days.entry(k).or_default().merge(bm);
        }
    }

    fn into_keyed(self) -> BTreeMap<BitmapKey, RoaringBitmap> {
        let mut out = BTreeMap::new();
        for (tag, bm) in self.tags {
            out.insert((BitmapKind::Tag, tag, String::new()), bm.finish());
        }
        for (day, bm) in self.purchase_days {
            out.insert((BitmapKind::PurchaseDay, String::new(), day.to_string()), bm.finish());
        }
        out
    }
}

/// Writes the next version's index to `out`: the previous index (if any) merged with `delta`,
/// and the users value bitmaps replaced by `users_values` when given.
pub fn write_next_index(
    previous: Option<&Path>,
    delta: IndexDelta,
    users_values: Option<BTreeMap<BitmapKey, RoaringBitmap>>,
    out: &Path,
) -> Result<u64> {
    let mut added = delta.into_keyed();
    let mut writer = IndexWriter::create(out)?;
    let is_users_entry = |k: &BitmapKey| {
        matches!(
            k.0,
            BitmapKind::Value
                | BitmapKind::Null
                | BitmapKind::ValueColumn
                | BitmapKind::RangeBit
                | BitmapKind::RangeBase
        )
    };
    if let Some(prev) = previous.map(IndexFile::open).transpose()? {
        for (key, extent) in &prev.directory {
            if users_values.is_some() && is_users_entry(key) {
                continue;
            }
            match added.remove(key) {
                Some(mut bm) => {
                    bm |= prev.read(*extent)?;
                    writer.add(key, &bm)?;
                }
                None => {
                    let raw = prev.read_raw(*extent)?;
                    writer.add_raw(key, &raw, extent.crc)?;
                }
            }
        }
    }
    for (key, bm) in &added {
        writer.add(key, bm)?;
    }
    for (key, bm) in users_values.iter().flatten() {
        writer.add(key, bm)?;
    }
    writer.finish()
}

/// The bitmaps of one value-indexed column, by value.
#[derive(Debug, Default)]
struct ValueBitmaps {
    slots: FxHashMap<String, usize>,
    bitmaps: Vec<BitmapBuilder>,
}

impl ValueBitmaps {
    fn slot(&mut self, value: &str) -> usize {
        if let Some(&slot) = self.slots.get(value) {
            return slot;
        }
        self.bitmaps.push(BitmapBuilder::default());
        self.slots.insert(value.to_string(), self.bitmaps.len() - 1);
        self.bitmaps.len() - 1
    }
}

/// Builds a bitmap from ids that mostly arrive in increasing order (users files are read in
/// row-id order, facts come grouped by user): ids are buffered and appended in sorted runs, which
/// avoids roaring's per-insert search; an id out of order is inserted the slow way.
#[derive(Debug, Default, Clone)]
pub struct BitmapBuilder {
    bitmap: RoaringBitmap,
    pending: Vec<u32>,
}

impl BitmapBuilder {
    const FLUSH_AT: usize = 1024;

    pub fn add(&mut self, id: u32) {
        if self.pending.last().is_some_and(|&last| last >= id) {
            self.flush();
        }
        self.pending.push(id);
        if self.pending.len() >= Self::FLUSH_AT {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // Sorted and above the current maximum: one append; otherwise insert one by one.
        if self.bitmap.max().is_none_or(|max| max < self.pending[0]) {
            let appended = self.bitmap.append(self.pending.iter().copied());
            debug_assert!(appended.is_ok(), "pending ids are strictly increasing");
        } else {
            self.bitmap.extend(self.pending.iter().copied());
        }
        self.pending.clear();
    }

    pub fn merge(&mut self, mut other: BitmapBuilder) {
        self.flush();
        other.flush();
        self.bitmap |= other.bitmap;
    }

    pub fn finish(mut self) -> RoaringBitmap {
        self.flush();
        self.bitmap
    }
}

fn add(bitmap: &mut BitmapBuilder, id: u32) {
    bitmap.add(id);
}

/// Builds value and NULL bitmaps for every low-cardinality users column (text, boolean, integer),
/// and bit-sliced range indexes for every integer and date column, reading only those columns of
/// the users files.
pub fn build_users_values(
    files: &[std::path::PathBuf],
    columns: &[ColumnDef],
) -> Result<BTreeMap<BitmapKey, RoaringBitmap>> {
    const NEVER: &[&str] = &["user_id", "name", "phone", "email"];
    let mut candidates: BTreeSet<String> = columns
        .iter()
        .filter(|c| matches!(c.ty, ColumnType::Utf8 | ColumnType::Boolean | ColumnType::Int32 | ColumnType::Int64))
        .filter(|c| !NEVER.contains(&c.name.as_str()))
        .map(|c| c.name.clone())
        .collect();
    let range_columns: BTreeSet<String> = columns
        .iter()
        .filter(|c| matches!(c.ty, ColumnType::Int32 | ColumnType::Int64 | ColumnType::Date))
        .map(|c| c.name.clone())
        .collect();
    // Row ids and values of the range columns, kept until the base (minimum) is known.
    let mut ranges: BTreeMap<String, (Vec<u32>, Vec<i64>)> = BTreeMap::new();
    let mut range_nulls: BTreeMap<String, BitmapBuilder> = BTreeMap::new();
    let mut values: BTreeMap<String, ValueBitmaps> = BTreeMap::new();
    let mut nulls: BTreeMap<String, BitmapBuilder> =
        candidates.iter().map(|c| (c.clone(), BitmapBuilder::default())).collect();
    for path in files {
        let file = File::open(path).io_context("open", path)?;
        let plain = ParquetRecordBatchReaderBuilder::try_new(file.try_clone().io_context("open", path)?)
            .map_err(|e| Error::corrupt(path, e.to_string()))?;
        // Text columns are read as dictionaries: a value is hashed once per batch, not per row.
        let hinted = Schema::new(
            plain
                .schema()
                .fields()
                .iter()
                .map(|f| {
                    if candidates.contains(f.name()) && f.data_type() == &DataType::Utf8 {
                        Arc::new(Field::new(
                            f.name(),
                            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                            f.is_nullable(),
                        ))
                    } else {
                        Arc::clone(f)
                    }
                })
                .collect::<Vec<_>>(),
        );
        drop(plain);
        let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
            file,
            ArrowReaderOptions::new().with_schema(Arc::new(hinted)),
        )
        .map_err(|e| Error::corrupt(path, e.to_string()))?;
        let file_columns: Vec<String> = builder.schema().fields().iter().map(|f| f.name().clone()).collect();
        let wanted: Vec<usize> = file_columns
            .iter()
            .enumerate()
            .filter(|(_, n)| candidates.contains(*n) || range_columns.contains(*n) || n.as_str() == ROW_ID_COLUMN)
            .map(|(i, _)| i)
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(65_536)
            .build()
            .map_err(|e| Error::corrupt(path, e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| Error::corrupt(path, e.to_string()))?;
            let ids = batch.column_by_name(ROW_ID_COLUMN).ok_or_else(|| Error::corrupt(path, "no row id column"))?;
            let ids = ids.as_primitive::<UInt32Type>().values();
            for name in &range_columns {
                let (ids_out, vals_out) = ranges.entry(name.clone()).or_default();
                let nulls_out = range_nulls.entry(name.clone()).or_default();
                let Some(col) = batch.column_by_name(name) else {
                    ids.iter().for_each(|id| nulls_out.add(*id));
                    continue;
                };
                for (row, id) in ids.iter().enumerate() {
                    if col.is_null(row) {
                        add(nulls_out, *id);
                        continue;
                    }
                    let v = match col.data_type() {
                        DataType::Int32 => i64::from(col.as_primitive::<Int32Type>().value(row)),
                        DataType::Int64 => col.as_primitive::<Int64Type>().value(row),
                        DataType::Date32 => i64::from(col.as_primitive::<Date32Type>().value(row)),
                        _ => continue,
                    };
                    ids_out.push(*id);
                    vals_out.push(v);
                }
            }
            let names: Vec<String> = candidates.iter().cloned().collect();
            for name in names {
                // Columns this (older) file lacks are NULL for all its rows.
                let Some(col) = batch.column_by_name(&name) else {
                    let null_bm = nulls.entry(name.clone()).or_default();
                    ids.iter().for_each(|id| null_bm.add(*id));
                    continue;
                };
                let bitmaps = values.entry(name.clone()).or_default();
                let null_bm = nulls.entry(name.clone()).or_default();
                if let Some(dict) = col.as_any_dictionary_opt().filter(|d| !d.values().is_empty()) {
                    let dict_values = dict.values().as_string::<i32>();
                    let slot_of: Vec<usize> = dict_values.iter().map(|v| bitmaps.slot(v.unwrap_or_default())).collect();
                    let keys = dict.normalized_keys();
                    for (row, id) in ids.iter().enumerate() {
                        if col.is_null(row) {
                            add(null_bm, *id);
                        } else {
                            add(&mut bitmaps.bitmaps[slot_of[keys[row]]], *id);
                        }
                    }
                } else {
                    for (row, id) in ids.iter().enumerate() {
                        if col.is_null(row) {
                            add(null_bm, *id);
                            continue;
                        }
                        let slot = match col.data_type() {
                            DataType::Utf8 => bitmaps.slot(col.as_string::<i32>().value(row)),
                            DataType::Boolean => {
                                bitmaps.slot(if col.as_boolean().value(row) { "true" } else { "false" })
                            }
                            DataType::Int32 => bitmaps.slot(&col.as_primitive::<Int32Type>().value(row).to_string()),
                            DataType::Int64 => bitmaps.slot(&col.as_primitive::<Int64Type>().value(row).to_string()),
                            _ => continue,
                        };
                        add(&mut bitmaps.bitmaps[slot], *id);
                    }
                }
                if bitmaps.bitmaps.len() > MAX_DISTINCT_VALUES {
                    candidates.remove(&name);
                    values.remove(&name);
                    nulls.remove(&name);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for name in &candidates {
        let ValueBitmaps { slots, mut bitmaps } = values.remove(name).unwrap_or_default();
        for (value, slot) in slots {
            out.insert((BitmapKind::Value, name.clone(), value), std::mem::take(&mut bitmaps[slot]).finish());
        }
        out.insert((BitmapKind::ValueColumn, name.clone(), String::new()), RoaringBitmap::new());
        out.insert((BitmapKind::Null, name.clone(), String::new()), nulls.remove(name).unwrap_or_default().finish());
    }
    for (name, (ids, vals)) in ranges {
        let null_bm = range_nulls.remove(&name).unwrap_or_default();
        let base = vals.iter().copied().min().unwrap_or(0);
        let span = vals.iter().map(|v| v.abs_diff(base)).max().unwrap_or(0);
        let bits = (64 - span.leading_zeros()).max(1);
        let mut slices = vec![BitmapBuilder::default(); bits as usize];
        for (id, v) in ids.iter().zip(&vals) {
            let offset = v.abs_diff(base);
            for (i, slice) in slices.iter_mut().enumerate() {
                if offset >> i & 1 == 1 {
                    add(slice, *id);
                }
            }
        }
        for (i, slice) in slices.into_iter().enumerate() {
            out.insert((BitmapKind::RangeBit, name.clone(), i.to_string()), slice.finish());
        }
        out.insert((BitmapKind::RangeBase, name.clone(), base.to_string()), RoaringBitmap::new());
        out.entry((BitmapKind::Null, name.clone(), String::new())).or_insert_with(|| null_bm.finish());
    }
    Ok(out)
}
