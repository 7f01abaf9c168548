//! [`Session`], the one type a caller runs statements on: SQL and Persona's tag and audience
//! statements, audience exports, moving to newer versions, and the cleanup of exports at the end.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SessionContext};

use super::{AudienceViews, MaterializeOptions, MaterializeReport, SessionOptions, Statement, parse};
use crate::audience::commands;
use crate::error::{Error, Result};
use crate::index::IndexSet;
use crate::query;
use crate::store::Snapshot;

/// A session pinned to one version of a store: every query of the session sees the same data,
/// whatever other writers commit meanwhile.
///
/// - **Statements**: [`Session::sql`], [`Session::query`] and [`Session::run_script`] take SQL and
///   Persona's own statements (`CREATE TAG`, `CREATE AUDIENCE`, `MATERIALIZE AUDIENCE`, ...;
///   docs/audiences.md). A tag or audience statement commits a new version and moves the session
///   (and its clones) to it, so that the next statement reads what it made.
/// - **Versions**: [`Session::refresh`] moves to the newest version committed by anyone (another
///   process included); a new session does too.
/// - **Sharing**: a session is a cheap handle (`Clone`, `Send`, `Sync`); its clones share the
///   pinned version and the `SET` settings.
/// - **Cleanup**: an export that replaces a file frees the old file's blocks on a background
///   thread. Dropping the last clone of a session waits for those threads, and so does
///   [`Session::close`], which says so at the place you choose; either way no hidden
///   `.name.old-…` file is left beside an export when the process exits.
#[derive(Clone, Debug)]
pub struct Session {
    query: query::QuerySession,
}

/// A saved audience as the session's version has it (`SHOW AUDIENCE name` shows more).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SavedAudience {
    pub name: String,
    /// The query, as written.
    pub query: String,
    /// Saved audiences whose members are never in this one.
    pub suppress_audiences: Vec<String>,
    /// Files of user_ids whose users are never in this one.
    pub suppress_files: Vec<String>,
    /// The share of the members kept out of exports, in percent.
    pub holdout_percent: f64,
    /// The latest version's number (`None`: never evaluated).
    pub version: Option<u32>,
    /// The latest version's members (holdout included) and holdout.
    pub members: u64,
    pub holdout: u64,
    /// When the latest version was computed (RFC 3339) and the store version whose data it read.
    pub computed_at: Option<String>,
    pub computed_on: Option<u64>,
}

impl Session {
    /// A session on `snapshot` (a version the caller chose; [`crate::Store::session_with`] takes
    /// the current one).
    pub fn new(snapshot: Snapshot, options: &SessionOptions) -> Result<Session> {
        Ok(Session { query: query::QuerySession::new(snapshot, options, Some(Arc::new(AudienceViews)))? })
    }

