//! Store paths as people type them: relative (`--store ../crm`), with spaces, Chinese and the
//! characters a glob would take for a pattern. Every query shape must work on them — the Parquet
//! scans (object-store paths) as well as the counts the bitmaps answer.

use std::path::Path;
use std::process::{Command, Output};

use crate::util::*;

fn persona_in(cwd: &Path, args: &[&str]) -> Output {
    output(Command::new(env!("CARGO_BIN_EXE_persona")).current_dir(cwd).args(args))
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn relative_and_unusual_store_paths_answer_every_query_shape() {
    let dir = tempfile::tempdir().unwrap();
    let users = write(dir.path(), "in/users.csv", USERS_CSV);
    let purchases = write(dir.path(), "in/purchases.csv", PURCHASES_CSV);
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    for name in ["crm", "客户 数据 [2026]*?"] {
        let relative = format!("../{name}");
        stdout_of(&persona_in(
            &work,
            &["import", "--quiet", "--store", &relative, users.to_str().unwrap(), purchases.to_str().unwrap()],
        ));
        let queries = [
            // Parquet scans of users and of the facts.
            ("SELECT user_id, name FROM users WHERE tier = 'gold' ORDER BY user_id", "user_id,name\n"),
            ("SELECT count(*) AS n FROM purchases", "n\n"),
            // A count the bitmaps answer.
            ("SELECT count(*) AS n FROM users WHERE tier = 'gold'", "n\n"),
            // A join of users and facts.
            (
                "SELECT u.user_id, sum(p.amount) AS total FROM users u JOIN purchases p ON p.user_id = u.user_id \
                 GROUP BY u.user_id ORDER BY u.user_id",
                "user_id,total\n",
            ),
        ];
        for (sql, header) in queries {
            let out = stdout_of(&persona_in(&work, &["sql", "--store", &relative, "--format", "csv", "-c", sql]));
            assert!(out.starts_with(header) && out.lines().count() > 1, "{name}: {sql}\n{out}");
        }
    }
}

/// `persona demo | head -1`: a reader that stops early is a normal end, not a panic.
#[test]
fn demo_into_a_closed_pipe_ends_quietly() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("demo store");
    let mut child = Command::new(env!("CARGO_BIN_EXE_persona"))
        .args(["demo", "--quiet", "--users", "300", "--dir", store.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the demo writes its first line, as `head` does once it has its lines.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status.code());
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The commands Persona suggests can be pasted into a shell as printed: a store path with a
/// space, a quote or a glob character is quoted in them.
#[test]
fn suggested_commands_quote_a_store_path_a_shell_would_split() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("客户 O'Neil [demo]");
    let out =
        stdout_of(&persona_in(dir.path(), &["demo", "--quiet", "--users", "300", "--dir", store.to_str().unwrap()]));
    let quoted = format!("--store '{}'", store.to_str().unwrap().replace('\'', "'\\''"));
    let suggestions: Vec<&str> = out.lines().filter(|l| l.contains("persona ") && l.contains("--store")).collect();
    assert!(suggestions.len() >= 4, "{out}");
    for line in suggestions {
        assert!(line.contains(&quoted), "{line}\nwants {quoted}");
    }
    // Pasted into a shell, the first suggestion opens the store.
    let sql = format!(
        "persona sql --store '{}' -c 'SELECT count(*) AS n FROM users'",
        store.to_str().unwrap().replace('\'', "'\\''")
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_persona")).parent().unwrap().to_str().unwrap().to_string();
    let pasted = output(
        Command::new("sh")
            .arg("-c")
            .arg(&sql)
            .env("PATH", format!("{bin}:{}", std::env::var("PATH").unwrap_or_default())),
    );
    assert!(stdout_of(&pasted).contains("300"), "{sql}");
    // The not-a-store error's suggestion too.
    let elsewhere = dir.path().join("no store here");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let err = persona_in(dir.path(), &["sql", "--store", elsewhere.to_str().unwrap(), "-c", "SELECT 1"]);
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(stderr.contains(&format!("persona import --store '{}'", elsewhere.to_str().unwrap())), "{stderr}");
}
