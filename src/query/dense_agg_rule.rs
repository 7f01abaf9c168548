//! Per-user aggregates by row id: a logical optimizer rule that replaces
//! `Aggregate(GROUP BY user_id; count/sum/min/max/avg) ← [Filter | Projection | alias]* ← scan of a
//! fact table` with a [`DenseAggregate`] leaf, executed by `dense_agg_exec` as arrays indexed by
//! each fact row's user row id (no hashing of `user_id` strings, no repartition).
//!
//! ```text
//!   Projection (no user_id)          Projection
//!     Aggregate: gby=[user_id]   →     DenseAggregate: purchases, aggr=[…], filter=…  (no user_id column)
//!       Filter: channel_id = …
//!         TableScan: purchases
//! ```
//! Anything it does not fully understand (other aggregates, DISTINCT, FILTER, ORDER BY in an
//! aggregate, other group keys, joins, LIMIT in the scan, expressions it cannot bind to the scan's
//! columns) keeps DataFusion's plan. `SET persona.use_indexes = false` turns it off.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::datatypes::{DataType, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DFSchemaRef, Result};
use datafusion::datasource::source_as_provider;
use datafusion::functions_aggregate::average::Avg;
use datafusion::functions_aggregate::count::Count;
use datafusion::functions_aggregate::min_max::{Max, Min};
use datafusion::functions_aggregate::sum::Sum;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, Expr, ExprSchemable, Extension, LogicalPlan, Projection, UserDefinedLogicalNodeCore,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::query::dense_state::DenseAggKind;
use crate::query::facts_provider::FactsTable;
use crate::tables::{Table, USER_ID};

/// One aggregate of a [`DenseAggregate`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DenseAgg {
    pub kind: DenseAggKind,
    /// The value aggregated, bound to the node's read schema (`None` for `count(*)`).
    pub arg: Option<Expr>,
    /// The aggregate as the SQL planner named it, for EXPLAIN.
    pub name: String,
}

/// `GROUP BY user_id` over one fact table, computed by user row id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DenseAggregate {
    pub table: Table,
    /// The fact columns read, unqualified: the schema `predicate` and the arguments are bound to.
    pub read_schema: DFSchemaRef,
    /// The rows aggregated (all when `None`), over `read_schema`.
    pub predicate: Option<Expr>,
    pub aggs: Vec<DenseAgg>,
    /// Whether the output starts with the `user_id` column (omitted when no one above reads it,
    /// which spares reading the users' ids).
    pub emit_user_id: bool,
    /// The aggregate's output schema (without its first column when `emit_user_id` is false).
    pub schema: DFSchemaRef,
}

impl PartialOrd for DenseAggregate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (self.table, self.emit_user_id, format!("{:?}", self.aggs), format!("{:?}", self.predicate)).partial_cmp(&(
            other.table,
            other.emit_user_id,
            format!("{:?}", other.aggs),
            format!("{:?}", other.predicate),
        ))
    }
}

impl DenseAggregate {
    /// The EXPLAIN line, shared by the logical node and the physical operator.
    pub fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let aggs: Vec<&str> = self.aggs.iter().map(|a| a.name.as_str()).collect();
        write!(
            f,
            "table={}, gby=[{USER_ID}{}], aggr=[{}]",
            self.table,
            if self.emit_user_id { "" } else { " (not emitted)" },
            aggs.join(", ")
        )?;
        if let Some(p) = &self.predicate {
            write!(f, ", filter={}", ShortLists(p))?;
        }
        Ok(())
    }
}

/// An expression as EXPLAIN shows it, with an `IN` list of more than [`SHOWN_ITEMS`] items (the
/// products a products join became) cut to its first ones and a count.
struct ShortLists<'a>(&'a Expr);

/// Items of a long `IN` list that EXPLAIN shows.
const SHOWN_ITEMS: usize = 5;

impl fmt::Display for ShortLists<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let conjuncts = datafusion::logical_expr::utils::split_conjunction(self.0);
        for (i, e) in conjuncts.iter().enumerate() {
            if i > 0 {
                write!(f, " AND ")?;
            }
            match e {
                Expr::InList(l) if l.list.len() > SHOWN_ITEMS => {
                    let shown: Vec<String> = l.list.iter().take(SHOWN_ITEMS).map(|x| x.to_string()).collect();
                    let not = if l.negated { "NOT " } else { "" };
                    write!(f, "{} {not}IN ([{}, … {} values])", l.expr, shown.join(", "), l.list.len())?;
                }
                other => write!(f, "{other}")?,
            }
        }
        Ok(())
    }
}

