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

use super::{
    IdMap, Link, LinkKey, LinksWriter, Normaliser, Outcome, Record, Resolver, Splits, StateFile, kinds_and_rules,
    known_key, read_identities, read_links, read_users, value_key,
};
use crate::error::{Error, Result};

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

fn scan(source: &Source, n: &Normaliser, f: &mut impl FnMut(Record) -> Result<()>) -> Result<()> {
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

/// Links per chunk handed from the reading thread to the interning one.
const CHUNK: usize = 65_536;

/// A chunk of pass 1's numbers, as the reading thread makes them: the value as its key (the
/// interning thread numbers it), everything else as [`Links`] keeps it.
#[derive(Default)]
struct Chunk {
    row: Vec<u32>,
    key: Vec<u128>,
    ts: Vec<i64>,
    seq: Vec<u32>,
    ty: Vec<u16>,
    src: Vec<u16>,
    flags: Vec<u8>,
}

/// Pass 1's reading half: reads `sources` in order and sends their links as numbered chunks;
/// returns the type and source names it numbered. Stops quietly when the receiver hangs up.
fn read_numbers(
    sources: &[Source],
    normaliser: &Normaliser,
    splits: &Splits,
    ids: &IdMap,
    tx: &std::sync::mpsc::SyncSender<Chunk>,
) -> Result<Names> {
    let mut names = Names::default();
    let mut c = Chunk::default();
    for source in sources {
        let new = !matches!(source, Source::Links(_));
        scan(source, normaliser, &mut |r: Record| {
            let live = ids.key_of(r.row).is_some();
            let denied = live
                && r.invalid.is_none()
                && (normaliser.denied(&r.id_value) || splits.blocks(&r.id_type, &r.id_value));
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
            if c.row.len() >= CHUNK && tx.send(std::mem::take(&mut c)).is_err() {
                return Err(Error::Internal("the identity resolution stopped reading".into()));
            }
            Ok(())
        })?;
    }
    if !c.row.is_empty() && tx.send(c).is_err() {
        return Err(Error::Internal("the identity resolution stopped reading".into()));
    }
    Ok(names)
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
    mut state: Option<&mut StateFile>,
) -> Result<Full> {
    // Pass 1: numbers, read on one thread and interned on this one.
    let mut l = Links::default();
    let mut interner = Interner::new();
    let mut denied: Vec<bool> = Vec::new();
    let mut first_new = 0u64;
    let names = std::thread::scope(|scope| -> Result<Names> {
        // The reader's chunks end when it returns (its sender dropped), done or failed.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(4);
        let reader = scope.spawn(move || read_numbers(sources, normaliser, splits, ids, &tx));
        for c in rx.iter() {
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
            l.row.extend_from_slice(&c.row);
            l.ts.extend_from_slice(&c.ts);
            l.seq.extend_from_slice(&c.seq);
            l.ty.extend_from_slice(&c.ty);
            l.src.extend_from_slice(&c.src);
            l.flags.extend(c.flags.iter().map(|f| f & !DENIED));
        }
        reader.join().unwrap_or_else(|_| Err(Error::Internal("the identity reading thread panicked".into())))
    })?;
    drop(interner.slots);
    // The keys are final: written, and freed before the sorts.
    if let Some(state) = state.as_deref_mut() {
        state.put_keys(&interner.keys)?;
    }
    drop(interner.keys);
    let n = l.row.len();
    let src_name = |i: usize| if l.src[i] == u16::MAX { None } else { Some(names.name(l.src[i])) };
    // The first arrival of each (user, value) stays: a stored link before a new one, then by
    // time and source.
    let mut pairs: Vec<(u64, u32)> =
        (0..n).filter(|&i| l.flags[i] & LIVE != 0).map(|i| (known_key(l.row[i], l.value[i]), i as u32)).collect();
    pairs.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            let (i, j) = (a.1 as usize, b.1 as usize);
            (l.flags[i] & NEW, l.ts[i]).cmp(&(l.flags[j] & NEW, l.ts[j])).then_with(|| src_name(i).cmp(&src_name(j)))
        })
    });
    let mut previous = None;
    let mut distinct = 0usize;
    for &(pair, i) in &pairs {
        if previous == Some(pair) {
            l.flags[i as usize] &= !LIVE;
        } else {
            distinct += 1;
        }
        previous = Some(pair);
    }
    // The known pairs, sorted: the distinct pairs just sorted.
    if let Some(state) = state.as_deref_mut() {
        let mut keys = pairs.iter().map(|p| p.0);
        let mut previous = None;
        state.put_known(
            distinct,
            std::iter::from_fn(|| {
                for k in keys.by_ref() {
                    if previous != Some(k) {
                        previous = Some(k);
                        return Some(k);
                    }
                }
                None
            }),
        )?;
    }
    drop(pairs);
    // The new links are sequenced after the stored ones in (ts, row, type, value, source) order,
    // values in the order first read.
    let mut arrival: Vec<(i64, u32, u32)> =
        (0..n).filter(|&i| l.flags[i] & (LIVE | NEW) == LIVE | NEW).map(|i| (l.ts[i], l.row[i], i as u32)).collect();
    arrival.sort_unstable_by(|a, b| {
        (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| {
            let (i, j) = (a.2 as usize, b.2 as usize);
            names
                .name(l.ty[i])
                .cmp(names.name(l.ty[j]))
                .then_with(|| l.value[i].cmp(&l.value[j]))
                .then_with(|| src_name(i).cmp(&src_name(j)))
                .then(i.cmp(&j))
        })
    });
    // Then they are in (ts, seq) order: `arrival` becomes (ts, seq, link).
    for (rank, a) in arrival.iter_mut().enumerate() {
        let seq = seq32(first_new + rank as u64)?;
        l.seq[a.2 as usize] = seq;
        a.1 = seq;
    }
    let next_seq = first_new + arrival.len() as u64;
    if let Some(state) = state {
        state.put_next_seq(next_seq)?;
    }
    drop(std::mem::take(&mut l.src));
    // Every link in (ts, seq) order; the resolver's links are the valid ones of a known type.
    let (kinds, kind_rules) = kinds_and_rules(normaliser.rules());
    let kind_of: Vec<Option<u16>> =
        names.list.iter().map(|name| kinds.iter().position(|k| *k == &**name).map(|k| k as u16)).collect();
    // The stored links sorted, merged with the new ones (all sequenced after them).
    let mut stored: Vec<(i64, u32, u32)> =
        (0..n).filter(|&i| l.flags[i] & (LIVE | NEW) == LIVE).map(|i| (l.ts[i], l.seq[i], i as u32)).collect();
    drop(std::mem::take(&mut l.ts));
    stored.sort_unstable();
    let link_rows = (stored.len() + arrival.len()) as u64;
    let mut pos: Vec<u32> = vec![u32::MAX; n];
    let mut links: Vec<Link> = Vec::with_capacity(link_rows as usize);
    let mut last = None;
    let (mut old, mut new) = (stored.iter().peekable(), arrival.iter().peekable());
    while let Some(&(ts, seq, i)) = match (old.peek(), new.peek()) {
        (Some(a), Some(b)) if (a.0, a.1) <= (b.0, b.1) => old.next(),
        (Some(_), None) => old.next(),
        _ => new.next(),
    } {
        let i = i as usize;
        let Some(kind) = kind_of[l.ty[i] as usize].filter(|_| l.flags[i] & INVALID == 0) else { continue };
        pos[i] = links.len() as u32;
        links.push(Link { user: l.row[i], kind, value: l.value[i], denied: denied[l.value[i] as usize] });
        last = Some(LinkKey { ts, seq: u64::from(seq) });
    }
    drop((stored, arrival));
    let (seqs, flags) = (std::mem::take(&mut l.seq), std::mem::take(&mut l.flags));
    drop(l);
    let mut resolver =
        Resolver::new(kind_rules, normaliser.rules().hub_limit).with_cannot_link(splits.pairs.clone()).untracked();
    resolver.resolve(&links, last);
    drop(links);
    let persons = resolver.person_ids(users);
    Ok(Full { persons, link_rows, resolver, seqs, flags, pos })
}

/// The second pass: reads `sources` again, as [`resolve`] did, and writes each kept link with
/// its sequence number and outcome (`outcomes`: the resolver's, taken out of `full`).
pub(super) fn write_links(
    sources: &[Source],
    normaliser: &Normaliser,
    full: &Full,
    outcomes: &[Outcome],
    mut out: LinksWriter,
) -> Result<Written> {
    let n = full.flags.len();
    let mut i = 0usize;
    for source in sources {
        scan(source, normaliser, &mut |mut r: Record| {
            let at = i;
            i += 1;
            if full.flags.get(at).is_none_or(|f| f & LIVE == 0) {
                return Ok(());
            }
            r.seq = u64::from(full.seqs[at]);
            out.push(&r, outcomes.get(full.pos[at] as usize).copied())
        })?;
    }
    if i != n {
        return Err(Error::Internal(format!("identity sources read {n} links, then {i}; please report it")));
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

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
