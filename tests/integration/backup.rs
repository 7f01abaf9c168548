//! `persona backup`: the copy holds exactly the files of one version (data, copies, ids, index,
//! rule tags, audience versions), opens at that version with the same answers, is consistent while
//! an import commits meanwhile, refuses a target that holds anything, and copies when hard links
//! are impossible (another file system).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use persona::store::backup::backup;

use crate::util::*;

/// The sample store with a rule tag and a materialized audience (catalog set files).
async fn sample_store(dir: &Path) -> persona::Store {
    let store = create_store(dir.join("store"));
    import(&store, &[&sample_dir()]).expect("load the sample");
    let s = session(&store);
    for sql in [
        "CREATE TAG big_spender AS SELECT user_id FROM purchases GROUP BY user_id HAVING sum(amount) > 5000",
        "CREATE AUDIENCE gold HOLDOUT 10 PERCENT AS SELECT user_id FROM users WHERE tier = 'gold'",
        "MATERIALIZE AUDIENCE gold",
    ] {
        s.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    store
}

/// Answers that read every part of a store.
async fn answers(store: &persona::Store) -> Vec<String> {
    let s = session(store);
    let mut out = Vec::new();
    for sql in [
        "SELECT count(*), count(DISTINCT email) FROM users",
        "SELECT count(*), round(sum(amount), 2) FROM purchases",
        "SELECT count(*) FROM events WHERE event_type = 'cart'",
        "SELECT count(*) FROM users WHERE has_tag('big_spender') AND tier = 'silver'",
        "SELECT count(*) FROM audience_members('gold')",
        "SELECT count(*) FROM users WHERE points BETWEEN 1000 AND 5000 AND purchased_within(INTERVAL '90 days')",
    ] {
        out.extend(rows(&s, sql).await);
    }
    out
}

#[tokio::test]
async fn the_copy_holds_one_version_and_answers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path()).await;
    let before = answers(&store).await;
    let version = store.snapshot().unwrap().version();

    let target = dir.path().join("copies").join("crm backup 备份");
    let report = backup(&store, &target).expect("a backup");
    assert_eq!(report.version, version);
    assert_eq!(report.files as usize, store.snapshot().unwrap().manifest().referenced_files().len());
    // Every file of the copy is one the version refers to, plus its manifest and CURRENT.
    let mut expected: BTreeSet<PathBuf> =
        store.snapshot().unwrap().manifest().referenced_files().into_iter().map(PathBuf::from).collect();
    expected.insert(PathBuf::from(format!("_persona/manifests/v{version:08}.json")));
    expected.insert(PathBuf::from("_persona/CURRENT"));
    assert_eq!(files_under(&target), expected);
    // Every path the manifest names (as any JSON string) that is a file of the store is copied.
    let json = std::fs::read_to_string(store.root().join(format!("_persona/manifests/v{version:08}.json"))).unwrap();
    for word in json.split('"').filter(|w| w.contains('/') && store.root().join(w).is_file()) {
        assert!(target.join(word).is_file(), "{word} is referenced but not copied");
    }

    let copy = persona::Store::open(&target).unwrap();
    assert_eq!(copy.snapshot().unwrap().version(), version);
    assert_eq!(answers(&copy).await, before);

    // The source moves on; the copy stays where it was.
    import(&store, &[&write(&dir.path().join("more"), "purchases.csv", PURCHASES_CSV_OF_SAMPLE)]).unwrap();
    assert_ne!(answers(&store).await, before);
    assert_eq!(answers(&copy).await, before);

    // A target holding anything is refused and left alone.
    let again = backup(&store, &target).unwrap_err().to_string();
    assert!(again.contains("already exists and is not an empty folder"), "{again}");
    assert_eq!(answers(&copy).await, before);
    // An empty folder made for it is fine.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(backup(&store, &empty).unwrap().version, version + 1);
}

/// Two purchases of sample users, on a day of their own.
const PURCHASES_CSV_OF_SAMPLE: &str = "order_id,user_id,product_id,channel_id,ts,quantity,amount\n\
bk1,u1,p00001,app,2026-10-30 10:00:00,1,10.5\n\
bk2,u2,p00001,web,2026-10-30 11:00:00,2,20\n";

