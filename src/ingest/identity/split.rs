//! A split resolved on the part of the identifier graph it touches (docs/identity.md, "Undo"):
//! `UNLINK 'a', 'b'` and `UNLINK IDENTIFIER` change only the persons of one component of the
//! graph (users joined through values that can join: not denied, not hubs), so the previous
//! version's stored state is resumed, that component's entries start afresh and its links —
//! read from the links files by row, numbered as they were among all links — are decided
//! again under the new split. What changes is written small: the links whose outcome changed
//! as an overrides file beside the links (the links files are kept), the state as one more
//! delta, and the persons file. Anything this cannot do exactly (no stored state, a state made
//! under other rules or splits, links that do not match it) returns `None`: the caller then
//! resolves every link from the start.
//!
//! ```text
//! state (base + deltas) ─ known pairs ─ component of the split ─┐
//! links files ─ row ids, status ─ the component's links ────────┼─ Resolver::replay ─ changed outcomes ─ overrides
//!             ─ ts, seq ─ each one's number among all links ────┘                  ─ state delta, persons
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection};
use roaring::RoaringBitmap;
use rustc_hash::FxHashMap;

use super::{
    DELTA_MAGIC, Record, Splits, StatePart, StateReader, kinds_and_rules, opt_text, read_columns, read_columns_in,
    resume_state, status, stored_column, value_key, write_persons, write_state,
};
use crate::error::{Error, IoContext, Result};
use crate::index::dense::DenseSet;
use crate::ingest::identifiers::Normaliser;
use crate::ingest::resolve::Link;
use crate::ingest::row_ids::IdMap;
use crate::store::identity::{Resolution, new_resolution_file};
use crate::store::{StoreWriter, layout};
use crate::tables::{ID_TYPE, ID_VALUE, ROW_ID_COLUMN, TS};

/// Where a split starts.
#[derive(Debug, Clone)]
pub(crate) enum SplitStart {
    /// Two user rows that must never be one person.
    Users(u32, u32),
    /// A (normalised) identifier that links nobody any more.
    Value { id_type: String, id_value: String },
    /// Users forgotten: their links leave the resolution (marked `forgotten` among the
    /// overrides until a purge writes the links again without them), and the values they held
    /// count only the users left.
    Forget(RoaringBitmap),
}

/// The status that hides a forgotten user's link (and invalid record) in every reader of the
/// links until a purge writes the links files again without it.
pub const FORGOTTEN: &str = "forgotten";

/// The overrides schema: a link (by its sequence number) and the status and reason it has now.
pub fn overrides_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::UInt64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, true),
    ]))
}

/// A link's status and reason.
pub type LinkStatus = (String, Option<String>);

/// The overrides of a links file: per sequence number, the status and reason that replace the
/// stored ones.
pub fn read_link_overrides(path: &Path) -> Result<BTreeMap<u64, LinkStatus>> {
    let mut out = BTreeMap::new();
    read_columns(path, &["seq", "status", "reason"], |b| {
        let corrupt = || Error::corrupt(path, "an identity link overrides file lacks a column");
        let seqs = stored_column::<UInt64Array>(path, b, "seq", corrupt)?;
        let status = opt_text(b, "status").ok_or_else(corrupt)?;
        let reason = opt_text(b, "reason").ok_or_else(corrupt)?;
        for i in 0..b.num_rows() {
            out.insert(
                seqs.value(i),
                (status.value(i).to_string(), reason.is_valid(i).then(|| reason.value(i).to_string())),
            );
        }
        Ok(())
    })?;
    Ok(out)
}

fn write_link_overrides(w: &StoreWriter, version: u64, overrides: &BTreeMap<u64, LinkStatus>) -> Result<String> {
    let (relative, abs) = w.new_file(new_resolution_file(version, "link-overrides"))?;
    let mut writer = ArrowWriter::try_new(crate::store::io::create(&abs)?, overrides_schema(), None)?;
    let seqs: UInt64Array = overrides.keys().copied().collect();
    let status: StringArray = overrides.values().map(|(s, _)| Some(s.as_str())).collect();
    let reason: StringArray = overrides.values().map(|(_, r)| r.as_deref()).collect();
    writer
        .write(&RecordBatch::try_new(overrides_schema(), vec![Arc::new(seqs), Arc::new(status), Arc::new(reason)])?)?;
    let mut file = writer.into_inner()?;
    file.sync_all().io_context("fsync", &abs)?;
    Ok(relative)
}

