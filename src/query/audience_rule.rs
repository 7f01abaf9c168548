//! The audience rule: a semi or anti join from the users table into `user_tags` (on a tag) or
//! `purchases` (on a whole-day time window) — what `EXISTS`, `NOT EXISTS`, `IN` and `NOT IN`
//! subqueries become — is replaced by a filter `persona_audience(user_id, spec)` on users, which
//! the next optimizer pass pushes into the users scan as an exact bitmap. Anything it does not
//! fully understand is left alone and runs on the general path.
//!
//! ```text
//! LeftAnti Join(users.user_id = sq.user_id)           Filter(NOT persona_audience(u.user_id, purchased days 20668..=20757))
//!   users ...                               ==>         users ...
//!   SubqueryAlias sq / Projection / Filter(p.ts >= .. AND p.ts < ..) / TableScan purchases
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, JoinType, LogicalPlan, LogicalPlanBuilder, Operator, ScalarUDF, expr::InList, lit,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use crate::index::{DAY_MICROS, day_of};
use crate::query::bitmap_expr::AudienceSpec;
use crate::query::users_provider::UsersTable;

/// Rewrites semi/anti joins into the facts as users filters (see the module doc).
#[derive(Debug)]
pub struct AudienceRule {
    pub udf: Arc<ScalarUDF>,
    pub use_indexes: Arc<AtomicBool>,
}

impl OptimizerRule for AudienceRule {
    fn name(&self) -> &str {
        "persona_audience"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        if !self.use_indexes.load(Ordering::Relaxed) {
            return Ok(Transformed::no(plan));
        }
        let LogicalPlan::Join(join) = &plan else { return Ok(Transformed::no(plan)) };
        if !matches!(join.join_type, JoinType::LeftSemi | JoinType::LeftAnti)
            || join.filter.is_some()
            || join.on.len() != 1
        {
            return Ok(Transformed::no(plan));
        }
        let (left_key, right_key) = &join.on[0];
        let (Expr::Column(left_col), Expr::Column(right_col)) = (left_key, right_key) else {
            return Ok(Transformed::no(plan));
        };
        if left_col.name != "user_id" || right_col.name != "user_id" || !reads_users(&join.left) {
            return Ok(Transformed::no(plan));
        }
        let Some(spec) = fact_audience(&join.right) else { return Ok(Transformed::no(plan)) };
        let spec_json =
            serde_json::to_string(&spec).map_err(|e| datafusion::common::DataFusionError::External(Box::new(e)))?;
        let call = self.udf.call(vec![left_key.clone(), lit(spec_json)]);
        let predicate = if join.join_type == JoinType::LeftAnti { Expr::Not(Box::new(call)) } else { call };
        let rewritten = LogicalPlanBuilder::from(join.left.as_ref().clone()).filter(predicate)?.build()?;
        Ok(Transformed::yes(rewritten))
    }
}

/// True if `plan` is the users table, possibly aliased, filtered or projected to plain columns.
fn reads_users(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::SubqueryAlias(a) => reads_users(&a.input),
        LogicalPlan::Filter(f) => reads_users(&f.input),
        LogicalPlan::Projection(p) => p.expr.iter().all(|e| matches!(e, Expr::Column(_))) && reads_users(&p.input),
        LogicalPlan::TableScan(scan) => source_as_provider(&scan.source).ok().is_some_and(|p| {
            <dyn datafusion::catalog::TableProvider>::downcast_ref::<UsersTable>(p.as_ref()).is_some()
        }),
        _ => false,
    }
}

