//! The `rfm` view: per buyer, recency in days, frequency (purchases) and monetary value (amount
//! spent) up to `now()`, their 1–5 quintile scores (5 = most recent, most frequent, highest
//! spend; ties broken by `user_id`, so every engine and every run agree), and the classic eight
//! segments of R, F and M each high (score ≥ 3) or low. It is SQL planned when the view is read,
//! on the session that reads it, so `--now` and the indexes apply, and the per-user aggregate
//! and window stack take the same paths as a hand-written RFM query. [`SqlView`] is how: a view
//! whose SQL is planned when it is read, also what `funnel()` returns.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result as DfResult, plan_err};
use datafusion::datasource::TableType;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast};
use datafusion::physical_plan::ExecutionPlan;

/// The view's query: its output names and types are [`rfm_schema`]'s.
const RFM_SQL: &str = "
WITH base AS (
  SELECT user_id, max(ts) AS last_ts, count(*) AS frequency, round(sum(amount), 2) AS monetary
  FROM purchases
  WHERE ts < now()
  GROUP BY user_id
), scored AS (
  SELECT user_id, last_ts, frequency, monetary,
         ntile(5) OVER (ORDER BY last_ts, user_id)   AS r,
         ntile(5) OVER (ORDER BY frequency, user_id) AS f,
         ntile(5) OVER (ORDER BY monetary, user_id)  AS m
  FROM base
)
SELECT CAST(user_id AS VARCHAR) AS user_id,
       CAST(floor((extract(epoch FROM now()) - extract(epoch FROM last_ts)) / 86400) AS BIGINT) AS recency_days,
       CAST(frequency AS BIGINT) AS frequency,
       CAST(monetary AS DOUBLE) AS monetary,
       CAST(r AS BIGINT) AS r_score,
       CAST(f AS BIGINT) AS f_score,
       CAST(m AS BIGINT) AS m_score,
       CASE
         WHEN r >= 3 AND f >= 3 AND m >= 3 THEN 'important value'
         WHEN r <  3 AND f >= 3 AND m >= 3 THEN 'important retention'
         WHEN r >= 3 AND f <  3 AND m >= 3 THEN 'important development'
         WHEN r <  3 AND f <  3 AND m >= 3 THEN 'important recall'
         WHEN r >= 3 AND f >= 3 AND m <  3 THEN 'general value'
         WHEN r <  3 AND f >= 3 AND m <  3 THEN 'general retention'
         WHEN r >= 3 AND f <  3 AND m <  3 THEN 'general development'
         ELSE 'general recall'
       END AS segment
FROM scored";

/// The columns of `rfm`.
pub fn rfm_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, true),
        Field::new("recency_days", DataType::Int64, true),
        Field::new("frequency", DataType::Int64, true),
        Field::new("monetary", DataType::Float64, true),
        Field::new("r_score", DataType::Int64, true),
        Field::new("f_score", DataType::Int64, true),
        Field::new("m_score", DataType::Int64, true),
        Field::new("segment", DataType::Utf8, true),
    ]))
}

/// How a view's SQL is written for the session that reads it (from its settings, say).
pub type ViewSql = Arc<dyn Fn(&SessionState) -> DfResult<String> + Send + Sync>;

/// A view whose SQL is planned when it is scanned, on the scanning session (its `now()`, its
/// indexes, its settings), with the columns it declares: the `rfm` and `lifecycle` views, and
/// what `funnel()` and `lifecycle_flow()` return.
pub struct SqlView {
    /// The SQL as written with the default settings (what `SHOW`-like catalogs display).
    definition: String,
    sql: ViewSql,
    schema: SchemaRef,
}

impl std::fmt::Debug for SqlView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlView").field("definition", &self.definition).field("schema", &self.schema).finish()
    }
}

impl SqlView {
    /// A view of fixed SQL.
    pub fn new(sql: String, schema: SchemaRef) -> SqlView {
        let text = sql.clone();
        SqlView { definition: sql, sql: Arc::new(move |_| Ok(text.clone())), schema }
    }

    /// A view whose SQL depends on the reading session.
    pub fn with_session_sql(definition: String, sql: ViewSql, schema: SchemaRef) -> SqlView {
        SqlView { definition, sql, schema }
    }

    /// The `rfm` view.
    pub fn rfm() -> SqlView {
        SqlView::new(RFM_SQL.to_string(), rfm_schema())
    }
}

#[async_trait]
impl TableProvider for SqlView {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.definition)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let Some(state) = state.as_any().downcast_ref::<SessionState>() else {
            return plan_err!("this view is read through a Persona session");
        };
        let sql = (self.sql)(state)?;
        let mut plan = state.create_logical_plan(&sql).await?;
        // Each column as the view declares it (SQL's VARCHAR may plan as a string view), the
        // projection applied before planning.
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        let wanted = projection.unwrap_or(&all);
        let mut columns: Vec<Expr> = Vec::with_capacity(wanted.len());
        for i in wanted {
            let declared = self.schema.field(*i);
            let Some(at) = plan.schema().index_of_column_by_name(None, declared.name()) else {
                return plan_err!("the view's query has no column {}", declared.name());
            };
            let column = Expr::Column(plan.schema().qualified_field(at).into());
            columns.push(cast(column, declared.data_type().clone()).alias(declared.name()));
        }
        plan = LogicalPlanBuilder::from(plan).project(columns)?.build()?;
        state.create_physical_plan(&plan).await
    }
}
