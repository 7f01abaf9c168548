//! `persona materialize`: writes saved audiences to files for campaign tools, for cron. Each
//! audience is evaluated on the newest version, recorded as a new version when its members
//! changed, and written atomically (temporary name, then rename) as `OUT/<name>.parquet` (or
//! `.csv`, or parts `<name>-00000.parquet`, ... with `--max-rows-per-file`). A rerun with nothing
//! changed records nothing and rewrites the same rows. One failing audience does not stop the
//! others; the command then exits non-zero naming it, and leaves no partial file.
//!
//! The audiences of one run are evaluated in dependency order (one that suppresses or reads
//! another comes after it) and recorded as one version. The files written are listed in
//! `OUT/.persona-materialize.json`, so that the next run removes what it wrote before and no
//! longer writes (the single file after a switch to parts, or back; the `.csv` after a switch to
//! Parquet; every file of an audience since dropped), and never a file it did not write.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::{ExportCompression, MaterializeOptions, MaterializeReport, SessionOptions};
use crate::error::{Error, Result};
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileKind {
    Parquet,
    Csv,
}

#[derive(Debug, clap::Args)]
pub struct MaterializeArgs {
    /// The store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// Every saved audience.
    #[arg(long, conflicts_with = "audience")]
    pub all: bool,
    /// A saved audience (repeat for several).
    #[arg(long, required_unless_present = "all")]
    pub audience: Vec<String>,
    /// The directory to write the files into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// File format.
    #[arg(long, value_enum, default_value_t = FileKind::Parquet)]
    pub format: FileKind,
    /// Write only the changes since this version of each audience: added members, then removed
    /// user_ids, with a `change` column.
    #[arg(long)]
    pub changes_since: Option<u32>,
    /// Split each audience into files of at most this many rows.
    #[arg(long)]
    pub max_rows_per_file: Option<u64>,
    /// Parquet compression (default none: contact columns are unique strings that shrink about
    /// 2.3× with snappy, for about 60 % more time; compress files that travel far).
    #[arg(long, value_enum, default_value_t = ExportCompression::None)]
    pub compression: ExportCompression,
    /// Pin now() / current_date for the audiences' queries, e.g. 2026-11-01.
    #[arg(long, value_parser = super::parse_now)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// Hold the queries to this much memory (e.g. 2G): a query that needs more spills or fails with
    /// "resources exhausted"; as `SET datafusion.runtime.memory_limit = '2G'`.
    #[arg(long, value_name = "BYTES", value_parser = super::parse_memory_limit)]
    pub memory_limit: Option<usize>,
    /// No per-audience lines, only errors.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: MaterializeArgs) -> Result<()> {
    if args.max_rows_per_file == Some(0) {
        return Err(Error::Arguments("--max-rows-per-file must be at least 1".into()));
    }
    let store = Store::open(&args.store)?;
    std::fs::create_dir_all(&args.out).map_err(|e| Error::Io { op: "create", path: args.out.clone(), source: e })?;
    let session =
        store.session_with(&SessionOptions { now: args.now, memory_limit: args.memory_limit, ..Default::default() })?;
    let names = if args.all {
        crate::audience::commands::audience_names(&session.snapshot().manifest().catalog)
    } else {
        args.audience.clone()
    };
    if names.is_empty() {
        // A scheduled `--all` must not break when the last audience is dropped: nothing to do.
        eprintln!(
            "note: store {} has no saved audiences; nothing to materialize (CREATE AUDIENCE name AS SELECT user_id FROM ... saves one)",
            args.store.display()
        );
        return Ok(());
    }
    let ext = match args.format {
        FileKind::Parquet => "parquet",
        FileKind::Csv => "csv",
    };
    let rt = super::runtime()?;
    let requests: Vec<(String, MaterializeOptions)> = names
        .iter()
        .map(|name| {
            let options = MaterializeOptions {
                target: Some(args.out.join(format!("{name}.{ext}"))),
                changes_since: args.changes_since,
                max_rows_per_file: args.max_rows_per_file,
                compression: Some(args.compression),
            };
            (name.clone(), options)
        })
        .collect();
    let results = rt.block_on(session.materialize_many(&requests))?;
    let mut ledger = Ledger::read(&args.out, &args.store);
    let mut failed: Vec<String> = Vec::new();
    for (name, result) in results {
        match result {
            Ok(report) => {
                ledger.replace(&name, &report.files);
                if !args.quiet {
                    println!("{}", describe(&report));
                }
            }
            Err(e) => {
                eprintln!("{name}: failed: {e}");
                failed.push(name.clone());
            }
        }
    }
    // Files of audiences dropped since they were written.
    let catalog = session.snapshot().manifest().catalog.clone();
    for gone in ledger.audiences().into_iter().filter(|a| catalog.audience(a).is_none()) {
        let removed = ledger.replace(&gone, &[]);
        if !args.quiet && removed > 0 {
            println!("{gone}: dropped from the store; its {removed} file(s) removed from {}", args.out.display());
        }
    }
    ledger.write()?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "{} of {} audiences failed ({}); their previous files are unchanged",
            failed.len(),
            names.len(),
            failed.join(", ")
        )))
    }
}

