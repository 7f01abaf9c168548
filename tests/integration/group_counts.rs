//! An audience's counts per value of a low-cardinality users column (`GROUP BY tier`) come from
//! the bitmaps (`query::group_count_rule`): seeded random audiences and columns — text, integer
//! and boolean, with NULL groups, empty audiences, aliases and several counts — give the same
//! groups and counts with the indexes on and off.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_counts_of_an_audience_are_the_general_paths_with_the_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    import(&store, &[&sample_dir()]).unwrap();
    let setup = session(&store);
    // NULL groups in every column counted.
    rows(
        &setup,
        "INSERT INTO users (user_id, tier, gender) VALUES ('g1', NULL, 'F'), ('g2', 'gold', NULL), ('g3', NULL, NULL)",
    )
    .await;
    let on = session(&store);
    let off = session(&store);
    rows(&off, "SET persona.use_indexes = false").await;
    let mut rng =
        StdRng::seed_from_u64(std::env::var("PERSONA_GROUP_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(11));
    let audiences = [
        "true",
        "tier = 'gold'",
        "has_tag('vip') OR has_tag('A')",
        "user_id IN (SELECT user_id FROM purchases WHERE channel_id = 'app')",
        "points BETWEEN 1000 AND 5000 AND NOT has_children",
        "tier = 'nope'",
        "gender IS NULL OR tier IS NULL",
    ];
    let columns = ["tier", "gender", "city", "region", "income_band", "has_children", "occupation"];
    let mut planned = 0;
    for _ in 0..80 {
        let audience = audiences[rng.random_range(0..audiences.len())];
        let column = columns[rng.random_range(0..columns.len())];
        let sql = match rng.random_range(0..3) {
            0 => format!("SELECT {column}, count(*) FROM users WHERE {audience} GROUP BY {column} ORDER BY 1"),
            1 => format!(
                "SELECT u.{column} AS k, count(*) AS n, count(1) AS m FROM users u WHERE {audience} \
                 GROUP BY u.{column} ORDER BY n DESC, k LIMIT 5"
            ),
            _ => format!(
                "SELECT count(*) FROM (SELECT {column}, count(*) AS n FROM users WHERE {audience} GROUP BY {column}) t \
                 WHERE n > 3"
            ),
        };
        let (a, b) = (rows(&on, &sql).await, rows(&off, &sql).await);
        assert_eq!(a, b, "{sql}");
        planned += usize::from(rows(&on, &format!("EXPLAIN {sql}")).await.join("\n").contains("Values:"));
    }
    assert!(planned > 30, "the counts came from the bitmaps {planned} times of 80");
}
