//! The `persona` command line end to end: `gen` + `import` + `sql -c` round trip, CSV and JSON
//! output, `COPY ... TO 'x.parquet'` writing a readable file, `--now` pinning `now()`, SQL from a
//! file and from standard input, and errors: exit 1 with `error: <sentence>` (plus the SQL line
//! and a caret for a positioned SQL error), exit 2 for usage errors, a clear message for a
//! directory that is not a store.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

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

/// A store built by the CLI from a small CSV the test writes.
fn cli_store(dir: &Path) -> PathBuf {
    let store = dir.join("store");
    let users = write(dir, "in/users.csv", USERS_CSV);
    let purchases = write(dir, "in/purchases.csv", PURCHASES_CSV);
    let out = persona(&["import", "--quiet", "--store", p(&store), p(&users), p(&purchases)]);
    ok(&out);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("imported 2 file(s) as version 1"), "{stderr}");
    assert!(stderr.contains("5 new and 0 updated users"), "{stderr}");
    store
}

#[test]
fn gen_import_and_sql_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gen");
    let store = dir.path().join("store");
    ok(&persona(&["gen", "--users", "300", "--seed", "5", "--out", p(&data), "--format", "csv", "--quiet"]));
    assert!(data.join("users").is_dir(), "gen writes one folder per table");
    let out = persona(&["import", "--quiet", "--store", p(&store), p(&data)]);
    ok(&out);
    assert!(text(&out.stderr).contains("as version 1"), "{}", text(&out.stderr));
    let csv = ok(&persona(&["sql", "--store", p(&store), "--format", "csv", "-c", "SELECT count(*) AS n FROM users"]));
    assert_eq!(csv, "n\n300\n");
    // Every fact row joins to a user.
    let csv = ok(&persona(&[
        "sql",
        "--store",
        p(&store),
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS orphans FROM purchases p LEFT JOIN users u ON p.user_id = u.user_id WHERE u.user_id IS NULL",
    ]));
    assert_eq!(csv, "orphans\n0\n");

    // The same data as Parquet loads to the same counts.
    let pq = dir.path().join("gen-pq");
    let store2 = dir.path().join("store2");
    ok(&persona(&["gen", "--users", "300", "--seed", "5", "--out", p(&pq), "--quiet"]));
    ok(&persona(&["import", "--quiet", "--store", p(&store2), p(&pq)]));
    let counts = "SELECT (SELECT count(*) FROM users) AS u, (SELECT count(*) FROM purchases) AS p, (SELECT count(*) FROM events) AS e, (SELECT count(*) FROM user_tags) AS t";
    let a = ok(&persona(&["sql", "--store", p(&store), "--format", "csv", "-c", counts]));
    let b = ok(&persona(&["sql", "--store", p(&store2), "--format", "csv", "-c", counts]));
    assert_eq!(a, b);
}

#[test]
fn table_output_is_aligned_and_csv_and_json_are_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let sql = "SELECT user_id, name, points FROM users WHERE points >= 400 ORDER BY user_id";
    let table = ok(&persona(&["sql", "--store", p(&store), "-c", sql]));
    assert!(table.contains("| user_id | name | points |"), "{table}");
    assert!(table.contains("| u4      | Dan  | 400    |"), "{table}");

    let csv = ok(&persona(&["sql", "--store", p(&store), "--format", "csv", "-c", sql]));
    assert_eq!(csv, "user_id,name,points\nu4,Dan,400\nu5,Eve,500\n");

    let json = ok(&persona(&["sql", "--store", p(&store), "--format", "json", "-c", sql]));
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(
        value,
        serde_json::json!([
            {"user_id": "u4", "name": "Dan", "points": 400},
            {"user_id": "u5", "name": "Eve", "points": 500}
        ])
    );
}

#[test]
fn json_output_of_an_empty_result_is_one_empty_array() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let empty = ok(&persona(&[
        "sql",
        "--store",
        p(&store),
        "--format",
        "json",
        "-c",
        "SELECT * FROM users WHERE user_id = 'nobody'",
    ]));
    let value: serde_json::Value =
        serde_json::from_str(&empty).unwrap_or_else(|e| panic!("not valid JSON ({e}): {empty:?}"));
    assert_eq!(value, serde_json::json!([]));
}

