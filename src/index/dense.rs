//! Bitmaps as plain words, for the bit-sliced range comparison over many users. A comparison
//! walks every bit slice of a column; done with roaring operations it allocates and converts
//! containers at every slice (over 10 M users, ~90 ms for a BETWEEN on three columns). Here a
//! column's slices are plain words, one bit per row id, laid out block by block
//! ([`SlicedColumn`]), and each word of the answer is folded through every slice in registers.
//! Words come straight from roaring's portable serialization (the index file's bytes: bitmap
//! containers are copied, arrays and runs set bit by bit); the answer goes back to roaring's
//! portable layout ([`bitmap_of`]).

use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::index::RangeOp;

/// Row ids per roaring container (the low 16 bits), and the words that hold them.
const CONTAINER_WORDS: usize = 1024;
/// A container with more values than this is a bitmap container (when not run-encoded).
const ARRAY_LIMIT: usize = 4096;
const COOKIE_NO_RUNS: u32 = 12346;
const COOKIE_RUNS: u16 = 12347;

/// Words enough for row ids `0..universe`.
pub fn words_for(universe: u32) -> usize {
    (universe as usize).div_ceil(64)
}

/// The words of a bitmap serialized in roaring's portable format, `words` long (ids beyond are
/// an error: the index holds row ids of live users only).
pub fn words_from_portable(bytes: &[u8], words: usize) -> Result<Vec<u64>> {
    let bad = |what: &str| Error::Internal(format!("a bitmap of the index is not portable roaring: {what}"));
    let mut reader = Reader { bytes, at: 0 };
    let first = reader.u32().ok_or_else(|| bad("no cookie"))?;
    let (count, runs): (usize, Option<&[u8]>) = if first == COOKIE_NO_RUNS {
        (reader.u32().ok_or_else(|| bad("no container count"))? as usize, None)
    } else if first & 0xFFFF == u32::from(COOKIE_RUNS) {
        let count = (first >> 16) as usize + 1;
        (count, Some(reader.take(count.div_ceil(8)).ok_or_else(|| bad("no run flags"))?))
    } else {
        return Err(bad("an unknown cookie"));
    };
    let mut descriptions = Vec::with_capacity(count);
    for _ in 0..count {
        let key = reader.u16().ok_or_else(|| bad("a missing description"))?;
        let cardinality = usize::from(reader.u16().ok_or_else(|| bad("a missing description"))?) + 1;
        descriptions.push((key, cardinality));
    }
    if runs.is_none() || count >= 4 {
        reader.take(4 * count).ok_or_else(|| bad("missing offsets"))?;
    }
    let mut out = vec![0u64; words];
    for (i, &(key, cardinality)) in descriptions.iter().enumerate() {
        let base = usize::from(key) * CONTAINER_WORDS;
        let is_run = runs.is_some_and(|flags| flags[i / 8] & (1 << (i % 8)) != 0);
        let mut set = |low: usize| -> Result<()> {
            let word = base + low / 64;
            let slot = out.get_mut(word).ok_or_else(|| bad("a row id beyond the users"))?;
            *slot |= 1 << (low % 64);
            Ok(())
        };
        if is_run {
            let n = usize::from(reader.u16().ok_or_else(|| bad("a missing run count"))?);
            for _ in 0..n {
                let start = usize::from(reader.u16().ok_or_else(|| bad("a missing run"))?);
                let len = usize::from(reader.u16().ok_or_else(|| bad("a missing run"))?);
                set_range(&mut out, base + start / 64, start % 64, len + 1, &bad)?;
            }
        } else if cardinality > ARRAY_LIMIT {
            let block = reader.take(8 * CONTAINER_WORDS).ok_or_else(|| bad("a short bitmap container"))?;
            for (w, chunk) in block.chunks_exact(8).enumerate() {
                let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
                if word != 0 {
                    *out.get_mut(base + w).ok_or_else(|| bad("a row id beyond the users"))? |= word;
                }
            }
        } else {
            for _ in 0..cardinality {
                set(usize::from(reader.u16().ok_or_else(|| bad("a short array container"))?))?;
            }
        }
    }
    Ok(out)
}

