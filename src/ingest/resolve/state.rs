//! The resolver's state as bytes (docs/format.md): a **base** holding every entry, and
//! **deltas** holding only the users and values whose entries changed since the resolver was
//! resumed, so that an in-order increment writes O(its links + the persons it touched) bytes.
//! A resolver resumes from a base and the deltas written after it, in order.
//!
//! ```text
//! base  "PRSNUF02" processed u32  last (flag u8, ts i64, seq u64)  users n u32  values m u32
//!       parent u32×n  size u32×n  held count u32×n  held (kind u16, value u32, link u32)×Σ
//!       owner u32×m  count u32×m
//! delta "PRSNUD01" processed u32  last  users n u32  values m u32
//!       changed users u32 × (user u32, parent u32, size u32, count u32, held×count)
//!       changed values u32 × (value u32, owner u32, count u32)
//! ```

use super::held::{Held, HeldPool};
use super::{KindRule, LinkKey, Resolver};

const BASE_MAGIC: &[u8; 8] = b"PRSNUF02";
const DELTA_MAGIC: &[u8; 8] = b"PRSNUD01";

impl Resolver {
    /// Every entry of the state (see the module doc).
    pub fn save_base(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.parent.len() * 12 + self.owners.len() * 8);
        self.write_base(&mut out).expect("writing to memory cannot fail");
        out
    }

    /// [`Resolver::save_base`] written to `out` a chunk at a time (a base at ten million users
    /// is hundreds of megabytes).
    pub fn write_base(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let n = self.parent.len();
        let mut buf = Vec::with_capacity(1 << 16);
        self.header(&mut buf, BASE_MAGIC);
        let flush = |buf: &mut Vec<u8>, out: &mut dyn std::io::Write, force: bool| {
            if force || buf.len() >= 1 << 16 {
                out.write_all(buf)?;
                buf.clear();
            }
            std::io::Result::Ok(())
        };
        for column in [&self.parent, &self.size] {
            for &v in column {
                put(&mut buf, v);
                flush(&mut buf, out, false)?;
            }
        }
        for u in 0..n as u32 {
            put(&mut buf, self.held.iter(u).count() as u32);
            flush(&mut buf, out, false)?;
        }
        for u in 0..n as u32 {
            for h in self.held.iter(u) {
                put_held(&mut buf, &h);
            }
            flush(&mut buf, out, false)?;
        }
        for column in [&self.owners, &self.counts] {
            for &v in column {
                put(&mut buf, v);
                flush(&mut buf, out, false)?;
            }
        }
        flush(&mut buf, out, true)
    }

    /// The entries that changed since the resolver was made or resumed (see the module doc).
    pub fn save_delta(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.header(&mut out, DELTA_MAGIC);
        let mut users = if self.tracked { self.dirty_users.clone() } else { (0..self.parent.len() as u32).collect() };
        users.sort_unstable();
        users.dedup();
        put(&mut out, users.len() as u32);
        for u in users {
            put(&mut out, u);
            put(&mut out, self.parent[u as usize]);
            put(&mut out, self.size[u as usize]);
            let list: Vec<Held> = self.held.iter(u).collect();
            put(&mut out, list.len() as u32);
            list.iter().for_each(|h| put_held(&mut out, h));
        }
        let mut values = if self.tracked { self.dirty_values.clone() } else { (0..self.owners.len() as u32).collect() };
        values.sort_unstable();
        values.dedup();
        put(&mut out, values.len() as u32);
        for v in values {
            put(&mut out, v);
            put(&mut out, self.owners[v as usize]);
            put(&mut out, self.counts[v as usize]);
        }
        out
    }

    fn header(&self, out: &mut Vec<u8>, magic: &[u8; 8]) {
        out.extend_from_slice(magic);
        put(out, self.offset + self.outcomes.len() as u32);
        match self.last {
            Some(k) => {
                out.push(1);
                out.extend_from_slice(&k.ts.to_le_bytes());
                out.extend_from_slice(&k.seq.to_le_bytes());
            }
            None => out.extend_from_slice(&[0; 17]),
        }
        put(out, self.parent.len() as u32);
        put(out, self.owners.len() as u32);
    }

    /// A resolver in the state a base and its later deltas describe, under the same rules, hub
    /// limit and cannot-link pairs; an error says what in the bytes is wrong.
    pub fn resume(
        rules: Vec<KindRule>,
        hub_limit: u32,
        cannot_link: Vec<(u32, u32)>,
        base: &[u8],
        deltas: &[&[u8]],
    ) -> Result<Resolver, String> {
        let mut rest = base;
        let r = Resolver::resume_from(rules, hub_limit, cannot_link, &mut rest, deltas)?;
        if !rest.is_empty() {
            return Err("bytes after the state".into());
        }
        Ok(r)
    }

    /// [`Resolver::resume`] with the base read from `base` as it is decoded, a chunk at a time:
    /// at ten million users the base is over half a gigabyte, and holding its bytes beside the
    /// arrays decoded from them doubled the memory an increment touches (fresh pages, which the
    /// kernel zeroes: most of an increment's time). Reads exactly the base; the caller checks
    /// that nothing follows.
    pub fn resume_from(
        rules: Vec<KindRule>,
        hub_limit: u32,
        cannot_link: Vec<(u32, u32)>,
        base: &mut impl std::io::Read,
        deltas: &[&[u8]],
    ) -> Result<Resolver, String> {
        let mut r = Resolver::new(rules, hub_limit).with_cannot_link(cannot_link);
        let mut header = [0u8; HEADER_LEN];
        read_exact(base, &mut header)?;
        let (n, m) = r.read_header(&mut Bytes { bytes: &header, at: 0 }, BASE_MAGIC)?;
        // Every array is made at the size the deltas bring it to, and the held identifiers'
        // nodes with room for every identifier the deltas hold: growing them as the deltas are
        // applied copied them whole into doubled arrays (hundreds of megabytes of fresh pages at
        // ten million users, which the kernel zeroes: most of an increment's time).
        let (mut users, mut values, mut delta_held) = (n, m, 0usize);
        for delta in deltas {
            let (dn, dm) = delta_sizes(delta)?;
            (users, values) = (users.max(dn), values.max(dm));
            delta_held += delta.len() / HELD_LEN;
        }
        let mut chunk = vec![0u8; CHUNK];
        r.parent = read_u32s(base, n, users, &mut chunk)?;
        r.size = read_u32s(base, n, users, &mut chunk)?;
        let lens = read_u32s(base, n, 0, &mut chunk)?;
        let total = lens.iter().map(|&l| l as usize).sum::<usize>();
        let mut nodes = HeldPool::nodes_with_capacity(total.saturating_add(delta_held));
        read_chunked(base, total, HELD_LEN, &mut chunk, |c| {
            nodes.push(Held {
                kind: u16::from_le_bytes([c[0], c[1]]),
                value: u32::from_le_bytes([c[2], c[3], c[4], c[5]]),
                link: u32::from_le_bytes([c[6], c[7], c[8], c[9]]),
            })
        })?;
        r.held = HeldPool::from_nodes(&lens, nodes, users).ok_or("the held identifiers do not fit their counts")?;
        drop(lens);
        r.owners = read_u32s(base, m, values, &mut chunk)?;
        r.counts = read_u32s(base, m, values, &mut chunk)?;
        for delta in deltas {
            let mut at = Bytes { bytes: delta, at: 0 };
            let (n, m) = r.read_header(&mut at, DELTA_MAGIC)?;
            if n < r.parent.len() || m < r.owners.len() {
                return Err("a delta with fewer users or values than its base".into());
            }
            let from = r.parent.len() as u32;
            r.parent.extend(from..n as u32);
            r.size.resize(n, 1);
            r.held.grow(n);
            r.owners.resize(m, super::NONE);
            r.counts.resize(m, 0);
            for _ in 0..at.u32()? {
                let u = at.u32()?;
                let (parent, size) = (at.u32()?, at.u32()?);
                let items = (0..at.u32()?).map(|_| at.held()).collect::<Result<Vec<_>, _>>()?;
                let slot = r.parent.get_mut(u as usize).ok_or("a changed user past the users")?;
                *slot = parent;
                r.size[u as usize] = size;
                r.held.set(u, &items);
            }
            for _ in 0..at.u32()? {
                let v = at.u32()? as usize;
                let (owner, count) = (at.u32()?, at.u32()?);
                *r.owners.get_mut(v).ok_or("a changed value past the values")? = owner;
                r.counts[v] = count;
            }
            at.end()?;
        }
        let n = r.parent.len();
        if r.parent.iter().any(|&p| p as usize >= n) || r.held.users() != n {
            return Err("a parent past the users".into());
        }
        r.dirty_users.clear();
        r.dirty_values.clear();
        r.tracked = true;
        Ok(r)
    }

    fn read_header(&mut self, at: &mut Bytes, magic: &[u8; 8]) -> Result<(usize, usize), String> {
        if at.take(magic.len())? != magic {
            return Err("not a union-find state of this format".into());
        }
        self.offset = at.u32()?;
        let has_last = at.take(1)?[0] == 1;
        let (ts, seq) = (at.u64()? as i64, at.u64()?);
        self.last = has_last.then_some(LinkKey { ts, seq });
        Ok((at.u32()? as usize, at.u32()? as usize))
    }
}

