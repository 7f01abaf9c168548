//! The manifest: one JSON document per committed version listing every live file (with row counts,
//! row-id ranges and checksums), the users schema, the id-dictionary segments and the fingerprints
//! of loaded fact files. A header line carries a CRC-32 of the JSON so that damage is detected.
//!
//! ```text
//! persona-manifest crc32=1a2b3c4d
//! {"format_version":1,"version":42,...}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::catalog::{Catalog, SetFile};
use crate::store::identity::IdentitySection;
use crate::tables::{ColumnDef, Table, contract_columns};

/// The newest store format this build reads and writes.
/// Version 2 added the catalog of rule tags and saved audiences; version-1 manifests read as
/// stores with an empty catalog. Version 3 added the forgotten users ([`Manifest::forgotten`]);
/// a manifest is written as version 3 only when it has some ([`Manifest::needed_format`]), so
/// that a build that would read their blanked rows as users refuses the store instead. Version 4
/// added the `identities` table and the identity section; a manifest is written as version 4 only
/// when it has either. Version 5 added segments of identity links (`Resolution::more_links`); a
/// manifest is written as version 5 only when it has some, so that a build that would read the
/// first segment as every link refuses the store instead. Version 6 stores the identity
/// union-find state as a base and deltas (`Resolution::state_base`, `state_deltas`); a manifest
/// is written as version 6 only when it has them, so that a build that would not keep them
/// (its vacuum would delete them) refuses the store instead. Version 7 added the load log.
/// Version 8 added the overrides of identity links' outcomes (`Resolution::link_overrides`, a
/// split decided on its component); a manifest is written as version 8 only when it has them, so
/// that a build that would show the stored outcomes (and vacuum the overrides) refuses the store.
/// Version 9 added dead rows of fact files (`DataFile::dead`, a forget that marks instead of
/// rewriting) and links of forgotten users hidden by overrides (`Resolution::forgotten_links`); a
/// manifest is written as version 9 only when it has either, so that a build that would read the
/// forgotten users' rows refuses the store.
pub const FORMAT_VERSION: u32 = 9;

const HEADER_PREFIX: &str = "persona-manifest crc32=";

/// One committed version of a store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub version: u64,
    /// RFC 3339 time of the commit.
    pub committed_at: String,
    /// The row id the next new user receives; row ids are dense, so this is also the user count.
    pub next_row_id: u32,
    /// The users schema in column order, custom columns included.
    pub users_columns: Vec<ColumnDef>,
    /// Live data files per table.
    pub tables: BTreeMap<Table, Vec<DataFile>>,
    /// Segments of the user_id -> row id dictionary; together they hold every user once.
    pub id_segments: Vec<IdSegment>,
    /// Fact and tag files already loaded, by content fingerprint, so that a second load of the
    /// same file is refused instead of doubling its rows: inline in manifests of format 6 and
    /// before, in `load_log` files since ([`crate::store::load_log`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loaded_files: Vec<LoadedFile>,
    /// The load-log files recording the fact files loaded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_log: Vec<crate::store::load_log::LoadLogFile>,
    /// The bitmap index of this version (absent before the first import).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexEntry>,
    /// Rule tags and saved audiences with their versions.
    #[serde(default, skip_serializing_if = "Catalog::is_empty")]
    pub catalog: Catalog,
    /// The row ids of the users forgotten so far (`persona forget`, `DELETE FROM users`): holes
    /// in the row-id space, never given to anyone again. Their users rows stay in place, blanked
    /// ([`BLANK_USER_ID`] and every other column NULL), so that row `k` of a users file is still
    /// row id `first_row_id + k`; every "all users" computation subtracts this set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forgotten: Option<ForgottenUsers>,
    /// The identity rules and this version's resolution of users into persons.
    #[serde(default, skip_serializing_if = "IdentitySection::is_empty")]
    pub identity: IdentitySection,
}

/// The `user_id` of a forgotten user's blanked row. The importer refuses an empty `user_id`, so
/// no live user has it.
pub const BLANK_USER_ID: &str = "";

/// The users forgotten so far: a catalog-style bitmap file of their row ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgottenUsers {
    /// How many row ids the set holds.
    pub users: u64,
    pub set: SetFile,
}

/// The index file of a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub path: String,
    pub bytes: u64,
}

