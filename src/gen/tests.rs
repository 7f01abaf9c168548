//! End-to-end tests of the generator: same seed, same bytes; file rotation and order numbering
//! across chunks; keys and references; and the documented distributions of a 20k-user sample.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Date32Type, Float64Type, Int32Type, Int64Type, SchemaRef, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rustc_hash::{FxHashMap, FxHashSet};

use super::batches::schema;
use super::calendar::{MICROS_PER_DAY, MICROS_PER_SECOND, NOW_DAY, SIGNUP_FIRST_DAY};
use super::distributions::PRODUCT_COUNT;
use super::files::ROW_GROUP_ROWS;
use super::pipeline::{FACT_ROWS_PER_FILE, Layout, USERS_PER_FILE, generate_with};
use super::vocabulary::{CHANNELS, EVENT_TYPES, GENDERS, TIERS};
use super::{GEN_NOW_MICROS, GenFormat, GenOptions, GenSummary, generate};
use crate::error::Error;
use crate::tables::Table;
fn options(dir: &Path, users: u64, seed: u64, format: GenFormat) -> GenOptions {
    GenOptions { users, seed, out: dir.to_path_buf(), format }
}

fn files_of(dir: &Path, table: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir.join(table)).expect("table folder").map(|e| e.expect("entry").path()).collect();
    files.sort();
    files
}

fn read_parquet(dir: &Path, table: &str) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for path in files_of(dir, table) {
        let file = File::open(&path).expect("open");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").build().expect("reader");
        for batch in reader {
            out.push(batch.expect("batch"));
        }
    }
    out
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let col = b.column_by_name(column).expect("column");
        out.extend(col.as_string::<i32>().iter().map(|v| v.unwrap_or("").to_string()));
    }
    out
}

fn no_progress(_: u64) {}

/// One 20k-user parquet data set shared by the statistical tests.
fn sample() -> &'static (tempfile::TempDir, GenSummary) {
    static SAMPLE: std::sync::OnceLock<(tempfile::TempDir, GenSummary)> = std::sync::OnceLock::new();
    SAMPLE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let summary = generate(&options(dir.path(), 20_000, 42, GenFormat::Parquet), &no_progress).expect("gen");
        (dir, summary)
    })
}

#[test]
fn same_seed_gives_identical_bytes_and_other_seed_differs() {
    let small = Layout { chunk_users: 700, users_per_file: 1_000, fact_rows_per_file: 4_000 };
    let run = |seed: u64| {
        let dir = tempfile::tempdir().expect("tempdir");
        let summary =
            generate_with(&options(dir.path(), 3_000, seed, GenFormat::Parquet), &no_progress, small).expect("gen");
        (dir, summary)
    };
    let (a, sa) = run(9);
    let (b, sb) = run(9);
    let (c, _) = run(10);
    assert_eq!(sa, sb);
    assert!(sa.files > Table::ALL.len(), "files rotate: {sa:?}");
    let mut differs = false;
    for table in Table::ALL.map(Table::name) {
        let fa = files_of(a.path(), table);
        let fb = files_of(b.path(), table);
        assert_eq!(fa.len(), fb.len());
        for (x, y) in fa.iter().zip(&fb) {
            assert_eq!(x.file_name(), y.file_name());
            assert!(std::fs::read(x).expect("read") == std::fs::read(y).expect("read"), "{} differs", x.display());
        }
        let fc = files_of(c.path(), table);
        if let (Some(x), Some(y)) = (fa.first(), fc.first()) {
            differs |= std::fs::read(x).expect("read") != std::fs::read(y).expect("read");
        }
    }
    assert!(differs, "another seed gives other data");
    // Rotation respects the limits, and the users files hold all users in order.
    let users = read_parquet(a.path(), "users");
    assert_eq!(files_of(a.path(), "users").len(), 3);
    let ids = strings(&users, "user_id");
    assert_eq!(ids.len(), 3_000);
    assert!(ids.iter().enumerate().all(|(i, id)| *id == format!("u{i}")));
    for table in ["purchases", "events", "user_tags"] {
        for path in files_of(a.path(), table) {
            let file = File::open(&path).expect("open");
            let rows =
                ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").metadata().file_metadata().num_rows();
            assert!(rows <= 4_000, "{} has {rows} rows", path.display());
        }
    }
    // Order ids are sequential across chunks and files.
    let orders = strings(&read_parquet(a.path(), "purchases"), "order_id");
    assert!(orders.iter().enumerate().all(|(i, o)| *o == format!("o{}", i + 1)));
}

