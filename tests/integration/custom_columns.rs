//! Custom users columns: any extra column is kept, typed (from CSV text: boolean, integer, float,
//! date, timestamp, else text, with leading zeros kept as text; from Parquet: its own type) and
//! queryable with its type's operators; a later load must fit the type already recorded. New
//! columns are reported in the import summary, and a new column whose name differs from a known
//! one only by case, spaces or underscores (`Tier` beside `tier`) is refused.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float32Array, Int32Array, StringArray};
use arrow::datatypes::DataType;
use persona::Store;
use persona::error::InputLocation;
use persona::tables::ColumnType;

use crate::util::*;

fn custom_users(dir: &std::path::Path) -> Store {
    let store = create_store(dir.join("store"));
    let users = write(
        dir,
        "users.csv",
        "user_id,vip_level,is_member,score,zip,first_visit,last_seen,nickname,empty_col\n\
         u1,1,true,1.5,007,2024-01-01,2026-10-01 10:00:00,ace,\n\
         u2,2,false,2,10001,2024-02-29,2026-10-02T11:30:00Z,,\n\
         u3,3,yes,-0.25,020,2024-03-01,2026-10-03,bee,\n\
         u4,,no,,,,,,\n",
    );
    import(&store, &[&users]).expect("custom columns load");
    store
}

#[tokio::test]
async fn custom_csv_columns_are_typed_by_inference() {
    let dir = tempfile::tempdir().unwrap();
    let store = custom_users(dir.path());
    let snap = store.snapshot().unwrap();
    let ty = |name: &str| {
        snap.manifest()
            .users_columns
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("column {name} is kept"))
            .ty
    };
    assert_eq!(ty("vip_level"), ColumnType::Int64);
    assert_eq!(ty("is_member"), ColumnType::Boolean);
    assert_eq!(ty("score"), ColumnType::Float64);
    assert_eq!(ty("zip"), ColumnType::Utf8, "leading zeros stay text");
    assert_eq!(ty("first_visit"), ColumnType::Date);
    assert_eq!(ty("last_seen"), ColumnType::Timestamp);
    assert_eq!(ty("nickname"), ColumnType::Utf8);
    assert_eq!(ty("empty_col"), ColumnType::Utf8);

    // SQL sees the same types.
    let batches = session(&store)
        .query("SELECT vip_level, is_member, score, zip, first_visit, last_seen FROM users")
        .await
        .unwrap();
    let schema = batches[0].schema();
    let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    assert_eq!(
        types,
        vec![
            &DataType::Int64,
            &DataType::Boolean,
            &DataType::Float64,
            &DataType::Utf8,
            &DataType::Date32,
            &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None)
        ]
    );
}

#[tokio::test]
async fn custom_columns_are_queryable_with_their_types() {
    let dir = tempfile::tempdir().unwrap();
    let store = custom_users(dir.path());
    let s = session(&store);
    assert_eq!(count(&s, "SELECT count(*) FROM users WHERE vip_level >= 2").await, 2);
    assert_eq!(count(&s, "SELECT sum(vip_level) FROM users").await, 6);
    assert_eq!(count(&s, "SELECT count(*) FROM users WHERE is_member").await, 2);
    assert_eq!(count(&s, "SELECT count(*) FROM users WHERE score > 1.0").await, 2);
    assert_eq!(count(&s, "SELECT count(*) FROM users WHERE first_visit >= DATE '2024-02-01'").await, 2);
    assert_eq!(count(&s, "SELECT count(*) FROM users WHERE last_seen > TIMESTAMP '2026-10-02 00:00:00'").await, 2);
    assert_eq!(
        rows(&s, "SELECT user_id, zip, last_seen FROM users ORDER BY user_id").await,
        vec![
            "u1|007|2026-10-01T10:00:00",
            "u2|10001|2026-10-02T11:30:00",
            "u3|020|2026-10-03T00:00:00",
            "u4|NULL|NULL"
        ]
    );
}

#[test]
fn a_later_value_must_fit_the_custom_column_type() {
    let dir = tempfile::tempdir().unwrap();
    let store = custom_users(dir.path());
    let users = write(dir.path(), "users-2.csv", "user_id,vip_level\nu5,4\nu6,gold\n");
    let message = assert_input_error(&refused(&store, &[&users]), &users, InputLocation::Line(3), Some("vip_level"));
    assert!(message.contains("'gold'"), "{message}");
}

