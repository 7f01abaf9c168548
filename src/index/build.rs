//! Building and merging indexes at commit time. Facts only ever grow, so their bitmaps (tags,
//! purchase days) merge by union with what the import adds; bitmaps the import does not touch are
//! copied byte for byte. Users value bitmaps are rebuilt from the users files when users change
//! (an upsert can move a user from one value to another).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, StringArray, TimestampMicrosecondArray, UInt32Array};
use arrow::datatypes::{DataType, Date32Type, Field, Int32Type, Int64Type, Schema};
use chrono::Datelike;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use roaring::{MultiOps, RoaringBitmap};
use rustc_hash::FxHashMap;

use crate::error::{Error, IoContext, Result};
use crate::index::day_of;
use crate::index::format::{BitmapKey, BitmapKind, IndexFile, IndexWriter};
use crate::tables::{ColumnDef, ColumnType, ROW_ID_COLUMN, USER_ID};

/// A users column with more distinct values than this gets no value bitmaps.
pub const MAX_DISTINCT_VALUES: usize = 1024;

/// Bitmap entries an import adds.
#[derive(Debug, Default)]
pub struct IndexDelta {
    pub tags: FxHashMap<String, BitmapBuilder>,
    /// Activity streams by name (see [`BitmapKind::ActivityDay`]), each by day.
    pub streams: Streams,
    /// Stream families this delta covers completely (they start here or are rebuilt from every
    /// fact row): the previous version's bitmaps of these families are replaced, not merged.
    pub complete_families: BTreeSet<String>,
}

/// The stream families: users active per day in all purchases, per purchase channel, per
/// purchased product category, and per event type.
pub const FAMILY_PURCHASES: &str = "purchases";
pub const FAMILY_PURCHASE_CHANNEL: &str = "purchases.channel_id";
pub const FAMILY_PURCHASE_CATEGORY: &str = "purchases.category";
pub const FAMILY_EVENT_TYPE: &str = "events.event_type";
/// Events by type and channel together: `events.event_type,channel_id=["cart","app"]` (a JSON
/// pair; the channel `null` for events without one). Every event is in exactly one; the streams
/// of `events.event_type` are their unions.
pub const FAMILY_EVENT_TYPE_CHANNEL: &str = "events.event_type,channel_id";

/// The stream of events of `event_type` on `channel` (see [`FAMILY_EVENT_TYPE_CHANNEL`]).
pub fn event_pair_stream(event_type: &str, channel: Option<&str>) -> String {
    let pair = serde_json::to_string(&(event_type, channel)).unwrap_or_default();
    stream_name(FAMILY_EVENT_TYPE_CHANNEL, Some(&pair))
}

/// The event type and channel of a stream of [`FAMILY_EVENT_TYPE_CHANNEL`].
pub fn event_pair_of(stream: &str) -> Option<(String, Option<String>)> {
    let pair = stream.strip_prefix(FAMILY_EVENT_TYPE_CHANNEL)?.strip_prefix('=')?;
    serde_json::from_str(pair).ok()
}

/// The name of the stream of `family` for `value` (`purchases.channel_id=wechat`); the family
/// `purchases` has one stream named after it.
pub fn stream_name(family: &str, value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{family}={v}"),
        None => family.to_string(),
    }
}

/// The family a stream name belongs to.
pub fn family_of(stream: &str) -> &str {
    stream.split_once('=').map_or(stream, |(f, _)| f)
}

/// Activity streams being built. Rows arrive as (stream, day, user) triples in whatever order the
/// fact files have; they are appended to a flat buffer (no per-row hashing or pointer chasing),
/// and every few million entries the buffer is radix-sorted by (stream, day) and each run becomes
/// one bitmap, OR-ed into that day's bitmap.
#[derive(Debug, Default)]
pub struct Streams {
    slots: FxHashMap<String, u32>,
    names: Vec<String>,
    /// Day numbers in the buffer are relative to this (set by the first row).
    base_day: Option<i64>,
    /// `(slot << DAY_BITS | day - base_day) << 32 | row id`.
    pending: Vec<u64>,
    built: FxHashMap<(u32, i64), RoaringBitmap>,
}

impl Streams {
    const SLOT_BITS: u32 = 12;
    const DAY_BITS: u32 = 20;
    const FLUSH_ENTRIES: usize = 1 << 22;

    /// The slot of a stream, created on first use.
    pub fn slot(&mut self, name: &str) -> u32 {
        if let Some(&slot) = self.slots.get(name) {
            return slot;
        }
        let slot = self.names.len() as u32;
        self.names.push(name.to_string());
        self.slots.insert(name.to_string(), slot);
        slot
    }

    pub fn add(&mut self, slot: u32, day: i64, id: u32) {
        let base = *self.base_day.get_or_insert(day - (1 << (Self::DAY_BITS - 1)));
        let offset = day - base;
        if slot < 1 << Self::SLOT_BITS && (0..1 << Self::DAY_BITS).contains(&offset) {
            let key = u64::from(slot) << Self::DAY_BITS | offset as u64;
            self.pending.push(key << 32 | u64::from(id));
            if self.pending.len() >= Self::FLUSH_ENTRIES {
                self.flush();
            }
        } else {
            // Thousands of streams, or days centuries apart: the slow path, exact all the same.
            self.built.entry((slot, day)).or_default().insert(id);
        }
    }