#[test]
fn a_smaller_run_is_a_prefix_of_a_larger_one() {
    let small = Layout { chunk_users: 300, users_per_file: USERS_PER_FILE, fact_rows_per_file: FACT_ROWS_PER_FILE };
    let run = |users: u64| {
        let dir = tempfile::tempdir().expect("tempdir");
        generate_with(&options(dir.path(), users, 5, GenFormat::Parquet), &no_progress, small).expect("gen");
        dir
    };
    let (a, b) = (run(1_000), run(1_450));
    for table in ["users", "purchases", "events", "user_tags"] {
        let x = arrow::compute::concat_batches(&schema_of(table), &read_parquet(a.path(), table)).expect("concat");
        let y = arrow::compute::concat_batches(&schema_of(table), &read_parquet(b.path(), table)).expect("concat");
        assert!(x.num_rows() > 0 && x.num_rows() < y.num_rows(), "{table}");
        assert_eq!(x, y.slice(0, x.num_rows()), "{table}");
    }
}

fn schema_of(table: &str) -> SchemaRef {
    match table {
        "users" => schema(Table::Users),
        "purchases" => schema(Table::Purchases),
        "events" => schema(Table::Events),
        _ => schema(Table::UserTags),
    }
}

#[test]
fn summary_counts_match_files() {
    let (dir, summary) = sample();
    let names: Vec<&str> = summary.rows.iter().map(|r| r.0).collect();
    assert_eq!(names, Table::ALL.map(Table::name));
    for (table, rows) in &summary.rows {
        let n: usize = read_parquet(dir.path(), table).iter().map(RecordBatch::num_rows).sum();
        assert_eq!(n as u64, *rows, "{table}");
    }
    assert_eq!(summary.rows[0].1, 20_000);
    assert_eq!(summary.rows[1].1, PRODUCT_COUNT as u64);
    assert_eq!(summary.rows[2].1, CHANNELS.len() as u64);
    assert_eq!(summary.files, 7);
    let bytes: u64 = Table::ALL
        .iter()
        .flat_map(|t| files_of(dir.path(), t.name()))
        .map(|p| std::fs::metadata(p).expect("stat").len())
        .sum();
    assert_eq!(bytes, summary.bytes);
    let users = read_parquet(dir.path(), "users");
    assert_eq!(users[0].schema(), schema(Table::Users));
    let file = File::open(&files_of(dir.path(), "events")[0]).expect("open");
    let meta = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").metadata().clone();
    assert!(meta.row_groups().iter().all(|rg| rg.num_rows() <= ROW_GROUP_ROWS as i64));
    assert!(!meta.row_groups().is_empty());
}

#[test]
fn keys_are_unique_and_facts_reference_existing_rows() {
    let (dir, _) = sample();
    let user_ids = strings(&read_parquet(dir.path(), "users"), "user_id");
    let users: FxHashSet<&str> = user_ids.iter().map(String::as_str).collect();
    assert_eq!(users.len(), user_ids.len(), "user_id is unique");
    // A phone or e-mail is one planted person's: shared only by profiles of that person
    // (gen::identities), and NULL on the further profiles that were given none.
    for column in ["email", "phone"] {
        let values = strings(&read_parquet(dir.path(), "users"), column);
        let mut owner: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        for (i, v) in values.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
            let person = super::identities::person_of(42, i as u64).0;
            assert_eq!(*owner.entry(v.as_str()).or_insert(person), person, "{column} {v} is one person's");
        }
        assert!(owner.len() > values.len() * 6 / 10, "{column}: {} distinct of {}", owner.len(), values.len());
    }
    let phones = strings(&read_parquet(dir.path(), "users"), "phone");
    assert!(
        phones
            .iter()
            .filter(|p| !p.is_empty())
            .all(|p| p.len() == 11 && p.starts_with('1') && p.bytes().all(|b| b.is_ascii_digit()))
    );

    let product_ids = strings(&read_parquet(dir.path(), "products"), "product_id");
    let products: FxHashSet<&str> = product_ids.iter().map(String::as_str).collect();
    assert_eq!(products.len(), PRODUCT_COUNT);
    let channel_ids = strings(&read_parquet(dir.path(), "channels"), "channel_id");
    let channels: FxHashSet<&str> = channel_ids.iter().map(String::as_str).collect();

    let purchases = read_parquet(dir.path(), "purchases");
    let orders = strings(&purchases, "order_id");
    assert_eq!(orders.iter().collect::<FxHashSet<_>>().len(), orders.len(), "order_id is unique");
    let buyers = strings(&purchases, "user_id");
    assert!(buyers.iter().all(|u| users.contains(u.as_str())));
    assert!(strings(&purchases, "product_id").iter().all(|p| products.contains(p.as_str())));
    assert!(strings(&purchases, "channel_id").iter().all(|c| channels.contains(c.as_str())));
    // Grouped by user: a user's purchases are adjacent.
    let mut seen = FxHashSet::default();
    for (i, u) in buyers.iter().enumerate() {
        if i == 0 || buyers[i - 1] != *u {
            assert!(seen.insert(u.as_str()), "{u} appears in two runs");
        }
    }
    for table in ["events", "user_tags"] {
        assert!(strings(&read_parquet(dir.path(), table), "user_id").iter().all(|u| users.contains(u.as_str())));
    }
    // Tags at most once per user.
    let tags = read_parquet(dir.path(), "user_tags");
    let pairs: Vec<(String, String)> = strings(&tags, "user_id").into_iter().zip(strings(&tags, "tag")).collect();
    assert_eq!(pairs.iter().collect::<FxHashSet<_>>().len(), pairs.len());
}

