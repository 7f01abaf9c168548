//! The one public error type of Persona: variants are classed by who must act (the user's input,
//! the store's state, the environment, or a bug), carry their context as fields, and display as one
//! sentence saying what happened, where, and what to do next.

use std::path::{Path, PathBuf};

use datafusion::error::DataFusionError;

/// `Result` with Persona's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where in an input file a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputLocation {
    /// A CSV line (1-based, the line where the record starts).
    Line(u64),
    /// A Parquet row group and the row inside it (both 0-based).
    RowGroup { row_group: usize, row: usize },
    /// The file as a whole (e.g. an empty or unreadable file).
    File,
    /// A row of an `INSERT` statement's rows (1-based, in the order the query produced them).
    Row(u64),
}

impl std::fmt::Display for InputLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputLocation::Line(line) => write!(f, "line {line}"),
            InputLocation::RowGroup { row_group, row } => write!(f, "row group {row_group}, row {row}"),
            InputLocation::File => write!(f, "the file"),
            InputLocation::Row(row) => write!(f, "row {row}"),
        }
    }
}

/// Everything that can go wrong in Persona.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A row or file given to the importer breaks the data contract.
    #[error("{}{}{}: {message}; nothing was loaded", file.display(), match location { InputLocation::File => String::new(), l => format!(": {l}") }, column.as_ref().map(|c| if matches!(location, InputLocation::File) { format!(": column {c}") } else { format!(", column {c}") }).unwrap_or_default())]
    Input { file: PathBuf, location: InputLocation, column: Option<String>, message: String },
    /// A SQL statement could not be parsed or planned.
    #[error("{message}{}", position.map(|(l, c)| format!(" (at line {l}, column {c})")).unwrap_or_default())]
    Sql {
        message: String,
        /// 1-based line and column in the submitted SQL text, when known.
        position: Option<(u64, u64)>,
    },
    /// A request that makes no sense (unknown table name, no such audience, ...).
    #[error("{0}")]
    Usage(String),
    /// Bad command-line arguments (a missing option, options that do not go together, input
    /// paths that name no usable file): the command did not start. The CLI exits with code 2 for
    /// these only.
    #[error("{0}")]
    Arguments(String),
    /// A store file is damaged or not what it claims to be.
    #[error("store file {} is corrupt: {detail}; {}", path.display(), corrupt_remedy(path))]
    Corrupt { path: PathBuf, detail: String },
    /// Another writer holds the store's lock.
    #[error("the store is locked by another writer (lock file {}); wait for it to finish and retry", lock_file.display())]
    Locked { lock_file: PathBuf },
    /// The store was written by a newer Persona.
    #[error("store {} has format version {found}, but this Persona supports up to {supported}; upgrade Persona to open it", path.display())]
    FormatVersion { path: PathBuf, found: u32, supported: u32 },
    /// Another commit published the version this one meant to publish.
    #[error("another writer already committed version {version}; retry the operation")]
    Conflict { version: u64 },
    /// The directory is not a Persona store.
    #[error("{} is not a Persona store (no _persona/CURRENT); create one with `persona import --store {}`", path.display(), crate::shell_words::shell_path(path))]
    NotAStore { path: PathBuf },
    /// An operating-system I/O operation failed.
    #[error("could not {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Query execution failed inside DataFusion for a reason that is not one of ours.
    #[error("query failed: {0}")]
    DataFusion(#[source] Box<DataFusionError>),
    /// An Arrow or Parquet error outside a query.
    #[error("{context}: {message}")]
    Format { context: String, message: String },
    /// Some of a batch's items failed (each was reported as it failed).
    #[error("{0}")]
    Failed(String),
    /// A bug in Persona.
    #[error("internal error: {0}; this is a bug in Persona, please report it")]
    Internal(String),
}

/// What to do about a corrupt store file: files derived from the data (copies, day times, the
/// index, id-dictionary segments) are rebuilt by `persona check --repair`; the data itself comes
/// back from a backup.
fn corrupt_remedy(path: &std::path::Path) -> &'static str {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".arrow") || name.ends_with(".idx") || name.ends_with(".ids") {
        "`persona check --store <the store> --repair` rebuilds it from the data"
    } else {
        "restore it from a backup or re-import"
    }
}

impl Error {
    /// An input error at a location, with an optional column.
    pub(crate) fn input(
        file: impl Into<PathBuf>,
        location: InputLocation,
        column: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Error::Input { file: file.into(), location, column: column.map(str::to_owned), message: message.into() }
    }

