//! Sorting rows by SQL `ORDER BY` keys without comparing Arrow values row against row: every key
//! column becomes order-preserving `u64` words (integers and timestamps with the sign bit flipped,
//! floats in IEEE total order, strings by their dense rank), the rows become fixed-width records
//! of those words plus their index, and worker threads sort runs of records that are then merged.
//!
//! Strings are ranked once per column by an MSD sort on 7-byte prefixes, so a string tie-breaker
//! (`ORDER BY frequency, user_id`) costs one word, not a string comparison per step.
//! NULLs take a word of their own (first or last as asked) only in columns that have them.
//! Rows equal on every key keep their input order, so the result is deterministic.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::{SortOptions, cast};
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};

use crate::error::{Error, Result};

/// Whether [`sorted_indices`] can order by a column of this type.
pub fn supports(data_type: &DataType) -> bool {
    use DataType::*;
    matches!(
        data_type,
        Boolean
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float16
            | Float32
            | Float64
            | Date32
            | Date64
            | Timestamp(..)
            | Time32(_)
            | Time64(_)
            | Duration(_)
            | Utf8
            | LargeUtf8
            | Utf8View
            | Binary
            | LargeBinary
            | BinaryView
    )
}

/// String columns' ranks, kept with their arrays so that sorting again by the same array (a
/// tie-breaker shared by several windows) does not rank it again.
#[derive(Default)]
pub struct RankCache {
    entries: Vec<(ArrayRef, Arc<Vec<u32>>)>,
}

impl RankCache {
    /// The bytes of the ranks kept (the arrays they rank belong to their batches).
    pub fn memory_size(&self) -> usize {
        self.entries.iter().map(|(_, r)| r.len() * 4).sum()
    }

    fn ranks(&mut self, array: &ArrayRef, workers: usize) -> Result<Arc<Vec<u32>>> {
        if let Some((_, ranks)) = self.entries.iter().find(|(a, _)| Arc::ptr_eq(a, array)) {
            return Ok(Arc::clone(ranks));
        }
        let ranks = Arc::new(dense_ranks(&byte_values(array.as_ref())?, workers));
        self.entries.push((Arc::clone(array), Arc::clone(&ranks)));
        Ok(ranks)
    }
}

/// The row indices of `keys` (equal-length columns with their sort options) in sorted order,
/// using up to `workers` threads. Rows equal on every key stay in input order.
pub fn sorted_indices(keys: &[(ArrayRef, SortOptions)], workers: usize, ranks: &mut RankCache) -> Result<Vec<u32>> {
    let rows = keys.first().map_or(0, |(a, _)| a.len());
    if u32::try_from(rows).is_err() {
        return Err(Error::Internal(format!("cannot sort {rows} rows in one window (at most 4,294,967,295)")));
    }
    let mut words: Vec<Vec<u64>> = Vec::new();
    for (array, options) in keys {
        if array.len() != rows {
            return Err(Error::Internal("sort keys of different lengths".into()));
        }
        if array.null_count() > 0 {
            // Nulls first: NULL → 0, value → 1; nulls last the other way round.
            let word = (0..rows).map(|i| u64::from(array.is_null(i) != options.nulls_first)).collect();
            words.push(word);
        }
        let mut values = value_words(array, workers, ranks)?;
        if options.descending {
            for w in &mut values {
                *w = !*w;
            }
        }
        if array.null_count() > 0 {
            for (i, w) in values.iter_mut().enumerate() {
                if array.is_null(i) {
                    *w = 0;
                }
            }
        }
        words.push(values);
    }
    Ok(match words.len() {
        0 => (0..rows as u32).collect(),
        1 => sort_records::<1>(&words, rows, workers),
        2 => sort_records::<2>(&words, rows, workers),
        3 => sort_records::<3>(&words, rows, workers),
        4 => sort_records::<4>(&words, rows, workers),
        _ => {
            let mut order: Vec<u32> = (0..rows as u32).collect();
            order.sort_by(|&a, &b| {
                words.iter().map(|w| w[a as usize].cmp(&w[b as usize])).find(|o| o.is_ne()).unwrap_or_else(|| a.cmp(&b))
            });
            order
        }
    })
}

