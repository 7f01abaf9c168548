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
        // until the child execs, so a lock released a moment ago can still look taken: retry for
        // up to a quarter of a second (a loaded machine can take that long to exec) before
        // reporting another writer.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(250);
        let mut pause = std::time::Duration::from_millis(2);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(WriterLock { _file: file, path: lock_path.to_path_buf() }),
                Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(40));
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

    /// Before the retry, a lock released while another thread was starting a child process was
    /// still held by the child until it exec'd, and the next writer of this process got `Locked`.
    #[test]
    fn a_released_lock_is_free_while_other_threads_spawn_processes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("LOCK");
        let stop = std::sync::atomic::AtomicBool::new(false);
        /// Stops the spawning thread even when an assertion fails, so that the scope can end.
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::process::Command::new("true").status();
                }
            });
            let _stop = StopOnDrop(&stop);
            for i in 0..300 {
                let lock = WriterLock::acquire(&path);
                assert!(lock.is_ok(), "attempt {i}: {lock:?}");
                // Hold it for a moment, so that spawns overlap with a held lock.
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
        });
    }
}
