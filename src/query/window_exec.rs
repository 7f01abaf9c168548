//! [`WindowChainExec`]: a stack of window nodes, each over its own full sort, answered from one
//! buffered copy of their input. Each level orders row numbers by its sort keys
//! ([`row_order::sorted_indices`]), gathers only the columns its window functions read, has
//! DataFusion's own window expressions evaluate each partition in that order, and scatters the
//! results back to input order; the last level's order is the output order.
//!
//! ```text
//!  input ──▶ buffer ──▶ level 1: order₁ → gather → window exprs → scatter ──▶ (projection)
//!                      level 2: order₂ → …                                 ──▶ …
//!                      level k: orderₖ → gather every column ──────────────▶ output, in orderₖ
//! ```
//! DataFusion would instead sort and copy every column of every row once per level, each time
//! comparing the keys (strings included) row against row. Window semantics stay DataFusion's:
//! only the sorting is ours. Built by [`crate::query::window_rule`].

use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, PrimitiveArray, RecordBatch, UInt32Array, new_null_array,
};
use arrow::compute::{SortOptions, concat, concat_batches, take};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, UInt64Type};
use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::utils::evaluate_partition_ranges;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::window::StandardWindowExpr;
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::windows::WindowExpr;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning, PlanProperties,
};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::query::row_order::{self, RankCache};

/// One window node of the chain and the sort beneath it.
#[derive(Debug, Clone)]
pub struct WindowLevel {
    /// The order the replaced sort produced, over the level's input.
    pub sort: Vec<PhysicalSortExpr>,
    /// The window node's expressions (they share `PARTITION BY`).
    pub window_exprs: Vec<Arc<dyn WindowExpr>>,
    /// The window node's output schema: its input's columns, then one per expression.
    pub schema: SchemaRef,
    /// A projection between this window node and the next level's sort, with its schema.
    pub projection: Option<(Vec<Arc<dyn PhysicalExpr>>, SchemaRef)>,
}

/// Executes window levels (bottom first) over one buffered input; see the module doc.
#[derive(Debug)]
pub struct WindowChainExec {
    input: Arc<dyn ExecutionPlan>,
    levels: Vec<WindowLevel>,
    /// The columns of the last level's output that go out (a projection of plain columns above
    /// the chain, absorbed so that columns nobody reads are not gathered).
    output: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl WindowChainExec {
    /// `top` is the node the chain replaces (its top window node, or a projection of plain
    /// columns above it, whose column indices are `output`); its output is what this node promises.
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        levels: Vec<WindowLevel>,
        output: Option<Vec<usize>>,
        top: &Arc<dyn ExecutionPlan>,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            top.equivalence_properties().clone(),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        WindowChainExec { input, levels, output, properties }
    }

    pub fn levels(&self) -> &[WindowLevel] {
        &self.levels
    }

    fn job(&self, context: &TaskContext) -> Job {
        Job {
            input_schema: self.input.schema(),
            levels: self.levels.clone(),
            output: self.output.clone(),
            schema: self.schema(),
            workers: context.session_config().target_partitions().max(1),
            batch_size: context.session_config().batch_size().max(1),
        }
    }
}

