//! The on-disk container of an index version: bitmaps in roaring's portable serialization, each
//! with a CRC-32, followed by a directory and a footer. Opening reads only the footer and the
//! directory; a bitmap is read (and verified) when first asked for.
//!
//! ```text
//! "PRSNIDX1"
//! bitmap bytes ...                                  (portable roaring, one after another)
//! directory: count u32, then per entry:
//!     kind u8, name_len u16, name, key_len u16, key, offset u64, len u32, crc32 u32
//! footer: directory offset u64, directory len u32, directory crc32 u32, "PRSNIDX1"
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use roaring::RoaringBitmap;

use crate::error::{Error, IoContext, Result};

const MAGIC: &[u8; 8] = b"PRSNIDX1";
const FOOTER_LEN: u64 = 8 + 4 + 4 + 8;

/// What a bitmap indexes. The numbers are part of the file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BitmapKind {
    /// Users carrying a tag; name = tag, key empty.
    Tag = 1,
    /// Users whose column `name` has the value `key` (text form).
    Value = 2,
    /// Users whose column `name` is NULL.
    Null = 3,
    /// Users with a purchase on a day; name empty, key = day number. Written by the first stores;
    /// superseded by `ActivityDay` stream "purchases", dropped at the next commit.
    PurchaseDay = 4,
    /// Bit `key` of the bit-sliced range index of column `name`: users whose value minus the
    /// column's base has that bit set.
    RangeBit = 5,
    /// The base of column `name`'s range index, as the key (the bitmap is empty).
    RangeBase = 6,
    /// Marks column `name` as value-indexed (the bitmap is empty).
    ValueColumn = 7,
    /// Users with activity in stream `name` (e.g. `purchases`, `purchases.channel_id=wechat`,
    /// `purchases.category=skincare`, `events.event_type=cart`) on day `key` (days since 1970-01-01, UTC).
    ActivityDay = 8,
    /// The union of a stream's days in one calendar month; key = the month's first day number.
    ActivityMonth = 9,
    /// Marks stream family `name` (`purchases`, `purchases.channel_id`, ...) as complete: every
    /// row of the facts is in its day and month bitmaps (the bitmap is empty).
    StreamFamily = 10,
    /// Marks tag `name` as having some user with more than one user_tags row of it (the bitmap
    /// is empty).
    TagRepeated = 11,
    /// Marks the index as knowing every tag's repeats: a tag without `TagRepeated` has at most
    /// one row per user (name and key empty, the bitmap is empty). Indexes written before this
    /// existed lack it and know nothing of repeats.
    TagRowsChecked = 12,
}

impl BitmapKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => BitmapKind::Tag,
            2 => BitmapKind::Value,
            3 => BitmapKind::Null,
            4 => BitmapKind::PurchaseDay,
            5 => BitmapKind::RangeBit,
            6 => BitmapKind::RangeBase,
            7 => BitmapKind::ValueColumn,
            8 => BitmapKind::ActivityDay,
            9 => BitmapKind::ActivityMonth,
            10 => BitmapKind::StreamFamily,
            11 => BitmapKind::TagRepeated,
            12 => BitmapKind::TagRowsChecked,
            _ => return None,
        })
    }
}

/// The address of one bitmap.
pub type BitmapKey = (BitmapKind, String, String);

/// Where a bitmap's bytes are in the file.
#[derive(Debug, Clone, Copy)]
pub struct Extent {
    pub offset: u64,
    pub len: u32,
    pub crc: u32,
}

/// Writes an index file entry by entry (bitmaps are never all in memory at once).
pub struct IndexWriter {
    out: BufWriter<crate::store::io::NewFile>,
    path: PathBuf,
    offset: u64,
    directory: Vec<u8>,
    count: u32,
    buf: Vec<u8>,
}

impl IndexWriter {
    pub fn create(path: &Path) -> Result<IndexWriter> {
        let file = crate::store::io::create(path)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(MAGIC).io_context("write", path)?;
        Ok(IndexWriter {
            out,
            path: path.to_path_buf(),
            offset: MAGIC.len() as u64,
            directory: Vec::new(),
            count: 0,
            buf: Vec::new(),
        })
    }

