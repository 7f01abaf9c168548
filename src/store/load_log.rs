//! The record of the fact files a store loaded (their content fingerprints, so that a second load
//! of one is refused), kept in **load-log files** beside the manifest rather than in it: a year of
//! hourly imports records ~20,000 files, and inline they made every manifest — written by every
//! version and parsed by every reader — grow with the store's age (3 MB after 8,760 imports,
//! each import slower than the last). Each import writes one small log file of the files it
//! loaded; once a version would refer to [`MERGE_AT`] of them they are merged into one, so a
//! manifest refers to at most that many and an import reads at most that many.
//!
//! Framed as the catalog's set files are ([`crate::store::catalog::write_framed`]):
//!
//! ```text
//! "PRSNLOG1"  crc32 (u32 LE) of the payload  length (u64 LE)  payload: JSON array of LoadedFile
//! ```
//!
//! Manifests of format 6 and before keep the record inline (`loaded_files`); the first import of
//! such a store moves it into a log file.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::catalog::{read_framed, write_framed};
use crate::store::manifest::{LoadedFile, Manifest};
use crate::store::{StoreWriter, layout};

const MAGIC: &[u8; 8] = b"PRSNLOG1";

/// A version refers to fewer load-log files than this: the import that would make it this many
/// merges them into one.
pub const MERGE_AT: usize = 64;

/// One load-log file, as the manifest refers to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadLogFile {
    pub path: String,
    /// Files recorded in it.
    pub entries: u64,
    pub bytes: u64,
}

/// Every fact file `manifest` records as loaded (inline and in its log files), in load order.
pub fn loaded_files(root: &Path, manifest: &Manifest) -> Result<Vec<LoadedFile>> {
    let mut out = manifest.loaded_files.clone();
    for file in &manifest.load_log {
        out.extend(read(root, file)?);
    }
    Ok(out)
}

/// Records `loaded` (the files of the version `writer` builds) in `next`: one new log file, or —
/// when `next` would then refer to [`MERGE_AT`] log files, or still keeps the record inline —
/// one file holding the whole record.
pub fn record(writer: &StoreWriter, root: &Path, next: &mut Manifest, loaded: Vec<LoadedFile>) -> Result<()> {
    if loaded.is_empty() {
        return Ok(());
    }
    if next.load_log.len() + 1 >= MERGE_AT || !next.loaded_files.is_empty() {
        let mut all = loaded_files(root, next)?;
        all.extend(loaded);
        next.loaded_files.clear();
        next.load_log = vec![write(writer, &all)?];
    } else {
        next.load_log.push(write(writer, &loaded)?);
    }
    Ok(())
}

fn write(writer: &StoreWriter, entries: &[LoadedFile]) -> Result<LoadLogFile> {
    let relative = format!("catalog/v{:08}-loaded-{:016x}.log", writer.next_version(), rand::random::<u64>());
    let payload =
        serde_json::to_vec(entries).map_err(|e| Error::Internal(format!("a load log does not serialize: {e}")))?;
    let (path, bytes) = write_framed(writer, relative, MAGIC, &payload)?;
    Ok(LoadLogFile { path, entries: entries.len() as u64, bytes })
}

/// Reads one load-log file, verifying its checksum and its count of entries.
pub fn read(root: &Path, file: &LoadLogFile) -> Result<Vec<LoadedFile>> {
    let path = layout::resolve(root, &file.path);
    let payload = read_framed(&path, MAGIC, "a Persona load log", "log")?;
    let entries: Vec<LoadedFile> =
        serde_json::from_slice(&payload).map_err(|e| Error::corrupt(&path, format!("unreadable load log: {e}")))?;
    if entries.len() as u64 != file.entries {
        return Err(Error::corrupt(
            &path,
            format!("records {} loaded files; the manifest says {}", entries.len(), file.entries),
        ));
    }
    Ok(entries)
}
