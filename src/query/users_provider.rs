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
use datafusion::logical_expr::{Expr, ScalarUDF, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use crate::index::IndexSet;
use crate::query::bitmap_expr::{BitmapExpr, evaluate, translate};
use crate::query::bitmap_scan::{UsersFile, bitmap_scan, bitmap_scan_with_nulls, row_count_only};
use crate::query::person_id::{self, StoredProjection};
use crate::query::residual;
use crate::tables::ROW_ID_COLUMN;

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
    /// The schema SQL sees: `schema`, then `person_id` when the store resolves identities.
    sql_schema: SchemaRef,
    /// What computes `person_id` ([`crate::query::person_id`]).
    person_id: Option<Arc<ScalarUDF>>,
}

impl UsersTable {
    pub fn new(
        schema: SchemaRef,
        files: Vec<UsersFile>,
        index: Arc<IndexSet>,
        use_indexes: Arc<AtomicBool>,
        fallback: Arc<dyn TableProvider>,
    ) -> Self {
        UsersTable { sql_schema: Arc::clone(&schema), schema, files, index, use_indexes, fallback, person_id: None }
    }

    /// The table with `person_id`, computed by `udf` (none: without it).
    pub fn with_person_id(mut self, udf: Option<Arc<ScalarUDF>>) -> Self {
        self.sql_schema = match &udf {
            Some(_) => person_id::with_person_id(&self.schema),
            None => Arc::clone(&self.schema),
        };
        self.person_id = udf;
        self
    }

    fn indexes_on(&self) -> bool {
        self.use_indexes.load(Ordering::Relaxed)
    }

    /// The filters the bitmaps answer exactly, as one expression of the users they keep (`None`
    /// when there are none), and the filters left to the rows.
    fn split_filters<'a>(&self, filters: &'a [Expr]) -> (Option<BitmapExpr>, Vec<&'a Expr>) {
        let mut parts = Vec::new();
        let mut rest = Vec::new();
        for f in filters {
            match translate(f, &self.index) {
                Some(t) => parts.push(t.when_true),
                None => rest.push(f),
            }
        }
        let selection = match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(BitmapExpr::And(parts)),
        };
        (selection, rest)
    }

    /// The users the pushed `filters` select when the bitmaps answer every one of them exactly
    /// (`Universe` for no filter); `None` when some filter is left to the rows.
    pub fn bitmap_selection(&self, filters: &[Expr]) -> Option<BitmapExpr> {
        let (selection, rest) = self.split_filters(filters);
        rest.is_empty().then(|| selection.unwrap_or(BitmapExpr::Universe))
    }
}

impl UsersTable {
    /// Whether the files hold row ids `0..universe` one after the other (a count of selected
    /// row ids is then the count of selected rows).
    fn files_cover_every_row_id(&self) -> bool {
        let mut next = 0u64;
        for file in &self.files {
            if u64::from(file.first_row_id) != next {
                return false;
            }
            next += file.rows;
        }
        next == self.index.universe_len()
    }

    /// NULLs among the selected users of each projected column that has a NULL bitmap.
    fn null_counts(
        &self,
        selection: Option<&roaring::RoaringBitmap>,
        projection: Option<&Vec<usize>>,
    ) -> Result<Vec<(usize, u64)>> {
        let columns: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let mut out = Vec::new();
        for i in columns {
            let name = self.schema.field(i).name();
            if !self.index.has_values(name) {
                continue;
            }
            let nulls = self
                .index
                .get(crate::index::format::BitmapKind::Null, name, "")
                .map_err(|e| datafusion::common::DataFusionError::External(Box::new(e)))?;
            out.push((i, selection.map_or_else(|| nulls.len(), |s| s.intersection_len(&nulls))));
        }
        Ok(out)
    }

    /// Reads the selected rows with their row ids and the columns the residual filters need,
    /// keeps the rows they make TRUE and returns the projected columns.
    fn residual_scan(
        &self,
        state: &dyn CatalogSession,
        selection: Option<&roaring::RoaringBitmap>,
        projection: Option<&Vec<usize>>,
        residuals: Vec<Expr>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut fields: Vec<arrow::datatypes::FieldRef> = self.schema.fields().iter().cloned().collect();
        fields.push(Arc::new(arrow::datatypes::Field::new(ROW_ID_COLUMN, arrow::datatypes::DataType::UInt32, false)));
        let scan_schema = Arc::new(arrow::datatypes::Schema::new(fields));
        let (mut read, wanted, predicate) = self.with_filter_columns(projection, residuals)?;
        let row_id = scan_schema.index_of(ROW_ID_COLUMN)?;
        if !read.contains(&row_id) {
            read.push(row_id);
        }
        let input = bitmap_scan(
            &self.files,
            Arc::clone(&scan_schema),
            selection,
            Some(&read),
            None,
            1.max(state.config().target_partitions()),
        )?;
        self.filter_and_project(state, input, predicate, wanted, limit)
    }

