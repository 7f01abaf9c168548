//! `persona.use_indexes` switched between planning and running a statement: filters the users
//! table accepted as answered by its indexes must still be applied when the scan runs without them.

use crate::util::*;

#[tokio::test]
async fn a_filter_accepted_with_indexes_on_is_applied_after_they_are_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let session = session(&store);
    let sql = "SELECT user_id FROM users WHERE tier = 'gold' ORDER BY user_id";
    let want = rows(&session, sql).await;
    assert_eq!(want, vec!["u1", "u4"]);
    // Planned with the indexes on (the filter is pushed into the users scan as exact) ...
    let planned = session.sql(sql).await.unwrap();
    // ... then they are switched off before it runs.
    session.query("SET persona.use_indexes = false").await.unwrap();
    let got = batches_to_rows(&planned.collect().await.unwrap());
    assert_eq!(got, want);
    assert_eq!(rows(&session, sql).await, want);
}
