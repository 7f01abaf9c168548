//! Audience-query benchmark: Q1, Q3 and Q6 of the audience benchmark (`benches/queries/`) through
//! the library, in one warm session.
//!
//! Measured: `rt.block_on(session.query(sql))` — planning, executing and collecting the result of
//! one statement — on a `persona::Session` opened once with "now" pinned to 2026-11-01 00:00:00
//! (the store is opened and the session built before measuring). One `BenchmarkId` per query:
//! Q1 (tag ∧ tier ∧ no recent purchase, count), Q3 (tags ∨/¬, region, age range, count), Q6 (pairwise
//! tag overlaps).
//!
//! Data: `PERSONA_BENCH_STORE=<dir>` benchmarks an existing store. Otherwise 100,000 users with
//! seed 42 are generated and imported once into `$CARGO_TARGET_DIR/persona-bench/bench-100000-42/`
//! (`target/` when `CARGO_TARGET_DIR` is unset) and reused by later runs; it is rebuilt when missing
//! or when the current library can no longer open it. Delete that folder to force a rebuild.
//!
//! Run: `cargo bench --bench audience_queries` (or `... -- q1` for one query). Prints each query's
//! result row count once, then criterion's time per query (median and confidence interval).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use persona::r#gen::{GEN_NOW_MICROS, GenFormat, GenOptions, generate};
use persona::{ImportOptions, SessionOptions, Store};

const USERS: u64 = 100_000;
const SEED: u64 = 42;

const QUERIES: [(&str, &str); 3] = [
    ("q1", include_str!("queries/q1.sql")),
    ("q3", include_str!("queries/q3.sql")),
    ("q6", include_str!("queries/q6.sql")),
];

fn session_options() -> SessionOptions {
    let now = chrono::DateTime::from_timestamp_micros(GEN_NOW_MICROS).expect("2026-11-01 is a valid timestamp");
    SessionOptions { now: Some(now), ..Default::default() }
}

/// The store to benchmark: `PERSONA_BENCH_STORE`, or the cached generated one (built if needed).
fn bench_store() -> Store {
    if let Some(dir) = std::env::var_os("PERSONA_BENCH_STORE") {
        let dir = PathBuf::from(dir);
        eprintln!("audience_queries: using the store at {}", dir.display());
        return Store::open(&dir).unwrap_or_else(|e| panic!("PERSONA_BENCH_STORE={}: {e}", dir.display()));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let base = target.join("persona-bench").join(format!("bench-{USERS}-{SEED}"));
    let store_dir = base.join("store");
    let done = base.join("store.done");
    if done.exists() {
        match Store::open(&store_dir).and_then(|s| s.session().map(|_| s)) {
            Ok(store) => {
                eprintln!("audience_queries: reusing the store at {}", store_dir.display());
                return store;
            }
            Err(e) => eprintln!("audience_queries: rebuilding {} ({e})", store_dir.display()),
        }
    }
    build_store(&base, &store_dir, &done)
}

fn build_store(base: &Path, store_dir: &Path, done: &Path) -> Store {
    let source = base.join("source");
    for stale in [done, &source, store_dir] {
        if stale.is_dir() {
            std::fs::remove_dir_all(stale).unwrap_or_else(|e| panic!("remove {}: {e}", stale.display()));
        } else if stale.exists() {
            std::fs::remove_file(stale).unwrap_or_else(|e| panic!("remove {}: {e}", stale.display()));
        }
    }
    std::fs::create_dir_all(base).unwrap_or_else(|e| panic!("create {}: {e}", base.display()));
    eprintln!("audience_queries: generating {USERS} users (seed {SEED}) into {} ...", source.display());
    generate(&GenOptions { users: USERS, seed: SEED, out: source.clone(), format: GenFormat::Parquet }, &|_done| {})
        .expect("generate the benchmark data");
    let store = Store::open_or_create(store_dir).expect("create the benchmark store");
    let summary = store.import(&[source], &ImportOptions::default()).expect("import the benchmark data");
    eprintln!("audience_queries: imported in {:?} into {}", summary.elapsed, store_dir.display());
    std::fs::write(done, format!("{USERS} users, seed {SEED}\n"))
        .unwrap_or_else(|e| panic!("write {}: {e}", done.display()));
    store
}

fn bench_audience_queries(c: &mut Criterion) {
    let store = bench_store();
    let rt = tokio::runtime::Runtime::new().expect("start a tokio runtime");
    let session = store.session_with(&session_options()).expect("open a session");

    // Run each query once before measuring: fails early with the SQL error, and shows the results.
    for (name, sql) in QUERIES {
        let batches = rt.block_on(session.query(sql)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let shown = arrow::util::pretty::pretty_format_batches(&batches).map(|t| t.to_string()).unwrap_or_default();
        eprintln!("audience_queries: {name}: {rows} row(s)\n{shown}");
    }

    let mut group = c.benchmark_group("audience_queries");
    for (name, sql) in QUERIES {
        group.bench_with_input(BenchmarkId::from_parameter(name), sql, |b, sql| {
            b.iter(|| rt.block_on(session.query(sql)).expect("query"));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_audience_queries);
criterion_main!(benches);
