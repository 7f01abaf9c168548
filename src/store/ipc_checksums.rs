//! Checksums of the store's Arrow IPC files (plain copies, row-addressable copies, day times):
//! [`ChecksumWriter`] hashes a file's bytes as they are written, and [`Checksums`] verifies the
//! parts of a mapped file a reader uses, each 64 KiB chunk once per process.
//!
//! ```text
//! file:    ARROW1 | schema message | blocks ...        | EOS | footer | length | ARROW1
//!          └──────── chunks of 64 KiB (the body) ──────┘└──────── the tail ──────────┘
//! schema metadata  persona.checksums   = "xxh3-64"        (in the footer's schema and the message)
//! footer metadata  persona.xxh3.chunks = {"chunk_bytes": 65536, "body_bytes": n, "xxh3": "<16 hex digits a chunk>"}
//!                  persona.xxh3.footer = 16 hex digits: xxh3-64 of the tail, this value read as 16 zeros
//! ```
//!
//! The footer (schema, blocks, custom metadata) is verified whenever the file is mapped; the
//! chunks holding a block's metadata before it is decoded; the chunks of the arrays a reader
//! touches before it reads them ([`Checksums::ensure_array`], [`Checksums::ensure_slice`]). A
//! chunk found sound is remembered for the file (by path, size, modification time and footer
//! checksum, across mappings), so a warm process hashes nothing. Files written before checksums
//! (no marker and no keys) are read unverified; a file with one of the three and not the others
//! is corrupt, so that no single flipped bit can make a file look unchecksummed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::Array;
use arrow::buffer::Buffer;
use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use crate::error::{Error, Result};

/// The schema metadata key that says the file carries checksums (and its value).
pub const MARKER_KEY: &str = "persona.checksums";
pub const MARKER_VALUE: &str = "xxh3-64";
/// The footer metadata key of the chunks' checksums.
pub const CHUNKS_KEY: &str = "persona.xxh3.chunks";
/// The footer metadata key of the tail's checksum.
pub const FOOTER_KEY: &str = "persona.xxh3.footer";
/// The footer checksum's value while it is computed (and while it is verified).
const PLACEHOLDER: &[u8; 16] = b"0000000000000000";
/// Bytes per chunk: the unit verified on first use.
const CHUNK_BYTES: u64 = 64 * 1024;

/// The chunks' checksums as the footer holds them.
#[derive(serde::Serialize, serde::Deserialize)]
struct ChunkList {
    chunk_bytes: u64,
    /// The bytes before the tail (the file up to the end of its last block).
    body_bytes: u64,
    /// 16 hex digits per chunk.
    xxh3: String,
}

/// Passes a file's bytes to `inner`, hashing the body in chunks; from [`Self::end_body`] on it
/// holds the tail back until [`Self::write_tail`] has put the footer's checksum into it.
pub struct ChecksumWriter<W: Write> {
    inner: W,
    chunk: Xxh3,
    in_chunk: u64,
    written: u64,
    hashes: Vec<u64>,
    /// The tail, once the body is complete.
    tail: Option<Vec<u8>>,
}

impl<W: Write> ChecksumWriter<W> {
    pub fn new(inner: W) -> ChecksumWriter<W> {
        ChecksumWriter { inner, chunk: Xxh3::new(), in_chunk: 0, written: 0, hashes: Vec::new(), tail: None }
    }

    fn hash(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let take = (CHUNK_BYTES - self.in_chunk).min(bytes.len() as u64) as usize;
            self.chunk.update(&bytes[..take]);
            self.in_chunk += take as u64;
            self.written += take as u64;
            if self.in_chunk == CHUNK_BYTES {
                self.hashes.push(self.chunk.digest());
                self.chunk.reset();
                self.in_chunk = 0;
            }
            bytes = &bytes[take..];
        }
    }

    /// Ends the body: returns the metadata to put into the footer (the chunks' checksums and the
    /// footer checksum's placeholder); what is written next is the tail.
    pub fn end_body(&mut self) -> Vec<(String, String)> {
        if self.in_chunk > 0 {
            self.hashes.push(self.chunk.digest());
            self.chunk.reset();
            self.in_chunk = 0;
        }
        self.tail = Some(Vec::new());
        let list = ChunkList {
            chunk_bytes: CHUNK_BYTES,
            body_bytes: self.written,
            xxh3: self.hashes.iter().map(|h| format!("{h:016x}")).collect(),
        };
        let list = serde_json::to_string(&list).expect("a list of numbers and a string serializes");
        let placeholder = String::from_utf8_lossy(PLACEHOLDER).into_owned();
        vec![(CHUNKS_KEY.to_string(), list), (FOOTER_KEY.to_string(), placeholder)]
    }

    /// Writes the tail with its checksum in place of the placeholder.
    pub fn write_tail(&mut self) -> std::io::Result<()> {
        let mut tail = self.tail.take().unwrap_or_default();
        let at =
            footer_value_at(&tail).ok_or_else(|| std::io::Error::other("the footer has no checksum placeholder"))?;
        let hash = xxh3_64(&tail);
        tail[at..at + PLACEHOLDER.len()].copy_from_slice(format!("{hash:016x}").as_bytes());
        self.inner.write_all(&tail)
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for ChecksumWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(tail) = &mut self.tail {
            tail.extend_from_slice(buf);
            return Ok(buf.len());
        }
        let n = self.inner.write(buf)?;
        self.hash(&buf[..n]);
        Ok(n)
    }

    /// While the tail is held back, flushing waits for it (the file is then written in as many
    /// operations as without checksums).
    fn flush(&mut self) -> std::io::Result<()> {
        match self.tail {
            Some(_) => Ok(()),
            None => self.inner.flush(),
        }
    }
}

