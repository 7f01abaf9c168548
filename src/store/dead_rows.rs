//! Dead rows of fact files: the rows of forgotten users that a forget marks instead of writing
//! their files again ([`crate::store::manifest::DeadRows`], a bitmap of positions in the file).
//! This module owns reading those marks (verified and kept per process, the files never
//! change) and turning them into what each reader skips with: a Parquet row selection over the
//! row groups it reads, or a per-batch mask of the live rows of a plain copy.
//!
//! Positions, not user row ids: a file kept as loaded has its row ids in a companion file only,
//! and the Parquet scans that DataFusion runs see no row ids at all; the plain copy and the day
//! times hold the file's rows in the same positions.

use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, BooleanArray, BooleanBufferBuilder, RecordBatch, UInt16Array, UInt32Array};
use arrow::compute::filter_record_batch;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use roaring::RoaringBitmap;

use crate::error::{Error, IoContext, Result};
use crate::store::StoreWriter;
use crate::store::catalog::{read_set, write_set};
use crate::store::layout;
use crate::store::manifest::{DataFile, DeadRows};

/// Marks read by this process, by path, size and modification time (a marks file is never
/// written again under its name; one changed on disk since is read, and verified, again).
static READ: Mutex<Vec<(ReadKey, Arc<RoaringBitmap>)>> = Mutex::new(Vec::new());
type ReadKey = (std::path::PathBuf, u64, Option<std::time::SystemTime>);
/// How many marks files stay read.
const KEPT: usize = 512;

/// The dead positions of `file` (`None`: it has none), verified against its row count.
pub fn of(root: &Path, file: &DataFile) -> Result<Option<Arc<RoaringBitmap>>> {
    let Some(dead) = &file.dead else { return Ok(None) };
    let path = layout::resolve(root, &dead.set.path);
    let meta = std::fs::metadata(&path).io_context("stat", &path)?;
    let key: ReadKey = (path, meta.len(), meta.modified().ok());
    let lock = || READ.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, set)) = lock().iter().find(|(k, _)| *k == key) {
        return Ok(Some(Arc::clone(set)));
    }
    let set = Arc::new(read(root, file, dead)?);
    let mut read = lock();
    if read.len() >= KEPT {
        read.remove(0);
    }
    read.push((key, Arc::clone(&set)));
    Ok(Some(set))
}

/// Reads the dead positions `dead` of `file` from disk (no cache; what `persona check` runs),
/// verified: the set's checksum, its count and every position below the file's rows.
pub fn read(root: &Path, file: &DataFile, dead: &DeadRows) -> Result<RoaringBitmap> {
    let path = layout::resolve(root, &dead.set.path);
    let set = read_set(root, &dead.set)?;
    if set.len() != dead.rows {
        return Err(Error::corrupt(&path, format!("holds {} dead rows, the manifest says {}", set.len(), dead.rows)));
    }
    if set.max().is_some_and(|last| u64::from(last) >= file.rows) {
        return Err(Error::corrupt(&path, format!("marks a row past the {} rows of {}", file.rows, file.path)));
    }
    Ok(set)
}

/// Writes `positions` as the dead rows of a fact file of the pending commit (`None` when empty).
pub fn write(writer: &StoreWriter, positions: &RoaringBitmap) -> Result<Option<DeadRows>> {
    if positions.is_empty() {
        return Ok(None);
    }
    Ok(Some(DeadRows { rows: positions.len(), set: write_set(writer, "dead-rows", positions)? }))
}

/// The selection of the live rows of the spans `(start, rows)` of a file, read one after the
/// other (a Parquet reader's selection covers the rows of the row groups it reads, in order).
pub fn live_selection(dead: &RoaringBitmap, spans: &[(u64, u64)]) -> RowSelection {
    let mut selectors: Vec<RowSelector> = Vec::new();
    let mut push = |selector: RowSelector| match selectors.last_mut() {
        Some(last) if last.skip == selector.skip => last.row_count += selector.row_count,
        _ if selector.row_count == 0 => {}
        _ => selectors.push(selector),
    };
    for &(start, rows) in spans {
        let end = start + rows;
        let mut at = start;
        // Positions are u32: a span past u32::MAX has no marks there.
        let lo = u32::try_from(start).unwrap_or(u32::MAX);
        let hi = u32::try_from(end).unwrap_or(u32::MAX);
        for p in dead.range(lo..hi) {
            let p = u64::from(p);
            push(RowSelector::select((p - at) as usize));
            push(RowSelector::skip(1));
            at = p + 1;
        }
        push(RowSelector::select((end - at) as usize));
    }
    selectors.into()
}

