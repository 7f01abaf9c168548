//! Identity resolution, pure: a deterministic union-find of user rows over identifier links,
//! processed in (ts, sequence) order under the store's rules (docs/identity.md). No I/O: the
//! importer interns identifier types and values into small integers and hands the links in.
//!
//! ```text
//! links sorted by (ts, seq) ── denied? ──────────────── Denied
//!                           ── value on > hub_limit users ─ Hub (quarantined, links nobody)
//!                           ── type not unique ─ attach to the user's person (≤ max) ─ Linked | Limit
//!                           ── value unowned ─ attach (≤ max) ───────────────────── Linked | Limit
//!                           ── value owned by another person ─ merge unless a type would pass its max:
//!                                 then merge only if this type outranks it (dropping the excess
//!                                 identifiers of the lower type, latest first), else reject ─ Joined | Limit
//! ```
//!
//! [`Resolver::extend`] takes links in batches: a batch that comes entirely after what it holds
//! and makes no new hub is applied as it stands; any other is resolved again from the start over
//! every link, so that the result is always that of one pass over all links in order (the
//! property test at the end of this file checks it on seeded random graphs).
//!
//! [`Resolver::save`] writes the union-find state (parents, sizes, the identifiers each person
//! holds, value owners and value counts — no links) and [`Resolver::resume`] reads it back, so
//! that an import can apply an in-order batch ([`Resolver::try_extend`]) without the links that
//! came before; a batch it cannot apply in place, or one that drops an identifier attached
//! before the state was saved, is refused, and the caller resolves from the start.

use std::collections::{HashMap, HashSet};

use rustc_hash::FxHashMap;

/// The order links are processed in: their time, then their sequence number (unique).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkKey {
    pub ts: i64,
    pub seq: u64,
}

/// One identifier seen on one user row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub key: LinkKey,
    pub user: u32,
    /// Index of the identifier type in the rules given to the [`Resolver`].
    pub kind: u16,
    /// The interned normalised value (unique per type).
    pub value: u32,
    /// The value is on a deny-list: it links nobody.
    pub denied: bool,
}

/// How one identifier type links (see `store::identity::TypeRule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindRule {
    pub priority: u32,
    pub max_per_person: u32,
    pub unique: bool,
}

/// What became of one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The identifier was attached to the user's person (or already was).
    Linked,
    /// The identifier joined the user's person with the person holding it.
    Joined,
    /// The value is on a deny-list.
    Denied,
    /// The value is on more profiles than the hub limit.
    Hub,
    /// Refused: the person would hold more identifiers of type `kind` than its maximum.
    Limit { kind: u16 },
    /// Attached once, then dropped when a higher-priority link joined the person and the person
    /// held too many identifiers of this (`kind`) type.
    Dropped { kind: u16 },
    /// Refused: joining would make one person of a cannot-link pair (a split).
    Split,
}

impl Outcome {
    /// Whether the link was (at its time) accepted.
    pub fn accepted(self) -> bool {
        matches!(self, Outcome::Linked | Outcome::Joined)
    }
}

/// An identifier a person holds, and the link that attached it.
#[derive(Debug, Clone, Copy)]
struct Held {
    kind: u16,
    value: u32,
    link: u32,
}

/// The union-find state and every link processed so far.
#[derive(Debug, Clone)]
pub struct Resolver {
    rules: Vec<KindRule>,
    hub_limit: u32,
    /// Every link, in processing order; `outcomes` is parallel to it.
    links: Vec<Link>,
    outcomes: Vec<Outcome>,
    parent: Vec<u32>,
    size: Vec<u32>,
    /// Per root user: the identifiers its person holds.
    held: Vec<Vec<Held>>,
    /// The user (any member) whose person holds a unique (kind, value).
    owners: FxHashMap<(u16, u32), u32>,
    /// The distinct users each non-denied value was seen on, up to one past the hub limit.
    value_users: FxHashMap<(u16, u32), Vec<u32>>,
    /// Pairs of users that must never be one person.
    cannot_link: Vec<(u32, u32)>,
    /// Links processed before this resolver was resumed from a saved state: their links and
    /// outcomes are not held, and the links held are numbered from here (a [`Held`]'s `link`).
    offset: u32,
    /// The key of the last link processed: an in-order batch comes after it.
    last: Option<LinkKey>,
    /// An identifier attached by a link before `offset` was dropped: that link's stored outcome
    /// is stale, and only a resolution from the start can record it.
    earlier_changed: bool,
}

