//! The physical side of [`DenseAggregate`]: reads the fact files' needed columns with each row's
//! user row id, filters each batch with the predicate, and folds the rows into [`DenseState`]
//! slots indexed by row id; then emits one row per user that has rows, in row-id order, with
//! `user_id` taken from the users files (which hold row ids `first_row_id..` in order).
//!
//! ```text
//!  fact files ──(workers: next file from a shared counter)──▶ DenseState per worker
//!                                                               │ merge
//!  users files (user_id, read file by file as ids ascend) ───▶ batches ──▶ channel ──▶ stream
//! ```
//! One output partition; the work runs on a blocking thread with `target_partitions` workers.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions, UInt16Array, UInt32Array};
use arrow::compute::{cast, concat, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::query::bitmap_scan::UsersFile;
use crate::query::const_compare::ConstComparison;
use crate::query::dense_agg_rule::DenseAggregate;
use crate::query::dense_state::{DenseAggKind, DenseInput, DenseState};
use crate::query::dict_filter::{self, DictTest};
use crate::store::fact_rows::{Strings, for_each_fact_batch_as, read_stored_columns};
use crate::store::layout;
use crate::store::manifest::DataFile;
use crate::store::plain_columns::PlainColumns;
use crate::tables::USER_ID;

/// A batch with fewer than one row in this many selected has its selected rows gathered before
/// they are folded.
const SPARSE_FACTOR: usize = 4;

/// What a [`DenseAggregateExec`] reads.
#[derive(Debug, Clone)]
pub struct DenseSources {
    /// The store root the fact files' paths are relative to.
    pub root: PathBuf,
    pub facts: Vec<DataFile>,
    /// Ordered by first row id.
    pub users: Vec<UsersFile>,
    /// The inclusive `ts` window the filter bounds rows to: files whose `ts` range lies outside
    /// it are skipped.
    pub ts_window: Option<(i64, i64)>,
}

/// The filter of a [`DenseAggregateExec`], in the order its parts run.
#[derive(Debug, Clone)]
pub struct DenseFilter {
    /// Conjuncts answered on dictionary keys (their columns are read as dictionaries).
    pub tests: Vec<DictTest>,
    /// Comparisons of read columns (by position) with constants.
    pub comparisons: Vec<(usize, ConstComparison)>,
    /// The rest of the filter.
    pub predicate: Option<Arc<dyn PhysicalExpr>>,
}

/// Executes a [`DenseAggregate`].
#[derive(Debug)]
pub struct DenseAggregateExec {
    node: DenseAggregate,
    sources: DenseSources,
    filter: DenseFilter,
    /// One per aggregate (`None` for `count(*)`).
    args: Vec<Option<Arc<dyn PhysicalExpr>>>,
    workers: usize,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DenseAggregateExec {
    pub fn new(
        node: DenseAggregate,
        sources: DenseSources,
        filter: DenseFilter,
        args: Vec<Option<Arc<dyn PhysicalExpr>>>,
        workers: usize,
    ) -> Self {
        let schema: SchemaRef = Arc::new(node.schema.as_arrow().clone());
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        DenseAggregateExec { node, sources, filter, args, workers: workers.max(1), schema, properties }
    }
}

impl DisplayAs for DenseAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DenseAggregateExec: ")?;
        self.node.describe(f)?;
        if !self.filter.tests.is_empty() {
            let columns: Vec<&str> = self.filter.tests.iter().map(|t| t.column.as_str()).collect();
            write!(f, ", on_dictionary_keys=[{}]", columns.join(", "))?;
        }
        write!(f, ", files={}", self.sources.facts.len())
    }
}

