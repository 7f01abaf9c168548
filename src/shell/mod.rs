//! `persona shell`: the analyst's interactive SQL shell on one pinned version of a store. At a
//! terminal it is a rustyline prompt with multi-line statements, completion, highlighting,
//! history, backslash commands and Ctrl-C that cancels the running query; with standard input
//! from a pipe or file it runs the script it is given and prints the results, for scripts.
//!
//! ```text
//! repl (prompt, history, Ctrl-C) --input--> exec::Shell --SQL--> engine::Session
//!   helper (validate, complete, highlight, hint)   |--\cmd--> commands --> Shell / Session
//!                                                  '--results--> render / output
//! ```

pub mod charts;
pub mod commands;
pub mod complete;
pub mod exec;
pub mod helper;
pub mod lexer;
pub mod render;
pub mod repl;
pub mod script;

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

pub use exec::{Failure, Shell};
pub use repl::history_path;

use crate::engine::SessionOptions;
use crate::error::{Error, IoContext};
use crate::output::OutputFormat;
use crate::store::Store;

/// How a shell is started.
#[derive(Debug, Clone)]
pub struct ShellOptions {
    /// The store directory.
    pub store: PathBuf,
    /// Pins `now()` for every statement.
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// How results are written until `\format` changes it.
    pub format: OutputFormat,
    /// The history file (none: no history is read or kept).
    pub history: Option<PathBuf>,
    /// Answer from the bitmap indexes (default); `false` takes DataFusion's general path.
    pub use_indexes: bool,
    /// Bytes the queries may hold at once (none: no limit).
    pub memory_limit: Option<usize>,
}

/// Runs the shell: the prompt when standard input is a terminal, else the script read from it
/// (stopping at its first error). Queries run on `workers`; the calling thread keeps a runtime of
/// its own for the prompt's timers and Ctrl-C, so that it stays responsive however busy the
/// workers are (a tokio runtime whose every worker computes cannot fire a timer or a signal).
pub fn run(options: ShellOptions, workers: &tokio::runtime::Runtime) -> Result<(), Failure> {
    let store = Store::open(&options.store)?;
    let session_options = SessionOptions {
        now: options.now,
        use_indexes: Some(options.use_indexes),
        memory_limit: options.memory_limit,
        ..SessionOptions::default()
    };
    let interactive = std::io::stdin().is_terminal();
    let control = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Error::Io {
        op: "start the shell's runtime",
        path: ".".into(),
        source: e,
    })?;
    let mut shell = Shell::open(store, session_options, options.format, interactive, workers.handle().clone())?;
    if interactive {
        return Ok(repl::run(shell, &control, options.history)?);
    }
    let mut script = String::new();
    std::io::stdin().read_to_string(&mut script).io_context("read", Path::new("<stdin>"))?;
    control.block_on(shell.run_script(&script, None)).map(|_| ())
}
