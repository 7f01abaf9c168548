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

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Expr, Filter, Join, JoinType, LogicalPlan, LogicalPlanBuilder, Operator, Projection,
    ScalarUDF, expr::InList, lit,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use crate::index::build::{
    FAMILY_EVENT_TYPE, FAMILY_EVENT_TYPE_CHANNEL, FAMILY_PURCHASE_CATEGORY, FAMILY_PURCHASE_CHANNEL, FAMILY_PURCHASES,
    event_pair_of, stream_name,
};
use crate::index::{DAY_MICROS, EdgeScan, IndexSet};
use crate::query::bitmap_expr::AudienceSpec;
use crate::query::dense_agg_rule::DenseAggregate;
use crate::query::fact_filter::{FactAggregate, FactFilter};
use crate::query::person_id;
use crate::query::store_tables::StoreTables;
use crate::query::users_provider::UsersTable;
use crate::tables::{CATEGORY, CHANNEL_ID, EVENT_TYPE, PRODUCT_ID, TAG, TS, Table, USER_ID};

/// Rewrites semi/anti joins into the facts, and distinct users of the facts, as users filters
/// (see the module doc).
#[derive(Debug)]
pub struct AudienceRule {
    pub udf: Arc<ScalarUDF>,
    pub use_indexes: Arc<AtomicBool>,
    pub index: Arc<IndexSet>,
    /// The users table, scanned in place of the facts when only their distinct users are asked.
    pub users: Arc<dyn TableProvider>,
    /// The store's tables, told apart from other tables of the same name.
    pub tables: StoreTables,
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
        match &plan {
            LogicalPlan::Join(join) => match self.semi_join(join)? {
                Some(rewritten) => Ok(Transformed::yes(rewritten)),
                None => Ok(Transformed::no(plan)),
            },
            LogicalPlan::Aggregate(agg) => self.distinct_users(&plan, agg),
            LogicalPlan::Projection(projection) => match self.per_user_set(projection)? {
                Some(rewritten) => Ok(Transformed::yes(rewritten)),
                None => Ok(Transformed::no(plan)),
            },
            LogicalPlan::Filter(filter) => {
                if let Some(rewritten) = self.outer_join_anti(filter)? {
                    return Ok(Transformed::yes(rewritten));
                }
                match self.mark_filter(filter)? {
                    Some(rewritten) => Ok(Transformed::yes(rewritten)),
                    None => Ok(Transformed::no(plan)),
                }
            }
            _ => Ok(Transformed::no(plan)),
        }
    }
}

impl AudienceRule {
    /// A semi, anti or mark join of users on user_id into facts the indexes answer, as a users
    /// filter (semi, anti) or a users column (mark: what `EXISTS ... OR ...` decorrelates into).
    fn semi_join(&self, join: &Join) -> Result<Option<LogicalPlan>> {
        let Some(left_key) = user_id_semi_join(join) else { return Ok(None) };
        if !reads_users(&join.left) {
            return Ok(None);
        }
        let Some(spec) = self.fact_spec(&join.right) else { return Ok(None) };
        if join.join_type == JoinType::LeftMark {
            // Answered where the mark is read: see `mark_filter`.
            return Ok(None);
        }
        let left = LogicalPlanBuilder::from(join.left.as_ref().clone());
        let predicate = self.call(left_key.clone(), &spec, join.join_type == JoinType::LeftAnti)?;
        Ok(Some(left.filter(predicate)?.build()?))
    }

    /// A filter reading the marks of mark joins (what `EXISTS (...) OR ...` decorrelates into),
    /// with only plain-column projections and mark joins between it and the users: each mark
    /// becomes the marker of its subquery's audience inside the predicate, and the joins go.
    /// Marks are substituted where they are read rather than computed as columns: two columns
    /// named `mark` (of different subqueries) would reach the physical plan with one name.
    fn mark_filter(&self, filter: &Filter) -> Result<Option<LogicalPlan>> {
        let mut marks: Vec<(Column, Expr)> = Vec::new();
        let Some(base) = self.strip_marks(&filter.input, &mut marks)? else { return Ok(None) };
        if marks.is_empty() {
            return Ok(None);
        }
        let predicate = substitute_marks(filter.predicate.clone(), &marks)?;
        let filtered = LogicalPlanBuilder::from(base).filter(predicate.data)?.build()?;
        // The filter's own columns, marks included, for whatever reads them above.
        let exprs: Vec<Expr> = filter
            .input
            .schema()
            .iter()
            .map(|(qualifier, field)| {
                let column = Column::new(qualifier.cloned(), field.name());
                match marks.iter().find(|(m, _)| *m == column) {
                    Some((_, marker)) => marker.clone().alias_qualified(qualifier.cloned(), field.name()),
                    None => Expr::Column(column),
                }
            })
            .collect();
        Ok(Some(LogicalPlanBuilder::from(filtered).project(exprs)?.build()?))
    }