impl DenseAggregateExec {
    /// What one execution needs, for its blocking thread.
    fn job(
        &self,
        batch_size: usize,
        memory: Option<Arc<dyn MemoryPool>>,
        within: Option<&RoaringBitmap>,
    ) -> Result<Job> {
        let read_columns: Vec<String> = self.node.read_schema.fields().iter().map(|f| f.name().clone()).collect();
        let mut tests = Vec::with_capacity(self.filter.tests.len());
        for t in &self.filter.tests {
            let at = read_columns
                .iter()
                .position(|c| *c == t.column)
                .ok_or_else(|| Error::Internal(format!("dense aggregate does not read column {}", t.column)))?;
            tests.push((at, t.clone()));
        }
        let read_schema = Arc::new(Schema::new(
            self.node
                .read_schema
                .fields()
                .iter()
                .map(|f| {
                    let data_type = if self.filter.tests.iter().any(|t| t.column == *f.name()) {
                        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
                    } else if matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
                        DataType::Utf8View
                    } else {
                        f.data_type().clone()
                    };
                    Field::new(f.name(), data_type, true)
                })
                .collect::<Vec<_>>(),
        ));
        // Columns only dictionary tests read: a plain copy's own dictionaries serve them as they are.
        let mut read_elsewhere = std::collections::HashSet::new();
        for e in self.filter.predicate.iter().chain(self.args.iter().flatten()) {
            read_elsewhere.extend(collect_columns(e).into_iter().map(|c| c.index()));
        }
        let keys_only = (0..read_columns.len())
            .map(|i| tests.iter().any(|(at, _)| *at == i) && !read_elsewhere.contains(&i))
            .collect();
        Ok(Job {
            read_schema,
            keys_only,
            caches: tests.iter().map(|_| dict_filter::PassCache::default()).collect(),
            tests,
            kinds: self.node.aggs.iter().map(|a| a.kind).collect(),
            read_columns,
            comparisons: self.filter.comparisons.clone(),
            predicate: self.filter.predicate.clone(),
            args: self.args.clone(),
            sources: self.sources.clone(),
            workers: self.workers,
            batch_size,
            schema: Arc::clone(&self.schema),
            emit_user_id: self.node.emit_user_id,
            memory,
            within: within
                .map(|users| Ok::<_, Error>((users.clone(), dict_filter::UserMask::new(users)?)))
                .transpose()?,
            stopped: None,
        })
    }

    /// The row ids of the users whose aggregates make `having` TRUE (over the node's output
    /// schema, which must not hold `user_id`): a per-user aggregate as a set of users, computed
    /// here on the calling thread (and the workers it starts). With `within`, only those users'
    /// rows are folded (the answer is among them): files holding none of them are skipped, and
    /// a batch's rows are tested by user before any other test.
    pub fn users_where(
        &self,
        having: &Arc<dyn PhysicalExpr>,
        memory: Option<Arc<dyn MemoryPool>>,
        within: Option<&RoaringBitmap>,
    ) -> Result<RoaringBitmap> {
        if self.node.emit_user_id {
            return Err(Error::Internal("a dense aggregate asked for users emits user_id".into()));
        }
        let job = self.job(64 * 1024, memory, within)?;
        let mut state = job.accumulate()?;
        // Chunk by chunk, every slot at once: the groups' values are the chunk's arrays as they
        // are (taken out of the state, not copied); slots that are not groups are NULL (so
        // HAVING cannot fail on them, e.g. dividing by a count of 0) and left out after it.
        // `sum(amount) > 500 AND count(*) >= 2`: each comparison straight on its slots (DataFusion's
        // float comparison would first copy the column to turn -0.0 into 0.0).
        let conjuncts = datafusion::physical_expr::split_conjunction(having);
        let comparisons: Option<Vec<(usize, ConstComparison)>> =
            conjuncts.iter().map(|c| ConstComparison::from_physical(c, &self.schema)).collect();
        let mut ids: Vec<u32> = Vec::new();
        for c in 0..state.chunk_count() {
            let Some((first, groups, columns)) = state.take_chunk(c) else { continue };
            let batch = job.typed_batch(columns.clone(), groups.len(), true)?;
            let passing = match &comparisons {
                Some(comparisons) => {
                    let mut passing = groups;
                    for (at, comparison) in comparisons {
                        passing = &passing & &comparison.evaluate(batch.column(*at))?;
                    }
                    passing
                }
                None => {
                    let keep = having.evaluate(&batch)?.into_array(groups.len())?;
                    let keep = keep
                        .as_boolean_opt()
                        .ok_or_else(|| Error::Internal("a HAVING condition is not boolean".into()))?;
                    dict_filter::and_valid(&groups & keep.values(), keep.nulls())
                }
            };
            ids.extend(passing.set_indices().map(|o| first + o as u32));
            drop(batch);
            crate::query::dense_state::recycle_arrays(columns);
        }
        RoaringBitmap::from_sorted_iter(ids).map_err(|e| Error::Internal(e.to_string()))
    }
}

