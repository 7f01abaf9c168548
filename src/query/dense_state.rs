//! Aggregate states indexed by user row id: one slot per user instead of a hash table keyed by
//! `user_id`. Slots live in chunks of 65 536 row ids allocated on first touch, so a worker that
//! only sees some users' fact files only pays for their chunks; two workers' states merge chunk by
//! chunk.
//!
//! Semantics follow DataFusion's accumulators: `count` counts non-NULL values (`count(*)`
//! counts rows), `sum` of integers wraps on overflow, `sum`/`min`/`max`/`avg` are NULL for a group
//! whose values are all NULL, `min`/`max` of floats use the IEEE total order (NaN is largest), and
//! `avg` is the `f64` sum divided by the count. Float sums add in file order per worker, then
//! the two workers' partial sums: a different order than a hash aggregate's, so the last bits
//! may differ (as they do between DataFusion runs with different partitioning).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{Array, ArrayRef, AsArray, BooleanBufferBuilder, Float64Array, Int64Array};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use datafusion::execution::memory_pool::MemoryReservation;

use crate::error::{Error, Result};
use crate::query::dict_filter::bits_where;

const CHUNK_BITS: u32 = 16;
const CHUNK: usize = 1 << CHUNK_BITS;

/// What one aggregate computes, and over which value representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum DenseAggKind {
    /// `count(*)`: the group's rows.
    CountRows,
    /// `count(x)`: the group's non-NULL values.
    Count,
    /// `sum(x)` of 64-bit integers (wrapping).
    SumInt,
    /// `sum(x)` of `f64`.
    SumFloat,
    /// `min(x)` of integers, timestamps or dates (as `i64`).
    MinInt,
    /// `max(x)` of integers, timestamps or dates (as `i64`).
    MaxInt,
    /// `min(x)` of `f64` (total order).
    MinFloat,
    /// `max(x)` of `f64` (total order).
    MaxFloat,
    /// `avg(x)` of `f64`.
    Avg,
}

impl DenseAggKind {
    /// Whether the aggregate reads a value column.
    pub fn has_input(self) -> bool {
        self != DenseAggKind::CountRows
    }
}

/// The input of one aggregate for one batch, already reduced to the kinds' representation.
pub enum DenseInput<'a> {
    None,
    Int(&'a Int64Array),
    Float(&'a Float64Array),
    /// Only validity matters (`count(x)` of any type).
    Any(&'a dyn Array),
}

/// Bytes of freed chunk buffers the process keeps for the next chunks, at most.
const RECYCLED_BYTES: usize = 256 << 20;

/// Bytes held in the recycling bins now.
static RECYCLED: AtomicUsize = AtomicUsize::new(0);

/// A chunk buffer's element type, with its bin of freed buffers. A new buffer of a chunk's size
/// is memory the allocator gets from the kernel, which zeroes it at one page fault per page; a
/// query folding a hundred chunks per worker spent a quarter of its time there. A recycled
/// buffer is zeroed by `fill` instead, several times faster.
trait Recycled: Copy + Default + 'static {
    fn bin() -> &'static Mutex<Vec<Vec<Self>>>;
}

macro_rules! recycled {
    ($($t:ty),*) => {$(
        impl Recycled for $t {
            fn bin() -> &'static Mutex<Vec<Vec<$t>>> {
                static BIN: Mutex<Vec<Vec<$t>>> = Mutex::new(Vec::new());
                &BIN
            }
        }
    )*};
}
recycled!(u64, i64, f64, bool);

/// A buffer of `CHUNK` values: a recycled one when a bin has one, set to the default only when
/// `zeroed` (a chunk's row counts). A slot's state buffers are not: a slot whose row count is 0
/// holds no group, and its state is taken as empty where it is first folded or merged, so
/// nothing reads what a recycled buffer held there (a sparse fold over 10 M users otherwise
/// spent a tenth of its time zeroing them).
fn new_buffer<T: Recycled>(zeroed: bool) -> Vec<T> {
    // The bins are never left half-updated, so a poisoned lock still guards a consistent list.
    let recycled = T::bin().lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
    match recycled {
        Some(mut buffer) => {
            RECYCLED.fetch_sub(CHUNK * size_of::<T>(), Ordering::Relaxed);
            if zeroed {
                buffer.fill(T::default());
            }
            buffer
        }
        None => vec![T::default(); CHUNK],
    }
}

/// Keeps `buffer` for a later chunk while the bins hold less than [`RECYCLED_BYTES`].
fn recycle<T: Recycled>(buffer: Vec<T>) {
    let bytes = CHUNK * size_of::<T>();
    if buffer.len() != CHUNK || RECYCLED.fetch_add(bytes, Ordering::Relaxed) + bytes > RECYCLED_BYTES {
        if buffer.len() == CHUNK {
            RECYCLED.fetch_sub(bytes, Ordering::Relaxed);
        }
        return;
    }
    T::bin().lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(buffer);
}