/// The file in an output directory that lists what `persona materialize` wrote there.
const LEDGER: &str = ".persona-materialize.json";

/// Which files of an output directory each audience's last export wrote (names relative to it).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Ledger {
    #[serde(skip)]
    dir: PathBuf,
    /// The store this run exports (audiences of other stores exporting here are not "dropped").
    #[serde(skip)]
    store: String,
    #[serde(default)]
    audiences: BTreeMap<String, Exported>,
}

/// What one audience's last export wrote.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Exported {
    /// The store the audience belongs to (its canonical path).
    store: String,
    files: Vec<String>,
}

impl Ledger {
    /// The directory's ledger; none (or an unreadable one) is an empty ledger: nothing is removed
    /// that is not known to be ours.
    fn read(dir: &Path, store: &Path) -> Ledger {
        let mut ledger: Ledger =
            std::fs::read(dir.join(LEDGER)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        ledger.dir = dir.to_path_buf();
        ledger.store = std::fs::canonicalize(store).unwrap_or_else(|_| store.to_path_buf()).display().to_string();
        ledger
    }

    /// The audiences of this run's store that have files here.
    fn audiences(&self) -> Vec<String> {
        self.audiences.iter().filter(|(_, e)| e.store == self.store).map(|(name, _)| name.clone()).collect()
    }

    /// Records `files` as `audience`'s current files and removes those it had before and has no
    /// longer; returns how many were removed.
    fn replace(&mut self, audience: &str, files: &[PathBuf]) -> usize {
        let now: Vec<String> =
            files.iter().filter_map(|f| f.file_name().and_then(|n| n.to_str()).map(str::to_string)).collect();
        let before = self.audiences.remove(audience).map(|e| e.files).unwrap_or_default();
        let mut removed = 0;
        for old in before.iter().filter(|f| !now.contains(f)) {
            // Only plain names: a damaged ledger must not reach outside the directory.
            if Path::new(old).components().count() == 1 && !old.starts_with('.') {
                let path = self.dir.join(old);
                if std::fs::remove_file(&path).is_ok() {
                    removed += 1;
                }
            }
        }
        if !now.is_empty() {
            self.audiences.insert(audience.to_string(), Exported { store: self.store.clone(), files: now });
        }
        removed
    }

    /// Writes the ledger under a temporary name and renames it into place.
    fn write(&self) -> Result<()> {
        let path = self.dir.join(LEDGER);
        let tmp = self.dir.join(format!("{LEDGER}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Internal(format!("the export ledger: {e}")))?;
        std::fs::write(&tmp, bytes).map_err(|e| Error::Io { op: "write", path: tmp.clone(), source: e })?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::Io { op: "rename", path: path.clone(), source: e })
    }
}

/// One line per audience: what was written and what changed.
pub fn describe(r: &MaterializeReport) -> String {
    let version =
        if r.unchanged { format!("version {} (unchanged)", r.version) } else { format!("version {}", r.version) };
    let files = r.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
    let mut line = format!(
        "{}: {version}, {} rows written to {files}; {} members (+{} −{}), {} held out, {} suppressed; now() = {}; {:.0} ms",
        r.audience, r.rows_written, r.members, r.added, r.removed, r.holdout, r.suppressed, r.now, r.elapsed_ms
    );
    if let Some(note) = &r.note {
        line.push_str(&format!(" ({note})"));
    }
    line
}