    /// A corrupt store file.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Corrupt { path: path.into(), detail: detail.into() }
    }

    /// The error as a person reads it at the command line or in the shell: `error: <sentence>`,
    /// then a `caused by:` line for each cause the sentence does not already contain.
    pub fn report(&self) -> String {
        let message = self.to_string();
        let mut out = format!("error: {message}");
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            // Many sentences already end with their cause; do not say it twice.
            let text = cause.to_string();
            if !message.contains(&text) {
                out.push_str(&format!("\ncaused by: {text}"));
            }
            source = cause.source();
        }
        out
    }

    /// A copy of an error that carries only data (not a source error of another type).
    fn copy(&self) -> Option<Error> {
        Some(match self {
            Error::Input { file, location, column, message } => Error::Input {
                file: file.clone(),
                location: location.clone(),
                column: column.clone(),
                message: message.clone(),
            },
            Error::Sql { message, position } => Error::Sql { message: message.clone(), position: *position },
            Error::Usage(m) => Error::Usage(m.clone()),
            Error::Arguments(m) => Error::Arguments(m.clone()),
            Error::Corrupt { path, detail } => Error::Corrupt { path: path.clone(), detail: detail.clone() },
            Error::Locked { lock_file } => Error::Locked { lock_file: lock_file.clone() },
            Error::FormatVersion { path, found, supported } => {
                Error::FormatVersion { path: path.clone(), found: *found, supported: *supported }
            }
            Error::Conflict { version } => Error::Conflict { version: *version },
            Error::NotAStore { path } => Error::NotAStore { path: path.clone() },
            Error::Format { context, message } => Error::Format { context: context.clone(), message: message.clone() },
            Error::Failed(m) => Error::Failed(m.clone()),
            Error::Internal(m) => Error::Internal(m.clone()),
            Error::Io { .. } | Error::DataFusion(_) => return None,
        })
    }

    /// The process exit code for this error: 2 for bad command-line arguments, 1 for everything
    /// else (a missing audience or a bad statement is not a usage error).
    pub fn exit_code(&self) -> i32 {
        if matches!(self, Error::Arguments(_)) { 2 } else { 1 }
    }

    /// For a SQL error with a position, the line of `sql` it points at with a caret under the
    /// column (see [`position_snippet`]).
    pub fn sql_snippet(&self, sql: &str) -> Option<String> {
        match self {
            Error::Sql { position: Some((line, col)), .. } => {
                Some(position_snippet(sql, *line, *col)).filter(|s| !s.is_empty())
            }
            _ => None,
        }
    }
}

/// The line `line` of `sql` with a caret under column `col` (both 1-based, columns in
/// characters); empty when `sql` has no such line.
pub fn position_snippet(sql: &str, line: u64, col: u64) -> String {
    match sql.lines().nth(line.saturating_sub(1) as usize) {
        Some(text) => {
            // Columns count characters; pad with the same characters' display width.
            let pad: String =
                text.chars().take(col.saturating_sub(1) as usize).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            format!("  {line:>3} | {text}\n      | {pad}^")
        }
        None => String::new(),
    }
}

/// Wraps `std::io::Error` with the operation and the path, so no bare I/O error reaches a user.
pub(crate) trait IoContext<T> {
    fn io_context(self, op: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
    fn io_context(self, op: &'static str, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Io { op, path: path.to_path_buf(), source })
    }
}

impl From<DataFusionError> for Error {
    /// Follows the error chain back to a Persona error when one is inside, so that the user reads
    /// our sentence and not "External error: ...".
    fn from(e: DataFusionError) -> Self {
        let position = e.diagnostic().and_then(|d| d.span).map(|s| (s.start.line, s.start.column));
        match e {
            DataFusionError::External(inner) => match inner.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(other) => Error::DataFusion(Box::new(DataFusionError::External(other))),
            },
            DataFusionError::Context(ctx, inner) => {
                let inner_err = Error::from(*inner);
                match inner_err {
                    Error::DataFusion(df) => Error::DataFusion(Box::new(DataFusionError::Context(ctx, df))),
                    other => other,
                }
            }
            // A failure shared by the consumers of one result (a join's build side): ours when the
            // error inside is (a copy of it, when the other consumers still hold it).
            DataFusionError::Shared(shared) => match std::sync::Arc::try_unwrap(shared) {
                Ok(inner) => Error::from(inner),
                Err(shared) => match shared.as_ref() {
                    DataFusionError::External(inner) => match inner.downcast_ref::<Error>().and_then(Error::copy) {
                        Some(ours) => ours,
                        None => Error::DataFusion(Box::new(DataFusionError::Shared(shared))),
                    },
                    _ => Error::DataFusion(Box::new(DataFusionError::Shared(shared))),
                },
            },
            DataFusionError::Diagnostic(_, inner) => {
                let mut err = Error::from(*inner);
                if let Error::Sql { position: p @ None, .. } = &mut err {
                    *p = position;
                }
                err
            }
            DataFusionError::SQL(parser_err, _) => {
                let text = parser_err.to_string();
                let (message, pos) = split_sqlparser_position(&text);
                Error::Sql { message, position: position.or(pos) }
            }
            DataFusionError::Plan(msg) => Error::Sql { message: msg, position },
            e @ DataFusionError::SchemaError(..) => Error::Sql { message: e.strip_backtrace(), position },
            DataFusionError::NotImplemented(msg) => Error::Sql { message: format!("not supported: {msg}"), position },
            other => Error::DataFusion(Box::new(other)),
        }
    }
}

