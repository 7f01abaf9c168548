//! The import's identity phase (docs/identity.md): normalises `identities` rows as they are
//! loaded, then resolves the version's users into persons — the previous version's links
//! replayed, this import's new links (identities rows and users' phone and e-mail) added in
//! (ts, sequence) order — and writes the links with their outcomes and each user row's
//! `person_id` as the version's derived files.
//!
//! ```text
//! previous links file ─┐                                        ┌─ links file (every link, its outcome)
//! new identities files ├─ dedup (row, type, value) ─ Resolver ──┤
//! new users files ─────┘   seq = previous max + rank            └─ persons file (user_id, person_id)
//! ```

use std::collections::{BTreeMap, HashSet};

use rustc_hash::{FxHashMap, FxHashSet};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
    UInt32Array, UInt64Array,
};
use arrow::datatypes::{
    DataType, Date32Type, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType, UInt32Type,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::identifiers::Normaliser;
use super::reader::{SourceFile, TypedBatch};
use super::resolve::{KindRule, Link, LinkKey, Outcome, Resolver};
use super::row_ids::IdMap;
use crate::error::{Error, IoContext, Result};
use crate::store::identity::{EMAIL, IdentityRules, PHONE, Resolution, Split, new_resolution_file};
use crate::store::manifest::Manifest;
use crate::store::{StoreWriter, layout};
use crate::tables::{DAY_MICROS, ID_TYPE, ID_VALUE, ROW_ID_COLUMN, SOURCE, TS, Table, USER_ID};

/// The `source` of the links taken from `users.phone` and `users.email`.
pub const USERS_SOURCE: &str = "users";

/// An `identities` batch with `id_type` and `id_value` normalised; a value that cannot be of its
/// type is an error naming the file, the line and the column.
pub(super) fn normalise_batch(n: &Normaliser, src: &SourceFile, tb: &TypedBatch) -> Result<RecordBatch> {
    let batch = &tb.batch;
    let schema = batch.schema();
    let text = |name: &str| -> Result<Option<&StringArray>> {
        Ok(schema.index_of(name).ok().map(|i| batch.column(i).as_string::<i32>()))
    };
    let (types, values) = match (text(ID_TYPE)?, text(ID_VALUE)?) {
        (Some(t), Some(v)) => (t, v),
        _ => return Err(Error::Internal("an identities batch lacks id_type or id_value".into())),
    };
    let sources = text(SOURCE)?;
    let mut out_types = StringBuilder::with_capacity(batch.num_rows(), types.value_data().len());
    let mut out_values = StringBuilder::with_capacity(batch.num_rows(), values.value_data().len() + batch.num_rows());
    for row in 0..batch.num_rows() {
        let fail = |column: &str, message: String| Error::input(&src.path, tb.location(row), Some(column), message);
        let id_type = n.id_type(types.value(row)).map_err(|m| fail(ID_TYPE, m))?;
        let source = sources.filter(|s| s.is_valid(row)).map(|s| s.value(row));
        let value = n.value(&id_type, values.value(row), source).map_err(|m| fail(ID_VALUE, m))?;
        out_types.append_value(&id_type);
        out_values.append_value(&value);
    }
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[schema.index_of(ID_TYPE)?] = Arc::new(out_types.finish());
    columns[schema.index_of(ID_VALUE)?] = Arc::new(out_values.finish());
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Whether the import that turns `base` into `next` must resolve identities: once the store has
/// identities (or identity rules), every change to them or to the users does.
pub(super) fn needs_resolution(base: &Manifest, next: &Manifest) -> bool {
    let active = !next.files(Table::Identities).is_empty() || next.identity.rules.is_some();
    let paths = |m: &Manifest, t: Table| m.files(t).iter().map(|f| f.path.clone()).collect::<Vec<_>>();
    active
        && (next.identity.resolution.is_none()
            || next.identity.rules != base.identity.rules
            || paths(base, Table::Identities) != paths(next, Table::Identities)
            || paths(base, Table::Users) != paths(next, Table::Users)
            || next.next_row_id != base.next_row_id
            || next.forgotten != base.forgotten)
}

impl crate::store::Store {
    /// Sets the store's identity rules (validated) as a new version, and resolves its users into
    /// persons again under them. Rules normalise the identifiers of later imports; the values
    /// already stored keep the form they were stored in. Returns the version committed.
    pub fn set_identity_rules(&self, rules: IdentityRules) -> Result<u64> {
        Normaliser::new(&rules)?;
        let w = self.writer()?;
        let base = Arc::clone(w.base());
        if base.identity.rules.as_ref() == Some(&rules) {
            return Ok(base.version);
        }
        if let Some(column) = rules.survivorship.keys().find(|c| base.users_columns.iter().all(|u| &u.name != *c)) {
            return Err(Error::Usage(format!(
                "the survivorship rules name column '{column}', which users does not have"
            )));
        }
        let root = self.root().to_path_buf();
        let mut next = (*base).clone();
        // Rules given explicitly (the defaults too) make resolution active in a store that has
        // no identities table yet: the users' phones and e-mails link its profiles.
        next.identity.rules = Some(rules);
        let paths: Vec<std::path::PathBuf> = base.id_segments.iter().map(|s| layout::resolve(&root, &s.path)).collect();
        let ids = IdMap::load(&paths, base.next_row_id as usize)?;
        // With a resolution, its links are replayed under the new rules (no file is new);
        // without, every identities and users file is read.
        resolve_with(&w, &root, &base, &mut next, &ids, base.identity.resolution.is_none())?;
        w.commit(next)
    }
}

/// What `persona identity check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityCheck {
    pub version: u64,
    /// Links replayed.
    pub links: u64,
    /// Users in the stored persons file.
    pub users: u64,
    /// Users whose stored person differs from a rebuild's (as a partition: two users share a
    /// stored person exactly when they share a rebuilt one).
    pub differing: u64,
}

impl crate::store::Store {
    /// Rebuilds the current version's resolution from its links file in one pass (no increment)
    /// and compares the persons with the stored ones.
    pub fn check_identity(&self) -> Result<IdentityCheck> {
        let snapshot = self.snapshot()?;
        let m = snapshot.manifest();
        let Some(resolution) = &m.identity.resolution else {
            return Err(Error::Usage("the store has no identity resolution to check".into()));
        };
        let root = self.root();
        let paths: Vec<std::path::PathBuf> = m.id_segments.iter().map(|s| layout::resolve(root, &s.path)).collect();
        let ids = IdMap::load(&paths, m.next_row_id as usize)?;
        let records = read_links(&layout::resolve(root, &resolution.links))?;
        let normaliser = Normaliser::new(&m.identity.rules())?;
        let splits = Splits::of(&m.identity.splits, &ids);
        // Every link as one batch: first_new 0.
        let (_, rebuilt) = resolve_records(&records, &normaliser, m.next_row_id, 0, &splits)?;
        let persons_path = layout::resolve(root, &resolution.persons);
        let mut stored_of_rebuilt: FxHashMap<u32, i64> = FxHashMap::default();
        let mut rebuilt_of_stored: FxHashMap<i64, u32> = FxHashMap::default();
        let (mut users, mut differing) = (0u64, 0u64);
        read_columns(&persons_path, &["person_id", "profile_seq"], |b| {
            let corrupt = || Error::corrupt(&persons_path, "an identity persons file lacks a column");
            let persons =
                b.column_by_name("person_id").ok_or_else(corrupt)?.as_primitive::<arrow::datatypes::Int64Type>();
            let rows =
                b.column_by_name("profile_seq").ok_or_else(corrupt)?.as_primitive::<arrow::datatypes::Int64Type>();
            for i in 0..b.num_rows() {
                users += 1;
                let (stored, row) = (persons.value(i), rows.value(i));
                let Some(&again) = rebuilt.get(row as usize) else {
                    differing += 1;
                    continue;
                };
                let a = *stored_of_rebuilt.entry(again).or_insert(stored);
                let b = *rebuilt_of_stored.entry(stored).or_insert(again);
                if a != stored || b != again {
                    differing += 1;
                }
            }
            Ok(())
        })?;
        Ok(IdentityCheck { version: m.version, links: records.len() as u64, users, differing })
    }
}

/// What `persona identity split` separates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitRequest {
    /// Two user_ids that must never be one person again.
    Users(String, String),
    /// An identifier (type and value as given; normalised like an import's) that must link
    /// nobody any more.
    Value(String, String),
}

