//! Bitmap scans of the `users` table: a Parquet `DataSourceExec` that reads only the rows of a roaring
//! selection of row ids, reports the selection's size as exact statistics (so `count(*)` is answered
//! without reading), and reads through footers preloaded with the page index so unselected pages are not fetched.

use std::collections::HashMap;
use std::fmt;
use std::ops::{Bound, Range};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Statistics, exec_datafusion_err, internal_datafusion_err};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, ParquetFileMetrics};
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path as StorePath;
use datafusion::object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use datafusion::parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection};
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::FutureExt;
use futures::future::BoxFuture;
use roaring::RoaringBitmap;

/// One users data file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersFile {
    pub path: PathBuf,
    /// Row id of the file's first row; row `k` of the file has row id `first_row_id + k`.
    pub first_row_id: u32,
    pub rows: u64,
    /// File size in bytes (DataFusion uses it to split files into byte ranges).
    pub bytes: u64,
    /// Its row-addressable copy of the unique string columns, if it has one.
    pub addressable: Option<PathBuf>,
}

/// A physical plan that reads only the rows of `selection` (row ids) from `files`, projected to
/// `projection` (indices into `table_schema`, the SQL schema without `__row_id`; `None` = all), with
/// optional `limit`. Its statistics report `num_rows = Exact(selected rows, capped by limit)` so that
/// DataFusion's `AggregateStatistics` rule answers `count(*)` without reading anything.
/// `selection = None` means all rows (no row selection; exact `num_rows` = total rows).
///
/// Files must be immutable and in the layout described by [`UsersFile`]; a file whose footer row count
/// differs from `rows` is an error rather than a silently wrong selection. Footers (with page index)
/// are read here, synchronously, through a small process-wide cache.
pub fn bitmap_scan(
    files: &[UsersFile],
    table_schema: SchemaRef,
    selection: Option<&RoaringBitmap>,
    projection: Option<&Vec<usize>>,
    limit: Option<usize>,
    target_partitions: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    bitmap_scan_with_nulls(files, table_schema, selection, projection, limit, target_partitions, &[])
}

/// [`bitmap_scan`] whose statistics also give the exact NULL count of some columns among the
/// selected rows (`(index into table_schema, NULLs)`, known from NULL bitmaps), so that
/// `count(column)` over an audience is answered without reading. Ignored with a `limit`.
pub fn bitmap_scan_with_nulls(
    files: &[UsersFile],
    table_schema: SchemaRef,
    selection: Option<&RoaringBitmap>,
    projection: Option<&Vec<usize>>,
    limit: Option<usize>,
    target_partitions: usize,
    nulls: &[(usize, u64)],
) -> Result<Arc<dyn ExecutionPlan>> {
    // No column asked for (`count(*)`, `SELECT 1`): the answer is only how many rows there are,
    // which the bitmap knows; nothing is planned against the files.
    if projection.is_some_and(|p| p.is_empty()) {
        let total = match selection {
            Some(bm) => files.iter().map(|f| bm.range_cardinality(row_id_range(f))).sum::<u64>(),
            None => files.iter().map(|f| f.rows).sum(),
        };
        return row_count_only(total, limit);
    }
    // Contact columns of selected users: gathered from the row-addressable copies.
    if let (Some(bm), Some(indices)) = (selection, projection) {
        let projected = Arc::new(table_schema.project(indices)?);
        if let Some(plan) = crate::query::gather_scan::gather_scan(files, projected, bm, limit, target_partitions)? {
            return Ok(plan);
        }
    }
    // A selection of only some rows of a file becomes its access plan, which takes time and
    // memory for a large, scattered selection. When the statistics may answer the query
    // (`count(column)` with exact NULL counts) it is built on the first execution, which such a
    // plan never reaches. Otherwise the scan stays DataFusion's own, open to its physical
    // optimizer (a TopK's dynamic filter is pushed into it).
    let partial = !nulls.is_empty()
        && limit.is_none()
        && selection.is_some_and(|bm| files.iter().any(|f| bm.range_cardinality(row_id_range(f)) < f.rows));
    if !partial {
        return planned_scan(files, &table_schema, selection, projection, limit, target_partitions, nulls, true);
    }
    let owned = (files.to_vec(), selection.cloned(), projection.cloned(), nulls.to_vec());
    let scan = move |access_plans: bool| {
        let (files, selection, projection, nulls) = &owned;
        let (selection, projection) = (selection.as_ref(), projection.as_ref());
        planned_scan(files, &table_schema, selection, projection, limit, target_partitions, nulls, access_plans)
    };
    let outline = scan(false)?;
    if outline.is::<EmptyExec>() {
        return Ok(outline);
    }
    Ok(Arc::new(DeferredScan { outline, build: Box::new(move || scan(true)), built: OnceLock::new() }))
}