    /// `plan` without its mark joins (and their mark columns), if every one of them is answered
    /// by the indexes and the plan under them reads users; filters and projections in between
    /// (DataFusion pushes parts of the predicate down and extracts common subexpressions) read
    /// the markers instead of the marks. The marks go to `marks` as (column, marker).
    fn strip_marks(&self, plan: &LogicalPlan, marks: &mut Vec<(Column, Expr)>) -> Result<Option<LogicalPlan>> {
        match plan {
            LogicalPlan::Projection(p) => {
                let Some(input) = self.strip_marks(&p.input, marks)? else { return Ok(None) };
                let mut kept: Vec<Expr> = Vec::with_capacity(p.expr.len());
                for (e, (qualifier, field)) in p.expr.iter().zip(p.schema.iter()) {
                    if matches!(e, Expr::Column(c) if marks.iter().any(|(m, _)| m == c)) {
                        continue;
                    }
                    // A mark an earlier rewrite computed as a column (`marker AS sq.mark`, for the
                    // plan above it): a mark again, substituted where it is read. Kept as a column,
                    // two subqueries' `mark`s would meet in one projection under one name, and a
                    // read of one could resolve to the other.
                    if let Expr::Alias(alias) = e
                        && field.name() == "mark"
                        && is_marker(&alias.expr)
                    {
                        let marker = substitute_marks(alias.expr.as_ref().clone(), marks)?.data;
                        marks.push((Column::new(qualifier.cloned(), field.name()), marker));
                        continue;
                    }
                    let replaced = substitute_marks(e.clone(), marks)?;
                    kept.push(if replaced.transformed {
                        replaced.data.unalias().alias_qualified(qualifier.cloned(), field.name())
                    } else {
                        replaced.data
                    });
                }
                // The markers read the user_id key, which the projection may have dropped.
                for (_, marker) in marks.iter() {
                    for column in marker.column_refs() {
                        if !kept.iter().any(|e| matches!(e, Expr::Column(c) if c == column)) {
                            kept.push(Expr::Column(column.clone()));
                        }
                    }
                }
                Ok(Some(LogicalPlanBuilder::from(input).project(kept)?.build()?))
            }
            LogicalPlan::Filter(f) => {
                let Some(input) = self.strip_marks(&f.input, marks)? else { return Ok(None) };
                let predicate = substitute_marks(f.predicate.clone(), marks)?.data;
                Ok(Some(LogicalPlanBuilder::from(input).filter(predicate)?.build()?))
            }
            LogicalPlan::Join(join) if join.join_type == JoinType::LeftMark => {
                let Some(left_key) = user_id_semi_join(join) else { return Ok(None) };
                let Some(spec) = self.fact_spec(&join.right) else { return Ok(None) };
                let Some(left) = self.strip_marks(&join.left, marks)? else { return Ok(None) };
                let (qualifier, field) = join.schema.qualified_field(join.schema.fields().len() - 1);
                // The mark is TRUE where a fact row matches, FALSE elsewhere (user_id is never NULL).
                marks.push((Column::new(qualifier.cloned(), field.name()), self.call(left_key.clone(), &spec, false)?));
                Ok(Some(left))
            }
            other if reads_users(other) => Ok(Some(other.clone())),
            _ => Ok(None),
        }
    }

