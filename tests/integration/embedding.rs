//! The library API a service embeds (docs/embedding.md), through the crate's re-exports only:
//! scripts of SQL and audience statements on one session, saved audiences listed, exports through
//! `Session::materialize`, a session moved to another handle's commit by `refresh`, and exports
//! that leave no hidden `.name.old-…` file once the session is closed or its last clone dropped.
//! Before the session owned the removal threads, a program had to call
//! `persona::store::io::finish_background_removals()` before exiting, or a replaced export's old
//! copy could stay beside it.

use std::path::Path;

use persona::{Error, MaterializeOptions, Session, Store};

use crate::util::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("a runtime")
}

/// Every name in `dir`, hidden ones included, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Creates the `golds` audience and exports it twice to `out/golds.parquet`: the second export
/// replaces the first file, whose old copy is removed in the background.
fn export_twice(rt: &tokio::runtime::Runtime, session: &Session, out: &Path) {
    rt.block_on(session.query("CREATE AUDIENCE golds AS SELECT user_id, name FROM users WHERE tier = 'gold'"))
        .expect("create the audience");
    let options = MaterializeOptions { target: Some(out.join("golds.parquet")), ..Default::default() };
    for round in 1..=2 {
        let report = rt.block_on(session.materialize("golds", &options)).expect("materialize");
        // CREATE AUDIENCE computed version 1 already.
        assert_eq!((report.version, report.unchanged, report.rows_written), (1, true, 2), "round {round}");
    }
}

/// docs/embedding.md promises handles that go into threads and futures that go into tasks.
#[test]
fn handles_are_shareable_and_futures_can_be_spawned() {
    fn shareable<T: Clone + Send + Sync + 'static>(_: &T) {}
    fn spawnable<F: std::future::Future + Send>(_: F) {}
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let session = session(&store);
    shareable(&store);
    shareable(&session);
    spawnable(session.query("SELECT 1"));
    spawnable(session.sql("SELECT 1"));
    spawnable(session.run_script("SELECT 1"));
    spawnable(session.materialize("a", &MaterializeOptions::default()));
}

#[test]
fn a_script_saves_an_audience_that_its_next_statement_reads_and_audiences_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let session = session(&store);
    let rt = runtime();
    let _scope = lock_scope();
    let results = rt
        .block_on(session.run_script(
            "CREATE AUDIENCE golds AS SELECT user_id FROM users WHERE tier = 'gold';
             SELECT count(*) AS n FROM users WHERE in_audience('golds')",
        ))
        .expect("the script runs");
    assert_eq!(results.len(), 2, "one result per statement");
    assert_eq!(batches_to_rows(&results[1]), vec!["2"]);
    assert_eq!(session.version(), 3, "the session moved to the version the audience committed");
    let audiences = session.audiences();
    assert_eq!(audiences.len(), 1);
    let golds = &audiences[0];
    assert_eq!(golds.name, "golds");
    assert_eq!((golds.version, golds.members, golds.holdout, golds.computed_on), (Some(1), 2, 0, Some(2)));
    assert!(golds.query.contains("tier = 'gold'"), "{}", golds.query);

    let err = rt.block_on(session.sql("SELECT 1; SELECT 2")).unwrap_err();
    assert!(matches!(&err, Error::Usage(m) if m.contains("run_script")), "{err}");
}

#[test]
fn close_waits_until_a_replaced_export_leaves_no_old_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let out = dir.path().join("out");
    let rt = runtime();
    let _scope = lock_scope();
    let session = session(&store);
    export_twice(&rt, &session, &out);
    session.close();
    assert_eq!(names(&out), vec!["golds.parquet"]);
}

#[test]
fn dropping_the_last_clone_of_a_session_waits_as_close_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let out = dir.path().join("out");
    let rt = runtime();
    let _scope = lock_scope();
    let session = session(&store);
    let clone = session.clone();
    export_twice(&rt, &clone, &out);
    drop(clone);
    let version = session.version();
    drop(session);
    assert_eq!(names(&out), vec!["golds.parquet"]);
    assert_eq!(store.snapshot().unwrap().version(), version);
}

#[test]
fn refresh_moves_a_session_to_what_another_handle_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let rt = runtime();
    let _scope = lock_scope();
    let reader = session(&store);
    let writer = session(&Store::open(store.root()).unwrap());
    rt.block_on(writer.query("CREATE AUDIENCE golds AS SELECT user_id FROM users WHERE tier = 'gold'")).unwrap();
    assert_eq!((reader.version(), writer.version()), (2, 3));
    assert!(reader.audiences().is_empty(), "a pinned session does not see later commits");
    assert_eq!(reader.refresh().unwrap(), (2, 3));
    assert_eq!(reader.audiences().len(), 1);
    assert_eq!(rt.block_on(count(&reader, "SELECT count(*) FROM users WHERE in_audience('golds')")), 2);
}
