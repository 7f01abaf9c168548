//! Top-N of an audience (`ORDER BY <range-indexed column> LIMIT n`): with the indexes, the users
//! scan only reads users at or beyond the n-th value (`query::top_rule`). Seeded random queries
//! — audiences of tags and attributes, each range-indexed column, both directions, NULLs first
//! and last, ties, offsets, n from 1 to beyond the audience — give the same rows in the same
//! order with the indexes on and off, on a store with NULLs in those columns.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_n_of_an_audience_is_the_general_paths_with_the_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    import(&store, &[&sample_dir()]).unwrap();
    let on = session(&store);
    // Users with NULL points, birth dates and income bands, and ties with existing values.
    rows(
        &on,
        "INSERT INTO users (user_id, tier, gender, points, birth_date) VALUES \
         ('n1', 'gold', 'F', NULL, NULL), ('n2', 'gold', 'M', NULL, DATE '1990-01-01'), \
         ('n3', 'silver', 'F', 6788, NULL), ('n4', 'gold', 'F', 6788, DATE '1990-01-01')",
    )
    .await;
    let on = session(&store);
    let off = session(&store);
    rows(&off, "SET persona.use_indexes = false").await;
    let mut rng =
        StdRng::seed_from_u64(std::env::var("PERSONA_TOP_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7));
    let audiences = [
        "tier = 'gold'",
        "has_tag('vip')",
        "gender = 'F' AND tier IN ('gold', 'silver')",
        "user_id IN (SELECT user_id FROM user_tags WHERE tag = 'A')",
        "NOT has_tag('B') AND points > 1000",
        "tier = 'platinum' AND birth_date >= DATE '1985-01-01'",
        "true",
    ];
    let columns = ["points", "birth_date", "signup_date", "income_band"];
    let mut planned = 0;
    for _ in 0..150 {
        let audience = audiences[rng.random_range(0..audiences.len())];
        let column = columns[rng.random_range(0..columns.len())];
        let direction = if rng.random_bool(0.5) { "DESC" } else { "ASC" };
        let nulls = ["", " NULLS FIRST", " NULLS LAST"][rng.random_range(0..3)];
        let n = [1, 2, 5, 17, 100, 3000][rng.random_range(0..6)];
        let offset = if rng.random_bool(0.2) { format!(" OFFSET {}", rng.random_range(1..5)) } else { String::new() };
        let sql = format!(
            "SELECT user_id, {column}, tier FROM users WHERE {audience} \
             ORDER BY {column} {direction}{nulls}, user_id LIMIT {n}{offset}"
        );
        let (a, b) = (rows(&on, &sql).await, rows(&off, &sql).await);
        assert_eq!(a, b, "{sql}");
        let plan = rows(&on, &format!("EXPLAIN {sql}")).await.join("\n");
        planned +=
            usize::from(plan.contains(&format!("users.{column} >=")) || plan.contains(&format!("users.{column} <=")));
    }
    // The rule is exercised, not only the general path.
    assert!(planned > 50, "the threshold filter was planned {planned} times of 150");
}