impl ExecutionPlan for DenseAggregateExec {
    fn name(&self) -> &str {
        "DenseAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        for e in self.filter.predicate.iter().chain(self.args.iter().flatten()) {
            if f(e)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(Error::Internal(format!("DenseAggregateExec has one partition, not {}", partition + 1)).into());
        }
        let mut job = self.job(
            context.session_config().batch_size().max(1),
            Some(Arc::clone(&context.runtime_env().memory_pool)),
            None,
        )?;
        let mut builder = RecordBatchReceiverStreamBuilder::new(Arc::clone(&self.schema), 2);
        let tx = builder.tx();
        let watch = tx.clone();
        job.stopped = Some(Box::new(move || watch.is_closed()));
        builder.spawn_blocking(move || {
            let mut state = job.accumulate()?;
            if job.is_stopped() {
                return Ok(());
            }
            job.emit(&mut state, |batch| tx.blocking_send(Ok(batch)).is_ok())?;
            Ok(())
        });
        Ok(builder.build())
    }
}

/// Everything one execution needs, owned by its blocking thread.
struct Job {
    /// Dictionary tests with the position of their column in the batches read.
    tests: Vec<(usize, DictTest)>,
    /// One per test: the passing values of the dictionaries seen (shared by the workers).
    caches: Vec<dict_filter::PassCache>,
    /// Per column read: whether only dictionary tests read it (so any key type will do).
    keys_only: Vec<bool>,
    kinds: Vec<DenseAggKind>,
    read_columns: Vec<String>,
    /// The batches the Parquet path reads: tested columns as `Dictionary(Int32, Utf8)`, other
    /// strings as `Utf8View` ([`Strings::Views`]).
    read_schema: SchemaRef,
    /// Comparisons with constants, by column position in the batches read.
    comparisons: Vec<(usize, ConstComparison)>,
    predicate: Option<Arc<dyn PhysicalExpr>>,
    args: Vec<Option<Arc<dyn PhysicalExpr>>>,
    sources: DenseSources,
    workers: usize,
    batch_size: usize,
    schema: SchemaRef,
    emit_user_id: bool,
    /// The session's pool the states' chunks are taken from.
    memory: Option<Arc<dyn MemoryPool>>,
    /// Only these users' rows are folded (as a bitmap and as one bit per row id).
    within: Option<(RoaringBitmap, dict_filter::UserMask)>,
    /// Whether the query was stopped (its stream dropped): asked before each file is folded.
    stopped: Option<Box<dyn Fn() -> bool + Send + Sync>>,
}

impl Job {
    fn is_stopped(&self) -> bool {
        self.stopped.as_ref().is_some_and(|stopped| stopped())
    }

