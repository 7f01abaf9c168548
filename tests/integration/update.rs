//! Updates through SQL (issue 17, item 2): `UPDATE users SET … WHERE …` writes one new version in
//! which only the users files holding updated rows are written again (row ids unchanged), the
//! changed columns' bitmaps follow (indexes on and off agree), `check` passes, a session pinned to
//! the old version keeps its answers, and a reader running while the update commits sees the old
//! or the new version, never a mix.

use std::collections::BTreeSet;

use crate::util::*;

fn users_files(store: &persona::Store) -> BTreeSet<String> {
    store.snapshot().unwrap().manifest().files(persona::Table::Users).iter().map(|f| f.path.clone()).collect()
}

/// A store with users in two files: u1..u5 (version 1), then u6..u8 (version 3).
fn two_users_files(dir: &std::path::Path) -> persona::Store {
    let store = base_store(dir);
    let more = write(dir, "users.csv", "user_id,name,tier,points\nu6,Fay,silver,600\nu7,Gus,gold,700\nu8,Hal,,800\n");
    import(&store, &[&more]).unwrap();
    assert_eq!(users_files(&store).len(), 2);
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_rewrites_only_the_files_holding_updated_users_and_keeps_row_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = two_users_files(dir.path());
    let before = users_files(&store);
    let old = session(&store);
    let row_ids = |s: &persona::Session| {
        let m = s.snapshot().manifest().clone();
        (m.next_row_id, m.files(persona::Table::Users).iter().map(|f| (f.first_row_id, f.rows)).collect::<Vec<_>>())
    };
    let s = session(&store);
    {
        let _scope = lock_scope();
        let sql = "UPDATE users SET tier = 'gold', points = points + 1 WHERE user_id IN ('u6', 'u8')";
        assert_eq!(rows(&s, sql).await, vec!["2"]);
    }
    assert_eq!(s.version(), old.version() + 1);
    let after = users_files(&store);
    assert_eq!(before.intersection(&after).count(), 1, "the first file is kept as it is: {before:?} {after:?}");
    assert_eq!(row_ids(&s), row_ids(&old), "row ids and file bounds do not move");
    for use_indexes in ["true", "false"] {
        rows(&s, &format!("SET persona.use_indexes = {use_indexes}")).await;
        assert_eq!(
            rows(&s, "SELECT user_id, tier, points FROM users WHERE tier = 'gold' ORDER BY user_id").await,
            vec!["u1|gold|100", "u4|gold|400", "u6|gold|601", "u7|gold|700", "u8|gold|801"],
            "use_indexes = {use_indexes}"
        );
        assert_eq!(count(&s, "SELECT count(*) FROM users WHERE tier IS NULL").await, 0);
        assert_eq!(count(&s, "SELECT count(*) FROM users WHERE points > 800").await, 1);
    }
    // The pinned old version still answers as before.
    assert_eq!(count(&old, "SELECT count(*) FROM users WHERE tier = 'gold'").await, 3);
    assert_eq!(count(&old, "SELECT count(*) FROM users WHERE tier IS NULL").await, 1);
    // Purchases still belong to their users.
    assert_eq!(count(&s, "SELECT count(*) FROM purchases p JOIN users u ON u.user_id = p.user_id").await, 3);
    check_passes(&store);
    // A later upsert of an updated user starts from the updated row.
    let upsert = write(dir.path(), "users-again.csv", "user_id,name\nu6,Fay Two\n");
    import(&store, &[&upsert]).unwrap();
    let s = session(&store);
    assert_eq!(rows(&s, "SELECT name, tier, points FROM users WHERE user_id = 'u6'").await, vec!["Fay Two|gold|601"]);
    check_passes(&store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_update_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = two_users_files(dir.path());
    let files = files_under(store.root());
    let s = session(&store);
    let version = s.version();
    let _scope = lock_scope();
    // The third user's text does not convert; the first file's users would have.
    let err = s.query("UPDATE users SET points = CASE WHEN user_id = 'u7' THEN 'x' ELSE '1' END WHERE true").await;
    let err = err.expect_err("'x' is no number").to_string();
    assert!(err.contains("column 'points'") && err.contains("line 1, column 27"), "{err}");
    assert_eq!(store.snapshot().unwrap().version(), version);
    assert_eq!(s.version(), version);
    assert!(files_under(store.root()).is_subset(&files), "no new file stays behind");
    assert_eq!(count(&s, "SELECT sum(points) FROM users").await, 3600);
}

/// A reader in another store handle (as another process would be) keeps querying while the
/// update commits: every answer is the old version's or the new one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_during_an_update_sees_the_old_or_the_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = two_users_files(dir.path());
    let root = store.root().to_path_buf();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = std::sync::Arc::clone(&stop);
        tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            loop {
                // One more read after the update committed: the last answer is the new version's.
                let last = stop.load(std::sync::atomic::Ordering::Relaxed);
                let reader = persona::Store::open(&root).unwrap();
                let s = session(&reader);
                seen.insert(count(&s, "SELECT sum(points) FROM users WHERE tier = 'gold' OR tier IS NULL").await);
                if last {
                    break;
                }
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let s = session(&store);
    {
        let _scope = lock_scope();
        assert_eq!(rows(&s, "UPDATE users SET points = points + 1000 WHERE true").await, vec!["8"]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = reader.await.unwrap();
    // gold: u1 100, u4 400, u7 700; NULL tier: u8 800 → 2000 before, 6000 after.
    assert!(seen.is_subset(&BTreeSet::from([2000, 6000])), "only whole versions are seen: {seen:?}");
    assert!(seen.contains(&6000), "{seen:?}");
}

/// `DELETE FROM user_tags`: only the files holding deleted rows are written again, the tag's
/// bitmap follows (a user keeps the tag while a row of it is left, in another file), and `check`
/// passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_from_user_tags_rewrites_only_the_files_holding_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let first = write(
        dir.path(),
        "user_tags.csv",
        "user_id,tag,assigned_at\nu1,vip,2026-01-01\nu2,vip,2026-01-01\nu3,new,2026-01-01\nu4,vip,2026-03-01\n",
    );
    import(&store, &[&first]).unwrap();
    let second =
        write(dir.path(), "more/user_tags.csv", "user_id,tag,assigned_at\nu4,other,2026-02-01\nu2,vip,2026-02-01\n");
    import(&store, &[&second]).unwrap();
    let tag_files = |store: &persona::Store| -> BTreeSet<String> {
        store.snapshot().unwrap().manifest().files(persona::Table::UserTags).iter().map(|f| f.path.clone()).collect()
    };
    let before = tag_files(&store);
    assert_eq!(before.len(), 2);
    let s = session(&store);
    {
        let _scope = lock_scope();
        let sql =
            "DELETE FROM user_tags WHERE tag = 'vip' AND assigned_at < TIMESTAMP '2026-01-15 00:00:00' OR tag = 'new'";
        assert_eq!(rows(&s, sql).await, vec!["3"]);
    }
    let after = tag_files(&store);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after.intersection(&before).count(), 1, "the second file is kept as it is");
    for use_indexes in ["true", "false"] {
        rows(&s, &format!("SET persona.use_indexes = {use_indexes}")).await;
        // u2 keeps vip through the row in the second file.
        assert_eq!(rows(&s, "SELECT user_id FROM users WHERE has_tag('vip') ORDER BY 1").await, vec!["u2", "u4"]);
        assert_eq!(count(&s, "SELECT count(*) FROM users WHERE has_tag('new')").await, 0);
        assert_eq!(rows(&s, "SELECT user_id FROM users WHERE has_tag('other')").await, vec!["u4"]);
    }
    check_passes(&store);
}
