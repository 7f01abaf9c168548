//! Arrow IPC files of the store (the users files' row-addressable copies, the purchases files'
//! plain copies, the events files' day times): [`IpcFileWriter`] writes one with the import's
//! small batches coalesced and its checksums ([`crate::store::ipc_checksums`]), and [`MappedIpc`]
//! maps one into memory and decodes its batches in place. Mapping is sound because committed
//! store files are never written again (a new version writes new files).

use std::fs::File;
use std::io::BufWriter;

use crate::store::io::NewFile;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::{FileDecoder, read_footer_length};
use arrow::ipc::writer::FileWriter;

use crate::error::{Error, IoContext, Result};
use crate::store::ipc_checksums::{ChecksumWriter, Checksums, MARKER_KEY, MARKER_VALUE};

/// Writes an Arrow IPC file, coalescing the batches pushed into record batches of at least
/// `batch_rows` rows (the last one smaller).
pub struct IpcFileWriter {
    path: PathBuf,
    schema: SchemaRef,
    writer: FileWriter<ChecksumWriter<BufWriter<NewFile>>>,
    batch_rows: usize,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
}

impl IpcFileWriter {
    pub fn create(path: &Path, schema: SchemaRef, batch_rows: usize) -> Result<IpcFileWriter> {
        let file = crate::store::io::create(path)?;
        // The file's schema says that it carries checksums (the batches' schema need not).
        let marked = schema.as_ref().clone().with_metadata([(MARKER_KEY.into(), MARKER_VALUE.into())].into());
        let writer = FileWriter::try_new(ChecksumWriter::new(BufWriter::with_capacity(1 << 20, file)), &marked)?;
        Ok(IpcFileWriter { path: path.to_path_buf(), schema, writer, batch_rows, pending: Vec::new(), pending_rows: 0 })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Appends `batch` (in the file's schema).
    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        self.pending_rows += batch.num_rows();
        self.pending.push(batch);
        if self.pending_rows >= self.batch_rows {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending_rows > 0 {
            let batch = arrow::compute::concat_batches(&self.schema, &self.pending)?;
            self.writer.write(&batch)?;
        }
        self.pending.clear();
        self.pending_rows = 0;
        Ok(())
    }

    /// Writes the last rows and `metadata` into the footer, with the checksums; returns the file,
    /// to be made durable by the caller ([`crate::store::io::sync_later`]).
    pub fn finish(mut self, metadata: Vec<(String, String)>) -> Result<NewFile> {
        self.flush()?;
        let checksums = self.writer.get_mut().end_body();
        for (key, value) in metadata.into_iter().chain(checksums) {
            self.writer.write_metadata(key, value);
        }
        self.writer.finish()?;
        let path = self.path;
        self.writer.get_mut().write_tail().io_context("write", &path)?;
        self.writer.into_inner()?.into_inner().into_inner().map_err(|e| Error::Io {
            op: "write",
            path,
            source: e.into_error(),
        })
    }
}

/// Store files opened by this process, by path, size, modification time and the columns opened
/// (committed files are immutable, so an entry stays valid), the most recently used last: each
/// file is mapped and validated once, and its pages stay mapped across queries.
pub struct OpenedFiles<T> {
    entries: Mutex<Vec<(OpenKey, Arc<T>)>>,
    max: usize,
}

/// Path, size, modification time and the columns opened.
type OpenKey = (PathBuf, u64, Option<std::time::SystemTime>, Vec<String>);

impl<T> OpenedFiles<T> {
    /// A cache keeping at most `max` files open (an open file costs a mapping, not memory).
    pub const fn new(max: usize) -> OpenedFiles<T> {
        OpenedFiles { entries: Mutex::new(Vec::new()), max }
    }

    /// The file at `path` opened for `columns`: from the cache, or by `open` (whose `None`, a file
    /// that cannot serve, is not kept).
    pub fn get_or_open(
        &self,
        path: &Path,
        columns: &[&str],
        open: impl FnOnce() -> Result<Option<T>>,
    ) -> Result<Option<Arc<T>>> {
        let meta = std::fs::metadata(path).io_context("stat", path)?;
        let columns = columns.iter().map(|c| c.to_string()).collect();
        let key: OpenKey = (path.to_path_buf(), meta.len(), meta.modified().ok(), columns);
        let lock = || self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        {
            let mut entries = lock();
            if let Some(pos) = entries.iter().position(|(k, _)| *k == key) {
                let entry = entries.remove(pos);
                let file = Arc::clone(&entry.1);
                entries.push(entry);
                return Ok(Some(file));
            }
        }
        let Some(file) = open()? else { return Ok(None) };
        let file = Arc::new(file);
        let mut entries = lock();
        entries.retain(|(k, _)| *k != key);
        if entries.len() >= self.max {
            entries.remove(0);
        }
        entries.push((key, Arc::clone(&file)));
        Ok(Some(file))
    }
}

/// An Arrow IPC file of the store mapped into memory, its batches decoded without copying.
pub struct MappedIpc {
    /// The names of the columns decoded (those of `wanted` the file has, in that order).
    pub names: Vec<String>,
    pub batches: Vec<RecordBatch>,
    /// The footer's custom metadata.
    pub metadata: std::collections::HashMap<String, String>,
    /// The file's checksums (`None` for a file written before them): the footer and the blocks'
    /// metadata were verified; a reader verifies the arrays it uses before it reads them.
    pub checks: Option<Arc<Checksums>>,
    /// The mapping the batches are decoded from.
    pub mapping: Mapping,
}

impl MappedIpc {
    /// Maps the file at `path` and decodes the columns of `wanted` it has, validating their
    /// buffers (the others are not looked at). The mapping lives as long as the batches.
    pub fn open(path: &Path, wanted: &[&str]) -> Result<MappedIpc> {
        MappedIpc::open_checked(path, wanted, true)
    }

    /// Verifies every checksum of the file at `path`, whatever this process verified before;
    /// `false` when it has none (written before them).
    pub fn verify(path: &Path) -> Result<bool> {
        let mapped = MappedIpc::open_checked(path, &[], false)?;
        match &mapped.checks {
            Some(checks) => checks.ensure_all().map(|()| true),
            None => Ok(false),
        }
    }

    /// [`MappedIpc::open`]; `remember` shares the chunks found sound with the process's other
    /// mappings of the file.
    fn open_checked(path: &Path, wanted: &[&str], remember: bool) -> Result<MappedIpc> {
        let corrupt = |detail: String| Error::corrupt(path, format!("not a readable Arrow IPC copy: {detail}"));
        let file = File::open(path).io_context("open", path)?;
        let meta = file.metadata().io_context("stat", path)?;
        let mapping = Arc::new(map(&file, path)?);
        let buffer = Buffer::from(bytes::Bytes::from_owner(SharedMap(Arc::clone(&mapping))));
        let len = buffer.len();
        if len < 10 {
            return Err(corrupt(format!("{len} bytes is too short")));
        }
        let trailer: [u8; 10] = buffer[len - 10..].try_into().expect("ten bytes");
        let footer_len = read_footer_length(trailer).map_err(|e| corrupt(e.to_string()))?;
        let footer_start =
            (len - 10).checked_sub(footer_len).ok_or_else(|| corrupt("the footer is longer than the file".into()))?;
        let footer = arrow::ipc::root_as_footer(&buffer[footer_start..len - 10]).map_err(|e| corrupt(e.to_string()))?;
        let fb_schema = footer.schema().ok_or_else(|| corrupt("the footer has no schema".into()))?;
        // The footer is verified before anything in it is trusted, the schema included.
        let marked = fb_schema.custom_metadata().is_some_and(|m| m.iter().any(|kv| kv.key() == Some(MARKER_KEY)));
        let checks = Checksums::from_footer(path, &buffer, footer_start, &footer, marked, remember.then_some(meta))?
            .map(Arc::new);
        // Arrow's conversion panics on some damage, which a file without checksums may have.
        let schema =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| arrow::ipc::convert::fb_to_schema(fb_schema)))
                .map_err(|_| corrupt("the footer's schema is damaged".into()))?;
        let schema = Arc::new(schema);
        let projection: Vec<usize> = wanted.iter().filter_map(|name| schema.index_of(name).ok()).collect();
        let names = projection.iter().map(|&i| schema.field(i).name().clone()).collect();
        let metadata = footer
            .custom_metadata()
            .into_iter()
            .flatten()
            .filter_map(|kv| Some((kv.key()?.to_string(), kv.value()?.to_string())))
            .collect();
        let decoder = FileDecoder::new(Arc::clone(&schema), footer.version()).with_projection(projection);
        let mut batches = Vec::new();
        for block in footer.recordBatches().into_iter().flatten() {
            let offset = usize::try_from(block.offset()).map_err(|_| corrupt("a negative block offset".into()))?;
            let block_len = usize::try_from(block.bodyLength())
                .ok()
                .and_then(|body| body.checked_add(usize::try_from(block.metaDataLength()).ok()?))
                .ok_or_else(|| corrupt("a negative block length".into()))?;
            if offset.checked_add(block_len).is_none_or(|end| end > footer_start) {
                return Err(corrupt("a block lies beyond the data".into()));
            }
            if let Some(checks) = &checks {
                checks.ensure_range(offset, offset + block.metaDataLength().max(0) as usize)?;
            }
            let data = buffer.slice_with_length(offset, block_len);
            let batch = decoder
                .read_record_batch(block, &data)
                .map_err(|e| corrupt(e.to_string()))?
                .ok_or_else(|| corrupt("a block holds no record batch".into()))?;
            batches.push(batch);
        }
        Ok(MappedIpc { names, batches, metadata, checks, mapping: Mapping(mapping) })
    }
}