#[test]
fn timestamps_and_dates_are_in_range() {
    let (dir, _) = sample();
    let check = |table: &str, column: &str, from: i64| {
        for b in read_parquet(dir.path(), table) {
            let ts = b.column_by_name(column).expect("column").as_primitive::<TimestampMicrosecondType>();
            assert_eq!(ts.null_count(), 0);
            for v in ts.values() {
                assert!((from..GEN_NOW_MICROS).contains(v), "{table}.{column} = {v}");
                assert_eq!(v % MICROS_PER_SECOND, 0);
            }
        }
    };
    check("purchases", "ts", GEN_NOW_MICROS - 730 * MICROS_PER_DAY);
    check("events", "ts", GEN_NOW_MICROS - 365 * MICROS_PER_DAY);
    check("user_tags", "assigned_at", i64::from(SIGNUP_FIRST_DAY) * MICROS_PER_DAY);
    for b in read_parquet(dir.path(), "users") {
        let birth = b.column_by_name("birth_date").expect("birth").as_primitive::<Date32Type>();
        let signup = b.column_by_name("signup_date").expect("signup").as_primitive::<Date32Type>();
        for (birth, signup) in birth.values().iter().zip(signup.values()) {
            let age_days = NOW_DAY - birth;
            assert!((16 * 365..=91 * 366).contains(&age_days), "age {age_days} days");
            assert!((SIGNUP_FIRST_DAY..NOW_DAY).contains(signup));
            assert!(signup > birth);
        }
    }
}

fn share(count: usize, of: usize) -> f64 {
    count as f64 / of.max(1) as f64
}

#[test]
fn users_have_the_documented_distributions() {
    let (dir, _) = sample();
    let users = read_parquet(dir.path(), "users");
    let n = 20_000;
    let tiers = strings(&users, "tier");
    for (tier, expected) in TIERS {
        let got = share(tiers.iter().filter(|t| *t == tier).count(), n);
        assert!((got - expected).abs() < 0.015, "tier {tier}: {got}");
    }
    let genders = strings(&users, "gender");
    for (g, expected) in GENDERS {
        let got = share(genders.iter().filter(|x| *x == g).count(), n);
        assert!((got - expected).abs() < 0.015, "gender {g}: {got}");
    }
    let cities = strings(&users, "city");
    let top = share(cities.iter().filter(|c| *c == "Shanghai").count(), n);
    assert!((0.06..0.13).contains(&top), "Shanghai {top}");
    assert!(cities.iter().collect::<FxHashSet<_>>().len() > 200);
    let regions: FxHashSet<String> = strings(&users, "region").into_iter().collect();
    assert!(regions.len() >= 28 && regions.contains("Guangdong"));
    let mut occupation_nulls = 0;
    let mut income_nulls = 0;
    let mut points_max = 0;
    for b in &users {
        occupation_nulls += b.column_by_name("occupation").expect("occupation").null_count();
        let income = b.column_by_name("income_band").expect("income").as_primitive::<Int32Type>();
        income_nulls += income.null_count();
        assert!(income.iter().flatten().all(|v| (1..=10).contains(&v)));
        let points = b.column_by_name("points").expect("points").as_primitive::<Int64Type>();
        assert!(points.values().iter().all(|p| (0..=200_000).contains(p)));
        points_max = points_max.max(*points.values().iter().max().unwrap_or(&0));
    }
    assert!((0.005..0.02).contains(&share(occupation_nulls, n)), "occupation nulls {occupation_nulls}");
    assert!((0.005..0.02).contains(&share(income_nulls, n)), "income nulls {income_nulls}");
    assert!(points_max > 100_000);
    let names = strings(&users, "name");
    assert!(names.iter().all(|s| (2..=4).contains(&s.chars().count())));
}

