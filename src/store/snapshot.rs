//! A pinned read view of one committed version: what a query holds from start to end. Files are
//! immutable, so a snapshot stays valid while writers commit newer versions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::store::layout;
use crate::store::manifest::Manifest;
use crate::tables::Table;

/// One version of a store, pinned.
#[derive(Debug, Clone)]
pub struct Snapshot {
    root: PathBuf,
    manifest: Arc<Manifest>,
}

impl Snapshot {
    pub(crate) fn new(root: PathBuf, manifest: Arc<Manifest>) -> Snapshot {
        Snapshot { root, manifest }
    }

    pub fn version(&self) -> u64 {
        self.manifest.version
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Absolute paths of the live data files of `table`.
    pub fn file_paths(&self, table: Table) -> Vec<PathBuf> {
        self.manifest.files(table).iter().map(|f| layout::resolve(&self.root, &f.path)).collect()
    }

    /// The number of users: the row ids given out minus those forgotten.
    pub fn user_count(&self) -> u64 {
        self.manifest.live_users()
    }
}