/// A mapping shared by the buffers decoded from it.
struct SharedMap(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A store file's mapping, whose pages a reader can give back once it has read them.
#[derive(Clone)]
pub struct Mapping(Arc<memmap2::Mmap>);

impl Mapping {
    /// The mapping's resident size (KiB) as `/proc/self/smaps` reports it.
    #[cfg(all(test, target_os = "linux"))]
    pub fn resident_kib(&self) -> Option<u64> {
        let at = self.0.as_ptr() as usize;
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((lo, hi)) = range.split_once('-')
                && let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = lo <= at && at < hi;
            } else if inside && let Some(kib) = line.strip_prefix("Rss:") {
                return kib.trim().trim_end_matches("kB").trim().parse().ok();
            }
        }
        None
    }

    /// Takes the file's pages out of this process's resident memory. They stay in the kernel's
    /// page cache, and a later read of the mapping faults the same bytes back in (a minor fault
    /// per few pages): a query that streams over many mapped copies then holds one at a time in
    /// its resident set instead of every copy it read (docs/lifecycle.md, bounded memory).
    #[allow(unsafe_code)]
    pub fn release_pages(&self) {
        // SAFETY: `MADV_DONTNEED` discards a private mapping's modified pages, but this mapping is
        // shared and read-only (`Mmap::map`: `PROT_READ`, `MAP_SHARED`) of a file that is never
        // written after its commit, so nothing is discarded: every byte reads the same after.
        // A failure only leaves the pages resident.
        let _ = unsafe { self.0.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
    }
}

/// Maps a committed store file into memory.
#[allow(unsafe_code)]
fn map(file: &File, path: &Path) -> Result<memmap2::Mmap> {
    // SAFETY: the mapping is undefined behaviour only if the file changes while mapped. Committed
    // store files are immutable: Persona never writes, truncates or rewrites one after its commit
    // (new versions write new files, and a writer only removes files no manifest references).
    unsafe { memmap2::Mmap::map(file) }.io_context("map", path)
}
