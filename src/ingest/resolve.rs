//! Identity resolution, pure: a deterministic union-find of user rows over identifier links,
//! processed in (ts, sequence) order under the store's rules (docs/identity.md). No I/O: the
//! importer interns identifier types and values into small integers (a value id names one
//! (type, value)) and hands the links in, sorted.
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
//! The state is flat: per user row a parent, a size and a list of held identifiers
//! ([`held::HeldPool`]); per value id its owner and the users it was seen on (counted up to
//! one past the hub limit; the caller gives each (user, value) pair once). No link is kept:
//! [`Resolver::resolve`] decides links in one pass, [`Resolver::try_extend`] applies a batch
//! that comes entirely after what was processed, makes no new hub and drops no identifier
//! attached before the state was saved — anything else is refused, and the caller resolves
//! every link from the start, so that the result is always that of one pass over all links in
//! order (the property test at the end of this file checks it through saved states and deltas).
//!
//! [`state`] writes the state as a base and as deltas of what changed since it was resumed.

mod held;
pub mod state;

use std::collections::{HashMap, HashSet};

use held::{Held, HeldPool};

/// The order links are processed in: their time, then their sequence number (unique).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkKey {
    pub ts: i64,
    pub seq: u64,
}

/// One identifier seen on one user row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub user: u32,
    /// Index of the identifier type in the rules given to the [`Resolver`].
    pub kind: u16,
    /// The interned (type, value): one id per normalised value of one type.
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

/// No owner.
const NONE: u32 = u32::MAX;

/// The union-find state, and the outcomes of the links processed since it was made or resumed.
#[derive(Debug, Clone)]
pub struct Resolver {
    rules: Vec<KindRule>,
    hub_limit: u32,
    /// Outcomes of the links processed since `offset`, in processing order.
    outcomes: Vec<Outcome>,
    parent: Vec<u32>,
    size: Vec<u32>,
    held: HeldPool,
    /// Per value id: a user of the person holding it (unique types), or [`NONE`].
    owners: Vec<u32>,
    /// Per value id: the users it was seen on (not denied), up to one past the hub limit.
    counts: Vec<u32>,
    /// Pairs of users that must never be one person.
    cannot_link: Vec<(u32, u32)>,
    /// Links processed before this resolver was resumed (their outcomes are not held); links are
    /// numbered from here (a [`Held`]'s `link`).
    offset: u32,
    /// The key of the last link processed: an in-order batch comes after it.
    last: Option<LinkKey>,
    /// An identifier attached by a link before `offset` was dropped: that link's stored outcome
    /// is stale, and only a resolution from the start can record it.
    earlier_changed: bool,
    /// Two persons were joined since the resolver was made or resumed.
    joined: bool,
    /// Users and values whose entries changed since the resolver was resumed (with
    /// duplicates): what a delta holds. Not kept when `tracked` is false (a resolution from the
    /// start, whose state is saved whole): a delta then holds every entry.
    dirty_users: Vec<u32>,
    dirty_values: Vec<u32>,
    tracked: bool,
    /// While [`Resolver::replay`] decides earlier links again: their numbers and outcomes.
    replaying: Option<Replay>,
}

/// The links a [`Resolver::replay`] decides again: their numbers (ascending) and, as decided
/// so far, their outcomes.
#[derive(Debug, Clone, Default)]
struct Replay {
    numbers: Vec<u32>,
    outcomes: Vec<Outcome>,
}

impl Resolver {
    pub fn new(rules: Vec<KindRule>, hub_limit: u32) -> Resolver {
        Resolver {
            rules,
            hub_limit,
            outcomes: Vec::new(),
            parent: Vec::new(),
            size: Vec::new(),
            held: HeldPool::new(),
            owners: Vec::new(),
            counts: Vec::new(),
            cannot_link: Vec::new(),
            offset: 0,
            last: None,
            earlier_changed: false,
            joined: false,
            dirty_users: Vec::new(),
            dirty_values: Vec::new(),
            tracked: true,
            replaying: None,
        }
    }