#[test]
fn facts_have_the_documented_volumes_and_skew() {
    let (dir, summary) = sample();
    let n = 20_000.0;
    let per_user = |i: usize| summary.rows[i].1 as f64 / n;
    let purchases = read_parquet(dir.path(), "purchases");
    let buyers: FxHashSet<String> = strings(&purchases, "user_id").into_iter().collect();
    let never = 1.0 - buyers.len() as f64 / n;
    assert!((4.3..5.7).contains(&per_user(3)), "purchases per user {}", per_user(3));
    assert!((0.25..0.35).contains(&never), "never buy {never}");
    assert!((8.5..11.5).contains(&per_user(4)), "events per user {}", per_user(4));
    assert!((5.3..6.7).contains(&per_user(5)), "tags per user {}", per_user(5));

    let channels = strings(&purchases, "channel_id");
    let wechat = share(channels.iter().filter(|c| *c == "wechat").count(), channels.len());
    assert!((0.25..0.45).contains(&wechat), "wechat share {wechat}");
    assert!(channels.iter().any(|c| c.starts_with("store_")));
    for b in &purchases {
        let q = b.column_by_name("quantity").expect("quantity").as_primitive::<Int32Type>();
        assert!(q.values().iter().all(|v| (1..=5).contains(v)));
        let a = b.column_by_name("amount").expect("amount").as_primitive::<Float64Type>();
        assert!(a.values().iter().all(|v| *v >= 5.0 && *v <= 25_000.0));
    }
    let events = read_parquet(dir.path(), "events");
    let types = strings(&events, "event_type");
    let mut counts: FxHashMap<&str, usize> = FxHashMap::default();
    for t in &types {
        *counts.entry(t.as_str()).or_default() += 1;
    }
    let view = counts.get("view").copied().unwrap_or(0);
    assert!(counts.iter().all(|(_, c)| *c <= view), "{counts:?}");
    assert_eq!(counts.len(), EVENT_TYPES.len());
}

#[test]
fn tags_have_the_documented_frequencies() {
    let (dir, _) = sample();
    let tags = strings(&read_parquet(dir.path(), "user_tags"), "tag");
    let mut counts: FxHashMap<&str, usize> = FxHashMap::default();
    for t in &tags {
        *counts.entry(t.as_str()).or_default() += 1;
    }
    let n = 20_000;
    let freq = |t: &str| share(counts.get(t).copied().unwrap_or(0), n);
    for (tag, expected) in [("A", 0.31), ("B", 0.21), ("C", 0.14)] {
        assert!((freq(tag) - expected).abs() < 0.015, "{tag}: {}", freq(tag));
    }
    assert!(counts.len() >= 280 && counts.len() <= 300, "{} distinct tags", counts.len());
    for (tag, range) in [
        ("high_value", 0.02..0.09),
        ("night_owl", 0.03..0.12),
        ("deal_seeker", 0.04..0.20),
        ("churn_risk", 0.05..0.30),
        ("new_parent", 0.02..0.25),
        ("vip", 0.13..0.17),
    ] {
        assert!(range.contains(&freq(tag)), "{tag}: {}", freq(tag));
    }
    // A, B and C are independent draws: their overlap is ≈ the product of their shares.
    let tagged = read_parquet(dir.path(), "user_tags");
    let pairs: Vec<(String, String)> = strings(&tagged, "user_id").into_iter().zip(strings(&tagged, "tag")).collect();
    let with = |t: &str| pairs.iter().filter(|p| p.1 == t).map(|p| p.0.clone()).collect::<FxHashSet<_>>();
    let both = with("A").intersection(&with("B")).count();
    assert!((share(both, n) - 0.31 * 0.21).abs() < 0.012, "A∩B {both}");
}

