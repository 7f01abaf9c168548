//! `persona shell`: options of the interactive SQL shell; the shell itself is [`crate::shell`].
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::output::OutputFormat;
use crate::shell::{ShellOptions, history_path};
use crate::store::layout;

/// The store the shell opens when none is given: the one `persona demo` builds.
const DEMO_STORE: &str = "persona-demo";

#[derive(Debug, clap::Args)]
pub struct ShellArgs {
    /// The store directory [default: ./persona-demo, when it exists].
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Pin now() / current_date to this instant, e.g. 2026-11-01, so that results reproduce.
    #[arg(long, value_parser = super::parse_now)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// Do not answer from the bitmap indexes: DataFusion's general path for everything (the same
    /// answers; `SET persona.use_indexes = true` turns them back on).
    #[arg(long)]
    pub no_indexes: bool,
    /// Hold the queries to this much memory (e.g. 2G): a query that needs more spills or fails with
    /// "resources exhausted"; as `SET datafusion.runtime.memory_limit = '2G'`.
    #[arg(long, value_name = "BYTES", value_parser = super::parse_memory_limit)]
    pub memory_limit: Option<usize>,
    /// How results are written at start (\format changes it).
    #[arg(long, value_enum, default_value_t = ShellFormat::Table)]
    pub format: ShellFormat,
    /// Neither read nor write the history file ($PERSONA_HISTORY, else
    /// $XDG_STATE_HOME/persona/history, else ~/.local/state/persona/history).
    #[arg(long)]
    pub no_history: bool,
}

/// The formats the shell writes (Parquet is not one: a terminal cannot show it; use COPY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShellFormat {
    Table,
    /// One block of `column | value` lines per row.
    Vertical,
    Csv,
    Json,
}

impl From<ShellFormat> for OutputFormat {
    fn from(f: ShellFormat) -> OutputFormat {
        match f {
            ShellFormat::Table => OutputFormat::Table,
            ShellFormat::Vertical => OutputFormat::Vertical,
            ShellFormat::Csv => OutputFormat::Csv,
            ShellFormat::Json => OutputFormat::Json,
        }
    }
}

pub fn run(args: ShellArgs) -> Result<()> {
    let store = match args.store {
        Some(dir) => dir,
        None if layout::current_file(std::path::Path::new(DEMO_STORE)).exists() => PathBuf::from(DEMO_STORE),
        None => {
            return Err(Error::Arguments(format!(
                "no --store given and there is no ./{DEMO_STORE} store here; pass --store DIR, or build the demo store with `persona demo`"
            )));
        }
    };
    let options = ShellOptions {
        store,
        now: args.now,
        format: args.format.into(),
        history: if args.no_history { None } else { history_path() },
        use_indexes: !args.no_indexes,
        memory_limit: args.memory_limit,
    };
    let rt = super::runtime()?;
    crate::shell::run(options, &rt).map_err(|failure| {
        if let Some(context) = failure.context() {
            super::set_error_context(context);
        }
        failure.error
    })
}
