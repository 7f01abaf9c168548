//! `persona check`: verifies the current version of a store file by file and names every
//! problem found instead of stopping at the first. What it verifies:
//! - every file the manifest refers to exists, with the size the manifest recorded (data files,
//!   id segments, the index, catalog sets);
//! - data files and row-id companions: a readable Parquet footer with the manifest's row count;
//! - dead rows of fact files: the set's checksum, its count, every position below the file's rows;
//! - plain and row-addressable copies and day times: every checksum (footer and chunks; files
//!   written before checksums have none), then they map, their offsets are valid, a plain copy
//!   has its fact file's rows (day times at most as many, in sections that fit);
//! - the index, by the verifier the caller passes (the index layer's `verify_file`: its directory
//!   checksum, then every bitmap's checksum and encoding) — the store layer does not read
//!   indexes;
//! - the id dictionary: every block's checksum, each `user_id` once, every row id below the
//!   users' count, and as many entries as users;
//! - catalog sets (rule tags, audience versions): checksums and encoding; load logs (the fact
//!   files loaded): checksums and counts;
//! - the users files: row ids contiguous from 0 to the row ids given out (a forgotten user's
//!   row stays in place, blanked, so there is no gap there either);
//! - the forgotten users' set: its checksum, its count, its row ids below those given out, and
//!   none of them in the id dictionary;
//! - the identity resolution: its links files, persons file and link overrides readable Parquet
//!   files holding the links and users the manifest recorded, its state's base and deltas with
//!   their checksums (`persona identity check` compares the persons with a rebuild).
//!
//! The manifest's own checksum is verified when the store is opened. Comparing the index with one
//! rebuilt from the data (`--deep`) and rebuilding damaged derived files (`--repair`) live in
//! `ingest::repair`, which may read the index and write files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::catalog::read_set;
use crate::store::manifest::Manifest;
use crate::store::{Store, layout};
use crate::tables::Table;

/// Part of the problem a store whose id dictionary does not count its users has (reported at the
/// manifest's path: no one segment is to blame); the dictionary is rebuilt by a repair.
pub const DICTIONARY_COUNT: &str = "the id dictionary holds";

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub what: String,
}

/// What a check looked at and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub version: u64,
    pub files: u64,
    pub bytes: u64,
    pub problems: Vec<Problem>,
}

struct Checker<'a> {
    root: &'a Path,
    report: CheckReport,
}

impl Checker<'_> {
    fn problem(&mut self, path: &Path, what: impl Into<String>) {
        self.report.problems.push(Problem { path: path.to_path_buf(), what: what.into() });
    }

    /// Records a failed verification as a problem of `path` (an error naming its own file keeps
    /// its detail).
    fn verify(&mut self, path: &Path, outcome: Result<()>) {
        if let Err(e) = outcome {
            match e {
                Error::Corrupt { path, detail } => self.problem(&path, detail),
                other => self.problem(path, other.to_string()),
            }
        }
    }

    /// The file's absolute path when it exists (with `bytes` when the manifest recorded them).
    fn present(&mut self, relative: &str, bytes: Option<u64>) -> Option<PathBuf> {
        let path = layout::resolve(self.root, relative);
        match std::fs::metadata(&path) {
            Err(_) => {
                self.problem(&path, "is missing");
                None
            }
            Ok(m) => {
                self.report.files += 1;
                self.report.bytes += m.len();
                if let Some(expected) = bytes.filter(|b| *b != m.len()) {
                    self.problem(&path, format!("has {} bytes; the manifest recorded {expected}", m.len()));
                    return None;
                }
                Some(path)
            }
        }
    }
}

/// Checks the current version of `store`; `verify_index` verifies its index file.
pub fn check(store: &Store, verify_index: impl Fn(&Path) -> Result<()>) -> Result<CheckReport> {
    let snapshot = store.snapshot()?;
    let manifest = snapshot.manifest();
    let mut c =
        Checker { root: snapshot.root(), report: CheckReport { version: manifest.version, ..Default::default() } };
    data_files(&mut c, manifest);
    users_row_ids(&mut c, manifest);
    let forgotten = forgotten(&mut c, manifest);
    id_dictionary(&mut c, manifest, &forgotten);
    if let Some(index) = &manifest.index
        && let Some(path) = c.present(&index.path, Some(index.bytes))
    {
        let outcome = verify_index(&path);
        c.verify(&path, outcome);
    }
    catalog(&mut c, manifest);
    identity(&mut c, manifest);
    Ok(c.report)
}