    /// Plans one statement and returns it as a DataFrame (lazy: nothing runs until it is
    /// collected or streamed, except a tag or audience statement, which runs here and whose
    /// DataFrame is the table of what it did).
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let mut statements = parse(sql)?;
        if statements.len() != 1 {
            return Err(Error::Usage(format!(
                "expected one SQL statement, found {}; use run_script for several",
                statements.len()
            )));
        }
        let plan = self.plan(statements.remove(0)).await?;
        Ok(self.context().execute_logical_plan(plan).await?)
    }

    /// Runs one statement and collects its result.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.sql(sql).await?.collect().await?)
    }

    /// Runs the statements of `sql` in order, each seeing what the ones before it committed or
    /// set, and collects each one's result; the first error stops the script.
    pub async fn run_script(&self, sql: &str) -> Result<Vec<Vec<RecordBatch>>> {
        let mut results = Vec::new();
        for statement in parse(sql)? {
            let plan = self.plan(statement).await?;
            results.push(self.context().execute_logical_plan(plan).await?.collect().await?);
        }
        Ok(results)
    }

    /// Evaluates a saved audience on the newest version, records a new version of it when its
    /// members changed, and writes its file when `options.target` is given (as `MATERIALIZE
    /// AUDIENCE name TO 'file'`). The session ends on the version it committed.
    pub async fn materialize(&self, audience: &str, options: &MaterializeOptions) -> Result<MaterializeReport> {
        commands::materialize(&self.query, audience, options).await
    }

    /// Materializes several audiences as one version, each after those it reads (as `persona
    /// materialize`); one failing fails those that read it, not the others. Results come in the
    /// order asked; the outer error is for the run as a whole (the store locked, say).
    pub async fn materialize_many(
        &self,
        requests: &[(String, MaterializeOptions)],
    ) -> Result<Vec<(String, Result<MaterializeReport>)>> {
        commands::materialize_many(&self.query, requests).await
    }

    /// The saved audiences of the pinned version, in the order they were created.
    pub fn audiences(&self) -> Vec<SavedAudience> {
        let snapshot = self.snapshot();
        snapshot
            .manifest()
            .catalog
            .audiences
            .iter()
            .map(|a| {
                let latest = a.latest();
                SavedAudience {
                    name: a.name.clone(),
                    query: a.query.clone(),
                    suppress_audiences: a.suppress_audiences.clone(),
                    suppress_files: a.suppress_files.clone(),
                    holdout_percent: a.holdout_percent(),
                    version: latest.map(|v| v.number),
                    members: latest.map_or(0, |v| v.members),
                    holdout: latest.map_or(0, |v| v.holdout),
                    computed_at: latest.map(|v| v.computed_at.clone()),
                    computed_on: latest.map(|v| v.computed_on),
                }
            })
            .collect()
    }

    /// Moves the session (and its clones) to the store's newest committed version; returns the
    /// versions moved from and to. `SET` settings outlive the move.
    pub fn refresh(&self) -> Result<(u64, u64)> {
        self.query.refresh()
    }

    /// The pinned version's number.
    pub fn version(&self) -> u64 {
        self.snapshot().version()
    }

    /// The pinned version (its manifest and the store's root).
    pub fn snapshot(&self) -> Snapshot {
        self.query.snapshot()
    }

    /// The DataFusion context of the pinned version, for callers who need more than SQL text
    /// (DataFrame building, registering their own tables or functions for this version).
    pub fn context(&self) -> SessionContext {
        self.query.context()
    }

    /// The options the session was opened with.
    pub fn options(&self) -> &SessionOptions {
        self.query.options()
    }

    /// Whether audience predicates are answered from the bitmap indexes (`SET
    /// persona.use_indexes`).
    pub fn use_indexes(&self) -> bool {
        self.query.use_indexes()
    }

    /// Waits until the files that this session's exports replaced are removed, then drops this
    /// handle. Dropping the last clone waits as well; `close` makes the wait explicit, e.g. as
    /// the last thing before a service exits.
    pub fn close(self) {
        self.query.removals().finish();
    }

    /// Plans one parsed statement: a tag or audience statement runs here (it commits, and the
    /// session moves to the new version), and its plan only shows what it did.
    pub(crate) async fn plan(&self, statement: Statement) -> Result<LogicalPlan> {
        match statement {
            Statement::Sql(s) => self.query.plan_sql(*s).await,
            Statement::Catalog(c) => {
                let batch = Box::pin(commands::run(&self.query, c)).await?;
                Ok(self.context().read_batch(batch)?.into_unoptimized_plan())
            }
        }
    }

    /// Executes a planned statement as a stream of batches.
    pub(crate) async fn execute(&self, plan: LogicalPlan) -> Result<SendableRecordBatchStream> {
        self.query.execute(plan).await
    }

    /// The pinned version's bitmap indexes (tag names and sizes, value lists, catalog sets).
    pub(crate) fn index(&self) -> Arc<IndexSet> {
        self.query.index()
    }
}
