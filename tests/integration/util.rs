//! Shared helpers of the integration tests: writing small CSV and Parquet inputs, importing them,
//! capturing a store's observable state (to prove that a refused load changed nothing), and running
//! SQL into plain strings that are easy to compare.
//!
//! Child processes and writer locks: the writer lock is an OS lock on an open file, and a child
//! forked by *any* thread of this test process inherits every open descriptor (lock included) until
//! it execs. A test that drops a writer and takes the next one while another test is spawning
//! `persona` would then see a spurious `Locked`. So every lock-taking call goes through
//! [`lock_scope`] (shared) and every spawn through [`spawn`] (exclusive): no fork happens while a
//! test holds a store's lock file open.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use persona::error::InputLocation;
use persona::{Error, ImportOptions, ImportSummary, Session, SessionOptions, Store, Table};

static FORKS: RwLock<()> = RwLock::new(());

thread_local! {
    static SCOPE_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// While alive, no child process is spawned by this test process (see the module doc). Nests.
pub struct LockScope {
    _guard: Option<RwLockReadGuard<'static, ()>>,
}

impl Drop for LockScope {
    fn drop(&mut self) {
        SCOPE_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// Enter before anything that opens a store's lock file (import, writer, open_or_create).
pub fn lock_scope() -> LockScope {
    let depth = SCOPE_DEPTH.with(|d| {
        let depth = d.get();
        d.set(depth + 1);
        depth
    });
    LockScope { _guard: (depth == 0).then(|| FORKS.read().unwrap_or_else(PoisonError::into_inner)) }
}

/// Spawns a child while no lock file of this process is open.
pub fn spawn(cmd: &mut Command) -> Child {
    assert_eq!(SCOPE_DEPTH.with(Cell::get), 0, "spawn inside a lock scope would deadlock");
    let _exclusive = FORKS.write().unwrap_or_else(PoisonError::into_inner);
    cmd.spawn().expect("start the child process")
}

/// Runs a child to completion, capturing its output.
pub fn output(cmd: &mut Command) -> Output {
    let child = spawn(cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()));
    child.wait_with_output().expect("wait for the child process")
}

/// Creates (or opens) a store.
pub fn create_store(path: impl AsRef<Path>) -> Store {
    let _scope = lock_scope();
    Store::open_or_create(path).expect("create the store")
}

/// Writes `content` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create the input folder");
    }
    std::fs::write(&path, content).expect("write the input file");
    path
}

/// Writes a Parquet file with the given columns, `rows_per_group` rows per row group.
pub fn write_parquet(dir: &Path, name: &str, columns: Vec<(&str, ArrayRef)>, rows_per_group: usize) -> PathBuf {
    let path = dir.join(name);
    let fields: Vec<Field> = columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns.into_iter().map(|(_, a)| a).collect())
        .expect("a valid record batch");
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(rows_per_group)).build();
    let file = std::fs::File::create(&path).expect("create the Parquet file");
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).expect("a Parquet writer");
    // Write row by row so that every row group really holds `rows_per_group` rows.
    for row in 0..batch.num_rows() {
        writer.write(&batch.slice(row, 1)).expect("write a row");
    }
    writer.close().expect("close the Parquet file");
    path
}

/// Imports `files` with default options (tables recognised by name).
pub fn import(store: &Store, files: &[&Path]) -> persona::Result<ImportSummary> {
    import_with(store, files, &ImportOptions::default())
}

/// Imports `files` with `options`.
pub fn import_with(store: &Store, files: &[&Path], options: &ImportOptions) -> persona::Result<ImportSummary> {
    let files: Vec<PathBuf> = files.iter().map(|p| p.to_path_buf()).collect();
    let _scope = lock_scope();
    store.import(&files, options)
}

/// Imports `files` into a forced table.
pub fn import_as(store: &Store, table: Table, files: &[&Path]) -> persona::Result<ImportSummary> {
    import_with(store, files, &ImportOptions { table: Some(table), ..ImportOptions::default() })
}

/// The standard five users u1..u5 of most tests.
pub const USERS_CSV: &str = "user_id,name,tier,points\n\
u1,Ann,gold,100\n\
u2,Bob,silver,200\n\
u3,Cat,bronze,300\n\
u4,Dan,gold,400\n\
u5,Eve,platinum,500\n";

