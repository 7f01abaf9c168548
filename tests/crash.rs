//! Crash safety and damage detection of a store.
//!
//! (a) A `persona import` process killed with SIGKILL at seeded-random moments: afterwards the store
//!     opens, its version is the previous one or the next, the row counts are exactly those of that
//!     version (nothing or the whole load, every referenced file readable), and a fresh import
//!     succeeds, after which no file that no manifest references is left. The states a crash can
//!     leave between writing the next manifest and publishing it (a complete or a torn unpublished
//!     manifest) are also built exactly and must not block the next import.
//! (b) A damaged manifest (flipped bytes, truncation at many points, the manifest CURRENT names
//!     deleted, garbage in CURRENT, a newer format_version with a valid checksum, valid JSON of the
//!     wrong shape) is reported as `Error::Corrupt` (or `FormatVersion`) naming the file, never a
//!     panic, through the API and the CLI.
//! (c) A damaged id-dictionary segment (`ids/*.ids`) is reported as `Error::Corrupt` naming it at
//!     the next import.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{PoisonError, RwLock};
use std::time::Instant;

use persona::{Error, ImportOptions, Session, SessionOptions, Store, Table};

fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    path
}

/// A child forked by any thread of this process inherits every open descriptor, a store's lock
/// file included, until it execs; a test taking a lock at that moment would see a spurious
/// `Locked`. So lock-taking calls run under a shared guard and spawns under an exclusive one.
static FORKS: RwLock<()> = RwLock::new(());

fn with_lock_scope<T>(f: impl FnOnce() -> T) -> T {
    let _shared = FORKS.read().unwrap_or_else(PoisonError::into_inner);
    f()
}

fn spawn(cmd: &mut Command) -> Child {
    let _exclusive = FORKS.write().unwrap_or_else(PoisonError::into_inner);
    cmd.spawn().expect("start persona")
}

fn run(cmd: &mut Command) -> Output {
    spawn(cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped())).wait_with_output().unwrap()
}

fn create_store(path: impl AsRef<Path>) -> Store {
    with_lock_scope(|| Store::open_or_create(path)).expect("create the store")
}

fn import(store: &Store, files: &[&Path]) -> persona::Result<persona::ImportSummary> {
    let files: Vec<PathBuf> = files.iter().map(|p| p.to_path_buf()).collect();
    with_lock_scope(|| store.import(&files, &ImportOptions::default()))
}

/// `$PERSONA_BIN` when set (to pin one worktree's build when several share a target directory),
/// else the binary Cargo built for this run.
fn persona_bin() -> Command {
    match std::env::var_os("PERSONA_BIN") {
        Some(path) => Command::new(path),
        None => Command::new(env!("CARGO_BIN_EXE_persona")),
    }
}

