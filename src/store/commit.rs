//! The commit protocol. A writer holds the lock, writes its new data files (each fsynced when
//! closed), then publishes the next manifest:
//!
//! ```text
//! new data files ─ fsync ─> fsync their directories
//!   ─> manifests/vN+1.json created exclusively (create_new) ─ fsync ─> fsync manifests/
//!   ─> CURRENT.tmp ─ fsync ─> rename over CURRENT ─> fsync _persona/
//! ```
//! A crash before the rename leaves version N current (the new files are unreferenced garbage);
//! after it, version N+1. Readers never see anything in between.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::io;
use crate::store::layout;
use crate::store::lock::WriterLock;
use crate::store::manifest::{Manifest, now_rfc3339};

/// The single writer of a store: holds the OS lock and the version it builds on.
#[derive(Debug)]
pub struct StoreWriter {
    store: Store,
    _lock: WriterLock,
    base: Arc<Manifest>,
    /// Files written for the pending commit, fsynced and their directories synced at commit,
    /// removed if the writer is dropped without committing.
    written: std::sync::Mutex<Vec<PathBuf>>,
}

impl StoreWriter {
    pub(crate) fn new(store: Store, lock: WriterLock, base: Arc<Manifest>) -> StoreWriter {
        StoreWriter { store, _lock: lock, base, written: std::sync::Mutex::new(Vec::new()) }
    }

    /// The version this writer builds on.
    pub fn base(&self) -> &Arc<Manifest> {
        &self.base
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The version the next commit publishes.
    pub fn next_version(&self) -> u64 {
        self.base.version + 1
    }

    /// Reserves a fresh relative path for a data file of `table`; returns (relative, absolute).
    pub fn new_file(&self, relative: String) -> Result<(String, PathBuf)> {
        let abs = layout::resolve(self.store.root(), &relative);
        if let Some(parent) = abs.parent() {
            io::create_dir_all_synced(parent)?;
        }
        self.written_files().push(abs.clone());
        Ok((relative, abs))
    }

    /// Publishes `next` as the next version. `next.version` and `committed_at` are set here.
    pub fn commit(self, mut next: Manifest) -> Result<u64> {
        let root = self.store.root().to_path_buf();
        next.version = self.next_version();
        next.committed_at = now_rfc3339();
        next.format_version = next.needed_format();

        let dirs: BTreeSet<PathBuf> =
            self.written_files().iter().filter_map(|p| p.parent().map(Path::to_path_buf)).collect();
        for dir in &dirs {
            io::sync_dir(dir)?;
        }
        let manifest_path = layout::manifest_path(&root, next.version);
        match io::write_new(&manifest_path, &next.to_bytes()?) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Conflict { version: next.version });
            }
            other => other?,
        }
        io::sync_dir(&layout::manifests_dir(&root))?;
        let current = layout::current_file(&root);
        let tmp = layout::meta_dir(&root).join(format!(".CURRENT.tmp-{:016x}", rand::random::<u64>()));
        io::write_new(&tmp, layout::manifest_name(next.version).as_bytes())?;
        io::rename(&tmp, &current)?;
        // From the rename on, readers may see version N+1: its files are no longer this writer's
        // to remove, even if the directory fsync below fails (found by the fault-injection test:
        // a failed final fsync used to delete the files of the version just published).
        self.written_files().clear();
        io::sync_dir(&layout::meta_dir(&root))?;
        Ok(next.version)
    }

    fn written_files(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        // A poisoned list is still a list of paths: keep using it.
        self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for StoreWriter {
    /// An abandoned commit removes the files it wrote; they were never referenced.
    fn drop(&mut self) {
        for path in self.written_files().drain(..) {
            let _ = io::remove_file(&path);
        }
    }
}
