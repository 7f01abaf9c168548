//! "Bought together": association rules between products or categories over purchase baskets,
//! as the table functions `association_rules(min_support, min_confidence [, level [, basket]])`
//! and `recommend(user_id, n [, level [, min_support [, min_confidence [, basket]]]])`, with named
//! arguments (`level => 'category'`) through a relation planner. Owns what a basket is, the
//! reading of purchases into baskets, and the two-pass pair count.
//!
//! ```text
//!  purchases files (plain copies: row id, ts, product code; order_id from Parquet)
//!     │ one worker per core, a file at a time, rows in user order
//!     ▼
//!  user run: (basket key, item) of one user ──sort, dedup──▶ baskets ──▶ pass 1: baskets per item
//!     │ users another file may also hold                                  pass 2: pairs of frequent items
//!     ▼
//!  shared rows (few: the users at files' edges) ──sorted once at the end──▶ baskets
//! ```
//!
//! Memory is bounded by the frequent items, not by the pairs that occur: pass 1 keeps one counter
//! per item, pass 2 one per pair of items that are frequent on their own (support is
//! anti-monotone: a pair is never more frequent than either of its items), and rows are held only
//! for one user at a time (plus the rows of users found in more than one file's row-id range).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int32Type, TimeUnit, TimestampMicrosecondType, UInt16Type};
use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::planner::{RelationPlanner, RelationPlannerContext, RelationPlanning};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, FunctionArg, FunctionArgExpr, TableFactor, Value as SqlValue};
use rustc_hash::FxHashMap;

use crate::audience::analytics::{number_arg, table, text_arg};
use crate::error::{Error, Result};
use crate::index::{DAY_MICROS, IndexSet};
use crate::store::fact_rows::{self, Strings};
use crate::store::layout;
use crate::store::manifest::DataFile;
use crate::store::plain_columns::{self, PlainColumns};
use crate::tables::{ORDER_ID, PRODUCT_ID, TS, Table};

/// What the items of a basket are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// The `product_id`s bought.
    Product,
    /// The products' categories (from `products`; a product without one is left out).
    Category,
}

/// What makes purchases one basket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BasketBy {
    /// The same user on the same UTC day (whatever the order ids).
    Day,
    /// The same user and `order_id`; a purchase without an order id falls back to its user and
    /// UTC day.
    Order,
}

/// What `association_rules()` is asked: the thresholds and what items and baskets are.
#[derive(Debug, Clone, Copy)]
pub struct RuleParams {
    pub min_support: f64,
    pub min_confidence: f64,
    pub level: Level,
    pub basket: BasketBy,
}

impl RuleParams {
    /// The cache key: the same question gives the same rules on one snapshot.
    fn key(&self) -> (u64, u64, Level, BasketBy) {
        (self.min_support.to_bits(), self.min_confidence.to_bits(), self.level, self.basket)
    }
}

/// An item that is in no basket (no product, no category, no time to put it in a day).
const NO_ITEM: u32 = u32::MAX;

/// Defaults of `recommend()` when the thresholds are not given.
pub const DEFAULT_RECOMMEND_SUPPORT: f64 = 0.001;
pub const DEFAULT_RECOMMEND_CONFIDENCE: f64 = 0.1;

/// At most this many frequent items count their pairs in a dense triangle (at most 8 M slots of
/// 4 bytes per worker); more use a hash map of the pairs that occur.
const DENSE_PAIR_ITEMS: usize = 4096;

/// One rule `antecedent → consequent` with the counts it is computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub antecedent: String,
    pub consequent: String,
    /// Baskets holding both items.
    pub both: u64,
    pub antecedent_baskets: u64,
    pub consequent_baskets: u64,
    /// All baskets.
    pub baskets: u64,
}

impl Rule {
    pub fn support(&self) -> f64 {
        self.both as f64 / self.baskets as f64
    }

    pub fn confidence(&self) -> f64 {
        self.both as f64 / self.antecedent_baskets as f64
    }

    /// `confidence / (consequent_baskets / baskets)`, computed as `both × baskets / (antecedent ×
    /// consequent)` so that a rule and its reverse have exactly the same lift.
    pub fn lift(&self) -> f64 {
        (self.both as f64 * self.baskets as f64) / (self.antecedent_baskets as f64 * self.consequent_baskets as f64)
    }
}

/// Baskets as lists of item ids (each sorted, without repeats), visited by one or more workers,
/// each folding them into its own state. Read twice: once per pass.
pub(crate) trait BasketSource: Sync {
    /// The item ids' names (ids are indices).
    fn item_names(&self) -> Vec<String>;

    /// Visits every basket once; returns the workers' states.
    fn scan<S: Send>(
        &self,
        new_state: &(dyn Fn() -> S + Sync),
        visit: &(dyn Fn(&mut S, &[u32]) + Sync),
    ) -> Result<Vec<S>>;
}

/// Pass 1's answer: how many baskets there are and how many hold each item.
#[derive(Debug, Default, Clone)]
struct ItemCounts {
    baskets: u64,
    per_item: Vec<u64>,
}

impl ItemCounts {
    fn add(&mut self, basket: &[u32]) {
        self.baskets += 1;
        for &item in basket {
            let i = item as usize;
            if i >= self.per_item.len() {
                self.per_item.resize(i + 1, 0);
            }
            self.per_item[i] += 1;
        }
    }

