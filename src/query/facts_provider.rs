//! The fact tables (`purchases`, `events`, `user_tags`): plain Parquet tables, except that a lookup
//! of given users — `user_id = '…'` or `user_id IN (…)` — reads only the row groups whose user row
//! ids can hold them: the ids come from the id dictionary, each row group's range of row ids from
//! the manifest, and in a file grouped by user with a plain copy only the rows of those users
//! (found by binary search in the copy's row ids), so that one user's purchases read a page or
//! two. The filter itself stays (it is reported inexact), so rows are still checked.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, DataFusionError, Result, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, ScalarUDF, TableProviderFilterPushDown};
use datafusion::object_store::ObjectMeta;
use datafusion::parquet::arrow::arrow_reader::RowSelection;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;

use crate::index::IndexSet;
use crate::query::audience_rule::collect_values;
use crate::query::bitmap_scan::{file_metadata, preloaded_source, store_path};
use crate::query::person_id::{self, StoredProjection};
use crate::store::dead_rows;
use crate::store::manifest::DataFile;
use crate::store::plain_columns::PlainColumns;
use crate::tables::{Table, USER_ID};

/// One stored fact file.
#[derive(Debug, Clone)]
pub struct FactFile {
    pub path: PathBuf,
    pub bytes: u64,
    /// Per row group, the smallest and largest user row id (empty: unknown).
    pub row_id_ranges: Vec<(u32, u32)>,
    pub rows: u64,
    /// Its plain copy, when its rows are grouped by user (row ids ascending).
    pub plain_by_user: Option<PathBuf>,
    /// The rows of forgotten users it still holds ([`crate::store::dead_rows`]), read when a
    /// scan reads the file.
    pub dead: Option<(PathBuf, DataFile)>,
}

impl FactFile {
    /// The positions of its dead rows, if it has any.
    fn dead_rows(&self) -> Result<Option<Arc<roaring::RoaringBitmap>>> {
        match &self.dead {
            Some((root, file)) => dead_rows::of(root, file).map_err(DataFusionError::from),
            None => Ok(None),
        }
    }

    /// The selection of its live rows over the whole file, if some are dead.
    fn live_rows(&self) -> Result<Option<RowSelection>> {
        Ok(self.dead_rows()?.map(|dead| dead_rows::live_selection(&dead, &[(0, self.rows)])))
    }
}

/// The rows of `file` whose user is one of `ids` (sorted), as a selection over the whole file,
/// from the row ids of its plain copy; `None` when the copy cannot say.
fn rows_of_users(file: &FactFile, ids: &[u32]) -> Result<Option<RowSelection>> {
    let Some(path) = &file.plain_by_user else { return Ok(None) };
    let Some(copy) = PlainColumns::open_cached(path, &[], file.rows).map_err(DataFusionError::from)? else {
        return Ok(None);
    };
    if copy.rows() != file.rows {
        return Ok(None);
    }
    let rows = usize::try_from(file.rows).map_err(|e| DataFusionError::External(Box::new(e)))?;
    let mut ranges = copy.rows_of_users(ids).map_err(DataFusionError::from)?;
    ranges.sort_by_key(|r| r.start);
    Ok(Some(RowSelection::from_consecutive_ranges(ranges.into_iter(), rows)))
}

/// Whether some row group of `file` can hold a user of `ids` (sorted) by its range of row ids
/// (a file without ranges can), and the plan skipping the row groups that cannot.
fn groups_of_users(file: &FactFile, ids: &[u32]) -> (bool, ParquetAccessPlan) {
    let mut plan = ParquetAccessPlan::new_all(file.row_id_ranges.len());
    let mut any = file.row_id_ranges.is_empty();
    for (group, (lo, hi)) in file.row_id_ranges.iter().enumerate() {
        let first_at_least_lo = ids.partition_point(|id| id < lo);
        if ids.get(first_at_least_lo).is_some_and(|id| id <= hi) {
            any = true;
        } else {
            plan.skip(group);
        }
    }
    (any, plan)
}

/// A fact table of one snapshot.
#[derive(Debug)]
pub struct FactsTable {
    table: Table,
    files: Vec<FactFile>,
    index: Arc<IndexSet>,
    use_indexes: Arc<AtomicBool>,
    /// The plain Parquet table, for everything but user lookups.
    inner: Arc<dyn TableProvider>,
    /// The schema SQL sees: the stored columns, then `person_id` when the store resolves
    /// identities.
    sql_schema: SchemaRef,
    /// What computes `person_id` ([`crate::query::person_id`]).
    person_id: Option<Arc<ScalarUDF>>,
}

impl FactsTable {
    pub fn new(
        table: Table,
        files: Vec<FactFile>,
        index: Arc<IndexSet>,
        use_indexes: Arc<AtomicBool>,
        inner: Arc<dyn TableProvider>,
    ) -> Self {
        FactsTable { table, files, index, use_indexes, sql_schema: inner.schema(), inner, person_id: None }
    }

    /// The table with `person_id`, computed by `udf` (none: without it).
    pub fn with_person_id(mut self, udf: Option<Arc<ScalarUDF>>) -> Self {
        self.sql_schema = match &udf {
            Some(_) => person_id::with_person_id(&self.inner.schema()),
            None => self.inner.schema(),
        };
        self.person_id = udf;
        self
    }