/// One link of the component, as read from its links file.
struct Found {
    record: Record,
    stored: LinkStatus,
}

/// Resolves `previous` again after the split `start` (already among `splits`), on the split's
/// component only (see the module doc). `fingerprints`: the state's before the split and after.
/// `forgotten`: every user forgotten (those of a `Forget` start included), whose links stay in
/// the links files until a purge and are read by no decision.
#[allow(clippy::too_many_arguments)]
pub(super) fn resolve_split(
    w: &StoreWriter,
    root: &Path,
    previous: &Resolution,
    users: u32,
    ids: &IdMap,
    normaliser: &Normaliser,
    splits: &Splits,
    start: &SplitStart,
    forgotten: &RoaringBitmap,
    (before, after): (u64, u64),
) -> Result<Option<Resolution>> {
    let Some(base_file) = &previous.state_base else { return Ok(None) };
    let open = || -> Result<Vec<StateReader>> {
        let mut parts = vec![StateReader::open(root, base_file, super::BASE_MAGIC)?];
        for f in &previous.state_deltas {
            parts.push(StateReader::open(root, f, DELTA_MAGIC)?);
        }
        Ok(parts)
    };
    let mut parts = open()?;
    if parts.last().is_none_or(|p| p.fingerprint != before) {
        return Ok(None);
    }
    let rules = normaliser.rules();
    let (kinds, kind_rules) = kinds_and_rules(rules);
    // The blocked value's id (none when no link ever gave it: nothing changes).
    let blocked_key = match start {
        SplitStart::Value { id_type, id_value } => Some(value_key(id_type, id_value)),
        SplitStart::Users(..) | SplitStart::Forget(_) => None,
    };
    let (mut blocked, mut next_id) = (Vec::new(), 0u32);
    for part in parts.iter_mut() {
        let count = part.count::<16>()?;
        part.keys(count, |key| {
            if Some(key) == blocked_key {
                blocked.push(next_id);
            }
            next_id += 1;
        })?;
    }
    // Every (user, value) pair processed: the graph the component is found in.
    let mut known: Vec<u64> = Vec::new();
    for part in parts.iter_mut() {
        let count = part.count::<8>()?;
        known.reserve_exact(count);
        part.known(count, |pair| known.push(pair))?;
    }
    let (mut resolver, next_seq) = resume_state(root, base_file, &mut parts, kind_rules, rules.hub_limit, splits)?;
    drop(parts);
    let pairs = Pairs::of(&known);
    drop(known);
    // The values the users being forgotten held: they count only the users left.
    let mut recount: Vec<u32> = Vec::new();
    let mut start_users: Vec<u32> = match start {
        SplitStart::Users(a, b) => {
            // Users of two persons were never together, so no union was refused for them: the
            // pair changes nothing but the rules later links are decided under.
            if resolver.same_person(*a, *b) { vec![*a, *b] } else { Vec::new() }
        }
        SplitStart::Value { .. } => {
            let mut on = Vec::new();
            for &v in &blocked {
                on.extend_from_slice(pairs.users_of(v));
            }
            on.retain(|u| !forgotten.contains(*u));
            on
        }
        SplitStart::Forget(removed) => {
            let mut on = Vec::new();
            for u in removed.iter() {
                let values = pairs.values_of(u);
                if !values.is_empty() {
                    on.push(u);
                    recount.extend_from_slice(values);
                }
            }
            recount.sort_unstable();
            recount.dedup();
            on
        }
    };
    let forgetting = match start {
        SplitStart::Forget(removed) => removed.clone(),
        _ => RoaringBitmap::new(),
    };
    let mut overrides = match &previous.link_overrides {
        Some(f) => read_link_overrides(&layout::resolve(root, f))?,
        None => BTreeMap::new(),
    };
    let (mut linked, mut rejected) = (previous.linked, previous.rejected.clone());
    let version = w.next_version();
    let mut new_persons = None;
    // The rows of the users being forgotten, when the component's pass over the links found them.
    let mut forgotten_rows: Option<Vec<(u64, LinkStatus)>> = None;
    if !start_users.is_empty() {
        // Every user left of a value a forgotten user held: with fewer users, a hub may join
        // persons again, so all of them are decided again.
        for &v in &recount {
            start_users.extend(pairs.users_of(v).iter().filter(|u| !forgotten.contains(**u)));
        }
        // Forgotten users (their pairs stay in the state) lead nowhere.
        let users_of = |v: u32, out: &mut Vec<u32>| {
            out.extend(pairs.users_of(v).iter().filter(|u| !forgotten.contains(**u)));
        };
        let values_of = |u: u32, out: &mut Vec<u32>| out.extend_from_slice(pairs.values_of(u));
        let (cu, cv) = resolver.component(&start_users, values_of, users_of);
        drop(pairs);
        let members: RoaringBitmap = cu.iter().copied().collect();
        let Some((found, gone)) =
            component_links(root, previous, &members, forgotten, &forgetting, resolver.processed())?
        else {
            return Ok(None);
        };
        forgotten_rows = Some(gone);
        // Their value ids, from the keys (a second pass over them: only the few wanted are kept).
        let mut wanted: FxHashMap<u128, u32> =
            found.iter().map(|(_, f)| (value_key(&f.record.id_type, &f.record.id_value), u32::MAX)).collect();
        let mut id = 0u32;
        for part in open()?.iter_mut() {
            let count = part.count::<16>()?;
            part.keys(count, |key| {
                if let Some(slot) = wanted.get_mut(&key) {
                    *slot = id;
                }
                id += 1;
            })?;
        }
        let mut links: Vec<(u32, Link)> = Vec::with_capacity(found.len());
        for (number, f) in &found {
            let r = &f.record;
            let (Some(kind), Some(&value)) =
                (kinds.iter().position(|k| *k == &*r.id_type), wanted.get(&value_key(&r.id_type, &r.id_value)))
            else {
                return Ok(None);
            };
            if value == u32::MAX {
                return Ok(None);
            }
            let denied = normaliser.denied(&r.id_value) || splits.blocks(&r.id_type, &r.id_value);
            links.push((*number, Link { user: r.row, kind: kind as u16, value, denied }));
        }
        // A value's count is its users with a link to it that is not denied: the users left
        // are all in the component, so its links count them.
        if !recount.is_empty() {
            let mut pairs: Vec<(u32, u32)> = links
                .iter()
                .filter(|(_, l)| !l.denied && recount.binary_search(&l.value).is_ok())
                .map(|(_, l)| (l.value, l.user))
                .collect();
            pairs.sort_unstable();
            pairs.dedup();
            let mut counts: Vec<(u32, u32)> = recount.iter().map(|&v| (v, 0)).collect();
            for (v, _) in pairs {
                if let Ok(at) = recount.binary_search(&v) {
                    counts[at].1 += 1;
                }
            }
            resolver.set_counts(&counts);
        }
        let before_persons = resolver.person_ids(users);
        let Some(outcomes) = resolver.replay(&cu, &cv, &blocked, &links) else { return Ok(None) };
        let now = resolver.person_ids(users);
        // A forget writes the persons again in any case: the old file names the forgotten.
        new_persons = Some(now).filter(|now| *now != before_persons || !forgetting.is_empty());
        for ((_, f), o) in found.iter().zip(outcomes) {
            let (s, reason) = status(Some(o), &f.record, rules, splits);
            let now: LinkStatus = (s.to_string(), reason);
            let was = overrides.get(&f.record.seq).cloned().unwrap_or_else(|| f.stored.clone());
            if now != was {
                count(&was.0, &mut linked, &mut rejected, false);
                count(&now.0, &mut linked, &mut rejected, true);
            }
            if now == f.stored {
                overrides.remove(&f.record.seq);
            } else {
                overrides.insert(f.record.seq, now);
            }
        }
    }
    // The forgotten users' links, invalid records included, leave every count and every view.
    let mut link_rows = previous.link_rows;
    let mut forgotten_links = previous.forgotten_links;
    if !forgetting.is_empty() {
        let rows = match forgotten_rows {
            Some(rows) => rows,
            None => links_of_users(root, previous, &forgetting)?,
        };
        for (seq, stored) in rows {
            let was = overrides.get(&seq).cloned().unwrap_or(stored);
            if was.0 == FORGOTTEN {
                continue;
            }
            count(&was.0, &mut linked, &mut rejected, false);
            overrides.insert(seq, (FORGOTTEN.to_string(), None));
            link_rows = link_rows.saturating_sub(1);
            forgotten_links += 1;
        }
        if new_persons.is_none() {
            new_persons = Some(resolver.person_ids(users));
        }
    }
    let link_overrides = match overrides.is_empty() {
        true => None,
        false if previous.link_overrides.is_some() && start_users.is_empty() && forgetting.is_empty() => {
            previous.link_overrides.clone()
        }
        false => Some(write_link_overrides(w, version, &overrides)?),
    };
    let (persons, users_count, person_count) = match new_persons {
        Some(persons) => write_persons(w, version, &persons, ids)?,
        None => (previous.persons.clone(), previous.users, previous.person_count),
    };
    // The state after the split, under its new fingerprint: later imports resume from it.
    let part = StatePart {
        fingerprint: after,
        next_seq,
        keys: Vec::new(),
        known: Vec::new(),
        resolver: resolver.save_delta(),
    };
    let mut state_deltas = previous.state_deltas.clone();
    state_deltas.push(write_state(w, version, &part, DELTA_MAGIC, "state-delta")?);
    Ok(Some(Resolution {
        links: previous.links.clone(),
        more_links: previous.more_links.clone(),
        link_overrides,
        state: None,
        state_base: previous.state_base.clone(),
        state_deltas,
        persons,
        link_rows,
        forgotten_links,
        users: users_count,
        person_count,
        linked,
        rejected,
    }))
}