    /// A resolver that does not note which entries change (up to two entries per link and one
    /// per user and value: hundreds of megabytes at 10 M users), for a resolution from the start
    /// whose state is saved whole; [`Resolver::save_delta`] then holds every entry.
    pub fn untracked(mut self) -> Resolver {
        self.tracked = false;
        self.dirty_users = Vec::new();
        self.dirty_values = Vec::new();
        self
    }

    fn mark_users(&mut self, users: impl IntoIterator<Item = u32>) {
        if self.tracked {
            self.dirty_users.extend(users);
        }
    }

    fn mark_value(&mut self, value: u32) {
        if self.tracked {
            self.dirty_values.push(value);
        }
    }

    /// Users of these pairs are never joined into one person (set before any link is added).
    pub fn with_cannot_link(mut self, pairs: Vec<(u32, u32)>) -> Resolver {
        self.cannot_link = pairs;
        self
    }

    /// Decides `links`, given in processing order, in one pass (the value counts first, so that a
    /// hub links nobody from its first link on); `last` is the key of the last of them.
    pub fn resolve(&mut self, links: &[Link], last: Option<LinkKey>) {
        self.count_values(links);
        self.apply(links);
        self.last = last.or(self.last);
    }

    /// Applies `links` (in processing order, keys `first..=last`) if they come entirely after
    /// what was processed and make no new hub, and then only if they dropped no identifier
    /// attached before the resolver was resumed. `false`: the batch could not be applied so (the
    /// resolver is then spoiled), and the caller must resolve every link from the start.
    pub fn try_extend(&mut self, links: &[Link], first: Option<LinkKey>, last: Option<LinkKey>) -> bool {
        if let (Some(done), Some(first)) = (self.last, first)
            && first <= done
        {
            return false;
        }
        if self.count_values(links) {
            return false;
        }
        self.apply(links);
        self.last = last.or(self.last);
        !self.earlier_changed
    }

    fn apply(&mut self, links: &[Link]) {
        self.outcomes.reserve(links.len());
        for &l in links {
            let at = self.offset + self.outcomes.len() as u32;
            let o = self.process(l, at);
            self.outcomes.push(o);
        }
    }

    fn grow_values(&mut self, value: u32) {
        let n = value as usize + 1;
        if self.owners.len() < n {
            if self.tracked {
                self.dirty_values.extend(self.owners.len() as u32..n as u32);
            }
            self.owners.resize(n, NONE);
            self.counts.resize(n, 0);
        }
    }

    /// Counts the users of each value in `links`; whether a value became a hub.
    fn count_values(&mut self, links: &[Link]) -> bool {
        let cap = self.hub_limit.saturating_add(1);
        let mut new_hub = false;
        for l in links.iter().filter(|l| !l.denied) {
            self.grow_values(l.value);
            let c = &mut self.counts[l.value as usize];
            if *c < cap {
                *c += 1;
                new_hub |= *c == cap;
                self.mark_value(l.value);
            }
        }
        new_hub
    }

    fn is_hub(&self, value: u32) -> bool {
        self.counts.get(value as usize).is_some_and(|&c| c > self.hub_limit)
    }

    fn owner(&self, value: u32) -> Option<u32> {
        self.owners.get(value as usize).copied().filter(|&o| o != NONE)
    }

    fn set_owner(&mut self, value: u32, user: u32) {
        self.grow_values(value);
        self.owners[value as usize] = user;
        self.mark_value(value);
    }

    fn grow(&mut self, user: u32) {
        let n = user as usize + 1;
        if self.parent.len() < n {
            let from = self.parent.len() as u32;
            self.mark_users(from..n as u32);
            self.parent.extend(from..n as u32);
            self.size.resize(n, 1);
            self.held.grow(n);
        }
    }