impl crate::store::Store {
    /// Records a split as a new version and resolves again under it: a cannot-link pair of users,
    /// or a blocked identifier value. Later imports keep it. Returns the version committed.
    pub fn split_identity(&self, request: SplitRequest) -> Result<u64> {
        let w = self.writer()?;
        let base = Arc::clone(w.base());
        if base.identity.resolution.is_none() {
            return Err(Error::Usage(
                "the store has no identity resolution to split (import an identities table first)".into(),
            ));
        }
        let root = self.root().to_path_buf();
        let paths: Vec<std::path::PathBuf> = base.id_segments.iter().map(|s| layout::resolve(&root, &s.path)).collect();
        let ids = IdMap::load(&paths, base.next_row_id as usize)?;
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let split = match request {
            SplitRequest::Users(a, b) => {
                for u in [&a, &b] {
                    if ids.get(u).is_none() {
                        return Err(Error::Usage(format!("'{u}' is not a known user_id")));
                    }
                }
                if a == b {
                    return Err(Error::Usage(format!("a user cannot be split from itself ('{a}')")));
                }
                Split::Pair { a, b, at }
            }
            SplitRequest::Value(id_type, id_value) => {
                let n = Normaliser::new(&base.identity.rules())?;
                let id_type = n.id_type(&id_type).map_err(Error::Usage)?;
                let (raw, source) = match (id_type.as_str(), id_value.split_once(':')) {
                    // An openid is given as app_id:openid, as stored.
                    (crate::store::identity::WX_OPENID, Some((app, openid))) => {
                        (openid.to_string(), Some(app.to_string()))
                    }
                    _ => (id_value.clone(), None),
                };
                let id_value = n.value(&id_type, &raw, source.as_deref()).map_err(Error::Usage)?;
                Split::Value { id_type, id_value, at }
            }
        };
        let mut next = (*base).clone();
        next.identity.splits.push(split);
        resolve_with(&w, &root, &base, &mut next, &ids, false)?;
        w.commit(next)
    }
}