/// Counts one link of `status` in (`add`) or out of the resolution's totals.
fn count(status: &str, linked: &mut u64, rejected: &mut BTreeMap<String, u64>, add: bool) {
    if matches!(status, "linked" | "joined") {
        *linked = if add { *linked + 1 } else { linked.saturating_sub(1) };
        return;
    }
    let n = rejected.entry(status.to_string()).or_default();
    *n = if add { *n + 1 } else { n.saturating_sub(1) };
    if *n == 0 {
        rejected.remove(status);
    }
}

/// Every link (not an invalid record) of the users of `members` who are not `forgotten`, each
/// with its number among all links in processing order, sorted by it, and the rows of the users
/// of `forgetting` (read in the same pass); `None` when the links do not number `processed`.
fn component_links(
    root: &Path,
    resolution: &Resolution,
    members: &RoaringBitmap,
    forgotten: &RoaringBitmap,
    forgetting: &RoaringBitmap,
    processed: u32,
) -> Result<Option<ComponentLinks>> {
    let files: Vec<std::path::PathBuf> =
        resolution.link_files().into_iter().map(|f| layout::resolve(root, f)).collect();
    let (members, forgotten, forgetting) =
        (DenseSet::of(members)?, DenseSet::of(forgotten)?, DenseSet::of(forgetting)?);
    // The component's rows of each file, and every row (invalid records too) of the users being
    // forgotten.
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); files.len()];
    let mut gone_rows: Vec<Vec<usize>> = vec![Vec::new(); files.len()];
    for (f, path) in files.iter().enumerate() {
        let mut at = 0usize;
        read_columns(path, &[ROW_ID_COLUMN, "status"], |b| {
            let corrupt = || Error::corrupt(path, "an identity links file lacks a column");
            let ids = stored_column::<UInt32Array>(path, b, ROW_ID_COLUMN, corrupt)?;
            let status = opt_text(b, "status").ok_or_else(corrupt)?;
            for i in 0..b.num_rows() {
                let row = ids.value(i);
                if forgetting.contains(row) {
                    gone_rows[f].push(at + i);
                } else if members.contains(row) && !forgotten.contains(row) && status.value(i) != "invalid" {
                    rows[f].push(at + i);
                }
            }
            at += b.num_rows();
            Ok(())
        })?;
    }
    let mut found: Vec<Found> = Vec::new();
    for (path, rows) in files.iter().zip(&rows) {
        read_rows(path, rows, &mut found)?;
    }
    // Each one's number: how many links come before it in (ts, seq) order (keys as one integer
    // each, ordered as the pairs are: every link of the files is searched among them).
    let order = |ts: i64, seq: u64| (u128::from((ts as u64) ^ (1 << 63)) << 64) | u128::from(seq);
    let mut keys: Vec<(u128, usize)> =
        found.iter().enumerate().map(|(i, f)| (order(f.record.ts.unwrap_or(i64::MIN), f.record.seq), i)).collect();
    keys.sort_unstable();
    let sorted = RankIndex::new(keys.iter().map(|(k, _)| *k).collect());
    // Every link's rank, on every core: each thread counts the row groups it takes.
    let groups: Vec<(usize, usize)> = files
        .iter()
        .enumerate()
        .map(|(f, path)| Ok((0..row_group_count(path)?).map(move |g| (f, g))))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let next_group = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(groups.len()).max(1);
    let counted: Vec<Result<(Vec<u32>, u64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<(Vec<u32>, u64)> {
                    let mut below = vec![0u32; keys.len() + 1];
                    let mut links = 0u64;
                    loop {
                        let at = next_group.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(f, group)) = groups.get(at) else { break };
                        let path = &files[f];
                        read_columns_in(path, &[TS, "seq", "status"], Some(vec![group]), |b| {
                            let corrupt = || Error::corrupt(path, "an identity links file lacks a column");
                            let ts = stored_column::<TimestampMicrosecondArray>(path, b, TS, corrupt)?;
                            let seq = stored_column::<UInt64Array>(path, b, "seq", corrupt)?;
                            let status = opt_text(b, "status").ok_or_else(corrupt)?;
                            for i in 0..b.num_rows() {
                                if status.value(i) == "invalid" {
                                    continue;
                                }
                                let key = order(if ts.is_valid(i) { ts.value(i) } else { i64::MIN }, seq.value(i));
                                below[sorted.at_most(key)] += 1;
                                links += 1;
                            }
                            Ok(())
                        })?;
                    }
                    Ok((below, links))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::Internal("a links reader thread panicked".into()))))
            .collect()
    });
    let mut below = vec![0u32; keys.len() + 1];
    let mut links = 0u64;
    for part in counted {
        let (counts, n) = part?;
        below.iter_mut().zip(counts).for_each(|(b, c)| *b += c);
        links += n;
    }
    if links != u64::from(processed) {
        return Ok(None);
    }
    let mut numbered: Vec<(u32, usize)> = Vec::with_capacity(keys.len());
    let mut before = 0u32;
    for (j, (_, i)) in keys.iter().enumerate() {
        before += below[j];
        numbered.push((before, *i));
    }
    let mut slots: Vec<Option<Found>> = found.into_iter().map(Some).collect();
    let numbered = numbered.into_iter().filter_map(|(n, i)| slots[i].take().map(|f| (n, f))).collect();
    let mut gone: Vec<Found> = Vec::new();
    for (path, rows) in files.iter().zip(&gone_rows) {
        read_rows(path, rows, &mut gone)?;
    }
    Ok(Some((numbered, gone.into_iter().map(|f| (f.record.seq, f.stored)).collect())))
}