    /// `L LEFT JOIN R ON l.user_id = r.user_id WHERE r.user_id IS NULL` (the anti join written as an
    /// outer join): the rows of L without a match, R's columns all NULL. Becomes an anti join, which
    /// the indexes answer when R is facts they know.
    fn outer_join_anti(&self, filter: &Filter) -> Result<Option<LogicalPlan>> {
        // A projection of plain columns may sit between the filter and the join.
        let (between, join) = match filter.input.as_ref() {
            LogicalPlan::Join(join) => (None, join),
            LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => match p.input.as_ref()
            {
                LogicalPlan::Join(join) => (Some(p.expr.clone()), join),
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        if join.join_type != JoinType::Left
            || join.filter.is_some()
            || join.null_equality != datafusion::common::NullEquality::NullEqualsNothing
        {
            return Ok(None);
        }
        let [(_, right_key)] = join.on.as_slice() else { return Ok(None) };
        let Expr::Column(right_key) = strip_cast(right_key) else { return Ok(None) };
        if right_key.name != USER_ID {
            return Ok(None);
        }
        // An equality never matches a NULL key, so the right key is NULL exactly on unmatched rows.
        let conjuncts = split_conjunction(&filter.predicate);
        let unmatched = |e: &Expr| matches!(e, Expr::IsNull(inner) if matches!(strip_cast(inner), Expr::Column(c) if c == right_key));
        if !conjuncts.iter().any(|e| unmatched(e)) {
            return Ok(None);
        }
        let anti = LogicalPlan::Join(Join::try_new(
            Arc::clone(&join.left),
            Arc::clone(&join.right),
            join.on.clone(),
            None,
            JoinType::LeftAnti,
            join.join_constraint,
            join.null_equality,
            false,
        )?);
        let anti = match &anti {
            LogicalPlan::Join(j) => self.semi_join(j)?.unwrap_or(anti),
            _ => anti,
        };
        // The outer join's columns: the left side's, then the right side's as typed NULLs.
        let left_width = join.left.schema().fields().len();
        let mut exprs = Vec::with_capacity(join.schema.fields().len());
        for (i, (qualifier, field)) in join.schema.iter().enumerate() {
            let column = Column::new(qualifier.cloned(), field.name());
            exprs.push(if i < left_width {
                Expr::Column(column)
            } else {
                lit(ScalarValue::try_from(field.data_type())?).alias_qualified(qualifier.cloned(), field.name())
            });
        }
        let rest: Vec<Expr> = conjuncts.into_iter().filter(|e| !unmatched(e)).cloned().collect();
        let mut plan = LogicalPlanBuilder::from(anti).project(exprs)?;
        if let Some(between) = between {
            plan = plan.project(between)?;
        }
        if let Some(rest) = datafusion::logical_expr::utils::conjunction(rest) {
            plan = plan.filter(rest)?;
        }
        Ok(Some(plan.build()?))
    }

    /// The users a fact-side plan yields: from the activity streams when they answer it, else by
    /// reading the fact rows its row-local predicate keeps.
    fn fact_spec(&self, plan: &LogicalPlan) -> Option<AudienceSpec> {
        if let Some(spec) = fact_audience(plan, &self.index, &self.tables) {
            return Some(spec);
        }
        // Users by a per-user aggregate (`GROUP BY user_id HAVING ...`), once it is a DenseAggregate,
        // or by how many periods they were active in.
        if let Some(spec) = self.per_user_having(plan) {
            return Some(spec);
        }
        // A subquery this rule already turned into marked users (`SELECT DISTINCT user_id FROM
        // purchases WHERE ...` became a users scan filtered by markers).
        if let Some(spec) = marked_users(plan) {
            return Some(spec);
        }
        let mut side = FactSide::default();
        collect_fact_side(plan, &self.tables, &mut side)?;
        side.tables.sort_by_key(|t| t.name());
        if side.tables.as_slice() == [Table::Products, Table::Purchases] {
            // Conditions on the product become `product_id IN (the products that pass)`.
            let own = |t: Table| crate::tables::contract_columns(t).into_iter().map(|c| c.name).collect::<Vec<_>>();
            let (purchase_columns, product_columns) = (own(Table::Purchases), own(Table::Products));
            let (mut on_purchases, mut on_products) = (Vec::new(), Vec::new());
            for p in std::mem::take(&mut side.predicates) {
                let names: Vec<String> = p.column_refs().iter().map(|c| c.name.clone()).collect();
                if names.iter().all(|n| purchase_columns.contains(n)) {
                    on_purchases.push(p);
                } else if names.iter().all(|n| product_columns.contains(n)) {
                    on_products.push(p);
                } else {
                    return None;
                }
            }
            let products = crate::query::fact_filter::matching_products(&self.index, &on_products).ok()?;
            let list: Vec<Expr> = products.into_iter().map(|id| lit(ScalarValue::Utf8View(Some(id)))).collect();
            on_purchases.push(if list.is_empty() {
                lit(false)
            } else {
                Expr::Column(Column::new_unqualified(PRODUCT_ID)).in_list(list, false)
            });
            side = FactSide { tables: vec![Table::Purchases], predicates: on_purchases };
        }
        let [table] = side.tables.as_slice() else { return None };
        if !table.is_fact() {
            return None;
        }
        let mut window = (i64::MIN, i64::MAX);
        for p in &side.predicates {
            match ts_bound(p) {
                Some((Operator::GtEq | Operator::Gt, t)) => window.0 = window.0.max(t),
                Some((Operator::Lt | Operator::LtEq, t)) => window.1 = window.1.min(t),
                Some((Operator::Eq, t)) => window = (window.0.max(t), window.1.min(t)),
                _ => {}
            }
        }
        let window = (window != (i64::MIN, i64::MAX)).then_some(window);
        let predicates = if side.predicates.is_empty() { vec![lit(true)] } else { side.predicates };
        let filter = FactFilter::new(*table, &predicates, window)?;
        let marker = self.udf.inner().downcast_ref::<crate::query::udf::PersonaAudience>()?;
        Some(AudienceSpec::FactFilter(marker.register_fact_filter(filter)))
    }

    /// The users a per-user aggregate with `HAVING` yields: a [`DenseAggregate`]'s, or a count
    /// of active periods the streams answer.
    fn per_user_having(&self, plan: &LogicalPlan) -> Option<AudienceSpec> {
        let fact_within = |facts: &LogicalPlan, bounds: (Option<i64>, Option<i64>)| {
            fact_audience_within(facts, &self.index, &self.tables, bounds)
        };
        if let Some(spec) = crate::query::activity_count::first_and_last(plan, &fact_within) {
            return Some(spec);
        }
        if let Some(spec) = self.dense_having(plan) {
            return Some(spec);
        }
        if let Some((times, others)) = crate::query::activity_count::split_first_and_last(plan) {
            let first_and_last = crate::query::activity_count::first_and_last(&times, &fact_within);
            // The other conditions over the dense form of the aggregate.
            let others = match others {
                LogicalPlan::Filter(f) => match f.input.as_ref() {
                    LogicalPlan::Aggregate(a) => crate::query::dense_agg_rule::dense_plan(a)
                        .and_then(|dense| Filter::try_new(f.predicate.clone(), Arc::new(dense)).ok())
                        .and_then(|f| self.dense_having(&LogicalPlan::Filter(f))),
                    _ => None,
                },
                _ => None,
            };
            if let (Some(first_and_last), Some(others)) = (first_and_last, others) {
                return Some(AudienceSpec::AllOf(vec![first_and_last, others]));
            }
        }
        let fact_days = |facts: &LogicalPlan| match fact_audience(facts, &self.index, &self.tables)? {
            AudienceSpec::ActiveDays { streams, first_day, last_day, edges } if edges.is_empty() => {
                Some((streams, first_day, last_day))
            }
            _ => None,
        };
        let count = crate::query::activity_count::recognize(plan, &fact_days)?;
        let marker = self.udf.inner().downcast_ref::<crate::query::udf::PersonaAudience>()?;
        Some(AudienceSpec::ActivityCount(marker.register_activity_count(count)))
    }

    /// `SELECT user_id FROM <facts> GROUP BY user_id HAVING ...` where it is a relation of its own
    /// (`FROM (...) active`, a CTE) rather than the subquery of a semi join: one row per user the
    /// aggregate keeps, so a users scan filtered by their audience (every fact row's user is a
    /// live user), which joins with other audiences as users do.
    fn per_user_set(&self, projection: &Projection) -> Result<Option<LogicalPlan>> {
        match projection.expr.as_slice() {
            [Expr::Column(column)] if projects_group_column(&projection.input, column) => {}
            // Nothing read (`SELECT count(*) FROM (SELECT user_id ... HAVING ...) t`): one row
            // per user all the same.
            [] => {}
            _ => return Ok(None),
        }
        let plan = LogicalPlan::Projection(projection.clone());
        let Some(spec) = self.per_user_having(&plan) else { return Ok(None) };
        let users = person_id::stored_scan("users", Arc::clone(&self.users))?.build()?;
        let key = Expr::Column(Column::new(Some("users"), USER_ID));
        let filtered = LogicalPlanBuilder::from(users).filter(self.call(key.clone(), &spec, false)?)?;
        if projection.expr.is_empty() {
            return Ok(Some(filtered.project(Vec::<Expr>::new())?.build()?));
        }
        let field = projection.schema.qualified_field(0);
        let out = Expr::Cast(datafusion::logical_expr::expr::Cast::new(Box::new(key), field.1.data_type().clone()))
            .alias_qualified(field.0.cloned(), field.1.name());
        Ok(Some(filtered.project(vec![out])?.build()?))
    }

    /// `[alias] / Projection(user_id) / Filter(HAVING)* / DenseAggregate(GROUP BY user_id)`: the
    /// users whose aggregates pass the filters, as a registered [`FactAggregate`].
    fn dense_having(&self, plan: &LogicalPlan) -> Option<AudienceSpec> {
        let mut having: Vec<Expr> = Vec::new();
        let mut node = plan;
        let dense = loop {
            match node {
                LogicalPlan::SubqueryAlias(a) => node = &a.input,
                LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => node = &p.input,
                LogicalPlan::Filter(f) => {
                    having.extend(split_conjunction(&f.predicate).into_iter().cloned());
                    node = &f.input;
                }
                LogicalPlan::Extension(e) => break e.node.as_any().downcast_ref::<DenseAggregate>()?,
                _ => return None,
            }
        };
        let marker = self.udf.inner().downcast_ref::<crate::query::udf::PersonaAudience>()?;
        if !dense.emit_user_id {
            // Nothing above reads user_id (`SELECT count(*) FROM (… HAVING …) t`): the node is
            // already the one without it.
            let having = datafusion::logical_expr::utils::conjunction(having).unwrap_or_else(|| lit(true));
            if !crate::query::dense_agg_rule::is_row_local(&having) {
                return None;
            }
            let aggregate = FactAggregate { node: dense.clone(), having };
            return Some(AudienceSpec::FactAggregate(marker.register_fact_aggregate(aggregate)));
        }
        // Without user_id in the output: HAVING may not read it.
        let (user_qualifier, user_field) = dense.schema.qualified_field(0);
        let user_column = Column::new(user_qualifier.cloned(), user_field.name());
        if having
            .iter()
            .any(|h| !crate::query::dense_agg_rule::is_row_local(h) || h.column_refs().contains(&user_column))
        {
            return None;
        }
        let fields = dense.schema.iter().skip(1).map(|(q, f)| (q.cloned(), Arc::clone(f))).collect::<Vec<_>>();
        let schema = datafusion::common::DFSchema::new_with_metadata(fields, dense.schema.metadata().clone()).ok()?;
        let node = DenseAggregate { emit_user_id: false, schema: Arc::new(schema), ..dense.clone() };
        let having = datafusion::logical_expr::utils::conjunction(having).unwrap_or_else(|| lit(true));
        Some(AudienceSpec::FactAggregate(marker.register_fact_aggregate(FactAggregate { node, having })))
    }

    /// `persona_audience(key, spec)`, negated for an anti join.
    fn call(&self, key: Expr, spec: &AudienceSpec, negated: bool) -> Result<Expr> {
        let spec_json =
            serde_json::to_string(spec).map_err(|e| datafusion::common::DataFusionError::External(Box::new(e)))?;
        let call = self.udf.call(vec![key, lit(spec_json)]);
        Ok(if negated { Expr::Not(Box::new(call)) } else { call })
    }

    /// `SELECT DISTINCT user_id FROM <facts> WHERE ...` (what `count(DISTINCT user_id)` plans into),
    /// possibly with semi/anti joins on user_id, becomes a filtered scan of users: every fact row's
    /// user is a live user (the importer refuses unknown ones), so the sets are equal.
    fn distinct_users(&self, plan: &LogicalPlan, agg: &Aggregate) -> Result<Transformed<LogicalPlan>> {
        let [group] = agg.group_expr.as_slice() else { return Ok(Transformed::no(plan.clone())) };
        let group = match group {
            Expr::Alias(a) => a.expr.as_ref(),
            other => other,
        };
        let Expr::Column(group) = strip_cast(group) else { return Ok(Transformed::no(plan.clone())) };
        if !agg.aggr_expr.is_empty() {
            return Ok(Transformed::no(plan.clone()));
        }
        // Distinct user_ids of users are the users' user_ids (the key is unique): no grouping.
        if let [Expr::Column(key)] = agg.group_expr.as_slice()
            && key.name == USER_ID
            && reads_users(&agg.input)
        {
            let rewritten = LogicalPlanBuilder::from(agg.input.as_ref().clone())
                .project(vec![Expr::Column(key.clone())])?
                .build()?;
            return Ok(Transformed::yes(rewritten));
        }
        let Some(terms) = self.audience_terms(&agg.input, &group.name) else {
            return Ok(Transformed::no(plan.clone()));
        };
        let users = person_id::stored_scan("users", Arc::clone(&self.users))?.build()?;
        let key = Expr::Column(Column::new(Some("users"), USER_ID));
        let mut filtered = LogicalPlanBuilder::from(users);
        for (spec, negated) in terms {
            filtered = filtered.filter(self.call(key.clone(), &spec, negated)?)?;
        }
        // Keep the aggregate's output column (qualifier and name) so that the plan above is unchanged.
        let field = agg.schema.qualified_field(0);
        let out =
            Expr::Cast(datafusion::logical_expr::expr::Cast::new(Box::new(key.clone()), field.1.data_type().clone()))
                .alias_qualified(field.0.cloned(), field.1.name());
        let rewritten = filtered.project(vec![out])?.build()?;
        Ok(Transformed::yes(rewritten))
    }

    /// The audience terms of a plan yielding fact rows whose `user_id` column is `column`: the
    /// facts themselves, narrowed by semi/anti joins on user_id into other audiences.
    fn audience_terms(&self, plan: &LogicalPlan, column: &str) -> Option<Vec<(AudienceSpec, bool)>> {
        match plan {
            LogicalPlan::Join(join) if join.join_type != JoinType::LeftMark && user_id_semi_join(join).is_some() => {
                let mut terms = self.audience_terms(&join.left, column)?;
                terms.push((self.fact_spec(&join.right)?, join.join_type == JoinType::LeftAnti));
                Some(terms)
            }
            LogicalPlan::Projection(p) => {
                // Only a renaming of user_id may sit between the aggregate and the facts.
                let [Expr::Column(c)] = p.expr.as_slice() else {
                    let all_columns = p.expr.iter().all(|e| matches!(e, Expr::Column(_)));
                    return if all_columns && column == USER_ID { self.audience_terms(&p.input, column) } else { None };
                };
                self.audience_terms(&p.input, &c.name)
            }
            LogicalPlan::SubqueryAlias(a) => self.audience_terms(&a.input, column),
            _ if column == USER_ID => Some(vec![(self.fact_spec(plan)?, false)]),
            _ => None,
        }
    }
}

/// The users-side key of a semi or anti join on `user_id = user_id` with nothing else.
fn user_id_semi_join(join: &Join) -> Option<&Expr> {
    if !matches!(join.join_type, JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark)
        || join.filter.is_some()
        || join.on.len() != 1
    {
        return None;
    }
    // Keys may be cast to a common string type (fact strings are read as views).
    let (left_key, right_key) = &join.on[0];
    let (left_key, right_key) = (strip_cast(left_key), strip_cast(right_key));
    let (Expr::Column(l), Expr::Column(r)) = (left_key, right_key) else { return None };
    (l.name == USER_ID && r.name == USER_ID).then_some(left_key)
}

/// True if `plan` is the users table, possibly aliased, filtered or projected to plain columns.
pub(crate) fn reads_users(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::SubqueryAlias(a) => reads_users(&a.input),
        LogicalPlan::Filter(f) => reads_users(&f.input),
        // `SELECT DISTINCT user_id` / `GROUP BY user_id` of users (what INTERSECT and EXCEPT
        // plan): user_id is unique, so the same users.
        LogicalPlan::Aggregate(a) => {
            a.aggr_expr.is_empty()
                && matches!(a.group_expr.as_slice(), [Expr::Column(c)] if c.name == USER_ID)
                && reads_users(&a.input)
        }
        // Plain columns, and the marks that `EXISTS ... OR ...` subqueries became.
        LogicalPlan::Projection(p) => {
            p.expr.iter().all(|e| matches!(e, Expr::Column(_)) || is_marker(e) || is_recast_column(e))
                && reads_users(&p.input)
        }
        LogicalPlan::TableScan(scan) => source_as_provider(&scan.source).ok().is_some_and(|p| {
            <dyn datafusion::catalog::TableProvider>::downcast_ref::<UsersTable>(p.as_ref()).is_some()
        }),
        _ => false,
    }
}

/// The audience of a plan yielding the user_ids of a users scan whose filters are all markers
/// (possibly negated): what [`AudienceRule::distinct_users`] writes.
fn marked_users(plan: &LogicalPlan) -> Option<AudienceSpec> {
    let mut specs = Vec::new();
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::SubqueryAlias(a) => node = &a.input,
            LogicalPlan::Projection(p) => {
                let [e] = p.expr.as_slice() else { return None };
                let e = match e {
                    Expr::Alias(a) => a.expr.as_ref(),
                    other => other,
                };
                let Expr::Column(c) = strip_cast(e) else { return None };
                if c.name != USER_ID {
                    return None;
                }
                node = &p.input;
            }
            LogicalPlan::Filter(f) => {
                for p in split_conjunction(&f.predicate) {
                    specs.push(marker_spec(p)?);
                }
                node = &f.input;
            }
            LogicalPlan::TableScan(scan) => {
                if scan.fetch.is_some() || !reads_users(node) {
                    return None;
                }
                for f in &scan.filters {
                    for p in split_conjunction(f) {
                        specs.push(marker_spec(p)?);
                    }
                }
                return match specs.len() {
                    0 => None,
                    1 => specs.pop(),
                    _ => Some(AudienceSpec::AllOf(specs)),
                };
            }
            _ => return None,
        }
    }
}

