//! Physical planning of Persona's own logical nodes: DataFusion's planner, plus an extension
//! planner that turns a [`DenseAggregate`] into a [`DenseAggregateExec`] over the snapshot's files.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session as CatalogSession;
use datafusion::common::{DFSchema, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

use crate::query::bitmap_scan::UsersFile;
use crate::query::const_compare::ConstComparison;
use crate::query::dense_agg_exec::{DenseAggregateExec, DenseFilter, DenseSources};
use crate::query::dense_agg_rule::DenseAggregate;
use crate::query::dict_filter::DictTest;
use crate::store::Snapshot;

/// The session's query planner.
#[derive(Debug)]
pub struct PersonaQueryPlanner {
    pub dense: Arc<DenseAggregatePlanner>,
}

#[async_trait]
impl QueryPlanner for PersonaQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn CatalogSession,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let planners: Vec<Arc<dyn ExtensionPlanner + Send + Sync>> = vec![Arc::clone(&self.dense) as _];
        DefaultPhysicalPlanner::with_extension_planners(planners).create_physical_plan(logical_plan, session).await
    }
}

/// Plans [`DenseAggregate`] nodes over one snapshot.
#[derive(Debug)]
pub struct DenseAggregatePlanner {
    pub snapshot: Snapshot,
    /// The users files, ordered by first row id (row id → `user_id`).
    pub users: Vec<UsersFile>,
}

#[async_trait]
impl ExtensionPlanner for DenseAggregatePlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn CatalogSession,
        planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<DenseAggregate>() else { return Ok(None) };
        let workers = session.config().target_partitions();
        let physical = |e: &Expr, schema: &DFSchema| planner.create_physical_expr(e, schema, session, planning_ctx);
        Ok(Some(Arc::new(dense_exec(node, &self.snapshot, self.users.clone(), workers, &physical)?)))
    }
}

/// Turns a logical expression over a schema into a physical one.
pub type PhysicalExprOf<'a> = dyn Fn(&Expr, &DFSchema) -> Result<Arc<dyn PhysicalExpr>> + 'a;

/// The operator of a [`DenseAggregate`] over `snapshot`'s fact files; `physical` turns its
/// expressions into physical ones. `users` (row id → `user_id`) may be empty when the node does
/// not emit `user_id`.
pub fn dense_exec(
    node: &DenseAggregate,
    snapshot: &Snapshot,
    users: Vec<UsersFile>,
    workers: usize,
    physical: &PhysicalExprOf<'_>,
) -> Result<DenseAggregateExec> {
    let schema = node.read_schema.as_ref();
    // Equality tests on string columns read nowhere else are answered on dictionary keys.
    let conjuncts: Vec<&Expr> = node.predicate.as_ref().map(split_conjunction).unwrap_or_default();
    let mut tests: Vec<DictTest> = conjuncts.iter().filter_map(|e| DictTest::from_expr(e, schema)).collect();
    let mut residual: Vec<Expr> =
        conjuncts.iter().filter(|e| DictTest::from_expr(e, schema).is_none()).map(|e| (*e).clone()).collect();
    let elsewhere: Vec<String> = residual
        .iter()
        .chain(node.aggs.iter().filter_map(|a| a.arg.as_ref()))
        .flat_map(|e| e.column_refs().into_iter().map(|c| c.name.clone()))
        .collect();
    tests.retain(|t| {
        let keep = !elsewhere.contains(&t.column);
        if !keep {
            residual.push(Expr::from(t.clone()));
        }
        keep
    });
    // Comparisons of fixed-width columns with constants (the `ts` window) run on the values.
    let mut comparisons = Vec::new();
    residual.retain(|e| match ConstComparison::from_expr(e, schema) {
        Some(c) if schema.index_of_column_by_name(None, &c.column).is_some() => {
            comparisons.push(c);
            false
        }
        _ => true,
    });
    let comparisons = crate::query::const_compare::merge_ranges(comparisons)
        .into_iter()
        .filter_map(|c| Some((schema.index_of_column_by_name(None, &c.column)?, c)))
        .collect();
    let predicate = match residual.into_iter().reduce(Expr::and) {
        Some(p) => Some(physical(&p, schema)?),
        None => None,
    };
    let mut args = Vec::with_capacity(node.aggs.len());
    for agg in &node.aggs {
        args.push(match &agg.arg {
            Some(a) => Some(physical(a, schema)?),
            None => None,
        });
    }
    let sources = DenseSources {
        root: snapshot.root().to_path_buf(),
        facts: snapshot.manifest().files(node.table).to_vec(),
        users,
        ts_window: ts_window(&conjuncts),
    };
    Ok(DenseAggregateExec::new(node.clone(), sources, DenseFilter { tests, comparisons, predicate }, args, workers))
}

/// The inclusive `ts` window (microseconds) that comparisons of `ts` with timestamp literals
/// among `conjuncts` bound rows to, if any do.
pub fn ts_window(conjuncts: &[&Expr]) -> Option<(i64, i64)> {
    use datafusion::logical_expr::Operator;
    let (mut from, mut to) = (i64::MIN, i64::MAX);
    let mut bounded = false;
    for (op, v) in conjuncts.iter().filter_map(|e| crate::query::audience_rule::ts_bound(e)) {
        match op {
            Operator::Gt => from = from.max(v.saturating_add(1)),
            Operator::GtEq => from = from.max(v),
            Operator::Lt => to = to.min(v.saturating_sub(1)),
            Operator::LtEq => to = to.min(v),
            Operator::Eq => {
                from = from.max(v);
                to = to.min(v);
            }
            _ => continue,
        }
        bounded = true;
    }
    bounded.then_some((from, to))
}
