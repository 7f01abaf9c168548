//! Property tests: random predicate trees over a random small store give the same count with the
//! bitmap indexes as on DataFusion's general path, random per-user aggregates (filters, HAVING)
//! the same rows with the row-id aggregate as without, and random stacks of window functions the
//! same values with one `WindowChainExec` as with DataFusion's sorts (design principle 4: always
//! correct, fast where recognised).

use std::fmt::Write as _;
use std::sync::OnceLock;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};

use crate::ingest::ImportOptions;
use crate::query::SessionOptions;
use crate::store::Store;

const TIERS: [&str; 4] = ["bronze", "silver", "gold", "platinum"];
const REGIONS: [&str; 3] = ["Guangdong", "Zhejiang", "Jiangsu"];
const CHANNELS: [&str; 3] = ["app", "wechat", "web"];
const PRODUCTS: [&str; 4] = ["p1", "p2", "p3", "p4"];
const EVENT_TYPES: [&str; 3] = ["view", "cart", "coupon"];
const TAGS: [&str; 4] = ["A", "B", "C", "night_owl"];

/// A store of 300 random users (points in a narrow range, so that comparisons hit equal values) with NULLs in every column, random tags and purchases.
fn store() -> &'static (tempfile::TempDir, Store) {
    static STORE: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut rng = rand::rngs::StdRng::seed_from_u64(20261101);
        let mut users = String::from("user_id,tier,region,points,vip,birth_date\n");
        let mut tags = String::from("user_id,tag,assigned_at\n");
        let mut purchases = String::from("order_id,user_id,product_id,channel_id,ts,quantity,amount\n");
        let mut events = String::from("user_id,channel_id,event_type,ts\n");
        // p4 is not in the catalogue: its purchases have no category.
        let products = "product_id,name,category\np1,One,skincare\np2,Two,makeup\np3,Three,skincare\n";
        let pick = |rng: &mut rand::rngs::StdRng, items: &[&str]| -> String {
            if rng.random_bool(0.1) { String::new() } else { items[rng.random_range(0..items.len())].to_string() }
        };
        for i in 0..300 {
            let points = if rng.random_bool(0.1) { String::new() } else { rng.random_range(-5..60).to_string() };
            let vip = pick(&mut rng, &["true", "false"]);
            let birth = if rng.random_bool(0.1) {
                String::new()
            } else {
                format!(
                    "{}-{:02}-{:02}",
                    rng.random_range(1950..2008),
                    rng.random_range(1..13),
                    rng.random_range(1..29)
                )
            };
            let (tier, region) = (pick(&mut rng, &TIERS), pick(&mut rng, &REGIONS));
            writeln!(users, "u{i},{tier},{region},{points},{vip},{birth}").expect("write to a String");
            for tag in TAGS {
                if rng.random_bool(0.3) {
                    writeln!(tags, "u{i},{tag},2026-01-01 00:00:00").expect("write to a String");
                }
            }
            for k in 0..rng.random_range(0..4) {
                let (day, sec) = (rng.random_range(1..29), rng.random_range(0..86_400));
                let ts = format!("2026-10-{day:02} {:02}:{:02}:{:02}", sec / 3600, sec / 60 % 60, sec % 60);
                let channel = pick(&mut rng, &CHANNELS);
                let product = PRODUCTS[rng.random_range(0..PRODUCTS.len())];
                let quantity = if rng.random_bool(0.1) { String::new() } else { rng.random_range(1..6).to_string() };
                let amount = if rng.random_bool(0.1) {
                    String::new()
                } else {
                    format!("{}.{}", rng.random_range(0..500), rng.random_range(0..10))
                };
                writeln!(purchases, "o{i}-{k},u{i},{product},{channel},{ts},{quantity},{amount}")
                    .expect("write to a String");
            }
            for _ in 0..rng.random_range(0..5) {
                let (day, sec) = (rng.random_range(1..29), rng.random_range(0..86_400));
                let ts = format!("2026-10-{day:02} {:02}:{:02}:{:02}", sec / 3600, sec / 60 % 60, sec % 60);
                let kind = EVENT_TYPES[rng.random_range(0..EVENT_TYPES.len())];
                writeln!(events, "u{i},app,{kind},{ts}").expect("write to a String");
            }
        }
        // Identifiers that join some users into persons (shared phones and e-mails, a device
        // that links nobody), so that every test also runs on a store with `person_id`.
        let mut identities = String::from("user_id,id_type,id_value,source,ts\n");
        for i in 0..300 {
            for (kind, pool, chance) in [("phone", 60, 0.4), ("email", 40, 0.2), ("device_id", 5, 0.1)] {
                if rng.random_bool(chance) {
                    let k = rng.random_range(0..pool);
                    let value = match kind {
                        "phone" => format!("1380013{k:04}"),
                        "email" => format!("p{k}@example.com"),
                        _ => format!("tablet-{k}"),
                    };
                    let day = rng.random_range(1..29);
                    writeln!(identities, "u{i},{kind},{value},app,2026-09-{day:02} 10:00:00")
                        .expect("write to a String");
                }
            }
        }
        for (name, body) in [
            ("identities.csv", identities.as_str()),
            ("users.csv", users.as_str()),
            ("user_tags.csv", tags.as_str()),
            ("purchases.csv", purchases.as_str()),
            ("events.csv", events.as_str()),
            ("products.csv", products),
        ] {
            std::fs::write(dir.path().join(name), body).expect("write input");
        }
        let store = Store::open_or_create(dir.path().join("store")).expect("store");
        let inputs = ["users.csv", "user_tags.csv", "purchases.csv", "events.csv", "products.csv", "identities.csv"]
            .map(|n| dir.path().join(n));
        store.import(&inputs, &ImportOptions::default()).expect("import");
        (dir, store)
    })
}

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..4usize).prop_map(|i| format!("tier = '{}'", TIERS[i])),
        (0..4usize).prop_map(|i| format!("tier <> '{}'", TIERS[i])),
        (0..3usize, 0..3usize).prop_map(|(a, b)| format!("region IN ('{}', '{}')", REGIONS[a], REGIONS[b])),
        (0..3usize).prop_map(|a| format!("region NOT IN ('{}')", REGIONS[a])),
        (-10i64..65).prop_map(|n| format!("points > {n}")),
        (-10i64..65).prop_map(|n| format!("{n} < points")),
        (-10i64..65).prop_map(|n| format!("points <= {n}")),
        (-10i64..65, 0i64..30).prop_map(|(a, w)| format!("points BETWEEN {a} AND {}", a + w)),
        (-10i64..65).prop_map(|n| format!("points = {n}")),
        Just("vip".to_string()),
        Just("vip = false".to_string()),
        (1950i32..2010).prop_map(|y| format!("birth_date < DATE '{y}-06-15'")),
        (1950i32..2010).prop_map(|y| format!("birth_date >= DATE '{y}-01-01'")),
        prop_oneof![Just("tier"), Just("region"), Just("points"), Just("vip"), Just("birth_date")]
            .prop_map(|c| format!("{c} IS NULL")),
        (0..4usize).prop_map(|i| format!(
            "EXISTS (SELECT 1 FROM user_tags t WHERE t.user_id = u.user_id AND t.tag = '{}')",
            TAGS[i]
        )),
        (0..4usize).prop_map(|i| format!("u.user_id NOT IN (SELECT user_id FROM user_tags WHERE tag = '{}')", TAGS[i])),
        (1u32..28, 1u32..10).prop_map(|(d, w)| format!(
            "NOT EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = u.user_id AND p.ts >= TIMESTAMP '2026-10-{d:02} 00:00:00' AND p.ts < TIMESTAMP '2026-10-{d:02} 00:00:00' + INTERVAL '{w} days')"
        )),
        (1u32..28, 0u32..24).prop_map(|(d, h)| format!(
            "EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = u.user_id AND p.ts >= TIMESTAMP '2026-10-{d:02} {h:02}:00:00')"
        )),
        // Streams with windows whose edges may fall inside a day (> / <= included).
        (0..3usize, window()).prop_map(|(c, (lo, hi))| format!(
            "EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = u.user_id AND p.channel_id = '{}' AND {lo} AND {hi})",
            CHANNELS[c]
        )),
        (0..2usize, window()).prop_map(|(c, (lo, hi))| format!(
            "NOT EXISTS (SELECT 1 FROM purchases p JOIN products pr ON pr.product_id = p.product_id \
             WHERE p.user_id = u.user_id AND pr.category = '{}' AND {lo} AND {hi})",
            ["skincare", "makeup"][c]
        )),
        (0..3usize, window()).prop_map(|(e, (lo, hi))| format!(
            "EXISTS (SELECT 1 FROM events e WHERE e.user_id = u.user_id AND e.event_type IN ('{}', 'share') AND {lo} AND {hi})",
            EVENT_TYPES[e]
        )),
        window().prop_map(|(lo, hi)| format!("NOT EXISTS (SELECT 1 FROM events e WHERE e.user_id = u.user_id AND {lo} AND {hi})")),
    ]
}