/// After users were forgotten (`next` is the version without them, its dictionary segments
/// written): resolves again, so that their identifier links leave the links file and their rows
/// the persons file in the same version (docs/identity.md). Nothing to do without a resolution.
pub(super) fn resolve_after_forget(w: &StoreWriter, root: &Path, base: &Manifest, next: &mut Manifest) -> Result<()> {
    if next.identity.resolution.is_none() || !needs_resolution(base, next) {
        return Ok(());
    }
    let paths: Vec<std::path::PathBuf> = next.id_segments.iter().map(|s| layout::resolve(root, &s.path)).collect();
    let ids = IdMap::load(&paths, next.next_row_id as usize)?;
    resolve(w, root, base, next, &ids)
}

/// One identifier seen on one user row, as the links file keeps it.
#[derive(Debug, Clone, Default)]
struct Record {
    row: u32,
    /// Shared: a handful of types and sources repeat over millions of records.
    id_type: Arc<str>,
    id_value: String,
    source: Option<Arc<str>>,
    ts: Option<i64>,
    seq: u64,
    /// Why the value is no identifier (a `users.phone` that is not a phone number).
    invalid: Option<String>,
}

/// Resolves `next` (see the module doc) and records the resolution in it.
pub(super) fn resolve(w: &StoreWriter, root: &Path, base: &Manifest, next: &mut Manifest, ids: &IdMap) -> Result<()> {
    resolve_with(w, root, base, next, ids, false)
}

/// [`resolve`]; `all_files`: read every identities and users file of `next` as new (the first
/// resolution of a store), whatever `base` holds.
fn resolve_with(
    w: &StoreWriter,
    root: &Path,
    base: &Manifest,
    next: &mut Manifest,
    ids: &IdMap,
    all_files: bool,
) -> Result<()> {
    let rules = next.identity.rules();
    let normaliser = Normaliser::new(&rules)?;
    let previous = match &next.identity.resolution {
        Some(r) => read_links(&layout::resolve(root, &r.links))?,
        None => Vec::new(),
    };
    // The files this import added (all of them when there is no resolution yet).
    let fresh = |t: Table| -> Vec<String> {
        let known: HashSet<&str> = match &next.identity.resolution {
            Some(_) if !all_files => base.files(t).iter().map(|f| f.path.as_str()).collect(),
            _ => HashSet::new(),
        };
        next.files(t).iter().filter(|f| !known.contains(f.path.as_str())).map(|f| f.path.clone()).collect()
    };
    let mut incoming = Vec::new();
    for path in fresh(Table::Identities) {
        read_identities(&layout::resolve(root, &path), &mut incoming)?;
    }
    for path in fresh(Table::Users) {
        read_users(&layout::resolve(root, &path), &normaliser, &mut incoming)?;
    }
    let first_new = previous.iter().map(|r| r.seq + 1).max().unwrap_or(0);
    let records = merge(previous, incoming, ids);
    let splits = Splits::of(&next.identity.splits, ids);
    let (links, persons) = resolve_records(&records, &normaliser, next.next_row_id, first_new, &splits)?;
    next.identity.resolution = Some(write_files(w, &records, &links, &persons, ids, &rules, &splits)?);
    Ok(())
}

