//! Times of day of a fact file's rows, by group and day: beside an events file, an Arrow IPC file
//! holding, for each section — one combination of the grouping columns' values (`event_type`,
//! `channel_id`) on one day (UTC) — its rows' seconds since midnight and user row ids, sorted by
//! the second. A time window whose edge falls inside a day (`ts >= now() - INTERVAL '7 days'`)
//! finds the users with such rows by a binary search in that day's sections of the groups its
//! conditions allow, instead of decoding the whole file's `ts` column.
//!
//! ```text
//! columns: second UInt32, __row_id UInt32          (one batch, sections one after another)
//! footer:  persona.day_times.columns  JSON ["event_type", "channel_id"]
//!          persona.day_times.groups   JSON [["cart", "app"], ["view", null], ...]
//!          persona.day_times.sections JSON [[group, day, start, len], ...]  (by group, then day)
//! ```
//!
//! Seconds are exact only for whole-second timestamps: a file with a finer `ts`, more than 4,096
//! groups or days more than 2^20 apart gets no such file (its windows read the Parquet file, as
//! before). Rows without `ts` are in no window and are left out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, TimestampMicrosecondType};
use roaring::RoaringBitmap;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::store::ipc::{IpcFileWriter, MappedIpc, OpenedFiles};
use crate::store::ipc_checksums::Checksums;
use crate::tables::{DAY_MICROS, ROW_ID_COLUMN, TS};

const SECOND: &str = "second";
const COLUMNS_KEY: &str = "persona.day_times.columns";
const GROUPS_KEY: &str = "persona.day_times.groups";
const SECTIONS_KEY: &str = "persona.day_times.sections";
const SECOND_MICROS: i64 = 1_000_000;
const GROUP_BITS: u32 = 12;
const DAY_BITS: u32 = 20;
const SECOND_BITS: u32 = 17;

/// The relative path of the day times of the fact file at `parquet_relative`.
pub fn path_for(parquet_relative: &str) -> String {
    crate::store::layout::beside_data_file(parquet_relative, "times.arrow")
}

/// The values of the grouping columns of one group (`None` for NULL).
pub type Group = Vec<Option<String>>;

/// Collects a fact file's rows as it is written; [`DayTimesWriter::finish`] sorts and writes them.
pub struct DayTimesWriter {
    columns: Vec<String>,
    /// Per grouping column, its values' codes ([`NULL_CODE`] for NULL).
    codes: Vec<FxHashMap<String, u16>>,
    /// Groups by their columns' codes (16 bits each), and their values.
    groups: FxHashMap<u64, u32>,
    names: Vec<Group>,
    /// Day numbers are relative to this (set by the first row).
    base_day: Option<i64>,
    /// `(group << DAY_BITS | day - base_day) << SECOND_BITS | second`, and the row id.
    entries: Vec<(u64, u32)>,
    /// Set once the file is known not to fit (its entries are then dropped).
    abandoned: bool,
}

/// The code of NULL in a grouping column.
const NULL_CODE: u16 = u16::MAX;
/// Grouping columns whose codes pack into a group's `u64` key.
const MAX_COLUMNS: usize = 4;

impl DayTimesWriter {
    /// A writer grouping rows by the values of `columns` (at most four).
    pub fn new(columns: &[&str]) -> DayTimesWriter {
        DayTimesWriter {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            codes: vec![FxHashMap::default(); columns.len()],
            groups: FxHashMap::default(),
            names: Vec::new(),
            base_day: None,
            entries: Vec::new(),
            abandoned: columns.len() > MAX_COLUMNS,
        }
    }