    /// Reads every fact file (workers take the next file in turn) and merges the workers' states.
    /// A stopped query's workers stop at the next file (the partial state goes unread).
    fn accumulate(&self) -> Result<DenseState> {
        let next = AtomicUsize::new(0);
        let work = || -> Result<DenseState> {
            let mut state = match &self.memory {
                Some(pool) => DenseState::with_reservation(
                    self.kinds.clone(),
                    MemoryConsumer::new("a per-user aggregate").register(pool),
                ),
                None => DenseState::new(self.kinds.clone()),
            };
            let columns: Vec<&str> = self.read_columns.iter().map(String::as_str).collect();
            let strings = Strings::Views { dictionary: self.tests.iter().map(|(_, t)| t.column.clone()).collect() };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(file) = self.sources.facts.get(i) else { break };
                if self.is_stopped() {
                    break;
                }
                if let (Some((from, to)), Some((lo, hi))) = (self.sources.ts_window, file.ts_range)
                    && (hi < from || lo > to)
                {
                    continue;
                }
                if let Some((users, _)) = &self.within
                    && !file.row_id_ranges.is_empty()
                    && file.row_id_ranges.iter().all(|&(lo, hi)| users.range_cardinality(lo..=hi) == 0)
                {
                    continue;
                }
                if self.fold_plain(&mut state, file)? {
                    continue;
                }
                for_each_fact_batch_as(&self.sources.root, file, &columns, strings.clone(), |batch, ids| {
                    self.fold(&mut state, batch, ids, None)
                })?;
            }
            Ok(state)
        };
        let workers = self.workers.min(self.sources.facts.len()).max(1);
        let states: Vec<Result<DenseState>> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..workers).map(|_| s.spawn(work)).collect();
            let mut out = vec![work()];
            for h in handles {
                out.push(h.join().unwrap_or_else(|_| Err(Error::Internal("a dense aggregate worker panicked".into()))));
            }
            out
        });
        let mut merged: Option<DenseState> = None;
        for state in states {
            let state = state?;
            match &mut merged {
                None => merged = Some(state),
                Some(m) => m.merge(state)?,
            }
        }
        Ok(merged.unwrap_or_else(|| DenseState::new(self.kinds.clone())))
    }

    /// Folds the rows of `file` from its plain copy, if it has one holding every column read;
    /// `false` when the Parquet file must be read instead.
    fn fold_plain(&self, state: &mut DenseState, file: &DataFile) -> Result<bool> {
        let Some(relative) = &file.plain_columns else { return Ok(false) };
        let columns: Vec<&str> = self.read_columns.iter().map(String::as_str).collect();
        let path = layout::resolve(&self.sources.root, relative);
        let Some(copy) = PlainColumns::open_cached(&path, &columns, file.rows)? else { return Ok(false) };
        let dead = crate::store::dead_rows::of(&self.sources.root, file)?;
        copy.for_each_batch_with_days(dead.as_deref(), |batch, ids, days| {
            // The types the Parquet path reads, so that the filter sees the same batches; a
            // dictionary only tested by key is kept as the copy's, whatever its key type.
            let mut fields = Vec::with_capacity(batch.num_columns());
            let mut arrays = Vec::with_capacity(batch.num_columns());
            for ((a, f), keys_only) in batch.columns().iter().zip(self.read_schema.fields()).zip(&self.keys_only) {
                let keep = a.data_type() == f.data_type()
                    || (*keys_only
                        && matches!(a.data_type(), DataType::Dictionary(..))
                        && matches!(f.data_type(), DataType::Dictionary(..)));
                let a = if keep { Arc::clone(a) } else { cast(a, f.data_type())? };
                fields.push(Field::new(f.name(), a.data_type().clone(), f.is_nullable()));
                arrays.push(a);
            }
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            let batch = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)?;
            self.fold(state, &batch, ids, days)
        })?;
        // Read once per query: its pages need not stay in this process's resident memory.
        copy.release_pages();
        Ok(true)
    }

    /// Folds one batch of fact rows into `state`.
    /// `days`: the rows' day codes (from a plain copy), for the `ts` window.
    fn fold(&self, state: &mut DenseState, batch: &RecordBatch, ids: &[u32], days: Option<&UInt16Array>) -> Result<()> {
        let rows = batch.num_rows();
        let tests: Vec<_> = self
            .tests
            .iter()
            .zip(&self.caches)
            .map(|((at, test), cache)| (test, batch.column(*at).as_ref(), Some(cache)))
            .collect();
        let start = match &self.within {
            Some((_, users)) => {
                let rows = users.rows_of(ids);
                if rows.count_set_bits() == 0 {
                    return Ok(());
                }
                Some(rows)
            }
            None => None,
        };
        let mut mask = dict_filter::pass_all_within(start, &tests)?;
        mask = crate::query::const_compare::narrow_by_all(mask, &self.comparisons, batch, days)?;
        if let Some(p) = &self.predicate
            && mask.as_ref().is_none_or(|m| m.count_set_bits() > 0)
        {
            let values = p.evaluate(batch)?.into_array(rows)?;
            let values = values
                .as_boolean_opt()
                .ok_or_else(|| Error::Internal("a dense aggregate filter is not boolean".into()))?;
            // NULL is not true: the row is left out, as in WHERE.
            mask = Some(dict_filter::and(mask, dict_filter::true_rows(values)));
        }
        let selected: Vec<u32> = match mask {
            None => (0..rows as u32).collect(),
            Some(m) => dict_filter::positions(&m),
        };
        if selected.is_empty() {
            return Ok(());
        }
        let mut arrays: Vec<Option<ArrayRef>> = Vec::with_capacity(self.args.len());
        for (arg, kind) in self.args.iter().zip(&self.kinds) {
            let Some(arg) = arg else {
                arrays.push(None);
                continue;
            };
            let values = arg.evaluate(batch)?.into_array(rows)?;
            let values = match kind {
                DenseAggKind::CountRows | DenseAggKind::Count => values,
                DenseAggKind::SumInt | DenseAggKind::MinInt | DenseAggKind::MaxInt => {
                    cast(&reinterpret_as_int(values)?, &DataType::Int64)?
                }
                _ => cast(&values, &DataType::Float64)?,
            };
            arrays.push(Some(values));
        }
        // Few rows selected: their user ids and values are gathered first, in loops of loads
        // that do not wait on each other, and folded from there. Folded in place, each selected
        // row's loads (one cache miss apiece when they are far apart) wait behind the grouping's
        // branches on the ids before them.
        let gathered_ids: Vec<u32>;
        let (ids, selected) = if selected.len().saturating_mul(SPARSE_FACTOR) < rows {
            gathered_ids = selected.iter().map(|&row| ids[row as usize]).collect();
            let indices = arrow::array::UInt32Array::from(selected);
            for array in arrays.iter_mut().flatten() {
                *array = arrow::compute::take(array.as_ref(), &indices, None)?;
            }
            let dense: Vec<u32> = (0..indices.len() as u32).collect();
            (&gathered_ids[..], dense)
        } else {
            (ids, selected)
        };
        let inputs: Vec<DenseInput<'_>> = arrays
            .iter()
            .zip(&self.kinds)
            .map(|(a, kind)| match (a, kind) {
                (None, _) => DenseInput::None,
                (Some(a), DenseAggKind::Count) => DenseInput::Any(a.as_ref()),
                (Some(a), DenseAggKind::SumInt | DenseAggKind::MinInt | DenseAggKind::MaxInt) => {
                    DenseInput::Int(a.as_primitive())
                }
                (Some(a), _) => DenseInput::Float(a.as_primitive()),
            })
            .collect();
        state.update(ids, &selected, &inputs)
    }

    /// Sends the groups as batches of `batch_size` rows until `send` says the receiver is gone.
    /// The state's chunks are freed as their groups go out, so that the operators above (a sort
    /// buffering every row) do not hold the rows and the state at once.
    fn emit(&self, state: &mut DenseState, mut send: impl FnMut(RecordBatch) -> bool) -> Result<()> {
        let mut users = UserIds::new(&self.sources.users);
        let mut from = 0u64;
        loop {
            let groups = state.groups_from(from, self.batch_size);
            let Some(last) = groups.last() else { return Ok(()) };
            from = u64::from(*last) + 1;
            let batch = if self.emit_user_id {
                let values = self.values_batch(state, &groups)?;
                let ids = cast(&users.lookup(&groups)?, self.schema.field(0).data_type())?;
                let mut columns = vec![ids];
                columns.extend(values.columns().iter().cloned());
                let options = RecordBatchOptions::new().with_row_count(Some(groups.len()));
                RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?
            } else {
                self.values_batch(state, &groups)?
            };
            state.release_before(from);
            if !send(batch) {
                return Ok(());
            }
        }
    }
}

