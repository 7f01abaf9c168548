//! The store on disk: a directory of immutable Parquet data files plus versioned manifests. A
//! [`Store`] is a cheap, thread-safe handle: any number of readers take [`Snapshot`]s, while one
//! [`StoreWriter`] at a time (an OS lock) commits new versions.

pub mod addressable;
pub mod backup;
pub mod catalog;
pub mod check;
pub mod commit;
pub mod day_times;
pub mod dead_rows;
pub mod fact_rows;
#[cfg(any(test, debug_assertions))]
#[doc(hidden)]
pub mod faulty;
pub mod id_dictionary;
pub mod identity;
pub mod io;
pub mod ipc;
pub mod ipc_checksums;
pub mod layout;
pub mod load_log;
pub mod lock;
pub mod manifest;
pub mod orphans;
pub mod plain_columns;
pub mod snapshot;
pub mod typed;
pub mod vacuum;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use commit::StoreWriter;
use lock::WriterLock;
use manifest::Manifest;
pub use snapshot::Snapshot;

use crate::error::{Error, IoContext, Result};

/// A handle on a store directory; clone it freely and share it across threads.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

#[derive(Debug)]
struct StoreInner {
    root: PathBuf,
    /// The last manifest read, by version, so that taking a snapshot of an unchanged store costs one
    /// small read of CURRENT.
    cached: Mutex<Option<Arc<Manifest>>>,
}