/// Three purchases of known users.
pub const PURCHASES_CSV: &str = "order_id,user_id,product_id,channel_id,ts,quantity,amount\n\
o1,u1,p1,app,2026-10-01 10:00:00,1,10.5\n\
o2,u2,p2,web,2026-10-02 11:00:00,2,20\n\
o3,u2,p1,app,2026-10-03 12:00:00,1,5.25\n";

/// A store in `dir/store` holding USERS_CSV (version 1) and PURCHASES_CSV (version 2).
pub fn base_store(dir: &Path) -> Store {
    let store = create_store(dir.join("store"));
    let inputs = dir.join("base-inputs");
    let users = write(&inputs, "users.csv", USERS_CSV);
    import(&store, &[&users]).expect("load the base users");
    let purchases = write(&inputs, "purchases.csv", PURCHASES_CSV);
    import(&store, &[&purchases]).expect("load the base purchases");
    assert_eq!(store.snapshot().unwrap().version(), 2);
    store
}

/// Everything about a store that a load could change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreState {
    pub version: u64,
    pub versions: Vec<u64>,
    pub user_count: u64,
    pub rows: Vec<(Table, u64)>,
    pub users_columns: Vec<String>,
    /// Every file under the store root (relative), the lock file excepted.
    pub files: BTreeSet<PathBuf>,
}

pub fn state(store: &Store) -> StoreState {
    let snap = store.snapshot().expect("snapshot");
    let m = snap.manifest();
    StoreState {
        version: snap.version(),
        versions: store.versions().expect("versions"),
        user_count: snap.user_count(),
        rows: Table::ALL.iter().map(|&t| (t, m.rows(t))).collect(),
        users_columns: m.users_columns.iter().map(|c| format!("{} {:?}", c.name, c.ty)).collect(),
        files: files_under(store.root()),
    }
}

/// Every regular file under `root`, relative to it (the writer lock file excepted).
pub fn files_under(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).expect("under the root").to_path_buf();
                if rel != Path::new("_persona/LOCK") {
                    out.insert(rel);
                }
            }
        }
    }
    out
}

/// Runs an import that must fail and proves that it changed nothing; returns the error.
pub fn refused(store: &Store, files: &[&Path]) -> Error {
    refused_with(store, files, None)
}

/// As [`refused`], with the table forced.
pub fn refused_with(store: &Store, files: &[&Path], table: Option<Table>) -> Error {
    let before = state(store);
    let result = match table {
        Some(t) => import_as(store, t, files),
        None => import(store, files),
    };
    let err = match result {
        Ok(summary) => panic!("the load of {files:?} was accepted: {summary:?}"),
        Err(e) => e,
    };
    assert_eq!(state(store), before, "the failed load ({err}) changed the store");
    // A fresh handle sees the same thing (nothing was half-published on disk).
    let reopened = Store::open(store.root()).expect("reopen after a failed load");
    assert_eq!(state(&reopened), before, "the failed load ({err}) changed the store on disk");
    err
}

/// The parts of an `Error::Input`, or a panic naming the unexpected error.
pub fn input_error(err: &Error) -> (&Path, &InputLocation, Option<&str>, &str) {
    match err {
        Error::Input { file, location, column, message } => {
            (file.as_path(), location, column.as_deref(), message.as_str())
        }
        other => panic!("expected an input error, got {other:?}: {other}"),
    }
}

/// Asserts an input error names `file` (by file name), `location` and `column`, and that its
/// sentence says so too. Returns the message.
pub fn assert_input_error(err: &Error, file: &Path, location: InputLocation, column: Option<&str>) -> String {
    let (f, loc, col, message) = input_error(err);
    assert_eq!(f.file_name(), file.file_name(), "file of: {err}");
    assert_eq!(loc, &location, "location of: {err}");
    assert_eq!(col, column, "column of: {err}");
    let text = err.to_string();
    assert!(text.contains(&*file.to_string_lossy()), "the message names the file: {text}");
    match &location {
        InputLocation::Line(n) => assert!(text.contains(&format!("line {n}")), "the message names the line: {text}"),
        InputLocation::RowGroup { row_group, row } => assert!(
            text.contains(&format!("row group {row_group}, row {row}")),
            "the message names the row group and row: {text}"
        ),
        InputLocation::Row(n) => assert!(text.contains(&format!("row {n}")), "the message names the row: {text}"),
        InputLocation::File => {}
    }
    if let Some(c) = column {
        assert!(text.contains(&format!("column {c}")), "the message names the column: {text}");
    }
    assert!(text.ends_with("nothing was loaded"), "the message says nothing was loaded: {text}");
    message.to_string()
}

