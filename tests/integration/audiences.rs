//! Rule tags and saved audiences through the library and the `persona materialize` batch command:
//! files written atomically and idempotently, per-audience reports, partial failure that leaves
//! no partial file, splitting into parts, changes since a version, rule tags refreshed after an
//! import, and the catalog surviving later imports.

use std::path::{Path, PathBuf};
use std::process::Output;

use arrow::array::{Array, AsArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::util::*;

fn persona(args: &[&str]) -> Output {
    output(persona_bin().args(args))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// The sorted `user_id`s (and `change` when present) of a Parquet file.
fn parquet_rows(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let ids = batch.column(batch.schema().index_of("user_id").unwrap());
        assert_eq!(ids.data_type(), &arrow::datatypes::DataType::Utf8, "campaign files carry plain strings");
        let ids = ids.as_string::<i32>().clone();
        let change = batch.schema().index_of("change").ok().map(|i| batch.column(i).as_string::<i32>().clone());
        for row in 0..batch.num_rows() {
            let mut line = ids.value(row).to_string();
            if let Some(c) = &change {
                line = format!("{line}:{}", c.value(row));
            }
            out.push(line);
        }
    }
    out.sort();
    out
}

/// Files in `dir` (names only, sorted).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn run_sql(store: &Path, sql: &str) -> String {
    let out = persona(&["sql", "--store", p(store), "--format", "csv", "-c", sql]);
    assert!(out.status.success(), "{sql}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn materialize_writes_every_audience_and_a_rerun_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let root = store.root().to_path_buf();
    run_sql(&root, "CREATE AUDIENCE golds AS SELECT user_id, name FROM users WHERE tier = 'gold'");
    run_sql(&root, "CREATE AUDIENCE buyers AS SELECT DISTINCT user_id FROM purchases");
    let out_dir = dir.path().join("out");
    let first = persona(&["materialize", "--store", p(&root), "--all", "--out", p(&out_dir)]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let report = text(&first.stdout);
    assert!(report.contains("golds: version 1 (unchanged), 2 rows written"), "{report}");
    assert!(report.contains("buyers: version 1 (unchanged), 2 rows written"), "{report}");
    assert_eq!(listing(&out_dir), vec!["buyers.parquet", "golds.parquet"]);
    assert_eq!(parquet_rows(&out_dir.join("golds.parquet")), vec!["u1", "u4"]);
    assert_eq!(parquet_rows(&out_dir.join("buyers.parquet")), vec!["u1", "u2"]);
    let golds = std::fs::read(out_dir.join("golds.parquet")).unwrap();
    let version = store.snapshot().unwrap().version();

    // Nothing changed: no new version, the same rows, no stray files.
    let second = persona(&["materialize", "--store", p(&root), "--all", "--out", p(&out_dir)]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(store.snapshot().unwrap().version(), version, "a rerun with nothing changed commits nothing");
    assert_eq!(std::fs::read(out_dir.join("golds.parquet")).unwrap(), golds);
    assert_eq!(listing(&out_dir), vec!["buyers.parquet", "golds.parquet"]);

    // New data: a new version with what was added.
    let more = write(dir.path(), "more/users.csv", "user_id,name,tier,points\nu6,Fay,gold,10\nu1,Ann,silver,100\n");
    import(&store, &[&more]).unwrap();
    let third = persona(&["materialize", "--store", p(&root), "--audience", "golds", "--out", p(&out_dir)]);
    assert!(third.status.success(), "{}", text(&third.stderr));
    let report = text(&third.stdout);
    assert!(report.contains("golds: version 2, 2 rows written"), "{report}");
    assert!(report.contains("(+1 −1)"), "{report}");
    assert_eq!(parquet_rows(&out_dir.join("golds.parquet")), vec!["u4", "u6"]);
    let diff = run_sql(&root, "SELECT user_id, change FROM audience_diff('golds', 1, 2) ORDER BY user_id");
    assert_eq!(diff, "user_id,change\nu1,removed\nu6,added\n");

    // Changes since version 1, as CSV.
    let changes = persona(&[
        "materialize",
        "--store",
        p(&root),
        "--audience",
        "golds",
        "--out",
        p(&out_dir),
        "--format",
        "csv",
        "--changes-since",
        "1",
    ]);
    assert!(changes.status.success(), "{}", text(&changes.stderr));
    let csv = std::fs::read_to_string(out_dir.join("golds.csv")).unwrap();
    assert_eq!(csv, "user_id,name,change\nu6,Fay,added\nu1,,removed\n");
}

#[test]
fn a_failing_audience_leaves_its_previous_file_and_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let root = store.root().to_path_buf();
    let optouts = write(dir.path(), "optouts.csv", "user_id\nu4\nnobody\n");
    run_sql(
        &root,
        &format!(
            "CREATE AUDIENCE golds SUPPRESS FILE '{}' AS SELECT user_id FROM users WHERE tier = 'gold'",
            p(&optouts)
        ),
    );
    run_sql(&root, "CREATE AUDIENCE silvers AS SELECT user_id FROM users WHERE tier = 'silver'");
    let out_dir = dir.path().join("out");
    let first = persona(&["materialize", "--store", p(&root), "--all", "--out", p(&out_dir)]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("1 suppressed"), "{}", text(&first.stdout));
    assert!(text(&first.stdout).contains("not users"), "unknown ids in a suppression file are reported");
    assert_eq!(parquet_rows(&out_dir.join("golds.parquet")), vec!["u1"]);
    let before = std::fs::read(out_dir.join("golds.parquet")).unwrap();

    // The opt-out file disappears: that audience fails, the other is still written.
    std::fs::remove_file(&optouts).unwrap();
    let second = persona(&["materialize", "--store", p(&root), "--all", "--out", p(&out_dir)]);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second.stderr));
    let stderr = text(&second.stderr);
    assert!(stderr.contains("golds: failed:"), "{stderr}");
    assert!(stderr.contains("optouts.csv"), "the message names the file: {stderr}");
    assert!(stderr.contains("1 of 2 audiences failed (golds)"), "{stderr}");
    assert!(text(&second.stdout).contains("silvers: version 1"), "{}", text(&second.stdout));
    assert_eq!(std::fs::read(out_dir.join("golds.parquet")).unwrap(), before, "the previous file is intact");
    assert_eq!(listing(&out_dir), vec!["golds.parquet", "silvers.parquet"], "no temporary file is left");
}

