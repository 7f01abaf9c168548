//! A query yielding `user_id` turned into a set of row ids. When the optimized plan is a
//! projection of users columns over the users scan whose filters all became bitmaps, the set comes
//! straight from the bitmap algebra and nothing is read; otherwise the query runs and its user_ids
//! are looked up in the id dictionary. Either way, how to export the members' rows is kept.

use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, col};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use roaring::RoaringBitmap;

use crate::audience::members::IdResolver;
use crate::audience::statement::{Body, Statement};
use crate::error::{Error, Result};
use crate::index::IndexSet;
use crate::query::QuerySession;
use crate::query::bitmap_expr::evaluate as evaluate_bitmap;
use crate::query::users_provider::UsersTable;
use crate::tables::USER_ID;

/// How members' rows are written out.
#[derive(Debug, Clone)]
pub enum Export {
    /// These users columns, read for the members only.
    UsersColumns(Vec<String>),
    /// The query's own rows (any shape), kept for members only.
    Query(Box<LogicalPlan>),
    /// A `BY PERSON` audience: one row per exported person with every profile and contact point
    /// (what `audience_persons` gives), or with `since` the persons changed since that version.
    Persons { audience: String, since: Option<u32> },
}

/// The users a query yields.
#[derive(Debug)]
pub struct Evaluated {
    pub members: RoaringBitmap,
    /// user_ids the query returned that belong to no user (left out).
    pub unknown_ids: u64,
    pub export: Export,
}

/// Plans `text` (a query, written at `origin` in the submitted SQL after `prefix_chars` characters
/// that are not the user's) in `session`, checking that it yields `user_id`.
pub async fn plan_query(session: &QuerySession, text: &str, origin: &Body, prefix_chars: u64) -> Result<LogicalPlan> {
    let locate = |e: Error| match e {
        Error::Sql { message, position: Some((1, c)) } => {
            origin.locate(Error::Sql { message, position: Some((1, c.saturating_sub(prefix_chars).max(1))) })
        }
        other => origin.locate(other),
    };
    let mut statements = crate::audience::statement::parse_statements(text).map_err(locate)?;
    let mut statement = match (statements.len(), statements.pop()) {
        (1, Some(Statement::Sql(s))) if matches!(*s, datafusion::sql::parser::Statement::Statement(ref q) if matches!(**q, datafusion::sql::sqlparser::ast::Statement::Query(_))) => {
            *s
        }
        _ => {
            return Err(origin.locate(Error::Sql {
                message: "expected one query (SELECT ...) yielding user_id".into(),
                position: Some((1, 1)),
            }));
        }
    };
    crate::query::ordinals::spell_out_order_ordinals(&mut statement);
    let plan = session.context().state().statement_to_plan(statement).await.map_err(|e| locate(e.into()))?;
    let names: Vec<String> = plan.schema().fields().iter().map(|f| f.name().clone()).collect();
    if !names.iter().any(|n| n == USER_ID) {
        return Err(origin.locate(Error::Sql {
            message: format!("the query must return a user_id column; it returns {}", names.join(", ")),
            position: Some((1, 1)),
        }));
    }
    if names.iter().filter(|n| *n == USER_ID).count() > 1 {
        return Err(origin.locate(Error::Sql {
            message: "the query returns several user_id columns; keep one".into(),
            position: Some((1, 1)),
        }));
    }
    Ok(plan)
}

/// The members of a planned query.
pub async fn evaluate(session: &QuerySession, plan: LogicalPlan) -> Result<Evaluated> {
    let state = session.context().state();
    let optimized = state.optimize(&plan)?;
    if let Some((members, columns)) = from_bitmaps(session, &optimized)? {
        return Ok(Evaluated { members, unknown_ids: 0, export: Export::UsersColumns(columns) });
    }
    let (members, unknown_ids) = run_for_members(&session.context(), &session.index(), plan.clone()).await?;
    Ok(Evaluated { members, unknown_ids, export: Export::Query(Box::new(plan)) })
}

/// The members of a query planned on any context over the store's `index` (a table function's
/// session), and how many of its user_ids are no user: from the bitmaps when they answer it,
/// else by running it.
pub async fn members_of(
    ctx: &SessionContext,
    index: &IndexSet,
    use_indexes: bool,
    plan: LogicalPlan,
) -> Result<(RoaringBitmap, u64)> {
    let optimized = ctx.state().optimize(&plan)?;
    if let Some((members, _)) = from_bitmaps_with(index, use_indexes, &optimized)? {
        return Ok((members, 0));
    }
    run_for_members(ctx, index, plan).await
}

/// Runs the query's user_id column and looks the ids up in the id dictionary.
async fn run_for_members(ctx: &SessionContext, index: &IndexSet, plan: LogicalPlan) -> Result<(RoaringBitmap, u64)> {
    let ids = LogicalPlanBuilder::from(plan).project(vec![col(USER_ID)])?.build()?;
    let mut stream = ctx.execute_logical_plan(ids).await?.execute_stream().await?;
    let mut resolver = IdResolver::default();
    while let Some(batch) = stream.try_next().await? {
        resolver.add_column(batch.column(0))?;
    }
    let resolved = resolver.finish(index)?;
    Ok((resolved.set, resolved.unknown))
}

/// The members and exported columns when `plan` (optimized) is users columns over a users scan
/// whose filters were all answered from the bitmaps.
pub fn from_bitmaps(session: &QuerySession, plan: &LogicalPlan) -> Result<Option<(RoaringBitmap, Vec<String>)>> {
    from_bitmaps_with(&session.index(), session.use_indexes(), plan)
}

fn from_bitmaps_with(
    index: &IndexSet,
    use_indexes: bool,
    plan: &LogicalPlan,
) -> Result<Option<(RoaringBitmap, Vec<String>)>> {
    if !use_indexes {
        return Ok(None);
    }
    let (columns, scan) = match plan {
        LogicalPlan::Projection(p) => {
            let LogicalPlan::TableScan(scan) = p.input.as_ref() else { return Ok(None) };
            let mut columns = Vec::with_capacity(p.expr.len());
            for e in &p.expr {
                match e {
                    Expr::Column(c) => columns.push(c.name.clone()),
                    // A set of users the audience rule turned into a users scan gives back
                    // user_id in the type of the facts' (`CAST(users.user_id AS ...) AS user_id`).
                    Expr::Alias(a)
                        if a.name == USER_ID
                            && matches!(crate::query::audience_rule::strip_cast(&a.expr), Expr::Column(c) if c.name == USER_ID) =>
                    {
                        columns.push(USER_ID.to_string())
                    }
                    _ => return Ok(None),
                }
            }
            (columns, scan)
        }
        LogicalPlan::TableScan(scan) => {
            (scan.projected_schema.fields().iter().map(|f| f.name().clone()).collect(), scan)
        }
        _ => return Ok(None),
    };
    if scan.fetch.is_some() {
        return Ok(None);
    }
    let provider = source_as_provider(&scan.source)?;
    let Some(users) = <dyn datafusion::catalog::TableProvider>::downcast_ref::<UsersTable>(provider.as_ref()) else {
        return Ok(None);
    };
    // A filter left to the rows (`has_tag('a') OR email LIKE ...`) needs the query to run.
    let Some(selection) = users.bitmap_selection(&scan.filters) else { return Ok(None) };
    let members = evaluate_bitmap(&selection, index)?;
    Ok(Some((members, columns)))
}
