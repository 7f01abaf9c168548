//! Plain copies of fact files: beside each fact Parquet file, an uncompressed Arrow IPC file with
//! the same rows in the same order — their user row ids (`__row_id`), every fixed-width column, and
//! the string columns with few distinct values as `UInt16` codes into a per-file dictionary kept
//! in the footer (`persona.dictionary.<column>`, a JSON list). Unique strings (`order_id`,
//! `user_id`) are left out. Per-user aggregates map the copy and fold its batches without
//! decompressing or decoding a page ([`PlainColumns`]; writing and mapping are
//! [`crate::store::ipc`]'s); a string column is read as `Dictionary(UInt16, Utf8)` over the
//! file's dictionary — its keys are the mapped codes themselves, checked once when the copy is
//! opened — so a filter on it is tested once per value and a batch costs nothing to hand out.
//!
//! A fact table with a `ts` column also gets each row's day ([`TS_DAY_COLUMN`], `UInt16` days
//! since 1970-01-01 UTC): a time window's whole days are a test of 2 bytes a row instead of 8, and
//! only the rows of its partial edge days read `ts` ([`crate::query::const_compare`]). Copies
//! written before it have no day column; their windows read `ts`.
//!
//! A copy is written as its fact file is (imports, rewrites, and files kept as loaded), batch by
//! batch, and named by the manifest's `plain_columns` field; stores without it read the Parquet
//! files. A string column with more than 65,535 values in one file has no dictionary in the
//! footer and is read from the Parquet file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, RecordBatch, RecordBatchOptions, StringArray, UInt16Array, UInt32Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, UInt16Type, UInt32Type};
use roaring::RoaringBitmap;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::store::dead_rows;
use crate::store::ipc::{IpcFileWriter, MappedIpc, OpenedFiles};
use crate::store::ipc_checksums::{Checksums, ensure_arrays};
use crate::tables::{ROW_ID_COLUMN, TS, UNIQUE_COLUMNS};

/// The footer metadata key of a string column's dictionary.
const DICTIONARY_KEY: &str = "persona.dictionary.";
/// Rows per IPC batch: the import's batches are coalesced up to this.
const BATCH_ROWS: usize = 64 * 1024;
/// Codes are `u16`: a string column with more values in one file is left out of the copy.
const MAX_DISTINCT: usize = u16::MAX as usize;

/// The column of each row's day in the copies of tables with `ts`.
pub const TS_DAY_COLUMN: &str = "__ts_day";
/// Microseconds in a day.
pub const DAY_MICROS: i64 = 86_400_000_000;
/// The day code of a `ts` whose day a `u16` cannot hold (before 1970-01-02, or from 2149-06-06
/// on): its window test reads `ts` itself.
pub const UNKNOWN_DAY: u16 = 0;

/// The day code of a `ts` in microseconds since the epoch (UTC).
pub fn day_code(ts: i64) -> u16 {
    match u16::try_from(ts.div_euclid(DAY_MICROS)) {
        Ok(day) if day != u16::MAX => day,
        _ => UNKNOWN_DAY,
    }
}

/// The day codes of a timestamp column (NULL where it is NULL).
fn day_codes(ts: &ArrayRef) -> Result<UInt16Array> {
    let micros = cast(ts, &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None))?;
    let micros = micros.as_primitive_opt::<arrow::datatypes::TimestampMicrosecondType>().ok_or_else(|| {
        Error::Internal(format!("the ts column is {} where a timestamp was expected", ts.data_type()))
    })?;
    Ok(micros.unary(day_code))
}

/// The relative path of the copy of the fact file at `parquet_relative`.
pub fn path_for(parquet_relative: &str) -> String {
    crate::store::layout::beside_data_file(parquet_relative, "plain.arrow")
}

/// The positions of `id`'s rows among `row_ids`, which ascend (a copy of a file grouped by user):
/// an empty range when it has none.
pub fn rows_of(row_ids: &[u32], id: u32) -> std::ops::Range<usize> {
    let start = row_ids.partition_point(|&r| r < id);
    start..start + row_ids[start..].partition_point(|&r| r == id)
}

/// Whether a column of this name goes into copies (when its type does): unique strings do not.
pub fn copies_column(name: &str) -> bool {
    name != ROW_ID_COLUMN && !UNIQUE_COLUMNS.contains(&name)
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
}