/// The audience a subquery side of a semi/anti join describes, if it is one we answer exactly.
fn fact_audience(plan: &LogicalPlan) -> Option<AudienceSpec> {
    let mut predicates: Vec<Expr> = Vec::new();
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::SubqueryAlias(a) => node = &a.input,
            LogicalPlan::Projection(p) => {
                if !p.expr.iter().all(|e| matches!(e, Expr::Column(c) if c.name == "user_id")) {
                    return None;
                }
                node = &p.input;
            }
            LogicalPlan::Filter(f) => {
                predicates.extend(split_conjunction(&f.predicate).into_iter().cloned());
                node = &f.input;
            }
            LogicalPlan::TableScan(scan) => {
                if scan.fetch.is_some() {
                    return None;
                }
                // Inexact pushdown leaves the same predicate both in the Filter and in the scan.
                for f in &scan.filters {
                    for p in split_conjunction(f) {
                        if !predicates.contains(p) {
                            predicates.push(p.clone());
                        }
                    }
                }
                return match scan.table_name.table() {
                    "user_tags" => tag_audience(&predicates),
                    "purchases" => purchase_window(&predicates),
                    _ => None,
                };
            }
            _ => return None,
        }
    }
}

/// `tag = 'A'`, `tag IN ('A', 'B')` or `tag = 'A' OR tag = 'B'`, and nothing else.
fn tag_audience(predicates: &[Expr]) -> Option<AudienceSpec> {
    let [only] = predicates else { return None };
    let mut tags = Vec::new();
    collect_tags(only, &mut tags)?;
    Some(AudienceSpec::TagAny(tags))
}

fn collect_tags(e: &Expr, tags: &mut Vec<String>) -> Option<()> {
    let text = |e: &Expr| match e {
        Expr::Literal(v, _) => v.try_as_str().flatten().map(str::to_string),
        _ => None,
    };
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            collect_tags(left, tags)?;
            collect_tags(right, tags)
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), v) | (v, Expr::Column(c)) if c.name == "tag" => {
                tags.push(text(v)?);
                Some(())
            }
            _ => None,
        },
        Expr::InList(InList { expr, list, negated: false }) => match expr.as_ref() {
            Expr::Column(c) if c.name == "tag" => {
                for item in list {
                    tags.push(text(item)?);
                }
                Some(())
            }
            _ => None,
        },
        _ => None,
    }
}

/// `ts >= a AND ts < b` (either bound may be missing) where the bounds fall on midnights (UTC), so
/// that the window is whole days of the purchase-day bitmaps.
fn purchase_window(predicates: &[Expr]) -> Option<AudienceSpec> {
    let (mut first_day, mut last_day) = (i64::MIN / 2, i64::MAX / 2);
    if predicates.is_empty() {
        return None;
    }
    for p in predicates {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = p else { return None };
        let (op, micros) = match (strip_cast(left), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) if c.name == "ts" => (*op, timestamp_micros(v)?),
            _ => match (left.as_ref(), strip_cast(right)) {
                (Expr::Literal(v, _), Expr::Column(c)) if c.name == "ts" => (op.swap()?, timestamp_micros(v)?),
                _ => return None,
            },
        };
        if micros.rem_euclid(DAY_MICROS) != 0 {
            return None;
        }
        let day = day_of(micros);
        match op {
            Operator::GtEq => first_day = first_day.max(day),
            Operator::Lt => last_day = last_day.min(day - 1),
            _ => return None,
        }
    }
    Some(AudienceSpec::PurchasedDays { first_day, last_day })
}

fn strip_cast(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => strip_cast(&c.expr),
        Expr::TryCast(c) => strip_cast(&c.expr),
        other => other,
    }
}

/// A timestamp literal in microseconds (UTC), whatever its unit; zoned literals are instants too.
fn timestamp_micros(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampSecond(Some(s), _) => s.checked_mul(1_000_000),
        ScalarValue::TimestampMillisecond(Some(ms), _) => ms.checked_mul(1000),
        ScalarValue::TimestampMicrosecond(Some(us), _) => Some(*us),
        ScalarValue::TimestampNanosecond(Some(ns), _) => (ns % 1000 == 0).then_some(ns / 1000),
        _ => None,
    }
}
