//! Dense `u32` row ids for `user_id`s at import time: the whole id dictionary in memory
//! ([`IdMap`]), loaded from the store's segments, which gives each new user the next id the first
//! time it is seen and resolves the user_ids of fact rows — or, for an import of facts only, the
//! segments looked up a batch of keys at a time ([`IdMap::on_demand`]): an hourly import of
//! 100,000 purchases at ten million users spent 5 of its 7 seconds loading the dictionary. The
//! segment files themselves are [`crate::store::id_dictionary`]'s.

use std::path::Path;

use rustc_hash::FxHashMap;

use crate::error::Result;
use crate::store::id_dictionary::{self, SegmentReader};

/// The in-memory dictionary used by an import: user_id → row id, and row id → user_id (the keys
/// in one arena), so that facts grouped by user in row-id order resolve the next user by checking
/// the next row id's key instead of probing the hash map.
#[derive(Debug, Default)]
pub struct IdMap {
    map: FxHashMap<Box<str>, u32>,
    arena: String,
    /// Per row id: where its key is in `arena` (offset, length); `u32::MAX` length for no key.
    by_id: Vec<(u32, u32)>,
    /// Set for a dictionary looked up on demand ([`IdMap::on_demand`]): its segments, of which
    /// nothing is in `map`.
    segments: Option<Vec<SegmentReader>>,
}

impl IdMap {
    /// Loads every segment of the dictionary.
    pub fn load(paths: &[impl AsRef<Path>], expected_len: usize) -> Result<IdMap> {
        let mut out = IdMap {
            map: FxHashMap::with_capacity_and_hasher(expected_len, Default::default()),
            arena: String::new(),
            by_id: Vec::with_capacity(expected_len),
            segments: None,
        };
        for path in paths {
            id_dictionary::for_each_entry(path.as_ref(), |key, id| out.insert(key, id))?;
        }
        Ok(out)
    }

    /// A dictionary that loads nothing: [`IdMap::get_sorted`] looks keys up in the segments (each
    /// block read at most once per call). Only for an import that adds no users and resolves
    /// nothing: [`IdMap::get`], [`IdMap::key_of`] and [`IdMap::insert`] know no stored user.
    pub fn on_demand(paths: &[impl AsRef<Path>]) -> Result<IdMap> {
        let segments = paths.iter().map(|p| SegmentReader::open(p.as_ref())).collect::<Result<Vec<_>>>()?;
        for segment in &segments {
            segment.verify_file()?;
        }
        Ok(IdMap { segments: Some(segments), ..IdMap::default() })
    }

    /// The row id → user_id side of the dictionary ([`IdMap::key_of`]), loaded whole, without the
    /// hash map of user_id → row id: lookups ([`IdMap::lookup`], [`IdMap::get_sorted`]) go to the
    /// segments. For identity resolution, which names every row but looks up only a few users
    /// (a split's pair): at ten million users it saves building a map of 10 M keys (seconds,
    /// and most of a gigabyte).
    pub fn load_names(paths: &[impl AsRef<Path>], expected_len: usize) -> Result<IdMap> {
        let segments = paths.iter().map(|p| SegmentReader::open(p.as_ref())).collect::<Result<Vec<_>>>()?;
        // The keys take less room than their segments: the arena never grows (growing it copied
        // the ten million keys loaded so far, over and over).
        let mut key_bytes = 0u64;
        for path in paths {
            key_bytes += std::fs::metadata(path.as_ref()).map_or(0, |m| m.len());
        }
        let mut out = IdMap {
            by_id: Vec::with_capacity(expected_len),
            arena: String::with_capacity(usize::try_from(key_bytes).unwrap_or(0).min(u32::MAX as usize)),
            segments: Some(segments),
            ..IdMap::default()
        };
        for path in paths {
            id_dictionary::for_each_entry(path.as_ref(), |key, id| out.name(key, id))?;
        }
        Ok(out)
    }

    /// The row id of one `user_id`, from the map or, on demand, the segments.
    pub fn lookup(&self, user_id: &str) -> Result<Option<u32>> {
        match (self.map.get(user_id), &self.segments) {
            (Some(&id), _) => Ok(Some(id)),
            // Rows left out by `without_rows` are no user, whatever the segments say.
            (None, Some(_)) => Ok(self.get_sorted(&[user_id])?[0].filter(|&id| self.key_of(id).is_some())),
            (None, None) => Ok(None),
        }
    }

    /// Leaves the user_ids of `rows` out (users being forgotten): they have no key any more.
    pub fn without_rows(&mut self, rows: &roaring::RoaringBitmap) {
        for row in rows {
            if let Some(entry) = self.by_id.get_mut(row as usize) {
                if let Some(key) = self.arena.get(entry.0 as usize..(entry.0 + entry.1) as usize) {
                    self.map.remove(key);
                }
                entry.1 = u32::MAX;
            }
        }
    }