    fn flush(&mut self) {
        let Some(base) = self.base_day else { return };
        radsort::sort_by_key(&mut self.pending, |e| (e >> 32) as u32);
        for run in self.pending.chunk_by(|a, b| a >> 32 == b >> 32) {
            let key = (run[0] >> 32) as u32;
            let (slot, day) = (key >> Self::DAY_BITS, base + i64::from(key & ((1 << Self::DAY_BITS) - 1)));
            let ids = run.iter().map(|e| *e as u32);
            // The sort is stable: ids keep file order, increasing when facts come grouped by user.
            let bitmap = if run.windows(2).all(|w| (w[0] as u32) <= (w[1] as u32)) {
                let mut deduped = ids.collect::<Vec<u32>>();
                deduped.dedup();
                RoaringBitmap::from_sorted_iter(deduped).unwrap_or_default()
            } else {
                ids.collect()
            };
            match self.built.get_mut(&(slot, day)) {
                Some(existing) => *existing |= bitmap,
                None => {
                    self.built.insert((slot, day), bitmap);
                }
            }
        }
        self.pending.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Keeps only the streams of `family`.
    pub fn retain_family(&mut self, family: &str) {
        self.flush();
        let names = &self.names;
        self.built.retain(|(slot, _), _| family_of(&names[*slot as usize]) == family);
    }

    fn merge(&mut self, mut other: Streams) {
        other.flush();
        self.flush();
        for ((slot, day), bitmap) in other.built {
            let mine = self.slot(&other.names[slot as usize]);
            match self.built.get_mut(&(mine, day)) {
                Some(existing) => *existing |= bitmap,
                None => {
                    self.built.insert((mine, day), bitmap);
                }
            }
        }
    }

    /// Every stream's non-empty days, by stream name then day.
    fn into_days(mut self) -> BTreeMap<String, BTreeMap<i64, RoaringBitmap>> {
        self.flush();
        let mut out: BTreeMap<String, BTreeMap<i64, RoaringBitmap>> = BTreeMap::new();
        for ((slot, day), bitmap) in self.built {
            if !bitmap.is_empty() {
                out.entry(self.names[slot as usize].clone()).or_default().insert(day, bitmap);
            }
        }
        out
    }
}

/// A string of up to 15 bytes packed with its length into one integer (`None` when longer).
fn packed(value: &str) -> Option<u128> {
    let bytes = value.as_bytes();
    if bytes.len() >= 16 {
        return None;
    }
    let mut packed = [0u8; 16];
    packed[..bytes.len()].copy_from_slice(bytes);
    packed[15] = bytes.len() as u8;
    Some(u128::from_le_bytes(packed))
}

/// The stream slots of one text column's values within a batch. Short values (channels, event
/// types) are looked up by their bytes packed into an integer: no string hashing or comparison
/// per row.
struct ValueSlots<'a> {
    family: &'static str,
    short: FxHashMap<u128, u32>,
    long: FxHashMap<&'a str, u32>,
}

impl<'a> ValueSlots<'a> {
    fn new(family: &'static str) -> Self {
        ValueSlots { family, short: FxHashMap::default(), long: FxHashMap::default() }
    }

    fn slot(&mut self, streams: &mut Streams, value: &'a str) -> u32 {
        let bytes = value.as_bytes();
        if bytes.len() < 16 {
            let mut packed = [0u8; 16];
            packed[..bytes.len()].copy_from_slice(bytes);
            packed[15] = bytes.len() as u8;
            let key = u128::from_le_bytes(packed);
            if let Some(&slot) = self.short.get(&key) {
                return slot;
            }
            let slot = streams.slot(&stream_name(self.family, Some(value)));
            self.short.insert(key, slot);
            return slot;
        }
        if let Some(&slot) = self.long.get(value) {
            return slot;
        }
        let slot = streams.slot(&stream_name(self.family, Some(value)));
        self.long.insert(value, slot);
        slot
    }
}

/// The first day (days since 1970-01-01) of the calendar month holding `day`.
pub fn month_start(day: i64) -> i64 {
    const UNIX_EPOCH_CE: i64 = 719_163;
    let date = i32::try_from(day + UNIX_EPOCH_CE).ok().and_then(chrono::NaiveDate::from_num_days_from_ce_opt);
    match date.and_then(|d| d.with_day(1)) {
        Some(first) => i64::from(first.num_days_from_ce()) - UNIX_EPOCH_CE,
        None => day,
    }
}

/// Maps each purchase's product to its category (the products of the store after this import's
/// upserts), as an index into the category names so that a row costs one lookup.
#[derive(Debug, Default)]
pub struct ProductCategories {
    by_product: FxHashMap<String, u32>,
    names: Vec<String>,
}

impl ProductCategories {
    pub fn new(by_product: FxHashMap<String, String>) -> ProductCategories {
        let mut names: Vec<String> = by_product.values().cloned().collect();
        names.sort();
        names.dedup();
        let by_product = by_product
            .into_iter()
            .map(|(product, category)| {
                let i = names.binary_search(&category).unwrap_or_default() as u32;
                (product, i)
            })
            .collect();
        ProductCategories { by_product, names }
    }

    fn category(&self, product_id: &str) -> Option<u32> {
        self.by_product.get(product_id).copied()
    }
}

impl IndexDelta {
    /// Records user_tags rows.
    pub fn add_tags(&mut self, tags: &StringArray, row_ids: &[u32]) {
        for (tag, id) in tags.iter().zip(row_ids) {
            if let Some(tag) = tag {
                match self.tags.get_mut(tag) {
                    Some(bm) => bm.add(*id),
                    None => {
                        let mut bm = BitmapBuilder::default();
                        bm.add(*id);
                        self.tags.insert(tag.to_string(), bm);
                    }
                }
            }
        }
    }

