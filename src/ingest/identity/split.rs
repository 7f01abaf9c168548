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
    DELTA_MAGIC, Record, Splits, StatePart, StateReader, kinds_and_rules, opt_text, read_columns, resume_state, status,
    stored_column, value_key, write_persons, write_state,
};
use crate::error::{Error, IoContext, Result};
use crate::ingest::identifiers::Normaliser;
use crate::ingest::resolve::{Link, LinkKey};
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
}

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
        SplitStart::Users(..) => None,
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
    known.sort_unstable();
    let start_users: Vec<u32> = match start {
        SplitStart::Users(a, b) => {
            // Users of two persons were never together, so no union was refused for them: the
            // pair changes nothing but the rules later links are decided under.
            if resolver.same_person(*a, *b) { vec![*a, *b] } else { Vec::new() }
        }
        SplitStart::Value { .. } => {
            let mut on = Vec::new();
            for &v in &blocked {
                on.extend(known.iter().filter(|&&k| k as u32 == v).map(|&k| (k >> 32) as u32));
            }
            on
        }
    };
    let mut overrides = match &previous.link_overrides {
        Some(f) => read_link_overrides(&layout::resolve(root, f))?,
        None => BTreeMap::new(),
    };
    let (mut linked, mut rejected) = (previous.linked, previous.rejected.clone());
    let version = w.next_version();
    let mut new_persons = None;
    if !start_users.is_empty() {
        let by_value: Vec<u64> = {
            let mut v: Vec<u64> = known.iter().map(|k| k.rotate_left(32)).collect();
            v.sort_unstable();
            v
        };
        let range = |sorted: &[u64], id: u32, out: &mut Vec<u32>| {
            let lo = sorted.partition_point(|&k| k < u64::from(id) << 32);
            let hi = sorted.partition_point(|&k| k < (u64::from(id) + 1) << 32);
            out.extend(sorted[lo..hi].iter().map(|&k| k as u32));
        };
        let (cu, cv) =
            resolver.component(&start_users, |u, out| range(&known, u, out), |v, out| range(&by_value, v, out));
        drop((known, by_value));
        let members: RoaringBitmap = cu.iter().copied().collect();
        let Some(found) = component_links(root, previous, &members, resolver.processed())? else { return Ok(None) };
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
        let before_persons = resolver.person_ids(users);
        let Some(outcomes) = resolver.replay(&cu, &cv, &blocked, &links) else { return Ok(None) };
        new_persons = Some(resolver.person_ids(users)).filter(|now| *now != before_persons);
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
    let link_overrides = match overrides.is_empty() {
        true => None,
        false if previous.link_overrides.is_some() && start_users.is_empty() => previous.link_overrides.clone(),
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
        link_rows: previous.link_rows,
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

/// Every link (not an invalid record) of the users of `members`, each with its number among all
/// links in processing order, sorted by it; `None` when the links do not number `processed`.
fn component_links(
    root: &Path,
    resolution: &Resolution,
    members: &RoaringBitmap,
    processed: u32,
) -> Result<Option<Vec<(u32, Found)>>> {
    let files: Vec<std::path::PathBuf> =
        resolution.link_files().into_iter().map(|f| layout::resolve(root, f)).collect();
    // The component's rows of each file.
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); files.len()];
    for (f, path) in files.iter().enumerate() {
        let mut at = 0usize;
        read_columns(path, &[ROW_ID_COLUMN, "status"], |b| {
            let corrupt = || Error::corrupt(path, "an identity links file lacks a column");
            let ids = stored_column::<UInt32Array>(path, b, ROW_ID_COLUMN, corrupt)?;
            let status = opt_text(b, "status").ok_or_else(corrupt)?;
            for i in 0..b.num_rows() {
                if members.contains(ids.value(i)) && status.value(i) != "invalid" {
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
    // Each one's number: how many links come before it in (ts, seq) order.
    let mut keys: Vec<(LinkKey, usize)> = found
        .iter()
        .enumerate()
        .map(|(i, f)| (LinkKey { ts: f.record.ts.unwrap_or(i64::MIN), seq: f.record.seq }, i))
        .collect();
    keys.sort_unstable();
    let mut below = vec![0u32; keys.len() + 1];
    let mut links = 0u64;
    for path in &files {
        read_columns(path, &[TS, "seq", "status"], |b| {
            let corrupt = || Error::corrupt(path, "an identity links file lacks a column");
            let ts = stored_column::<TimestampMicrosecondArray>(path, b, TS, corrupt)?;
            let seq = stored_column::<UInt64Array>(path, b, "seq", corrupt)?;
            let status = opt_text(b, "status").ok_or_else(corrupt)?;
            for i in 0..b.num_rows() {
                if status.value(i) == "invalid" {
                    continue;
                }
                let key = LinkKey { ts: if ts.is_valid(i) { ts.value(i) } else { i64::MIN }, seq: seq.value(i) };
                below[keys.partition_point(|(k, _)| *k <= key)] += 1;
                links += 1;
            }
            Ok(())
        })?;
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
    Ok(Some(numbered.into_iter().filter_map(|(n, i)| slots[i].take().map(|f| (n, f))).collect()))
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