/// One order-preserving word per row (NULL rows hold anything).
fn value_words(array: &ArrayRef, workers: usize, ranks: &mut RankCache) -> Result<Vec<u64>> {
    use DataType::*;
    const SIGN: u64 = 1 << 63;
    Ok(match array.data_type() {
        Boolean => array.as_boolean().iter().map(|v| u64::from(v.unwrap_or(false))).collect(),
        UInt8 | UInt16 | UInt32 | UInt64 => {
            let wide = cast(array.as_ref(), &UInt64)?;
            wide.as_primitive::<UInt64Type>().values().to_vec()
        }
        Float16 | Float32 | Float64 => {
            let wide = cast(array.as_ref(), &Float64)?;
            wide.as_primitive::<Float64Type>()
                .values()
                .iter()
                .map(|f| {
                    // IEEE total order (what Arrow's sort uses): negative values reversed.
                    let bits = f.to_bits();
                    if bits & SIGN != 0 { !bits } else { bits | SIGN }
                })
                .collect()
        }
        Int8 | Int16 | Int32 | Int64 | Date32 | Date64 | Timestamp(..) | Time32(_) | Time64(_) | Duration(_) => {
            let wide = match array.data_type() {
                Int64 => cast(array.as_ref(), &Int64)?,
                // Dates, times and durations cast to their integer count (no unit change).
                Date32 | Time32(_) => cast(&cast(array.as_ref(), &Int32)?, &Int64)?,
                _ => cast(array.as_ref(), &Int64)?,
            };
            wide.as_primitive::<Int64Type>().values().iter().map(|v| (*v as u64) ^ SIGN).collect()
        }
        Utf8 | LargeUtf8 | Utf8View | Binary | LargeBinary | BinaryView => {
            ranks.ranks(array, workers)?.iter().map(|r| u64::from(*r)).collect()
        }
        other => return Err(Error::Internal(format!("no sort words for type {other}"))),
    })
}

/// Each row's bytes (empty for NULL).
fn byte_values(array: &dyn Array) -> Result<Vec<&[u8]>> {
    use DataType::*;
    fn of(v: Option<&[u8]>) -> &[u8] {
        v.unwrap_or(&[])
    }
    Ok(match array.data_type() {
        Utf8 => array.as_string::<i32>().iter().map(|v| of(v.map(str::as_bytes))).collect(),
        LargeUtf8 => array.as_string::<i64>().iter().map(|v| of(v.map(str::as_bytes))).collect(),
        Utf8View => array.as_string_view().iter().map(|v| of(v.map(str::as_bytes))).collect(),
        Binary => array.as_binary::<i32>().iter().map(of).collect(),
        LargeBinary => array.as_binary::<i64>().iter().map(of).collect(),
        BinaryView => array.as_binary_view().iter().map(of).collect(),
        other => return Err(Error::Internal(format!("{other} is not a string type"))),
    })
}

/// The dense rank of every value in byte order: equal values share a rank, ranks start at 0.
pub fn dense_ranks(values: &[&[u8]], workers: usize) -> Vec<u32> {
    let rows = values.len();
    let first: Vec<u64> = values.iter().map(|v| prefix_word(v, 0)).collect();
    let mut order = sort_records::<1>(std::slice::from_ref(&first), rows, workers);
    // Refining reorders only runs of equal words, so `aligned` stays the word of each position.
    let aligned: Vec<u64> = order.iter().map(|&i| first[i as usize]).collect();
    refine(&mut order, &aligned, values, 0);
    let mut ranks = vec![0u32; rows];
    let mut rank = 0u32;
    for k in 1..order.len() {
        // Different words are different values; only equal words need their bytes compared.
        if aligned[k] != aligned[k - 1] || values[order[k] as usize] != values[order[k - 1] as usize] {
            rank += 1;
        }
        ranks[order[k] as usize] = rank;
    }
    ranks
}

/// Eight bytes of `v` from `depth`, zero-padded, big-endian: a smaller word is a smaller value.
/// Values with equal words agree on those bytes; if either ends within them it is a prefix of
/// the other (the shorter sorts first), else the bytes after them decide.
fn prefix_word(v: &[u8], depth: usize) -> u64 {
    let rest = v.get(depth..).unwrap_or(&[]);
    let mut bytes = [0u8; 8];
    let n = rest.len().min(8);
    bytes[..n].copy_from_slice(&rest[..n]);
    u64::from_be_bytes(bytes)
}

/// Byte order of two values whose bytes before `depth + 8` are equal (as far as they go).
fn cmp_after(a: &[u8], b: &[u8], depth: usize) -> std::cmp::Ordering {
    let end = depth + 8;
    if a.len() < end || b.len() < end { a.len().cmp(&b.len()) } else { a[end..].cmp(&b[end..]) }
}

