//! Dense `u32` row ids for `user_id`s: the dictionary that gives each user the next id the first
//! time it is seen, persisted as immutable segment files (one per import that adds users).
//!
//! Segment file: `PRSNIDS1`, entry count (u64 LE), then entries sorted by key — key length (u16 LE),
//! key bytes, row id (u32 LE) — then a CRC-32 (u32 LE) of everything before it. Loading is one
//! sequential read and a hash-map build, with no parsing beyond lengths.

use std::path::Path;

use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::store::io;

const MAGIC: &[u8; 8] = b"PRSNIDS1";

/// The in-memory dictionary used by an import.
#[derive(Debug, Default)]
pub struct IdMap {
    map: FxHashMap<Box<str>, u32>,
}

impl IdMap {
    /// Loads every segment of the dictionary.
    pub fn load(paths: &[impl AsRef<Path>], expected_len: usize) -> Result<IdMap> {
        let mut map = FxHashMap::with_capacity_and_hasher(expected_len, Default::default());
        for path in paths {
            let path = path.as_ref();
            let bytes = io::read(path)?;
            for_each_entry(&bytes, path, |key, id| {
                map.insert(key.into(), id);
            })?;
        }
        Ok(IdMap { map })
    }

    pub fn get(&self, user_id: &str) -> Option<u32> {
        self.map.get(user_id).copied()
    }

    pub fn insert(&mut self, user_id: &str, row_id: u32) {
        self.map.insert(user_id.into(), row_id);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The entries whose row id is at least `first`: the users an import added.
    pub fn entries_from(&self, first: u32) -> Vec<(&str, u32)> {
        self.map.iter().filter(|(_, id)| **id >= first).map(|(k, id)| (k.as_ref(), *id)).collect()
    }
}

/// Encodes a segment from entries (sorted here).
pub fn encode_segment(mut entries: Vec<(&str, u32)>) -> Result<Vec<u8>> {
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let size: usize = entries.iter().map(|(k, _)| k.len() + 6).sum();
    let mut out = Vec::with_capacity(size + 24);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (key, id) in &entries {
        let len = u16::try_from(key.len()).map_err(|_| {
            Error::Usage(format!("user_id '{}…' is longer than 65535 bytes", &key[..32.min(key.len())]))
        })?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Walks a segment's entries after verifying its magic and checksum.
fn for_each_entry(bytes: &[u8], path: &Path, mut f: impl FnMut(&str, u32)) -> Result<()> {
    let corrupt = |detail: &str| Error::corrupt(path, detail.to_string());
    if bytes.len() < 20 || &bytes[..8] != MAGIC {
        return Err(corrupt("not an id-dictionary segment (bad magic or truncated)"));
    }
    let body = &bytes[..bytes.len() - 4];
    let stored = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().expect("4 bytes by slicing"));
    if crc32fast::hash(body) != stored {
        return Err(corrupt("checksum mismatch; the file is truncated or damaged"));
    }
    let count = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes by slicing"));
    let mut pos = 16;
    for _ in 0..count {
        let len = body
            .get(pos..pos + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .ok_or_else(|| corrupt("entry past the end"))?;
        let key = body.get(pos + 2..pos + 2 + len).ok_or_else(|| corrupt("entry past the end"))?;
        let id = body
            .get(pos + 2 + len..pos + 6 + len)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| corrupt("entry past the end"))?;
        let key = std::str::from_utf8(key).map_err(|_| corrupt("a key is not UTF-8"))?;
        f(key, id);
        pos += 6 + len;
    }
    if pos != body.len() {
        return Err(corrupt("trailing bytes after the last entry"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_and_merge() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.ids");
        let b = dir.path().join("b.ids");
        std::fs::write(&a, encode_segment(vec![("u2", 1), ("u1", 0)]).unwrap()).unwrap();
        std::fs::write(&b, encode_segment(vec![("用户3", 2)]).unwrap()).unwrap();
        let map = IdMap::load(&[a, b], 3).unwrap();
        assert_eq!(map.len(), 3);
        assert_eq!(map.get("u1"), Some(0));
        assert_eq!(map.get("用户3"), Some(2));
        assert_eq!(map.get("nobody"), None);
    }

    #[test]
    fn damaged_segment_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.ids");
        let good = encode_segment(vec![("u1", 0), ("u2", 1)]).unwrap();
        for cut in 0..good.len() {
            std::fs::write(&p, &good[..cut]).unwrap();
            assert!(matches!(IdMap::load(&[&p], 0), Err(Error::Corrupt { .. })), "cut {cut}");
        }
        let mut flipped = good.clone();
        flipped[18] ^= 1;
        std::fs::write(&p, &flipped).unwrap();
        assert!(matches!(IdMap::load(&[&p], 0), Err(Error::Corrupt { .. })));
    }
}
