//! Top-N of an audience by a range-indexed column (`… WHERE <audience> ORDER BY points DESC
//! LIMIT 100`, the shape of "our 100 best members of this segment"): the `n`-th value among the
//! audience's users is found from the column's bit slices ([`IndexSet::nth_value`]), and the
//! scan gets one more exact filter, `points >= that value` (with the NULLs when they sort first),
//! so that it reads the rows of about `n` users instead of the whole audience's. The sort above
//! is unchanged and orders them (ties and further keys included).
//!
//! Taken only when every filter of the users scan is a bitmap (a residual could drop rows past
//! the threshold and leave fewer than `n`), the sort's first key is a plain users column with a
//! range index and a fetch is set; off with the indexes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::logical_expr::{Expr, LogicalPlan, SortExpr, TableScan, lit};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::index::IndexSet;
use crate::index::format::BitmapKind;
use crate::query::bitmap_expr::{audience_of_filters, translate};
use crate::query::store_tables::StoreTables;
use crate::tables::Table;

/// See the module doc.
#[derive(Debug)]
pub struct TopRule {
    pub use_indexes: Arc<AtomicBool>,
    pub index: Arc<IndexSet>,
    pub tables: StoreTables,
}

impl OptimizerRule for TopRule {
    fn name(&self) -> &str {
        "persona_top"
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        if !self.use_indexes.load(Ordering::Relaxed) {
            return Ok(Transformed::no(plan));
        }
        plan.transform_down_with_subqueries(|node| {
            let LogicalPlan::Sort(sort) = &node else { return Ok(Transformed::no(node)) };
            let (Some(n), Some(SortExpr { expr: Expr::Column(key), asc, nulls_first })) =
                (sort.fetch, sort.expr.first())
            else {
                return Ok(Transformed::no(node));
            };
            let Some(input) = self.narrowed(&sort.input, key, n as u64, !asc, *nulls_first)? else {
                return Ok(Transformed::no(node));
            };
            let mut sort = sort.clone();
            sort.input = Arc::new(input);
            Ok(Transformed::yes(LogicalPlan::Sort(sort)))
        })
    }
}

impl TopRule {
    /// `plan` (plain projections and aliases over the users scan) with the threshold filter on
    /// `key` added to the scan, or `None` when the rule does not apply or the filter is there.
    fn narrowed(
        &self,
        plan: &LogicalPlan,
        key: &Column,
        n: u64,
        largest: bool,
        nulls_first: bool,
    ) -> Result<Option<LogicalPlan>> {
        let Some((scan, column)) = self.tables.column_scan(plan, key, Table::Users) else { return Ok(None) };
        let Some(filter) = self.threshold_filter(scan, &column, n, largest, nulls_first)? else { return Ok(None) };
        // The chain holds that one scan.
        let narrowed = plan.clone().transform_up(|node| match node {
            LogicalPlan::TableScan(mut scan) => {
                scan.filters.push(filter.clone());
                Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
            }
            other => Ok(Transformed::no(other)),
        })?;
        Ok(Some(narrowed.data))
    }

    /// The filter keeping the users that may be among the first `n` by `column`, when `scan` is
    /// the users scan with only bitmap filters and the filter is not there yet.
    fn threshold_filter(
        &self,
        scan: &TableScan,
        column: &str,
        n: u64,
        largest: bool,
        nulls_first: bool,
    ) -> Result<Option<Expr>> {
        let Ok(field) = scan.source.schema().field_with_name(column).cloned() else { return Ok(None) };
        let literal = |v: i64| -> Option<ScalarValue> {
            Some(match field.data_type() {
                DataType::Int64 => ScalarValue::Int64(Some(v)),
                DataType::Int32 => ScalarValue::Int32(Some(i32::try_from(v).ok()?)),
                DataType::Date32 => ScalarValue::Date32(Some(i32::try_from(v).ok()?)),
                _ => return None,
            })
        };
        let Some(candidates) = audience_of_filters(&scan.filters, &self.index)? else { return Ok(None) };
        let column_expr = Expr::Column(Column::new(Some(scan.table_name.clone()), column));
        // NULLs sorted first are all among the first n before any value.
        let nulls = match nulls_first {
            true => self.index.get(BitmapKind::Null, column, "")?.intersection_len(&candidates),
            false => 0,
        };
        let filter = if nulls >= n {
            column_expr.is_null()
        } else {
            let Some(value) = self.index.nth_value(column, &candidates, n - nulls, largest)? else { return Ok(None) };
            let Some(value) = literal(value) else { return Ok(None) };
            let bound =
                if largest { column_expr.clone().gt_eq(lit(value)) } else { column_expr.clone().lt_eq(lit(value)) };
            if nulls > 0 { bound.or(column_expr.is_null()) } else { bound }
        };
        // Translated like the others (else the provider would not take it), and added once.
        if translate(&filter, &self.index).is_none() || scan.filters.contains(&filter) {
            return Ok(None);
        }
        Ok(Some(filter))
    }
}