/// A component's links, each with its number among all links (see [`component_links`]), and the
/// sequence number and stored status of every row of the users being forgotten.
type ComponentLinks = (Vec<(u32, Found)>, Vec<(u64, LinkStatus)>);

/// The (user, value) pairs the state holds, both ways: each user's values and each value's
/// users, laid out by a counting sort (two arrays each, no sort of the pairs).
struct Pairs {
    user_starts: Vec<u32>,
    user_values: Vec<u32>,
    value_starts: Vec<u32>,
    value_users: Vec<u32>,
}

impl Pairs {
    /// From pairs `user << 32 | value`, in any order.
    fn of(known: &[u64]) -> Pairs {
        let (user_starts, user_values) = Self::grouped(known, |k| (k >> 32) as u32, |k| k as u32);
        let (value_starts, value_users) = Self::grouped(known, |k| k as u32, |k| (k >> 32) as u32);
        Pairs { user_starts, user_values, value_starts, value_users }
    }

    /// The items of `known` grouped by `key` (`starts[k]..starts[k + 1]`), each as `item`.
    fn grouped(known: &[u64], key: impl Fn(u64) -> u32, item: impl Fn(u64) -> u32) -> (Vec<u32>, Vec<u32>) {
        let keys = known.iter().map(|&k| key(k) as usize + 1).max().unwrap_or(0);
        let mut starts = vec![0u32; keys + 1];
        for &k in known {
            starts[key(k) as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut at = starts.clone();
        let mut items = vec![0u32; known.len()];
        for &k in known {
            let slot = &mut at[key(k) as usize];
            items[*slot as usize] = item(k);
            *slot += 1;
        }
        (starts, items)
    }

    fn range<'a>(starts: &[u32], items: &'a [u32], key: u32) -> &'a [u32] {
        match (starts.get(key as usize), starts.get(key as usize + 1)) {
            (Some(&from), Some(&to)) => &items[from as usize..to as usize],
            _ => &[],
        }
    }

