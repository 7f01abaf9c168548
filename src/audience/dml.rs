//! The statements that change data rather than the catalog: `INSERT INTO` and `UPDATE users`
//! here (`DELETE FROM users` is in [`crate::audience::commands`]). Each takes the writer lock, evaluates
//! on the newest version, and commits one new version through the ingest layer, which owns the
//! files:
//!
//! ```text
//! INSERT INTO t [(c, …)] { VALUES … | query }
//!   the rows ─ streamed into a staged Parquet file (a temp file, removed after) ─ the importer,
//!   as `persona import --table t` of that file: same checks, same errors (at "row n")
//! UPDATE users SET c = e, … WHERE p
//!   p ─ the engine (bitmaps where it can) ─ the users to update (a bitmap)
//!   e ─ planned against the users schema, type-checked against c ─ evaluated per users file
//!       on the updated rows only ─ crate::ingest::update::update_rows ─ one new version
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, UInt64Array};
use arrow::compute::{CastOptions, can_cast_types, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::DFSchema;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use futures::StreamExt;

use crate::audience::commands::{PREDICATE_PREFIX, begin, commit};
use crate::audience::evaluate::{evaluate, plan_query};
use crate::audience::statement::{Assignment, Body};
use crate::error::{Error, InputLocation, IoContext, Result};
use crate::query::QuerySession;
use crate::tables::{ColumnDef, Table, USER_ID, contract_columns, sql_schema};

/// Rows per row group of a staged `INSERT` file: a row's place in the file tells its row number.
const STAGED_GROUP_ROWS: usize = 1 << 20;

/// `INSERT INTO table [(columns)] rows`: the rows the `VALUES` list or query gives (evaluated on
/// the newest version) are loaded by the importer into `table` as one new version, with the
/// checks and errors of `persona import` (into `users` that is an upsert by `user_id`). Without
/// a column list the rows' values fill the table's columns in order. Nothing is committed when
/// there are no rows.
pub async fn insert_into(session: &QuerySession, table: Table, columns: &[String], rows: &Body) -> Result<RecordBatch> {
    let writer = begin(session)?;
    let mut frame = session.context().sql(&rows.text).await.map_err(|e| at_value(rows, e))?;
    let mut produced = frame.schema().fields().len();
    let here = Some((rows.line, rows.column));
    let targets: Vec<String> = if columns.is_empty() {
        let all: Vec<String> = match table {
            Table::Users => writer.base().users_columns.iter().map(|c| c.name.clone()).collect(),
            other => contract_columns(other).into_iter().map(|c| c.name).collect(),
        };
        // `INSERT INTO t SELECT * FROM t …`: the computed person_id that `*` ends with is not
        // inserted (it is never stored).
        if produced == all.len() + 1
            && frame.schema().field(all.len()).name() == crate::query::person_id::PERSON_ID
            && !all.iter().any(|c| c == crate::query::person_id::PERSON_ID)
        {
            let kept: Vec<datafusion::prelude::Expr> =
                frame.schema().columns()[..all.len()].iter().cloned().map(datafusion::prelude::Expr::Column).collect();
            frame = frame.select(kept).map_err(|e| at_value(rows, e))?;
            produced = all.len();
        }
        if produced > all.len() {
            return Err(Error::Sql {
                message: format!(
                    "the rows have {produced} values but {table} has {} columns ({}); name the columns to insert",
                    all.len(),
                    all.join(", ")
                ),
                position: here,
            });
        }
        all.into_iter().take(produced).collect()
    } else if columns.len() != produced {
        return Err(Error::Sql {
            message: format!("INSERT names {} column(s) but its rows have {produced} value(s)", columns.len()),
            position: here,
        });
    } else {
        columns.to_vec()
    };
    let staged = StagedRows::new(table);
    let count = stage(frame, &targets, &staged.path).await?;
    let mut names = vec!["inserted"];
    let mut values = vec![count];
    if count > 0 {
        let summary = crate::ingest::import_statement_rows(writer, table, &staged.path)
            .map_err(|e| staged.as_statement_error(e))?;
        session.refresh()?;
        if table == Table::Users {
            names.extend(["new_users", "updated_users"]);
            values.extend([summary.new_users, summary.updated_users]);
        }
    }
    let schema =
        Arc::new(Schema::new(names.iter().map(|n| Field::new(*n, DataType::UInt64, false)).collect::<Vec<_>>()));
    let arrays: Vec<ArrayRef> = values.into_iter().map(|v| Arc::new(UInt64Array::from(vec![v])) as ArrayRef).collect();
    Ok(RecordBatch::try_new(schema, arrays)?)
}

/// The staged rows of an `INSERT`: a Parquet file in the temp directory, removed when dropped.
struct StagedRows {
    path: PathBuf,
    statement: String,
}

impl StagedRows {
    fn new(table: Table) -> StagedRows {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = format!("persona-insert-{}-{nanos}-{table}.parquet", std::process::id());
        StagedRows { path: std::env::temp_dir().join(name), statement: format!("INSERT INTO {table}") }
    }

    /// An importer error about the staged file, told about the statement's rows instead: the
    /// file is `INSERT INTO table` and a place in it is the row number.
    fn as_statement_error(&self, e: Error) -> Error {
        match e {
            Error::Input { file, location, column, message } if file == self.path => {
                let location = match location {
                    InputLocation::RowGroup { row_group, row } => {
                        InputLocation::Row((row_group * STAGED_GROUP_ROWS + row) as u64 + 1)
                    }
                    other => other,
                };
                Error::Input { file: PathBuf::from(&self.statement), location, column, message }
            }
            other => other,
        }
    }
}

impl Drop for StagedRows {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Streams the rows of `frame` into a Parquet file at `path`, its columns named `targets`, text
/// as plain strings and untyped NULLs as text; returns the number of rows.
async fn stage(frame: datafusion::dataframe::DataFrame, targets: &[String], path: &std::path::Path) -> Result<u64> {
    let plain = |t: &DataType| match t {
        DataType::Utf8View | DataType::LargeUtf8 | DataType::Null => DataType::Utf8,
        DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) => {
            DataType::Utf8
        }
        DataType::Dictionary(_, v) => (**v).clone(),
        other => other.clone(),
    };
    let fields: Vec<Field> = frame
        .schema()
        .fields()
        .iter()
        .zip(targets)
        .map(|(f, name)| Field::new(name, plain(f.data_type()), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let file = std::fs::File::create(path).io_context("create", path)?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(STAGED_GROUP_ROWS))
        .build();
    let mut out = parquet::arrow::ArrowWriter::try_new(file, Arc::clone(&schema), Some(props))?;
    let mut stream = frame.execute_stream().await?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let columns = crate::tables::cast_to_schema(batch.columns(), &schema)?;
        out.write(&RecordBatch::try_new(Arc::clone(&schema), columns)?)?;
        rows += batch.num_rows() as u64;
    }
    out.close()?;
    Ok(rows)
}

/// The name the rows of one user_tags file are registered under while a `DELETE FROM user_tags`
/// evaluates its predicate on them (aliased `user_tags` in the query).
const TAG_ROWS_TABLE: &str = "__persona_deleting_user_tags";
/// The column holding each row's position in its file.
const POSITION: &str = "__persona_position";

/// `DELETE FROM user_tags WHERE predicate`: the loaded tag rows the predicate selects go, as one
/// new version (rule tags' rows are the rule's and are left out). The predicate is any condition
/// on a `user_tags` row (subqueries, `IN (SELECT …)`, the session's functions), evaluated file by
/// file by the engine. Returns the number of rows deleted; nothing is committed when none is.
pub async fn delete_tag_rows(session: &QuerySession, predicate: &Body) -> Result<RecordBatch> {
    let writer = begin(session)?;
    let base = Arc::clone(writer.base());
    let root = writer.store().root().to_path_buf();
    let columns = contract_columns(Table::UserTags);
    let mut fields: Vec<Field> = sql_schema(&columns).fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(POSITION, DataType::UInt32, false));
    let schema = Arc::new(Schema::new(fields));
    let prefix = format!("SELECT {POSITION} FROM {TAG_ROWS_TABLE} AS user_tags WHERE ");
    let query = format!("{prefix}{}", predicate.text);
    let context = session.context();
    let locate_in = |e: Error| match e {
        Error::Sql { message, position: Some((1, c)) } => predicate.locate(Error::Sql {
            message,
            position: Some((1, c.saturating_sub(prefix.chars().count() as u64).max(1))),
        }),
        Error::Sql { message, position: None } => {
            Error::Sql { message, position: Some((predicate.line, predicate.column)) }
        }
        other => other,
    };
    // The position column is ours: a list of the columns in an error leaves it out.
    let locate = |e: Error| match e {
        Error::Sql { message, position } if message.contains(POSITION) => {
            let message = message.replace(&format!(", user_tags.{POSITION}"), "");
            locate_in(Error::Sql { message, position })
        }
        other => locate_in(other),
    };
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let mut deleting = crate::ingest::tag_rows::RowsToDelete::new();
    // An empty table first: a predicate that does not plan fails before any file is read.
    let mut files: Vec<Option<&crate::store::manifest::DataFile>> = vec![None];
    files.extend(crate::ingest::tag_rows::loaded_tag_files(&base).into_iter().map(Some));
    for file in files {
        let mut batches = Vec::new();
        if let Some(file) = file {
            let mut at = 0u32;
            crate::store::fact_rows::for_each_fact_batch(&root, file, &names, |batch, _| {
                let mut arrays = crate::tables::cast_to_schema(batch.columns(), &schema)?;
                let n = batch.num_rows() as u32;
                arrays.push(Arc::new(arrow::array::UInt32Array::from_iter_values(at..at + n)));
                at += n;
                batches.push(RecordBatch::try_new(Arc::clone(&schema), arrays)?);
                Ok(())
            })?;
        }
        let table = datafusion::datasource::MemTable::try_new(Arc::clone(&schema), vec![batches])?;
        context.register_table(TAG_ROWS_TABLE, Arc::new(table))?;
        let selected = async { context.sql(&query).await?.collect().await }.await;
        context.deregister_table(TAG_ROWS_TABLE)?;
        let selected = selected.map_err(|e| locate(Error::from(e)))?;
        let positions: roaring::RoaringBitmap = selected
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<arrow::datatypes::UInt32Type>().values().to_vec())
            .collect();
        if let (Some(file), false) = (file, positions.is_empty()) {
            deleting.insert(file.path.clone(), positions);
        }
    }
    let (next, deleted) = crate::ingest::tag_rows::delete_tag_rows(&writer, &deleting)?;
    if deleted > 0 {
        commit(session, writer, next)?;
    }
    let schema = Arc::new(Schema::new(vec![Field::new("deleted", DataType::UInt64, false)]));
    Ok(RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![deleted]))])?)
}

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
        if a.column == crate::query::person_id::PERSON_ID && !columns.iter().any(|c| c.name == a.column) {
            return Err(at("person_id cannot be updated: it is computed, the person the identity resolution put the user in; link identifiers (INSERT INTO identities) or split them (UNLINK) instead".into()));
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
