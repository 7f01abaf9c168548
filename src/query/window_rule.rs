//! The physical rule that finds stacks of window nodes, each over a full sort of its input (with
//! plain projections between them), and replaces each stack by one [`WindowChainExec`].
//!
//! A level is taken only when its sort is total (no `LIMIT`), orders by the window's
//! `PARTITION BY` keys (in any order) and then exactly its `ORDER BY`, and sorts by types
//! [`row_order`] orders; the stack must end in a single partition, as the node replacing it does.
//! Off with the indexes (`persona.use_indexes = false`), so that every `.slt` file also checks
//! the result against DataFusion's own window sorts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::common::Result as DfResult;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_expr::PhysicalSortExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec, WindowExpr};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use crate::query::row_order;
use crate::query::window_exec::{WindowChainExec, WindowLevel};

/// Replaces sorted window stacks by [`WindowChainExec`]; see the module doc.
#[derive(Debug)]
pub struct WindowChainRule {
    pub use_indexes: Arc<AtomicBool>,
}

impl PhysicalOptimizerRule for WindowChainRule {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> DfResult<Arc<dyn ExecutionPlan>> {
        if !self.use_indexes.load(Ordering::Relaxed) {
            return Ok(plan);
        }
        plan.transform_down(|node| {
            Ok(match window_chain(&node)? {
                Some(chain) => Transformed::yes(chain),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "persona_window_chain"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The chain of window levels from `top` down, if `top` is a window node the rule takes, or a
/// projection of plain columns over one (absorbed as the chain's output columns).
fn window_chain(top: &Arc<dyn ExecutionPlan>) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    if top.output_partitioning().partition_count() != 1 {
        return Ok(None);
    }
    let mut output = None;
    let mut current = Arc::clone(top);
    if let Some(projection) = top.downcast_ref::<ProjectionExec>()
        && window_parts(projection.input()).is_some()
        && let Some(columns) = column_indices(projection)
    {
        output = Some(columns);
        current = Arc::clone(projection.input());
    }
    let mut levels: Vec<WindowLevel> = Vec::new();
    let mut pending_projection = None;
    loop {
        if let Some((exprs, input)) = window_parts(&current)
            && let Some((sort, below)) = sort_below(input)
            && level_is_sorted_by(exprs, &sort, input)
        {
            levels.push(WindowLevel {
                sort,
                window_exprs: exprs.to_vec(),
                schema: current.schema(),
                projection: pending_projection.take().map(|(exprs, schema, _)| (exprs, schema)),
            });
            current = below;
            continue;
        }
        if !levels.is_empty()
            && pending_projection.is_none()
            && let Some(projection) = current.downcast_ref::<ProjectionExec>()
            && window_parts(projection.input()).is_some()
            && column_indices(projection).is_some()
        {
            let exprs = projection.expr().iter().map(|p| Arc::clone(&p.expr)).collect();
            pending_projection = Some((exprs, projection.schema(), Arc::clone(&current)));
            current = Arc::clone(projection.input());
            continue;
        }
        break;
    }
    // A projection whose window node was not taken stays where it was, as the input.
    if let Some((_, _, projection)) = pending_projection {
        current = projection;
    }
    if levels.is_empty() {
        return Ok(None);
    }
    levels.reverse();
    Ok(Some(Arc::new(WindowChainExec::new(current, levels, output, top))))
}

/// The input column each expression of a projection of plain columns passes on.
fn column_indices(projection: &ProjectionExec) -> Option<Vec<usize>> {
    projection.expr().iter().map(|p| p.expr.downcast_ref::<Column>().map(Column::index)).collect()
}

/// A window node's expressions and its input.
type WindowParts<'a> = (&'a [Arc<dyn WindowExpr>], &'a Arc<dyn ExecutionPlan>);

/// The expressions and input of a window node.
fn window_parts(plan: &Arc<dyn ExecutionPlan>) -> Option<WindowParts<'_>> {
    if let Some(w) = plan.downcast_ref::<WindowAggExec>() {
        return Some((w.window_expr(), w.input()));
    }
    if let Some(w) = plan.downcast_ref::<BoundedWindowAggExec>() {
        return Some((w.window_expr(), w.input()));
    }
    None
}

/// A total sort (merged to one partition) and what it sorts. A projection of plain columns
/// between the window and its sort (renaming the sort's input) moves below the sort.
fn sort_below(plan: &Arc<dyn ExecutionPlan>) -> Option<(Vec<PhysicalSortExpr>, Arc<dyn ExecutionPlan>)> {
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let columns: Vec<&Column> =
            projection.expr().iter().map(|p| p.expr.downcast_ref::<Column>()).collect::<Option<_>>()?;
        let (sort, below) = sort_below(projection.input())?;
        let mapped = sort
            .iter()
            .map(|s| {
                let column = s.expr.downcast_ref::<Column>()?;
                let at = columns.iter().position(|c| c.index() == column.index())?;
                let expr = Arc::new(Column::new(&projection.expr()[at].alias, at));
                Some(PhysicalSortExpr { expr, options: s.options })
            })
            .collect::<Option<Vec<_>>>()?;
        let moved = ProjectionExec::try_new(projection.expr().to_vec(), below).ok()?;
        return Some((mapped, Arc::new(moved)));
    }
    if let Some(merge) = plan.downcast_ref::<SortPreservingMergeExec>() {
        let sort = merge.input().downcast_ref::<SortExec>()?;
        if merge.fetch().is_some() || sort.fetch().is_some() || merge.expr() != sort.expr() {
            return None;
        }
        return Some((sort.expr().iter().cloned().collect(), Arc::clone(sort.input())));
    }
    let sort = plan.downcast_ref::<SortExec>()?;
    if sort.fetch().is_some()
        || (sort.preserve_partitioning() && sort.input().output_partitioning().partition_count() != 1)
    {
        return None;
    }
    Some((sort.expr().iter().cloned().collect(), Arc::clone(sort.input())))
}

/// Whether `sort` puts the window's partitions together and orders each as the window asks, over
/// key types [`row_order`] sorts.
fn level_is_sorted_by(
    exprs: &[Arc<dyn WindowExpr>],
    sort: &[PhysicalSortExpr],
    input: &Arc<dyn ExecutionPlan>,
) -> bool {
    let Some(first) = exprs.first() else { return false };
    let partition_by = first.partition_by();
    let order_by = first.order_by();
    let same_window = exprs.iter().all(|w| w.partition_by() == partition_by && w.order_by() == order_by);
    if !same_window || sort.len() != partition_by.len() + order_by.len() {
        return false;
    }
    let (leading, trailing) = sort.split_at(partition_by.len());
    let partitions_first = leading.iter().all(|s| partition_by.iter().any(|p| p.as_ref() == s.expr.as_ref()))
        && partition_by.iter().all(|p| leading.iter().any(|s| p.as_ref() == s.expr.as_ref()));
    let schema = input.schema();
    let sortable = sort.iter().all(|s| s.expr.data_type(&schema).is_ok_and(|t| row_order::supports(&t)));
    partitions_first && trailing == order_by && sortable
}
