//! "Active in each of the last three months", "on at least 2 days" (`GROUP BY user_id HAVING
//! count(DISTINCT date_trunc(unit, ts)) ...`), "first purchase since June", "no view since
//! October" (`HAVING min(ts) >= ...`, `max(ts) < ...`) over purchases or events are answered from
//! the activity streams' day and month bitmaps — as an `IN` subquery and as a relation of its
//! own — with the same answers as the general path, and without reading a fact file; a bound
//! inside a day gets the same answer too.

use crate::util::*;

/// Answered from the streams alone.
const ON_BITMAPS: &[&str] = &[
    "SELECT g.user_id FROM (SELECT user_id FROM events WHERE ts >= TIMESTAMP '2026-08-01 00:00:00' AND ts < TIMESTAMP '2026-11-01 00:00:00' GROUP BY user_id HAVING count(DISTINCT date_trunc('month', ts)) = 3) g ORDER BY 1",
    "SELECT user_id FROM users WHERE user_id IN (SELECT user_id FROM events WHERE event_type = 'view' GROUP BY user_id HAVING count(DISTINCT CAST(ts AS DATE)) >= 2) ORDER BY user_id",
    "SELECT user_id FROM users WHERE user_id IN (SELECT user_id FROM events GROUP BY user_id HAVING count(DISTINCT date_trunc('WEEK', ts)) BETWEEN 2 AND 3) ORDER BY user_id",
    "SELECT count(*) FROM users u WHERE u.user_id NOT IN (SELECT user_id FROM purchases WHERE channel_id = 'app' AND ts >= DATE '2026-06-01' GROUP BY user_id HAVING count(DISTINCT date_trunc('quarter', ts)) > 1)",
    "WITH g AS (SELECT user_id FROM purchases GROUP BY user_id HAVING count(DISTINCT date_trunc('year', ts)) = 2) SELECT count(*) FROM g WHERE g.user_id IN (SELECT user_id FROM events WHERE event_type = 'cart')",
    "SELECT count(*) FROM (SELECT user_id FROM events WHERE ts >= TIMESTAMP '2026-12-01 00:00:00' GROUP BY user_id HAVING count(DISTINCT date_trunc('day', ts)) >= 0) g",
    "SELECT user_id FROM users WHERE user_id IN (SELECT user_id FROM purchases GROUP BY user_id HAVING min(ts) >= TIMESTAMP '2026-06-01 00:00:00') ORDER BY 1",
    "SELECT count(*) FROM users u WHERE u.user_id NOT IN (SELECT user_id FROM events WHERE event_type = 'view' GROUP BY user_id HAVING max(ts) < TIMESTAMP '2026-10-01 00:00:00')",
];

/// A window edge inside a day: the general path, or that day's rows read.
const GENERAL: &[&str] = &[
    "SELECT user_id FROM users WHERE user_id IN (SELECT user_id FROM purchases WHERE channel_id = 'app' GROUP BY user_id HAVING min(ts) > TIMESTAMP '2026-06-02 10:00:00' AND max(ts) <= TIMESTAMP '2026-10-01 10:00:00') ORDER BY 1",
    "SELECT g.user_id FROM (SELECT user_id FROM events WHERE ts >= TIMESTAMP '2026-08-01 12:00:00' AND ts < TIMESTAMP '2026-11-01 00:00:00' GROUP BY user_id HAVING count(DISTINCT date_trunc('month', ts)) = 3) g ORDER BY 1",
];

const EVENTS_CSV: &str = "user_id,channel_id,event_type,ts\n\
u1,app,cart,2026-08-03 10:00:00\n\
u1,web,view,2026-09-13 10:00:00\n\
u1,web,view,2026-10-20 23:59:59\n\
u2,app,view,2026-09-30 08:00:00\n\
u2,app,view,2026-10-01 08:00:00\n\
u2,app,view,2026-10-02 08:00:00\n\
u3,web,view,2026-08-01 00:00:00\n\
u3,web,click,2026-09-01 00:00:00\n\
u3,web,click,2026-10-05 00:00:00\n\
u3,web,cart,2026-11-01 00:00:00\n\
u4,app,click,2026-07-31 23:59:59\n\
u4,app,view,2026-10-31 12:00:00\n";

const PURCHASES_CSV_2Y: &str = "order_id,user_id,product_id,channel_id,ts,quantity,amount\n\
o1,u1,p1,app,2025-12-31 10:00:00,1,10\n\
o2,u1,p1,app,2026-01-02 10:00:00,1,10\n\
o3,u2,p1,app,2026-06-02 10:00:00,1,10\n\
o4,u2,p1,app,2026-07-01 10:00:00,1,10\n\
o5,u3,p1,web,2026-06-02 10:00:00,1,10\n\
o6,u3,p1,app,2026-09-30 10:00:00,1,10\n\
o7,u4,p1,app,2026-10-01 10:00:00,1,10\n";

async fn answers(store: &persona::Store, queries: &[&str], use_indexes: bool) -> Vec<Vec<String>> {
    let session = session(store);
    session.query(&format!("SET persona.use_indexes = {use_indexes}")).await.unwrap();
    let mut out = Vec::new();
    for sql in queries {
        out.push(rows(&session, sql).await);
    }
    out
}

#[tokio::test]
async fn distinct_active_periods_are_counted_on_the_streams_without_reading_facts() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    let users = write(dir.path(), "users.csv", USERS_CSV);
    let events = write(dir.path(), "events.csv", EVENTS_CSV);
    let purchases = write(dir.path(), "purchases.csv", PURCHASES_CSV_2Y);
    import(&store, &[&users, &events, &purchases]).unwrap();

    let general = answers(&store, ON_BITMAPS, false).await;
    assert_eq!(general[0], vec!["u1", "u3"], "u2 misses August, u4's July and u3's November are outside");
    assert_eq!(general[1], vec!["u1", "u2"]);
    // Weeks from Monday: u1 3; u2 1 (30 Sep, 1 and 2 Oct share one); u3 4; u4 2.
    assert_eq!(general[2], vec!["u1", "u4"]);
    assert_eq!(general[3], vec!["4"], "only u2 bought on app in two quarters since June");
    assert_eq!(general[4], vec!["1"], "u1 bought in 2025 and 2026 and put something in a cart");
    assert_eq!(general[5], vec!["0"]);
    assert_eq!(general[6], vec!["u2", "u3", "u4"], "first purchases from June on");
    assert_eq!(general[7], vec!["4"], "u3's last view was in August");
    assert_eq!(answers(&store, ON_BITMAPS, true).await, general);
    let edges = answers(&store, GENERAL, false).await;
    assert_eq!(edges[0], vec!["u3", "u4"], "u2 first bought on the app at 10:00 on 2 June");
    assert_eq!(answers(&store, GENERAL, true).await, edges);

    // The bitmaps answer alone: with the fact files gone, the answers stay.
    let mut removed = 0;
    for table in ["events", "purchases"] {
        for entry in std::fs::read_dir(store.root().join("data").join(table)).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0);
    assert_eq!(answers(&store, ON_BITMAPS, true).await, general);
}
