//! Compaction (issue 17): the sample loaded as ~90 small imports leaves many small files and id
//! segments; `Store::compact` merges them into bounded files as one new version with every
//! answer unchanged (indexes on and off), `check` passing, merged fact files grouped by user, a
//! reader pinned before still answering from its version, and nothing left to merge after. The
//! command line compacts by itself once a table has many small files.

use std::path::{Path, PathBuf};

use persona::Store;
use persona::ingest::compact::{CompactOptions, DUE_SMALL_FILES, compaction_due};
use persona::tables::Table;

use crate::util::*;

/// The sample's CSV file of `table`, cut into `pieces` files of whole lines (header repeated)
/// under `dir`.
fn pieces_of(table: &str, pieces: usize, dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(sample_dir().join(table).join(format!("{table}-00000.csv"))).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    let per = rows.len().div_ceil(pieces);
    rows.chunks(per)
        .enumerate()
        .map(|(i, chunk)| {
            let body = format!("{header}\n{}\n", chunk.join("\n"));
            write(&dir.join(format!("{table}-{i:03}")), &format!("{table}.csv"), body)
        })
        .collect()
}

/// The sample as many small imports: dimensions once, then users, purchases, events and tags
/// piece by piece.
fn many_small_imports(dir: &Path) -> Store {
    let store = create_store(dir.join("store"));
    for table in ["products", "channels"] {
        let path = sample_dir().join(table);
        import(&store, &[&path]).unwrap();
    }
    let inputs = dir.join("pieces");
    for (table, pieces) in [("users", 10), ("purchases", 30), ("events", 30), ("user_tags", 20)] {
        for piece in pieces_of(table, pieces, &inputs) {
            import(&store, &[&piece]).unwrap_or_else(|e| panic!("{}: {e}", piece.display()));
        }
    }
    store
}

/// Answers touching every table, per-user aggregates, windows and tags.
const QUERIES: &[&str] = &[
    "SELECT count(*) FROM users",
    "SELECT tier, count(*), sum(points) FROM users GROUP BY tier ORDER BY tier",
    "SELECT count(*) FROM users WHERE user_id IN (SELECT user_id FROM purchases WHERE amount >= 100)",
    "SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.user_id = u.user_id \
     AND e.ts >= TIMESTAMP '2026-09-01 12:30:00')",
    "SELECT count(*) FROM (SELECT user_id FROM purchases GROUP BY user_id HAVING sum(amount) > 500) t",
    "SELECT tag, count(*) FROM user_tags GROUP BY tag ORDER BY tag",
    "SELECT count(*) FROM users WHERE has_tag('vip') OR points > 3000",
    "SELECT user_id, count(*), round(sum(amount), 2), max(ts) FROM purchases GROUP BY user_id ORDER BY user_id LIMIT 20",
    "SELECT channel_id, event_type, count(*) FROM events GROUP BY channel_id, event_type ORDER BY 1, 2",
    "SELECT u.user_id, u.email FROM users u WHERE u.user_id IN ('u1', 'u1999', 'u1234') ORDER BY 1",
];

