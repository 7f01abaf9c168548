//! Measures identity resolution against the generator's planted identity graph (docs/identity.md):
//! generates N users, imports users and identities into a new store, and prints the pairwise
//! precision and recall of `user_persons` against `identity_truth/persons.csv`, the time of the
//! import and the persons found.
//!
//! ```sh
//! cargo run --release --example identity_quality -- 1000000 /tmp/idq   # N users, work folder (removed first)
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use persona::r#gen::identities::{PairwiseQuality, TRUTH_DIR, TRUTH_FILE};
use persona::r#gen::{GenFormat, GenOptions, generate};
use persona::{Error, ImportOptions, SessionOptions, Store};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> persona::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = || Error::Arguments("usage: identity_quality USERS WORK_DIR".into());
    let users: u64 = args.next().and_then(|n| n.parse().ok()).ok_or_else(usage)?;
    let work = PathBuf::from(args.next().ok_or_else(usage)?);
    let _ = std::fs::remove_dir_all(&work);
    let data = work.join("data");
    let started = Instant::now();
    generate(&GenOptions { users, seed: 42, out: data.clone(), format: GenFormat::Parquet }, &|_| {})?;
    println!("generated {users} users in {:.1} s", started.elapsed().as_secs_f64());
    let store = Store::open_or_create(work.join("store"))?;
    let started = Instant::now();
    store.import(&[data.join("users"), data.join("identities")], &ImportOptions::default())?;
    let import = started.elapsed();
    let resolution = store
        .snapshot()?
        .manifest()
        .identity
        .resolution
        .clone()
        .ok_or_else(|| Error::Failed("the import made no identity resolution".into()))?;
    println!(
        "imported users and identities in {:.1} s: {} links ({} linked, rejected {:?}), {} users in {} persons",
        import.as_secs_f64(),
        resolution.link_rows,
        resolution.linked,
        resolution.rejected,
        resolution.users,
        resolution.person_count
    );
    let session = store.session_with(&SessionOptions::default())?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| Error::Failed(e.to_string()))?;
    let batches = runtime.block_on(session.query("SELECT user_id, person_id FROM user_persons"))?;
    let mut predicted: HashMap<String, u64> = HashMap::new();
    for b in &batches {
        let ids = arrow::array::AsArray::as_string::<i32>(b.column(0));
        let persons = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(b.column(1));
        for i in 0..b.num_rows() {
            predicted.insert(ids.value(i).to_string(), persons.value(i) as u64);
        }
    }
    let truth_text = std::fs::read_to_string(data.join(TRUTH_DIR).join(TRUTH_FILE))
        .map_err(|e| Error::Failed(format!("read the truth: {e}")))?;
    let (mut pred, mut truth) = (Vec::new(), Vec::new());
    for line in truth_text.lines().skip(1) {
        let (user, person) = line.split_once(',').ok_or_else(|| Error::Failed(format!("bad truth line {line}")))?;
        let p = *predicted.get(user).ok_or_else(|| Error::Failed(format!("{user} has no person")))?;
        pred.push(p);
        truth.push(person.trim_start_matches('u').parse::<u64>().map_err(|e| Error::Failed(e.to_string()))?);
    }
    let q = PairwiseQuality::of(&pred, &truth);
    println!(
        "pairwise precision {:.4}, recall {:.4} ({} predicted pairs, {} true pairs, {} correct)",
        q.precision(),
        q.recall(),
        q.predicted_pairs,
        q.true_pairs,
        q.correct_pairs
    );
    Ok(())
}
