//! The shell's state and how it runs things: the store and the session pinned to one of its
//! versions, where and how results are written (`\format`, `\o`, `\timing`), and the running of
//! SQL, backslash commands and scripts. Statements run as tasks on the worker runtime, awaited by
//! futures that the caller may drop at any await point, which aborts the task: that is how Ctrl-C
//! cancels a query without ending the shell.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fs::File;
use std::future::Future;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::runtime::SpawnedTask;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::TryStreamExt;

use super::commands::{self, BackslashCommand};
use super::complete::CompletionCatalog;
use super::lexer::is_blank;
use super::render::{self, SPINNER_AFTER, Spinner};
use super::script::{Piece, split};
use crate::engine::{Session, SessionOptions, parse};
use crate::error::{Error, IoContext, Result};
use crate::output::{OutputFormat, write_stream};
use crate::store::Store;

/// How deep `\i` may nest (a file that includes itself stops here).
const MAX_INCLUDE_DEPTH: usize = 16;

/// What the shell does after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// An error with what it takes to show it well: the text its SQL position refers to, and where
/// that text came from.
#[derive(Debug)]
pub struct Failure {
    pub error: Error,
    /// Boxed: most failures have none, and a `Result` with a large error is slow to move.
    place: Option<Box<Place>>,
}

/// Where a failure happened.
#[derive(Debug, Default)]
struct Place {
    /// The SQL text (or whole script) that a positioned error points into.
    text: Option<String>,
    /// `in FILE, line N` or `in the script, line N`, for errors in scripts.
    origin: Option<String>,
}

impl Failure {
    /// An error whose position (if any) refers to `text`.
    pub fn in_text(error: Error, text: &str) -> Failure {
        Failure { error, place: Some(Box::new(Place { text: Some(text.to_string()), origin: None })) }
    }

    /// What to print under `error: <sentence>`: the SQL line with a caret, and the origin.
    pub fn context(&self) -> Option<String> {
        let place = self.place.as_deref()?;
        let snippet = place.text.as_deref().and_then(|t| self.error.sql_snippet(t));
        let lines: Vec<String> = snippet.into_iter().chain(place.origin.clone()).collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    /// Names the script line this failure happened at, unless an inner script already did.
    fn at_script_line(mut self, file: Option<&Path>, line: u64) -> Failure {
        let place = self.place.get_or_insert_with(Box::default);
        if place.origin.is_none() {
            // A positioned SQL error already names its line.
            let positioned = matches!(self.error, Error::Sql { position: Some(_), .. });
            place.origin = match (file, positioned) {
                (Some(f), true) => Some(format!("in {}", f.display())),
                (Some(f), false) => Some(format!("in {}, line {line}", f.display())),
                (None, true) => None,
                (None, false) => Some(format!("in the script, line {line}")),
            };
        }
        self
    }
}

/// A SQL error's position moved down by `lines` (a chunk's line 1 is a script's line `lines + 1`).
fn shifted(mut error: Error, lines: u64) -> Error {
    if let Error::Sql { position: Some((line, _)), .. } = &mut error {
        *line += lines;
    }
    error
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure { error, place: None }
    }
}

/// The settings that `\format` and `\timing` change.
#[derive(Debug, Clone)]
pub struct Settings {
    pub format: OutputFormat,
    /// Show each statement's elapsed time in its footer.
    pub timing: bool,
}

/// Where query results go.
enum Sink {
    Screen,
    File { path: PathBuf, writer: BufWriter<File> },
}

/// A shell on one store.
pub struct Shell {
    session: Session,
    catalog: Arc<CompletionCatalog>,
    /// The version `catalog` was built from.
    catalog_version: u64,
    settings: Settings,
    sink: Sink,
    /// A person at a terminal: footers, folding of wide tables and the spinner are for them; a
    /// script gets `persona sql`'s plain output.
    interactive: bool,
    /// The terminal's width, when there is one.
    width: Option<usize>,
    /// Results printed so far (a script separates its tables by a blank line).
    results: u64,
    /// How many `\i` files are running inside each other.
    depth: usize,
    /// The runtime that statements execute on (not the one that waits for them and for Ctrl-C).
    workers: tokio::runtime::Handle,
}

