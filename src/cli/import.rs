//! `persona import`: loads files and folders into a store with a progress bar and a one-line summary.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Result;
use crate::ingest::{ImportOptions, ImportSummary, dry_run_without_store};
use crate::store::{Store, layout};
use crate::tables::Table;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The store directory (created if it does not exist).
    #[arg(long)]
    pub store: PathBuf,
    /// CSV or Parquet files, or folders of them, named after their tables.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Load every input into this table instead of recognising tables by name.
    #[arg(long, value_parser = parse_table)]
    pub table: Option<Table>,
    /// Validate everything, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// After the import, re-evaluate every rule tag (REFRESH TAGS) as one more version.
    #[arg(long, conflicts_with = "dry_run")]
    pub refresh_tags: bool,
    /// Do not compact afterwards, even when the store has many small files (see `persona compact`).
    #[arg(long)]
    pub no_compact: bool,
    /// With --refresh-tags: pin now() / current_date for the rules, e.g. 2026-11-01.
    #[arg(long, requires = "refresh_tags", value_parser = super::parse_now)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

fn parse_table(s: &str) -> std::result::Result<Table, String> {
    s.parse::<Table>().map_err(|e| e.to_string())
}

pub fn run(args: ImportArgs) -> Result<()> {
    let bar = super::progress_bar(
        0,
        args.quiet,
        "{spinner} importing [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    );
    let progress_bar = bar.clone();
    let options = ImportOptions {
        table: args.table,
        dry_run: args.dry_run,
        progress: Some(Arc::new(move |done, total| {
            progress_bar.set_length(total);
            progress_bar.set_position(done);
        })),
    };
    let summary = if args.dry_run && !layout::current_file(&args.store).exists() {
        dry_run_without_store(&args.inputs, &options)
    } else if args.dry_run {
        Store::open(&args.store)?.import(&args.inputs, &options)
    } else {
        Store::open_or_create(&args.store)?.import(&args.inputs, &options)
    };
    bar.finish_and_clear();
    let summary = summary?;
    eprintln!("{}", describe(&summary));
    if summary.version.is_some() && !args.no_compact {
        let store = Store::open(&args.store)?;
        if crate::ingest::compact::compaction_due(store.snapshot()?.manifest()) {
            // The import is committed whatever happens here: a failed compaction is a warning.
            match store.compact(&crate::ingest::compact::CompactOptions::default()) {
                Ok(compacted) => {
                    eprintln!("{}", super::compact::describe(&args.store.display().to_string(), &compacted))
                }
                Err(e) => eprintln!("warning: the import is committed, but compacting afterwards failed: {e}"),
            }
        }
    }
    if args.refresh_tags {
        let store = Store::open(&args.store)?;
        if store.snapshot()?.manifest().catalog.tags.is_empty() {
            eprintln!("no rule tags to refresh");
            return Ok(());
        }
        let session = store.session_with(&crate::engine::SessionOptions { now: args.now, ..Default::default() })?;
        let rt = super::runtime()?;
        let report = rt.block_on(session.query("REFRESH TAGS"))?;
        for batch in &report {
            let names = arrow::array::AsArray::as_string::<i32>(batch.column(0));
            let users = arrow::array::AsArray::as_primitive::<arrow::datatypes::UInt64Type>(batch.column(1));
            let added = arrow::array::AsArray::as_primitive::<arrow::datatypes::UInt64Type>(batch.column(2));
            let removed = arrow::array::AsArray::as_primitive::<arrow::datatypes::UInt64Type>(batch.column(3));
            for row in 0..batch.num_rows() {
                eprintln!(
                    "refreshed tag {}: {} users (+{} −{})",
                    names.value(row),
                    users.value(row),
                    added.value(row),
                    removed.value(row)
                );
            }
        }
        eprintln!("rule tags refreshed as version {}", session.snapshot().version());
    }
    Ok(())
}

/// The one-line summary of an import.
pub fn describe(s: &ImportSummary) -> String {
    let rows = s.rows.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", ");
    let head = match s.version {
        Some(v) => format!("imported {} file(s) as version {v}", s.files),
        None => format!("dry run: {} file(s) are valid, nothing was changed", s.files),
    };
    let columns = if s.new_columns.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = s.new_columns.iter().map(|c| format!("{} {}", c.name, c.ty.sql_name())).collect();
        format!("; new column(s): {}", list.join(", "))
    };
    format!(
        "{head}: {rows} rows; {} new and {} updated users{columns}; {:.1} s",
        s.new_users,
        s.updated_users,
        s.elapsed.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{ColumnDef, ColumnType, Table};

    /// Before, new custom columns were created without a word.
    #[test]
    fn the_summary_names_new_columns_with_their_types() {
        let mut summary = ImportSummary {
            version: Some(3),
            rows: vec![(Table::Users, 2)],
            new_users: 0,
            updated_users: 2,
            new_columns: vec![
                ColumnDef { name: "fav_color".into(), ty: ColumnType::Utf8 },
                ColumnDef { name: "score".into(), ty: ColumnType::Int64 },
            ],
            files: 1,
            elapsed: std::time::Duration::from_millis(100),
        };
        assert_eq!(
            describe(&summary),
            "imported 1 file(s) as version 3: users 2 rows; 0 new and 2 updated users; new column(s): fav_color VARCHAR, score BIGINT; 0.1 s"
        );
        summary.new_columns.clear();
        assert_eq!(
            describe(&summary),
            "imported 1 file(s) as version 3: users 2 rows; 0 new and 2 updated users; 0.1 s"
        );
    }
}
