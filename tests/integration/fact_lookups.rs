//! A lookup of given users in a fact table grouped by user reads only their rows: the scan's
//! output is exactly their rows (found from the plain copy's row ids), not their row groups.

use crate::util::*;

/// The `output_rows` of the plan's DataSourceExec in `EXPLAIN ANALYZE`.
async fn scanned_rows(session: &persona::Session, sql: &str) -> u64 {
    let text = rows(session, &format!("EXPLAIN ANALYZE {sql}")).await.join("\n");
    let line = text.lines().find(|l| l.contains("DataSourceExec")).unwrap_or_else(|| panic!("no scan in {text}"));
    let at = line.find("output_rows=").unwrap_or_else(|| panic!("no output_rows in {line}")) + "output_rows=".len();
    // Metrics print large counts as "3.00 K".
    let rest = &line[at..];
    let number: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let scale = if rest[number.len()..].starts_with(" K") { 1000.0 } else { 1.0 };
    (number.parse::<f64>().unwrap() * scale).round() as u64
}

#[tokio::test]
async fn one_users_purchases_are_read_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    import(&store, &[&write(dir.path(), "users.csv", USERS_CSV)]).unwrap();
    let mut purchases = String::from("order_id,user_id,product_id,channel_id,ts,quantity,amount\n");
    // Grouped by user, as exports by customer are (the importer records it).
    for i in 0..3000 {
        purchases.push_str(&format!("o{i:04},u{},p1,app,2026-10-01 10:00:00,1,{i}\n", 1 + i / 600));
    }
    import(&store, &[&write(dir.path(), "purchases.csv", purchases)]).unwrap();
    let (on, off) = (session(&store), session(&store));
    off.query("SET persona.use_indexes = false").await.unwrap();
    for sql in [
        "SELECT order_id, amount FROM purchases WHERE user_id = 'u2' ORDER BY order_id",
        "SELECT order_id, amount FROM purchases WHERE user_id IN ('u4', 'u1', 'nobody') ORDER BY order_id",
    ] {
        assert_eq!(rows(&on, sql).await, rows(&off, sql).await, "{sql}");
    }
    assert_eq!(scanned_rows(&on, "SELECT amount FROM purchases WHERE user_id = 'u2'").await, 600);
    assert_eq!(scanned_rows(&on, "SELECT amount FROM purchases WHERE user_id IN ('u4', 'u1', 'x')").await, 1200);
    assert_eq!(scanned_rows(&off, "SELECT amount FROM purchases WHERE user_id = 'u2'").await, 3000);
}
