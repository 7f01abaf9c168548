//! The id dictionary on disk: `user_id` → dense `u32` row id, as immutable segment files (one per
//! import that adds users; together they hold every user once). This module owns the format: the
//! encoding and writing of a segment, reading one whole, and point lookups ([`SegmentReader`]).
//! Which ids users get is decided at import time (the importer keeps the whole dictionary in memory).
//!
//! Segment file: `PRSNIDS2`, entry count (u64 LE), then entries sorted by key — key length (u16 LE),
//! key bytes, row id (u32 LE) — then a block index (for every block of 1,024 entries: its first
//! key (u16 length + bytes), its offset (u64) and the CRC-32 of its bytes), the block count (u32),
//! the index's offset (u64), the index's CRC-32, and a CRC-32 (u32 LE) of everything before it.
//! Loading is one sequential read ([`for_each_entry`]); a point lookup reads the index and one
//! block ([`SegmentReader`]). Segments of the first format (`PRSNIDS1`: no block index) still load.

use std::path::Path;

use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::store::manifest::IdSegment;
use crate::store::{StoreWriter, io, layout};

const MAGIC_V1: &[u8; 8] = b"PRSNIDS1";
const MAGIC: &[u8; 8] = b"PRSNIDS2";
/// Entries per block of the block index.
const BLOCK_ENTRIES: usize = 1024;
/// Block count, index offset, index CRC, file CRC.
const TRAILER_LEN: usize = 4 + 8 + 4 + 4;

/// A segment encoded in memory, to be written when its import commits.
#[derive(Debug)]
pub struct EncodedSegment {
    pub entries: u64,
    pub bytes: Vec<u8>,
}

impl EncodedSegment {
    /// Writes the segment as a new file of the version `writer` prepares; returns its manifest
    /// entry.
    pub fn write(&self, writer: &StoreWriter) -> Result<IdSegment> {
        let (relative, abs) = writer.new_file(layout::new_ids_file(writer.next_version()))?;
        io::write_new(&abs, &self.bytes)?;
        Ok(IdSegment { path: relative, entries: self.entries, bytes: self.bytes.len() as u64 })
    }
}

