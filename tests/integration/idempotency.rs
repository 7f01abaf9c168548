//! Loading the same fact or tag file twice must not double its rows: the store remembers the
//! content fingerprint of every loaded fact file and refuses the second load (under any name, and
//! within one import), while re-importing a users file is a harmless upsert.

use persona::Table;
use persona::error::InputLocation;

use crate::util::*;

#[tokio::test]
async fn second_load_of_the_same_purchases_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let again = dir.path().join("base-inputs/purchases.csv");
    let err = refused(&store, &[&again]);
    let message = assert_input_error(&err, &again, InputLocation::File, None);
    assert!(message.contains("already loaded"), "{message}");
    assert!(message.contains("version 2"), "the message names the version that loaded it: {message}");
    assert_eq!(count(&session(&store), "SELECT count(*) FROM purchases").await, 3);
}

#[tokio::test]
async fn same_content_under_another_name_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let copy = write(dir.path(), "elsewhere/purchases_copy.csv", PURCHASES_CSV);
    let message = assert_input_error(&refused(&store, &[&copy]), &copy, InputLocation::File, None);
    assert!(message.contains("already loaded"), "{message}");
    assert_eq!(count(&session(&store), "SELECT count(*) FROM purchases").await, 3);
}

#[test]
fn the_same_file_twice_in_one_import_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let a = write(
        dir.path(),
        "a/purchases.csv",
        "order_id,user_id,product_id,channel_id,ts,quantity,amount\no50,u3,p1,app,2026-10-09 00:00:00,1,1\n",
    );
    let b = write(dir.path(), "b/purchases.csv", std::fs::read(&a).unwrap());
    let err = refused(&store, &[&a, &b]);
    let (file, location, _, message) = input_error(&err);
    assert_eq!(file, b.as_path(), "{err}");
    assert_eq!(location, &InputLocation::File);
    assert!(message.contains("same content"), "{message}");
}

#[tokio::test]
async fn second_load_of_the_same_tags_and_events_files_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let tags = write(dir.path(), "user_tags.csv", "user_id,tag,assigned_at\nu1,vip,2026-01-01 00:00:00\nu2,new,\n");
    let events = write(dir.path(), "events.csv", "user_id,channel_id,event_type,ts\nu1,app,view,2026-10-01 00:00:00\n");
    import(&store, &[&tags, &events]).expect("first load");
    for f in [&tags, &events] {
        let message = assert_input_error(&refused(&store, &[f]), f, InputLocation::File, None);
        assert!(message.contains("already loaded"), "{message}");
    }
    let s = session(&store);
    assert_eq!(count(&s, "SELECT count(*) FROM user_tags").await, 2);
    assert_eq!(count(&s, "SELECT count(*) FROM events").await, 1);
}

#[tokio::test]
async fn a_new_purchases_file_still_loads_after_a_refused_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    refused(&store, &[&dir.path().join("base-inputs/purchases.csv")]);
    let more = write(
        dir.path(),
        "purchases-more.csv",
        "order_id,user_id,product_id,channel_id,ts,quantity,amount\no4,u5,p9,web,2026-10-04 00:00:00,3,30\n",
    );
    let summary = import(&store, &[&more]).expect("different content loads");
    assert_eq!(summary.rows, vec![(Table::Purchases, 1)]);
    assert_eq!(summary.version, Some(3));
    assert_eq!(count(&session(&store), "SELECT count(*) FROM purchases").await, 4);
}

#[tokio::test]
async fn reimporting_the_same_users_file_is_a_harmless_upsert() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let s = session(&store);
    let before = rows(&s, "SELECT * FROM users ORDER BY user_id").await;
    let users = dir.path().join("base-inputs/users.csv");
    let summary = import(&store, &[&users]).expect("users may be loaded again");
    assert_eq!((summary.new_users, summary.updated_users), (0, 5));
    assert_eq!(summary.version, Some(3));
    let s = session(&store);
    assert_eq!(rows(&s, "SELECT * FROM users ORDER BY user_id").await, before);
    assert_eq!(store.snapshot().unwrap().user_count(), 5);
    assert_eq!(count(&s, "SELECT count(*) FROM purchases p JOIN users u ON p.user_id = u.user_id").await, 3);
}
