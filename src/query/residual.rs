//! Users filters that the bitmaps answer only in part, e.g. `has_tag('vip') OR email LIKE
//! '%@qq.com'`: every part that translates exactly ([`translate`]) is evaluated to its TRUE and
//! FALSE sets and replaced by `persona_row_set(__row_id)`; what is left is evaluated on the rows
//! by DataFusion's own physical expressions. The parts also bound the rows worth reading: the
//! users for whom the whole filter may still be TRUE (`maybe_true`), so that
//! `has_tag('vip') AND (email LIKE '%@qq.com' OR points > 10)` reads only the tag's members.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, Result};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, ScalarUDF, col};
use roaring::RoaringBitmap;

use crate::index::IndexSet;
use crate::query::bitmap_expr::{evaluate, translate};
use crate::query::udf::RowSet;
use crate::tables::ROW_ID_COLUMN;

/// A users filter with its bitmap parts replaced, and what the bitmaps know of it.
#[derive(Debug)]
pub struct Residual {
    /// The filter over the users columns and `__row_id`.
    pub expr: Expr,
    /// Users for whom the filter may be TRUE (`None`: anyone).
    pub maybe_true: Option<RoaringBitmap>,
    /// Users for whom the filter may be FALSE (`None`: anyone).
    maybe_false: Option<RoaringBitmap>,
}

/// Whether `filter` has a part the bitmaps answer and can be evaluated row by row in a users scan:
/// no subqueries, no references to outer queries, nothing volatile.
pub fn applies(filter: &Expr, index: &IndexSet) -> bool {
    crate::query::dense_agg_rule::is_row_local(filter)
        && filter.exists(|e| Ok(translate(e, index).is_some())).unwrap_or(false)
}

/// Splits `filter` (see the module doc). Column qualifiers are dropped: the filter is evaluated
/// on the users scan's own rows.
pub fn split(filter: &Expr, index: &IndexSet) -> Result<Residual> {
    if let Some(t) = translate(filter, index) {
        let when_true = evaluate(&t.when_true, index)?;
        let when_false = evaluate(&t.when_false, index)?;
        return Ok(Residual {
            expr: row_set(when_true.clone(), when_false.clone()),
            maybe_true: Some(when_true),
            maybe_false: Some(when_false),
        });
    }
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::And | Operator::Or), right }) => {
            let (l, r) = (split(left, index)?, split(right, index)?);
            let expr = Expr::BinaryExpr(BinaryExpr::new(Box::new(l.expr), *op, Box::new(r.expr)));
            Ok(if *op == Operator::And {
                Residual {
                    expr,
                    maybe_true: intersect(l.maybe_true, r.maybe_true),
                    maybe_false: union(l.maybe_false, r.maybe_false),
                }
            } else {
                Residual {
                    expr,
                    maybe_true: union(l.maybe_true, r.maybe_true),
                    maybe_false: intersect(l.maybe_false, r.maybe_false),
                }
            })
        }
        Expr::Not(inner) => {
            let inner = split(inner, index)?;
            Ok(Residual {
                expr: Expr::Not(Box::new(inner.expr)),
                maybe_true: inner.maybe_false,
                maybe_false: inner.maybe_true,
            })
        }
        other => {
            // Translatable parts deeper inside (a CASE, IS TRUE, coalesce...) still become row sets.
            let expr = other
                .clone()
                .transform_down(|e| {
                    if let Some(t) = translate(&e, index) {
                        let set = row_set(evaluate(&t.when_true, index)?, evaluate(&t.when_false, index)?);
                        return Ok(Transformed::new(set, true, TreeNodeRecursion::Jump));
                    }
                    match e {
                        Expr::Column(c) if c.relation.is_some() => {
                            Ok(Transformed::yes(Expr::Column(Column::new_unqualified(c.name))))
                        }
                        other => Ok(Transformed::no(other)),
                    }
                })?
                .data;
            Ok(Residual { expr, maybe_true: None, maybe_false: None })
        }
    }
}

fn row_set(when_true: RoaringBitmap, when_false: RoaringBitmap) -> Expr {
    let udf = ScalarUDF::new_from_impl(RowSet::new(Arc::new(when_true), Arc::new(when_false)));
    udf.call(vec![col(Column::new_unqualified(ROW_ID_COLUMN))])
}

fn intersect(a: Option<RoaringBitmap>, b: Option<RoaringBitmap>) -> Option<RoaringBitmap> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a & b),
        (a, None) => a,
        (None, b) => b,
    }
}

fn union(a: Option<RoaringBitmap>, b: Option<RoaringBitmap>) -> Option<RoaringBitmap> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a | b),
        _ => None,
    }
}
