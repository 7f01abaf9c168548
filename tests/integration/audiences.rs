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

/// Files in `dir` (names only, sorted), but the list of files `persona materialize` wrote there.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".persona-materialize.json")
        .collect();
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
    let mut parts: Vec<String> = std::fs::read_dir(&split)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .flat_map(|p| parquet_lines(&p))
        .collect();
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

/// Regression: `persona materialize --all` ran audiences in creation order, so `allu`, created
/// before `sup_src` and later redefined to suppress it, was evaluated on sup_src's previous
/// members: a user who newly qualified for sup_src was still exported in allu's file.
#[test]
fn materialize_all_evaluates_a_suppressed_audience_before_its_suppressor() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let root = store.root().to_path_buf();
    run_sql(&root, "CREATE AUDIENCE allu AS SELECT user_id FROM users");
    run_sql(&root, "CREATE AUDIENCE sup_src AS SELECT user_id FROM users WHERE points >= 400");
    run_sql(&root, "CREATE OR REPLACE AUDIENCE allu SUPPRESS sup_src AS SELECT user_id FROM users");
    let out_dir = dir.path().join("out");
    let first = persona(&["materialize", "--store", p(&root), "--all", "--out", p(&out_dir)]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(parquet_rows(&out_dir.join("allu.parquet")), vec!["u1", "u2", "u3"]);

    // u1 now qualifies for sup_src: one run must leave it out of allu.
    let more = write(dir.path(), "more/users.csv", "user_id,name,tier,points\nu1,Ann,gold,900\n");
    import(&store, &[&more]).unwrap();
    let version = store.snapshot().unwrap().version();
    let second = persona(&["materialize", "--store", p(&root), "--all", "--out", p(&out_dir)]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(parquet_rows(&out_dir.join("sup_src.parquet")), vec!["u1", "u4", "u5"]);
    assert_eq!(parquet_rows(&out_dir.join("allu.parquet")), vec!["u2", "u3"], "{}", text(&second.stdout));
    assert_eq!(store.snapshot().unwrap().version(), version + 1, "the run is one version");
    let versions =
        run_sql(&root, "SELECT audience, version, store_version FROM audience_versions ORDER BY audience, version");
    assert!(versions.contains(&format!("allu,3,{version}")), "{versions}");
    assert!(versions.contains(&format!("sup_src,2,{version}")), "{versions}");

    // An audience reading one that fails is not evaluated on stale members either.
    let optouts = write(dir.path(), "optouts.csv", "user_id\nu5\n");
    run_sql(
        &root,
        &format!(
            "CREATE OR REPLACE AUDIENCE sup_src SUPPRESS FILE '{}' AS SELECT user_id FROM users WHERE points >= 400",
            p(&optouts)
        ),
    );
    std::fs::remove_file(&optouts).unwrap();
    let third = persona(&["materialize", "--store", p(&root), "--all", "--out", p(&out_dir)]);
    assert_eq!(third.status.code(), Some(1));
    let stderr = text(&third.stderr);
    assert!(stderr.contains("allu: failed: it reads audience 'sup_src', which failed"), "{stderr}");
    assert!(stderr.contains("2 of 2 audiences failed"), "{stderr}");
}

/// Regression: REFRESH TAGS evaluated every rule on the version before it, so after an import a
/// rule tag reading another through has_tag lagged it by one refresh.
#[test]
fn refresh_tags_evaluates_a_rule_after_the_tags_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let root = store.root().to_path_buf();
    run_sql(&root, "CREATE TAG rich AS points >= 400");
    run_sql(&root, "CREATE TAG rich_gold AS has_tag('rich') AND tier = 'gold'");
    assert_eq!(run_sql(&root, "SELECT users FROM tags WHERE name = 'rich_gold'"), "users\n1\n");
    let more = write(dir.path(), "more/users.csv", "user_id,name,tier,points\nu1,Ann,gold,900\n");
    let out = persona(&["import", "--quiet", "--refresh-tags", "--store", p(&root), p(&more)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("refreshed tag rich_gold: 2 users (+1 −0)"), "{}", text(&out.stderr));
    assert_eq!(run_sql(&root, "SELECT count(*) AS n FROM users WHERE has_tag('rich_gold')"), "n\n2\n");
}

/// Regression: an audience over a fact table (`SELECT user_id, channel_id FROM purchases`)
/// exported one row per purchase, so users appeared several times in campaign files.
#[test]
fn an_audience_over_facts_exports_each_user_once_with_its_first_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let root = store.root().to_path_buf();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // u2 bought twice: o2 through web, then o3 through app.
    run_sql(&root, "CREATE AUDIENCE first_buy AS SELECT user_id, channel_id FROM purchases ORDER BY order_id");
    let file = out.join("first.parquet");
    run_sql(&root, &format!("MATERIALIZE AUDIENCE first_buy TO '{}'", p(&file)));
    assert_eq!(parquet_lines(&file), vec!["user_id=u1|channel_id=app", "user_id=u2|channel_id=web"]);
    run_sql(&root, "CREATE AUDIENCE last_buy AS SELECT user_id, channel_id FROM purchases ORDER BY order_id DESC");
    let file = out.join("last.csv");
    run_sql(&root, &format!("MATERIALIZE AUDIENCE last_buy TO '{}'", p(&file)));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "user_id,channel_id\nu2,app\nu1,app\n");
}

