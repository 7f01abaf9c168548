//! Short forms for analysts: `has_tag('A')` and `purchased_within(INTERVAL '90 days')` in a
//! `WHERE` clause stand for the `EXISTS` subqueries they abbreviate, so they take exactly the same
//! paths (bitmaps with indexes on, DataFusion's general path with them off):
//!
//! ```text
//! has_tag('A')                         EXISTS (SELECT 1 FROM user_tags t WHERE t.user_id = <user_id> AND t.tag = 'A')
//! purchased_within(INTERVAL '90 days') EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = <user_id>
//!                                              AND p.ts >= now() - INTERVAL '90 days' AND p.ts < now())
//! ```
//!
//! `<user_id>` is the one `user_id` column in scope, or the first argument when given
//! (`has_tag(u.user_id, 'A')`). With indexes on, `has_tag` in a filter directly on `users` becomes
//! the tag-bitmap marker itself, so that `has_tag('A') OR has_tag('B')` stays bitmap work (DataFusion
//! does not decorrelate subqueries under OR). The functions are registered as UDFs so that the SQL planner
//! accepts them; the analyzer rule here replaces them before anything runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result, plan_datafusion_err, plan_err};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility, col, exists, lit, out_ref_col,
};
use datafusion::optimizer::AnalyzerRule;

use crate::query::audience_rule::reads_users;
use crate::query::bitmap_expr::AudienceSpec;
use crate::query::person_id;
use crate::tables::{TAG, TS, USER_ID};

/// The name of `has_tag`.
pub const HAS_TAG: &str = "has_tag";
/// The name of `purchased_within`.
pub const PURCHASED_WITHIN: &str = "purchased_within";
/// The name of `in_audience`.
pub const IN_AUDIENCE: &str = "in_audience";

/// A placeholder UDF: planned, then replaced by [`SugarRule`]; never invoked.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SugarFunction {
    name: &'static str,
    signature: Signature,
}

impl SugarFunction {
    pub fn new(name: &'static str) -> SugarFunction {
        SugarFunction { name, signature: Signature::variadic_any(Volatility::Stable) }
    }
}

impl ScalarUDFImpl for SugarFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        plan_err!("{}() can only be used as a condition in WHERE", self.name)
    }
}

/// Replaces the short forms in filters by their subqueries.
#[derive(Debug)]
pub struct SugarRule {
    pub user_tags: Arc<dyn TableProvider>,
    pub purchases: Arc<dyn TableProvider>,
    /// The session's `now()` when it is pinned; the built-in one otherwise.
    pub pinned_now: Option<Arc<ScalarUDF>>,
    /// With indexes on, `has_tag` directly on the users table becomes the tag-bitmap marker
    /// (`persona_audience`), so that it combines under OR and NOT, where subqueries would not be
    /// decorrelated.
    pub use_indexes: Arc<AtomicBool>,
    pub audience_udf: Arc<ScalarUDF>,
    /// Each saved audience's table of members.
    pub audiences: Vec<(String, Arc<dyn TableProvider>)>,
}

impl AnalyzerRule for SugarRule {
    fn name(&self) -> &str {
        "persona_sugar"
    }

    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::Filter(filter) = &node else { return Ok(Transformed::no(node)) };
            let schema = Arc::clone(filter.input.schema());
            let on_users = self.use_indexes.load(Ordering::Relaxed) && reads_users(&filter.input);
            let rewritten = filter.predicate.clone().transform_up(|e| match &e {
                Expr::ScalarFunction(ScalarFunction { func, args })
                    if [HAS_TAG, PURCHASED_WITHIN, IN_AUDIENCE].contains(&func.name()) =>
                {
                    let (user, rest) = user_argument(func.name(), args, &schema)?;
                    let user_type = datafusion::common::ExprSchema::field_from_column(schema.as_ref(), &user)
                        .map_or(DataType::Utf8, |f| f.data_type().clone());
                    let sub = if func.name() == IN_AUDIENCE {
                        self.in_audience(user, &user_type, rest, on_users)?
                    } else if func.name() == HAS_TAG && on_users {
                        self.tag_marker(user, rest)?
                    } else if func.name() == HAS_TAG {
                        self.has_tag(user, &user_type, rest)?
                    } else {
                        self.purchased_within(user, &user_type, rest, config)?
                    };
                    Ok(Transformed::yes(sub))
                }
                _ => Ok(Transformed::no(e)),
            })?;
            if !rewritten.transformed {
                return Ok(Transformed::no(node));
            }
            let LogicalPlan::Filter(filter) = node else { unreachable!("matched above") };
            let plan = LogicalPlanBuilder::from(filter.input.as_ref().clone()).filter(rewritten.data)?.build()?;
            Ok(Transformed::yes(plan))
        })
        .map(|t| t.data)
    }
}

