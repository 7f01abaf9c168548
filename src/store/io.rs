//! Every file operation that changes a store, behind one seam. The free functions here (create,
//! write-new-and-fsync, atomic replace, rename, remove, directory fsync, …) are what the writers
//! call; by default they go straight to the file system ([`FsIo`]). A test can install another
//! [`StoreIo`] for one directory tree ([`install`]), e.g. the fault-injecting one of
//! [`crate::store::faulty`]; the only cost to a normal run is one relaxed atomic load per
//! operation. Every error names the operation and the path.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::error::{IoContext, Result};

/// The file operations of a store's writers. Implementations: [`FsIo`] (the real one) and, in
/// tests, a fault-injecting one. Methods return plain `std::io::Result`s; the free functions of
/// this module add the operation and path to the error.
pub trait StoreIo: Send + Sync + std::fmt::Debug {
    /// Creates (or truncates) `path` for writing.
    fn create(&self, path: &Path) -> std::io::Result<NewFile>;
    /// Creates `path` for writing, failing with `AlreadyExists` if it exists.
    fn create_new(&self, path: &Path) -> std::io::Result<NewFile>;
    /// Fsyncs an existing file.
    fn sync_file(&self, path: &Path) -> std::io::Result<()>;
    /// Fsyncs a directory, making the names created, renamed or removed in it durable.
    fn sync_dir(&self, path: &Path) -> std::io::Result<()>;
    /// Renames `from` to `to`, replacing `to` atomically.
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    /// Gives `from`'s contents the second name `to`.
    fn hard_link(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> std::io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()>;
    /// Copies `from` (which need not be in the store) to a new file `to`, not fsynced; returns the
    /// bytes copied.
    fn copy(&self, from: &Path, to: &Path) -> std::io::Result<u64>;
    /// Opens an existing file of the store (one just copied in) to fsync it.
    fn reopen(&self, path: &Path) -> std::io::Result<NewFile>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
    /// The entries of a directory.
    fn list(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsIo;

impl StoreIo for FsIo {
    fn create(&self, path: &Path) -> std::io::Result<NewFile> {
        File::create(path).map(NewFile::from)
    }
    fn create_new(&self, path: &Path) -> std::io::Result<NewFile> {
        OpenOptions::new().write(true).create_new(true).open(path).map(NewFile::from)
    }
    fn sync_file(&self, path: &Path) -> std::io::Result<()> {
        File::open(path)?.sync_all()
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        File::open(path)?.sync_all()
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::hard_link(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_dir_all(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn copy(&self, from: &Path, to: &Path) -> std::io::Result<u64> {
        std::fs::copy(from, to)
    }
    fn reopen(&self, path: &Path) -> std::io::Result<NewFile> {
        File::open(path).map(NewFile::from)
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect()
    }
}

/// A file being written into a store: a plain [`File`] on the real file system, or a file of an
/// installed [`StoreIo`]. Writers hand it to Parquet, Arrow IPC and `BufWriter` as any `Write`.
pub struct NewFile(NewFileKind);

enum NewFileKind {
    Fs(File),
    Hooked(Box<dyn HookedFile>),
}

/// A file of an installed [`StoreIo`]: writes and fsync go through it.
pub trait HookedFile: Write + Send {
    /// Fsyncs the file.
    fn sync_all(&mut self) -> std::io::Result<()>;
    /// The bytes written so far.
    fn size(&self) -> u64;
    /// Writes `buf` over bytes already written, from `offset` (a header patched at the end).
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()>;
}

impl From<File> for NewFile {
    fn from(file: File) -> NewFile {
        NewFile(NewFileKind::Fs(file))
    }
}

impl NewFile {
    /// Wraps a file of an installed [`StoreIo`].
    pub fn hooked(file: Box<dyn HookedFile>) -> NewFile {
        NewFile(NewFileKind::Hooked(file))
    }

    /// Fsyncs the file.
    pub fn sync_all(&mut self) -> std::io::Result<()> {
        match &mut self.0 {
            NewFileKind::Fs(f) => f.sync_all(),
            NewFileKind::Hooked(f) => f.sync_all(),
        }
    }

    /// Writes `buf` over bytes already written, from `offset`: a header whose checksum is known
    /// only once the rest is written. Writing past the end is refused.
    pub fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.size().unwrap_or(0)) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("writing {} bytes at {offset} would go past the end of the file", buf.len()),
            ));
        }
        match &mut self.0 {
            NewFileKind::Fs(f) => std::os::unix::fs::FileExt::write_all_at(f, buf, offset),
            NewFileKind::Hooked(f) => f.write_at(offset, buf),
        }
    }

    /// The file's size.
    pub fn size(&self) -> std::io::Result<u64> {
        match &self.0 {
            NewFileKind::Fs(f) => f.metadata().map(|m| m.len()),
            NewFileKind::Hooked(f) => Ok(f.size()),
        }
    }
}

impl std::fmt::Debug for NewFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            NewFileKind::Fs(file) => file.fmt(f),
            NewFileKind::Hooked(_) => f.write_str("NewFile(hooked)"),
        }
    }
}

