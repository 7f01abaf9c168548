//! The resolution from the start (docs/identity.md), in memory bounded by the number of links
//! rather than their text. A first pass over the sources (the stored links files, then the new
//! identities and users files) keeps per link only numbers — row, value id, time, sequence,
//! type and source — with each distinct (type, value) interned as a 128-bit key: one thread
//! reads, normalises and hashes, this one interns. The keys are then written to the state and
//! freed; sorts drop the (user, value) pairs already seen (the sorted pairs are the state's known
//! pairs) and sequence the new links, which, merged with the stored ones sorted, are every link
//! in (ts, seq) order; the resolver decides them in one pass; and a second pass over the same
//! sources writes the links file, in the order read, with each link's sequence and outcome
//! (encoded and compressed on a thread of its own).
//!
//! ```text
//! sources ─ pass 1 (read ∥ intern) ─ numbers + keys ─ sort: dedup ─ sort: arrival (new seq) ─ merge with stored ─ Resolver
//!        └─ pass 2 (same order; read ∥ encode) ─ links file (+ seq, status, reason) ◄── outcomes ───────────────────┘
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::in_order;
use super::{
    IdMap, Link, LinkKey, LinksFile, LinksMaker, Normaliser, Outcome, Record, Resolver, Splits, StateFile,
    kinds_and_rules, known_key, read_identities, read_links, read_users, value_key,
};
use crate::error::{Error, Result};
use crate::store::identity::IdentityRules;

/// Where links come from, in the order they are read.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// A stored links file (its links keep their sequence numbers).
    Links(PathBuf),
    /// A stored identities file.
    Identities(PathBuf),
    /// A stored users file (its phones and e-mails).
    Users(PathBuf),
}

impl Source {
    fn path(&self) -> &std::path::Path {
        match self {
            Source::Links(p) | Source::Identities(p) | Source::Users(p) => p,
        }
    }
}

fn scan(source: &Source, n: &Normaliser, f: &mut impl FnMut(&Record) -> Result<()>) -> Result<()> {
    match source {
        Source::Links(p) => read_links(p, f),
        Source::Identities(p) => read_identities(p, f),
        Source::Users(p) => read_users(p, n, f),
    }
}

/// What a resolution from the start found.
pub(super) struct Full {
    /// Per user row, its person.
    pub(super) persons: Vec<u32>,
    /// Links kept (every source's, minus duplicates and forgotten users').
    pub(super) link_rows: u64,
    pub(super) resolver: Resolver,
    /// Where each source's records start among those read.
    starts: Vec<usize>,
    /// What the second pass needs, per record read: whether it is kept, its sequence number and
    /// its link's place among the resolver's outcomes.
    seqs: Vec<u32>,
    flags: Vec<u8>,
    pos: Vec<u32>,
}

/// The links file written: its path, the links accepted and those rejected by reason.
pub(super) type Written = (String, u64, std::collections::BTreeMap<String, u64>);

/// Per link read, its flags.
const LIVE: u8 = 1;
const NEW: u8 = 2;
const INVALID: u8 = 4;
/// A valid link whose value is denied or blocked (what its value's first link says of it).
const DENIED: u8 = 8;

/// Links per chunk handed from a reading thread to the interning one.
const CHUNK: usize = 65_536;

/// Threads reading the sources (the interning thread is a third).
const READERS: usize = 2;

/// A chunk of pass 1's numbers, as a reading thread makes them: the value as its key (the
/// interning thread numbers it), types and sources numbered by the reading thread (`names`:
/// the names it numbered since its last chunk), everything else as [`Links`] keeps it.
#[derive(Default)]
struct Chunk {
    row: Vec<u32>,
    key: Vec<u128>,
    ts: Vec<i64>,
    seq: Vec<u32>,
    ty: Vec<u16>,
    src: Vec<u16>,
    flags: Vec<u8>,
    names: Vec<Arc<str>>,
}