/// Before, a header `Tier` silently created a second column beside the contract's `tier`, and the
/// summary did not mention it.
#[test]
fn a_new_column_that_only_differs_in_case_spaces_or_underscores_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = custom_users(dir.path());
    for (name, content, column, other) in [
        ("users-tier.csv", "user_id,Tier\nu1,gold\n", "Tier", "tier"),
        ("users-vip.csv", "user_id,VIP Level\nu1,2\n", "VIP Level", "vip_level"),
        ("users-signup.csv", "user_id,signupdate\nu1,2024-01-01\n", "signupdate", "signup_date"),
        ("users-twice.csv", "user_id,fav_color,Fav Color\nu1,red,blue\n", "Fav Color", "fav_color"),
    ] {
        let users = write(dir.path(), name, content);
        let message = assert_input_error(&refused(&store, &[&users]), &users, InputLocation::File, Some(column));
        assert!(message.contains(&format!("'{other}'")), "{message}");
    }
    // New columns are reported with their types.
    let users = write(dir.path(), "users-new.csv", "user_id,fav_color,lucky_number\nu1,red,7\n");
    let summary = import(&store, &[&users]).expect("clearly new columns load");
    let new: Vec<String> = summary.new_columns.iter().map(|c| format!("{} {:?}", c.name, c.ty)).collect();
    assert_eq!(new, vec!["fav_color Utf8", "lucky_number Int64"]);
    let users = write(dir.path(), "users-again.csv", "user_id,fav_color\nu2,blue\n");
    assert!(import(&store, &[&users]).unwrap().new_columns.is_empty(), "a known column is not new");
}

#[tokio::test]
async fn parquet_custom_columns_keep_their_parquet_types() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    let file = write_parquet(
        dir.path(),
        "users.parquet",
        vec![
            ("user_id", Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef),
            ("income_band", Arc::new(Int32Array::from(vec![Some(3), None, Some(9)])) as ArrayRef),
            ("has_children", Arc::new(BooleanArray::from(vec![true, false, true])) as ArrayRef),
            ("ratio", Arc::new(Float32Array::from(vec![0.5, 1.5, 2.5])) as ArrayRef),
            ("occupation", Arc::new(StringArray::from(vec!["nurse", "teacher", "chef"])) as ArrayRef),
        ],
        2,
    );
    import(&store, &[&file]).unwrap();
    let snap = store.snapshot().unwrap();
    let ty = |name: &str| snap.manifest().users_columns.iter().find(|c| c.name == name).unwrap().ty;
    assert_eq!(ty("income_band"), ColumnType::Int32);
    assert_eq!(ty("has_children"), ColumnType::Boolean);
    assert_eq!(ty("ratio"), ColumnType::Float64);
    assert_eq!(ty("occupation"), ColumnType::Utf8);
    let s = session(&store);
    assert_eq!(count(&s, "SELECT count(*) FROM users WHERE income_band > 5").await, 1);
    assert_eq!(count(&s, "SELECT count(*) FROM users WHERE has_children AND ratio > 1").await, 1);
    assert_eq!(rows(&s, "SELECT user_id FROM users WHERE occupation = 'chef'").await, vec!["c"]);
}

#[tokio::test]
async fn many_custom_columns_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    let names: Vec<String> = (0..60).map(|i| format!("attr_{i:02}")).collect();
    let mut csv = format!("user_id,{}\n", names.join(","));
    for u in 0..3 {
        let values: Vec<String> = (0..60).map(|i| (i * 10 + u).to_string()).collect();
        csv.push_str(&format!("u{u},{}\n", values.join(",")));
    }
    let users = write(dir.path(), "users.csv", csv);
    import(&store, &[&users]).unwrap();
    let s = session(&store);
    assert_eq!(count(&s, "SELECT sum(attr_59) FROM users").await, 590 * 3 + 3);
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name LIKE 'attr_%'"
        )
        .await,
        60
    );
}

#[tokio::test]
async fn custom_column_filters_give_the_same_rows_with_and_without_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = custom_users(dir.path());
    let more = write(dir.path(), "users-more.csv", "user_id,vip_level,is_member\nu2,5,true\nu9,2,\n");
    import(&store, &[&more]).unwrap();
    let indexed = session(&store);
    let general = store
        .session_with(&persona::SessionOptions { use_indexes: Some(false), ..persona::SessionOptions::default() })
        .unwrap();
    for filter in [
        "vip_level >= 2",
        "vip_level IS NULL",
        "NOT is_member",
        "is_member IS NULL OR score < 0",
        "zip LIKE '0%'",
        "first_visit BETWEEN DATE '2024-01-15' AND DATE '2024-03-01'",
        "last_seen < TIMESTAMP '2026-10-02 12:00:00' AND vip_level IN (1, 5)",
    ] {
        let sql = format!("SELECT user_id FROM users WHERE {filter} ORDER BY user_id");
        let a = rows(&indexed, &sql).await;
        let b = rows(&general, &sql).await;
        assert_eq!(a, b, "{filter}");
    }
    assert_eq!(
        rows(&indexed, "SELECT user_id FROM users WHERE vip_level >= 2 ORDER BY user_id").await,
        ["u2", "u3", "u9"]
    );
}