async fn answers(store: &Store) -> Vec<Vec<String>> {
    answers_both_ways(store, QUERIES).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_merges_small_files_and_changes_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let store = many_small_imports(dir.path());
    let before_snapshot = store.snapshot().unwrap();
    let before_manifest = before_snapshot.manifest().clone();
    for table in [Table::Users, Table::Purchases, Table::Events, Table::UserTags] {
        assert!(before_manifest.files(table).len() >= 10, "{table}: {}", before_manifest.files(table).len());
    }
    let expected = answers(&store).await;
    let pinned = session(&store);
    let pinned_count = count(&pinned, "SELECT count(*) FROM purchases").await;

    // Small bounds, so that groups end at the bound and more than one file comes out.
    let options = CompactOptions { fact_rows: 8_000, users_rows: 1_500, ..CompactOptions::default() };
    let summary = {
        let _scope = lock_scope();
        store.compact(&options).unwrap()
    };
    assert!(summary.merged(), "{summary:?}");
    let after = store.snapshot().unwrap();
    let m = after.manifest();
    for table in [Table::Users, Table::Purchases, Table::Events, Table::UserTags] {
        let (a, b) = (before_manifest.files(table).len(), m.files(table).len());
        assert!(b < a && b >= 1, "{table}: {a} → {b} files");
        assert_eq!(m.rows(table), before_manifest.rows(table), "{table} keeps its rows");
        if table.is_fact() {
            assert!(m.files(table).iter().all(|f| f.rows <= options.fact_rows), "{table}: files within the bound");
            assert!(m.files(table).iter().all(|f| f.rows_by_user), "{table}: merged rows grouped by user");
        } else {
            assert!(m.files(table).iter().all(|f| f.rows <= options.users_rows));
        }
    }
    assert!(m.id_segments.len() < before_manifest.id_segments.len(), "{summary:?}");
    assert_eq!(answers(&store).await, expected, "every answer unchanged, indexes on and off");
    check_passes(&store);
    // A reader pinned before the compaction still answers from its version.
    assert_eq!(count(&pinned, "SELECT count(*) FROM purchases").await, pinned_count);
    // Reopened from disk, and compacted again: nothing left to merge.
    let reopened = Store::open(store.root()).unwrap();
    assert_eq!(answers(&reopened).await, expected);
    let again = {
        let _scope = lock_scope();
        reopened.compact(&options).unwrap()
    };
    assert!(!again.merged(), "{again:?}");
    assert_eq!(reopened.snapshot().unwrap().version(), after.version());
    // Vacuum removes the replaced files; the answers stay.
    {
        let _scope = lock_scope();
        persona::store::vacuum::vacuum(
            &reopened,
            persona::store::vacuum::KeepPolicy { versions: Some(1), newer_than: None },
        )
        .unwrap();
    }
    assert_eq!(answers(&Store::open(store.root()).unwrap()).await, expected);
    check_passes(&reopened);
}

#[test]
fn the_command_line_compacts_once_a_table_has_many_small_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = create_store(dir.path().join("store"));
    let pieces = pieces_of("purchases", DUE_SMALL_FILES + 1, &dir.path().join("pieces"));
    import(&store, &[&sample_dir().join("users")]).unwrap();
    for piece in &pieces[..DUE_SMALL_FILES - 1] {
        import(&store, &[piece]).unwrap();
    }
    let purchases_files =
        || Store::open(store.root()).unwrap().snapshot().unwrap().manifest().files(Table::Purchases).len();
    assert!(!compaction_due(store.snapshot().unwrap().manifest()));
    // At the threshold with --no-compact: the small files stay.
    let import_cli = |piece: &Path, extra: &[&str]| {
        let mut cmd = persona_bin();
        let out = output(cmd.args(["import", "--quiet"]).args(extra).arg("--store").arg(store.root()).arg(piece));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = import_cli(&pieces[DUE_SMALL_FILES - 1], &["--no-compact"]);
    assert!(!stderr.contains("compacted"), "{stderr}");
    assert_eq!(purchases_files(), DUE_SMALL_FILES);
    assert!(compaction_due(Store::open(store.root()).unwrap().snapshot().unwrap().manifest()));
    // The next import compacts right after it commits.
    let stderr = import_cli(&pieces[DUE_SMALL_FILES], &[]);
    assert!(stderr.contains("compacted") && stderr.contains("purchases"), "{stderr}");
    assert_eq!(purchases_files(), 1, "{stderr}");
    let reopened = Store::open(store.root()).unwrap();
    assert!(!compaction_due(reopened.snapshot().unwrap().manifest()));
    check_passes(&reopened);
    // `persona compact` with nothing to merge says so and commits nothing.
    let version = reopened.snapshot().unwrap().version();
    let mut cmd = persona_bin();
    let out = output(cmd.args(["compact", "--store"]).arg(store.root()));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to compact"));
    assert_eq!(Store::open(store.root()).unwrap().snapshot().unwrap().version(), version);
}
