//! Users are upserted by user_id: a later load counts new and updated users, replaces only the
//! columns its file carries (the others keep their old values), adds new custom columns (NULL for
//! the users loaded before), and keeps every user's row id so that facts loaded earlier still join
//! to the updated profile.

use persona::Table;

use crate::util::*;

#[tokio::test]
async fn upsert_counts_new_and_updated_users_and_keeps_absent_columns() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let update =
        write(dir.path(), "users-update.csv", "user_id,tier,vip_level\nu2,platinum,3\nu6,gold,1\nu4,silver,2\n");
    let summary = import(&store, &[&update]).expect("the upsert loads");
    assert_eq!(summary.new_users, 1);
    assert_eq!(summary.updated_users, 2);
    assert_eq!(summary.rows, vec![(Table::Users, 3)]);
    assert_eq!(summary.version, Some(3));
    assert_eq!(store.snapshot().unwrap().user_count(), 6);

    let s = session(&store);
    assert_eq!(
        rows(&s, "SELECT user_id, name, tier, points, vip_level FROM users ORDER BY user_id").await,
        vec![
            "u1|Ann|gold|100|NULL",
            "u2|Bob|platinum|200|3",
            "u3|Cat|bronze|300|NULL",
            "u4|Dan|silver|400|2",
            "u5|Eve|platinum|500|NULL",
            "u6|NULL|gold|NULL|1",
        ]
    );
    assert_eq!(count(&s, "SELECT count(*) FROM users").await, 6);
}

#[tokio::test]
async fn new_custom_column_is_null_for_users_loaded_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let more = write(dir.path(), "users-more.csv", "user_id,name,favourite_colour\nu6,Fay,green\n");
    let summary = import(&store, &[&more]).unwrap();
    assert_eq!((summary.new_users, summary.updated_users), (1, 0));
    let s = session(&store);
    assert_eq!(
        rows(&s, "SELECT user_id, favourite_colour FROM users ORDER BY user_id").await,
        vec!["u1|NULL", "u2|NULL", "u3|NULL", "u4|NULL", "u5|NULL", "u6|green"]
    );
    assert_eq!(count(&s, "SELECT count(*) FROM users WHERE favourite_colour IS NULL").await, 5);
}

#[tokio::test]
async fn facts_loaded_before_an_upsert_join_to_the_updated_profile() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let update = write(dir.path(), "users-2.csv", "user_id,tier\nu2,diamond\n");
    import(&store, &[&update]).unwrap();
    let s = session(&store);
    assert_eq!(
        rows(
            &s,
            "SELECT p.order_id, u.user_id, u.name, u.tier FROM purchases p JOIN users u ON p.user_id = u.user_id ORDER BY p.order_id"
        )
        .await,
        vec!["o1|u1|Ann|gold", "o2|u2|Bob|diamond", "o3|u2|Bob|diamond"]
    );
}

#[tokio::test]
async fn successive_upserts_each_keep_the_latest_value() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    for (i, points) in [(1, 1000), (2, 2000), (3, 3000)] {
        let f = write(dir.path(), &format!("users-{i}.csv"), format!("user_id,points\nu3,{points}\n"));
        let summary = import(&store, &[&f]).unwrap();
        assert_eq!((summary.new_users, summary.updated_users), (0, 1));
    }
    let s = session(&store);
    assert_eq!(rows(&s, "SELECT name, points FROM users WHERE user_id = 'u3'").await, vec!["Cat|3000"]);
    assert_eq!(count(&s, "SELECT count(*) FROM users").await, 5);
    assert_eq!(count(&s, "SELECT sum(points) FROM users").await, 100 + 200 + 3000 + 400 + 500);
}

#[tokio::test]
async fn upsert_of_parquet_users_over_csv_users_works() {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray};

    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let file = write_parquet(
        dir.path(),
        "users-00000.parquet",
        vec![
            ("user_id", Arc::new(StringArray::from(vec!["u5", "u7"])) as ArrayRef),
            ("points", Arc::new(Int64Array::from(vec![5555, 7])) as ArrayRef),
        ],
        10,
    );
    let summary = import(&store, &[&file]).unwrap();
    assert_eq!((summary.new_users, summary.updated_users), (1, 1));
    let s = session(&store);
    assert_eq!(
        rows(&s, "SELECT user_id, name, points FROM users WHERE user_id IN ('u5', 'u7') ORDER BY user_id").await,
        vec!["u5|Eve|5555", "u7|NULL|7"]
    );
}

#[tokio::test]
async fn filters_after_an_upsert_see_the_new_values_with_and_without_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let update = write(dir.path(), "users-update.csv", "user_id,tier,points\nu1,silver,150\nu5,gold,\nu7,gold,700\n");
    import(&store, &[&update]).unwrap();
    let indexed = session(&store);
    let general = store
        .session_with(&persona::SessionOptions { use_indexes: Some(false), ..persona::SessionOptions::default() })
        .unwrap();
    for (filter, expected) in [
        ("tier = 'gold'", vec!["u4", "u5", "u7"]),
        ("tier = 'silver'", vec!["u1", "u2"]),
        ("tier IN ('platinum', 'bronze')", vec!["u3"]),
        ("points >= 300", vec!["u3", "u4", "u7"]),
        ("points IS NULL", vec!["u5"]),
        ("tier = 'gold' AND points > 500", vec!["u7"]),
    ] {
        let sql = format!("SELECT user_id FROM users WHERE {filter} ORDER BY user_id");
        assert_eq!(rows(&indexed, &sql).await, expected, "{filter} (indexes)");
        assert_eq!(rows(&general, &sql).await, expected, "{filter} (no indexes)");
    }
}

/// The updates of a load are spilled by the users file they go to (issue 17: bounded memory):
/// users spread over two stored files, updated from two source files with different columns in
/// one load, each get their own columns' new values and keep the others; no spill is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_across_stored_files_and_sources_each_keep_their_absent_columns() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let more = write(dir.path(), "users.csv", "user_id,name,tier,points\nu6,Fay,silver,600\nu7,Gus,gold,700\n");
    import(&store, &[&more]).unwrap();
    assert_eq!(store.snapshot().unwrap().manifest().files(Table::Users).len(), 2);
    let tiers = write(&dir.path().join("load"), "users-tiers.csv", "user_id,tier\nu7,bronze\nu1,platinum\nu9,new\n");
    let points = write(&dir.path().join("load"), "users-points.csv", "user_id,points\nu6,6\nu2,2\n");
    let summary = import_as(&store, Table::Users, &[&tiers, &points]).unwrap();
    assert_eq!((summary.new_users, summary.updated_users), (1, 4));
    let s = session(&store);
    assert_eq!(
        rows(&s, "SELECT user_id, name, tier, points FROM users ORDER BY user_id").await,
        vec![
            "u1|Ann|platinum|100",
            "u2|Bob|silver|2",
            "u3|Cat|bronze|300",
            "u4|Dan|gold|400",
            "u5|Eve|platinum|500",
            "u6|Fay|silver|6",
            "u7|Gus|bronze|700",
            "u9|NULL|new|NULL",
        ]
    );
    let prefix = format!("persona-upsert-{}-", std::process::id());
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    // Other tests of this process may be upserting right now: only a leak would stay long.
    for path in left {
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!path.exists() || std::fs::read_dir(&path).is_err(), "a spill folder stayed: {}", path.display());
    }
}
