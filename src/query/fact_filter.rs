//! The users of the fact rows that any row-local predicate keeps: `EXISTS (SELECT 1 FROM purchases
//! p WHERE p.user_id = u.user_id AND p.amount > 500 AND p.ts >= ...)` when no activity stream
//! answers it (amounts, quantities, products, several dimensions at once, `LIKE`, functions).
//! The fact files are read for the predicate's columns and each row's user row id only — not
//! `user_id`, no hash join with users — skipping files and row groups outside its `ts` window, on
//! every core; DataFusion's own physical expressions evaluate the predicate, so its semantics are
//! DataFusion's. The audience rule registers the predicate with the session's marker function and
//! refers to it by number in the marker's spec.
//!
//! [`FactAggregate`] is the same for per-user aggregates (`user_id IN (SELECT user_id FROM
//! purchases WHERE ... GROUP BY user_id HAVING sum(amount) > 1000)`, "at least 2 of these 3
//! tags"): the [`DenseAggregate`] the aggregate became is computed by row id, and the users whose
//! aggregates make `HAVING` true are the set — no `user_id` read on either side.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{Array, AsArray, RecordBatch, UInt16Array};
use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::execution_props::ExecutionProps;
use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::index::{EdgeScan, IndexSet};
use crate::query::audience_rule::collect_values;
use crate::query::const_compare::ConstComparison;
use crate::query::dense_agg_rule::{DenseAggregate, is_row_local};
use crate::query::dict_filter::{self, DictTest};
use crate::store::fact_rows::{self, Strings};
use crate::store::plain_columns::{self, PlainColumns};
use crate::tables::{PRODUCT_ID, TS, Table, sql_schema};

/// What looking up one candidate user in one fact file costs, in rows of a scan.
const LOOKUP_COST_IN_ROWS: u64 = 32;

/// Fact rows of `table` for which `predicate` is TRUE.
#[derive(Debug, Clone, PartialEq)]
pub struct FactFilter {
    pub table: Table,
    /// Over the table's columns (unqualified).
    pub predicate: Expr,
    /// The `ts` range the predicate implies, inclusive, in microseconds (for pruning only).
    pub ts_window: Option<(i64, i64)>,
}

impl FactFilter {
    /// A filter of `table`'s rows by the conjunction of `predicates`, or `None` when one of them is
    /// not a row-local condition on the table's own columns.
    pub fn new(table: Table, predicates: &[Expr], ts_window: Option<(i64, i64)>) -> Option<FactFilter> {
        let columns = crate::tables::contract_columns(table);
        let mut own = Vec::with_capacity(predicates.len());
        for p in predicates {
            if !is_row_local(p) {
                return None;
            }
            let p = unqualified(p.clone()).ok()?;
            if p.column_refs().iter().any(|c| !columns.iter().any(|d| d.name == c.name)) {
                return None;
            }
            own.push(p);
        }
        let predicate = datafusion::logical_expr::utils::conjunction(own)?;
        Some(FactFilter { table, predicate, ts_window })
    }

    /// The row ids of the users with at least one such row.
    pub fn users(&self, index: &IndexSet) -> Result<RoaringBitmap> {
        let Some(snapshot) = index.facts() else { return Ok(RoaringBitmap::new()) };
        let (root, manifest) = (snapshot.root(), snapshot.manifest());
        let test = RowTest::new(&self.predicate, self.table, manifest)?;
        let names = test.names.clone();
        let files: Vec<_> = manifest.files(self.table).iter().filter(|f| self.may_hold(f)).collect();
        let columns: Vec<&str> = names.iter().map(String::as_str).collect();
        let next = AtomicUsize::new(0);
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(files.len()).max(1);
        let words = (index.universe_len() as usize).div_ceil(64);
        let results: Vec<Result<Vec<u64>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        // One bit per row id: a passing row is a bit set, where a roaring
                        // insert (out of order, in array containers) moves memory.
                        let mut out = vec![0u64; words];
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(file) = files.get(i) else { break };
                            let mut keep_rows = |batch: &RecordBatch, ids: &[u32], days: Option<&UInt16Array>| {
                                for row in test.passing(batch, days)?.set_indices() {
                                    let id = ids[row] as usize;
                                    if id / 64 >= out.len() {
                                        out.resize(id / 64 + 1, 0);
                                    }
                                    out[id / 64] |= 1 << (id % 64);
                                }
                                Ok(())
                            };
                            // The plain copy when it holds every column: no page to decompress.
                            if let Some(relative) = &file.plain_columns
                                && columns.iter().all(|c| plain_columns::copies_column(c))
                                && let Some(copy) = PlainColumns::open_cached(
                                    &crate::store::layout::resolve(root, relative),
                                    &columns,
                                    file.rows,
                                )?
                            {
                                let dead = crate::store::dead_rows::of(root, file)?;
                                copy.for_each_batch_with_days(dead.as_deref(), &mut keep_rows)?;
                                copy.release_pages();
                                continue;
                            }
                            fact_rows::for_each_fact_batch_in_as(
                                root,
                                file,
                                &columns,
                                self.ts_window,
                                test.strings(),
                                |batch, ids| keep_rows(batch, ids, None),
                            )?;
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(Error::Internal("a fact reader thread panicked".into()))))
                .collect()
        });
        let mut all = vec![0u64; words];
        for r in results {
            let r = r?;
            if r.len() > all.len() {
                all.resize(r.len(), 0);
            }
            for (a, w) in all.iter_mut().zip(r) {
                *a |= w;
            }
        }
        Ok(crate::index::dense::bitmap_of(&all))
    }
}

