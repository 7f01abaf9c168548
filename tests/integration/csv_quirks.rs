//! CSV as real exports write it: a UTF-8 byte-order mark, CRLF line ends, quoted fields holding
//! commas, doubled quotes and newlines, Chinese text, and timestamps with a space or `T`, fractions
//! and zones (`Z`, `+08:00`). The stored values are checked through SQL; zoned timestamps are
//! stored as the UTC instant.

use persona::Table;
use persona::error::InputLocation;

use crate::util::*;

const BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

fn quirky_users() -> Vec<u8> {
    let mut bytes = BOM.to_vec();
    bytes.extend_from_slice(
        "user_id,name,city,note,points\r\n\
         u1,\"Zhang, San\",上海,\"first line\nsecond line\",10\r\n\
         u2,\"He said \"\"hi\"\"\",北京,plain,20\r\n\
         u3,张三丰,广州市,\"逗号，全角, and half\",30\r\n\
         u4,,\"\",\"\",\r\n"
            .as_bytes(),
    );
    bytes
}

#[tokio::test]
async fn bom_crlf_quotes_newlines_and_chinese_are_read_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    let users = write(dir.path(), "users.csv", quirky_users());
    let summary = import(&store, &[&users]).expect("quirky CSV loads");
    assert_eq!(summary.rows, vec![(Table::Users, 4)]);
    let s = session(&store);
    // The BOM is not part of the first column's name.
    assert_eq!(
        rows(&s, "SELECT user_id, name, city, points FROM users ORDER BY user_id").await,
        vec!["u1|Zhang, San|上海|10", "u2|He said \"hi\"|北京|20", "u3|张三丰|广州市|30", "u4|NULL|NULL|NULL"]
    );
    assert_eq!(rows(&s, "SELECT note FROM users WHERE user_id = 'u1'").await, vec!["first line\nsecond line"]);
    assert_eq!(rows(&s, "SELECT note FROM users WHERE user_id = 'u3'").await, vec!["逗号，全角, and half"]);
    assert_eq!(rows(&s, "SELECT user_id FROM users WHERE city = '上海'").await, vec!["u1"]);
    assert_eq!(count(&s, "SELECT length(name) FROM users WHERE user_id = 'u3'").await, 3);
    // No CR survived at the end of a line.
    assert_eq!(count(&s, "SELECT count(*) FROM users WHERE strpos(coalesce(note, ''), chr(13)) > 0").await, 0);
}

#[test]
fn line_numbers_count_the_newlines_inside_quoted_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    let users = write(dir.path(), "users.csv", "user_id,note,points\nu1,\"a\nb\nc\",1\nu2,plain,2\nu3,x,three\n");
    let err = refused(&store, &[&users]);
    assert_input_error(&err, &users, InputLocation::Line(6), Some("points"));
}

#[test]
fn line_numbers_are_the_physical_lines_of_a_crlf_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    // Line 1 header, 2 u1, 3 u2, 4 u3.
    let users = write(dir.path(), "users.csv", "user_id,points\r\nu1,1\r\nu2,2\r\nu3,three\r\n");
    let err = refused(&store, &[&users]);
    assert_input_error(&err, &users, InputLocation::Line(4), Some("points"));

    // With a BOM and a quoted CRLF inside a field: u1 spans lines 2-4, u2 is on 5, u3 on 6.
    let mut bytes = BOM.to_vec();
    bytes.extend_from_slice(b"user_id,note,points\r\nu1,\"a\r\nb\r\nc\",1\r\nu2,plain,2\r\nu3,x,three\r\n");
    let users = write(dir.path(), "users.csv", bytes);
    let err = refused(&store, &[&users]);
    assert_input_error(&err, &users, InputLocation::Line(6), Some("points"));
}

#[tokio::test]
async fn timestamps_with_space_t_fractions_and_zones_are_stored_in_utc() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    let users = write(dir.path(), "users.csv", "user_id\r\nu1\r\n");
    let mut purchases = BOM.to_vec();
    purchases.extend_from_slice(
        b"order_id,user_id,product_id,channel_id,ts,quantity,amount\r\n\
          o1,u1,p1,app,2026-10-31 23:59:59,1,1\r\n\
          o2,u1,p1,app,2026-10-31T23:59:59,1,1\r\n\
          o3,u1,p1,app,2026-10-31T23:59:59Z,1,1\r\n\
          o4,u1,p1,app,2026-11-01T07:59:59+08:00,1,1\r\n\
          o5,u1,p1,app,2026-11-01 07:59:59+08:00,1,1\r\n\
          o6,u1,p1,app,2026-10-31 23:59:59.5,1,1\r\n\
          o7,u1,p1,app,2026-11-01T07:59:59.123456+08:00,1,1\r\n\
          o8,u1,p1,app,2026-10-31 18:59:59-05:00,1,1\r\n\
          o9,u1,p1,app,\"2026-10-31 23:59:59\",1,\"1.5\"\r\n",
    );
    let purchases = write(dir.path(), "purchases.csv", &purchases);
    import(&store, &[&users, &purchases]).expect("all timestamp spellings load");
    let s = session(&store);
    assert_eq!(
        rows(&s, "SELECT order_id, ts, CAST(ts AS BIGINT) AS micros FROM purchases ORDER BY order_id").await,
        vec![
            "o1|2026-10-31T23:59:59|1793491199000000",
            "o2|2026-10-31T23:59:59|1793491199000000",
            "o3|2026-10-31T23:59:59|1793491199000000",
            "o4|2026-10-31T23:59:59|1793491199000000",
            "o5|2026-10-31T23:59:59|1793491199000000",
            "o6|2026-10-31T23:59:59.500|1793491199500000",
            "o7|2026-10-31T23:59:59.123456|1793491199123456",
            "o8|2026-10-31T23:59:59|1793491199000000",
            "o9|2026-10-31T23:59:59|1793491199000000",
        ]
    );
    assert_eq!(count(&s, "SELECT count(*) FROM purchases WHERE ts = TIMESTAMP '2026-10-31 23:59:59'").await, 7);
    assert_eq!(rows(&s, "SELECT sum(amount) FROM purchases").await, vec!["9.5"]);
}

#[tokio::test]
async fn tags_without_assigned_at_and_crlf_blank_last_line_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    let users = write(dir.path(), "users.csv", "user_id,name\nu1,A\nu2,B\n");
    let tags = write(
        dir.path(),
        "user_tags.csv",
        "user_id,tag,assigned_at\r\nu1,高价值,\r\nu2,new,2026-01-01T08:00:00+08:00\r\n\r\n",
    );
    let summary = import(&store, &[&users, &tags]).unwrap();
    assert_eq!(summary.rows, vec![(Table::Users, 2), (Table::UserTags, 2)]);
    let s = session(&store);
    assert_eq!(
        rows(&s, "SELECT user_id, tag, assigned_at FROM user_tags ORDER BY user_id").await,
        vec!["u1|高价值|NULL", "u2|new|2026-01-01T00:00:00"]
    );
}
