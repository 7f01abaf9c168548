//! Fact files that already are the contract's table (Parquet, same columns and types) are kept as
//! loaded, byte for byte, with their row ids in a companion file; CSV facts are converted.

use std::sync::Arc;

use arrow::array::AsArray;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use persona::r#gen::{GenFormat, GenOptions, generate};
use persona::{ImportOptions, Store, Table};

#[test]
fn conforming_parquet_facts_are_kept_byte_for_byte_with_their_row_ids_beside_them() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    generate(&GenOptions { users: 3000, seed: 5, out: source.clone(), format: GenFormat::Parquet }, &|_| {}).unwrap();
    let store = Store::open_or_create(dir.path().join("store")).unwrap();
    store.import(std::slice::from_ref(&source), &ImportOptions::default()).unwrap();
    let snapshot = store.snapshot().unwrap();
    let manifest = snapshot.manifest();

    // The users row ids, to check the companions against.
    let session = store.session().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let purchases_sql = rt.block_on(session.query("SELECT count(*) FROM purchases")).unwrap();
    let sql_count = purchases_sql[0].column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0) as u64;
    assert_eq!(sql_count, manifest.rows(Table::Purchases));

    for table in [Table::Purchases, Table::Events, Table::UserTags] {
        let files = manifest.files(table);
        assert!(!files.is_empty(), "{table}");
        for file in files {
            let companion =
                file.row_ids.as_ref().unwrap_or_else(|| panic!("{table} file {} was re-encoded", file.path));
            let stored = std::fs::read(store.root().join(&file.path)).unwrap();
            let original = std::fs::read_dir(source.join(table.name()))
                .unwrap()
                .map(|e| std::fs::read(e.unwrap().path()).unwrap())
                .find(|bytes| bytes == &stored);
            assert!(original.is_some(), "{table} file {} is not a byte-for-byte copy of an input", file.path);
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(store.root().join(companion)).unwrap())
                    .unwrap()
                    .build()
                    .unwrap();
            let ids: Vec<u32> = reader
                .flat_map(|b| b.unwrap().column(0).as_primitive::<arrow::datatypes::UInt32Type>().values().to_vec())
                .collect();
            assert_eq!(ids.len() as u64, file.rows, "{table}: one row id per row");
            // Users were generated and loaded in order: user `u{n}` has row id n.
            let data =
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(store.root().join(&file.path)).unwrap())
                    .unwrap()
                    .build()
                    .unwrap();
            let users: Vec<String> = data
                .flat_map(|b| {
                    let b = b.unwrap();
                    let col = Arc::clone(b.column_by_name("user_id").unwrap());
                    col.as_string::<i32>().iter().map(|u| u.unwrap().to_string()).collect::<Vec<_>>()
                })
                .collect();
            for (user, id) in users.iter().zip(&ids) {
                assert_eq!(user, &format!("u{id}"), "{table}: row id of {user}");
            }
        }
    }

    // The kept events are indexed by type and channel: the bitmaps agree with the rows.
    let sql = "SELECT count(*) FROM users u WHERE EXISTS (SELECT 1 FROM events e WHERE e.user_id = u.user_id \
               AND e.event_type = 'cart' AND e.channel_id = 'app' AND e.ts >= TIMESTAMP '2026-10-01 00:00:00')";
    let count = |use_indexes: bool| {
        rt.block_on(async {
            session.query(&format!("SET persona.use_indexes = {use_indexes}")).await.unwrap();
            session.query(sql).await.unwrap()[0].column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0)
        })
    };
    let indexed = count(true);
    assert!(indexed > 0);
    assert_eq!(indexed, count(false));
}

#[test]
fn csv_facts_are_converted_with_the_row_id_inside() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.csv"), "user_id\nu1\nu2\n").unwrap();
    std::fs::write(dir.path().join("user_tags.csv"), "user_id,tag\nu2,A\nu1,B\n").unwrap();
    let store = Store::open_or_create(dir.path().join("store")).unwrap();
    store.import(&[dir.path().join("users.csv"), dir.path().join("user_tags.csv")], &ImportOptions::default()).unwrap();
    let snapshot = store.snapshot().unwrap();
    let file = &snapshot.manifest().files(Table::UserTags)[0];
    assert!(file.row_ids.is_none());
    let batch = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(store.root().join(&file.path)).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let ids = batch.column_by_name("__row_id").unwrap().as_primitive::<arrow::datatypes::UInt32Type>();
    assert_eq!(ids.values().to_vec(), vec![1, 0]);
}