/// Gives the value buffers of arrays made of a chunk's vectors ([`DenseState::take_chunk`]) back
/// to the bins once nothing else holds them (`Float64` and `Int64` arrays; others are dropped);
/// how many were given back.
pub fn recycle_arrays(columns: Vec<ArrayRef>) -> usize {
    let mut given = 0;
    for column in columns {
        let floats = column.as_primitive_opt::<arrow::datatypes::Float64Type>().map(|a| a.values().clone());
        let ints = column.as_primitive_opt::<arrow::datatypes::Int64Type>().map(|a| a.values().clone());
        drop(column);
        if let Some(Ok(values)) = floats.map(|v| v.into_inner().into_vec::<f64>()) {
            recycle(values);
            given += 1;
        }
        if let Some(Ok(values)) = ints.map(|v| v.into_inner().into_vec::<i64>()) {
            recycle(values);
            given += 1;
        }
    }
    given
}

/// One chunk of slots for every aggregate.
#[derive(Debug, Clone)]
struct Chunk {
    /// Rows per slot; a slot with no row is not a group. `i64`, as `count(*)` gives them: the
    /// buffer becomes that array as it is and returns to the bin it was taken from.
    rows: Vec<i64>,
    slots: Vec<Slot>,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.rows));
        for slot in self.slots.drain(..) {
            slot.recycle();
        }
    }
}

#[derive(Debug, Clone)]
enum Slot {
    /// `count(*)` is the chunk's `rows`.
    Rows,
    Count(Vec<i64>),
    Int {
        value: Vec<i64>,
        seen: Vec<bool>,
    },
    Float {
        value: Vec<f64>,
        seen: Vec<bool>,
    },
    Avg {
        sum: Vec<f64>,
        count: Vec<u64>,
    },
}

impl Slot {
    fn new(kind: DenseAggKind) -> Slot {
        match kind {
            DenseAggKind::CountRows => Slot::Rows,
            DenseAggKind::Count => Slot::Count(new_buffer(false)),
            DenseAggKind::SumInt | DenseAggKind::MinInt | DenseAggKind::MaxInt => {
                Slot::Int { value: new_buffer(false), seen: new_buffer(false) }
            }
            DenseAggKind::SumFloat | DenseAggKind::MinFloat | DenseAggKind::MaxFloat => {
                Slot::Float { value: new_buffer(false), seen: new_buffer(false) }
            }
            DenseAggKind::Avg => Slot::Avg { sum: new_buffer(false), count: new_buffer(false) },
        }
    }

    /// Gives the slot's buffers to the recycling bins.
    fn recycle(self) {
        match self {
            Slot::Rows => {}
            Slot::Count(counts) => recycle(counts),
            Slot::Int { value, seen } => {
                recycle(value);
                recycle(seen);
            }
            Slot::Float { value, seen } => {
                recycle(value);
                recycle(seen);
            }
            Slot::Avg { sum, count } => {
                recycle(sum);
                recycle(count);
            }
        }
    }

    /// Bytes a slot of `kind` takes for a chunk.
    fn bytes(kind: DenseAggKind) -> usize {
        CHUNK
            * match kind {
                DenseAggKind::CountRows => 0,
                DenseAggKind::Count => 8,
                DenseAggKind::Avg => 16,
                _ => 9,
            }
    }
}

fn split(id: u32) -> (usize, usize) {
    ((id >> CHUNK_BITS) as usize, id as usize & (CHUNK - 1))
}

fn fold_int(kind: DenseAggKind, value: &mut i64, seen: &mut bool, x: i64) {
    if !*seen {
        *value = x;
        *seen = true;
        return;
    }
    match kind {
        DenseAggKind::SumInt => *value = value.wrapping_add(x),
        DenseAggKind::MinInt => *value = (*value).min(x),
        _ => *value = (*value).max(x),
    }
}

fn fold_float(kind: DenseAggKind, value: &mut f64, seen: &mut bool, x: f64) {
    if !*seen {
        *value = x;
        *seen = true;
        return;
    }
    match kind {
        DenseAggKind::SumFloat => *value += x,
        DenseAggKind::MinFloat => {
            if x.total_cmp(value).is_lt() {
                *value = x
            }
        }
        _ => {
            if x.total_cmp(value).is_gt() {
                *value = x
            }
        }
    }
}

/// Consecutive selected rows of one user: its slot in the chunk and the range of the rows'
/// positions in `selected`.
#[derive(Debug, Clone, Copy)]
struct Group {
    slot: usize,
    from: usize,
    to: usize,
    /// Whether the slot had no row before this group (its state buffers hold nothing of it).
    fresh: bool,
}

