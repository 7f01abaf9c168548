//! Fault injection at every store I/O point (issue 17, item 5; redb's two-pass crash test). For
//! each write operation — an import into an existing store, `UPDATE`, `DELETE FROM users`,
//! `forget`, `INSERT`, an identity resolution, a compaction, a vacuum, a backup — pass 1 runs it through a counting
//! [`FaultyIo`] and records the answers before (version v) and after (v+1). Then, for every
//! operation k it made, the operation runs again on a fresh copy of the store with operation k
//! failing: with an error, with a short write (at writes), and with a crash (after which the
//! directory is cut back to what was durable). Each time the store must reopen at exactly v or
//! v+1, answer as that version did, pass the deep `check` after a writer's recovery, and keep
//! every file of every version still listed. The number of points is printed.

// The points tested are printed (docs/reliability.md records them); each point is said on stderr
// before it runs, so that a failure inside a helper shows which point it was.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use persona::Store;
use persona::ingest::compact::CompactOptions;
use persona::store::faulty::{Fault, FaultyIo};
use persona::store::io;
use persona::store::manifest::Manifest;
use persona::store::vacuum::{KeepPolicy, vacuum};

use crate::util::*;

/// The first `n` data lines of the sample's `table` (header kept) from line `skip`, written under
/// `dir`.
fn slice(table: &str, skip: usize, n: usize, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(sample_dir().join(table).join(format!("{table}-00000.csv"))).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let body: Vec<&str> = lines.skip(skip).take(n).collect();
    write(&dir.join(format!("{table}-{skip}")), &format!("{table}.csv"), format!("{header}\n{}\n", body.join("\n")))
}

/// A small store in `dir/store`, loaded in a few imports (so that compaction has files to merge
/// and vacuum has versions to remove), with a rule tag.
pub async fn base_store(dir: &Path) -> PathBuf {
    let root = dir.join("store");
    let store = create_store(&root);
    let inputs = dir.join("inputs");
    for table in ["products", "channels"] {
        import(&store, &[&sample_dir().join(table)]).unwrap();
    }
    for part in 0..2 {
        let files = [
            slice("users", part * 60, 60, &inputs),
            slice("purchases", part * 150, 150, &inputs),
            slice("events", part * 150, 150, &inputs),
            slice("user_tags", part * 60, 60, &inputs),
        ];
        let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        import(&store, &files).unwrap();
    }
    let _scope = lock_scope();
    rows(&session(&store), "CREATE TAG big_spender AS SELECT user_id FROM users WHERE points > 5000").await;
    root
}

/// Answers over every table and the tag, compared across versions.
const QUERIES: &[&str] = &[
    "SELECT count(*), sum(points) FROM users",
    "SELECT tier, count(*) FROM users GROUP BY tier ORDER BY tier",
    "SELECT count(*), round(sum(amount), 2) FROM purchases",
    "SELECT count(*) FROM events",
    "SELECT tag, count(*) FROM user_tags GROUP BY tag ORDER BY tag",
    "SELECT count(*) FROM users WHERE has_tag('big_spender')",
    "SELECT count(*), count(DISTINCT person_id) FROM user_persons",
    "SELECT status, count(*) FROM identity_links GROUP BY status ORDER BY status",
];

/// The write operations under test.
#[derive(Debug, Clone, Copy)]
enum Op {
    Import,
    Update,
    DeleteUsers,
    Forget,
    Insert,
    Identities,
    Split,
    ForgetPersons,
    Purge,
    Compact,
    Vacuum,
    Backup,
}