    fn merge(&mut self, other: ItemCounts) {
        self.baskets += other.baskets;
        if other.per_item.len() > self.per_item.len() {
            self.per_item.resize(other.per_item.len(), 0);
        }
        for (a, b) in self.per_item.iter_mut().zip(other.per_item) {
            *a += b;
        }
    }
}

/// Pass 2's counter: baskets per pair of frequent items, the items renumbered `0..n` (so a
/// basket's pairs are `(i, j)` with `i < j`). Dense (a triangle of `n (n - 1) / 2` counts) for
/// few items, else a hash map of the pairs that occur.
#[derive(Debug, Clone)]
pub(crate) enum PairCounter {
    Dense { n: usize, counts: Vec<u32> },
    Sparse(FxHashMap<u64, u32>),
}

impl PairCounter {
    pub(crate) fn new(n: usize, dense_limit: usize) -> PairCounter {
        if n <= dense_limit {
            PairCounter::Dense { n, counts: vec![0; n * n.saturating_sub(1) / 2] }
        } else {
            PairCounter::Sparse(FxHashMap::default())
        }
    }

    /// The slot of `(i, j)`, `i < j < n`, in the triangle stored row by row.
    fn slot(n: usize, i: usize, j: usize) -> usize {
        i * (2 * n - i - 1) / 2 + (j - i - 1)
    }

    /// Counts the pairs of `items` (frequent-item numbers, ascending, no repeats).
    pub(crate) fn add(&mut self, items: &[u32]) {
        for (k, &i) in items.iter().enumerate() {
            for &j in &items[k + 1..] {
                match self {
                    PairCounter::Dense { n, counts } => counts[Self::slot(*n, i as usize, j as usize)] += 1,
                    PairCounter::Sparse(map) => *map.entry(u64::from(i) << 32 | u64::from(j)).or_insert(0) += 1,
                }
            }
        }
    }

    pub(crate) fn merge(&mut self, other: PairCounter) {
        match (self, other) {
            (PairCounter::Dense { counts, .. }, PairCounter::Dense { counts: theirs, .. }) => {
                for (a, b) in counts.iter_mut().zip(theirs) {
                    *a += b;
                }
            }
            (PairCounter::Sparse(map), PairCounter::Sparse(theirs)) => {
                for (k, v) in theirs {
                    *map.entry(k).or_insert(0) += v;
                }
            }
            _ => unreachable!("workers' counters are built alike"),
        }
    }

    /// Every pair counted at least once, as `(i, j, baskets)` with `i < j`.
    pub(crate) fn pairs(&self) -> Vec<(u32, u32, u64)> {
        match self {
            PairCounter::Dense { n, counts } => {
                let mut out = Vec::new();
                for i in 0..*n {
                    for j in i + 1..*n {
                        let c = counts[Self::slot(*n, i, j)];
                        if c > 0 {
                            out.push((i as u32, j as u32, u64::from(c)));
                        }
                    }
                }
                out
            }
            PairCounter::Sparse(map) => map.iter().map(|(k, c)| ((k >> 32) as u32, *k as u32, u64::from(*c))).collect(),
        }
    }
}

/// The rules of `source`'s baskets: pass 1 counts baskets per item, pass 2 counts pairs among the
/// items whose own support reaches `min_support`. Ordered by lift, then confidence (both
/// descending), then antecedent and consequent.
pub(crate) fn mine(
    source: &impl BasketSource,
    min_support: f64,
    min_confidence: f64,
    dense_limit: usize,
) -> Result<Vec<Rule>> {
    let mut counts = ItemCounts::default();
    for part in source.scan(&ItemCounts::default, &|c, basket| c.add(basket))? {
        counts.merge(part);
    }
    let n = counts.baskets;
    if n == 0 {
        return Ok(Vec::new());
    }
    let frequent_enough = |c: u64| c > 0 && c as f64 / n as f64 >= min_support;
    // Frequent items renumbered in item order, so a sorted basket stays sorted.
    let mut renumber = vec![NO_ITEM; counts.per_item.len()];
    let mut frequent: Vec<u32> = Vec::new();
    for (item, &c) in counts.per_item.iter().enumerate() {
        if frequent_enough(c) {
            renumber[item] = frequent.len() as u32;
            frequent.push(item as u32);
        }
    }
    if frequent.len() < 2 {
        return Ok(Vec::new());
    }
    let new_counter = || (PairCounter::new(frequent.len(), dense_limit), Vec::<u32>::new());
    let visit = |(counter, scratch): &mut (PairCounter, Vec<u32>), basket: &[u32]| {
        scratch.clear();
        scratch.extend(basket.iter().filter_map(|&i| renumber.get(i as usize).copied().filter(|&r| r != NO_ITEM)));
        if scratch.len() >= 2 {
            counter.add(scratch);
        }
    };
    let mut parts = source.scan(&new_counter, &visit)?.into_iter();
    let Some((mut pairs, _)) = parts.next() else { return Ok(Vec::new()) };
    for (part, _) in parts {
        pairs.merge(part);
    }
    let names = source.item_names();
    let name = |i: u32| names.get(i as usize).cloned().unwrap_or_default();
    let mut rules = Vec::new();
    for (i, j, both) in pairs.pairs() {
        if !frequent_enough(both) {
            continue;
        }
        let (a, b) = (frequent[i as usize], frequent[j as usize]);
        for (x, y) in [(a, b), (b, a)] {
            let rule = Rule {
                antecedent: name(x),
                consequent: name(y),
                both,
                antecedent_baskets: counts.per_item[x as usize],
                consequent_baskets: counts.per_item[y as usize],
                baskets: n,
            };
            if rule.confidence() >= min_confidence {
                rules.push(rule);
            }
        }
    }
    rules.sort_by(|a, b| {
        b.lift()
            .total_cmp(&a.lift())
            .then_with(|| b.confidence().total_cmp(&a.confidence()))
            .then_with(|| a.antecedent.cmp(&b.antecedent))
            .then_with(|| a.consequent.cmp(&b.consequent))
    });
    Ok(rules)
}