/// Encodes a segment from entries (sorted here).
pub fn encode_segment(mut entries: Vec<(&str, u32)>) -> Result<EncodedSegment> {
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let size: usize = entries.iter().map(|(k, _)| k.len() + 6).sum();
    let mut out = Vec::with_capacity(size + 24 + size / BLOCK_ENTRIES * 2);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    let mut blocks: Vec<(&str, u64)> = Vec::with_capacity(entries.len() / BLOCK_ENTRIES + 1);
    for (i, (key, id)) in entries.iter().enumerate() {
        let len = u16::try_from(key.len()).map_err(|_| {
            Error::Usage(format!("user_id '{}…' is longer than 65535 bytes", key.chars().take(32).collect::<String>()))
        })?;
        if i % BLOCK_ENTRIES == 0 {
            blocks.push((key, out.len() as u64));
        }
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    let index_offset = out.len() as u64;
    for (i, (key, offset)) in blocks.iter().enumerate() {
        let end = blocks.get(i + 1).map_or(index_offset, |b| b.1);
        let crc = crc32fast::hash(&out[*offset as usize..end as usize]);
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
    }
    out.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
    let index_crc = crc32fast::hash(&out[index_offset as usize..]);
    out.extend_from_slice(&index_offset.to_le_bytes());
    out.extend_from_slice(&index_crc.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(EncodedSegment { entries: entries.len() as u64, bytes: out })
}

/// Reads the segment at `path` whole and hands each entry (key, row id) to `f`, in key order.
pub fn for_each_entry(path: &Path, f: impl FnMut(&str, u32)) -> Result<()> {
    let bytes = io::read(path)?;
    for_each_entry_of(&bytes, path, f)
}

/// The segment at `path` re-encoded without the entries whose row id is in `removed`; `None`
/// when it has none of them (the segment is then kept as it is). The new segment holds no byte
/// of a removed entry's key.
pub fn segment_without(path: &Path, removed: &roaring::RoaringBitmap) -> Result<Option<EncodedSegment>> {
    let bytes = io::read(path)?;
    let mut kept: Vec<(&str, u32)> = Vec::new();
    let mut dropped = 0u64;
    for_each_entry_of(&bytes, path, |key, id| {
        if removed.contains(id) {
            dropped += 1;
        } else {
            // The keys borrow from `bytes`, which outlives `kept`.
            kept.push((key, id));
        }
    })?;
    if dropped == 0 {
        return Ok(None);
    }
    encode_segment(kept).map(Some)
}

/// Reads one entry at `pos` of `bytes`: its key, row id and the position after it.
fn entry_at<'a>(bytes: &'a [u8], pos: usize, path: &Path) -> Result<(&'a str, u32, usize)> {
    let corrupt = |detail: &str| Error::corrupt(path, detail.to_string());
    let len = bytes
        .get(pos..pos + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        .ok_or_else(|| corrupt("entry past the end"))?;
    let key = bytes.get(pos + 2..pos + 2 + len).ok_or_else(|| corrupt("entry past the end"))?;
    let id = bytes
        .get(pos + 2 + len..pos + 6 + len)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| corrupt("entry past the end"))?;
    let key = std::str::from_utf8(key).map_err(|_| corrupt("a key is not UTF-8"))?;
    Ok((key, id, pos + 6 + len))
}

/// Walks a segment's entries after verifying its magic and checksum.
fn for_each_entry_of<'b>(bytes: &'b [u8], path: &Path, mut f: impl FnMut(&'b str, u32)) -> Result<()> {
    let corrupt = |detail: &str| Error::corrupt(path, detail.to_string());
    let v1 = bytes.get(..8) == Some(MAGIC_V1.as_slice());
    if bytes.len() < 20 || !(v1 || &bytes[..8] == MAGIC) || (!v1 && bytes.len() < 16 + TRAILER_LEN) {
        return Err(corrupt("not an id-dictionary segment (bad magic or truncated)"));
    }
    let body = &bytes[..bytes.len() - 4];
    let stored = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().expect("4 bytes by slicing"));
    if crc32fast::hash(body) != stored {
        return Err(corrupt("checksum mismatch; the file is truncated or damaged"));
    }
    let entries_end = if v1 {
        body.len()
    } else {
        let at = bytes.len() - TRAILER_LEN + 4;
        usize::try_from(u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes by slicing")))
            .map_err(|_| corrupt("index offset out of range"))?
    };
    let count = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes by slicing"));
    let mut pos = 16;
    for _ in 0..count {
        let (key, id, next) = entry_at(&body[..entries_end.min(body.len())], pos, path)?;
        f(key, id);
        pos = next;
    }
    if pos != entries_end {
        return Err(corrupt("trailing bytes after the last entry"));
    }
    Ok(())
}

/// Point lookups in one segment without loading it: the block index is read when opened, one
/// block (verified by its checksum) per lookup.
#[derive(Debug)]
pub struct SegmentReader {
    path: std::path::PathBuf,
    file: std::fs::File,
    /// First key of each block and the block's byte range and CRC.
    blocks: Vec<(String, u64, u64, u32)>,
    /// A first-format segment has no index: it is loaded whole instead.
    loaded: Option<FxHashMap<Box<str>, u32>>,
}

impl SegmentReader {
    pub fn open(path: &Path) -> Result<SegmentReader> {
        use std::os::unix::fs::FileExt;
        let corrupt = |detail: &str| Error::corrupt(path, detail.to_string());
        let file =
            std::fs::File::open(path).map_err(|e| Error::Io { op: "open", path: path.to_path_buf(), source: e })?;
        let read_at = |offset: u64, len: usize| -> Result<Vec<u8>> {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, offset).map_err(|e| Error::Io {
                op: "read",
                path: path.to_path_buf(),
                source: e,
            })?;
            Ok(buf)
        };
        let len = file.metadata().map_err(|e| Error::Io { op: "stat", path: path.to_path_buf(), source: e })?.len();
        if len < 20 {
            return Err(corrupt("not an id-dictionary segment (truncated)"));
        }
        let magic = read_at(0, 8)?;
        if magic == MAGIC_V1 {
            let mut loaded = FxHashMap::default();
            for_each_entry(path, |key, id| {
                loaded.insert(key.into(), id);
            })?;
            return Ok(SegmentReader { path: path.to_path_buf(), file, blocks: Vec::new(), loaded: Some(loaded) });
        }
        if magic != MAGIC || len < (16 + TRAILER_LEN) as u64 {
            return Err(corrupt("not an id-dictionary segment (bad magic or truncated)"));
        }
        let trailer = read_at(len - TRAILER_LEN as u64, TRAILER_LEN)?;
        let block_count = u32::from_le_bytes(trailer[0..4].try_into().expect("4 bytes")) as usize;
        let index_offset = u64::from_le_bytes(trailer[4..12].try_into().expect("8 bytes"));
        let index_crc = u32::from_le_bytes(trailer[12..16].try_into().expect("4 bytes"));
        let index_end = len - TRAILER_LEN as u64 + 4;
        if index_offset < 16 || index_offset > index_end {
            return Err(corrupt("the block index is out of range"));
        }
        let index = read_at(index_offset, (index_end - index_offset) as usize)?;
        if crc32fast::hash(&index) != index_crc {
            return Err(corrupt("the block index fails its checksum"));
        }
        let mut blocks = Vec::with_capacity(block_count);
        let mut pos = 0usize;
        for _ in 0..block_count {
            let klen = index
                .get(pos..pos + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
                .ok_or_else(|| corrupt("block index entry past the end"))?;
            let rest =
                index.get(pos + 2..pos + 2 + klen + 12).ok_or_else(|| corrupt("block index entry past the end"))?;
            let key = std::str::from_utf8(&rest[..klen]).map_err(|_| corrupt("a key is not UTF-8"))?.to_string();
            let offset = u64::from_le_bytes(rest[klen..klen + 8].try_into().expect("8 bytes"));
            let crc = u32::from_le_bytes(rest[klen + 8..klen + 12].try_into().expect("4 bytes"));
            blocks.push((key, offset, 0, crc));
            pos += 2 + klen + 12;
        }
        for i in 0..blocks.len() {
            let end = blocks.get(i + 1).map_or(index_offset, |b| b.1);
            if end < blocks[i].1 {
                return Err(corrupt("block offsets are not increasing"));
            }
            blocks[i].2 = end;
        }
        Ok(SegmentReader { path: path.to_path_buf(), file, blocks, loaded: None })
    }

    /// Verifies the checksum of the whole file (a streaming read; nothing is kept), so that a
    /// reader used for many lookups finds damage anywhere, as a whole load would, not only in
    /// the blocks it reads.
    pub fn verify_file(&self) -> Result<()> {
        use std::io::Read;
        if self.loaded.is_some() {
            return Ok(()); // verified as it was loaded
        }
        let io_error = |e| Error::Io { op: "read", path: self.path.clone(), source: e };
        let len = self.file.metadata().map_err(io_error)?.len();
        let mut reader = std::io::BufReader::with_capacity(1 << 20, &self.file);
        std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(0)).map_err(io_error)?;
        let mut body = (&mut reader).take(len - 4);
        let mut crc = crc32fast::Hasher::new();
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = body.read(&mut chunk).map_err(io_error)?;
            if n == 0 {
                break;
            }
            crc.update(&chunk[..n]);
        }
        let mut stored = [0u8; 4];
        reader.read_exact(&mut stored).map_err(io_error)?;
        if crc.finalize() != u32::from_le_bytes(stored) {
            return Err(Error::corrupt(&self.path, "checksum mismatch; the file is truncated or damaged"));
        }
        Ok(())
    }

    /// Reads and verifies block `i`.
    fn block(&self, i: usize) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let (_, start, end, crc) = &self.blocks[i];
        let mut block = vec![0u8; (end - start) as usize];
        self.file.read_exact_at(&mut block, *start).map_err(|e| Error::Io {
            op: "read",
            path: self.path.clone(),
            source: e,
        })?;
        if crc32fast::hash(&block) != *crc {
            return Err(Error::corrupt(&self.path, "a dictionary block fails its checksum"));
        }
        Ok(block)
    }

    /// The row ids of many user_ids at once: `keys` sorted ascending; `out[i]` is set for each key
    /// this segment has (others are left as they are). Each block is read at most once, and the
    /// keys are merged with its entries, so a million keys cost one pass over the segment rather
    /// than a million block reads.
    pub fn get_sorted(&self, keys: &[&str], out: &mut [Option<u32>]) -> Result<()> {
        if let Some(map) = &self.loaded {
            for (key, slot) in keys.iter().zip(out.iter_mut()) {
                if let Some(&id) = map.get(*key) {
                    *slot = Some(id);
                }
            }
            return Ok(());
        }
        let mut k = 0usize;
        while k < keys.len() {
            // The block that can hold keys[k]: the last whose first key is <= it.
            let i = self.blocks.partition_point(|(first, ..)| first.as_str() <= keys[k]);
            let Some(i) = i.checked_sub(1) else {
                k += 1;
                continue;
            };
            let next_first = self.blocks.get(i + 1).map(|(first, ..)| first.as_str());
            let block = self.block(i)?;
            let mut entry = if block.is_empty() { None } else { Some(entry_at(&block, 0, &self.path)?) };
            // Every key below the next block's first key belongs to this block (or nowhere).
            while k < keys.len() && next_first.is_none_or(|n| keys[k] < n) {
                loop {
                    match entry {
                        Some((key, _, next)) if key < keys[k] => {
                            entry = if next < block.len() { Some(entry_at(&block, next, &self.path)?) } else { None };
                        }
                        Some((key, id, _)) => {
                            if key == keys[k] {
                                out[k] = Some(id);
                            }
                            break;
                        }
                        None => break,
                    }
                }
                k += 1;
            }
        }
        Ok(())
    }

    /// The row id of `user_id`, if this segment has it.
    pub fn get(&self, user_id: &str) -> Result<Option<u32>> {
        if let Some(map) = &self.loaded {
            return Ok(map.get(user_id).copied());
        }
        // The last block whose first key is <= user_id.
        let i = self.blocks.partition_point(|(first, ..)| first.as_str() <= user_id);
        let Some(i) = i.checked_sub(1) else { return Ok(None) };
        let block = self.block(i)?;
        let mut pos = 0;
        while pos < block.len() {
            let (key, id, next) = entry_at(&block, pos, &self.path)?;
            match key.cmp(user_id) {
                std::cmp::Ordering::Equal => return Ok(Some(id)),
                std::cmp::Ordering::Greater => return Ok(None),
                std::cmp::Ordering::Less => pos = next,
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry of the segment at `path`, in file order.
    fn entries(path: &Path) -> Result<Vec<(String, u32)>> {
        let mut out = Vec::new();
        for_each_entry(path, |key, id| out.push((key.to_string(), id)))?;
        Ok(out)
    }

    #[test]
    fn segments_read_back_sorted_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.ids");
        let segment = encode_segment(vec![("u2", 1), ("用户3", 2), ("u1", 0)]).unwrap();
        assert_eq!(segment.entries, 3);
        std::fs::write(&p, &segment.bytes).unwrap();
        assert_eq!(entries(&p).unwrap(), vec![("u1".into(), 0), ("u2".into(), 1), ("用户3".into(), 2)]);
    }

    /// Before the fix, the error for an over-long user_id cut it at byte 32, inside a character
    /// of a Chinese id, and panicked.
    #[test]
    fn an_over_long_multi_byte_user_id_is_an_error_not_a_panic() {
        let key = "用".repeat(30_000);
        let err = encode_segment(vec![(key.as_str(), 0)]).unwrap_err();
        assert!(err.to_string().contains("longer than 65535 bytes"), "{err}");
    }

    #[test]
    fn many_keys_are_found_in_one_pass_as_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.ids");
        let owned: Vec<String> = (0..5000u32).map(|i| format!("u{}", i * 3)).collect();
        let entries: Vec<(&str, u32)> = owned.iter().enumerate().map(|(i, k)| (k.as_str(), i as u32)).collect();
        std::fs::write(&p, encode_segment(entries).unwrap().bytes).unwrap();
        let reader = SegmentReader::open(&p).unwrap();
        let mut wanted: Vec<String> = (0..9000u32).map(|i| format!("u{}", i * 2)).collect();
        wanted.push(String::new());
        wanted.push("zzz".into());
        wanted.sort();
        let keys: Vec<&str> = wanted.iter().map(String::as_str).collect();
        let mut out = vec![None; keys.len()];
        reader.get_sorted(&keys, &mut out).unwrap();
        for (key, got) in keys.iter().zip(&out) {
            assert_eq!(*got, reader.get(key).unwrap(), "{key}");
        }
        assert_eq!(out.iter().filter(|o| o.is_some()).count(), 2500, "the multiples of 6 below 15000");
    }

    #[test]
    fn a_segment_without_some_row_ids_keeps_the_others_and_no_byte_of_the_removed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.ids");
        std::fs::write(&p, encode_segment(vec![("alice", 0), ("bob-unique", 1), ("carol", 2)]).unwrap().bytes).unwrap();
        let untouched = segment_without(&p, &roaring::RoaringBitmap::from_iter([7u32])).unwrap();
        assert!(untouched.is_none(), "no entry removed: the segment is kept");
        let without = segment_without(&p, &roaring::RoaringBitmap::from_iter([1u32])).unwrap().unwrap();
        assert_eq!(without.entries, 2);
        assert!(!without.bytes.windows(10).any(|w| w == b"bob-unique"));
        std::fs::write(&p, &without.bytes).unwrap();
        assert_eq!(entries(&p).unwrap(), vec![("alice".into(), 0), ("carol".into(), 2)]);
        assert_eq!(SegmentReader::open(&p).unwrap().get("bob-unique").unwrap(), None);
    }

    #[test]
    fn damaged_segment_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.ids");
        let good = encode_segment(vec![("u1", 0), ("u2", 1)]).unwrap().bytes;
        for cut in 0..good.len() {
            std::fs::write(&p, &good[..cut]).unwrap();
            assert!(matches!(entries(&p), Err(Error::Corrupt { .. })), "cut {cut}");
        }
        let mut flipped = good.clone();
        flipped[18] ^= 1;
        std::fs::write(&p, &flipped).unwrap();
        assert!(matches!(entries(&p), Err(Error::Corrupt { .. })));
        // A point lookup checks the block it reads.
        let reader = SegmentReader::open(&p).unwrap();
        assert!(matches!(reader.get("u1"), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn point_lookups_find_every_key_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.ids");
        let keys: Vec<String> = (0..5000).map(|i| format!("u{}", i * 3)).collect();
        let entries_in: Vec<(&str, u32)> = keys.iter().enumerate().map(|(i, k)| (k.as_str(), i as u32)).collect();
        std::fs::write(&p, encode_segment(entries_in).unwrap().bytes).unwrap();
        let reader = SegmentReader::open(&p).unwrap();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(reader.get(k).unwrap(), Some(i as u32), "{k}");
        }
        for missing in ["u1", "u14999", "", "a", "zzz", "u2999 "] {
            assert_eq!(reader.get(missing).unwrap(), None, "{missing}");
        }
        assert_eq!(entries(&p).unwrap().len(), 5000);
    }

    #[test]
    fn first_format_segments_still_load_and_answer() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.ids");
        let mut old = Vec::new();
        old.extend_from_slice(MAGIC_V1);
        old.extend_from_slice(&1u64.to_le_bytes());
        old.extend_from_slice(&2u16.to_le_bytes());
        old.extend_from_slice(b"u7");
        old.extend_from_slice(&7u32.to_le_bytes());
        let crc = crc32fast::hash(&old);
        old.extend_from_slice(&crc.to_le_bytes());
        std::fs::write(&p, &old).unwrap();
        assert_eq!(entries(&p).unwrap(), vec![("u7".into(), 7)]);
        assert_eq!(SegmentReader::open(&p).unwrap().get("u7").unwrap(), Some(7));
    }
}