/// Regression: a suppression file none of whose ids is a user (a CSV separated by `;`, read as
/// one column) passed with a note, and suppressed no one.
#[test]
fn a_suppression_file_matching_no_user_fails_its_audience() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let root = store.root().to_path_buf();
    let optouts = write(dir.path(), "optouts.csv", "user_id;email\nu4;dan@example.com\nu1;ann@example.com\n");
    let sql = format!(
        "CREATE AUDIENCE golds SUPPRESS FILE '{}' AS SELECT user_id FROM users WHERE tier = 'gold'",
        p(&optouts)
    );
    let out = persona(&["sql", "--store", p(&root), "-c", &sql]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("optouts.csv': none of its 3 ids is a user"), "{stderr}");
    assert!(run_sql(&root, "SELECT count(*) AS n FROM audiences").contains("n\n0\n"), "nothing was saved");
    // A file with some unknown ids still only gets a note.
    std::fs::write(&optouts, "user_id\nu4\nnobody\n").unwrap();
    let report = run_sql(&root, &sql);
    assert!(report.contains("1 user_ids in suppression files are not users"), "{report}");
}

/// Regression: a version computed with `--now` and the next one on the clock differed silently;
/// each version now records the now() it saw, and materialize shows it.
#[test]
fn a_version_records_the_now_it_was_evaluated_at() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let root = store.root().to_path_buf();
    let out = persona(&[
        "sql",
        "--store",
        p(&root),
        "--now",
        "2026-10-02",
        "-c",
        "CREATE AUDIENCE buyers AS SELECT user_id FROM users WHERE purchased_within(INTERVAL '1 day')",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        run_sql(&root, "SELECT version, members, now, now_pinned FROM audience_versions"),
        "version,members,now,now_pinned\n1,1,2026-10-02T00:00:00Z,true\n"
    );
    let out_dir = dir.path().join("out");
    let pinned = persona(&["materialize", "--store", p(&root), "--all", "--out", p(&out_dir), "--now", "2026-10-02"]);
    assert!(pinned.status.success(), "{}", text(&pinned.stderr));
    let report = text(&pinned.stdout);
    assert!(report.contains("version 1 (unchanged)"), "{report}");
    assert!(report.contains("now() = 2026-10-02T00:00:00Z (pinned)"), "{report}");
    assert!(!report.contains("was evaluated at"), "{report}");
    // On the clock, o1 is more than a day old: the report says which now() each version saw.
    let clock = persona(&["materialize", "--store", p(&root), "--all", "--out", p(&out_dir)]);
    assert!(clock.status.success(), "{}", text(&clock.stderr));
    let report = text(&clock.stdout);
    assert!(report.contains("version 2, 0 rows written"), "{report}");
    assert!(report.contains("(clock)"), "{report}");
    assert!(
        report.contains("version 1 was evaluated at now() = 2026-10-02T00:00:00Z (pinned), this one at"),
        "{report}"
    );
    let versions = run_sql(&root, "SELECT version, now_pinned FROM audience_versions ORDER BY version");
    assert_eq!(versions, "version,now_pinned\n1,true\n2,false\n");
}