/// The rows of one user, `(basket key, item)`, turned into baskets when the user changes.
#[derive(Default)]
struct UserRun {
    user: Option<u32>,
    rows: Vec<(u64, u32)>,
    basket: Vec<u32>,
}

impl UserRun {
    fn push(&mut self, user: u32, key: u64, item: u32, emit: &mut impl FnMut(&[u32])) {
        if self.user != Some(user) {
            self.flush(emit);
            self.user = Some(user);
        }
        self.rows.push((key, item));
    }

    /// The held user's baskets: rows of one key, items without repeats, ascending.
    fn flush(&mut self, emit: &mut impl FnMut(&[u32])) {
        self.rows.sort_unstable();
        self.rows.dedup();
        let mut start = 0;
        while start < self.rows.len() {
            let key = self.rows[start].0;
            let end = start + self.rows[start..].partition_point(|r| r.0 == key);
            self.basket.clear();
            self.basket.extend(self.rows[start..end].iter().map(|r| r.1));
            emit(&self.basket);
            start = end;
        }
        self.rows.clear();
        self.user = None;
    }
}

/// Turns item names into item ids, shared by the workers; at category level through the
/// products' categories.
struct ItemNames {
    categories: Option<FxHashMap<String, String>>,
    interned: Mutex<(FxHashMap<String, u32>, Vec<String>)>,
}

impl ItemNames {
    /// The item id of each product in `products` (strings; NULL or without category: [`NO_ITEM`]).
    fn ids_of(&self, products: &ArrayRef) -> Result<Vec<u32>> {
        let products = arrow::compute::cast(products, &DataType::Utf8)?;
        let products = products.as_string::<i32>();
        let mut guard = self.interned.lock().unwrap_or_else(PoisonError::into_inner);
        let (of, names) = &mut *guard;
        let mut out = Vec::with_capacity(products.len());
        for product in products.iter() {
            let name = match (product, &self.categories) {
                (None, _) => None,
                (Some(p), None) => Some(p),
                (Some(p), Some(categories)) => categories.get(p).map(String::as_str),
            };
            out.push(match name {
                None => NO_ITEM,
                Some(n) => match of.get(n) {
                    Some(id) => *id,
                    None => {
                        let id = names.len() as u32;
                        of.insert(n.to_string(), id);
                        names.push(n.to_string());
                        id
                    }
                },
            });
        }
        Ok(out)
    }
}

/// One batch of purchases as basket material: per row, its user's row id, its basket key within
/// the user, and its item ([`NO_ITEM`]: in no basket).
type RowsFn<'f> = dyn FnMut(&[u32], &[u64], &[u32]) -> Result<()> + 'f;

/// The purchases of a snapshot as baskets.
struct StoreBaskets<'a> {
    root: &'a Path,
    files: Vec<&'a DataFile>,
    basket: BasketBy,
    items: ItemNames,
}

/// A basket key from an order id: its hash, with the top bit clear (day keys have it set). Two
/// order ids of one user sharing a 63-bit hash would merge their baskets: about one chance in
/// 10^16 for a user with a hundred orders.
fn order_key(order_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(order_id.as_bytes()) >> 1
}

/// A basket key from a UTC day.
fn day_key(ts_micros: i64) -> u64 {
    1 << 63 | (ts_micros.div_euclid(DAY_MICROS) as u64 & (u64::MAX >> 1))
}

