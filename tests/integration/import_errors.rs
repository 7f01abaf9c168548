//! Every class of import error: unknown user_id in a fact, duplicate user_id, a value that does not
//! parse, a missing required column or value, an unknown column, invalid UTF-8, an empty file, a
//! truncated line, corrupt or truncated Parquet. Each must be an `Error::Input` naming the file,
//! the line (or row group and row) and the column, and must leave the store exactly as it was
//! (same version, same rows, no new files). A header-only file is a valid load of 0 rows.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use persona::error::InputLocation;
use persona::{Error, Table};

use crate::util::*;

#[test]
fn unknown_user_id_in_purchases_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let file = write(
        dir.path(),
        "purchases-2.csv",
        "order_id,user_id,product_id,channel_id,ts,quantity,amount\n\
         o10,u1,p1,app,2026-10-05 10:00:00,1,1\n\
         o11,nobody,p1,app,2026-10-05 10:00:00,1,1\n",
    );
    let err = refused(&store, &[&file]);
    let message = assert_input_error(&err, &file, InputLocation::Line(3), Some("user_id"));
    assert!(message.contains("nobody"), "the message names the user_id: {message}");
}

#[test]
fn unknown_user_id_in_events_and_user_tags_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let events = write(
        dir.path(),
        "events.csv",
        "user_id,channel_id,event_type,ts\nu1,app,view,2026-10-05 10:00:00\nu1,app,click,2026-10-05 10:00:01\nghost,app,view,2026-10-05 10:00:02\n",
    );
    let err = refused(&store, &[&events]);
    assert_input_error(&err, &events, InputLocation::Line(4), Some("user_id"));

    let tags = write(dir.path(), "user_tags.csv", "user_id,tag,assigned_at\nghost,vip,\n");
    let err = refused(&store, &[&tags]);
    assert_input_error(&err, &tags, InputLocation::Line(2), Some("user_id"));
}

#[test]
fn unknown_user_id_in_a_parquet_fact_names_row_group_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let s = |v: &[&str]| -> ArrayRef { Arc::new(StringArray::from(v.to_vec())) };
    let file = write_parquet(
        dir.path(),
        "purchases-0001.parquet",
        vec![
            ("order_id", s(&["a", "b", "c", "d", "e"])),
            ("user_id", s(&["u1", "u2", "u3", "u4", "stranger"])),
            ("product_id", s(&["p"; 5])),
            ("channel_id", s(&["app"; 5])),
            ("ts", s(&["2026-10-01 00:00:00"; 5])),
            ("quantity", Arc::new(Int64Array::from(vec![1; 5]))),
            ("amount", s(&["1.5"; 5])),
        ],
        2,
    );
    let err = refused(&store, &[&file]);
    let message = assert_input_error(&err, &file, InputLocation::RowGroup { row_group: 2, row: 0 }, Some("user_id"));
    assert!(message.contains("stranger"), "{message}");
}

#[test]
fn duplicate_user_id_in_one_users_load_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let file = write(dir.path(), "users-new.csv", "user_id,name\nu9,Ivy\nu10,Jo\nu9,Ivy again\n");
    let err = refused(&store, &[&file]);
    let message = assert_input_error(&err, &file, InputLocation::Line(4), Some("user_id"));
    assert!(message.contains("u9") && message.contains("more than once"), "{message}");
}

#[test]
fn duplicate_user_id_across_two_files_of_one_load_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let a = write(dir.path(), "users-a.csv", "user_id,name\nu1,Ann B\nu7,Gus\n");
    let b = write(dir.path(), "users-b.csv", "user_id,name\nu8,Hal\nu7,Gus again\n");
    let err = refused(&store, &[&a, &b]);
    assert_input_error(&err, &b, InputLocation::Line(3), Some("user_id"));
}