/// The scan of [`bitmap_scan_with_nulls`] with (`access_plans`) or without the files' access
/// plans: without, it has the same partitions, schema and statistics but would read every row.
#[allow(clippy::too_many_arguments)]
fn planned_scan(
    files: &[UsersFile],
    table_schema: &SchemaRef,
    selection: Option<&RoaringBitmap>,
    projection: Option<&Vec<usize>>,
    limit: Option<usize>,
    target_partitions: usize,
    nulls: &[(usize, u64)],
    access_plans: bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    // Per file: how many rows are selected, and the access plan when only some are.
    let mut planned: Vec<(PartitionedFile, u64)> = Vec::with_capacity(files.len());
    let mut metadata: HashMap<StorePath, Arc<ParquetMetaData>> = HashMap::new();
    for file in files {
        let range = row_id_range(file);
        let selected = match selection {
            Some(bm) => bm.range_cardinality(range),
            None => file.rows,
        };
        if selected == 0 {
            continue;
        }
        let footer = file_metadata(&file.path, file.bytes)?;
        let footer_rows = footer.row_groups().iter().map(|rg| rg.num_rows().max(0) as u64).sum::<u64>();
        if footer_rows != file.rows {
            return Err(exec_datafusion_err!(
                "users file {} has {footer_rows} rows but the snapshot says {}",
                file.path.display(),
                file.rows
            ));
        }
        let location = store_path(&file.path)?;
        let mut partitioned = PartitionedFile::new_from_meta(ObjectMeta {
            location: location.clone(),
            last_modified: chrono::DateTime::UNIX_EPOCH,
            size: file.bytes,
            e_tag: None,
            version: None,
        });
        if let Some(bm) = selection
            && selected < file.rows
            && access_plans
        {
            let selection = file_row_selection(bm, file)?;
            let plan = ParquetAccessPlan::try_new_from_overall_row_selection(selection, footer.row_groups())?;
            partitioned = partitioned.with_extension(plan);
        }
        metadata.insert(location, footer);
        planned.push((partitioned, selected));
    }

    let projected_schema = match projection {
        Some(indices) => Arc::new(table_schema.project(indices)?),
        None => Arc::clone(table_schema),
    };
    let total: u64 = planned.iter().map(|(_, n)| n).sum();
    let num_rows = usize::try_from(total).unwrap_or(usize::MAX).min(limit.unwrap_or(usize::MAX));
    if num_rows == 0 {
        // EmptyExec reports exact zero rows, so count(*) is still elided (to 0).
        return Ok(Arc::new(EmptyExec::new(projected_schema)));
    }

    let counts: Vec<u64> = planned.iter().map(|(_, n)| *n).collect();
    let group_of = balanced_groups(&counts, target_partitions);
    let mut groups: Vec<Vec<PartitionedFile>> = Vec::new();
    for ((file, _), group) in planned.into_iter().zip(group_of) {
        // `balanced_groups` is monotonic and starts at 0, so each file opens at most the next group.
        if groups.len() <= group {
            groups.push(Vec::new());
        }
        if let Some(last) = groups.last_mut() {
            last.push(file);
        }
    }

    let mut statistics = users_statistics(table_schema, Precision::Exact(num_rows));
    if limit.is_none() {
        for &(column, count) in nulls {
            if let (Some(stats), Ok(count)) = (statistics.column_statistics.get_mut(column), usize::try_from(count)) {
                stats.null_count = Precision::Exact(count);
            }
        }
    }

    let source = preloaded_source(Arc::clone(table_schema), metadata);
    let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
        .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
        .with_projection_indices(projection.cloned())?
        .with_limit(limit)
        .with_statistics(statistics)
        .build();
    Ok(DataSourceExec::from_data_source(config))
}

