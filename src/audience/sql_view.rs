//! A view whose SQL is written and planned when it is read, on the reading session, with the
//! columns it declares: the `rfm`, `lifecycle` and `churn_risk` views, and what `funnel()`,
//! `lifecycle_flow()`, `churn_backtest()` and `attrition()` return. Planned on the reading
//! session, its `now()` is that session's (pinned or not), its settings apply, and the planner's
//! rules see the SQL as if it had been typed.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result as DfResult, plan_err};
use datafusion::datasource::TableType;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast};
use datafusion::physical_plan::ExecutionPlan;

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