#[test]
fn value_that_does_not_parse_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());

    let users = write(dir.path(), "users.csv", "user_id,points,birth_date\nu1,10,1990-01-01\nu6,abc,1990-01-02\n");
    let message = assert_input_error(&refused(&store, &[&users]), &users, InputLocation::Line(3), Some("points"));
    assert!(message.contains("'abc'"), "the message quotes the value: {message}");

    let users = write(dir.path(), "users.csv", "user_id,points,birth_date\nu6,1,1990-02-30\n");
    assert_input_error(&refused(&store, &[&users]), &users, InputLocation::Line(2), Some("birth_date"));

    let purchases = write(
        dir.path(),
        "purchases-q.csv",
        "order_id,user_id,product_id,channel_id,ts,quantity,amount\no9,u1,p1,app,2026-10-01 00:00:00,two,1\n",
    );
    assert_input_error(&refused(&store, &[&purchases]), &purchases, InputLocation::Line(2), Some("quantity"));

    let purchases = write(
        dir.path(),
        "purchases-ts.csv",
        "order_id,user_id,product_id,channel_id,ts,quantity,amount\n\
         o9,u1,p1,app,2026-10-01 00:00:00,1,1\n\
         o10,u1,p1,app,yesterday,1,1\n",
    );
    let message = assert_input_error(&refused(&store, &[&purchases]), &purchases, InputLocation::Line(3), Some("ts"));
    assert!(message.contains("yesterday"), "{message}");
}

/// Before the fix, a date followed by multi-byte text ended the process with "byte index 11 is
/// not a char boundary" (in the timestamp parser) instead of an error naming the value.
#[test]
fn a_date_followed_by_chinese_text_is_an_input_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let users = write(dir.path(), "users.csv", "user_id,signup_date\nu6,2022-03-04\nu7,2022-03-04星期五\n");
    let message = assert_input_error(&refused(&store, &[&users]), &users, InputLocation::Line(3), Some("signup_date"));
    assert!(message.contains("2022-03-04星期五"), "the message quotes the value: {message}");
    // In a new custom column the same text makes the column text, and it loads.
    let users = write(dir.path(), "users-visits.csv", "user_id,visit_day\nu1,2022-03-04星期五\nu2,2022-03-05\n");
    import(&store, &[&users]).expect("a text custom column loads");
    let columns = state(&store).users_columns;
    assert!(columns.contains(&"visit_day Utf8".to_string()), "{columns:?}");
}

#[test]
fn value_that_does_not_parse_in_parquet_names_row_group_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let file = write_parquet(
        dir.path(),
        "users-00001.parquet",
        vec![
            ("user_id", Arc::new(StringArray::from(vec!["u6", "u7", "u8", "u9"])) as ArrayRef),
            ("points", Arc::new(StringArray::from(vec!["1", "2", "3", "lots"])) as ArrayRef),
        ],
        2,
    );
    let err = refused(&store, &[&file]);
    let message = assert_input_error(&err, &file, InputLocation::RowGroup { row_group: 1, row: 1 }, Some("points"));
    assert!(message.contains("lots"), "{message}");
}

#[test]
fn missing_required_column_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let purchases = write(
        dir.path(),
        "purchases-short.csv",
        "order_id,user_id,product_id,channel_id,ts,quantity\no9,u1,p1,app,2026-10-01 00:00:00,1\n",
    );
    let message = assert_input_error(&refused(&store, &[&purchases]), &purchases, InputLocation::File, Some("amount"));
    assert!(message.contains("missing"), "{message}");

    let users = write(dir.path(), "users.csv", "name,tier\nAnn,gold\n");
    assert_input_error(&refused(&store, &[&users]), &users, InputLocation::File, Some("user_id"));
}

#[test]
fn missing_required_value_is_refused_naming_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let users = write(dir.path(), "users.csv", "user_id,name\nu6,Fay\n,Nobody\n");
    assert_input_error(&refused(&store, &[&users]), &users, InputLocation::Line(3), Some("user_id"));

    let purchases = write(
        dir.path(),
        "purchases-nots.csv",
        "order_id,user_id,product_id,channel_id,ts,quantity,amount\no9,u1,p1,app,,1,1\n",
    );
    assert_input_error(&refused(&store, &[&purchases]), &purchases, InputLocation::Line(2), Some("ts"));
}

#[test]
fn unknown_column_in_a_fact_table_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let tags = write(dir.path(), "user_tags.csv", "user_id,tag,colour\nu1,vip,red\n");
    let message = assert_input_error(&refused(&store, &[&tags]), &tags, InputLocation::File, Some("colour"));
    assert!(message.contains("no such column"), "{message}");
}

