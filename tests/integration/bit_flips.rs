//! Bit flips in store files (issue 17, item 5): one bit flipped at a seeded random offset of the
//! current manifest, the index, an id dictionary segment, a catalog set, or a users, plain or
//! day-time copy. Opening the store and answering queries that read every kind must never panic
//! (nor must `check`). Every kind carries checksums (the Arrow IPC copies since their footer holds
//! them, `store::ipc_checksums`): the queries must give the undamaged answers (the flipped bit
//! was not read) or fail with a corrupt error naming the damaged file and the repair, and `check`
//! must name it. Tallies are printed (recorded in `docs/reliability.md`).

// The tallies are printed (docs/reliability.md records them).
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use futures::FutureExt;
use persona::Store;

use crate::util::*;

/// Queries that read every kind of file: the id dictionary (`user_id =`), users copies (point
/// lookups), plain copies (purchase sums), day times (event windows), the index and catalog sets.
const QUERIES: &[&str] = &[
    "SELECT count(*), sum(points) FROM users",
    "SELECT name, tier, points FROM users WHERE user_id = 'u12'",
    "SELECT user_id, points FROM users WHERE user_id IN ('u3', 'u40', 'u77') ORDER BY user_id",
    "SELECT count(*) FROM users WHERE tier = 'gold' AND points > 2000",
    "SELECT count(*), round(sum(amount), 2) FROM purchases WHERE amount > 100",
    "SELECT user_id, round(sum(amount), 2) AS total FROM purchases GROUP BY user_id ORDER BY total DESC, user_id LIMIT 5",
    "SELECT count(*) FROM users WHERE user_id IN (SELECT user_id FROM events WHERE ts >= TIMESTAMP '2026-06-01')",
    "SELECT count(*) FROM users WHERE user_id IN (SELECT user_id FROM events WHERE ts >= TIMESTAMP '2026-06-01 12:30:00')",
    "SELECT user_id, email FROM users WHERE tier = 'gold' ORDER BY user_id",
    "SELECT event_type, count(*) FROM events GROUP BY event_type ORDER BY 1",
    "SELECT tag, count(*) FROM user_tags GROUP BY tag ORDER BY tag",
    "SELECT count(*) FROM users WHERE has_tag('big_spender')",
    "SELECT count(*) FROM users WHERE has_tag('vip') OR has_tag('dormant')",
];

/// The kind of a store file, by its path; `None` for kinds not damaged here (Parquet data files
/// carry no checksums of their own; the lock and `CURRENT`).
fn kind_of(relative: &str) -> Option<&'static str> {
    if relative.starts_with("_persona/manifests/") {
        Some("manifest")
    } else if relative.starts_with("index/") {
        Some("index")
    } else if relative.starts_with("ids/") && relative.ends_with(".ids") {
        Some("id segment")
    } else if relative.starts_with("catalog/") {
        Some("catalog set")
    } else if relative.ends_with(".plain.arrow") {
        Some("plain copy")
    } else if relative.ends_with(".times.arrow") {
        Some("day times")
    } else if relative.ends_with(".arrow") {
        Some("users copy")
    } else {
        None
    }
}

/// A small deterministic generator (xorshift64*).
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// The answers of [`QUERIES`], or the first error.
async fn try_answers(root: &Path) -> persona::Result<Vec<Vec<String>>> {
    let store = Store::open(root)?;
    let session = store.session_with(&persona::SessionOptions {
        now: Some(chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap().to_utc()),
        target_partitions: Some(2),
        ..persona::SessionOptions::default()
    })?;
    let mut out = Vec::new();
    for q in QUERIES {
        out.push(batches_to_rows(&session.query(q).await?));
    }
    Ok(out)
}