/// A base's header: magic, processed, the last link's flag, ts and seq, users, values.
const HEADER_LEN: usize = 8 + 4 + 1 + 8 + 8 + 4 + 4;
/// A held identifier's bytes: kind u16, value u32, link u32.
const HELD_LEN: usize = 10;
/// Bytes decoded at a time from a base.
const CHUNK: usize = 1 << 16;

fn read_exact(from: &mut impl std::io::Read, buf: &mut [u8]) -> Result<(), String> {
    from.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "the state is cut short".to_string(),
        _ => format!("the state cannot be read: {e}"),
    })
}

/// Reads `count` items of `width` bytes, a chunk at a time, handing each to `f`.
fn read_chunked(
    from: &mut impl std::io::Read,
    count: usize,
    width: usize,
    chunk: &mut [u8],
    mut f: impl FnMut(&[u8]),
) -> Result<(), String> {
    let per = chunk.len() / width;
    let mut left = count;
    while left > 0 {
        let k = left.min(per);
        let bytes = &mut chunk[..k * width];
        read_exact(from, bytes)?;
        bytes.chunks_exact(width).for_each(&mut f);
        left -= k;
    }
    Ok(())
}

/// A delta's users and values (see the module doc), from its header.
fn delta_sizes(delta: &[u8]) -> Result<(usize, usize), String> {
    let mut at = Bytes { bytes: delta, at: 0 };
    if at.take(DELTA_MAGIC.len())? != DELTA_MAGIC {
        return Err("not a union-find state of this format".into());
    }
    at.take(4 + 1 + 8 + 8)?;
    Ok((at.u32()? as usize, at.u32()? as usize))
}

/// `count` u32s, in a vector with room for `capacity` (at least `count`).
fn read_u32s(
    from: &mut impl std::io::Read,
    count: usize,
    capacity: usize,
    chunk: &mut [u8],
) -> Result<Vec<u32>, String> {
    let mut out = Vec::with_capacity(capacity.max(count));
    read_chunked(from, count, 4, chunk, |c| out.push(u32::from_le_bytes(c.try_into().expect("four bytes"))))?;
    Ok(out)
}

fn put(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_held(out: &mut Vec<u8>, h: &Held) {
    out.extend_from_slice(&h.kind.to_le_bytes());
    put(out, h.value);
    put(out, h.link);
}

/// Reads saved bytes, refusing to run past their end.
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
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("four bytes")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("eight bytes")))
    }
    fn held(&mut self) -> Result<Held, String> {
        let kind = u16::from_le_bytes(self.take(2)?.try_into().expect("two bytes"));
        Ok(Held { kind, value: self.u32()?, link: self.u32()? })
    }
    fn end(&self) -> Result<(), String> {
        if self.at == self.bytes.len() { Ok(()) } else { Err("bytes after the state".into()) }
    }
}