#[test]
fn invalid_utf8_value_is_refused_naming_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    // "张三" in GBK.
    let mut bytes = b"user_id,name,city\nu6,Fay,Beijing\nu7,".to_vec();
    bytes.extend_from_slice(&[0xD5, 0xC5, 0xC8, 0xFD]);
    bytes.extend_from_slice(b",Shanghai\n");
    let users = write(dir.path(), "users.csv", bytes);
    let message = assert_input_error(&refused(&store, &[&users]), &users, InputLocation::Line(3), Some("name"));
    assert!(message.contains("UTF-8"), "{message}");
}

#[test]
fn invalid_utf8_header_is_refused_at_line_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let mut bytes = b"user_id,".to_vec();
    bytes.extend_from_slice(&[0xD0, 0xD5, 0xC3, 0xFB]); // "姓名" in GBK
    bytes.extend_from_slice(b"\nu6,x\n");
    let users = write(dir.path(), "users.csv", bytes);
    let message = assert_input_error(&refused(&store, &[&users]), &users, InputLocation::Line(1), None);
    assert!(message.contains("UTF-8"), "{message}");
}

#[test]
fn utf16_file_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let mut bytes = vec![0xFF, 0xFE];
    for unit in "user_id\nu6\n".encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    let users = write(dir.path(), "users.csv", bytes);
    let message = assert_input_error(&refused(&store, &[&users]), &users, InputLocation::File, None);
    assert!(message.contains("UTF-16"), "{message}");
}

#[test]
fn empty_csv_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let users = write(dir.path(), "users.csv", "");
    let message = assert_input_error(&refused(&store, &[&users]), &users, InputLocation::File, None);
    assert!(message.contains("empty"), "{message}");
    let purchases = write(dir.path(), "purchases-empty.csv", "");
    assert_input_error(&refused(&store, &[&purchases]), &purchases, InputLocation::File, None);
}

#[test]
fn empty_parquet_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let users = write(dir.path(), "users.parquet", "");
    let message = assert_input_error(&refused(&store, &[&users]), &users, InputLocation::File, None);
    assert!(message.contains("empty"), "{message}");
}

#[test]
fn header_only_file_loads_zero_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let before = state(&store);
    let purchases =
        write(dir.path(), "purchases-none.csv", "order_id,user_id,product_id,channel_id,ts,quantity,amount\n");
    let summary = import(&store, &[&purchases]).expect("a header-only file is a valid empty load");
    assert_eq!(summary.rows, vec![(Table::Purchases, 0)]);
    let users = write(dir.path(), "users.csv", "user_id,name\r\n");
    let summary = import(&store, &[&users]).expect("a header-only users file is a valid empty load");
    assert_eq!((summary.new_users, summary.updated_users), (0, 0));
    let after = state(&store);
    assert_eq!(after.rows, before.rows);
    assert_eq!(after.user_count, 5);
}

#[test]
fn truncated_line_with_fewer_fields_is_refused_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let purchases = write(
        dir.path(),
        "purchases-cut.csv",
        "order_id,user_id,product_id,channel_id,ts,quantity,amount\n\
         o9,u1,p1,app,2026-10-01 00:00:00,1,1\n\
         o10,u1,p1,app,2026-10-0",
    );
    let message = assert_input_error(&refused(&store, &[&purchases]), &purchases, InputLocation::Line(3), None);
    assert!(message.contains("fields"), "{message}");

    // One field too many (an unquoted comma) is refused the same way.
    let purchases = write(
        dir.path(),
        "purchases-comma.csv",
        "order_id,user_id,product_id,channel_id,ts,quantity,amount\no9,u1,p1,app,2026-10-01 00:00:00,1,12,5\n",
    );
    let message = assert_input_error(&refused(&store, &[&purchases]), &purchases, InputLocation::Line(2), None);
    assert!(message.contains("fields"), "{message}");
}