/// The position in `tail` (EOS, footer, length, magic) of the footer checksum's value, when it
/// holds the placeholder.
fn footer_value_at(tail: &[u8]) -> Option<usize> {
    let len = tail.len();
    let trailer: [u8; 10] = tail.get(len.checked_sub(10)?..)?.try_into().ok()?;
    let footer_len = arrow::ipc::reader::read_footer_length(trailer).ok()?;
    let footer = arrow::ipc::root_as_footer(tail.get((len - 10).checked_sub(footer_len)?..len - 10)?).ok()?;
    let value = footer.custom_metadata()?.iter().find(|kv| kv.key() == Some(FOOTER_KEY))?.value()?;
    let at = (value.as_ptr() as usize).checked_sub(tail.as_ptr() as usize)?;
    (value.as_bytes() == PLACEHOLDER).then_some(at)
}

/// A file's identity for the chunks found sound: path, size, modification time and footer
/// checksum.
type FileKey = (PathBuf, u64, Option<std::time::SystemTime>, u64);

/// Per file, which chunks were found sound in this process.
static SOUND: Mutex<Option<FxHashMap<FileKey, Arc<[AtomicBool]>>>> = Mutex::new(None);
/// Files remembered before those no mapping uses are forgotten.
const MAX_REMEMBERED: usize = 4096;

/// The flags of the file `key` with `chunks` chunks, shared by every mapping of it.
fn sound_flags(key: FileKey, chunks: usize) -> Arc<[AtomicBool]> {
    let mut guard = SOUND.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let map = guard.get_or_insert_with(FxHashMap::default);
    if let Some(flags) = map.get(&key).filter(|f| f.len() == chunks) {
        return Arc::clone(flags);
    }
    if map.len() >= MAX_REMEMBERED {
        map.retain(|_, flags| Arc::strong_count(flags) > 1);
    }
    let flags: Arc<[AtomicBool]> = (0..chunks).map(|_| AtomicBool::new(false)).collect();
    map.insert(key, Arc::clone(&flags));
    flags
}

/// The checksums of one mapped file, verifying its chunks on first use.
#[derive(Debug)]
pub struct Checksums {
    path: PathBuf,
    /// The mapping (kept alive here so that addresses inside it stay valid).
    mapping: Buffer,
    chunk_bytes: usize,
    body_bytes: usize,
    hashes: Vec<u64>,
    sound: Arc<[AtomicBool]>,
}