/// A range comparison on an indexed numeric or date column.
fn range_atom() -> impl Strategy<Value = String> {
    prop_oneof![
        (-10i64..65, 0..5usize).prop_map(|(n, op)| format!("points {} {n}", ["<", "<=", "=", ">=", ">"][op])),
        (-10i64..65, 0i64..40).prop_map(|(a, w)| format!("points BETWEEN {a} AND {}", a + w)),
        (1940i32..2015, 0..5usize)
            .prop_map(|(y, op)| format!("birth_date {} DATE '{y}-03-01'", ["<", "<=", "=", ">=", ">"][op])),
        (1940i32..2015, 0i32..30)
            .prop_map(|(y, w)| format!("birth_date BETWEEN DATE '{y}-01-01' AND DATE '{}-06-30'", y + w)),
    ]
}

/// Two bounds on `ts` in October 2026, at whole hours (often not midnights), with any operators.
fn window() -> impl Strategy<Value = (String, String)> {
    (1u32..29, 0u32..24, 0u32..10, 0u32..24, 0..2usize, 0..2usize).prop_map(|(d, h, days, h2, lo_op, hi_op)| {
        let end = (d + days).min(31);
        (
            format!("ts {} TIMESTAMP '2026-10-{d:02} {h:02}:00:00'", [">=", ">"][lo_op]),
            format!("ts {} TIMESTAMP '2026-10-{end:02} {h2:02}:00:00'", ["<", "<="][hi_op]),
        )
    })
}