#[test]
fn random_bytes_named_parquet_are_refused_as_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    // Deterministic noise.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let users = write(dir.path(), "users.parquet", &noise);
    let message = assert_input_error(&refused(&store, &[&users]), &users, InputLocation::File, None);
    assert!(message.contains("Parquet"), "{message}");
    let purchases = write(dir.path(), "purchases.parquet", &noise[1..]);
    assert_input_error(&refused(&store, &[&purchases]), &purchases, InputLocation::File, None);
}

fn valid_users_parquet(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let ids: Vec<String> = (100..1100).map(|i| format!("u{i}")).collect();
    let names: Vec<String> = (100..1100).map(|i| format!("name number {i}")).collect();
    write_parquet(
        dir,
        name,
        vec![
            ("user_id", Arc::new(StringArray::from(ids)) as ArrayRef),
            ("name", Arc::new(StringArray::from(names)) as ArrayRef),
            ("points", Arc::new(Int64Array::from_iter_values(0..1000)) as ArrayRef),
        ],
        250,
    )
}

/// A purchases file with the contract's exact types (kept as it is by the import), with or
/// without a page index.
fn kept_purchases_parquet(dir: &std::path::Path, name: &str, page_index: bool) -> std::path::PathBuf {
    use arrow::array::{Float64Array, Int32Array, TimestampMicrosecondArray};
    let n = 600;
    let text = |f: &dyn Fn(usize) -> String| Arc::new(StringArray::from((0..n).map(f).collect::<Vec<_>>())) as ArrayRef;
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("order_id", text(&|i| format!("k{i}"))),
        ("user_id", text(&|i| format!("u{}", i % 5 + 1))),
        ("product_id", text(&|i| format!("p{}", i % 7))),
        ("channel_id", text(&|i| ["app", "web"][i % 2].to_string())),
        ("ts", Arc::new(TimestampMicrosecondArray::from_iter_values((0..n as i64).map(|i| 1_790_000_000_000_000 + i)))),
        ("quantity", Arc::new(Int32Array::from_iter_values((0..n as i32).map(|i| i % 3 + 1)))),
        ("amount", Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64 / 4.0)))),
    ];
    let fields: Vec<arrow::datatypes::Field> =
        columns.iter().map(|(c, a)| arrow::datatypes::Field::new(*c, a.data_type().clone(), true)).collect();
    let schema = Arc::new(arrow::datatypes::Schema::new(fields));
    let batch =
        arrow::array::RecordBatch::try_new(Arc::clone(&schema), columns.into_iter().map(|(_, a)| a).collect()).unwrap();
    let mut props = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(200));
    if !page_index {
        props = props
            .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk)
            .set_offset_index_disabled(true);
    }
    let path = dir.join(name);
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, Some(props.build()))
            .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    path
}

/// Found by the import fuzz test: 24 bytes missing from the page index of a file the import keeps
/// as it is. The import did not read the page index, so it stored the file, and every later query
/// of the table failed with "Parquet error: EOF: Unexpected EOF".
#[test]
fn a_kept_parquet_file_with_a_damaged_page_index_is_refused_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let good_path = kept_purchases_parquet(dir.path(), "good.parquet", true);
    let good = std::fs::read(&good_path).unwrap();
    let metadata = parquet::file::reader::FileReader::metadata(
        &parquet::file::serialized_reader::SerializedFileReader::new(std::fs::File::open(&good_path).unwrap()).unwrap(),
    )
    .clone();
    let index_at = metadata.row_groups()[0].columns()[0].column_index_offset().expect("a page index") as usize;
    let mut damaged = good.clone();
    damaged.drain(index_at + 4..index_at + 28);
    let purchases = write(dir.path(), "purchases-damaged.parquet", &damaged);
    let message = assert_input_error(&refused(&store, &[&purchases]), &purchases, InputLocation::File, None);
    assert!(message.contains("not a readable Parquet file"), "{message}");
    // The same file undamaged is kept and answers; so does one written without a page index.
    let purchases = write(dir.path(), "purchases-good.parquet", &good);
    import(&store, &[&purchases]).expect("the undamaged file loads");
    let plain = kept_purchases_parquet(dir.path(), "purchases-no-page-index.parquet", false);
    import(&store, &[&plain]).expect("a file without a page index loads");
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(count(&session(&store), "SELECT count(*) FROM purchases WHERE quantity > 0")), 1203);
}