/// Sets `len` bits starting at bit `bit` of word `word`.
fn set_range(
    out: &mut [u64],
    mut word: usize,
    mut bit: usize,
    mut len: usize,
    bad: &dyn Fn(&str) -> Error,
) -> Result<()> {
    while len > 0 {
        let n = (64 - bit).min(len);
        let mask = if n == 64 { u64::MAX } else { ((1u64 << n) - 1) << bit };
        *out.get_mut(word).ok_or_else(|| bad("a row id beyond the users"))? |= mask;
        len -= n;
        word += 1;
        bit = 0;
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

/// A set of row ids as one bit each: a membership test is a shift and a mask, where a roaring
/// lookup searches containers (what a pass testing every row of a large file spends its time on).
pub struct DenseSet {
    words: Vec<u64>,
}

impl DenseSet {
    pub fn of(bitmap: &RoaringBitmap) -> Result<DenseSet> {
        let words = bitmap.max().map_or(0, |m| words_for(m.saturating_add(1)).max(1));
        Ok(DenseSet { words: words_of(bitmap, words)? })
    }

    pub fn contains(&self, id: u32) -> bool {
        self.words.get(id as usize / 64).is_some_and(|w| w & (1 << (id % 64)) != 0)
    }
}

/// The words of `bitmap`, `words` long.
pub fn words_of(bitmap: &RoaringBitmap, words: usize) -> Result<Vec<u64>> {
    let mut bytes = Vec::with_capacity(bitmap.serialized_size());
    bitmap.serialize_into(&mut bytes).map_err(|e| Error::Internal(format!("cannot serialize a bitmap: {e}")))?;
    words_from_portable(&bytes, words)
}

/// The bitmap of `words`: each run of 1024 words (one roaring container) becomes an array of its
/// row ids or a copy of the words, whichever roaring would hold, written in the portable format
/// and read back in one pass (roaring's own `from_lsb0_bytes` counts and converts byte by byte,
/// ~1.3 ms for 10 M users).
pub fn bitmap_of(words: &[u64]) -> RoaringBitmap {
    let containers: Vec<(u16, usize, &[u64])> = words
        .chunks(CONTAINER_WORDS)
        .enumerate()
        .filter_map(|(key, chunk)| {
            let cardinality = chunk.iter().map(|w| w.count_ones() as usize).sum::<usize>();
            // Ids beyond 2^32 do not exist (a row id is a u32), so the key fits 16 bits.
            (cardinality > 0).then_some((key as u16, cardinality, chunk))
        })
        .collect();
    let size = |cardinality: usize| if cardinality > ARRAY_LIMIT { 8 * CONTAINER_WORDS } else { 2 * cardinality };
    let header = 8 + 8 * containers.len();
    let total = header + containers.iter().map(|(_, c, _)| size(*c)).sum::<usize>();
    let mut bytes = vec![0u8; total];
    let (head, mut payload) = bytes.split_at_mut(header);
    let mut head = head.iter_mut();
    let mut put = |field: &[u8]| field.iter().zip(&mut head).for_each(|(b, slot)| *slot = *b);
    put(&COOKIE_NO_RUNS.to_le_bytes());
    put(&(containers.len() as u32).to_le_bytes());
    for (key, cardinality, _) in &containers {
        put(&key.to_le_bytes());
        put(&((cardinality - 1) as u16).to_le_bytes());
    }
    let mut offset = header;
    for (_, cardinality, _) in &containers {
        put(&(offset as u32).to_le_bytes());
        offset += size(*cardinality);
    }
    // The containers' bytes are written by the cores, each a run of whole containers into its
    // own part of the buffer.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    if workers == 1 || containers.len() < PARALLEL_CONTAINERS {
        write_containers(&containers, payload);
        return from_portable(&bytes, words);
    }
    let per_worker = containers.len().div_ceil(workers);
    std::thread::scope(|scope| {
        for part in containers.chunks(per_worker) {
            let length = part.iter().map(|(_, c, _)| size(*c)).sum::<usize>();
            let (mine, rest) = std::mem::take(&mut payload).split_at_mut(length);
            payload = rest;
            scope.spawn(move || write_containers(part, mine));
        }
    });
    from_portable(&bytes, words)
}

/// Containers below which [`bitmap_of`] writes them on the calling thread.
const PARALLEL_CONTAINERS: usize = 16;

/// The bitmap [`bitmap_of`] wrote as `bytes` for `words`.
fn from_portable(bytes: &[u8], words: &[u64]) -> RoaringBitmap {
    match RoaringBitmap::deserialize_unchecked_from(bytes) {
        Ok(bitmap) => bitmap,
        // The bytes are well formed by construction; should they not be, roaring's own (slower)
        // conversion gives the same set.
        Err(_) => words_to_bitmap_slowly(words),
    }
}

/// Writes `containers` (key, cardinality, words) into `out` in roaring's portable layout: an
/// array container's ids as `u16`s, a bitmap container's 1024 words.
fn write_containers(containers: &[(u16, usize, &[u64])], out: &mut [u8]) {
    let mut ids = Vec::new();
    let mut at = 0;
    for (_, cardinality, chunk) in containers {
        if *cardinality > ARRAY_LIMIT {
            for (slot, word) in out[at..].chunks_exact_mut(8).zip(*chunk) {
                slot.copy_from_slice(&word.to_le_bytes());
            }
            // A last, partial container's missing words stay zero.
            at += 8 * CONTAINER_WORDS;
        } else {
            ids_of(chunk, *cardinality, &mut ids);
            for (slot, id) in out[at..].chunks_exact_mut(2).zip(&ids) {
                slot.copy_from_slice(&id.to_le_bytes());
            }
            at += 2 * cardinality;
        }
    }
}

/// The low 16 bits of the row ids set in `chunk` (one container's words, `cardinality` of
/// them), in order. Four ids of every word are written whether it has them or not (the next
/// word's overwrite the extra ones), so that the loop branches only on words with more than four:
/// at the densities that make array containers a branch per set bit mispredicts on most words.
fn ids_of(chunk: &[u64], cardinality: usize, ids: &mut Vec<u16>) {
    const UNCONDITIONAL: usize = 4;
    ids.clear();
    ids.resize(cardinality + UNCONDITIONAL, 0);
    let mut at = 0;
    for (i, &word) in chunk.iter().enumerate() {
        // A container has 1024 words: `i * 64` fits 16 bits.
        let base = (i * 64) as u16;
        let count = word.count_ones() as usize;
        let mut rest = word;
        for k in 0..UNCONDITIONAL {
            ids[at + k] = base.wrapping_add(rest.trailing_zeros() as u16);
            rest &= rest.wrapping_sub(1);
        }
        let mut k = UNCONDITIONAL;
        while rest != 0 {
            ids[at + k] = base + rest.trailing_zeros() as u16;
            rest &= rest - 1;
            k += 1;
        }
        at += count;
    }
    ids.truncate(cardinality);
}

/// The bitmap of `words` through roaring's byte-wise conversion.
fn words_to_bitmap_slowly(words: &[u64]) -> RoaringBitmap {
    let mut bytes = Vec::with_capacity(8 * words.len());
    for w in words {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    RoaringBitmap::from_lsb0_bytes(0, &bytes)
}

/// Words per block of [`keep_compared_columns`]: the unit the workers share and the columns'
/// slices are laid out in ([`SlicedColumn`]).
const BLOCK_WORDS: usize = 1024;

/// A column's bit slices laid out block by block ([`interleave`]): block `b` holds the words of
/// rows `b * BLOCK_WORDS * 64..` of slice 0, then of slice 1, and so on, so that comparing a
/// block reads one run of memory, its slices side by side, instead of pieces of slices apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlicedColumn {
    bits: usize,
    words: Vec<u64>,
}

impl SlicedColumn {
    /// The words of every slice for block `block` (`bits * BLOCK_WORDS`, the last block padded
    /// with zeros); empty past the end.
    fn block(&self, block: usize) -> &[u64] {
        let size = self.bits * BLOCK_WORDS;
        self.words.get(block * size..(block + 1) * size).unwrap_or(&[])
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        8 * self.words.len() as u64
    }
}

/// The slices of one column (`slices[i]` holds bit `i`, each `words` long) in block order.
pub fn interleave(slices: &[Vec<u64>], words: usize) -> SlicedColumn {
    let bits = slices.len();
    let blocks = words.div_ceil(BLOCK_WORDS);
    let mut out = vec![0u64; blocks * bits * BLOCK_WORDS];
    for (i, slice) in slices.iter().enumerate() {
        for (b, piece) in slice.chunks(BLOCK_WORDS).enumerate().take(blocks) {
            let at = (b * bits + i) * BLOCK_WORDS;
            out[at..at + piece.len()].copy_from_slice(piece);
        }
    }
    SlicedColumn { bits, words: out }
}

/// Most comparisons of one column folded in one pass ([`keep_compared_columns`] folds more in
/// turns of this many).
pub const MAX_FUSED: usize = 4;

/// One column of a conjunction of range comparisons: its NULLs (never kept), its bit slices and
/// the comparisons on it (`terms` empty: only the NULLs are removed).
pub struct ColumnTerms<'a> {
    pub nulls: &'a [u64],
    /// `None` only without terms.
    pub slices: Option<&'a SlicedColumn>,
    pub terms: &'a [(RangeOp, u64)],
}

