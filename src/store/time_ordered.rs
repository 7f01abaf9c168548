//! Time-ordered copies of fact files: beside each fact Parquet file (rows grouped by user, so a
//! time window cannot skip any of its pages), an uncompressed Arrow IPC file with the same rows
//! sorted by `ts`: their user row ids (`__row_id`), `ts`, every other fixed-width column and the
//! string columns with few distinct values (dictionary-coded); unique strings (`order_id`,
//! `user_id`) are left out. Batches of 64 K rows; the footer's `persona.ts_bounds` metadata holds
//! each batch's smallest and largest `ts`, so a per-user aggregate over a time window reads only
//! the batches that overlap it ([`TimeOrderedCopy`]).
//!
//! A copy is written when its fact file is (imports, rewrites, and files kept as loaded) and
//! named by the manifest's `time_ordered` field; stores without it read the Parquet files.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{SortOptions, cast, concat_batches, sort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType, UInt32Type};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;

use crate::error::{Error, IoContext, Result};
use crate::ingest::writer::UNIQUE_COLUMNS;
use crate::tables::ROW_ID_COLUMN;

/// The footer metadata key of the batches' `ts` bounds.
const BOUNDS_KEY: &str = "persona.ts_bounds";
/// Rows per batch.
const BATCH_ROWS: usize = 64 * 1024;
/// String columns with more distinct values than this in a file are left out of its copy.
const MAX_DISTINCT: usize = 1 << 16;

/// The relative path of the copy of the fact file at `parquet_relative`.
pub fn path_for(parquet_relative: &str) -> String {
    match parquet_relative.strip_suffix(".parquet") {
        Some(stem) => format!("{stem}.bytime.arrow"),
        None => format!("{parquet_relative}.bytime.arrow"),
    }
}

/// Collects a fact file's rows as they are written and writes them sorted by `ts` at the end.
pub struct TimeOrderedWriter {
    path: PathBuf,
    /// The copied columns of the file schema (row id excluded): (index in the file schema, field).
    columns: Vec<(usize, Field)>,
    schema: SchemaRef,
    parts: Vec<RecordBatch>,
}

impl TimeOrderedWriter {
    /// A writer for a fact file of `file_schema` (with or without the row-id column), or `None`
    /// when it has no `ts` timestamp column.
    pub fn create(path: &Path, file_schema: &Schema) -> Option<TimeOrderedWriter> {
        if !applies(file_schema) {
            return None;
        }
        let columns: Vec<(usize, Field)> = file_schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| copies_column(f.name()))
            .filter(|(_, f)| f.data_type().is_primitive() || is_string(f.data_type()) || *f.data_type() == DataType::Boolean)
            .map(|(i, f)| (i, f.as_ref().clone()))
            .collect();
        let mut fields = vec![Field::new(ROW_ID_COLUMN, DataType::UInt32, false)];
        fields.extend(columns.iter().map(|(_, f)| f.clone()));
        Some(TimeOrderedWriter { path: path.to_path_buf(), columns, schema: Arc::new(Schema::new(fields)), parts: Vec::new() })
    }

    /// Adds rows of the file (in the file schema) with their user row ids.
    pub fn push(&mut self, batch: &RecordBatch, row_ids: &[u32]) -> Result<()> {
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(UInt32Array::from(row_ids.to_vec()))];
        for (i, field) in &self.columns {
            let column = batch.column(*i);
            arrays.push(if column.data_type() == field.data_type() { Arc::clone(column) } else { cast(column, field.data_type())? });
        }
        self.parts.push(RecordBatch::try_new(Arc::clone(&self.schema), arrays)?);
        Ok(())
    }

    /// Sorts the rows by `ts` and writes the copy; returns the written file (for syncing), or
    /// `None` when no rows were pushed (no copy is written).
    pub fn finish(self) -> Result<Option<File>> {
        if self.parts.iter().all(|p| p.num_rows() == 0) {
            return Ok(None);
        }
        let all = concat_batches(&self.schema, &self.parts)?;
        drop(self.parts);
        let ts_at = all.schema().index_of("ts")?;
        let order = sort_to_indices(all.column(ts_at), Some(SortOptions { descending: false, nulls_first: false }), None)?;
        let sorted = take_record_batch(&all, &order)?;
        drop(all);
        // Low-cardinality strings as dictionaries; the others are left out.
        let mut fields = Vec::new();
        let mut arrays = Vec::new();
        for (field, column) in sorted.schema().fields().iter().zip(sorted.columns()) {
            if is_string(field.data_type()) {
                let coded = cast(column, &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)))?;
                if coded.as_any_dictionary().values().len() > MAX_DISTINCT {
                    continue;
                }
                fields.push(Field::new(field.name(), coded.data_type().clone(), field.is_nullable()));
                arrays.push(coded);
            } else {
                fields.push(field.as_ref().clone());
                arrays.push(Arc::clone(column));
            }
        }
        let schema = Arc::new(Schema::new(fields));
        let sorted = RecordBatch::try_new(Arc::clone(&schema), arrays)?;
        let ts_at = schema.index_of("ts")?;
        let file = File::create(&self.path).io_context("create", &self.path)?;
        let mut writer = FileWriter::try_new(BufWriter::with_capacity(1 << 20, file), &schema)?;
        let mut bounds = Vec::new();
        let mut start = 0;
        while start < sorted.num_rows() {
            let part = sorted.slice(start, BATCH_ROWS.min(sorted.num_rows() - start));
            let ts = part.column(ts_at).as_primitive::<TimestampMicrosecondType>();
            bounds.push(match (arrow::compute::min(ts), arrow::compute::max(ts)) {
                (Some(lo), Some(hi)) => format!("{lo}:{hi}"),
                _ => "-".to_string(),
            });
            writer.write(&part)?;
            start += part.num_rows();
        }
        writer.write_metadata(BOUNDS_KEY, bounds.join(","));
        writer.finish()?;
        let file = writer
            .into_inner()?
            .into_inner()
            .map_err(|e| Error::Io { op: "write", path: self.path.clone(), source: e.into_error() })?;
        Ok(Some(file))
    }
}