    /// Adds rows (their columns found by name) with their user row ids.
    pub fn push(&mut self, batch: &RecordBatch, row_ids: &[u32]) -> Result<()> {
        if self.abandoned {
            return Ok(());
        }
        let schema = batch.schema();
        let ts = batch.column(schema.index_of(TS)?);
        let Some(ts) = ts.as_primitive_opt::<TimestampMicrosecondType>() else {
            // Not the contract's microseconds: the file's windows read its Parquet file.
            self.abandon();
            return Ok(());
        };
        // Each grouping column as the codes of its rows: dictionary-encoded per batch (hashing
        // done by arrow), the batch's few values then coded once each.
        let as_dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let mut row_codes: Vec<Vec<u16>> = Vec::with_capacity(self.columns.len());
        for (name, codes) in self.columns.iter().zip(self.codes.iter_mut()) {
            let encoded = arrow::compute::cast(batch.column(schema.index_of(name)?), &as_dictionary)?;
            let encoded = encoded.as_dictionary::<Int32Type>();
            let values = encoded.values().as_string::<i32>();
            let mut local = Vec::with_capacity(values.len());
            for value in values.iter() {
                let code = match value {
                    None => NULL_CODE,
                    Some(v) => match codes.get(v) {
                        Some(&c) => c,
                        None if codes.len() < usize::from(NULL_CODE) => {
                            let c = codes.len() as u16;
                            codes.insert(v.to_string(), c);
                            c
                        }
                        None => {
                            self.abandon();
                            return Ok(());
                        }
                    },
                };
                local.push(code);
            }
            let keys = encoded.keys();
            row_codes.push(
                (0..keys.len())
                    .map(|row| if keys.is_valid(row) { local[keys.value(row) as usize] } else { NULL_CODE })
                    .collect(),
            );
        }
        self.entries.reserve(row_ids.len());
        for (row, &id) in row_ids.iter().enumerate() {
            if ts.is_null(row) {
                continue;
            }
            let micros = ts.value(row);
            let (day, within) = (micros.div_euclid(DAY_MICROS), micros.rem_euclid(DAY_MICROS));
            let base = *self.base_day.get_or_insert(day - (1 << (DAY_BITS - 1)));
            let offset = day - base;
            if within % SECOND_MICROS != 0 || !(0..1 << DAY_BITS).contains(&offset) {
                self.abandon();
                return Ok(());
            }
            let key = row_codes.iter().fold(0u64, |key, codes| key << 16 | u64::from(codes[row]));
            let group = match self.groups.get(&key) {
                Some(&g) => g,
                None => {
                    if self.names.len() >= 1 << GROUP_BITS {
                        self.abandon();
                        return Ok(());
                    }
                    let g = self.names.len() as u32;
                    self.names.push(self.values_of(key));
                    self.groups.insert(key, g);
                    g
                }
            };
            let key = (u64::from(group) << DAY_BITS | offset as u64) << SECOND_BITS | (within / SECOND_MICROS) as u64;
            self.entries.push((key, id));
        }
        Ok(())
    }

    /// The values of the group whose codes are packed in `key`.
    fn values_of(&self, key: u64) -> Group {
        let n = self.columns.len();
        (0..n)
            .map(|i| {
                let code = (key >> (16 * (n - 1 - i))) as u16;
                (code != NULL_CODE)
                    .then(|| self.codes[i].iter().find(|(_, c)| **c == code).map(|(v, _)| v.clone()))
                    .flatten()
            })
            .collect()
    }

    fn abandon(&mut self) {
        self.abandoned = true;
        self.entries = Vec::new();
        self.groups = FxHashMap::default();
        self.codes.clear();
    }

    /// Writes the day times to `path`, or nothing (`None`) when the rows cannot have them;
    /// returns the file to be made durable by the caller.
    pub fn finish(mut self, path: &Path) -> Result<Option<crate::store::io::NewFile>> {
        if self.abandoned {
            return Ok(None);
        }
        // Stable: rows of one second keep file order.
        radsort::sort_by_key(&mut self.entries, |e| e.0);
        let base = self.base_day.unwrap_or(0);
        let mut sections: Vec<[i64; 4]> = Vec::new();
        for (start, run) in chunk_starts(&self.entries, |e| e.0 >> SECOND_BITS) {
            let key = run[0].0 >> SECOND_BITS;
            let (group, day) = (key >> DAY_BITS, base + (key & ((1 << DAY_BITS) - 1)) as i64);
            sections.push([group as i64, day, start as i64, run.len() as i64]);
        }
        let seconds: UInt32Array = self.entries.iter().map(|e| (e.0 & ((1 << SECOND_BITS) - 1)) as u32).collect();
        let ids: UInt32Array = self.entries.iter().map(|e| e.1).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new(SECOND, DataType::UInt32, false),
            Field::new(ROW_ID_COLUMN, DataType::UInt32, false),
        ]));
        let metadata = vec![
            (COLUMNS_KEY.to_string(), to_json(&self.columns)?),
            (GROUPS_KEY.to_string(), to_json(&self.names)?),
            (SECTIONS_KEY.to_string(), to_json(&sections)?),
        ];
        let mut out = IpcFileWriter::create(path, Arc::clone(&schema), usize::MAX)?;
        if !self.entries.is_empty() {
            out.push(RecordBatch::try_new(schema, vec![Arc::new(seconds), Arc::new(ids)])?)?;
        }
        out.finish(metadata).map(Some)
    }
}