impl StoreBaskets<'_> {
    /// The rows of `file` (only those of user `only`, when given) as basket material.
    fn read(&self, file: &DataFile, only: Option<u32>, f: &mut RowsFn<'_>) -> Result<()> {
        // Per batch, the item of each dictionary value, kept while the dictionary is the same
        // array (a plain copy has one per file).
        let mut mapped: Option<(ArrayRef, Vec<u32>)> = None;
        let mut items_of = |column: &ArrayRef| -> Result<Vec<u32>> {
            let (values, codes): (&ArrayRef, Vec<Option<usize>>) =
                if let Some(dict) = column.as_dictionary_opt::<UInt16Type>() {
                    (dict.values(), dict.keys().iter().map(|k| k.map(usize::from)).collect())
                } else if let Some(dict) = column.as_dictionary_opt::<Int32Type>() {
                    (dict.values(), dict.keys().iter().map(|k| k.and_then(|k| usize::try_from(k).ok())).collect())
                } else {
                    return self.items.ids_of(column);
                };
            if !mapped.as_ref().is_some_and(|(known, _)| Arc::ptr_eq(known, values)) {
                mapped = Some((Arc::clone(values), self.items.ids_of(values)?));
            }
            let map = &mapped.as_ref().expect("just set").1;
            Ok(codes.into_iter().map(|k| k.and_then(|k| map.get(k).copied()).unwrap_or(NO_ITEM)).collect())
        };
        let by_order = self.basket == BasketBy::Order && only.is_none();
        let mut batch_rows = |batch: &RecordBatch, ids: &[u32]| -> Result<()> {
            let (order, ts, product) = if by_order {
                (Some(batch.column(0)), batch.column(1), batch.column(2))
            } else {
                (None, batch.column(0), batch.column(1))
            };
            let ts = arrow::compute::cast(ts, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            let ts = ts.as_primitive::<TimestampMicrosecondType>();
            let orders = match order {
                Some(o) => Some(arrow::compute::cast(o, &DataType::Utf8View)?),
                None => None,
            };
            let orders = orders.as_ref().map(|o| o.as_string_view());
            let mut items = items_of(product)?;
            let mut keys = Vec::with_capacity(ids.len());
            for (row, item) in items.iter_mut().enumerate() {
                let key = match orders {
                    Some(o) if o.is_valid(row) => order_key(o.value(row)),
                    _ if ts.is_valid(row) => day_key(ts.value(row)),
                    _ => {
                        *item = NO_ITEM;
                        0
                    }
                };
                keys.push(key);
            }
            f(ids, &keys, &items)
        };
        let columns: &[&str] = if by_order { &[ORDER_ID, TS, PRODUCT_ID] } else { &[TS, PRODUCT_ID] };
        if !by_order
            && let Some(relative) = &file.plain_columns
            && columns.iter().all(|c| plain_columns::copies_column(c))
            && let Some(copy) = PlainColumns::open_cached(&layout::resolve(self.root, relative), columns, file.rows)?
        {
            let dead = crate::store::dead_rows::of(self.root, file)?;
            let dead = dead.as_deref();
            return match only {
                Some(user) if file.rows_by_user => copy.for_each_selected(
                    dead,
                    |ids| plain_columns::rows_of(ids, user).map(|r| r as u32).collect(),
                    &mut batch_rows,
                ),
                Some(user) => copy.for_each_batch(dead, |batch, ids| keep_user(batch, ids, user, &mut batch_rows)),
                None => copy.for_each_batch(dead, &mut batch_rows),
            };
        }
        let strings = Strings::Views { dictionary: vec![PRODUCT_ID.to_string()] };
        match only {
            Some(user) => fact_rows::for_each_fact_batch_as(self.root, file, columns, strings, |batch, ids| {
                keep_user(batch, ids, user, &mut batch_rows)
            }),
            None => fact_rows::for_each_fact_batch_as(self.root, file, columns, strings, &mut batch_rows),
        }
    }

    /// Each file's range of user row ids (everything when unknown).
    fn ranges(&self) -> Vec<(u32, u32)> {
        self.files
            .iter()
            .map(|f| {
                let lo = f.row_id_ranges.iter().map(|r| r.0).min();
                let hi = f.row_id_ranges.iter().map(|r| r.1).max();
                lo.zip(hi).unwrap_or((0, u32::MAX))
            })
            .collect()
    }
}

/// The rows of `batch` whose user is `user`.
fn keep_user(
    batch: &RecordBatch,
    ids: &[u32],
    user: u32,
    f: &mut impl FnMut(&RecordBatch, &[u32]) -> Result<()>,
) -> Result<()> {
    let rows: Vec<u32> = (0..ids.len() as u32).filter(|&r| ids[r as usize] == user).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let take = arrow::array::UInt32Array::from(rows);
    let picked = arrow::compute::take_record_batch(batch, &take)?;
    let picked_ids: Vec<u32> = take.values().iter().map(|&r| ids[r as usize]).collect();
    f(&picked, &picked_ids)
}

impl BasketSource for StoreBaskets<'_> {
    fn item_names(&self) -> Vec<String> {
        self.items.interned.lock().unwrap_or_else(PoisonError::into_inner).1.clone()
    }

    fn scan<S: Send>(
        &self,
        new_state: &(dyn Fn() -> S + Sync),
        visit: &(dyn Fn(&mut S, &[u32]) + Sync),
    ) -> Result<Vec<S>> {
        let ranges = self.ranges();
        let next = AtomicUsize::new(0);
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(self.files.len()).max(1);
        type Shared = Vec<(u32, u64, u32)>;
        let results: Vec<Result<(S, Shared)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| -> Result<(S, Shared)> {
                        let mut state = new_state();
                        let mut shared: Shared = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(file) = self.files.get(i) else { break };
                            // The users of this file that another file's range holds too: their
                            // baskets may continue there, so they wait for the end. All of a
                            // file's users when its rows are not in user order.
                            let own = ranges[i];
                            let overlaps: Vec<(u32, u32)> = ranges
                                .iter()
                                .enumerate()
                                .filter(|(j, r)| *j != i && r.0 <= own.1 && own.0 <= r.1)
                                .map(|(_, r)| (r.0.max(own.0), r.1.min(own.1)))
                                .collect();
                            let everything_shared = !file.rows_by_user;
                            let mut run = UserRun::default();
                            let mut emit = |basket: &[u32]| visit(&mut state, basket);
                            let (mut last_user, mut last_shared) = (None, false);
                            self.read(file, None, &mut |ids, keys, items| {
                                for ((&user, &key), &item) in ids.iter().zip(keys).zip(items) {
                                    if item == NO_ITEM {
                                        continue;
                                    }
                                    if last_user != Some(user) {
                                        last_user = Some(user);
                                        last_shared = everything_shared
                                            || overlaps.iter().any(|(lo, hi)| *lo <= user && user <= *hi);
                                    }
                                    if last_shared {
                                        shared.push((user, key, item));
                                    } else {
                                        run.push(user, key, item, &mut emit);
                                    }
                                }
                                Ok(())
                            })?;
                            run.flush(&mut emit);
                        }
                        Ok((state, shared))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(Error::Internal("a basket reader thread panicked".into()))))
                .collect()
        });
        let mut states = Vec::with_capacity(results.len());
        let mut shared: Vec<(u32, u64, u32)> = Vec::new();
        for r in results {
            let (state, part) = r?;
            states.push(state);
            shared.extend(part);
        }
        // The shared users' rows from every file, in user order: their whole baskets.
        shared.sort_unstable();
        if let Some(state) = states.first_mut() {
            let mut run = UserRun::default();
            let mut emit = |basket: &[u32]| visit(state, basket);
            for (user, key, item) in shared {
                run.push(user, key, item, &mut emit);
            }
            run.flush(&mut emit);
        }
        Ok(states)
    }
}