/// A users scan whose files' access plans are built when it first executes: it reports the
/// partitions, schema and statistics of its `outline` (the same scan without access plans) and
/// executes the scan `build` makes.
struct DeferredScan {
    outline: Arc<dyn ExecutionPlan>,
    build: Box<dyn Fn() -> Result<Arc<dyn ExecutionPlan>> + Send + Sync>,
    built: OnceLock<Arc<dyn ExecutionPlan>>,
}

impl DeferredScan {
    fn scan(&self) -> Result<&Arc<dyn ExecutionPlan>> {
        if let Some(plan) = self.built.get() {
            return Ok(plan);
        }
        let plan = (self.build)()?;
        Ok(self.built.get_or_init(|| plan))
    }
}

impl fmt::Debug for DeferredScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferredScan").field("outline", &self.outline.name()).finish()
    }
}

impl DisplayAs for DeferredScan {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.built.get() {
            Some(plan) => plan.fmt_as(t, f),
            None => self.outline.fmt_as(t, f),
        }
    }
}

impl ExecutionPlan for DeferredScan {
    fn name(&self) -> &str {
        "DeferredScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.outline.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        self.scan()?.execute(partition, context)
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        self.outline.statistics_from_inputs(input_stats, args)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        self.built.get().and_then(|plan| plan.metrics())
    }
}

/// Statistics of a users scan yielding `rows` rows of `schema`: the users columns the contract
/// requires have no NULLs, so `count(user_id)` is as free as `count(*)`.
pub(crate) fn users_statistics(schema: &arrow::datatypes::Schema, rows: Precision<usize>) -> Statistics {
    let mut statistics = Statistics::new_unknown(schema);
    statistics.num_rows = rows;
    for name in crate::tables::Table::Users.non_null_columns() {
        if let Ok(i) = schema.index_of(name) {
            statistics.column_statistics[i].null_count = Precision::Exact(0);
        }
    }
    statistics
}

/// The row ids of `file` as bounds usable with roaring (the end may be 2^32, past `u32::MAX`).
pub(crate) fn row_id_range(file: &UsersFile) -> (Bound<u32>, Bound<u32>) {
    let end = u64::from(file.first_row_id) + file.rows;
    let end = match u32::try_from(end) {
        Ok(end) => Bound::Excluded(end),
        Err(_) => Bound::Included(u32::MAX),
    };
    (Bound::Included(file.first_row_id), end)
}

/// The file-level selection of `file` (covering exactly its `rows` rows): the bitmap's runs within the
/// file's row-id range, shifted to file row positions.
pub(crate) fn file_row_selection(bm: &RoaringBitmap, file: &UsersFile) -> Result<RowSelection> {
    let rows = usize::try_from(file.rows).map_err(|_| internal_datafusion_err!("file row count overflows usize"))?;
    let first = file.first_row_id as usize;
    let mut runs = bm.range(row_id_range(file));
    // Runs come clamped to the file's range, so every shifted range lies inside 0..rows.
    let ranges = std::iter::from_fn(|| runs.next_range())
        .map(|run| (*run.start() as usize - first)..(*run.end() as usize - first + 1));
    Ok(RowSelection::from_consecutive_ranges(ranges, rows))
}

/// Assigns each file (by its selected row count) to one of at most `target_partitions` groups:
/// contiguous, monotonic, starting at 0 with no gaps, balanced by selected rows. A file goes to the
/// group its midpoint in the cumulative count falls into.
pub(crate) fn balanced_groups(counts: &[u64], target_partitions: usize) -> Vec<usize> {
    let groups = target_partitions.clamp(1, counts.len().max(1)) as u128;
    let total: u128 = counts.iter().map(|&n| u128::from(n)).sum::<u128>().max(1);
    let mut before = 0u128;
    let mut raw = Vec::with_capacity(counts.len());
    for &n in counts {
        let mid2 = 2 * before + u128::from(n);
        raw.push(((mid2 * groups) / (2 * total)).min(groups - 1) as usize);
        before += u128::from(n);
    }
    // Renumber densely: midpoints are monotonic but may jump over groups that received no file.
    let mut dense = Vec::with_capacity(raw.len());
    let mut current = 0usize;
    for (i, &g) in raw.iter().enumerate() {
        if i > 0 && g != raw[i - 1] {
            current += 1;
        }
        dense.push(current);
    }
    dense
}