/// Regression: switching between `--max-rows-per-file` and one file, or between formats, left
/// both sets of files in the output directory (readers of `allu*.parquet` counted users twice),
/// and a dropped audience's file stayed forever. Files persona did not write are left alone.
#[test]
fn each_run_leaves_exactly_the_current_files_of_each_audience() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let root = store.root().to_path_buf();
    run_sql(&root, "CREATE AUDIENCE everyone AS SELECT user_id FROM users");
    run_sql(&root, "CREATE AUDIENCE golds AS SELECT user_id FROM users WHERE tier = 'gold'");
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join("notes.txt"), "mine").unwrap();
    std::fs::write(out_dir.join("everyone-backup.parquet"), "mine too").unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["materialize", "--store", p(&root), "--all", "--out", p(&out_dir), "-q"];
        args.extend_from_slice(extra);
        let out = persona(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    let mine = ["everyone-backup.parquet", "notes.txt"];
    let with_mine = |names: &[&str]| {
        let mut all: Vec<String> = names.iter().chain(&mine).map(|s| s.to_string()).collect();
        all.sort();
        all
    };
    run(&["--max-rows-per-file", "2"]);
    assert_eq!(
        listing(&out_dir),
        with_mine(&[
            "everyone-00000.parquet",
            "everyone-00001.parquet",
            "everyone-00002.parquet",
            "golds-00000.parquet"
        ])
    );
    run(&[]);
    assert_eq!(listing(&out_dir), with_mine(&["everyone.parquet", "golds.parquet"]));
    run(&["--max-rows-per-file", "4"]);
    assert_eq!(
        listing(&out_dir),
        with_mine(&["everyone-00000.parquet", "everyone-00001.parquet", "golds-00000.parquet"])
    );
    run(&["--format", "csv"]);
    assert_eq!(listing(&out_dir), with_mine(&["everyone.csv", "golds.csv"]));
    run(&[]);
    assert_eq!(listing(&out_dir), with_mine(&["everyone.parquet", "golds.parquet"]));
    // A dropped audience's files go at the next run, whichever audiences it writes.
    run_sql(&root, "DROP AUDIENCE golds");
    let out = persona(&["materialize", "--store", p(&root), "--audience", "everyone", "--out", p(&out_dir)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("golds: dropped from the store; its 1 file(s) removed"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(listing(&out_dir), with_mine(&["everyone.parquet"]));
    // Another store exporting to the same directory does not take this one's audiences as dropped.
    let other = base_store(&dir.path().join("other"));
    let other_root = other.root().to_path_buf();
    run_sql(&other_root, "CREATE AUDIENCE silvers AS SELECT user_id FROM users WHERE tier = 'silver'");
    let out = persona(&["materialize", "--store", p(&other_root), "--all", "--out", p(&out_dir), "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(listing(&out_dir), with_mine(&["everyone.parquet", "silvers.parquet"]));
    run(&[]);
    assert_eq!(listing(&out_dir), with_mine(&["everyone.parquet", "silvers.parquet"]));
}

/// Regression: SHOW AUDIENCES and SHOW TAGS on a store with neither were "internal error: a
/// catalog table returned no batch".
#[test]
fn show_on_an_empty_catalog_is_an_empty_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let session = session(&store);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for (sql, column) in [("SHOW AUDIENCES", "query"), ("SHOW TAGS", "kind")] {
        let frame = rt.block_on(session.sql(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(frame.schema().field_with_unqualified_name(column).is_ok(), "{sql}: {:?}", frame.schema());
        let batches = rt.block_on(frame.collect()).unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0, "{sql}");
    }
}

/// A cron job's `materialize --all` on a store whose last audience was dropped is a success.
#[test]
fn materialize_all_without_audiences_is_a_success_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let out = persona(&["materialize", "--store", p(store.root()), "--all", "--out", p(&dir.path().join("out"))]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no saved audiences"), "{}", text(&out.stderr));
}

/// `MATERIALIZE ... TO 'out/sub/x.parquet'` creates the folders, as `persona materialize --out` does.
#[test]
fn materialize_to_a_path_in_a_new_folder_creates_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let target = dir.path().join("out/sub/golds.parquet");
    run_sql(
        store.root(),
        &format!(
            "CREATE AUDIENCE golds AS SELECT user_id FROM users WHERE tier = 'gold'; MATERIALIZE AUDIENCE golds TO '{}'",
            p(&target)
        ),
    );
    assert_eq!(parquet_rows(&target), vec!["u1", "u4"]);
}