/// Each fact file records, per row group, the range of user row ids in it; a lookup of one user
/// reads only the row groups that can hold it, and still finds every row.
#[tokio::test]
async fn row_group_ranges_of_row_ids_are_recorded_and_used_by_lookups() {
    use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
    let dir = tempfile::tempdir().unwrap();
    let users: String =
        std::iter::once("user_id".to_string()).chain((0..300).map(|i| format!("u{i}"))).collect::<Vec<_>>().join("\n");
    std::fs::write(dir.path().join("users.csv"), users).unwrap();
    // Tags grouped by user, ten rows (users) per row group: 30 row groups, kept as loaded.
    let ids: Vec<String> = (0..300).map(|i| format!("u{i}")).collect();
    let tags: Vec<String> = (0..300).map(|i| format!("T{}", i % 3)).collect();
    let tags_file = crate::util::write_parquet(
        dir.path(),
        "user_tags.parquet",
        vec![
            ("user_id", Arc::new(StringArray::from(ids)) as ArrayRef),
            ("tag", Arc::new(StringArray::from(tags)) as ArrayRef),
            ("assigned_at", Arc::new(TimestampMicrosecondArray::from(vec![1_700_000_000_000_000i64; 300])) as ArrayRef),
        ],
        10,
    );
    std::fs::write(dir.path().join("purchases.csv"), "order_id,user_id,product_id,channel_id,ts,quantity,amount\no1,u7,p1,app,2026-01-01 00:00:00,1,1\no2,u3,p1,app,2026-01-02 00:00:00,1,1\n").unwrap();
    let store = Store::open_or_create(dir.path().join("store")).unwrap();
    store
        .import(&[dir.path().join("users.csv"), tags_file, dir.path().join("purchases.csv")], &ImportOptions::default())
        .unwrap();
    let snapshot = store.snapshot().unwrap();
    let kept = &snapshot.manifest().files(Table::UserTags)[0];
    assert!(kept.row_ids.is_some(), "the tags file was kept as loaded");
    let expected: Vec<(u32, u32)> = (0..30).map(|g| (g * 10, g * 10 + 9)).collect();
    assert_eq!(kept.row_id_ranges, expected);
    assert_eq!(snapshot.manifest().files(Table::Purchases)[0].row_id_ranges, vec![(3, 7)], "a converted file");

    let indexed = crate::util::session(&store);
    let general =
        store.session_with(&persona::SessionOptions { use_indexes: Some(false), ..Default::default() }).unwrap();
    for sql in [
        "SELECT user_id, tag FROM user_tags WHERE user_id = 'u155'",
        "SELECT user_id, tag FROM user_tags WHERE user_id IN ('u0', 'u299', 'u150', 'nobody') ORDER BY user_id",
        "SELECT order_id FROM purchases WHERE user_id = 'u7'",
        "SELECT count(*) FROM user_tags WHERE user_id = 'nobody'",
    ] {
        let on = crate::util::rows(&indexed, sql).await;
        assert_eq!(on, crate::util::rows(&general, sql).await, "{sql}");
        assert!(!on.is_empty(), "{sql}");
    }
    assert_eq!(crate::util::rows(&indexed, "SELECT tag FROM user_tags WHERE user_id = 'u155'").await, vec!["T2"]);
}

/// A kept file decodes only the columns the import needs, but a required value that is missing is
/// still refused with its row: its footer statistics do not prove the column complete.
#[test]
fn a_kept_file_with_a_missing_required_value_is_still_refused() {
    use arrow::array::{ArrayRef, Float64Array, Int32Array, StringArray, TimestampMicrosecondArray};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.csv"), "user_id\nu1\nu2\n").unwrap();
    let purchases = |name: &str, order: Vec<Option<&str>>| {
        let n = order.len();
        crate::util::write_parquet(
            dir.path(),
            name,
            vec![
                ("order_id", Arc::new(StringArray::from(order)) as ArrayRef),
                ("user_id", Arc::new(StringArray::from(vec!["u1"; n])) as ArrayRef),
                ("product_id", Arc::new(StringArray::from(vec!["p1"; n])) as ArrayRef),
                ("channel_id", Arc::new(StringArray::from(vec!["app"; n])) as ArrayRef),
                ("ts", Arc::new(TimestampMicrosecondArray::from(vec![1_700_000_000_000_000i64; n])) as ArrayRef),
                ("quantity", Arc::new(Int32Array::from(vec![1; n])) as ArrayRef),
                ("amount", Arc::new(Float64Array::from(vec![1.0; n])) as ArrayRef),
            ],
            4,
        )
    };
    let store = Store::open_or_create(dir.path().join("store")).unwrap();
    store.import(&[dir.path().join("users.csv")], &ImportOptions::default()).unwrap();
    for (name, order, row) in [
        ("purchases-null.parquet", vec![Some("o1"), Some("o2"), Some("o3"), Some("o4"), Some("o5"), None], 5),
        ("purchases-empty.parquet", vec![Some("o1"), Some("o2"), Some("o3"), Some("o4"), Some(""), Some("o6")], 4),
    ] {
        let file = purchases(name, order);
        assert!(
            persona::ingest::reader::matches_contract(&source_file(&file), Table::Purchases).unwrap(),
            "{name} is kept"
        );
        let err = store.import(std::slice::from_ref(&file), &ImportOptions::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("order_id") && text.contains("missing"), "{name}: {text}");
        // Row groups of 4 rows: the bad row is in the second row group.
        assert!(text.contains(&format!("row group 1, row {}", row % 4)), "{name}: {text}");
    }
    let good = purchases("purchases-good.parquet", vec![Some("o1"), Some("o2"), Some("o3")]);
    store.import(&[good], &ImportOptions::default()).unwrap();
}