/// The previous records (minus those of users no longer known: forgotten) and the new ones not
/// already known as (row, type, value), the new ones sequenced after the previous in
/// (ts, row, type, value, source) order.
fn merge(previous: Vec<Record>, mut incoming: Vec<Record>, ids: &IdMap) -> Vec<Record> {
    // (row, 128-bit hash of type and value): no copy of the strings, collisions out of reach.
    let key = |r: &Record| {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(r.id_type.as_bytes());
        h.update(&[0]);
        h.update(r.id_value.as_bytes());
        (r.row, h.digest128())
    };
    let mut records: Vec<Record> = previous.into_iter().filter(|r| ids.key_of(r.row).is_some()).collect();
    let mut seen: FxHashSet<(u32, u128)> = records.iter().map(key).collect();
    let mut seq = records.iter().map(|r| r.seq + 1).max().unwrap_or(0);
    // Sorted through an index: moving the records themselves costs more than comparing them.
    let mut order: Vec<u32> = (0..incoming.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        let (a, b) = (&incoming[a as usize], &incoming[b as usize]);
        (a.ts.unwrap_or(i64::MIN), a.row, &a.id_type, &a.id_value, &a.source).cmp(&(
            b.ts.unwrap_or(i64::MIN),
            b.row,
            &b.id_type,
            &b.id_value,
            &b.source,
        ))
    });
    records.reserve(incoming.len());
    for i in order {
        let mut r = std::mem::take(&mut incoming[i as usize]);
        if ids.key_of(r.row).is_some() && seen.insert(key(&r)) {
            r.seq = seq;
            seq += 1;
            records.push(r);
        }
    }
    records
}

/// The splits in force, as the resolver and the links file need them.
#[derive(Debug, Default)]
struct Splits {
    /// Cannot-link pairs of user rows (pairs naming a user no longer known are left out).
    pairs: Vec<(u32, u32)>,
    /// Blocked (type, value)s.
    values: FxHashSet<(String, String)>,
}

impl Splits {
    fn of(splits: &[Split], ids: &IdMap) -> Splits {
        let mut out = Splits::default();
        for s in splits {
            match s {
                Split::Pair { a, b, .. } => {
                    if let (Some(a), Some(b)) = (ids.get(a), ids.get(b)) {
                        out.pairs.push((a, b));
                    }
                }
                Split::Value { id_type, id_value, .. } => {
                    out.values.insert((id_type.clone(), id_value.clone()));
                }
            }
        }
        out
    }

    fn blocks(&self, id_type: &str, id_value: &str) -> bool {
        !self.values.is_empty() && self.values.contains(&(id_type.to_string(), id_value.to_string()))
    }
}