    /// Adds a bitmap.
    pub fn add(&mut self, key: &BitmapKey, bitmap: &RoaringBitmap) -> Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        bitmap.serialize_into(&mut buf).io_context("serialize a bitmap for", &self.path)?;
        let crc = crc32fast::hash(&buf);
        self.add_raw(key, &buf, crc)?;
        self.buf = buf;
        Ok(())
    }

    /// Adds an already serialized bitmap (copied unchanged from the previous version).
    pub fn add_raw(&mut self, (kind, name, key): &BitmapKey, bytes: &[u8], crc: u32) -> Result<()> {
        self.out.write_all(bytes).io_context("write", &self.path)?;
        self.directory.push(*kind as u8);
        push_str(&mut self.directory, name, &self.path)?;
        push_str(&mut self.directory, key, &self.path)?;
        self.directory.extend_from_slice(&self.offset.to_le_bytes());
        self.directory.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.directory.extend_from_slice(&crc.to_le_bytes());
        self.offset += bytes.len() as u64;
        self.count += 1;
        Ok(())
    }

    /// Writes the directory and footer, fsyncs; returns the file size.
    pub fn finish(mut self) -> Result<u64> {
        let path = self.path.clone();
        let mut directory = self.count.to_le_bytes().to_vec();
        directory.extend_from_slice(&self.directory);
        self.out.write_all(&directory).io_context("write", &path)?;
        self.out.write_all(&self.offset.to_le_bytes()).io_context("write", &path)?;
        self.out.write_all(&(directory.len() as u32).to_le_bytes()).io_context("write", &path)?;
        self.out.write_all(&crc32fast::hash(&directory).to_le_bytes()).io_context("write", &path)?;
        self.out.write_all(MAGIC).io_context("write", &path)?;
        let mut file =
            self.out.into_inner().map_err(|e| Error::Io { op: "write", path: path.clone(), source: e.into_error() })?;
        file.sync_all().io_context("fsync", &path)?;
        Ok(self.offset + directory.len() as u64 + FOOTER_LEN)
    }
}

/// Writes a whole index file from bitmaps in memory.
pub fn write_index(path: &Path, bitmaps: &BTreeMap<BitmapKey, RoaringBitmap>) -> Result<u64> {
    let mut w = IndexWriter::create(path)?;
    for (k, bm) in bitmaps {
        w.add(k, bm)?;
    }
    w.finish()
}