/// Whether `column`, read from `plan`, is the grouping column of the aggregate under it, through
/// filters, aliases and projections of plain columns only.
fn projects_group_column(plan: &LogicalPlan, column: &Column) -> bool {
    let Ok(mut at) = plan.schema().index_of_column(column) else { return false };
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Filter(f) => node = &f.input,
            LogicalPlan::SubqueryAlias(a) => node = &a.input,
            LogicalPlan::Projection(p) => {
                let Some(Expr::Column(c)) = p.expr.get(at) else { return false };
                let Ok(i) = p.input.schema().index_of_column(c) else { return false };
                at = i;
                node = &p.input;
            }
            LogicalPlan::Aggregate(a) => return at == 0 && a.group_expr.len() == 1,
            LogicalPlan::Extension(e) => {
                return at == 0 && e.node.as_any().downcast_ref::<DenseAggregate>().is_some_and(|d| d.emit_user_id);
            }
            _ => return false,
        }
    }
}

/// The audience of `persona_audience(user_id, spec)` or its negation.
fn marker_spec(e: &Expr) -> Option<AudienceSpec> {
    match e {
        Expr::Not(inner) => Some(AudienceSpec::Not(Box::new(marker_spec(inner)?))),
        other => crate::query::udf::marker_call(other).map(|(_, spec)| spec),
    }
}

