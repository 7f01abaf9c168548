//! A consistent copy of one store version (`persona backup`): every file the pinned manifest
//! refers to, hard-linked where the target is on the same file system (store files are never
//! changed once written, so a link is a copy) and copied otherwise, then the manifest and
//! `CURRENT`. The copy is built in a temporary folder beside the target and renamed into place
//! last, so an interrupted backup leaves no half store under the target's name. Readers and a
//! writer of the source go on meanwhile: the backup holds no lock, like any reader, and a
//! version committed during it is simply not in it.

use std::path::{Component, Path};
use std::time::Instant;

use crate::error::{Error, IoContext, Result};
use crate::store::{Snapshot, Store, io, layout};

/// What a backup did.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupReport {
    /// The version copied.
    pub version: u64,
    /// Files the manifest refers to.
    pub files: u64,
    /// Of them, hard-linked (the rest were copied).
    pub linked: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// How a backup places files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// Hard links where the target is on the same file system, copies elsewhere.
    #[default]
    LinkWherePossible,
    /// Copies always: the backup shares no bytes with the store, so damage to one (a disk
    /// error, a file edited in place) cannot reach the other.
    Copy,
}

/// Copies the current version of `store` to `target`, which must not exist yet (or be an empty
/// folder).
pub fn backup(store: &Store, target: &Path) -> Result<BackupReport> {
    backup_with(store, target, Placement::default())
}

/// [`backup`] with the files placed as `placement` says.
pub fn backup_with(store: &Store, target: &Path, placement: Placement) -> Result<BackupReport> {
    let started = Instant::now();
    let snapshot = store.snapshot()?;
    check_target(target)?;
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("backup");
    let building = parent.join(format!(".{name}.backup-{:016x}", rand::random::<u64>()));
    let result = build(&snapshot, &building, placement);
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            let _ = io::remove_dir_all(&building);
            return Err(e);
        }
    };
    if target.is_dir() {
        // An empty folder the user made for it: replaced by the finished copy.
        io::remove_dir_all(target)?;
    }
    if let Err(e) = io::rename(&building, target) {
        let _ = io::remove_dir_all(&building);
        return Err(e);
    }
    io::sync_dir(parent)?;
    // The copy must open as a store of the same version.
    let copy = Store::open(target)?.snapshot()?;
    if copy.version() != report.version {
        return Err(Error::Internal(format!(
            "the backup at {} opens at version {} instead of {}",
            target.display(),
            copy.version(),
            report.version
        )));
    }
    Ok(BackupReport { seconds: started.elapsed().as_secs_f64(), ..report })
}

/// A backup goes to a new place: a file, or a folder with anything in it, is refused.
fn check_target(target: &Path) -> Result<()> {
    if !target.exists() {
        return Ok(());
    }
    let empty_dir =
        target.is_dir() && std::fs::read_dir(target).io_context("list the backup folder", target)?.next().is_none();
    if empty_dir {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{} already exists and is not an empty folder; a backup goes to a new folder",
        target.display()
    )))
}

fn build(snapshot: &Snapshot, building: &Path, placement: Placement) -> Result<BackupReport> {
    let root = snapshot.root();
    let manifest = snapshot.manifest();
    io::create_dir_all(&layout::manifests_dir(building))?;
    // Every folder of the copy, fsynced once its files are in, so that their names are durable.
    let mut dirs = std::collections::BTreeSet::new();
    let (mut files, mut linked, mut bytes) = (0u64, 0u64, 0u64);
    for relative in manifest.referenced_files() {
        let inside = Path::new(&relative);
        if inside.is_absolute() || inside.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(Error::corrupt(
                layout::manifest_path(root, manifest.version),
                format!("it refers to '{relative}', outside the store"),
            ));
        }
        let from = layout::resolve(root, &relative);
        let to = building.join(inside);
        if let Some(dir) = to.parent() {
            io::create_dir_all(dir)?;
            let mut at = dir;
            while at != building && dirs.insert(at.to_path_buf()) {
                at = at.parent().unwrap_or(building);
            }
        }
        if placement == Placement::LinkWherePossible && io::hard_link(&from, &to).is_ok() {
            linked += 1;
        } else {
            io::copy_synced(&from, &to)?;
        }
        bytes += std::fs::metadata(&to).io_context("read the size of", &to)?.len();
        files += 1;
    }
    // Deepest first, so that each folder's own name is durable after its content.
    for dir in dirs.iter().rev() {
        io::sync_dir(dir)?;
    }
    io::sync_dir(building)?;
    let manifest_path = layout::manifest_path(building, manifest.version);
    io::write_new(&manifest_path, &manifest.to_bytes()?)?;
    io::sync_dir(&layout::manifests_dir(building))?;
    io::atomic_replace(&layout::current_file(building), layout::manifest_name(manifest.version).as_bytes())?;
    Ok(BackupReport { version: manifest.version, files, linked, bytes, seconds: 0.0 })
}