/// One string column's codes as the file is written.
#[derive(Default)]
struct Codes {
    /// Values of up to 15 bytes, packed with their length into a `u128` (hashed and compared as
    /// one integer); longer values by their text.
    short: FxHashMap<u128, u16>,
    of: FxHashMap<String, u16>,
    values: Vec<String>,
    /// More values than codes: the column is written as NULLs and has no dictionary.
    overflowed: bool,
}

impl Codes {
    fn encode(&mut self, column: &ArrayRef) -> Result<UInt16Array> {
        let mut codes = Vec::with_capacity(column.len());
        match column.data_type() {
            DataType::Utf8 => self.encode_values(column.as_string::<i32>().iter(), &mut codes),
            DataType::LargeUtf8 => self.encode_values(column.as_string::<i64>().iter(), &mut codes),
            DataType::Utf8View => self.encode_values(column.as_string_view().iter(), &mut codes),
            other => return Err(Error::Internal(format!("cannot code a column of type {other}"))),
        }
        Ok(UInt16Array::from(codes))
    }

    fn encode_values<'a>(&mut self, values: impl Iterator<Item = Option<&'a str>>, codes: &mut Vec<Option<u16>>) {
        for value in values {
            let code = match value {
                None => None,
                Some(_) if self.overflowed => None,
                Some(v) => self.code(v),
            };
            codes.push(code);
        }
    }

    /// The code of `v`, given a new one if it has none; `None` once the codes have run out.
    fn code(&mut self, v: &str) -> Option<u16> {
        let packed = pack(v.as_bytes());
        let known = match packed {
            Some(key) => self.short.get(&key),
            None => self.of.get(v),
        };
        if let Some(c) = known {
            return Some(*c);
        }
        if self.values.len() >= MAX_DISTINCT {
            self.overflowed = true;
            return None;
        }
        let c = self.values.len() as u16;
        match packed {
            Some(key) => self.short.insert(key, c),
            None => self.of.insert(v.to_string(), c),
        };
        self.values.push(v.to_string());
        Some(c)
    }
}

/// Up to 15 bytes and their length as one integer (distinct values give distinct integers).
fn pack(bytes: &[u8]) -> Option<u128> {
    if bytes.len() > 15 {
        return None;
    }
    let mut buf = [0u8; 16];
    buf[..bytes.len()].copy_from_slice(bytes);
    buf[15] = bytes.len() as u8;
    Some(u128::from_le_bytes(buf))
}

/// Writes a fact file's plain copy as its rows are written.
pub struct PlainColumnsWriter {
    /// The copied columns: their names in the source batches, and codes for strings.
    columns: Vec<(String, Option<Codes>)>,
    /// Whether the rows' days are written (the table has a timestamp `ts`).
    days: bool,
    file: IpcFileWriter,
}

impl PlainColumnsWriter {
    /// A writer for fact rows of `schema` (with or without the row-id column) into a copy at
    /// `path`.
    pub fn create(path: &Path, schema: &Schema) -> Result<PlainColumnsWriter> {
        let mut fields = vec![Field::new(ROW_ID_COLUMN, DataType::UInt32, false)];
        let mut columns = Vec::new();
        for f in schema.fields() {
            if !copies_column(f.name()) {
                continue;
            }
            if is_string(f.data_type()) {
                fields.push(Field::new(f.name(), DataType::UInt16, true));
                columns.push((f.name().clone(), Some(Codes::default())));
            } else if f.data_type().is_primitive() || *f.data_type() == DataType::Boolean {
                fields.push(Field::new(f.name(), f.data_type().clone(), true));
                columns.push((f.name().clone(), None));
            }
        }
        let days = schema.field_with_name(TS).is_ok_and(|f| matches!(f.data_type(), DataType::Timestamp(..)));
        if days {
            fields.push(Field::new(TS_DAY_COLUMN, DataType::UInt16, true));
        }
        let file = IpcFileWriter::create(path, Arc::new(Schema::new(fields)), BATCH_ROWS)?;
        Ok(PlainColumnsWriter { columns, days, file })
    }