    /// Records purchases rows: the day of each in the stream of all purchases, of its channel and
    /// of its product's category (`categories` is `None` when the category family is not built
    /// by this delta).
    pub fn add_purchases(
        &mut self,
        ts: &TimestampMicrosecondArray,
        channel: &StringArray,
        product: &StringArray,
        categories: Option<&ProductCategories>,
        row_ids: &[u32],
    ) {
        // Every purchase goes to exactly one channel stream (the unnamed one when it has no
        // channel); the stream of all purchases is their union, formed when the delta is written.
        let no_channel = self.streams.slot(FAMILY_PURCHASE_CHANNEL);
        let mut channel_slots = ValueSlots::new(FAMILY_PURCHASE_CHANNEL);
        let mut category_slots: Vec<Option<u32>> = vec![None; categories.map_or(0, |c| c.names.len())];
        for (row, id) in row_ids.iter().enumerate() {
            if ts.is_null(row) {
                continue;
            }
            let day = day_of(ts.value(row));
            let slot = if channel.is_valid(row) {
                channel_slots.slot(&mut self.streams, channel.value(row))
            } else {
                no_channel
            };
            self.streams.add(slot, day, *id);
            if let Some(categories) = categories
                && product.is_valid(row)
                && let Some(category) = categories.category(product.value(row))
            {
                let slot = match category_slots[category as usize] {
                    Some(s) => s,
                    None => {
                        let name = stream_name(FAMILY_PURCHASE_CATEGORY, Some(&categories.names[category as usize]));
                        let s = self.streams.slot(&name);
                        category_slots[category as usize] = Some(s);
                        s
                    }
                };
                self.streams.add(slot, day, *id);
            }
        }
    }

    /// Records events rows: the day of each in the stream of its event type and channel (the
    /// streams of event types are their unions, formed when the delta is written).
    pub fn add_events(
        &mut self,
        ts: &TimestampMicrosecondArray,
        event_type: &StringArray,
        channel: &StringArray,
        row_ids: &[u32],
    ) {
        let mut slots: FxHashMap<(u128, u128), u32> = FxHashMap::default();
        let mut long: FxHashMap<(&str, Option<&str>), u32> = FxHashMap::default();
        for (row, id) in row_ids.iter().enumerate() {
            if ts.is_null(row) || event_type.is_null(row) {
                continue;
            }
            let kind = event_type.value(row);
            let on = channel.is_valid(row).then(|| channel.value(row));
            let slot = match (packed(kind), on.map_or(Some(u128::MAX), packed)) {
                (Some(a), Some(b)) => {
                    *slots.entry((a, b)).or_insert_with(|| self.streams.slot(&event_pair_stream(kind, on)))
                }
                _ => *long.entry((kind, on)).or_insert_with(|| self.streams.slot(&event_pair_stream(kind, on))),
            };
            self.streams.add(slot, day_of(ts.value(row)), *id);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.streams.is_empty() && self.complete_families.is_empty()
    }

    pub fn merge(&mut self, other: IndexDelta) {
        for (k, bm) in other.tags {
            self.tags.entry(k).or_default().merge(bm);
        }
        self.streams.merge(other.streams);
        self.complete_families.extend(other.complete_families);
    }

    fn into_keyed(self) -> BTreeMap<BitmapKey, RoaringBitmap> {
        let mut out = BTreeMap::new();
        for (tag, mut bm) in self.tags {
            if bm.has_repeats() {
                out.insert((BitmapKind::TagRepeated, tag.clone(), String::new()), RoaringBitmap::new());
            }
            out.insert((BitmapKind::Tag, tag, String::new()), bm.finish());
        }
        let mut streams = self.streams.into_days();
        // Events by type: the unions of their streams by type and channel (see `add_events`).
        let mut by_type: BTreeMap<String, BTreeMap<i64, Vec<&RoaringBitmap>>> = BTreeMap::new();
        for (name, days) in &streams {
            if let Some((kind, _)) = event_pair_of(name) {
                let kind = by_type.entry(stream_name(FAMILY_EVENT_TYPE, Some(&kind))).or_default();
                for (day, bm) in days {
                    kind.entry(*day).or_default().push(bm);
                }
            }
        }
        let by_type: Vec<(String, BTreeMap<i64, RoaringBitmap>)> = by_type
            .into_iter()
            .map(|(name, days)| (name, days.into_iter().map(|(day, bms)| (day, bms.into_iter().union())).collect()))
            .collect();
        streams.extend(by_type);
        // The union of all purchases and every stream's month roll-ups are independent: two
        // threads share them (this runs while the rest of the import waits).
        let names: Vec<&String> = streams.keys().filter(|n| n.as_str() != FAMILY_PURCHASE_CHANNEL).collect();
        let half_a: Vec<&String> = names.iter().step_by(2).copied().collect();
        let half_b: Vec<&String> = names.iter().skip(1).step_by(2).copied().collect();
        let (all, mut months) = std::thread::scope(|scope| {
            let streams = &streams;
            let other = scope.spawn(move || {
                let mut months = months_of(streams, half_b.into_iter());
                // All purchases: the union of the channel streams (see `add_purchases`).
                let mut by_day: BTreeMap<i64, Vec<&RoaringBitmap>> = BTreeMap::new();
                for (name, days) in streams {
                    if family_of(name) == FAMILY_PURCHASE_CHANNEL {
                        for (day, bm) in days {
                            by_day.entry(*day).or_default().push(bm);
                        }
                    }
                }
                let all: BTreeMap<i64, RoaringBitmap> =
                    by_day.into_iter().map(|(day, bms)| (day, bms.into_iter().union())).collect();
                let one = BTreeMap::from([(FAMILY_PURCHASES.to_string(), all)]);
                months.extend(months_of(&one, one.keys()));
                let all = one.into_values().next().unwrap_or_default();
                (all, months)
            });
            let mine = months_of(streams, half_a.into_iter());
            let (all, mut months) = other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            months.extend(mine);
            (all, months)
        });
        if !all.is_empty() {
            streams.insert(FAMILY_PURCHASES.to_string(), all);
        }
        // The stream of purchases without a channel only served the union.
        streams.remove(FAMILY_PURCHASE_CHANNEL);
        for (name, month, bm) in months.drain(..) {
            out.insert((BitmapKind::ActivityMonth, name, month.to_string()), bm);
        }
        for (name, days) in streams {
            for (day, bm) in days {
                out.insert((BitmapKind::ActivityDay, name.clone(), day.to_string()), bm);
            }
        }
        out
    }
}

/// The calendar-month unions of the named streams' days.
fn months_of<'a>(
    streams: &BTreeMap<String, BTreeMap<i64, RoaringBitmap>>,
    names: impl Iterator<Item = &'a String>,
) -> Vec<(String, i64, RoaringBitmap)> {
    let mut out = Vec::new();
    for name in names {
        let Some(days) = streams.get(name) else { continue };
        let mut months: BTreeMap<i64, Vec<&RoaringBitmap>> = BTreeMap::new();
        for (day, bm) in days {
            months.entry(month_start(*day)).or_default().push(bm);
        }
        out.extend(months.into_iter().map(|(month, bms)| (name.clone(), month, bms.into_iter().union())));
    }
    out
}