/// Pass 1's reading half for one source: sends its links as chunks of numbers, numbering types
/// and sources in `names` (the reading thread's own).
fn read_numbers(
    source: &Source,
    normaliser: &Normaliser,
    splits: &Splits,
    ids: &IdMap,
    names: &mut Names,
    tx: &in_order::Sender<Chunk>,
) -> Result<()> {
    let new = !matches!(source, Source::Links(_));
    let mut c = Chunk::default();
    let mut named = names.list.len();
    scan(source, normaliser, &mut |r: &Record| {
        let live = ids.key_of(r.row).is_some();
        let denied =
            live && r.invalid.is_none() && (normaliser.denied(&r.id_value) || splits.blocks(&r.id_type, &r.id_value));
        c.row.push(r.row);
        c.key.push(if live { value_key(&r.id_type, &r.id_value) } else { 0 });
        c.ts.push(r.ts.unwrap_or(i64::MIN));
        c.seq.push(if new { 0 } else { seq32(r.seq)? });
        c.ty.push(names.id(&r.id_type)?);
        c.src.push(match &r.source {
            Some(s) => names.id(s)?,
            None => u16::MAX,
        });
        c.flags.push(
            (if live { LIVE } else { 0 })
                | (if new { NEW } else { 0 })
                | (if r.invalid.is_some() { INVALID } else { 0 })
                | (if denied { DENIED } else { 0 }),
        );
        if c.row.len() >= CHUNK {
            c.names = names.list[named..].to_vec();
            named = names.list.len();
            tx.send(std::mem::take(&mut c))?;
        }
        Ok(())
    })?;
    if !c.row.is_empty() || named < names.list.len() {
        c.names = names.list[named..].to_vec();
        tx.send(c)?;
    }
    Ok(())
}

/// Sorts `v` on two threads: split around its middle element, each side sorted on its own.
fn sort_on_two_cores(v: &mut [u128]) {
    if v.len() < 1 << 16 {
        v.sort_unstable();
        return;
    }
    let mid = v.len() / 2;
    v.select_nth_unstable(mid);
    let (low, high) = v.split_at_mut(mid);
    std::thread::scope(|scope| {
        scope.spawn(|| low.sort_unstable());
        high.sort_unstable();
    });
}

/// An empty slot of the [`Interner`].
const EMPTY: u32 = u32::MAX;

/// Value keys to dense ids: an open-addressed table of ids (the keys are hashes already) over
/// the keys in id order.
struct Interner {
    slots: Vec<u32>,
    keys: Vec<u128>,
}

impl Interner {
    fn new() -> Interner {
        Interner { slots: vec![EMPTY; 1 << 16], keys: Vec::new() }
    }

    /// The id of `key`, and whether it is new.
    fn id(&mut self, key: u128) -> (u32, bool) {
        if (self.keys.len() + 1) * 2 > self.slots.len() {
            let mut slots = vec![EMPTY; self.slots.len() * 2];
            for (id, &k) in self.keys.iter().enumerate() {
                let mask = slots.len() - 1;
                let mut at = (k as usize) & mask;
                while slots[at] != EMPTY {
                    at = (at + 1) & mask;
                }
                slots[at] = id as u32;
            }
            self.slots = slots;
        }
        let mask = self.slots.len() - 1;
        let mut at = (key as usize) & mask;
        loop {
            let id = self.slots[at];
            if id == EMPTY {
                let id = self.keys.len() as u32;
                self.slots[at] = id;
                self.keys.push(key);
                return (id, true);
            }
            if self.keys[id as usize] == key {
                return (id, false);
            }
            at = (at + 1) & mask;
        }
    }
}

/// The links read, as numbers (one entry per record read, live or not).
#[derive(Default)]
struct Links {
    row: Vec<u32>,
    value: Vec<u32>,
    ts: Vec<i64>,
    seq: Vec<u32>,
    ty: Vec<u16>,
    src: Vec<u16>,
    flags: Vec<u8>,
}

/// Type and source names, numbered as first seen (`u16::MAX`: no source).
#[derive(Default)]
struct Names {
    list: Vec<Arc<str>>,
    index: FxHashMap<Arc<str>, u16>,
}