    /// The root of `u` (path compression is not recorded in a delta: it changes no root).
    fn find(&mut self, mut u: u32) -> u32 {
        let root = self.root_of(u);
        while self.parent[u as usize] != root {
            let next = self.parent[u as usize];
            self.parent[u as usize] = root;
            u = next;
        }
        root
    }

    fn root_of(&self, mut u: u32) -> u32 {
        while self.parent[u as usize] != u {
            u = self.parent[u as usize];
        }
        u
    }

    /// Decides the link numbered `at` (links before it are decided).
    fn process(&mut self, l: Link, at: u32) -> Outcome {
        if l.denied {
            return Outcome::Denied;
        }
        if self.is_hub(l.value) {
            return Outcome::Hub;
        }
        self.grow(l.user);
        let rule = self.rules[l.kind as usize];
        let ru = self.find(l.user);
        if self.held.contains(ru, l.kind, l.value) {
            return Outcome::Linked;
        }
        let owner = if rule.unique { self.owner(l.value) } else { None };
        let Some(owner) = owner else {
            if self.held.count(ru, l.kind) >= rule.max_per_person {
                return Outcome::Limit { kind: l.kind };
            }
            self.held.push(ru, Held { kind: l.kind, value: l.value, link: at });
            self.mark_users([ru]);
            if rule.unique {
                self.set_owner(l.value, l.user);
            }
            return Outcome::Linked;
        };
        let rv = self.find(owner);
        if self.splits(ru, rv) {
            return Outcome::Split;
        }
        // Types whose maximum the joined person would pass, highest priority first.
        let a: Vec<Held> = self.held.iter(ru).collect();
        let b: Vec<Held> = self.held.iter(rv).collect();
        let mut over: Vec<u16> = Vec::new();
        for kind in 0..self.rules.len() as u16 {
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
        self.held.move_into(child, root);
        self.mark_users([root, child]);
        self.joined = true;
        root
    }

    /// Keeps the `max_per_person` earliest identifiers of `kind` on `root`; the later ones are
    /// dropped (their attaching links become [`Outcome::Dropped`]) and their values freed.
    fn drop_excess(&mut self, root: u32, kind: u16) {
        let max = self.rules[kind as usize].max_per_person as usize;
        let mut of_kind: Vec<Held> = self.held.iter(root).filter(|h| h.kind == kind).collect();
        of_kind.sort_by_key(|h| h.link);
        let dropped: Vec<Held> = of_kind.split_off(max.min(of_kind.len()));
        self.held.remove_where(root, |h| h.kind == kind && dropped.iter().any(|d| d.value == h.value));
        for d in dropped {
            if let Some(replay) = &mut self.replaying {
                match replay.numbers.binary_search(&d.link).ok().and_then(|i| replay.outcomes.get_mut(i)) {
                    Some(slot) => *slot = Outcome::Dropped { kind },
                    None => self.earlier_changed = true,
                }
            } else {
                match d.link.checked_sub(self.offset) {
                    Some(i) => {
                        if let Some(slot) = self.outcomes.get_mut(i as usize) {
                            *slot = Outcome::Dropped { kind };
                        }
                    }
                    None => self.earlier_changed = true,
                }
            }
            if self.owners.get(d.value as usize).is_some() {
                self.owners[d.value as usize] = NONE;
                self.mark_value(d.value);
            }
        }
    }

    /// Links processed so far, all of them (those before the resolver was resumed too): the
    /// number the next link gets.
    pub fn processed(&self) -> u32 {
        self.offset + self.outcomes.len() as u32
    }

    /// Whether users `a` and `b` are one person (a user no link named is a person of its own).
    pub fn same_person(&self, a: u32, b: u32) -> bool {
        let n = self.parent.len() as u32;
        a == b || (a < n && b < n && self.root_of(a) == self.root_of(b))
    }

    /// Whether `value` can join persons: seen on at least one user and at most the hub limit,
    /// not denied (a denied value is never counted).
    fn joins(&self, value: u32) -> bool {
        self.counts.get(value as usize).is_some_and(|&c| c >= 1 && c <= self.hub_limit)
    }

    /// The users and values (each sorted) whose decisions a split at `start` can change: the
    /// users of `start` and every user reachable from them through values that can join
    /// persons, and every value seen on those users. `values_of(user, out)` and
    /// `users_of(value, out)` push a user's values and a value's users (every pair processed).
    ///
    /// Decisions never cross these bounds: a link's outcome depends on its user's person, its
    /// value's owner and count, and the cannot-link pairs — a hub or a denied value links
    /// nobody, so every person and every owner lies inside one such component. A resolution
    /// of the component's links alone is therefore the whole resolution's, restricted to it.
    pub fn component(
        &self,
        start: &[u32],
        values_of: impl Fn(u32, &mut Vec<u32>),
        users_of: impl Fn(u32, &mut Vec<u32>),
    ) -> (Vec<u32>, Vec<u32>) {
        // Seen users and values as bits (a component can hold millions of them).
        let insert = |seen: &mut Vec<u64>, id: u32| {
            let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
            if word >= seen.len() {
                seen.resize(word + 1, 0);
            }
            let new = seen[word] & bit == 0;
            seen[word] |= bit;
            new
        };
        let mut users: Vec<u64> = vec![0; self.parent.len().div_ceil(64)];
        let mut values: Vec<u64> = vec![0; self.owners.len().div_ceil(64)];
        let mut queue: Vec<u32> = start.iter().copied().filter(|&u| insert(&mut users, u)).collect();
        let (mut vs, mut us) = (Vec::new(), Vec::new());
        while let Some(u) = queue.pop() {
            vs.clear();
            values_of(u, &mut vs);
            for &v in &vs {
                if !insert(&mut values, v) || !self.joins(v) {
                    continue;
                }
                us.clear();
                users_of(v, &mut us);
                queue.extend(us.iter().copied().filter(|&w| insert(&mut users, w)));
            }
        }
        let ids = |seen: &[u64]| -> Vec<u32> {
            let mut out = Vec::new();
            for (i, &word) in seen.iter().enumerate() {
                let mut w = word;
                while w != 0 {
                    out.push((i * 64) as u32 + w.trailing_zeros());
                    w &= w - 1;
                }
            }
            out
        };
        (ids(&users), ids(&values))
    }

    /// Sets the user counts of `values` (capped as counting caps them): after a forget, the
    /// values its users held count only the users left, before [`Resolver::replay`].
    pub fn set_counts(&mut self, values: &[(u32, u32)]) {
        let cap = self.hub_limit.saturating_add(1);
        for &(v, count) in values {
            self.grow_values(v);
            self.counts[v as usize] = count.min(cap);
            self.mark_value(v);
        }
    }

    /// Decides again, under the cannot-link pairs this resolver was resumed with, the links of
    /// a [`Resolver::component`] (`users`, `values`): their entries start afresh, `blocked`
    /// values become denied, and `links` — every link of those users, each with the number it
    /// had among all links (ascending) — are processed again. Returns their new outcomes;
    /// `None` when an identifier outside `links` would be dropped (the resolver is then
    /// spoiled, and the caller resolves every link from the start).
    pub fn replay(
        &mut self,
        users: &[u32],
        values: &[u32],
        blocked: &[u32],
        links: &[(u32, Link)],
    ) -> Option<Vec<Outcome>> {
        for &v in blocked {
            if let Some(c) = self.counts.get_mut(v as usize) {
                *c = 0;
                self.mark_value(v);
            }
        }
        let (known_users, known_values) = (self.parent.len(), self.owners.len());
        for &u in users.iter().filter(|&&u| (u as usize) < known_users) {
            self.parent[u as usize] = u;
            self.size[u as usize] = 1;
            self.held.set(u, &[]);
            self.mark_users([u]);
        }
        for &v in values.iter().filter(|&&v| (v as usize) < known_values) {
            self.owners[v as usize] = NONE;
            self.mark_value(v);
        }
        self.replaying = Some(Replay {
            numbers: links.iter().map(|(n, _)| *n).collect(),
            outcomes: Vec::with_capacity(links.len()),
        });
        for &(number, link) in links {
            let o = self.process(link, number);
            if let Some(r) = self.replaying.as_mut() {
                r.outcomes.push(o);
            }
        }
        let replay = self.replaying.take()?;
        (!self.earlier_changed).then_some(replay.outcomes)
    }

    /// The outcome of each link processed since the resolver was made or resumed, in order.
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }

