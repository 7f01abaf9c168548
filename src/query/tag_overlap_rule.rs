//! The tag-overlap rule: the usual SQL for "how many users carry tags A and B" — a per-user pivot
//! of `user_tags` into 0/1 indicator columns, then sums of their products — is answered from the
//! tag bitmaps: `sum(a * b)` over the pivot is |A ∩ B|, `sum(a)` is |A| and `count(*)` the users
//! carrying any of the tags the pivot reads. The aggregate becomes one row of constants.
//!
//! ```text
//! Aggregate: sum(f.a * f.b), count(*)                       Projection: 1234 AS "sum(f.a * f.b)", 5678 AS "count(*)"
//!   SubqueryAlias f                                  ==>      EmptyRelation (one row)
//!     Projection: max(CASE WHEN tag = 'A' THEN 1 ELSE 0 END) AS a, ...
//!       Aggregate: groupBy=[user_tags.user_id], aggr=[max(CASE ...), ...]
//!         Filter: tag IN ('A', 'B') / TableScan user_tags
//! ```
//!
//! It runs first among the optimizer rules, on the plan as the SQL planner wrote it (before
//! common subexpressions are extracted). Any other shape is left to the general path.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::common::tree_node::Transformed;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::expr::{AggregateFunction, Case};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, EmptyRelation, Expr, LogicalPlan, LogicalPlanBuilder, Operator, lit,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use roaring::{MultiOps, RoaringBitmap};

use crate::index::IndexSet;
use crate::index::format::BitmapKind;
use crate::query::store_tables::StoreTables;
use crate::tables::{TAG, Table, USER_ID};

/// Answers tag-overlap aggregates from the tag bitmaps (see the module doc).
#[derive(Debug)]
pub struct TagOverlapRule {
    pub use_indexes: Arc<AtomicBool>,
    pub index: Arc<IndexSet>,
    /// The store's tables: only the store's `user_tags` is answered from its tag bitmaps.
    pub tables: StoreTables,
}

impl OptimizerRule for TagOverlapRule {
    fn name(&self) -> &str {
        "persona_tag_overlap"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        if !self.use_indexes.load(Ordering::Relaxed) {
            return Ok(Transformed::no(plan));
        }
        let LogicalPlan::Aggregate(agg) = &plan else { return Ok(Transformed::no(plan)) };
        let Some(pivot) = Pivot::of(&agg.input, &self.tables) else { return Ok(Transformed::no(plan)) };
        let Some(outputs) = agg.aggr_expr.iter().map(|e| pivot.measure(e)).collect::<Option<Vec<_>>>() else {
            return Ok(Transformed::no(plan));
        };
        if !agg.group_expr.is_empty() {
            return Ok(Transformed::no(plan));
        }
        match self.answer(agg, &pivot, &outputs) {
            Ok(rewritten) => Ok(Transformed::yes(rewritten)),
            Err(e) => Err(e),
        }
    }
}

impl TagOverlapRule {
    fn tag(&self, tag: &str) -> Result<Arc<RoaringBitmap>> {
        self.index.get(BitmapKind::Tag, tag, "").map_err(|e| DataFusionError::External(Box::new(e)))
    }

