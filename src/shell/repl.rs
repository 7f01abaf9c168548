//! The interactive loop: a rustyline editor with the shell's helper and a per-user history file.
//! A statement is read line by line until its `;`, the lines after the first under the
//! continuation prompt `    ...> `; it is kept in the history as one entry.
//! While an input runs, the terminal is back in cooked mode, so Ctrl-C arrives as SIGINT and
//! cancels it (its future is dropped) and the prompt comes back; at the prompt, Ctrl-C drops the
//! current input and Ctrl-D leaves.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Config, Editor};

use super::exec::{Failure, Flow, Shell};
use super::helper::{Check, ShellHelper, check};
use crate::error::{Error, IoContext, Result};

const PROMPT: &str = "persona> ";

/// The prompt of the lines that continue a statement (as wide as [`PROMPT`]).
const CONTINUATION: &str = "    ...> ";

/// Entries kept in the history file.
const HISTORY_SIZE: usize = 10_000;

/// Where the history lives: `$PERSONA_HISTORY` (empty: no history), else
/// `$XDG_STATE_HOME/persona/history`, else `~/.local/state/persona/history`.
pub fn history_path() -> Option<PathBuf> {
    history_path_in(|name| std::env::var_os(name))
}

fn history_path_in(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    if let Some(path) = var("PERSONA_HISTORY") {
        return (!path.is_empty()).then(|| PathBuf::from(path));
    }
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let state = set("XDG_STATE_HOME").or_else(|| set("HOME").map(|home| home.join(".local/state")))?;
    Some(state.join("persona").join("history"))
}

/// Runs the prompt until `\q` or Ctrl-D.
pub fn run(mut shell: Shell, control: &tokio::runtime::Runtime, history: Option<PathBuf>) -> Result<()> {
    let config = Config::builder()
        .max_history_size(HISTORY_SIZE)
        .and_then(|b| b.history_ignore_dups(true))
        .map_err(readline_error)?
        .history_ignore_space(true)
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .build();
    let mut editor: Editor<ShellHelper, FileHistory> = Editor::with_config(config).map_err(readline_error)?;
    editor.set_helper(Some(ShellHelper::new(shell.catalog(), colors_wanted())));
    let mut history = history.and_then(|path| match open_history(&mut editor, &path) {
        Ok(()) => Some(path),
        Err(e) => {
            eprintln!("warning: {e}; this session keeps no history");
            None
        }
    });
    // Take SIGINT over now, so that a Ctrl-C between two queries cannot end the process either.
    #[cfg(unix)]
    let _sigint = {
        let _guard = control.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).map_err(|e| Error::Io {
            op: "listen for Ctrl-C on",
            path: "<terminal>".into(),
            source: e,
        })?
    };

    let snapshot = shell.session().snapshot();
    println!(
        "persona shell on {}, version {} ({} users). \\? lists the commands, Ctrl-D leaves.",
        snapshot.root().display(),
        snapshot.version(),
        snapshot.user_count()
    );
    // The lines entered so far of a statement that has no `;` yet, each ended by `\n`.
    let mut pending = String::new();
    loop {
        shell.set_width(editor.dimensions().map(|(columns, _)| usize::from(columns)));
        if let Some(helper) = editor.helper_mut() {
            helper.set_prefix(pending.clone());
        }
        let prompt = if pending.is_empty() { PROMPT } else { CONTINUATION };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            // Ctrl-C drops the whole statement, its earlier lines included.
            Err(ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(readline_error(e)),
        };
        let input = std::mem::take(&mut pending) + &line;
        if check(&input) == Check::Incomplete {
            pending = input + "\n";
            continue;
        }
        if input.trim().is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(input.as_str());
        if let Some(path) = &history
            && let Err(e) = editor.append_history(path)
        {
            eprintln!("warning: could not save the history to {}: {e}; this session keeps no more", path.display());
            history = None;
        }
        let outcome = control.block_on(async {
            tokio::select! {
                result = shell.run_input(&input) => Some(result),
                () = ctrl_c() => None,
            }
        });
        match outcome {
            Some(Ok(Flow::Quit)) => break,
            Some(Ok(Flow::Continue)) => {}
            Some(Err(failure)) => report(&failure),
            None => eprintln!("cancelled"),
        }
        if let Some(helper) = editor.helper_mut() {
            helper.set_catalog(shell.catalog());
        }
    }
    Ok(())
}

/// Prints an error and its context; the shell goes on.
fn report(failure: &Failure) {
    eprintln!("{}", failure.error.report());
    if let Some(context) = failure.context() {
        eprintln!("{context}");
    }
}

/// Resolves on Ctrl-C; never, if Ctrl-C cannot be listened for (then queries just run to the end).
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Loads the history file, creating its folder; a missing file is an empty history.
fn open_history(editor: &mut Editor<ShellHelper, FileHistory>, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).io_context("create the history folder", dir)?;
    }
    match editor.load_history(path) {
        Ok(()) => Ok(()),
        Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(ReadlineError::Io(e)) => {
            Err(Error::Io { op: "read the history file", path: path.to_path_buf(), source: e })
        }
        Err(e) => {
            Err(Error::Io { op: "read the history file", path: path.to_path_buf(), source: std::io::Error::other(e) })
        }
    }
}

/// Colours unless `NO_COLOR` is set or the terminal is dumb.
fn colors_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

fn readline_error(e: ReadlineError) -> Error {
    let source = match e {
        ReadlineError::Io(io) => io,
        other => std::io::Error::other(other),
    };
    Error::Io { op: "use the terminal", path: "<terminal>".into(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_path_follows_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
        };
        assert_eq!(history_path_in(env(&[("PERSONA_HISTORY", "/tmp/h"), ("HOME", "/home/a")])), Some("/tmp/h".into()));
        assert_eq!(history_path_in(env(&[("PERSONA_HISTORY", ""), ("HOME", "/home/a")])), None);
        assert_eq!(
            history_path_in(env(&[("XDG_STATE_HOME", "/state"), ("HOME", "/home/a")])),
            Some("/state/persona/history".into())
        );
        assert_eq!(history_path_in(env(&[("HOME", "/home/a")])), Some("/home/a/.local/state/persona/history".into()));
        assert_eq!(history_path_in(env(&[])), None);
    }
}