impl Write for NewFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.0 {
            NewFileKind::Fs(f) => f.write(buf),
            NewFileKind::Hooked(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.0 {
            NewFileKind::Fs(f) => f.flush(),
            NewFileKind::Hooked(f) => f.flush(),
        }
    }
}

/// Whether any [`StoreIo`] is installed: while none is (every normal run), operations go to
/// [`FsIo`] after one relaxed load.
static ANY_INSTALLED: AtomicBool = AtomicBool::new(false);

/// The installed implementations, by the directory tree they serve.
static INSTALLED: RwLock<Vec<(PathBuf, Arc<dyn StoreIo>)>> = RwLock::new(Vec::new());

/// Routes every operation on paths under `root` (as given: canonicalize it as the store does)
/// through `io` until the guard is dropped. Installations are per directory tree, so tests that
/// run in parallel on their own stores do not see each other's.
#[doc(hidden)]
pub fn install(root: &Path, io: Arc<dyn StoreIo>) -> Installed {
    let mut installed = INSTALLED.write().unwrap_or_else(PoisonError::into_inner);
    installed.push((root.to_path_buf(), io));
    ANY_INSTALLED.store(true, Ordering::SeqCst);
    Installed { root: root.to_path_buf() }
}

/// Removes its installation when dropped.
#[doc(hidden)]
#[derive(Debug)]
pub struct Installed {
    root: PathBuf,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let mut installed = INSTALLED.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = installed.iter().position(|(root, _)| *root == self.root) {
            installed.remove(i);
        }
        ANY_INSTALLED.store(!installed.is_empty(), Ordering::SeqCst);
    }
}

/// The implementation serving `path`, when one other than [`FsIo`] is installed for it.
fn hook(path: &Path) -> Option<Arc<dyn StoreIo>> {
    if !ANY_INSTALLED.load(Ordering::Relaxed) {
        return None;
    }
    let installed = INSTALLED.read().unwrap_or_else(PoisonError::into_inner);
    installed.iter().find(|(root, _)| path.starts_with(root)).map(|(_, io)| Arc::clone(io))
}

/// Whether an installed implementation serves `path` and counts its operations: a writer that
/// would write two files on two threads then writes them one after the other, so that the
/// operations keep one order from run to run (fault injection fails the n-th).
pub fn counts_operations(path: &Path) -> bool {
    hook(path).is_some()
}

/// Runs `op` on the implementation serving `path`.
fn with<T>(path: &Path, op: impl FnOnce(&dyn StoreIo) -> std::io::Result<T>) -> std::io::Result<T> {
    match hook(path) {
        Some(io) => op(&*io),
        None => op(&FsIo),
    }
}