    /// The outcomes, taken out of the resolver (see [`Resolver::outcomes`]).
    pub fn take_outcomes(&mut self) -> Vec<Outcome> {
        std::mem::take(&mut self.outcomes)
    }

    /// Whether two persons were joined since the resolver was made or resumed (else every
    /// user it knew is in the same person as before).
    pub fn joined_any(&self) -> bool {
        self.joined
    }

    /// A dense person id for each of `users` user rows: persons numbered in the order of their
    /// first user row, so the numbering depends on nothing but the result.
    pub fn person_ids(&self, users: u32) -> Vec<u32> {
        let mut number = vec![NONE; self.parent.len()];
        let mut next = 0u32;
        (0..users)
            .map(|u| {
                if (u as usize) >= self.parent.len() {
                    next += 1;
                    return next - 1;
                }
                let root = self.root_of(u) as usize;
                if number[root] == NONE {
                    number[root] = next;
                    next += 1;
                }
                number[root]
            })
            .collect()
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

    fn link(user: u32, kind: u16, value: u32) -> Link {
        Link { user, kind, value, denied: false }
    }

    fn full(links: &[Link]) -> Resolver {
        let mut r = Resolver::new(rules(), 20);
        r.resolve(links, None);
        r
    }

    #[test]
    fn a_shared_phone_joins_two_users_and_a_device_does_not() {
        let r = full(&[link(0, PHONE, 7), link(1, PHONE, 7), link(2, DEVICE, 9), link(3, DEVICE, 9)]);
        assert_eq!(r.person_ids(4), vec![0, 0, 1, 2]);
        assert_eq!(r.outcomes(), &[Outcome::Linked, Outcome::Joined, Outcome::Linked, Outcome::Linked]);
    }

    #[test]
    fn a_union_that_breaks_a_higher_types_limit_is_rejected() {
        // Users 0 and 1 have different unionids; a shared phone must not join them.
        let r = full(&[link(0, UNION, 1), link(1, UNION, 2), link(0, PHONE, 7), link(1, PHONE, 7)]);
        assert_eq!(r.person_ids(2), vec![0, 1]);
        assert_eq!(r.outcomes()[3], Outcome::Limit { kind: UNION });
    }

    #[test]
    fn a_higher_priority_union_drops_the_latest_excess_identifiers() {
        // Two persons with two phones each join through one unionid: the later two phones go.
        let r = full(&[
            link(0, PHONE, 1),
            link(0, PHONE, 2),
            link(1, PHONE, 3),
            link(1, PHONE, 4),
            link(0, UNION, 9),
            link(1, UNION, 9),
        ]);
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
        let mut links: Vec<Link> = (0..4).map(|u| link(u, PHONE, 5)).collect();
        links.push(Link { denied: true, ..link(0, PHONE, 6) });
        links.push(Link { denied: true, ..link(3, PHONE, 6) });
        let mut r = Resolver::new(rules(), 3);
        r.resolve(&links, None);
        assert_eq!(r.person_ids(4), vec![0, 1, 2, 3]);
        assert!(r.outcomes()[..4].iter().all(|o| *o == Outcome::Hub));
        assert_eq!(r.outcomes()[4], Outcome::Denied);
    }

    #[test]
    fn a_cannot_link_pair_is_never_joined_even_through_others() {
        // 0-1 by phone, 1-2 by e-mail-like unique type; 0 and 2 must stay apart.
        let mut r = Resolver::new(rules(), 20).with_cannot_link(vec![(0, 2)]);
        r.resolve(&[link(0, PHONE, 1), link(1, PHONE, 1), link(1, UNION, 4), link(2, UNION, 4)], None);
        assert_eq!(r.person_ids(3), vec![0, 0, 1]);
        assert_eq!(r.outcomes()[3], Outcome::Split);
    }

    #[test]
    fn the_chain_names_the_identifiers_that_joined_two_users() {
        let links = [link(0, PHONE, 1), link(1, PHONE, 1), link(1, UNION, 4), link(2, UNION, 4)];
        let r = full(&links);
        let persons = r.person_ids(3);
        let chain = explain_chain(&links, r.outcomes(), &rules(), |u| persons[u as usize] == persons[0], 0, 2)
            .expect("one person");
        assert_eq!(chain.iter().map(|s| (s.from_user, s.to_user)).collect::<Vec<_>>(), vec![(0, 1), (1, 2)]);
        assert_eq!(links[chain[1].from_link].kind, UNION);
    }

    #[test]
    fn a_delta_holds_only_what_an_increment_changed() {
        let key = |seq| Some(LinkKey { ts: 0, seq });
        let links: Vec<Link> = (0..1000).map(|u| link(u, PHONE, u)).collect();
        let mut r = Resolver::new(rules(), 20);
        r.resolve(&links, key(999));
        let base = r.save_base();
        let mut resumed = Resolver::resume(rules(), 20, Vec::new(), &base, &[]).expect("its own base");
        assert!(resumed.try_extend(&[link(5, PHONE, 6)], key(1000), key(1000)));
        assert!(resumed.joined_any());
        let delta = resumed.save_delta();
        assert!(delta.len() * 20 < base.len(), "{} bytes of delta against {} of base", delta.len(), base.len());
        let again = Resolver::resume(rules(), 20, Vec::new(), &base, &[&delta]).expect("base and delta");
        assert_eq!(again.person_ids(1000), resumed.person_ids(1000));
        // A link before the last one processed is refused; so are cut or foreign bytes.
        assert!(!Resolver::resume(rules(), 20, Vec::new(), &base, &[&delta]).unwrap().try_extend(
            &[link(7, PHONE, 8)],
            key(3),
            key(3)
        ));
        assert!(Resolver::resume(rules(), 20, Vec::new(), &base[..base.len() - 1], &[]).is_err());
        assert!(Resolver::resume(rules(), 20, Vec::new(), &delta, &[]).is_err());
    }

    #[test]
    fn an_untracked_resolver_decides_alike_and_its_delta_holds_every_entry() {
        let key = |seq| Some(LinkKey { ts: 0, seq });
        let links: Vec<Link> =
            (0..300).map(|u| link(u, PHONE, u / 3)).chain((0..300).map(|u| link(u, UNION, u % 7 + 200))).collect();
        let mut tracked = Resolver::new(rules(), 20);
        tracked.resolve(&links, key(599));
        let mut untracked = Resolver::new(rules(), 20).untracked();
        untracked.resolve(&links, key(599));
        assert_eq!(untracked.outcomes(), tracked.outcomes());
        assert_eq!(untracked.save_base(), tracked.save_base());
        assert!(untracked.dirty_users.is_empty() && untracked.dirty_values.is_empty());
        let empty = Resolver::new(rules(), 20).save_base();
        let whole =
            Resolver::resume(rules(), 20, Vec::new(), &empty, &[&untracked.save_delta()]).expect("a whole delta");
        assert_eq!(whole.person_ids(300), tracked.person_ids(300));
    }

    /// A seeded random graph: links over `users` users and a few values per type (each value id
    /// names one (type, value), each (user, value) once), with times that often tie, some
    /// denied values, split into import batches, with a few cannot-link pairs.
    /// Users, keyed links in arrival order, import cuts and cannot-link pairs.
    type Graph = (u32, Vec<(LinkKey, Link)>, Vec<usize>, Vec<(u32, u32)>);

    fn graph() -> impl Strategy<Value = Graph> {
        (2u32..40).prop_flat_map(|users| {
            let link = (0..users, 0u16..3, 0u32..25, 0i64..20, proptest::bool::weighted(0.05));
            let pairs = proptest::collection::vec((0..users, 0..users), 0..3);
            (Just(users), proptest::collection::vec(link, 0..120), proptest::collection::vec(0usize..120, 0..6), pairs)
                .prop_map(|(users, raw, cuts, pairs)| {
                    let mut seen = HashSet::new();
                    let links = raw
                        .into_iter()
                        .enumerate()
                        .filter(|(_, (user, kind, value, _, _))| seen.insert((*user, *kind, *value)))
                        .map(|(seq, (user, kind, value, ts, denied))| {
                            // A value is denied or not, whoever gives it.
                            let denied = denied || value % 11 == 3;
                            (
                                LinkKey { ts, seq: seq as u64 },
                                Link { user, kind, value: u32::from(kind) * 25 + value, denied },
                            )
                        })
                        .collect();
                    (users, links, cuts, pairs)
                })
        })
    }

    /// Resolves keyed links in one pass; their outcomes in key order.
    fn one_pass(links: &[(LinkKey, Link)], pairs: &[(u32, u32)]) -> Resolver {
        let mut sorted = links.to_vec();
        sorted.sort_by_key(|(k, _)| *k);
        let mut r = Resolver::new(rules(), 4).with_cannot_link(pairs.to_vec());
        let only: Vec<Link> = sorted.iter().map(|(_, l)| *l).collect();
        r.resolve(&only, sorted.last().map(|(k, _)| *k));
        r
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// A split (a cannot-link pair, or a blocked value) decided again on its component
        /// alone, as `ingest::identity::split` does it from the saved state, equals a
        /// resolution of every link from the start under the split — outcomes, persons, and the
        /// state later links are applied to.
        #[test]
        fn a_split_replayed_on_its_component_equals_a_full_rebuild(
            (users, links, _cuts, pairs) in graph(),
            (a, b, value, by_value, cut) in (0u32..40, 0u32..40, 0u32..75, any::<bool>(), 0usize..120),
        ) {
            let mut sorted = links.clone();
            sorted.sort_by_key(|(k, _)| *k);
            let cut = cut.min(sorted.len());
            let (a, b) = (a % users, b % users);
            let mut after_pairs = pairs.clone();
            let blocked: Vec<u32> = if by_value { vec![value] } else { Vec::new() };
            if !by_value {
                after_pairs.push((a, b));
            }
            let block = |l: Link| Link { denied: l.denied || blocked.contains(&l.value), ..l };
            let after: Vec<(LinkKey, Link)> = sorted.iter().map(|(k, l)| (*k, block(*l))).collect();
            let expected = one_pass(&after, &after_pairs);
            // The split lands after the first `cut` links; the rest come later as an increment.
            let before = one_pass(&sorted[..cut], &pairs);
            let base = before.save_base();
            let mut r = Resolver::resume(rules(), 4, after_pairs.clone(), &base, &[]).expect("its own base");
            let seen = &sorted[..cut];
            let start: Vec<u32> = if by_value {
                seen.iter().filter(|(_, l)| l.value == value).map(|(_, l)| l.user).collect()
            } else {
                vec![a, b]
            };
            let (cu, cv) = r.component(
                &start,
                |u, out| out.extend(seen.iter().filter(|(_, l)| l.user == u).map(|(_, l)| l.value)),
                |v, out| out.extend(seen.iter().filter(|(_, l)| l.value == v).map(|(_, l)| l.user)),
            );
            let again: Vec<(u32, Link)> = seen
                .iter()
                .enumerate()
                .filter(|(_, (_, l))| cu.binary_search(&l.user).is_ok())
                .map(|(i, (_, l))| (i as u32, block(*l)))
                .collect();
            let replayed = r.replay(&cu, &cv, &blocked, &again).expect("a component holds its identifiers");
            let mut outcomes = before.outcomes().to_vec();
            for ((i, _), o) in again.iter().zip(&replayed) {
                outcomes[*i as usize] = *o;
            }
            let expected_then = one_pass(&after[..cut], &after_pairs);
            prop_assert_eq!(&outcomes[..], expected_then.outcomes());
            prop_assert_eq!(r.person_ids(users), expected_then.person_ids(users));
            // Through a delta, as the store keeps it, then the later links as an increment.
            let delta = r.save_delta();
            let mut resumed = Resolver::resume(rules(), 4, after_pairs.clone(), &base, &[&delta]).expect("base and delta");
            let rest: Vec<Link> = after[cut..].iter().map(|(_, l)| *l).collect();
            let (first, last) = (after[cut..].first().map(|(k, _)| *k), after.last().map(|(k, _)| *k));
            if resumed.try_extend(&rest, first, last) {
                prop_assert_eq!(resumed.outcomes(), &expected.outcomes()[cut..]);
                prop_assert_eq!(resumed.person_ids(users), expected.person_ids(users));
            } else if cut == sorted.len() {
                prop_assert!(false, "an empty increment was refused");
            }
        }

        #[test]
        fn incremental_resolution_equals_a_full_rebuild((users, links, mut cuts, pairs) in graph()) {
            let full = one_pass(&links, &pairs);
            cuts.push(links.len());
            cuts.iter_mut().for_each(|c| *c = (*c).min(links.len()));
            cuts.sort_unstable();
            // As an import does it: each batch applied to the base and deltas the previous
            // imports saved when it can be (a new base after every third delta), else every link
            // so far resolved from the start.
            let mut outcomes: Vec<Outcome> = Vec::new();
            let mut base: Option<Vec<u8>> = None;
            let mut deltas: Vec<Vec<u8>> = Vec::new();
            let mut from = 0;
            let mut last = Resolver::new(rules(), 4);
            for &cut in &cuts {
                let mut batch = links[from..cut].to_vec();
                batch.sort_by_key(|(k, _)| *k);
                let only: Vec<Link> = batch.iter().map(|(_, l)| *l).collect();
                let (first, end) = (batch.first().map(|(k, _)| *k), batch.last().map(|(k, _)| *k));
                let mut resumed = base.as_ref().map(|b| {
                    let d: Vec<&[u8]> = deltas.iter().map(Vec::as_slice).collect();
                    Resolver::resume(rules(), 4, pairs.clone(), b, &d).expect("a state it saved")
                });
                let applied = resumed.as_mut().is_some_and(|r| r.try_extend(&only, first, end));
                let r = if applied {
                    let r = resumed.expect("applied");
                    outcomes.extend_from_slice(r.outcomes());
                    if deltas.len() == 2 {
                        base = Some(r.save_base());
                        deltas.clear();
                    } else {
                        deltas.push(r.save_delta());
                    }
                    r
                } else {
                    let r = one_pass(&links[..cut], &pairs);
                    outcomes = r.outcomes().to_vec();
                    base = Some(r.save_base());
                    deltas.clear();
                    r
                };
                last = r;
                from = cut;
            }
            prop_assert_eq!(&outcomes, full.outcomes());
            prop_assert_eq!(last.person_ids(users), full.person_ids(users));
            // No person ever holds two unionids, and hubs and denied values link nobody.
            let persons = full.person_ids(users);
            let mut sorted = links.clone();
            sorted.sort_by_key(|(k, _)| *k);
            let mut unions: HashMap<u32, HashSet<u32>> = HashMap::new();
            for ((_, l), o) in sorted.iter().zip(full.outcomes()) {
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