/// The resolver's links for the valid records (types interned in rule order, values per type),
/// resolved: the previous version's links (sequence below `first_new`) first, then this import's
/// as one increment. Returns each record's outcome (`None` for an invalid one) and the person ids.
fn resolve_records(
    records: &[Record],
    normaliser: &Normaliser,
    users: u32,
    first_new: u64,
    splits: &Splits,
) -> Result<(Vec<Option<Outcome>>, Vec<u32>)> {
    let rules = normaliser.rules();
    let kinds: Vec<&str> = rules.types.keys().map(String::as_str).collect();
    let kind_rules: Vec<KindRule> = rules
        .types
        .values()
        .map(|r| KindRule { priority: r.priority, max_per_person: r.max_per_person, unique: r.unique })
        .collect();
    // Each distinct value interned once, with its deny-list verdict (the patterns run once).
    let mut values: FxHashMap<(u16, &str), (u32, bool)> = FxHashMap::default();
    let mut links = Vec::with_capacity(records.len());
    for r in records {
        if r.invalid.is_some() {
            continue;
        }
        let Some(kind) = kinds.iter().position(|k| *k == &*r.id_type) else { continue };
        let kind = kind as u16;
        let next = values.len() as u32;
        let (value, denied) = *values
            .entry((kind, r.id_value.as_str()))
            .or_insert_with(|| (next, normaliser.denied(&r.id_value) || splits.blocks(&r.id_type, &r.id_value)));
        links.push(Link {
            key: LinkKey { ts: r.ts.unwrap_or(i64::MIN), seq: r.seq },
            user: r.row,
            kind,
            value,
            denied,
        });
    }
    let mut resolver = Resolver::new(kind_rules, rules.hub_limit).with_cannot_link(splits.pairs.clone());
    let (previous, new): (Vec<Link>, Vec<Link>) = links.into_iter().partition(|l| l.key.seq < first_new);
    resolver.extend(previous);
    resolver.extend(new);
    let mut outcome_of_seq: FxHashMap<u64, Outcome> = FxHashMap::default();
    outcome_of_seq.reserve(records.len());
    for (l, o) in resolver.links().iter().zip(resolver.outcomes()) {
        outcome_of_seq.insert(l.key.seq, *o);
    }
    let outcomes = records.iter().map(|r| outcome_of_seq.get(&r.seq).copied()).collect();
    Ok((outcomes, resolver.person_ids(users)))
}

/// The links schema: one row per identifier seen on a user row.
pub fn links_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(ROW_ID_COLUMN, DataType::UInt32, false),
        Field::new(USER_ID, DataType::Utf8, false),
        Field::new(ID_TYPE, DataType::Utf8, false),
        Field::new(ID_VALUE, DataType::Utf8, false),
        Field::new(SOURCE, DataType::Utf8, true),
        Field::new(TS, DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("seq", DataType::UInt64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, true),
    ]))
}

/// The persons schema: one row per live user row, in row order.
pub fn persons_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(USER_ID, DataType::Utf8, false),
        Field::new("person_id", DataType::Int64, false),
        Field::new("profile_seq", DataType::Int64, false),
    ]))
}

/// An outcome as the links file writes it: a status and a reason.
fn status(o: Option<Outcome>, r: &Record, rules: &IdentityRules, splits: &Splits) -> (&'static str, Option<String>) {
    let kind_name = |k: u16| rules.types.keys().nth(k as usize).cloned().unwrap_or_default();
    let max = |k: u16| rules.types.values().nth(k as usize).map_or(0, |t| t.max_per_person);
    match o {
        None => ("invalid", Some(r.invalid.clone().unwrap_or_else(|| format!("type '{}' is not declared", r.id_type)))),
        Some(Outcome::Linked) => ("linked", None),
        Some(Outcome::Joined) => ("joined", None),
        Some(Outcome::Denied) if splits.blocks(&r.id_type, &r.id_value) => {
            ("blocked", Some("the value was blocked by persona identity split".into()))
        }
        Some(Outcome::Denied) => ("denied", Some("the value is on the deny-list".into())),
        Some(Outcome::Split) => ("split", Some("a split keeps these users apart (persona identity split)".into())),
        Some(Outcome::Hub) => {
            ("hub", Some(format!("the value is on more than {} profiles: quarantined", rules.hub_limit)))
        }
        Some(Outcome::Limit { kind }) => {
            ("limit", Some(format!("linking would give the person more than {} {}", max(kind), kind_name(kind))))
        }
        Some(Outcome::Dropped { kind }) => (
            "dropped",
            Some(format!(
                "dropped when a higher-priority link joined the person and it held more than {} {}",
                max(kind),
                kind_name(kind)
            )),
        ),
    }
}