/// `e` with every mark column read replaced by its marker.
fn substitute_marks(e: Expr, marks: &[(Column, Expr)]) -> Result<Transformed<Expr>> {
    e.transform_up(|e| match &e {
        Expr::Column(c) => match marks.iter().find(|(m, _)| m == c) {
            Some((_, marker)) => Ok(Transformed::yes(marker.clone())),
            None => Ok(Transformed::no(e)),
        },
        _ => Ok(Transformed::no(e)),
    })
}

/// A column cast to another type (`CAST(users.user_id AS Utf8View) AS user_id`, how a users
/// side meets fact strings), possibly aliased.
fn is_recast_column(e: &Expr) -> bool {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        other => other,
    };
    matches!(e, Expr::Cast(_) | Expr::TryCast(_)) && matches!(strip_cast(e), Expr::Column(_))
}

/// A `persona_audience` call, possibly aliased.
fn is_marker(e: &Expr) -> bool {
    match e {
        Expr::Alias(a) => is_marker(&a.expr),
        Expr::ScalarFunction(f) => f.func.inner().is::<crate::query::udf::PersonaAudience>(),
        _ => false,
    }
}

/// The tables a fact-side plan scans and every predicate on their rows.
#[derive(Debug, Default)]
struct FactSide {
    tables: Vec<Table>,
    predicates: Vec<Expr>,
}

