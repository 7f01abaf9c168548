//! `persona sql`: runs SQL from `-c`, `-f` or standard input against a store and writes the results
//! as a table, vertical records, CSV, JSON or Parquet. Statements run in order on one pinned
//! snapshot; several results stay machine-readable (docs/sql.md "Writing results").
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::StreamExt;

use crate::engine::{Session, SessionOptions, Statement, parse};
use crate::error::{Error, IoContext, Result, position_snippet};
use crate::output::{OutputFormat, write_stream};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// The store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// SQL to run (one or more statements; may start with a `--` comment).
    #[arg(short = 'c', long = "command", conflicts_with = "file", allow_hyphen_values = true)]
    pub command: Option<String>,
    /// A file of SQL statements.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Write results to this file instead of standard output (Parquet: one file per statement
    /// when there are several, FILE-1.parquet, FILE-2.parquet, ...).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Pin now() / current_date to this instant, e.g. 2026-11-01, so that results reproduce.
    #[arg(long, value_parser = super::parse_now)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// Print each statement's row count and time to standard error.
    #[arg(long)]
    pub timing: bool,
    /// Do not answer from the bitmap indexes: DataFusion's general path for everything (the same
    /// answers, slower; as `SET persona.use_indexes = false`).
    #[arg(long)]
    pub no_indexes: bool,
    /// Hold the queries to this much memory (e.g. 2G): a query that needs more spills or fails with
    /// "resources exhausted"; as `SET datafusion.runtime.memory_limit = '2G'`.
    #[arg(long, value_name = "BYTES", value_parser = super::parse_memory_limit)]
    pub memory_limit: Option<usize>,
}

pub fn run(args: SqlArgs) -> Result<()> {
    let sql = match (&args.command, &args.file) {
        (Some(c), _) => c.clone(),
        (None, Some(f)) => std::fs::read_to_string(f).io_context("read", f)?,
        (None, None) => {
            if std::io::stdin().is_terminal() {
                return Err(Error::Arguments(
                    "give SQL with -c, -f FILE or on standard input (or use persona shell)".into(),
                ));
            }
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).io_context("read", std::path::Path::new("<stdin>"))?;
            s
        }
    };
    if args.format == OutputFormat::Parquet && args.output.is_none() {
        return Err(Error::Arguments("--format parquet needs --output FILE".into()));
    }
    let store = Store::open(&args.store)?;
    let options = SessionOptions {
        now: args.now,
        use_indexes: Some(!args.no_indexes),
        memory_limit: args.memory_limit,
        ..Default::default()
    };
    let rt = super::runtime()?;
    let closed = Arc::new(AtomicBool::new(false));
    let result = rt.block_on(run_script(&store, &options, &sql, &args, &closed));
    // A reader that stopped reading (`persona sql ... | head`) is a normal end, as for other tools.
    if result.is_err() && closed.load(Ordering::Relaxed) {
        return Ok(());
    }
    if let Err(Error::Sql { position: Some((line, col)), .. }) = &result {
        super::set_error_context(position_snippet(&sql, *line, *col));
    }
    result
}