/// Whether fact files of this schema get a copy: they have a `ts` timestamp column.
pub fn applies(file_schema: &Schema) -> bool {
    file_schema.field_with_name("ts").is_ok_and(|f| matches!(f.data_type(), DataType::Timestamp(TimeUnit::Microsecond, _)))
}

/// Whether a column of this name goes into copies (when its type does): unique strings do not.
pub fn copies_column(name: &str) -> bool {
    name != ROW_ID_COLUMN && !UNIQUE_COLUMNS.contains(&name)
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
}

/// An open time-ordered copy.
pub struct TimeOrderedCopy {
    path: PathBuf,
    reader: FileReader<BufReader<File>>,
    /// Per batch, its smallest and largest `ts` (`None`: every `ts` of it is NULL).
    bounds: Vec<Option<(i64, i64)>>,
}

impl TimeOrderedCopy {
    pub fn open(path: &Path) -> Result<TimeOrderedCopy> {
        let file = File::open(path).io_context("open", path)?;
        let reader = FileReader::try_new(BufReader::new(file), None)
            .map_err(|e| Error::corrupt(path, format!("not a readable time-ordered copy: {e}")))?;
        let text = reader
            .custom_metadata()
            .get(BOUNDS_KEY)
            .ok_or_else(|| Error::corrupt(path, "the time-ordered copy has no batch bounds"))?;
        let bounds = text
            .split(',')
            .map(|b| match b.split_once(':') {
                None if b == "-" => Ok(None),
                Some((lo, hi)) => match (lo.parse(), hi.parse()) {
                    (Ok(lo), Ok(hi)) => Ok(Some((lo, hi))),
                    _ => Err(Error::corrupt(path, format!("bad batch bounds {b:?} in the time-ordered copy"))),
                },
                None => Err(Error::corrupt(path, format!("bad batch bounds {b:?} in the time-ordered copy"))),
            })
            .collect::<Result<Vec<_>>>()?;
        if bounds.len() != reader.num_batches() {
            return Err(Error::corrupt(path, "the time-ordered copy's bounds do not match its batches"));
        }
        Ok(TimeOrderedCopy { path: path.to_path_buf(), reader, bounds })
    }

    pub fn schema(&self) -> SchemaRef {
        self.reader.schema()
    }

    /// Whether the copy has every one of `columns`.
    pub fn holds(&self, columns: &[&str]) -> bool {
        let schema = self.reader.schema();
        columns.iter().all(|c| schema.index_of(c).is_ok())
    }