/// One immutable Parquet data file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    /// Relative to the store root.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// For users files: the row id of the first row; the file holds `first_row_id .. + rows`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_row_id: Option<u32>,
    /// For fact files: the smallest and largest `ts` (microseconds), for pruning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts_range: Option<(i64, i64)>,
    /// For fact files kept exactly as loaded (they already matched the contract): the Parquet
    /// file holding their `__row_id` column, row for row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_ids: Option<String>,
    /// For fact files: per row group, the smallest and largest user row id in it, so that a
    /// lookup of one user reads only the row groups that can hold its rows (empty: unknown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub row_id_ranges: Vec<(u32, u32)>,
    /// For fact files: whether the rows are in ascending user row id order, so that one user's
    /// rows in the plain copy are found by binary search (false when unknown).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rows_by_user: bool,
    /// For users files: the row-addressable Arrow IPC copy of their unique string columns
    /// ([`crate::store::addressable`]), which audience exports gather from (absent in stores
    /// written before it existed; they read the Parquet file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addressable: Option<String>,
    /// For fact files with a `ts` column: the uncompressed Arrow IPC copy of their fixed-width
    /// and low-cardinality columns, row for row ([`crate::store::plain_columns`]), which per-user
    /// aggregates read (absent in stores written before it existed; they read the Parquet file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_columns: Option<String>,
    /// For events files: their rows' times of day by event type, channel and day
    /// ([`crate::store::day_times`]), which window edges inside a day search (absent in stores
    /// written before it existed and for files whose `ts` is finer than a second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_times: Option<String>,
    /// For fact files: the rows of forgotten users, marked dead instead of the file being written
    /// again ([`crate::store::dead_rows`]); every reader skips them, and a purge (vacuum,
    /// compaction, repair) writes the file again without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead: Option<DeadRows>,
}

/// The dead rows of a fact file: a catalog-style bitmap file of their positions in the file
/// (row `k` of the file is position `k`; its plain copy is row for row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadRows {
    /// How many positions the set holds.
    pub rows: u64,
    pub set: SetFile,
}

impl DataFile {
    /// The rows readers see: the stored rows minus the dead ones.
    pub fn live_rows(&self) -> u64 {
        self.rows - self.dead.as_ref().map_or(0, |d| d.rows.min(self.rows))
    }
}

/// One segment of the id dictionary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdSegment {
    pub path: String,
    pub entries: u64,
    pub bytes: u64,
}

/// A file whose rows were appended to a fact table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadedFile {
    pub table: Table,
    /// xxh3-128 of the file's bytes, hex.
    pub fingerprint: String,
    /// The path it was loaded from (for the error message only).
    pub source: String,
    pub rows: u64,
    pub version: u64,
}