fn source_file(path: &std::path::Path) -> persona::ingest::reader::SourceFile {
    persona::ingest::reader::SourceFile {
        path: path.to_path_buf(),
        table: Table::Purchases,
        format: persona::ingest::reader::InputFormat::Parquet,
        size: std::fs::metadata(path).unwrap().len(),
    }
}

/// The partial days of a time window are read from the facts: for a kept file, only the row groups
/// whose `ts` statistics overlap, with the row ids of exactly those rows from the companion file.
#[tokio::test]
async fn partial_days_of_a_window_read_the_right_rows_of_a_kept_file() {
    use arrow::array::{ArrayRef, Float64Array, Int32Array, StringArray, TimestampMicrosecondArray};
    let dir = tempfile::tempdir().unwrap();
    let users: String =
        std::iter::once("user_id".to_string()).chain((0..40).map(|i| format!("u{i}"))).collect::<Vec<_>>().join("\n");
    std::fs::write(dir.path().join("users.csv"), users).unwrap();
    // 40 purchases, one per user, an hour apart from 2026-10-01 00:30 (time-ordered), 5 per row
    // group; users in reverse order so that row ids and row positions differ.
    let hour = 3_600_000_000i64;
    let start = 1_790_812_800_000_000i64 + hour / 2; // 2026-10-01 00:30:00 UTC
    let n = 40;
    let file = crate::util::write_parquet(
        dir.path(),
        "purchases.parquet",
        vec![
            ("order_id", Arc::new(StringArray::from((0..n).map(|i| format!("o{i}")).collect::<Vec<_>>())) as ArrayRef),
            (
                "user_id",
                Arc::new(StringArray::from((0..n).map(|i| format!("u{}", n - 1 - i)).collect::<Vec<_>>())) as ArrayRef,
            ),
            ("product_id", Arc::new(StringArray::from(vec!["p1"; n])) as ArrayRef),
            ("channel_id", Arc::new(StringArray::from(vec!["app"; n])) as ArrayRef),
            (
                "ts",
                Arc::new(TimestampMicrosecondArray::from((0..n as i64).map(|i| start + i * hour).collect::<Vec<_>>()))
                    as ArrayRef,
            ),
            ("quantity", Arc::new(Int32Array::from(vec![1; n])) as ArrayRef),
            ("amount", Arc::new(Float64Array::from(vec![1.0; n])) as ArrayRef),
        ],
        5,
    );
    let store = Store::open_or_create(dir.path().join("store")).unwrap();
    store.import(&[dir.path().join("users.csv"), file], &ImportOptions::default()).unwrap();
    assert!(store.snapshot().unwrap().manifest().files(Table::Purchases)[0].row_ids.is_some(), "kept as loaded");
    let indexed = crate::util::session(&store);
    let general =
        store.session_with(&persona::SessionOptions { use_indexes: Some(false), ..Default::default() }).unwrap();
    // 10:00 on Oct 1 to 03:00 on Oct 2: purchases 10..=26 (at hh:30), i.e. users u29 down to u13.
    let sql = "SELECT user_id FROM users u WHERE EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = u.user_id \
               AND p.ts >= TIMESTAMP '2026-10-01 10:00:00' AND p.ts < TIMESTAMP '2026-10-02 03:00:00') ORDER BY user_id";
    let on = crate::util::rows(&indexed, sql).await;
    assert_eq!(on, crate::util::rows(&general, sql).await);
    let mut expected: Vec<String> = (13..=29).map(|i| format!("u{i}")).collect();
    expected.sort();
    assert_eq!(on, expected);
    let plan = crate::util::rows(&indexed, &format!("EXPLAIN {sql}")).await.join("\n");
    assert!(plan.contains("\"edges\""), "the window's partial days are edge scans: {plan}");
}

