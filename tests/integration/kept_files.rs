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
