//! The dimensions phase of an import: products and channels are upserted by their key column, and
//! each table is rewritten whole as one file (they are small), so that loading a catalogue twice
//! does not double join results. Their rows carry row id 0: they belong to no user.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, UInt32Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use rustc_hash::FxHashMap;

use super::contract::plan_columns;
use super::job::{Job, check_non_null, for_each_batch, read_aligned, to_file_batch};
use super::reader::{self, SourceFile};
use crate::error::{Error, Result};
use crate::store::layout;
use crate::store::manifest::Manifest;
use crate::tables::{ColumnDef, ColumnType, Table, file_schema};

/// Upserts the products, then the channels, of `sources` into `next`, counting their rows into
/// `rows`.
pub(super) fn load_dimensions(
    job: &Job<'_>,
    sources: &[SourceFile],
    next: &mut Manifest,
    rows: &mut BTreeMap<Table, u64>,
) -> Result<()> {
    for table in [Table::Products, Table::Channels] {
        let files: Vec<SourceFile> = sources.iter().filter(|s| s.table == table).cloned().collect();
        if !files.is_empty() {
            let n = load_dimension(job, table, &files, next)?;
            rows.insert(table, n);
        }
    }
    Ok(())
}

/// Upserts a dimension table by its key into `next`: stored rows whose key the load has are
/// replaced. Returns the rows read.
fn load_dimension(job: &Job<'_>, table: Table, files: &[SourceFile], next: &mut Manifest) -> Result<u64> {
    let columns = next.columns(table);
    let schema = file_schema(&columns);
    let key = table.key_column().expect("dimensions have a key");
    let incoming = read_incoming(job, table, files, &columns, &schema)?;
    let mut sink = job.sink(table, Arc::clone(&schema), u64::MAX);
    for file in job.base.files(table) {
        let old = read_aligned(&layout::resolve(job.root, &file.path), &columns, &schema)?;
        let key_col = old.column(old.schema().index_of(key)?).as_string::<i32>().clone();
        let keep: BooleanArray =
            key_col.iter().map(|k| Some(!incoming.keys.contains_key(k.unwrap_or_default()))).collect();
        sink.write(&filter_record_batch(&old, &keep)?)?;
    }
    for batch in &incoming.batches {
        sink.write(batch)?;
    }
    next.tables.insert(table, sink.finish()?);
    Ok(incoming.rows)
}

/// The rows of a dimension load, in the file schema.
struct Incoming {
    batches: Vec<RecordBatch>,
    /// The keys loaded: each may appear once.
    keys: FxHashMap<String, ()>,
    rows: u64,
}

fn read_incoming(
    job: &Job<'_>,
    table: Table,
    files: &[SourceFile],
    columns: &[ColumnDef],
    schema: &SchemaRef,
) -> Result<Incoming> {
    let key = table.key_column().expect("dimensions have a key");
    let mut incoming = Incoming { batches: Vec::new(), keys: FxHashMap::default(), rows: 0 };
    for src in files {
        let header = reader::read_header(src)?;
        let plan = plan_columns(table, &src.path, &header, columns, |_| Ok(ColumnType::Utf8))?;
        for_each_batch(job, src, plan, |tb| {
            check_non_null(table, src, &tb)?;
            let key_col = tb.batch.column(tb.batch.schema().index_of(key)?).as_string::<i32>().clone();
            for (row, k) in key_col.iter().enumerate() {
                let k = k.unwrap_or_default();
                if incoming.keys.insert(k.to_string(), ()).is_some() {
                    return Err(Error::input(
                        &src.path,
                        tb.location(row),
                        Some(key),
                        format!("{key} '{k}' appears more than once in this load"),
                    ));
                }
            }
            incoming.rows += tb.batch.num_rows() as u64;
            let zeros = Arc::new(UInt32Array::from(vec![0u32; tb.batch.num_rows()]));
            incoming.batches.push(to_file_batch(&tb.batch, zeros, columns, schema)?);
            Ok(())
        })?;
    }
    Ok(incoming)
}