#[tokio::test]
async fn a_backup_while_an_import_commits_is_one_version_or_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path()).await;
    let first = store.snapshot().unwrap().version();
    let old = answers(&store).await;
    let more = write(&dir.path().join("more"), "purchases.csv", PURCHASES_CSV_OF_SAMPLE);
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || import(&store, &[&more]).expect("the concurrent import"))
    };
    let mut copies = Vec::new();
    for i in 0..6 {
        let target = dir.path().join(format!("copy{i}"));
        copies.push((backup(&store, &target).expect("a backup during the import").version, target));
    }
    writer.join().unwrap();
    let new = answers(&store).await;
    for (version, target) in copies {
        let copy = persona::Store::open(&target).unwrap();
        let expected = if version == first { &old } else { &new };
        assert!(version == first || version == first + 1, "version {version}");
        assert_eq!(&answers(&copy).await, expected, "the copy of version {version}");
    }
}

#[tokio::test]
async fn another_file_system_gets_copies() {
    let shm = Path::new("/dev/shm");
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path()).await;
    let scratch = tempfile::tempdir_in(if shm.is_dir() { shm } else { dir.path() }).unwrap();
    let target = scratch.path().join("copy");
    let report = backup(&store, &target).expect("a backup");
    if shm.is_dir() && !same_device(store.root(), scratch.path()) {
        assert_eq!(report.linked, 0, "nothing can be linked across file systems");
    }
    assert_eq!(answers(&persona::Store::open(&target).unwrap()).await, answers(&store).await);
}

fn same_device(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(a).unwrap().dev() == std::fs::metadata(b).unwrap().dev()
}

/// Flips one byte of `path` in place.
fn flip(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], at).unwrap();
}

fn first_file(dir: &Path, ending: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ending))
        .collect();
    found.sort();
    found.into_iter().next().unwrap_or_else(|| panic!("no {ending} file in {}", dir.display()))
}

#[tokio::test]
async fn check_names_every_damaged_file_of_a_copied_backup() {
    use persona::store::backup::{Placement, backup_with};
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path()).await;
    assert!(persona::store::check::check(&store, persona::index::format::verify_file).unwrap().problems.is_empty());

    // A copy shares no bytes with the store: damage to it stays in it.
    let copy = dir.path().join("copy");
    let report = backup_with(&store, &copy, Placement::Copy).unwrap();
    assert_eq!(report.linked, 0);
    let clean =
        persona::store::check::check(&persona::Store::open(&copy).unwrap(), persona::index::format::verify_file)
            .unwrap();
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    assert_eq!(clean.files, report.files);

    let index = first_file(&copy.join("index"), ".idx");
    flip(&index, 8);
    let ids = first_file(&copy.join("ids"), ".ids");
    flip(&ids, 40);
    let events = first_file(&copy.join("data/events"), ".parquet");
    let len = std::fs::metadata(&events).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&events).unwrap().set_len(len - 10).unwrap();
    let plain = first_file(&copy.join("data/purchases"), ".arrow");
    std::fs::remove_file(&plain).unwrap();
    let set = first_file(&copy.join("catalog"), "");
    flip(&set, std::fs::metadata(&set).unwrap().len() - 1);

    let out = output(persona_bin().args(["check", "--store"]).arg(&copy));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (damaged, what) in [
        (&index, "checksum"),
        (&ids, ""),
        (&events, "bytes; the manifest recorded"),
        (&plain, "is missing"),
        (&set, ""),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{}:", damaged.display())))
            .unwrap_or_else(|| panic!("{} is not named:\n{stdout}", damaged.display()));
        assert!(line.contains(what), "{line}");
    }
    assert!(stderr.contains("problem(s)"), "{stderr}");
    // The store itself is untouched.
    assert!(persona::store::check::check(&store, persona::index::format::verify_file).unwrap().problems.is_empty());
    let ok_out = output(persona_bin().args(["check", "--store"]).arg(store.root()));
    assert!(ok_out.status.success(), "{ok_out:?}");
    assert!(String::from_utf8_lossy(&ok_out.stderr).contains("no problem found"));
}
