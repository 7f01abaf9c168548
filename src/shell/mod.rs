//! `persona shell`: the analyst's interactive SQL shell on one pinned version of a store. At a
//! terminal it is a rustyline prompt with multi-line statements, completion, highlighting,
//! history, backslash commands and Ctrl-C that cancels the running query; with standard input
//! from a pipe or file it runs the script it is given and prints the results, for scripts.
//!
//! ```text
//! repl (prompt, history, Ctrl-C) --input--> exec::Shell --SQL--> query::Session
//!   helper (validate, complete, highlight, hint)   |--\cmd--> commands --> Shell / Session
//!                                                  '--results--> render / output
//! ```

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

pub use exec::{Failure, Flow, Shell};
pub use repl::history_path;

use crate::error::IoContext;
use crate::output::OutputFormat;
use crate::query::SessionOptions;
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
}

/// Runs the shell: the prompt when standard input is a terminal, else the script read from it
/// (stopping at its first error).
pub fn run(options: ShellOptions, rt: &tokio::runtime::Runtime) -> Result<(), Failure> {
    let store = Store::open(&options.store)?;
    let session_options = SessionOptions { now: options.now, ..SessionOptions::default() };
    let interactive = std::io::stdin().is_terminal();
    let mut shell = Shell::open(store, session_options, options.format, interactive)?;
    if interactive {
        return Ok(repl::run(shell, rt, options.history)?);
    }
    let mut script = String::new();
    std::io::stdin().read_to_string(&mut script).io_context("read", Path::new("<stdin>"))?;
    rt.block_on(shell.run_script(&script, None)).map(|_| ())
}