/// The session's purchases as baskets, and the rules already mined on its snapshot.
#[derive(Debug, Clone)]
pub struct Baskets {
    pub index: Arc<IndexSet>,
    cache: Arc<Mutex<RuleCache>>,
}

type RuleCache = FxHashMap<(u64, u64, Level, BasketBy), Arc<Vec<Rule>>>;

impl Baskets {
    pub fn new(index: Arc<IndexSet>) -> Baskets {
        Baskets { index, cache: Arc::default() }
    }

    fn source(&self, level: Level, basket: BasketBy) -> Result<Option<StoreBaskets<'_>>> {
        let Some(snapshot) = self.index.facts() else { return Ok(None) };
        let (root, manifest) = (snapshot.root(), snapshot.manifest());
        let categories = match level {
            Level::Product => None,
            Level::Category => Some(fact_rows::product_categories(root, manifest)?),
        };
        Ok(Some(StoreBaskets {
            root,
            files: manifest.files(Table::Purchases).iter().collect(),
            basket,
            items: ItemNames { categories, interned: Mutex::default() },
        }))
    }

    /// The rules for `params`, mined once per snapshot.
    pub fn rules(&self, params: RuleParams) -> Result<Arc<Vec<Rule>>> {
        if let Some(rules) = self.cache.lock().unwrap_or_else(PoisonError::into_inner).get(&params.key()) {
            return Ok(Arc::clone(rules));
        }
        let rules = match self.source(params.level, params.basket)? {
            Some(source) => mine(&source, params.min_support, params.min_confidence, DENSE_PAIR_ITEMS)?,
            None => Vec::new(),
        };
        let rules = Arc::new(rules);
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).insert(params.key(), Arc::clone(&rules));
        Ok(rules)
    }

    /// The items (at `level`) user `row_id` ever bought.
    fn bought(&self, row_id: u32, level: Level) -> Result<Vec<String>> {
        let Some(source) = self.source(level, BasketBy::Day)? else { return Ok(Vec::new()) };
        let mut items: Vec<u32> = Vec::new();
        for file in &source.files {
            if !file.row_id_ranges.is_empty()
                && !file.row_id_ranges.iter().any(|(lo, hi)| *lo <= row_id && row_id <= *hi)
            {
                continue;
            }
            source.read(file, Some(row_id), &mut |_, _, found| {
                items.extend(found.iter().filter(|&&i| i != NO_ITEM));
                Ok(())
            })?;
        }
        let names = source.item_names();
        let mut out: Vec<String> = items.into_iter().map(|i| names[i as usize].clone()).collect();
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

/// Whether argument `i` is given: present and not NULL (a named call's gaps are NULL).
fn given(args: &[Expr], i: usize) -> bool {
    !matches!(args.get(i), None | Some(Expr::Literal(ScalarValue::Null, _)))
}

/// A level argument: `'product'` or `'category'`.
fn level_arg(function: &str, args: &[Expr], i: usize, default: Level) -> DfResult<Level> {
    if !given(args, i) {
        return Ok(default);
    }
    match text_arg(function, args, i, "the level, 'product' or 'category'")?.to_ascii_lowercase().as_str() {
        "product" => Ok(Level::Product),
        "category" => Ok(Level::Category),
        other => plan_err!("{function}(): the level (argument {}) is 'product' or 'category', not '{other}'", i + 1),
    }
}

/// A basket argument: `'day'` or `'order'`.
fn basket_arg(function: &str, args: &[Expr], i: usize) -> DfResult<BasketBy> {
    if !given(args, i) {
        return Ok(BasketBy::Day);
    }
    match text_arg(function, args, i, "what makes a basket, 'day' or 'order'")?.to_ascii_lowercase().as_str() {
        "day" => Ok(BasketBy::Day),
        "order" => Ok(BasketBy::Order),
        other => plan_err!("{function}(): the basket (argument {}) is 'day' or 'order', not '{other}'", i + 1),
    }
}

/// A share argument in `(0, 1]` (`zero_allowed`: `[0, 1]`).
fn share_arg(
    function: &str,
    args: &[Expr],
    i: usize,
    name: &str,
    default: Option<f64>,
    zero_allowed: bool,
) -> DfResult<f64> {
    let value = if given(args, i) { number_arg(function, args, i, name)? } else { None };
    let Some(v) = value.or(default) else {
        return plan_err!("{function}(): argument {} ({name}) is missing", i + 1);
    };
    let ok = if zero_allowed { (0.0..=1.0).contains(&v) } else { v > 0.0 && v <= 1.0 };
    if !ok {
        let range = if zero_allowed { "[0, 1]" } else { "(0, 1]" };
        return plan_err!("{function}(): {name} (argument {}) is a share in {range}, not {v}", i + 1);
    }
    Ok(v)
}

/// `association_rules(min_support, min_confidence [, level [, basket]])`: every rule
/// `antecedent → consequent` between two items (products, or categories with `'category'`)
/// bought in the same basket (the same user and UTC day, or with `'order'` the same order),
/// whose pair is in at least `min_support` of the baskets and whose confidence reaches
/// `min_confidence`.
#[derive(Debug)]
pub struct AssociationRulesFunction(pub Baskets);

impl TableFunctionImpl for AssociationRulesFunction {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        const F: &str = "association_rules";
        let args = args.exprs();
        if !(2..=4).contains(&args.len()) {
            return plan_err!(
                "{F}() takes a minimum support and a minimum confidence, and optionally the level ('product' or \
                 'category') and what makes a basket ('day' or 'order'), e.g. {F}(0.01, 0.2, 'category')"
            );
        }
        let params = RuleParams {
            min_support: share_arg(F, args, 0, "min_support", None, false)?,
            min_confidence: share_arg(F, args, 1, "min_confidence", None, true)?,
            level: level_arg(F, args, 2, Level::Product)?,
            basket: basket_arg(F, args, 3)?,
        };
        let rules = self.0.rules(params)?;
        table(
            vec![
                Field::new("antecedent", DataType::Utf8, false),
                Field::new("consequent", DataType::Utf8, false),
                Field::new("support", DataType::Float64, false),
                Field::new("confidence", DataType::Float64, false),
                Field::new("lift", DataType::Float64, false),
                Field::new("both", DataType::Int64, false),
                Field::new("antecedent_baskets", DataType::Int64, false),
                Field::new("consequent_baskets", DataType::Int64, false),
                Field::new("baskets", DataType::Int64, false),
            ],
            vec![
                Arc::new(StringArray::from_iter_values(rules.iter().map(|r| r.antecedent.as_str()))),
                Arc::new(StringArray::from_iter_values(rules.iter().map(|r| r.consequent.as_str()))),
                Arc::new(Float64Array::from_iter_values(rules.iter().map(Rule::support))),
                Arc::new(Float64Array::from_iter_values(rules.iter().map(Rule::confidence))),
                Arc::new(Float64Array::from_iter_values(rules.iter().map(Rule::lift))),
                Arc::new(Int64Array::from_iter_values(rules.iter().map(|r| r.both as i64))),
                Arc::new(Int64Array::from_iter_values(rules.iter().map(|r| r.antecedent_baskets as i64))),
                Arc::new(Int64Array::from_iter_values(rules.iter().map(|r| r.consequent_baskets as i64))),
                Arc::new(Int64Array::from_iter_values(rules.iter().map(|r| r.baskets as i64))),
            ],
        )
    }
}

