//! Persona: an embedded columnar customer-profile store. Profiles and facts live in Parquet files
//! under versioned manifests; every user has a dense row id; SQL runs through Apache DataFusion.
//!
//! The API is small: a [`Store`] (a directory: open, create, import), a [`Session`] pinned to one
//! of its versions (SQL, tag and audience statements, exports, moving to newer versions), their
//! options, and one [`Error`]. docs/embedding.md tells more, and `examples/embed.rs` runs it.
//!
//! ```
//! # fn main() -> persona::Result<()> {
//! # let dir = tempfile::tempdir().expect("a temporary directory");
//! # let (root, out) = (dir.path().join("crm"), dir.path().join("campaigns"));
//! # let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/sample");
//! use persona::{ImportOptions, MaterializeOptions, SessionOptions, Store};
//!
//! let store = Store::open_or_create(&root)?;                  // a directory; Store::open fails on a non-store
//! store.import(&[sample], &ImportOptions::default())?;       // files or folders of CSV/Parquet: one version
//!
//! let session = store.session_with(&SessionOptions::default())?; // pinned to the version just committed
//! let runtime = tokio::runtime::Runtime::new().expect("a runtime");
//! let report = runtime.block_on(async {
//!     let tiers = session.query("SELECT tier, count(*) FROM users GROUP BY tier").await?;
//!     assert!(!tiers.is_empty());
//!     // Tag and audience statements are SQL too; each commits a version the session moves to.
//!     session.query("CREATE AUDIENCE gold AS SELECT user_id, email FROM users WHERE tier = 'gold'").await?;
//!     let target = Some(out.join("gold.parquet"));
//!     session.materialize("gold", &MaterializeOptions { target, ..Default::default() }).await
//! })?;
//! assert_eq!(report.rows_written, report.members - report.holdout);
//! session.close();                                           // waits for the export's cleanup
//! # Ok(()) }
//! ```

// The library's API: the facade and the error type.
mod engine;
pub mod error;

// The layers below the facade and the interfaces above it (docs/architecture.md). Modules that
// nothing outside the crate uses are private to it.
pub(crate) mod audience;
pub(crate) mod lint;
pub(crate) mod output;
pub(crate) mod shell;
pub(crate) mod shell_words;

// Modules that the `persona` binary (cli), the integration tests and the benches reach into. They
// are `pub` for them only: hidden from the documentation, not part of the API, and free to change
// in any release. A program embedding Persona uses the re-exports below.
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod r#gen;
#[doc(hidden)]
pub mod index;
#[doc(hidden)]
pub mod ingest;
#[doc(hidden)]
pub mod query;
#[doc(hidden)]
pub mod store;
#[doc(hidden)]
pub mod tables;

pub use engine::{ExportCompression, MaterializeOptions, MaterializeReport, SavedAudience, Session, SessionOptions};
pub use error::{Error, InputLocation, Result};
pub use ingest::forget::ForgetSummary;
pub use ingest::{ImportOptions, ImportSummary};
pub use store::{Snapshot, Store};
pub use tables::Table;