/// Sorts, within `order` (sorted by the words at `depth`; `words[k]` is the word of `order[k]`),
/// each run of equal words by the bytes after them.
fn refine(order: &mut [u32], words: &[u64], values: &[&[u8]], depth: usize) {
    let mut start = 0;
    while start < order.len() {
        let word = words[start];
        let mut end = start + 1;
        while end < order.len() && words[end] == word {
            end += 1;
        }
        if end - start > 1 {
            let run = &mut order[start..end];
            let long = |i: u32| values[i as usize].len() > depth + 8;
            if run.len() <= 32 || run.iter().filter(|&&i| long(i)).count() < 2 {
                run.sort_by(|&a, &b| cmp_after(values[a as usize], values[b as usize], depth).then(a.cmp(&b)));
            } else {
                // Values ending within these bytes first (by length), then the longer ones by
                // their next word.
                run.sort_by_key(|&i| (long(i), values[i as usize].len().min(depth + 9), i));
                let from = run.partition_point(|&i| !long(i));
                let tail = &mut run[from..];
                let next = depth + 8;
                let mut records: Vec<(u64, u32)> =
                    tail.iter().map(|&i| (prefix_word(values[i as usize], next), i)).collect();
                records.sort_unstable();
                let sub: Vec<u64> = records.iter().map(|r| r.0).collect();
                for (slot, r) in tail.iter_mut().zip(&records) {
                    *slot = r.1;
                }
                refine(tail, &sub, values, next);
            }
        }
        start = end;
    }
}

