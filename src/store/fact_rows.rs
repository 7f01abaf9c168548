//! Reading stored files back: the rows of a fact file with each row's user row id (from its
//! `__row_id` column, or from the companion file when the fact file was kept as loaded), and the
//! product → category map of the products table.

use std::fs::File;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::UInt32Type;
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::RowSelection;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use rustc_hash::FxHashMap;

use crate::error::{Error, IoContext, Result};
use crate::store::manifest::{DataFile, Manifest};
use crate::store::{dead_rows, layout};
use crate::tables::{CATEGORY, PRODUCT_ID, ROW_ID_COLUMN, TS, Table};

const BATCH_ROWS: usize = 64 * 1024;

/// Reads `columns` of a stored file as batches (in the order asked).
fn read_columns(path: &Path, columns: &[&str], f: impl FnMut(RecordBatch) -> Result<()>) -> Result<()> {
    read_columns_of_groups(path, columns, None, None, Strings::Plain, f)
}

/// How string columns are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strings {
    /// `Utf8`, as stored.
    Plain,
    /// `Utf8View` (no copy of each value into one buffer; the type SQL sees for fact strings),
    /// except the columns listed, which are read as `Dictionary(Int32, Utf8)`: for a
    /// dictionary-encoded column only the keys are decoded per row.
    Views { dictionary: Vec<String> },
}

impl Strings {
    /// Every string column as `Utf8View`.
    pub fn views() -> Strings {
        Strings::Views { dictionary: Vec::new() }
    }
}

/// Reads `columns` of a stored file as batches (in the order asked), strings decoded as `strings`:
/// every stored row, dead ones included (readers of fact rows use `for_each_fact_batch*`).
pub fn read_stored_columns(
    path: &Path,
    columns: &[&str],
    strings: Strings,
    f: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    read_columns_of_groups(path, columns, None, None, strings, f)
}

/// Reads `columns` of the rows `selection` picks from a stored file (in the order asked).
pub fn read_stored_rows(
    path: &Path,
    columns: &[&str],
    selection: RowSelection,
    f: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    read_columns_of_groups(path, columns, None, Some(selection), Strings::Plain, f)
}

/// The row groups of a stored file whose `ts` statistics overlap `from..=to` (all of them when
/// the statistics are missing), with the row each starts at.
fn row_groups_in(path: &Path, from: i64, to: i64) -> Result<Vec<(usize, u64, u64)>> {
    let file = File::open(path).io_context("open", path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::corrupt(path, e.to_string()))?;
    let ts = builder.parquet_schema().columns().iter().position(|c| c.name() == TS);
    let mut out = Vec::new();
    let mut start = 0u64;
    for (i, rg) in builder.metadata().row_groups().iter().enumerate() {
        let rows = rg.num_rows().max(0) as u64;
        let overlaps = match ts.and_then(|c| rg.column(c).statistics()) {
            Some(parquet::file::statistics::Statistics::Int64(st)) => match (st.min_opt(), st.max_opt()) {
                (Some(lo), Some(hi)) => *hi >= from && *lo <= to,
                _ => true,
            },
            _ => true,
        };
        if overlaps {
            out.push((i, start, rows));
        }
        start += rows;
    }
    Ok(out)
}

