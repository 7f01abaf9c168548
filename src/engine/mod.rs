//! The engine facade: what the interfaces (`persona` commands, the shell) and embedding services
//! call. It owns statement dispatch: a script is parsed once, Persona's own statements (tags,
//! audiences) go to the audience layer, and everything else to the query layer, on one [`Session`].
//!
//! ```text
//!  cli / shell / a service
//!          |  sql, query, run_script, materialize, refresh
//!          v
//!  engine::Session --parse--> audience::statement::parse_statements
//!          |-- CREATE/DROP TAG, REFRESH TAGS, SHOW ..., CREATE/DROP AUDIENCE,
//!          |   MATERIALIZE, ESTIMATE -----------------> audience::commands (commit, repin)
//!          '-- everything else (SELECT, SET, COPY ...) --> query::QuerySession (plan, execute)
//! ```
//!
//! The layers below know nothing of this one: the query layer registers the catalog's SQL views
//! through [`crate::query::CatalogViews`], which this module implements with the audience layer's.

mod session;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::prelude::SessionContext;

pub use crate::audience::commands::{MaterializeOptions, Report as MaterializeReport};
pub(crate) use crate::audience::statement::Statement;
pub use crate::query::{ExportCompression, SessionOptions};
pub use session::{SavedAudience, Session};

use crate::error::Result;
use crate::index::IndexSet;
use crate::query::bitmap_scan::UsersFile;
use crate::store::{Snapshot, Store};

impl Store {
    /// A session on the current version with default options.
    pub fn session(&self) -> Result<Session> {
        self.session_with(&SessionOptions::default())
    }

    /// A session on the current version.
    pub fn session_with(&self, options: &SessionOptions) -> Result<Session> {
        Session::new(self.snapshot()?, options)
    }
}

/// Splits SQL text into statements (Persona's tag and audience statements, and everything
/// DataFusion parses) with the SQL tokenizer: quotes and comments respected. Errors carry the line
/// and column in `sql`.
pub(crate) fn parse(sql: &str) -> Result<Vec<Statement>> {
    crate::audience::statement::parse_statements(sql)
}

/// The catalog's SQL views, as the audience layer makes them, for every version a session pins.
struct AudienceViews;

impl crate::query::CatalogViews for AudienceViews {
    fn audience_tables(
        &self,
        snapshot: &Snapshot,
        index: &Arc<IndexSet>,
        users_schema: &SchemaRef,
        users_files: &[UsersFile],
    ) -> Vec<(String, Arc<dyn TableProvider>)> {
        crate::audience::tables::audience_tables(snapshot, index, users_schema, users_files)
    }

    fn register(
        &self,
        ctx: &SessionContext,
        snapshot: &Snapshot,
        index: &Arc<IndexSet>,
        users_files: &[UsersFile],
        audiences: &[(String, Arc<dyn TableProvider>)],
    ) -> Result<()> {
        crate::audience::tables::register(ctx, snapshot, index, users_files, audiences)
    }
}