fn predicate() -> impl Strategy<Value = String> {
    atom().prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} AND {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} OR {b})")),
            inner.prop_map(|a| format!("NOT ({a})")),
        ]
    })
}

/// Subqueries under OR or NOT are not decorrelated by DataFusion; keep them at the top level.
fn top_level(pred: &str, subquery: &str) -> String {
    format!("SELECT count(*) FROM users u WHERE {pred} AND {subquery}")
}

/// A row-local condition on purchases (what the per-user aggregate reads), possibly compound.
fn fact_filter() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        (0..3usize).prop_map(|c| format!("channel_id = '{}'", CHANNELS[c])),
        (0..3usize).prop_map(|c| format!("channel_id <> '{}'", CHANNELS[c])),
        (0..3usize, 0..3usize).prop_map(|(a, b)| format!("channel_id IN ('{}', '{}')", CHANNELS[a], CHANNELS[b])),
        (0..4usize).prop_map(|p| format!("product_id NOT IN ('{}')", PRODUCTS[p])),
        window().prop_map(|(lo, hi)| format!("{lo} AND {hi}")),
        (0i64..6).prop_map(|q| format!("quantity > {q}")),
        (0i64..500).prop_map(|a| format!("amount <= {a}")),
        Just("amount IS NULL".to_string()),
        Just("TRUE".to_string()),
    ];
    atom.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} AND {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} OR {b})")),
            inner.prop_map(|a| format!("NOT ({a})")),
        ]
    })
}

fn having() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (1i64..5).prop_map(|k| format!("HAVING count(*) >= {k}")),
        (0i64..1200).prop_map(|x| format!("HAVING sum(amount) > {x}")),
        (1i64..4, 0i64..600).prop_map(|(k, x)| format!("HAVING count(amount) >= {k} AND avg(amount) < {x}")),
        (1u32..29).prop_map(|d| format!("HAVING max(ts) < TIMESTAMP '2026-10-{d:02} 12:00:00'")),
    ]
}

/// A window function over users: `PARTITION BY` none, one or two columns; `ORDER BY` one or two
/// keys of every kind (strings and NULLs included, ties common), in any direction. Functions whose
/// value depends on the order among ties get `user_id` as the last key, so that both paths agree.
fn window_function() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("points"),
        Just("tier"),
        Just("region"),
        Just("birth_date"),
        Just("vip"),
        Just("user_id"),
        Just("points % 7"),
    ];
    let direction = prop_oneof![Just(""), Just(" DESC"), Just(" ASC NULLS FIRST"), Just(" DESC NULLS LAST")];
    let partition = prop_oneof![Just(""), Just("PARTITION BY tier "), Just("PARTITION BY region, vip ")];
    (0usize..7, 1i64..7, partition, prop::collection::vec((key, direction), 1..3)).prop_map(
        |(f, k, partition, keys)| {
            let mut order: Vec<String> = keys.iter().map(|(c, d)| format!("{c}{d}")).collect();
            if f < 2 {
                order.push("user_id".to_string());
            }
            let function = match f {
                0 => "row_number()".to_string(),
                1 => format!("ntile({k})"),
                2 => "rank()".to_string(),
                3 => "dense_rank()".to_string(),
                4 => "count(*)".to_string(),
                5 => "percent_rank()".to_string(),
                _ => "sum(points)".to_string(),
            };
            format!("{function} OVER ({partition}ORDER BY {})", order.join(", "))
        },
    )
}

/// Every row of a query's result, formatted, in the order the query gives.
fn rows(sql: &str, use_indexes: bool) -> Result<Vec<String>, String> {
    let (_, store) = store();
    let options = SessionOptions { use_indexes: Some(use_indexes), target_partitions: Some(2), ..Default::default() };
    let session = store.session_with(&options).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread().build().map_err(|e| e.to_string())?;
    let batches = rt.block_on(session.query(sql)).map_err(|e| e.to_string())?;
    let text = arrow::util::pretty::pretty_format_batches(&batches).map_err(|e| e.to_string())?;
    Ok(text.to_string().lines().map(str::to_string).collect())
}