/// Writes the next version's index to `out`: the previous index (if any) merged with `delta`,
/// and the users value bitmaps replaced by `users_values` when given. Stream families the delta
/// holds completely replace the previous ones and are marked complete; other families merge by
/// union and keep the mark they had.
pub fn write_next_index(
    previous: Option<&Path>,
    delta: IndexDelta,
    users_values: Option<BTreeMap<BitmapKey, RoaringBitmap>>,
    out: &Path,
) -> Result<u64> {
    let complete = delta.complete_families.clone();
    let mut added = delta.into_keyed();
    for family in &complete {
        added.insert((BitmapKind::StreamFamily, family.clone(), String::new()), RoaringBitmap::new());
    }
    let mut writer = IndexWriter::create(out)?;
    let is_users_entry = |k: &BitmapKey| is_users_kind(k.0);
    let is_replaced_stream = |k: &BitmapKey| match k.0 {
        BitmapKind::PurchaseDay => true,
        BitmapKind::ActivityDay | BitmapKind::ActivityMonth | BitmapKind::StreamFamily => {
            complete.contains(family_of(&k.1))
        }
        _ => false,
    };
    let checked = (BitmapKind::TagRowsChecked, String::new(), String::new());
    let previous = previous.map(IndexFile::open).transpose()?;
    // Repeats of a tag are known when every index before knew them (the first one did).
    if previous.as_ref().is_none_or(|prev| prev.directory.contains_key(&checked)) {
        added.insert(checked, RoaringBitmap::new());
    }
    if let Some(prev) = previous {
        for (key, extent) in &prev.directory {
            if (users_values.is_some() && is_users_entry(key)) || is_replaced_stream(key) {
                continue;
            }
            match added.remove(key) {
                Some(mut bm) => {
                    let before = prev.read(*extent)?;
                    // A user tagged again by this import repeats the tag.
                    let repeated = (BitmapKind::TagRepeated, key.1.clone(), String::new());
                    if key.0 == BitmapKind::Tag && !prev.directory.contains_key(&repeated) && !bm.is_disjoint(&before) {
                        added.insert(repeated, RoaringBitmap::new());
                    }
                    bm |= before;
                    writer.add(key, &bm)?;
                }
                None => {
                    let raw = prev.read_raw(*extent)?;
                    writer.add_raw(key, &raw, extent.crc)?;
                }
            }
        }
    }
    for (key, bm) in &added {
        writer.add(key, bm)?;
    }
    for (key, bm) in users_values.iter().flatten() {
        writer.add(key, bm)?;
    }
    writer.finish()
}

/// Writes the index at `previous` again to `out` with the users of `removed` taken out of every
/// bitmap (forgetting users). Bitmaps that hold none of them are copied byte for byte; a tag or
/// a value left without users goes, with its marks, so that no key names what only the removed
/// users had. Returns the file's size.
pub fn write_index_without(previous: &Path, removed: &RoaringBitmap, out: &Path) -> Result<u64> {
    let prev = IndexFile::open(previous)?;
    let mut writer = IndexWriter::create(out)?;
    // Tags left without users; their `TagRepeated` marks sort after every tag and go too.
    let mut emptied_tags: BTreeSet<String> = BTreeSet::new();
    // One bitmap in memory at a time: the directory's order is the file's.
    for (key, extent) in &prev.directory {
        if key.0 == BitmapKind::TagRepeated && emptied_tags.contains(&key.1) {
            continue;
        }
        if holds_users(key.0) {
            let bitmap = prev.read(*extent)?;
            if !bitmap.is_disjoint(removed) {
                let kept = bitmap - removed;
                match key.0 {
                    BitmapKind::Tag if kept.is_empty() => {
                        emptied_tags.insert(key.1.clone());
                    }
                    BitmapKind::Value if kept.is_empty() => {}
                    _ => writer.add(key, &kept)?,
                }
                continue;
            }
        }
        writer.add_raw(key, &prev.read_raw(*extent)?, extent.crc)?;
    }
    writer.finish()
}

