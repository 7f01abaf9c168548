//! The users rows of a bitmap selection, when only columns of the row-addressable copies are asked
//! for (`SELECT user_id, email FROM users WHERE <audience>`, the shape of every contact export):
//! each selected user's values are gathered by row from the mapped copy
//! ([`crate::store::addressable`]) instead of decoding every page of the users Parquet files. The
//! files are split into partitions balanced by selected rows, read in row-id order within each.

use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::Result as DfResult;
use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::query::bitmap_scan::{UsersFile, balanced_groups, row_id_range, users_statistics};
use crate::store::addressable::{self, AddressableCopy};
use crate::tables::{ROW_ID_COLUMN, cast_to_schema};

/// The plan, or `None` when a projected column is not in every selected file's copy (then the
/// Parquet files are read).
pub fn gather_scan(
    files: &[UsersFile],
    projected: SchemaRef,
    selection: &RoaringBitmap,
    limit: Option<usize>,
    target_partitions: usize,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    // Decided from the names first: opening a copy validates its offsets. The row ids (a
    // residual filter's `__row_id`) are the selection's own.
    let is_row_id = |f: &arrow::datatypes::Field| f.name() == ROW_ID_COLUMN && f.data_type() == &DataType::UInt32;
    let copied: Vec<&arrow::datatypes::Field> =
        projected.fields().iter().map(|f| f.as_ref()).filter(|f| !is_row_id(f)).collect();
    if copied.is_empty()
        || copied
            .iter()
            .any(|f| !addressable::holds(f.name()) || !matches!(f.data_type(), DataType::Utf8 | DataType::Utf8View))
    {
        return Ok(None);
    }
    let columns: Vec<&str> = copied.iter().map(|f| f.name().as_str()).collect();
    let mut planned = Vec::new();
    for file in files {
        let selected = selection.range_cardinality(row_id_range(file));
        if selected == 0 {
            continue;
        }
        let Some(path) = &file.addressable else { return Ok(None) };
        let copy = AddressableCopy::open_cached(path, &columns)?;
        if copy.names().len() != columns.len() {
            return Ok(None);
        }
        copy.check_rows(file.rows)?;
        planned.push(Planned { first_row_id: file.first_row_id, range: row_id_range(file), selected, copy });
    }
    let counts: Vec<u64> = planned.iter().map(|p| p.selected).collect();
    let mut partitions: Vec<Vec<Planned>> = Vec::new();
    for (file, group) in planned.into_iter().zip(balanced_groups(&counts, target_partitions)) {
        if partitions.len() <= group {
            partitions.push(Vec::new());
        }
        partitions[group].push(file);
    }
    if partitions.is_empty() {
        partitions.push(Vec::new());
    }
    let total: u64 = counts.iter().sum();
    let num_rows = usize::try_from(total).unwrap_or(usize::MAX).min(limit.unwrap_or(usize::MAX));
    let properties = Arc::new(PlanProperties::new(
        EquivalenceProperties::new(Arc::clone(&projected)),
        Partitioning::UnknownPartitioning(partitions.len()),
        EmissionType::Incremental,
        Boundedness::Bounded,
    ));
    Ok(Some(Arc::new(GatherScanExec {
        partitions: partitions.into_iter().map(Arc::new).collect(),
        selection: Arc::new(selection.clone()),
        schema: projected,
        limit,
        num_rows,
        properties,
    })))
}

/// A selected users file and its opened copy.
#[derive(Debug)]
struct Planned {
    first_row_id: u32,
    range: (Bound<u32>, Bound<u32>),
    selected: u64,
    copy: Arc<AddressableCopy>,
}

#[derive(Debug)]
pub struct GatherScanExec {
    partitions: Vec<Arc<Vec<Planned>>>,
    selection: Arc<RoaringBitmap>,
    schema: SchemaRef,
    limit: Option<usize>,
    /// Rows the whole scan yields (the limit applied).
    num_rows: usize,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for GatherScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let columns: Vec<&str> = self.schema.fields().iter().map(|f| f.name().as_str()).collect();
        let files: usize = self.partitions.iter().map(|p| p.len()).sum();
        write!(f, "GatherScanExec: columns=[{}], rows={}, files={files}", columns.join(", "), self.num_rows)?;
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for GatherScanExec {
    fn name(&self) -> &str {
        "GatherScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        // No expressions: the selection was evaluated from the bitmaps when planning.
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn partition_statistics(&self, partition: Option<usize>) -> DfResult<Arc<Statistics>> {
        let rows = match partition {
            None => Precision::Exact(self.num_rows),
            Some(_) => Precision::Inexact(self.num_rows),
        };
        let statistics = users_statistics(&self.schema, rows);
        Ok(Arc::new(statistics))
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let files = Arc::clone(
            self.partitions
                .get(partition)
                .ok_or_else(|| Error::Internal(format!("GatherScanExec has no partition {partition}")))?,
        );
        let selection = Arc::clone(&self.selection);
        let schema = Arc::clone(&self.schema);
        let mut remaining = self.limit.unwrap_or(usize::MAX);
        let mut builder = RecordBatchReceiverStreamBuilder::new(Arc::clone(&self.schema), 2);
        let tx = builder.tx();
        builder.spawn_blocking(move || {
            let is_row_id =
                |f: &arrow::datatypes::Field| f.name() == ROW_ID_COLUMN && f.data_type() == &DataType::UInt32;
            let copied = schema.fields().iter().filter(|f| !is_row_id(f)).count();
            let positions: Vec<usize> = (0..copied).collect();
            for file in files.iter() {
                if remaining == 0 || tx.is_closed() {
                    break;
                }
                let mut rows: Vec<u32> = selection.range(file.range).map(|id| id - file.first_row_id).collect();
                rows.truncate(remaining);
                remaining -= rows.len();
                let mut at = 0usize;
                let sent = file.copy.gather(&rows, &positions, |gathered, take| {
                    let ids = rows[at..at + take].iter().map(|&r| r + file.first_row_id);
                    let ids: ArrayRef = Arc::new(arrow::array::UInt32Array::from_iter_values(ids));
                    at += take;
                    let mut gathered = gathered.into_iter();
                    let columns = schema
                        .fields()
                        .iter()
                        .map(|f| if is_row_id(f) { Some(Arc::clone(&ids)) } else { gathered.next() })
                        .collect::<Option<Vec<ArrayRef>>>()
                        .ok_or_else(|| Error::Internal("the copy gave fewer columns than asked".into()))?;
                    let columns = cast_to_schema(&columns, &schema)?;
                    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
                    tx.blocking_send(Ok(batch)).map_err(|_| Error::Internal("the scan's consumer stopped".into()))
                });
                if tx.is_closed() {
                    break;
                }
                sent?;
            }
            Ok(())
        });
        Ok(builder.build())
    }
}
