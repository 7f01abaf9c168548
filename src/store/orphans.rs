//! Removal of the files an interrupted writer left behind (Ctrl-C, a kill, a crash, a power cut):
//! data files, copies, row-id companions, dictionary segments, index and catalog files written for
//! a version that was never published, and a `CURRENT` temp file that was never renamed.
//!
//! Why the version in the name is enough: every store file is named after the version it was
//! written for (`v00000042-<random>`, [`super::layout`]), and a writer only ever writes for the
//! version after its base. A writer that published nothing therefore left files named after a
//! version greater than the current one, and the next writer (which holds the lock, after the
//! unpublished manifests are gone) finds them by name without reading any manifest. No committed
//! manifest references such a file, so no reader's snapshot can be using it; files of published
//! versions are never touched here (removing those that no version needs any more is a vacuum's
//! job, not this one's).

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::store::io;
use crate::store::layout;

/// Removes every store file written for a version after `current`, and stray `CURRENT` temp
/// files. Call only while holding the writer lock. Returns the removed paths.
pub fn remove_unpublished_files(root: &Path, current: u64) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for dir in layout::versioned_dirs(root)? {
        for path in layout::files_in(&dir)? {
            let unpublished =
                path.file_name().and_then(|n| n.to_str()).and_then(version_of).is_some_and(|v| v > current);
            if unpublished {
                io::remove_file(&path)?;
                removed.push(path);
            }
        }
    }
    // A crash between writing CURRENT's temp file and renaming it over CURRENT.
    let meta = layout::meta_dir(root);
    if meta.is_dir() {
        for path in io::list(&meta)? {
            if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(".CURRENT.tmp-")) {
                io::remove_file(&path)?;
                removed.push(path);
            }
        }
    }
    Ok(removed)
}

/// The version a store file was written for, from its name (`v00000042-1f2e….parquet` → 42);
/// `None` for any other name, which is then never removed.
fn version_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix('v')?.split_once('-')?.0;
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_store_names_only() {
        assert_eq!(version_of("v00000042-00000000deadbeef.parquet"), Some(42));
        assert_eq!(version_of("v00000042-00000000deadbeef.plain.arrow"), Some(42));
        assert_eq!(version_of("v123456789-1.idx"), Some(123_456_789));
        assert_eq!(version_of("v42-x.parquet"), None, "not zero-padded: not ours");
        assert_eq!(version_of("notes.txt"), None);
        assert_eq!(version_of("v0000000x-1.parquet"), None);
    }

    #[test]
    fn only_files_of_unpublished_versions_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let file = |rel: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"x").unwrap();
            p
        };
        let kept = [
            file("data/users/v00000002-0000000000000001.parquet"),
            file("index/v00000001-0000000000000001.idx"),
            file("data/users/README.txt"),
            file("_persona/CURRENT"),
        ];
        let gone = [
            file("data/users/v00000003-0000000000000001.parquet"),
            file("data/users/v00000003-0000000000000001.arrow"),
            file("data/purchases/v00000003-0000000000000002.rowids"),
            file("ids/v00000004-0000000000000001.ids"),
            file("index/v00000003-0000000000000001.idx"),
            file("catalog/v00000003-tag-x-0000000000000001.set"),
            file("_persona/.CURRENT.tmp-00000000deadbeef"),
        ];
        let mut removed = remove_unpublished_files(root, 2).unwrap();
        removed.sort();
        let mut expected = gone.to_vec();
        expected.sort();
        assert_eq!(removed, expected);
        assert!(kept.iter().all(|p| p.exists()));
        assert!(gone.iter().all(|p| !p.exists()));
    }
}