/// `recommend(user_id, n [, level [, min_support [, min_confidence [, basket]]]])`: up to `n`
/// items the user has not bought, each scored by the most confident rule from an item they
/// did buy (level `'category'`, support 0.001 and confidence 0.1 unless told).
#[derive(Debug)]
pub struct RecommendFunction(pub Baskets);

impl TableFunctionImpl for RecommendFunction {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        const F: &str = "recommend";
        let args = args.exprs();
        if !(2..=6).contains(&args.len()) {
            return plan_err!(
                "{F}() takes a user_id and how many items, and optionally the level, the minimum support and \
                 confidence of the rules and what makes a basket, e.g. {F}('u42', 5, 'category', 0.001, 0.1, 'day')"
            );
        }
        let user = text_arg(F, args, 0, "a user_id")?;
        let n = number_arg(F, args, 1, "how many items")?.unwrap_or(0.0);
        if n < 1.0 || n.fract() != 0.0 {
            return plan_err!("{F}(): n (argument 2) is how many items, a whole number from 1, not {n}");
        }
        let level = level_arg(F, args, 2, Level::Category)?;
        let params = RuleParams {
            min_support: share_arg(F, args, 3, "min_support", Some(DEFAULT_RECOMMEND_SUPPORT), false)?,
            min_confidence: share_arg(F, args, 4, "min_confidence", Some(DEFAULT_RECOMMEND_CONFIDENCE), true)?,
            level,
            basket: basket_arg(F, args, 5)?,
        };
        let Some(row_id) = self.0.index.row_id(&user)? else {
            return plan_err!("{F}(): there is no user '{user}' (argument 1)");
        };
        let bought = self.0.bought(row_id, level)?;
        let rules = self.0.rules(params)?;
        let picks = recommendations(&rules, &bought, n as usize);
        table(
            vec![
                Field::new("item", DataType::Utf8, false),
                Field::new("score", DataType::Float64, false),
                Field::new("antecedent", DataType::Utf8, false),
                Field::new("lift", DataType::Float64, false),
                Field::new("support", DataType::Float64, false),
            ],
            vec![
                Arc::new(StringArray::from_iter_values(picks.iter().map(|r| r.consequent.as_str()))),
                Arc::new(Float64Array::from_iter_values(picks.iter().map(|r| r.confidence()))),
                Arc::new(StringArray::from_iter_values(picks.iter().map(|r| r.antecedent.as_str()))),
                Arc::new(Float64Array::from_iter_values(picks.iter().map(|r| r.lift()))),
                Arc::new(Float64Array::from_iter_values(picks.iter().map(|r| r.support()))),
            ],
        )
    }
}

/// The parameters of the functions that take named arguments, in their positions.
const PARAMETERS: &[(&str, &[&str])] = &[
    ("association_rules", &["min_support", "min_confidence", "level", "basket"]),
    ("recommend", &["user_id", "n", "level", "min_support", "min_confidence", "basket"]),
];