/// Sorts rows by `N` words each (then by index): each of up to `workers` threads builds and
/// sorts the records of a slice of the rows, and sorted runs are merged pairwise, each merge
/// split in two halves that run at once.
fn sort_records<const N: usize>(words: &[Vec<u64>], rows: usize, workers: usize) -> Vec<u32> {
    let build = |range: std::ops::Range<usize>| -> Vec<([u64; N], u32)> {
        range
            .map(|i| {
                let mut key = [0u64; N];
                for (k, w) in key.iter_mut().zip(words) {
                    *k = w[i];
                }
                (key, i as u32)
            })
            .collect()
    };
    let workers = workers.clamp(1, 8);
    if workers == 1 || rows < 1 << 16 {
        let mut records = build(0..rows);
        records.sort_unstable();
        return records.into_iter().map(|(_, i)| i).collect();
    }
    let chunk = rows.div_ceil(workers);
    let mut runs: Vec<Vec<([u64; N], u32)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..rows)
            .step_by(chunk)
            .map(|from| {
                let build = &build;
                s.spawn(move || {
                    let mut run = build(from..(from + chunk).min(rows));
                    run.sort_unstable();
                    run
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a sort worker panicked")).collect()
    });
    while runs.len() > 1 {
        let mut next = Vec::with_capacity(runs.len().div_ceil(2));
        let mut pairs = runs.into_iter();
        while let Some(a) = pairs.next() {
            match pairs.next() {
                Some(b) => next.push(merge_in_halves(&a, &b)),
                None => next.push(a),
            }
        }
        runs = next;
    }
    runs.pop().unwrap_or_default().into_iter().map(|(_, i)| i).collect()
}

/// Merges two sorted runs of distinct values: the first half of the output and the second are
/// merged on two threads, from the split point found by binary search.
fn merge_in_halves<T: Ord + Copy + Send + Sync>(a: &[T], b: &[T]) -> Vec<T> {
    let total = a.len() + b.len();
    let half = total / 2;
    // The number `i` of elements taken from `a` among the `half` smallest.
    let (mut lo, mut hi) = (half.saturating_sub(b.len()), half.min(a.len()));
    while lo < hi {
        let i = (lo + hi) / 2;
        if a[i] < b[half - i - 1] {
            lo = i + 1;
        } else {
            hi = i;
        }
    }
    let (i, j) = (lo, half - lo);
    let Some(&fill) = a.first().or(b.first()) else { return Vec::new() };
    let mut out = vec![fill; total];
    let (left, right) = out.split_at_mut(half);
    std::thread::scope(|s| {
        s.spawn(|| merge(&a[..i], &b[..j], left));
        merge(&a[i..], &b[j..], right);
    });
    out
}

/// Merges two sorted runs into `out` (their total length).
fn merge<T: Ord + Copy>(a: &[T], b: &[T], out: &mut [T]) {
    let (mut i, mut j) = (0, 0);
    for slot in out.iter_mut() {
        if j >= b.len() || (i < a.len() && a[i] <= b[j]) {
            *slot = a[i];
            i += 1;
        } else {
            *slot = b[j];
            j += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, Int64Array, StringArray, StringViewArray, TimestampMicrosecondArray};
    use arrow::compute::{SortColumn, lexsort_to_indices};

    use super::*;

    /// Arrow's own lexicographic sort, with the index as the last key, as the reference.
    fn reference(keys: &[(ArrayRef, SortOptions)]) -> Vec<u32> {
        let rows = keys[0].0.len();
        let mut columns: Vec<SortColumn> =
            keys.iter().map(|(a, o)| SortColumn { values: Arc::clone(a), options: Some(*o) }).collect();
        columns.push(SortColumn {
            values: Arc::new(arrow::array::UInt32Array::from_iter_values(0..rows as u32)),
            options: None,
        });
        lexsort_to_indices(&columns, None).unwrap().values().to_vec()
    }

    fn options(descending: bool, nulls_first: bool) -> SortOptions {
        SortOptions { descending, nulls_first }
    }

    #[test]
    fn strings_rank_by_bytes_across_prefix_lengths() {
        let words = [
            "u10",
            "u2",
            "",
            "ab",
            "ab\0",
            "abc",
            "abcdefg",
            "abcdefgh",
            "abcdefgh",
            "abcdefghij",
            "abcdefgha",
            "é",
            "e",
        ];
        let bytes: Vec<&[u8]> = words.iter().map(|s| s.as_bytes()).collect();
        let ranks = dense_ranks(&bytes, 2);
        for i in 0..words.len() {
            for j in 0..words.len() {
                assert_eq!(ranks[i].cmp(&ranks[j]), words[i].cmp(words[j]), "{:?} vs {:?}", words[i], words[j]);
            }
        }
    }

    #[test]
    fn runs_of_equal_words_mix_short_long_and_zero_bytes() {
        // Over 32 values share their first eight bytes (zero-padded), so the run is split into
        // values ending within them and longer ones ranked by their next word.
        let mut words: Vec<Vec<u8>> = Vec::new();
        for i in 0..40u8 {
            words.push([b"abcdefgh".as_slice(), &[i % 5, b'x', i]].concat());
            words.push([b"abcdefgh".as_slice(), &[b'q'; 9], &[i % 3]].concat());
        }
        for extra in [&b"abc"[..], b"abc\0", b"abc\0\0", b"abcdefgh", b"abcdefgh\0", b"abcdefg", b"abcdefgh"] {
            words.push(extra.to_vec());
        }
        let bytes: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
        let ranks = dense_ranks(&bytes, 2);
        for i in 0..words.len() {
            for j in 0..words.len() {
                assert_eq!(ranks[i].cmp(&ranks[j]), words[i].cmp(&words[j]), "{:?} vs {:?}", words[i], words[j]);
            }
        }
    }

    #[test]
    fn halves_merge_from_any_split() {
        for (a, b) in [(0..10, 10..10), (0..0, 0..7), (0..100, 50..60), (3..9, 0..200)] {
            let a: Vec<u32> = a.map(|v| v * 2).collect();
            let b: Vec<u32> = b.map(|v| v * 2 + 1).collect();
            let mut expected = [a.clone(), b.clone()].concat();
            expected.sort();
            assert_eq!(merge_in_halves(&a, &b), expected);
        }
    }

    #[test]
    fn long_shared_prefixes_take_the_recursive_path() {
        // More than 32 values share 14 bytes, so runs are sorted by the next prefix word.
        let words: Vec<String> = (0..500).map(|i| format!("customer-00000{}", (i * 7919) % 1000)).collect();
        let bytes: Vec<&[u8]> = words.iter().map(|s| s.as_bytes()).collect();
        let ranks = dense_ranks(&bytes, 2);
        let mut sorted = words.clone();
        sorted.sort();
        sorted.dedup();
        for (w, r) in words.iter().zip(&ranks) {
            assert_eq!(sorted.binary_search(w).unwrap(), *r as usize, "{w}");
        }
    }

    #[test]
    fn matches_arrow_lexsort_on_mixed_keys_with_nulls_and_both_directions() {
        let rows = 200_000;
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 33
        };
        let floats: Float64Array = (0..rows)
            .map(|_| match next() % 50 {
                0 => None,
                1 => Some(f64::NAN),
                2 => Some(-0.0),
                3 => Some(f64::NEG_INFINITY),
                v => Some((v as f64 - 25.0) / 4.0),
            })
            .collect();
        let ints: Int64Array = (0..rows).map(|_| Some(next() as i64 % 7 - 3)).collect();
        let times = TimestampMicrosecondArray::from_iter((0..rows).map(|_| {
            let v = next();
            (v % 9 != 0).then_some(v as i64 % 1000 - 500)
        }));
        let strings: StringArray =
            (0..rows).map(|_| (next() % 13 != 0).then(|| format!("u{}", next() % 5000))).collect();
        let views = StringViewArray::from_iter(strings.iter());
        for (d1, n1, d2, n2) in [(false, false, false, false), (true, true, false, true), (true, false, true, true)] {
            let keys: Vec<(ArrayRef, SortOptions)> = vec![
                (Arc::new(floats.clone()), options(d1, n1)),
                (Arc::new(ints.clone()), options(d2, n2)),
                (Arc::new(times.clone()), options(d1, n2)),
                (Arc::new(views.clone()), options(d2, n1)),
            ];
            assert_eq!(sorted_indices(&keys, 2, &mut RankCache::default()).unwrap(), reference(&keys));
            let two = vec![keys[0].clone(), (Arc::new(strings.clone()) as ArrayRef, options(d1, n1))];
            assert_eq!(sorted_indices(&two, 3, &mut RankCache::default()).unwrap(), reference(&two));
        }
    }
}
