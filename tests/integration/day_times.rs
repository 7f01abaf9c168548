//! Events files keep their rows' times of day by type, channel and day (`store::day_times`), and
//! a window edge inside a day is answered from them: on stores whose events were converted (CSV)
//! and kept as loaded (Parquet), random windows with edges at any second or microsecond give the
//! general path's answer; a damaged file is named at query time.

use persona::r#gen::{GenFormat, GenOptions, generate};
use persona::{ImportOptions, SessionOptions, Store, Table};

use crate::util::{batches_to_rows, sample_dir};

/// A small seeded generator (xorshift), so that a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const EVENT_TYPES: [&str; 6] = ["view", "click", "cart", "coupon", "share", "login"];
const CHANNELS: [&str; 5] = ["app", "web", "wechat", "alipay", "tmall"];

fn count(store: &Store, use_indexes: bool, sql: &str) -> Vec<String> {
    let session = store
        .session_with(&SessionOptions {
            now: Some(chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap().to_utc()),
            use_indexes: Some(use_indexes),
            target_partitions: Some(2),
            ..SessionOptions::default()
        })
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    batches_to_rows(&rt.block_on(session.query(sql)).unwrap_or_else(|e| panic!("{sql}: {e}")))
}

/// A timestamp literal `seconds` (plus `micros`) after 2026-08-01 00:00:00 UTC.
fn at(seconds: u64, micros: u64) -> String {
    let t = chrono::DateTime::parse_from_rfc3339("2026-08-01T00:00:00Z").unwrap().to_utc()
        + chrono::Duration::seconds(seconds as i64)
        + chrono::Duration::microseconds(micros as i64);
    format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.6f"))
}

/// Random event windows (edges inside days, some within one day, some a microsecond off a
/// second), with type and channel conditions, under EXISTS and NOT EXISTS: the same counts with
/// and without the indexes.
fn windows_agree(store: &Store, seed: u64, queries: usize) {
    let mut rng = Rng(seed);
    let span = 92 * 86_400;
    for _ in 0..queries {
        let from = rng.below(span);
        let length = match rng.below(3) {
            0 => rng.below(6 * 3_600),
            1 => rng.below(3 * 86_400),
            _ => rng.below(40 * 86_400),
        };
        let micros = |rng: &mut Rng| if rng.below(4) == 0 { rng.below(1_000_000) } else { 0 };
        let (from_micros, to_micros) = (micros(&mut rng), micros(&mut rng));
        let mut conditions =
            vec![format!("e.ts >= {}", at(from, from_micros)), format!("e.ts < {}", at(from + length, to_micros))];
        match rng.below(4) {
            0 => {}
            1 => conditions.push(format!("e.event_type = '{}'", EVENT_TYPES[rng.below(6) as usize])),
            2 => conditions.push(format!(
                "e.event_type IN ('{}', '{}')",
                EVENT_TYPES[rng.below(6) as usize],
                EVENT_TYPES[rng.below(6) as usize]
            )),
            _ => conditions.push(format!(
                "e.event_type = '{}' AND e.channel_id IN ('{}', '{}')",
                EVENT_TYPES[rng.below(6) as usize],
                CHANNELS[rng.below(5) as usize],
                CHANNELS[rng.below(5) as usize]
            )),
        }
        let not = if rng.below(3) == 0 { "NOT " } else { "" };
        let sql = format!(
            "SELECT count(*) FROM users u WHERE {not}EXISTS (SELECT 1 FROM events e WHERE e.user_id = u.user_id AND {})",
            conditions.join(" AND ")
        );
        assert_eq!(count(store, true, &sql), count(store, false, &sql), "seed {seed}: {sql}");
    }
}

fn events_have_day_times(store: &Store) {
    let snapshot = store.snapshot().unwrap();
    let files = snapshot.manifest().files(Table::Events);
    assert!(!files.is_empty());
    for file in files {
        let times = file.day_times.as_ref().unwrap_or_else(|| panic!("{} has no day times", file.path));
        assert!(store.root().join(times).is_file(), "{times}");
    }
}

#[test]
fn converted_events_answer_window_edges_from_their_day_times() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_create(dir.path().join("store")).unwrap();
    store.import(&[sample_dir()], &ImportOptions::default()).unwrap();
    events_have_day_times(&store);
    windows_agree(&store, 20261206, 60);
}

#[test]
fn kept_events_answer_window_edges_from_their_day_times_and_damage_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    generate(&GenOptions { users: 3000, seed: 11, out: source.clone(), format: GenFormat::Parquet }, &|_| {}).unwrap();
    let store = Store::open_or_create(dir.path().join("store")).unwrap();
    store.import(std::slice::from_ref(&source), &ImportOptions::default()).unwrap();
    let kept = store.snapshot().unwrap().manifest().files(Table::Events).iter().all(|f| f.row_ids.is_some());
    assert!(kept, "generated Parquet events are kept as loaded");
    events_have_day_times(&store);
    windows_agree(&store, 77, 60);

    // A damaged file is named when a window edge reads it.
    let snapshot = store.snapshot().unwrap();
    let times = snapshot.manifest().files(Table::Events)[0].day_times.clone().unwrap();
    let path = store.root().join(&times);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let session = store.session().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sql = "SELECT count(*) FROM users u WHERE EXISTS (SELECT 1 FROM events e WHERE e.user_id = u.user_id \
               AND e.ts >= TIMESTAMP '2026-10-20 12:00:00')";
    let err = rt.block_on(session.query(sql)).expect_err("a truncated file cannot answer").to_string();
    let name = std::path::Path::new(&times).file_name().unwrap().to_string_lossy().to_string();
    assert!(err.contains(&name), "the error names {name}: {err}");
}