#[test]
fn output_option_writes_the_result_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let target = dir.path().join("out.csv");
    let stdout = ok(&persona(&[
        "sql",
        "--store",
        p(&store),
        "--format",
        "csv",
        "--output",
        p(&target),
        "-c",
        "SELECT order_id FROM purchases ORDER BY order_id",
    ]));
    assert_eq!(stdout, "");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "order_id\no1\no2\no3\n");
}

#[test]
fn copy_to_parquet_writes_a_readable_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let target = dir.path().join("gold.parquet");
    let sql =
        format!("COPY (SELECT user_id, points FROM users WHERE tier = 'gold' ORDER BY user_id) TO '{}'", p(&target));
    ok(&persona(&["sql", "--store", p(&store), "-c", &sql]));
    let file = std::fs::File::open(&target).expect("COPY wrote the file");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("a Parquet file").build().unwrap();
    let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(batches_to_rows(&batches), vec!["u1|100", "u4|400"]);
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, vec!["user_id", "points"]);
}

#[test]
fn format_parquet_with_output_writes_a_readable_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let target = dir.path().join("r.parquet");
    ok(&persona(&[
        "sql",
        "--store",
        p(&store),
        "--format",
        "parquet",
        "--output",
        p(&target),
        "-c",
        "SELECT user_id, amount FROM purchases ORDER BY order_id",
    ]));
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&target).unwrap()).unwrap().build().unwrap();
    let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(batches_to_rows(&batches), vec!["u1|10.5", "u2|20.0", "u2|5.25"]);
}