/// The rows of a Parquet file, from a readable footer.
fn parquet_row_count(path: &Path) -> Result<u64> {
    use parquet::file::reader::FileReader;
    let file = std::fs::File::open(path).map_err(|e| Error::Io { op: "open", path: path.to_path_buf(), source: e })?;
    let reader = parquet::file::reader::SerializedFileReader::new(file)
        .map_err(|e| Error::corrupt(path, format!("not a readable Parquet file: {e}")))?;
    Ok(reader.metadata().file_metadata().num_rows().max(0) as u64)
}

/// A readable Parquet footer with `expected` rows (`whose` says where the count comes from).
fn parquet_rows(path: &Path, expected: u64, whose: &str) -> Result<()> {
    let rows = parquet_row_count(path)?;
    if rows != expected {
        return Err(Error::corrupt(path, format!("holds {rows} rows; {whose} {expected}")));
    }
    Ok(())
}

fn data_files(c: &mut Checker<'_>, manifest: &Manifest) {
    for table in Table::ALL {
        for f in manifest.files(table) {
            if let Some(path) = c.present(&f.path, Some(f.bytes)) {
                let outcome = parquet_rows(&path, f.rows, "the manifest recorded");
                c.verify(&path, outcome);
            }
            if let Some(relative) = &f.row_ids
                && let Some(path) = c.present(relative, None)
            {
                let outcome = parquet_rows(&path, f.rows, "its data file holds");
                c.verify(&path, outcome);
            }
            if let Some(dead) = &f.dead
                && let Some(path) = c.present(&dead.set.path, Some(dead.set.bytes))
            {
                let outcome = crate::store::dead_rows::read(c.root, f, dead).map(drop);
                c.verify(&path, outcome);
            }
            if let Some(relative) = &f.plain_columns
                && let Some(path) = c.present(relative, None)
            {
                let outcome = checksums(&path)
                    .and_then(|()| crate::store::plain_columns::PlainColumns::open(&path, &[], f.rows).map(|_| ()));
                c.verify(&path, outcome);
            }
            if let Some(relative) = &f.day_times
                && let Some(path) = c.present(relative, None)
            {
                let outcome =
                    checksums(&path).and_then(|()| crate::store::day_times::DayTimes::open(&path)).and_then(|times| {
                        match times.rows() as u64 <= f.rows {
                            true => Ok(()),
                            false => Err(Error::corrupt(
                                &path,
                                format!("holds {} rows for a file of {}", times.rows(), f.rows),
                            )),
                        }
                    });
                c.verify(&path, outcome);
            }
            if let Some(relative) = &f.addressable
                && let Some(path) = c.present(relative, None)
            {
                let outcome = checksums(&path)
                    .and_then(|()| crate::store::addressable::AddressableCopy::open(&path, &["name", "phone", "email"]))
                    .map(|copy| copy.rows())
                    .and_then(|rows| match rows == f.rows || rows == 0 {
                        true => Ok(()),
                        false => Err(Error::corrupt(&path, format!("holds {rows} rows for a file of {}", f.rows))),
                    });
                c.verify(&path, outcome);
            }
        }
    }
}

/// Every checksum of an Arrow IPC copy (none in copies written before them).
fn checksums(path: &Path) -> Result<()> {
    crate::store::ipc::MappedIpc::verify(path).map(|_| ())
}

/// The users files hold row ids 0 .. users without a gap or an overlap.
fn users_row_ids(c: &mut Checker<'_>, manifest: &Manifest) {
    let mut files: Vec<_> = manifest.files(Table::Users).iter().collect();
    files.sort_by_key(|f| f.first_row_id);
    let mut next = 0u64;
    for f in files {
        let first = f.first_row_id.map(u64::from);
        if f.rows > 0 && first != Some(next) {
            let path = layout::resolve(c.root, &f.path);
            c.problem(&path, format!("starts at row id {first:?}; the users before it end at {next}"));
        }
        next = first.unwrap_or(next) + f.rows;
    }
    if next != u64::from(manifest.next_row_id) {
        let path = layout::manifest_path(c.root, manifest.version);
        c.problem(&path, format!("counts {} users, but its users files hold {next}", manifest.next_row_id));
    }
}

