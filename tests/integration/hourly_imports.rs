//! A year of hourly imports at a small scale (issue 17): the sample's dimensions once, then 8,760
//! imports of one hour's purchases and events each (a new user, a tag and a profile change once
//! a day), compacted whenever `compaction_due` says so — as `persona import` does after each
//! commit — and vacuumed to two versions once a week, as a scheduled job would. Afterwards the
//! store holds a bounded number of files and segments, passes `check`, and answers every query
//! (indexes on and off) exactly as a store that imported the same rows at once.
//! A plain `cargo test` runs a quarter (2,190 hours, ~2 minutes in a debug build); CI runs the
//! year (`PERSONA_HOURLY_IMPORTS=8760`, ~10 minutes); any other N runs N hours.

#![allow(clippy::print_stdout)] // the test prints what the year left behind

use std::fmt::Write as _;
use std::path::Path;

use persona::Store;
use persona::ingest::compact::{CompactOptions, compaction_due};
use persona::store::vacuum::{KeepPolicy, vacuum};
use persona::tables::Table;

use crate::util::*;

/// Hours run unless `PERSONA_HOURLY_IMPORTS` says otherwise: a quarter of a year.
const DEFAULT_HOURS: usize = 2_190;
const SAMPLE_USERS: usize = 2_000;

/// One hour's rows: purchases, events, and once a day a new user (its tag, and a points change
/// of an existing user).
struct Hour {
    purchases: String,
    events: String,
    users: String,
    tags: String,
}

/// The rows of hour `h` (deterministic), CSV bodies without headers.
fn hour(h: usize) -> Hour {
    let day = h / 24;
    let at = |minute: usize| {
        let t = chrono::NaiveDate::from_ymd_opt(2025, 12, 1).unwrap().and_hms_opt(0, 0, 0).unwrap()
            + chrono::Duration::minutes((h * 60 + minute) as i64);
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    };
    let user = |k: usize| format!("u{}", (h * 7919 + k * 104_729) % SAMPLE_USERS);
    let mut purchases = String::new();
    for k in 0..(1 + h % 3) {
        let amount = ((h * 31 + k * 17) % 50_000) as f64 / 100.0;
        writeln!(purchases, "h{h}-{k},{},p{},app,{},{},{amount:.2}", user(k), 18_000 + (h + k) % 900, at(k * 7), 1 + k)
            .unwrap();
    }
    let mut events = String::new();
    for k in 0..(2 + h % 4) {
        let kind = ["login", "view", "cart", "search"][(h + k) % 4];
        writeln!(events, "{},{},{kind},{}", user(k + 3), ["app", "web", "alipay"][k % 3], at(10 + k * 5)).unwrap();
    }
    let (mut users, mut tags) = (String::new(), String::new());
    if h % 24 == 23 {
        writeln!(users, "n{day},n{day}@example.com,139{day:08},gold,{},2025-12-01", 100 + day).unwrap();
        writeln!(users, "{},{}@example.com,,silver,{},2025-01-01", user(9), user(9), 5_000 + day).unwrap();
        writeln!(tags, "n{day},{},{}", ["A", "B", "vip"][day % 3], at(59)).unwrap();
    }
    Hour { purchases, events, users, tags }
}

const PURCHASES: &str = "order_id,user_id,product_id,channel_id,ts,quantity,amount";
const EVENTS: &str = "user_id,channel_id,event_type,ts";
const USERS: &str = "user_id,email,phone,tier,points,signup_date";
const TAGS: &str = "user_id,tag,assigned_at";

/// A store with the sample's users, products and channels.
fn with_dimensions(path: &Path) -> Store {
    let store = create_store(path);
    for table in ["users", "products", "channels"] {
        import(&store, &[&sample_dir().join(table)]).unwrap();
    }
    store
}

/// Writes the non-empty bodies of one import under `dir` and returns their paths.
fn files(dir: &Path, parts: [(&str, &str, &String); 4]) -> Vec<std::path::PathBuf> {
    parts
        .into_iter()
        .filter(|(_, _, body)| !body.is_empty())
        .map(|(name, header, body)| write(dir, &format!("{name}.csv"), format!("{header}\n{body}")))
        .collect()
}

/// The bytes of `files` (relative to `root`).
fn bytes_of(root: &Path, files: &std::collections::BTreeSet<std::path::PathBuf>) -> u64 {
    files.iter().map(|p| std::fs::metadata(root.join(p)).map(|m| m.len()).unwrap_or(0)).sum()
}