impl Shell {
    /// Opens a session on the store's current version.
    pub fn open(
        store: Store,
        options: SessionOptions,
        format: OutputFormat,
        interactive: bool,
        workers: tokio::runtime::Handle,
    ) -> Result<Shell> {
        let session = store.session_with(&options)?;
        let catalog_version = session.snapshot().version();
        let catalog = Arc::new(CompletionCatalog::from_session(&session));
        Ok(Shell {
            session,
            catalog_version,
            catalog,
            settings: Settings { format, timing: true },
            sink: Sink::Screen,
            interactive,
            width: None,
            results: 0,
            depth: 0,
            workers,
        })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The names completion offers for the current version.
    pub fn catalog(&self) -> Arc<CompletionCatalog> {
        Arc::clone(&self.catalog)
    }

    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    pub fn width(&self) -> Option<usize> {
        self.width
    }

    pub fn set_width(&mut self, width: Option<usize>) {
        self.width = width;
    }

    /// Prints command output or a message on the screen (in a script, after a blank line when
    /// something was printed before, as `persona sql` separates its tables).
    pub fn say(&mut self, text: &str) {
        self.separate();
        println!("{text}");
    }

    /// Prints a confirmation (`timing is on`, ...) for a person at the prompt; a script's output
    /// stays its results only.
    /// A warning about the statement about to run, on standard error (scripts see it too).
    fn warn(&self, text: &str) {
        eprintln!("warning: {text}");
    }

    pub fn note(&self, text: &str) {
        if self.interactive {
            println!("{text}");
        }
    }

    fn separate(&mut self) {
        if !self.interactive && self.results > 0 {
            println!();
        }
        self.results += 1;
    }

    /// Sends query results to `path` (created or emptied), or back to the screen.
    pub fn set_output(&mut self, path: Option<&Path>) -> Result<()> {
        if let Sink::File { path, writer } = &mut self.sink {
            writer.flush().io_context("flush", path)?;
        }
        self.sink = match path {
            Some(p) => {
                Sink::File { path: p.to_path_buf(), writer: BufWriter::new(File::create(p).io_context("create", p)?) }
            }
            None => Sink::Screen,
        };
        Ok(())
    }

    /// Moves to the store's newest committed version; returns the versions moved from and to.
    pub fn refresh(&mut self) -> Result<(u64, u64)> {
        // `SET persona.use_indexes` outlives the move.
        let (from, to) = self.session.refresh()?;
        if to != self.catalog_version {
            self.catalog = Arc::new(CompletionCatalog::from_session(&self.session));
            self.catalog_version = to;
        }
        Ok((from, to))
    }

    /// Runs one statement and collects its rows, for commands that show them their own way.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let session = self.session.clone();
        let sql = sql.to_string();
        self.spinning(Instant::now(), on_worker(&self.workers, async move { session.query(&sql).await })).await
    }

    /// Runs what the user submitted at the prompt: a backslash command or SQL statements.
    pub async fn run_input(&mut self, input: &str) -> std::result::Result<Flow, Failure> {
        let trimmed = input.trim();
        if trimmed.starts_with('\\') {
            let command: BackslashCommand = trimmed.parse()?;
            return commands::run(command, self).await;
        }
        self.run_sql(input).await.map_err(|e| Failure::in_text(e, input))?;
        Ok(Flow::Continue)
    }