    /// Whether this dictionary looks its keys up on demand.
    pub fn is_on_demand(&self) -> bool {
        self.segments.is_some()
    }

    /// The row ids of `keys` (sorted ascending), whichever way the dictionary is held.
    pub fn get_sorted(&self, keys: &[&str]) -> Result<Vec<Option<u32>>> {
        let mut out = vec![None; keys.len()];
        match &self.segments {
            Some(segments) => {
                for segment in segments {
                    segment.get_sorted(keys, &mut out)?;
                }
            }
            None => out.iter_mut().zip(keys).for_each(|(slot, key)| *slot = self.get(key)),
        }
        Ok(out)
    }

    pub fn get(&self, user_id: &str) -> Option<u32> {
        self.map.get(user_id).copied()
    }

    /// The user_id of a row id.
    pub fn key_of(&self, row_id: u32) -> Option<&str> {
        let &(offset, len) = self.by_id.get(row_id as usize)?;
        if len == u32::MAX {
            return None;
        }
        self.arena.get(offset as usize..(offset + len) as usize)
    }

    /// The row id of `user_id`, trying `hint` (usually the previous user's row id + 1) first.
    pub fn get_near(&self, user_id: &str, hint: u32) -> Option<u32> {
        if self.key_of(hint) == Some(user_id) {
            return Some(hint);
        }
        self.get(user_id)
    }

    pub fn insert(&mut self, user_id: &str, row_id: u32) {
        self.map.insert(user_id.into(), row_id);
        self.name(user_id, row_id);
    }

    /// Records `user_id` as the key of `row_id` for [`IdMap::key_of`].
    fn name(&mut self, user_id: &str, row_id: u32) {
        let at = row_id as usize;
        if self.by_id.len() <= at {
            self.by_id.resize(at + 1, (0, u32::MAX));
        }
        // Arenas past 4 GiB of keys keep only the hash map (the hint is an optimisation).
        if let Ok(offset) = u32::try_from(self.arena.len())
            && offset.checked_add(user_id.len() as u32).is_some()
        {
            self.by_id[at] = (offset, user_id.len() as u32);
            self.arena.push_str(user_id);
        }
    }

    /// Drops the user_id → row id lookup and keeps row id → user_id ([`IdMap::key_of`]), for a
    /// phase that only names rows (identity resolution: ten million keys of lookup are most of
    /// a gigabyte). [`IdMap::get`] finds nothing afterwards.
    pub fn drop_lookup(&mut self) {
        self.map = FxHashMap::default();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::store::id_dictionary::encode_segment;

    #[test]
    fn segments_load_merged_and_answer_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.ids");
        let b = dir.path().join("b.ids");
        std::fs::write(&a, encode_segment(vec![("u2", 1), ("u1", 0)]).unwrap().bytes).unwrap();
        std::fs::write(&b, encode_segment(vec![("用户3", 2)]).unwrap().bytes).unwrap();
        let map = IdMap::load(&[a, b], 3).unwrap();
        assert_eq!(map.len(), 3);
        assert_eq!(map.get("u1"), Some(0));
        assert_eq!(map.get("用户3"), Some(2));
        assert_eq!(map.get("nobody"), None);
        assert_eq!(map.key_of(2), Some("用户3"));
        assert_eq!(map.key_of(9), None);
        assert_eq!(map.get_near("u2", 1), Some(1));
        assert_eq!(map.get_near("u2", 0), Some(1), "a wrong hint falls back to the map");
        assert_eq!(map.get_near("nobody", 1), None);
        let keys = ["nobody", "u1", "u2", "用户3"];
        let loaded = map.get_sorted(&keys).unwrap();
        assert_eq!(loaded, vec![None, Some(0), Some(1), Some(2)]);
        let lazy = IdMap::on_demand(&[dir.path().join("a.ids"), dir.path().join("b.ids")]).unwrap();
        assert!(lazy.is_on_demand() && !map.is_on_demand());
        assert_eq!(lazy.get_sorted(&keys).unwrap(), loaded, "on demand as loaded");
        let names = IdMap::load_names(&[dir.path().join("a.ids"), dir.path().join("b.ids")], 3).unwrap();
        assert_eq!(names.get_sorted(&keys).unwrap(), loaded);
        assert_eq!((names.key_of(2), names.key_of(0), names.key_of(9)), (Some("用户3"), Some("u1"), None));
        assert_eq!((names.lookup("u2").unwrap(), names.lookup("nobody").unwrap()), (Some(1), None));
        assert_eq!(map.lookup("u2").unwrap(), Some(1));
    }

    #[test]
    fn a_damaged_segment_fails_the_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.ids");
        let mut bytes = encode_segment(vec![("u1", 0), ("u2", 1)]).unwrap().bytes;
        bytes[18] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(IdMap::load(&[&p], 0), Err(Error::Corrupt { .. })));
    }
}
