//! `persona vacuum`: versions the policy lets go lose their manifests, and files no kept version
//! refers to are deleted; the kept versions answer as before and pass `check`; fresh versions
//! survive `--older-than`; a vacuum without a rule is refused.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::util::*;

/// Several versions whose files are replaced on the way: the sample, a rule tag refreshed twice
/// (its set and rows are rewritten), and more purchases.
async fn store_with_history(dir: &Path) -> persona::Store {
    let store = create_store(dir.join("store"));
    import(&store, &[&sample_dir()]).expect("load the sample");
    let s = session(&store);
    for sql in [
        "CREATE TAG big AS SELECT user_id FROM purchases GROUP BY user_id HAVING sum(amount) > 5000",
        "CREATE OR REPLACE TAG big AS SELECT user_id FROM purchases GROUP BY user_id HAVING sum(amount) > 8000",
        "CREATE AUDIENCE gold AS SELECT user_id FROM users WHERE tier = 'gold'",
        "MATERIALIZE AUDIENCE gold",
    ] {
        s.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let more = "order_id,user_id,product_id,channel_id,ts,quantity,amount\n\
                v1,u1,p00001,app,2026-10-30 10:00:00,1,9000\n";
    import(&store, &[&write(&dir.join("more"), "purchases.csv", more)]).unwrap();
    store
}

async fn answers(store: &persona::Store) -> Vec<String> {
    let s = session(store);
    let mut out = Vec::new();
    for sql in [
        "SELECT count(*), round(sum(amount), 2) FROM purchases",
        "SELECT count(*) FROM users WHERE has_tag('big')",
        "SELECT count(*) FROM audience_members('gold')",
        "SELECT count(*) FROM users WHERE tier = 'gold' AND purchased_within(INTERVAL '30 days')",
    ] {
        out.extend(rows(&s, sql).await);
    }
    out
}

/// The files a store may hold when only `versions` are kept.
fn expected_files(root: &Path, versions: &[u64]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for v in versions {
        let path = root.join(format!("_persona/manifests/v{v:08}.json"));
        let manifest = persona::store::manifest::Manifest::from_bytes(&std::fs::read(&path).unwrap(), &path).unwrap();
        out.extend(manifest.referenced_files().into_iter().map(PathBuf::from));
        out.insert(PathBuf::from(format!("_persona/manifests/v{v:08}.json")));
    }
    out.insert(PathBuf::from("_persona/CURRENT"));
    out
}

fn vacuum(store: &Path, args: &[&str]) -> std::process::Output {
    output(persona_bin().args(["vacuum", "--store"]).arg(store).args(args))
}

#[tokio::test]
async fn vacuum_keeps_what_the_policy_says_and_deletes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path()).await;
    let root = store.root().to_path_buf();
    let current = store.snapshot().unwrap().version();
    assert!(current >= 5, "several versions: {current}");
    let before = answers(&store).await;
    let all = store.versions().unwrap();
    // Replaced files of older versions are on disk before.
    assert!(files_under(&root).len() > expected_files(&root, &[current]).len());

    // Fresh versions survive an age rule.
    let out = vacuum(&root, &["--older-than", "1d"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(store.versions().unwrap(), all);

    let out = vacuum(&root, &["--keep-versions", "2"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("kept versions {}–{current}", current - 1)));
    assert_eq!(store.versions().unwrap(), vec![current - 1, current]);
    assert_eq!(files_under(&root), expected_files(&root, &[current - 1, current]));

    let out = vacuum(&root, &["--keep-versions", "1"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(store.versions().unwrap(), vec![current]);
    assert_eq!(files_under(&root), expected_files(&root, &[current]));

    let reopened = persona::Store::open(&root).unwrap();
    assert_eq!(answers(&reopened).await, before);
    let checked = persona::store::check::check(&reopened, persona::index::format::verify_file).unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    // The next commit still works on the vacuumed store.
    session(&reopened).query("CREATE TAG small AS tier = 'bronze' AND points < 100").await.unwrap();
    assert_eq!(reopened.snapshot().unwrap().version(), current + 1);
}

#[tokio::test]
async fn a_vacuum_needs_a_rule_and_keeps_at_least_one_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path()).await;
    let all = store.versions().unwrap();
    let out = vacuum(store.root(), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--keep-versions N or --older-than DURATION"));
    let out = vacuum(store.root(), &["--keep-versions", "0"]);
    assert!(!out.status.success());
    let out = vacuum(store.root(), &["--older-than", "soon"]);
    assert_eq!(out.status.code(), Some(2), "a malformed duration is a command-line mistake");
    assert_eq!(store.versions().unwrap(), all);
}