impl Store {
    /// Opens an existing store; fails with [`Error::NotAStore`] when `path` holds none.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let root = path.as_ref().to_path_buf();
        if !layout::current_file(&root).exists() {
            return Err(Error::NotAStore { path: root });
        }
        // Every path of the store is built from its root: an absolute root without `.` or `..`
        // is a valid object-store and URL path, however the user typed it (`--store ../crm`).
        let root = std::fs::canonicalize(&root).io_context("resolve the store path", &root)?;
        let store = Store { inner: Arc::new(StoreInner { root, cached: Mutex::new(None) }) };
        store.snapshot()?;
        Ok(store)
    }

    /// Opens the store at `path`, creating an empty one (version 0) if there is none.
    pub fn open_or_create(path: impl AsRef<Path>) -> Result<Store> {
        let root = path.as_ref().to_path_buf();
        if layout::current_file(&root).exists() {
            return Store::open(root);
        }
        if root.exists() && !root.is_dir() {
            return Err(Error::Usage(format!("{} exists and is not a directory", root.display())));
        }
        io::create_dir_all(&layout::manifests_dir(&root))?;
        let lock = WriterLock::acquire(&layout::lock_file(&root))?;
        // Another process may have created it while we waited for nothing: re-check under the lock.
        if !layout::current_file(&root).exists() {
            let empty = Manifest::empty();
            let path0 = layout::manifest_path(&root, 0);
            if !path0.exists() {
                io::write_new(&path0, &empty.to_bytes()?)?;
            }
            io::sync_dir(&layout::manifests_dir(&root))?;
            io::atomic_replace(&layout::current_file(&root), layout::manifest_name(0).as_bytes())?;
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                let _ = io::sync_dir(parent);
            }
        }
        drop(lock);
        Store::open(root)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Pins the current version.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let manifest = self.current_manifest()?;
        Ok(Snapshot::new(self.inner.root.clone(), manifest))
    }

    /// Takes the writer lock (failing at once if another writer holds it) on the current version.
    /// The commit protocol's handle for the layers that write (import, the audience statements);
    /// not part of the API.
    #[doc(hidden)]
    pub fn writer(&self) -> Result<StoreWriter> {
        let lock = WriterLock::acquire(&layout::lock_file(self.root()))?;
        let base = self.current_manifest()?;
        // A writer that died between creating its manifest and renaming CURRENT left a manifest
        // no reader can reach; under the lock it is safe to remove, and it must go, or the next
        // commit of that version number would conflict with it forever.
        for version in self.versions()?.into_iter().filter(|v| *v > base.version) {
            let path = layout::manifest_path(self.root(), version);
            io::remove_file(&path)?;
        }
        // Its files (and those of a writer killed before its manifest) go too (see `orphans`).
        orphans::remove_unpublished_files(self.root(), base.version)?;
        Ok(StoreWriter::new(self.clone(), lock, base))
    }

    /// Lists the committed versions still on disk, oldest first.
    pub fn versions(&self) -> Result<Vec<u64>> {
        let dir = layout::manifests_dir(self.root());
        let mut versions: Vec<u64> = std::fs::read_dir(&dir)
            .io_context("list", &dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(layout::parse_manifest_name))
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    fn current_manifest(&self) -> Result<Arc<Manifest>> {
        let current = layout::current_file(self.root());
        let name_bytes = io::read(&current)?;
        let name = std::str::from_utf8(&name_bytes)
            .map(str::trim)
            .map_err(|_| Error::corrupt(&current, "CURRENT is not text"))?;
        let version = layout::parse_manifest_name(name)
            .ok_or_else(|| Error::corrupt(&current, format!("CURRENT names '{name}', which is not a manifest")))?;
        {
            let cached = self.inner.cached.lock().map_err(|_| Error::Internal("manifest cache poisoned".into()))?;
            if let Some(m) = cached.as_ref().filter(|m| m.version == version) {
                return Ok(Arc::clone(m));
            }
        }
        let path = layout::manifest_path(self.root(), version);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::corrupt(&current, format!("CURRENT names manifest {name}, which does not exist")));
            }
            Err(e) => return Err(e).io_context("read", &path),
        };
        let manifest = Arc::new(Manifest::from_bytes(&bytes, &path)?);
        if manifest.version != version {
            return Err(Error::corrupt(&path, format!("it says version {} but is named {name}", manifest.version)));
        }
        *self.inner.cached.lock().map_err(|_| Error::Internal("manifest cache poisoned".into()))? =
            Some(Arc::clone(&manifest));
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_open_and_commit_an_empty_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path().join("s")).unwrap();
        assert_eq!(store.snapshot().unwrap().version(), 0);
        let writer = store.writer().unwrap();
        let next = (**writer.base()).clone();
        assert_eq!(writer.commit(next).unwrap(), 1);
        let reopened = Store::open(dir.path().join("s")).unwrap();
        assert_eq!(reopened.snapshot().unwrap().version(), 1);
        assert_eq!(reopened.versions().unwrap(), vec![0, 1]);
    }

    #[test]
    fn an_unpublished_manifest_left_by_a_crash_does_not_block_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path()).unwrap();
        std::fs::write(layout::manifest_path(dir.path(), 1), b"half-written").unwrap();
        assert_eq!(store.snapshot().unwrap().version(), 0);
        let writer = store.writer().unwrap();
        let next = (**writer.base()).clone();
        assert_eq!(writer.commit(next).unwrap(), 1);
    }

    /// Before the fix, a commit whose last step (the fsync of `_persona/` after CURRENT's rename)
    /// failed dropped the writer as if nothing were published, and the drop deleted the files of
    /// the version CURRENT already named.
    #[test]
    fn a_failed_fsync_after_the_rename_keeps_the_files_of_the_published_version() {
        use crate::store::faulty::{Fault, FaultyIo};
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        Store::open_or_create(&root).unwrap();
        std::fs::create_dir_all(root.join("catalog")).unwrap();
        let commit = |faulty: &FaultyIo, version: u64| {
            let store = Store::open(&root).unwrap();
            let _installed = io::install(&root, Arc::new(faulty.clone()));
            let writer = store.writer()?;
            let (_, abs) = writer.new_file(format!("catalog/v{version:08}-test.set"))?;
            io::write_new(&abs, b"bytes")?;
            let next = (**writer.base()).clone();
            writer.commit(next)
        };
        let counting = FaultyIo::counting();
        assert_eq!(commit(&counting, 1).unwrap(), 1);
        let last = counting.log().len() - 1;
        assert_eq!(counting.log()[last], "fsync directory");
        assert!(commit(&FaultyIo::failing(last, Fault::Error), 2).is_err());
        assert_eq!(Store::open(&root).unwrap().snapshot().unwrap().version(), 2);
        assert!(root.join("catalog/v00000002-test.set").exists(), "the published version's file was removed");
    }

    #[test]
    fn opening_a_plain_directory_says_it_is_not_a_store() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Store::open(dir.path()), Err(Error::NotAStore { .. })));
    }

    #[test]
    fn second_writer_gets_locked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path()).unwrap();
        let _w = store.writer().unwrap();
        let err = store.writer().unwrap_err();
        assert!(err.to_string().contains("_persona/LOCK"), "{err}");
    }

    #[test]
    fn current_naming_a_missing_manifest_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        Store::open_or_create(dir.path()).unwrap();
        std::fs::write(layout::current_file(dir.path()), "v00000009.json").unwrap();
        assert!(matches!(Store::open(dir.path()), Err(Error::Corrupt { .. })));
    }
}
