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
    /// Copy every file, even on the same file system: the backup then shares no bytes with the
    /// store (hard links share them, so damage to one file reaches both names).
    #[arg(long)]
    pub copy: bool,
}

pub fn run(args: BackupArgs) -> Result<()> {
    let store = Store::open(&args.store)?;
    let placement = if args.copy {
        crate::store::backup::Placement::Copy
    } else {
        crate::store::backup::Placement::LinkWherePossible
    };
    let report = crate::store::backup::backup_with(&store, &args.to, placement)?;
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