fn write_files(
    w: &StoreWriter,
    records: &[Record],
    outcomes: &[Option<Outcome>],
    persons: &[u32],
    ids: &IdMap,
    rules: &IdentityRules,
    splits: &Splits,
) -> Result<Resolution> {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| (records[i].ts.unwrap_or(i64::MIN), records[i].seq));
    let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
    let mut linked = 0u64;
    let (mut rows, mut users, mut types, mut values, mut sources, mut ts, mut seqs, mut statuses, mut reasons) =
        (vec![], StringBuilder::new(), vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for &i in &order {
        let r = &records[i];
        let (s, reason) = status(outcomes[i], r, rules, splits);
        if outcomes[i].is_some_and(Outcome::accepted) {
            linked += 1;
        } else {
            *rejected.entry(s.to_string()).or_default() += 1;
        }
        rows.push(r.row);
        users.append_value(ids.key_of(r.row).unwrap_or_default());
        types.push(&*r.id_type);
        values.push(r.id_value.as_str());
        sources.push(r.source.as_deref());
        ts.push(r.ts);
        seqs.push(r.seq);
        statuses.push(s);
        reasons.push(reason);
    }
    let links = RecordBatch::try_new(
        links_schema(),
        vec![
            Arc::new(UInt32Array::from(rows)),
            Arc::new(users.finish()),
            Arc::new(StringArray::from(types)),
            Arc::new(StringArray::from(values)),
            Arc::new(StringArray::from(sources)),
            Arc::new(TimestampMicrosecondArray::from(ts)),
            Arc::new(UInt64Array::from(seqs)),
            Arc::new(StringArray::from(statuses)),
            Arc::new(StringArray::from(reasons)),
        ],
    )?;
    let version = w.next_version();
    let links_path = write_parquet(w, new_resolution_file(version, "links"), &links)?;

    let mut user_ids = StringBuilder::new();
    let (mut person_ids, mut seqs) = (Vec::new(), Vec::new());
    let mut distinct = FxHashSet::default();
    for (row, &p) in persons.iter().enumerate() {
        // Forgotten rows (holes in the row ids) belong to no person.
        let Some(user) = ids.key_of(row as u32).filter(|u| !u.is_empty()) else { continue };
        user_ids.append_value(user);
        person_ids.push(i64::from(p));
        seqs.push(row as i64);
        distinct.insert(p);
    }
    let users_count = person_ids.len() as u64;
    let persons_batch = RecordBatch::try_new(
        persons_schema(),
        vec![Arc::new(user_ids.finish()), Arc::new(Int64Array::from(person_ids)), Arc::new(Int64Array::from(seqs))],
    )?;
    let persons_path = write_parquet(w, new_resolution_file(version, "persons"), &persons_batch)?;
    Ok(Resolution {
        links: links_path,
        persons: persons_path,
        link_rows: records.len() as u64,
        users: users_count,
        person_count: distinct.len() as u64,
        linked,
        rejected,
    })
}

fn write_parquet(w: &StoreWriter, relative: String, batch: &RecordBatch) -> Result<String> {
    let (relative, abs) = w.new_file(relative)?;
    let file = crate::store::io::create(&abs)?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None)?;
    writer.write(batch)?;
    let mut file = writer.into_inner()?;
    file.sync_all().io_context("fsync", &abs)?;
    Ok(relative)
}

/// The named columns of a Parquet file, batch by batch.
fn read_columns(path: &Path, names: &[&str], mut f: impl FnMut(&RecordBatch) -> Result<()>) -> Result<()> {
    let file = File::open(path).io_context("open", path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = builder.schema().clone();
    let indices: Vec<usize> = names.iter().filter_map(|n| schema.index_of(n).ok()).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    for batch in builder.with_projection(mask).with_batch_size(65_536).build()? {
        f(&batch?)?;
    }
    Ok(())
}

/// One shared copy of each identifier type and source name read.
#[derive(Default)]
struct Names(FxHashMap<String, Arc<str>>);

impl Names {
    fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.0.get(name) {
            return Arc::clone(n);
        }
        let n: Arc<str> = Arc::from(name);
        self.0.insert(name.to_string(), Arc::clone(&n));
        n
    }
}

fn opt_text(batch: &RecordBatch, name: &str) -> Option<StringArray> {
    let col = batch.column_by_name(name)?;
    arrow::compute::cast(col, &DataType::Utf8).ok().map(|c| c.as_string::<i32>().clone())
}