/// A small deterministic generator (splitmix64) for the kill delays.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A fraction in [0, 1).
    fn fraction(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn session(store: &Store) -> Session {
    store.session_with(&SessionOptions { target_partitions: Some(2), ..SessionOptions::default() }).unwrap()
}

fn sql_count(rt: &tokio::runtime::Runtime, session: &Session, table: Table) -> u64 {
    let sql = format!("SELECT count(*) FROM {}", table.name());
    let batches = rt.block_on(session.query(&sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let col = batches[0].column(0);
    arrow::util::display::array_value_to_string(col, 0).unwrap().parse().unwrap()
}

/// Rows per table of the current version, from the manifest and (to prove every referenced file is
/// there and readable) from SQL.
fn counts(rt: &tokio::runtime::Runtime, store: &Store) -> Vec<(Table, u64)> {
    let snap = store.snapshot().unwrap();
    let s = session(store);
    Table::ALL
        .iter()
        .map(|&t| {
            let in_manifest = snap.manifest().rows(t);
            assert_eq!(
                sql_count(rt, &s, t),
                in_manifest,
                "{t}: SQL and manifest disagree at version {}",
                snap.version()
            );
            (t, in_manifest)
        })
        .collect()
}

/// Store files (under `data/`, `ids/`, `index/`, `catalog/`) that no manifest on disk references.
fn unreferenced_files(root: &Path) -> Vec<String> {
    fn strings(value: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        match value {
            serde_json::Value::String(s) => {
                out.insert(s.clone());
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let mut referenced = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(root.join("_persona/manifests")).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let json = text.split_once('\n').map(|(_, j)| j).unwrap_or(&text);
        strings(&serde_json::from_str(json).unwrap(), &mut referenced);
    }
    let mut left = Vec::new();
    let mut stack: Vec<PathBuf> = ["data", "ids", "index", "catalog"].iter().map(|d| root.join(d)).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                if !referenced.contains(&rel) {
                    left.push(rel);
                }
            }
        }
    }
    left
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

// ---------------------------------------------------------------------------------------------
// (a) killed imports

#[test]
fn an_import_killed_at_random_moments_leaves_the_previous_or_the_next_version() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gen");
    let out = run(persona_bin().args(["gen", "--users", "50000", "--seed", "11", "--quiet", "--out"]).arg(&data));
    assert!(out.status.success(), "persona gen failed: {}", String::from_utf8_lossy(&out.stderr));

    // One uninterrupted import gives the expected counts of the next version and a time scale.
    let reference = create_store(dir.path().join("reference"));
    let started = Instant::now();
    let out = run(persona_bin().args(["import", "--quiet", "--store"]).arg(reference.root()).arg(&data));
    let full_time = started.elapsed();
    assert!(out.status.success(), "the reference import failed: {}", String::from_utf8_lossy(&out.stderr));
    let full = counts(&rt, &reference);
    assert_eq!(full[0], (Table::Users, 50_000));
    let empty: Vec<(Table, u64)> = Table::ALL.iter().map(|&t| (t, 0)).collect();

    let mut rng = SplitMix(0x5EED_CAFE);
    let mut redone = false;
    for run in 0..8 {
        let root = dir.path().join(format!("store-{run}"));
        create_store(&root);
        // Delays spread over the whole import and past its end (about a third of the runs finish).
        let delay = full_time.mul_f64(rng.fraction() * 1.5);
        let mut child = spawn(
            persona_bin()
                .args(["import", "--quiet", "--store"])
                .arg(&root)
                .arg(&data)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store = Store::open(&root)
            .unwrap_or_else(|e| panic!("run {run} (kill after {delay:?}): the store does not open: {e}"));
        let version = store.snapshot().unwrap().version();
        let got = counts(&rt, &store);
        match version {
            0 => assert_eq!(got, empty, "run {run}: version 0 must hold nothing"),
            1 => assert_eq!(got, full, "run {run}: version 1 must hold the whole load"),
            v => panic!("run {run}: version {v} after one import"),
        }
        assert_eq!(store.snapshot().unwrap().user_count(), if version == 0 { 0 } else { 50_000 });

        // A fresh import works: no stale manifest, lock or file is in the way.
        let users =
            write(dir.path(), &format!("after-{run}/users.csv"), format!("user_id,name\nafter-crash-{run},X\n"));
        let summary = import(&store, &[&users]).unwrap_or_else(|e| {
            panic!("run {run} (kill after {delay:?}, version {version}): a fresh import fails: {e}")
        });
        assert_eq!(summary.version, Some(version + 1));
        assert_eq!(store.snapshot().unwrap().user_count(), if version == 0 { 1 } else { 50_001 });
        // ... and the next writer removed whatever the killed one had written (before the fix,
        // those files stayed for ever).
        let left = unreferenced_files(&root);
        assert!(left.is_empty(), "run {run} (kill after {delay:?}): files left behind: {left:?}");
        if version == 0 && !redone {
            redone = true;
            // The interrupted load can be done again in full.
            let summary = import(&store, &[&data]).unwrap();
            assert_eq!(summary.version, Some(2));
            assert_eq!(store.snapshot().unwrap().manifest().rows(Table::Purchases), full[3].1);
        }
    }
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
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

/// What a killed write leaves, as the next version or the previous one: (version, counts,
/// `sum(points)` as text).
fn state(rt: &tokio::runtime::Runtime, store: &Store) -> (u64, Vec<(Table, u64)>, String) {
    // Rows by SQL (a forgotten user's row stays in its file, blanked, so the manifest's row
    // counts are not the answer here).
    let s = session(store);
    let batches = rt.block_on(s.query("SELECT sum(points) FROM users")).unwrap();
    let points = arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap();
    let counts = Table::ALL.iter().map(|&t| (t, sql_count(rt, &s, t))).collect();
    (store.snapshot().unwrap().version(), counts, points)
}

#[test]
fn write_commands_killed_at_random_moments_leave_the_previous_or_the_next_version() {
    // (a) for the writers other than import: UPDATE, DELETE FROM users, INSERT … SELECT, forget,
    // compact and vacuum, each as a `persona` process killed with SIGKILL after a seeded-random
    // delay; the store then opens at v or v+1 with exactly that version's rows, `check --deep`
    // passes after the next writer's recovery, and the next write works.
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let base_store = create_store(&base);
    for seed in ["11", "12"] {
        let data = dir.path().join(format!("gen-{seed}"));
        let out = run(persona_bin().args(["gen", "--users", "20000", "--seed", seed, "--quiet", "--out"]).arg(&data));
        assert!(out.status.success(), "persona gen failed: {}", String::from_utf8_lossy(&out.stderr));
        import(&base_store, &[&data]).unwrap();
    }
    drop(base_store);
    let store_arg = |root: &Path| root.to_string_lossy().into_owned();
    type ArgsOf = Box<dyn Fn(&Path) -> Vec<String>>;
    let commands: Vec<(&str, ArgsOf)> = vec![
        ("update", Box::new(|r| sql_args(r, "UPDATE users SET points = points + 1 WHERE tier = 'gold'"))),
        ("delete", Box::new(|r| sql_args(r, "DELETE FROM users WHERE tier = 'platinum'"))),
        (
            "insert",
            Box::new(|r| sql_args(r, "INSERT INTO user_tags SELECT user_id, 'copied', assigned_at FROM user_tags")),
        ),
        (
            "forget",
            Box::new(move |r| {
                let mut args = vec!["forget".to_string(), "--store".into(), store_arg(r)];
                for i in 0..200 {
                    args.extend(["--user-id".to_string(), format!("u{}", i * 37)]);
                }
                args
            }),
        ),
        (
            "compact",
            Box::new(move |r| {
                ["compact", "--store", &store_arg(r), "--fact-rows", "10000000", "--users-rows", "10000000"]
                    .map(String::from)
                    .to_vec()
            }),
        ),
        (
            "vacuum",
            Box::new(move |r| ["vacuum", "--store", &store_arg(r), "--keep-versions", "1"].map(String::from).to_vec()),
        ),
    ];
    let before = state(&rt, &Store::open(&base).unwrap());
    let mut rng = SplitMix(0x5EED_D1E5);
    let mut survived = 0;
    for (name, args) in &commands {
        // One uninterrupted run: the next version's state and a time scale.
        let reference = dir.path().join(format!("{name}-reference"));
        copy_tree(&base, &reference);
        let started = Instant::now();
        let out = run(persona_bin().args(args(&reference)));
        let full_time = started.elapsed();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let after = state(&rt, &Store::open(&reference).unwrap());
        let expected_version = if *name == "vacuum" { before.0 } else { before.0 + 1 };
        assert_eq!(after.0, expected_version, "{name} commits one version");
        for run_no in 0..4 {
            let root = dir.path().join(format!("{name}-{run_no}"));
            copy_tree(&base, &root);
            let delay = full_time.mul_f64(rng.fraction() * 1.2);
            let mut child = spawn(persona_bin().args(args(&root)).stdout(Stdio::null()).stderr(Stdio::null()));
            std::thread::sleep(delay);
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            let what = format!("{name} run {run_no} (kill after {delay:?})");
            let store = Store::open(&root).unwrap_or_else(|e| panic!("{what}: the store does not open: {e}"));
            let got = state(&rt, &store);
            assert!(got == before || got == after, "{what}: {got:?} is neither {before:?} nor {after:?}");
            // The next writer's recovery, then the deep check.
            with_lock_scope(|| drop(store.writer().unwrap()));
            let out = run(persona_bin().args(["check", "--deep", "--store"]).arg(&root));
            assert!(out.status.success(), "{what}: check --deep: {}", String::from_utf8_lossy(&out.stderr));
            if *name == "vacuum" {
                // A vacuum killed between removing manifests and their files leaves files that
                // no manifest names; removing those is the next vacuum's job.
                let out = run(persona_bin().args(args(&root)));
                assert!(out.status.success(), "{what}: vacuum again: {}", String::from_utf8_lossy(&out.stderr));
            }
            let left = unreferenced_files(&root);
            assert!(left.is_empty(), "{what}: files left behind: {left:?}");
            std::fs::remove_dir_all(&root).unwrap();
            survived += 1;
        }
        std::fs::remove_dir_all(&reference).unwrap();
    }
    #[allow(clippy::print_stdout)] // the figure docs/reliability.md records
    {
        println!("kills: {survived} write commands killed at random moments, all at v or v+1 with check passing");
    }
}

fn sql_args(root: &Path, statement: &str) -> Vec<String> {
    vec!["sql".into(), "--store".into(), root.to_string_lossy().into_owned(), "-c".into(), statement.into()]
}

/// A store at version 2 (users, then purchases) and the purchases file that made version 2.
fn two_version_store(dir: &Path) -> (Store, PathBuf) {
    let store = create_store(dir.join("store"));
    let users = write(dir, "in/users.csv", "user_id,name\nu1,A\nu2,B\nu3,C\n");
    import(&store, &[&users]).unwrap();
    let purchases = write(
        dir,
        "in/purchases.csv",
        "order_id,user_id,product_id,channel_id,ts,quantity,amount\no1,u1,p,app,2026-10-01 00:00:00,1,1\no2,u3,p,app,2026-10-02 00:00:00,1,2\n",
    );
    assert_eq!(import(&store, &[&purchases]).unwrap().version, Some(2));
    (store, purchases)
}

#[test]
fn an_unpublished_manifest_left_by_a_crash_before_the_current_rename_does_not_block_the_next_import() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (store, purchases) = two_version_store(dir.path());
    // Exactly the state of a crash after manifests/v00000002.json was written and fsynced but
    // before CURRENT was renamed: CURRENT still names version 1, a stray temp file beside it.
    let meta = store.root().join("_persona");
    std::fs::write(meta.join("CURRENT"), "v00000001.json").unwrap();
    std::fs::write(meta.join(".CURRENT.tmp-00000000deadbeef"), "v00000002.json").unwrap();

    let store = Store::open(store.root()).unwrap();
    assert_eq!(store.snapshot().unwrap().version(), 1);
    assert_eq!(counts(&rt, &store)[3], (Table::Purchases, 0));
    // The load that was lost can be done again, and becomes the next version.
    let result = import(&store, &[&purchases]);
    let summary = result.unwrap_or_else(|e| panic!("the import after the crash fails: {e:?}: {e}"));
    assert_eq!(summary.version, Some(2));
    assert_eq!(counts(&rt, &store)[3], (Table::Purchases, 2));
}

#[test]
fn a_torn_unpublished_manifest_left_by_a_crash_does_not_block_the_next_import() {
    let dir = tempfile::tempdir().unwrap();
    let (store, purchases) = two_version_store(dir.path());
    // A crash in the middle of writing the next manifest: half of it on disk, CURRENT unchanged.
    let meta = store.root().join("_persona");
    let next = meta.join("manifests/v00000002.json");
    let bytes = std::fs::read(&next).unwrap();
    std::fs::write(&next, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(meta.join("CURRENT"), "v00000001.json").unwrap();

    let store = Store::open(store.root()).unwrap();
    assert_eq!(store.snapshot().unwrap().version(), 1);
    let summary =
        import(&store, &[&purchases]).unwrap_or_else(|e| panic!("the import after the crash fails: {e:?}: {e}"));
    assert_eq!(summary.version, Some(2));
    assert_eq!(Store::open(store.root()).unwrap().snapshot().unwrap().manifest().rows(Table::Purchases), 2);
}

// ---------------------------------------------------------------------------------------------
// (b) damaged manifests

fn current_manifest_path(root: &Path) -> PathBuf {
    let name = std::fs::read_to_string(root.join("_persona/CURRENT")).unwrap();
    root.join("_persona/manifests").join(name.trim())
}

/// Opens the store and expects `Corrupt` naming `path`.
fn assert_corrupt(root: &Path, path: &Path, what: &str) {
    let result = std::panic::catch_unwind(|| Store::open(root).map(|s| s.snapshot().map(|snap| snap.version())));
    let result = result.unwrap_or_else(|_| panic!("{what}: Store::open panicked"));
    match result {
        Err(Error::Corrupt { path: p, detail }) => {
            assert_eq!(p, path, "{what}: the error names the wrong file ({detail})");
            let text = Error::Corrupt { path: p, detail }.to_string();
            assert!(text.contains(&*path.to_string_lossy()), "{what}: {text}");
        }
        Err(other) => panic!("{what}: expected Corrupt, got {other:?}: {other}"),
        Ok(v) => panic!("{what}: the damaged store opened at version {v:?}"),
    }
}

#[test]
fn a_flipped_byte_anywhere_in_the_manifest_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = two_version_store(dir.path());
    let root = store.root().to_path_buf();
    let manifest = current_manifest_path(&root);
    let good = std::fs::read(&manifest).unwrap();
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        std::fs::write(&manifest, &bad).unwrap();
        assert_corrupt(&root, &manifest, &format!("byte {i} of {} flipped", good.len()));
    }
    std::fs::write(&manifest, &good).unwrap();
    assert_eq!(Store::open(&root).unwrap().snapshot().unwrap().version(), 2);
}

#[test]
fn a_truncated_manifest_is_corrupt_at_every_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = two_version_store(dir.path());
    let root = store.root().to_path_buf();
    let manifest = current_manifest_path(&root);
    let good = std::fs::read(&manifest).unwrap();
    let newline = good.iter().position(|&b| b == b'\n').unwrap();
    let mut cuts =
        vec![0, 1, 10, newline - 1, newline, newline + 1, newline + 2, good.len() / 2, good.len() - 2, good.len() - 1];
    cuts.extend((0..good.len()).step_by(97));
    for cut in cuts {
        std::fs::write(&manifest, &good[..cut]).unwrap();
        assert_corrupt(&root, &manifest, &format!("cut at {cut} of {}", good.len()));
    }
}

#[test]
fn a_deleted_current_manifest_is_corrupt_naming_current_and_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = two_version_store(dir.path());
    let root = store.root().to_path_buf();
    std::fs::remove_file(current_manifest_path(&root)).unwrap();
    let current = root.join("_persona/CURRENT");
    assert_corrupt(&root, &current, "manifest deleted");
    let err = Store::open(&root).unwrap_err().to_string();
    assert!(err.contains("v00000002.json"), "{err}");
}