    /// The batches whose `ts` range meets `[from, to]` (inclusive).
    pub fn batches_within(&self, from: i64, to: i64) -> Vec<usize> {
        self.bounds
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_some_and(|(lo, hi)| hi >= from && lo <= to))
            .map(|(i, _)| i)
            .collect()
    }

    pub fn batch_count(&self) -> usize {
        self.bounds.len()
    }

    /// Reads `batches` and passes each one's `columns` (in that order) and row ids to `f`.
    pub fn read(
        &mut self,
        batches: &[usize],
        columns: &[&str],
        mut f: impl FnMut(&RecordBatch, &[u32]) -> Result<()>,
    ) -> Result<()> {
        let schema = self.reader.schema();
        let mut at = Vec::with_capacity(columns.len());
        for c in columns {
            at.push(schema.index_of(c).map_err(|_| Error::Internal(format!("the time-ordered copy has no column {c}")))?);
        }
        let corrupt = |e: arrow::error::ArrowError| Error::corrupt(&self.path, format!("cannot read the time-ordered copy: {e}"));
        for &i in batches {
            self.reader.set_index(i).map_err(corrupt)?;
            let batch = self
                .reader
                .next()
                .ok_or_else(|| Error::corrupt(&self.path, format!("the time-ordered copy has no batch {i}")))?
                .map_err(corrupt)?;
            let ids = batch
                .column(0)
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| Error::corrupt(&self.path, "the time-ordered copy's first column is not row ids"))?;
            f(&batch.project(&at)?, ids.values())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};

    use super::*;

    fn fact_schema() -> Schema {
        Schema::new(vec![
            Field::new(ROW_ID_COLUMN, DataType::UInt32, false),
            Field::new("order_id", DataType::Utf8, false),
            Field::new("channel_id", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("amount", DataType::Float64, true),
        ])
    }

    #[test]
    fn rows_come_back_sorted_by_ts_with_their_row_ids_and_windows_skip_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bytime.arrow");
        let schema = Arc::new(fact_schema());
        let mut writer = TimeOrderedWriter::create(&path, &schema).unwrap();
        let rows = 200_000u32;
        for part in 0..4u32 {
            let ids: Vec<u32> = (part * rows / 4..(part + 1) * rows / 4).collect();
            // ts descends with the row id; one row in 1000 has no ts.
            let ts: TimestampMicrosecondArray =
                ids.iter().map(|&i| (i % 1000 != 7).then_some(i64::from(rows - i) * 10)).collect();
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(UInt32Array::from(ids.clone())),
                    Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("o{i}")))),
                    Arc::new(StringArray::from_iter_values(ids.iter().map(|i| ["app", "web", "wechat"][*i as usize % 3]))),
                    Arc::new(ts),
                    Arc::new(Float64Array::from_iter_values(ids.iter().map(|&i| f64::from(i)))),
                ],
            )
            .unwrap();
            writer.push(&batch, &ids).unwrap();
        }
        writer.finish().unwrap().unwrap();
        let mut copy = TimeOrderedCopy::open(&path).unwrap();
        assert!(copy.holds(&["ts", "amount", "channel_id"]));
        assert!(!copy.holds(&["order_id"]), "unique strings are left out");
        assert_eq!(copy.batch_count(), rows.div_ceil(BATCH_ROWS as u32) as usize);
        // ts in [100_000, 200_000] is rows 180_000..=190_000: one or two batches of four.
        let within = copy.batches_within(100_000, 200_000);
        assert!(!within.is_empty() && within.len() <= 2, "{within:?}");
        let mut seen = Vec::new();
        let all: Vec<usize> = (0..copy.batch_count()).collect();
        copy.read(&all, &["ts", "amount", "channel_id"], |batch, ids| {
            let ts = batch.column(0).as_primitive::<TimestampMicrosecondType>();
            let amount = batch.column(1).as_primitive::<arrow::datatypes::Float64Type>();
            assert!(matches!(batch.column(2).data_type(), DataType::Dictionary(..)));
            for (k, id) in ids.iter().enumerate() {
                assert_eq!(amount.value(k), f64::from(*id));
                seen.push((ts.is_valid(k).then(|| ts.value(k)), *id));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), rows as usize);
        let valid: Vec<i64> = seen.iter().filter_map(|(t, _)| *t).collect();
        assert!(valid.windows(2).all(|w| w[0] <= w[1]), "sorted by ts");
        assert!(seen.iter().skip(valid.len()).all(|(t, _)| t.is_none()), "NULL ts last");
    }

    #[test]
    fn a_copy_without_bounds_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.bytime.arrow");
        let schema = Schema::new(vec![Field::new("x", DataType::UInt32, false)]);
        let mut w = FileWriter::try_new(File::create(&path).unwrap(), &schema).unwrap();
        w.finish().unwrap();
        let err = TimeOrderedCopy::open(&path).err().unwrap().to_string();
        assert!(err.contains("bad.bytime.arrow") && err.contains("bounds"), "{err}");
    }
}