    fn values_of(&self, user: u32) -> &[u32] {
        Self::range(&self.user_starts, &self.user_values, user)
    }

    fn users_of(&self, value: u32) -> &[u32] {
        Self::range(&self.value_starts, &self.value_users, value)
    }
}

/// Sorted keys, and where each bucket of their high 64 bits starts among them: how many keys
/// are at most a given one is a bucket lookup and a search within it (every link of the files
/// is ranked among the component's, and a binary search over them all missed the cache).
struct RankIndex {
    sorted: Vec<u128>,
    low: u64,
    shift: u32,
    starts: Vec<u32>,
}

impl RankIndex {
    fn new(sorted: Vec<u128>) -> RankIndex {
        let high = |k: u128| (k >> 64) as u64;
        let (low, top) = (sorted.first().map_or(0, |k| high(*k)), sorted.last().map_or(0, |k| high(*k)));
        let buckets = sorted.len().next_power_of_two().max(1) as u64;
        let mut shift = 0u32;
        while shift < 64 && ((top - low) >> shift) >= buckets {
            shift += 1;
        }
        let count = (((top - low) >> shift) + 2) as usize;
        let mut starts = vec![0u32; count];
        let mut at = 0usize;
        for (b, start) in starts.iter_mut().enumerate() {
            while at < sorted.len() && (((high(sorted[at]) - low) >> shift) as usize) < b {
                at += 1;
            }
            *start = at as u32;
        }
        RankIndex { sorted, low, shift, starts }
    }