impl Manifest {
    /// The manifest of a new, empty store.
    pub fn empty() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            version: 0,
            committed_at: now_rfc3339(),
            next_row_id: 0,
            users_columns: contract_columns(Table::Users),
            tables: BTreeMap::new(),
            id_segments: Vec::new(),
            loaded_files: Vec::new(),
            load_log: Vec::new(),
            index: None,
            catalog: Catalog::default(),
            forgotten: None,
            identity: IdentitySection::default(),
        }
    }

    /// The oldest format that can read this manifest: 9 with dead rows of fact files, 8 with overrides of identity links'
    /// outcomes, 7 with a load log, 6 with a base of the identity state, 5 with
    /// segments of identity links, 4 with identities, 3 with forgotten users,
    /// 2 otherwise.
    pub fn needed_format(&self) -> u32 {
        if self.tables.values().flatten().any(|f| f.dead.is_some())
            || self.identity.resolution.as_ref().is_some_and(|r| r.forgotten_links > 0)
        {
            9
        } else if self.identity.resolution.as_ref().is_some_and(|r| r.link_overrides.is_some()) {
            8
        } else if !self.load_log.is_empty() {
            7
        } else if self
            .identity
            .resolution
            .as_ref()
            .is_some_and(|r| r.state_base.is_some() || !r.state_deltas.is_empty())
        {
            6
        } else if self.identity.resolution.as_ref().is_some_and(|r| !r.more_links.is_empty()) {
            5
        } else if !self.identity.is_empty() || self.tables.contains_key(&Table::Identities) {
            4
        } else if self.forgotten.is_some() {
            3
        } else {
            2
        }
    }

    /// The users of this version: the row ids given out minus those forgotten.
    pub fn live_users(&self) -> u64 {
        u64::from(self.next_row_id) - self.forgotten.as_ref().map_or(0, |f| f.users)
    }

    /// Every file (relative to the store root) this version refers to, once each: what a backup
    /// copies and what vacuum keeps.
    pub fn referenced_files(&self) -> Vec<String> {
        let mut files: Vec<String> = Vec::new();
        for table_files in self.tables.values() {
            for f in table_files {
                files.push(f.path.clone());
                files.extend(f.row_ids.iter().cloned());
                files.extend(f.addressable.iter().cloned());
                files.extend(f.plain_columns.iter().cloned());
                files.extend(f.day_times.iter().cloned());
                files.extend(f.dead.iter().map(|d| d.set.path.clone()));
            }
        }
        files.extend(self.id_segments.iter().map(|s| s.path.clone()));
        files.extend(self.load_log.iter().map(|l| l.path.clone()));
        files.extend(self.index.iter().map(|i| i.path.clone()));
        files.extend(self.catalog.set_files().into_iter().map(|s| s.path.clone()));
        files.extend(self.forgotten.iter().map(|f| f.set.path.clone()));
        if let Some(r) = &self.identity.resolution {
            files.extend(r.files().into_iter().cloned());
        }
        // A rule tag's user_tags rows are listed with the table's files as well.
        files.extend(self.catalog.tags.iter().flat_map(|t| t.rows_files.iter().cloned()));
        files.sort();
        files.dedup();
        files
    }

    pub fn files(&self, table: Table) -> &[DataFile] {
        self.tables.get(&table).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The rows of `table` readers see (dead rows left out).
    pub fn rows(&self, table: Table) -> u64 {
        self.files(table).iter().map(DataFile::live_rows).sum()
    }

    /// The columns SQL sees for `table`.
    pub fn columns(&self, table: Table) -> Vec<ColumnDef> {
        match table {
            Table::Users => self.users_columns.clone(),
            other => contract_columns(other),
        }
    }

    /// Serializes with the checksum header.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Internal(format!("manifest does not serialize: {e}")))?;
        let mut out = format!("{HEADER_PREFIX}{:08x}\n", crc32fast::hash(&json)).into_bytes();
        out.extend_from_slice(&json);
        Ok(out)
    }

    /// Parses and verifies a manifest read from `path`.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let newline = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| Error::corrupt(path, "the header line is missing (truncated file?)"))?;
        let header = std::str::from_utf8(&bytes[..newline])
            .ok()
            .and_then(|h| h.strip_prefix(HEADER_PREFIX))
            .ok_or_else(|| Error::corrupt(path, "the header line is not a Persona manifest header"))?;
        let expected = u32::from_str_radix(header.trim(), 16)
            .map_err(|_| Error::corrupt(path, "the header's checksum is unreadable"))?;
        let json = &bytes[newline + 1..];
        let actual = crc32fast::hash(json);
        if actual != expected {
            return Err(Error::corrupt(
                path,
                format!(
                    "checksum mismatch (header says {expected:08x}, content is {actual:08x}); the file is truncated or damaged"
                ),
            ));
        }
        // Read the format version before the full shape, so that a newer store is refused with
        // the right error rather than a parse error about fields we do not know.
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| Error::corrupt(path, format!("invalid JSON: {e}")))?;
        let found = value
            .get("format_version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| Error::corrupt(path, "format_version is missing"))?;
        if found > u64::from(FORMAT_VERSION) {
            return Err(Error::FormatVersion {
                path: path.to_path_buf(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
                supported: FORMAT_VERSION,
            });
        }
        serde_json::from_value(value).map_err(|e| Error::corrupt(path, format!("unexpected content: {e}")))
    }
}

