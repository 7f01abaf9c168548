//! The activity streams across imports: purchases added later merge into the day and month
//! bitmaps, a products upsert that changes categories rebuilds the category streams of earlier
//! purchases, and events index by type. Each answer is checked against the general path and
//! against the expected users, and EXPLAIN shows whether the bitmaps answered.

use crate::util::*;

const PRODUCTS_CSV: &str = "product_id,name,category\np1,Serum,skincare\np2,Lipstick,makeup\n";

async fn both_paths(store: &persona::Store, sql: &str) -> Vec<String> {
    let indexed = rows(&session(store), sql).await;
    let general = store
        .session_with(&persona::SessionOptions {
            now: Some(chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap().to_utc()),
            use_indexes: Some(false),
            ..persona::SessionOptions::default()
        })
        .unwrap();
    assert_eq!(indexed, rows(&general, sql).await, "indexes on and off disagree on {sql}");
    indexed
}

async fn answered_from_bitmaps(store: &persona::Store, sql: &str) -> bool {
    let plan = rows(&session(store), &format!("EXPLAIN {sql}")).await.join("\n");
    plan.contains("persona_audience") && !plan.contains("Join")
}

fn audience(category: &str) -> String {
    format!(
        "SELECT user_id FROM users u WHERE EXISTS (SELECT 1 FROM purchases p JOIN products pr ON pr.product_id = p.product_id \
         WHERE p.user_id = u.user_id AND pr.category = '{category}' AND p.ts >= TIMESTAMP '2026-09-01 00:00:00') ORDER BY user_id"
    )
}

#[tokio::test]
async fn later_purchases_merge_into_the_streams() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    let users = write(dir.path(), "users.csv", USERS_CSV);
    let products = write(dir.path(), "products.csv", PRODUCTS_CSV);
    let purchases = write(dir.path(), "purchases.csv", PURCHASES_CSV);
    import(&store, &[&users, &products, &purchases]).unwrap();
    assert_eq!(both_paths(&store, &audience("skincare")).await, vec!["u1", "u2"]);
    assert!(answered_from_bitmaps(&store, &audience("skincare")).await);

    let more = write(
        dir.path(),
        "purchases-2.csv",
        "order_id,user_id,product_id,channel_id,ts,quantity,amount\n\
         o9,u4,p2,wechat,2026-10-20 09:00:00,1,3\no10,u5,p1,wechat,2025-01-31 23:59:59,1,3\n",
    );
    import(&store, &[&more]).unwrap();
    assert_eq!(both_paths(&store, &audience("makeup")).await, vec!["u2", "u4"]);
    let wechat = "SELECT count(*) FROM users u WHERE EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = u.user_id \
                  AND p.channel_id = 'wechat' AND p.ts >= TIMESTAMP '2025-01-01 00:00:00')";
    assert_eq!(both_paths(&store, wechat).await, vec!["2"]);
    assert!(answered_from_bitmaps(&store, wechat).await, "the channel family stays complete after a merge");
    // A two-year window is mostly month roll-ups; January 2025 ends inside it.
    let any = "SELECT user_id FROM users u WHERE EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = u.user_id \
               AND p.ts >= TIMESTAMP '2024-11-01 00:00:00' AND p.ts < TIMESTAMP '2025-02-01 00:00:00') ORDER BY user_id";
    assert_eq!(both_paths(&store, any).await, vec!["u5"]);
}

#[tokio::test]
async fn a_changed_category_rebuilds_the_category_streams() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    let users = write(dir.path(), "users.csv", USERS_CSV);
    let products = write(dir.path(), "products.csv", PRODUCTS_CSV);
    let purchases = write(dir.path(), "purchases.csv", PURCHASES_CSV);
    import(&store, &[&users, &products, &purchases]).unwrap();
    assert_eq!(both_paths(&store, &audience("makeup")).await, vec!["u2"]);

    // p1 moves from skincare to makeup: u1 and u2 bought it before the change.
    let moved = write(dir.path(), "products-2.csv", "product_id,name,category\np1,Serum,makeup\n");
    import(&store, &[&moved]).unwrap();
    assert_eq!(both_paths(&store, &audience("makeup")).await, vec!["u1", "u2"]);
    assert_eq!(both_paths(&store, &audience("skincare")).await, Vec::<String>::new());
    assert!(answered_from_bitmaps(&store, &audience("makeup")).await, "the rebuilt family is complete");
}