async fn run_script(
    store: &Store,
    options: &SessionOptions,
    sql: &str,
    args: &SqlArgs,
    closed: &Arc<AtomicBool>,
) -> Result<()> {
    let session = store.session_with(options)?;
    let statements = parse(sql)?;
    if statements.is_empty() {
        return Err(Error::Arguments("no SQL statement was given".into()));
    }
    let several = statements.len() > 1;
    // Parquet writes one file per result; the other formats share one output.
    let mut shared: Option<(Box<dyn Write + Send>, PathBuf)> = match (&args.output, args.format) {
        (_, OutputFormat::Parquet) => None,
        (Some(path), _) => Some((
            Box::new(std::io::BufWriter::new(std::fs::File::create(path).io_context("create", path)?)),
            path.clone(),
        )),
        (None, _) => Some((
            Box::new(std::io::BufWriter::new(WatchedStdout { closed: Arc::clone(closed) })),
            PathBuf::from("<stdout>"),
        )),
    };
    let show_timing =
        args.timing || (args.format == OutputFormat::Table && args.output.is_none() && std::io::stdout().is_terminal());
    let mut results = 0usize;
    for (i, statement) in statements.into_iter().enumerate() {
        for warning in crate::lint::warnings(&session, &statement) {
            eprintln!("warning: {warning}");
        }
        let started = Instant::now();
        let outcome = run_statement(&session, statement.clone(), args, &mut shared, several, i + 1, &mut results).await;
        let rows = outcome.map_err(|e| crate::lint::explain_error(&statement, e))?;
        if show_timing && let Some(rows) = rows {
            eprintln!("{rows} row(s) in {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    match &mut shared {
        Some((out, target)) => out.flush().io_context("flush", target),
        None => Ok(()),
    }
}

/// Runs one statement and writes its result; `None` for a statement without one (`SET`).
async fn run_statement(
    session: &Session,
    statement: Statement,
    args: &SqlArgs,
    shared: &mut Option<(Box<dyn Write + Send>, PathBuf)>,
    several: bool,
    number: usize,
    results: &mut usize,
) -> Result<Option<u64>> {
    let plan = session.plan(statement).await?;
    let mut stream = session.execute(plan).await?;
    if stream.schema().fields().is_empty() {
        // SET and the like: run to the end, print nothing (no separator either).
        while let Some(batch) = stream.next().await {
            batch?;
        }
        return Ok(None);
    }
    *results += 1;
    let rows = match shared {
        Some((out, target)) => {
            if *results > 1 {
                separate(args.format, out.as_mut(), target)?;
            }
            write_stream(stream, args.format, out.as_mut(), target).await?
        }
        None => {
            let base = args.output.as_deref().ok_or_else(|| Error::Internal("Parquet output without a file".into()))?;
            let path = if several { numbered(base, number) } else { base.to_path_buf() };
            let mut out = std::io::BufWriter::new(std::fs::File::create(&path).io_context("create", &path)?);
            let rows = write_stream(stream, args.format, &mut out, &path).await?;
            if several {
                eprintln!("wrote {} ({rows} row(s))", path.display());
            }
            rows
        }
    };
    Ok(Some(rows))
}

/// What goes between two result sets: a blank line for tables, vertical records and CSV (each
/// CSV result has its own header); nothing for JSON, whose results are one line each.
fn separate(format: OutputFormat, out: &mut (dyn Write + Send), target: &Path) -> Result<()> {
    match format {
        OutputFormat::Table | OutputFormat::Vertical | OutputFormat::Csv => writeln!(out).io_context("write", target),
        OutputFormat::Json | OutputFormat::Parquet => Ok(()),
    }
}

/// `out.parquet` → `out-3.parquet` for statement 3.
pub fn numbered(path: &Path, number: usize) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{number}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{number}"),
    };
    path.with_file_name(name)
}

/// Standard output that remembers when the reader went away (a closed pipe), so that the end of
/// the run can tell a normal end from a failure.
struct WatchedStdout {
    closed: Arc<AtomicBool>,
}

impl WatchedStdout {
    fn watch<T>(&self, result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &result
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            self.closed.store(true, Ordering::Relaxed);
        }
        result
    }
}

impl Write for WatchedStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let result = std::io::stdout().lock().write(buf);
        self.watch(result)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = std::io::stdout().lock().flush();
        self.watch(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_files_keep_the_extension() {
        assert_eq!(numbered(Path::new("out/two.parquet"), 2), PathBuf::from("out/two-2.parquet"));
        assert_eq!(numbered(Path::new("two"), 1), PathBuf::from("two-1"));
    }

    /// Before `allow_hyphen_values`, `-c "-- comment\nSELECT 1"` was refused as an unknown flag.
    #[test]
    fn a_command_may_start_with_a_comment() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: SqlArgs,
        }
        let cli = Cli::try_parse_from(["persona", "--store", "s", "-c", "-- daily report\nSELECT 1"])
            .expect("a leading comment is SQL, not a flag");
        assert_eq!(cli.args.command.as_deref(), Some("-- daily report\nSELECT 1"));
    }
}
