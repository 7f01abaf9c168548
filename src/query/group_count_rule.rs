//! An audience's distribution over a low-cardinality users column — `SELECT city, count(*) FROM
//! users WHERE <audience> GROUP BY city`, the first question asked of any segment — from the
//! bitmaps alone: per value of the column, the size of its value bitmap's intersection with the
//! audience (and the NULL bitmap's, for the NULL group). The aggregate becomes the table of those
//! counts (groups with no user left out, as `GROUP BY` has them); no users row is read.
//!
//! Taken when the aggregate groups by one value-indexed column (text, integer or boolean) and
//! counts rows (`count(*)`), over aliases and plain projections of the users scan whose filters
//! are all bitmaps. Off with the indexes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, lit};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::index::IndexSet;
use crate::index::format::BitmapKind;
use crate::query::bitmap_expr::audience_of_filters;
use crate::query::store_tables::StoreTables;
use crate::tables::Table;

/// Columns with more values than this are counted by the scan (each value is an intersection).
const MAX_GROUPS: usize = 1024;

/// See the module doc.
#[derive(Debug)]
pub struct GroupCountRule {
    pub use_indexes: Arc<AtomicBool>,
    pub index: Arc<IndexSet>,
    pub tables: StoreTables,
}

impl OptimizerRule for GroupCountRule {
    fn name(&self) -> &str {
        "persona_group_count"
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        if !self.use_indexes.load(Ordering::Relaxed) {
            return Ok(Transformed::no(plan));
        }
        plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::Aggregate(agg) = &node else { return Ok(Transformed::no(node)) };
            match self.counts(agg)? {
                Some(table) => Ok(Transformed::yes(table)),
                None => Ok(Transformed::no(node)),
            }
        })
    }
}

/// Whether `e` is `count(*)` (`count(1)`, any non-NULL literal), plain.
fn counts_rows(e: &Expr) -> bool {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        other => other,
    };
    let Expr::AggregateFunction(f) = e else { return false };
    let p = &f.params;
    f.func.name() == "count"
        && !p.distinct
        && p.filter.is_none()
        && matches!(p.args.as_slice(), [Expr::Literal(v, _)] if !v.is_null())
}

impl GroupCountRule {
    /// The table of counts replacing `agg`, when it is one this rule answers.
    fn counts(&self, agg: &Aggregate) -> Result<Option<LogicalPlan>> {
        let [Expr::Column(group)] = agg.group_expr.as_slice() else { return Ok(None) };
        if agg.aggr_expr.is_empty() || !agg.aggr_expr.iter().all(counts_rows) {
            return Ok(None);
        }
        let Some((scan, column)) = self.tables.column_scan(&agg.input, group, Table::Users) else { return Ok(None) };
        if !self.index.has_values(&column) {
            return Ok(None);
        }
        let values = self.index.values(&column);
        if values.len() > MAX_GROUPS {
            return Ok(None);
        }
        let data_type = agg.schema.field(0).data_type().clone();
        let typed = |text: &str| -> Option<ScalarValue> {
            Some(match &data_type {
                DataType::Utf8 => ScalarValue::Utf8(Some(text.to_string())),
                DataType::Utf8View => ScalarValue::Utf8View(Some(text.to_string())),
                DataType::LargeUtf8 => ScalarValue::LargeUtf8(Some(text.to_string())),
                DataType::Int64 => ScalarValue::Int64(Some(text.parse().ok()?)),
                DataType::Int32 => ScalarValue::Int32(Some(text.parse().ok()?)),
                DataType::Boolean => ScalarValue::Boolean(Some(text.parse().ok()?)),
                _ => return None,
            })
        };
        let Some(audience) = audience_of_filters(&scan.filters, &self.index)? else { return Ok(None) };
        let mut rows: Vec<(ScalarValue, u64)> = Vec::with_capacity(values.len() + 1);
        for value in &values {
            let Some(key) = typed(value) else { return Ok(None) };
            let n = self.index.get(BitmapKind::Value, &column, value)?.intersection_len(&audience);
            if n > 0 {
                rows.push((key, n));
            }
        }
        let nulls = self.index.get(BitmapKind::Null, &column, "")?.intersection_len(&audience);
        if nulls > 0 {
            rows.push((ScalarValue::try_from(&data_type)?, nulls));
        }
        // The aggregate's output: the group column, then each count (all the same), under their
        // qualified names so that the plan above reads them as before.
        let mut exprs = Vec::with_capacity(agg.schema.fields().len());
        let out = |i: usize, e: Expr| {
            let (q, f) = agg.schema.qualified_field(i);
            e.alias_qualified(q.cloned(), f.name())
        };
        exprs.push(out(0, Expr::Column(Column::from_name("column1"))));
        for i in 1..agg.schema.fields().len() {
            exprs.push(out(i, Expr::Column(Column::from_name("column2"))));
        }
        if rows.is_empty() {
            // No user: no group. An empty relation of the aggregate's schema.
            return Ok(Some(LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
                produce_one_row: false,
                schema: Arc::clone(&agg.schema),
            })));
        }
        let values: Vec<Vec<Expr>> =
            rows.into_iter().map(|(k, n)| vec![lit(k), lit(ScalarValue::Int64(Some(n as i64)))]).collect();
        let table = LogicalPlanBuilder::values(values)?.project(exprs)?.build()?;
        Ok(Some(table))
    }
}