impl Op {
    /// Runs the operation on `store` (inputs under `dir`).
    async fn run(self, store: &Store, dir: &Path) -> persona::Result<()> {
        let _scope = lock_scope();
        match self {
            Op::Import => {
                let files = [slice("users", 100, 40, dir), slice("purchases", 300, 100, dir)];
                store.import(&files, &persona::ImportOptions::default()).map(drop)
            }
            Op::Update => sql(store, "UPDATE users SET points = points + 1 WHERE tier = 'gold'").await,
            Op::DeleteUsers => sql(store, "DELETE FROM users WHERE tier = 'platinum'").await,
            Op::Forget => store.forget(&["u1".to_string(), "u7".to_string()]).map(drop),
            Op::Insert => {
                sql(store, "INSERT INTO users (user_id, tier, points) VALUES ('new1', 'gold', 9000), ('new2', NULL, 1)")
                    .await
            }
            Op::Identities => import_identities(store, dir),
            // On a store with identities ([`every_point`] imports them first): a split of two
            // users of one person, decided on their component (link overrides, a state delta,
            // the persons file).
            Op::Split => {
                let split = persona::ingest::identity::SplitRequest::Users("u2".into(), "u3".into());
                store.split_identity(split).map(drop)
            }
            // On a store with identities: u2 is one person with u3 through a unionid, so the
            // forget decides their component again (overrides hiding u2's links, a state delta,
            // the persons) beside its dead rows.
            Op::ForgetPersons => store.forget(&["u2".to_string(), "u9".to_string()]).map(drop),
            // After such a forget: the fact files with dead rows, the users files and the
            // identity links written again without them.
            Op::Purge => store.purge_dead_rows().map(drop),
            Op::Compact => {
                let options = CompactOptions { fact_rows: 8_000, users_rows: 1_500, ..CompactOptions::default() };
                store.compact(&options).map(drop)
            }
            Op::Vacuum => vacuum(store, KeepPolicy { versions: Some(2), newer_than: None }).map(drop),
            Op::Backup => persona::store::backup::backup(store, &backup_target(store)).map(drop),
        }
    }
}

/// The store's first identity resolution: its state file, links and persons.
fn import_identities(store: &Store, dir: &Path) -> persona::Result<()> {
    let identities = write(
        &dir.join("identities"),
        "identities.csv",
        "user_id,id_type,id_value,source,ts\n\
         u1,phone,13418494637,till,2026-03-01 10:00:00\n\
         u2,wx_unionid,oU_fault_1,wx_oa,2026-03-02 10:00:00\n\
         u3,wx_unionid,oU_fault_1,wx_mini,2026-03-02 11:00:00\n\
         u4,device_id,dev-1,app,2026-03-03 10:00:00\n\
         u5,email,null,web,2026-03-03 11:00:00\n",
    );
    store.import(&[identities], &persona::ImportOptions::default()).map(drop)
}

/// Where [`Op::Backup`] writes: beside the store, under the directory the faults are installed on.
fn backup_target(store: &Store) -> PathBuf {
    store.root().parent().unwrap().join("backup")
}

async fn sql(store: &Store, statement: &str) -> persona::Result<()> {
    session(store).query(statement).await.map(drop)
}

/// The answers of [`QUERIES`] on the store's current version.
async fn answers(store: &Store) -> Vec<Vec<String>> {
    let session = session(store);
    let mut out = Vec::new();
    for q in QUERIES {
        out.push(rows(&session, q).await);
    }
    out
}

/// Every manifest on disk (after a writer's recovery removed unpublished ones) parses and every
/// file it refers to exists.
fn every_listed_version_is_whole(store: &Store, point: &str) {
    for version in store.versions().unwrap() {
        let path = persona::store::layout::manifest_path(store.root(), version);
        let manifest = Manifest::from_bytes(&std::fs::read(&path).unwrap(), &path)
            .unwrap_or_else(|e| panic!("{point}: version {version}: {e}"));
        for file in manifest.referenced_files() {
            assert!(store.root().join(&file).exists(), "{point}: version {version} lost {file}");
        }
    }
}

/// What one run of an operation did.
struct Run {
    log: Vec<&'static str>,
    fired: bool,
}

/// Copies the base store to a fresh folder under `scratch`, runs `op` there with `faulty`
/// installed, applies the crash image if it crashed; returns the store's new root.
async fn run_once(base: &Path, scratch: &Path, op: Op, faulty: FaultyIo) -> (PathBuf, Run, persona::Result<()>) {
    let _ = std::fs::remove_dir_all(scratch);
    let root = scratch.join("store");
    crate::util::copy_tree(base, &root);
    let inputs = scratch.join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    let installed_on = std::fs::canonicalize(scratch).unwrap();
    let outcome = {
        let _installed = io::install(&installed_on, Arc::new(faulty.clone()));
        let store = Store::open(&root).unwrap();
        op.run(&store, &inputs).await
    };
    if faulty.crashed() {
        faulty.crash_image();
    }
    (root, Run { log: faulty.log(), fired: faulty.fired() }, outcome)
}

