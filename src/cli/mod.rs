//! The `persona` command line: the clap command tree and dispatch to one file per subcommand.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod backup;
pub mod check;
pub mod compact;
pub mod demo;
pub mod forget;
pub mod r#gen;
pub mod identity;
pub mod import;
pub mod materialize;
pub mod report;
pub mod shell;
pub mod sql;
pub mod vacuum;

use clap::{Parser, Subcommand};

use crate::error::Result;

/// Persona: an embedded customer-profile store with bitmap-fast audience SQL.
#[derive(Debug, Parser)]
#[command(name = "persona", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a realistic synthetic data set (the five contract tables).
    Gen(r#gen::GenArgs),
    /// Load CSV or Parquet files into a store (creating it if needed).
    Import(import::ImportArgs),
    /// Write saved audiences to files for campaign tools (for cron).
    Materialize(materialize::MaterializeArgs),
    /// Run SQL against a store.
    Sql(sql::SqlArgs),
    /// Write a self-contained HTML report (portrait, TGI, overlap, RFM, lifecycle) of an audience.
    ///
    /// Writes one HTML page (inline SVG and CSS; no scripts, fonts or links to anything outside
    /// it) about a saved audience or a tag: its size; its portrait with TGI over the profile
    /// columns, bands of the range-indexed columns and its most distinguishing tags; its overlap
    /// with those tags; the RFM grid of its buyers; and its lifecycle stages with the store-wide
    /// lifecycle flow. Every figure comes from SQL (breakdown, top_tags, overlap, rfm, lifecycle,
    /// lifecycle_flow), shown under its chart.
    Report(report::ReportArgs),
    /// Copy the current version of a store to a new folder (consistent while imports run).
    ///
    /// Every file the version refers to is hard-linked where the new folder is on the same file
    /// system (store files never change once written) and copied otherwise; the copy is built
    /// beside the target and renamed into place when complete, then opened to check it.
    Backup(backup::BackupArgs),
    /// Verify every file of a store's current version and name each problem found.
    ///
    /// Checks that every referenced file exists with its recorded size; that data files have
    /// readable footers and their row counts; that copies map and hold their rows; the checksums
    /// of the index, the id dictionary and the catalog sets; and that row ids and user_ids are
    /// consistent. Exits 1 when anything is wrong, printing each problem as `path: what`.
    /// --deep also compares the index with one rebuilt from the data; --repair first rebuilds
    /// the damaged copies, index and id dictionary from the data as a new version.
    Check(check::CheckArgs),
    /// Remove old versions of a store and every file no kept version refers to.
    ///
    /// Give --keep-versions N, --older-than DURATION, or both (a version goes only when every
    /// rule given lets it go; the current version always stays). Takes the writer lock. A reader
    /// still pinned to a removed version keeps the files it has open, but cannot open others:
    /// keep versions for longer than your longest query or shell session.
    Vacuum(vacuum::VacuumArgs),
    /// Merge the small data files and id-dictionary segments that many small imports leave.
    ///
    /// Commits one new version with the same answers: small fact files rewritten as bounded
    /// files sorted by user, adjacent small users files as one, small id segments as one.
    /// `persona import` does it by itself once a table has 64 small files (--no-compact turns
    /// that off). Takes the writer lock; readers keep their version; `persona vacuum` removes the
    /// replaced files.
    Compact(compact::CompactArgs),
    /// Forget users (PIPL / GDPR erasure): remove them from every table, index and audience.
    ///
    /// Give --user-id ID (repeatable) or --file IDS.csv (one user_id per line, an optional
    /// `user_id` header). Commits one new version without them; their row ids are never given
    /// out again. Their data stays in older versions until `persona vacuum` removes those, and in
    /// any backup taken before (docs/lifecycle.md). Takes the writer lock.
    Forget(forget::ForgetArgs),
    /// Show or set the identity rules, and report how users resolve into persons.
    ///
    /// `persona identity rules --store S` prints the rules in force as JSON; `--set FILE` sets
    /// them (a new version; the users are resolved into persons again). `persona identity report
    /// --store S` counts users, persons and the identifier links rejected, by reason
    /// (docs/identity.md).
    Identity(identity::IdentityArgs),
    /// Explore a store in an interactive SQL shell (reads a script when input is not a terminal).
    Shell(shell::ShellArgs),
    /// Build a 100,000-customer demo store and answer audience questions on it.
    Demo(demo::DemoArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Gen(args) => r#gen::run(args),
        Command::Import(args) => import::run(args),
        Command::Materialize(args) => {
            // A bad option is a command-line error (exit code 2). Checked here until
            // cli/materialize.rs reports its own option errors as `Error::Arguments`.
            if args.max_rows_per_file == Some(0) {
                return Err(crate::Error::Arguments("--max-rows-per-file must be at least 1".into()));
            }
            materialize::run(args)
        }
        Command::Sql(args) => sql::run(args),
        Command::Report(args) => report::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Check(args) => check::run(args),
        Command::Vacuum(args) => vacuum::run(args),
        Command::Forget(args) => forget::run(args),
        Command::Compact(args) => compact::run(args),
        Command::Identity(args) => identity::run(args),
        Command::Shell(args) => shell::run(args),
        Command::Demo(args) => demo::run(args),
    }
}

static ERROR_CONTEXT: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Remembers text to show under the error message (e.g. the SQL line with a caret).
pub fn set_error_context(text: String) {
    if let Ok(mut c) = ERROR_CONTEXT.lock() {
        *c = Some(text);
    }
}

/// Prints an error as `error: <sentence>`, its causes, and any context a command left.
pub fn report_error(e: &crate::Error) {
    eprintln!("{}", e.report());
    if let Some(context) = ERROR_CONTEXT.lock().ok().and_then(|mut c| c.take()).filter(|c| !c.is_empty()) {
        eprintln!("{context}");
    }
}

/// A progress bar on stderr when it is a terminal and not silenced; hidden otherwise.
pub fn progress_bar(total: u64, quiet: bool, template: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A multi-threaded runtime for the commands that run queries.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| crate::Error::Io {
        op: "start the async runtime",
        path: ".".into(),
        source: e,
    })
}

/// Parses `--memory-limit` values: bytes with a unit, as `SET datafusion.runtime.memory_limit`
/// takes them (`512M`, `2G`, `1.5G`).
pub fn parse_memory_limit(s: &str) -> std::result::Result<usize, String> {
    datafusion::prelude::SessionContext::parse_capacity_limit("--memory-limit", s).map_err(|e| {
        let text = e.to_string();
        let detail = text.strip_prefix("Error during planning: ").unwrap_or(&text);
        format!("{detail} (e.g. 512M or 2G)")
    })
}

/// Parses `--now` values: a timestamp as the importer accepts them (`2026-11-01`, `2026-11-01 00:00:00`, with zone).
pub fn parse_now(s: &str) -> std::result::Result<chrono::DateTime<chrono::Utc>, String> {
    crate::ingest::contract::parse_timestamp_micros(s)
        .and_then(chrono::DateTime::from_timestamp_micros)
        .ok_or_else(|| format!("'{s}' is not a timestamp (e.g. 2026-11-01 or 2026-11-01T00:00:00Z)"))
}
