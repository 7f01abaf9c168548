//! Roaring-bitmap indexes over dense user row ids: which users carry a tag, have a value in a
//! low-cardinality users column (or NULL there), fall in a range of a numeric column, or were
//! active on a day (purchased, through a channel, in a category; had an event of a type). One index file per
//! committed version; opening reads its directory only, bitmaps load on first use and stay in a
//! bounded cache.

pub mod build;
pub mod dense;
pub mod format;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use roaring::{MultiOps, RoaringBitmap};
use serde::{Deserialize, Serialize};

use arrow::array::{Array, StringArray, TimestampMicrosecondArray};

use crate::error::Result;
use crate::store::Snapshot;
use crate::store::catalog::{Catalog, SetFile, read_set};
use crate::store::day_times::{DayTimes, Group};
use crate::store::id_dictionary::SegmentReader;
use crate::store::{fact_rows, typed};
use crate::tables::{CATEGORY, PRODUCT_ID, TS, Table};
use format::{BitmapKey, BitmapKind, IndexFile};

/// Bytes of deserialized bitmaps kept per open index before the cache is emptied.
const CACHE_BYTES: u64 = 512 << 20;

/// A bitmap as plain words (see [`dense`]).
type DenseBitmap = Arc<Vec<u64>>;

/// What a fold of range comparisons gives: plain words (one bit per row id) or a bitmap.
enum Folded {
    Words(Vec<u64>),
    Bitmap(RoaringBitmap),
}

/// Adds `value` (`bytes` big) to a cache of decoded bitmaps (bytes held, entries), emptied first
/// when it would grow past [`CACHE_BYTES`].
fn keep_in_cache<K: std::hash::Hash + Eq, V>(
    cache: &mut (u64, HashMap<K, Arc<V>>),
    key: K,
    value: &Arc<V>,
    bytes: u64,
) {
    if cache.0 + bytes > CACHE_BYTES {
        cache.1.clear();
        cache.0 = 0;
    }
    cache.0 += bytes;
    cache.1.insert(key, Arc::clone(value));
}

/// A range comparison among more than 1/this of the users runs over plain words.
const DENSE_FRACTION: u64 = 64;

pub use crate::tables::DAY_MICROS;

/// Fact rows of `table` with `from <= ts < to` (microseconds, UTC) — and, when `column` is given,
/// whose `column` (`channel_id`, `event_type`, or the product's `category`) is one of `values` —:
/// their users are found by reading those rows ([`IndexSet::users_of_fact_rows`]). Audience specs
/// carry it serialized (a window's partial days).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeScan {
    pub table: String,
    pub from: i64,
    pub to: i64,
    /// Conditions on the rows besides the window: each column is one of its values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<(String, Vec<String>)>,
    /// The activity streams holding every such row: users active in them on the edge's days are
    /// the only ones whose rows need reading (empty: unknown, read every row in the window).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<String>,
}

/// The indexes of one snapshot.
#[derive(Debug)]
pub struct IndexSet {
    file: Option<IndexFile>,
    /// Row ids `0..universe` were given out; the live users are those not `forgotten`.
    universe: u32,
    /// Row ids of forgotten users: holes in `0..universe` that no bitmap of the index holds and
    /// every "all users" computation leaves out.
    forgotten: Arc<RoaringBitmap>,
    /// Every live user, in plain containers (built on first use).
    everyone: std::sync::OnceLock<RoaringBitmap>,
    cache: Mutex<(u64, HashMap<BitmapKey, Arc<RoaringBitmap>>)>,
    /// NULL bitmaps as plain words (see [`dense`]), bytes held and the words.
    dense_cache: Mutex<(u64, HashMap<BitmapKey, DenseBitmap>)>,
    /// Range-indexed columns' bit slices as plain words in block order, bytes held and columns.
    sliced_cache: Mutex<(u64, HashMap<String, Arc<dense::SlicedColumn>>)>,
    /// The id dictionary's segments, opened on the first point lookup.
    id_segments: Vec<std::path::PathBuf>,
    id_readers: Mutex<Option<Arc<Vec<SegmentReader>>>>,
    /// The snapshot whose fact files answer the partial days of time windows.
    facts: Option<Snapshot>,
    /// The catalog's sets: rule tags' members (added to the tag bitmaps of the same name) and
    /// saved audiences' latest members, read from their own files on first use.
    catalog: CatalogSets,
    /// The pool of the session the index serves, for the per-user aggregates evaluated on its
    /// behalf (none outside a session: no limit).
    memory: Option<Arc<dyn datafusion::execution::memory_pool::MemoryPool>>,
    /// The users columns of type BOOLEAN (a bare one is a filter: `WHERE has_children`).
    booleans: std::collections::BTreeSet<String>,
}

