//! The single-writer lock: an OS advisory lock on `_persona/LOCK`, taken without blocking so that a
//! second writer gets a clear `Locked` error at once. The OS releases it when the holder dies.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Held for as long as a writer may commit; dropping it releases the lock.
#[derive(Debug)]
pub struct WriterLock {
    /// Kept open: the lock lives as long as this handle.
    _file: File,
    path: PathBuf,
}

impl WriterLock {
    /// Takes the lock or fails at once with [`Error::Locked`].
    pub fn acquire(lock_path: &Path) -> Result<WriterLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(lock_path)
            .io_context("open the lock file", lock_path)?;
        // A process that forks (to start a child) while a writer is open briefly shares the lock
        // until the child execs, so a lock released a moment ago can still look taken: retry a
        // few times over ~30 ms before reporting another writer.
        for attempt in 0..4 {
            match file.try_lock() {
                Ok(()) => return Ok(WriterLock { _file: file, path: lock_path.to_path_buf() }),
                Err(TryLockError::WouldBlock) if attempt < 3 => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(TryLockError::WouldBlock) => break,
                Err(TryLockError::Error(e)) => return Err(e).io_context("lock", lock_path),
            }
        }
        Err(Error::Locked { lock_file: lock_path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_writer_is_refused_and_lock_is_released_on_drop() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("LOCK");
        let first = WriterLock::acquire(&path).expect("first lock");
        let second = WriterLock::acquire(&path);
        assert!(matches!(second, Err(Error::Locked { .. })), "{second:?}");
        drop(first);
        WriterLock::acquire(&path).expect("lock is free again");
    }
}