/// Creates (or truncates) `path` for writing; the caller fsyncs it ([`NewFile::sync_all`] or
/// [`sync_later`]).
pub fn create(path: &Path) -> Result<NewFile> {
    with(path, |io| io.create(path)).io_context("create", path)
}

/// Creates `path` (failing if it exists), writes `bytes` and fsyncs the file.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = with(path, |io| io.create_new(path)).io_context("create", path)?;
    f.write_all(bytes).io_context("write", path)?;
    f.sync_all().io_context("fsync", path)
}

/// Fsyncs an existing file.
pub fn sync_file(path: &Path) -> Result<()> {
    with(path, |io| io.sync_file(path)).io_context("fsync", path)
}

/// Fsyncs a directory so that the names created or renamed in it are durable.
pub fn sync_dir(path: &Path) -> Result<()> {
    with(path, |io| io.sync_dir(path)).io_context("fsync directory", path)
}

/// Renames `from` to `to` (replacing it atomically); durable once `to`'s directory is fsynced.
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    with(to, |io| io.rename(from, to)).io_context("rename into place", to)
}

/// Removes a file; durable once its directory is fsynced.
pub fn remove_file(path: &Path) -> Result<()> {
    with(path, |io| io.remove_file(path)).io_context("remove", path)
}

/// Removes a directory and its content.
pub fn remove_dir_all(path: &Path) -> Result<()> {
    with(path, |io| io.remove_dir_all(path)).io_context("remove", path)
}

/// Copies `from` into a new file `to`, not yet fsynced; returns the bytes copied.
pub fn copy(from: &Path, to: &Path) -> Result<u64> {
    with(to, |io| io.copy(from, to)).io_context("copy into the store", to)
}

/// Copies `from` into a new file `to` and fsyncs it; returns the bytes copied.
pub fn copy_synced(from: &Path, to: &Path) -> Result<u64> {
    let bytes = copy(from, to)?;
    sync_file(to)?;
    Ok(bytes)
}

/// Opens an existing file of the store (one just copied in) to fsync it, e.g. by [`sync_later`].
pub fn reopen(path: &Path) -> Result<NewFile> {
    with(path, |io| io.reopen(path)).io_context("open", path)
}

/// Gives `from` the second name `to`.
pub fn hard_link(from: &Path, to: &Path) -> Result<()> {
    with(to, |io| io.hard_link(from, to)).io_context("link", to)
}

/// The entries of a directory.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    with(dir, |io| io.list(dir)).io_context("list", dir)
}

/// Replaces `path` with `bytes` atomically: a temporary file, fsync, rename, fsync of the directory.
pub fn atomic_replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let tmp = dir.join(format!(
        ".{}.tmp-{:016x}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        rand::random::<u64>()
    ));
    write_new(&tmp, bytes)?;
    rename(&tmp, path)?;
    sync_dir(dir)
}

/// The directory holding `path`: a bare file name's parent is the empty path, which names no
/// directory to sync; it means the current directory.
fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Creates a directory and its parents. The new names are durable once the parent of the first
/// directory created is fsynced ([`create_dir_all_synced`] does both).
pub fn create_dir_all(path: &Path) -> Result<()> {
    with(path, |io| io.create_dir_all(path)).io_context("create directory", path)
}

/// Creates a directory and its parents, and makes the new names durable: each directory created
/// has its parent fsynced. A file fsynced in a directory whose own name was never made durable
/// is lost with it in a crash.
pub fn create_dir_all_synced(path: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut at = path;
    while !at.is_dir() {
        missing.push(at);
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    create_dir_all(path)?;
    for dir in missing.iter().rev() {
        sync_dir(parent_dir(dir))?;
    }
    Ok(())
}

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    with(path, |io| io.read(path)).io_context("read", path)
}

