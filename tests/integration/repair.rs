//! Repair (issue 17): `Store::repair` (`persona check --repair`) rebuilds damaged derived files
//! — a plain copy, day times, a row-addressable copy, the index, an id segment — as one new
//! version with every answer as before and `check` clean; damaged data files are reported as
//! unrepairable and nothing is committed for them; a query meeting a damaged copy names the file
//! and the repair command; and the index rebuilt from the data alone equals the one the imports
//! built, bitmap for bitmap.

use std::path::{Path, PathBuf};

use persona::Store;
use persona::index::format::IndexFile;
use persona::tables::Table;

use crate::util::*;

const QUERIES: &[&str] = &[
    "SELECT count(*) FROM users WHERE tier = 'gold' AND points BETWEEN 1000 AND 5000",
    "SELECT count(*) FROM users WHERE has_tag('vip') OR has_tag('new_user')",
    "SELECT count(*) FROM (SELECT user_id FROM purchases GROUP BY user_id HAVING sum(amount) > 300) t",
    "SELECT count(*) FROM users u WHERE EXISTS (SELECT 1 FROM events e WHERE e.user_id = u.user_id \
     AND e.event_type = 'cart' AND e.ts >= TIMESTAMP '2026-08-01 18:30:00')",
    "SELECT user_id, phone, email FROM users WHERE user_id IN ('u1', 'u1500') ORDER BY 1",
    "SELECT count(*) FROM users WHERE user_id IN (SELECT user_id FROM purchases WHERE channel_id = 'app')",
];

async fn answers(store: &Store) -> Vec<Vec<String>> {
    answers_both_ways(store, QUERIES).await
}

/// The sample loaded in three imports (so that the index was merged twice).
fn sample_store(dir: &Path) -> Store {
    let store = create_store(dir.join("store"));
    let s = sample_dir();
    import(&store, &[&s.join("users"), &s.join("products"), &s.join("channels")]).unwrap();
    import(&store, &[&s.join("purchases")]).unwrap();
    import(&store, &[&s.join("events"), &s.join("user_tags")]).unwrap();
    store
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

fn problems(store: &Store) -> Vec<PathBuf> {
    let report = persona::store::check::check(store, persona::index::format::verify_file).unwrap();
    report.problems.into_iter().map(|p| p.path).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_rebuilds_every_damaged_derived_file_and_changes_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path());
    let expected = answers(&store).await;
    let snapshot = store.snapshot().unwrap();
    let m = snapshot.manifest();
    let root = store.root().to_path_buf();
    let at = |relative: &str| persona::store::layout::resolve(&root, relative);
    let plain = at(m.files(Table::Purchases)[0].plain_columns.as_deref().unwrap());
    let times = at(m.files(Table::Events)[0].day_times.as_deref().unwrap());
    let addressable = at(m.files(Table::Users)[0].addressable.as_deref().unwrap());
    let index = at(&m.index.as_ref().unwrap().path);
    let segment = at(&m.id_segments[0].path);
    truncate(&plain);
    std::fs::remove_file(&times).unwrap();
    truncate(&addressable);
    flip_byte(&index, 100);
    flip_byte(&segment, 40);
    let found = problems(&store);
    for damaged in [&plain, &times, &addressable, &index, &segment] {
        assert!(found.contains(damaged), "{} among {found:?}", damaged.display());
    }
    // A query that reads the damaged plain copy names it and the repair.
    let session = session(&store);
    let err = session
        .query("SELECT count(*) FROM (SELECT user_id FROM purchases GROUP BY user_id HAVING sum(amount) > 300) t")
        .await
        .expect_err("the damaged copy is noticed")
        .to_string();
    assert!(err.contains("corrupt") && err.contains("--repair"), "{err}");

    let summary = {
        let _scope = lock_scope();
        store.repair().unwrap()
    };
    assert!(summary.unrepairable.is_empty(), "{:?}", summary.unrepairable);
    assert_eq!(summary.version, Some(m.version + 1), "{summary:?}");
    assert_eq!(summary.rebuilt.len(), 5, "three data files, the dictionary and the index: {:?}", summary.rebuilt);
    let repaired = Store::open(&root).unwrap();
    assert!(problems(&repaired).is_empty(), "{:?}", problems(&repaired));
    assert_eq!(answers(&repaired).await, expected);
    // Nothing left to repair.
    let again = {
        let _scope = lock_scope();
        repaired.repair().unwrap()
    };
    assert!(again.version.is_none() && again.rebuilt.is_empty(), "{again:?}");
}

