//! The `users` table: filters that translate exactly into bitmap algebra are accepted as `Exact`
//! and answered from the indexes; the scan then reads only the selected rows (and reports their
//! exact count, so `count(*)` reads no Parquet at all). With indexes switched off, or for filters
//! it does not understand, it behaves like a plain Parquet table.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use crate::index::IndexSet;
use crate::query::bitmap_expr::{BitmapExpr, evaluate, translate};
use crate::query::bitmap_scan::{UsersFile, bitmap_scan};

/// The users provider of one snapshot.
#[derive(Debug)]
pub struct UsersTable {
    schema: SchemaRef,
    files: Vec<UsersFile>,
    index: Arc<IndexSet>,
    /// Shared with the session: `SET persona.use_indexes = false` switches pushdown off.
    use_indexes: Arc<AtomicBool>,
    /// The plain Parquet table used when indexes are off.
    fallback: Arc<dyn TableProvider>,
}

impl UsersTable {
    pub fn new(
        schema: SchemaRef,
        files: Vec<UsersFile>,
        index: Arc<IndexSet>,
        use_indexes: Arc<AtomicBool>,
        fallback: Arc<dyn TableProvider>,
    ) -> Self {
        UsersTable { schema, files, index, use_indexes, fallback }
    }

    fn indexes_on(&self) -> bool {
        self.use_indexes.load(Ordering::Relaxed)
    }

    /// The bitmap expression of the filters DataFusion pushed (all of them translate, since only
    /// those were accepted as Exact).
    pub fn selection_expr(&self, filters: &[Expr]) -> Option<BitmapExpr> {
        if filters.is_empty() {
            return None;
        }
        let parts: Vec<BitmapExpr> =
            filters.iter().filter_map(|f| translate(f, &self.index)).map(|t| t.when_true).collect();
        Some(if parts.len() == 1 { parts.into_iter().next().expect("one part") } else { BitmapExpr::And(parts) })
    }
}

#[async_trait]
impl TableProvider for UsersTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        if !self.indexes_on() {
            return self.fallback.supports_filters_pushdown(filters);
        }
        Ok(filters
            .iter()
            .map(|f| {
                if translate(f, &self.index).is_some() {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !self.indexes_on() {
            return self.fallback.scan(state, projection, filters, limit).await;
        }
        if let Some(untranslatable) = filters.iter().find(|f| translate(f, &self.index).is_none()) {
            return datafusion::common::internal_err!(
                "users scan received a filter it did not accept: {untranslatable}"
            );
        }
        let selection = match self.selection_expr(filters) {
            Some(expr) => Some(evaluate(&expr, &self.index)?),
            None => None,
        };
        let partitions = state.config().target_partitions();
        bitmap_scan(&self.files, Arc::clone(&self.schema), selection.as_ref(), projection, limit, partitions)
    }
}