/// Writes the index at `previous` again to `out` with every users bitmap of the columns in
/// `columns` (values, NULLs, range slices and their marks) replaced by those of `values`, which
/// [`build_users_values`] built for those columns alone (updating users). Every other bitmap is
/// copied byte for byte. Returns the file's size.
pub fn write_index_with_columns(
    previous: &Path,
    columns: &BTreeSet<String>,
    values: &BTreeMap<BitmapKey, RoaringBitmap>,
    out: &Path,
) -> Result<u64> {
    let prev = IndexFile::open(previous)?;
    let mut writer = IndexWriter::create(out)?;
    for (key, extent) in &prev.directory {
        if is_users_kind(key.0) && columns.contains(&key.1) {
            continue;
        }
        writer.add_raw(key, &prev.read_raw(*extent)?, extent.crc)?;
    }
    for (key, bitmap) in values {
        if !columns.contains(&key.1) {
            return Err(Error::Internal(format!(
                "the users bitmaps rebuilt for an update hold column '{}' it did not change; please report this bug",
                key.1
            )));
        }
        writer.add(key, bitmap)?;
    }
    writer.finish()
}

/// Writes the index at `previous` again to `out` with the bitmaps of the tags in `tags` replaced
/// by the given ones (deleting tag rows): a tag left without users goes, with its repeat mark.
/// Every other bitmap is copied byte for byte. Returns the file's size.
pub fn write_index_with_tags(previous: &Path, tags: &BTreeMap<String, RoaringBitmap>, out: &Path) -> Result<u64> {
    let prev = IndexFile::open(previous)?;
    let mut writer = IndexWriter::create(out)?;
    for (key, extent) in &prev.directory {
        match (key.0, tags.get(&key.1)) {
            (BitmapKind::Tag, Some(_)) => {}
            (BitmapKind::TagRepeated, Some(bitmap)) if bitmap.is_empty() => {}
            _ => writer.add_raw(key, &prev.read_raw(*extent)?, extent.crc)?,
        }
    }
    for (tag, bitmap) in tags.iter().filter(|(_, b)| !b.is_empty()) {
        writer.add(&(BitmapKind::Tag, tag.clone(), String::new()), bitmap)?;
    }
    writer.finish()
}

/// Whether entries of `kind` belong to a users column (built from the users files).
fn is_users_kind(kind: BitmapKind) -> bool {
    matches!(
        kind,
        BitmapKind::Value | BitmapKind::Null | BitmapKind::ValueColumn | BitmapKind::RangeBit | BitmapKind::RangeBase
    )
}

/// Whether bitmaps of `kind` hold users (the others are marks with an empty bitmap).
fn holds_users(kind: BitmapKind) -> bool {
    matches!(
        kind,
        BitmapKind::Tag
            | BitmapKind::Value
            | BitmapKind::Null
            | BitmapKind::PurchaseDay
            | BitmapKind::RangeBit
            | BitmapKind::ActivityDay
            | BitmapKind::ActivityMonth
    )
}

/// The bitmaps of one value-indexed column, by value.
#[derive(Debug, Default)]
struct ValueBitmaps {
    slots: FxHashMap<String, usize>,
    bitmaps: Vec<BitmapBuilder>,
}

impl ValueBitmaps {
    fn slot(&mut self, value: &str) -> usize {
        if let Some(&slot) = self.slots.get(value) {
            return slot;
        }
        self.bitmaps.push(BitmapBuilder::default());
        self.slots.insert(value.to_string(), self.bitmaps.len() - 1);
        self.bitmaps.len() - 1
    }
}

/// Builds a bitmap from ids that mostly arrive in increasing order (users files are read in
/// row-id order, facts come grouped by user): ids are buffered and appended in sorted runs, which
/// avoids roaring's per-insert search; an id out of order is inserted the slow way.
#[derive(Debug, Default, Clone)]
pub struct BitmapBuilder {
    bitmap: RoaringBitmap,
    pending: Vec<u32>,
    /// Ids added, repeats included.
    adds: u64,
}

impl BitmapBuilder {
    const FLUSH_AT: usize = 256;