/// The object-store location of a local file (relative to the filesystem root, as
/// `ObjectStoreUrl::local_filesystem()` expects).
pub(crate) fn store_path(path: &Path) -> Result<StorePath> {
    let absolute = std::path::absolute(path)?;
    StorePath::from_absolute_path(&absolute).map_err(|e| exec_datafusion_err!("file path {}: {e}", absolute.display()))
}

/// A plan yielding `rows` rows (capped by `limit`) of no columns, with exact statistics.
pub(crate) fn row_count_only(rows: u64, limit: Option<usize>) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
    use datafusion::datasource::memory::MemorySourceConfig;
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::empty());
    let mut left = usize::try_from(rows).unwrap_or(usize::MAX).min(limit.unwrap_or(usize::MAX));
    if left == 0 {
        return Ok(Arc::new(EmptyExec::new(schema)));
    }
    let mut batches = Vec::new();
    while left > 0 {
        let n = left.min(1 << 20);
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        batches.push(RecordBatch::try_new_with_options(Arc::clone(&schema), vec![], &options)?);
        left -= n;
    }
    Ok(MemorySourceConfig::try_new_exec(&[batches], schema, None)?)
}

/// Most footers kept in the process-wide cache. Files are immutable, so entries never go stale; the
/// bound only limits memory (an arbitrary entry is evicted when full).
const METADATA_CACHE_ENTRIES: usize = 1024;

type MetadataCache = Mutex<HashMap<(PathBuf, u64), Arc<ParquetMetaData>>>;

static METADATA_CACHE: OnceLock<MetadataCache> = OnceLock::new();

/// The footer of a users file including its page index (column and offset indexes, when written),
/// read once and cached by (path, size).
pub(crate) fn file_metadata(path: &Path, bytes: u64) -> Result<Arc<ParquetMetaData>> {
    let cache = METADATA_CACHE.get_or_init(Default::default);
    let key = (path.to_path_buf(), bytes);
    // The map is never left half-updated, so a poisoned lock still guards a consistent map.
    if let Some(found) = cache.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
        return Ok(Arc::clone(found));
    }
    let file = std::fs::File::open(path).map_err(|e| exec_datafusion_err!("opening {}: {e}", path.display()))?;
    let metadata = ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Optional)
        .parse_and_finish(&file)
        .map_err(|e| exec_datafusion_err!("reading the Parquet footer of {}: {e}", path.display()))?;
    let metadata = Arc::new(metadata);
    let mut map = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if map.len() >= METADATA_CACHE_ENTRIES
        && let Some(evict) = map.keys().next().cloned()
    {
        map.remove(&evict);
    }
    map.insert(key, Arc::clone(&metadata));
    Ok(metadata)
}

/// A Parquet source for `schema` reading the files of `metadata` (their footers, by location)
/// with those footers, as [`file_metadata`] cached them, instead of reading each footer and page
/// index again per query.
pub(crate) fn preloaded_source(schema: SchemaRef, metadata: HashMap<StorePath, Arc<ParquetMetaData>>) -> ParquetSource {
    let factory = PreloadedReaderFactory { store: Arc::new(LocalFileSystem::new()), metadata };
    ParquetSource::new(schema).with_parquet_file_reader_factory(Arc::new(factory))
}

/// Creates readers whose `get_metadata` returns the footer loaded by [`bitmap_scan`], page index
/// included. DataFusion 55 loads the page index only for a pruning predicate; without the offset
/// index the decoder would fetch whole column chunks for a row selection instead of selected pages.
struct PreloadedReaderFactory {
    store: Arc<dyn ObjectStore>,
    /// Footers of exactly the files of the scan, by location.
    metadata: HashMap<StorePath, Arc<ParquetMetaData>>,
}