    /// The columns to read for `projection` and the columns `filters` use (indices into the
    /// table schema), how many of them the projection asked for, and the filters' conjunction
    /// over unqualified columns.
    fn with_filter_columns(
        &self,
        projection: Option<&Vec<usize>>,
        filters: Vec<Expr>,
    ) -> Result<(Vec<usize>, usize, Expr)> {
        let predicate =
            datafusion::logical_expr::utils::conjunction(filters).unwrap_or_else(|| datafusion::prelude::lit(true));
        let predicate =
            crate::query::fact_filter::unqualified(predicate).map_err(datafusion::common::DataFusionError::from)?;
        let mut read: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let wanted = read.len();
        for column in predicate.column_refs() {
            if column.name == ROW_ID_COLUMN {
                continue;
            }
            let i = self.schema.index_of(&column.name)?;
            if !read.contains(&i) {
                read.push(i);
            }
        }
        Ok((read, wanted, predicate))
    }

    /// `input` filtered by `predicate`, projected to its first `wanted` columns, and limited.
    fn filter_and_project(
        &self,
        state: &dyn CatalogSession,
        input: Arc<dyn ExecutionPlan>,
        predicate: Expr,
        wanted: usize,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        use datafusion::physical_plan::expressions::Column as PhysicalColumn;
        use datafusion::physical_plan::filter::FilterExec;
        use datafusion::physical_plan::limit::LocalLimitExec;
        use datafusion::physical_plan::projection::ProjectionExec;
        let df_schema = datafusion::common::DFSchema::try_from(input.schema().as_ref().clone())?;
        let physical = state.create_physical_expr(predicate, &df_schema)?;
        let filtered: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(physical, input)?);
        let out_schema = filtered.schema();
        let columns = (0..wanted)
            .map(|i| {
                let name = out_schema.field(i).name().clone();
                (Arc::new(PhysicalColumn::new(&name, i)) as Arc<dyn datafusion::physical_plan::PhysicalExpr>, name)
            })
            .collect::<Vec<_>>();
        let projected: Arc<dyn ExecutionPlan> = Arc::new(ProjectionExec::try_new(columns, filtered)?);
        Ok(match limit {
            Some(n) => Arc::new(LocalLimitExec::new(projected, n)),
            None => projected,
        })
    }
}

#[async_trait]
impl TableProvider for UsersTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.sql_schema)
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
                if translate(f, &self.index).is_some() || residual::applies(f, &self.index) {
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
        if let Some(udf) = &self.person_id
            && let Some(computed) = StoredProjection::of(&self.sql_schema, projection)
        {
            let stored = self.scan(state, Some(&computed.stored), filters, limit).await?;
            return computed.project(state, udf, stored);
        }
        // Indexes off: DataFusion's own scan and filter. The filters are applied here, not only
        // left above: they may have been accepted as Exact before `persona.use_indexes` was
        // switched off.
        if !self.indexes_on() {
            let has_holes = !self.index.forgotten().is_empty();
            if filters.is_empty() && !has_holes {
                return self.fallback.scan(state, projection, filters, limit).await;
            }
            // A forgotten user's row stays in its file (blanked only by a purge): the live rows
            // are read by row id, and every filter is applied to them.
            if has_holes {
                let live = self.index.universe();
                return self.residual_scan(state, Some(&live), projection, filters.to_vec(), limit);
            }
            let (read, wanted, predicate) = self.with_filter_columns(projection, filters.to_vec())?;
            let input = self.fallback.scan(state, Some(&read), &[], None).await?;
            return self.filter_and_project(state, input, predicate, wanted, limit);
        }
        // Each filter translated once: a user_id lookup reads the id dictionary.
        let (exact, partial) = self.split_filters(filters);
        // `count(*)` of users the bitmaps select: how many, without the set where it can.
        if projection.is_some_and(|p| p.is_empty())
            && partial.is_empty()
            && let Some(expr) = &exact
            && self.files_cover_every_row_id()
        {
            return row_count_only(crate::query::bitmap_expr::count(expr, &self.index)?, limit);
        }
        let mut selection = match exact {
            Some(expr) => Some(evaluate(&expr, &self.index)?),
            None => None,
        };
        // Forgotten users' blanked rows are read by no scan: "every user" is the live ones.
        if selection.is_none() && !self.index.forgotten().is_empty() {
            selection = Some(self.index.universe());
        }
        let partitions = state.config().target_partitions();
        if partial.is_empty() {
            let nulls = self.null_counts(selection.as_ref(), projection)?;
            return bitmap_scan_with_nulls(
                &self.files,
                Arc::clone(&self.schema),
                selection.as_ref(),
                projection,
                limit,
                partitions,
                &nulls,
            );
        }
        let mut residuals = Vec::with_capacity(partial.len());
        for filter in partial {
            let split = residual::split(filter, &self.index)?;
            if let Some(maybe) = &split.maybe_true {
                selection = Some(match selection {
                    Some(s) => s & maybe,
                    None => maybe.clone(),
                });
            }
            residuals.push(split.expr);
        }
        self.residual_scan(state, selection.as_ref(), projection, residuals, limit)
    }
}