/// Named arguments (`level => 'category'`) for `association_rules()` and `recommend()`.
/// DataFusion 55 refuses them in a table function call, so this planner puts them in their
/// positions before DataFusion plans the call; an argument left out between two given ones
/// becomes NULL, which the functions read as "not given".
#[derive(Debug)]
pub struct NamedArguments;

impl RelationPlanner for NamedArguments {
    fn plan_relation(
        &self,
        mut relation: TableFactor,
        _context: &mut dyn RelationPlannerContext,
    ) -> DfResult<RelationPlanning> {
        if let TableFactor::Table { name, args: Some(call), .. } = &mut relation
            && call.args.iter().any(|a| matches!(a, FunctionArg::Named { .. } | FunctionArg::ExprNamed { .. }))
            && let Some(function) = name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.to_ascii_lowercase())
            && let Some((function, parameters)) = PARAMETERS.iter().find(|(f, _)| *f == function)
        {
            call.args = in_positions(function, parameters, std::mem::take(&mut call.args))?;
        }
        Ok(RelationPlanning::Original(Box::new(relation)))
    }
}

/// `args` with the named ones moved to their parameters' positions.
fn in_positions(function: &str, parameters: &[&str], args: Vec<FunctionArg>) -> DfResult<Vec<FunctionArg>> {
    let mut slots: Vec<Option<FunctionArgExpr>> = vec![None; parameters.len()];
    let mut named = false;
    for (k, arg) in args.into_iter().enumerate() {
        let (name, value) = match arg {
            FunctionArg::Unnamed(value) if !named => {
                if k >= slots.len() {
                    return plan_err!("{function}() takes at most {} arguments", parameters.len());
                }
                slots[k] = Some(value);
                continue;
            }
            FunctionArg::Unnamed(_) => {
                return plan_err!("{function}(): an argument without a name comes after a named one");
            }
            FunctionArg::Named { name, arg, .. } => (name.value, arg),
            FunctionArg::ExprNamed { name: SqlExpr::Identifier(name), arg, .. } => (name.value, arg),
            FunctionArg::ExprNamed { name, .. } => {
                return plan_err!("{function}(): '{name}' is not an argument name");
            }
        };
        named = true;
        let Some(at) = parameters.iter().position(|p| p.eq_ignore_ascii_case(&name)) else {
            return plan_err!("{function}() has no argument named {name} (it takes {})", parameters.join(", "));
        };
        if slots[at].is_some() {
            return plan_err!("{function}(): {name} is given twice");
        }
        slots[at] = Some(value);
    }
    while slots.last().is_some_and(Option::is_none) {
        slots.pop();
    }
    let null = || FunctionArgExpr::Expr(SqlExpr::Value(SqlValue::Null.into()));
    Ok(slots.into_iter().map(|s| FunctionArg::Unnamed(s.unwrap_or_else(null))).collect())
}

