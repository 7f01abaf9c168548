//! Forgetting users (issue 17, PIPL / GDPR erasure): after `persona forget` and `persona vacuum
//! --keep-versions 1`, no byte of a forgotten person's user_id, phone or e-mail remains in any
//! file of the store (raw bytes, and every Parquet file decoded); everyone else's answers are
//! unchanged; `check` passes after the forget and after the vacuum; a reader that pinned the old
//! version keeps answering from it. `DELETE FROM users WHERE …` forgets through the same path,
//! and the command line reads id files and reports unknown ids.

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;

use crate::util::*;

/// A person of the sample: user_id, phone, e-mail.
#[derive(Debug, Clone)]
struct Person {
    user_id: String,
    phone: String,
    email: String,
}

impl Person {
    fn needles(&self) -> [&str; 3] {
        [&self.user_id, &self.phone, &self.email]
    }
}

/// Users of the sample with purchases, events and tags, ids `u1000`..`u1999` (no other user_id
/// has one of them as a prefix, so a raw scan finds only their own bytes), most purchases first.
async fn people_with_everything(session: &persona::Session, n: usize) -> Vec<Person> {
    let sql = format!(
        "SELECT u.user_id, u.phone, u.email FROM users u \
         JOIN (SELECT user_id, count(*) AS n FROM purchases GROUP BY user_id) p ON p.user_id = u.user_id \
         WHERE length(u.user_id) = 5 AND u.phone IS NOT NULL AND u.email IS NOT NULL \
           AND u.user_id IN (SELECT user_id FROM events) AND u.user_id IN (SELECT user_id FROM user_tags) \
         ORDER BY p.n DESC, u.user_id LIMIT {n}"
    );
    rows(session, &sql)
        .await
        .into_iter()
        .map(|r| {
            let v: Vec<&str> = r.split('|').collect();
            Person { user_id: v[0].into(), phone: v[1].into(), email: v[2].into() }
        })
        .collect()
}

/// Every regular file under `root`.
fn all_files(root: &Path) -> Vec<PathBuf> {
    files_under(root).into_iter().map(|p| root.join(p)).collect()
}

/// The files whose raw bytes contain `needle`.
fn raw_hits(root: &Path, needle: &str) -> Vec<PathBuf> {
    all_files(root)
        .into_iter()
        .filter(|p| std::fs::read(p).unwrap().windows(needle.len()).any(|w| w == needle.as_bytes()))
        .collect()
}

/// The Parquet files whose decoded string values contain `needle`.
fn decoded_hits(root: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    for path in all_files(root).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet" || e == "rowids")) {
        let file = std::fs::File::open(&path).unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
        let found = reader.map(|b| b.unwrap()).any(|batch| {
            batch.columns().iter().any(|col| match col.data_type() {
                DataType::Utf8 => col.as_string::<i32>().iter().flatten().any(|v| v.contains(needle)),
                DataType::Utf8View => col.as_string_view().iter().flatten().any(|v| v.contains(needle)),
                _ => false,
            })
        });
        if found {
            hits.push(path);
        }
    }
    hits
}

/// `list` as a SQL list of string literals.
fn sql_list(people: &[Person]) -> String {
    people.iter().map(|p| format!("'{}'", p.user_id)).collect::<Vec<_>>().join(", ")
}

/// Answers about everyone but `gone`, computed with `gone` left out by the query (`without`
/// is `AND user_id NOT IN (...)`, empty after the forget).
async fn answers(session: &persona::Session, without: &str) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        format!("SELECT count(*) FROM users WHERE true {without}"),
        format!("SELECT tier, count(*), sum(points) FROM users WHERE true {without} GROUP BY tier ORDER BY tier"),
        format!("SELECT count(*), round(sum(amount), 2) FROM purchases WHERE true {without}"),
        format!("SELECT event_type, count(*) FROM events WHERE true {without} GROUP BY 1 ORDER BY 1"),
        format!("SELECT tag, count(*) FROM user_tags WHERE true {without} GROUP BY 1 ORDER BY 1"),
        format!("SELECT count(*) FROM users WHERE has_tag('big') {without}"),
        format!("SELECT count(*) FROM users WHERE tier = 'gold' AND purchased_within(INTERVAL '90 days') {without}"),
        format!("SELECT count(*) FROM users WHERE NOT (tier = 'gold') {without}"),
        format!("SELECT count(*) FROM users WHERE points > 1000 {without}"),
    ] {
        // The answer only: the query's text differs before and after.
        let label: String = sql.split(" WHERE").next().unwrap_or_default().chars().take(40).collect();
        out.push(format!("{label}… => {:?}", rows(session, &sql).await));
    }
    out
}