impl Checksums {
    /// The checksums of the file at `path` mapped as `mapping` whose footer (at `footer_start`)
    /// is `footer`: `None` for a file written before checksums. Verifies the tail. `remember`
    /// shares the chunks found sound with the other mappings of the file (a check does not).
    pub fn from_footer(
        path: &Path,
        mapping: &Buffer,
        footer_start: usize,
        footer: &arrow::ipc::Footer<'_>,
        marked: bool,
        remember: Option<std::fs::Metadata>,
    ) -> Result<Option<Checksums>> {
        let corrupt = |detail: &str| Error::corrupt(path, format!("its checksums are damaged: {detail}"));
        let entry = |key: &str| footer.custom_metadata().into_iter().flatten().find(|kv| kv.key() == Some(key));
        let (chunks, tail_hash) = match (marked, entry(CHUNKS_KEY), entry(FOOTER_KEY)) {
            (false, None, None) => return Ok(None),
            (_, Some(chunks), Some(tail)) => (chunks.value().unwrap_or(""), tail.value().unwrap_or("")),
            _ => return Err(corrupt("the footer lacks some of them")),
        };
        // The tail first: it vouches for the chunk list.
        let expected = parse_hex(tail_hash.as_bytes()).ok_or_else(|| corrupt("the footer checksum is not a number"))?;
        let list: ChunkList = serde_json::from_str(chunks).map_err(|e| corrupt(&e.to_string()))?;
        let body = usize::try_from(list.body_bytes).ok().filter(|&b| b <= footer_start);
        let body = body.ok_or_else(|| corrupt("the body ends beyond the footer"))?;
        let at = (tail_hash.as_ptr() as usize).wrapping_sub(mapping.as_ptr() as usize);
        if at < body || at.checked_add(PLACEHOLDER.len()).is_none_or(|end| end > mapping.len()) {
            return Err(corrupt("the footer checksum lies outside the footer"));
        }
        let mut hasher = Xxh3::new();
        hasher.update(&mapping[body..at]);
        hasher.update(PLACEHOLDER);
        hasher.update(&mapping[at + PLACEHOLDER.len()..]);
        if hasher.digest() != expected {
            return Err(Error::corrupt(path, "its footer does not match its checksum (a damaged byte)"));
        }
        let chunk_bytes = usize::try_from(list.chunk_bytes).ok().filter(|&c| c > 0);
        let chunk_bytes = chunk_bytes.ok_or_else(|| corrupt("a chunk size of 0"))?;
        let hashes: Option<Vec<u64>> = list.xxh3.as_bytes().chunks(16).map(parse_hex).collect();
        let hashes = hashes.filter(|h| h.len() == body.div_ceil(chunk_bytes));
        let hashes = hashes.ok_or_else(|| corrupt("not one checksum per chunk"))?;
        let sound = match remember {
            Some(meta) => sound_flags((path.to_path_buf(), meta.len(), meta.modified().ok(), expected), hashes.len()),
            None => (0..hashes.len()).map(|_| AtomicBool::new(false)).collect(),
        };
        Ok(Some(Checksums {
            path: path.to_path_buf(),
            mapping: mapping.clone(),
            chunk_bytes,
            body_bytes: body,
            hashes,
            sound,
        }))
    }