const QUERIES: &[&str] = &[
    "SELECT count(*), count(DISTINCT user_id), round(sum(amount), 2) FROM purchases",
    "SELECT count(*) FROM users",
    "SELECT tier, count(*), sum(points) FROM users GROUP BY tier ORDER BY tier",
    "SELECT count(*) FROM users WHERE user_id IN (SELECT user_id FROM purchases WHERE ts >= TIMESTAMP '2026-06-01 00:00:00')",
    "SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.user_id = u.user_id \
     AND e.ts >= TIMESTAMP '2026-11-01 00:00:00')",
    "SELECT count(*) FROM (SELECT user_id FROM purchases GROUP BY user_id HAVING sum(amount) > 2000) t",
    "SELECT user_id, count(*), round(sum(amount), 2), max(ts) FROM purchases GROUP BY user_id ORDER BY 3 DESC, 1 LIMIT 10",
    "SELECT event_type, channel_id, count(*) FROM events GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT tag, count(*) FROM user_tags GROUP BY tag ORDER BY tag",
    "SELECT count(*) FROM users WHERE has_tag('vip') AND tier = 'gold'",
    "SELECT count(*) FROM users WHERE points BETWEEN 5000 AND 5400",
    "SELECT user_id, points FROM users WHERE user_id IN ('n0', 'n100', 'n364', 'u17') ORDER BY 1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_of_hourly_imports_stays_compact_and_answers_as_one_import() {
    let hours: usize =
        std::env::var("PERSONA_HOURLY_IMPORTS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_HOURS);
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();

    let hourly = with_dimensions(&dir.path().join("hourly"));
    let (mut compactions, mut vacuums) = (0, 0);
    let all = (0..hours).map(hour).collect::<Vec<_>>();
    for (h, rows) in all.iter().enumerate() {
        let input = dir.path().join("hour");
        let _ = std::fs::remove_dir_all(&input);
        let paths = files(
            &input,
            [
                ("users", USERS, &rows.users),
                ("purchases", PURCHASES, &rows.purchases),
                ("events", EVENTS, &rows.events),
                ("user_tags", TAGS, &rows.tags),
            ],
        );
        let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
        import(&hourly, &refs).unwrap_or_else(|e| panic!("hour {h}: {e}"));
        let _scope = lock_scope();
        if compaction_due(hourly.snapshot().unwrap().manifest()) {
            assert!(hourly.compact(&CompactOptions::default()).unwrap().merged(), "hour {h}: due but nothing merged");
            compactions += 1;
        }
        if h % 168 == 167 {
            vacuum(&hourly, KeepPolicy { versions: Some(2), newer_than: None }).unwrap();
            vacuums += 1;
        }
    }
    let imported = started.elapsed();

    // What the year left behind: each table's small files stay under the compaction trigger.
    let snapshot = hourly.snapshot().unwrap();
    let m = snapshot.manifest();
    for table in [Table::Users, Table::Purchases, Table::Events, Table::UserTags] {
        assert!(m.files(table).len() < 64 + 8, "{table}: {} files after {hours} imports", m.files(table).len());
    }
    assert!(m.id_segments.len() < 64 + 8, "{} id segments after {hours} imports", m.id_segments.len());
    {
        let _scope = lock_scope();
        vacuum(&hourly, KeepPolicy { versions: Some(1), newer_than: None }).unwrap();
    }
    let on_disk = files_under(hourly.root());
    let disk = bytes_of(hourly.root(), &on_disk);
    let manifests = std::fs::read_dir(hourly.root().join("_persona").join("manifests")).unwrap().count();
    // The manifest does not grow with the number of imports (the record of loaded files once
    // made it 3 MB after a year): its size is that of the files it lists.
    let current = std::fs::read_to_string(persona::store::layout::current_file(hourly.root())).unwrap();
    let manifest_bytes =
        std::fs::metadata(persona::store::layout::manifests_dir(hourly.root()).join(current.trim())).unwrap().len();
    let listed = Table::ALL.iter().map(|t| m.files(*t).len()).sum::<usize>() + m.id_segments.len() + m.load_log.len();
    assert!(
        manifest_bytes < 16_384 + 2_048 * listed as u64,
        "the manifest is {manifest_bytes} bytes for {listed} files after {hours} imports"
    );
    check_passes(&hourly);

    // The same rows at once.
    let once = with_dimensions(&dir.path().join("once"));
    let joined = |pick: fn(&Hour) -> &String| all.iter().map(pick).map(String::as_str).collect::<String>();
    let (purchases, events, tags) = (joined(|h| &h.purchases), joined(|h| &h.events), joined(|h| &h.tags));
    // One import takes a user once: each user's last row.
    let mut last = std::collections::BTreeMap::new();
    for line in joined(|h| &h.users).lines() {
        last.insert(line.split(',').next().unwrap().to_string(), line.to_string());
    }
    let users = last.into_values().map(|l| l + "\n").collect::<String>();
    let paths = files(
        &dir.path().join("once-input"),
        [
            ("users", USERS, &users),
            ("purchases", PURCHASES, &purchases),
            ("events", EVENTS, &events),
            ("user_tags", TAGS, &tags),
        ],
    );
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    import(&once, &refs).unwrap();

    let once_disk = bytes_of(once.root(), &files_under(once.root()));
    assert!(disk < 4 * once_disk, "{disk} bytes on disk after the year, {once_disk} for one import");
    let expected = answers_both_ways(&once, QUERIES).await;
    assert_eq!(answers_both_ways(&hourly, QUERIES).await, expected, "after {hours} hourly imports");
    let reopened = Store::open(hourly.root()).unwrap();
    assert_eq!(answers_both_ways(&reopened, QUERIES).await, expected, "reopened");
    println!(
        "{hours} hourly imports in {:.1} s ({compactions} compactions, {vacuums} vacuums): version {}, \
         {} purchases files, {} events files, {} users files, {} id segments; after vacuum {} files, {} manifests, {:.1} MiB on disk (one import: {:.1} MiB)",
        imported.as_secs_f64(),
        snapshot.version(),
        m.files(Table::Purchases).len(),
        m.files(Table::Events).len(),
        m.files(Table::Users).len(),
        m.id_segments.len(),
        on_disk.len(),
        manifests,
        disk as f64 / (1 << 20) as f64,
        once_disk as f64 / (1 << 20) as f64,
    );
}