/// Reads `columns` of the row groups `groups` (all when `None`) of a stored file.
fn read_columns_of_groups(
    path: &Path,
    columns: &[&str],
    groups: Option<Vec<usize>>,
    selection: Option<RowSelection>,
    strings: Strings,
    mut f: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let corrupt = |e: &dyn std::fmt::Display| Error::corrupt(path, e.to_string());
    let file = File::open(path).io_context("open", path)?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file.try_clone().io_context("open", path)?)
        .map_err(|e| corrupt(&e))?;
    if let Strings::Views { dictionary } = &strings {
        let fields: Vec<Field> = builder
            .schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 if dictionary.contains(f.name()) => f
                    .as_ref()
                    .clone()
                    .with_data_type(DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))),
                DataType::Utf8 | DataType::LargeUtf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
                _ => f.as_ref().clone(),
            })
            .collect();
        let options = ArrowReaderOptions::new().with_schema(std::sync::Arc::new(Schema::new(fields)));
        let metadata = ArrowReaderMetadata::try_new(std::sync::Arc::clone(builder.metadata()), options)
            .map_err(|e| corrupt(&e))?;
        builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata);
    }
    let schema = builder.parquet_schema();
    let mut indices = Vec::with_capacity(columns.len());
    for name in columns {
        let i = (0..schema.num_columns())
            .find(|&i| schema.column(i).name() == *name)
            .ok_or_else(|| Error::corrupt(path, format!("the stored file has no column '{name}'")))?;
        indices.push(i);
    }
    let mask = ProjectionMask::leaves(schema, indices);
    let mut builder = builder.with_projection(mask).with_batch_size(BATCH_ROWS);
    if let Some(groups) = groups {
        builder = builder.with_row_groups(groups);
    }
    if let Some(selection) = selection {
        builder = builder.with_row_selection(selection);
    }
    let reader = builder.build().map_err(|e| corrupt(&e))?;
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(&e))?;
        // The projection keeps file order; hand the columns over in the order asked.
        let order: Vec<usize> =
            columns.iter().map(|c| batch.schema().index_of(c)).collect::<std::result::Result<_, _>>()?;
        f(batch.project(&order)?)?;
    }
    Ok(())
}

/// Calls `f` with batches of `columns` of the stored fact file `file` and the user row id of
/// each of their rows: its live rows, the dead rows of forgotten users left out
/// ([`crate::store::dead_rows`]), as every `for_each_fact_batch*` does.
pub fn for_each_fact_batch(
    root: &Path,
    file: &DataFile,
    columns: &[&str],
    f: impl FnMut(&RecordBatch, &[u32]) -> Result<()>,
) -> Result<()> {
    for_each_fact_batch_in(root, file, columns, None, f)
}

/// [`for_each_fact_batch`] with strings decoded as `strings`.
pub fn for_each_fact_batch_as(
    root: &Path,
    file: &DataFile,
    columns: &[&str],
    strings: Strings,
    f: impl FnMut(&RecordBatch, &[u32]) -> Result<()>,
) -> Result<()> {
    read_fact_batches(root, file, columns, None, strings, f)
}

/// [`for_each_fact_batch`] reading only the row groups whose `ts` statistics overlap
/// `from..=to` when `ts_window` is given (the rows of the others are not passed to `f`).
pub fn for_each_fact_batch_in(
    root: &Path,
    file: &DataFile,
    columns: &[&str],
    ts_window: Option<(i64, i64)>,
    f: impl FnMut(&RecordBatch, &[u32]) -> Result<()>,
) -> Result<()> {
    read_fact_batches(root, file, columns, ts_window, Strings::Plain, f)
}

/// [`for_each_fact_batch_in`] with strings decoded as `strings`.
pub fn for_each_fact_batch_in_as(
    root: &Path,
    file: &DataFile,
    columns: &[&str],
    ts_window: Option<(i64, i64)>,
    strings: Strings,
    f: impl FnMut(&RecordBatch, &[u32]) -> Result<()>,
) -> Result<()> {
    read_fact_batches(root, file, columns, ts_window, strings, f)
}