#[test]
fn damaged_data_is_reported_as_unrepairable_and_nothing_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path());
    let snapshot = store.snapshot().unwrap();
    let m = snapshot.manifest();
    let data = persona::store::layout::resolve(store.root(), &m.files(Table::UserTags)[0].path);
    truncate(&data);
    let summary = {
        let _scope = lock_scope();
        store.repair().unwrap()
    };
    assert!(summary.version.is_none(), "{summary:?}");
    assert_eq!(summary.unrepairable.iter().map(|p| p.path.clone()).collect::<Vec<_>>(), vec![data.clone()]);
    assert_eq!(store.snapshot().unwrap().version(), m.version);
    // The command line lists it and fails.
    let mut cmd = persona_bin();
    let out = output(cmd.args(["check", "--repair", "--store"]).arg(store.root()));
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&data.display().to_string()), "{stdout}");
}

#[test]
fn the_index_rebuilt_from_the_data_equals_the_one_the_imports_built() {
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path());
    let snapshot = store.snapshot().unwrap();
    let m = snapshot.manifest();
    let stored =
        IndexFile::open(&persona::store::layout::resolve(store.root(), &m.index.as_ref().unwrap().path)).unwrap();
    let out = dir.path().join("rebuilt.idx");
    persona::ingest::repair::rebuild_index(store.root(), m, &out).unwrap();
    let rebuilt = IndexFile::open(&out).unwrap();
    let keys = |f: &IndexFile| f.directory.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&rebuilt), keys(&stored));
    for (key, extent) in &stored.directory {
        let theirs = rebuilt.read(rebuilt.directory[key]).unwrap();
        assert_eq!(stored.read(*extent).unwrap(), theirs, "{key:?}");
    }
    // The deep check finds nothing; with user 7 taken out of the stored index (checksums still
    // sound), it names the bitmaps that held it.
    assert_eq!(persona::ingest::repair::index_differences(&store).unwrap(), Vec::new());
    let stored_path = persona::store::layout::resolve(store.root(), &m.index.as_ref().unwrap().path);
    let without = dir.path().join("without.idx");
    persona::index::build::write_index_without(&stored_path, &roaring::RoaringBitmap::from_iter([7u32]), &without)
        .unwrap();
    std::fs::copy(&without, &stored_path).unwrap();
    let differences = persona::ingest::repair::index_differences(&Store::open(store.root()).unwrap()).unwrap();
    assert!(!differences.is_empty());
    assert!(differences.iter().all(|p| p.path == stored_path && p.what.contains("the data gives")), "{differences:?}");
    assert!(differences.iter().any(|p| p.what.contains("Value bitmap 'tier'")), "{differences:?}");
}

/// Before copies carried checksums, a flipped bit in a plain copy's values (its structure intact)
/// gave a wrong sum or went unnoticed by `check`. Now the query that reads it fails naming the copy
/// and the repair, `check` names it, and the repair rebuilds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_value_in_a_copy_is_found_by_its_checksum_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path());
    let expected = answers(&store).await;
    let snapshot = store.snapshot().unwrap();
    let m = snapshot.manifest();
    let root = store.root().to_path_buf();
    let plain = persona::store::layout::resolve(&root, m.files(Table::Purchases)[0].plain_columns.as_deref().unwrap());
    // Any Arrow reader opens a copy; the first amount it holds is found among its bytes and changed.
    let reader = arrow::ipc::reader::FileReader::try_new(std::fs::File::open(&plain).unwrap(), None).unwrap();
    let first = reader.into_iter().next().unwrap().unwrap();
    let amount = first.column_by_name("amount").unwrap();
    let amount = amount.as_any().downcast_ref::<arrow::array::Float64Array>().unwrap().value(0);
    let mut bytes = std::fs::read(&plain).unwrap();
    let at = bytes.windows(8).position(|w| w == amount.to_le_bytes()).expect("the amount's bytes");
    bytes[at + 6] ^= 0x01;
    std::fs::write(&plain, bytes).unwrap();
    let report = persona::store::check::check(&store, persona::index::format::verify_file).unwrap();
    assert!(report.problems.iter().any(|p| p.path == plain && p.what.contains("checksum")), "{:?}", report.problems);
    let err = session(&Store::open(&root).unwrap())
        .query("SELECT count(*) FROM (SELECT user_id FROM purchases GROUP BY user_id HAVING sum(amount) > 300) t")
        .await
        .expect_err("the damaged copy is noticed");
    assert!(matches!(&err, persona::Error::Corrupt { path, .. } if *path == plain), "{err}");
    assert!(err.to_string().contains("--repair"), "{err}");
    let summary = {
        let _scope = lock_scope();
        store.repair().unwrap()
    };
    assert_eq!(summary.rebuilt.len(), 1, "{summary:?}");
    let repaired = Store::open(&root).unwrap();
    assert!(problems(&repaired).is_empty(), "{:?}", problems(&repaired));
    assert_eq!(answers(&repaired).await, expected);
}