impl FactFilter {
    /// The users with at least one such row among `within` (all users when `None`): looked up
    /// candidate by candidate ([`FactFilter::users_among`]) when the candidates are few against
    /// the rows a scan would read, otherwise scanned ([`FactFilter::users`]).
    pub fn users_within(&self, index: &IndexSet, within: Option<&RoaringBitmap>) -> Result<RoaringBitmap> {
        let Some(within) = within else { return self.users(index) };
        if within.is_empty() {
            return Ok(RoaringBitmap::new());
        }
        if let Some(snapshot) = index.facts() {
            let files: Vec<_> = snapshot.manifest().files(self.table).iter().filter(|f| self.may_hold(f)).collect();
            let rows: u64 = files.iter().map(|f| f.rows).sum();
            // A lookup is two binary searches per candidate and file; a scanned row is a few
            // nanoseconds of a dictionary test.
            let lookups = within.len().saturating_mul(files.len() as u64);
            if lookups.saturating_mul(LOOKUP_COST_IN_ROWS) < rows
                && let Some(found) = self.users_among(index, within)?
            {
                return Ok(found);
            }
        }
        Ok(self.users(index)? & within)
    }

    /// Whether `file` may hold rows this filter keeps (its `ts` range meets the filter's window).
    fn may_hold(&self, file: &crate::store::manifest::DataFile) -> bool {
        match (self.ts_window, file.ts_range) {
            (Some((from, to)), Some((lo, hi))) => hi >= from && lo <= to,
            _ => true,
        }
    }

    /// The users among `candidates` with at least one such row, looked up by binary search on
    /// the row ids of plain copies of files grouped by user; `None` when a file that may hold
    /// such rows has no copy of every column read or is not grouped by user (read it all then).
    pub fn users_among(&self, index: &IndexSet, candidates: &RoaringBitmap) -> Result<Option<RoaringBitmap>> {
        let Some(snapshot) = index.facts() else { return Ok(Some(RoaringBitmap::new())) };
        let (root, manifest) = (snapshot.root(), snapshot.manifest());
        let test = RowTest::new(&self.predicate, self.table, manifest)?;
        let names = test.names.clone();
        if !names.iter().all(|c| plain_columns::copies_column(c)) {
            return Ok(None);
        }
        let columns: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut copies = Vec::new();
        for file in manifest.files(self.table) {
            if !self.may_hold(file) {
                continue;
            }
            let Some(relative) = &file.plain_columns else { return Ok(None) };
            if !file.rows_by_user {
                return Ok(None);
            }
            let path = crate::store::layout::resolve(root, relative);
            let Some(copy) = PlainColumns::open_cached(&path, &columns, file.rows)? else { return Ok(None) };
            copies.push((copy, crate::store::dead_rows::of(root, file)?));
        }
        let mut out = RoaringBitmap::new();
        for (copy, dead) in copies {
            let select = |ids: &[u32]| {
                let mut rows: Vec<u32> = Vec::new();
                let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else { return rows };
                for candidate in candidates.range(first..=last) {
                    let found = plain_columns::rows_of(ids, candidate);
                    rows.extend((found.start as u32)..(found.end as u32));
                }
                rows
            };
            copy.for_each_selected(dead.as_deref(), select, |picked, ids| {
                for i in test.passing(picked, None)?.set_indices() {
                    out.insert(ids[i]);
                }
                Ok(())
            })?;
        }
        Ok(Some(out))
    }