#[derive(Debug, Default)]
struct CatalogSets {
    root: std::path::PathBuf,
    rule_tags: std::collections::BTreeMap<String, SetFile>,
    audiences: std::collections::BTreeMap<String, SetFile>,
    loaded: Mutex<HashMap<String, Arc<RoaringBitmap>>>,
}

impl IndexSet {
    /// Opens the index file of a snapshot (`None` when the store has no index yet).
    pub fn open(path: Option<&Path>, universe: u32) -> Result<IndexSet> {
        let file = path.map(IndexFile::open).transpose()?;
        Ok(IndexSet {
            file,
            universe,
            forgotten: Arc::new(RoaringBitmap::new()),
            everyone: std::sync::OnceLock::new(),
            cache: Mutex::new((0, HashMap::new())),
            dense_cache: Mutex::new((0, HashMap::new())),
            sliced_cache: Mutex::new((0, HashMap::new())),
            id_segments: Vec::new(),
            id_readers: Mutex::new(None),
            facts: None,
            catalog: CatalogSets::default(),
            memory: None,
            booleans: std::collections::BTreeSet::new(),
        })
    }

    /// Leaves the forgotten users' row ids out of every "all users" answer.
    /// The index knowing which users columns are BOOLEAN.
    pub fn with_booleans(mut self, columns: impl IntoIterator<Item = String>) -> IndexSet {
        self.booleans = columns.into_iter().collect();
        self
    }

    /// Whether `column` is a BOOLEAN users column with value bitmaps.
    pub fn is_boolean(&self, column: &str) -> bool {
        self.booleans.contains(column) && self.has_values(column)
    }

    /// The index with the session's memory pool ([`IndexSet::memory`]).
    pub fn with_memory(mut self, memory: Arc<dyn datafusion::execution::memory_pool::MemoryPool>) -> IndexSet {
        self.memory = Some(memory);
        self
    }

    /// The memory pool computations for the session's queries take from, if any.
    pub fn memory(&self) -> Option<&Arc<dyn datafusion::execution::memory_pool::MemoryPool>> {
        self.memory.as_ref()
    }

    pub fn with_forgotten(mut self, forgotten: RoaringBitmap) -> IndexSet {
        self.forgotten = Arc::new(forgotten);
        self.everyone = std::sync::OnceLock::new();
        self
    }

    /// The row ids of forgotten users (holes among `0..universe_len()`).
    pub fn forgotten(&self) -> &RoaringBitmap {
        &self.forgotten
    }

    /// Adds the sets of a store's catalog (files relative to `root`).
    pub fn with_catalog(mut self, root: &Path, catalog: &Catalog) -> IndexSet {
        self.catalog = CatalogSets {
            root: root.to_path_buf(),
            rule_tags: catalog.tags.iter().map(|t| (t.name.clone(), t.bitmap.clone())).collect(),
            audiences: catalog
                .audiences
                .iter()
                .filter_map(|a| Some((a.name.clone(), a.latest()?.members_file.clone())))
                .collect(),
            loaded: Mutex::new(HashMap::new()),
        };
        self
    }

