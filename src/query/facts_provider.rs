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
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, ScalarUDF, TableProviderFilterPushDown};
use datafusion::object_store::ObjectMeta;
use datafusion::parquet::arrow::arrow_reader::RowSelection;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;

use crate::index::IndexSet;
use crate::query::audience_rule::collect_values;
use crate::query::bitmap_scan::{file_metadata, preloaded_source, store_path};
use crate::query::person_id::{self, StoredProjection};
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
        let Some(ids) = lookup else { return self.inner.scan(state, projection, filters, limit).await };
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
            let plan = match selection {
                Some(selection) => {
                    ParquetAccessPlan::try_new_from_overall_row_selection(selection, footer.row_groups())?
                }
                None => plan,
            };
            let mut f = partitioned_file(file)?;
            if exact || !file.row_id_ranges.is_empty() {
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

fn partitioned_file(file: &FactFile) -> Result<PartitionedFile> {
    Ok(PartitionedFile::new_from_meta(ObjectMeta {
        location: store_path(&file.path)?,
        last_modified: chrono::DateTime::UNIX_EPOCH,
        size: file.bytes,
        e_tag: None,
        version: None,
    }))
}