impl Names {
    fn id(&mut self, name: &Arc<str>) -> Result<u16> {
        if let Some(&id) = self.index.get(name) {
            return Ok(id);
        }
        let id = u16::try_from(self.list.len())
            .ok()
            .filter(|&i| i < u16::MAX)
            .ok_or_else(|| Error::Usage("identity links name more than 65,534 types and sources".into()))?;
        self.list.push(Arc::clone(name));
        self.index.insert(Arc::clone(name), id);
        Ok(id)
    }

    fn name(&self, id: u16) -> &str {
        self.list.get(id as usize).map_or("", |n| n)
    }
}

fn seq32(seq: u64) -> Result<u32> {
    u32::try_from(seq).map_err(|_| Error::Usage("a store holds at most 4,294,967,295 identity links".into()))
}

/// Resolves every link of `sources` from the start (see the module doc). With `state`, writes
/// the value keys, the known pairs and the next sequence number to it as soon as they are final
/// (then frees them); the resolver's part is the caller's to write.
pub(super) fn resolve(
    sources: &[Source],
    normaliser: &Normaliser,
    splits: &Splits,
    ids: &IdMap,
    users: u32,
    state: Option<&mut StateFile>,
) -> Result<Full> {
    resolve_reading_on(READERS, sources, normaliser, splits, ids, users, state)
}