/// Keeps in `live` only the rows whose values compare as every column's terms say (`BETWEEN` is
/// two terms): every slice word is read once for up to [`MAX_FUSED`] terms; the columns' work on
/// one block of words is done before the next block (the block stays in the L1 cache), and the
/// blocks are shared among the cores, one spawn of the workers for all the columns. A column's
/// values are stored as `value - base` in its bit slices (`slices[i]` holds bit `i`); each
/// constant is already less the base, `0 <= c < 2^slices`.
pub fn keep_compared_columns(columns: &[ColumnTerms<'_>], live: &mut [u64]) {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let per_worker = live.len().div_ceil(workers).div_ceil(BLOCK_WORDS).max(1) * BLOCK_WORDS;
    std::thread::scope(|scope| {
        for (part, live) in live.chunks_mut(per_worker).enumerate() {
            let first = part * per_worker;
            scope.spawn(move || {
                for (block, live) in live.chunks_mut(BLOCK_WORDS).enumerate() {
                    let start = first + block * BLOCK_WORDS;
                    for column in columns {
                        let nulls = column.nulls.get(start..start + live.len()).unwrap_or(&[]);
                        for (word, null) in live.iter_mut().zip(nulls) {
                            *word &= !null;
                        }
                        let Some(slices) = column.slices else { continue };
                        let words = slices.block(start / BLOCK_WORDS);
                        keep_block(words, slices.bits, live, column.terms);
                    }
                }
            });
        }
    });
}

/// Keeps in `live` (one block's words) the rows meeting every one of `terms` (at most
/// [`MAX_FUSED`]); `block` holds the block's words of the `bits` slices ([`SlicedColumn`]). The
/// slices are read from the lowest bit up, one step per word and term: with `r` the rows whose
/// low bits so far compare `>=` (`>`) the constant's low bits, a slice where the constant has a 1
/// keeps `r & s` (the row's bit must be 1 too), one where it has a 0 gives `r | s` (a 1 there
/// makes the row greater whatever the lower bits said). Below every bit `r` starts all ones for
/// `>=` and none for `>`; `<` and `<=` are the complements, and `=` is the rows agreeing with the
/// constant at every bit.
fn keep_block(block: &[u64], bits: usize, live: &mut [u64], terms: &[(RangeOp, u64)]) {
    match terms.len() {
        1 => keep_block_of::<1>(block, bits, live, terms),
        2 => keep_block_of::<2>(block, bits, live, terms),
        3 => keep_block_of::<3>(block, bits, live, terms),
        4 => keep_block_of::<4>(block, bits, live, terms),
        _ => {
            for terms in terms.chunks(MAX_FUSED) {
                keep_block(block, bits, live, terms);
            }
        }
    }
}

/// Words folded side by side: a term's `r` for them stays in registers through every slice.
const LANES: usize = 4;

/// [`keep_block`] for `T` terms. Each step is `r = (r & (s ^ flip)) | (s & set)`: `r & s` for a
/// 1 bit (`flip` and `set` none), `r | s` for a 0 bit (both all ones), `r & !s` for a 0 bit of
/// `=` (`flip` all ones). Words go through every slice at once, `LANES` at a time, so each slice
/// word is read once and no state goes back to memory between slices.
fn keep_block_of<const T: usize>(block: &[u64], bits: usize, live: &mut [u64], terms: &[(RangeOp, u64)]) {
    static ZEROS: [u64; BLOCK_WORDS] = [0; BLOCK_WORDS];
    let n = live.len();
    if terms.len() != T || live.iter().all(|w| *w == 0) {
        return;
    }
    // Low slices where every term's step leaves its start unchanged are not read: `r |= s` on
    // all ones (`>=`, `<` at the constant's trailing zeros), `r &= s` on none (`>`, `<=` at its
    // trailing ones).
    let unchanged = |(op, c): &(RangeOp, u64)| match op {
        RangeOp::GtEq | RangeOp::Lt => c.trailing_zeros() as usize,
        RangeOp::Gt | RangeOp::LtEq => (!c).trailing_zeros() as usize,
        RangeOp::Eq => 0,
    };
    let from = terms.iter().map(unchanged).min().unwrap_or(0).min(bits);
    let mut start = [0u64; T];
    let mut invert = [0u64; T];
    for (t, (op, _)) in terms.iter().enumerate() {
        start[t] = if matches!(op, RangeOp::Gt | RangeOp::LtEq) { 0 } else { u64::MAX };
        invert[t] = if matches!(op, RangeOp::Lt | RangeOp::LtEq) { u64::MAX } else { 0 };
    }
    // Per slice read: its words (zeros for a block beyond the slices; none is written so) and
    // each term's (flip, set).
    let steps: Vec<Step<'_, T>> = (from..bits)
        .map(|i| {
            let s = block.get(i * BLOCK_WORDS..i * BLOCK_WORDS + n).unwrap_or(&ZEROS[..n]);
            let mut masks = [(0u64, 0u64); T];
            for (t, (op, c)) in terms.iter().enumerate() {
                masks[t] = match (c >> i & 1 == 1, op) {
                    (true, _) => (0, 0),
                    (false, RangeOp::Eq) => (u64::MAX, 0),
                    (false, _) => (u64::MAX, u64::MAX),
                };
            }
            (s, masks)
        })
        .collect();
    let whole = n / LANES * LANES;
    for at in (0..whole).step_by(LANES) {
        fold_words::<T, LANES>(&steps, at, &start, &invert, &mut live[at..at + LANES]);
    }
    for at in whole..n {
        fold_words::<T, 1>(&steps, at, &start, &invert, &mut live[at..at + 1]);
    }
}

/// One slice of a block read by [`keep_block_of`]: its words, and each term's `(flip, set)`.
type Step<'a, const T: usize> = (&'a [u64], [(u64, u64); T]);