impl UserDefinedLogicalNodeCore for DenseAggregate {
    fn name(&self) -> &str {
        "DenseAggregate"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    /// None: the expressions are bound to the fact file's columns, not to an input, and were
    /// optimized before the rule captured them.
    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DenseAggregate: ")?;
        self.describe(f)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}

/// The rule (runs last, after DataFusion's rules have pushed filters and pruned projections).
#[derive(Debug)]
pub struct DenseAggregateRule {
    pub use_indexes: Arc<AtomicBool>,
}

impl OptimizerRule for DenseAggregateRule {
    fn name(&self) -> &str {
        "persona_dense_aggregate"
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        if !self.use_indexes.load(Ordering::Relaxed) {
            return Ok(Transformed::no(plan));
        }
        plan.transform_down_with_subqueries(|node| {
            match &node {
                LogicalPlan::Projection(p) => {
                    if let LogicalPlan::Aggregate(agg) = p.input.as_ref()
                        && agg.group_expr.len() == 1
                    {
                        let group = Column::from(agg.schema.qualified_field(0));
                        let reads_group = p.expr.iter().any(|e| e.column_refs().contains(&group));
                        if !reads_group && let Some(dense) = dense_aggregate(agg, false) {
                            let input = Arc::new(extension(dense));
                            let projection = Projection::try_new(p.expr.clone(), input)?;
                            return Ok(Transformed::new(
                                LogicalPlan::Projection(projection),
                                true,
                                TreeNodeRecursion::Jump,
                            ));
                        }
                    }
                }
                LogicalPlan::Aggregate(agg) => {
                    if let Some(dense) = dense_aggregate(agg, true) {
                        return Ok(Transformed::new(extension(dense), true, TreeNodeRecursion::Jump));
                    }
                }
                _ => {}
            }
            Ok(Transformed::no(node))
        })
    }
}

fn extension(node: DenseAggregate) -> LogicalPlan {
    LogicalPlan::Extension(Extension { node: Arc::new(node) })
}

/// Whether an expression can be evaluated row by row on its table's columns alone: no subquery,
/// outer reference, aggregate or window, nothing volatile.
pub(crate) fn is_row_local(expr: &Expr) -> bool {
    // A volatile expression may be substituted into several places: it must not be.
    !expr.is_volatile()
        && !expr
            .exists(|e| {
                Ok(matches!(
                    e,
                    Expr::ScalarSubquery(_)
                        | Expr::Exists(_)
                        | Expr::InSubquery(_)
                        | Expr::SetComparison(_)
                        | Expr::OuterReferenceColumn(..)
                        | Expr::Placeholder(_)
                        | Expr::AggregateFunction(_)
                        | Expr::WindowFunction(_)
                        | Expr::GroupingSet(_)
                        | Expr::Unnest(_)
                ))
            })
            .unwrap_or(true)
}

/// `expr` with every column replaced by what it stands for over the scan's columns (unqualified),
/// if all columns are known.
fn bind(expr: &Expr, names: &HashMap<String, Expr>) -> Option<Expr> {
    if !is_row_local(expr) {
        return None;
    }
    let mut unknown = false;
    let bound = expr
        .clone()
        .transform(|e| match e {
            Expr::Column(c) => match names.get(&c.name) {
                Some(scan) => Ok(Transformed::new(scan.clone(), true, TreeNodeRecursion::Jump)),
                None => {
                    unknown = true;
                    Ok(Transformed::no(Expr::Column(c)))
                }
            },
            other => Ok(Transformed::no(other)),
        })
        .ok()?
        .data;
    (!unknown).then_some(bound)
}

/// `agg` as the plan of its dense form (with `user_id`), if it has one.
pub(crate) fn dense_plan(agg: &Aggregate) -> Option<LogicalPlan> {
    dense_aggregate(agg, true).map(extension)
}

/// The dense form of `agg`, if it has one.
fn dense_aggregate(agg: &Aggregate, emit_user_id: bool) -> Option<DenseAggregate> {
    let [Expr::Column(group)] = agg.group_expr.as_slice() else { return None };
    // Walk down to the scan through filters, column projections and aliases.
    let mut chain = Vec::new();
    let mut plan = agg.input.as_ref();
    let scan = loop {
        match plan {
            LogicalPlan::Filter(f) => {
                chain.push(plan);
                plan = f.input.as_ref();
            }
            LogicalPlan::Projection(p) => {
                chain.push(plan);
                plan = p.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(a) => plan = a.input.as_ref(),
            LogicalPlan::TableScan(scan) => break scan,
            _ => return None,
        }
    };
    if scan.fetch.is_some() {
        return None;
    }
    let provider = source_as_provider(&scan.source).ok()?;
    let facts = (provider.as_ref() as &dyn TableProvider).downcast_ref::<FactsTable>()?;
    let table_schema = facts.schema();
    let mut names: HashMap<String, Expr> = scan
        .projected_schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), Expr::Column(Column::new_unqualified(f.name()))))
        .collect();
    let mut predicates = Vec::new();
    for filter in &scan.filters {
        predicates.push(bind(filter, &names)?);
    }
    for node in chain.iter().rev() {
        match node {
            LogicalPlan::Filter(f) => predicates.push(bind(&f.predicate, &names)?),
            LogicalPlan::Projection(p) => {
                let mut renamed = HashMap::new();
                for (i, e) in p.expr.iter().enumerate() {
                    let e = match e {
                        Expr::Alias(a) => a.expr.as_ref(),
                        e => e,
                    };
                    renamed.insert(p.schema.field(i).name().clone(), bind(e, &names)?);
                }
                names = renamed;
            }
            _ => return None,
        }
    }
    if names.get(&group.name) != Some(&Expr::Column(Column::new_unqualified(USER_ID))) {
        return None;
    }
    // The read schema: every fact column the predicate or an argument uses, in table order.
    // Filters the scan was offered stay in the plan above it too (they are inexact): each once.
    let mut conjuncts: Vec<Expr> = Vec::new();
    for p in &predicates {
        for c in split_conjunction(p) {
            if !conjuncts.contains(c) {
                conjuncts.push(c.clone());
            }
        }
    }
    let predicate = conjuncts.into_iter().reduce(Expr::and);
    let mut args = Vec::with_capacity(agg.aggr_expr.len());
    for e in &agg.aggr_expr {
        let e = match e {
            Expr::Alias(a) => a.expr.as_ref(),
            e => e,
        };
        let Expr::AggregateFunction(AggregateFunction { func, params }) = e else { return None };
        if params.distinct || params.filter.is_some() || !params.order_by.is_empty() || params.args.len() != 1 {
            return None;
        }
        args.push((func, bind(&params.args[0], &names)?));
    }
    let mut used: Vec<String> = Vec::new();
    for e in predicate.iter().chain(args.iter().map(|(_, a)| a)) {
        for c in e.column_refs() {
            if !used.contains(&c.name) {
                used.push(c.name.clone());
            }
        }
    }
    let fields: Vec<_> =
        table_schema.fields().iter().filter(|f| used.contains(f.name())).map(|f| f.as_ref().clone()).collect();
    if fields.len() != used.len() {
        return None;
    }
    let read_schema = Arc::new(DFSchema::try_from(Schema::new(fields)).ok()?);
    let mut aggs = Vec::with_capacity(args.len());
    for (i, (func, arg)) in args.into_iter().enumerate() {
        let out = agg.schema.field(1 + i).data_type();
        let input = arg.get_type(read_schema.as_ref()).ok()?;
        let kind = aggregate_kind(func.inner().as_ref(), &arg, &input, out)?;
        let arg = kind.has_input().then_some(arg);
        aggs.push(DenseAgg { kind, arg, name: agg.schema.field(1 + i).name().clone() });
    }
    if let Some(p) = &predicate
        && p.get_type(read_schema.as_ref()).ok()? != DataType::Boolean
    {
        return None;
    }
    let schema = if emit_user_id {
        Arc::clone(&agg.schema)
    } else {
        let fields = agg.schema.iter().skip(1).map(|(q, f)| (q.cloned(), Arc::clone(f))).collect();
        Arc::new(DFSchema::new_with_metadata(fields, agg.schema.metadata().clone()).ok()?)
    };
    Some(DenseAggregate { table: facts.table(), read_schema, predicate, aggs, emit_user_id, schema })
}

