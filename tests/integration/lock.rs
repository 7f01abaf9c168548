//! The single-writer lock: a second writer (or import) is refused at once with `Locked` naming
//! `_persona/LOCK`; readers and dry runs are not blocked; the lock is free again when the writer is
//! dropped, and when a `persona import` process holding it is killed. (Tests that hold a writer
//! do so inside a `lock_scope`, see `util`.)

use std::path::Path;
use std::process::Stdio;

use persona::{Error, ImportOptions, Store};

use crate::util::*;

fn assert_locked(err: &Error, store_root: &Path) {
    match err {
        Error::Locked { lock_file } => {
            assert_eq!(lock_file, &store_root.join("_persona/LOCK"), "{err}");
            assert!(err.to_string().contains("_persona/LOCK"), "the message names the lock file: {err}");
        }
        other => panic!("expected Locked, got {other:?}: {other}"),
    }
}

#[test]
fn a_second_writer_is_refused_with_locked_naming_the_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let _scope = lock_scope();
    let _writer = store.writer().expect("first writer");
    assert_locked(&store.writer().unwrap_err(), store.root());
    // Another handle on the same directory is refused too.
    let other = Store::open(store.root()).unwrap();
    assert_locked(&other.writer().unwrap_err(), store.root());
    // So is an import, and it changes nothing.
    let users = write(dir.path(), "users.csv", "user_id\nu9\n");
    let before = state(&store);
    assert_locked(&import(&other, &[&users]).unwrap_err(), store.root());
    assert_eq!(state(&store), before);
}

#[test]
fn readers_and_dry_runs_are_not_blocked_by_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let _scope = lock_scope();
    let _writer = store.writer().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(rt.block_on(count(&session(&store), "SELECT count(*) FROM purchases")), 3);
    let users = write(dir.path(), "users.csv", "user_id\nu9\n");
    let dry = ImportOptions { dry_run: true, ..ImportOptions::default() };
    assert_eq!(import_with(&store, &[&users], &dry).unwrap().new_users, 1);
}

#[test]
fn the_lock_is_free_again_after_the_writer_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let _scope = lock_scope();
    let writer = store.writer().unwrap();
    assert!(store.writer().is_err());
    drop(writer);
    let users = write(dir.path(), "users.csv", "user_id\nu9\n");
    assert_eq!(import(&store, &[&users]).expect("the lock is free").version, Some(3));
    drop(store.writer().expect("and free again after the import"));
}

#[test]
fn an_uncommitted_writer_dropped_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let before = state(&store);
    let _scope = lock_scope();
    let writer = store.writer().unwrap();
    let (_, abs) = writer.new_file("data/users/abandoned.parquet".to_string()).unwrap();
    std::fs::write(&abs, b"half written").unwrap();
    drop(writer);
    assert!(!abs.exists(), "the abandoned file is removed");
    assert_eq!(state(&store), before);
}

/// Writes a users file big enough that importing it takes a while.
fn big_users_csv(dir: &Path, rows: usize) -> std::path::PathBuf {
    let mut csv = String::with_capacity(rows * 64);
    csv.push_str("user_id,name,city,points,signup_date,custom_a,custom_b\n");
    for i in 0..rows {
        csv.push_str(&format!(
            "big{i},Name {i},City {},{},2024-01-{:02},{},{}\n",
            i % 300,
            i * 7,
            i % 28 + 1,
            i % 10,
            i % 2 == 0
        ));
    }
    write(dir, "users-big.csv", csv)
}

#[test]
fn a_killed_import_process_frees_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let big = big_users_csv(dir.path(), 200_000);
    let mut child = spawn(
        persona_bin()
            .args(["import", "--quiet", "--store"])
            .arg(store.root())
            .arg(&big)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );

    // Wait, without taking the lock ourselves, until the child has the lock: it holds it from
    // before it writes its first data file until its commit is published.
    let before = files_under(store.root());
    let mut saw_child_working = false;
    while child.try_wait().unwrap().is_none() {
        let now = files_under(store.root());
        if now.iter().any(|f| f.starts_with("data") && !before.contains(f)) {
            saw_child_working = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(saw_child_working, "the import finished before it was seen writing; make the input bigger");
    {
        let _scope = lock_scope();
        assert_locked(&store.writer().unwrap_err(), store.root());
    }

    child.kill().expect("kill the import");
    child.wait().unwrap();

    let reopened = Store::open(store.root()).expect("the store opens after the kill");
    let version = reopened.snapshot().unwrap().version();
    assert!(version == 2 || version == 3, "version {version}");
    {
        let _scope = lock_scope();
        drop(reopened.writer().expect("the lock died with the process"));
    }
    let users = write(dir.path(), "users.csv", "user_id\nafter-kill\n");
    let summary = import(&reopened, &[&users]).expect("a later import works");
    assert_eq!(summary.version, Some(version + 1));
}