    /// How many keys are at most `key`.
    fn at_most(&self, key: u128) -> usize {
        let Some(&last) = self.sorted.last() else { return 0 };
        let high = (key >> 64) as u64;
        if high < self.low {
            return 0;
        }
        if key >= last {
            return self.sorted.len();
        }
        let b = ((high - self.low) >> self.shift) as usize;
        let (from, to) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        from + self.sorted[from..to].partition_point(|k| *k <= key)
    }
}

/// The sequence number and stored status of every row (links and invalid records) of the users
/// `users` in the links files.
fn links_of_users(root: &Path, resolution: &Resolution, users: &RoaringBitmap) -> Result<Vec<(u64, LinkStatus)>> {
    let users = DenseSet::of(users)?;
    let mut out = Vec::new();
    for f in resolution.link_files() {
        let path = layout::resolve(root, f);
        read_columns(&path, &[ROW_ID_COLUMN, "seq", "status", "reason"], |b| {
            let corrupt = || Error::corrupt(&path, "an identity links file lacks a column");
            let ids = stored_column::<UInt32Array>(&path, b, ROW_ID_COLUMN, corrupt)?;
            let seq = stored_column::<UInt64Array>(&path, b, "seq", corrupt)?;
            let (status, reason) = (opt_text(b, "status").ok_or_else(corrupt)?, opt_text(b, "reason"));
            for i in 0..b.num_rows() {
                if users.contains(ids.value(i)) {
                    let reason = reason.as_ref().filter(|r| r.is_valid(i)).map(|r| r.value(i).to_string());
                    out.push((seq.value(i), (status.value(i).to_string(), reason)));
                }
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// How many row groups a Parquet file has.
fn row_group_count(path: &Path) -> Result<usize> {
    let file = std::fs::File::open(path).io_context("open", path)?;
    Ok(ParquetRecordBatchReaderBuilder::try_new(file)?.metadata().num_row_groups())
}

/// Reads rows `rows` (ascending) of a links file into `out`.
fn read_rows(path: &Path, rows: &[usize], out: &mut Vec<Found>) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let file = std::fs::File::open(path).io_context("open", path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let total = builder.metadata().file_metadata().num_rows() as usize;
    let names = [ROW_ID_COLUMN, ID_TYPE, ID_VALUE, TS, "seq", "status", "reason"];
    let schema = builder.schema().clone();
    let indices: Vec<usize> = names.iter().filter_map(|n| schema.index_of(n).ok()).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let ranges = rows.iter().map(|&r| r..r + 1);
    let selection = RowSelection::from_consecutive_ranges(ranges, total);
    let mut names_cache: FxHashMap<String, Arc<str>> = FxHashMap::default();
    for batch in builder.with_projection(mask).with_row_selection(selection).build()? {
        let b = batch?;
        let corrupt = || Error::corrupt(path, "an identity links file lacks a column");
        let ids = stored_column::<UInt32Array>(path, &b, ROW_ID_COLUMN, corrupt)?;
        let (types, values) = (opt_text(&b, ID_TYPE).ok_or_else(corrupt)?, opt_text(&b, ID_VALUE).ok_or_else(corrupt)?);
        let ts = stored_column::<TimestampMicrosecondArray>(path, &b, TS, corrupt)?;
        let seq = stored_column::<UInt64Array>(path, &b, "seq", corrupt)?;
        let (status, reason) = (opt_text(&b, "status").ok_or_else(corrupt)?, opt_text(&b, "reason"));
        for i in 0..b.num_rows() {
            let id_type = names_cache.entry(types.value(i).to_string()).or_insert_with(|| Arc::from(types.value(i)));
            out.push(Found {
                record: Record {
                    row: ids.value(i),
                    id_type: Arc::clone(id_type),
                    id_value: values.value(i).to_string(),
                    source: None,
                    ts: ts.is_valid(i).then(|| ts.value(i)),
                    seq: seq.value(i),
                    invalid: None,
                },
                stored: (
                    status.value(i).to_string(),
                    reason.as_ref().filter(|r| r.is_valid(i)).map(|r| r.value(i).to_string()),
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn a_rank_index_counts_the_keys_at_most_a_key_as_a_search_does() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for n in [0usize, 1, 2, 7, 300] {
            let mut keys: Vec<u128> = (0..n)
                .map(|_| {
                    let ts: u64 =
                        if rng.random_bool(0.1) { 0 } else { rng.random_range(1u64 << 62..(1u64 << 62) + 5_000_000) };
                    (u128::from(ts) << 64) | u128::from(rng.random_range(0u64..50))
                })
                .collect();
            keys.sort_unstable();
            let index = RankIndex::new(keys.clone());
            for _ in 0..2_000 {
                let probe = match keys.get(rng.random_range(0..n.max(1))) {
                    Some(k) if rng.random_bool(0.5) => k.wrapping_add(rng.random_range(0..3)).wrapping_sub(1),
                    _ => {
                        (u128::from(rng.random::<u64>() >> rng.random_range(0..64)) << 64)
                            | u128::from(rng.random::<u8>())
                    }
                };
                assert_eq!(index.at_most(probe), keys.partition_point(|k| *k <= probe), "{n} keys, probe {probe}");
            }
        }
    }
}