    /// The fact rows of a window edge (`from <= ts < to`, microseconds) that meet its conditions;
    /// `None` for a column that is not the table's own (a product's category).
    pub fn of_edge(scan: &EdgeScan) -> Option<FactFilter> {
        let table: Table = scan.table.parse().ok()?;
        let at = |t: i64| lit(ScalarValue::TimestampMicrosecond(Some(t), None));
        let mut predicate = col(TS).gt_eq(at(scan.from)).and(col(TS).lt(at(scan.to)));
        for (column, values) in &scan.conditions {
            if !crate::tables::contract_columns(table).iter().any(|c| &c.name == column) {
                return None;
            }
            let values = values.iter().map(|v| lit(ScalarValue::Utf8View(Some(v.clone())))).collect();
            predicate = predicate.and(col(column.as_str()).in_list(values, false));
        }
        Some(FactFilter { table, predicate, ts_window: Some((scan.from, scan.to - 1)) })
    }
}

/// The `product_id`s of the products for which every one of `predicates` (over the products
/// table's own columns) is TRUE: how a purchases ⋈ products condition becomes a condition on
/// purchases alone (products are a small dimension, read whole).
pub fn matching_products(index: &IndexSet, predicates: &[Expr]) -> Result<Vec<String>> {
    let Some(snapshot) = index.facts() else { return Ok(Vec::new()) };
    let (root, manifest) = (snapshot.root(), snapshot.manifest());
    let table_schema = sql_schema(&manifest.columns(Table::Products));
    let predicate =
        unqualified(datafusion::logical_expr::utils::conjunction(predicates.to_vec()).unwrap_or(lit(true)))?;
    let mut names: Vec<String> = vec![PRODUCT_ID.to_string()];
    for c in predicate.column_refs() {
        if !names.contains(&c.name) {
            names.push(c.name.clone());
        }
    }
    let read_schema = Arc::new(
        table_schema
            .project(&names.iter().map(|n| table_schema.index_of(n)).collect::<std::result::Result<Vec<_>, _>>()?)?,
    );
    let df_schema = DFSchema::try_from(read_schema.as_ref().clone())?;
    let physical = physical_expr(&predicate, &df_schema)?;
    let columns: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for file in manifest.files(Table::Products) {
        let path = crate::store::layout::resolve(root, &file.path);
        fact_rows::read_stored_columns(&path, &columns, Strings::Plain, |batch| {
            let batch = conform(&batch, &read_schema)?;
            let keep = physical.evaluate(&batch)?.into_array(batch.num_rows())?;
            let keep = keep.as_boolean();
            let ids = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
            let ids = ids.as_string::<i32>();
            for row in 0..batch.num_rows() {
                if keep.is_valid(row) && keep.value(row) && ids.is_valid(row) {
                    out.push(ids.value(row).to_string());
                }
            }
            Ok(())
        })?;
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// `e` over `schema` as a physical expression, outside of physical planning.
pub(crate) fn physical_expr(e: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
    Ok(datafusion::physical_expr::create_physical_expr(
        e,
        schema,
        &ExecutionProps::new(),
        &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default(),
    )?)
}

/// `e` with its columns unqualified.
pub(crate) fn unqualified(e: Expr) -> Result<Expr> {
    Ok(e.transform_up(|e| match e {
        Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))),
        other => Ok(Transformed::no(other)),
    })?
    .data)
}

/// Users whose per-user aggregate over a fact table makes `having` TRUE.
#[derive(Debug, Clone, PartialEq)]
pub struct FactAggregate {
    /// The aggregate, without `user_id` in its output.
    pub node: DenseAggregate,
    /// Over the node's output columns.
    pub having: Expr,
}

impl FactAggregate {
    /// The row ids of those users.
    pub fn users(&self, index: &IndexSet) -> Result<RoaringBitmap> {
        self.users_within(index, None)
    }