/// Collects a plan of scans, filters, plain projections, aliases and the purchases–products join.
fn collect_fact_side(plan: &LogicalPlan, store: &StoreTables, side: &mut FactSide) -> Option<()> {
    match plan {
        LogicalPlan::SubqueryAlias(a) => collect_fact_side(&a.input, store, side),
        LogicalPlan::Projection(p) => {
            if !p.expr.iter().all(|e| matches!(e, Expr::Column(_))) {
                return None;
            }
            collect_fact_side(&p.input, store, side)
        }
        LogicalPlan::Filter(f) => {
            for p in split_conjunction(&f.predicate) {
                if !side.predicates.contains(p) {
                    side.predicates.push(p.clone());
                }
            }
            collect_fact_side(&f.input, store, side)
        }
        LogicalPlan::Join(join) => {
            // Only purchases JOIN products ON product_id = product_id: an inner join (the purchase
            // needs its product), or the semi join it becomes when no product column is used.
            let [(l, r)] = join.on.as_slice() else { return None };
            let (Expr::Column(l), Expr::Column(r)) = (strip_cast(l), strip_cast(r)) else { return None };
            if !matches!(join.join_type, JoinType::Inner | JoinType::LeftSemi)
                || join.filter.is_some()
                || l.name != PRODUCT_ID
                || r.name != PRODUCT_ID
            {
                return None;
            }
            collect_fact_side(&join.left, store, side)?;
            collect_fact_side(&join.right, store, side)
        }
        // `SELECT DISTINCT user_id` / `GROUP BY user_id` without aggregates: the same users.
        LogicalPlan::Aggregate(a)
            if a.aggr_expr.is_empty() && matches!(a.group_expr.as_slice(), [Expr::Column(c)] if c.name == USER_ID) =>
        {
            collect_fact_side(&a.input, store, side)
        }
        LogicalPlan::TableScan(scan) => {
            if scan.fetch.is_some() {
                return None;
            }
            // Inexact pushdown leaves the same predicate both in the Filter and in the scan.
            for f in &scan.filters {
                for p in split_conjunction(f) {
                    if !side.predicates.contains(p) {
                        side.predicates.push(p.clone());
                    }
                }
            }
            side.tables.push(store.table_of(scan)?);
            Some(())
        }
        _ => None,
    }
}

/// The audience a subquery side of a semi/anti join describes, if it is one the indexes answer
/// exactly: tags of user_tags, or activity days of purchases (all, by channel, by product
/// category through the products join) and events (by type) within whole-day windows.
fn fact_audience(plan: &LogicalPlan, index: &IndexSet, store: &StoreTables) -> Option<AudienceSpec> {
    fact_audience_within(plan, index, store, (None, None))
}