    /// The aggregate's values as one row of constants.
    fn answer(&self, agg: &Aggregate, pivot: &Pivot, outputs: &[Measure]) -> Result<LogicalPlan> {
        // The pivot has a row for every user with a tag row the filter keeps.
        let kept: Vec<String> = match &pivot.allowed {
            Some(tags) => tags.clone(),
            None => self.index.tag_names(),
        };
        let kept_sets = kept.iter().map(|t| self.tag(t)).collect::<Result<Vec<_>>>()?;
        let domain = kept_sets.iter().map(|b| b.as_ref()).union();
        let mut exprs = Vec::with_capacity(outputs.len());
        for (measure, field) in outputs.iter().zip(agg.schema.fields()) {
            let value = match measure {
                Measure::Count => Some(domain.len()),
                // A sum over no rows is NULL.
                Measure::SumOfProduct(_) if domain.is_empty() => None,
                Measure::SumOfProduct(tags) => {
                    // An indicator of a tag the filter drops is 0 on every row.
                    if tags.iter().any(|t| !kept.contains(t)) {
                        Some(0)
                    } else {
                        let sets = tags.iter().map(|t| self.tag(t)).collect::<Result<Vec<_>>>()?;
                        Some(sets.iter().map(|b| b.as_ref()).intersection().len())
                    }
                }
            };
            let scalar = match value {
                Some(n) => ScalarValue::UInt64(Some(n)),
                None => ScalarValue::UInt64(None),
            };
            exprs.push(lit(scalar.cast_to(field.data_type())?).alias(field.name()));
        }
        let one_row = LogicalPlan::EmptyRelation(EmptyRelation {
            produce_one_row: true,
            schema: Arc::new(datafusion::common::DFSchema::empty()),
        });
        LogicalPlanBuilder::from(one_row).project(exprs)?.build()
    }
}

/// What an aggregate over the pivot computes.
#[derive(Debug)]
enum Measure {
    /// `count(*)`: the pivot's rows.
    Count,
    /// `sum(a * b * ...)` of indicator columns: users carrying every one of these tags.
    SumOfProduct(Vec<String>),
}

/// A per-user pivot of user_tags into indicator columns.
#[derive(Debug)]
struct Pivot {
    /// Output column name → the tag it indicates (the user_id column maps to `None`).
    columns: HashMap<String, Option<String>>,
    /// The tags the pivot's filter keeps (`None`: every tag).
    allowed: Option<Vec<String>>,
}

impl Pivot {
    /// Recognises `[SubqueryAlias] / Projection(user_id, indicator AS name, ...) / Aggregate(group
    /// by user_id: indicators) / [Filter on tag] / TableScan user_tags`.
    fn of(plan: &LogicalPlan, store: &StoreTables) -> Option<Pivot> {
        let plan = match plan {
            LogicalPlan::SubqueryAlias(a) => a.input.as_ref(),
            other => other,
        };
        let LogicalPlan::Projection(projection) = plan else { return None };
        let LogicalPlan::Aggregate(inner) = projection.input.as_ref() else { return None };
        let [Expr::Column(group)] = inner.group_expr.as_slice() else { return None };
        if group.name != USER_ID {
            return None;
        }
        // The inner aggregate's outputs: the group column, then one indicator per aggregate.
        let mut inner_columns: HashMap<String, Option<String>> = HashMap::new();
        inner_columns.insert(inner.schema.field(0).name().clone(), None);
        for (i, e) in inner.aggr_expr.iter().enumerate() {
            inner_columns.insert(inner.schema.field(i + 1).name().clone(), Some(indicator(e)?));
        }
        let mut columns = HashMap::new();
        for (e, field) in projection.expr.iter().zip(projection.schema.fields()) {
            let source = match e {
                Expr::Alias(a) => a.expr.as_ref(),
                other => other,
            };
            let target = match source {
                Expr::Column(c) => inner_columns.get(&c.name)?.clone(),
                other => Some(indicator(other)?),
            };
            columns.insert(field.name().clone(), target);
        }
        let allowed = tag_filter(&inner.input, store)?;
        Some(Pivot { columns, allowed })
    }

    fn measure(&self, e: &Expr) -> Option<Measure> {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = e else { return None };
        if params.filter.is_some() || !params.order_by.is_empty() {
            return None;
        }
        match (func.name(), params.args.as_slice()) {
            ("count", [arg]) if !params.distinct && matches!(arg, Expr::Literal(v, _) if !v.is_null()) => {
                Some(Measure::Count)
            }
            ("sum", [arg]) if !params.distinct => {
                let mut tags = Vec::new();
                self.product_of_indicators(arg, &mut tags)?;
                Some(Measure::SumOfProduct(tags))
            }
            _ => None,
        }
    }

