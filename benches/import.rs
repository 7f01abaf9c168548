//! Import benchmark: `Store::import` of a generated Parquet data set into a fresh, empty store.
//!
//! Measured: one `persona::Store::open_or_create(dir)?.import(&[source], &ImportOptions::default())`
//! call (reading the six Parquet tables, validating them against the data contract, assigning row
//! ids, writing the store's files and committing version 1). Creating the empty temporary store
//! directory happens in the untimed set-up of `iter_batched`, and deleting it after the measurement.
//!
//! Data: `persona::r#gen::generate` with 20,000 users and seed 42, Parquet (≈ 100 k purchases,
//! 200 k events, 120 k tag rows), generated once into a temporary directory before measuring.
//!
//! Run: `cargo bench --bench import` (add `-- --sample-size 10` for a quicker run). Prints
//! criterion's time per import (median and confidence interval) and the change since the last run.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use persona::r#gen::{GenFormat, GenOptions, generate};
use persona::{ImportOptions, Store};

const USERS: u64 = 20_000;
const SEED: u64 = 42;

fn import_into_fresh_store(store_dir: &Path, source: &Path) -> persona::Result<persona::ImportSummary> {
    Store::open_or_create(store_dir)?.import(&[source.to_path_buf()], &ImportOptions::default())
}

fn bench_import(c: &mut Criterion) {
    let source_root = tempfile::tempdir().expect("create a temporary directory for the source data");
    let source: PathBuf = source_root.path().join("source");
    let generated = generate(
        &GenOptions { users: USERS, seed: SEED, out: source.clone(), format: GenFormat::Parquet },
        &|_done| {},
    )
    .expect("generate the source data");
    let rows: u64 = generated.rows.iter().map(|(_, n)| n).sum();
    eprintln!("import bench: {USERS} users, seed {SEED}: {rows} rows in {} files", generated.files);

    // A first import outside the measurement: fails early (with the error) instead of inside criterion.
    let check = tempfile::tempdir().expect("create a temporary store directory");
    let summary = import_into_fresh_store(&check.path().join("store"), &source).expect("import the generated data");
    eprintln!("import bench: one import = {:?} (as reported by the importer)", summary.elapsed);
    drop(check);

    let mut group = c.benchmark_group("import");
    group.sample_size(10);
    group.throughput(Throughput::Elements(rows));
    group.bench_function(format!("parquet_{}k_users", USERS / 1000), |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("create a temporary store directory"),
            |dir| {
                let summary = import_into_fresh_store(&dir.path().join("store"), &source).expect("import");
                // Returned so that deleting the store happens outside the measurement.
                (dir, summary)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, bench_import);
criterion_main!(benches);
