//! Every on-disk path and file name of a store, built in one place, and the listing of the
//! folders that hold versioned files. Versions are zero-padded so
//! that names sort in commit order.
//!
//! ```text
//! STORE/_persona/CURRENT                  name of the current manifest (atomic rename)
//! STORE/_persona/LOCK                     the single writer's OS lock
//! STORE/_persona/manifests/v00000042.json one manifest per committed version
//! STORE/data/<table>/v00000042-<rand>.parquet   immutable data files
//! STORE/ids/v00000042-<rand>.ids          user_id -> row id dictionary segments
//! STORE/index/v00000042-<rand>.idx        the bitmap indexes of a version
//! ```

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// The directory holding Persona's own metadata.
pub const META_DIR: &str = "_persona";

pub fn meta_dir(root: &Path) -> PathBuf {
    root.join(META_DIR)
}

pub fn current_file(root: &Path) -> PathBuf {
    meta_dir(root).join("CURRENT")
}

pub fn lock_file(root: &Path) -> PathBuf {
    meta_dir(root).join("LOCK")
}

pub fn manifests_dir(root: &Path) -> PathBuf {
    meta_dir(root).join("manifests")
}

/// The file name of manifest `version`, e.g. `v00000042.json`.
pub fn manifest_name(version: u64) -> String {
    format!("v{version:08}.json")
}

pub fn manifest_path(root: &Path, version: u64) -> PathBuf {
    manifests_dir(root).join(manifest_name(version))
}

/// Parses a manifest file name back into its version.
pub fn parse_manifest_name(name: &str) -> Option<u64> {
    name.strip_prefix('v')?.strip_suffix(".json")?.parse().ok()
}

/// A fresh relative path for a data file of `table` written for `version`.
pub fn new_data_file(table: &str, version: u64) -> String {
    format!("data/{table}/v{version:08}-{:016x}.parquet", rand::random::<u64>())
}

/// The relative path of a file kept beside the data file at `parquet_relative`: its name with
/// `extension` (e.g. `plain.arrow`) in place of `parquet`.
pub fn beside_data_file(parquet_relative: &str, extension: &str) -> String {
    let stem = parquet_relative.strip_suffix(".parquet").unwrap_or(parquet_relative);
    format!("{stem}.{extension}")
}

/// A fresh relative path for the row-id companion of a fact file kept as loaded.
pub fn new_row_ids_file(table: &str, version: u64) -> String {
    format!("data/{table}/v{version:08}-{:016x}.rowids", rand::random::<u64>())
}

/// A fresh relative path for an id-dictionary segment written for `version`.
pub fn new_ids_file(version: u64) -> String {
    format!("ids/v{version:08}-{:016x}.ids", rand::random::<u64>())
}

/// A fresh relative path for the index file of `version`.
pub fn new_index_file(version: u64) -> String {
    format!("index/v{version:08}-{:016x}.idx", rand::random::<u64>())
}

/// Resolves a path relative to the store root, as recorded in manifests.
/// The existing folders of `root` that hold versioned files: `ids`, `index`, `catalog` and each
/// table's folder under `data`.
pub fn versioned_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = ["ids", "index", "catalog"].iter().map(|d| root.join(d)).collect();
    let data = root.join("data");
    if data.is_dir() {
        for entry in std::fs::read_dir(&data).io_context("list", &data)? {
            let path = entry.io_context("list", &data)?.path();
            if path.is_dir() {
                dirs.push(path);
            }
        }
    }
    dirs.retain(|d| d.is_dir());
    Ok(dirs)
}

/// The regular files directly in `dir`.
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).io_context("list", dir)? {
        let path = entry.io_context("list", dir)?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    Ok(files)
}

pub fn resolve(root: &Path, relative: &str) -> PathBuf {
    root.join(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names_sort_by_version_and_parse_back() {
        assert_eq!(manifest_name(42), "v00000042.json");
        assert!(manifest_name(9) < manifest_name(10));
        assert_eq!(parse_manifest_name("v00000042.json"), Some(42));
        assert_eq!(parse_manifest_name("CURRENT"), None);
    }

    #[test]
    fn data_files_are_unique_and_under_their_table() {
        let a = new_data_file("users", 3);
        let b = new_data_file("users", 3);
        assert!(a.starts_with("data/users/v00000003-"));
        assert_ne!(a, b);
    }
}