/// Reads the live rows of `file` with their row ids.
fn read_fact_batches(
    root: &Path,
    file: &DataFile,
    columns: &[&str],
    ts_window: Option<(i64, i64)>,
    strings: Strings,
    mut f: impl FnMut(&RecordBatch, &[u32]) -> Result<()>,
) -> Result<()> {
    let path = layout::resolve(root, &file.path);
    let groups = match ts_window {
        Some((from, to)) => Some(row_groups_in(&path, from, to)?),
        None => None,
    };
    if groups.as_ref().is_some_and(Vec::is_empty) {
        return Ok(());
    }
    let group_indices = groups.as_ref().map(|g| g.iter().map(|(i, _, _)| *i).collect::<Vec<_>>());
    // The rows read, as spans of positions in the file, and the dead ones among them skipped.
    let spans: Vec<(u64, u64)> = match &groups {
        Some(groups) => groups.iter().map(|(_, start, rows)| (*start, *rows)).collect(),
        None => vec![(0, file.rows)],
    };
    let dead = dead_rows::of(root, file)?;
    let selection = dead.as_deref().map(|d| dead_rows::live_selection(d, &spans));
    match &file.row_ids {
        None => {
            let mut with_ids: Vec<&str> = columns.to_vec();
            with_ids.push(ROW_ID_COLUMN);
            read_columns_of_groups(&path, &with_ids, group_indices, selection, strings.clone(), |batch| {
                let ids = batch
                    .column(columns.len())
                    .as_primitive_opt::<UInt32Type>()
                    .ok_or_else(|| Error::corrupt(&path, format!("{ROW_ID_COLUMN} is not a UInt32 column")))?;
                let data = batch.project(&(0..columns.len()).collect::<Vec<_>>())?;
                f(&data, ids.values())
            })
        }
        Some(companion) => {
            let companion = layout::resolve(root, companion);
            let mut all: Vec<u32> = Vec::with_capacity(usize::try_from(file.rows).unwrap_or(0));
            read_columns(&companion, &[ROW_ID_COLUMN], |batch| {
                let ids = batch
                    .column(0)
                    .as_primitive_opt::<UInt32Type>()
                    .ok_or_else(|| Error::corrupt(&companion, format!("{ROW_ID_COLUMN} is not a UInt32 column")))?;
                all.extend_from_slice(ids.values());
                Ok(())
            })?;
            if all.len() as u64 != file.rows {
                return Err(Error::corrupt(&companion, "the row id file does not have one row per fact row"));
            }
            // The row ids of the live rows of the row groups read, in order.
            let ids: Vec<u32> = match (&groups, &dead) {
                (None, None) => all,
                _ => spans
                    .iter()
                    .flat_map(|&(start, rows)| {
                        (start..start + rows).zip(all.get(start as usize..(start + rows) as usize).unwrap_or_default())
                    })
                    .filter(|(p, _)| !dead.as_ref().is_some_and(|d| d.contains(*p as u32)))
                    .map(|(_, id)| *id)
                    .collect(),
            };
            let mut at = 0usize;
            read_columns_of_groups(&path, columns, group_indices, selection, strings, |batch| {
                let end = at + batch.num_rows();
                let slice = ids.get(at..end).ok_or_else(|| {
                    Error::corrupt(&companion, "the row id file has fewer rows than the fact file it belongs to")
                })?;
                at = end;
                f(&batch, slice)
            })?;
            if at != ids.len() {
                return Err(Error::corrupt(
                    &companion,
                    "the row id file has more rows than the fact file it belongs to",
                ));
            }
            Ok(())
        }
    }
}

/// Every product's category in `manifest` (products without a category are left out).
pub fn product_categories(root: &Path, manifest: &Manifest) -> Result<FxHashMap<String, String>> {
    let mut out = FxHashMap::default();
    for file in manifest.files(Table::Products) {
        let path = layout::resolve(root, &file.path);
        read_columns(&path, &[PRODUCT_ID, CATEGORY], |batch| {
            let text = |i: usize| {
                batch
                    .column(i)
                    .as_string_opt::<i32>()
                    .ok_or_else(|| Error::corrupt(&path, format!("{} is not a text column", [PRODUCT_ID, CATEGORY][i])))
            };
            let (ids, categories) = (text(0)?, text(1)?);
            for row in 0..batch.num_rows() {
                if ids.is_valid(row) && categories.is_valid(row) {
                    out.insert(ids.value(row).to_string(), categories.value(row).to_string());
                }
            }
            Ok(())
        })?;
    }
    Ok(out)
}