/// Purchases files, kept (Parquet that already is the contract's table) or converted (CSV), get a
/// plain copy row for row; per-user aggregates read it and give what the Parquet files give
/// (indexes off); a damaged copy is reported with its path; a store without copies reads Parquet.
#[tokio::test]
async fn plain_copies_of_purchases_answer_per_user_aggregates_like_the_parquet_files() {
    use crate::util::{batches_to_rows, write};
    use persona::SessionOptions;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    generate(&GenOptions { users: 3000, seed: 9, out: source.clone(), format: GenFormat::Parquet }, &|_| {}).unwrap();
    let store = Store::open_or_create(dir.path().join("store")).unwrap();
    store.import(std::slice::from_ref(&source), &ImportOptions::default()).unwrap();
    let mut csv = String::from("order_id,user_id,product_id,channel_id,ts,quantity,amount\n");
    for i in 0..400 {
        csv.push_str(&format!(
            "x{i},u{},p{},wechat,2026-10-{:02} 10:00:00,{},{}.5\n",
            i % 50,
            i % 9,
            1 + i % 28,
            i % 4,
            i
        ));
    }
    let extra = write(&dir.path().join("extra"), "purchases.csv", &csv);
    store.import(&[extra], &ImportOptions::default()).unwrap();
    let snapshot = store.snapshot().unwrap();
    let purchases = snapshot.manifest().files(Table::Purchases);
    assert!(purchases.iter().any(|f| f.row_ids.is_some()) && purchases.iter().any(|f| f.row_ids.is_none()));
    for file in purchases {
        let copy = file.plain_columns.as_ref().unwrap_or_else(|| panic!("{} has no plain copy", file.path));
        assert!(store.root().join(copy).is_file(), "{copy}");
    }
    for table in [Table::Events, Table::UserTags] {
        assert!(snapshot.manifest().files(table).iter().all(|f| f.plain_columns.is_none()), "{table}");
    }
    let queries = [
        "SELECT user_id, count(*), round(sum(amount), 2), sum(quantity), min(ts), max(ts) FROM purchases \
         WHERE channel_id = 'wechat' AND ts >= TIMESTAMP '2026-05-05 00:00:00' GROUP BY user_id ORDER BY user_id",
        "SELECT count(*) FROM (SELECT user_id FROM purchases WHERE product_id IN ('p1', 'p2') AND quantity > 1 \
         GROUP BY user_id HAVING count(*) >= 2) t",
        "SELECT user_id, count(*) FROM purchases GROUP BY user_id ORDER BY 2 DESC, user_id LIMIT 20",
    ];
    let answers = |use_indexes: bool| {
        let store = &store;
        async move {
            let options =
                SessionOptions { use_indexes: Some(use_indexes), target_partitions: Some(2), ..Default::default() };
            let session = store.session_with(&options).unwrap();
            let mut out = Vec::new();
            for q in queries {
                out.push(session.query(q).await.map(|b| batches_to_rows(&b)).map_err(|e| e.to_string()));
            }
            out
        }
    };
    let general = answers(false).await;
    assert!(general.iter().all(|a| a.as_ref().is_ok_and(|rows| !rows.is_empty())), "{general:?}");
    assert_eq!(answers(true).await, general);

    // A damaged copy is an error that names it.
    let copy = store.root().join(purchases[0].plain_columns.as_ref().unwrap());
    let intact = std::fs::read(&copy).unwrap();
    std::fs::write(&copy, &intact[..intact.len() / 2]).unwrap();
    let damaged = answers(true).await;
    let message = damaged[0].as_ref().unwrap_err();
    assert!(message.contains(copy.file_name().unwrap().to_str().unwrap()), "{message}");
    std::fs::write(&copy, &intact).unwrap();

    // A store written before the copies existed reads the Parquet files.
    let root = store.root().to_path_buf();
    let current = std::fs::read_to_string(persona::store::layout::current_file(&root)).unwrap();
    let manifest_path = persona::store::layout::manifests_dir(&root).join(current.trim());
    let mut manifest =
        persona::store::manifest::Manifest::from_bytes(&std::fs::read(&manifest_path).unwrap(), &manifest_path)
            .unwrap();
    for file in manifest.tables.get_mut(&Table::Purchases).unwrap() {
        file.plain_columns = None;
    }
    std::fs::write(&manifest_path, manifest.to_bytes().unwrap()).unwrap();
    let reopened = Store::open(&root).unwrap();
    let options = SessionOptions { use_indexes: Some(true), target_partitions: Some(2), ..Default::default() };
    let session = reopened.session_with(&options).unwrap();
    for (q, want) in queries.iter().zip(&general) {
        let got = session.query(q).await.map(|b| batches_to_rows(&b)).map_err(|e| e.to_string());
        assert_eq!(&got, want, "{q}");
    }
}