/// The forgotten users' row ids (empty when nobody was forgotten, or when their set cannot be
/// read, which is then a problem of its own).
fn forgotten(c: &mut Checker<'_>, manifest: &Manifest) -> roaring::RoaringBitmap {
    let Some(forgotten) = &manifest.forgotten else { return roaring::RoaringBitmap::new() };
    let Some(path) = c.present(&forgotten.set.path, Some(forgotten.set.bytes)) else {
        return roaring::RoaringBitmap::new();
    };
    match read_set(c.root, &forgotten.set) {
        Err(e) => {
            c.verify(&path, Err(e));
            roaring::RoaringBitmap::new()
        }
        Ok(set) => {
            if set.len() != forgotten.users {
                c.problem(&path, format!("holds {} row ids; the manifest recorded {}", set.len(), forgotten.users));
            }
            if set.max().is_some_and(|m| m >= manifest.next_row_id) {
                c.problem(&path, format!("holds row ids beyond the {} given out", manifest.next_row_id));
            }
            set
        }
    }
}

fn id_dictionary(c: &mut Checker<'_>, manifest: &Manifest, forgotten: &roaring::RoaringBitmap) {
    let users = manifest.next_row_id;
    let mut seen: HashSet<u32> = HashSet::new();
    let mut entries = 0u64;
    for segment in &manifest.id_segments {
        let Some(path) = c.present(&segment.path, Some(segment.bytes)) else { continue };
        let (mut in_segment, mut out_of_range, mut repeated, mut of_forgotten) = (0u64, 0u64, 0u64, 0u64);
        let outcome = crate::store::id_dictionary::for_each_entry(&path, |_, id| {
            in_segment += 1;
            if id >= users {
                out_of_range += 1;
            } else if !seen.insert(id) {
                repeated += 1;
            }
            if forgotten.contains(id) {
                of_forgotten += 1;
            }
        });
        c.verify(&path, outcome);
        if in_segment != segment.entries {
            c.problem(&path, format!("holds {in_segment} entries; the manifest recorded {}", segment.entries));
        }
        if out_of_range > 0 {
            c.problem(&path, format!("maps {out_of_range} user_ids to row ids beyond the {users} users"));
        }
        if repeated > 0 {
            c.problem(&path, format!("maps {repeated} row ids that another entry maps too"));
        }
        if of_forgotten > 0 {
            c.problem(&path, format!("maps {of_forgotten} user_ids to the row ids of forgotten users"));
        }
        entries += in_segment;
    }
    let live = u64::from(users) - forgotten.len().min(u64::from(users));
    if entries != live {
        let path = layout::manifest_path(c.root, manifest.version);
        c.problem(&path, format!("counts {live} users, but {DICTIONARY_COUNT} {entries} user_ids"));
    }
}

fn catalog(c: &mut Checker<'_>, manifest: &Manifest) {
    for set in manifest.catalog.set_files() {
        if let Some(path) = c.present(&set.path, Some(set.bytes)) {
            let outcome = read_set(c.root, set).map(|_| ());
            c.verify(&path, outcome);
        }
    }
    for log in &manifest.load_log {
        if let Some(path) = c.present(&log.path, Some(log.bytes)) {
            let outcome = crate::store::load_log::read(c.root, log).map(|_| ());
            c.verify(&path, outcome);
        }
    }
}

/// The identity resolution's files (see the module doc).
fn identity(c: &mut Checker<'_>, manifest: &Manifest) {
    use crate::store::identity::{STATE_BASE_MAGIC, STATE_DELTA_MAGIC, verify_state_file};
    let Some(r) = &manifest.identity.resolution else { return };
    let (mut links, mut counted) = (0u64, true);
    for relative in r.link_files() {
        let Some(path) = c.present(relative, None) else {
            counted = false;
            continue;
        };
        match parquet_row_count(&path) {
            Ok(n) => links += n,
            Err(e) => {
                counted = false;
                c.verify(&path, Err(e));
            }
        }
    }
    // Links of forgotten users stay in the files, hidden, until a purge.
    let recorded = r.link_rows + r.forgotten_links;
    if counted && links != recorded {
        let first = layout::resolve(c.root, &r.links);
        c.problem(&first, format!("the identity links files hold {links} links; the manifest recorded {recorded}"));
    }
    if let Some(path) = c.present(&r.persons, None) {
        let outcome = parquet_rows(&path, r.users, "the manifest recorded");
        c.verify(&path, outcome);
    }
    if let Some(relative) = &r.link_overrides
        && let Some(path) = c.present(relative, None)
    {
        let outcome = parquet_row_count(&path).map(drop);
        c.verify(&path, outcome);
    }
    let states =
        r.state_base.iter().map(|f| (f, STATE_BASE_MAGIC)).chain(r.state_deltas.iter().map(|f| (f, STATE_DELTA_MAGIC)));
    for (relative, magic) in states {
        if let Some(path) = c.present(relative, None) {
            let outcome = verify_state_file(&path, magic);
            c.verify(&path, outcome);
        }
    }
    if let Some(relative) = &r.state {
        c.present(relative, None);
    }
}
