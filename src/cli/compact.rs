//! `persona compact`: merges a store's small data files and id-dictionary segments into bounded
//! ones as one new version (see `ingest::compact`), and the one-line report of a compaction.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::ingest::compact::{CompactOptions, CompactSummary};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The store to compact.
    #[arg(long)]
    pub store: PathBuf,
    /// Rows per compacted fact file (purchases, events, user_tags); also the most rows held in
    /// memory at once. Files under a quarter of it are merged.
    #[arg(long, value_name = "ROWS", value_parser = clap::value_parser!(u64).range(1..))]
    pub fact_rows: Option<u64>,
    /// Rows per compacted users file.
    #[arg(long, value_name = "ROWS", value_parser = clap::value_parser!(u64).range(1..))]
    pub users_rows: Option<u64>,
}

pub fn run(args: CompactArgs) -> Result<()> {
    let store = Store::open(&args.store)?;
    let defaults = CompactOptions::default();
    let options = CompactOptions {
        fact_rows: args.fact_rows.unwrap_or(defaults.fact_rows),
        users_rows: args.users_rows.unwrap_or(defaults.users_rows),
        ..defaults
    };
    let summary = store.compact(&options)?;
    eprintln!("{}", describe(&args.store.display().to_string(), &summary));
    Ok(())
}

/// The one-line report of a compaction of `store`.
pub fn describe(store: &str, s: &CompactSummary) -> String {
    let Some(version) = s.version else {
        return format!(
            "{store}: nothing to compact (no run of small files or segments, no identity state deltas due)"
        );
    };
    let mut parts: Vec<String> = s.tables.iter().map(|(t, a, b)| format!("{t} {a} → {b} files")).collect();
    if s.segments.0 != s.segments.1 {
        parts.push(format!("id segments {} → {}", s.segments.0, s.segments.1));
    }
    if s.identity_deltas > 0 {
        parts.push(format!("identity state {} deltas → a new base", s.identity_deltas));
    }
    format!("compacted {store} as version {version}: {}; {:.1} s", parts.join(", "), s.elapsed.as_secs_f64())
}