    /// Appends rows (their columns found by name) with their user row ids.
    pub fn push(&mut self, batch: &RecordBatch, row_ids: &[u32]) -> Result<()> {
        let schema = Arc::clone(self.file.schema());
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(UInt32Array::from(row_ids.to_vec()))];
        for (i, (name, codes)) in self.columns.iter_mut().enumerate() {
            let column = batch.column(batch.schema().index_of(name)?);
            arrays.push(match codes {
                Some(codes) => Arc::new(codes.encode(column)?),
                None => {
                    let target = schema.field(i + 1).data_type();
                    if column.data_type() == target { Arc::clone(column) } else { cast(column, target)? }
                }
            });
        }
        if self.days {
            arrays.push(Arc::new(day_codes(batch.column(batch.schema().index_of(TS)?))?));
        }
        self.file.push(RecordBatch::try_new(schema, arrays)?)
    }

    /// Writes the last rows and the dictionaries; returns the file (for syncing).
    pub fn finish(self) -> Result<crate::store::io::NewFile> {
        let mut metadata = Vec::new();
        for (name, codes) in &self.columns {
            if let Some(codes) = codes
                && !codes.overflowed
            {
                let values = serde_json::to_string(&codes.values)
                    .map_err(|e| Error::Internal(format!("cannot write a dictionary: {e}")))?;
                metadata.push((format!("{DICTIONARY_KEY}{name}"), values));
            }
        }
        self.file.finish(metadata)
    }
}

/// A plain copy mapped for some of its columns.
pub struct PlainColumns {
    path: PathBuf,
    /// Per batch: the columns asked for as readers see them (strings as dictionaries over the
    /// mapped codes), and the row ids.
    batches: Vec<(RecordBatch, UInt32Array)>,
    /// Per batch, when `ts` was asked for and the copy has them: the rows' day codes.
    days: Vec<Option<UInt16Array>>,
    /// Per batch: the position of its first row in the copy.
    starts: Vec<usize>,
    rows: u64,
    /// Verifies a batch's mapped columns before it is handed out (see `ipc_checksums`).
    checks: Option<Arc<Checksums>>,
    mapping: crate::store::ipc::Mapping,
}

/// Copies opened by this process: a lookup of a few users' rows maps nothing anew.
static OPENED: OpenedFiles<PlainColumns> = OpenedFiles::new(256);

impl PlainColumns {
    /// [`PlainColumns::open`], once per process for a file and columns, kept among the recently
    /// used ones.
    pub fn open_cached(path: &Path, columns: &[&str], rows: u64) -> Result<Option<Arc<PlainColumns>>> {
        OPENED.get_or_open(path, columns, || PlainColumns::open(path, columns, rows))
    }

    /// Maps the copy at `path` for `columns`, or `None` when it lacks one of them (or its
    /// dictionary). `rows` is its fact file's row count, which the copy must have.
    pub fn open(path: &Path, columns: &[&str], rows: u64) -> Result<Option<PlainColumns>> {
        let mut wanted = vec![ROW_ID_COLUMN];
        wanted.extend_from_slice(columns);
        let required = wanted.len();
        if columns.contains(&TS) {
            wanted.push(TS_DAY_COLUMN);
        }
        let mapped = MappedIpc::open(path, &wanted)?;
        if mapped.names.len() < required || mapped.names[..required] != wanted[..required] {
            return Ok(None);
        }
        let has_days = mapped.names.len() > required;
        let mut dictionaries = Vec::with_capacity(columns.len());
        let schema = match mapped.batches.first() {
            Some(b) => b.schema(),
            None => Arc::new(Schema::empty()),
        };
        for (i, name) in columns.iter().enumerate() {
            let is_code = schema.fields().get(i + 1).is_some_and(|f| *f.data_type() == DataType::UInt16);
            if !is_code {
                dictionaries.push(None);
                continue;
            }
            let Some(text) = mapped.metadata.get(&format!("{DICTIONARY_KEY}{name}")) else { return Ok(None) };
            let values: Vec<String> = serde_json::from_str(text)
                .map_err(|e| Error::corrupt(path, format!("the dictionary of {name} is not a list of strings: {e}")))?;
            dictionaries.push(Some(Arc::new(StringArray::from(values)) as ArrayRef));
        }
        let copied: u64 = mapped.batches.iter().map(|b| b.num_rows() as u64).sum();
        if copied != rows {
            return Err(Error::corrupt(path, format!("the copy holds {copied} rows, its fact file {rows}")));
        }
        let batches = mapped
            .batches
            .iter()
            .map(|b| {
                let ids = b
                    .column(0)
                    .as_primitive_opt::<UInt32Type>()
                    .ok_or_else(|| Error::corrupt(path, "the copy's first column is not row ids"))?;
                let days = match has_days {
                    true => Some(
                        b.column(required)
                            .as_primitive_opt::<UInt16Type>()
                            .ok_or_else(|| Error::corrupt(path, "the copy's day column is not 16-bit"))?
                            .clone(),
                    ),
                    false => None,
                };
                Ok((decoded(path, b, &dictionaries)?, ids.clone(), days))
            })
            .collect::<Result<Vec<_>>>()?;
        // Empty batches hold nothing and would break the binary search of `rows_of_users`.
        let (batches, days): (Vec<_>, Vec<_>) = batches
            .into_iter()
            .filter(|(batch, _, _)| batch.num_rows() > 0)
            .map(|(batch, ids, days)| ((batch, ids), days))
            .unzip();
        let starts = batches
            .iter()
            .scan(0usize, |at, (batch, _)| {
                let start = *at;
                *at += batch.num_rows();
                Some(start)
            })
            .collect();
        let mapping = mapped.mapping.clone();
        Ok(Some(PlainColumns { path: path.to_path_buf(), batches, days, starts, rows, checks: mapped.checks, mapping }))
    }

