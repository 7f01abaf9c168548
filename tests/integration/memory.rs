//! Bounded memory (issue 17): a session's memory limit (`SessionOptions::memory_limit`,
//! `SET datafusion.runtime.memory_limit`, `--memory-limit`) holds Persona's per-user aggregates —
//! as an audience term and as an operator — and DataFusion's own operators to it; a query over
//! it fails with a "resources exhausted" error that says how to raise it, and the session stays
//! usable: raised, or reset, the same query gives the unlimited answer.

use persona::SessionOptions;

use crate::util::*;

/// A per-user aggregate as an audience term (evaluated with the index) and as an operator.
const AGGREGATES: &[&str] = &[
    "SELECT count(*) FROM users WHERE user_id IN \
     (SELECT user_id FROM purchases GROUP BY user_id HAVING sum(amount) > 300)",
    "SELECT user_id, sum(amount) AS spent FROM purchases GROUP BY user_id ORDER BY spent DESC, user_id LIMIT 5",
];

fn sample(dir: &std::path::Path) -> persona::Store {
    let store = create_store(dir.join("store"));
    import(&store, &[&sample_dir()]).unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_the_limit_fails_clearly_and_the_session_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = sample(dir.path());
    let unlimited = session(&store);
    let mut expected = Vec::new();
    for q in AGGREGATES {
        expected.push(rows(&unlimited, q).await);
    }
    // 256 KiB: less than one chunk of a per-user sum (65,536 slots).
    let limited =
        store.session_with(&SessionOptions { memory_limit: Some(256 << 10), ..SessionOptions::default() }).unwrap();
    for q in AGGREGATES {
        let err = limited.query(q).await.expect_err("over the limit").to_string();
        assert!(err.contains("Resources exhausted") && err.contains("per-user aggregate"), "{q}: {err}");
        assert!(err.contains("datafusion.runtime.memory_limit"), "says how to raise it: {err}");
    }
    rows(&limited, "SET datafusion.runtime.memory_limit = '64M'").await;
    for (q, want) in AGGREGATES.iter().zip(&expected) {
        assert_eq!(&rows(&limited, q).await, want, "{q} after raising the limit");
    }
    rows(&limited, "SET datafusion.runtime.memory_limit = '100K'").await;
    assert!(limited.query(AGGREGATES[0]).await.is_err(), "lowered again");
    rows(&limited, "RESET datafusion.runtime.memory_limit").await;
    assert_eq!(rows(&limited, AGGREGATES[0]).await, expected[0], "no limit after RESET");
    // DataFusion's own operators take from the same pool: a hash aggregate and a sort of every
    // purchase on the general path fail (or spill) under a tiny limit, never answer wrongly.
    let general = "SELECT user_id, product_id, count(*) AS n FROM purchases GROUP BY user_id, product_id \
                   ORDER BY n DESC, user_id, product_id LIMIT 3";
    rows(&limited, "SET persona.use_indexes = false").await;
    let want = rows(&limited, general).await;
    rows(&limited, "SET datafusion.runtime.memory_limit = '20K'").await;
    match limited.query(general).await {
        Err(e) => assert!(e.to_string().contains("Resources exhausted"), "{e}"),
        Ok(batches) => assert_eq!(batches_to_rows(&batches), want, "spilled, same answer"),
    }
    // Persona's window chain (ntile over a full sort, one level) reserves what it buffers.
    rows(&limited, "SET persona.use_indexes = true").await;
    let window = "SELECT user_id, ntile(4) OVER (ORDER BY points, user_id) AS q FROM users";
    rows(&limited, "RESET datafusion.runtime.memory_limit").await;
    let want = rows(&limited, window).await;
    assert!(want.len() > 1000, "{} rows", want.len());
    rows(&limited, "SET datafusion.runtime.memory_limit = '16K'").await;
    let err = limited.query(window).await.expect_err("over the limit").to_string();
    assert!(err.contains("Resources exhausted") && err.contains("a window chain"), "{err}");
    rows(&limited, "SET datafusion.runtime.memory_limit = '64M'").await;
    assert_eq!(rows(&limited, window).await, want, "the window chain after raising the limit");
    rows(&limited, "SET datafusion.runtime.memory_limit = '20K'").await;
    // The limit outlives a move to a newer version.
    let pieces = dir.path().join("more");
    let tags = write(&pieces, "user_tags.csv", "user_id,tag\nu1,limit_test\n");
    import(&store, &[&tags]).unwrap();
    limited.refresh().unwrap();
    rows(&limited, "SET persona.use_indexes = true").await;
    assert!(limited.query(AGGREGATES[0]).await.is_err(), "still limited after refresh");
}

#[test]
fn the_command_line_takes_a_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = sample(dir.path());
    let mut cmd = persona_bin();
    let out = output(cmd.args(["sql", "--memory-limit", "256K", "-c", AGGREGATES[0], "--store"]).arg(store.root()));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Resources exhausted") && stderr.contains("memory limit"), "{stderr}");
    let mut cmd = persona_bin();
    let out = output(cmd.args(["sql", "--memory-limit", "512M", "-c", AGGREGATES[0], "--store"]).arg(store.root()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut cmd = persona_bin();
    let out = output(cmd.args(["sql", "--memory-limit", "lots", "-c", "SELECT 1", "--store"]).arg(store.root()));
    assert_eq!(out.status.code(), Some(2), "a bad value is a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--memory-limit") && stderr.contains("2G"), "{stderr}");
}
