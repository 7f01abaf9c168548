//! `persona sql`: runs SQL from `-c`, `-f` or standard input against a store and writes the results
//! as a table, CSV, JSON or Parquet. Statements run in order on one pinned snapshot.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use crate::error::{Error, IoContext, Result, position_snippet};
use crate::output::{OutputFormat, write_stream};
use crate::query::{SessionOptions, parse};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// The store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// SQL to run (one or more statements).
    #[arg(short = 'c', long = "command", conflicts_with = "file")]
    pub command: Option<String>,
    /// A file of SQL statements.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Write results to this file instead of standard output.
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
}

pub fn run(args: SqlArgs) -> Result<()> {
    let sql = match (&args.command, &args.file) {
        (Some(c), _) => c.clone(),
        (None, Some(f)) => std::fs::read_to_string(f).io_context("read", f)?,
        (None, None) => {
            if std::io::stdin().is_terminal() {
                return Err(Error::Usage(
                    "give SQL with -c, -f FILE or on standard input (or use persona shell)".into(),
                ));
            }
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).io_context("read", std::path::Path::new("<stdin>"))?;
            s
        }
    };
    if args.format == OutputFormat::Parquet && args.output.is_none() {
        return Err(Error::Usage("--format parquet needs --output FILE".into()));
    }
    let store = Store::open(&args.store)?;
    let options = SessionOptions { now: args.now, use_indexes: Some(!args.no_indexes), ..Default::default() };
    let rt = super::runtime()?;
    let result = rt.block_on(run_script(&store, &options, &sql, &args));
    if let Err(Error::Sql { position: Some((line, col)), .. }) = &result {
        super::set_error_context(position_snippet(&sql, *line, *col));
    }
    result
}

async fn run_script(store: &Store, options: &SessionOptions, sql: &str, args: &SqlArgs) -> Result<()> {
    let session = store.session_with(options)?;
    let statements = parse(sql)?;
    if statements.is_empty() {
        return Err(Error::Usage("no SQL statement was given".into()));
    }
    let (mut out, target): (Box<dyn Write + Send>, PathBuf) = match &args.output {
        Some(path) => {
            (Box::new(std::io::BufWriter::new(std::fs::File::create(path).io_context("create", path)?)), path.clone())
        }
        None => (Box::new(std::io::BufWriter::new(std::io::stdout())), PathBuf::from("<stdout>")),
    };
    let show_timing =
        args.timing || (args.format == OutputFormat::Table && args.output.is_none() && std::io::stdout().is_terminal());
    let several = statements.len() > 1;
    for (i, statement) in statements.into_iter().enumerate() {
        let started = Instant::now();
        let plan = session.plan(statement).await?;
        let stream = session.execute(plan).await?;
        if several && i > 0 && args.format == OutputFormat::Table {
            writeln!(out).io_context("write", &target)?;
        }
        let rows = write_stream(stream, args.format, &mut out, &target).await?;
        if show_timing {
            eprintln!("{rows} row(s) in {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    out.flush().io_context("flush", &target)
}
