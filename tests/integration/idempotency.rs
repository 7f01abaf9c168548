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

/// The fingerprints live in load logs beside the manifest (store::load_log): one per import,
/// merged into one before a version refers to 64. A file loaded long ago is still refused after
/// merges; a store whose manifest keeps the record inline (format 6 and before) is still
/// protected, and its next import moves the record into a log.
#[tokio::test]
async fn loads_recorded_in_merged_logs_and_inline_records_are_refused_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let header = "order_id,user_id,product_id,channel_id,ts,quantity,amount\n";
    let file = |i: usize| {
        write(
            dir.path(),
            &format!("hour-{i}/purchases.csv"),
            format!("{header}h{i},u3,p1,app,2026-10-09 00:00:00,1,{i}\n"),
        )
    };
    for i in 0..70 {
        import(&store, &[&file(i)]).unwrap();
    }
    let m = store.snapshot().unwrap().manifest().clone();
    assert!(m.loaded_files.is_empty());
    assert!(m.load_log.len() < persona::store::load_log::MERGE_AT, "{} logs", m.load_log.len());
    assert!(m.load_log.iter().any(|l| l.entries > 60), "the early logs were merged: {:?}", m.load_log);
    let message = assert_input_error(&refused(&store, &[&file(3)]), &file(3), InputLocation::File, None);
    assert!(message.contains("already loaded") && message.contains("version 6"), "{message}");
    assert_eq!(count(&session(&store), "SELECT count(*) FROM purchases").await, 73);

    // The record inline, as a format-6 manifest keeps it.
    let root = store.root().to_path_buf();
    let current = std::fs::read_to_string(persona::store::layout::current_file(&root)).unwrap();
    let path = persona::store::layout::manifests_dir(&root).join(current.trim());
    let mut manifest = persona::store::manifest::Manifest::from_bytes(&std::fs::read(&path).unwrap(), &path).unwrap();
    manifest.loaded_files = persona::store::load_log::loaded_files(&root, &manifest).unwrap();
    manifest.load_log.clear();
    manifest.format_version = 6;
    std::fs::write(&path, manifest.to_bytes().unwrap()).unwrap();
    let store = persona::Store::open(&root).unwrap();
    let message = assert_input_error(&refused(&store, &[&file(69)]), &file(69), InputLocation::File, None);
    assert!(message.contains("already loaded"), "{message}");
    import(&store, &[&file(70)]).unwrap();
    let m = store.snapshot().unwrap().manifest().clone();
    assert!(m.loaded_files.is_empty(), "moved into a log");
    assert_eq!(m.load_log.len(), 1);
    assert_eq!(m.load_log[0].entries, 72, "the base store's purchases file, the 70 hours and the last one");
    assert_eq!(m.format_version, 7);
    assert!(refused(&store, &[&file(0)]).to_string().contains("already loaded"));
    check_passes(&store);
}