impl Resolver {
    pub fn new(rules: Vec<KindRule>, hub_limit: u32) -> Resolver {
        Resolver {
            rules,
            hub_limit,
            links: Vec::new(),
            outcomes: Vec::new(),
            parent: Vec::new(),
            size: Vec::new(),
            held: Vec::new(),
            owners: FxHashMap::default(),
            value_users: FxHashMap::default(),
            cannot_link: Vec::new(),
            offset: 0,
            last: None,
            earlier_changed: false,
        }
    }

    /// Users of these pairs are never joined into one person (set before any link is added).
    pub fn with_cannot_link(mut self, pairs: Vec<(u32, u32)>) -> Resolver {
        self.cannot_link = pairs;
        self
    }

    /// Resolves `links` in one pass (they are sorted here).
    pub fn full(rules: Vec<KindRule>, hub_limit: u32, links: Vec<Link>) -> Resolver {
        Resolver::new(rules, hub_limit).full_with(links)
    }

    /// [`Resolver::full`] keeping this resolver's rules and cannot-link pairs.
    pub fn full_with(self, mut links: Vec<Link>) -> Resolver {
        links.sort_by_key(|l| l.key);
        let mut r = self;
        r.count_values(&links);
        r.links = links;
        r.replay();
        r.last = r.links.last().map(|l| l.key);
        r
    }

    /// Adds a batch of links (see the module doc). Not for a resumed resolver, which does not
    /// hold the links to replay: use [`Resolver::try_extend`].
    pub fn extend(&mut self, mut batch: Vec<Link>) {
        debug_assert_eq!(self.offset, 0, "a resumed resolver cannot replay");
        batch.sort_by_key(|l| l.key);
        let after = match (self.last, batch.first()) {
            (Some(last), Some(first)) => first.key > last,
            _ => true,
        };
        let new_hub = self.count_values(&batch);
        if after && !new_hub {
            self.apply(batch);
        } else {
            let mut links = std::mem::take(&mut self.links);
            links.extend(batch);
            links.sort_by_key(|l| l.key);
            self.links = links;
            self.replay();
        }
        self.last = self.links.last().map(|l| l.key).or(self.last);
    }

    /// Adds a batch in place if it comes entirely after what was processed and makes no new hub,
    /// and then only if it dropped no identifier attached before the resolver was resumed.
    /// `false`: the batch could not be applied so (the resolver is then spoiled), and the caller
    /// must resolve every link from the start.
    pub fn try_extend(&mut self, mut batch: Vec<Link>) -> bool {
        batch.sort_by_key(|l| l.key);
        if let (Some(last), Some(first)) = (self.last, batch.first())
            && first.key <= last
        {
            return false;
        }
        if self.count_values(&batch) {
            return false;
        }
        self.apply(batch);
        self.last = self.links.last().map(|l| l.key).or(self.last);
        !self.earlier_changed
    }

    /// Processes links that come after every link processed.
    fn apply(&mut self, batch: Vec<Link>) {
        let from = self.links.len();
        self.links.extend(batch);
        for i in from..self.links.len() {
            let o = self.process(i);
            self.outcomes.push(o);
        }
    }

    /// Counts the distinct users of each value in `links`; whether a value became a hub.
    fn count_values(&mut self, links: &[Link]) -> bool {
        let cap = self.hub_limit as usize + 1;
        let mut new_hub = false;
        for l in links.iter().filter(|l| !l.denied) {
            let users = self.value_users.entry((l.kind, l.value)).or_default();
            if users.len() < cap && !users.contains(&l.user) {
                users.push(l.user);
                new_hub |= users.len() == cap;
            }
        }
        new_hub
    }

    fn is_hub(&self, kind: u16, value: u32) -> bool {
        self.value_users.get(&(kind, value)).is_some_and(|u| u.len() > self.hub_limit as usize)
    }

    /// Processes every link again from a clean union-find (the value counts are kept).
    fn replay(&mut self) {
        self.parent.clear();
        self.size.clear();
        self.held.clear();
        self.owners.clear();
        self.outcomes.clear();
        self.earlier_changed = false;
        for i in 0..self.links.len() {
            let o = self.process(i);
            self.outcomes.push(o);
        }
    }

