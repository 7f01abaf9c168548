//! Durable file operations used by the commit protocol: write-new-and-fsync, atomic replace,
//! directory fsync. Every error names the operation and the path.

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
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{:016x}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        rand::random::<u64>()
    ));
    write_new(&tmp, bytes)?;
    std::fs::rename(&tmp, path).io_context("rename into place", path)?;
    sync_dir(dir)
}

/// Creates a directory and its parents.
pub fn create_dir_all(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).io_context("create directory", path)
}

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).io_context("read", path)
}