/// [`fact_audience`] of the rows whose `ts` is also in `[from, to)` (microseconds, either bound
/// optional): "had a purchase before T" for `min(ts) < T`.
fn fact_audience_within(
    plan: &LogicalPlan,
    index: &IndexSet,
    store: &StoreTables,
    (from, to): (Option<i64>, Option<i64>),
) -> Option<AudienceSpec> {
    let mut side = FactSide::default();
    collect_fact_side(plan, store, &mut side)?;
    let at = |t: i64| lit(ScalarValue::TimestampMicrosecond(Some(t), None));
    let ts = || Expr::Column(Column::new_unqualified(TS));
    side.predicates.extend(from.map(|t| ts().gt_eq(at(t))));
    side.predicates.extend(to.map(|t| ts().lt(at(t))));
    side.tables.sort_by_key(|t| t.name());
    let tables = side.tables.as_slice();
    let (fact, dimensions): (&str, &[&str]) = match tables {
        [Table::UserTags] => return tag_audience(&side.predicates),
        [Table::Purchases] => ("purchases", &[CHANNEL_ID]),
        [Table::Products, Table::Purchases] => ("purchases", &[CATEGORY]),
        [Table::Events] => ("events", &[EVENT_TYPE, CHANNEL_ID]),
        _ => return None,
    };
    // The window as a half-open range of microseconds, [from, to).
    let mut window = (i64::MIN / 4, i64::MAX / 4);
    // The dimension columns constrained, each with the values it may take.
    let mut constrained: Vec<(String, Vec<String>)> = Vec::new();
    for p in &side.predicates {
        if let Some((op, micros)) = ts_bound(p) {
            match op {
                Operator::GtEq => window.0 = window.0.max(micros),
                Operator::Gt => window.0 = window.0.max(micros.checked_add(1)?),
                Operator::Lt => window.1 = window.1.min(micros),
                Operator::LtEq => window.1 = window.1.min(micros.checked_add(1)?),
                _ => return None,
            }
            continue;
        }
        let column = dimensions.iter().find(|c| {
            let mut v = Vec::new();
            collect_values(p, c, &mut v).is_some()
        })?;
        let mut values = Vec::new();
        collect_values(p, column, &mut values)?;
        match constrained.iter_mut().find(|(c, _)| c == column) {
            None => constrained.push((column.to_string(), values)),
            Some((_, existing)) => existing.retain(|v| values.contains(v)),
        }
    }
    constrained.sort();
    let allowed = |column: &str| constrained.iter().find(|(c, _)| c == column).map(|(_, v)| v);
    let streams = match (fact, constrained.as_slice()) {
        ("purchases", []) if tables.len() == 1 => {
            index.has_family(FAMILY_PURCHASES).then(|| vec![FAMILY_PURCHASES.to_string()])?
        }
        // The products join alone keeps purchases of known products: no stream says which.
        ("purchases", []) => return None,
        ("purchases", [(column, values)]) => {
            let family = if column == CATEGORY { FAMILY_PURCHASE_CATEGORY } else { FAMILY_PURCHASE_CHANNEL };
            index.has_family(family).then(|| values.iter().map(|v| stream_name(family, Some(v))).collect())?
        }
        ("events", []) if index.has_family(FAMILY_EVENT_TYPE) => {
            // event_type is never NULL: every event is in the stream of its type.
            index.family_streams(FAMILY_EVENT_TYPE)
        }
        ("events", [(_, values)]) if allowed(EVENT_TYPE).is_some() && index.has_family(FAMILY_EVENT_TYPE) => {
            values.iter().map(|v| stream_name(FAMILY_EVENT_TYPE, Some(v))).collect()
        }
        // A channel (and type): the streams by type and channel whose pair is allowed; a NULL
        // channel is never one of a list of values.
        ("events", _) if index.has_family(FAMILY_EVENT_TYPE_CHANNEL) => index
            .family_streams(FAMILY_EVENT_TYPE_CHANNEL)
            .into_iter()
            .filter(|stream| {
                event_pair_of(stream).is_some_and(|(kind, channel)| {
                    allowed(EVENT_TYPE).is_none_or(|types| types.contains(&kind))
                        && channel.is_some_and(|channel| allowed(CHANNEL_ID).is_some_and(|c| c.contains(&channel)))
                })
            })
            .collect(),
        _ => return None,
    };
    Some(active_in_window(fact, streams, constrained, window))
}

/// The users with rows of `fact` in `streams` (meeting `conditions`) whose `ts` is in the
/// half-open window `[from, to)` (microseconds; `i64::MIN / 4` and `i64::MAX / 4` for no bound):
/// whole days inside the window from the day bitmaps, its partial first and last days (a bound
/// that is not a midnight) read from the facts.
pub(crate) fn active_in_window(
    fact: &str,
    streams: Vec<String>,
    conditions: Vec<(String, Vec<String>)>,
    (from, to): (i64, i64),
) -> AudienceSpec {
    let unbounded = (i64::MIN / 4, i64::MAX / 4);
    let first_day = if from == unbounded.0 {
        from / DAY_MICROS
    } else {
        from.div_euclid(DAY_MICROS) + i64::from(from.rem_euclid(DAY_MICROS) != 0)
    };
    let last_day = if to == unbounded.1 { to / DAY_MICROS } else { to.div_euclid(DAY_MICROS) - 1 };
    let mut edges = Vec::new();
    if first_day > last_day {
        if from < to {
            edges.push((from, to));
        }
    } else {
        if from != unbounded.0 && from < first_day * DAY_MICROS {
            edges.push((from, first_day * DAY_MICROS));
        }
        if to != unbounded.1 && (last_day + 1) * DAY_MICROS < to {
            edges.push(((last_day + 1) * DAY_MICROS, to));
        }
    }
    let edges = edges
        .into_iter()
        .map(|(from, to)| EdgeScan {
            table: fact.to_string(),
            from,
            to,
            conditions: conditions.clone(),
            streams: streams.clone(),
        })
        .collect();
    AudienceSpec::ActiveDays { streams, first_day, last_day, edges }
}