#[test]
fn large_audiences_split_into_parts_and_stale_parts_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let root = store.root().to_path_buf();
    run_sql(&root, "CREATE AUDIENCE everyone AS SELECT user_id, tier FROM users");
    let out_dir = dir.path().join("out");
    let split = |n: &str| {
        let out =
            persona(&["materialize", "--store", p(&root), "--all", "--out", p(&out_dir), "--max-rows-per-file", n]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    split("2");
    assert_eq!(listing(&out_dir), vec!["everyone-00000.parquet", "everyone-00001.parquet", "everyone-00002.parquet"]);
    let mut all: Vec<String> =
        (0..3).flat_map(|i| parquet_rows(&out_dir.join(format!("everyone-0000{i}.parquet")))).collect();
    all.sort();
    assert_eq!(all, vec!["u1", "u2", "u3", "u4", "u5"]);
    split("4");
    assert_eq!(listing(&out_dir), vec!["everyone-00000.parquet", "everyone-00001.parquet"], "the third part is gone");
    let zero =
        persona(&["materialize", "--store", p(&root), "--all", "--out", p(&out_dir), "--max-rows-per-file", "0"]);
    assert_eq!(zero.status.code(), Some(2), "a usage error");
    assert!(text(&zero.stderr).contains("--max-rows-per-file must be at least 1"), "{}", text(&zero.stderr));
}

#[test]
fn rule_tags_refresh_after_an_import_and_the_catalog_survives_imports() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let root = store.root().to_path_buf();
    run_sql(&root, "CREATE TAG rich AS points >= 400");
    run_sql(&root, "CREATE AUDIENCE rich_ones AS SELECT user_id FROM users WHERE has_tag('rich')");
    assert_eq!(run_sql(&root, "SELECT count(*) AS n FROM users WHERE has_tag('rich')"), "n\n2\n");
    let more = write(dir.path(), "more/users.csv", "user_id,name,tier,points\nu6,Fay,gold,900\n");
    let out = persona(&["import", "--quiet", "--refresh-tags", "--store", p(&root), p(&more)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("refreshed tag rich: 3 users (+1 −0)"), "{}", text(&out.stderr));
    assert_eq!(run_sql(&root, "SELECT count(*) AS n FROM user_tags WHERE tag = 'rich'"), "n\n3\n");
    assert_eq!(
        run_sql(&root, "SELECT name, kind, users FROM tags WHERE kind = 'rule'"),
        "name,kind,users\nrich,rule,3\n"
    );
    // The saved audience keeps its last computed members until it is materialized again.
    assert_eq!(run_sql(&root, "SELECT count(*) AS n FROM rich_ones"), "n\n2\n");
    // Without --refresh-tags an import leaves the rule's members as they were.
    let later = write(dir.path(), "later/users.csv", "user_id,name,tier,points\nu7,Gus,gold,990\n");
    import(&store, &[&later]).unwrap();
    assert_eq!(run_sql(&root, "SELECT users FROM tags WHERE name = 'rich'"), "users\n3\n");
    let paths: Vec<PathBuf> =
        store.snapshot().unwrap().manifest().catalog.tags.iter().map(|t| PathBuf::from(&t.bitmap.path)).collect();
    assert!(paths.iter().all(|p| root.join(p).is_file()), "the catalog's files are kept: {paths:?}");
}

#[test]
fn a_damaged_audience_file_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let root = store.root().to_path_buf();
    run_sql(&root, "CREATE AUDIENCE golds AS SELECT user_id FROM users WHERE tier = 'gold'");
    let snapshot = store.snapshot().unwrap();
    let file = &snapshot.manifest().catalog.audiences[0].versions[0].members_file;
    let path = root.join(&file.path);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let out = persona(&["sql", "--store", p(&root), "-c", "SELECT count(*) FROM golds"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is corrupt"), "{}", text(&out.stderr));
}

#[test]
fn a_catalog_statement_waits_for_no_one_and_changes_nothing_when_the_store_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let _scope = lock_scope();
    let session = session(&store);
    let before = state(&store);
    let _writer = store.writer().expect("another writer");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for sql in [
        "CREATE AUDIENCE golds AS SELECT user_id FROM users WHERE tier = 'gold'",
        "CREATE TAG rich AS points > 100",
        "REFRESH TAGS",
    ] {
        let err = rt.block_on(session.query(sql)).unwrap_err();
        assert!(matches!(err, persona::Error::Locked { .. }), "{sql}: {err}");
    }
    assert_eq!(state(&store), before, "nothing was written or committed");
}

#[test]
fn a_statement_that_fails_midway_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let _scope = lock_scope();
    let session = session(&store);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for sql in [
        "CREATE TAG rich AS points >= 400",
        "CREATE AUDIENCE golds AS SELECT user_id FROM users WHERE tier = 'gold'",
        "CREATE TAG gold_members AS SELECT user_id FROM golds",
        "DROP AUDIENCE golds",
    ] {
        rt.block_on(session.query(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let before = state(&store);
    // `rich` is refreshed first (its set and rows are written for the pending commit); then
    // `gold_members` fails, its audience table being gone: nothing may remain of either.
    let err = rt.block_on(session.query("REFRESH TAGS")).unwrap_err();
    assert!(err.to_string().contains("tag 'gold_members'"), "{err}");
    assert!(err.to_string().contains("golds"), "{err}");
    assert_eq!(state(&store), before, "no version, and no file left behind");
}

/// Every row of a Parquet file as `col=value|...` lines (NULL as `col=`), sorted.
fn parquet_lines(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let fields: Vec<String> = batch
                .schema()
                .fields()
                .iter()
                .zip(&columns)
                .map(|(f, c)| {
                    let c = c.as_string::<i32>();
                    format!("{}={}", f.name(), if c.is_valid(row) { c.value(row) } else { "" })
                })
                .collect();
            out.push(fields.join("|"));
        }
    }
    out.sort();
    out
}

/// The same lines from `persona sql` CSV output.
fn csv_lines(csv: &str) -> Vec<String> {
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    let mut out: Vec<String> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            header.iter().zip(r.iter()).map(|(h, v)| format!("{h}={v}")).collect::<Vec<_>>().join("|")
        })
        .collect();
    out.sort();
    out
}