#[test]
fn truncated_parquet_file_is_refused_at_every_cut() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let good = std::fs::read(valid_users_parquet(dir.path(), "good.parquet")).unwrap();
    for cut in [1, 4, 8, good.len() / 3, good.len() / 2, good.len() - 9, good.len() - 1] {
        let users = write(dir.path(), "users.parquet", &good[..cut]);
        let err = refused(&store, &[&users]);
        let (file, location, _, _) = input_error(&err);
        assert_eq!(file, users.as_path(), "cut at {cut}: {err}");
        assert_eq!(location, &InputLocation::File, "cut at {cut}: {err}");
    }
}

#[test]
fn parquet_with_damaged_data_pages_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let good = std::fs::read(valid_users_parquet(dir.path(), "good.parquet")).unwrap();
    // Keep the magic and the footer, damage the pages in between.
    let footer_len = u32::from_le_bytes(good[good.len() - 8..good.len() - 4].try_into().unwrap()) as usize;
    let data_end = good.len() - 8 - footer_len;
    for (start, fill) in [(4, 0x00u8), (data_end / 3, 0xFF), (data_end / 2, 0x5A)] {
        let mut damaged = good.clone();
        let end = (start + 64).min(data_end);
        damaged[start..end].fill(fill);
        let users = write(dir.path(), "users.parquet", &damaged);
        let before = state(&store);
        match import(&store, &[&users]) {
            // Damage inside a value may leave a readable file; then it loads like any other.
            Ok(_) => {}
            Err(err) => {
                assert_eq!(state(&store), before, "a failed load changed the store: {err}");
                assert!(matches!(err, Error::Input { .. }), "damage at {start}: expected an input error, got {err:?}");
                assert!(err.to_string().contains("users.parquet"), "{err}");
            }
        }
    }
}

#[test]
fn a_failing_fact_file_discards_the_users_loaded_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let users = write(dir.path(), "users.csv", "user_id,name\nu6,Fay\nu1,Ann Updated\n");
    let purchases = write(
        dir.path(),
        "purchases-mixed.csv",
        "order_id,user_id,product_id,channel_id,ts,quantity,amount\n\
         o9,u6,p1,app,2026-10-01 00:00:00,1,1\n\
         o10,u77,p1,app,2026-10-01 00:00:00,1,1\n",
    );
    let err = refused(&store, &[&users, &purchases]);
    assert_input_error(&err, &purchases, InputLocation::Line(3), Some("user_id"));
    // u6 was not added, u1 kept its name: and a later load may still use the same user_id.
    let summary = import(&store, &[&users]).expect("the users file alone loads");
    assert_eq!((summary.new_users, summary.updated_users), (1, 1));
}

#[test]
fn a_failing_load_leaves_no_files_behind_even_after_writing_some() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    // Many valid rows (written into data files) then a bad one at the very end.
    let mut csv = String::from("order_id,user_id,product_id,channel_id,ts,quantity,amount\n");
    for i in 0..40_000 {
        csv.push_str(&format!("x{i},u{},p1,app,2026-10-01 00:00:00,1,1.5\n", i % 5 + 1));
    }
    csv.push_str("bad,u1,p1,app,2026-10-01 00:00:00,1,not-a-number\n");
    let purchases = write(dir.path(), "purchases-big.csv", csv);
    let err = refused(&store, &[&purchases]);
    assert_input_error(&err, &purchases, InputLocation::Line(40_002), Some("amount"));
}

#[test]
fn unrecognised_file_name_is_an_arguments_error_and_table_option_forces_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let file = write(
        dir.path(),
        "orders.csv",
        PURCHASES_CSV.replace("o1,", "o100,").replace("o2,", "o200,").replace("o3,", "o300,"),
    );
    let before = state(&store);
    let err = import(&store, &[&file]).unwrap_err();
    assert!(matches!(err, Error::Arguments(_)), "{err:?}");
    assert!(err.to_string().contains("--table"), "{err}");
    assert_eq!(state(&store), before);
    let summary = import_as(&store, Table::Purchases, &[&file]).expect("--table purchases loads it");
    assert_eq!(summary.rows, vec![(Table::Purchases, 3)]);
}
