//! Versions and read isolation: a snapshot (or a session) taken before an import keeps seeing its
//! version while new ones see the next; versions are listed in order; opening a plain directory is
//! `NotAStore`; `--dry-run` validates everything (against the store, or without one) and changes
//! nothing.

use std::path::PathBuf;

use persona::error::InputLocation;
use persona::ingest::dry_run_without_store;
use persona::{Error, ImportOptions, Store, Table};

use crate::util::*;

#[tokio::test]
async fn a_session_taken_before_an_import_keeps_seeing_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let old_snapshot = store.snapshot().unwrap();
    let old_session = session(&store);
    assert_eq!(count(&old_session, "SELECT count(*) FROM purchases").await, 3);

    let users = write(dir.path(), "users.csv", "user_id,name\nu6,Fay\nu1,Ann Renamed\n");
    let more = write(
        dir.path(),
        "purchases-more.csv",
        "order_id,user_id,product_id,channel_id,ts,quantity,amount\no4,u6,p1,app,2026-10-04 00:00:00,1,1\n",
    );
    assert_eq!(import(&store, &[&users, &more]).unwrap().version, Some(3));

    assert_eq!(old_snapshot.version(), 2);
    assert_eq!(old_snapshot.user_count(), 5);
    assert_eq!(old_session.snapshot().version(), 2);
    assert_eq!(count(&old_session, "SELECT count(*) FROM purchases").await, 3);
    assert_eq!(count(&old_session, "SELECT count(*) FROM users").await, 5);
    assert_eq!(rows(&old_session, "SELECT name FROM users WHERE user_id = 'u1'").await, vec!["Ann"]);

    let new_session = session(&store);
    assert_eq!(new_session.snapshot().version(), 3);
    assert_eq!(count(&new_session, "SELECT count(*) FROM purchases").await, 4);
    assert_eq!(count(&new_session, "SELECT count(*) FROM users").await, 6);
    assert_eq!(rows(&new_session, "SELECT name FROM users WHERE user_id = 'u1'").await, vec!["Ann Renamed"]);
    assert_eq!(store.versions().unwrap(), vec![0, 1, 2, 3]);
}

#[test]
fn another_handle_on_the_same_directory_sees_new_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let other = Store::open(store.root()).unwrap();
    let users = write(dir.path(), "users.csv", "user_id\nu6\n");
    import(&store, &[&users]).unwrap();
    assert_eq!(other.snapshot().unwrap().version(), 3);
    assert_eq!(other.snapshot().unwrap().user_count(), 6);
}

#[test]
fn opening_a_plain_directory_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(&err, Error::NotAStore { path } if path == dir.path()), "{err:?}");
    assert!(err.to_string().contains("not a Persona store"), "{err}");
    let err = Store::open(dir.path().join("missing")).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err:?}");
}

#[test]
fn a_new_store_starts_empty_at_version_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("a/b/store"));
    let snap = store.snapshot().unwrap();
    assert_eq!((snap.version(), snap.user_count()), (0, 0));
    assert_eq!(store.versions().unwrap(), vec![0]);
    assert!(store.root().join("_persona/CURRENT").is_file());
    assert!(store.root().join("_persona/manifests/v00000000.json").is_file());
    // Opening it again (either way) finds the same store.
    assert_eq!(create_store(store.root()).snapshot().unwrap().version(), 0);
}

#[test]
fn a_dry_run_validates_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let before = state(&store);
    let users = write(dir.path(), "users.csv", "user_id,name,shoe_size\nu6,Fay,38\nu1,Ann,39\n");
    let tags = write(dir.path(), "user_tags.csv", "user_id,tag,assigned_at\nu6,new,\nu1,vip,\n");
    let dry = ImportOptions { dry_run: true, ..ImportOptions::default() };
    let summary = import_with(&store, &[&users, &tags], &dry).expect("valid input");
    assert_eq!(summary.version, None);
    assert_eq!(summary.rows, vec![(Table::Users, 2), (Table::UserTags, 2)]);
    assert_eq!((summary.new_users, summary.updated_users), (1, 1));
    assert_eq!(state(&store), before);

    // The same error as a real load.
    let bad = write(dir.path(), "user_tags-bad.csv", "user_id,tag,assigned_at\nnobody,new,\n");
    let err = import_with(&store, &[&bad], &dry).unwrap_err();
    assert_input_error(&err, &bad, InputLocation::Line(2), Some("user_id"));
    assert_eq!(state(&store), before);

    // A dry run does not remember the fingerprint: the real load still works afterwards.
    let summary = import(&store, &[&users, &tags]).expect("the real load");
    assert_eq!(summary.version, Some(3));
}

#[test]
fn a_dry_run_without_a_store_validates_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("export");
    write(&inputs, "users/users-1.csv", USERS_CSV);
    write(&inputs, "purchases.csv", PURCHASES_CSV);
    let dry = ImportOptions { dry_run: true, ..ImportOptions::default() };
    let summary = dry_run_without_store(std::slice::from_ref(&inputs), &dry).expect("valid folder");
    assert_eq!(summary.version, None);
    assert_eq!(summary.rows, vec![(Table::Users, 5), (Table::Purchases, 3)]);
    assert_eq!(summary.files, 2);

    let bad = write(&inputs, "events.csv", "user_id,channel_id,event_type,ts\nu1,app,view,not-a-time\n");
    let err = dry_run_without_store(std::slice::from_ref(&inputs), &dry).unwrap_err();
    assert_input_error(&err, &bad, InputLocation::Line(2), Some("ts"));
    // Nothing was created next to the inputs.
    let listed: Vec<PathBuf> = files_under(&inputs).into_iter().collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(!inputs.join("_persona").exists());
}

#[tokio::test]
async fn a_folder_of_table_folders_loads_every_table_in_one_version() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("export");
    write(&inputs, "users/part-1.csv", "user_id,name\nu1,A\nu2,B\n");
    write(&inputs, "users/part-2.csv", "user_id,name\nu3,C\n");
    write(&inputs, "products/products.csv", "product_id,name,category,brand,price\np1,Tea,drinks,Acme,9.9\n");
    write(&inputs, "channels.csv", "channel_id,name,kind\napp,App,online\n");
    write(&inputs, "events/e.csv", "user_id,channel_id,event_type,ts\nu3,app,view,2026-10-01 00:00:00\n");
    let store = create_store(dir.path().join("store"));
    let summary = import_with(&store, &[&inputs], &ImportOptions::default()).unwrap();
    assert_eq!(summary.version, Some(1));
    assert_eq!(summary.files, 5);
    assert_eq!(summary.rows, vec![(Table::Users, 3), (Table::Products, 1), (Table::Channels, 1), (Table::Events, 1)]);
    let s = session(&store);
    assert_eq!(
        rows(&s, "SELECT u.name, c.kind, p.price FROM events e JOIN users u USING (user_id) JOIN channels c USING (channel_id), products p").await,
        vec!["C|online|9.9"]
    );
}