#[test]
fn garbage_in_current_is_corrupt_naming_current() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = two_version_store(dir.path());
    let root = store.root().to_path_buf();
    let current = root.join("_persona/CURRENT");
    let cases: [(&str, &[u8]); 6] = [
        ("empty", b""),
        ("text", b"hello world"),
        ("binary", &[0xFF, 0xFE, 0x00, 0x81, 0xC3]),
        ("not a manifest name", b"manifest-2.json"),
        ("path escape", b"../../etc/passwd"),
        ("future version", b"v00000099.json"),
    ];
    for (what, bytes) in cases {
        std::fs::write(&current, bytes).unwrap();
        assert_corrupt(&root, &current, what);
    }
    std::fs::write(&current, "v00000002.json\n").unwrap();
    assert_eq!(Store::open(&root).unwrap().snapshot().unwrap().version(), 2, "a trailing newline is fine");
}

/// Rewrites a manifest's JSON body with `edit` and a correct checksum.
fn rewrite_manifest(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let newline = bytes.iter().position(|&b| b == b'\n').unwrap();
    let mut value: serde_json::Value = serde_json::from_slice(&bytes[newline + 1..]).unwrap();
    edit(&mut value);
    let body = serde_json::to_vec_pretty(&value).unwrap();
    let mut out = format!("persona-manifest crc32={:08x}\n", crc32fast::hash(&body)).into_bytes();
    out.extend_from_slice(&body);
    std::fs::write(path, out).unwrap();
}