fn count(sql: &str, use_indexes: bool) -> Result<i64, String> {
    let (_, store) = store();
    let options = SessionOptions { use_indexes: Some(use_indexes), target_partitions: Some(2), ..Default::default() };
    let session = store.session_with(&options).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread().build().map_err(|e| e.to_string())?;
    let batches = rt.block_on(session.query(sql)).map_err(|e| e.to_string())?;
    let col = batches[0].column(0);
    Ok(arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(col).value(0))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn bitmap_answers_equal_the_general_path(pred in predicate(), sub in atom()) {
        // Plain predicates may nest anything; a subquery atom is ANDed at the top level.
        let plain = !pred.contains("SELECT");
        let sql = if plain { top_level(&pred, &sub) } else { top_level(&sub, "TRUE") };
        let with = count(&sql, true);
        let without = count(&sql, false);
        prop_assert!(without.is_ok(), "{}: {:?}", sql, without);
        prop_assert_eq!(with, without, "{}", sql);
    }

    /// Counts of range conjunctions (counted from the fold's words when indexes are on, no
    /// bitmap built) equal DataFusion's, constants outside the indexed range included.
    #[test]
    fn range_counts_equal_the_general_path(terms in prop::collection::vec(range_atom(), 2..5)) {
        let sql = format!("SELECT count(*) FROM users WHERE {}", terms.join(" AND "));
        prop_assert_eq!(count(&sql, true), count(&sql, false), "{}", sql);
    }

    /// Per-user aggregates (answered by row id when indexes are on) equal DataFusion's.
    #[test]
    fn per_user_aggregates_equal_the_general_path(filter in fact_filter(), having in having()) {
        let sql = format!(
            "SELECT user_id, count(*) AS n, count(quantity) AS q, round(sum(amount), 4) AS s, \
             min(amount) AS lo, max(ts) AS last, round(avg(amount), 4) AS a, sum(quantity) AS qs \
             FROM purchases WHERE {filter} GROUP BY user_id {having} ORDER BY user_id"
        );
        let with = rows(&sql, true);
        let without = rows(&sql, false);
        prop_assert!(without.is_ok(), "{}: {:?}", sql, without);
        prop_assert_eq!(with, without, "{}", sql);
    }

    /// `person_id` (computed from user_id) is the person `user_persons` gives, on users under any
    /// audience predicate and on purchases under any fact filter, with indexes on and off.
    #[test]
    fn person_id_is_the_person_of_user_persons(pred in predicate(), filter in fact_filter()) {
        let direct = format!(
            "SELECT count(*) AS n, count(DISTINCT person_id) AS p, sum(person_id) AS s FROM users u WHERE {pred}"
        );
        let joined = format!(
            "SELECT count(*) AS n, count(DISTINCT up.person_id) AS p, sum(up.person_id) AS s \
             FROM users u JOIN user_persons up ON up.user_id = u.user_id WHERE {pred}"
        );
        let facts = format!(
            "SELECT person_id AS p, count(*) AS n, round(sum(amount), 4) AS a FROM purchases \
             WHERE {filter} GROUP BY person_id ORDER BY p"
        );
        let facts_joined = format!(
            "SELECT up.person_id AS p, count(*) AS n, round(sum(amount), 4) AS a FROM purchases \
             JOIN user_persons up USING (user_id) WHERE {filter} GROUP BY up.person_id ORDER BY p"
        );
        for on in [true, false] {
            let want = rows(&joined, on);
            prop_assert!(want.is_ok(), "{}: {:?}", joined, want);
            prop_assert_eq!(rows(&direct, on), want, "{} (indexes {})", direct, on);
            let want = rows(&facts_joined, on);
            prop_assert!(want.is_ok(), "{}: {:?}", facts_joined, want);
            prop_assert_eq!(rows(&facts, on), want, "{} (indexes {})", facts, on);
        }
    }

    /// Stacks of window functions (one `WindowChainExec` when indexes are on) equal DataFusion's.
    #[test]
    fn window_stacks_equal_datafusion_sorts(windows in prop::collection::vec(window_function(), 1..4)) {
        let columns: Vec<String> = windows.iter().enumerate().map(|(i, w)| format!("{w} AS w{i}")).collect();
        let sql = format!("SELECT user_id, {} FROM users ORDER BY user_id", columns.join(", "));
        let with = rows(&sql, true);
        let without = rows(&sql, false);
        prop_assert!(without.is_ok(), "{}: {:?}", sql, without);
        prop_assert_eq!(with, without, "{}", sql);
    }
}