    /// Those users among `within` (all of them when `None`). A `within` of at most half the
    /// users narrows the fold to their rows; a larger one costs a test per row for little.
    pub fn users_within(&self, index: &IndexSet, within: Option<&RoaringBitmap>) -> Result<RoaringBitmap> {
        if let Some(users) = self.users_from_tag_counts(index)? {
            return Ok(crate::query::bitmap_expr::restrict(users, within));
        }
        if within.is_some_and(RoaringBitmap::is_empty) {
            return Ok(RoaringBitmap::new());
        }
        let Some(snapshot) = index.facts() else { return Ok(RoaringBitmap::new()) };
        let physical = |e: &Expr, schema: &DFSchema| Ok(physical_expr(e, schema)?);
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let exec = crate::query::planner::dense_exec(&self.node, snapshot, Vec::new(), workers, &physical)?;
        let having = physical(&self.having, self.node.schema.as_ref())?;
        let narrow = within.filter(|w| w.len().saturating_mul(2) <= index.universe_len());
        let users = exec.users_where(&having, index.memory().cloned(), narrow)?;
        Ok(crate::query::bitmap_expr::restrict(users, within))
    }
}

impl FactAggregate {
    /// "At least k of these n tags": `count(*)` per user of the user_tags rows whose tag is one
    /// of a list is the number of those tags the user carries, when the index knows that no user
    /// has a tag twice; the users with each count come from the tag bitmaps, and `HAVING` is
    /// evaluated once per count. `None` when the aggregate is not of that form.
    fn users_from_tag_counts(&self, index: &IndexSet) -> Result<Option<RoaringBitmap>> {
        const MAX_TAGS: usize = 32;
        let node = &self.node;
        if node.table != Table::UserTags
            || node.emit_user_id
            || node.aggs.is_empty()
            || !node.aggs.iter().all(|a| a.kind == crate::query::dense_state::DenseAggKind::CountRows)
        {
            return Ok(None);
        }
        let mut listed = Vec::new();
        if node.predicate.as_ref().and_then(|p| collect_values(p, crate::tables::TAG, &mut listed)).is_none() {
            return Ok(None);
        }
        let mut tags: Vec<String> = Vec::with_capacity(listed.len());
        for tag in listed {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        if tags.is_empty() || tags.len() > MAX_TAGS {
            return Ok(None);
        }
        let mut bitmaps = Vec::with_capacity(tags.len());
        for tag in &tags {
            let Some(bitmap) = index.tag_rows_once(tag)? else { return Ok(None) };
            bitmaps.push(bitmap);
        }
        // by_count[c - 1]: the users with exactly c of the tags seen so far.
        let mut by_count: Vec<RoaringBitmap> = Vec::new();
        let mut seen = RoaringBitmap::new();
        for bitmap in &bitmaps {
            let b = bitmap.as_ref();
            let mut next = Vec::with_capacity(by_count.len() + 1);
            next.push((b - &seen) | by_count.first().map(|c| c - b).unwrap_or_default());
            for c in 1..=by_count.len() {
                let up = &by_count[c - 1] & b;
                let stay = by_count.get(c).map(|set| set - b).unwrap_or_default();
                next.push(up | stay);
            }
            seen |= b;
            by_count = next;
        }
        // HAVING for each count, every aggregate (all count(*)) equal to it.
        let schema = Arc::new(node.schema.as_arrow().clone());
        let counts: Vec<i64> = (1..=by_count.len() as i64).collect();
        let mut columns: Vec<arrow::array::ArrayRef> = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            if field.data_type() != &arrow::datatypes::DataType::Int64 {
                return Ok(None);
            }
            columns.push(Arc::new(arrow::array::Int64Array::from(counts.clone())));
        }
        let batch = RecordBatch::try_new(schema, columns)?;
        let having = physical_expr(&self.having, node.schema.as_ref())?;
        let passing = having.evaluate(&batch)?.into_array(batch.num_rows())?;
        let Some(passing) = passing.as_any().downcast_ref::<arrow::array::BooleanArray>() else { return Ok(None) };
        let mut users = RoaringBitmap::new();
        for (c, set) in by_count.iter().enumerate() {
            if passing.is_valid(c) && passing.value(c) {
                users |= set;
            }
        }
        Ok(Some(users))
    }
}

/// A row-local predicate ready for batches of its columns (`names`, in that order): string
/// equality and `IN` conjuncts on columns read nowhere else are tested once per dictionary value
/// (the columns are read as dictionaries: plain copies code them, Parquet keeps them), the rest
/// by DataFusion's physical expression over the other columns.
struct RowTest {
    names: Vec<String>,
    tests: Vec<(usize, DictTest)>,
    /// One per test: the passing values of the dictionaries seen.
    caches: Vec<dict_filter::PassCache>,
    /// Comparisons with constants, by column position in `names`.
    comparisons: Vec<(usize, ConstComparison)>,
    /// The positions of the residual's columns in `names`, their SQL schema and the residual.
    residual: Option<(Vec<usize>, arrow::datatypes::SchemaRef, Arc<dyn PhysicalExpr>)>,
}