impl From<Error> for DataFusionError {
    /// Persona errors cross into DataFusion boxed, so they can be downcast on the way out.
    fn from(e: Error) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::Format { context: "arrow".into(), message: e.to_string() }
    }
}

impl From<parquet::errors::ParquetError> for Error {
    fn from(e: parquet::errors::ParquetError) -> Self {
        Error::Format { context: "parquet".into(), message: e.to_string() }
    }
}

/// sqlparser puts the position in its message as "... at Line: 1, Column: 15"; take it out so the
/// position is reported once, in our format.
fn split_sqlparser_position(text: &str) -> (String, Option<(u64, u64)>) {
    let text = text.trim_start_matches("sql parser error: ");
    if let Some(idx) = text.rfind(" at Line: ") {
        let tail = &text[idx + " at Line: ".len()..];
        let mut parts = tail.splitn(2, ", Column: ");
        let line = parts.next().and_then(|l| l.trim().parse().ok());
        let col = parts.next().and_then(|c| c.trim().parse().ok());
        if let (Some(l), Some(c)) = (line, col) {
            return (text[..idx].to_string(), Some((l, c)));
        }
    }
    (text.to_string(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlparser_position_is_extracted() {
        let (msg, pos) =
            split_sqlparser_position("sql parser error: Expected: an expression, found: FROM at Line: 2, Column: 8");
        assert_eq!(msg, "Expected: an expression, found: FROM");
        assert_eq!(pos, Some((2, 8)));
    }

    #[test]
    fn input_error_names_file_line_and_column() {
        let e = Error::input("a.csv", InputLocation::Line(7), Some("points"), "'abc' is not an integer");
        assert_eq!(e.to_string(), "a.csv: line 7, column points: 'abc' is not an integer; nothing was loaded");
    }

    #[test]
    fn persona_error_survives_a_round_trip_through_datafusion() {
        let e: DataFusionError = Error::Locked { lock_file: "/s/_persona/LOCK".into() }.into();
        let back = Error::from(e);
        assert!(matches!(back, Error::Locked { .. }));
    }

    /// Before, a corrupt file met on a join's build side reached the user as "query failed:
    /// External error: …" (the build side's error is shared by its consumers).
    #[test]
    fn a_shared_persona_error_comes_back_as_itself() {
        let shared = std::sync::Arc::new(DataFusionError::from(Error::corrupt("/s/a.arrow", "damaged")));
        let held = std::sync::Arc::clone(&shared);
        assert!(matches!(Error::from(DataFusionError::Shared(shared)), Error::Corrupt { .. }));
        assert!(matches!(Error::from(DataFusionError::Shared(held)), Error::Corrupt { .. }), "the last holder");
    }

    #[test]
    fn sql_snippet_puts_a_caret_under_the_column() {
        let e = Error::Sql { message: "Expected: an expression".into(), position: Some((2, 7)) };
        let snippet = e.sql_snippet("SELECT *\nWHERE ;").expect("a positioned SQL error has a snippet");
        assert_eq!(snippet, "    2 | WHERE ;\n      |       ^");
        assert_eq!(e.sql_snippet("one line only"), None, "no line 2, no snippet");
        assert_eq!(Error::Usage("x".into()).sql_snippet("SELECT 1"), None);
    }

    /// Before, every `Usage` error exited 2, so `DROP AUDIENCE winbak` (no such audience) looked
    /// like a command-line mistake while `in_audience('winbak')` exited 1.
    #[test]
    fn only_bad_arguments_exit_2() {
        assert_eq!(Error::Arguments("--format parquet needs --output FILE".into()).exit_code(), 2);
        assert_eq!(Error::Usage("there is no saved audience 'winbak'".into()).exit_code(), 1);
        assert_eq!(Error::Sql { message: "x".into(), position: None }.exit_code(), 1);
        assert_eq!(Error::Internal("x".into()).exit_code(), 1);
    }

    #[test]
    fn report_starts_with_error_and_names_causes_once() {
        let e = Error::Io {
            op: "read",
            path: "/x".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        assert_eq!(e.report(), "error: could not read /x: gone");
    }
}