    /// Which fact table this is.
    pub fn table(&self) -> Table {
        self.table
    }

    /// The row ids of the users a filter restricts the rows to (sorted), if any filter does.
    fn looked_up_users(&self, filters: &[Expr]) -> Option<Vec<u32>> {
        for filter in filters {
            let mut keys = Vec::new();
            if collect_values(filter, USER_ID, &mut keys).is_none() {
                continue;
            }
            let mut ids = Vec::with_capacity(keys.len());
            for key in &keys {
                // A dictionary that cannot be read: no pruning (the scan is still exact).
                if let Some(id) = self.index.row_id(key).ok()? {
                    ids.push(id);
                }
            }
            ids.sort_unstable();
            return Some(ids);
        }
        None
    }
}

#[async_trait]
impl TableProvider for FactsTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.sql_schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
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
        let lookup = if self.use_indexes.load(Ordering::Relaxed) { self.looked_up_users(filters) } else { None };
        let Some(ids) = lookup else {
            if self.files.iter().any(|f| f.dead.is_some()) {
                return self.scan_live_rows(state, projection, filters, limit);
            }
            return self.inner.scan(state, projection, filters, limit).await;
        };
        let schema = self.inner.schema();
        let mut partitioned = Vec::new();
        let mut footers = HashMap::new();
        for file in &self.files {
            let (any, plan) = groups_of_users(file, &ids);
            if !any {
                continue;
            }
            // Grouped by user with a plain copy: exactly the users' rows.
            let selection = rows_of_users(file, &ids)?;
            if selection.as_ref().is_some_and(|s| !s.selects_any()) {
                continue;
            }
            let footer = file_metadata(&file.path, file.bytes)?;
            let exact = selection.is_some();
            // A user_id given again after its user was forgotten names a new user: the rows
            // of the forgotten one are skipped like every dead row.
            let live = file.live_rows()?;
            let narrowed = live.is_some();
            let selection = match (selection, live) {
                (Some(users), Some(live)) => Some(users.intersection(&live)),
                (users, live) => users.or(live),
            };
            let plan = match selection {
                Some(selection) => {
                    let mut narrowed =
                        ParquetAccessPlan::try_new_from_overall_row_selection(selection, footer.row_groups())?;
                    if plan.len() == narrowed.len() {
                        for group in (0..plan.len()).filter(|g| !plan.should_scan(*g)) {
                            narrowed.skip(group);
                        }
                    }
                    narrowed
                }
                None => plan,
            };
            let mut f = partitioned_file(file)?;
            if exact || narrowed || !file.row_id_ranges.is_empty() {
                f = f.with_extension(plan);
            }
            footers.insert(f.object_meta.location.clone(), footer);
            partitioned.push(f);
        }
        if partitioned.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(schema.project(p)?),
                None => schema,
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let source = preloaded_source(schema, footers);
        let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
            .with_file_groups(vec![FileGroup::new(partitioned)])
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

impl FactsTable {
    /// A scan of every live row, for a table some of whose files have dead rows: each such file
    /// read with a plan skipping them, the filters used for pruning as the listing table would
    /// (they stay above the scan), and exact row counts of live rows only, so that a count is
    /// still answered without reading and never counts a dead row.
    fn scan_live_rows(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.inner.schema();
        let mut partitioned = Vec::with_capacity(self.files.len());
        let mut footers = HashMap::new();
        let mut live_rows = 0u64;
        for file in &self.files {
            let footer = file_metadata(&file.path, file.bytes)?;
            let mut f = partitioned_file(file)?;
            let dead = file.dead_rows()?;
            live_rows += file.rows - dead.as_ref().map_or(0, |d| d.len());
            if let Some(dead) = dead {
                if dead.len() >= file.rows {
                    continue;
                }
                let live = dead_rows::live_selection(&dead, &[(0, file.rows)]);
                f = f.with_extension(ParquetAccessPlan::try_new_from_overall_row_selection(live, footer.row_groups())?);
            }
            footers.insert(f.object_meta.location.clone(), footer);
            partitioned.push(f);
        }
        let projected = match projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => Arc::clone(&schema),
        };
        if partitioned.is_empty() {
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let mut source = preloaded_source(Arc::clone(&schema), footers);
        if let Some(predicate) = conjunction(filters.iter().cloned()) {
            let df_schema = DFSchema::try_from(Arc::clone(&schema))?;
            source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
        }
        let mut statistics = Statistics::new_unknown(&schema);
        statistics.num_rows = Precision::Exact(usize::try_from(live_rows).unwrap_or(usize::MAX));
        let partitions = state.config().target_partitions().max(1);
        let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
            .with_file_groups(FileGroup::new(partitioned).split_files(partitions))
            .with_projection_indices(projection.cloned())?
            .with_statistics(statistics)
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

fn partitioned_file(file: &FactFile) -> Result<PartitionedFile> {
    Ok(PartitionedFile::new_from_meta(ObjectMeta {
        location: store_path(&file.path)?,
        last_modified: chrono::DateTime::UNIX_EPOCH,
        size: file.bytes,
        e_tag: None,
        version: None,
    }))
}
