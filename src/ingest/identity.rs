//! The import's identity phase (docs/identity.md): normalises `identities` rows as they are
//! loaded, then resolves the version's users into persons — this import's new links (identities
//! rows and users' phone and e-mail) applied in (ts, sequence) order to the previous version's
//! stored state (a base and deltas) when they all come after it, else every link resolved from
//! the start ([`full`]) — and writes the links with their outcomes, each user row's `person_id`
//! and the state (a delta, or a new base) as the version's derived files.
//!
//! ```text
//!                  in order: base + deltas ─┐                 ┌─ links segment (the new links)
//! new identities ┬─ dedup (row, value) ─ Resolver ────────────┼─ persons file (kept if no one joined)
//! new users ─────┘  seq = previous + rank                     └─ state delta (or a new base once merged)
//!                  otherwise: full::resolve over every links segment and the new files
//!                             ─ one links file, persons file, state base
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
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::identifiers::Normaliser;
use super::reader::{SourceFile, TypedBatch};
use super::resolve::{KindRule, Link, LinkKey, Outcome, Resolver};

mod full;
mod in_order;
mod split;
use super::row_ids::IdMap;
use crate::error::{Error, IoContext, Result};
use crate::store::identity::{
    EMAIL, IdentityRules, PHONE, Resolution, STATE_BASE_MAGIC, STATE_DELTA_MAGIC, STATE_HEADER_LEN, Split,
    new_resolution_file, state_header,
};
use crate::store::manifest::Manifest;
use crate::store::{StoreWriter, layout};
use crate::tables::{DAY_MICROS, ID_TYPE, ID_VALUE, ROW_ID_COLUMN, SOURCE, TS, Table, USER_ID};
pub use split::{FORGOTTEN, LinkStatus, overrides_schema, read_link_overrides};

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
        let mut ids = IdMap::load_names(&paths, base.next_row_id as usize)?;
        // With a resolution, its links are replayed under the new rules (no file is new);
        // without, every identities and users file is read.
        resolve_with(&w, &root, &base, &mut next, &mut ids, base.identity.resolution.is_none())?;
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
        let mut ids = IdMap::load_names(&paths, m.next_row_id as usize)?;
        let normaliser = Normaliser::new(&m.identity.rules())?;
        let splits = Splits::of(&m.identity.splits, &ids)?;
        ids.drop_lookup();
        let sources: Vec<full::Source> =
            resolution.link_files().into_iter().map(|f| full::Source::Links(layout::resolve(root, f))).collect();
        let rebuilt = full::resolve(&sources, &normaliser, &splits, &ids, m.next_row_id, None)?;
        let (links, rebuilt) = (rebuilt.link_rows, rebuilt.persons);
        let persons_path = layout::resolve(root, &resolution.persons);
        let mut stored_of_rebuilt: FxHashMap<u32, i64> = FxHashMap::default();
        let mut rebuilt_of_stored: FxHashMap<i64, u32> = FxHashMap::default();
        let (mut users, mut differing) = (0u64, 0u64);
        read_columns(&persons_path, &["person_id", "profile_seq"], |b| {
            let corrupt = || Error::corrupt(&persons_path, "an identity persons file lacks a column");
            let persons = stored_column::<Int64Array>(&persons_path, b, "person_id", corrupt)?;
            let rows = stored_column::<Int64Array>(&persons_path, b, "profile_seq", corrupt)?;
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
        Ok(IdentityCheck { version: m.version, links, users, differing })
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
        self.split_identity_as(request, true)
    }

    /// [`Store::split_identity`] resolving every link from the start (`persona identity split
    /// --from-start`): the same result, what the tests compare the component's resolution with.
    pub fn split_identity_from_start(&self, request: SplitRequest) -> Result<u64> {
        self.split_identity_as(request, false)
    }

    /// A split, its component resolved from the stored state (`local`) when it can be.
    fn split_identity_as(&self, request: SplitRequest, local: bool) -> Result<u64> {
        let w = self.writer()?;
        let base = Arc::clone(w.base());
        if base.identity.resolution.is_none() {
            return Err(Error::Usage(
                "the store has no identity resolution to split (import an identities table first)".into(),
            ));
        }
        let root = self.root().to_path_buf();
        let paths: Vec<std::path::PathBuf> = base.id_segments.iter().map(|s| layout::resolve(&root, &s.path)).collect();
        let mut ids = IdMap::load_names(&paths, base.next_row_id as usize)?;
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let split = match request {
            SplitRequest::Users(a, b) => {
                for u in [&a, &b] {
                    if ids.lookup(u)?.is_none() {
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
        let start = match &split {
            Split::Pair { a, b, .. } => match (ids.lookup(a)?, ids.lookup(b)?) {
                (Some(a), Some(b)) => split::SplitStart::Users(a, b),
                _ => return Err(Error::Internal("a split user vanished; please report it".into())),
            },
            Split::Value { id_type, id_value, .. } => {
                split::SplitStart::Value { id_type: id_type.clone(), id_value: id_value.clone() }
            }
        };
        let mut next = (*base).clone();
        next.identity.splits.push(split);
        // The split's component decided again from the stored state when it can be, else every
        // link from the start.
        let rules = next.identity.rules();
        let normaliser = Normaliser::new(&rules)?;
        let splits = Splits::of(&next.identity.splits, &ids)?;
        let fingerprints = (fingerprint(&rules, &base.identity.splits), fingerprint(&rules, &next.identity.splits));
        let forgotten = match &base.forgotten {
            Some(f) => crate::store::catalog::read_set(&root, &f.set)?,
            None => roaring::RoaringBitmap::new(),
        };
        let local = match &base.identity.resolution {
            Some(previous) if local => split::resolve_split(
                &w,
                &root,
                previous,
                next.next_row_id,
                &ids,
                &normaliser,
                &splits,
                &start,
                &forgotten,
                fingerprints,
            )?,
            _ => None,
        };
        match local {
            Some(resolution) => next.identity.resolution = Some(resolution),
            None => resolve_with(&w, &root, &base, &mut next, &mut ids, false)?,
        }
        w.commit(next)
    }
}

/// After users were forgotten (`next` is the version without them, its forgotten set holding
/// them; its dictionary segments may still be the base's, `removed` is left out of them):
/// resolves again, so that their links leave every
/// decision and view, and their rows the persons file, in the same version (docs/identity.md).
/// On the components of the identifier graph they were in when the stored state allows it
/// (`local`; their links stay in the links files, marked `forgotten`, until a purge), else from
/// the start. Nothing to do without a resolution.
pub(super) fn resolve_after_forget(
    w: &StoreWriter,
    root: &Path,
    base: &Manifest,
    next: &mut Manifest,
    removed: &roaring::RoaringBitmap,
    local: bool,
) -> Result<()> {
    if next.identity.resolution.is_none() || !needs_resolution(base, next) {
        return Ok(());
    }
    let paths: Vec<std::path::PathBuf> = next.id_segments.iter().map(|s| layout::resolve(root, &s.path)).collect();
    let mut ids = IdMap::load_names(&paths, next.next_row_id as usize)?;
    ids.without_rows(removed);
    if local && let Some(previous) = base.identity.resolution.as_ref() {
        let rules = next.identity.rules();
        let normaliser = Normaliser::new(&rules)?;
        let splits = Splits::of(&next.identity.splits, &ids)?;
        let fingerprints = (fingerprint(&rules, &base.identity.splits), fingerprint(&rules, &next.identity.splits));
        let forgotten = match &next.forgotten {
            Some(f) => crate::store::catalog::read_set(root, &f.set)?,
            None => removed.clone(),
        };
        let start = split::SplitStart::Forget(removed.clone());
        if let Some(resolution) = split::resolve_split(
            w,
            root,
            previous,
            next.next_row_id,
            &ids,
            &normaliser,
            &splits,
            &start,
            &forgotten,
            fingerprints,
        )? {
            next.identity.resolution = Some(resolution);
            return Ok(());
        }
    }
    resolve(w, root, base, next, &mut ids)
}

/// Resolves `next` from the start (its stored links, without the forgotten users'), when links
/// of forgotten users are still in its links files: what a purge does so that none remains.
pub(super) fn resolve_without_forgotten_links(w: &StoreWriter, root: &Path, next: &mut Manifest) -> Result<bool> {
    let Some(r) = next.identity.resolution.as_mut() else { return Ok(false) };
    if r.forgotten_links == 0 {
        return Ok(false);
    }
    // Without a state to resume, the resolution reads every links segment and writes the
    // persons, a state base and the links again.
    (r.state, r.state_base, r.link_overrides) = (None, None, None);
    r.state_deltas.clear();
    let base = next.clone();
    let paths: Vec<std::path::PathBuf> = next.id_segments.iter().map(|s| layout::resolve(root, &s.path)).collect();
    let mut ids = IdMap::load_names(&paths, next.next_row_id as usize)?;
    resolve(w, root, &base, next, &mut ids)?;
    Ok(true)
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

/// Resolves `next` (see the module doc) and records the resolution in it. `ids` loses its
/// user_id lookup ([`IdMap::drop_lookup`]): resolution only names rows.
pub(super) fn resolve(
    w: &StoreWriter,
    root: &Path,
    base: &Manifest,
    next: &mut Manifest,
    ids: &mut IdMap,
) -> Result<()> {
    resolve_with(w, root, base, next, ids, false)
}

/// [`resolve`]; `all_files`: read every identities and users file of `next` as new (the first
/// resolution of a store), whatever `base` holds.
fn resolve_with(
    w: &StoreWriter,
    root: &Path,
    base: &Manifest,
    next: &mut Manifest,
    ids: &mut IdMap,
    all_files: bool,
) -> Result<()> {
    let rules = next.identity.rules();
    let normaliser = Normaliser::new(&rules)?;
    // The files this import added (all of them when there is no resolution yet).
    let fresh = |t: Table| -> Vec<String> {
        let known: HashSet<&str> = match &next.identity.resolution {
            Some(_) if !all_files => base.files(t).iter().map(|f| f.path.as_str()).collect(),
            _ => HashSet::new(),
        };
        next.files(t).iter().filter(|f| !known.contains(f.path.as_str())).map(|f| f.path.clone()).collect()
    };
    let splits = Splits::of(&next.identity.splits, ids)?;
    ids.drop_lookup();
    let ids: &IdMap = ids;
    let fingerprint = fingerprint(&rules, &next.identity.splits);
    let resumable = next.identity.resolution.as_ref().filter(|r| r.state_base.is_some());
    if !all_files
        && next.forgotten == base.forgotten
        && let Some(previous) = resumable
    {
        let mut incoming = Vec::new();
        let mut push = |r: &Record| {
            incoming.push(r.clone());
            Ok(())
        };
        for path in fresh(Table::Identities) {
            read_identities(&layout::resolve(root, &path), &mut push)?;
        }
        for path in fresh(Table::Users) {
            read_users(&layout::resolve(root, &path), &normaliser, &mut push)?;
        }
        if let Some(resolution) = resolve_increment(
            w,
            root,
            previous,
            &incoming,
            (base.next_row_id, next.next_row_id),
            ids,
            &normaliser,
            &splits,
            fingerprint,
            false,
        )? {
            next.identity.resolution = Some(resolution);
            return Ok(());
        }
    }
    // From the start: the stored links, then the new files.
    let mut sources: Vec<full::Source> = Vec::new();
    if let Some(r) = next.identity.resolution.as_ref().filter(|_| !all_files) {
        sources.extend(r.link_files().into_iter().map(|f| full::Source::Links(layout::resolve(root, f))));
    }
    sources.extend(fresh(Table::Identities).iter().map(|f| full::Source::Identities(layout::resolve(root, f))));
    sources.extend(fresh(Table::Users).iter().map(|f| full::Source::Users(layout::resolve(root, f))));
    // The state (the resolver's part streamed) and the persons; then the second pass over the
    // sources writes the links with nothing but the outcomes left in memory.
    let version = w.next_version();
    let mut state = StateFile::create(w, version, "state")?;
    state.put_u64(fingerprint)?;
    let mut resolved = full::resolve(&sources, &normaliser, &splits, ids, next.next_row_id, Some(&mut state))?;
    // The state's base and the persons file, one on each core (one after the other while an
    // installed I/O implementation counts operations, so that their order is fixed).
    let abs = state.abs.clone();
    let (state_base, written) = if crate::store::io::counts_operations(&abs) {
        let base =
            resolved.resolver.write_base(&mut state).io_context("write", &abs).and_then(|()| state.finish(BASE_MAGIC));
        (base, write_persons(w, version, &resolved.persons, ids))
    } else {
        std::thread::scope(|scope| {
            let persons = scope.spawn(|| write_persons(w, version, &resolved.persons, ids));
            let base = resolved
                .resolver
                .write_base(&mut state)
                .io_context("write", &abs)
                .and_then(|()| state.finish(BASE_MAGIC));
            (base, persons.join().unwrap_or_else(|_| Err(Error::Internal("the persons thread panicked".into()))))
        })
    };
    let (state_base, (persons, users, person_count)) = (state_base?, written?);
    let outcomes = resolved.resolver.take_outcomes();
    let link_rows = resolved.link_rows;
    let out = LinksFile::create(w, version)?;
    let (links, linked, rejected) =
        full::write_links(&sources, &normaliser, &resolved, &outcomes, (ids, &rules, &splits), out)?;
    next.identity.resolution = Some(Resolution {
        links,
        more_links: Vec::new(),
        link_overrides: None,
        state: None,
        state_base: Some(state_base),
        state_deltas: Vec::new(),
        persons,
        link_rows,
        forgotten_links: 0,
        users,
        person_count,
        linked,
        rejected,
    });
    Ok(())
}

/// What the state file fingerprints: the resolution is only resumed under the rules and splits
/// it was made under.
fn fingerprint(rules: &IdentityRules, splits: &[Split]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&serde_json::to_vec(&(rules, splits)).unwrap_or_default())
}

/// A record's (type, value) as a 128-bit hash: no copy of the strings, collisions out of reach.
fn value_key(id_type: &str, id_value: &str) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(id_type.as_bytes());
    h.update(&[0]);
    h.update(id_value.as_bytes());
    h.digest128()
}

/// A known (user row, value id) pair.
fn known_key(row: u32, value: u32) -> u64 {
    (u64::from(row) << 32) | u64::from(value)
}

/// One part of the stored resolution state (docs/identity.md): a **base** (every value key,
/// every known pair, the resolver's whole state) written by a resolution from the start, or a
/// **delta** (the keys of the values it added, the pairs it added, the resolver entries it
/// changed) written by an in-order increment. No strings.
///
/// ```text
/// "PRSNIDB2" (base) | "PRSNIDD2" (delta)  crc32 (u32 LE) of the payload  length (u64 LE)  payload:
///   fingerprint u64  keys u32 × u128 (value ids in order, from the previous part's end)
///   known u32 × u64 (sorted)  next_seq u64  resolver bytes (ingest::resolve::state)
/// ```
struct StatePart {
    fingerprint: u64,
    next_seq: u64,
    /// The 128-bit key of each value id this part adds, in id order.
    keys: Vec<u128>,
    /// Sorted [`known_key`]s this part adds (invalid records too): what a later import skips.
    known: Vec<u64>,
    resolver: Vec<u8>,
}

const BASE_MAGIC: &[u8; 8] = STATE_BASE_MAGIC;
const DELTA_MAGIC: &[u8; 8] = STATE_DELTA_MAGIC;

/// A state part read in file order, a chunk at a time (the keys and pairs of a base are most of
/// a gigabyte at ten million users, and an increment needs only a few of them); its checksum is
/// verified once the whole part was read ([`StateReader::rest`]).
struct StateReader {
    file: std::io::BufReader<File>,
    path: std::path::PathBuf,
    crc: crc32fast::Hasher,
    expected_crc: u32,
    /// Payload bytes not read yet.
    remaining: u64,
    /// The file's size.
    size: u64,
    fingerprint: u64,
}

impl StateReader {
    fn open(root: &Path, file: &str, magic: &[u8; 8]) -> Result<StateReader> {
        let path = layout::resolve(root, file);
        let f = File::open(&path).io_context("open", &path)?;
        let size = f.metadata().io_context("stat", &path)?.len();
        let mut file = std::io::BufReader::with_capacity(1 << 20, f);
        let mut header = [0u8; STATE_HEADER_LEN];
        std::io::Read::read_exact(&mut file, &mut header)
            .map_err(|_| Error::corrupt(&path, "not an identity state file of this kind"))?;
        let (expected_crc, remaining) = state_header(&path, &header, magic, size)?;
        let mut r =
            StateReader { file, path, crc: crc32fast::Hasher::new(), expected_crc, remaining, size, fingerprint: 0 };
        r.fingerprint = r.u64()?;
        Ok(r)
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<()> {
        if (buf.len() as u64) > self.remaining {
            return Err(Error::corrupt(&self.path, "the file is cut short"));
        }
        std::io::Read::read_exact(&mut self.file, buf).io_context("read", &self.path)?;
        self.crc.update(buf);
        self.remaining -= buf.len() as u64;
        Ok(())
    }

    fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// The count that starts a section of values of `WIDTH` bytes; one that more bytes than the
    /// part has left would need is corrupt (memory is reserved from it).
    fn count<const WIDTH: usize>(&mut self) -> Result<usize> {
        let mut count = [0u8; 4];
        self.read(&mut count)?;
        let count = u32::from_le_bytes(count);
        if u64::from(count) * WIDTH as u64 > self.remaining {
            return Err(Error::corrupt(&self.path, format!("a count of {count} values past the end of the state")));
        }
        Ok(count as usize)
    }

    /// A section's `count` values of `WIDTH` bytes (its count read already), each handed to `f`.
    fn values<const WIDTH: usize>(&mut self, count: usize, mut f: impl FnMut([u8; WIDTH])) -> Result<()> {
        let mut left = count;
        let mut buf = vec![0u8; WIDTH * 4096];
        while left > 0 {
            let n = left.min(4096);
            self.read(&mut buf[..n * WIDTH])?;
            for c in buf[..n * WIDTH].chunks_exact(WIDTH) {
                f(c.try_into().expect("a value's bytes"));
            }
            left -= n;
        }
        Ok(())
    }

    /// The part's value keys, in id order: `count` of them, as [`StateReader::count`] read.
    fn keys(&mut self, count: usize, mut f: impl FnMut(u128)) -> Result<()> {
        self.values::<16>(count, |b| f(u128::from_le_bytes(b)))
    }

    /// The part's (user, value) pairs, sorted: `count` of them, as [`StateReader::count`] read.
    fn known(&mut self, count: usize, mut f: impl FnMut(u64)) -> Result<()> {
        self.values::<8>(count, |b| f(u64::from_le_bytes(b)))
    }

    /// After the whole part was read (the base's resolver decoded from it as a reader): nothing
    /// left, and the checksum of the whole part verified.
    fn finish(&self) -> Result<()> {
        if self.remaining != 0 {
            return Err(Error::corrupt(&self.path, "bytes after the state"));
        }
        if self.crc.clone().finalize() != self.expected_crc {
            return Err(Error::corrupt(&self.path, "its checksum does not match"));
        }
        Ok(())
    }

    /// The next sequence number and the resolver's bytes, once the checksum of the whole part
    /// is verified.
    fn rest(&mut self) -> Result<(u64, Vec<u8>)> {
        let next_seq = self.u64()?;
        let mut resolver = vec![0u8; self.remaining as usize];
        self.read(&mut resolver)?;
        self.finish()?;
        Ok((next_seq, resolver))
    }
}

/// The part's bytes as they come, counted against its length and added to its checksum
/// ([`StateReader::finish`] verifies both).
impl std::io::Read for StateReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read(&mut buf[..want])?;
        self.crc.update(&buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A state file being written, streamed (a base at ten million users is most of a gigabyte: no
/// copy of it is made in memory): the payload as it comes, then the header with its checksum.
pub(super) struct StateFile {
    out: std::io::BufWriter<crate::store::io::NewFile>,
    crc: crc32fast::Hasher,
    len: u64,
    relative: String,
    abs: std::path::PathBuf,
}

impl StateFile {
    fn create(w: &StoreWriter, version: u64, what: &str) -> Result<StateFile> {
        let (relative, abs) = w.new_file(new_resolution_file(version, what))?;
        let file = crate::store::io::create(&abs)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        std::io::Write::write_all(&mut out, &[0; STATE_HEADER_LEN]).io_context("write", &abs)?;
        Ok(StateFile { out, crc: crc32fast::Hasher::new(), len: 0, relative, abs })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        std::io::Write::write_all(self, bytes).io_context("write", &self.abs.clone())
    }

    fn put_u64(&mut self, v: u64) -> Result<()> {
        self.put(&v.to_le_bytes())
    }

    /// A count, then the values (`count` of them, sorted).
    pub(super) fn put_known(&mut self, count: usize, known: impl Iterator<Item = u64>) -> Result<()> {
        self.put(&(count as u32).to_le_bytes())?;
        let (mut written, mut buf) = (0usize, Vec::with_capacity(1 << 16));
        for k in known {
            buf.extend_from_slice(&k.to_le_bytes());
            written += 1;
            if buf.len() >= 1 << 16 {
                self.put(&buf)?;
                buf.clear();
            }
        }
        self.put(&buf)?;
        if written != count {
            return Err(Error::Internal(format!(
                "{written} known identity pairs written for {count}; please report it"
            )));
        }
        Ok(())
    }

    /// A count, then the keys.
    pub(super) fn put_keys(&mut self, keys: &[u128]) -> Result<()> {
        self.put(&(keys.len() as u32).to_le_bytes())?;
        for chunk in keys.chunks(4096) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|k| k.to_le_bytes()).collect();
            self.put(&bytes)?;
        }
        Ok(())
    }

    pub(super) fn put_next_seq(&mut self, next_seq: u64) -> Result<()> {
        self.put_u64(next_seq)
    }

    /// Writes the header over the 20 bytes kept for it, then fsyncs (both through the store's
    /// I/O, so that fault injection reaches them).
    fn finish(self, magic: &[u8; 8]) -> Result<String> {
        let mut header = Vec::with_capacity(STATE_HEADER_LEN);
        header.extend_from_slice(magic);
        header.extend_from_slice(&self.crc.clone().finalize().to_le_bytes());
        header.extend_from_slice(&self.len.to_le_bytes());
        let mut file = self.out.into_inner().map_err(|e| e.into_error()).io_context("write", &self.abs)?;
        file.write_at(0, &header).io_context("write", &self.abs)?;
        file.sync_all().io_context("fsync", &self.abs)?;
        Ok(self.relative)
    }
}

impl std::io::Write for StateFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write_all(buf)?;
        self.crc.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Writes a state part as the [`StatePart`] doc lays it out.
fn write_state(w: &StoreWriter, version: u64, state: &StatePart, magic: &[u8; 8], what: &str) -> Result<String> {
    let mut file = StateFile::create(w, version, what)?;
    file.put_u64(state.fingerprint)?;
    file.put_keys(&state.keys)?;
    file.put_known(state.known.len(), state.known.iter().copied())?;
    file.put_next_seq(state.next_seq)?;
    file.put(&state.resolver)?;
    file.finish(magic)
}

/// The compaction that follows an import ([`merge_state`], `persona compact`) replaces the base
/// and its deltas by a new base once they are this many files.
pub const DUE_DELTAS: usize = 8;

/// An import merges the deltas itself only past this many (or once they are four times the base):
/// when no compaction ran (`--no-compact`), so that reading the deltas stays bounded.
const MAX_DELTAS: usize = 4 * DUE_DELTAS;

/// Whether the identity state's deltas are due for a merge into a new base ([`DUE_DELTAS`]).
pub fn merge_due(manifest: &Manifest) -> bool {
    manifest
        .identity
        .resolution
        .as_ref()
        .is_some_and(|r| r.state_base.is_some() && r.state_deltas.len() + 1 >= DUE_DELTAS)
}

/// Merges the identity state's base and deltas into a new base in `next` (the compaction of the
/// state; no link is read and no person changes). Returns whether it did: not when there are no
/// deltas, or the state was made under other rules or splits (the next import resolves from
/// the start anyway).
pub(super) fn merge_state(w: &StoreWriter, root: &Path, next: &mut Manifest) -> Result<bool> {
    let Some(previous) =
        next.identity.resolution.clone().filter(|r| r.state_base.is_some() && !r.state_deltas.is_empty())
    else {
        return Ok(false);
    };
    let rules = next.identity.rules();
    let normaliser = Normaliser::new(&rules)?;
    let paths: Vec<std::path::PathBuf> = next.id_segments.iter().map(|s| layout::resolve(root, &s.path)).collect();
    // Only the split pairs' users are looked up: the segments, not a map of every user.
    let ids = IdMap::on_demand(&paths)?;
    let splits = Splits::of(&next.identity.splits, &ids)?;
    let fingerprint = fingerprint(&rules, &next.identity.splits);
    let users = next.next_row_id;
    let merged =
        resolve_increment(w, root, &previous, &[], (users, users), &ids, &normaliser, &splits, fingerprint, true)?;
    match merged {
        Some(resolution) => {
            next.identity.resolution = Some(resolution);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Applies this import's records to the previous version's stored state (its base and deltas)
/// when they can be applied in place — the state fits the rules and splits, every new link
/// comes after the last one processed, no value becomes a hub and no identifier linked by an
/// earlier version is dropped — writing only the new links as a further segment and what
/// changed as a state delta; the persons file is kept when no person changed. `None`: resolve
/// from the start.
#[allow(clippy::too_many_arguments)]
fn resolve_increment(
    w: &StoreWriter,
    root: &Path,
    previous: &Resolution,
    incoming: &[Record],
    (base_users, users): (u32, u32),
    ids: &IdMap,
    normaliser: &Normaliser,
    splits: &Splits,
    fingerprint: u64,
    force_merge: bool,
) -> Result<Option<Resolution>> {
    let Some(base_file) = &previous.state_base else { return Ok(None) };
    let mut parts = vec![StateReader::open(root, base_file, BASE_MAGIC)?];
    for f in &previous.state_deltas {
        parts.push(StateReader::open(root, f, DELTA_MAGIC)?);
    }
    // Each part holds the fingerprint of the rules and splits the state is right for once it is
    // applied (a split's delta: the splits with it); the last part's is the state's.
    if parts.last().is_none_or(|p| p.fingerprint != fingerprint) {
        return Ok(None);
    }
    // A new base when compaction asks, or when no compaction ran for long: every key and pair
    // is then kept as read.
    let delta_bytes: u64 = parts[1..].iter().map(|p| p.size).sum();
    let merge = force_merge || parts.len() > MAX_DELTAS || delta_bytes >= 4 * parts[0].size;
    let rules = normaliser.rules();
    let (kinds, kind_rules) = kinds_and_rules(rules);
    // The new records in merge's order; their values' ids looked up in one pass over the keys.
    let mut order: Vec<u32> =
        (0..incoming.len() as u32).filter(|&i| ids.key_of(incoming[i as usize].row).is_some()).collect();
    sort_in_arrival_order(&mut order, incoming);
    let mut wanted: FxHashMap<u128, u32> = FxHashMap::default();
    for &i in &order {
        let r = &incoming[i as usize];
        wanted.insert(value_key(&r.id_type, &r.id_value), u32::MAX);
    }
    let (mut next_id, mut all_keys) = (0u32, Vec::new());
    let last_part = parts.len() - 1;
    for (p, part) in parts.iter_mut().enumerate() {
        // Room for exactly the keys read and the few an increment adds: a doubled array would
        // be held beside the resolver's whole state until the new base is written.
        let count = part.count::<16>()?;
        if merge {
            all_keys.reserve_exact(count + if p == last_part { order.len() } else { 0 });
        }
        part.keys(count, |key| {
            if let Some(id) = wanted.get_mut(&key) {
                *id = next_id;
            }
            if merge {
                all_keys.push(key);
            }
            next_id += 1;
        })?;
    }
    // Values never seen get the next ids, in arrival order; the pairs of known values may be
    // known already: one pass over the stored pairs says which.
    let mut new_keys: Vec<u128> = Vec::new();
    let mut values: Vec<u32> = Vec::with_capacity(order.len());
    let mut candidates: FxHashSet<u64> = FxHashSet::default();
    for &i in &order {
        let r = &incoming[i as usize];
        let key = value_key(&r.id_type, &r.id_value);
        let id = wanted.get_mut(&key).expect("every incoming key is wanted");
        if *id == u32::MAX {
            *id = next_id + new_keys.len() as u32;
            new_keys.push(key);
        } else {
            candidates.insert(known_key(r.row, *id));
        }
        values.push(*id);
    }
    let (mut found, mut all_known): (FxHashSet<u64>, Vec<u64>) = (FxHashSet::default(), Vec::new());
    for (p, part) in parts.iter_mut().enumerate() {
        let count = part.count::<8>()?;
        if merge {
            all_known.reserve_exact(count + if p == last_part { order.len() } else { 0 });
        }
        part.known(count, |pair| {
            if candidates.contains(&pair) {
                found.insert(pair);
            }
            if merge {
                all_known.push(pair);
            }
        })?;
    }
    let (mut resolver, next_seq) = resume_state(root, base_file, &mut parts, kind_rules, rules.hub_limit, splits)?;
    let mut new_known: FxHashSet<u64> = FxHashSet::default();
    let mut records: Vec<Record> = Vec::new();
    let mut links = Vec::new();
    for (&i, &value) in order.iter().zip(&values) {
        let r = &incoming[i as usize];
        let known = known_key(r.row, value);
        if found.contains(&known) || !new_known.insert(known) {
            continue;
        }
        let mut record = r.clone();
        record.seq = next_seq + records.len() as u64;
        if record.invalid.is_none() {
            let Some(kind) = kinds.iter().position(|k| *k == &*record.id_type) else { return Ok(None) };
            let denied = normaliser.denied(&record.id_value) || splits.blocks(&record.id_type, &record.id_value);
            links.push((
                LinkKey { ts: record.ts.unwrap_or(i64::MIN), seq: record.seq },
                Link { user: record.row, kind: kind as u16, value, denied },
                records.len(),
            ));
        }
        records.push(record);
    }
    links.sort_by_key(|l| l.0);
    let only: Vec<Link> = links.iter().map(|l| l.1).collect();
    if !resolver.try_extend(&only, links.first().map(|l| l.0), links.last().map(|l| l.0)) {
        return Ok(None);
    }
    let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
    for (l, o) in links.iter().zip(resolver.outcomes()) {
        outcomes[l.2] = Some(*o);
    }
    let version = w.next_version();
    let mut more_links = previous.more_links.clone();
    let (mut linked, mut rejected) = (previous.linked, previous.rejected.clone());
    if !records.is_empty() {
        let (segment, new_linked, new_rejected) = write_links(w, version, &records, &outcomes, ids, rules, splits)?;
        more_links.push(segment);
        linked += new_linked;
        for (reason, n) in new_rejected {
            *rejected.entry(reason).or_default() += n;
        }
    }
    // No person changed: the previous persons file still holds (docs/identity.md).
    let (persons, users, person_count) = if users == base_users && !resolver.joined_any() {
        (previous.persons.clone(), previous.users, previous.person_count)
    } else {
        write_persons(w, version, &resolver.person_ids(users), ids)?
    };
    let mut known: Vec<u64> = new_known.into_iter().collect();
    known.sort_unstable();
    let next_seq = next_seq + records.len() as u64;
    let (state_base, state_deltas) = if merge {
        // A new base: every key and known pair so far, the resolver's whole state, written as
        // they are freed (at ten million users the resolver's part alone is most of a gigabyte;
        // made in memory first, it put this import over 2.6 GB).
        all_keys.extend(new_keys);
        let mut file = StateFile::create(w, version, "state")?;
        file.put_u64(fingerprint)?;
        file.put_keys(&all_keys)?;
        drop(all_keys);
        all_known.extend(known);
        all_known.sort_unstable();
        file.put_known(all_known.len(), all_known.iter().copied())?;
        drop(all_known);
        file.put_next_seq(next_seq)?;
        let abs = file.abs.clone();
        resolver.write_base(&mut file).io_context("write", &abs)?;
        (Some(file.finish(BASE_MAGIC)?), Vec::new())
    } else {
        let part = StatePart { fingerprint, next_seq, keys: new_keys, known, resolver: resolver.save_delta() };
        let mut state_deltas = previous.state_deltas.clone();
        state_deltas.push(write_state(w, version, &part, DELTA_MAGIC, "state-delta")?);
        (previous.state_base.clone(), state_deltas)
    };
    Ok(Some(Resolution {
        links: previous.links.clone(),
        more_links,
        link_overrides: previous.link_overrides.clone(),
        state: None,
        state_base,
        state_deltas,
        persons,
        link_rows: previous.link_rows + records.len() as u64,
        forgotten_links: previous.forgotten_links,
        users,
        person_count,
        linked,
        rejected,
    }))
}

/// The resolver a state describes (`parts`: its base then its deltas, read up to their
/// next sequence numbers), under the rules given and the cannot-link pairs of `splits`; and the
/// next sequence number. The base's resolver is decoded straight from its file; deltas are small.
fn resume_state(
    root: &Path,
    base_file: &str,
    parts: &mut [StateReader],
    kind_rules: Vec<KindRule>,
    hub_limit: u32,
    splits: &Splits,
) -> Result<(Resolver, u64)> {
    let base_seq = parts[0].u64()?;
    let mut rests = Vec::with_capacity(parts.len() - 1);
    for part in &mut parts[1..] {
        rests.push(part.rest()?);
    }
    let next_seq = rests.last().map_or(base_seq, |(seq, _)| *seq);
    let deltas: Vec<&[u8]> = rests.iter().map(|(_, b)| b.as_slice()).collect();
    let base = &mut parts[0];
    let resolver = Resolver::resume_from(kind_rules, hub_limit, splits.pairs.clone(), base, &deltas)
        .map_err(|e| Error::corrupt(layout::resolve(root, base_file), e))?;
    base.finish()?;
    Ok((resolver, next_seq))
}

/// The identifier types of `rules` in their order, and each one's resolution rule.
fn kinds_and_rules(rules: &IdentityRules) -> (Vec<&str>, Vec<KindRule>) {
    let kinds = rules.types.keys().map(String::as_str).collect();
    let kind_rules = rules
        .types
        .values()
        .map(|r| KindRule { priority: r.priority, max_per_person: r.max_per_person, unique: r.unique })
        .collect();
    (kinds, kind_rules)
}

/// `order` (positions in `incoming`) sorted as records are sequenced: by (ts, row, type, value,
/// source), a missing ts first. Sorted through an index: moving the records themselves costs
/// more than comparing them.
fn sort_in_arrival_order(order: &mut [u32], incoming: &[Record]) {
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
    fn of(splits: &[Split], ids: &IdMap) -> Result<Splits> {
        let mut out = Splits::default();
        for s in splits {
            match s {
                Split::Pair { a, b, .. } => {
                    if let (Some(a), Some(b)) = (ids.lookup(a)?, ids.lookup(b)?) {
                        out.pairs.push((a, b));
                    }
                }
                Split::Value { id_type, id_value, .. } => {
                    out.values.insert((id_type.clone(), id_value.clone()));
                }
            }
        }
        Ok(out)
    }

    fn blocks(&self, id_type: &str, id_value: &str) -> bool {
        !self.values.is_empty() && self.values.contains(&(id_type.to_string(), id_value.to_string()))
    }
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
        Some(Outcome::Joined) => {
            let rule = rules.types.get(r.id_type.as_ref());
            let priority = rule.map_or(0, |t| t.priority);
            (
                "joined",
                Some(format!(
                    "joined the person already holding this {}: a {} belongs to one person (priority {priority})",
                    r.id_type, r.id_type
                )),
            )
        }
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

/// Writes the links of `records` with their outcomes, in processing order, as a links file of
/// `version`; returns its path, the links accepted and those rejected by reason.
#[allow(clippy::too_many_arguments)]
fn write_links(
    w: &StoreWriter,
    version: u64,
    records: &[Record],
    outcomes: &[Option<Outcome>],
    ids: &IdMap,
    rules: &IdentityRules,
    splits: &Splits,
) -> Result<(String, u64, BTreeMap<String, u64>)> {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| (records[i].ts.unwrap_or(i64::MIN), records[i].seq));
    let (mut maker, mut file) = (LinksMaker::new(ids, rules, splits), LinksFile::create(w, version)?);
    for i in order {
        if let Some(batch) = maker.push(&records[i], records[i].seq, outcomes[i])? {
            file.write(&batch)?;
        }
    }
    file.write(&maker.take()?)?;
    Ok((file.finish()?, maker.linked, maker.rejected))
}

/// The rows of a links file, batch by batch: one row per link with its status and reason; counts
/// the links accepted and those rejected by reason.
struct LinksMaker<'a> {
    ids: &'a IdMap,
    rules: &'a IdentityRules,
    splits: &'a Splits,
    batch: LinkRows,
    linked: u64,
    rejected: BTreeMap<String, u64>,
}

/// The rows of one batch of a links file.
#[derive(Default)]
struct LinkRows {
    rows: Vec<u32>,
    users: StringBuilder,
    types: StringBuilder,
    values: StringBuilder,
    sources: StringBuilder,
    ts: Vec<Option<i64>>,
    seqs: Vec<u64>,
    statuses: StringBuilder,
    reasons: StringBuilder,
}

/// Rows per batch of a links file.
const LINK_BATCH_ROWS: usize = 65_536;

impl<'a> LinksMaker<'a> {
    fn new(ids: &'a IdMap, rules: &'a IdentityRules, splits: &'a Splits) -> LinksMaker<'a> {
        LinksMaker { ids, rules, splits, batch: LinkRows::default(), linked: 0, rejected: BTreeMap::new() }
    }

    /// Adds the link `r`, numbered `seq`; a batch when one is full.
    fn push(&mut self, r: &Record, seq: u64, outcome: Option<Outcome>) -> Result<Option<RecordBatch>> {
        let (s, reason) = status(outcome, r, self.rules, self.splits);
        if outcome.is_some_and(Outcome::accepted) {
            self.linked += 1;
        } else {
            *self.rejected.entry(s.to_string()).or_default() += 1;
        }
        let b = &mut self.batch;
        b.rows.push(r.row);
        b.users.append_value(self.ids.key_of(r.row).unwrap_or_default());
        b.types.append_value(&*r.id_type);
        b.values.append_value(&r.id_value);
        b.sources.append_option(r.source.as_deref());
        b.ts.push(r.ts);
        b.seqs.push(seq);
        b.statuses.append_value(s);
        b.reasons.append_option(reason);
        if b.rows.len() >= LINK_BATCH_ROWS { self.take().map(Some) } else { Ok(None) }
    }

    /// The rows added since the last batch, as a batch.
    fn take(&mut self) -> Result<RecordBatch> {
        let mut b = std::mem::take(&mut self.batch);
        Ok(RecordBatch::try_new(
            links_schema(),
            vec![
                Arc::new(UInt32Array::from(std::mem::take(&mut b.rows))),
                Arc::new(b.users.finish()),
                Arc::new(b.types.finish()),
                Arc::new(b.values.finish()),
                Arc::new(b.sources.finish()),
                Arc::new(TimestampMicrosecondArray::from(std::mem::take(&mut b.ts))),
                Arc::new(UInt64Array::from(std::mem::take(&mut b.seqs))),
                Arc::new(b.statuses.finish()),
                Arc::new(b.reasons.finish()),
            ],
        )?)
    }

    fn is_empty(&self) -> bool {
        self.batch.rows.is_empty()
    }
}

/// A links file of a version being written.
struct LinksFile {
    writer: ArrowWriter<crate::store::io::NewFile>,
    relative: String,
    abs: std::path::PathBuf,
}

impl LinksFile {
    fn create(w: &StoreWriter, version: u64) -> Result<LinksFile> {
        let (relative, abs) = w.new_file(new_resolution_file(version, "links"))?;
        let file = crate::store::io::create(&abs)?;
        // Values nearly unique per link are not dictionary-encoded: the dictionary would only be
        // built to be dropped at its size limit.
        let mut props =
            parquet::file::properties::WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY);
        for column in [ROW_ID_COLUMN, USER_ID, ID_VALUE, "seq"] {
            props = props.set_column_dictionary_enabled(parquet::schema::types::ColumnPath::from(column), false);
        }
        let writer = ArrowWriter::try_new(file, links_schema(), Some(props.build()))?;
        Ok(LinksFile { writer, relative, abs })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        Ok(self.writer.write(batch)?)
    }

    /// The path written (synced).
    fn finish(self) -> Result<String> {
        let mut file = self.writer.into_inner()?;
        file.sync_all().io_context("fsync", &self.abs)?;
        Ok(self.relative)
    }
}

/// Writes every live user row's person as the persons file of `version`; returns its path, the
/// users and the distinct persons.
fn write_persons(w: &StoreWriter, version: u64, persons: &[u32], ids: &IdMap) -> Result<(String, u64, u64)> {
    let (relative, abs) = w.new_file(new_resolution_file(version, "persons"))?;
    let mut writer = ArrowWriter::try_new(crate::store::io::create(&abs)?, persons_schema(), None)?;
    // Persons are numbered densely from 0: a bitmap counts them.
    let mut distinct = roaring::RoaringBitmap::new();
    let mut users_count = 0u64;
    for (chunk, rows) in persons.chunks(PERSONS_BATCH_ROWS).enumerate() {
        let first = chunk * PERSONS_BATCH_ROWS;
        let mut user_ids = StringBuilder::new();
        let (mut person_ids, mut seqs) = (Vec::new(), Vec::new());
        for (at, &p) in rows.iter().enumerate() {
            let row = first + at;
            // Forgotten rows (holes in the row ids) belong to no person.
            let Some(user) = ids.key_of(row as u32).filter(|u| !u.is_empty()) else { continue };
            user_ids.append_value(user);
            person_ids.push(i64::from(p));
            seqs.push(row as i64);
            distinct.insert(p);
        }
        users_count += person_ids.len() as u64;
        writer.write(&RecordBatch::try_new(
            persons_schema(),
            vec![Arc::new(user_ids.finish()), Arc::new(Int64Array::from(person_ids)), Arc::new(Int64Array::from(seqs))],
        )?)?;
    }
    let mut file = writer.into_inner()?;
    file.sync_all().io_context("fsync", &abs)?;
    Ok((relative, users_count, distinct.len()))
}

/// Users per batch of a persons file (a row group each).
const PERSONS_BATCH_ROWS: usize = 1 << 20;

/// The named columns of a Parquet file, batch by batch.
fn read_columns(path: &Path, names: &[&str], f: impl FnMut(&RecordBatch) -> Result<()>) -> Result<()> {
    read_columns_in(path, names, None, f)
}

/// [`read_columns`] of the row groups `groups` only (all when `None`).
fn read_columns_in(
    path: &Path,
    names: &[&str],
    groups: Option<Vec<usize>>,
    mut f: impl FnMut(&RecordBatch) -> Result<()>,
) -> Result<()> {
    let file = File::open(path).io_context("open", path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = builder.schema().clone();
    let indices: Vec<usize> = names.iter().filter_map(|n| schema.index_of(n).ok()).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let mut builder = builder.with_projection(mask).with_batch_size(65_536);
    if let Some(groups) = groups {
        builder = builder.with_row_groups(groups);
    }
    for batch in builder.build()? {
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

    /// Makes `slot` name `name`, keeping it when it does already (most rows repeat the last).
    fn set(&mut self, slot: &mut Arc<str>, name: &str) {
        if &**slot != name {
            *slot = self.get(name);
        }
    }

    fn set_opt(&mut self, slot: &mut Option<Arc<str>>, name: Option<&str>) {
        match (slot.as_mut(), name) {
            (Some(s), Some(name)) => self.set(s, name),
            (_, name) => *slot = name.map(|name| self.get(name)),
        }
    }
}

fn opt_text(batch: &RecordBatch, name: &str) -> Option<StringArray> {
    let col = batch.column_by_name(name)?;
    arrow::compute::cast(col, &DataType::Utf8).ok().map(|c| c.as_string::<i32>().clone())
}

/// Column `name` of a batch read from the store file `path`, as the array type Persona writes
/// there; `missing` when there is none, a corrupt error naming the file when it holds another
/// type (never a panic: store::typed).
fn stored_column<'b, T: arrow::array::Array + 'static>(
    path: &Path,
    b: &'b RecordBatch,
    name: &str,
    missing: impl Fn() -> Error,
) -> Result<&'b T> {
    let column = b.column_by_name(name).ok_or_else(missing)?;
    crate::store::typed::column::<T>(path, name, column.as_ref())
}

fn read_links(path: &Path, out: &mut impl FnMut(&Record) -> Result<()>) -> Result<()> {
    let mut names = Names::default();
    // One record, refilled per row: no allocation per link.
    let mut r = Record::default();
    read_columns(path, &[ROW_ID_COLUMN, ID_TYPE, ID_VALUE, SOURCE, TS, "seq", "status", "reason"], |b| {
        let corrupt = || Error::corrupt(path, "an identity links file lacks a column");
        let rows = stored_column::<UInt32Array>(path, b, ROW_ID_COLUMN, corrupt)?;
        let (types, values) = (opt_text(b, ID_TYPE).ok_or_else(corrupt)?, opt_text(b, ID_VALUE).ok_or_else(corrupt)?);
        let (sources, status, reason) = (
            opt_text(b, SOURCE).ok_or_else(corrupt)?,
            opt_text(b, "status").ok_or_else(corrupt)?,
            opt_text(b, "reason"),
        );
        let ts = stored_column::<TimestampMicrosecondArray>(path, b, TS, corrupt)?;
        let seq = stored_column::<UInt64Array>(path, b, "seq", corrupt)?;
        for i in 0..b.num_rows() {
            r.invalid = (status.value(i) == "invalid").then(|| {
                reason.as_ref().filter(|why| why.is_valid(i)).map(|why| why.value(i).to_string()).unwrap_or_default()
            });
            r.row = rows.value(i);
            names.set(&mut r.id_type, types.value(i));
            r.id_value.clear();
            r.id_value.push_str(values.value(i));
            names.set_opt(&mut r.source, sources.is_valid(i).then(|| sources.value(i)));
            r.ts = ts.is_valid(i).then(|| ts.value(i));
            r.seq = seq.value(i);
            out(&r)?;
        }
        Ok(())
    })
}

/// The rows of a stored identities file (already normalised by the import).
fn read_identities(path: &Path, out: &mut impl FnMut(&Record) -> Result<()>) -> Result<()> {
    let mut names = Names::default();
    let mut r = Record::default();
    read_columns(path, &[ROW_ID_COLUMN, ID_TYPE, ID_VALUE, SOURCE, TS], |b| {
        let corrupt = || Error::corrupt(path, "an identities file lacks a contract column");
        let rows = stored_column::<UInt32Array>(path, b, ROW_ID_COLUMN, corrupt)?;
        let (types, values) = (opt_text(b, ID_TYPE).ok_or_else(corrupt)?, opt_text(b, ID_VALUE).ok_or_else(corrupt)?);
        let sources = opt_text(b, SOURCE);
        let ts = match b.column_by_name(TS) {
            Some(c) => Some(crate::store::typed::column::<TimestampMicrosecondArray>(path, TS, c.as_ref())?),
            None => None,
        };
        for i in 0..b.num_rows() {
            r.row = rows.value(i);
            names.set(&mut r.id_type, types.value(i));
            r.id_value.clear();
            r.id_value.push_str(values.value(i));
            names.set_opt(&mut r.source, sources.as_ref().filter(|s| s.is_valid(i)).map(|s| s.value(i)));
            r.ts = ts.as_ref().filter(|t| t.is_valid(i)).map(|t| t.value(i));
            out(&r)?;
        }
        Ok(())
    })
}

/// The phone and e-mail of a stored users file's rows, as links seen at the user's signup date
/// (source `users`); a value that is no phone or e-mail is kept as an invalid record.
fn read_users(path: &Path, n: &Normaliser, out: &mut impl FnMut(&Record) -> Result<()>) -> Result<()> {
    let mut names = Names::default();
    let mut r = Record { source: Some(names.get(USERS_SOURCE)), ..Record::default() };
    read_columns(path, &[ROW_ID_COLUMN, PHONE, EMAIL, "signup_date"], |b| {
        let rows = stored_column::<UInt32Array>(path, b, ROW_ID_COLUMN, || {
            Error::corrupt(path, "a users file lacks its row ids")
        })?;
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
                (r.id_value, r.invalid) = match n.value(id_type, raw, None) {
                    Ok(v) => (v, None),
                    Err(m) => (raw.to_string(), Some(m)),
                };
                r.row = rows.value(i);
                names.set(&mut r.id_type, id_type);
                r.ts = signup.as_ref().filter(|s| s.is_valid(i)).map(|s| i64::from(s.value(i)) * DAY_MICROS);
                out(&r)?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Parquet file of the given columns.
    fn parquet_file(dir: &Path, name: &str, columns: Vec<(&str, arrow::array::ArrayRef)>) -> std::path::PathBuf {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let path = dir.join(name);
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        path
    }

    #[test]
    fn a_state_count_past_the_end_of_its_part_is_corrupt_before_any_memory_is_reserved() {
        let dir = tempfile::tempdir().unwrap();
        // Fingerprint 7, then a count of 300 million keys (4.8 GB) followed by one key.
        let mut payload = 7u64.to_le_bytes().to_vec();
        payload.extend_from_slice(&300_000_000u32.to_le_bytes());
        payload.extend_from_slice(&[0u8; 16]);
        let mut bytes = BASE_MAGIC.to_vec();
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&payload);
        std::fs::write(dir.path().join("state.bin"), &bytes).unwrap();
        let mut part = StateReader::open(dir.path(), "state.bin", BASE_MAGIC).unwrap();
        assert_eq!(part.fingerprint, 7);
        let err = part.count::<16>().unwrap_err();
        assert!(matches!(&err, Error::Corrupt { .. }) && err.to_string().contains("past the end"), "{err}");
        // The same count over that many bytes is read.
        let mut part = StateReader::open(dir.path(), "state.bin", BASE_MAGIC).unwrap();
        assert_eq!(part.count::<0>().unwrap(), 300_000_000);
    }

    #[test]
    fn a_stored_identity_file_with_a_column_of_another_type_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let text = |v: &str| Arc::new(arrow::array::StringArray::from(vec![v])) as arrow::array::ArrayRef;
        // Row ids written as 64-bit integers, as no version of Persona writes them.
        let wrong_rows = Arc::new(Int64Array::from(vec![3])) as arrow::array::ArrayRef;
        let identities = parquet_file(
            dir.path(),
            "identities.parquet",
            vec![(ROW_ID_COLUMN, wrong_rows.clone()), (ID_TYPE, text("device_id")), (ID_VALUE, text("d1"))],
        );
        let err = read_identities(&identities, &mut |_| Ok(())).unwrap_err();
        assert!(matches!(&err, Error::Corrupt { path, .. } if path == &identities), "{err}");
        assert!(err.to_string().contains("column __row_id holds Int64"), "{err}");
        let ts = Arc::new(TimestampMicrosecondArray::from(vec![Some(1)])) as arrow::array::ArrayRef;
        let links = parquet_file(
            dir.path(),
            "links.parquet",
            vec![
                (ROW_ID_COLUMN, Arc::new(UInt32Array::from(vec![3])) as arrow::array::ArrayRef),
                (ID_TYPE, text("device_id")),
                (ID_VALUE, text("d1")),
                (SOURCE, text("app")),
                (TS, ts),
                ("seq", Arc::new(arrow::array::StringArray::from(vec!["7"])) as arrow::array::ArrayRef),
                ("status", text("linked")),
            ],
        );
        let err = read_links(&links, &mut |_| Ok(())).unwrap_err();
        assert!(matches!(&err, Error::Corrupt { path, .. } if path == &links), "{err}");
        assert!(err.to_string().contains("column seq holds Utf8"), "{err}");
        let users =
            parquet_file(dir.path(), "users.parquet", vec![(ROW_ID_COLUMN, wrong_rows), (PHONE, text("13912345678"))]);
        let n = Normaliser::new(&IdentityRules::default()).unwrap();
        assert!(matches!(read_users(&users, &n, &mut |_| Ok(())).unwrap_err(), Error::Corrupt { .. }));
    }
}