    /// A catalog set file, read once per session.
    pub fn catalog_set(&self, file: &SetFile) -> Result<Arc<RoaringBitmap>> {
        if let Some(bm) = self.catalog.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&file.path)
        {
            return Ok(Arc::clone(bm));
        }
        let bm = Arc::new(read_set(&self.catalog.root, file)?);
        self.catalog
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(file.path.clone(), Arc::clone(&bm));
        Ok(bm)
    }

    /// The latest members of saved audience `name` (`None`: there is no such audience).
    pub fn saved_audience(&self, name: &str) -> Result<Option<Arc<RoaringBitmap>>> {
        self.catalog.audiences.get(name).map(|f| self.catalog_set(f)).transpose()
    }

    /// Whether `name` is a saved audience.
    pub fn has_audience(&self, name: &str) -> bool {
        self.catalog.audiences.contains_key(name)
    }

    /// Adds the snapshot whose fact files are read for the partial days of time windows.
    pub fn with_facts(mut self, snapshot: Snapshot) -> IndexSet {
        self.facts = Some(snapshot);
        self
    }

    /// The snapshot whose fact files this index reads for questions its bitmaps cannot answer.
    pub fn facts(&self) -> Option<&Snapshot> {
        self.facts.as_ref()
    }

    /// The users of the fact rows `scan` describes, from the day times of the fact files its
    /// window overlaps ([`crate::store::day_times`]: a binary search per day and allowed group);
    /// `None` when one of those files has none, or a condition is on a column they are not
    /// grouped by.
    pub fn users_by_day_times(&self, scan: &EdgeScan) -> Result<Option<RoaringBitmap>> {
        let Some(snapshot) = &self.facts else { return Ok(None) };
        let Ok(table) = scan.table.parse::<Table>() else { return Ok(None) };
        let (root, manifest) = (snapshot.root(), snapshot.manifest());
        let last = scan.to - 1;
        let mut out = RoaringBitmap::new();
        for file in manifest.files(table) {
            if file.ts_range.is_some_and(|(lo, hi)| hi < scan.from || lo > last) || file.rows == 0 {
                continue;
            }
            let Some(relative) = &file.day_times else { return Ok(None) };
            let times = DayTimes::open_cached(&crate::store::layout::resolve(root, relative))?;
            // Each condition as the position of its column in a group, and its values.
            let mut tests = Vec::with_capacity(scan.conditions.len());
            for (column, values) in &scan.conditions {
                let Some(at) = times.columns().iter().position(|c| c == column) else { return Ok(None) };
                tests.push((at, values));
            }
            let allowed = |group: &Group| {
                tests.iter().all(|(at, values)| group[*at].as_ref().is_some_and(|v| values.contains(v)))
            };
            times.users_in(allowed, (scan.from, scan.to), &mut out)?;
        }
        // Day times keep the rows a forget marked dead; they are the forgotten users' rows
        // (docs/lifecycle.md), so leaving those users out leaves exactly those rows out.
        out -= self.forgotten.as_ref();
        Ok(Some(out))
    }

    /// The users of the fact rows `scan` describes, read from the snapshot's fact files (only the
    /// files and row groups whose `ts` range overlaps the scan's).
    pub fn users_of_fact_rows(&self, scan: &EdgeScan) -> Result<RoaringBitmap> {
        let mut out = RoaringBitmap::new();
        let Some(snapshot) = &self.facts else { return Ok(out) };
        let table: Table = scan.table.parse()?;
        let (root, manifest) = (snapshot.root(), snapshot.manifest());
        // The category of a purchase is its product's.
        let categories = if scan.conditions.iter().any(|(c, _)| c == CATEGORY) {
            Some(fact_rows::product_categories(root, manifest)?)
        } else {
            None
        };
        let mut columns = vec![TS];
        columns.extend(scan.conditions.iter().map(|(c, _)| if c == CATEGORY { PRODUCT_ID } else { c.as_str() }));
        let last = scan.to - 1;
        for file in manifest.files(table) {
            if file.ts_range.is_some_and(|(lo, hi)| hi < scan.from || lo > last) {
                continue;
            }
            let path = crate::store::layout::resolve(root, &file.path);
            fact_rows::for_each_fact_batch_in(root, file, &columns, Some((scan.from, last)), |batch, ids| {
                let ts = typed::column::<TimestampMicrosecondArray>(&path, TS, batch.column(0).as_ref())?;
                let values = (1..columns.len())
                    .map(|i| typed::column::<StringArray>(&path, columns[i], batch.column(i).as_ref()))
                    .collect::<Result<Vec<_>>>()?;
                'rows: for (row, id) in ids.iter().enumerate() {
                    if ts.is_null(row) || !(scan.from..scan.to).contains(&ts.value(row)) {
                        continue;
                    }
                    for ((column, allowed), values) in scan.conditions.iter().zip(&values) {
                        if values.is_null(row) {
                            continue 'rows;
                        }
                        let value = values.value(row);
                        let value = match &categories {
                            Some(map) if column == CATEGORY => match map.get(value) {
                                Some(category) => category.as_str(),
                                None => continue 'rows,
                            },
                            _ => value,
                        };
                        if !allowed.iter().any(|v| v == value) {
                            continue 'rows;
                        }
                    }
                    out.insert(*id);
                }
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// Adds the id dictionary's segments, for point lookups by user_id.
    pub fn with_id_segments(mut self, segments: Vec<std::path::PathBuf>) -> IndexSet {
        self.id_segments = segments;
        self
    }

    /// The row id of `user_id`, from the id dictionary (one block read per segment).
    pub fn row_id(&self, user_id: &str) -> Result<Option<u32>> {
        for reader in self.id_readers()?.iter() {
            if let Some(id) = reader.get(user_id)? {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The row ids of many user_ids (`None` for those that are no user), in one ordered pass
    /// over each dictionary segment.
    pub fn row_ids(&self, user_ids: &[&str]) -> Result<Vec<Option<u32>>> {
        let mut order: Vec<usize> = (0..user_ids.len()).collect();
        order.sort_unstable_by(|a, b| user_ids[*a].cmp(user_ids[*b]));
        let sorted: Vec<&str> = order.iter().map(|i| user_ids[*i]).collect();
        let mut found = vec![None; sorted.len()];
        for reader in self.id_readers()?.iter() {
            reader.get_sorted(&sorted, &mut found)?;
        }
        let mut out = vec![None; user_ids.len()];
        for (slot, id) in order.into_iter().zip(found) {
            out[slot] = id;
        }
        Ok(out)
    }

    fn id_readers(&self) -> Result<Arc<Vec<SegmentReader>>> {
        let readers = {
            let mut slot = self.id_readers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match slot.as_ref() {
                Some(r) => Arc::clone(r),
                None => {
                    let opened =
                        Arc::new(self.id_segments.iter().map(|p| SegmentReader::open(p)).collect::<Result<Vec<_>>>()?);
                    *slot = Some(Arc::clone(&opened));
                    opened
                }
            }
        };
        Ok(readers)
    }

    /// Every live user. In plain containers, not runs: roaring removes a set from a run container
    /// one value at a time, which made every `NOT` over 10 M users cost tens of milliseconds.
    pub fn universe(&self) -> RoaringBitmap {
        self.everyone
            .get_or_init(|| {
                let mut all = RoaringBitmap::new();
                all.insert_range(0..self.universe);
                all.remove_run_compression();
                all -= self.forgotten.as_ref();
                all
            })
            .clone()
    }

    /// The size of the row-id space (`0..universe_len()`), forgotten users' holes included:
    /// what per-row-id arrays are sized by.
    pub fn universe_len(&self) -> u64 {
        u64::from(self.universe)
    }

    /// The number of live users (the row ids given out minus the forgotten ones).
    pub fn live_len(&self) -> u64 {
        u64::from(self.universe) - self.forgotten.len().min(u64::from(self.universe))
    }

    /// Whether `column` of users has value bitmaps (it is low-cardinality).
    pub fn has_values(&self, column: &str) -> bool {
        self.contains(&(BitmapKind::ValueColumn, column.to_string(), String::new()))
    }

    /// The `n`-th largest (`largest`) or smallest value of `column` among the non-NULL users of
    /// `candidates`, from its bit slices alone (most significant first: each slice either keeps
    /// the users still tied with the threshold, or sends them all above it); `None` when the
    /// column has no range index or `candidates` hold no more than `n` non-NULL users (every one
    /// of them is then among the first `n`). Every user with a value at or beyond it — at least
    /// `n` of them — is among those that `ORDER BY column [DESC] LIMIT n` may return.
    pub fn nth_value(&self, column: &str, candidates: &RoaringBitmap, n: u64, largest: bool) -> Result<Option<i64>> {
        let Some((base, bits)) = self.range_index(column) else { return Ok(None) };
        let mut tied = candidates - self.get(BitmapKind::Null, column, "")?.as_ref();
        if n == 0 || tied.len() <= n {
            return Ok(None);
        }
        // `beyond`: users strictly past the threshold found so far; `tied`: those equal to it in
        // the bits decided so far. Invariant: |beyond| < n <= |beyond| + |tied|.
        let mut beyond = RoaringBitmap::new();
        let mut value: u64 = 0;
        for bit in (0..bits).rev() {
            let slice = self.get(BitmapKind::RangeBit, column, &bit.to_string())?;
            let (far, near) = if largest {
                (&tied & slice.as_ref(), &tied - slice.as_ref())
            } else {
                (&tied - slice.as_ref(), &tied & slice.as_ref())
            };
            // The far side (ones when largest, zeros when smallest) comes first in the order.
            if beyond.len() + far.len() >= n {
                tied = far;
                if largest {
                    value |= 1 << bit;
                }
            } else {
                beyond |= far;
                tied = near;
                if !largest {
                    value |= 1 << bit;
                }
            }
        }
        let value = i64::try_from(value).ok().and_then(|v| base.checked_add(v));
        Ok(value)
    }

    /// The base and bit count of `column`'s bit-sliced range index, if it has one.
    pub fn range_index(&self, column: &str) -> Option<(i64, u32)> {
        let file = self.file.as_ref()?;
        let lo = (BitmapKind::RangeBase, column.to_string(), String::new());
        let ((_, name, key), _) = file.directory.range(lo..).next()?;
        if name != column {
            return None;
        }
        let base = key.parse().ok()?;
        let first_bit = (BitmapKind::RangeBit, column.to_string(), String::new());
        let bits = file
            .directory
            .range(first_bit..)
            .take_while(|((k, n, _), _)| *k == BitmapKind::RangeBit && n == column)
            .count() as u32;
        Some((base, bits))
    }

    /// Users whose `column` value compares to `value` as `op` says (NULLs never match), from the
    /// bit-sliced index (O'Neil & Quass).
    pub fn range_compare(&self, column: &str, op: RangeOp, value: i64) -> Result<RoaringBitmap> {
        self.range_compare_within(column, op, value, None)
    }

    /// [`IndexSet::range_compare`] restricted to the users of `within` (every step then works on
    /// the candidates only, not on all users).
    pub fn range_compare_within(
        &self,
        column: &str,
        op: RangeOp,
        value: i64,
        within: Option<&RoaringBitmap>,
    ) -> Result<RoaringBitmap> {
        let Some((base, bits)) = self.range_index(column) else { return Ok(RoaringBitmap::new()) };
        // Many candidates: one pass over the slices' words. Few: roaring operations on them.
        let many = within.is_none_or(|w| w.len() > self.universe_len() / DENSE_FRACTION);
        if many && let Some(c) = value.checked_sub(base).filter(|c| (0..1i64 << bits.min(62)).contains(c)) {
            return self.range_compare_dense(column, op, c as u64, bits, within);
        }
        let candidates = match within {
            Some(w) => w.clone(),
            None => self.universe(),
        };
        let mut not_null = candidates - &*self.get(BitmapKind::Null, column, "")?;
        // Candidates may come in runs, from which roaring removes one value at a time.
        not_null.remove_run_compression();
        let (mut lt, mut eq, mut gt) = (RoaringBitmap::new(), not_null.clone(), RoaringBitmap::new());
        match value.checked_sub(base) {
            Some(c) if c < 0 => {
                gt = not_null;
                eq.clear();
            }
            Some(c) if bits < 63 && c >= (1i64 << bits) => {
                lt = not_null;
                eq.clear();
            }
            None => {
                gt = not_null;
                eq.clear();
            }
            Some(c) => {
                for i in (0..bits).rev() {
                    let slice = self.get(BitmapKind::RangeBit, column, &i.to_string())?;
                    if c >> i & 1 == 1 {
                        lt |= &eq - &*slice;
                        eq &= &*slice;
                    } else {
                        gt |= &eq & &*slice;
                        eq -= &*slice;
                    }
                }
            }
        }
        Ok(match op {
            RangeOp::Lt => lt,
            RangeOp::LtEq => lt | eq,
            RangeOp::Eq => eq,
            RangeOp::GtEq => gt | eq,
            RangeOp::Gt => gt,
        })
    }

    /// The users among `within` (all when `None`) whose range-indexed columns compare as every one
    /// of `terms` says (`points BETWEEN 1000 AND 5000 AND birth_date >= ...`). With many
    /// candidates the terms run as one chain over plain words — a column's comparisons folded in
    /// one pass over its slices, the words converted to a bitmap once; with few, one after the
    /// other on roaring bitmaps.
    pub fn range_conjunction_within(
        &self,
        terms: &[(&str, RangeOp, i64)],
        within: Option<&RoaringBitmap>,
    ) -> Result<RoaringBitmap> {
        Ok(match self.range_conjunction_folded(terms, within)? {
            Folded::Words(words) => dense::bitmap_of(&words),
            Folded::Bitmap(bitmap) => bitmap,
        })
    }

    /// How many users meet every one of `terms` (the size of [`Self::range_conjunction_within`]
    /// over everyone): over plain words, a count of their bits, no bitmap built.
    pub fn range_conjunction_count(&self, terms: &[(&str, RangeOp, i64)]) -> Result<u64> {
        Ok(match self.range_conjunction_folded(terms, None)? {
            Folded::Words(words) => words.iter().map(|w| u64::from(w.count_ones())).sum(),
            Folded::Bitmap(bitmap) => bitmap.len(),
        })
    }

    fn range_conjunction_folded(
        &self,
        terms: &[(&str, RangeOp, i64)],
        within: Option<&RoaringBitmap>,
    ) -> Result<Folded> {
        let many = within.is_none_or(|w| w.len() > self.universe_len() / DENSE_FRACTION);
        // Slices of up to 61 bits: every constant compares as an i64 below 2^62.
        let narrow = terms.iter().all(|(c, _, _)| self.range_index(c).is_some_and(|(_, bits)| bits < 62));
        if !many || !narrow || terms.len() < 2 {
            let mut acc: Option<RoaringBitmap> = None;
            for (column, op, value) in terms {
                let next = self.range_compare_within(column, *op, *value, acc.as_ref().or(within))?;
                acc = Some(next);
            }
            return Ok(Folded::Bitmap(acc.unwrap_or_else(|| within.cloned().unwrap_or_else(|| self.universe()))));
        }
        let mut columns: Vec<&str> = terms.iter().map(|(c, _, _)| *c).collect();
        columns.sort_unstable();
        columns.dedup();
        // Per column: its NULLs, its slices and the comparisons folded over them.
        let mut chain = Vec::with_capacity(columns.len());
        for column in columns {
            let Some((base, bits)) = self.range_index(column) else { return Ok(Folded::Bitmap(RoaringBitmap::new())) };
            let nulls = self.dense_nulls(column)?;
            // Constants outside the slices' range decide a term for every non-NULL value.
            let mut fused: Vec<(RangeOp, u64)> = Vec::new();
            for (_, op, value) in terms.iter().filter(|(c, _, _)| *c == column) {
                let above = match value.checked_sub(base) {
                    Some(c) if (0..1i64 << bits).contains(&c) => {
                        fused.push((*op, c as u64));
                        continue;
                    }
                    Some(c) => c >= 0,
                    None => *value > base,
                };
                match above {
                    true => {
                        // Above every value: only `<` and `<=` hold.
                        if !matches!(op, RangeOp::Lt | RangeOp::LtEq) {
                            return Ok(Folded::Bitmap(RoaringBitmap::new()));
                        }
                    }
                    false => {
                        // Below every value: only `>` and `>=` hold.
                        if !matches!(op, RangeOp::Gt | RangeOp::GtEq) {
                            return Ok(Folded::Bitmap(RoaringBitmap::new()));
                        }
                    }
                }
            }
            let slices = if fused.is_empty() { None } else { Some(self.get_sliced(column, bits)?) };
            chain.push((nulls, slices, fused));
        }
        let mut live = self.live_words(within)?;
        let chain: Vec<dense::ColumnTerms<'_>> = chain
            .iter()
            .map(|(nulls, slices, fused)| dense::ColumnTerms {
                nulls: nulls.as_deref().map_or(&[][..], Vec::as_slice),
                slices: slices.as_deref(),
                terms: fused.as_slice(),
            })
            .collect();
        dense::keep_compared_columns(&chain, &mut live);
        Ok(Folded::Words(live))
    }

    /// The users of `within` (every live user when `None`) as plain words, one bit per row id.
    fn live_words(&self, within: Option<&RoaringBitmap>) -> Result<Vec<u64>> {
        let words = dense::words_for(self.universe);
        Ok(match within {
            Some(w) => dense::words_of(w, words)?,
            None => {
                let mut all = vec![u64::MAX; words];
                if !self.universe.is_multiple_of(64)
                    && let Some(last) = all.last_mut()
                {
                    *last = (1u64 << (self.universe % 64)) - 1;
                }
                for id in self.forgotten.iter() {
                    if let Some(word) = all.get_mut(id as usize / 64) {
                        *word &= !(1u64 << (id % 64));
                    }
                }
                all
            }
        })
    }

    /// [`IndexSet::range_compare_within`] over plain words, for `0 <= c < 2^bits`.
    fn range_compare_dense(
        &self,
        column: &str,
        op: RangeOp,
        c: u64,
        bits: u32,
        within: Option<&RoaringBitmap>,
    ) -> Result<RoaringBitmap> {
        let mut live = self.live_words(within)?;
        let nulls = self.dense_nulls(column)?;
        let slices = self.get_sliced(column, bits)?;
        let terms = [(op, c)];
        let column = dense::ColumnTerms {
            nulls: nulls.as_deref().map_or(&[][..], Vec::as_slice),
            slices: Some(&slices),
            terms: &terms,
        };
        dense::keep_compared_columns(&[column], &mut live);
        Ok(dense::bitmap_of(&live))
    }

    /// The NULLs of `column` as plain words, `None` when it has none (a column without NULLs
    /// then costs a comparison no pass over a vector of zeros).
    fn dense_nulls(&self, column: &str) -> Result<Option<DenseBitmap>> {
        if self.get(BitmapKind::Null, column, "")?.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.get_dense(BitmapKind::Null, column, "")?))
    }

    /// The `bits` bit slices of range-indexed `column` as plain words in block order, decoded
    /// from the index file once and cached.
    fn get_sliced(&self, column: &str, bits: u32) -> Result<Arc<dense::SlicedColumn>> {
        let lock = || self.sliced_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = lock().1.get(column) {
            return Ok(Arc::clone(found));
        }
        let slices = (0..bits)
            .map(|i| self.decode_words(&(BitmapKind::RangeBit, column.to_string(), i.to_string())))
            .collect::<Result<Vec<_>>>()?;
        let sliced = Arc::new(dense::interleave(&slices, dense::words_for(self.universe)));
        keep_in_cache(&mut lock(), column.to_string(), &sliced, sliced.bytes());
        Ok(sliced)
    }

    /// An indexed bitmap as plain words, decoded from the index file once and cached.
    fn get_dense(&self, kind: BitmapKind, name: &str, key: &str) -> Result<DenseBitmap> {
        let addr = (kind, name.to_string(), key.to_string());
        let lock = || self.dense_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = lock().1.get(&addr) {
            return Ok(Arc::clone(found));
        }
        let decoded = Arc::new(self.decode_words(&addr)?);
        let bytes = 8 * decoded.len() as u64;
        keep_in_cache(&mut lock(), addr, &decoded, bytes);
        Ok(decoded)
    }

    /// The indexed bitmap at `addr` as plain words, one bit per row id (all zero when the index
    /// has none).
    fn decode_words(&self, addr: &BitmapKey) -> Result<Vec<u64>> {
        let words = dense::words_for(self.universe);
        match self.file.as_ref().and_then(|f| Some((f, f.directory.get(addr).copied()?))) {
            Some((file, extent)) => dense::words_from_portable(&file.read_raw(extent)?, words),
            None => Ok(vec![0; words]),
        }
    }

    /// Whether the store has a tag index (any user_tags loaded).
    pub fn has_tags(&self) -> bool {
        self.file.is_some() || !self.catalog.rule_tags.is_empty()
    }

    fn contains(&self, key: &BitmapKey) -> bool {
        self.file.as_ref().is_some_and(|f| f.directory.contains_key(key))
    }

    /// The users with a user_tags row of `tag`, when the index knows that no user has two such
    /// rows and the tag is no rule tag (whose members the user_tags table also holds); `None`
    /// otherwise.
    pub fn tag_rows_once(&self, tag: &str) -> Result<Option<Arc<RoaringBitmap>>> {
        let checked = (BitmapKind::TagRowsChecked, String::new(), String::new());
        if !self.contains(&checked)
            || self.contains(&(BitmapKind::TagRepeated, tag.to_string(), String::new()))
            || self.catalog.rule_tags.contains_key(tag)
        {
            return Ok(None);
        }
        Ok(Some(self.get_indexed(BitmapKind::Tag, tag, "")?))
    }

    /// A bitmap by address; an address the index does not hold is the empty set.
    pub fn get(&self, kind: BitmapKind, name: &str, key: &str) -> Result<Arc<RoaringBitmap>> {
        if kind == BitmapKind::Tag
            && let Some(file) = self.catalog.rule_tags.get(name)
        {
            let rule = self.catalog_set(file)?;
            let loaded = self.get_indexed(kind, name, key)?;
            return Ok(if loaded.is_empty() { rule } else { Arc::new(rule.as_ref() | loaded.as_ref()) });
        }
        self.get_indexed(kind, name, key)
    }

    fn get_indexed(&self, kind: BitmapKind, name: &str, key: &str) -> Result<Arc<RoaringBitmap>> {
        let addr = (kind, name.to_string(), key.to_string());
        let Some(file) = &self.file else { return Ok(Arc::new(RoaringBitmap::new())) };
        let Some(extent) = file.directory.get(&addr).copied() else { return Ok(Arc::new(RoaringBitmap::new())) };
        if let Some(bm) = self.lock_cache().1.get(&addr) {
            return Ok(Arc::clone(bm));
        }
        let bm = Arc::new(file.read(extent)?);
        keep_in_cache(&mut self.lock_cache(), addr, &bm, u64::from(extent.len));
        Ok(bm)
    }

    /// Whether stream family `family` (`purchases`, `purchases.channel_id`, ...) is complete: every
    /// fact row is in its bitmaps, so that they answer exactly.
    pub fn has_family(&self, family: &str) -> bool {
        self.contains(&(BitmapKind::StreamFamily, family.to_string(), String::new()))
    }

    /// The streams of `family` present in the index (`purchases.channel_id=wechat`, ...).
    pub fn family_streams(&self, family: &str) -> Vec<String> {
        let Some(file) = &self.file else { return Vec::new() };
        let prefix = format!("{family}=");
        let lo = (BitmapKind::ActivityMonth, prefix.clone(), String::new());
        let mut out: Vec<String> = Vec::new();
        for ((kind, name, _), _) in file.directory.range(lo..) {
            if *kind != BitmapKind::ActivityMonth || !name.starts_with(&prefix) {
                break;
            }
            if out.last() != Some(name) {
                out.push(name.clone());
            }
        }
        out
    }

    /// The days on which `stream` has a day bitmap (someone was active), ascending.
    pub fn stream_days(&self, stream: &str) -> Vec<i64> {
        let Some(file) = &self.file else { return Vec::new() };
        let lo = (BitmapKind::ActivityDay, stream.to_string(), String::new());
        let mut days: Vec<i64> = file
            .directory
            .range(lo..)
            .take_while(|((k, n, _), _)| *k == BitmapKind::ActivityDay && n == stream)
            .filter_map(|((_, _, key), _)| key.parse::<i64>().ok())
            .collect();
        days.sort_unstable();
        days
    }

    /// Users active in `stream` on any day of `first_day..=last_day`: whole calendar months inside
    /// the window from the month roll-ups, the remaining days from the day bitmaps.
    pub fn active_on_days(&self, stream: &str, first_day: i64, last_day: i64) -> Result<RoaringBitmap> {
        self.active_on_days_within(stream, first_day, last_day, None)
    }

    /// [`IndexSet::active_on_days`] among the users in `within` (all when `None`): each day's or
    /// month's bitmap is met only by the users not yet found, so a small `within` costs little
    /// however long the window.
    pub fn active_on_days_within(
        &self,
        stream: &str,
        first_day: i64,
        last_day: i64,
        within: Option<&RoaringBitmap>,
    ) -> Result<RoaringBitmap> {
        let Some(file) = &self.file else { return Ok(RoaringBitmap::new()) };
        let entries = |kind: BitmapKind| {
            let lo = (kind, stream.to_string(), String::new());
            file.directory
                .range(lo..)
                .take_while(move |((k, n, _), _)| *k == kind && n == stream)
                .filter_map(|((_, _, key), _)| Some((key.parse::<i64>().ok()?, key)))
        };
        let mut parts: Vec<Arc<RoaringBitmap>> = Vec::new();
        let mut covered: Vec<(i64, i64)> = Vec::new();
        for (month, key) in entries(BitmapKind::ActivityMonth) {
            let month_last = build::month_start(month + 31) - 1;
            if month >= first_day && month_last <= last_day {
                parts.push(self.get(BitmapKind::ActivityMonth, stream, key)?);
                covered.push((month, month_last));
            }
        }
        for (day, key) in entries(BitmapKind::ActivityDay) {
            if (first_day..=last_day).contains(&day) && !covered.iter().any(|(a, b)| (*a..=*b).contains(&day)) {
                parts.push(self.get(BitmapKind::ActivityDay, stream, key)?);
            }
        }
        // Meeting each part with the users not yet found costs about |within| per part; the
        // union costs about the parts' total size. The cheaper one.
        let total: u64 = parts.iter().map(|p| p.len()).sum();
        let within = match within {
            Some(w) if w.len().saturating_mul(parts.len() as u64) < total => w,
            Some(w) => return Ok(parts.iter().map(|b| b.as_ref()).union() & w),
            None => return Ok(parts.iter().map(|b| b.as_ref()).union()),
        };
        let mut rest = within.clone();
        for part in &parts {
            if rest.is_empty() {
                break;
            }
            rest -= &rest & part.as_ref();
        }
        Ok(within - rest)
    }

    /// Every tag name in the index, sorted (reads the directory only).
    pub fn tag_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.catalog.rule_tags.keys().cloned().collect();
        if let Some(file) = &self.file {
            let first = (BitmapKind::Tag, String::new(), String::new());
            names.extend(
                file.directory
                    .range(first..)
                    .take_while(|((k, _, _), _)| *k == BitmapKind::Tag)
                    .map(|((_, n, _), _)| n.clone()),
            );
        }
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The tags that have rows loaded from `user_tags` files (rule tags excluded), sorted.
    pub fn loaded_tag_names(&self) -> Vec<String> {
        let Some(file) = &self.file else { return Vec::new() };
        let first = (BitmapKind::Tag, String::new(), String::new());
        file.directory
            .range(first..)
            .take_while(|((k, _, _), _)| *k == BitmapKind::Tag)
            .map(|((_, n, _), _)| n.clone())
            .collect()
    }

    /// Every tag with the number of users carrying it, sorted by name.
    pub fn tag_sizes(&self) -> Result<Vec<(String, u64)>> {
        self.tag_names().into_iter().map(|t| Ok((t.clone(), self.get(BitmapKind::Tag, &t, "")?.len()))).collect()
    }

    /// The value-indexed users columns, by name.
    pub fn value_columns(&self) -> Vec<String> {
        let Some(file) = &self.file else { return Vec::new() };
        let first = (BitmapKind::ValueColumn, String::new(), String::new());
        file.directory
            .range(first..)
            .take_while(|((k, _, _), _)| *k == BitmapKind::ValueColumn)
            .map(|((_, n, _), _)| n.clone())
            .collect()
    }

    /// The value keys of an indexed column (for completion and EXPLAIN).
    pub fn values(&self, column: &str) -> Vec<String> {
        let Some(file) = &self.file else { return Vec::new() };
        let first = (BitmapKind::Value, column.to_string(), String::new());
        file.directory
            .range(first..)
            .take_while(|((k, n, _), _)| *k == BitmapKind::Value && n == column)
            .map(|((_, _, v), _)| v.clone())
            .collect()
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<BitmapKey, Arc<RoaringBitmap>>)> {
        // The cache only holds immutable bitmaps: a poisoned lock still guards valid data.
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A comparison a range index answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOp {
    Lt,
    LtEq,
    Eq,
    GtEq,
    Gt,
}

impl std::fmt::Display for RangeOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RangeOp::Lt => "<",
            RangeOp::LtEq => "<=",
            RangeOp::Eq => "=",
            RangeOp::GtEq => ">=",
            RangeOp::Gt => ">",
        })
    }
}

/// The day number (days since 1970-01-01, UTC) of a timestamp in microseconds.
pub fn day_of(micros: i64) -> i64 {
    micros.div_euclid(DAY_MICROS)
}
