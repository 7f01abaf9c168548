//! Integration tests of Persona through its public API and its `persona` binary: import errors and
//! their all-or-nothing guarantee, users upserts, refusal of repeated fact loads, typed custom
//! columns, quirky CSV input, snapshots and dry runs, the writer lock, the command line, files
//! left by interrupted imports, seeded random damage to the sample inputs (import_fuzz), the
//! library API a service embeds (embedding), the HTML report checked in headless Chromium, and
//! backups taken while imports run, vacuum, forgetting users (erasure), compaction, repair, and memory limits.
//! Every test builds its own small store in a temporary directory.

mod activity_counts;
mod activity_index;
mod audience_fuzz;
mod audiences;
mod backup;
mod baskets;
mod bit_flips;
mod cli;
mod compact;
mod csv_quirks;
mod custom_columns;
mod day_times;
mod embedding;
mod fact_lookups;
mod faults;
mod forget;
mod group_counts;
mod hourly_imports;
mod idempotency;
mod identity;
mod import_errors;
mod import_fuzz;
mod insert;
mod interrupted;
mod kept_files;
mod lock;
mod memory;
mod repair;
mod report;
mod settings;
mod snapshots;
mod store_paths;
mod tag_counts;
mod top;
mod update;
mod upsert;
mod util;
mod vacuum;