impl fmt::Debug for PreloadedReaderFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreloadedReaderFactory").field("files", &self.metadata.len()).finish()
    }
}

impl ParquetFileReaderFactory for PreloadedReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        _metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Box<dyn AsyncFileReader + Send>> {
        let location = partitioned_file.object_meta.location;
        let metadata =
            self.metadata.get(&location).cloned().ok_or_else(|| {
                internal_datafusion_err!("bitmap scan asked to read {location}, which it did not plan")
            })?;
        // Registered like DataFusion's own reader, so EXPLAIN ANALYZE shows bytes_scanned.
        let file_metrics = ParquetFileMetrics::new(partition_index, location.as_ref(), metrics);
        Ok(Box::new(PreloadedReader {
            store: Arc::clone(&self.store),
            location,
            size: partitioned_file.object_meta.size,
            metadata,
            file_metrics,
        }))
    }
}

/// Reads byte ranges from the local filesystem and answers metadata from memory.
struct PreloadedReader {
    store: Arc<dyn ObjectStore>,
    location: StorePath,
    size: u64,
    metadata: Arc<ParquetMetaData>,
    file_metrics: ParquetFileMetrics,
}

impl AsyncFileReader for PreloadedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, datafusion::parquet::errors::Result<Bytes>> {
        self.file_metrics.bytes_scanned.add((range.end - range.start) as usize);
        async move {
            self.store.get_range(&self.location, range).await.map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<Bytes>>> {
        let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        self.file_metrics.bytes_scanned.add(total as usize);
        async move {
            self.store.get_ranges(&self.location, &ranges).await.map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        // Returned even when the options ask to skip the page index: DataFusion then finds it
        // present (and uses it for pruning too) instead of reading it again.
        let metadata = Arc::clone(&self.metadata);
        async move { Ok(metadata) }.boxed()
    }
}

impl Drop for PreloadedReader {
    fn drop(&mut self) {
        // Same bookkeeping as DataFusion's ParquetFileReader.
        self.file_metrics.scan_efficiency_ratio.add_part(self.file_metrics.bytes_scanned.value());
        self.file_metrics.scan_efficiency_ratio.set_total(self.size as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use datafusion::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::catalog::{Session, TableProvider};
    use datafusion::datasource::TableType;
    use datafusion::logical_expr::Expr;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;
    use datafusion::physical_plan::collect;
    use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
    use datafusion::prelude::{SessionConfig, SessionContext};

    const ROWS_PER_FILE: u32 = 1000;

    fn table_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("score", DataType::Int64, true),
        ]))
    }

    /// user_id is derived from the row id but differs from it, so the tests see real values.
    fn user_id(row_id: u32) -> i64 {
        i64::from(row_id) * 10 + 7
    }