#[test]
fn sql_error_exits_1_with_error_sentence_and_caret_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let out = persona(&["sql", "--store", p(&store), "-c", "SELECT user_id,\n       no_such_column\nFROM users"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("no_such_column"), "{stderr}");
    assert!(stderr.contains("line 2, column 8"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let sql_line =
        lines.iter().position(|l| l.ends_with("|        no_such_column")).unwrap_or_else(|| panic!("{stderr}"));
    let caret = lines[sql_line + 1];
    // The caret sits under the first character of the column name.
    let column_at = lines[sql_line].find("no_such_column").unwrap();
    assert_eq!(caret.find('^'), Some(column_at), "{stderr}");
    assert!(text(&out.stdout).is_empty());

    let out = persona(&["sql", "--store", p(&store), "-c", "SELEC 1"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: ") && stderr.contains('^'), "{stderr}");
}

#[test]
fn now_option_pins_now_and_current_date() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let sql = "SELECT now() AS n, current_date AS d";
    let csv = ok(&persona(&["sql", "--store", p(&store), "--now", "2026-11-01", "--format", "csv", "-c", sql]));
    let row = csv.lines().nth(1).unwrap_or_else(|| panic!("{csv}"));
    assert!(row.starts_with("2026-11-01T00:00:00"), "{csv}");
    assert!(row.ends_with(",2026-11-01"), "{csv}");
    let csv = ok(&persona(&[
        "sql",
        "--store",
        p(&store),
        "--now",
        "2026-11-01T07:30:00+08:00",
        "--format",
        "csv",
        "-c",
        sql,
    ]));
    let row = csv.lines().nth(1).unwrap();
    assert!(row.starts_with("2026-10-31T23:30:00"), "{csv}");
    assert!(row.ends_with(",2026-10-31"), "{csv}");
    // Relative filters reproduce.
    let csv = ok(&persona(&[
        "sql",
        "--store",
        p(&store),
        "--now",
        "2026-10-03 00:00:00",
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS n FROM purchases WHERE ts >= now() - INTERVAL '1 day'",
    ]));
    assert_eq!(csv, "n\n2\n");
    let out = persona(&["sql", "--store", p(&store), "--now", "someday", "-c", sql]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn sql_from_a_file_and_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let script = write(dir.path(), "q.sql", "-- two statements\nSELECT 1 AS a;\nSELECT count(*) AS n FROM users;\n");
    let csv = ok(&persona(&["sql", "--store", p(&store), "--format", "csv", "-f", p(&script)]));
    assert!(csv.contains("a\n1\n") && csv.contains("n\n5\n"), "{csv}");

    let mut child = spawn(
        persona_bin()
            .args(["sql", "--store", p(&store), "--format", "csv"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    child.stdin.take().unwrap().write_all(b"SELECT max(points) AS m FROM users").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(ok(&out), "m\n500\n");
}

#[test]
fn sql_on_a_directory_that_is_not_a_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = persona(&["sql", "--store", p(dir.path()), "-c", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(p(dir.path())) && stderr.contains("not a Persona store"), "{stderr}");
    assert!(!dir.path().join("_persona").exists(), "sql must not create a store");
}

#[test]
fn import_error_exits_1_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let bad = write(
        dir.path(),
        "purchases-bad.csv",
        "order_id,user_id,product_id,channel_id,ts,quantity,amount\no9,u1,p1,app,2026-10-01 00:00:00,1,1\no10,who,p1,app,2026-10-01 00:00:00,1,1\n",
    );
    let out = persona(&["import", "--quiet", "--store", p(&store), p(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with(&format!("error: {}: line 3, column user_id: ", p(&bad))), "{stderr}");
    assert!(stderr.trim_end().ends_with("nothing was loaded"), "{stderr}");
    // Still version 1.
    let csv =
        ok(&persona(&["sql", "--store", p(&store), "--format", "csv", "-c", "SELECT count(*) AS n FROM purchases"]));
    assert_eq!(csv, "n\n3\n");
}

#[test]
fn import_dry_run_creates_no_store_and_refuses_a_repeat_load() {
    let dir = tempfile::tempdir().unwrap();
    let users = write(dir.path(), "in/users.csv", USERS_CSV);
    let store = dir.path().join("store");
    let out = persona(&["import", "--quiet", "--dry-run", "--store", p(&store), p(&users)]);
    ok(&out);
    assert!(text(&out.stderr).contains("dry run"), "{}", text(&out.stderr));
    assert!(!store.exists(), "a dry run creates nothing");

    let store = cli_store(dir.path());
    let out = persona(&["import", "--quiet", "--store", p(&store), p(&dir.path().join("in/purchases.csv"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already loaded"), "{}", text(&out.stderr));
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let out = persona(&["sql", "--store", p(&store), "--format", "parquet", "-c", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("error: "), "{}", text(&out.stderr));
    let out = persona(&["import", "--store", p(&store), "--table", "orders", p(&dir.path().join("in/users.csv"))]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = persona(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn demo_builds_a_store_answers_every_question_and_reuses_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("persona-demo");
    let out = persona(&["demo", "--users", "3000", "--quiet", "--dir", p(&demo)]);
    let stdout = ok(&out);
    for n in 1..=8 {
        assert!(stdout.contains(&format!("── {n}. ")), "question {n} missing:\n{stdout}");
    }
    assert!(stdout.contains("3000 customers"), "{stdout}");
    assert_eq!(stdout.matches(" ms)").count(), 8, "every answer has a timing:\n{stdout}");
    assert!(demo.join("exports/gold-a-lapsed.parquet").exists(), "the export question writes its file");
    assert!(!dir.path().join(".persona-demo-source").exists(), "the generated source files are removed");

    // A second run reuses the store: same version, same answers.
    let again = ok(&persona(&["demo", "--quiet", "--dir", p(&demo)]));
    let answers = |s: &str| {
        s.lines().filter(|l| l.starts_with("| ") && !l.contains(" ms")).map(str::to_string).collect::<Vec<_>>()
    };
    assert!(again.contains("(version 1, 3000 customers)"), "{again}");
    assert_eq!(answers(&stdout), answers(&again));
}

#[test]
fn no_indexes_takes_the_general_path_with_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let sql = "SELECT count(*) FROM users WHERE tier = 'gold' AND has_tag('A')";
    let with = ok(&persona(&["sql", "--store", p(&store), "--format", "csv", "-c", sql]));
    let without = ok(&persona(&["sql", "--store", p(&store), "--no-indexes", "--format", "csv", "-c", sql]));
    assert_eq!(with, without);
    let explain = |extra: &[&str]| {
        let mut args = vec!["sql", "--store", p(&store), "--format", "csv"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-c", "EXPLAIN SELECT count(*) FROM users WHERE tier = 'gold'"]);
        ok(&persona(&args))
    };
    assert!(explain(&[]).contains("full_filters"), "indexes answer the filter");
    assert!(!explain(&["--no-indexes"]).contains("full_filters"), "--no-indexes leaves it to the general path");
}

/// Issue 14, item 4: before, several statements with `--format parquet` wrote one corrupt file
/// (the second result appended to the first) and exited 0.
#[test]
fn format_parquet_with_several_statements_writes_one_file_per_statement() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let target = dir.path().join("two.parquet");
    let out = persona(&[
        "sql",
        "--store",
        p(&store),
        "--format",
        "parquet",
        "--output",
        p(&target),
        "-c",
        "SELECT 1 AS a; SELECT user_id AS b FROM users WHERE points > 300 ORDER BY user_id;",
    ]);
    ok(&out);
    let read = |path: &Path| {
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("a whole Parquet file").build().unwrap();
        let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
        let names: Vec<String> = batches[0].schema().fields().iter().map(|f| f.name().clone()).collect();
        (names, batches_to_rows(&batches))
    };
    assert_eq!(read(&dir.path().join("two-1.parquet")), (vec!["a".to_string()], vec!["1".to_string()]));
    assert_eq!(read(&dir.path().join("two-2.parquet")), (vec!["b".to_string()], vec!["u4".to_string(), "u5".into()]));
    assert!(!target.exists(), "no combined file");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("two-1.parquet") && stderr.contains("two-2.parquet"), "{stderr}");
}

/// Issue 14, item 17: several results stay machine-readable in every format, `SET` prints
/// nothing, and JSON keeps NULL values.
#[test]
fn several_results_stay_machine_readable_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let sql = "SELECT 1 AS a; SET persona.use_indexes = false; SELECT user_id, NULL AS n FROM users WHERE points >= 400 ORDER BY user_id";
    let run = |format: &str| ok(&persona(&["sql", "--store", p(&store), "--format", format, "-c", sql]));
    // CSV: a blank line between results, each with its header.
    assert_eq!(run("csv"), "a\n1\n\nuser_id,n\nu4,\nu5,\n");
    // JSON: one document per statement, each on its own line (JSON Lines), NULLs kept.
    let json = run("json");
    let docs: Vec<serde_json::Value> =
        json.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))).collect();
    assert_eq!(
        docs,
        vec![
            serde_json::json!([{"a": 1}]),
            serde_json::json!([{"user_id": "u4", "n": null}, {"user_id": "u5", "n": null}])
        ]
    );
    // Vertical records: a blank line between results (each numbers its records from 1).
    let vertical = run("vertical");
    assert_eq!(vertical.matches("-[ RECORD 1 ]").count(), 2, "{vertical}");
    assert!(vertical.contains("| 1\n\n-[ RECORD 1 ]"), "{vertical}");
    // A SET alone prints nothing at all.
    for format in ["table", "vertical", "csv", "json"] {
        let out =
            ok(&persona(&["sql", "--store", p(&store), "--format", format, "-c", "SET persona.use_indexes = false"]));
        assert_eq!(out, "", "{format}");
    }
}

/// Issue 14, item 10: before, `persona sql ... | head -2` said `error: arrow: Csv error: Broken
/// pipe` and exited 1.
#[test]
fn a_reader_that_stops_reading_is_a_normal_end_in_every_format() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    for format in ["table", "vertical", "csv", "json"] {
        let mut child = spawn(
            persona_bin()
                .args(["sql", "--store", p(&store), "--format", format, "-c"])
                .arg("SELECT v, v * 2 AS w FROM (SELECT unnest(range(0, 100000)) AS v)")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        // The reader is dropped here: the pipe is closed with most of the output unwritten.
        let out = child.wait_with_output().unwrap();
        assert!(!first.is_empty(), "{format}: some output came first");
        assert_eq!(out.status.code(), Some(0), "{format}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "", "{format}: quiet");
    }
}

/// Issue 14, item 11: before, a script starting with a `--` comment was refused by the argument
/// parser as an unknown option.
#[test]
fn a_command_starting_with_a_comment_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let csv = ok(&persona(&["sql", "--store", p(&store), "--format", "csv", "-c", "-- daily report\nSELECT 1 AS one"]));
    assert_eq!(csv, "one\n1\n");
}

/// Issue 14, item 12: before, a misspelled tag silently matched nobody.
#[test]
fn a_misspelled_tag_or_audience_is_warned_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let tags = write(dir.path(), "in/user_tags.csv", "user_id,tag\nu1,vip_candidate\nu2,vip\nu3,vip\n");
    ok(&persona(&["import", "--quiet", "--store", p(&store), p(&tags)]));
    let sql = |q: &str| persona(&["sql", "--store", p(&store), "--format", "csv", "-c", q]);

    let out = sql("SELECT count(*) AS n FROM users WHERE has_tag('vip_candidat')");
    assert_eq!(ok(&out), "n\n0\n");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("warning: there is no tag 'vip_candidat' (did you mean 'vip_candidate'?)"), "{stderr}");
    let out = sql("SELECT count(*) AS n FROM user_tags WHERE tag = 'vipp'");
    assert_eq!(ok(&out), "n\n0\n");
    assert!(text(&out.stderr).contains("there is no tag 'vipp' (did you mean 'vip'?)"), "{}", text(&out.stderr));
    // Known tags: no warning.
    let out = sql("SELECT count(*) AS n FROM users WHERE has_tag('vip') OR has_tag('vip_candidate')");
    assert_eq!(ok(&out), "n\n3\n");
    assert_eq!(text(&out.stderr), "");

    ok(&sql("CREATE AUDIENCE winback AS SELECT user_id FROM users WHERE tier = 'gold'"));
    let out = sql("SELECT count(*) AS n FROM users WHERE in_audience('winbak')");
    assert!(
        text(&out.stderr).contains("warning: there is no saved audience 'winbak' (did you mean 'winback'?)"),
        "{}",
        text(&out.stderr)
    );
}

/// Issue 14, item 16: before, a missing audience in `DROP AUDIENCE` exited 2 like a command-line
/// mistake, while the same name in `in_audience` exited 1.
#[test]
fn only_command_line_mistakes_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    for statement in ["DROP AUDIENCE winbak", "SELECT count(*) FROM users WHERE in_audience('winbak')"] {
        let out = persona(&["sql", "--store", p(&store), "-c", statement]);
        assert_eq!(out.status.code(), Some(1), "{statement}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("winbak"), "{}", text(&out.stderr));
    }
    let out = persona(&["sql", "--store", p(&store), "--format", "parquet", "-c", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = persona(&["import", "--store", p(&store), p(&dir.path().join("in/notes.txt.csv"))]);
    assert_eq!(out.status.code(), Some(1), "a missing file is no usage error: {}", text(&out.stderr));
    let unnamed = write(dir.path(), "in/orders.csv", PURCHASES_CSV);
    let out = persona(&["import", "--store", p(&store), p(&unnamed)]);
    assert_eq!(out.status.code(), Some(2), "a file no table is named after: {}", text(&out.stderr));
}

/// Issue 14, item 15: before, a value of the wrong type surfaced as DataFusion internals ("Optimizer
/// rule 'simplify_expressions' failed caused by Arrow error: Cast error: ...") with no position.
#[test]
fn a_value_of_the_wrong_type_is_one_sentence_with_a_caret() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let out = persona(&["sql", "--store", p(&store), "-c", "SELECT * FROM users WHERE points > 'abc'"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(
            "error: column points (BIGINT) cannot be compared with 'abc', which is not a BIGINT (at line 1, column 36)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("Optimizer rule"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let sql_line = lines.iter().position(|l| l.ends_with("points > 'abc'")).unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(lines[sql_line + 1].find('^'), lines[sql_line].find("'abc'"), "{stderr}");
}

/// Issue 14, item 13: new custom columns are named in the import summary; a near-duplicate of a
/// known column is refused naming the file and the column.
#[test]
fn import_names_new_columns_and_refuses_a_near_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = cli_store(dir.path());
    let users = write(dir.path(), "in2/users.csv", "user_id,fav_color\nu1,red\n");
    let out = persona(&["import", "--quiet", "--store", p(&store), p(&users)]);
    ok(&out);
    assert!(text(&out.stderr).contains("new column(s): fav_color VARCHAR"), "{}", text(&out.stderr));
    let users = write(dir.path(), "in3/users.csv", "user_id,Tier\nu1,gold\n");
    let out = persona(&["import", "--quiet", "--store", p(&store), p(&users)]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with(&format!("error: {}: column Tier: ", p(&users))), "{stderr}");
    assert!(stderr.contains("'tier'"), "{stderr}");
}