/// `tag = 'A'`, `tag IN ('A', 'B')` or `tag = 'A' OR tag = 'B'`, and nothing else.
fn tag_audience(predicates: &[Expr]) -> Option<AudienceSpec> {
    let [only] = predicates else { return None };
    let mut tags = Vec::new();
    collect_values(only, TAG, &mut tags)?;
    Some(AudienceSpec::TagAny(tags))
}

/// The text values `e` allows `column` to take: `column = 'v'`, `column IN (...)`, or an OR of them.
pub(crate) fn collect_values(e: &Expr, column: &str, values: &mut Vec<String>) -> Option<()> {
    let text = |e: &Expr| match strip_cast(e) {
        Expr::Literal(v, _) => v.try_as_str().flatten().map(str::to_string),
        _ => None,
    };
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            collect_values(left, column, values)?;
            collect_values(right, column, values)
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => match (strip_cast(left), strip_cast(right)) {
            (Expr::Column(c), v) | (v, Expr::Column(c)) if c.name == column => {
                values.push(text(v)?);
                Some(())
            }
            _ => None,
        },
        Expr::InList(InList { expr, list, negated: false }) => match strip_cast(expr) {
            Expr::Column(c) if c.name == column => {
                for item in list {
                    values.push(text(item)?);
                }
                Some(())
            }
            _ => None,
        },
        _ => None,
    }
}

/// A bound on `ts` (`ts >= t`, `ts > t`, `ts < t`, `ts <= t`, `ts = t`, either operand order):
/// the operator with `ts` on the left and the instant in microseconds (UTC).
pub(crate) fn ts_bound(p: &Expr) -> Option<(Operator, i64)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = p else { return None };
    let (op, micros) = match (strip_lossless_ts_cast(left), right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) if c.name == TS => (*op, timestamp_micros(v)?),
        _ => match (left.as_ref(), strip_lossless_ts_cast(right)) {
            (Expr::Literal(v, _), Expr::Column(c)) if c.name == TS => (op.swap()?, timestamp_micros(v)?),
            _ => return None,
        },
    };
    matches!(op, Operator::GtEq | Operator::Gt | Operator::Lt | Operator::LtEq | Operator::Eq).then_some((op, micros))
}

/// `e` without casts to timestamps of microseconds or finer, which keep every instant of `ts`. A
/// cast to seconds or milliseconds truncates, so a bound on it is not the same bound on `ts`.
pub(crate) fn strip_lossless_ts_cast(e: &Expr) -> &Expr {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    let lossless = |t: &DataType| matches!(t, DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _));
    match e {
        Expr::Cast(c) if lossless(c.field.data_type()) => strip_lossless_ts_cast(&c.expr),
        Expr::TryCast(c) if lossless(c.field.data_type()) => strip_lossless_ts_cast(&c.expr),
        other => other,
    }
}

pub(crate) fn strip_cast(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => strip_cast(&c.expr),
        Expr::TryCast(c) => strip_cast(&c.expr),
        other => other,
    }
}

/// A timestamp literal in microseconds (UTC), whatever its unit; zoned literals are instants too.
pub(crate) fn timestamp_micros(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampSecond(Some(s), _) => s.checked_mul(1_000_000),
        ScalarValue::TimestampMillisecond(Some(ms), _) => ms.checked_mul(1000),
        ScalarValue::TimestampMicrosecond(Some(us), _) => Some(*us),
        ScalarValue::TimestampNanosecond(Some(ns), _) => (ns % 1000 == 0).then_some(ns / 1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    use datafusion::common::ScalarValue;
    use datafusion::prelude::{cast, col, lit};

    use super::*;

    fn at(micros: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(Some(micros), None))
    }

    #[test]
    fn ts_bounds_see_through_lossless_casts_only() {
        assert_eq!(ts_bound(&col(TS).gt_eq(at(5))), Some((Operator::GtEq, 5)));
        assert_eq!(ts_bound(&at(5).gt(col(TS))), Some((Operator::Lt, 5)));
        assert_eq!(ts_bound(&col(TS).eq(at(7))), Some((Operator::Eq, 7)));
        let nanos = cast(col(TS), DataType::Timestamp(TimeUnit::Nanosecond, None));
        assert_eq!(ts_bound(&nanos.lt_eq(at(9))), Some((Operator::LtEq, 9)));
        // ts = 10.5 s passes CAST(ts AS seconds) <= 10 s, which is not ts <= 10 s.
        let seconds = cast(col(TS), DataType::Timestamp(TimeUnit::Second, None));
        assert_eq!(ts_bound(&seconds.lt_eq(lit(ScalarValue::TimestampSecond(Some(10), None)))), None);
        assert_eq!(ts_bound(&col(TS).not_eq(at(5))), None);
    }
}