#[test]
fn csv_output_has_headers_and_parses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = generate(&options(dir.path(), 500, 7, GenFormat::Csv), &no_progress).expect("gen");
    for (table, schema) in [
        ("users", schema(Table::Users)),
        ("products", schema(Table::Products)),
        ("channels", schema(Table::Channels)),
        ("purchases", schema(Table::Purchases)),
        ("events", schema(Table::Events)),
        ("user_tags", schema(Table::UserTags)),
    ] {
        let files = files_of(dir.path(), table);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].file_name().and_then(|f| f.to_str()), Some(format!("{table}-00000.csv").as_str()));
        let text = std::fs::read_to_string(&files[0]).expect("read");
        let header: Vec<&str> = text.lines().next().expect("header").split(',').collect();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(header, names, "{table}");
        let reader = arrow::csv::ReaderBuilder::new(schema)
            .with_header(true)
            .build(File::open(&files[0]).expect("open"))
            .expect("csv reader");
        let rows: usize = reader.map(|b| b.expect("parses").num_rows()).sum();
        let expected = summary.rows.iter().find(|r| r.0 == table).map(|r| r.1);
        assert_eq!(Some(rows as u64), expected, "{table}");
    }
    let events = std::fs::read_to_string(&files_of(dir.path(), "events")[0]).expect("read");
    let line = events.lines().nth(1).expect("a row");
    let ts = line.rsplit(',').next().expect("ts");
    assert_eq!(ts.len(), 19, "{ts}");
    assert!(chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S").is_ok(), "{ts}");
    let users = std::fs::read_to_string(&files_of(dir.path(), "users")[0]).expect("read");
    let row: Vec<&str> = users.lines().nth(1).expect("a row").split(',').collect();
    assert!(chrono::NaiveDate::parse_from_str(row[3], "%Y-%m-%d").is_ok(), "{}", row[3]);
    assert!(row[13] == "true" || row[13] == "false");
}

#[test]
fn zero_users_gives_empty_but_valid_tables() {
    for format in [GenFormat::Parquet, GenFormat::Csv] {
        let dir = tempfile::tempdir().expect("tempdir");
        let summary = generate(&options(dir.path(), 0, 1, format), &no_progress).expect("gen");
        assert_eq!(summary.files, 7);
        let rows: Vec<u64> = summary.rows.iter().map(|r| r.1).collect();
        assert_eq!(rows, vec![0, PRODUCT_COUNT as u64, CHANNELS.len() as u64, 0, 0, 0, 0]);
        if format == GenFormat::Parquet {
            let users = files_of(dir.path(), "users");
            let file = File::open(&users[0]).expect("open");
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("valid parquet");
            assert_eq!(builder.schema().as_ref(), schema(Table::Users).as_ref());
        } else {
            let text = std::fs::read_to_string(&files_of(dir.path(), "events")[0]).expect("read");
            assert_eq!(text, "user_id,channel_id,event_type,ts\n");
        }
    }
}

#[test]
fn refuses_an_output_directory_with_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("README.md"), "keep me").expect("write");
    std::fs::create_dir(dir.path().join("users")).expect("mkdir");
    let opts = options(dir.path(), 10, 1, GenFormat::Parquet);
    generate(&opts, &no_progress).expect("an empty table folder and other files are fine");
    let err = generate(&opts, &no_progress).expect_err("second run must refuse");
    assert!(matches!(err, Error::Usage(_)), "{err}");
    assert!(err.to_string().contains("remove it or choose another --out"), "{err}");
    let file = dir.path().join("README.md");
    let err = generate(&options(&file, 10, 1, GenFormat::Parquet), &no_progress).expect_err("a file");
    assert!(matches!(err, Error::Usage(_)), "{err}");
}

#[test]
fn progress_is_reported_up_to_the_user_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let last = std::sync::atomic::AtomicU64::new(u64::MAX);
    let calls = std::sync::atomic::AtomicU64::new(0);
    let small = Layout { chunk_users: 100, users_per_file: USERS_PER_FILE, fact_rows_per_file: FACT_ROWS_PER_FILE };
    let progress = |done: u64| {
        last.store(done, std::sync::atomic::Ordering::Relaxed);
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    generate_with(&options(dir.path(), 250, 3, GenFormat::Parquet), &progress, small).expect("gen");
    assert_eq!(last.into_inner(), 250);
    assert_eq!(calls.into_inner(), 4);
}
