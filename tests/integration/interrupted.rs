//! Files left by an interrupted writer (Ctrl-C or a kill during `persona import`, a crash before
//! or after the next manifest was written) are removed by the next writer, while every file of a
//! published version stays, so that a reader's pinned snapshot keeps answering. Before the fix
//! they stayed for ever (319 MB after interrupting a 1 M-user import).

use std::path::Path;

use crate::util::*;

/// Writes `rel` under the store root with some bytes, as an interrupted writer would have.
fn leave(root: &Path, rel: &str) -> std::path::PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"half-written by a process that was killed").unwrap();
    path
}

#[tokio::test]
async fn the_next_writer_removes_the_files_of_an_interrupted_import() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let root = store.root().to_path_buf();
    assert!(unreferenced_files(&root).is_empty(), "{:?}", unreferenced_files(&root));
    // A reader pinned on version 2 before the crash and the next writer.
    let reader = session(&store);
    assert_eq!(count(&reader, "SELECT count(*) FROM purchases").await, 3);

    // Everything an import killed while building version 3 can leave, manifest included.
    let manifest = root.join("_persona/manifests/v00000002.json");
    std::fs::copy(&manifest, root.join("_persona/manifests/v00000003.json")).unwrap();
    let left = [
        leave(&root, "data/users/v00000003-00000000000000a1.parquet"),
        leave(&root, "data/users/v00000003-00000000000000a1.arrow"),
        leave(&root, "data/purchases/v00000003-00000000000000b2.parquet"),
        leave(&root, "data/purchases/v00000003-00000000000000b2.rowids"),
        leave(&root, "data/purchases/v00000003-00000000000000b2.plain.arrow"),
        leave(&root, "data/events/v00000003-00000000000000c3.parquet"),
        leave(&root, "ids/v00000003-00000000000000d4.ids"),
        leave(&root, "index/v00000003-00000000000000e5.idx"),
        leave(&root, "catalog/v00000003-tag-x-00000000000000f6.set"),
        leave(&root, "_persona/.CURRENT.tmp-00000000deadbeef"),
    ];
    assert_eq!(unreferenced_files(&root).len(), 9);
    assert_eq!(store.snapshot().unwrap().version(), 2, "nothing of it was published");

    let users = write(dir.path(), "next/users.csv", "user_id,name\nu6,Fay\n");
    let summary = import(&store, &[&users]).expect("the next import");
    assert_eq!(summary.version, Some(3));
    for path in &left {
        assert!(!path.exists(), "{} was left behind", path.display());
    }
    assert!(unreferenced_files(&root).is_empty(), "{:?}", unreferenced_files(&root));
    // Every file of versions 1 and 2 is still there: the pinned reader keeps answering.
    assert_eq!(count(&reader, "SELECT count(*) FROM purchases").await, 3);
    assert_eq!(count(&reader, "SELECT count(*) FROM users").await, 5);
    assert_eq!(count(&session(&store), "SELECT count(*) FROM users").await, 6);
}

#[test]
fn a_file_that_is_not_named_like_a_store_file_is_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = base_store(dir.path());
    let notes = leave(store.root(), "data/users/notes.txt");
    let users = write(dir.path(), "next/users.csv", "user_id,name\nu6,Fay\n");
    import(&store, &[&users]).expect("the next import");
    assert!(notes.exists());
}

/// The issue's own case: Ctrl-C (SIGINT) during `persona import`, then the next import.
#[test]
fn ctrl_c_during_persona_import_leaves_nothing_after_the_next_import() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gen");
    let store = dir.path().join("store");
    let out = output(persona_bin().args(["gen", "--users", "30000", "--seed", "3", "--quiet", "--out"]).arg(&data));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    create_store(&store);
    let mut child = spawn(
        persona_bin()
            .args(["import", "--quiet", "--store"])
            .arg(&store)
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // Interrupt as soon as the import has written its first data file.
    let started = std::time::Instant::now();
    while unreferenced_files(&store).is_empty() && started.elapsed() < std::time::Duration::from_secs(60) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let interrupted = child.try_wait().unwrap().is_none();
    if interrupted {
        let kill = output(std::process::Command::new("kill").args(["-INT", &child.id().to_string()]));
        assert!(kill.status.success());
    }
    child.wait().unwrap();
    let opened = {
        let _scope = lock_scope();
        persona::Store::open(&store).unwrap()
    };
    let version = opened.snapshot().unwrap().version();
    if interrupted && version == 0 {
        assert!(!unreferenced_files(&store).is_empty(), "the interrupted import left files");
    }
    let users = write(dir.path(), "next/users.csv", "user_id,name\nafter-ctrl-c,X\n");
    import(&opened, &[&users]).expect("the next import");
    assert!(unreferenced_files(&store).is_empty(), "{:?}", unreferenced_files(&store));
}