    /// Gives back the resident pages of the copy once a reader has gone through it (see
    /// [`crate::store::ipc::Mapping::release_pages`]); the copy stays usable.
    pub fn release_pages(&self) {
        self.mapping.release_pages();
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The positions in the copy of the rows of `ids` (ascending), one range per id that has
    /// rows, in order, for a copy whose row ids ascend (its file is grouped by user): the batches
    /// that can hold an id are found by binary search on their last row ids, so a lookup touches
    /// (and verifies) a few batches' row ids whatever the file's size.
    pub fn rows_of_users(&self, ids: &[u32]) -> Result<Vec<std::ops::Range<usize>>> {
        let row_ids = |at: usize| -> Result<&[u32]> {
            let r = &self.batches[at].1;
            ensure_arrays(self.checks.as_deref(), [r as &dyn Array])?;
            Ok(r.values())
        };
        let mut found = Vec::new();
        for &id in ids {
            // The first batch whose last row id is not below `id` (batches are never empty).
            let (mut lo, mut hi) = (0, self.batches.len());
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if row_ids(mid)?.last().is_some_and(|&last| last < id) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            let mut at = lo;
            while at < self.batches.len() {
                let values = row_ids(at)?;
                if values.first().is_none_or(|&first| first > id) {
                    break;
                }
                let rows = rows_of(values, id);
                if !rows.is_empty() {
                    found.push(self.starts[at] + rows.start..self.starts[at] + rows.end);
                }
                if values.last().is_none_or(|&last| last > id) {
                    break;
                }
                at += 1;
            }
        }
        Ok(found)
    }

    /// Passes each batch's columns (strings as `Dictionary(UInt16, Utf8)`) and row ids to `f`:
    /// the live rows, those at the `dead` positions ([`crate::store::dead_rows`]) left out.
    pub fn for_each_batch(
        &self,
        dead: Option<&RoaringBitmap>,
        mut f: impl FnMut(&RecordBatch, &[u32]) -> Result<()>,
    ) -> Result<()> {
        self.for_each_batch_with_days(dead, |batch, ids, _| f(batch, ids))
    }

    /// [`PlainColumns::for_each_batch`], with the rows' day codes when `ts` was asked for and
    /// the copy has them.
    pub fn for_each_batch_with_days(
        &self,
        dead: Option<&RoaringBitmap>,
        mut f: impl FnMut(&RecordBatch, &[u32], Option<&UInt16Array>) -> Result<()>,
    ) -> Result<()> {
        for (((batch, ids), days), start) in self.batches.iter().zip(&self.days).zip(&self.starts) {
            self.ensure(batch, ids)?;
            if let Some(days) = days {
                ensure_arrays(self.checks.as_deref(), [days as &dyn Array])?;
                if days.len() != batch.num_rows() {
                    return Err(Error::corrupt(&self.path, "a batch's day column is not as long as its rows"));
                }
            }
            match dead_rows::live_batch(dead, *start as u64, batch, ids, days.as_ref())? {
                Some((batch, ids, days)) => f(&batch, ids.values(), days.as_ref())?,
                None => f(batch, ids.values(), days.as_ref())?,
            }
        }
        Ok(())
    }

    /// Calls `f` with the rows `select` picks from each batch (positions in the batch, given its
    /// row ids), and their row ids; batches where `select` picks nothing are skipped, and rows at
    /// `dead` positions are never passed.
    pub fn for_each_selected(
        &self,
        dead: Option<&RoaringBitmap>,
        mut select: impl FnMut(&[u32]) -> Vec<u32>,
        mut f: impl FnMut(&RecordBatch, &[u32]) -> Result<()>,
    ) -> Result<()> {
        for ((batch, ids), start) in self.batches.iter().zip(&self.starts) {
            self.ensure(batch, ids)?;
            let mut rows = select(ids.values());
            if let Some(dead) = dead {
                rows.retain(|&r| !dead.contains((*start + r as usize) as u32));
            }
            if rows.is_empty() {
                continue;
            }
            let picked_ids: Vec<u32> = rows.iter().map(|&r| ids.value(r as usize)).collect();
            let take = UInt32Array::from(rows);
            let columns = batch
                .columns()
                .iter()
                .map(|c| arrow::compute::take(c.as_ref(), &take, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let options = RecordBatchOptions::new().with_row_count(Some(take.len()));
            let picked = RecordBatch::try_new_with_options(batch.schema(), columns, &options)
                .map_err(|e| Error::corrupt(&self.path, e.to_string()))?;
            f(&picked, &picked_ids)?;
        }
        Ok(())
    }

    /// Verifies the mapped bytes of a batch and its row ids (once per process).
    fn ensure(&self, batch: &RecordBatch, ids: &UInt32Array) -> Result<()> {
        let columns = batch.columns().iter().map(|c| c.as_ref());
        ensure_arrays(self.checks.as_deref(), columns.chain([ids as &dyn Array]))
    }
}

/// A batch of a copy as readers see it: without its row ids, string columns as dictionaries over
/// the file's values, keyed by the mapped codes (each checked against the dictionary here, once).
fn decoded(path: &Path, batch: &RecordBatch, dictionaries: &[Option<ArrayRef>]) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(dictionaries.len());
    let mut arrays = Vec::with_capacity(dictionaries.len());
    for (i, dictionary) in dictionaries.iter().enumerate() {
        let column = batch.column(i + 1);
        let field = batch.schema().field(i + 1).clone();
        match dictionary {
            None => {
                fields.push(field);
                arrays.push(Arc::clone(column));
            }
            Some(values) => {
                let codes = column
                    .as_primitive_opt::<UInt16Type>()
                    .ok_or_else(|| Error::corrupt(path, format!("the codes of {} are not 16-bit", field.name())))?;
                let coded = DictionaryArray::<UInt16Type>::try_new(codes.clone(), Arc::clone(values))
                    .map_err(|e| Error::corrupt(path, format!("a code of {} has no value: {e}", field.name())))?;
                fields.push(Field::new(field.name(), coded.data_type().clone(), true));
                arrays.push(Arc::new(coded));
            }
        }
    }
    // `count(*)` reads no column: the batch is only its row count.
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)?)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, TimestampMicrosecondArray};
    use arrow::datatypes::TimeUnit;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn fact_schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("order_id", DataType::Utf8, false),
            Field::new("channel_id", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("amount", DataType::Float64, true),
        ]))
    }

    fn batch(ids: &[u32]) -> RecordBatch {
        RecordBatch::try_new(
            fact_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("o{i}")))),
                Arc::new(StringArray::from_iter(
                    ids.iter().map(|i| (i % 7 != 0).then(|| ["app", "web", "微信"][*i as usize % 3])),
                )),
                Arc::new(TimestampMicrosecondArray::from_iter(
                    ids.iter().map(|&i| (i % 11 != 0).then_some(i64::from(i) * 10)),
                )),
                Arc::new(Float64Array::from_iter_values(ids.iter().map(|&i| f64::from(i) / 2.0))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_come_back_in_order_with_their_row_ids_and_strings_as_dictionaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.plain.arrow");
        let mut writer = PlainColumnsWriter::create(&path, &fact_schema()).unwrap();
        let rows = 150_000u32;
        for part in 0..3u32 {
            let ids: Vec<u32> = (part * rows / 3..(part + 1) * rows / 3).collect();
            writer.push(&batch(&ids), &ids).unwrap();
        }
        writer.finish().unwrap();
        assert!(
            PlainColumns::open(&path, &["order_id"], u64::from(rows)).unwrap().is_none(),
            "unique strings are left out"
        );
        let err = PlainColumns::open(&path, &["ts"], 5).err().unwrap().to_string();
        assert!(err.contains("f.plain.arrow") && err.contains("150000 rows"), "{err}");
        let copy = PlainColumns::open(&path, &["amount", "channel_id", "ts"], u64::from(rows)).unwrap().unwrap();
        let mut next = 0u32;
        copy.for_each_batch(None, |batch, ids| {
            let expected = super::tests::batch(ids);
            let amount = batch.column(0).as_primitive::<arrow::datatypes::Float64Type>();
            let channel = cast(batch.column(1), &DataType::Utf8).unwrap();
            assert!(matches!(batch.column(1).data_type(), DataType::Dictionary(..)));
            assert_eq!(channel.as_string::<i32>(), expected.column(1).as_string::<i32>());
            assert_eq!(batch.column(2).as_ref(), expected.column(2).as_ref());
            for (k, id) in ids.iter().enumerate() {
                assert_eq!(*id, next, "rows in their order");
                assert_eq!(amount.value(k), f64::from(*id) / 2.0);
                next += 1;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(next, rows);
    }

    #[test]
    fn a_lookup_of_users_finds_the_rows_a_scan_finds_across_batch_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.plain.arrow");
        let mut writer = PlainColumnsWriter::create(&path, &fact_schema()).unwrap();
        // Several pushes of uneven sizes, users of up to 9 rows, some users without rows: the
        // batches end inside users' runs of rows.
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let mut ids = Vec::new();
        let mut user = 0u32;
        while ids.len() < 3 * BATCH_ROWS {
            user += rng.random_range(1..4);
            let n = if ids.len() >= BATCH_ROWS / 2 && ids.len() < BATCH_ROWS / 2 + 10 {
                BATCH_ROWS + 9
            } else {
                rng.random_range(1..10)
            };
            // One user with more rows than a batch holds.
            ids.extend(std::iter::repeat_n(user, n));
        }
        for part in ids.chunks(40_000) {
            writer.push(&batch(part), part).unwrap();
        }
        writer.finish().unwrap();
        let copy = PlainColumns::open(&path, &[], ids.len() as u64).unwrap().unwrap();
        let mut all = Vec::new();
        let mut edges = Vec::new();
        copy.for_each_batch(None, |_, batch_ids| {
            edges.extend([batch_ids[0], batch_ids[batch_ids.len() - 1]]);
            all.extend_from_slice(batch_ids);
            Ok(())
        })
        .unwrap();
        assert_eq!(all, ids);
        let mut wanted: Vec<u32> = (0..200).map(|_| rng.random_range(0..user + 5)).collect();
        wanted.extend([0, 1, ids[0], user, user + 1]);
        wanted.extend(edges.iter().copied());
        wanted.sort_unstable();
        wanted.dedup();
        let expected: Vec<std::ops::Range<usize>> = wanted
            .iter()
            .filter_map(|&id| {
                let start = ids.iter().position(|&r| r == id)?;
                let end = ids.iter().rposition(|&r| r == id)? + 1;
                Some(start..end)
            })
            .collect();
        // A user whose rows straddle batches comes back as one range per batch: compare rows.
        let rows = |ranges: &[std::ops::Range<usize>]| ranges.iter().flat_map(|r| r.clone()).collect::<Vec<_>>();
        let found = copy.rows_of_users(&wanted).unwrap();
        assert!(found.len() > expected.len(), "some user's rows straddle batches: {edges:?}");
        assert_eq!(rows(&found), rows(&expected));
    }

    /// A reader that went through a copy gives its pages back (the query's resident memory then
    /// holds one copy at a time, not every copy it read), and the copy reads the same after.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_copy_reads_the_same_after_its_pages_are_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.plain.arrow");
        let mut writer = PlainColumnsWriter::create(&path, &fact_schema()).unwrap();
        let rows = 200_000u32;
        let ids: Vec<u32> = (0..rows).map(|r| r / 2).collect();
        writer.push(&batch(&ids), &ids).unwrap();
        writer.finish().unwrap();
        let copy = PlainColumns::open(&path, &["amount"], u64::from(rows)).unwrap().unwrap();
        let read = |copy: &PlainColumns| {
            let mut sum = (0u64, 0f64);
            copy.for_each_batch(None, |batch, ids| {
                sum.0 += ids.iter().map(|&i| u64::from(i)).sum::<u64>();
                sum.1 += batch.column(0).as_primitive::<arrow::datatypes::Float64Type>().values().iter().sum::<f64>();
                Ok(())
            })
            .unwrap();
            sum
        };
        let first = read(&copy);
        let resident = copy.mapping.resident_kib().expect("the mapping is listed");
        assert!(resident > 1_000, "{resident} KiB resident after a read");
        copy.release_pages();
        assert_eq!(copy.mapping.resident_kib(), Some(0));
        assert_eq!(read(&copy), first);
    }

    #[test]
    fn selected_rows_are_the_same_as_those_of_every_batch_and_the_cache_serves_one_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.plain.arrow");
        let mut writer = PlainColumnsWriter::create(&path, &fact_schema()).unwrap();
        let rows = 150_000u32;
        // Row ids ascending with repeats (several rows per user), as in files grouped by user.
        let ids: Vec<u32> = (0..rows).map(|r| r / 3).collect();
        writer.push(&batch(&ids), &ids).unwrap();
        writer.finish().unwrap();
        let columns = ["channel_id", "amount"];
        let copy = PlainColumns::open_cached(&path, &columns, u64::from(rows)).unwrap().unwrap();
        let again = PlainColumns::open_cached(&path, &columns, u64::from(rows)).unwrap().unwrap();
        assert!(Arc::ptr_eq(&copy, &again), "one mapping per file and columns");
        let wanted = |id: u32| id.is_multiple_of(7) || (20_000..20_010).contains(&id);
        let render = |batch: &RecordBatch, k: usize| {
            let channel = cast(batch.column(0), &DataType::Utf8).unwrap();
            let channel = channel.as_string::<i32>();
            let amount = batch.column(1).as_primitive::<arrow::datatypes::Float64Type>().value(k);
            format!("{}:{amount}", if channel.is_null(k) { "NULL" } else { channel.value(k) })
        };
        let mut expected = Vec::new();
        copy.for_each_batch(None, |batch, ids| {
            expected
                .extend(ids.iter().enumerate().filter(|(_, id)| wanted(**id)).map(|(k, id)| (*id, render(batch, k))));
            Ok(())
        })
        .unwrap();
        let mut got = Vec::new();
        copy.for_each_selected(
            None,
            |ids| (0..ids.len() as u32).filter(|&k| wanted(ids[k as usize])).collect(),
            |batch, ids| {
                assert!(matches!(batch.column(0).data_type(), DataType::Dictionary(..)));
                got.extend(ids.iter().enumerate().map(|(k, id)| (*id, render(batch, k))));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(got, expected);
        assert!(expected.len() > 20_000);
        // Nothing picked: no batch is decoded.
        let mut calls = 0;
        copy.for_each_selected(
            None,
            |_| Vec::new(),
            |_, _| {
                calls += 1;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(calls, 0);
    }

    #[test]
    fn codes_are_one_per_distinct_value_short_or_long() {
        let values =
            ["", "a", "a\0", "fifteen-bytes-x", "sixteen-bytes-xy", "sixteen-bytes-xz", "a", "sixteen-bytes-xy", ""];
        let column: ArrayRef = Arc::new(StringArray::from_iter(values.iter().map(|v| Some(*v)).chain([None])));
        let mut codes = Codes::default();
        let coded = codes.encode(&column).unwrap();
        for (i, v) in values.iter().enumerate() {
            assert_eq!(codes.values[coded.value(i) as usize], *v, "row {i}");
        }
        assert!(coded.is_null(values.len()));
        assert_eq!(codes.values.len(), 6, "{:?}", codes.values);
    }

    #[test]
    fn a_column_with_too_many_values_has_no_dictionary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.plain.arrow");
        let schema = Arc::new(Schema::new(vec![
            Field::new("product_id", DataType::Utf8, false),
            Field::new("q", DataType::Int32, false),
        ]));
        let mut writer = PlainColumnsWriter::create(&path, &schema).unwrap();
        let n = MAX_DISTINCT as u32 + 10;
        let ids: Vec<u32> = (0..n).collect();
        let b = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("p{i}")))),
                Arc::new(arrow::array::Int32Array::from_iter_values(ids.iter().map(|&i| i as i32))),
            ],
        )
        .unwrap();
        writer.push(&b, &ids).unwrap();
        writer.finish().unwrap();
        assert!(PlainColumns::open(&path, &["product_id"], u64::from(n)).unwrap().is_none());
        assert!(PlainColumns::open(&path, &["q"], u64::from(n)).unwrap().is_some());
    }
}
