//! Audience-query benchmark: Q1, Q3, Q4, Q5, Q6 and Q7 of the audience benchmark
//! (`benches/queries/`) and five shapes of the second set (`benches/queries-audience/`: a01, a02,
//! a03, a04, a13) through the library, in one warm session.
//!
//! Measured: `rt.block_on(session.query(sql))` — planning, executing and collecting the result of
//! one statement — on a `persona::Session` opened once with "now" pinned to 2026-11-01 00:00:00
//! (the store is opened and the session built before measuring). One `BenchmarkId` per query:
//! Q1 (tag ∧ tier ∧ no recent purchase, count), Q3 (tags ∨/¬, region, age range, count), Q6 (pairwise
//! tag overlaps), Q4 (distinct buyers of a category, minus a tag), Q5 (per-user count and sum over
//! a channel and a 180-day window: the dense aggregate over the purchases' plain copies), Q7 (RFM
//! quintiles: the dense aggregate under a window chain). Group `audience_queries` uses the bitmap indexes (the default); group
//! `audience_queries_scan` runs the same queries with `use_indexes: Some(false)` (DataFusion's
//! general path over the store's Parquet files), the baseline the indexes must beat.
//!
//! Data: `PERSONA_BENCH_STORE=<dir>` benchmarks an existing store. Otherwise 100,000 users with
//! seed 42 are generated and imported once into `$CARGO_TARGET_DIR/persona-bench/bench-100000-42/`
//! (`target/` when `CARGO_TARGET_DIR` is unset) and reused by later runs; it is rebuilt (a few
//! seconds) when missing, when this benchmark was compiled after the store was written (so that it
//! always has the current library's indexes), or when the library cannot open it.
//!
//! Run: `cargo bench --bench audience_queries` (`... -- audience_queries/` for the indexed group
//! only, `... -- q1` for one query). Prints each query's result once (and a warning if the path
//! without indexes disagrees), then criterion's time per query (median and confidence interval).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};

use arrow::util::pretty::pretty_format_batches;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use persona::r#gen::{GEN_NOW_MICROS, GenFormat, GenOptions, generate};
use persona::{ImportOptions, SessionOptions, Store};

const USERS: u64 = 100_000;
const SEED: u64 = 42;

const QUERIES: [(&str, &str); 11] = [
    ("q1", include_str!("queries/q1.sql")),
    ("q3", include_str!("queries/q3.sql")),
    ("q4", include_str!("queries/q4.sql")),
    ("q5", include_str!("queries/q5.sql")),
    ("q6", include_str!("queries/q6.sql")),
    ("q7", include_str!("queries/q7.sql")),
    // Shapes of the audience compiler (benches/queries-audience): subqueries under OR, the
    // outer-join anti join, "2 of 4 tags", a window edge inside a day, a tag OR a LIKE.
    ("a01", include_str!("queries-audience/a01.sql")),
    ("a02", include_str!("queries-audience/a02.sql")),
    ("a03", include_str!("queries-audience/a03.sql")),
    ("a04", include_str!("queries-audience/a04.sql")),
    ("a13", include_str!("queries-audience/a13.sql")),
];

/// "now" pinned to 2026-11-01 00:00:00; `use_indexes: false` takes DataFusion's general path.
fn session_options(use_indexes: bool) -> SessionOptions {
    let now = chrono::DateTime::from_timestamp_micros(GEN_NOW_MICROS).expect("2026-11-01 is a valid timestamp");
    SessionOptions { now: Some(now), use_indexes: Some(use_indexes), ..Default::default() }
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
    if done.exists() && !built_before_this_binary(&done) {
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

/// Whether `marker` is older than this benchmark executable, i.e. the cached store may have been
/// written by an older library (and lack newer indexes). Rebuilding 100 k users takes seconds.
fn built_before_this_binary(marker: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(marker), std::env::current_exe().ok().as_deref().and_then(modified)) {
        (Some(built), Some(exe)) => built < exe,
        _ => false,
    }
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
    let indexed = store.session_with(&session_options(true)).expect("open a session");
    let scan = store.session_with(&session_options(false)).expect("open a session without indexes");

    // Run each query once before measuring: fails early with the SQL error, shows the results, and
    // checks that both paths agree.
    for (name, sql) in QUERIES {
        let batches = rt.block_on(indexed.query(sql)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let shown = pretty_format_batches(&batches).map(|t| t.to_string()).unwrap_or_default();
        eprintln!("audience_queries: {name}: {rows} row(s)\n{shown}");
        let without = rt.block_on(scan.query(sql)).unwrap_or_else(|e| panic!("{name} without indexes: {e}"));
        let shown_without = pretty_format_batches(&without).map(|t| t.to_string()).unwrap_or_default();
        if shown_without != shown {
            eprintln!("audience_queries: WARNING {name} differs without indexes:\n{shown_without}");
        }
    }

    // One group per path, one BenchmarkId per query: audience_queries/q1 and audience_queries_scan/q1.
    for (group_name, session) in [("audience_queries", &indexed), ("audience_queries_scan", &scan)] {
        let mut group = c.benchmark_group(group_name);
        for (name, sql) in QUERIES {
            group.bench_with_input(BenchmarkId::from_parameter(name), sql, |b, sql| {
                b.iter(|| rt.block_on(session.query(sql)).expect("query"));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_audience_queries);
criterion_main!(benches);
