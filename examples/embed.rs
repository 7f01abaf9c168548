//! Embedding Persona in a service (docs/embedding.md), with the crate's public API only: open or
//! create a store, import files, query a pinned version from several threads while another handle
//! commits an audience, move to the newest version, export the audience, tell errors apart, close.
//!
//! ```sh
//! cargo run --example embed -- /tmp/crm datasets/sample   # creates /tmp/crm and loads the sample
//! cargo run --example embed -- /tmp/crm                   # later runs: the store as it is
//! ```
//!
//! The importer recognises each table of `datasets/sample/` by its folder name. Loading the same
//! fact files twice is refused, so give the inputs once. The export goes to `<STORE>-exports/`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;

use persona::{Error, ImportOptions, MaterializeOptions, SessionOptions, Store};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> persona::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let Some(root) = args.next().map(PathBuf::from) else {
        return Err(Error::Arguments("usage: cargo run --example embed -- STORE [FILES_OR_FOLDERS...]".into()));
    };
    let inputs: Vec<PathBuf> = args.map(PathBuf::from).collect();

    // A Store is a cheap handle on a directory; clone it into threads. An import takes the
    // store's writer lock for its duration and commits one version, or nothing.
    let store = Store::open_or_create(&root)?;
    if !inputs.is_empty() {
        let summary = store.import(&inputs, &ImportOptions::default())?;
        println!("imported {:?} as version {:?}", summary.rows, summary.version);
    }

    // A session is pinned to the version current when it is made. The sample's data ends before
    // 2026-11-01: pinning now() there makes time windows give the same answer on every run.
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").expect("an RFC 3339 literal").to_utc();
    let options = SessionOptions { now: Some(now), ..SessionOptions::default() };
    let session = store.session_with(&options)?;
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let anyone = runtime.block_on(session.query("SELECT user_id FROM users LIMIT 1"))?;
    if anyone.iter().all(|b| b.num_rows() == 0) {
        return Err(Error::Usage("the store has no users; give inputs, e.g. datasets/sample".into()));
    }
    println!("session on version {}", session.version());

    // Clones of a session share its pinned version; queries from several threads run at once.
    let readers: Vec<_> = ["gold", "silver"]
        .into_iter()
        .map(|tier| {
            let (session, runtime) = (session.clone(), runtime.handle().clone());
            std::thread::spawn(move || {
                let sql = format!("SELECT user_id, email FROM users WHERE tier = '{tier}'");
                let rows: usize = runtime.block_on(session.query(&sql))?.iter().map(|b| b.num_rows()).sum();
                Ok::<_, Error>((tier, rows))
            })
        })
        .collect();
    for reader in readers {
        let (tier, rows) = reader.join().expect("a reader thread")?;
        println!("{tier}: {rows} users");
    }

    // Another handle on the same store, as another process would have: its audience statement
    // commits a new version, which the first session does not see until it refreshes.
    let writer = Store::open(&root)?.session_with(&options)?;
    runtime.block_on(writer.query(
        "CREATE OR REPLACE AUDIENCE gold_lapsed AS SELECT user_id, email FROM users \
         WHERE tier = 'gold' AND NOT purchased_within(INTERVAL '90 days')",
    ))?;
    println!("the writer committed version {}; the session is still on {}", writer.version(), session.version());
    let (from, to) = session.refresh()?;
    println!("refreshed from version {from} to {to}");
    for audience in session.audiences() {
        println!("audience {}: version {:?}, {} members", audience.name, audience.version, audience.members);
    }

    // Exports: evaluated on the newest version, recorded as a new version when the members
    // changed, written atomically (a temporary name, then a rename).
    let exports = store.root().with_file_name(format!(
        "{}-exports",
        store.root().file_name().map_or("store".into(), |n| n.to_string_lossy())
    ));
    let target = Some(exports.join("gold_lapsed.parquet"));
    let report =
        runtime.block_on(session.materialize("gold_lapsed", &MaterializeOptions { target, ..Default::default() }))?;
    println!("gold_lapsed version {}: {} rows written to {:?}", report.version, report.rows_written, report.files);

    // One error type; match on what the caller can act on.
    match runtime.block_on(session.query("SELECT user_id FROM users WHERE nickname = 'x'")) {
        Err(Error::Sql { message, position }) => println!("a SQL error at {position:?}: {message}"),
        Err(Error::Locked { lock_file }) => println!("another writer holds {}", lock_file.display()),
        Err(other) => return Err(other),
        Ok(_) => println!("unexpected: the query ran"),
    }

    // Exports free the files they replace on background threads; close waits for them (dropping
    // the last clone of a session would too).
    writer.close();
    session.close();
    Ok(())
}