/// Runs of equal `key` in `items`, with the position each starts at.
fn chunk_starts<T, K: PartialEq>(items: &[T], key: impl Fn(&T) -> K) -> impl Iterator<Item = (usize, &[T])> {
    let mut start = 0;
    items.chunk_by(move |a, b| key(a) == key(b)).map(move |run| {
        let at = start;
        start += run.len();
        (at, run)
    })
}

/// A value written into the footer as JSON.
fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Internal(format!("cannot write day times: {e}")))
}

/// A file's day times, mapped.
pub struct DayTimes {
    path: PathBuf,
    columns: Vec<String>,
    groups: Vec<Group>,
    /// By group, then day: (group, day, start, len).
    sections: Vec<(u32, i64, usize, usize)>,
    seconds: UInt32Array,
    row_ids: UInt32Array,
    /// Verifies a section's rows before they are searched (see `ipc_checksums`).
    checks: Option<Arc<Checksums>>,
}

/// Day times opened by this process.
static OPENED: OpenedFiles<DayTimes> = OpenedFiles::new(256);

impl DayTimes {
    /// [`DayTimes::open`], once per process for a file, kept among the recently used ones.
    pub fn open_cached(path: &Path) -> Result<Arc<DayTimes>> {
        let opened = OPENED.get_or_open(path, &[], || DayTimes::open(path).map(Some))?;
        opened.ok_or_else(|| Error::Internal(format!("{} did not open", path.display())))
    }

