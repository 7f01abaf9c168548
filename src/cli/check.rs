//! `persona check`: verifies a store's current version file by file (see `store::check`), prints
//! every problem as `path: what`, and exits non-zero when there is one.

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The store to verify.
    #[arg(long)]
    pub store: PathBuf,
}

pub fn run(args: CheckArgs) -> Result<()> {
    let store = Store::open(&args.store)?;
    let report = crate::store::check::check(&store, crate::index::format::verify_file)?;
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
