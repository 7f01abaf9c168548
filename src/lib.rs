//! Persona: an embedded columnar customer-profile store. Profiles and facts live in Parquet files
//! under versioned manifests; every user has a dense row id; SQL runs through Apache DataFusion.
//!
//! ```no_run
//! # async fn demo() -> persona::Result<()> {
//! use persona::{ImportOptions, Store};
//!
//! let store = Store::open_or_create("./my-store")?;
//! store.import(&["./exports/users.csv".into()], &ImportOptions::default())?;
//! let session = store.session()?;           // pinned to the version just committed
//! let batches = session.query("SELECT tier, count(*) FROM users GROUP BY tier").await?;
//! # Ok(()) }
//! ```

pub mod audience;
pub mod cli;
mod engine;
pub mod error;
pub mod r#gen;
pub mod index;
pub mod ingest;
pub mod lint;
pub mod output;
pub mod query;
pub mod shell;
pub mod store;
pub mod tables;

pub use engine::{ExportCompression, MaterializeOptions, MaterializeReport, SavedAudience, Session, SessionOptions};
pub use error::{Error, Result};
pub use ingest::{ImportOptions, ImportSummary};
pub use store::{Snapshot, Store, StoreWriter};
pub use tables::Table;