/// Renames `tmp` over `target` atomically. When `target` exists, its old contents are first given
/// a second name (a hard link), so that the rename does not free its blocks, and that name is
/// removed by a background thread that `removals` keeps: freeing a large file's blocks took as
/// long as writing a tenth of it.
pub fn rename_over(tmp: &Path, target: &Path, removals: &Removals) -> Result<()> {
    let aside = target.with_file_name(format!(
        ".{}.old-{:016x}",
        target.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        rand::random::<u64>()
    ));
    let linked = target.exists() && hard_link(target, &aside).is_ok();
    if let Err(e) = rename(tmp, target) {
        if linked {
            let _ = remove_file(&aside);
        }
        return Err(e);
    }
    if linked {
        if hook(&aside).is_some() {
            // An installed implementation counts operations: keep their order deterministic.
            let _ = remove_file(&aside);
        } else {
            removals.push(std::thread::spawn(move || {
                let _ = std::fs::remove_file(&aside);
            }));
        }
    }
    Ok(())
}

/// The background removals of [`rename_over`] started for one owner (a session), so that the
/// owner can wait for its own: [`Removals::finish`] waits, and so does dropping it, so that no
/// hidden `.name.old-…` file outlives the owner (a process exiting while such a thread runs
/// would leave one).
#[derive(Debug, Default)]
pub struct Removals {
    handles: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Removals {
    fn handles(&self) -> std::sync::MutexGuard<'_, Vec<std::thread::JoinHandle<()>>> {
        self.handles.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, handle: std::thread::JoinHandle<()>) {
        let mut handles = self.handles();
        handles.retain(|h| !h.is_finished());
        handles.push(handle);
    }

    /// Waits for every removal started so far.
    pub fn finish(&self) {
        let handles: Vec<_> = self.handles().drain(..).collect();
        for handle in handles {
            let _ = handle.join();
        }
    }
}

impl Drop for Removals {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Makes `file` durable on a background thread, so that the caller writes its next file while the
/// kernel writes this one out; the handle's `join` gives the outcome. A commit must wait for every
/// such handle before it writes its manifest.
pub fn sync_later(mut file: NewFile, path: PathBuf) -> std::thread::JoinHandle<Result<()>> {
    if let NewFileKind::Hooked(_) = &file.0 {
        // An installed implementation counts operations: keep their order deterministic.
        let outcome = file.sync_all().io_context("fsync", &path);
        return std::thread::spawn(move || outcome);
    }
    std::thread::spawn(move || file.sync_all().io_context("fsync", &path))
}

/// Waits for the fsyncs of [`sync_later`]; the first failure is returned.
pub fn wait_synced(handles: Vec<std::thread::JoinHandle<Result<()>>>) -> Result<()> {
    let mut outcome = Ok(());
    for handle in handles {
        let result =
            handle.join().unwrap_or_else(|_| Err(crate::error::Error::Internal("an fsync thread panicked".into())));
        if outcome.is_ok() {
            outcome = result;
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_is_written_over_bytes_already_written_and_never_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let mut file = create(&path).unwrap();
        file.write_all(&[0; 10]).unwrap();
        file.write_at(0, b"head").unwrap();
        file.write_at(6, b"tail").unwrap();
        let err = file.write_at(8, b"long").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
        file.sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"head\0\0tail");
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("page.html")), Path::new("."));
        assert_eq!(parent_dir(Path::new("out/page.html")), Path::new("out"));
        assert_eq!(parent_dir(Path::new("/page.html")), Path::new("/"));
    }

    #[test]
    fn rename_over_replaces_the_old_file_and_leaves_no_second_name() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.parquet");
        std::fs::write(&target, b"old").unwrap();
        let tmp = dir.path().join(".a.tmp");
        std::fs::write(&tmp, b"new").unwrap();
        let removals = Removals::default();
        rename_over(&tmp, &target, &removals).unwrap();
        removals.finish();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.parquet")]);
        // A new name, with nothing to move aside.
        std::fs::write(&tmp, b"newer").unwrap();
        rename_over(&tmp, &dir.path().join("b.parquet"), &removals).unwrap();
        assert_eq!(std::fs::read(dir.path().join("b.parquet")).unwrap(), b"newer");
    }
}