#[test]
fn a_newer_format_version_with_a_valid_checksum_is_refused_as_format_version() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = two_version_store(dir.path());
    let root = store.root().to_path_buf();
    let manifest = current_manifest_path(&root);
    rewrite_manifest(&manifest, |v| v["format_version"] = serde_json::json!(999));
    match Store::open(&root) {
        Err(Error::FormatVersion { path, found, supported }) => {
            assert_eq!(path, manifest);
            assert_eq!(found, 999);
            assert!(supported < 999);
        }
        other => panic!("expected FormatVersion, got {other:?}"),
    }
    let err = Store::open(&root).unwrap_err().to_string();
    assert!(err.contains("999") && err.contains("upgrade"), "{err}");
}

#[test]
fn a_manifest_with_a_valid_checksum_but_the_wrong_content_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = two_version_store(dir.path());
    let root = store.root().to_path_buf();
    let manifest = current_manifest_path(&root);
    let good = std::fs::read(&manifest).unwrap();
    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        ("no format_version", Box::new(|v| drop(v.as_object_mut().unwrap().remove("format_version")))),
        ("no tables", Box::new(|v| drop(v.as_object_mut().unwrap().remove("tables")))),
        ("version is text", Box::new(|v| v["version"] = serde_json::json!("two"))),
        ("version of another manifest", Box::new(|v| v["version"] = serde_json::json!(7))),
        ("not an object", Box::new(|v| *v = serde_json::json!([1, 2, 3]))),
        ("unknown table", Box::new(|v| v["tables"]["orders"] = serde_json::json!([]))),
    ];
    for (what, edit) in edits {
        std::fs::write(&manifest, &good).unwrap();
        rewrite_manifest(&manifest, edit);
        assert_corrupt(&root, &manifest, what);
    }
}