#[tokio::test]
async fn events_index_by_type() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    let users = write(dir.path(), "users.csv", USERS_CSV);
    let events = write(
        dir.path(),
        "events.csv",
        "user_id,channel_id,event_type,ts\nu1,app,cart,2026-10-30 08:00:00\nu2,web,view,2026-10-30 09:00:00\n\
         u3,app,cart,2026-06-01 10:00:00\nu3,,login,2026-10-31 23:59:59\n",
    );
    import(&store, &[&users, &events]).unwrap();
    let carts = "SELECT user_id FROM users u WHERE EXISTS (SELECT 1 FROM events e WHERE e.user_id = u.user_id \
                 AND e.event_type = 'cart' AND e.ts >= TIMESTAMP '2026-10-01 00:00:00') ORDER BY user_id";
    assert_eq!(both_paths(&store, carts).await, vec!["u1"]);
    assert!(answered_from_bitmaps(&store, carts).await);
    let silent = "SELECT user_id FROM users u WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.user_id = u.user_id \
                  AND e.ts >= TIMESTAMP '2026-10-01 00:00:00') ORDER BY user_id";
    assert_eq!(both_paths(&store, silent).await, vec!["u4", "u5"]);
    assert!(answered_from_bitmaps(&store, silent).await);
}

#[tokio::test]
async fn events_index_by_type_and_channel_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    let users = write(dir.path(), "users.csv", USERS_CSV);
    // u2 put something in a cart on the web and logged in on the app: never a cart on the app.
    let events = write(
        dir.path(),
        "events.csv",
        "user_id,channel_id,event_type,ts\nu1,app,cart,2026-10-30 08:00:00\nu2,web,cart,2026-10-30 09:00:00\n\
         u2,app,login,2026-10-30 10:00:00\nu3,app,cart,2026-06-01 10:00:00\nu3,,cart,2026-10-31 23:59:59\n\
         u4,wechat,view,2026-10-31 18:00:00\n",
    );
    import(&store, &[&users, &events]).unwrap();
    let window = "e.ts >= TIMESTAMP '2026-10-01 00:00:00' AND e.ts < TIMESTAMP '2026-11-01 00:00:00'";
    let cases: [(String, Vec<&str>); 5] = [
        (format!("e.event_type = 'cart' AND e.channel_id = 'app' AND {window}"), vec!["u1"]),
        (format!("e.channel_id IN ('app', 'wechat') AND {window}"), vec!["u1", "u2", "u4"]),
        (
            format!(
                "e.event_type IN ('cart', 'view') AND (e.channel_id = 'web' OR e.channel_id = 'wechat') AND {window}"
            ),
            vec!["u2", "u4"],
        ),
        ("e.channel_id = 'app' AND e.event_type = 'cart'".to_string(), vec!["u1", "u3"]),
        (format!("e.channel_id = 'nowhere' AND {window}"), vec![]),
    ];
    let sql = |condition: &str| {
        format!(
            "SELECT user_id FROM users u WHERE EXISTS (SELECT 1 FROM events e WHERE e.user_id = u.user_id AND {condition}) \
             ORDER BY user_id"
        )
    };
    for (condition, expected) in &cases {
        assert_eq!(&both_paths(&store, &sql(condition)).await, expected, "{condition}");
        assert!(answered_from_bitmaps(&store, &sql(condition)).await, "{condition}");
    }
    // A window edge inside a day reads only the edge's rows, and agrees.
    let edge = "SELECT user_id FROM users u WHERE u.user_id IN (SELECT e.user_id FROM events e WHERE e.event_type = 'cart' \
                AND e.channel_id IN ('app', 'web') AND e.ts >= TIMESTAMP '2026-10-30 08:30:00') ORDER BY user_id";
    assert_eq!(both_paths(&store, edge).await, vec!["u2"]);
    assert!(answered_from_bitmaps(&store, edge).await);
    // A later import of events merges into the pairs' streams.
    let more = write(
        dir.path(),
        "events-2.csv",
        "user_id,channel_id,event_type,ts\nu5,app,cart,2026-10-29 08:00:00\nu2,app,cart,2026-05-01 08:00:00\n",
    );
    import(&store, &[&more]).unwrap();
    let cases: [(String, Vec<&str>); 3] = [
        (format!("e.event_type = 'cart' AND e.channel_id = 'app' AND {window}"), vec!["u1", "u5"]),
        (format!("e.channel_id IN ('app', 'wechat') AND {window}"), vec!["u1", "u2", "u4", "u5"]),
        ("e.channel_id = 'app' AND e.event_type = 'cart'".to_string(), vec!["u1", "u2", "u3", "u5"]),
    ];
    for (condition, expected) in &cases {
        assert_eq!(&both_paths(&store, &sql(condition)).await, expected, "{condition}");
    }
    // The whole-day conditions are the bitmaps' alone: with the events files gone, they answer.
    for entry in std::fs::read_dir(store.root().join("data").join("events")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for (condition, expected) in &cases {
        assert_eq!(&rows(&session(&store), &sql(condition)).await, expected, "{condition}");
    }
}