#[test]
fn exports_gather_from_row_addressable_copies_and_match_a_plain_query() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    let inputs = dir.path().join("inputs");
    let mut users = String::from("user_id,name,tier,phone,email\n");
    for i in 0..3000 {
        let email = if i % 7 == 0 { String::new() } else { format!("u{i}@mail.example") };
        let tier = ["gold", "silver", "bronze"][i % 3];
        users.push_str(&format!("u{i},Näme {i},{tier},+86{:09},{email}\n", i * 37));
    }
    import(&store, &[&write(&inputs, "users.csv", &users)]).unwrap();
    // An update rewrites the users file (and its copy).
    let update = "user_id,name,tier,phone,email\nu3,Renamed,gold,+8600,new@mail.example\nu4000,New,gold,+8601,\n";
    import(&store, &[&write(&inputs.join("update"), "users.csv", update)]).unwrap();
    let snapshot = store.snapshot().unwrap();
    for file in snapshot.manifest().files(persona::Table::Users) {
        let copy = file.addressable.as_ref().expect("every users file has a copy");
        assert!(store.root().join(copy).is_file(), "{copy}");
    }
    let root = store.root().to_path_buf();
    let select = "SELECT tier, email, user_id, name, phone FROM users WHERE tier = 'gold' OR user_id LIKE 'u1%'";
    run_sql(&root, &format!("CREATE AUDIENCE mixed AS {select}"));
    let want = csv_lines(&run_sql(&root, select));
    assert!(want.len() > 1000 && want.iter().any(|l| l.contains("name=Renamed")), "{}", want.len());

    // One Parquet file (row groups encoded on the reader threads), split parts and CSV (batches).
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let whole = out.join("mixed.parquet");
    run_sql(&root, &format!("MATERIALIZE AUDIENCE mixed TO '{}'", p(&whole)));
    assert_eq!(parquet_lines(&whole), want);
    let split = dir.path().join("split");
    let status = persona(&[
        "materialize",
        "--store",
        p(&root),
        "--audience",
        "mixed",
        "--out",
        p(&split),
        "--max-rows-per-file",
        "300",
        "-q",
    ]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let mut parts: Vec<String> =
        std::fs::read_dir(&split).unwrap().flat_map(|e| parquet_lines(&e.unwrap().path())).collect();
    parts.sort();
    assert_eq!(parts, want);
    let csv_file = out.join("mixed.csv");
    run_sql(&root, &format!("MATERIALIZE AUDIENCE mixed TO '{}'", p(&csv_file)));
    assert_eq!(csv_lines(&std::fs::read_to_string(&csv_file).unwrap()), want);

    // The codec is a session setting that outlives the version a catalog statement moves to.
    let codec = |path: &Path| {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
        reader.metadata().row_group(0).column(0).compression()
    };
    assert_eq!(codec(&whole), parquet::basic::Compression::UNCOMPRESSED, "the default");
    let zstd = out.join("zstd.parquet");
    run_sql(
        &root,
        &format!(
            "SET persona.export_compression = 'zstd'; CREATE OR REPLACE AUDIENCE mixed AS {select}; \
             MATERIALIZE AUDIENCE mixed TO '{}'",
            p(&zstd)
        ),
    );
    assert!(matches!(codec(&zstd), parquet::basic::Compression::ZSTD(_)), "{:?}", codec(&zstd));
    assert_eq!(parquet_lines(&zstd), want);

    // A damaged copy is reported as such, with its path, and nothing is written.
    let copy = root.join(snapshot.manifest().files(persona::Table::Users)[0].addressable.as_ref().unwrap());
    let intact = std::fs::read(&copy).unwrap();
    std::fs::write(&copy, &intact[..intact.len() / 2]).unwrap();
    let damaged = out.join("damaged.parquet");
    let failed =
        persona(&["sql", "--store", p(&root), "-c", &format!("MATERIALIZE AUDIENCE mixed TO '{}'", p(&damaged))]);
    let message = text(&failed.stderr);
    assert!(!failed.status.success() && message.contains("not a readable Arrow IPC copy"), "{message}");
    assert!(message.contains(copy.file_name().unwrap().to_str().unwrap()), "{message}");
    assert!(!damaged.exists());
    std::fs::write(&copy, &intact).unwrap();

    // A store written before the copies existed reads the Parquet files instead.
    let current = std::fs::read_to_string(persona::store::layout::current_file(&root)).unwrap();
    let manifest_path = persona::store::layout::manifests_dir(&root).join(current.trim());
    let mut manifest =
        persona::store::manifest::Manifest::from_bytes(&std::fs::read(&manifest_path).unwrap(), &manifest_path)
            .unwrap();
    for file in manifest.tables.get_mut(&persona::Table::Users).unwrap() {
        file.addressable = None;
    }
    std::fs::write(&manifest_path, manifest.to_bytes().unwrap()).unwrap();
    let old = out.join("old.parquet");
    run_sql(&root, &format!("MATERIALIZE AUDIENCE mixed TO '{}'", p(&old)));
    assert_eq!(parquet_lines(&old), want);
}