    fn grow(&mut self, user: u32) {
        let n = user as usize + 1;
        if self.parent.len() < n {
            let from = self.parent.len() as u32;
            self.parent.extend(from..n as u32);
            self.size.resize(n, 1);
            self.held.resize_with(n, Vec::new);
        }
    }

    fn find(&mut self, mut u: u32) -> u32 {
        let mut root = u;
        while self.parent[root as usize] != root {
            root = self.parent[root as usize];
        }
        while self.parent[u as usize] != root {
            let next = self.parent[u as usize];
            self.parent[u as usize] = root;
            u = next;
        }
        root
    }

    fn count(&self, root: u32, kind: u16) -> u32 {
        self.held[root as usize].iter().filter(|h| h.kind == kind).count() as u32
    }

    /// Decides link `i` (links before it are decided).
    fn process(&mut self, i: usize) -> Outcome {
        let l = self.links[i];
        if l.denied {
            return Outcome::Denied;
        }
        if self.is_hub(l.kind, l.value) {
            return Outcome::Hub;
        }
        self.grow(l.user);
        let rule = self.rules[l.kind as usize];
        let ru = self.find(l.user);
        if self.held[ru as usize].iter().any(|h| h.kind == l.kind && h.value == l.value) {
            return Outcome::Linked;
        }
        let owner = if rule.unique { self.owners.get(&(l.kind, l.value)).copied() } else { None };
        let Some(owner) = owner else {
            if self.count(ru, l.kind) >= rule.max_per_person {
                return Outcome::Limit { kind: l.kind };
            }
            self.held[ru as usize].push(Held { kind: l.kind, value: l.value, link: self.offset + i as u32 });
            if rule.unique {
                self.owners.insert((l.kind, l.value), l.user);
            }
            return Outcome::Linked;
        };
        let rv = self.find(owner);
        if self.splits(ru, rv) {
            return Outcome::Split;
        }
        // Types whose maximum the joined person would pass, highest priority first.
        let mut over: Vec<u16> = Vec::new();
        for kind in 0..self.rules.len() as u16 {
            let (a, b) = (&self.held[ru as usize], &self.held[rv as usize]);
            let in_a = a.iter().filter(|h| h.kind == kind);
            let shared = in_a.clone().filter(|h| b.iter().any(|g| g.kind == kind && g.value == h.value)).count();
            let total = in_a.count() + b.iter().filter(|h| h.kind == kind).count() - shared;
            if total > self.rules[kind as usize].max_per_person as usize {
                over.push(kind);
            }
        }
        over.sort_by_key(|&k| (std::cmp::Reverse(self.rules[k as usize].priority), k));
        if let Some(&top) = over.first()
            && self.rules[top as usize].priority >= rule.priority
        {
            return Outcome::Limit { kind: top };
        }
        let root = self.union(ru, rv);
        for kind in over {
            self.drop_excess(root, kind);
        }
        Outcome::Joined
    }

    /// Whether joining the persons of roots `a` and `b` would make one person of a cannot-link pair.
    fn splits(&mut self, a: u32, b: u32) -> bool {
        for i in 0..self.cannot_link.len() {
            let (x, y) = self.cannot_link[i];
            if (x as usize) >= self.parent.len() || (y as usize) >= self.parent.len() {
                continue;
            }
            let (rx, ry) = (self.find(x), self.find(y));
            if (rx == a && ry == b) || (rx == b && ry == a) {
                return true;
            }
        }
        false
    }

    /// Joins two persons (the larger root stays; ties keep the smaller user); returns the root.
    fn union(&mut self, a: u32, b: u32) -> u32 {
        let (sa, sb) = (self.size[a as usize], self.size[b as usize]);
        let (root, child) = if sa > sb || (sa == sb && a < b) { (a, b) } else { (b, a) };
        self.parent[child as usize] = root;
        self.size[root as usize] += self.size[child as usize];
        let moved = std::mem::take(&mut self.held[child as usize]);
        let into = &mut self.held[root as usize];
        for h in moved {
            if !into.iter().any(|g| g.kind == h.kind && g.value == h.value) {
                into.push(h);
            }
        }
        root
    }