/// The store after a fault: at v or v+1, answering as that version, whole, checked.
async fn assert_recovered(
    root: &Path,
    op: Op,
    point: &str,
    before: &(u64, Vec<Vec<String>>),
    after: &(u64, Vec<Vec<String>>),
) {
    let store = Store::open(root).unwrap_or_else(|e| panic!("{op:?} {point}: the store does not open: {e}"));
    let version = store.snapshot().unwrap().version();
    let expected = if version == before.0 {
        &before.1
    } else if version == after.0 {
        &after.1
    } else {
        panic!("{op:?} {point}: opened at version {version}, not {} or {}", before.0, after.0)
    };
    assert_eq!(&answers(&store).await, expected, "{op:?} {point}: answers of version {version}");
    {
        // A writer's recovery: unpublished manifests and files removed.
        let _scope = lock_scope();
        drop(store.writer().unwrap_or_else(|e| panic!("{op:?} {point}: no writer: {e}")));
    }
    every_listed_version_is_whole(&store, point);
    check_passes(&store);
    if matches!(op, Op::Backup) && backup_target(&store).exists() {
        let copy = Store::open(backup_target(&store)).unwrap_or_else(|e| panic!("{op:?} {point}: backup: {e}"));
        assert_eq!(copy.snapshot().unwrap().version(), before.0, "{op:?} {point}: the backup's version");
        check_passes(&copy);
    }
}

/// Pass 1 and pass 2 for `op`; returns (points, runs).
async fn every_point(op: Op) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let base = base_store(dir.path()).await;
    if matches!(op, Op::Split | Op::ForgetPersons | Op::Purge) {
        let _scope = lock_scope();
        import_identities(&Store::open(&base).unwrap(), &dir.path().join("identities")).unwrap();
    }
    if matches!(op, Op::Purge) {
        let _scope = lock_scope();
        Store::open(&base).unwrap().forget(&["u2".to_string(), "u9".to_string()]).unwrap();
    }
    let before = {
        let store = Store::open(&base).unwrap();
        (store.snapshot().unwrap().version(), answers(&store).await)
    };
    let scratch = dir.path().join("run");
    let (root, counted, outcome) = run_once(&base, &scratch, op, FaultyIo::counting()).await;
    outcome.unwrap_or_else(|e| panic!("{op:?} without faults: {e}"));
    let after = {
        let store = Store::open(&root).unwrap();
        (store.snapshot().unwrap().version(), answers(&store).await)
    };
    match op {
        Op::Vacuum | Op::Backup => assert_eq!(after.0, before.0),
        _ => assert_eq!(after.0, before.0 + 1, "{op:?} commits one version"),
    }
    let points = counted.log.len();
    let mut runs = 0;
    for k in 0..points {
        for fault in [Fault::Error, Fault::ShortWrite, Fault::Crash] {
            if fault == Fault::ShortWrite && counted.log[k] != "write" {
                continue;
            }
            let point = format!("operation {k} ({}) failing with {fault:?}", counted.log[k]);
            eprintln!("faults: {op:?} {point}");
            let (root, run, outcome) = run_once(&base, &scratch, op, FaultyIo::failing(k, fault)).await;
            assert!(run.fired, "{op:?} {point}: never reached (the operation count is not deterministic)");
            if fault == Fault::ShortWrite {
                outcome.unwrap_or_else(|e| panic!("{op:?} {point}: a short write is not an error: {e}"));
            }
            assert_recovered(&root, op, &point, &before, &after).await;
            runs += 1;
        }
    }
    (points, runs)
}

macro_rules! every_point_test {
    ($name:ident, $op:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (points, runs) = every_point($op).await;
            println!("faults: {:?}: {points} I/O points, {runs} failed runs, all recovered", $op);
        }
    };
}

every_point_test!(every_io_point_of_an_import_recovers, Op::Import);
every_point_test!(every_io_point_of_an_update_recovers, Op::Update);
every_point_test!(every_io_point_of_a_delete_from_users_recovers, Op::DeleteUsers);
every_point_test!(every_io_point_of_a_forget_recovers, Op::Forget);
every_point_test!(every_io_point_of_an_insert_recovers, Op::Insert);
every_point_test!(every_io_point_of_an_identity_resolution_recovers, Op::Identities);
every_point_test!(every_io_point_of_a_split_recovers, Op::Split);
every_point_test!(every_io_point_of_a_forget_of_persons_recovers, Op::ForgetPersons);
every_point_test!(every_io_point_of_a_purge_recovers, Op::Purge);
every_point_test!(every_io_point_of_a_compaction_recovers, Op::Compact);
every_point_test!(every_io_point_of_a_vacuum_recovers, Op::Vacuum);
every_point_test!(every_io_point_of_a_backup_recovers, Op::Backup);