impl RowTest {
    fn new(predicate: &Expr, table: Table, manifest: &crate::store::manifest::Manifest) -> Result<RowTest> {
        let table_schema = crate::query::with_string_views(&sql_schema(&manifest.columns(table)));
        let df_table = DFSchema::try_from(table_schema.as_ref().clone())?;
        let conjuncts = datafusion::logical_expr::utils::split_conjunction(predicate);
        let mut tests: Vec<DictTest> = conjuncts.iter().filter_map(|e| DictTest::from_expr(e, &df_table)).collect();
        let mut rest: Vec<Expr> =
            conjuncts.iter().filter(|e| DictTest::from_expr(e, &df_table).is_none()).map(|e| (*e).clone()).collect();
        // Comparisons of fixed-width columns with constants run straight on the values.
        let mut comparisons = Vec::new();
        rest.retain(|e| match ConstComparison::from_expr(e, &df_table) {
            Some(c) => {
                comparisons.push(c);
                false
            }
            None => true,
        });
        let elsewhere: Vec<String> =
            rest.iter().flat_map(|e| e.column_refs().into_iter().map(|c| c.name.clone())).collect();
        tests.retain(|t| {
            let keep = !elsewhere.contains(&t.column);
            if !keep {
                rest.push(Expr::from(t.clone()));
            }
            keep
        });
        let mut names: Vec<String> = tests.iter().map(|t| t.column.clone()).collect();
        let mut residual_names: Vec<String> = Vec::new();
        for e in &rest {
            for c in e.column_refs() {
                if !residual_names.contains(&c.name) {
                    residual_names.push(c.name.clone());
                }
            }
        }
        names.sort();
        names.dedup();
        let tests: Vec<(usize, DictTest)> =
            tests.into_iter().map(|t| (names.iter().position(|n| *n == t.column).unwrap_or(0), t)).collect();
        let position_of = |name: &str, names: &mut Vec<String>| match names.iter().position(|m| m == name) {
            Some(i) => i,
            None => {
                names.push(name.to_string());
                names.len() - 1
            }
        };
        let comparisons: Vec<(usize, ConstComparison)> = crate::query::const_compare::merge_ranges(comparisons)
            .into_iter()
            .map(|c| (position_of(&c.column, &mut names), c))
            .collect();
        let mut positions = Vec::with_capacity(residual_names.len());
        for n in &residual_names {
            positions.push(position_of(n, &mut names));
        }
        let residual = match datafusion::logical_expr::utils::conjunction(rest) {
            None => None,
            Some(e) => {
                let schema = Arc::new(
                    table_schema.project(
                        &residual_names
                            .iter()
                            .map(|n| table_schema.index_of(n))
                            .collect::<std::result::Result<Vec<_>, _>>()?,
                    )?,
                );
                let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
                let physical = physical_expr(&e, &df_schema)?;
                Some((positions, schema, physical))
            }
        };
        let caches = tests.iter().map(|_| dict_filter::PassCache::default()).collect();
        Ok(RowTest { names, tests, caches, comparisons, residual })
    }

    /// How the Parquet reader decodes strings: the tested columns as dictionaries.
    fn strings(&self) -> Strings {
        Strings::Views { dictionary: self.tests.iter().map(|(_, t)| t.column.clone()).collect() }
    }