impl DisplayAs for WindowChainExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WindowChainExec: ")?;
        for (i, level) in self.levels.iter().enumerate() {
            let names: Vec<&str> = level.window_exprs.iter().map(|w| w.name()).collect();
            let sort: Vec<String> = level.sort.iter().map(|s| s.to_string()).collect();
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "sort=[{}] windows=[{}]", sort.join(", "), names.join(", "))?;
        }
        if self.output.is_some() {
            let schema = self.schema();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            write!(f, "; output=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for WindowChainExec {
    fn name(&self) -> &str {
        "WindowChainExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        for level in &self.levels {
            let exprs = level.sort.iter().map(|s| &s.expr).chain(level.projection.iter().flat_map(|(p, _)| p.iter()));
            for e in exprs {
                if f(e)? == TreeNodeRecursion::Stop {
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| Error::Internal("WindowChainExec has exactly one child".into()))?;
        Ok(Arc::new(WindowChainExec {
            input,
            levels: self.levels.clone(),
            output: self.output.clone(),
            properties: Arc::clone(&self.properties),
        }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(Error::Internal(format!("WindowChainExec has one partition, not {}", partition + 1)).into());
        }
        let streams = (0..self.input.output_partitioning().partition_count())
            .map(|p| self.input.execute(p, Arc::clone(&context)))
            .collect::<DfResult<Vec<_>>>()?;
        let job = self.job(&context);
        let mut memory = MemoryConsumer::new("a window chain").register(&context.runtime_env().memory_pool);
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema(), 2);
        let tx = builder.tx();
        builder.spawn(async move {
            let mut all = futures::stream::select_all(streams);
            let mut batches = Vec::new();
            while let Some(batch) = all.next().await {
                if tx.is_closed() {
                    return Ok(());
                }
                let batch = batch?;
                memory.try_grow(batch.get_array_memory_size())?;
                batches.push(batch);
            }
            let watch = tx.clone();
            let stopped = move || watch.is_closed();
            tokio::task::spawn_blocking(move || {
                job.run(batches, &mut memory, &stopped, |b| tx.blocking_send(Ok(b)).is_ok())
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
            Ok(())
        });
        Ok(builder.build())
    }
}

/// Everything one execution needs, owned by its blocking thread.
struct Job {
    input_schema: SchemaRef,
    levels: Vec<WindowLevel>,
    output: Option<Vec<usize>>,
    /// The output schema.
    schema: SchemaRef,
    workers: usize,
    batch_size: usize,
}

impl Job {
    /// Evaluates every level over `batches` and sends the result, in the last level's order, in
    /// batches of `batch_size` rows until `send` says the receiver is gone. What it holds is
    /// reserved from `memory` first (a refusal fails the query with the pool's "resources
    /// exhausted" error); `stopped` is asked between steps, and a stopped query ends at once.
    fn run(
        &self,
        batches: Vec<RecordBatch>,
        memory: &mut MemoryReservation,
        stopped: &dyn Fn() -> bool,
        mut send: impl FnMut(RecordBatch) -> bool,
    ) -> Result<()> {
        let buffered: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        memory.try_resize(buffered * 2)?;
        let mut batch = concat_batches(&self.input_schema, &batches)?;
        drop(batches);
        let mut held = batch.get_array_memory_size();
        memory.try_resize(held)?;
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let mut ranks = RankCache::default();
        for (i, level) in self.levels.iter().enumerate() {
            if stopped() {
                return Ok(());
            }
            let keys = level
                .sort
                .iter()
                .map(|s| Ok((s.expr.evaluate(&batch)?.into_array(rows)?, s.options)))
                .collect::<Result<Vec<(ArrayRef, SortOptions)>>>()?;
            // The keys, one or two 8-byte words per key and row while sorting (and string
            // ranks), then the order's 4 bytes per row.
            let keys_size: usize = keys.iter().map(|(k, _)| k.get_array_memory_size()).sum();
            memory.try_resize(held + keys_size + rows * (16 * keys.len() + 8))?;
            let order = UInt32Array::from(row_order::sorted_indices(&keys, self.workers, &mut ranks)?);
            drop(keys);
            if stopped() {
                return Ok(());
            }
            let sorted = gather_read_columns(&batch, level, &order)?;
            memory.try_resize(
                held + ranks.memory_size() + order.get_array_memory_size() + sorted.get_array_memory_size(),
            )?;
            let results = evaluate_windows(level, &sorted)?;
            drop(sorted);
            let results_size: usize = results.iter().map(|r| r.get_array_memory_size()).sum();
            memory.try_resize(held + ranks.memory_size() + order.get_array_memory_size() + results_size * 2)?;
            if i + 1 == self.levels.len() {
                // The output goes in this level's order, gathered a batch at a time so that the
                // operators above start while the rest is gathered.
                let width = batch.num_columns();
                let output: Vec<usize> = match &self.output {
                    Some(columns) => columns.clone(),
                    None => (0..width + results.len()).collect(),
                };
                let mut start = 0;
                while start < rows {
                    let len = self.batch_size.min(rows - start);
                    let positions = order.slice(start, len);
                    let columns = output
                        .iter()
                        .map(|&c| match c.checked_sub(width) {
                            Some(r) => Ok(results[r].slice(start, len)),
                            None => take(batch.column(c).as_ref(), &positions, None),
                        })
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    if !send(RecordBatch::try_new(Arc::clone(&self.schema), columns)?) {
                        return Ok(());
                    }
                    start += len;
                }
                return Ok(());
            }
            let mut columns = batch.columns().to_vec();
            for r in results {
                columns.push(scatter(&r, order.values())?);
            }
            batch = RecordBatch::try_new(Arc::clone(&level.schema), columns)?;
            if let Some((exprs, schema)) = &level.projection {
                let columns =
                    exprs.iter().map(|e| e.evaluate(&batch)?.into_array(rows)).collect::<DfResult<Vec<_>>>()?;
                batch = RecordBatch::try_new(Arc::clone(schema), columns)?;
            }
            held = batch.get_array_memory_size();
            memory.try_resize(held + ranks.memory_size())?;
        }
        Ok(())
    }
}

/// `batch` in `order`, with only the columns the level's window expressions read; the others are
/// stand-ins of type NULL (in a schema where every field may be NULL).
fn gather_read_columns(batch: &RecordBatch, level: &WindowLevel, order: &UInt32Array) -> Result<RecordBatch> {
    let mut read = vec![false; batch.num_columns()];
    for w in &level.window_exprs {
        let mut exprs = w.expressions();
        exprs.extend(w.partition_by().iter().cloned());
        if reads_order_values(w)? {
            exprs.extend(w.order_by().iter().map(|s| Arc::clone(&s.expr)));
        }
        for e in exprs {
            for c in collect_columns(&e) {
                if let Some(r) = read.get_mut(c.index()) {
                    *r = true;
                }
            }
        }
    }
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(read.len());
    let mut columns = Vec::with_capacity(read.len());
    for (i, wanted) in read.iter().enumerate() {
        let field = schema.field(i);
        if *wanted {
            fields.push(Field::new(field.name(), field.data_type().clone(), true));
            columns.push(take(batch.column(i).as_ref(), order, None)?);
        } else {
            // Never read: a column of no type, which allocates nothing.
            fields.push(Field::new(field.name(), DataType::Null, true));
            columns.push(new_null_array(&DataType::Null, order.len()));
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// `sorted` (values in `order`) put back in input order: row `order[p]` gets `sorted[p]`.
fn scatter(sorted: &ArrayRef, order: &[u32]) -> Result<ArrayRef> {
    fn direct<T: ArrowPrimitiveType>(sorted: &ArrayRef, order: &[u32]) -> Option<ArrayRef> {
        let values = sorted.as_primitive_opt::<T>()?;
        if values.null_count() > 0 {
            return None;
        }
        let mut out = vec![T::Native::default(); order.len()];
        for (v, row) in values.values().iter().zip(order) {
            out[*row as usize] = *v;
        }
        Some(Arc::new(PrimitiveArray::<T>::new(out.into(), None).with_data_type(sorted.data_type().clone())))
    }
    if let Some(out) = direct::<UInt64Type>(sorted, order)
        .or_else(|| direct::<Int64Type>(sorted, order))
        .or_else(|| direct::<Float64Type>(sorted, order))
    {
        return Ok(out);
    }
    let mut inverse = vec![0u32; order.len()];
    for (position, row) in order.iter().enumerate() {
        inverse[*row as usize] = position as u32;
    }
    Ok(take(sorted.as_ref(), &UInt32Array::from(inverse), None)?)
}

/// Whether evaluating `w` reads its `ORDER BY` values: frames and peer groups do; `ntile` and
/// `row_number` need only the rows' order.
fn reads_order_values(w: &Arc<dyn WindowExpr>) -> Result<bool> {
    let Some(standard) = w.as_any().downcast_ref::<StandardWindowExpr>() else { return Ok(true) };
    let evaluator = standard.get_standard_func_expr().create_evaluator()?;
    Ok(evaluator.uses_window_frame() || evaluator.include_rank())
}

/// Each window expression of `level` over `sorted` (ordered by the level's sort), partition by
/// partition.
fn evaluate_windows(level: &WindowLevel, sorted: &RecordBatch) -> Result<Vec<ArrayRef>> {
    let rows = sorted.num_rows();
    let partition_by = level.window_exprs.first().map(|w| w.partition_by().to_vec()).unwrap_or_default();
    let partition_columns = partition_by
        .iter()
        .map(|e| {
            PhysicalSortExpr { expr: Arc::clone(e), options: SortOptions::default() }.evaluate_to_sort_column(sorted)
        })
        .collect::<DfResult<Vec<_>>>()?;
    let ranges = evaluate_partition_ranges(rows, &partition_columns)?;
    let mut results = Vec::with_capacity(level.window_exprs.len());
    for w in &level.window_exprs {
        let parts = ranges
            .iter()
            .map(|r| w.evaluate(&sorted.slice(r.start, r.end - r.start)))
            .collect::<DfResult<Vec<ArrayRef>>>()?;
        results.push(match parts.len() {
            1 => Arc::clone(&parts[0]),
            _ => concat(&parts.iter().map(|p| p.as_ref()).collect::<Vec<_>>())?,
        });
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use arrow::array::Int64Array;
    use datafusion::common::config::ConfigOptions;
    use datafusion::common::tree_node::TreeNode;
    use datafusion::datasource::MemTable;
    use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool, UnboundedMemoryPool};
    use datafusion::physical_optimizer::PhysicalOptimizerRule;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::query::window_rule::WindowChainRule;

    const ROWS: i64 = 10_000;

    /// The chain of a two-level window query over `ROWS` rows, its input's batches and a task
    /// context.
    async fn chain() -> (Arc<WindowChainExec>, Vec<RecordBatch>, Arc<TaskContext>) {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let x = Int64Array::from_iter_values((0..ROWS).map(|i| (i * 7919) % ROWS));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(x)]).unwrap();
        let ctx = SessionContext::new();
        ctx.register_table("t", Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())).unwrap();
        let sql = "SELECT x, ntile(4) OVER (ORDER BY x) AS a, row_number() OVER (ORDER BY x DESC) AS b FROM t";
        let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        let rule = WindowChainRule { use_indexes: Arc::new(AtomicBool::new(true)) };
        let plan = rule.optimize(plan, &ConfigOptions::default()).unwrap();
        let mut found = None;
        plan.apply(|node| {
            if let Some(chain) = node.downcast_ref::<WindowChainExec>() {
                found = Some(Arc::new(WindowChainExec {
                    input: Arc::clone(&chain.input),
                    levels: chain.levels.clone(),
                    output: chain.output.clone(),
                    properties: Arc::clone(&chain.properties),
                }));
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        let chain = found.expect("the rule made a window chain");
        let context = ctx.task_ctx();
        let input = collect(Arc::clone(&chain.input), Arc::clone(&context)).await.unwrap();
        (chain, input, context)
    }

    fn reservation(pool: Arc<dyn MemoryPool>) -> MemoryReservation {
        MemoryConsumer::new("a window chain").register(&pool)
    }

    #[tokio::test]
    async fn a_chain_takes_what_it_holds_from_the_pool_and_fails_clearly_past_its_limit() {
        let (chain, input, context) = chain().await;
        let job = chain.job(&context);
        let mut memory = reservation(Arc::new(UnboundedMemoryPool::default()));
        let mut rows = 0;
        job.run(input.clone(), &mut memory, &|| false, |b| {
            rows += b.num_rows();
            true
        })
        .unwrap();
        assert_eq!(rows, ROWS as usize);
        assert!(memory.size() >= ROWS as usize * 8, "holds at least the column: {}", memory.size());
        // 64 KiB: less than the buffered column and its sort.
        let mut small = reservation(Arc::new(GreedyMemoryPool::new(64 << 10)));
        let err = job.run(input, &mut small, &|| false, |_| true).unwrap_err().to_string();
        assert!(err.contains("Resources exhausted") && err.contains("a window chain"), "{err}");
    }

    #[tokio::test]
    async fn a_stopped_query_ends_between_steps_without_sending() {
        let (chain, input, context) = chain().await;
        let job = chain.job(&context);
        let mut memory = reservation(Arc::new(UnboundedMemoryPool::default()));
        for stop_at in 1..=3 {
            let asked = AtomicUsize::new(0);
            let stopped = || asked.fetch_add(1, Ordering::Relaxed) + 1 >= stop_at;
            let mut sent = 0;
            job.run(input.clone(), &mut memory, &stopped, |_| {
                sent += 1;
                true
            })
            .unwrap();
            assert_eq!(sent, 0, "stopped at step {stop_at}");
            assert_eq!(asked.load(Ordering::Relaxed), stop_at, "no step after the stop");
        }
    }
}