/// Folds the rows of `groups` (runs of one user's rows among `selected`, all in `chunk`) into it.
/// Each group's state is loaded once, folded in a register in row order and stored once: the
/// same additions in the same order as slot by slot, without each row waiting for the previous
/// row's store to the same slot (fact files grouped by user give runs of several rows).
fn fold_groups(
    kinds: &[DenseAggKind],
    chunk: &mut Chunk,
    selected: &[u32],
    groups: &mut [Group],
    inputs: &[DenseInput<'_>],
) -> Result<()> {
    for g in groups.iter_mut() {
        g.fresh = chunk.rows[g.slot] == 0;
        chunk.rows[g.slot] += (g.to - g.from) as i64;
    }
    let groups: &[Group] = groups;
    for ((kind, input), state) in kinds.iter().zip(inputs).zip(chunk.slots.iter_mut()) {
        let kind = *kind;
        match (state, input) {
            (Slot::Rows, _) => {}
            (Slot::Count(counts), input) => {
                let nulls = match input {
                    DenseInput::Any(values) => values.nulls(),
                    DenseInput::Int(values) => values.nulls(),
                    DenseInput::Float(values) => values.nulls(),
                    DenseInput::None => return Err(Error::Internal("count(x) without its input".into())),
                };
                for g in groups {
                    let before = if g.fresh { 0 } else { counts[g.slot] };
                    counts[g.slot] = before
                        + match nulls {
                            None => (g.to - g.from) as i64,
                            Some(n) => {
                                selected[g.from..g.to].iter().filter(|&&row| n.is_valid(row as usize)).count() as i64
                            }
                        };
                }
            }
            (Slot::Int { value, seen }, DenseInput::Int(values)) => {
                let (v, nulls) = (values.values(), values.nulls());
                for g in groups {
                    let (mut acc, mut any) = if g.fresh { (0, false) } else { (value[g.slot], seen[g.slot]) };
                    match kind {
                        DenseAggKind::SumInt => fold_each(&selected[g.from..g.to], nulls, |row| {
                            acc = acc.wrapping_add(v[row]);
                            any = true;
                        }),
                        _ => {
                            fold_each(&selected[g.from..g.to], nulls, |row| fold_int(kind, &mut acc, &mut any, v[row]))
                        }
                    }
                    (value[g.slot], seen[g.slot]) = (acc, any);
                }
            }
            (Slot::Float { value, seen }, DenseInput::Float(values)) => {
                let (v, nulls) = (values.values(), values.nulls());
                for g in groups {
                    let (mut acc, mut any) = if g.fresh { (0.0, false) } else { (value[g.slot], seen[g.slot]) };
                    match kind {
                        // An unseen slot holds 0.0, and 0.0 + x is x (-0.0 too: 0.0 + -0.0 = 0.0,
                        // as DataFusion's sum, which starts from 0.0, gives).
                        DenseAggKind::SumFloat => fold_each(&selected[g.from..g.to], nulls, |row| {
                            acc += v[row];
                            any = true;
                        }),
                        _ => fold_each(&selected[g.from..g.to], nulls, |row| {
                            fold_float(kind, &mut acc, &mut any, v[row])
                        }),
                    }
                    (value[g.slot], seen[g.slot]) = (acc, any);
                }
            }
            (Slot::Avg { sum, count }, DenseInput::Float(values)) => {
                let (v, nulls) = (values.values(), values.nulls());
                for g in groups {
                    let (mut total, mut n) = if g.fresh { (0.0, 0) } else { (sum[g.slot], count[g.slot]) };
                    fold_each(&selected[g.from..g.to], nulls, |row| {
                        total += v[row];
                        n += 1;
                    });
                    (sum[g.slot], count[g.slot]) = (total, n);
                }
            }
            _ => return Err(Error::Internal(format!("dense aggregate {kind:?} got an input of the wrong type"))),
        }
    }
    Ok(())
}

/// Calls `f` with each row of `run` whose value is not NULL.
fn fold_each(run: &[u32], nulls: Option<&NullBuffer>, mut f: impl FnMut(usize)) {
    match nulls {
        None => run.iter().for_each(|&row| f(row as usize)),
        Some(n) => run.iter().map(|&row| row as usize).filter(|&row| n.is_valid(row)).for_each(f),
    }
}

/// The states of a list of aggregates for every user row id one worker has seen.
#[derive(Debug)]
pub struct DenseState {
    kinds: Vec<DenseAggKind>,
    chunks: Vec<Option<Box<Chunk>>>,
    /// Memory taken from the session's pool for the chunks (this state's, then those merged into
    /// it); none outside a session.
    reservations: Vec<MemoryReservation>,
}

impl DenseState {
    pub fn new(kinds: Vec<DenseAggKind>) -> DenseState {
        DenseState { kinds, chunks: Vec::new(), reservations: Vec::new() }
    }

    /// A state whose chunks are taken from `reservation`'s pool: a chunk the pool refuses is a
    /// "resources exhausted" error.
    pub fn with_reservation(kinds: Vec<DenseAggKind>, reservation: MemoryReservation) -> DenseState {
        DenseState { kinds, chunks: Vec::new(), reservations: vec![reservation] }
    }

    /// Bytes one chunk of these aggregates takes.
    fn chunk_bytes(&self) -> usize {
        8 * CHUNK + self.kinds.iter().map(|k| Slot::bytes(*k)).sum::<usize>()
    }

    /// Gives back the memory of `chunks` chunks.
    fn release(&mut self, chunks: usize) {
        let mut bytes = chunks * self.chunk_bytes();
        for r in &mut self.reservations {
            let n = bytes.min(r.size());
            r.shrink(n);
            bytes -= n;
        }
    }

    fn chunk_mut(&mut self, index: usize) -> Result<&mut Chunk> {
        if self.chunks.len() <= index {
            self.chunks.resize_with(index + 1, || None);
        }
        if self.chunks[index].is_none() {
            if let Some(r) = self.reservations.first() {
                r.try_grow(self.chunk_bytes()).map_err(|e| Error::DataFusion(Box::new(e)))?;
            }
            let kinds = &self.kinds;
            self.chunks[index] =
                Some(Box::new(Chunk { rows: new_buffer(true), slots: kinds.iter().map(|k| Slot::new(*k)).collect() }));
        }
        Ok(self.chunks[index].as_deref_mut().expect("the chunk was just made"))
    }

    /// Adds the rows `selected` (positions in the batch) whose user row ids are `ids`; `inputs`
    /// holds one entry per aggregate. Rows come in runs of one chunk (fact rows grouped by user
    /// make long runs), and within a run in groups of one user: each run folds aggregate by
    /// aggregate, the kinds and inputs matched once per run instead of once per row, each group's
    /// state loaded and stored once.
    pub fn update(&mut self, ids: &[u32], selected: &[u32], inputs: &[DenseInput<'_>]) -> Result<()> {
        if inputs.len() != self.kinds.len() {
            return Err(Error::Internal(format!(
                "dense aggregate got {} inputs for {} aggregates",
                inputs.len(),
                self.kinds.len()
            )));
        }
        let mut groups: Vec<Group> = Vec::new();
        let mut start = 0;
        while let Some(&first) = selected.get(start) {
            // The run of rows in one chunk from `start`, cut into groups of one user.
            let first = ids[first as usize];
            let c = split(first).0;
            groups.clear();
            let (mut current, mut from, mut end) = (first, start, start + 1);
            loop {
                let next = selected.get(end).map(|&row| ids[row as usize]);
                if next == Some(current) {
                    end += 1;
                    continue;
                }
                groups.push(Group { slot: split(current).1, from, to: end, fresh: false });
                match next {
                    Some(id) if split(id).0 == c => {
                        (current, from) = (id, end);
                        end += 1;
                    }
                    _ => break,
                }
            }
            self.chunk_mut(c)?;
            let chunk = self.chunks[c].as_deref_mut().expect("the chunk was just made");
            fold_groups(&self.kinds, chunk, selected, &mut groups, inputs)?;
            start = end;
        }
        Ok(())
    }

    /// Folds `other` (another worker's state of the same aggregates) into this one.
    pub fn merge(&mut self, mut other: DenseState) -> Result<()> {
        // Their chunks' memory comes along; a chunk of theirs folded into one of ours is freed.
        self.reservations.append(&mut other.reservations);
        let mut folded = 0;
        for (index, theirs) in other.chunks.into_iter().enumerate() {
            let Some(theirs) = theirs else { continue };
            if self.chunks.get(index).is_none_or(Option::is_none) {
                if self.chunks.len() <= index {
                    self.chunks.resize_with(index + 1, || None);
                }
                self.chunks[index] = Some(theirs);
                continue;
            }
            let kinds = self.kinds.clone();
            folded += 1;
            let mine = self.chunk_mut(index)?;
            for o in 0..CHUNK {
                if theirs.rows[o] == 0 {
                    continue;
                }
                // A slot of ours with no row yet takes their state as it is.
                let fresh = mine.rows[o] == 0;
                mine.rows[o] += theirs.rows[o];
                for (a, kind) in kinds.iter().enumerate() {
                    match (&mut mine.slots[a], &theirs.slots[a]) {
                        (Slot::Rows, Slot::Rows) => {}
                        (Slot::Count(m), Slot::Count(t)) => m[o] = if fresh { t[o] } else { m[o] + t[o] },
                        (Slot::Int { value, seen }, Slot::Int { value: tv, seen: ts }) => {
                            if fresh {
                                (value[o], seen[o]) = (tv[o], ts[o]);
                            } else if ts[o] {
                                fold_int(*kind, &mut value[o], &mut seen[o], tv[o]);
                            }
                        }
                        (Slot::Float { value, seen }, Slot::Float { value: tv, seen: ts }) => {
                            if fresh {
                                (value[o], seen[o]) = (tv[o], ts[o]);
                            } else if ts[o] {
                                fold_float(*kind, &mut value[o], &mut seen[o], tv[o]);
                            }
                        }
                        (Slot::Avg { sum, count }, Slot::Avg { sum: s, count: c }) => {
                            if fresh {
                                (sum[o], count[o]) = (s[o], c[o]);
                            } else {
                                sum[o] += s[o];
                                count[o] += c[o];
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        self.release(folded);
        Ok(())
    }

    /// Frees the chunks that hold only row ids below `row_id` (their groups were emitted).
    pub fn release_before(&mut self, row_id: u64) {
        let end = ((row_id >> CHUNK_BITS) as usize).min(self.chunks.len());
        let mut freed = 0;
        for chunk in &mut self.chunks[..end] {
            freed += usize::from(chunk.take().is_some());
        }
        self.release(freed);
    }

    /// The row ids that have at least one row, in increasing order, from `from` on, at most `limit`.
    pub fn groups_from(&self, from: u64, limit: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(limit.min(CHUNK));
        let mut c = (from >> CHUNK_BITS) as usize;
        let mut o = (from as usize) & (CHUNK - 1);
        while c < self.chunks.len() && out.len() < limit {
            if let Some(chunk) = &self.chunks[c] {
                while o < CHUNK && out.len() < limit {
                    if chunk.rows[o] > 0 {
                        out.push(((c << CHUNK_BITS) | o) as u32);
                    }
                    o += 1;
                }
            }
            if o >= CHUNK || self.chunks[c].is_none() {
                c += 1;
                o = 0;
            }
        }
        out
    }

    /// The number of chunks of [`CHUNK`] row ids the state spans (some may be empty).
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Takes chunk `c` out of the state: the row id of its slot 0, its slots that are groups (have
    /// a row), and per aggregate the values of every slot, NULL where there is no group — what
    /// [`DenseState::values`] gives for the groups, without looking them up one by one, and
    /// without copying: the chunk's vectors become the arrays. `None` for a chunk no row touched.
    pub fn take_chunk(&mut self, c: usize) -> Option<(u32, BooleanBuffer, Vec<ArrayRef>)> {
        let mut chunk = self.chunks.get_mut(c)?.take()?;
        // The arrays made of its vectors are the caller's, and soon gone (not recycled).
        let (chunk_rows, slots) = (std::mem::take(&mut chunk.rows), std::mem::take(&mut chunk.slots));
        self.release(1);
        // Vectorised scans (`collect_bool` with an index closure was a sixth of a sparse fold).
        let groups = bits_where(&chunk_rows, |r| r > 0);
        let only = |valid: BooleanBuffer| Some(NullBuffer::new(&valid & &groups));
        let groups_only = || Some(NullBuffer::new(groups.clone()));
        let mut rows = Some(chunk_rows);
        // `count(*)`: the chunk's row counts as `i64` (converted in place), one array for all.
        let mut counted: Option<ArrayRef> = None;
        let values = slots
            .into_iter()
            .map(|slot| -> ArrayRef {
                match slot {
                    Slot::Rows => std::sync::Arc::clone(counted.get_or_insert_with(|| {
                        std::sync::Arc::new(Int64Array::new(rows.take().unwrap_or_default().into(), groups_only()))
                    })),
                    Slot::Count(v) => std::sync::Arc::new(Int64Array::new(v.into(), groups_only())),
                    Slot::Int { value, seen } => {
                        let valid = bits_where(&seen, |s| s);
                        recycle(seen);
                        std::sync::Arc::new(Int64Array::new(value.into(), only(valid)))
                    }
                    Slot::Float { value, seen } => {
                        let valid = bits_where(&seen, |s| s);
                        recycle(seen);
                        std::sync::Arc::new(Float64Array::new(value.into(), only(valid)))
                    }
                    Slot::Avg { sum, count } => {
                        let valid = bits_where(&count, |n| n > 0);
                        let mut means = sum;
                        for (s, &n) in means.iter_mut().zip(&count) {
                            *s = if n == 0 { 0.0 } else { *s / n as f64 };
                        }
                        recycle(count);
                        std::sync::Arc::new(Float64Array::new(means.into(), only(valid)))
                    }
                }
            })
            .collect();
        // Row counts no `count(*)` took.
        if let Some(rows) = rows {
            recycle(rows);
        }
        Some(((c << CHUNK_BITS) as u32, groups, values))
    }

    /// The values of aggregate `a` for the groups `ids` (from [`DenseState::groups_from`]), as
    /// `Int64` (counts, integer kinds) or `Float64` (float kinds, `avg`).
    pub fn values(&self, a: usize, ids: &[u32]) -> Result<ArrayRef> {
        let kind = *self.kinds.get(a).ok_or_else(|| Error::Internal(format!("dense aggregate {a} does not exist")))?;
        let mut valid = BooleanBufferBuilder::new(ids.len());
        let slot = |id: u32| -> Result<(&Chunk, usize)> {
            let (c, o) = split(id);
            let chunk = self
                .chunks
                .get(c)
                .and_then(|c| c.as_deref())
                .ok_or_else(|| Error::Internal(format!("dense aggregate has no group for row id {id}")))?;
            Ok((chunk, o))
        };
        let array: ArrayRef = match kind {
            DenseAggKind::CountRows => {
                let mut out = Vec::with_capacity(ids.len());
                for &id in ids {
                    let (chunk, o) = slot(id)?;
                    out.push(chunk.rows[o]);
                }
                std::sync::Arc::new(Int64Array::from(out))
            }
            DenseAggKind::Count => {
                let mut out = Vec::with_capacity(ids.len());
                for &id in ids {
                    let (chunk, o) = slot(id)?;
                    if let Slot::Count(v) = &chunk.slots[a] {
                        out.push(v[o]);
                    }
                }
                std::sync::Arc::new(Int64Array::from(out))
            }
            DenseAggKind::SumInt | DenseAggKind::MinInt | DenseAggKind::MaxInt => {
                let mut out = Vec::with_capacity(ids.len());
                for &id in ids {
                    let (chunk, o) = slot(id)?;
                    if let Slot::Int { value, seen } = &chunk.slots[a] {
                        out.push(value[o]);
                        valid.append(seen[o]);
                    }
                }
                std::sync::Arc::new(Int64Array::new(out.into(), Some(NullBuffer::new(valid.finish()))))
            }
            DenseAggKind::SumFloat | DenseAggKind::MinFloat | DenseAggKind::MaxFloat => {
                let mut out = Vec::with_capacity(ids.len());
                for &id in ids {
                    let (chunk, o) = slot(id)?;
                    if let Slot::Float { value, seen } = &chunk.slots[a] {
                        out.push(value[o]);
                        valid.append(seen[o]);
                    }
                }
                std::sync::Arc::new(Float64Array::new(out.into(), Some(NullBuffer::new(valid.finish()))))
            }
            DenseAggKind::Avg => {
                let mut out = Vec::with_capacity(ids.len());
                for &id in ids {
                    let (chunk, o) = slot(id)?;
                    if let Slot::Avg { sum, count } = &chunk.slots[a] {
                        out.push(if count[o] == 0 { 0.0 } else { sum[o] / count[o] as f64 });
                        valid.append(count[o] > 0);
                    }
                }
                std::sync::Arc::new(Float64Array::new(out.into(), Some(NullBuffer::new(valid.finish()))))
            }
        };
        if array.len() != ids.len() {
            return Err(Error::Internal("dense aggregate slot of the wrong kind".into()));
        }
        Ok(array)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_made_of_recycled_buffers_starts_empty() {
        let kinds = vec![
            DenseAggKind::CountRows,
            DenseAggKind::Count,
            DenseAggKind::SumFloat,
            DenseAggKind::MinInt,
            DenseAggKind::Avg,
        ];
        // Every slot of two chunks touched, then dropped: its buffers go to the bins.
        let ids: Vec<u32> = (0..2 * CHUNK as u32).collect();
        let floats = Float64Array::from_iter_values((0..ids.len()).map(|i| i as f64));
        let ints = Int64Array::from_iter_values((0..ids.len()).map(|i| i as i64 - 5));
        let all: Vec<u32> = (0..ids.len() as u32).collect();
        let full = [
            DenseInput::None,
            DenseInput::Int(&ints),
            DenseInput::Float(&floats),
            DenseInput::Int(&ints),
            DenseInput::Float(&floats),
        ];
        for _ in 0..3 {
            let mut used = DenseState::new(kinds.clone());
            used.update(&ids, &all, &full).unwrap();
            drop(used);
            assert!(RECYCLED.load(Ordering::Relaxed) > 0, "the buffers were kept");
            // A new state over the same chunks holds only its own rows.
            let floats = Float64Array::from(vec![Some(2.5), None]);
            let ints = Int64Array::from(vec![None, Some(4)]);
            let inputs = [
                DenseInput::None,
                DenseInput::Int(&ints),
                DenseInput::Float(&floats),
                DenseInput::Int(&ints),
                DenseInput::Float(&floats),
            ];
            let mut fresh = DenseState::new(kinds.clone());
            fresh.update(&[7, 70_000], &[0, 1], &inputs).unwrap();
            let groups = fresh.groups_from(0, 10);
            assert_eq!(groups, vec![7, 70_000]);
            assert_eq!(
                recycled_test_values(&fresh, &groups),
                (vec![1, 1], vec![0, 1], vec![Some(2.5), None], vec![None, Some(4)], vec![Some(2.5), None])
            );
            // Merged: a slot only the other state has is taken as it is, one both have folded;
            // the other slots of the chunks (made of recycled buffers) are no groups.
            let mut other = DenseState::new(kinds.clone());
            other.update(&[7, 9], &[0, 1], &inputs).unwrap();
            fresh.merge(other).unwrap();
            let groups = fresh.groups_from(0, 10);
            assert_eq!(groups, vec![7, 9, 70_000]);
            assert_eq!(
                recycled_test_values(&fresh, &groups),
                (
                    vec![2, 1, 1],
                    vec![0, 1, 1],
                    vec![Some(5.0), None, None],
                    vec![None, Some(4), Some(4)],
                    vec![Some(2.5), None, None]
                )
            );
            // Taken whole: only the three groups, whatever the recycled buffers held elsewhere.
            let (first, chunk_groups, arrays) = fresh.take_chunk(0).unwrap();
            assert_eq!((first, chunk_groups.count_set_bits()), (0, 2));
            let sums = arrays[2].as_any().downcast_ref::<Float64Array>().unwrap();
            assert_eq!(sums.null_count(), CHUNK - 1);
            assert_eq!(sums.value(7), 5.0);
            let mins = arrays[3].as_any().downcast_ref::<Int64Array>().unwrap();
            assert_eq!((mins.null_count(), mins.value(9)), (CHUNK - 1, 4));
        }
    }

    /// Columns of [`a_chunk_made_of_recycled_buffers_starts_empty`]'s aggregates.
    type RecycledValues = (Vec<i64>, Vec<i64>, Vec<Option<f64>>, Vec<Option<i64>>, Vec<Option<f64>>);

    /// The values of that test's five aggregates (`count(*)`, `count(x)`, `sum`, `min`, `avg`)
    /// for `groups`, NULL as `None`.
    fn recycled_test_values(state: &DenseState, groups: &[u32]) -> RecycledValues {
        let column = |a: usize| state.values(a, groups).unwrap();
        let ints = |a: usize| column(a).as_primitive::<arrow::datatypes::Int64Type>().iter().collect::<Vec<_>>();
        let floats = |a: usize| column(a).as_primitive::<arrow::datatypes::Float64Type>().iter().collect::<Vec<_>>();
        let counts = |a: usize| ints(a).into_iter().map(|v| v.expect("a count is never NULL")).collect();
        (counts(0), counts(1), floats(2), ints(3), floats(4))
    }

    /// Per user: rows, non-NULL ints, float sum, int min, float max, avg sum, avg count, int sum.
    type Expected = (i64, i64, f64, Option<i64>, Option<f64>, f64, u64, i64);

    #[test]
    fn users_in_runs_and_scattered_fold_as_row_by_row() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let kinds = vec![
            DenseAggKind::CountRows,
            DenseAggKind::Count,
            DenseAggKind::SumFloat,
            DenseAggKind::MinInt,
            DenseAggKind::MaxFloat,
            DenseAggKind::Avg,
            DenseAggKind::SumInt,
        ];
        for round in 0..20 {
            let n = rng.random_range(1..3000usize);
            // Runs of one user (as files grouped by user give), across a chunk edge, or scattered.
            let mut ids: Vec<u32> = Vec::with_capacity(n);
            while ids.len() < n {
                let id = if round % 2 == 0 { rng.random_range(65_000..66_100) } else { rng.random_range(0..200_000) };
                let run = rng.random_range(1..6);
                ids.extend(std::iter::repeat_n(id, run.min(n - ids.len())));
            }
            if round % 4 == 0 {
                ids.sort_unstable();
            }
            let floats: Float64Array =
                (0..n).map(|_| rng.random_bool(0.9).then(|| rng.random_range(-100.0..100.0))).collect();
            let ints: Int64Array = (0..n).map(|_| rng.random_bool(0.9).then(|| rng.random_range(-50..50))).collect();
            let selected: Vec<u32> = (0..n as u32).filter(|_| rng.random_bool(0.7)).collect();
            let inputs = [
                DenseInput::None,
                DenseInput::Any(&ints),
                DenseInput::Float(&floats),
                DenseInput::Int(&ints),
                DenseInput::Float(&floats),
                DenseInput::Float(&floats),
                DenseInput::Int(&ints),
            ];
            let mut state = DenseState::new(kinds.clone());
            state.update(&ids, &selected, &inputs).unwrap();
            // Row by row, in the same order.
            let mut expected: std::collections::BTreeMap<u32, Expected> = Default::default();
            for &row in &selected {
                let row = row as usize;
                let e = expected.entry(ids[row]).or_insert((0, 0, 0.0, None, None, 0.0, 0, 0));
                e.0 += 1;
                if ints.is_valid(row) {
                    e.1 += 1;
                    let x = ints.value(row);
                    e.3 = Some(e.3.map_or(x, |m| m.min(x)));
                    e.7 = e.7.wrapping_add(x);
                }
                if floats.is_valid(row) {
                    let x = floats.value(row);
                    e.2 += x;
                    e.4 = Some(e.4.map_or(x, |m: f64| if x.total_cmp(&m).is_gt() { x } else { m }));
                    e.5 += x;
                    e.6 += 1;
                }
            }
            let groups = state.groups_from(0, usize::MAX);
            assert_eq!(groups, expected.keys().copied().collect::<Vec<_>>(), "round {round}");
            let column = |a: usize| state.values(a, &groups).unwrap();
            let rows = column(0);
            let rows = rows.as_primitive::<arrow::datatypes::Int64Type>();
            let sums = column(2);
            let sums = sums.as_primitive::<arrow::datatypes::Float64Type>();
            let mins = column(3);
            let mins = mins.as_primitive::<arrow::datatypes::Int64Type>();
            for (i, (_, e)) in expected.iter().enumerate() {
                assert_eq!(rows.value(i), e.0, "round {round}: count(*)");
                assert_eq!(
                    column(1).as_primitive::<arrow::datatypes::Int64Type>().value(i),
                    e.1,
                    "round {round}: count"
                );
                // The same additions in the same order: the same bits.
                assert_eq!(sums.is_valid(i).then(|| sums.value(i).to_bits()), (e.6 > 0).then(|| e.2.to_bits()));
                assert_eq!(mins.is_valid(i).then(|| mins.value(i)), e.3, "round {round}: min");
            }
        }
    }

    #[test]
    fn states_of_two_workers_merge_into_the_states_of_one() {
        let kinds = vec![DenseAggKind::CountRows, DenseAggKind::SumFloat, DenseAggKind::MaxInt, DenseAggKind::Avg];
        let ids = [3u32, 70_000, 3, 5];
        let floats = Float64Array::from(vec![Some(1.5), None, Some(2.0), None]);
        let ints = Int64Array::from(vec![Some(7), Some(9), Some(-1), None]);
        let inputs = [DenseInput::None, DenseInput::Float(&floats), DenseInput::Int(&ints), DenseInput::Float(&floats)];
        let mut one = DenseState::new(kinds.clone());
        one.update(&ids, &[0, 1, 2, 3], &inputs).unwrap();
        let mut a = DenseState::new(kinds.clone());
        a.update(&ids, &[0, 1], &inputs).unwrap();
        let mut b = DenseState::new(kinds);
        b.update(&ids, &[2, 3], &inputs).unwrap();
        a.merge(b).unwrap();
        for state in [&one, &a] {
            let groups = state.groups_from(0, 10);
            assert_eq!(groups, vec![3, 5, 70_000]);
            let count = state.values(0, &groups).unwrap();
            assert_eq!(count.as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec(), vec![2, 1, 1]);
            let sum = state.values(1, &groups).unwrap();
            let sum = sum.as_any().downcast_ref::<Float64Array>().unwrap();
            assert_eq!((sum.value(0), sum.is_null(1), sum.is_null(2)), (3.5, true, true));
            let max = state.values(2, &groups).unwrap();
            let max = max.as_any().downcast_ref::<Int64Array>().unwrap();
            assert_eq!((max.value(0), max.is_null(1), max.value(2)), (7, true, 9));
            let avg = state.values(3, &groups).unwrap();
            assert_eq!(avg.as_any().downcast_ref::<Float64Array>().unwrap().value(0), 1.75);
        }
        assert_eq!(one.groups_from(4, 1), vec![5]);
        assert_eq!(one.groups_from(6, 10), vec![70_000]);
    }

    #[test]
    fn a_taken_chunk_holds_every_aggregates_values_for_its_groups_and_null_elsewhere() {
        // Two `count(*)`s share the row counts; the other kinds keep their NULLs.
        let kinds = vec![
            DenseAggKind::CountRows,
            DenseAggKind::SumFloat,
            DenseAggKind::CountRows,
            DenseAggKind::MinInt,
            DenseAggKind::Avg,
            DenseAggKind::Count,
        ];
        let ids = [3u32, 70_000, 3, 5, 3];
        let floats = Float64Array::from(vec![Some(1.5), None, Some(2.0), None, Some(-1.0)]);
        let ints = Int64Array::from(vec![Some(7), Some(9), Some(-1), None, None]);
        let inputs = [
            DenseInput::None,
            DenseInput::Float(&floats),
            DenseInput::None,
            DenseInput::Int(&ints),
            DenseInput::Float(&floats),
            DenseInput::Any(&ints),
        ];
        let mut state = DenseState::new(kinds.clone());
        state.update(&ids, &[0, 1, 2, 3, 4], &inputs).unwrap();
        let groups = state.groups_from(0, 10);
        let expected: Vec<ArrayRef> = (0..kinds.len()).map(|a| state.values(a, &groups).unwrap()).collect();
        let mut taken = Vec::new();
        for c in 0..state.chunk_count() {
            let Some((first, in_chunk, values)) = state.take_chunk(c) else { continue };
            for o in in_chunk.set_indices() {
                taken.push((first + o as u32, values.iter().map(|v| v.slice(o, 1)).collect::<Vec<_>>()));
            }
            // Slots that are not groups are NULL in every aggregate.
            let outside = (0..in_chunk.len()).find(|&o| !in_chunk.value(o)).unwrap();
            assert!(values.iter().all(|v| v.is_null(outside)));
        }
        assert!(state.take_chunk(0).is_none(), "a chunk is taken once");
        assert_eq!(taken.iter().map(|(id, _)| *id).collect::<Vec<_>>(), groups);
        for (g, (_, values)) in taken.iter().enumerate() {
            for (a, v) in values.iter().enumerate() {
                assert_eq!(v.as_ref(), expected[a].slice(g, 1).as_ref(), "aggregate {a} of group {g}");
            }
        }
    }

    #[test]
    fn the_arrays_of_a_taken_chunk_give_their_buffers_back_once_nothing_holds_them() {
        let kinds = vec![DenseAggKind::SumFloat, DenseAggKind::MinInt, DenseAggKind::Count, DenseAggKind::Avg];
        let floats = Float64Array::from(vec![Some(1.5), Some(2.0)]);
        let ints = Int64Array::from(vec![Some(7), None]);
        let inputs =
            [DenseInput::Float(&floats), DenseInput::Int(&ints), DenseInput::Any(&ints), DenseInput::Float(&floats)];
        let mut state = DenseState::new(kinds);
        state.update(&[3, 9], &[0, 1], &inputs).unwrap();
        let (_, _, values) = state.take_chunk(0).unwrap();
        // sum, min and count come back; avg's means are a new vector, also given back.
        assert_eq!(recycle_arrays(values.clone()), 0, "still held by the clones");
        assert_eq!(recycle_arrays(values), 4);
    }

    #[test]
    fn released_chunks_free_only_emitted_groups() {
        let mut state = DenseState::new(vec![DenseAggKind::CountRows]);
        let ids = [1u32, 65_535, 65_536, 200_000];
        state.update(&ids, &[0, 1, 2, 3], &[DenseInput::None]).unwrap();
        state.release_before(65_536);
        assert!(state.chunks[0].is_none(), "the first chunk's groups were all emitted");
        assert_eq!(state.groups_from(0, 10), vec![65_536, 200_000]);
        // A row id inside a chunk keeps that chunk: its later groups are still to come.
        state.release_before(65_537);
        assert_eq!(state.groups_from(65_536, 10), vec![65_536, 200_000]);
        let counts = state.values(0, &[200_000]).unwrap();
        assert_eq!(counts.as_any().downcast_ref::<Int64Array>().unwrap().value(0), 1);
    }
}