/// The sample, a rule tag, and a saved audience with two versions (more purchases in between),
/// all holding the people picked; returns the store and the people (the last one is the control,
/// never forgotten).
async fn sample_with_catalog(dir: &Path) -> (persona::Store, Vec<Person>) {
    let store = create_store(dir.join("store"));
    import(&store, &[&sample_dir()]).expect("load the sample");
    let s = session(&store);
    let people = people_with_everything(&s, 3).await;
    assert_eq!(people.len(), 3, "the sample has users with purchases, events and tags");
    let _scope = lock_scope();
    for sql in [
        "CREATE TAG big AS SELECT user_id FROM purchases GROUP BY user_id HAVING count(*) >= 3".to_string(),
        "CREATE AUDIENCE buyers AS SELECT user_id FROM users WHERE user_id IN (SELECT user_id FROM purchases) AND points > 0"
            .to_string(),
    ] {
        s.query(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // New buyers change the audience: MATERIALIZE records its second version.
    let more = "order_id,user_id,product_id,channel_id,ts,quantity,amount\n\
                w1,u1,p00001,app,2026-10-30 10:00:00,1,90\n\
                w2,u2,p00001,app,2026-10-30 11:00:00,1,90\n\
                w3,u3,p00001,app,2026-10-30 12:00:00,1,90\n";
    import(&store, &[&write(&dir.join("more"), "purchases.csv", more)]).unwrap();
    let s = session(&store);
    s.query("MATERIALIZE AUDIENCE buyers").await.unwrap();
    let snapshot = store.snapshot().unwrap();
    let buyers = snapshot.manifest().catalog.audience("buyers").unwrap();
    assert!(buyers.versions.len() >= 2, "two audience versions: {:?}", buyers.versions);
    let member_of = rows(&s, "SELECT user_id FROM users WHERE in_audience('buyers') AND has_tag('big')").await;
    for p in &people {
        assert!(member_of.contains(&p.user_id), "{} is in the audience and the rule tag", p.user_id);
    }
    (store, people)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_forget_and_vacuum_no_byte_of_the_person_remains_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (store, people) = sample_with_catalog(dir.path()).await;
    let root = store.root().to_path_buf();
    let (gone, control) = (&people[..2], &people[2]);
    let without = format!("AND user_id NOT IN ({})", sql_list(gone));
    let before = answers(&session(&store), &without).await;
    let audience_sizes = |store: &persona::Store| -> Vec<(u64, u64)> {
        let snapshot = store.snapshot().unwrap();
        let buyers = snapshot.manifest().catalog.audience("buyers").unwrap().clone();
        buyers.versions.iter().map(|v| (v.members, v.added)).collect()
    };
    let sizes_before = audience_sizes(&store);

    // A reader pinned before the forget.
    let pinned = session(&store);
    let ids: Vec<String> = gone.iter().map(|p| p.user_id.clone()).collect();
    let summary = {
        let _scope = lock_scope();
        store.forget(&ids).unwrap()
    };
    assert_eq!((summary.forgotten, summary.unknown), (2, 0));
    check_passes(&store);
    // The pinned reader still sees the old version, files and all.
    let still = format!("SELECT count(*) FROM purchases WHERE user_id IN ({})", sql_list(gone));
    assert!(count(&pinned, &still).await > 0, "the pinned version keeps their purchases");
    assert_eq!(count(&pinned, &format!("SELECT count(*) FROM users WHERE user_id IN ({})", sql_list(gone))).await, 2);
    drop(pinned);

    // Everyone else answers as before; the audience's versions lost exactly them.
    let after = session(&store);
    assert_eq!(answers(&after, "").await, before);
    after.query("SET persona.use_indexes = false").await.unwrap();
    assert_eq!(answers(&after, "").await, before, "with the indexes off too");
    let sizes_after = audience_sizes(&store);
    assert_eq!(sizes_after[0].0, sizes_before[0].0 - 2, "version 1 lost both members");
    assert_eq!(sizes_after.last().unwrap().0, sizes_before.last().unwrap().0 - 2, "so did the latest");

    let out = output(persona_bin().args(["vacuum", "--keep-versions", "1", "--store"]).arg(&root));
    ok(&out);
    let reopened = persona::Store::open(&root).unwrap();
    check_passes(&reopened);

    // Decoded: no table answers anything about them, with the indexes on and off.
    let s = session(&reopened);
    for indexes in ["true", "false"] {
        s.query(&format!("SET persona.use_indexes = {indexes}")).await.unwrap();
        for p in gone {
            for sql in [
                format!(
                    "SELECT count(*) FROM users WHERE user_id = '{}' OR phone = '{}' OR email = '{}'",
                    p.user_id, p.phone, p.email
                ),
                format!("SELECT count(*) FROM purchases WHERE user_id = '{}'", p.user_id),
                format!("SELECT count(*) FROM events WHERE user_id = '{}'", p.user_id),
                format!("SELECT count(*) FROM user_tags WHERE user_id = '{}'", p.user_id),
                format!("SELECT count(*) FROM audience_members('buyers') WHERE user_id = '{}'", p.user_id),
            ] {
                assert_eq!(count(&s, &sql).await, 0, "{sql} (indexes {indexes})");
            }
        }
        let control_rows = format!("SELECT count(*) FROM purchases WHERE user_id = '{}'", control.user_id);
        assert!(count(&s, &control_rows).await > 0, "the control keeps its purchases");
    }

    // Raw bytes of every file of the store: the control proves the scan finds a person's bytes
    // where they are stored plainly (the id dictionary, the users' row-addressable copy).
    for needle in control.needles() {
        assert!(!raw_hits(&root, needle).is_empty(), "the raw scan finds the control's {needle}");
        assert!(!decoded_hits(&root, needle).is_empty(), "the decoded scan finds the control's {needle}");
    }
    // Parquet pages are Snappy-compressed, so a raw scan of a Parquet file may miss a value that
    // is there: every Parquet file is also decoded and its strings searched.
    for p in gone {
        for needle in p.needles() {
            assert_eq!(raw_hits(&root, needle), Vec::<PathBuf>::new(), "raw bytes of {needle}");
            assert_eq!(decoded_hits(&root, needle), Vec::<PathBuf>::new(), "decoded values of {needle}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_from_users_forgets_whom_the_predicate_selects_and_never_reuses_their_row_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = sample_with_catalog(dir.path()).await;
    let s = session(&store);
    let platinum = count(&s, "SELECT count(*) FROM users WHERE tier = 'platinum'").await;
    assert!(platinum > 0);
    let one_of_them = rows(&s, "SELECT user_id FROM users WHERE tier = 'platinum' ORDER BY user_id LIMIT 1").await;
    let users = count(&s, "SELECT count(*) FROM users").await;
    let null_tiers = count(&s, "SELECT count(*) FROM users WHERE tier IS NULL").await;
    let others =
        "SELECT count(*) FROM purchases WHERE user_id NOT IN (SELECT user_id FROM users WHERE tier = 'platinum')";
    let purchases = count(&s, others).await;
    let next_row_id = store.snapshot().unwrap().manifest().next_row_id;
    let version = store.snapshot().unwrap().version();
    {
        let _scope = lock_scope();
        assert_eq!(rows(&s, "DELETE FROM users WHERE tier = 'platinum'").await, vec![platinum.to_string()]);
    }
    assert_eq!(s.version(), version + 1, "one new version, and the session moved to it");
    assert_eq!(count(&s, "SELECT count(*) FROM users").await, users - platinum);
    assert_eq!(count(&s, "SELECT count(*) FROM users WHERE tier = 'platinum'").await, 0);
    assert_eq!(count(&s, "SELECT count(*) FROM users WHERE tier IS NULL").await, null_tiers, "blanked rows are nobody");
    assert_eq!(count(&s, "SELECT count(*) FROM purchases").await, purchases);
    check_passes(&store);
    {
        // Nobody left to forget: nothing is committed.
        let _scope = lock_scope();
        assert_eq!(rows(&s, "DELETE FROM users WHERE tier = 'platinum'").await, vec!["0".to_string()]);
    }
    assert_eq!(s.version(), version + 1);
    let manifest = store.snapshot().unwrap().manifest().clone();
    assert_eq!((manifest.next_row_id, manifest.live_users()), (next_row_id, (users - platinum) as u64));

    // A forgotten user_id loaded again is a new user, with a row id never given out before.
    let again = write(dir.path(), "users.csv", format!("user_id,tier\n{},silver\n", one_of_them[0]));
    let summary = import(&store, &[&again]).unwrap();
    assert_eq!(summary.new_users, 1);
    assert_eq!(store.snapshot().unwrap().manifest().next_row_id, next_row_id + 1);
    let s = session(&store);
    assert_eq!(count(&s, "SELECT count(*) FROM users WHERE tier = 'platinum'").await, 0);
    assert_eq!(count(&s, "SELECT count(*) FROM users").await, users - platinum + 1);
    check_passes(&store);
}

#[test]
fn the_command_line_reads_an_id_file_reports_unknown_ids_and_names_a_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let root = store.root().to_path_buf();
    let ids = write(dir.path(), "ids.csv", "user_id\nu1\n\"u2\"\nnobody\n");
    let out = output(persona_bin().args(["forget", "--store"]).arg(&root).arg("--file").arg(&ids));
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("forgot 2 user(s)"), "{stderr}");
    assert!(stderr.contains("1 user_id(s) are no user of the store") && stderr.contains("'nobody'"), "{stderr}");
    assert_eq!(store.snapshot().unwrap().user_count(), 3);

    // Only unknown ids: an error, and no new version.
    let version = store.snapshot().unwrap().version();
    let out = output(persona_bin().args(["forget", "--store"]).arg(&root).args(["--user-id", "u1", "--user-id", "x"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("none of the 2 user_id(s) given is a user of the store"));
    assert_eq!(store.snapshot().unwrap().version(), version);

    let bad = write(dir.path(), "bad.csv", "u3\nu4,u5\n");
    let out = output(persona_bin().args(["forget", "--store"]).arg(&root).arg("--file").arg(&bad));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.csv: line 2: expected one user_id per line"), "{stderr}");
    assert_eq!(store.snapshot().unwrap().version(), version, "nothing forgotten");

    let out = output(persona_bin().args(["forget", "--store"]).arg(&root));
    assert_eq!(out.status.code(), Some(2), "--user-id or --file is required");
    let empty = write(dir.path(), "empty.csv", "user_id\n");
    let out = output(persona_bin().args(["forget", "--store"]).arg(&root).arg("--file").arg(&empty));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user_id was given"), "{out:?}");
}

/// A person with identifiers, a person of several profiles and a cannot-link pair: after forget
/// and vacuum no byte of them remains either (the links and persons files lose them, and the
/// manifest drops the split that named them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_a_person_with_identities_and_a_split_leaves_no_byte_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    import(&store, &[&sample_dir()]).unwrap();
    let people = people_with_everything(&session(&store), 3).await;
    let (gone, partner, control) = (&people[0], &people[1], &people[2]);
    // The forgotten user shares a unionid with a partner (one person), and is split from the
    // control by hand.
    let links = format!(
        "user_id,id_type,id_value,source,ts\n\
         {g},wx_unionid,oU_erasure_shared,wx_oa,2026-03-01 10:00:00\n\
         {p},wx_unionid,oU_erasure_shared,wx_mini,2026-03-01 11:00:00\n\
         {g},device_id,{g}-tablet,app,2026-03-02 10:00:00\n",
        g = gone.user_id,
        p = partner.user_id
    );
    import(&store, &[&write(&dir.path().join("ids"), "identities.csv", links)]).unwrap();
    {
        let _scope = lock_scope();
        let s = session(&store);
        s.query(&format!("UNLINK '{}', '{}'", gone.user_id, control.user_id)).await.unwrap();
        let same = format!(
            "SELECT count(DISTINCT person_id) FROM users WHERE user_id IN ('{}', '{}')",
            gone.user_id, partner.user_id
        );
        assert_eq!(count(&session(&store), &same).await, 1, "one person before the forget");
        store.forget(std::slice::from_ref(&gone.user_id)).unwrap();
    }
    let root = store.root().to_path_buf();
    ok(&output(persona_bin().args(["vacuum", "--keep-versions", "1", "--store"]).arg(&root)));
    let reopened = persona::Store::open(&root).unwrap();
    check_passes(&reopened);
    let s = session(&reopened);
    let partner_links = format!("SELECT count(*) FROM identity_links WHERE user_id = '{}'", partner.user_id);
    assert!(count(&s, &partner_links).await > 0, "the partner keeps its links");
    let theirs = format!("SELECT count(*) FROM identity_links WHERE user_id = '{}'", gone.user_id);
    assert_eq!(count(&s, &theirs).await, 0);
    for needle in control.needles().into_iter().chain([partner.user_id.as_str()]) {
        assert!(!raw_hits(&root, needle).is_empty() || !decoded_hits(&root, needle).is_empty(), "finds {needle}");
    }
    for needle in gone.needles() {
        assert_eq!(raw_hits(&root, needle), Vec::<PathBuf>::new(), "raw bytes of {needle}");
        assert_eq!(decoded_hits(&root, needle), Vec::<PathBuf>::new(), "decoded values of {needle}");
    }
}
