//! The deterministic synthetic data generator behind `persona gen`: users, products, channels,
//! purchases, events and user tags, generated in fixed-size chunks with bounded memory and written
//! as Parquet or CSV files that are byte-identical for the same user count and seed.
//!
//! ```text
//! vocabulary, distributions, calendar    the words, numbers and dates the data is made of
//!        │
//!        v
//! model          the world of one seed: cities, stores, catalogue, weighted tables
//!        │
//!        v
//! customers      per chunk of users, on worker threads: profile, purchases, events, tags
//!        │ rows
//!        v
//! batches        the contract's schemas (crate::tables); column builders -> record batches
//!        │ in chunk order (pipeline), order ids numbered
//!        v
//! files          one writer thread per table: numbered, bounded CSV or Parquet files
//! ```

mod batches;
mod calendar;
mod customers;
mod distributions;
mod files;
pub mod identities;
mod model;
mod pipeline;
#[cfg(test)]
mod tests;
mod vocabulary;

use std::path::PathBuf;

pub use calendar::GEN_NOW_MICROS;
pub use pipeline::generate;

/// Output format of the generated files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GenFormat {
    /// Snappy-compressed Parquet, row groups of 262,144 rows.
    Parquet,
    /// CSV with a header row.
    Csv,
}

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Number of users; facts scale with it (≈ 5 purchases, 10 events and 6 tags per user).
    pub users: u64,
    /// Seed: the same users and seed give byte-identical files.
    pub seed: u64,
    /// Output directory; one folder per table is created in it.
    pub out: PathBuf,
    /// File format.
    pub format: GenFormat,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSummary {
    /// Rows per table, in the order users, products, channels, purchases, events, user_tags.
    pub rows: Vec<(&'static str, u64)>,
    /// Number of files written.
    pub files: usize,
    /// Total size of the files written, in bytes.
    pub bytes: u64,
}
