//! `purchases JOIN products ON product_id` where nothing above the join reads a products column
//! (the products side only filters: `WHERE pr.brand = 'Lumina'`): the join keeps exactly the
//! purchases whose product passes, so it becomes `Filter: product_id IN (those products)` over
//! the purchases side, the list read from the products file at planning time. The rules after
//! it then see one fact table: a per-user aggregate over it is a dense aggregate
//! (`GROUP BY user_id HAVING sum(amount) > 500` of one brand's purchases), not a hash join and a
//! hash aggregate.
//!
//! Exact only because a product id is one product: the importer upserts products by their key,
//! and a list with a repeated id (a store that somehow holds two rows of one product) leaves the
//! join alone, as does a products side that is anything but filters and plain projections over
//! the store's own products table (told by its provider), a join with another condition, or a
//! list longer than [`MAX_PRODUCTS`]. Off with the indexes, so that the general path stays
//! DataFusion's own.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{ExprSchema, Result, ScalarValue};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, Filter, Join, JoinType, LogicalPlan, lit};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::index::IndexSet;
use crate::query::audience_rule::strip_cast;
use crate::query::store_tables::StoreTables;
use crate::tables::{PRODUCT_ID, Table};

/// Longer lists leave the join as it is (a hash join of a large products side is as good).
pub const MAX_PRODUCTS: usize = 100_000;

/// See the module doc.
#[derive(Debug)]
pub struct ProductJoinRule {
    pub use_indexes: Arc<AtomicBool>,
    pub index: Arc<IndexSet>,
    pub tables: StoreTables,
}

impl OptimizerRule for ProductJoinRule {
    fn name(&self) -> &str {
        "persona_product_join"
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        if !self.use_indexes.load(Ordering::Relaxed) {
            return Ok(Transformed::no(plan));
        }
        plan.transform_up_with_subqueries(|node| {
            // The node above the join: a projection or an aggregate, whose expressions say which
            // columns of the join are read.
            if !matches!(node, LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_)) {
                return Ok(Transformed::no(node));
            }
            let inputs = node.inputs();
            let [LogicalPlan::Join(join)] = inputs.as_slice() else { return Ok(Transformed::no(node)) };
            let Some(filtered) = self.as_filter(join, &node)? else { return Ok(Transformed::no(node)) };
            let exprs = node.expressions();
            Ok(Transformed::yes(node.with_new_exprs(exprs, vec![filtered])?))
        })
    }
}

impl ProductJoinRule {
    /// The purchases side of `join` filtered by the products its other side keeps, when the join
    /// is one this rule replaces and `above` reads only purchases columns.
    fn as_filter(&self, join: &Join, above: &LogicalPlan) -> Result<Option<LogicalPlan>> {
        let [(l, r)] = join.on.as_slice() else { return Ok(None) };
        if join.join_type != JoinType::Inner || join.filter.is_some()
            // `IS NOT DISTINCT FROM` keys match NULLs, which an IN list would not.
            || join.null_equality == datafusion::common::NullEquality::NullEqualsNull
        {
            return Ok(None);
        }
        let (Expr::Column(l), Expr::Column(r)) = (strip_cast(l), strip_cast(r)) else { return Ok(None) };
        if l.name != PRODUCT_ID || r.name != PRODUCT_ID {
            return Ok(None);
        }
        // Which side is the products table (filtered), which the purchases.
        let (purchases, key, products) = match (self.products_filters(&join.right), self.products_filters(&join.left)) {
            (Some(p), _) if self.reads_purchases(&join.left) => (&join.left, l, p),
            (_, Some(p)) if self.reads_purchases(&join.right) => (&join.right, r, p),
            _ => return Ok(None),
        };
        // Nothing above may read a column of the products side.
        let schema = purchases.schema();
        let mut reads_only_purchases = true;
        for e in above.expressions() {
            for c in e.column_refs() {
                reads_only_purchases &= schema.has_column(c);
            }
        }
        if !reads_only_purchases || !schema.has_column(key) {
            return Ok(None);
        }
        let literal = match schema.field_from_column(key)?.data_type() {
            DataType::Utf8View => |s: String| ScalarValue::Utf8View(Some(s)),
            DataType::Utf8 => |s: String| ScalarValue::Utf8(Some(s)),
            DataType::LargeUtf8 => |s: String| ScalarValue::LargeUtf8(Some(s)),
            _ => return Ok(None),
        };
        let Ok(ids) = crate::query::fact_filter::matching_products(&self.index, &products) else { return Ok(None) };
        let distinct: HashSet<&String> = ids.iter().collect();
        if distinct.len() != ids.len() || ids.len() > MAX_PRODUCTS {
            return Ok(None);
        }
        let predicate = if ids.is_empty() {
            lit(false)
        } else {
            Expr::Column(key.clone()).in_list(ids.into_iter().map(|id| lit(literal(id))).collect(), false)
        };
        Ok(Some(LogicalPlan::Filter(Filter::try_new(predicate, Arc::clone(purchases))?)))
    }

    /// The predicates of a products side made of filters, plain projections and aliases over the
    /// store's products table (`None` for anything else).
    fn products_filters(&self, plan: &LogicalPlan) -> Option<Vec<Expr>> {
        let mut predicates = Vec::new();
        let mut node = plan;
        loop {
            match node {
                LogicalPlan::SubqueryAlias(a) => node = &a.input,
                LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => node = &p.input,
                LogicalPlan::Filter(f) => {
                    predicates.extend(split_conjunction(&f.predicate).into_iter().cloned());
                    node = &f.input;
                }
                LogicalPlan::TableScan(scan) => {
                    if scan.fetch.is_some() || self.tables.table_of(scan) != Some(Table::Products) {
                        return None;
                    }
                    for f in &scan.filters {
                        predicates.extend(split_conjunction(f).into_iter().cloned());
                    }
                    return Some(predicates);
                }
                _ => return None,
            }
        }
    }

    /// Whether `plan` reads the store's purchases (whatever it does with them).
    fn reads_purchases(&self, plan: &LogicalPlan) -> bool {
        plan.exists(|n| Ok(matches!(n, LogicalPlan::TableScan(s) if self.tables.table_of(s) == Some(Table::Purchases))))
            .unwrap_or(false)
    }
}