fn push_str(out: &mut Vec<u8>, s: &str, path: &Path) -> Result<()> {
    let len = u16::try_from(s.len())
        .map_err(|_| Error::Internal(format!("index key longer than 64 KiB in {}", path.display())))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// An open index file: its directory in memory, bitmaps read on demand.
#[derive(Debug)]
pub struct IndexFile {
    path: PathBuf,
    file: File,
    pub directory: BTreeMap<BitmapKey, Extent>,
}

/// Verifies a whole index file: its directory checksum, then every bitmap's checksum and encoding
/// (what `persona check` asks of the index).
pub fn verify_file(path: &Path) -> Result<()> {
    let file = IndexFile::open(path)?;
    for extent in file.directory.values() {
        file.read(*extent)?;
    }
    Ok(())
}

impl IndexFile {
    pub fn open(path: &Path) -> Result<IndexFile> {
        let corrupt = |d: &str| Error::corrupt(path, d.to_string());
        let file = File::open(path).io_context("open", path)?;
        let size = file.metadata().io_context("stat", path)?.len();
        if size < MAGIC.len() as u64 + FOOTER_LEN {
            return Err(corrupt("too short to be an index file (truncated?)"));
        }
        let mut footer = [0u8; FOOTER_LEN as usize];
        file.read_exact_at(&mut footer, size - FOOTER_LEN).io_context("read", path)?;
        if &footer[16..24] != MAGIC {
            return Err(corrupt("bad footer magic (truncated or not an index file)"));
        }
        let dir_offset = u64::from_le_bytes(footer[0..8].try_into().expect("8 bytes"));
        let dir_len = u32::from_le_bytes(footer[8..12].try_into().expect("4 bytes")) as u64;
        let dir_crc = u32::from_le_bytes(footer[12..16].try_into().expect("4 bytes"));
        if dir_offset.checked_add(dir_len) != Some(size - FOOTER_LEN) {
            return Err(corrupt("the directory does not end where the footer begins"));
        }
        let mut dir = vec![0u8; dir_len as usize];
        file.read_exact_at(&mut dir, dir_offset).io_context("read", path)?;
        if crc32fast::hash(&dir) != dir_crc {
            return Err(corrupt("directory checksum mismatch"));
        }
        let directory = parse_directory(&dir, dir_offset).ok_or_else(|| corrupt("malformed directory"))?;
        Ok(IndexFile { path: path.to_path_buf(), file, directory })
    }

    /// Reads and verifies one bitmap.
    pub fn read(&self, extent: Extent) -> Result<RoaringBitmap> {
        let buf = self.read_raw(extent)?;
        RoaringBitmap::deserialize_from(&buf[..])
            .map_err(|e| Error::corrupt(&self.path, format!("bitmap at offset {}: {e}", extent.offset)))
    }

    /// The verified serialized bytes of a bitmap (to copy it unchanged into a new version).
    pub fn read_raw(&self, extent: Extent) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; extent.len as usize];
        self.file.read_exact_at(&mut buf, extent.offset).io_context("read", &self.path)?;
        if crc32fast::hash(&buf) != extent.crc {
            return Err(Error::corrupt(&self.path, format!("bitmap at offset {} fails its checksum", extent.offset)));
        }
        Ok(buf)
    }
}

fn parse_directory(dir: &[u8], data_end: u64) -> Option<BTreeMap<BitmapKey, Extent>> {
    let mut pos = 0usize;
    let take = |pos: &mut usize, n: usize| -> Option<&[u8]> {
        let s = dir.get(*pos..*pos + n)?;
        *pos += n;
        Some(s)
    };
    let count = u32::from_le_bytes(take(&mut pos, 4)?.try_into().ok()?);
    let mut out = BTreeMap::new();
    for _ in 0..count {
        let kind = BitmapKind::from_u8(take(&mut pos, 1)?[0])?;
        let nlen = u16::from_le_bytes(take(&mut pos, 2)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(take(&mut pos, nlen)?).ok()?.to_string();
        let klen = u16::from_le_bytes(take(&mut pos, 2)?.try_into().ok()?) as usize;
        let key = std::str::from_utf8(take(&mut pos, klen)?).ok()?.to_string();
        let offset = u64::from_le_bytes(take(&mut pos, 8)?.try_into().ok()?);
        let len = u32::from_le_bytes(take(&mut pos, 4)?.try_into().ok()?);
        let crc = u32::from_le_bytes(take(&mut pos, 4)?.try_into().ok()?);
        if offset.checked_add(u64::from(len))? > data_end {
            return None;
        }
        out.insert((kind, name, key), Extent { offset, len, crc });
    }
    (pos == dir.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.idx");
        let mut maps = BTreeMap::new();
        maps.insert((BitmapKind::Tag, "A".to_string(), String::new()), RoaringBitmap::from_iter([1u32, 5, 9]));
        maps.insert((BitmapKind::Value, "tier".to_string(), "gold".to_string()), RoaringBitmap::from_iter(0u32..1000));
        write_index(&path, &maps).unwrap();
        let f = IndexFile::open(&path).unwrap();
        for (k, bm) in &maps {
            assert_eq!(&f.read(f.directory[k]).unwrap(), bm);
        }
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(matches!(IndexFile::open(&path), Err(Error::Corrupt { .. })), "cut {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[10] ^= 0xff;
        std::fs::write(&path, &flipped).unwrap();
        let f = IndexFile::open(&path).unwrap();
        let k = (BitmapKind::Tag, "A".to_string(), String::new());
        assert!(matches!(f.read(f.directory[&k]), Err(Error::Corrupt { .. })));
    }
}
