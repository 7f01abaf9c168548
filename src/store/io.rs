//! Durable file operations used by the commit protocol: write-new-and-fsync, atomic replace,
//! directory fsync, and renaming a finished file over an old one whose blocks are freed off the
//! caller's path. Every error names the operation and the path.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Creates `path` (failing if it exists), writes `bytes` and fsyncs the file.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path).io_context("create", path)?;
    f.write_all(bytes).io_context("write", path)?;
    f.sync_all().io_context("fsync", path)
}

/// Fsyncs an existing file.
pub fn sync_file(path: &Path) -> Result<()> {
    File::open(path).io_context("open", path)?.sync_all().io_context("fsync", path)
}

/// Fsyncs a directory so that the names created or renamed in it are durable.
pub fn sync_dir(path: &Path) -> Result<()> {
    File::open(path).io_context("open directory", path)?.sync_all().io_context("fsync directory", path)
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
    std::fs::rename(&tmp, path).io_context("rename into place", path)?;
    sync_dir(dir)
}

/// The directory holding `path`: a bare file name's parent is the empty path, which names no
/// directory to sync; it means the current directory.
fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Creates a directory and its parents.
pub fn create_dir_all(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).io_context("create directory", path)
}

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).io_context("read", path)
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
    let linked = target.exists() && std::fs::hard_link(target, &aside).is_ok();
    if let Err(e) = std::fs::rename(tmp, target) {
        if linked {
            let _ = std::fs::remove_file(&aside);
        }
        return Err(e).io_context("rename into place", target);
    }
    if linked {
        removals.push(std::thread::spawn(move || {
            let _ = std::fs::remove_file(&aside);
        }));
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
pub fn sync_later(file: File, path: std::path::PathBuf) -> std::thread::JoinHandle<Result<()>> {
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