    pub fn add(&mut self, id: u32) {
        self.adds += 1;
        if self.pending.last().is_some_and(|&last| last >= id) {
            self.flush();
        }
        self.pending.push(id);
        if self.pending.len() >= Self::FLUSH_AT {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // Sorted and above the current maximum: one append; otherwise insert one by one.
        if self.bitmap.max().is_none_or(|max| max < self.pending[0]) {
            let appended = self.bitmap.append(self.pending.iter().copied());
            debug_assert!(appended.is_ok(), "pending ids are strictly increasing");
        } else {
            self.bitmap.extend(self.pending.iter().copied());
        }
        self.pending.clear();
    }

    pub fn merge(&mut self, mut other: BitmapBuilder) {
        self.flush();
        other.flush();
        self.adds += other.adds;
        self.bitmap |= other.bitmap;
    }

    /// Whether some id was added more than once.
    pub fn has_repeats(&mut self) -> bool {
        self.flush();
        self.adds != self.bitmap.len()
    }

    pub fn finish(mut self) -> RoaringBitmap {
        self.flush();
        self.bitmap
    }
}

fn add(bitmap: &mut BitmapBuilder, id: u32) {
    bitmap.add(id);
}

/// Builds value and NULL bitmaps for every low-cardinality users column (text, boolean, integer),
/// and bit-sliced range indexes for every integer and date column, reading only those columns of
/// the users files.
pub fn build_users_values(
    files: &[std::path::PathBuf],
    columns: &[ColumnDef],
) -> Result<BTreeMap<BitmapKey, RoaringBitmap>> {
    const NEVER: &[&str] = &[USER_ID, "name", "phone", "email"];
    let mut candidates: BTreeSet<String> = columns
        .iter()
        .filter(|c| matches!(c.ty, ColumnType::Utf8 | ColumnType::Boolean | ColumnType::Int32 | ColumnType::Int64))
        .filter(|c| !NEVER.contains(&c.name.as_str()))
        .map(|c| c.name.clone())
        .collect();
    let range_columns: BTreeSet<String> = columns
        .iter()
        .filter(|c| matches!(c.ty, ColumnType::Int32 | ColumnType::Int64 | ColumnType::Date))
        .map(|c| c.name.clone())
        .collect();
    // Row ids and values of the range columns, kept until the base (minimum) is known.
    let mut ranges: BTreeMap<String, (Vec<u32>, Vec<i64>)> = BTreeMap::new();
    let mut range_nulls: BTreeMap<String, BitmapBuilder> = BTreeMap::new();
    let mut values: BTreeMap<String, ValueBitmaps> = BTreeMap::new();
    let mut nulls: BTreeMap<String, BitmapBuilder> =
        candidates.iter().map(|c| (c.clone(), BitmapBuilder::default())).collect();
    for path in files {
        let file = File::open(path).io_context("open", path)?;
        let plain = ParquetRecordBatchReaderBuilder::try_new(file.try_clone().io_context("open", path)?)
            .map_err(|e| Error::corrupt(path, e.to_string()))?;
        // Text columns are read as dictionaries: a value is hashed once per batch, not per row.
        let hinted = Schema::new(
            plain
                .schema()
                .fields()
                .iter()
                .map(|f| {
                    if candidates.contains(f.name()) && f.data_type() == &DataType::Utf8 {
                        Arc::new(Field::new(
                            f.name(),
                            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                            f.is_nullable(),
                        ))
                    } else {
                        Arc::clone(f)
                    }
                })
                .collect::<Vec<_>>(),
        );
        drop(plain);
        let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
            file,
            ArrowReaderOptions::new().with_schema(Arc::new(hinted)),
        )
        .map_err(|e| Error::corrupt(path, e.to_string()))?;
        let file_columns: Vec<String> = builder.schema().fields().iter().map(|f| f.name().clone()).collect();
        let wanted: Vec<usize> = file_columns
            .iter()
            .enumerate()
            .filter(|(_, n)| candidates.contains(*n) || range_columns.contains(*n) || n.as_str() == ROW_ID_COLUMN)
            .map(|(i, _)| i)
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(65_536)
            .build()
            .map_err(|e| Error::corrupt(path, e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| Error::corrupt(path, e.to_string()))?;
            let ids = batch.column_by_name(ROW_ID_COLUMN).ok_or_else(|| Error::corrupt(path, "no row id column"))?;
            let ids = crate::store::typed::column::<UInt32Array>(path, ROW_ID_COLUMN, ids.as_ref())?.values();
            for name in &range_columns {
                let (ids_out, vals_out) = ranges.entry(name.clone()).or_default();
                let nulls_out = range_nulls.entry(name.clone()).or_default();
                let Some(col) = batch.column_by_name(name) else {
                    ids.iter().for_each(|id| nulls_out.add(*id));
                    continue;
                };
                for (row, id) in ids.iter().enumerate() {
                    if col.is_null(row) {
                        add(nulls_out, *id);
                        continue;
                    }
                    let v = match col.data_type() {
                        DataType::Int32 => i64::from(col.as_primitive::<Int32Type>().value(row)),
                        DataType::Int64 => col.as_primitive::<Int64Type>().value(row),
                        DataType::Date32 => i64::from(col.as_primitive::<Date32Type>().value(row)),
                        _ => continue,
                    };
                    ids_out.push(*id);
                    vals_out.push(v);
                }
            }
            let names: Vec<String> = candidates.iter().cloned().collect();
            for name in names {
                // Columns this (older) file lacks are NULL for all its rows.
                let Some(col) = batch.column_by_name(&name) else {
                    let null_bm = nulls.entry(name.clone()).or_default();
                    ids.iter().for_each(|id| null_bm.add(*id));
                    continue;
                };
                let bitmaps = values.entry(name.clone()).or_default();
                let null_bm = nulls.entry(name.clone()).or_default();
                if let Some(dict) = col.as_any_dictionary_opt().filter(|d| !d.values().is_empty()) {
                    let dict_values = crate::store::typed::column::<StringArray>(path, &name, dict.values().as_ref())?;
                    let slot_of: Vec<usize> = dict_values.iter().map(|v| bitmaps.slot(v.unwrap_or_default())).collect();
                    let keys = dict.normalized_keys();
                    for (row, id) in ids.iter().enumerate() {
                        if col.is_null(row) {
                            add(null_bm, *id);
                        } else {
                            add(&mut bitmaps.bitmaps[slot_of[keys[row]]], *id);
                        }
                    }
                } else {
                    for (row, id) in ids.iter().enumerate() {
                        if col.is_null(row) {
                            add(null_bm, *id);
                            continue;
                        }
                        let slot = match col.data_type() {
                            DataType::Utf8 => bitmaps.slot(col.as_string::<i32>().value(row)),
                            DataType::Boolean => {
                                bitmaps.slot(if col.as_boolean().value(row) { "true" } else { "false" })
                            }
                            DataType::Int32 => bitmaps.slot(&col.as_primitive::<Int32Type>().value(row).to_string()),
                            DataType::Int64 => bitmaps.slot(&col.as_primitive::<Int64Type>().value(row).to_string()),
                            _ => continue,
                        };
                        add(&mut bitmaps.bitmaps[slot], *id);
                    }
                }
                if bitmaps.bitmaps.len() > MAX_DISTINCT_VALUES {
                    candidates.remove(&name);
                    values.remove(&name);
                    nulls.remove(&name);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for name in &candidates {
        let ValueBitmaps { slots, mut bitmaps } = values.remove(name).unwrap_or_default();
        for (value, slot) in slots {
            out.insert((BitmapKind::Value, name.clone(), value), std::mem::take(&mut bitmaps[slot]).finish());
        }
        out.insert((BitmapKind::ValueColumn, name.clone(), String::new()), RoaringBitmap::new());
        out.insert((BitmapKind::Null, name.clone(), String::new()), nulls.remove(name).unwrap_or_default().finish());
    }
    for (name, (ids, vals)) in ranges {
        let null_bm = range_nulls.remove(&name).unwrap_or_default();
        let base = vals.iter().copied().min().unwrap_or(0);
        let span = vals.iter().map(|v| v.abs_diff(base)).max().unwrap_or(0);
        let bits = (64 - span.leading_zeros()).max(1);
        let mut slices = vec![BitmapBuilder::default(); bits as usize];
        for (id, v) in ids.iter().zip(&vals) {
            let offset = v.abs_diff(base);
            for (i, slice) in slices.iter_mut().enumerate() {
                if offset >> i & 1 == 1 {
                    add(slice, *id);
                }
            }
        }
        for (i, slice) in slices.into_iter().enumerate() {
            out.insert((BitmapKind::RangeBit, name.clone(), i.to_string()), slice.finish());
        }
        out.insert((BitmapKind::RangeBase, name.clone(), base.to_string()), RoaringBitmap::new());
        out.entry((BitmapKind::Null, name.clone(), String::new())).or_insert_with(|| null_bm.finish());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_without_some_users_loses_them_everywhere_and_the_keys_only_they_had() {
        let dir = tempfile::tempdir().unwrap();
        let (before, after) = (dir.path().join("a.idx"), dir.path().join("b.idx"));
        let key = |kind, name: &str, k: &str| (kind, name.to_string(), k.to_string());
        let mut bitmaps = BTreeMap::new();
        bitmaps.insert(key(BitmapKind::Tag, "vip", ""), RoaringBitmap::from_iter([1u32, 2, 3]));
        bitmaps.insert(key(BitmapKind::Tag, "only-two", ""), RoaringBitmap::from_iter([2u32]));
        bitmaps.insert(key(BitmapKind::TagRepeated, "only-two", ""), RoaringBitmap::new());
        bitmaps.insert(key(BitmapKind::TagRepeated, "vip", ""), RoaringBitmap::new());
        bitmaps.insert(key(BitmapKind::Value, "nickname", "bobby"), RoaringBitmap::from_iter([2u32]));
        bitmaps.insert(key(BitmapKind::ValueColumn, "nickname", ""), RoaringBitmap::new());
        bitmaps.insert(key(BitmapKind::Null, "nickname", ""), RoaringBitmap::from_iter([1u32, 3]));
        bitmaps.insert(key(BitmapKind::RangeBit, "points", "0"), RoaringBitmap::from_iter([2u32]));
        bitmaps.insert(key(BitmapKind::ActivityDay, "purchases", "20000"), RoaringBitmap::from_iter([2u32, 9]));
        crate::index::format::write_index(&before, &bitmaps).unwrap();
        write_index_without(&before, &RoaringBitmap::from_iter([2u32]), &after).unwrap();
        let file = IndexFile::open(&after).unwrap();
        let read = |k: BitmapKey| file.directory.get(&k).map(|e| file.read(*e).unwrap());
        assert_eq!(read(key(BitmapKind::Tag, "vip", "")), Some(RoaringBitmap::from_iter([1u32, 3])));
        assert_eq!(read(key(BitmapKind::Tag, "only-two", "")), None, "a tag left empty goes");
        assert_eq!(read(key(BitmapKind::TagRepeated, "only-two", "")), None, "with its mark");
        assert!(read(key(BitmapKind::TagRepeated, "vip", "")).is_some());
        assert_eq!(read(key(BitmapKind::Value, "nickname", "bobby")), None, "a value only they had goes");
        assert!(read(key(BitmapKind::ValueColumn, "nickname", "")).is_some());
        assert_eq!(read(key(BitmapKind::Null, "nickname", "")), Some(RoaringBitmap::from_iter([1u32, 3])));
        assert_eq!(read(key(BitmapKind::RangeBit, "points", "0")), Some(RoaringBitmap::new()), "bit slices stay");
        assert_eq!(read(key(BitmapKind::ActivityDay, "purchases", "20000")), Some(RoaringBitmap::from_iter([9u32])));
    }

    #[test]
    fn an_index_with_new_columns_replaces_only_their_users_bitmaps() {
        let dir = tempfile::tempdir().unwrap();
        let (before, after) = (dir.path().join("a.idx"), dir.path().join("b.idx"));
        let key = |kind, name: &str, k: &str| (kind, name.to_string(), k.to_string());
        let mut bitmaps = BTreeMap::new();
        bitmaps.insert(key(BitmapKind::Tag, "tier", ""), RoaringBitmap::from_iter([1u32]));
        bitmaps.insert(key(BitmapKind::Value, "tier", "gold"), RoaringBitmap::from_iter([1u32, 2]));
        bitmaps.insert(key(BitmapKind::Value, "tier", "silver"), RoaringBitmap::from_iter([3u32]));
        bitmaps.insert(key(BitmapKind::ValueColumn, "tier", ""), RoaringBitmap::new());
        bitmaps.insert(key(BitmapKind::Value, "city", "x"), RoaringBitmap::from_iter([1u32, 2, 3]));
        bitmaps.insert(key(BitmapKind::RangeBase, "points", "7"), RoaringBitmap::new());
        crate::index::format::write_index(&before, &bitmaps).unwrap();
        let mut values = BTreeMap::new();
        values.insert(key(BitmapKind::Value, "tier", "gold"), RoaringBitmap::from_iter([1u32, 2, 3]));
        values.insert(key(BitmapKind::ValueColumn, "tier", ""), RoaringBitmap::new());
        values.insert(key(BitmapKind::RangeBase, "points", "0"), RoaringBitmap::new());
        let columns: BTreeSet<String> = ["tier", "points"].into_iter().map(String::from).collect();
        write_index_with_columns(&before, &columns, &values, &after).unwrap();
        let file = IndexFile::open(&after).unwrap();
        let keys: Vec<BitmapKey> = file.directory.keys().cloned().collect();
        let expected: Vec<BitmapKey> = vec![
            key(BitmapKind::Tag, "tier", ""),
            key(BitmapKind::Value, "city", "x"),
            key(BitmapKind::Value, "tier", "gold"),
            key(BitmapKind::RangeBase, "points", "0"),
            key(BitmapKind::ValueColumn, "tier", ""),
        ];
        assert_eq!(keys, expected, "the silver bitmap and the old base go; a tag named like the column stays");
        let gold = file.read(file.directory[&key(BitmapKind::Value, "tier", "gold")]).unwrap();
        assert_eq!(gold, RoaringBitmap::from_iter([1u32, 2, 3]));
        let stray = BTreeMap::from([(key(BitmapKind::Value, "city", "y"), RoaringBitmap::new())]);
        assert!(write_index_with_columns(&before, &columns, &stray, &after).is_err());
    }

    #[test]
    fn month_start_is_the_first_of_the_month() {
        let day = |y, m, d| i64::from(chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap().num_days_from_ce()) - 719_163;
        assert_eq!(month_start(day(2026, 11, 24)), day(2026, 11, 1));
        assert_eq!(month_start(day(2024, 2, 29)), day(2024, 2, 1));
        assert_eq!(month_start(day(2024, 3, 1)), day(2024, 3, 1));
        assert_eq!(month_start(day(1969, 12, 31)), day(1969, 12, 1));
        assert_eq!(month_start(0), 0);
    }

    #[test]
    fn streams_keep_every_entry_whatever_the_order_and_distance() {
        let mut streams = Streams::default();
        let (a, b) = (streams.slot("s=a"), streams.slot("s=b"));
        let mut expected: BTreeMap<(String, i64), RoaringBitmap> = BTreeMap::new();
        let mut add = |streams: &mut Streams, slot: u32, name: &str, day: i64, id: u32| {
            streams.add(slot, day, id);
            expected.entry((name.to_string(), day)).or_default().insert(id);
        };
        // Out of order, duplicated, and days centuries apart (the slow path).
        for (day, id) in [(20_000, 9), (20_000, 3), (20_000, 3), (19_999, 1), (-400_000, 7), (900_000, 2)] {
            add(&mut streams, a, "s=a", day, id);
        }
        for id in (0..100_000).rev() {
            add(&mut streams, b, "s=b", 20_000 + i64::from(id % 3), id);
        }
        let mut other = Streams::default();
        let c = other.slot("s=a");
        other.add(c, 20_000, 4);
        expected.entry(("s=a".to_string(), 20_000)).or_default().insert(4);
        streams.merge(other);
        let got: BTreeMap<(String, i64), RoaringBitmap> = streams
            .into_days()
            .into_iter()
            .flat_map(|(name, days)| days.into_iter().map(move |(day, bm)| ((name.clone(), day), bm)))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn all_purchases_is_the_union_of_the_channel_streams_with_months() {
        let ts = arrow::array::TimestampMicrosecondArray::from(vec![
            Some(crate::index::DAY_MICROS * 20_000 + 5),
            Some(crate::index::DAY_MICROS * 20_001),
            Some(crate::index::DAY_MICROS * 20_001 + 1),
            None,
        ]);
        let channel = arrow::array::StringArray::from(vec![Some("app"), None, Some("web"), Some("app")]);
        let product = arrow::array::StringArray::from(vec![Some("p1"), Some("p2"), None, Some("p1")]);
        let categories = ProductCategories::new([("p1".to_string(), "toys".to_string())].into_iter().collect());
        let mut delta = IndexDelta::default();
        delta.add_purchases(&ts, &channel, &product, Some(&categories), &[1, 2, 3, 4]);
        let keyed = delta.into_keyed();
        let get = |kind, name: &str, key: i64| keyed.get(&(kind, name.to_string(), key.to_string())).cloned();
        assert_eq!(get(BitmapKind::ActivityDay, "purchases", 20_000), Some(RoaringBitmap::from_iter([1])));
        assert_eq!(get(BitmapKind::ActivityDay, "purchases", 20_001), Some(RoaringBitmap::from_iter([2, 3])));
        assert_eq!(
            get(BitmapKind::ActivityDay, "purchases.channel_id=web", 20_001),
            Some(RoaringBitmap::from_iter([3]))
        );
        assert_eq!(
            get(BitmapKind::ActivityDay, "purchases.category=toys", 20_000),
            Some(RoaringBitmap::from_iter([1]))
        );
        // The stream of purchases without a channel only feeds the union.
        assert!(keyed.keys().all(|(_, name, _)| name != "purchases.channel_id"));
        let month = month_start(20_000);
        assert_eq!(get(BitmapKind::ActivityMonth, "purchases", month), Some(RoaringBitmap::from_iter([1, 2, 3])));
    }
}