    /// Maps the file at `path`, checking its sections against its rows.
    pub fn open(path: &Path) -> Result<DayTimes> {
        let corrupt = |what: String| Error::corrupt(path, what);
        let mapped = MappedIpc::open(path, &[SECOND, ROW_ID_COLUMN])?;
        let meta = |key: &str| mapped.metadata.get(key).ok_or_else(|| corrupt(format!("the footer has no {key}")));
        let parse_error = |key: &str, e: serde_json::Error| corrupt(format!("{key} is malformed: {e}"));
        let columns: Vec<String> = serde_json::from_str(meta(COLUMNS_KEY)?).map_err(|e| parse_error(COLUMNS_KEY, e))?;
        let groups: Vec<Group> = serde_json::from_str(meta(GROUPS_KEY)?).map_err(|e| parse_error(GROUPS_KEY, e))?;
        let raw: Vec<[i64; 4]> = serde_json::from_str(meta(SECTIONS_KEY)?).map_err(|e| parse_error(SECTIONS_KEY, e))?;
        let (seconds, row_ids) = match mapped.batches.as_slice() {
            [] => (UInt32Array::from(Vec::<u32>::new()), UInt32Array::from(Vec::<u32>::new())),
            [batch] if mapped.names.len() == 2 => {
                let column = |i: usize| {
                    batch
                        .column(i)
                        .as_primitive_opt()
                        .cloned()
                        .ok_or_else(|| corrupt(format!("column {i} is not UInt32")))
                };
                (column(0)?, column(1)?)
            }
            _ => return Err(corrupt("expected one batch of seconds and row ids".into())),
        };
        let rows = seconds.len();
        let mut sections = Vec::with_capacity(raw.len());
        let mut expected_start = 0usize;
        for [group, day, start, len] in raw {
            let fits = usize::try_from(group).is_ok_and(|g| g < groups.len())
                && usize::try_from(start).is_ok_and(|s| s == expected_start)
                && usize::try_from(len).is_ok_and(|l| l > 0 && expected_start + l <= rows);
            if !fits {
                return Err(corrupt(format!("section [{group}, {day}, {start}, {len}] does not fit the file")));
            }
            sections.push((group as u32, day, start as usize, len as usize));
            expected_start += len as usize;
        }
        if expected_start != rows || groups.iter().any(|g| g.len() != columns.len()) {
            return Err(corrupt("the sections do not cover the rows".into()));
        }
        if !sections.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)) {
            return Err(corrupt("the sections are out of order".into()));
        }
        let checks = mapped.checks;
        Ok(DayTimes { path: path.to_path_buf(), columns, groups, sections, seconds, row_ids, checks })
    }

    /// The rows held (the fact file's rows with a `ts`).
    pub fn rows(&self) -> usize {
        self.seconds.len()
    }

    /// The grouping columns.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Adds to `out` the users of the rows whose group `allowed` accepts and whose time is in
    /// `[from, to)` (microseconds since 1970, UTC).
    pub fn users_in(
        &self,
        allowed: impl Fn(&Group) -> bool,
        (from, to): (i64, i64),
        out: &mut RoaringBitmap,
    ) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        let (first_day, last_day) = (from.div_euclid(DAY_MICROS), (to - 1).div_euclid(DAY_MICROS));
        let seconds = self.seconds.values();
        let row_ids = self.row_ids.values();
        for (g, group) in self.groups.iter().enumerate() {
            if !allowed(group) {
                continue;
            }
            let g = g as u32;
            let begin = self.sections.partition_point(|s| (s.0, s.1) < (g, first_day));
            for &(_, day, start, len) in self.sections[begin..].iter().take_while(|s| s.0 == g && s.1 <= last_day) {
                // Seconds of the day in the window: [ceil(from), ceil(to)) of the day's start.
                let bound =
                    |t: i64| ((t - day * DAY_MICROS).clamp(0, DAY_MICROS) as u64).div_ceil(SECOND_MICROS as u64) as u32;
                let (lo, hi) = (bound(from), bound(to));
                let day_seconds = &seconds[start..start + len];
                if let Some(checks) = &self.checks {
                    checks.ensure_slice(day_seconds)?;
                    checks.ensure_slice(&row_ids[start..start + len])?;
                }
                let a = day_seconds.partition_point(|&s| s < lo);
                let b = day_seconds.partition_point(|&s| s < hi);
                if a < b {
                    out.extend(row_ids[start + a..start + b].iter().copied());
                }
            }
        }
        if out.max().is_some_and(|m| m == u32::MAX) {
            return Err(Error::corrupt(&self.path, "a row id of u32::MAX".to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, TimestampMicrosecondArray};

    fn batch(rows: &[(Option<i64>, &str, Option<&str>)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(TS, DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None), true),
            Field::new("event_type", DataType::Utf8, true),
            Field::new("channel_id", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMicrosecondArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(StringArray::from(rows.iter().map(|r| Some(r.1)).collect::<Vec<_>>())),
                Arc::new(StringArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
            ],
        )
        .unwrap()
    }

    const T0: i64 = 20_000 * DAY_MICROS;

    fn written(rows: &[(Option<i64>, &str, Option<&str>)], ids: &[u32]) -> (tempfile::TempDir, Option<DayTimes>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.times.arrow");
        let mut w = DayTimesWriter::new(&["event_type", "channel_id"]);
        // Two pushes, so that sections gather rows of both.
        let half = rows.len() / 2;
        w.push(&batch(&rows[..half]), &ids[..half]).unwrap();
        w.push(&batch(&rows[half..]), &ids[half..]).unwrap();
        let file = w.finish(&path).unwrap();
        let times = file.map(|_| DayTimes::open(&path).unwrap());
        (dir, times)
    }

    /// The same answer by looking at every row.
    fn brute(
        rows: &[(Option<i64>, &str, Option<&str>)],
        ids: &[u32],
        allowed: impl Fn(&Group) -> bool,
        (from, to): (i64, i64),
    ) -> RoaringBitmap {
        rows.iter()
            .zip(ids)
            .filter(|((ts, kind, channel), _)| {
                ts.is_some_and(|t| from <= t && t < to)
                    && allowed(&vec![Some(kind.to_string()), channel.map(str::to_string)])
            })
            .map(|(_, &id)| id)
            .collect()
    }

    #[test]
    fn windows_inside_and_across_days_match_every_row() {
        let mut rows = Vec::new();
        let mut ids = Vec::new();
        let kinds = ["cart", "view", "search"];
        let channels = [Some("app"), None, Some("web")];
        for i in 0..3_000i64 {
            let ts = (i % 7 != 3).then_some(T0 - DAY_MICROS + (i * 7_919 % 259_200) * SECOND_MICROS);
            rows.push((ts, kinds[(i % 3) as usize], channels[(i % 5 % 3) as usize]));
            ids.push((i / 4) as u32);
        }
        let (_dir, times) = written(&rows, &ids);
        let times = times.expect("whole seconds give day times");
        let windows = [
            (T0 + 18 * 3_600 * SECOND_MICROS + 30 * 60 * SECOND_MICROS, T0 + DAY_MICROS),
            (T0, T0 + 9 * 3_600 * SECOND_MICROS + 15 * 60 * SECOND_MICROS + 1),
            (T0 - 5, T0 + 5),
            (T0 + 17, T0 + 2 * DAY_MICROS - 1),
            (T0 - 10 * DAY_MICROS, T0 + 10 * DAY_MICROS),
            (T0 + 3 * SECOND_MICROS, T0 + 3 * SECOND_MICROS),
        ];
        type Filter = Box<dyn Fn(&Group) -> bool>;
        let filters: [Filter; 3] = [
            Box::new(|_: &Group| true),
            Box::new(|g: &Group| g[0].as_deref() == Some("cart")),
            Box::new(|g: &Group| g[0].as_deref() != Some("view") && g[1].is_none()),
        ];
        for window in windows {
            for allowed in &filters {
                let mut out = RoaringBitmap::new();
                times.users_in(allowed, window, &mut out).unwrap();
                assert_eq!(out, brute(&rows, &ids, allowed, window), "{window:?}");
            }
        }
    }

    #[test]
    fn bounds_a_microsecond_off_a_row_keep_or_leave_it_exactly() {
        let s = |n: i64| T0 + n * SECOND_MICROS;
        let rows = [(Some(s(100)), "cart", None), (Some(s(101)), "cart", None), (Some(s(86_399)), "cart", None)];
        let (_dir, times) = written(&rows, &[1, 2, 3]);
        let times = times.unwrap();
        let users = |window: (i64, i64)| {
            let mut out = RoaringBitmap::new();
            times.users_in(|_: &Group| true, window, &mut out).unwrap();
            out.iter().collect::<Vec<u32>>()
        };
        assert_eq!(users((s(100), s(101))), [1]);
        assert_eq!(users((s(100) + 1, s(101))), Vec::<u32>::new());
        assert_eq!(users((s(100) - 1, s(101) + 1)), [1, 2]);
        assert_eq!(users((s(101) - 1, s(101))), Vec::<u32>::new());
        assert_eq!(users((s(86_399), T0 + DAY_MICROS)), [3]);
        assert_eq!(users((s(86_399) + 1, T0 + 2 * DAY_MICROS)), Vec::<u32>::new());
        assert_eq!(users((s(-5), s(100) + 1)), [1]);
    }

    #[test]
    fn a_finer_timestamp_gives_no_day_times() {
        let rows = [(Some(T0 + 1), "cart", None), (Some(T0), "cart", None)];
        let (_dir, times) = written(&rows, &[0, 1]);
        assert!(times.is_none());
    }

    #[test]
    fn damage_is_named() {
        let rows = [(Some(T0), "cart", None), (Some(T0 + SECOND_MICROS), "view", Some("app"))];
        let (dir, times) = written(&rows, &[0, 1]);
        assert!(times.is_some());
        let path = dir.path().join("x.times.arrow");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(DayTimes::open(&path), Err(Error::Corrupt { .. })));
    }
}