/// The files of the store's current version (and its manifest), by kind.
fn files_by_kind(store: &Store) -> BTreeMap<&'static str, Vec<String>> {
    let snapshot = store.snapshot().unwrap();
    let manifest = snapshot.manifest();
    let mut files: Vec<String> = manifest.referenced_files().into_iter().collect();
    files.push(format!("_persona/manifests/{}", persona::store::layout::manifest_name(manifest.version)));
    let mut by_kind: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for file in files {
        if let Some(kind) = kind_of(&file) {
            by_kind.entry(kind).or_default().push(file);
        }
    }
    by_kind
}

/// Whether a kind is derived from the data (so that its corrupt error names the repair).
fn derived(kind: &str) -> bool {
    matches!(kind, "index" | "id segment" | "plain copy" | "day times" | "users copy")
}

#[derive(Default, Debug)]
struct Tally {
    flips: usize,
    /// An error naming the file.
    detected: usize,
    /// The undamaged answers (the bit was not read, or not used by these queries).
    unaffected: usize,
    /// `check` named the file.
    checked: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bits_give_a_corrupt_error_naming_the_file_or_the_right_answer() {
    let dir = tempfile::tempdir().unwrap();
    let base = crate::faults::base_store(dir.path()).await;
    let expected = try_answers(&base).await.unwrap();
    let by_kind = files_by_kind(&Store::open(&base).unwrap());
    for kind in ["manifest", "index", "id segment", "catalog set", "plain copy", "day times", "users copy"] {
        assert!(by_kind.contains_key(kind), "the sample store has no {kind}: {:?}", by_kind.keys());
    }
    let mut rng = Seeded(0x5eed_f11b);
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut failures = Vec::new();
    let scratch = dir.path().join("flip");
    for (kind, files) in &by_kind {
        for _ in 0..16 {
            let file = &files[rng.below(files.len() as u64) as usize];
            let _ = std::fs::remove_dir_all(&scratch);
            crate::util::copy_tree(&base, &scratch);
            let path: PathBuf = scratch.join(file);
            let mut bytes = std::fs::read(&path).unwrap();
            let offset = rng.below(bytes.len() as u64) as usize;
            let bit = rng.below(8) as u8;
            bytes[offset] ^= 1 << bit;
            std::fs::write(&path, &bytes).unwrap();
            let name = Path::new(file).file_name().unwrap().to_string_lossy().into_owned();
            let what = format!("{kind} {file} byte {offset} bit {bit}");
            let tally = tallies.entry(kind).or_default();
            tally.flips += 1;
            match AssertUnwindSafe(try_answers(&scratch)).catch_unwind().await {
                Err(_) => failures.push(format!("{what}: panicked")),
                Ok(Ok(answers)) if answers == expected => tally.unaffected += 1,
                Ok(Err(e @ persona::Error::Corrupt { .. }))
                    if e.to_string().contains(&name) && (!derived(kind) || e.to_string().contains("--repair")) =>
                {
                    tally.detected += 1
                }
                Ok(Ok(answers)) => failures.push(format!("{what}: wrong answers {answers:?}")),
                Ok(Err(e)) => failures.push(format!("{what}: an error not naming the file: {e}")),
            }
            let checked = std::panic::catch_unwind(|| {
                let store = Store::open(&scratch)?;
                let report = persona::store::check::check(&store, persona::index::format::verify_file)?;
                Ok::<_, persona::Error>(report.problems.iter().any(|p| p.path.ends_with(file)))
            });
            match checked {
                Err(_) => failures.push(format!("{what}: check panicked")),
                Ok(Ok(true)) => tally.checked += 1,
                Ok(Err(e)) if e.to_string().contains(&name) => tally.checked += 1,
                Ok(_) => failures.push(format!("{what}: check did not name the file")),
            }
        }
    }
    for (kind, t) in &tallies {
        println!(
            "bit flips: {kind}: {} flips, {} detected by queries, {} not read, {} named by check",
            t.flips, t.detected, t.unaffected, t.checked
        );
    }
    assert!(failures.is_empty(), "{} of the flips went wrong:\n{}", failures.len(), failures.join("\n"));
}
