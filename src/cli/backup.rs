//! `persona backup`: a consistent copy of a store's current version into a new folder, while
//! imports and queries go on (see `store::backup`).

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The store to copy.
    #[arg(long)]
    pub store: PathBuf,
    /// The new folder to copy it to (must not exist, or be empty).
    #[arg(long)]
    pub to: PathBuf,
}

pub fn run(args: BackupArgs) -> Result<()> {
    let store = Store::open(&args.store)?;
    let report = crate::store::backup::backup(&store, &args.to)?;
    let mib = report.bytes as f64 / (1024.0 * 1024.0);
    eprintln!(
        "backed up version {} of {} to {}: {} files, {mib:.1} MiB ({} hard-linked, {} copied) in {:.1} s",
        report.version,
        args.store.display(),
        args.to.display(),
        report.files,
        report.linked,
        report.files - report.linked,
        report.seconds
    );
    Ok(())
}