impl Job {
    /// The aggregates of `groups` as a batch of the output schema without `user_id`.
    fn values_batch(&self, state: &DenseState, groups: &[u32]) -> Result<RecordBatch> {
        let columns = (0..self.kinds.len()).map(|a| state.values(a, groups)).collect::<Result<Vec<_>>>()?;
        self.typed_batch(columns, groups.len(), false)
    }

    /// A batch of the output schema without `user_id` from the state's arrays of each aggregate
    /// (`Int64` or `Float64`), cast to the output's types; with every field `nullable` when the
    /// arrays hold slots that are not groups (as NULL: a count is never NULL for a group).
    fn typed_batch(&self, values: Vec<ArrayRef>, rows: usize, nullable: bool) -> Result<RecordBatch> {
        let offset = usize::from(self.emit_user_id);
        let fields: Vec<_> = self
            .schema
            .fields()
            .iter()
            .skip(offset)
            .map(|f| if nullable { Arc::new(f.as_ref().clone().with_nullable(true)) } else { Arc::clone(f) })
            .collect();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.len());
        for (values, field) in values.into_iter().zip(&fields) {
            let target = field.data_type();
            let values = match target {
                // Dates are days: Int64 → Int32 → Date32.
                DataType::Date32 => cast(&cast(&values, &DataType::Int32)?, target)?,
                _ => cast(&values, target)?,
            };
            columns.push(values);
        }
        // `SELECT DISTINCT user_id` under a projection that drops it has no column at all.
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)?)
    }
}

