//! `INSERT INTO users|purchases|events|user_tags … VALUES … / SELECT …` (issue 17, item 2): the
//! rows go through the importer as one new version, with its contract checks and its errors told
//! at the statement's row; the staged file is removed whatever happens; the same rows inserted
//! twice are two inserts (not refused as an already loaded file, and not recorded as one).

use crate::util::*;

/// Staged INSERT files of this process for `table` left in the temp directory (tests run at the
/// same time: each looks at the tables it inserts into only).
fn staged_files(tables: &[&str]) -> Vec<std::path::PathBuf> {
    let prefix = format!("persona-insert-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && tables.iter().any(|t| n.ends_with(&format!("-{t}.parquet"))))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_loads_rows_through_the_importer_as_one_version_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let s = session(&store);
    let loaded = store.snapshot().unwrap().manifest().loaded_files.len();
    let _scope = lock_scope();
    let purchase = "INSERT INTO purchases (order_id, user_id, product_id, channel_id, ts, quantity, amount) \
                    VALUES ('o4', 'u3', 'p1', 'app', '2026-10-04 09:00:00', 1, 7)";
    for _ in 0..2 {
        assert_eq!(rows(&s, purchase).await, vec!["1"]);
    }
    assert_eq!(s.version(), 4);
    assert_eq!(count(&s, "SELECT count(*) FROM purchases WHERE order_id = 'o4'").await, 2);
    assert_eq!(store.snapshot().unwrap().manifest().loaded_files.len(), loaded, "no file is recorded as loaded");
    // A query over the table it inserts into reads the version before the insert.
    let copy = "INSERT INTO user_tags (user_id, tag) SELECT user_id, 'buyer' FROM purchases";
    assert_eq!(rows(&s, copy).await, vec!["5"]);
    assert_eq!(
        rows(&s, "INSERT INTO user_tags SELECT user_id, 'buyer-again', assigned_at FROM user_tags").await,
        vec!["5"]
    );
    for use_indexes in ["true", "false"] {
        rows(&s, &format!("SET persona.use_indexes = {use_indexes}")).await;
        assert_eq!(
            rows(&s, "SELECT user_id FROM users WHERE has_tag('buyer') AND has_tag('buyer-again') ORDER BY 1").await,
            vec!["u1", "u2", "u3"]
        );
        assert_eq!(count(&s, "SELECT count(*) FROM users WHERE purchased_within(INTERVAL '60 days')").await, 3);
    }
    // Into users: an upsert, and a new column typed as the importer types it.
    assert_eq!(rows(&s, "INSERT INTO users (user_id, loyalty) VALUES ('u1', 3), ('u9', 4)").await, vec!["2|1|1"]);
    let columns = store.snapshot().unwrap().manifest().users_columns.clone();
    assert!(columns.iter().any(|c| c.name == "loyalty" && c.ty == persona::tables::ColumnType::Int64), "{columns:?}");
    assert_eq!(
        rows(&s, "SELECT user_id, tier, loyalty FROM users WHERE loyalty > 0 ORDER BY 1").await,
        vec!["u1|gold|3", "u9|NULL|4"]
    );
    check_passes(&store);
    let inserted = ["purchases", "user_tags", "users"];
    assert!(staged_files(&inserted).is_empty(), "{:?}", staged_files(&inserted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_insert_names_the_row_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let s = session(&store);
    let before = state(&store);
    let _scope = lock_scope();
    let err = s
        .query(
            "INSERT INTO events (user_id, event_type, channel_id, ts) \
             SELECT user_id, CASE WHEN user_id = 'u4' THEN NULL ELSE 'view' END, 'app', TIMESTAMP '2026-10-05 00:00:00' \
             FROM users ORDER BY user_id",
        )
        .await
        .expect_err("u4's event has no type");
    let events = std::path::Path::new("INSERT INTO events");
    assert_input_error(&err, events, persona::InputLocation::Row(4), Some("event_type"));
    assert_eq!(state(&store), before, "nothing changed");
    assert!(staged_files(&["events"]).is_empty(), "{:?}", staged_files(&["events"]));
}