/// [`resolve`] with `readers` threads reading the sources (whatever their number, the result
/// is the same: the unit test below holds it to that).
fn resolve_reading_on(
    readers: usize,
    sources: &[Source],
    normaliser: &Normaliser,
    splits: &Splits,
    ids: &IdMap,
    users: u32,
    mut state: Option<&mut StateFile>,
) -> Result<Full> {
    // Pass 1: numbers, read on two threads and interned on this one in the order read.
    let mut l = Links::default();
    let mut interner = Interner::new();
    let mut denied: Vec<bool> = Vec::new();
    let mut first_new = 0u64;
    let mut names = Names::default();
    // Per reading thread, its type and source numbers as this thread numbers them.
    let mut renumber: Vec<Vec<u16>> = vec![Vec::new(); readers];
    let mut counts = vec![0usize; sources.len()];
    in_order::read_in_order(
        sources,
        readers,
        // Each thread its own names, and its own normaliser (see facts::load_all).
        || (Names::default(), normaliser.clone()),
        |(own, normaliser), _, source, tx| read_numbers(source, normaliser, splits, ids, own, tx),
        |i, c: Chunk| {
            counts[i] += c.row.len();
            let map = &mut renumber[i % readers];
            for name in &c.names {
                map.push(names.id(name)?);
            }
            for i in 0..c.row.len() {
                let f = c.flags[i];
                let (value, fresh) = if f & LIVE != 0 { interner.id(c.key[i]) } else { (u32::MAX, false) };
                if fresh {
                    denied.push(f & DENIED != 0);
                }
                if f & (LIVE | NEW) == LIVE {
                    first_new = first_new.max(u64::from(c.seq[i]) + 1);
                }
                l.value.push(value);
            }
            let own = |id: u16| if id == u16::MAX { id } else { map[id as usize] };
            l.row.extend_from_slice(&c.row);
            l.ts.extend_from_slice(&c.ts);
            l.seq.extend_from_slice(&c.seq);
            l.ty.extend(c.ty.iter().map(|&t| own(t)));
            l.src.extend(c.src.iter().map(|&t| own(t)));
            l.flags.extend(c.flags.iter().map(|f| f & !DENIED));
            Ok(())
        },
    )?;
    drop(interner.slots);
    // The keys are final: written, and their memory reused for the sorts (three sorts of 16-byte
    // entries, one after another, in one buffer: the peak memory of the resolution).
    if let Some(state) = state.as_deref_mut() {
        state.put_keys(&interner.keys)?;
    }
    let mut buf: Vec<u128> = interner.keys;
    buf.clear();
    let n = l.row.len();
    let at = |e: u128| e as u32 as usize;
    let src_name = |i: usize| if l.src[i] == u16::MAX { None } else { Some(names.name(l.src[i])) };
    // The first arrival of each (user, value) stays: a stored link before a new one, then by
    // time and source. Entries: (pair, link), sorted; ties decided within each pair's run.
    buf.extend(
        (0..n)
            .filter(|&i| l.flags[i] & LIVE != 0)
            .map(|i| (u128::from(known_key(l.row[i], l.value[i])) << 32) | i as u128),
    );
    sort_on_two_cores(&mut buf);
    let mut distinct = 0usize;
    for run in buf.chunk_by(|a, b| a >> 32 == b >> 32) {
        distinct += 1;
        if run.len() > 1 {
            let first = run
                .iter()
                .map(|&e| at(e))
                .min_by(|&i, &j| {
                    (l.flags[i] & NEW, l.ts[i])
                        .cmp(&(l.flags[j] & NEW, l.ts[j]))
                        .then_with(|| src_name(i).cmp(&src_name(j)))
                })
                .unwrap_or(usize::MAX);
            run.iter().map(|&e| at(e)).filter(|&i| i != first).for_each(|i| l.flags[i] &= !LIVE);
        }
    }
    // The known pairs, sorted: the runs' pairs.
    if let Some(state) = state.as_deref_mut() {
        let known = buf.chunk_by(|a, b| a >> 32 == b >> 32).map(|run| (run[0] >> 32) as u64);
        state.put_known(distinct, known)?;
    }
    // The new links are sequenced after the stored ones in (ts, row, type, value, source) order,
    // values in the order first read. Entries: (ts, row, link), sorted; ties within each run.
    let ts_key = |i: usize| u128::from((l.ts[i] as u64) ^ (1 << 63)) << 64;
    buf.clear();
    buf.extend(
        (0..n)
            .filter(|&i| l.flags[i] & (LIVE | NEW) == LIVE | NEW)
            .map(|i| ts_key(i) | (u128::from(l.row[i]) << 32) | i as u128),
    );
    sort_on_two_cores(&mut buf);
    for run in buf.chunk_by_mut(|a, b| a >> 32 == b >> 32).filter(|run| run.len() > 1) {
        run.sort_unstable_by(|&a, &b| {
            let (i, j) = (at(a), at(b));
            names
                .name(l.ty[i])
                .cmp(names.name(l.ty[j]))
                .then_with(|| l.value[i].cmp(&l.value[j]))
                .then_with(|| src_name(i).cmp(&src_name(j)))
                .then(i.cmp(&j))
        });
    }
    // Then they are in (ts, seq) order: the entries become (ts, seq, link).
    for (rank, e) in buf.iter_mut().enumerate() {
        let (i, seq) = (at(*e), seq32(first_new + rank as u64)?);
        l.seq[i] = seq;
        *e = ts_key(i) | (u128::from(seq) << 32) | i as u128;
    }
    let new_links = buf.len();
    let next_seq = first_new + new_links as u64;
    if let Some(state) = state {
        state.put_next_seq(next_seq)?;
    }
    drop(std::mem::take(&mut l.src));
    // Every link in (ts, seq) order; the resolver's links are the valid ones of a known type.
    let (kinds, kind_rules) = kinds_and_rules(normaliser.rules());
    let kind_of: Vec<Option<u16>> =
        names.list.iter().map(|name| kinds.iter().position(|k| *k == &**name).map(|k| k as u16)).collect();
    // The stored links, (ts, seq, link) sorted after the new ones, merged with them (all
    // sequenced after the stored ones).
    buf.extend(
        (0..n)
            .filter(|&i| l.flags[i] & (LIVE | NEW) == LIVE)
            .map(|i| ts_key(i) | (u128::from(l.seq[i]) << 32) | i as u128),
    );
    drop(std::mem::take(&mut l.ts));
    let (new, stored) = buf.split_at_mut(new_links);
    sort_on_two_cores(stored);
    let link_rows = (stored.len() + new.len()) as u64;
    let mut pos: Vec<u32> = vec![u32::MAX; n];
    let mut links: Vec<Link> = Vec::with_capacity(link_rows as usize);
    let mut last = None;
    let (mut old, mut new) = (stored.iter().peekable(), new.iter().peekable());
    while let Some(&e) = match (old.peek(), new.peek()) {
        (Some(a), Some(b)) if **a >> 32 <= **b >> 32 => old.next(),
        (Some(_), None) => old.next(),
        _ => new.next(),
    } {
        let i = at(e);
        let Some(kind) = kind_of[l.ty[i] as usize].filter(|_| l.flags[i] & INVALID == 0) else { continue };
        pos[i] = links.len() as u32;
        links.push(Link { user: l.row[i], kind, value: l.value[i], denied: denied[l.value[i] as usize] });
        last = Some(LinkKey { ts: ((e >> 64) as u64 ^ (1 << 63)) as i64, seq: u64::from((e >> 32) as u32) });
    }
    drop(buf);
    let (seqs, flags) = (std::mem::take(&mut l.seq), std::mem::take(&mut l.flags));
    drop(l);
    let mut resolver =
        Resolver::new(kind_rules, normaliser.rules().hub_limit).with_cannot_link(splits.pairs.clone()).untracked();
    resolver.resolve(&links, last);
    drop(links);
    let persons = resolver.person_ids(users);
    let starts = counts
        .iter()
        .scan(0usize, |at, &c| {
            let start = *at;
            *at += c;
            Some(start)
        })
        .collect();
    Ok(Full { starts, persons, link_rows, resolver, seqs, flags, pos })
}