    fn product_of_indicators(&self, e: &Expr, tags: &mut Vec<String>) -> Option<()> {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::Multiply, right }) => {
                self.product_of_indicators(left, tags)?;
                self.product_of_indicators(right, tags)
            }
            Expr::Column(c) => {
                tags.push(self.columns.get(&c.name)?.clone()?);
                Some(())
            }
            _ => None,
        }
    }
}

/// The tag of `max(CASE WHEN tag = 'X' THEN 1 ELSE 0 END)` (or `CASE tag WHEN 'X' ...`).
fn indicator(e: &Expr) -> Option<String> {
    let Expr::AggregateFunction(AggregateFunction { func, params }) = e else { return None };
    if func.name() != "max" || params.filter.is_some() {
        return None;
    }
    let [Expr::Case(Case { expr, when_then_expr, else_expr })] = params.args.as_slice() else { return None };
    let [(when, then)] = when_then_expr.as_slice() else { return None };
    // Exactly the number 1 or 0 (an integer, or a float equal to it): `THEN 1.5` is no indicator,
    // though it casts to the integer 1.
    let is_int = |e: &Expr, want: i64| match e {
        Expr::Literal(v, _) => exact_integer(v) == Some(want),
        _ => false,
    };
    if !is_int(then, 1) || !else_expr.as_deref().is_some_and(|e| is_int(e, 0)) {
        return None;
    }
    let mut values = Vec::new();
    match expr.as_deref() {
        None => crate::query::audience_rule::collect_values(when, TAG, &mut values)?,
        Some(Expr::Column(c)) if c.name == TAG => match when.as_ref() {
            Expr::Literal(v, _) => values.push(v.try_as_str().flatten()?.to_string()),
            _ => return None,
        },
        Some(_) => return None,
    }
    let [tag] = values.as_slice() else { return None };
    Some(tag.clone())
}

/// The value of an integer literal, or of a float literal that is exactly an integer.
fn exact_integer(v: &ScalarValue) -> Option<i64> {
    let float = |f: f64| (f.fract() == 0.0 && f.abs() < 1e15).then_some(f as i64);
    match v {
        ScalarValue::Int8(Some(n)) => Some(i64::from(*n)),
        ScalarValue::Int16(Some(n)) => Some(i64::from(*n)),
        ScalarValue::Int32(Some(n)) => Some(i64::from(*n)),
        ScalarValue::Int64(Some(n)) => Some(*n),
        ScalarValue::UInt8(Some(n)) => Some(i64::from(*n)),
        ScalarValue::UInt16(Some(n)) => Some(i64::from(*n)),
        ScalarValue::UInt32(Some(n)) => Some(i64::from(*n)),
        ScalarValue::UInt64(Some(n)) => i64::try_from(*n).ok(),
        ScalarValue::Float32(Some(f)) => float(f64::from(*f)),
        ScalarValue::Float64(Some(f)) => float(*f),
        _ => None,
    }
}

/// The tags a `[Filter] / TableScan user_tags` keeps: `Some(list)` for a filter on tag only,
/// `None` for no filter; anything else does not qualify (outer `None`).
fn tag_filter(plan: &LogicalPlan, store: &StoreTables) -> Option<Option<Vec<String>>> {
    let mut predicates: Vec<&Expr> = Vec::new();
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Filter(f) => {
                predicates.extend(split_conjunction(&f.predicate));
                node = &f.input;
            }
            LogicalPlan::TableScan(scan) if store.table_of(scan) == Some(Table::UserTags) && scan.fetch.is_none() => {
                for f in &scan.filters {
                    predicates.extend(split_conjunction(f));
                }
                break;
            }
            _ => return None,
        }
    }
    let mut allowed: Option<Vec<String>> = None;
    for p in predicates {
        let mut values = Vec::new();
        crate::query::audience_rule::collect_values(p, TAG, &mut values)?;
        allowed = Some(match allowed {
            None => values,
            Some(previous) => previous.into_iter().filter(|t| values.contains(t)).collect(),
        });
    }
    Some(allowed)
}