    /// Verifies the chunks holding bytes `start..end` of the file (those not yet found sound).
    pub fn ensure_range(&self, start: usize, end: usize) -> Result<()> {
        let end = end.min(self.body_bytes);
        if start >= end {
            return Ok(());
        }
        for chunk in start / self.chunk_bytes..=(end - 1) / self.chunk_bytes {
            if self.sound[chunk].load(Ordering::Acquire) {
                continue;
            }
            let from = chunk * self.chunk_bytes;
            let to = (from + self.chunk_bytes).min(self.body_bytes);
            if xxh3_64(&self.mapping[from..to]) != self.hashes[chunk] {
                return Err(Error::corrupt(
                    &self.path,
                    format!("bytes {from}..{to} do not match their checksum (a damaged byte)"),
                ));
            }
            self.sound[chunk].store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Verifies the whole body.
    pub fn ensure_all(&self) -> Result<()> {
        self.ensure_range(0, self.body_bytes)
    }

    /// Verifies the bytes of `slice` when they lie in the file.
    pub fn ensure_slice<T>(&self, slice: &[T]) -> Result<()> {
        self.ensure_address(slice.as_ptr() as usize, std::mem::size_of_val(slice))
    }

    fn ensure_address(&self, address: usize, len: usize) -> Result<()> {
        let base = self.mapping.as_ptr() as usize;
        match address.checked_sub(base) {
            Some(start) if start < self.mapping.len() => self.ensure_range(start, start.saturating_add(len)),
            // Not in the mapping (a dictionary decoded from the footer, an array built in memory).
            _ => Ok(()),
        }
    }

    /// Verifies every buffer of `array` (values, offsets, validity, children's) that lies in the
    /// file.
    pub fn ensure_array(&self, array: &dyn Array) -> Result<()> {
        self.ensure_data(&array.to_data())
    }

    fn ensure_data(&self, data: &arrow::array::ArrayData) -> Result<()> {
        for buffer in data.buffers() {
            self.ensure_slice(buffer.as_slice())?;
        }
        if let Some(nulls) = data.nulls() {
            self.ensure_slice(nulls.buffer().as_slice())?;
        }
        data.child_data().iter().try_for_each(|child| self.ensure_data(child))
    }
}

/// Verifies the arrays of a mapped file before use, when it carries checksums.
pub fn ensure_arrays<'a>(checks: Option<&Checksums>, arrays: impl IntoIterator<Item = &'a dyn Array>) -> Result<()> {
    match checks {
        None => Ok(()),
        Some(checks) => arrays.into_iter().try_for_each(|a| checks.ensure_array(a)),
    }
}

/// 16 hex digits as a number.
fn parse_hex(digits: &[u8]) -> Option<u64> {
    if digits.len() != 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_where_the_writes_do_not() {
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut writer = ChecksumWriter::new(Vec::new());
        for piece in bytes.chunks(9_999) {
            writer.write_all(piece).unwrap();
        }
        let metadata = writer.end_body();
        let list: ChunkList = serde_json::from_str(&metadata[0].1).unwrap();
        assert_eq!(list.body_bytes, 200_000);
        let expected: String =
            bytes.chunks(CHUNK_BYTES as usize).map(|c| format!("{:016x}", xxh3_64(c))).collect::<Vec<_>>().concat();
        assert_eq!(list.xxh3, expected);
        assert_eq!(writer.into_inner(), bytes);
    }

    /// A copy as the store writes it: two blocks of `rows` rows, a footer with metadata.
    fn written(path: &Path, rows: u32) -> Vec<u8> {
        use arrow::array::{RecordBatch, StringArray, UInt32Array};
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::UInt32, false),
            Field::new("s", DataType::Binary, true),
        ]));
        let mut writer = crate::store::ipc::IpcFileWriter::create(path, Arc::clone(&schema), rows as usize).unwrap();
        for part in 0..2u32 {
            let n = UInt32Array::from_iter_values(part * rows..(part + 1) * rows);
            let s = StringArray::from_iter((0..rows).map(|i| (i % 3 != 0).then(|| format!("v{i}"))));
            let s = arrow::compute::cast(&s, &DataType::Binary).unwrap();
            writer.push(RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(n), s]).unwrap()).unwrap();
        }
        writer.finish(vec![("persona.test".into(), "[\"a\", \"b\"]".into())]).unwrap();
        std::fs::read(path).unwrap()
    }

    #[test]
    fn any_flipped_bit_fails_the_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.arrow");
        let bytes = written(&path, 40);
        assert!(crate::store::ipc::MappedIpc::verify(&path).unwrap());
        let damaged = dir.path().join("d.arrow");
        for offset in 0..bytes.len() {
            let mut copy = bytes.clone();
            copy[offset] ^= 1 << (offset % 8);
            std::fs::write(&damaged, &copy).unwrap();
            match crate::store::ipc::MappedIpc::verify(&damaged) {
                Err(Error::Corrupt { path, .. }) => assert_eq!(path, damaged),
                other => panic!("a flip at byte {offset} of {}: {other:?}", bytes.len()),
            }
        }
    }

    #[test]
    fn a_reader_verifies_the_arrays_it_uses_and_remembers_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.arrow");
        // Blocks larger than a chunk: the second block's values lie in chunks of their own.
        let bytes = written(&path, 100_000);
        let mapped = crate::store::ipc::MappedIpc::open(&path, &["n", "s"]).unwrap();
        let checks = mapped.checks.as_ref().expect("a new file has checksums");
        let column = mapped.batches[1].column(0);
        checks.ensure_array(column.as_ref()).unwrap();
        // A flipped value in the file: the array over the damaged mapping fails.
        let values = mapped.batches[1].column(0).to_data().buffers()[0].as_ptr() as usize;
        // Midway through the values: chunks away from the block's metadata.
        let at = values - checks.mapping.as_ptr() as usize + 200_000;
        let mut copy = bytes.clone();
        copy[at] ^= 4;
        let damaged = dir.path().join("d.arrow");
        std::fs::write(&damaged, &copy).unwrap();
        let mapped = crate::store::ipc::MappedIpc::open(&damaged, &["n", "s"]).unwrap();
        let checks = mapped.checks.as_ref().unwrap();
        checks.ensure_array(mapped.batches[0].column(0).as_ref()).unwrap();
        let err = checks.ensure_array(mapped.batches[1].column(0).as_ref()).unwrap_err();
        assert!(matches!(&err, Error::Corrupt { path, .. } if *path == damaged), "{err}");
    }

    #[test]
    fn a_file_written_before_checksums_reads_unverified() {
        use arrow::array::{RecordBatch, UInt32Array};
        use arrow::datatypes::{DataType, Field, Schema};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.arrow");
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::UInt32, false)]));
        let mut writer =
            arrow::ipc::writer::FileWriter::try_new(std::fs::File::create(&path).unwrap(), &schema).unwrap();
        writer.write(&RecordBatch::try_new(schema, vec![Arc::new(UInt32Array::from(vec![1, 2]))]).unwrap()).unwrap();
        writer.finish().unwrap();
        let mapped = crate::store::ipc::MappedIpc::open(&path, &["n"]).unwrap();
        assert!(mapped.checks.is_none());
        assert_eq!(mapped.batches[0].num_rows(), 2);
        assert!(!crate::store::ipc::MappedIpc::verify(&path).unwrap());
    }

    #[test]
    fn hex_is_sixteen_digits() {
        assert_eq!(parse_hex(b"00000000000000ff"), Some(255));
        assert_eq!(parse_hex(b"+0000000000000ff"), None);
        assert_eq!(parse_hex(b"ff"), None);
    }
}
