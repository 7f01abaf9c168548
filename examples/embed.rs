//! Embedding Persona in a service: open (or create) a store, import files, and run audience SQL on
//! a pinned snapshot from several threads while a writer commits.
//!
//! Run with `cargo run --example embed -- STORE_DIR [FILES...]`; with no files it generates a small
//! synthetic data set first.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use persona::{ImportOptions, MaterializeOptions, SessionOptions, Store};

fn main() -> persona::Result<()> {
    let mut args = std::env::args().skip(1);
    let store_dir = PathBuf::from(args.next().unwrap_or_else(|| "embed-demo-store".into()));
    let mut inputs: Vec<PathBuf> = args.map(PathBuf::from).collect();

    if inputs.is_empty() {
        let source = std::env::temp_dir().join(format!("persona-embed-{}", std::process::id()));
        persona::r#gen::generate(
            &persona::r#gen::GenOptions {
                users: 5_000,
                seed: 1,
                out: source.clone(),
                format: persona::r#gen::GenFormat::Parquet,
            },
            &|_| {},
        )?;
        inputs.push(source);
    }

    // A Store is a cheap handle: clone it into threads. Imports take the writer lock.
    let store = Store::open_or_create(&store_dir)?;
    let summary = store.import(&inputs, &ImportOptions::default())?;
    println!("committed version {:?}: {:?}", summary.version, summary.rows);

    // Each session is pinned to the version current when it was made.
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").expect("a valid RFC 3339 literal");
    let options = SessionOptions { now: Some(now.with_timezone(&chrono::Utc)), ..Default::default() };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| persona::Error::Internal(e.to_string()))?;
    let readers: Vec<_> = ["gold", "silver"]
        .into_iter()
        .map(|tier| {
            let store = store.clone();
            let options = options.clone();
            let handle = runtime.handle().clone();
            std::thread::spawn(move || -> persona::Result<(String, usize)> {
                let session = store.session_with(&options)?;
                let sql = format!("SELECT user_id, email FROM users WHERE tier = '{tier}'");
                let batches = handle.block_on(session.query(&sql))?;
                Ok((tier.to_string(), batches.iter().map(|b| b.num_rows()).sum()))
            })
        })
        .collect();
    for reader in readers {
        let (tier, rows) = reader.join().map_err(|_| persona::Error::Internal("reader thread panicked".into()))??;
        println!("{tier}: {rows} users");
    }

    // The DataFusion context is there for anything beyond SQL text.
    let session = store.session_with(&options)?;
    let df = runtime.block_on(session.sql(
        "SELECT count(*) AS lapsed FROM users u WHERE NOT EXISTS \
         (SELECT 1 FROM purchases p WHERE p.user_id = u.user_id AND p.ts >= now() - INTERVAL '90 days')",
    ))?;
    let batches = runtime.block_on(df.collect()).map_err(persona::Error::from)?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);

    // Audiences are SQL statements; the session moves to the version each one commits.
    runtime.block_on(session.query(
        "CREATE OR REPLACE AUDIENCE gold_lapsed AS SELECT user_id, email FROM users \
         WHERE tier = 'gold' AND NOT purchased_within(INTERVAL '90 days')",
    ))?;
    let target = store_dir.join("gold_lapsed.parquet");
    let options = MaterializeOptions { target: Some(target), ..Default::default() };
    let report = runtime.block_on(session.materialize("gold_lapsed", &options))?;
    println!("gold_lapsed: version {}, {} rows written to {:?}", report.version, report.rows_written, report.files);
    Ok(())
}