/// The current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_bytes() {
        let mut m = Manifest::empty();
        m.version = 7;
        m.tables.insert(
            Table::Users,
            vec![DataFile {
                path: "data/users/a.parquet".into(),
                rows: 3,
                bytes: 10,
                first_row_id: Some(0),
                ts_range: None,
                row_ids: None,
                row_id_ranges: vec![(0, 2)],
                rows_by_user: true,
                addressable: Some("data/users/a.arrow".into()),
                plain_columns: None,
                day_times: None,
                dead: None,
            }],
        );
        let bytes = m.to_bytes().unwrap();
        assert_eq!(Manifest::from_bytes(&bytes, Path::new("m")).unwrap(), m);
    }

    #[test]
    fn a_version_1_manifest_reads_with_an_empty_catalog() {
        let mut v1: serde_json::Value = serde_json::from_slice(&Manifest::empty().to_bytes().unwrap()[32..]).unwrap();
        v1["format_version"] = 1.into();
        v1.as_object_mut().unwrap().remove("catalog");
        let json = serde_json::to_vec(&v1).unwrap();
        let mut bytes = format!("{HEADER_PREFIX}{:08x}\n", crc32fast::hash(&json)).into_bytes();
        bytes.extend_from_slice(&json);
        let m = Manifest::from_bytes(&bytes, Path::new("m")).unwrap();
        assert_eq!(m.format_version, 1);
        assert!(m.catalog.is_empty());
    }

    #[test]
    fn identity_links_in_segments_need_format_5_a_state_base_6_and_every_file_is_referenced() {
        let mut m = Manifest::empty();
        let mut resolution = crate::store::identity::Resolution {
            links: "catalog/l1.parquet".into(),
            more_links: Vec::new(),
            link_overrides: None,
            state: Some("catalog/s.bin".into()),
            state_base: None,
            state_deltas: Vec::new(),
            persons: "catalog/p.parquet".into(),
            link_rows: 0,
            forgotten_links: 0,
            users: 0,
            person_count: 0,
            linked: 0,
            rejected: Default::default(),
        };
        m.identity.resolution = Some(resolution.clone());
        assert_eq!(m.needed_format(), 4);
        resolution.more_links.push("catalog/l2.parquet".into());
        m.identity.resolution = Some(resolution.clone());
        assert_eq!(m.needed_format(), 5);
        resolution.state_base = Some("catalog/b.bin".into());
        resolution.state_deltas.push("catalog/d.bin".into());
        m.identity.resolution = Some(resolution.clone());
        assert_eq!(m.needed_format(), 6);
        resolution.link_overrides = Some("catalog/o.parquet".into());
        m.identity.resolution = Some(resolution);
        assert_eq!(m.needed_format(), 8);
        let files = m.referenced_files();
        for f in [
            "catalog/l1.parquet",
            "catalog/l2.parquet",
            "catalog/s.bin",
            "catalog/p.parquet",
            "catalog/b.bin",
            "catalog/d.bin",
            "catalog/o.parquet",
        ] {
            assert!(files.contains(&f.to_string()), "{f}");
        }
        let bytes = m.to_bytes().unwrap();
        assert_eq!(Manifest::from_bytes(&bytes, Path::new("m")).unwrap(), m);
    }

    #[test]
    fn forgotten_users_round_trip_and_need_format_3() {
        let mut m = Manifest::empty();
        m.next_row_id = 10;
        assert_eq!((m.needed_format(), m.live_users()), (2, 10));
        m.forgotten = Some(ForgottenUsers {
            users: 3,
            set: SetFile { path: "catalog/v00000002-forgotten-users-1.set".into(), bytes: 40 },
        });
        assert_eq!((m.needed_format(), m.live_users()), (3, 7));
        assert!(m.referenced_files().contains(&"catalog/v00000002-forgotten-users-1.set".to_string()));
        let bytes = m.to_bytes().unwrap();
        assert_eq!(Manifest::from_bytes(&bytes, Path::new("m")).unwrap(), m);
    }

    #[test]
    fn truncated_manifest_is_corrupt() {
        let bytes = Manifest::empty().to_bytes().unwrap();
        for cut in [0, 5, bytes.len() / 2, bytes.len() - 1] {
            let err = Manifest::from_bytes(&bytes[..cut], Path::new("m.json")).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "cut at {cut}: {err}");
        }
    }

    #[test]
    fn flipped_byte_is_corrupt() {
        let mut bytes = Manifest::empty().to_bytes().unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x20;
        assert!(matches!(Manifest::from_bytes(&bytes, Path::new("m")), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn newer_format_is_refused_with_format_version() {
        let mut m = Manifest::empty();
        m.format_version = FORMAT_VERSION + 1;
        let bytes = m.to_bytes().unwrap();
        let err = Manifest::from_bytes(&bytes, Path::new("m")).unwrap_err();
        assert!(matches!(err, Error::FormatVersion { found, .. } if found == FORMAT_VERSION + 1), "{err}");
    }
}