/// A session with `now()` pinned and two partitions.
pub fn session(store: &Store) -> Session {
    store
        .session_with(&SessionOptions {
            now: Some(chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap().to_utc()),
            target_partitions: Some(2),
            ..SessionOptions::default()
        })
        .expect("a session")
}

/// Runs `sql` and returns each row as its values joined by `|` (NULL for nulls).
pub async fn rows(session: &Session, sql: &str) -> Vec<String> {
    let batches = session.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    batches_to_rows(&batches)
}

pub fn batches_to_rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let values: Vec<String> = batch
                .columns()
                .iter()
                .map(|col| {
                    if col.is_null(row) {
                        "NULL".to_string()
                    } else {
                        arrow::util::display::array_value_to_string(col, row).expect("displayable")
                    }
                })
                .collect();
            out.push(values.join("|"));
        }
    }
    out
}

/// Runs a query returning one integer.
pub async fn count(session: &Session, sql: &str) -> i64 {
    let rows = rows(session, sql).await;
    assert_eq!(rows.len(), 1, "{sql} returned {rows:?}");
    rows[0].parse().unwrap_or_else(|_| panic!("{sql} returned {rows:?}"))
}

/// Store files (under `data/`, `ids/`, `index/`, `catalog/`) that no manifest on disk references,
/// relative to the root: what an interrupted writer leaves behind.
pub fn unreferenced_files(root: &Path) -> BTreeSet<String> {
    fn strings(value: &serde_json::Value, out: &mut BTreeSet<String>) {
        match value {
            serde_json::Value::String(s) => {
                out.insert(s.clone());
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let mut referenced = BTreeSet::new();
    let manifests = root.join("_persona/manifests");
    for entry in std::fs::read_dir(&manifests).expect("list the manifests").flatten() {
        let text = std::fs::read_to_string(entry.path()).expect("read a manifest");
        // The first line is the checksum header.
        let json = text.split_once('\n').map(|(_, j)| j).unwrap_or(&text);
        let value: serde_json::Value = serde_json::from_str(json).expect("a manifest is JSON");
        strings(&value, &mut referenced);
    }
    files_under(root)
        .into_iter()
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .filter(|p| ["data/", "ids/", "index/", "catalog/"].iter().any(|d| p.starts_with(d)))
        .filter(|p| !referenced.contains(p))
        .collect()
}

/// The `persona` binary under test: `$PERSONA_BIN` when set, else the one Cargo built for this
/// test run. (Worktrees sharing one `CARGO_TARGET_DIR` share `target/debug/persona` too, so a
/// build in another worktree can replace it; `PERSONA_BIN=target/debug/deps/persona-<hash>`
/// pins this worktree's build.)
pub fn persona_bin() -> Command {
    match std::env::var_os("PERSONA_BIN") {
        Some(path) => Command::new(path),
        None => Command::new(env!("CARGO_BIN_EXE_persona")),
    }
}

/// The standard output of a child that must have succeeded; otherwise the test fails showing its
/// exit code and both streams.
pub fn ok(out: &Output) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The committed sample data set (`datasets/sample`, 2,000 users), a folder `import` takes whole.
pub fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/sample")
}

/// `persona check` finds nothing in the store's current version, and the deep check neither: its
/// index equals one rebuilt from the data.
pub fn check_passes(store: &Store) {
    let report = persona::store::check::check(store, persona::index::format::verify_file).unwrap();
    assert!(report.problems.is_empty(), "check found problems: {:?}", report.problems);
    let differences = persona::ingest::repair::index_differences(store).unwrap();
    assert!(differences.is_empty(), "the index differs from the data: {differences:?}");
}

/// The rows of each of `queries`, with the indexes on and then off (one session).
pub async fn answers_both_ways(store: &Store, queries: &[&str]) -> Vec<Vec<String>> {
    let session = session(store);
    let mut out = Vec::new();
    for indexes in [true, false] {
        rows(&session, &format!("SET persona.use_indexes = {indexes}")).await;
        for q in queries {
            out.push(rows(&session, q).await);
        }
    }
    out
}

/// Copies a directory tree (a store to damage or fail without touching the original).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