    /// Writes rows `first..first + ROWS_PER_FILE`: `__row_id`, `user_id`, `name`, and `score`
    /// (= row id) only when `with_score` (an older file lacks the trailing column).
    fn write_file(dir: &Path, name: &str, first: u32, with_score: bool) -> UsersFile {
        let ids: Vec<u32> = (first..first + ROWS_PER_FILE).collect();
        let mut fields = vec![
            Field::new("__row_id", DataType::UInt32, false),
            Field::new("user_id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(ids.clone())),
            Arc::new(Int64Array::from_iter_values(ids.iter().map(|&r| user_id(r)))),
            Arc::new(StringArray::from_iter_values(ids.iter().map(|r| format!("user-{r:06}")))),
        ];
        if with_score {
            fields.push(Field::new("score", DataType::Int64, true));
            columns.push(Arc::new(Int64Array::from_iter_values(ids.iter().map(|&r| i64::from(r)))));
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        // Row groups of 100 rows and pages of 10 rows, no dictionary, so page skipping is visible.
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(100))
            .set_data_page_row_count_limit(10)
            .set_write_batch_size(10)
            .set_dictionary_enabled(false)
            .build();
        let path = dir.join(name);
        let mut writer =
            ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let bytes = std::fs::metadata(&path).unwrap().len();
        UsersFile { path, first_row_id: first, rows: u64::from(ROWS_PER_FILE), bytes, addressable: None }
    }

    fn two_files(dir: &Path) -> Vec<UsersFile> {
        vec![write_file(dir, "a.parquet", 0, true), write_file(dir, "b.parquet", ROWS_PER_FILE, false)]
    }

    /// Every 3rd row id below 700 (file a: row groups 0..7 partial, 7..10 skipped), all of
    /// 1500..1600 (file b: row group 5 fully selected, others skipped) and 1950..1960.
    fn test_bitmap() -> RoaringBitmap {
        let mut bm: RoaringBitmap = (0..700).step_by(3).collect();
        bm.insert_range(1500..1600);
        bm.insert_range(1950..1960);
        bm
    }

    #[derive(Debug)]
    struct TestTable {
        files: Vec<UsersFile>,
        selection: Option<RoaringBitmap>,
    }

    #[async_trait::async_trait]
    impl TableProvider for TestTable {
        fn schema(&self) -> SchemaRef {
            table_schema()
        }

        fn table_type(&self) -> TableType {
            TableType::Base
        }

        async fn scan(
            &self,
            state: &dyn Session,
            projection: Option<&Vec<usize>>,
            _filters: &[Expr],
            limit: Option<usize>,
        ) -> Result<Arc<dyn ExecutionPlan>> {
            let partitions = state.config().target_partitions();
            bitmap_scan(&self.files, table_schema(), self.selection.as_ref(), projection, limit, partitions)
        }
    }

    fn context(files: Vec<UsersFile>, selection: Option<RoaringBitmap>) -> SessionContext {
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(4));
        ctx.register_table("t", Arc::new(TestTable { files, selection })).unwrap();
        ctx
    }

    async fn query(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
        ctx.sql(sql).await.unwrap().collect().await.unwrap()
    }

    async fn count(ctx: &SessionContext, sql: &str) -> i64 {
        let batches = query(ctx, sql).await;
        let column = batches[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        column.value(0)
    }

    async fn physical_plan(ctx: &SessionContext, sql: &str) -> String {
        let batches = query(ctx, &format!("EXPLAIN {sql}")).await;
        pretty_format_batches(&batches).unwrap().to_string()
    }

    /// Overall statistics of `plan`. In 55 the deprecated `ExecutionPlan::partition_statistics`
    /// answers "unknown" for a DataSourceExec; statistics come from `StatisticsContext::compute`.
    fn num_rows(plan: &Arc<dyn ExecutionPlan>) -> Precision<usize> {
        StatisticsContext::new().compute(plan.as_ref(), &StatisticsArgs::new()).unwrap().num_rows
    }

    fn int64s(batches: &[RecordBatch], column: usize) -> Vec<Option<i64>> {
        let mut out = Vec::new();
        for batch in batches {
            let array = batch.column(column).as_any().downcast_ref::<Int64Array>().unwrap();
            out.extend((0..array.len()).map(|i| array.is_valid(i).then(|| array.value(i))));
        }
        out
    }

    #[tokio::test]
    async fn count_is_answered_from_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let bm = test_bitmap();
        let ctx = context(two_files(dir.path()), Some(bm.clone()));
        assert_eq!(count(&ctx, "SELECT count(*) FROM t").await, bm.len() as i64);
        let plan = physical_plan(&ctx, "SELECT count(*) FROM t").await;
        assert!(!plan.contains("DataSourceExec"), "{plan}");
        assert!(plan.contains("PlaceholderRowExec"), "{plan}");
        assert!(plan.contains(&format!("{} as count(*)", bm.len())), "{plan}");
    }

    #[tokio::test]
    async fn reads_exactly_the_selected_rows() {
        let dir = tempfile::tempdir().unwrap();
        let bm = test_bitmap();
        let ctx = context(two_files(dir.path()), Some(bm.clone()));
        let batches = query(&ctx, "SELECT user_id FROM t ORDER BY user_id").await;
        let expected: Vec<Option<i64>> = bm.iter().map(|r| Some(user_id(r))).collect();
        assert_eq!(int64s(&batches, 0), expected);
        // Every column (including a string one) lines up with the selected rows.
        let batches = query(&ctx, "SELECT name FROM t WHERE user_id = 19557").await;
        let names = batches[0].column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(names.value(0), "user-001955");
    }

