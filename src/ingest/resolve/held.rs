//! The identifiers each person holds, as one pool of list nodes: a head per user row and
//! nodes of (type, value, attaching link) linked through `next`, with freed nodes reused. Ten
//! million persons cost two flat arrays instead of ten million small vectors.

/// No node.
const NIL: u32 = u32::MAX;

/// An identifier a person holds, and the link (numbered over every link processed) that attached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Held {
    pub(super) kind: u16,
    pub(super) value: u32,
    pub(super) link: u32,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    held: Held,
    next: u32,
}

/// Identifiers in the order they are listed, unlinked yet ([`HeldPool::from_nodes`]).
pub(super) struct Nodes(Vec<Node>);

impl Nodes {
    pub(super) fn push(&mut self, held: Held) {
        self.0.push(Node { held, next: NIL });
    }
}

/// Per user row, the list of identifiers it holds (only a person's root holds any).
#[derive(Debug, Clone, Default)]
pub(super) struct HeldPool {
    head: Vec<u32>,
    nodes: Vec<Node>,
    /// The first freed node, linked through `next`.
    free: u32,
}

impl HeldPool {
    pub(super) fn new() -> HeldPool {
        HeldPool { head: Vec::new(), nodes: Vec::new(), free: NIL }
    }

    /// The pool of `lens.len()` users, user `u` holding the next `lens[u]` of `items` (listed as
    /// [`HeldPool::iter`] gives them).
    #[cfg(test)]
    pub(super) fn from_lists(lens: &[u32], items: Vec<Held>) -> Option<HeldPool> {
        let mut nodes = HeldPool::nodes_with_capacity(items.len());
        items.into_iter().for_each(|h| nodes.push(h));
        HeldPool::from_nodes(lens, nodes, lens.len())
    }

    /// Room for `capacity` identifiers, filled by [`Nodes::push`] for [`HeldPool::from_nodes`].
    pub(super) fn nodes_with_capacity(capacity: usize) -> Nodes {
        Nodes(Vec::with_capacity(capacity))
    }

    /// [`HeldPool::from_lists`] over nodes pushed in that order, linked in place; the users'
    /// heads made with room for `users` users.
    pub(super) fn from_nodes(lens: &[u32], nodes: Nodes, users: usize) -> Option<HeldPool> {
        let mut head = Vec::with_capacity(users.max(lens.len()));
        head.resize(lens.len(), NIL);
        let mut nodes = nodes.0;
        let mut at = 0usize;
        for (u, &len) in lens.iter().enumerate() {
            let end = at.checked_add(len as usize).filter(|&e| e <= nodes.len())?;
            if end > at {
                head[u] = at as u32;
                for (k, node) in nodes[at..end - 1].iter_mut().enumerate() {
                    node.next = (at + k) as u32 + 1;
                }
            }
            at = end;
        }
        (at == nodes.len()).then_some(HeldPool { head, nodes, free: NIL })
    }

    /// Users `0..n` have a (possibly empty) list.
    pub(super) fn grow(&mut self, n: usize) {
        if self.head.len() < n {
            self.head.resize(n, NIL);
        }
    }

    pub(super) fn users(&self) -> usize {
        self.head.len()
    }

    /// The identifiers `user` holds, the most recently added first.
    pub(super) fn iter(&self, user: u32) -> impl Iterator<Item = Held> + '_ {
        let mut at = self.head.get(user as usize).copied().unwrap_or(NIL);
        std::iter::from_fn(move || {
            let node = self.nodes.get(at as usize)?;
            at = node.next;
            Some(node.held)
        })
    }

    pub(super) fn contains(&self, user: u32, kind: u16, value: u32) -> bool {
        self.iter(user).any(|h| h.kind == kind && h.value == value)
    }

    pub(super) fn count(&self, user: u32, kind: u16) -> u32 {
        self.iter(user).filter(|h| h.kind == kind).count() as u32
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self, user: u32) -> bool {
        self.head.get(user as usize).is_none_or(|&h| h == NIL)
    }

    pub(super) fn push(&mut self, user: u32, held: Held) {
        let next = self.head[user as usize];
        let node = Node { held, next };
        let at = if self.free == NIL {
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        } else {
            let at = self.free;
            self.free = self.nodes[at as usize].next;
            self.nodes[at as usize] = node;
            at
        };
        self.head[user as usize] = at;
    }

    fn release(&mut self, at: u32) {
        self.nodes[at as usize].next = self.free;
        self.free = at;
    }

    /// Moves `child`'s identifiers to `root`, except those `root` already holds.
    pub(super) fn move_into(&mut self, child: u32, root: u32) {
        let mut at = std::mem::replace(&mut self.head[child as usize], NIL);
        while at != NIL {
            let Node { held, next } = self.nodes[at as usize];
            if self.contains(root, held.kind, held.value) {
                self.release(at);
            } else {
                self.nodes[at as usize].next = self.head[root as usize];
                self.head[root as usize] = at;
            }
            at = next;
        }
    }

    /// Removes the identifiers of `user` for which `drop` holds.
    pub(super) fn remove_where(&mut self, user: u32, drop: impl Fn(&Held) -> bool) {
        let mut at = std::mem::replace(&mut self.head[user as usize], NIL);
        let mut kept = Vec::new();
        while at != NIL {
            let Node { held, next } = self.nodes[at as usize];
            if drop(&held) {
                self.release(at);
            } else {
                kept.push(at);
            }
            at = next;
        }
        // Relinked in their former order.
        for &k in kept.iter().rev() {
            self.nodes[k as usize].next = self.head[user as usize];
            self.head[user as usize] = k;
        }
    }

    /// Replaces `user`'s list by `items` (listed as [`HeldPool::iter`] gives them).
    pub(super) fn set(&mut self, user: u32, items: &[Held]) {
        self.grow(user as usize + 1);
        self.remove_where(user, |_| true);
        for &h in items.iter().rev() {
            self.push(user, h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(kind: u16, value: u32) -> Held {
        Held { kind, value, link: value }
    }

    #[test]
    fn lists_move_remove_and_reuse_their_nodes() {
        let mut p = HeldPool::new();
        p.grow(3);
        p.push(0, h(1, 10));
        p.push(0, h(1, 11));
        p.push(1, h(1, 11));
        p.push(1, h(2, 12));
        p.move_into(1, 0);
        assert!(p.is_empty(1));
        assert_eq!(p.iter(0).map(|x| x.value).collect::<Vec<_>>(), vec![12, 11, 10]);
        assert_eq!(p.count(0, 1), 2);
        p.remove_where(0, |x| x.value == 11);
        assert_eq!(p.iter(0).map(|x| x.value).collect::<Vec<_>>(), vec![12, 10]);
        let nodes = p.nodes.len();
        p.set(2, &[h(3, 1), h(3, 2)]);
        assert_eq!(p.nodes.len(), nodes, "freed nodes are reused");
        assert_eq!(p.iter(2).map(|x| x.value).collect::<Vec<_>>(), vec![1, 2]);
        let q = HeldPool::from_lists(&[2, 0, 1], vec![h(1, 1), h(1, 2), h(2, 3)]).expect("lists that fit");
        assert_eq!(q.iter(0).map(|x| x.value).collect::<Vec<_>>(), vec![1, 2]);
        assert!(q.is_empty(1));
        assert_eq!(q.iter(2).map(|x| x.value).collect::<Vec<_>>(), vec![3]);
        assert!(HeldPool::from_lists(&[2], vec![h(1, 1)]).is_none(), "fewer items than the lists hold");
    }
}