impl SugarRule {
    /// `persona_audience(user_id, {"tag_any": [tag]})`: answered by the users scan from the tag bitmap.
    fn tag_marker(&self, user: Column, args: &[Expr]) -> Result<Expr> {
        let tag = tag_argument(args)?;
        let spec = serde_json::to_string(&AudienceSpec::TagAny(vec![tag.to_string()]))
            .map_err(|e| datafusion::common::DataFusionError::External(Box::new(e)))?;
        Ok(self.audience_udf.call(vec![Expr::Column(user), lit(spec)]))
    }

    /// `in_audience('name')`: on users with indexes on, the saved members' bitmap as a marker;
    /// elsewhere an `EXISTS` into the audience's table of members.
    fn in_audience(&self, user: Column, user_type: &DataType, args: &[Expr], on_users: bool) -> Result<Expr> {
        let name = match args {
            [Expr::Literal(v, _)] => v.try_as_str().flatten(),
            _ => None,
        };
        let Some(name) = name else {
            return plan_err!("in_audience() takes an audience name as text, e.g. in_audience('lapsed_gold')");
        };
        let Some((name, table)) = self
            .audiences
            .iter()
            .find(|(n, _)| n == name)
            .or_else(|| self.audiences.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)))
        else {
            return plan_err!("there is no saved audience '{name}' (SHOW AUDIENCES lists them)");
        };
        if on_users {
            let spec = serde_json::to_string(&AudienceSpec::Saved(name.clone()))
                .map_err(|e| datafusion::common::DataFusionError::External(Box::new(e)))?;
            return Ok(self.audience_udf.call(vec![Expr::Column(user), lit(spec)]));
        }
        let t = "persona_in_audience";
        let plan = person_id::stored_scan(name.as_str(), Arc::clone(table))?
            .alias(t)?
            .filter(col(Column::new(Some(t), USER_ID)).eq(out_ref_col(user_type.clone(), user)))?
            .project(vec![lit(1)])?
            .build()?;
        Ok(exists(Arc::new(plan)))
    }

    fn has_tag(&self, user: Column, user_type: &DataType, args: &[Expr]) -> Result<Expr> {
        tag_argument(args)?;
        let tag = &args[0];
        let t = "persona_has_tag";
        let plan = person_id::stored_scan("user_tags", Arc::clone(&self.user_tags))?
            .alias(t)?
            .filter(
                col(Column::new(Some(t), USER_ID))
                    .eq(out_ref_col(user_type.clone(), user))
                    .and(col(Column::new(Some(t), TAG)).eq(tag.clone())),
            )?
            .project(vec![lit(1)])?
            .build()?;
        Ok(exists(Arc::new(plan)))
    }

    fn purchased_within(
        &self,
        user: Column,
        user_type: &DataType,
        args: &[Expr],
        config: &ConfigOptions,
    ) -> Result<Expr> {
        let [interval @ Expr::Literal(v, _)] = args else {
            return plan_err!("purchased_within() takes an interval, e.g. purchased_within(INTERVAL '90 days')");
        };
        if !matches!(v.data_type(), DataType::Interval(_)) {
            return plan_err!("purchased_within() takes an interval such as INTERVAL '90 days', not {v}");
        }
        let now = match &self.pinned_now {
            Some(udf) => udf.call(vec![]),
            None => datafusion::functions::datetime::now(config).call(vec![]),
        };
        let t = "persona_purchased_within";
        let ts = col(Column::new(Some(t), TS));
        let plan = person_id::stored_scan("purchases", Arc::clone(&self.purchases))?
            .alias(t)?
            .filter(
                col(Column::new(Some(t), USER_ID))
                    .eq(out_ref_col(user_type.clone(), user))
                    .and(ts.clone().gt_eq(now.clone() - interval.clone()))
                    .and(ts.lt(now)),
            )?
            .project(vec![lit(1)])?
            .build()?;
        Ok(exists(Arc::new(plan)))
    }
}

/// The tag name of `has_tag`'s arguments (after the user column).
fn tag_argument(args: &[Expr]) -> Result<&str> {
    let [Expr::Literal(v, _)] = args else {
        return plan_err!("has_tag() takes a tag name, e.g. has_tag('vip') or has_tag(u.user_id, 'vip')");
    };
    match v.try_as_str().flatten() {
        Some(tag) => Ok(tag),
        None => plan_err!("has_tag() takes a tag name as text, e.g. has_tag('vip'), not {v}"),
    }
}

/// The user_id column a short form applies to, and its other arguments.
fn user_argument<'a>(
    name: &str,
    args: &'a [Expr],
    schema: &datafusion::common::DFSchema,
) -> Result<(Column, &'a [Expr])> {
    if let [Expr::Column(c), rest @ ..] = args {
        return Ok((c.clone(), rest));
    }
    let candidates: Vec<Column> = schema.columns().into_iter().filter(|c| c.name == USER_ID).collect();
    match candidates.as_slice() {
        [one] => Ok((one.clone(), args)),
        [] => Err(plan_datafusion_err!("{name}() needs a user_id column in the query (it filters users)")),
        _ => Err(plan_datafusion_err!(
            "{name}() is ambiguous here: {} user_id columns are in scope; name one, e.g. {name}(u.user_id, ...)",
            candidates.len()
        )),
    }
}