/// For a user who bought `bought` (sorted): per item not bought, the rule from a bought item with
/// the highest confidence (then lift, then antecedent); the `n` best items by that order, then
/// by item.
fn recommendations<'r>(rules: &'r [Rule], bought: &[String], n: usize) -> Vec<&'r Rule> {
    let owned = |s: &String| bought.binary_search(s).is_ok();
    let better = |a: &Rule, b: &Rule| {
        a.confidence()
            .total_cmp(&b.confidence())
            .then_with(|| a.lift().total_cmp(&b.lift()))
            .then_with(|| b.antecedent.cmp(&a.antecedent))
            .then_with(|| b.consequent.cmp(&a.consequent))
    };
    let mut best: FxHashMap<&str, &Rule> = FxHashMap::default();
    for rule in rules.iter().filter(|r| owned(&r.antecedent) && !owned(&r.consequent)) {
        let slot = best.entry(rule.consequent.as_str()).or_insert(rule);
        if better(rule, slot).is_gt() {
            *slot = rule;
        }
    }
    let mut picks: Vec<&Rule> = best.into_values().collect();
    picks.sort_by(|a, b| better(b, a));
    picks.truncate(n);
    picks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Baskets given as lists of item names, visited by one worker or split over two.
    struct Listed {
        names: Vec<String>,
        baskets: Vec<Vec<u32>>,
        workers: usize,
    }

    impl Listed {
        fn new(baskets: &[&[&str]], workers: usize) -> Listed {
            let mut names: Vec<String> = Vec::new();
            let mut out = Vec::new();
            for basket in baskets {
                let mut ids: Vec<u32> = basket
                    .iter()
                    .map(|n| match names.iter().position(|m| m == n) {
                        Some(i) => i as u32,
                        None => {
                            names.push(n.to_string());
                            names.len() as u32 - 1
                        }
                    })
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                out.push(ids);
            }
            Listed { names, baskets: out, workers }
        }
    }

    impl BasketSource for Listed {
        fn item_names(&self) -> Vec<String> {
            self.names.clone()
        }

        fn scan<S: Send>(
            &self,
            new_state: &(dyn Fn() -> S + Sync),
            visit: &(dyn Fn(&mut S, &[u32]) + Sync),
        ) -> Result<Vec<S>> {
            let mut states: Vec<S> = (0..self.workers).map(|_| new_state()).collect();
            for (k, basket) in self.baskets.iter().enumerate() {
                visit(&mut states[k % self.workers], basket);
            }
            Ok(states)
        }
    }

    fn shop() -> Vec<&'static [&'static str]> {
        vec![
            &["bread", "butter", "milk"],
            &["bread", "butter"],
            &["bread", "jam"],
            &["milk"],
            &["bread", "butter", "jam"],
            &["caviar"],
        ]
    }

    fn rendered(rules: &[Rule]) -> Vec<String> {
        rules
            .iter()
            .map(|r| {
                format!(
                    "{}->{} {}/{}/{}/{}",
                    r.antecedent, r.consequent, r.both, r.antecedent_baskets, r.consequent_baskets, r.baskets
                )
            })
            .collect()
    }

    #[test]
    fn rules_carry_support_confidence_and_lift_of_their_counts() {
        let rules = mine(&Listed::new(&shop(), 1), 0.3, 0.5, DENSE_PAIR_ITEMS).unwrap();
        // bread 4, butter 3, jam 2, milk 2 of 6 baskets; bread & butter 3, bread & jam 2,
        // butter & milk 1 (below 30 %). Lift of bread & butter = (3/6) / (4/6 × 3/6) = 1.5.
        assert_eq!(
            rendered(&rules),
            ["butter->bread 3/3/4/6", "jam->bread 2/2/4/6", "bread->butter 3/4/3/6", "bread->jam 2/4/2/6"]
        );
        let r = &rules[0];
        assert_eq!((r.support(), r.confidence(), r.lift()), (0.5, 1.0, 1.5));
        assert_eq!(rules[3].confidence(), 0.5);
    }

    #[test]
    fn thresholds_are_inclusive_and_drop_what_is_below() {
        let all = mine(&Listed::new(&shop(), 1), 1.0 / 6.0, 0.0, DENSE_PAIR_ITEMS).unwrap();
        // Every co-occurring pair, both ways: bread-butter, bread-jam, bread-milk, butter-milk, butter-jam.
        assert_eq!(all.len(), 10);
        let confident = mine(&Listed::new(&shop(), 1), 1.0 / 6.0, 0.6, DENSE_PAIR_ITEMS).unwrap();
        assert!(confident.iter().all(|r| r.confidence() >= 0.6));
        assert_eq!(confident.len(), all.iter().filter(|r| r.confidence() >= 0.6).count());
        assert!(mine(&Listed::new(&shop(), 1), 0.51, 0.0, DENSE_PAIR_ITEMS).unwrap().is_empty());
    }

    #[test]
    fn dense_and_sparse_counters_and_any_number_of_workers_agree() {
        let expected = rendered(&mine(&Listed::new(&shop(), 1), 0.1, 0.0, DENSE_PAIR_ITEMS).unwrap());
        for (workers, dense) in [(1, 0), (2, 0), (3, DENSE_PAIR_ITEMS), (2, 2)] {
            let got = rendered(&mine(&Listed::new(&shop(), workers), 0.1, 0.0, dense).unwrap());
            assert_eq!(got, expected, "{workers} workers, dense up to {dense}");
        }
    }

    #[test]
    fn no_baskets_or_no_frequent_pair_give_no_rules() {
        assert!(mine(&Listed::new(&[], 2), 0.1, 0.1, DENSE_PAIR_ITEMS).unwrap().is_empty());
        assert!(mine(&Listed::new(&[&["a"], &["b"]], 1), 0.1, 0.0, DENSE_PAIR_ITEMS).unwrap().is_empty());
    }

    #[test]
    fn triangle_slots_are_distinct_and_dense() {
        let n = 7;
        let mut seen: Vec<usize> = (0..n).flat_map(|i| (i + 1..n).map(move |j| PairCounter::slot(n, i, j))).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..n * (n - 1) / 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_user_run_makes_one_basket_per_key_without_repeats() {
        let mut got: Vec<Vec<u32>> = Vec::new();
        let mut emit = |b: &[u32]| got.push(b.to_vec());
        let mut run = UserRun::default();
        for (user, key, item) in [(1, 5, 3), (1, 9, 1), (1, 5, 2), (1, 5, 3), (2, 5, 7), (2, 5, 4)] {
            run.push(user, key, item, &mut emit);
        }
        run.flush(&mut emit);
        assert_eq!(got, vec![vec![2, 3], vec![1], vec![4, 7]]);
    }

    #[test]
    fn order_and_day_keys_never_meet() {
        assert_eq!(day_key(0) >> 63, 1);
        assert_eq!(day_key(-1), 1 << 63 | (u64::MAX >> 1), "the day before 1970 is its own");
        assert_eq!(day_key(DAY_MICROS - 1), day_key(0));
        assert_ne!(day_key(DAY_MICROS), day_key(0));
        assert_eq!(order_key("o1") >> 63, 0);
        assert_ne!(order_key("o1"), order_key("o2"));
    }

    #[test]
    fn recommendations_take_the_most_confident_rule_per_item_not_bought() {
        let rules = mine(&Listed::new(&shop(), 1), 1.0 / 6.0, 0.0, DENSE_PAIR_ITEMS).unwrap();
        let bought = vec!["jam".to_string(), "milk".to_string()];
        let picks = recommendations(&rules, &bought, 5);
        let got: Vec<String> =
            picks.iter().map(|r| format!("{}<-{} {:.3}", r.consequent, r.antecedent, r.confidence())).collect();
        // bread: jam->bread 2/2 = 1 beats milk->bread 1/2; butter: jam->butter 1/2 = milk->butter 1/2,
        // the tie broken by lift (equal: 1/2 ÷ 3/6), then by antecedent (jam first).
        assert_eq!(got, ["bread<-jam 1.000", "butter<-jam 0.500"]);
        assert_eq!(recommendations(&rules, &bought, 1).len(), 1);
    }
}
