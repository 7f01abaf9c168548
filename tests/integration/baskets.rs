//! `association_rules()` and `recommend()` on a store built for it: multi-line orders, an order
//! across midnight, two orders on one day, a user's day split over two fact files, and a fact
//! file not grouped by user. Every count is worked out by hand below, basket by basket.

use crate::util::*;

const PRODUCTS: &str = "product_id,name,category\np1,one,x\np2,two,x\np3,three,y\np4,four,z\n";

/// Grouped by user (u1..u4).
const FIRST: &str = "order_id,user_id,product_id,channel_id,ts,quantity,amount\n\
o1,u1,p1,app,2026-10-01 10:00:00,1,1\n\
o1,u1,p2,app,2026-10-01 10:00:00,1,1\n\
o1,u1,p3,app,2026-10-01 10:00:00,1,1\n\
o2,u1,p4,app,2026-10-01 18:00:00,1,1\n\
o3,u2,p1,web,2026-10-02 23:50:00,1,1\n\
o3,u2,p4,web,2026-10-03 00:10:00,1,1\n\
o5,u3,p3,web,2026-10-05 09:00:00,1,1\n\
o6,u3,p4,web,2026-10-05 12:00:00,1,1\n\
o20,u4,p1,app,2026-10-09 08:00:00,1,1\n\
o20,u4,p3,app,2026-10-09 08:00:00,1,1\n";

/// A later load, not grouped by user: u1's 1 October continues here, u3's rows are apart.
const SECOND: &str = "order_id,user_id,product_id,channel_id,ts,quantity,amount\n\
o9,u3,p1,app,2026-10-07 10:00:00,1,1\n\
o10,u1,p4,app,2026-10-01 20:00:00,1,1\n\
o11,u3,p3,app,2026-10-07 11:00:00,1,1\n";

async fn store_session(dir: &std::path::Path) -> persona::Session {
    let store = create_store(dir.join("store"));
    import(&store, &[&write(dir, "users.csv", USERS_CSV), &write(dir, "products.csv", PRODUCTS)]).unwrap();
    import(&store, &[&write(&dir.join("a"), "purchases.csv", FIRST)]).unwrap();
    import(&store, &[&write(&dir.join("b"), "purchases.csv", SECOND)]).unwrap();
    session(&store)
}

const COUNTS: &str = "antecedent, consequent, both, antecedent_baskets, consequent_baskets, baskets";

#[tokio::test]
async fn rules_count_whole_baskets_by_day_or_by_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_session(dir.path()).await;
    let q = |args: &str| format!("SELECT {COUNTS} FROM association_rules({args}) ORDER BY antecedent, consequent");
    // Days: u1 1 Oct {p1 p2 p3 p4} (p4 from two orders, one in each file), u2 2 Oct {p1} and
    // 3 Oct {p4} (an order across midnight), u3 5 Oct {p3 p4} and 7 Oct {p1 p3} (rows apart in
    // the second file), u4 9 Oct {p1 p3}: 6 baskets.
    assert_eq!(
        rows(&s, &q("0.01, 0, 'product'")).await,
        [
            "p1|p2|1|4|1|6",
            "p1|p3|3|4|4|6",
            "p1|p4|1|4|3|6",
            "p2|p1|1|1|4|6",
            "p2|p3|1|1|4|6",
            "p2|p4|1|1|3|6",
            "p3|p1|3|4|4|6",
            "p3|p2|1|4|1|6",
            "p3|p4|2|4|3|6",
            "p4|p1|1|3|4|6",
            "p4|p2|1|3|1|6",
            "p4|p3|2|3|4|6",
        ]
    );
    // Orders: o1 {p1 p2 p3}, o2 {p4}, o3 {p1 p4}, o5 {p3}, o6 {p4}, o20 {p1 p3}, o9 {p1},
    // o10 {p4}, o11 {p3}: 9 baskets.
    assert_eq!(
        rows(&s, &q("0.01, 0, 'product', 'order'")).await,
        [
            "p1|p2|1|4|1|9",
            "p1|p3|2|4|4|9",
            "p1|p4|1|4|4|9",
            "p2|p1|1|1|4|9",
            "p2|p3|1|1|4|9",
            "p3|p1|2|4|4|9",
            "p3|p2|1|4|1|9",
            "p4|p1|1|4|4|9",
        ]
    );
    // Categories (p1, p2: x; p3: y; p4: z) of the day baskets: u1 {x y z}, u2 {x}, {z}, u3 {y z},
    // {x y}, u4 {x y}.
    assert_eq!(
        rows(&s, &q("0.01, 0, 'category'")).await,
        ["x|y|3|4|4|6", "x|z|1|4|3|6", "y|x|3|4|4|6", "y|z|2|4|3|6", "z|x|1|3|4|6", "z|y|2|3|4|6"]
    );
    // Support 0.3 keeps the pairs in 2 of the 6 baskets or more; confidence 0.7 of those keeps
    // p1 -> p3 and p3 -> p1 (3/4) but not p3 -> p4 (2/4) nor p4 -> p3 (2/3).
    assert_eq!(rows(&s, &q("0.3, 0.7, 'product'")).await, ["p1|p3|3|4|4|6", "p3|p1|3|4|4|6"]);
    // The order: lift, then confidence, then names. x & y: 3 × 6 / (4 × 4) = 1.125; y & z:
    // 2 × 6 / (4 × 3) = 1; x & z: 0.5.
    assert_eq!(
        rows(&s, "SELECT antecedent, consequent, confidence, lift FROM association_rules(0.01, 0, 'category')").await,
        [
            "x|y|0.75|1.125",
            "y|x|0.75|1.125",
            "z|y|0.6666666666666666|1.0",
            "y|z|0.5|1.0",
            "z|x|0.3333333333333333|0.5",
            "x|z|0.25|0.5",
        ]
    );
}

#[tokio::test]
async fn recommendations_come_from_the_most_confident_rule_of_an_item_bought() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_session(dir.path()).await;
    // u2 bought x and z; y is reached by x -> y (0.75) and z -> y (2/3).
    assert_eq!(
        rows(&s, "SELECT item, score, antecedent, lift FROM recommend('u2', 3, 'category', 0.01, 0)").await,
        ["y|0.75|x|1.125"]
    );
    // u4 bought p1 and p3: p2 by p1 -> p2 (1/4) or p3 -> p2 (1/4), equal lift (1.5): p1 first;
    // p4 by p3 -> p4 (2/4) beats p1 -> p4 (1/4).
    assert_eq!(
        rows(&s, "SELECT item, score, antecedent FROM recommend('u4', 5, 'product', 0.01, 0)").await,
        ["p4|0.5|p3", "p2|0.25|p1"]
    );
    assert_eq!(rows(&s, "SELECT item FROM recommend('u4', 1, 'product', 0.01, 0)").await, ["p4"]);
    // u5 bought nothing.
    assert!(rows(&s, "SELECT item FROM recommend('u5', 5, 'product', 0.01, 0)").await.is_empty());
}