    /// Keeps the `max_per_person` earliest identifiers of `kind` on `root`; the later ones are
    /// dropped (their attaching links become [`Outcome::Dropped`]) and their values freed.
    fn drop_excess(&mut self, root: u32, kind: u16) {
        let max = self.rules[kind as usize].max_per_person as usize;
        let held = &mut self.held[root as usize];
        let mut of_kind: Vec<Held> = held.iter().filter(|h| h.kind == kind).copied().collect();
        of_kind.sort_by_key(|h| h.link);
        let dropped: Vec<Held> = of_kind.split_off(max.min(of_kind.len()));
        held.retain(|h| !(h.kind == kind && dropped.iter().any(|d| d.value == h.value)));
        for d in dropped {
            self.outcomes_set(d.link as usize, Outcome::Dropped { kind });
            self.owners.remove(&(kind, d.value));
        }
    }

    /// Sets the outcome of link number `i` (counting the links before `offset`).
    fn outcomes_set(&mut self, i: usize, o: Outcome) {
        match i.checked_sub(self.offset as usize) {
            Some(at) => {
                if let Some(slot) = self.outcomes.get_mut(at) {
                    *slot = o;
                }
            }
            None => self.earlier_changed = true,
        }
    }

    /// The union-find state after every link processed, without the links (see the module doc):
    /// what [`Resolver::resume`] reads.
    pub fn save(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.parent.len() * 8);
        let u32s = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
        out.extend_from_slice(STATE_MAGIC);
        u32s(&mut out, self.offset + self.links.len() as u32);
        match self.last {
            Some(k) => {
                out.push(1);
                out.extend_from_slice(&k.ts.to_le_bytes());
                out.extend_from_slice(&k.seq.to_le_bytes());
            }
            None => out.extend_from_slice(&[0; 17]),
        }
        u32s(&mut out, self.parent.len() as u32);
        self.parent.iter().for_each(|&p| u32s(&mut out, p));
        self.size.iter().for_each(|&p| u32s(&mut out, p));
        let held: Vec<(usize, &Vec<Held>)> = self.held.iter().enumerate().filter(|(_, h)| !h.is_empty()).collect();
        u32s(&mut out, held.len() as u32);
        for (root, items) in held {
            u32s(&mut out, root as u32);
            u32s(&mut out, items.len() as u32);
            for h in items {
                out.extend_from_slice(&h.kind.to_le_bytes());
                u32s(&mut out, h.value);
                u32s(&mut out, h.link);
            }
        }
        // In the maps' order: what a resumed resolver decides does not depend on it.
        u32s(&mut out, self.owners.len() as u32);
        for ((kind, value), user) in &self.owners {
            out.extend_from_slice(&kind.to_le_bytes());
            u32s(&mut out, *value);
            u32s(&mut out, *user);
        }
        u32s(&mut out, self.value_users.len() as u32);
        for ((kind, value), users) in &self.value_users {
            out.extend_from_slice(&kind.to_le_bytes());
            u32s(&mut out, *value);
            u32s(&mut out, users.len() as u32);
            users.iter().for_each(|&u| u32s(&mut out, u));
        }
        out
    }

    /// A resolver in the state [`Resolver::save`] wrote, under the same rules, hub limit and
    /// cannot-link pairs; an error says what in the bytes is wrong.
    pub fn resume(
        rules: Vec<KindRule>,
        hub_limit: u32,
        cannot_link: Vec<(u32, u32)>,
        bytes: &[u8],
    ) -> Result<Resolver, String> {
        let mut r = Resolver::new(rules, hub_limit).with_cannot_link(cannot_link);
        let mut at = Bytes { bytes, at: 0 };
        if at.take(STATE_MAGIC.len())? != STATE_MAGIC {
            return Err("not a union-find state".into());
        }
        r.offset = at.u32()?;
        let has_last = at.take(1)?[0] == 1;
        let (ts, seq) = (at.u64()? as i64, at.u64()?);
        r.last = has_last.then_some(LinkKey { ts, seq });
        let n = at.u32()? as usize;
        r.parent = (0..n).map(|_| at.u32()).collect::<Result<_, _>>()?;
        r.size = (0..n).map(|_| at.u32()).collect::<Result<_, _>>()?;
        r.held = vec![Vec::new(); n];
        for _ in 0..at.u32()? {
            let root = at.u32()? as usize;
            let items = (0..at.u32()?)
                .map(|_| Ok(Held { kind: at.u16()?, value: at.u32()?, link: at.u32()? }))
                .collect::<Result<Vec<_>, String>>()?;
            *r.held.get_mut(root).ok_or("a holder past the users")? = items;
        }
        let owners = at.u32()? as usize;
        r.owners.reserve(owners);
        for _ in 0..owners {
            r.owners.insert((at.u16()?, at.u32()?), at.u32()?);
        }
        let counts = at.u32()? as usize;
        r.value_users.reserve(counts);
        for _ in 0..counts {
            let key = (at.u16()?, at.u32()?);
            let users = (0..at.u32()?).map(|_| at.u32()).collect::<Result<Vec<_>, _>>()?;
            r.value_users.insert(key, users);
        }
        if at.at != bytes.len() {
            return Err("bytes after the state".into());
        }
        if r.parent.iter().any(|&p| p as usize >= n) {
            return Err("a parent past the users".into());
        }
        Ok(r)
    }

    /// The links in processing order.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The outcome of each link, parallel to [`Resolver::links`].
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }

    /// A dense person id for each of `users` user rows: persons numbered in the order of their
    /// first user row, so the numbering depends on nothing but the result.
    pub fn person_ids(&mut self, users: u32) -> Vec<u32> {
        if users > 0 {
            self.grow(users - 1);
        }
        let mut number: FxHashMap<u32, u32> = FxHashMap::default();
        (0..users)
            .map(|u| {
                let root = self.find(u);
                let next = number.len() as u32;
                *number.entry(root).or_insert(next)
            })
            .collect()
    }
}