/// Before, a stored fact file whose Parquet schema had another type than Persona writes (here
/// `user_tags.tag` as integers, a valid Parquet file recorded with its new size) made the index
/// rebuild of `check --deep` and `--repair` panic in a downcast; now it is a corrupt error naming
/// the file.
#[test]
fn a_stored_column_of_another_type_is_a_corrupt_error_naming_the_file() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path());
    let root = store.root().to_path_buf();
    let mut manifest = store.snapshot().unwrap().manifest().clone();
    let file = &mut manifest.tables.get_mut(&Table::UserTags).unwrap()[0];
    let path = persona::store::layout::resolve(&root, &file.path);
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
    let batches: Vec<arrow::array::RecordBatch> = reader.map(Result::unwrap).collect();
    let schema = batches[0].schema();
    let at = schema.index_of("tag").unwrap();
    let mut fields: Vec<arrow::datatypes::Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[at] = arrow::datatypes::Field::new("tag", arrow::datatypes::DataType::Int64, true);
    let retyped = Arc::new(arrow::datatypes::Schema::new(fields));
    let out = std::fs::File::create(&path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(out, Arc::clone(&retyped), None).unwrap();
    for batch in &batches {
        let mut columns = batch.columns().to_vec();
        columns[at] = Arc::new(arrow::array::Int64Array::from_iter_values(0..batch.num_rows() as i64));
        writer.write(&arrow::array::RecordBatch::try_new(Arc::clone(&retyped), columns).unwrap()).unwrap();
    }
    writer.close().unwrap();
    file.bytes = std::fs::metadata(&path).unwrap().len();
    let manifest_path = persona::store::layout::manifest_path(&root, manifest.version);
    std::fs::write(&manifest_path, manifest.to_bytes().unwrap()).unwrap();

    let store = Store::open(&root).unwrap();
    let err = persona::ingest::repair::index_differences(&store).expect_err("the deep check fails");
    assert!(matches!(&err, persona::Error::Corrupt { path: p, .. } if *p == path), "{err}");
    assert!(err.to_string().contains("column tag holds Int64"), "{err}");
}

/// A forget marks rows dead; a damaged set of dead rows is named by `check`, a query reading its
/// file fails naming it, and the repair marks the rows again from the forgotten users (with the
/// plain copy damaged too, the file is also written again, without them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_set_of_dead_rows_is_marked_again_from_the_forgotten_users() {
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path());
    let gone: Vec<String> = (1..60).map(|i| format!("u{}", i * 31)).collect();
    {
        let _scope = lock_scope();
        store.forget(&gone).unwrap();
    }
    let expected = answers(&store).await;
    let snapshot = store.snapshot().unwrap();
    let m = snapshot.manifest();
    let root = store.root().to_path_buf();
    let at = |relative: &str| persona::store::layout::resolve(&root, relative);
    let marked: Vec<_> = m.files(Table::Purchases).iter().filter(|f| f.dead.is_some()).collect();
    assert!(!marked.is_empty(), "the forget marked purchases dead");
    let set = at(&marked[0].dead.as_ref().unwrap().set.path);
    let plain = at(marked[0].plain_columns.as_deref().unwrap());
    flip_byte(&set, 30);
    truncate(&plain);
    let events = m.files(Table::Events).iter().find(|f| f.dead.is_some()).expect("events marked dead");
    let events_set = at(&events.dead.as_ref().unwrap().set.path);
    truncate(&events_set);
    let found = problems(&store);
    for damaged in [&set, &plain, &events_set] {
        assert!(found.contains(damaged), "{} among {found:?}", damaged.display());
    }
    let err =
        session(&store).query("SELECT count(*), sum(amount) FROM purchases").await.expect_err("damaged").to_string();
    assert!(err.contains("corrupt") && err.contains(&*set.to_string_lossy()), "{err}");

    let summary = {
        let _scope = lock_scope();
        store.repair().unwrap()
    };
    assert!(summary.unrepairable.is_empty(), "{:?}", summary.unrepairable);
    assert_eq!(summary.rebuilt.len(), 3, "two sets marked again, one file written again: {:?}", summary.rebuilt);
    let repaired = Store::open(&root).unwrap();
    check_passes(&repaired);
    assert_eq!(answers(&repaired).await, expected);
    let manifest = repaired.snapshot().unwrap().manifest().clone();
    let before: Vec<&str> = m.files(Table::Purchases).iter().map(|f| f.path.as_str()).collect();
    let rewritten: Vec<_> =
        manifest.files(Table::Purchases).iter().filter(|f| !before.contains(&f.path.as_str())).collect();
    assert!(!rewritten.is_empty() && rewritten.iter().all(|f| f.dead.is_none()), "written again without dead rows");
    assert!(!manifest.files(Table::Purchases).iter().any(|f| f.path == marked[0].path));
}