    /// The rows of `batch` (columns in `names` order) for which the predicate is TRUE; `days`:
    /// the rows' day codes (from a plain copy), for a `ts` window.
    fn passing(&self, batch: &RecordBatch, days: Option<&UInt16Array>) -> Result<arrow::buffer::BooleanBuffer> {
        let rows = batch.num_rows();
        let mut columns = Vec::with_capacity(self.tests.len());
        for (at, _) in &self.tests {
            let column = batch.column(*at);
            columns.push(if matches!(column.data_type(), DataType::Dictionary(..)) {
                Arc::clone(column)
            } else {
                let text = arrow::compute::cast(column, &DataType::Utf8)?;
                arrow::compute::cast(&text, &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)))?
            });
        }
        let tests: Vec<_> = self
            .tests
            .iter()
            .zip(&columns)
            .zip(&self.caches)
            .map(|(((_, test), column), cache)| (test, column.as_ref(), Some(cache)))
            .collect();
        let mut mask = dict_filter::pass_all(&tests)?;
        mask = crate::query::const_compare::narrow_by_all(mask, &self.comparisons, batch, days)?;
        if let Some((positions, schema, physical)) = &self.residual
            && mask.as_ref().is_none_or(|m| m.count_set_bits() > 0)
        {
            let columns = positions.iter().map(|i| Arc::clone(batch.column(*i))).collect::<Vec<_>>();
            let fields = positions.iter().map(|i| batch.schema().field(*i).clone()).collect::<Vec<_>>();
            let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
            let part =
                RecordBatch::try_new_with_options(Arc::new(arrow::datatypes::Schema::new(fields)), columns, &options)?;
            let part = conform(&part, schema)?;
            mask = Some(match mask {
                Some(m) if dict_filter::is_sparse(&m, dict_filter::RESIDUAL_PICK_COST) => {
                    let picked =
                        arrow::compute::filter_record_batch(&part, &arrow::array::BooleanArray::new(m.clone(), None))?;
                    let values = physical.evaluate(&picked)?.into_array(picked.num_rows())?;
                    dict_filter::scatter(&m, &dict_filter::true_rows(values.as_boolean()))
                }
                m => {
                    let values = physical.evaluate(&part)?.into_array(rows)?;
                    dict_filter::and(m, dict_filter::true_rows(values.as_boolean()))
                }
            });
        }
        Ok(mask.unwrap_or_else(|| arrow::buffer::BooleanBuffer::new_set(rows)))
    }
}

/// `batch` with the columns and types of `schema` (stored types may differ from SQL's, e.g. text).
fn conform(batch: &RecordBatch, schema: &arrow::datatypes::SchemaRef) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let column = batch.column(i);
        columns.push(if column.data_type() == field.data_type() {
            Arc::clone(column)
        } else if matches!(column.data_type(), DataType::Dictionary(..)) {
            // The plain copies' coded strings: values first, then the SQL type.
            let values = arrow::compute::cast(column, &DataType::Utf8)?;
            arrow::compute::cast(&values, field.data_type())?
        } else {
            arrow::compute::cast(column, field.data_type())?
        });
    }
    // A condition that reads no column (`false` after simplification) still sees every row.
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)?)
}

/// Per group of users, the sum of `column` (a numeric column of `table`) over their rows whose
/// `ts` is in `[from, to)` (microseconds): revenue per group in a campaign window. Files outside
/// the window are skipped; plain copies are read when they hold both columns.
pub fn sums_by_group(
    index: &IndexSet,
    table: Table,
    column: &str,
    (from, to): (i64, i64),
    groups: &[&RoaringBitmap],
) -> Result<Vec<f64>> {
    let mut sums = vec![0.0; groups.len()];
    let Some(snapshot) = index.facts() else { return Ok(sums) };
    let (root, manifest) = (snapshot.root(), snapshot.manifest());
    let columns = [TS, column];
    let mut add = |batch: &RecordBatch, ids: &[u32]| -> Result<()> {
        let ts =
            arrow::compute::cast(batch.column(0), &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None))?;
        let ts = ts.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        let values = arrow::compute::cast(batch.column(1), &DataType::Float64)?;
        let values = values.as_primitive::<arrow::datatypes::Float64Type>();
        for (row, id) in ids.iter().enumerate() {
            if ts.is_null(row) || values.is_null(row) || !(from..to).contains(&ts.value(row)) {
                continue;
            }
            for (sum, group) in sums.iter_mut().zip(groups) {
                if group.contains(*id) {
                    *sum += values.value(row);
                }
            }
        }
        Ok(())
    };
    for file in manifest.files(table) {
        if file.ts_range.is_some_and(|(lo, hi)| hi < from || lo >= to) {
            continue;
        }
        if let Some(relative) = &file.plain_columns
            && columns.iter().all(|c| plain_columns::copies_column(c))
            && let Some(copy) =
                PlainColumns::open_cached(&crate::store::layout::resolve(root, relative), &columns, file.rows)?
        {
            copy.for_each_batch(crate::store::dead_rows::of(root, file)?.as_deref(), &mut add)?;
            copy.release_pages();
            continue;
        }
        fact_rows::for_each_fact_batch_in_as(root, file, &columns, Some((from, to - 1)), Strings::Plain, &mut add)?;
    }
    Ok(sums)
}