/// The first bytes of a saved union-find state.
const STATE_MAGIC: &[u8; 8] = b"PRSNUF01";

/// Reads a saved state, refusing to run past its end.
struct Bytes<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("the state is cut short")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("two bytes")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("four bytes")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("eight bytes")))
    }
}

/// One step of the chain that joined two users: `from` and `to` both hold the identifier of
/// link `from_link` and `to_link` (indexes into the links).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainStep {
    pub from_user: u32,
    pub from_link: usize,
    pub to_user: u32,
    pub to_link: usize,
}

/// The shortest chain of shared identifiers that joined `a` and `b`, through links accepted at
/// their time (later-dropped ones included: the merge they made stands) of unique types, between
/// users of the same person (`same_person`). `None` when they are not one person.
pub fn explain_chain(
    links: &[Link],
    outcomes: &[Outcome],
    rules: &[KindRule],
    same_person: impl Fn(u32) -> bool,
    a: u32,
    b: u32,
) -> Option<Vec<ChainStep>> {
    if a == b {
        return Some(Vec::new());
    }
    let mut by_user: HashMap<u32, Vec<usize>> = HashMap::new();
    let mut by_value: HashMap<(u16, u32), Vec<usize>> = HashMap::new();
    for (i, (l, o)) in links.iter().zip(outcomes).enumerate() {
        let usable = matches!(o, Outcome::Linked | Outcome::Joined | Outcome::Dropped { .. })
            && rules.get(l.kind as usize).is_some_and(|r| r.unique)
            && same_person(l.user);
        if usable {
            by_user.entry(l.user).or_default().push(i);
            by_value.entry((l.kind, l.value)).or_default().push(i);
        }
    }
    // Breadth-first over users; each edge is a pair of links sharing a value.
    let mut came_from: HashMap<u32, ChainStep> = HashMap::new();
    let mut seen: HashSet<u32> = HashSet::from([a]);
    let mut queue = std::collections::VecDeque::from([a]);
    while let Some(u) = queue.pop_front() {
        for &li in by_user.get(&u).into_iter().flatten() {
            let l = links[li];
            for &lj in by_value.get(&(l.kind, l.value)).into_iter().flatten() {
                let v = links[lj].user;
                if seen.insert(v) {
                    came_from.insert(v, ChainStep { from_user: u, from_link: li, to_user: v, to_link: lj });
                    if v == b {
                        let mut chain = Vec::new();
                        let mut at = b;
                        while at != a {
                            let step = came_from[&at];
                            chain.push(step);
                            at = step.from_user;
                        }
                        chain.reverse();
                        return Some(chain);
                    }
                    queue.push_back(v);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const UNION: u16 = 0;
    const PHONE: u16 = 1;
    const DEVICE: u16 = 2;

    fn rules() -> Vec<KindRule> {
        vec![
            KindRule { priority: 100, max_per_person: 1, unique: true },
            KindRule { priority: 90, max_per_person: 2, unique: true },
            KindRule { priority: 10, max_per_person: 5, unique: false },
        ]
    }

    fn link(seq: u64, user: u32, kind: u16, value: u32) -> Link {
        Link { key: LinkKey { ts: 0, seq }, user, kind, value, denied: false }
    }

    #[test]
    fn a_shared_phone_joins_two_users_and_a_device_does_not() {
        let links = vec![link(0, 0, PHONE, 7), link(1, 1, PHONE, 7), link(2, 2, DEVICE, 9), link(3, 3, DEVICE, 9)];
        let mut r = Resolver::full(rules(), 20, links);
        assert_eq!(r.person_ids(4), vec![0, 0, 1, 2]);
        assert_eq!(r.outcomes(), &[Outcome::Linked, Outcome::Joined, Outcome::Linked, Outcome::Linked]);
    }

    #[test]
    fn a_union_that_breaks_a_higher_types_limit_is_rejected() {
        // Users 0 and 1 have different unionids; a shared phone must not join them.
        let links = vec![link(0, 0, UNION, 1), link(1, 1, UNION, 2), link(2, 0, PHONE, 7), link(3, 1, PHONE, 7)];
        let mut r = Resolver::full(rules(), 20, links);
        assert_eq!(r.person_ids(2), vec![0, 1]);
        assert_eq!(r.outcomes()[3], Outcome::Limit { kind: UNION });
    }

    #[test]
    fn a_higher_priority_union_drops_the_latest_excess_identifiers() {
        // Two persons with two phones each join through one unionid: the later two phones go.
        let links = vec![
            link(0, 0, PHONE, 1),
            link(1, 0, PHONE, 2),
            link(2, 1, PHONE, 3),
            link(3, 1, PHONE, 4),
            link(4, 0, UNION, 9),
            link(5, 1, UNION, 9),
        ];
        let mut r = Resolver::full(rules(), 20, links);
        assert_eq!(r.person_ids(2), vec![0, 0]);
        let o = r.outcomes();
        assert_eq!(o[5], Outcome::Joined);
        assert_eq!(
            &o[..4],
            &[Outcome::Linked, Outcome::Linked, Outcome::Dropped { kind: PHONE }, Outcome::Dropped { kind: PHONE }]
        );
    }

    #[test]
    fn denied_values_and_hubs_link_nobody() {
        let mut links: Vec<Link> = (0..4).map(|u| link(u64::from(u), u, PHONE, 5)).collect();
        links.push(Link { denied: true, ..link(10, 0, PHONE, 6) });
        links.push(Link { denied: true, ..link(11, 3, PHONE, 6) });
        let mut r = Resolver::full(rules(), 3, links);
        assert_eq!(r.person_ids(4), vec![0, 1, 2, 3]);
        assert!(r.outcomes()[..4].iter().all(|o| *o == Outcome::Hub));
        assert_eq!(r.outcomes()[4], Outcome::Denied);
    }

    #[test]
    fn a_cannot_link_pair_is_never_joined_even_through_others() {
        // 0-1 by phone, 1-2 by e-mail-like unique type; 0 and 2 must stay apart.
        let links = vec![link(0, 0, PHONE, 1), link(1, 1, PHONE, 1), link(2, 1, UNION, 4), link(3, 2, UNION, 4)];
        let mut r = Resolver::new(rules(), 20).with_cannot_link(vec![(0, 2)]).full_with(links);
        assert_eq!(r.person_ids(3), vec![0, 0, 1]);
        assert_eq!(r.outcomes()[3], Outcome::Split);
    }

    #[test]
    fn the_chain_names_the_identifiers_that_joined_two_users() {
        let links = vec![link(0, 0, PHONE, 1), link(1, 1, PHONE, 1), link(2, 1, UNION, 4), link(3, 2, UNION, 4)];
        let mut r = Resolver::full(rules(), 20, links);
        let persons = r.person_ids(3);
        let chain = explain_chain(r.links(), r.outcomes(), &rules(), |u| persons[u as usize] == persons[0], 0, 2)
            .expect("one person");
        assert_eq!(chain.iter().map(|s| (s.from_user, s.to_user)).collect::<Vec<_>>(), vec![(0, 1), (1, 2)]);
        assert_eq!(r.links()[chain[1].from_link].kind, UNION);
    }

    /// A seeded random graph: links over `users` users and a few values per type, with times that
    /// often tie, some denied values, split into import batches, with a few cannot-link pairs.
    /// Users, links, import cuts and cannot-link pairs.
    type Graph = (u32, Vec<Link>, Vec<usize>, Vec<(u32, u32)>);

    fn graph() -> impl Strategy<Value = Graph> {
        (2u32..40).prop_flat_map(|users| {
            let link = (0..users, 0u16..3, 0u32..25, 0i64..20, proptest::bool::weighted(0.05));
            let pairs = proptest::collection::vec((0..users, 0..users), 0..3);
            (Just(users), proptest::collection::vec(link, 0..120), proptest::collection::vec(0usize..120, 0..4), pairs)
                .prop_map(|(users, raw, cuts, pairs)| {
                    let links = raw
                        .into_iter()
                        .enumerate()
                        .map(|(seq, (user, kind, value, ts, denied))| Link {
                            key: LinkKey { ts, seq: seq as u64 },
                            user,
                            kind,
                            value,
                            denied,
                        })
                        .collect();
                    (users, links, cuts, pairs)
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn incremental_resolution_equals_a_full_rebuild((users, links, mut cuts, pairs) in graph()) {
            let mut full = Resolver::new(rules(), 4).with_cannot_link(pairs.clone()).full_with(links.clone());
            cuts.push(links.len());
            cuts.iter_mut().for_each(|c| *c = (*c).min(links.len()));
            cuts.sort_unstable();
            let mut inc = Resolver::new(rules(), 4).with_cannot_link(pairs.clone());
            let mut from = 0;
            for &cut in &cuts {
                inc.extend(links[from..cut].to_vec());
                from = cut;
            }
            prop_assert_eq!(inc.links(), full.links());
            prop_assert_eq!(inc.outcomes(), full.outcomes());
            prop_assert_eq!(inc.person_ids(users), full.person_ids(users));
            // As an import does it: each batch applied to the state the previous one saved when
            // it can be, else every link so far resolved from the start.
            let (mut outcomes, mut state, mut from): (Vec<Outcome>, Option<Vec<u8>>, usize) = (Vec::new(), None, 0);
            let mut last = Resolver::new(rules(), 4);
            for &cut in &cuts {
                let batch = links[from..cut].to_vec();
                let mut resumed = state
                    .as_ref()
                    .map(|s| Resolver::resume(rules(), 4, pairs.clone(), s).expect("a state it saved"));
                let applied = resumed.as_mut().is_some_and(|r| r.try_extend(batch));
                let r = if applied {
                    let r = resumed.expect("applied");
                    let mut sorted: Vec<(LinkKey, Outcome)> = r.links().iter().map(|l| l.key).zip(r.outcomes().iter().copied()).collect();
                    sorted.sort_by_key(|(k, _)| *k);
                    outcomes.extend(sorted.into_iter().map(|(_, o)| o));
                    r
                } else {
                    let r = Resolver::new(rules(), 4).with_cannot_link(pairs.clone()).full_with(links[..cut].to_vec());
                    outcomes = r.outcomes().to_vec();
                    r
                };
                state = Some(r.save());
                last = r;
                from = cut;
            }
            prop_assert_eq!(&outcomes, full.outcomes());
            prop_assert_eq!(last.person_ids(users), full.person_ids(users));
            // No person ever holds two unionids, and hubs and denied values link nobody.
            let persons = full.person_ids(users);
            let mut unions: HashMap<u32, HashSet<u32>> = HashMap::new();
            for (l, o) in full.links().iter().zip(full.outcomes()) {
                if l.kind == UNION && o.accepted() {
                    unions.entry(persons[l.user as usize]).or_default().insert(l.value);
                }
            }
            prop_assert!(unions.values().all(|v| v.len() <= 1), "{:?}", unions);
            // No cannot-link pair of two users is one person.
            for (a, b) in pairs {
                if a != b {
                    prop_assert_ne!(persons[a as usize], persons[b as usize]);
                }
            }
        }
    }
}
