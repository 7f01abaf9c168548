//! `persona vacuum`: removes old versions and every file no kept version refers to (see
//! `store::vacuum`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::error::Result;
use crate::store::Store;
use crate::store::vacuum::{KeepPolicy, parse_age};

#[derive(Debug, Args)]
pub struct VacuumArgs {
    /// The store to clean.
    #[arg(long)]
    pub store: PathBuf,
    /// Keep the newest N versions (the current one is always kept).
    #[arg(long, value_name = "N")]
    pub keep_versions: Option<u64>,
    /// Remove versions committed longer ago than this: 90s, 30m, 12h, 7d, 2w.
    #[arg(long, value_name = "DURATION", value_parser = parse_age)]
    pub older_than: Option<Duration>,
}

pub fn run(args: VacuumArgs) -> Result<()> {
    let store = Store::open(&args.store)?;
    let (purged, report) = store.vacuum(KeepPolicy { versions: args.keep_versions, newer_than: args.older_than })?;
    if let Some(version) = purged.version {
        eprintln!(
            "purged {} dead row(s) of forgotten users from {} file(s) as version {version}",
            purged.rows, purged.files
        );
    }
    let mib = report.freed_bytes as f64 / (1024.0 * 1024.0);
    let kept = match (report.kept_versions.first(), report.kept_versions.last()) {
        (Some(a), Some(b)) if a != b => format!("versions {a}–{b}"),
        (Some(a), _) => format!("version {a}"),
        _ => "nothing".to_string(),
    };
    eprintln!(
        "vacuumed {}: removed {} version(s) and {} file(s), {mib:.1} MiB freed; kept {kept}",
        args.store.display(),
        report.removed_versions.len(),
        report.removed_files
    );
    Ok(())
}
