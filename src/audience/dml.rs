//! The statements that change data rather than the catalog: `UPDATE users SET … WHERE …` here
//! (`DELETE FROM users` is in [`crate::audience::commands`]). Each takes the writer lock, evaluates
//! on the newest version, and commits one new version through the ingest layer, which owns the
//! files:
//!
//! ```text
//! UPDATE users SET c = e, … WHERE p
//!   p ─ the engine (bitmaps where it can) ─ the users to update (a bitmap)
//!   e ─ planned against the users schema, type-checked against c ─ evaluated per users file
//!       on the updated rows only ─ crate::ingest::update::update_rows ─ one new version
//! ```

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::compute::{CastOptions, can_cast_types, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::DFSchema;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;

use crate::audience::commands::{PREDICATE_PREFIX, begin, commit};
use crate::audience::evaluate::{evaluate, plan_query};
use crate::audience::statement::{Assignment, Body};
use crate::error::{Error, Result};
use crate::query::QuerySession;
use crate::tables::{ColumnDef, USER_ID, sql_schema};

/// One `column = expression`, planned.
struct Planned {
    column: String,
    ty: DataType,
    expr: Arc<dyn PhysicalExpr>,
    value: Body,
}

/// `UPDATE users SET … WHERE predicate`: the predicate selects users on the newest version; each
/// expression is evaluated on their rows (it may read any users column of the row, as it was
/// before the update) and cast to its column's type. Nothing is committed when the predicate
/// selects nobody. Returns the number of users updated.
pub async fn update_users(session: &QuerySession, assignments: &[Assignment], predicate: &Body) -> Result<RecordBatch> {
    let writer = begin(session)?;
    let columns = writer.base().users_columns.clone();
    let planned = plan_assignments(session, &columns, assignments)?;
    let query = format!("{PREDICATE_PREFIX}{}", predicate.text);
    let plan = plan_query(session, &query, predicate, PREDICATE_PREFIX.chars().count() as u64).await?;
    let members = evaluate(session, plan).await?.members;
    let changed: Vec<String> = planned.iter().map(|p| p.column.clone()).collect();
    let mut compute =
        |rows: &RecordBatch| -> Result<Vec<ArrayRef>> { planned.iter().map(|p| new_values(p, rows)).collect() };
    let (next, summary) = crate::ingest::update::update_rows(&writer, &members, &changed, &mut compute)?;
    if summary.updated > 0 {
        commit(session, writer, next)?;
    }
    let schema = Arc::new(Schema::new(vec![Field::new("updated", DataType::UInt64, false)]));
    Ok(RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![summary.updated]))])?)
}

/// Checks each assignment's column and plans its expression against the users columns.
fn plan_assignments(session: &QuerySession, columns: &[ColumnDef], assignments: &[Assignment]) -> Result<Vec<Planned>> {
    let sql = sql_schema(columns);
    let schema = DFSchema::try_from_qualified_schema("users", &sql)?;
    let context = session.context();
    let mut planned: Vec<Planned> = Vec::with_capacity(assignments.len());
    for a in assignments {
        let at = |message: String| Error::Sql { message, position: Some(a.at) };
        if a.column == USER_ID {
            return Err(at(
                "user_id cannot be updated: facts and the id dictionary name users by it; forget the user and load the row under the new id instead".into(),
            ));
        }
        let Some(def) = columns.iter().find(|c| c.name == a.column) else {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            return Err(at(format!("users has no column '{}' (its columns are {})", a.column, names.join(", "))));
        };
        if planned.iter().any(|p| p.column == a.column) {
            return Err(at(format!("column '{}' is set twice", a.column)));
        }
        let located = |e: datafusion::error::DataFusionError| at_value(&a.value, e);
        let expr = context.parse_sql_expr(&a.value.text, &schema).map_err(located)?;
        let from = expr.get_type(&schema).map_err(located)?;
        let ty = def.ty.arrow_type();
        let here = (a.value.line, a.value.column);
        let refuse = |why: &str| Error::Sql {
            message: format!("cannot set column '{}' ({}) to a value of type {from}{why}", a.column, def.ty.sql_name()),
            position: Some(here),
        };
        if !can_cast_types(&from, &ty) {
            return Err(refuse(""));
        }
        if ty.is_integer()
            && (from.is_floating() || matches!(from, DataType::Decimal128(..) | DataType::Decimal256(..)))
        {
            return Err(refuse(": it would lose the fraction; round it first, e.g. CAST(round(x) AS BIGINT)"));
        }
        let expr = context.create_physical_expr(expr, &schema).map_err(located)?;
        planned.push(Planned { column: a.column.clone(), ty, expr, value: a.value.clone() });
    }
    Ok(planned)
}

/// The values of one assignment for `rows`, in its column's type; a value that does not convert
/// (text that is no number, a number out of range) is an error naming the column.
fn new_values(p: &Planned, rows: &RecordBatch) -> Result<ArrayRef> {
    let located = |e: datafusion::error::DataFusionError| at_value(&p.value, e);
    let values = p.expr.evaluate(rows).map_err(located)?.into_array(rows.num_rows()).map_err(located)?;
    let strict = CastOptions { safe: false, ..Default::default() };
    cast_with_options(&values, &p.ty, &strict).map_err(|e| Error::Sql {
        message: format!("a value for column '{}' does not convert to its type: {e}", p.column),
        position: Some((p.value.line, p.value.column)),
    })
}

/// An error of an assignment's expression, placed in the statement: where DataFusion said, else
/// at the expression's start.
fn at_value(value: &Body, e: datafusion::error::DataFusionError) -> Error {
    match value.locate(Error::from(e)) {
        Error::Sql { message, position: None } => Error::Sql { message, position: Some((value.line, value.column)) },
        other => other,
    }
}