fn is_int_like(t: &DataType) -> bool {
    matches!(t, DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Date32)
        || matches!(t, DataType::Timestamp(..))
}

/// The dense kind of aggregate `func` over `arg` of type `input` giving `out`, if supported with
/// the same result type as DataFusion's.
fn aggregate_kind(
    func: &dyn datafusion::logical_expr::AggregateUDFImpl,
    arg: &Expr,
    input: &DataType,
    out: &DataType,
) -> Option<DenseAggKind> {
    use DenseAggKind as K;
    if func.is::<Count>() {
        let counts_rows = matches!(arg, Expr::Literal(v, _) if !v.is_null());
        return (*out == DataType::Int64).then_some(if counts_rows { K::CountRows } else { K::Count });
    }
    let float = *input == DataType::Float64;
    let int = matches!(input, DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64);
    if func.is::<Sum>() {
        return match out {
            DataType::Float64 if float => Some(K::SumFloat),
            DataType::Int64 if int => Some(K::SumInt),
            _ => None,
        };
    }
    if func.is::<Avg>() {
        return (float && *out == DataType::Float64).then_some(K::Avg);
    }
    let (is_min, is_max) = (func.is::<Min>(), func.is::<Max>());
    if !(is_min || is_max) || input != out {
        return None;
    }
    match (float, is_int_like(input), is_min) {
        (true, _, true) => Some(K::MinFloat),
        (true, _, false) => Some(K::MaxFloat),
        (false, true, true) => Some(K::MinInt),
        (false, true, false) => Some(K::MaxInt),
        _ => None,
    }
}