    /// Runs a script's commands and statements in order, stopping at the first error.
    pub async fn run_script(&mut self, script: &str, file: Option<&Path>) -> std::result::Result<Flow, Failure> {
        for piece in split(script) {
            match piece {
                Piece::Command { line, text } => {
                    let command: BackslashCommand =
                        text.parse().map_err(|e| Failure::from(e).at_script_line(file, line))?;
                    match commands::run(command, self).await {
                        Ok(Flow::Quit) => return Ok(Flow::Quit),
                        Ok(Flow::Continue) => {}
                        Err(f) => return Err(f.at_script_line(file, line)),
                    }
                }
                Piece::Sql { first_line, text } => {
                    self.run_sql(&text).await.map_err(|e| {
                        Failure::in_text(shifted(e, first_line - 1), script).at_script_line(file, first_line)
                    })?;
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// `\i FILE`: runs a file as a script.
    pub async fn include(&mut self, path: &Path) -> std::result::Result<Flow, Failure> {
        if self.depth >= MAX_INCLUDE_DEPTH {
            return Err(Error::Usage(format!(
                "\\i {} would nest files more than {MAX_INCLUDE_DEPTH} deep; does a file include itself?",
                path.display()
            ))
            .into());
        }
        let script = std::fs::read_to_string(path).io_context("read", path)?;
        self.depth += 1;
        let result = Box::pin(self.run_script(&script, Some(path))).await;
        self.depth -= 1;
        result
    }

    /// Runs the statements of `sql` one after another, showing each result.
    async fn run_sql(&mut self, sql: &str) -> Result<()> {
        if is_blank(sql) {
            return Ok(());
        }
        for statement in parse(sql)? {
            // A misspelled tag or audience gives 0 rows, not an error: say so before running.
            for warning in crate::lint::warnings(&self.session, &statement) {
                self.warn(&warning);
            }
            let started = Instant::now();
            let session = self.session.clone();
            let original = statement.clone();
            let (schema, batches) = self
                .spinning(
                    started,
                    on_worker(&self.workers, async move {
                        let plan = session.plan(statement).await?;
                        let stream = session.execute(plan).await?;
                        let schema = stream.schema();
                        let batches: Vec<RecordBatch> = stream.try_collect().await?;
                        Ok((schema, batches))
                    }),
                )
                .await
                .map_err(|e| crate::lint::explain_error(&original, e))?;
            self.show(schema, batches, started.elapsed()).await?;
            // A tag or audience statement moved the session to the version it committed: say
            // so, since every later statement reads that version.
            if self.session.snapshot().version() != self.catalog_version {
                self.catalog = Arc::new(CompletionCatalog::from_session(&self.session));
                self.catalog_version = self.session.snapshot().version();
                self.note(&format!("now at version {}", self.catalog_version));
            }
        }
        Ok(())
    }

    /// Awaits `work`, with the spinner on once it has taken longer than [`SPINNER_AFTER`].
    async fn spinning<T>(&self, started: Instant, work: impl Future<Output = Result<T>>) -> Result<T> {
        if !self.interactive {
            return work.await;
        }
        let mut work = std::pin::pin!(work);
        tokio::select! {
            result = &mut work => result,
            () = tokio::time::sleep(SPINNER_AFTER.saturating_sub(started.elapsed())) => {
                let _spinner = Spinner::start(started, self.width.unwrap_or(80));
                work.await
            }
        }
    }

    /// Writes one statement's result where results go, in the current format, with its footer
    /// when a person is watching.
    async fn show(&mut self, schema: SchemaRef, batches: Vec<RecordBatch>, elapsed: Duration) -> Result<()> {
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let elapsed = self.settings.timing.then_some(elapsed);
        if schema.fields().is_empty() {
            // SET, CREATE VIEW ...: nothing to show but that it worked.
            if self.interactive {
                println!("OK{}", elapsed.map(|d| format!(" ({})", render::duration(d))).unwrap_or_default());
            }
            return Ok(());
        }
        let format = self.settings.format;
        let to_file = match &mut self.sink {
            Sink::File { path, writer } => {
                write_stream(memory_stream(schema, batches), format, writer, path).await?;
                Some(path.clone())
            }
            Sink::Screen => {
                let text = if format == OutputFormat::Table {
                    render::fit(&schema, &batches, self.width)?
                } else {
                    let mut bytes = Vec::new();
                    write_stream(memory_stream(schema, batches), format, &mut bytes, Path::new("<screen>")).await?;
                    String::from_utf8_lossy(&bytes).trim_end().to_string()
                };
                if format == OutputFormat::Table {
                    self.separate();
                }
                if !text.is_empty() {
                    println!("{text}");
                }
                None
            }
        };
        if self.interactive {
            println!("{}", render::footer(rows, elapsed, to_file.as_deref()));
        }
        Ok(())
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        if let Sink::File { writer, path } = &mut self.sink
            && let Err(e) = writer.flush()
        {
            eprintln!("warning: could not flush {}: {e}", path.display());
        }
    }
}

/// Runs `work` as a task of its own on `workers`. The thread that waits stays free to draw the
/// spinner and to notice Ctrl-C even while an operator computes for long stretches without
/// returning; dropping the returned future aborts the task.
async fn on_worker<T: Send + 'static>(
    workers: &tokio::runtime::Handle,
    work: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let task = {
        let _on_workers = workers.enter();
        SpawnedTask::spawn(work)
    };
    match task.join().await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(Error::Internal(format!("the query panicked: {e}"))),
        Err(e) => Err(Error::Internal(format!("the query task stopped: {e}"))),
    }
}

/// Collected batches as a stream again, for the writers.
fn memory_stream(schema: SchemaRef, batches: Vec<RecordBatch>) -> SendableRecordBatchStream {
    Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::iter(batches.into_iter().map(Ok))))
}