/// Words `at..at + L` of every step of [`keep_block_of`] folded into `live` (`L` long).
#[inline(always)]
fn fold_words<const T: usize, const L: usize>(
    steps: &[Step<'_, T>],
    at: usize,
    start: &[u64; T],
    invert: &[u64; T],
    live: &mut [u64],
) {
    let mut r = [[0u64; L]; T];
    for t in 0..T {
        r[t] = [start[t]; L];
    }
    for (s, masks) in steps {
        // Every step's words are the block's (`n` long): the zeros are never taken.
        let s: [u64; L] = s.get(at..at + L).and_then(|s| s.try_into().ok()).unwrap_or([0; L]);
        for t in 0..T {
            let (flip, set) = masks[t];
            for l in 0..L {
                r[t][l] = (r[t][l] & (s[l] ^ flip)) | (s[l] & set);
            }
        }
    }
    for (l, word) in live.iter_mut().enumerate().take(L) {
        for t in 0..T {
            *word &= r[t][l] ^ invert[t];
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Bitmaps with array, bitmap and run containers, with and without runs anywhere.
    fn samples() -> Vec<RoaringBitmap> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut out = vec![RoaringBitmap::new()];
        let mut sparse = RoaringBitmap::new();
        let mut dense = RoaringBitmap::new();
        for _ in 0..3000 {
            sparse.insert(rng.random_range(0..400_000));
        }
        for id in 0..400_000u32 {
            if rng.random_bool(0.4) {
                dense.insert(id);
            }
        }
        let mut runs = dense.clone();
        runs.insert_range(70_000..200_003);
        runs.insert_range(5..9);
        runs.insert(399_999);
        runs.optimize();
        let mut few_runs = RoaringBitmap::new();
        few_runs.insert_range(10..100_000);
        few_runs.optimize();
        out.extend([sparse, dense, runs, few_runs]);
        out
    }

    #[test]
    fn a_dense_set_holds_exactly_the_bitmap() {
        let bitmap: RoaringBitmap = [0u32, 63, 64, 70_000, 1 << 20].into_iter().chain(200..5_000).collect();
        let set = DenseSet::of(&bitmap).unwrap();
        for id in (0..(1 << 20) + 100).chain([u32::MAX]) {
            assert_eq!(set.contains(id), bitmap.contains(id), "{id}");
        }
        assert!(!DenseSet::of(&RoaringBitmap::new()).unwrap().contains(0));
    }

    #[test]
    fn words_hold_exactly_the_bitmaps_members() {
        for bitmap in samples() {
            let words = words_of(&bitmap, words_for(400_000)).unwrap();
            let back: Vec<u32> = (0..400_000u32).filter(|&id| words[id as usize / 64] >> (id % 64) & 1 == 1).collect();
            assert_eq!(back, bitmap.iter().collect::<Vec<_>>());
            assert_eq!(bitmap_of(&words), bitmap);
        }
        // Containers at roaring's array limit, one over it, and a partial last container.
        let mut words = vec![0u64; 2 * CONTAINER_WORDS + 3];
        words[..64].fill(u64::MAX);
        words[CONTAINER_WORDS..CONTAINER_WORDS + 64].fill(u64::MAX);
        words[CONTAINER_WORDS + 100] = 1;
        words[2 * CONTAINER_WORDS + 2] = 1 << 63;
        let expected: RoaringBitmap =
            (0..words.len() as u32 * 64).filter(|&id| words[id as usize / 64] >> (id % 64) & 1 == 1).collect();
        assert_eq!(expected.len(), 4096 + 4097 + 1);
        assert_eq!(bitmap_of(&words), expected);
        assert_eq!(words_to_bitmap_slowly(&words), expected);
        assert_eq!(bitmap_of(&[]), RoaringBitmap::new());
        assert!(words_of(&RoaringBitmap::from_iter([500_000u32]), words_for(400_000)).is_err());
        assert!(words_from_portable(&[1, 2, 3], 10).is_err());
    }

    #[test]
    fn many_containers_convert_in_parts_as_in_one() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        // More containers than one thread writes, of every density, some empty, the last partial.
        let words: Vec<u64> = (0..(3 * PARALLEL_CONTAINERS + 1) * CONTAINER_WORDS - 500)
            .map(|w| match (w / CONTAINER_WORDS) % 4 {
                0 => 0,
                1 => u64::from(rng.random_bool(0.05)) << rng.random_range(0..64),
                2 => rng.random::<u64>() & rng.random::<u64>() & rng.random::<u64>(),
                _ => rng.random(),
            })
            .collect();
        let expected = words_to_bitmap_slowly(&words);
        assert!(expected.len() > 100_000);
        assert_eq!(bitmap_of(&words), expected);
    }

    /// Random values of `bits` bits (a tenth NULL) for `rows` rows, their bit slices, and the
    /// rows that have a value.
    fn sliced_values(
        rng: &mut rand::rngs::StdRng,
        rows: usize,
        bits: usize,
    ) -> (Vec<Option<u64>>, SlicedColumn, Vec<u64>) {
        let values: Vec<Option<u64>> = (0..rows)
            .map(|_| if rng.random_bool(0.1) { None } else { Some(rng.random_range(0..1u64 << bits)) })
            .collect();
        let words = rows.div_ceil(64);
        let mut slices = vec![vec![0u64; words]; bits];
        let mut live = vec![0u64; words];
        for (row, v) in values.iter().enumerate() {
            if let Some(v) = v {
                live[row / 64] |= 1 << (row % 64);
                for (i, slice) in slices.iter_mut().enumerate() {
                    if v >> i & 1 == 1 {
                        slice[row / 64] |= 1 << (row % 64);
                    }
                }
            }
        }
        (values, interleave(&slices, words), live)
    }

    #[test]
    fn columns_remove_their_nulls_and_meet_every_term_block_by_block() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let rows = 50_003usize;
        let (a_values, a_slices, a_live) = sliced_values(&mut rng, rows, 6);
        let (b_values, b_slices, b_live) = sliced_values(&mut rng, rows, 9);
        // NULLs as the index stores them: the rows with no value.
        let nulls = |live: &[u64]| -> Vec<u64> { live.iter().map(|w| !w).collect() };
        let (a_nulls, b_nulls) = (nulls(&a_live), nulls(&b_live));
        // A NULL reads as 0 in the slices, which `<= 40` would keep: only the NULL words remove it.
        let a_terms = [(RangeOp::LtEq, 40u64)];
        // More terms than one pass folds: taken in turns.
        let b_terms =
            [(RangeOp::Gt, 3u64), (RangeOp::LtEq, 400), (RangeOp::Gt, 5), (RangeOp::Lt, 500), (RangeOp::GtEq, 7)];
        let columns = [
            ColumnTerms { nulls: &a_nulls, slices: Some(&a_slices), terms: &a_terms },
            ColumnTerms { nulls: &b_nulls, slices: Some(&b_slices), terms: &b_terms },
        ];
        let mut got = vec![u64::MAX; rows.div_ceil(64)];
        keep_compared_columns(&columns, &mut got);
        for row in 0..rows {
            let expected =
                a_values[row].is_some_and(|v| v <= 40) && b_values[row].is_some_and(|v| (7..=400).contains(&v));
            assert_eq!(got[row / 64] >> (row % 64) & 1 == 1, expected, "row {row}");
        }
    }

    #[test]
    fn fused_comparisons_keep_the_rows_meeting_them_all() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let rows = 70_001usize;
        let bits = 7;
        let (values, slices, live) = sliced_values(&mut rng, rows, bits);
        let ops = [RangeOp::Lt, RangeOp::LtEq, RangeOp::Eq, RangeOp::GtEq, RangeOp::Gt];
        // Constants with long runs of trailing zeros or ones (whose low slices are not read) too.
        let constant = |rng: &mut rand::rngs::StdRng| match rng.random_range(0..4) {
            0 => 1u64 << rng.random_range(0..bits),
            1 => (1u64 << rng.random_range(0..=bits)) - 1,
            _ => rng.random_range(0..1u64 << bits),
        };
        for _ in 0..200 {
            let terms: Vec<(RangeOp, u64)> = (0..rng.random_range(1..=MAX_FUSED))
                .map(|_| (ops[rng.random_range(0..ops.len())], constant(&mut rng)))
                .collect();
            let mut got = live.clone();
            let column = ColumnTerms { nulls: &[], slices: Some(&slices), terms: &terms };
            keep_compared_columns(&[column], &mut got);
            for (row, v) in values.iter().enumerate() {
                let expected = v.is_some_and(|v| {
                    terms.iter().all(|(op, c)| match op {
                        RangeOp::Lt => v < *c,
                        RangeOp::LtEq => v <= *c,
                        RangeOp::Eq => v == *c,
                        RangeOp::GtEq => v >= *c,
                        RangeOp::Gt => v > *c,
                    })
                });
                assert_eq!(got[row / 64] >> (row % 64) & 1 == 1, expected, "row {row} {terms:?}");
            }
        }
    }

    #[test]
    fn sliced_comparison_is_the_comparison_of_the_values() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        // Several blocks and workers, the last block partial.
        let rows = 100_003usize;
        let bits = 6;
        let (values, slices, live) = sliced_values(&mut rng, rows, bits);
        for c in [0u64, 1, 17, 32, 62, 63] {
            for op in [RangeOp::Lt, RangeOp::LtEq, RangeOp::Eq, RangeOp::GtEq, RangeOp::Gt] {
                let mut got = live.clone();
                let terms = [(op, c)];
                keep_compared_columns(&[ColumnTerms { nulls: &[], slices: Some(&slices), terms: &terms }], &mut got);
                for (row, v) in values.iter().enumerate() {
                    let expected = v.is_some_and(|v| match op {
                        RangeOp::Lt => v < c,
                        RangeOp::LtEq => v <= c,
                        RangeOp::Eq => v == c,
                        RangeOp::GtEq => v >= c,
                        RangeOp::Gt => v > c,
                    });
                    assert_eq!(got[row / 64] >> (row % 64) & 1 == 1, expected, "row {row} {op} {c}");
                }
            }
        }
    }
}