fn read_links(path: &Path) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut names = Names::default();
    read_columns(path, &[ROW_ID_COLUMN, ID_TYPE, ID_VALUE, SOURCE, TS, "seq", "status", "reason"], |b| {
        let corrupt = || Error::corrupt(path, "an identity links file lacks a column");
        let rows = b.column_by_name(ROW_ID_COLUMN).ok_or_else(corrupt)?.as_primitive::<UInt32Type>();
        let (types, values) = (opt_text(b, ID_TYPE).ok_or_else(corrupt)?, opt_text(b, ID_VALUE).ok_or_else(corrupt)?);
        let (sources, status, reason) = (
            opt_text(b, SOURCE).ok_or_else(corrupt)?,
            opt_text(b, "status").ok_or_else(corrupt)?,
            opt_text(b, "reason"),
        );
        let ts = b.column_by_name(TS).ok_or_else(corrupt)?.as_primitive::<TimestampMicrosecondType>();
        let seq = b.column_by_name("seq").ok_or_else(corrupt)?.as_primitive::<arrow::datatypes::UInt64Type>();
        for i in 0..b.num_rows() {
            let invalid = (status.value(i) == "invalid")
                .then(|| reason.as_ref().filter(|r| r.is_valid(i)).map(|r| r.value(i).to_string()).unwrap_or_default());
            out.push(Record {
                row: rows.value(i),
                id_type: names.get(types.value(i)),
                id_value: values.value(i).to_string(),
                source: sources.is_valid(i).then(|| names.get(sources.value(i))),
                ts: ts.is_valid(i).then(|| ts.value(i)),
                seq: seq.value(i),
                invalid,
            });
        }
        Ok(())
    })?;
    Ok(out)
}

/// The rows of a stored identities file (already normalised by the import).
fn read_identities(path: &Path, out: &mut Vec<Record>) -> Result<()> {
    let mut names = Names::default();
    read_columns(path, &[ROW_ID_COLUMN, ID_TYPE, ID_VALUE, SOURCE, TS], |b| {
        let corrupt = || Error::corrupt(path, "an identities file lacks a contract column");
        let rows = b.column_by_name(ROW_ID_COLUMN).ok_or_else(corrupt)?.as_primitive::<UInt32Type>();
        let (types, values) = (opt_text(b, ID_TYPE).ok_or_else(corrupt)?, opt_text(b, ID_VALUE).ok_or_else(corrupt)?);
        let sources = opt_text(b, SOURCE);
        let ts = b.column_by_name(TS).map(|c| c.as_primitive::<TimestampMicrosecondType>().clone());
        for i in 0..b.num_rows() {
            out.push(Record {
                row: rows.value(i),
                id_type: names.get(types.value(i)),
                id_value: values.value(i).to_string(),
                source: sources.as_ref().filter(|s| s.is_valid(i)).map(|s| names.get(s.value(i))),
                ts: ts.as_ref().filter(|t| t.is_valid(i)).map(|t| t.value(i)),
                seq: 0,
                invalid: None,
            });
        }
        Ok(())
    })
}

/// The phone and e-mail of a stored users file's rows, as links seen at the user's signup date
/// (source `users`); a value that is no phone or e-mail is kept as an invalid record.
fn read_users(path: &Path, n: &Normaliser, out: &mut Vec<Record>) -> Result<()> {
    let mut names = Names::default();
    read_columns(path, &[ROW_ID_COLUMN, PHONE, EMAIL, "signup_date"], |b| {
        let rows = b
            .column_by_name(ROW_ID_COLUMN)
            .ok_or_else(|| Error::corrupt(path, "a users file lacks its row ids"))?
            .as_primitive::<UInt32Type>();
        let signup = b
            .column_by_name("signup_date")
            .filter(|c| c.data_type() == &DataType::Date32)
            .map(|c| c.as_primitive::<Date32Type>().clone());
        for id_type in [PHONE, EMAIL] {
            let Some(values) = opt_text(b, id_type) else { continue };
            for i in 0..b.num_rows() {
                if !values.is_valid(i) || values.value(i).trim().is_empty() {
                    continue;
                }
                let raw = values.value(i);
                let (id_value, invalid) = match n.value(id_type, raw, None) {
                    Ok(v) => (v, None),
                    Err(m) => (raw.to_string(), Some(m)),
                };
                out.push(Record {
                    row: rows.value(i),
                    id_type: names.get(id_type),
                    id_value,
                    source: Some(names.get(USERS_SOURCE)),
                    ts: signup.as_ref().filter(|s| s.is_valid(i)).map(|s| i64::from(s.value(i)) * DAY_MICROS),
                    seq: 0,
                    invalid,
                });
            }
        }
        Ok(())
    })
}