    /// A predicate the provider does not answer stays a FilterExec, is pushed into the ParquetSource
    /// (page pruning with the preloaded column index) and combines with the row selection.
    #[tokio::test]
    async fn residual_predicate_combines_with_the_selection() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(two_files(dir.path()), Some(test_bitmap()));
        assert_eq!(count(&ctx, "SELECT count(*) FROM t WHERE name >= 'user-001550'").await, 60);
        assert_eq!(count(&ctx, "SELECT count(*) FROM t WHERE score < 30").await, 10);
    }

    #[tokio::test]
    async fn missing_trailing_column_reads_null() {
        let dir = tempfile::tempdir().unwrap();
        let bm = test_bitmap();
        let ctx = context(two_files(dir.path()), Some(bm.clone()));
        let batches = query(&ctx, "SELECT user_id, score FROM t ORDER BY user_id").await;
        let ids = int64s(&batches, 0);
        let scores = int64s(&batches, 1);
        assert_eq!(ids.len(), bm.len() as usize);
        for (row_id, score) in bm.iter().zip(scores) {
            let expected = (row_id < ROWS_PER_FILE).then(|| i64::from(row_id));
            assert_eq!(score, expected, "row id {row_id}");
        }
    }

    #[tokio::test]
    async fn empty_selection_reads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(two_files(dir.path()), Some(RoaringBitmap::new()));
        assert_eq!(count(&ctx, "SELECT count(*) FROM t").await, 0);
        assert!(!physical_plan(&ctx, "SELECT count(*) FROM t").await.contains("DataSourceExec"));
        let batches = query(&ctx, "SELECT user_id, score FROM t").await;
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    }

    #[tokio::test]
    async fn limit_caps_rows_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let bm = test_bitmap();
        let ctx = context(two_files(dir.path()), Some(bm.clone()));
        let batches = query(&ctx, "SELECT user_id FROM t LIMIT 5").await;
        let ids = int64s(&batches, 0);
        assert_eq!(ids.len(), 5);
        let selected: Vec<i64> = bm.iter().map(user_id).collect();
        assert!(ids.iter().all(|id| id.is_some_and(|id| selected.contains(&id))), "{ids:?}");
        assert_eq!(count(&ctx, "SELECT count(*) FROM (SELECT * FROM t LIMIT 5)").await, 5);

        let plan = bitmap_scan(&two_files(dir.path()), table_schema(), Some(&bm), None, Some(5), 4).unwrap();
        assert_eq!(num_rows(&plan), Precision::Exact(5));
    }

    #[tokio::test]
    async fn no_selection_reads_everything() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(two_files(dir.path()), None);
        assert_eq!(count(&ctx, "SELECT count(*) FROM t").await, 2000);
        assert!(!physical_plan(&ctx, "SELECT count(*) FROM t").await.contains("DataSourceExec"));
        let batches = query(&ctx, "SELECT user_id FROM t ORDER BY user_id").await;
        let expected: Vec<Option<i64>> = (0..2000).map(|r| Some(user_id(r))).collect();
        assert_eq!(int64s(&batches, 0), expected);
    }

    #[tokio::test]
    async fn files_without_selected_rows_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let files = two_files(dir.path());
        let bm: RoaringBitmap = (1200..1210).collect();
        // Without NULL counts the statistics answer nothing more than count(*): DataFusion's scan.
        let plain = bitmap_scan(&files, table_schema(), Some(&bm), Some(&vec![0]), None, 8).unwrap();
        assert!(plain.is::<DataSourceExec>());
        let plan =
            bitmap_scan_with_nulls(&files, table_schema(), Some(&bm), Some(&vec![0]), None, 8, &[(0, 0)]).unwrap();
        let deferred = plan.downcast_ref::<DeferredScan>().expect("a partial selection defers its access plans");
        assert!(deferred.built.get().is_none());
        let config = deferred
            .outline
            .downcast_ref::<DataSourceExec>()
            .unwrap()
            .data_source()
            .downcast_ref::<datafusion::datasource::physical_plan::FileScanConfig>()
            .unwrap()
            .clone();
        let paths: Vec<String> =
            config.file_groups.iter().flat_map(|g| g.iter()).map(|f| f.object_meta.location.to_string()).collect();
        assert_eq!(paths.len(), 1);
        assert!(paths[0].ends_with("b.parquet"), "{paths:?}");
        // Projection keeps the count exact.
        assert_eq!(num_rows(&plan), Precision::Exact(10));
        assert_eq!(plan.schema().fields().len(), 1);

        let ctx = SessionContext::new();
        let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
        let expected: Vec<Option<i64>> = (1200..1210).map(|r| Some(user_id(r))).collect();
        assert_eq!(int64s(&batches, 0), expected);
        assert!(plan.downcast_ref::<DeferredScan>().unwrap().built.get().is_some(), "built when executed");
    }

    /// The preloaded footer carries the offset index, so a selection of one row per row group
    /// fetches single pages, far less than the whole column chunks a full scan reads.
    #[tokio::test]
    async fn sparse_selection_fetches_only_selected_pages() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![write_file(dir.path(), "a.parquet", 0, true)];
        assert!(file_metadata(&files[0].path, files[0].bytes).unwrap().offset_index().is_some());

        async fn bytes_scanned(files: &[UsersFile], selection: Option<&RoaringBitmap>) -> (usize, usize) {
            let plan = bitmap_scan(files, table_schema(), selection, None, None, 1).unwrap();
            let batches = collect(Arc::clone(&plan), SessionContext::new().task_ctx()).await.unwrap();
            let rows = batches.iter().map(RecordBatch::num_rows).sum();
            let bytes = plan.metrics().unwrap().sum_by_name("bytes_scanned").map_or(0, |m| m.as_usize());
            (rows, bytes)
        }
        let one_per_group: RoaringBitmap = (0..ROWS_PER_FILE).step_by(100).map(|r| r + 42).collect();
        let (rows, sparse) = bytes_scanned(&files, Some(&one_per_group)).await;
        assert_eq!(rows, 10);
        let (rows, full) = bytes_scanned(&files, None).await;
        assert_eq!(rows, 1000);
        assert!(sparse > 0 && sparse * 4 < full, "sparse {sparse} bytes, full {full} bytes");
    }

    #[test]
    fn groups_are_contiguous_and_balanced() {
        assert_eq!(balanced_groups(&[10, 10, 10, 10], 2), vec![0, 0, 1, 1]);
        assert_eq!(balanced_groups(&[10, 10, 10, 10], 8), vec![0, 1, 2, 3]);
        assert_eq!(balanced_groups(&[100, 1, 1, 1], 2), vec![0, 1, 1, 1]);
        assert_eq!(balanced_groups(&[1, 1, 1, 100], 4), vec![0, 0, 0, 1]);
        assert_eq!(balanced_groups(&[5], 0), vec![0]);
        assert_eq!(balanced_groups(&[], 4), Vec::<usize>::new());
    }

    #[test]
    fn selection_is_relative_to_the_file() {
        let file = UsersFile { path: PathBuf::from("x"), first_row_id: 1000, rows: 10, bytes: 0, addressable: None };
        let bm: RoaringBitmap = [5, 999, 1000, 1001, 1005, 1009, 1010, 2000].into_iter().collect();
        let selection = file_row_selection(&bm, &file).unwrap();
        assert_eq!(selection.row_count(), 4);
        assert_eq!(selection.skipped_row_count(), 6);
        let top =
            UsersFile { path: PathBuf::from("y"), first_row_id: u32::MAX - 1, rows: 2, bytes: 0, addressable: None };
        let bm: RoaringBitmap = [u32::MAX].into_iter().collect();
        assert_eq!(bm.range_cardinality(row_id_range(&top)), 1);
        assert_eq!(file_row_selection(&bm, &top).unwrap().row_count(), 1);
    }
}