/// Timestamps and dates as their integer values (no unit conversion).
fn reinterpret_as_int(values: ArrayRef) -> Result<ArrayRef> {
    Ok(match values.data_type() {
        DataType::Timestamp(..) => cast(&values, &DataType::Int64)?,
        DataType::Date32 => cast(&values, &DataType::Int32)?,
        _ => values,
    })
}

/// `user_id` by row id, read from the users files one file at a time as row ids ascend.
struct UserIds<'a> {
    files: &'a [UsersFile],
    /// The file loaded (index into `files`) and its `user_id` column.
    loaded: Option<(usize, ArrayRef)>,
}

impl<'a> UserIds<'a> {
    fn new(files: &'a [UsersFile]) -> Self {
        UserIds { files, loaded: None }
    }

    fn file_of(&self, id: u32) -> Result<usize> {
        let i = self.files.partition_point(|f| f.first_row_id <= id);
        let i = i.checked_sub(1).ok_or_else(|| Error::Internal(format!("no users file holds row id {id}")))?;
        let f = &self.files[i];
        if u64::from(id) >= u64::from(f.first_row_id) + f.rows {
            return Err(Error::Internal(format!("no users file holds row id {id}")));
        }
        Ok(i)
    }

    fn column(&mut self, i: usize) -> Result<ArrayRef> {
        if let Some((loaded, column)) = &self.loaded
            && *loaded == i
        {
            return Ok(Arc::clone(column));
        }
        let file = &self.files[i];
        let mut parts: Vec<ArrayRef> = Vec::new();
        read_stored_columns(&file.path, &[USER_ID], Strings::views(), |batch| {
            parts.push(Arc::clone(batch.column(0)));
            Ok(())
        })?;
        let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        let column = if refs.len() == 1 { Arc::clone(&parts[0]) } else { concat(&refs)? };
        if column.len() as u64 != file.rows {
            return Err(Error::corrupt(&file.path, "the users file does not have the rows the manifest says"));
        }
        self.loaded = Some((i, Arc::clone(&column)));
        Ok(column)
    }

    /// The `user_id` of each row id in `ids` (ascending).
    fn lookup(&mut self, ids: &[u32]) -> Result<ArrayRef> {
        let mut parts: Vec<ArrayRef> = Vec::new();
        let mut start = 0;
        while start < ids.len() {
            let i = self.file_of(ids[start])?;
            let first = self.files[i].first_row_id;
            let end_id = u64::from(first) + self.files[i].rows;
            let end = start + ids[start..].partition_point(|&id| u64::from(id) < end_id);
            let column = self.column(i)?;
            let positions = UInt32Array::from_iter_values(ids[start..end].iter().map(|id| id - first));
            parts.push(take(column.as_ref(), &positions, None)?);
            start = end;
        }
        let ids = if parts.len() == 1 {
            parts.remove(0)
        } else {
            let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            concat(&refs)?
        };
        // Views taken from a whole users file keep its data buffers alive (and counted) in every
        // batch; keep only the bytes these rows use.
        Ok(match ids.as_string_view_opt() {
            Some(views) => Arc::new(views.gc()),
            None => ids,
        })
    }
}
