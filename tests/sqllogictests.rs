//! The SQL test runner: every `sql/**/*.slt` file runs on a fresh store in its own temp directory,
//! loaded from the committed sample in `datasets/sample/`, with `now()` pinned to
//! 2026-11-01 00:00:00 and a fixed number of partitions so that plans are deterministic.
//!
//! `cargo test --test sqllogictests` runs them all; `cargo test --test sqllogictests -- FILTER`
//! runs the files whose path contains FILTER; `-- --complete` rewrites the expected output of the
//! selected files (review the diff before committing).
//! Each file runs twice, with the runner labels `indexes_on` and `indexes_off` (bitmap indexes
//! on and off); both must pass, and `onlyif indexes_on` marks records such as EXPLAIN output.
//! `$__TEST_DIR__` in a file (after `control substitution on`) is the file's temp directory.
//! Files under `sql/identity/` also load `datasets/identity/identities.csv` after the sample.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use persona::{ImportOptions, Session, SessionOptions, Store};
use sqllogictest::{DBOutput, DefaultColumnType};

/// One store + session per test file.
struct PersonaDb {
    session: Session,
}

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

#[async_trait]
impl sqllogictest::AsyncDB for PersonaDb {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let df = self.session.sql(sql).await.map_err(|e| DbError(e.to_string()))?;
        use datafusion::logical_expr::LogicalPlan;
        let is_query = !matches!(
            df.logical_plan(),
            LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::Copy(_) | LogicalPlan::Statement(_)
        );
        let schema = Arc::clone(df.schema().inner());
        let batches = df.collect().await.map_err(|e| DbError(persona::Error::from(e).to_string()))?;
        if !is_query {
            return Ok(DBOutput::StatementComplete(batches.iter().map(|b| b.num_rows() as u64).sum()));
        }
        let types = schema.fields().iter().map(|f| column_type(f.data_type())).collect();
        let mut rows = Vec::new();
        for batch in &batches {
            let formatters: Vec<_> = batch.columns().iter().map(cell_formatter).collect::<Result<_, _>>()?;
            for row in 0..batch.num_rows() {
                let cells: Vec<String> = formatters.iter().map(|f| f(row)).collect();
                // A multi-line cell (an EXPLAIN plan) becomes one row per line, the other cells
                // shown on its first line only, so that expected output stays readable and diffable.
                let height = cells.iter().map(|c| c.lines().count()).max().unwrap_or(1);
                if height <= 1 {
                    rows.push(cells);
                    continue;
                }
                for line in 0..height {
                    rows.push(
                        cells
                            .iter()
                            .map(|c| match c.lines().nth(line) {
                                Some(l) if c.contains('\n') => l.to_string(),
                                Some(l) if line == 0 => l.to_string(),
                                _ => "·".to_string(),
                            })
                            .collect(),
                    );
                }
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "persona"
    }
}

fn column_type(dt: &DataType) -> DefaultColumnType {
    if dt.is_integer() {
        DefaultColumnType::Integer
    } else if dt.is_floating() || matches!(dt, DataType::Decimal128(..)) {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

/// Formats cells the way the expected output is written: NULL, (empty) for an empty string,
/// floats with up to 6 significant decimals.
fn cell_formatter(column: &ArrayRef) -> Result<Box<dyn Fn(usize) -> String + '_>, DbError> {
    let options = FormatOptions::default().with_null("NULL");
    let formatter = ArrayFormatter::try_new(column.as_ref(), &options).map_err(|e| DbError(e.to_string()))?;
    let is_float = column.data_type().is_floating();
    let is_string = matches!(column.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    Ok(Box::new(move |row| {
        if column.is_null(row) {
            return "NULL".to_string();
        }
        let text = formatter.value(row).to_string();
        if is_float && let Ok(v) = text.parse::<f64>() {
            let s = format!("{v:.6}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            return if s == "-0" { "0".into() } else { s.to_string() };
        }
        if is_string && text.is_empty() {
            return "(empty)".to_string();
        }
        // Multi-line cells (plans) lose trailing blanks, which the .slt format cannot keep.
        if text.contains('\n') {
            return text.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim_end().to_string();
        }
        text
    }))
}

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            slt_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "slt") {
            out.push(path);
        }
    }
}

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/sample")
}

/// `extra`: more inputs loaded after the sample (`datasets/identity/` for `sql/identity/`).
async fn open_db(dir: &Path, use_indexes: bool, extra: Option<PathBuf>) -> Result<PersonaDb, DbError> {
    let store_dir = dir.join("store");
    let store = Store::open_or_create(&store_dir).map_err(|e| DbError(e.to_string()))?;
    store
        .import(&[sample_dir()], &ImportOptions::default())
        .map_err(|e| DbError(format!("loading the sample failed: {e}")))?;
    if let Some(extra) = extra {
        store
            .import(&[extra], &ImportOptions::default())
            .map_err(|e| DbError(format!("loading the extra inputs failed: {e}")))?;
    }
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .map_err(|e| DbError(e.to_string()))?
        .with_timezone(&chrono::Utc);
    let session = store
        .session_with(&SessionOptions {
            now: Some(now),
            target_partitions: Some(2),
            use_indexes: Some(use_indexes),
            ..SessionOptions::default()
        })
        .map_err(|e| DbError(e.to_string()))?;
    Ok(PersonaDb { session })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let complete = args.iter().any(|a| a == "--complete");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    let mut files = Vec::new();
    slt_files(&root, &mut files);
    files.sort();
    files.retain(|f| filters.is_empty() || filters.iter().any(|flt| f.to_string_lossy().contains(flt.as_str())));
    if files.is_empty() {
        return Err("no .slt files matched".into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut failures = Vec::new();
    // Every file runs twice, with the bitmap indexes on and off: the answers must not change.
    let runs: &[bool] = if complete { &[true] } else { &[true, false] };
    for (file, use_indexes) in files.iter().flat_map(|f| runs.iter().map(move |u| (f, *u))) {
        let label = if use_indexes { "indexes_on" } else { "indexes_off" };
        let name = format!("{} [{label}]", file.strip_prefix(&root).unwrap_or(file).display());
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().to_path_buf();
        let result: Result<(), String> = rt.block_on(async {
            let db_dir = dir.clone();
            // The identity files also load the identifiers that link some sample users.
            let extra = file
                .strip_prefix(&root)
                .is_ok_and(|f| f.starts_with("identity"))
                .then(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/identity/identities.csv"));
            let mut runner = sqllogictest::Runner::new(move || {
                let (db_dir, extra) = (db_dir.clone(), extra.clone());
                async move { open_db(&db_dir, use_indexes, extra).await }
            });
            runner.add_label(label);
            runner.set_var("__TEST_DIR__".to_string(), dir.display().to_string());
            if complete {
                let col_sep = " ";
                runner
                    .update_test_file(
                        file,
                        col_sep,
                        sqllogictest::default_validator,
                        sqllogictest::default_normalizer,
                        sqllogictest::strict_column_validator,
                    )
                    .await
                    .map_err(|e| e.to_string())
            } else {
                runner.run_file_async(file).await.map_err(|e| e.display(true).to_string())
            }
        });
        match result {
            Ok(()) => println!("ok    {name}"),
            Err(e) => {
                println!("FAIL  {name}\n{e}");
                failures.push(name);
            }
        }
    }
    if failures.is_empty() {
        println!("{} sqllogictest file(s) passed, each with indexes on and off", files.len());
        Ok(())
    } else {
        Err(format!("{} sqllogictest run(s) failed: {}", failures.len(), failures.join(", ")).into())
    }
}