/// The second pass: reads `sources` again, as [`resolve`] did, on two threads that make the
/// links file's batches (each kept link with its sequence number and outcome; `outcomes`: the
/// resolver's, taken out of `full`), which this thread writes to `out` in the order read.
pub(super) fn write_links(
    sources: &[Source],
    normaliser: &Normaliser,
    full: &Full,
    outcomes: &[Outcome],
    (ids, rules, splits): (&IdMap, &IdentityRules, &Splits),
    mut out: LinksFile,
) -> Result<Written> {
    let n = full.flags.len();
    if full.starts.len() != sources.len() {
        return Err(Error::Internal("identity sources changed between the passes; please report it".into()));
    }
    let makers = in_order::read_in_order(
        sources,
        READERS,
        || (LinksMaker::new(ids, rules, splits), normaliser.clone()),
        |(maker, normaliser), s, source, tx| {
            let mut at = full.starts[s];
            let end = full.starts.get(s + 1).copied().unwrap_or(n);
            scan(source, normaliser, &mut |r: &Record| {
                let i = at;
                at += 1;
                if i >= end {
                    return Err(Error::Internal(format!(
                        "an identity source grew between the passes: {}",
                        source.path().display()
                    )));
                }
                if full.flags[i] & LIVE == 0 {
                    return Ok(());
                }
                match maker.push(r, u64::from(full.seqs[i]), outcomes.get(full.pos[i] as usize).copied())? {
                    Some(batch) => tx.send(batch),
                    None => Ok(()),
                }
            })?;
            if at != end {
                return Err(Error::Internal(format!(
                    "an identity source shrank between the passes: {}",
                    source.path().display()
                )));
            }
            if !maker.is_empty() {
                tx.send(maker.take()?)?;
            }
            Ok(())
        },
        |_, batch: arrow::array::RecordBatch| out.write(&batch),
    )?;
    let mut rejected = std::collections::BTreeMap::new();
    for (m, _) in &makers {
        for (why, count) in &m.rejected {
            *rejected.entry(why.clone()).or_default() += count;
        }
    }
    Ok((out.finish()?, makers.iter().map(|(m, _)| m.linked).sum(), rejected))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Identities files of `users` users: values from small pools (so that people merge, a few
    /// values become hubs), times that tie, deny-listed and undeclared values, an empty file.
    fn identities_files(dir: &std::path::Path, users: u32) -> Vec<Source> {
        use arrow::array::{StringArray, TimestampMicrosecondArray, UInt32Array};
        use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        let schema = Arc::new(Schema::new(vec![
            Field::new(crate::tables::ROW_ID_COLUMN, DataType::UInt32, false),
            Field::new(crate::tables::ID_TYPE, DataType::Utf8, false),
            Field::new(crate::tables::ID_VALUE, DataType::Utf8, false),
            Field::new(crate::tables::SOURCE, DataType::Utf8, true),
            Field::new(crate::tables::TS, DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]));
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        (0..7)
            .map(|f| {
                let rows = if f == 3 { 0 } else { 300 + next(900) as usize };
                let (mut row, mut ty, mut value, mut source, mut ts) = (vec![], vec![], vec![], vec![], vec![]);
                for _ in 0..rows {
                    row.push(next(u64::from(users)) as u32);
                    let (t, v) = match next(10) {
                        0..=3 => ("device_id", format!("d{}", next(u64::from(users)))),
                        4 | 5 => ("wx_unionid", format!("u{}", next(u64::from(users) / 2))),
                        6 => ("phone", format!("+86139{:08}", next(u64::from(users)))),
                        7 => ("device_id", "null".to_string()),
                        8 => ("fax", format!("f{}", next(9))),
                        _ => ("email", format!("e{}@qq.com", next(7))),
                    };
                    ty.push(t);
                    value.push(v);
                    source.push((next(3) > 0).then(|| ["app", "web"][next(2) as usize]));
                    ts.push((next(5) > 0).then(|| next(40) as i64 * 1_000_000));
                }
                let batch = arrow::array::RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(UInt32Array::from(row)),
                        Arc::new(StringArray::from(ty)),
                        Arc::new(StringArray::from(value)),
                        Arc::new(StringArray::from(source)),
                        Arc::new(TimestampMicrosecondArray::from(ts)),
                    ],
                )
                .unwrap();
                let path = dir.join(format!("identities-{f}.parquet"));
                let mut w =
                    parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema.clone(), None)
                        .unwrap();
                w.write(&batch).unwrap();
                w.close().unwrap();
                Source::Identities(path)
            })
            .collect()
    }

    #[test]
    fn the_resolution_is_the_same_whatever_the_threads_reading() {
        let dir = tempfile::tempdir().unwrap();
        let users = 400u32;
        let sources = identities_files(dir.path(), users);
        let mut ids = IdMap::default();
        // Row 17 is forgotten: its links are read and dropped.
        (0..users).filter(|&u| u != 17).for_each(|u| ids.insert(&format!("user {u}"), u));
        let rules = crate::store::identity::IdentityRules { hub_limit: 6, ..Default::default() };
        let normaliser = Normaliser::new(&rules).unwrap();
        let splits = Splits::default();
        let runs: Vec<Full> = [1, 2, 3, 5]
            .into_iter()
            .map(|readers| resolve_reading_on(readers, &sources, &normaliser, &splits, &ids, users, None).unwrap())
            .collect();
        let one = &runs[0];
        let outcomes = |f: &Full| f.resolver.outcomes().to_vec();
        for other in &runs[1..] {
            assert_eq!(other.persons, one.persons);
            assert_eq!(
                (&other.seqs, &other.flags, &other.pos, &other.starts),
                (&one.seqs, &one.flags, &one.pos, &one.starts)
            );
            assert_eq!(outcomes(other), outcomes(one));
        }
        // The graph is not trivial: people merged, links rejected for each reason planted.
        let persons: std::collections::HashSet<u32> = one.persons.iter().copied().collect();
        assert!(persons.len() < users as usize * 3 / 4, "{} persons", persons.len());
        for o in [Outcome::Denied, Outcome::Hub, Outcome::Joined] {
            assert!(outcomes(one).contains(&o), "{o:?}");
        }
        assert!(one.flags.iter().any(|f| f & LIVE == 0), "duplicates and the forgotten row are dropped");
    }

    #[test]
    fn sorting_on_two_cores_sorts() {
        for n in [0usize, 1, 5, 1 << 16, 200_003] {
            let mut v: Vec<u128> = (0..n as u128).map(|k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 1_000_003).collect();
            let mut want = v.clone();
            want.sort_unstable();
            sort_on_two_cores(&mut v);
            assert_eq!(v, want, "{n}");
        }
    }

    #[test]
    fn the_interner_gives_each_key_one_dense_id_across_growth() {
        let mut i = Interner::new();
        let keys: Vec<u128> =
            (0..200_000u128).map(|k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)).collect();
        for (n, &k) in keys.iter().enumerate() {
            assert_eq!(i.id(k), (n as u32, true));
        }
        for (n, &k) in keys.iter().enumerate().step_by(997) {
            assert_eq!(i.id(k), (n as u32, false));
        }
        assert_eq!(i.keys, keys);
    }
}