#[test]
fn the_cli_reports_a_damaged_manifest_as_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = two_version_store(dir.path());
    let root = store.root().to_path_buf();
    let manifest = current_manifest_path(&root);
    let good = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &good[..good.len() / 2]).unwrap();
    for args in [vec!["sql", "-c", "SELECT count(*) FROM users"], vec!["import", "--quiet", "in/users.csv"]] {
        let out = run(persona_bin().current_dir(dir.path()).args(&args).arg("--store").arg(&root));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: store file "), "{args:?}: {stderr}");
        assert!(stderr.contains(&*manifest.to_string_lossy()) && stderr.contains("corrupt"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// (c) damaged id dictionary

fn ids_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("ids"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ids"))
        .collect();
    files.sort();
    files
}

fn assert_import_corrupt(store: &Store, file: &Path, ids: &Path, what: &str) {
    let before = std::fs::read_to_string(store.root().join("_persona/CURRENT")).unwrap();
    let result = std::panic::catch_unwind(|| import(store, &[file]));
    let result = result.unwrap_or_else(|_| panic!("{what}: the import panicked"));
    match result {
        Err(Error::Corrupt { path, detail }) => assert_eq!(path, ids, "{what}: {detail}"),
        Err(other) => panic!("{what}: expected Corrupt naming {}, got {other:?}: {other}", ids.display()),
        Ok(s) => panic!("{what}: the import succeeded over a damaged dictionary: {s:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(store.root().join("_persona/CURRENT")).unwrap(),
        before,
        "{what}: CURRENT moved"
    );
}

#[test]
fn a_damaged_id_dictionary_is_reported_as_corrupt_at_the_next_import() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = two_version_store(dir.path());
    let ids = ids_files(store.root());
    assert_eq!(ids.len(), 1, "one segment for the one users load: {ids:?}");
    let segment = ids[0].clone();
    let good = std::fs::read(&segment).unwrap();
    let more_purchases = write(
        dir.path(),
        "in/purchases-2.csv",
        "order_id,user_id,product_id,channel_id,ts,quantity,amount\no3,u2,p,app,2026-10-03 00:00:00,1,1\n",
    );
    let more_users = write(dir.path(), "in/users-2.csv", "user_id\nu4\n");

    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for i in [0, 7, 8, 16, 17, good.len() / 2, good.len() - 5, good.len() - 1] {
        let mut bad = good.clone();
        bad[i] ^= 0x40;
        cases.push((format!("byte {i} flipped"), bad));
    }
    for cut in [0, 5, 19, good.len() / 2, good.len() - 1] {
        cases.push((format!("cut at {cut}"), good[..cut].to_vec()));
    }
    let mut longer = good.clone();
    longer.extend_from_slice(b"junk");
    cases.push(("trailing junk".into(), longer));

    for (what, bytes) in &cases {
        std::fs::write(&segment, bytes).unwrap();
        assert_import_corrupt(&store, &more_purchases, &segment, &format!("{what}, purchases import"));
        assert_import_corrupt(&store, &more_users, &segment, &format!("{what}, users import"));
    }

    // Repaired, the same imports work.
    std::fs::write(&segment, &good).unwrap();
    assert_eq!(import(&store, &[&more_users, &more_purchases]).unwrap().version, Some(3));
}

#[test]
fn queries_keep_working_while_the_id_dictionary_is_damaged() {
    // The dictionary is only needed to map user_ids at import; reading is unaffected.
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = two_version_store(dir.path());
    for f in ids_files(store.root()) {
        std::fs::write(&f, b"garbage").unwrap();
    }
    let store = Store::open(store.root()).unwrap();
    assert_eq!(counts(&rt, &store)[0], (Table::Users, 3));
}
