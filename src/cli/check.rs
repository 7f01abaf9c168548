//! `persona check`: verifies a store's current version file by file (see `store::check`), prints
//! every problem as `path: what`, and exits non-zero when there is one; with `--repair`, rebuilds
//! the damaged derived files as a new version (see `ingest::repair`) and checks again; with
//! `--deep`, also compares the index with one rebuilt from the data.

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The store to verify.
    #[arg(long)]
    pub store: PathBuf,
    /// Rebuild what is derived from the data (copies, day times, the index, the id dictionary)
    /// where it is damaged, as one new version, then check again. Damaged data files are
    /// reported, not fixed: restore them from a backup.
    #[arg(long)]
    pub repair: bool,
    /// Also rebuild the index from the data files (in a scratch folder) and compare it with the
    /// stored one, bitmap by bitmap.
    #[arg(long)]
    pub deep: bool,
}

pub fn run(args: CheckArgs) -> Result<()> {
    let store = Store::open(&args.store)?;
    if args.repair {
        let summary = store.repair()?;
        for line in &summary.rebuilt {
            eprintln!("repaired {line}");
        }
        match summary.version {
            Some(v) => eprintln!("repairs committed as version {v}"),
            None if summary.unrepairable.is_empty() => eprintln!("nothing to repair"),
            None => eprintln!("nothing derived to repair"),
        }
    }
    let mut report = crate::store::check::check(&store, crate::index::format::verify_file)?;
    if args.deep && report.problems.is_empty() {
        report.problems.extend(crate::ingest::repair::index_differences(&store)?);
    }
    let mib = report.bytes as f64 / (1024.0 * 1024.0);
    for p in &report.problems {
        println!("{}: {}", p.path.display(), p.what);
    }
    if report.problems.is_empty() {
        eprintln!(
            "version {} of {}: {} files, {mib:.1} MiB verified; no problem found",
            report.version,
            args.store.display(),
            report.files
        );
        return Ok(());
    }
    Err(Error::Failed(format!(
        "version {} of {} has {} problem(s) (listed above) in {} files checked",
        report.version,
        args.store.display(),
        report.problems.len(),
        report.files
    )))
}