/// The live positions among `start .. start + len` as a mask (`None`: all of them live).
pub fn live_mask(dead: &RoaringBitmap, start: u64, len: usize) -> Option<BooleanArray> {
    let (lo, hi) = (u32::try_from(start).ok()?, u32::try_from(start + len as u64).unwrap_or(u32::MAX));
    if dead.range_cardinality(lo..hi) == 0 {
        return None;
    }
    // All set, then the dead ones cleared: a lookup per dead row, not per row.
    let mut bits = BooleanBufferBuilder::new(len);
    bits.append_n(len, true);
    for p in dead.range(lo..hi) {
        bits.set_bit((p - lo) as usize, false);
    }
    Some(BooleanArray::new(bits.finish(), None))
}

/// The live rows of one batch of a plain copy starting at position `start`: the batch, its row
/// ids and day codes with the dead rows left out (as they are when none is dead).
pub fn live_batch(
    dead: Option<&RoaringBitmap>,
    start: u64,
    batch: &RecordBatch,
    ids: &UInt32Array,
    days: Option<&UInt16Array>,
) -> Result<Option<(RecordBatch, UInt32Array, Option<UInt16Array>)>> {
    let Some(mask) = dead.and_then(|d| live_mask(d, start, batch.num_rows())) else { return Ok(None) };
    let batch = filter_record_batch(batch, &mask)?;
    let ids = arrow::compute::filter(ids, &mask)?;
    let ids = ids.as_any().downcast_ref::<UInt32Array>().cloned().ok_or_else(|| Error::Internal("row ids".into()))?;
    let days = match days {
        Some(d) => Some(
            arrow::compute::filter(d, &mask)?
                .as_any()
                .downcast_ref::<UInt16Array>()
                .cloned()
                .ok_or_else(|| Error::Internal("day codes".into()))?,
        ),
        None => None,
    };
    Ok(Some((batch, ids, days)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selected(selection: &RowSelection, total: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = 0;
        for s in selection.iter() {
            if !s.skip {
                out.extend(at..at + s.row_count);
            }
            at += s.row_count;
        }
        assert_eq!(at, total, "the selection covers every row read");
        out
    }

    #[test]
    fn a_selection_over_spans_skips_exactly_the_dead_positions() {
        let dead: RoaringBitmap = [0u32, 3, 4, 9, 10, 19].into_iter().collect();
        // Row groups 0..5, 8..12 and 15..20 read one after the other.
        let spans = [(0, 5), (8, 4), (15, 5)];
        let live: Vec<u64> = spans.iter().flat_map(|&(s, n)| s..s + n).collect();
        let want: Vec<usize> =
            live.iter().enumerate().filter(|(_, p)| !dead.contains(**p as u32)).map(|(i, _)| i).collect();
        assert_eq!(selected(&live_selection(&dead, &spans), live.len()), want);
        assert_eq!(selected(&live_selection(&RoaringBitmap::new(), &[(0, 7)]), 7), (0..7).collect::<Vec<_>>());
        let all: RoaringBitmap = (0u32..7).collect();
        assert!(selected(&live_selection(&all, &[(0, 7)]), 7).is_empty());
    }

    #[test]
    fn a_mask_is_given_only_for_a_batch_with_dead_rows() {
        let dead: RoaringBitmap = [5u32, 7].into_iter().collect();
        assert!(live_mask(&dead, 0, 5).is_none());
        let mask = live_mask(&dead, 4, 4).unwrap();
        assert_eq!(mask.iter().map(Option::unwrap).collect::<Vec<_>>(), [true, false, true, false]);
    }
}
