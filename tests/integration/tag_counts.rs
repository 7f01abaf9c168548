//! "At least k of these n tags" (`GROUP BY user_id HAVING count(*) ...` over user_tags rows of a
//! tag list) is answered from the tag bitmaps only when the index knows no user has a tag twice:
//! the same answers as the general path with unique rows, with a tag repeated in one import and
//! with a tag repeated across imports; and with unique rows no user_tags file is read.

use crate::util::*;

const QUERIES: &[&str] = &[
    "SELECT user_id FROM users WHERE user_id IN (SELECT user_id FROM user_tags WHERE tag IN ('a', 'b', 'c') GROUP BY user_id HAVING count(*) >= 2) ORDER BY user_id",
    "SELECT user_id FROM users WHERE user_id IN (SELECT user_id FROM user_tags WHERE tag = 'a' OR tag = 'b' GROUP BY user_id HAVING count(*) = 1) ORDER BY user_id",
    "SELECT user_id FROM users WHERE user_id NOT IN (SELECT user_id FROM user_tags WHERE tag IN ('a', 'c', 'a') GROUP BY user_id HAVING count(*) > 1 AND count(*) < 3) ORDER BY user_id",
    "SELECT count(*) FROM users u WHERE tier = 'gold' AND u.user_id IN (SELECT user_id FROM user_tags WHERE tag IN ('a', 'b', 'c', 'nobody') GROUP BY user_id HAVING count(*) % 2 = 1)",
];

async fn answers(store: &persona::Store, use_indexes: bool) -> Vec<Vec<String>> {
    let session = session(store);
    session.query(&format!("SET persona.use_indexes = {use_indexes}")).await.unwrap();
    let mut out = Vec::new();
    for sql in QUERIES {
        out.push(rows(&session, sql).await);
    }
    out
}

fn store_with_tags(dir: &std::path::Path, imports: &[&str]) -> persona::Store {
    let store = create_store(dir.join("store"));
    let users = write(dir, "users.csv", USERS_CSV);
    import(&store, &[&users]).unwrap();
    for (i, rows) in imports.iter().enumerate() {
        let file = write(dir, &format!("user_tags-{i}.csv"), format!("user_id,tag,assigned_at\n{rows}"));
        import(&store, &[&file]).unwrap();
    }
    store
}

const TAGS: &str = "u1,a,2026-01-01 00:00:00\nu1,b,2026-01-01 00:00:00\nu1,c,2026-01-01 00:00:00\n\
u2,a,2026-01-01 00:00:00\nu3,b,2026-01-01 00:00:00\nu3,c,2026-01-01 00:00:00\nu4,c,2026-01-01 00:00:00\n";

#[tokio::test]
async fn unique_tag_rows_are_counted_on_the_bitmaps_without_reading_user_tags() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_tags(dir.path(), &[TAGS]);
    let general = answers(&store, false).await;
    assert_eq!(general[0], vec!["u1", "u3"]);
    assert_eq!(answers(&store, true).await, general);
    // The bitmaps answer alone: with the user_tags files gone, the answers stay.
    let tags_dir = store.root().join("data").join("user_tags");
    let mut removed = 0;
    for entry in std::fs::read_dir(&tags_dir).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
        removed += 1;
    }
    assert!(removed > 0);
    assert_eq!(answers(&store, true).await, general);
}

#[tokio::test]
async fn a_tag_repeated_in_one_import_is_counted_by_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let repeated = format!("{TAGS}u2,a,2026-02-01 00:00:00\n");
    let store = store_with_tags(dir.path(), &[&repeated]);
    let general = answers(&store, false).await;
    assert_eq!(general[0], vec!["u1", "u2", "u3"], "u2's two rows of 'a' count twice");
    assert_eq!(answers(&store, true).await, general);
}

#[tokio::test]
async fn a_tag_repeated_by_a_later_import_is_counted_by_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_tags(dir.path(), &[TAGS, "u4,c,2026-03-01 00:00:00\n"]);
    let general = answers(&store, false).await;
    assert_eq!(general[0], vec!["u1", "u3", "u4"], "u4's two rows of 'c' count twice");
    assert_eq!(answers(&store, true).await, general);
}

#[tokio::test]
async fn a_rule_tag_in_the_list_is_counted_as_the_user_tags_table_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_tags(dir.path(), &[TAGS]);
    session(&store).query("CREATE TAG gold AS tier = 'gold'").await.unwrap();
    let store = persona::Store::open(store.root()).unwrap();
    let sql = "SELECT user_id FROM users WHERE user_id IN (SELECT user_id FROM user_tags WHERE tag IN ('a', 'gold', 'c') \
               GROUP BY user_id HAVING count(*) >= 2) ORDER BY user_id";
    let (on, off) = (session(&store), session(&store));
    off.query("SET persona.use_indexes = false").await.unwrap();
    let general = rows(&off, sql).await;
    assert_eq!(general, vec!["u1", "u4"], "u4: rule tag gold and tag c");
    assert_eq!(rows(&on, sql).await, general);
}
