//! `persona shell` driven as a person drives it: the real binary in a pseudo-terminal (rexpect),
//! with assertions on what the screen shows — Tab completion of a tag name, a statement over
//! several lines, a refused statement shown with its position, Ctrl-C during a long query leaving
//! a working prompt, `\d users`, `\profile`, history kept across sessions — and the same binary fed
//! a script on standard input. Each test imports `datasets/sample` into its own temporary store.
//! No assertion is about time; the generous timeout only keeps a broken shell from hanging CI.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rexpect::session::{PtySession, spawn_command};

/// How long any expected text may take to appear.
const TIMEOUT_MS: u64 = 30_000;

const PROMPT: &str = "persona> ";

/// A store loaded from the sample data set, and a history file of its own.
struct Fixture {
    dir: tempfile::TempDir,
    store: PathBuf,
    history: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = dir.path().join("store");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/sample");
    let out = persona().args(["import", "--quiet", "--store"]).arg(&store).arg(&sample).output().expect("run import");
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    let history = dir.path().join("state/history");
    Fixture { dir, store, history }
}

fn persona() -> Command {
    Command::new(env!("CARGO_BIN_EXE_persona"))
}

/// The shell in a pseudo-terminal.
struct Screen {
    pty: PtySession,
}

impl Screen {
    /// Starts the shell on the fixture's store and waits for its first prompt. `colors: false`
    /// sets NO_COLOR, which keeps the echo of typed text plain.
    fn open(f: &Fixture, colors: bool) -> Screen {
        let mut cmd = persona();
        cmd.args(["shell", "--store"])
            .arg(&f.store)
            .args(["--now", "2026-11-01"])
            .env("TERM", "xterm")
            .env("PERSONA_HISTORY", &f.history)
            .current_dir(f.dir.path());
        if colors {
            cmd.env_remove("NO_COLOR");
        } else {
            cmd.env("NO_COLOR", "1");
        }
        let pty = spawn_command(cmd, Some(TIMEOUT_MS)).expect("start persona shell in a pty");
        let mut screen = Screen { pty };
        screen.expect("\\? lists the commands");
        screen.expect(PROMPT);
        screen
    }

    /// Waits until `text` appears; returns what came before it.
    fn expect(&mut self, text: &str) -> String {
        self.pty.exp_string(text).unwrap_or_else(|e| panic!("waiting for {text:?} on the screen: {e}"))
    }

    /// Types `text` and Enter.
    fn line(&mut self, text: &str) {
        self.type_keys(text);
        self.type_keys("\r");
    }

    /// Types `text` without Enter.
    fn type_keys(&mut self, text: &str) {
        self.pty.send(text).expect("type into the pty");
        self.pty.flush().expect("flush the pty");
    }

    fn control(&mut self, key: char) {
        self.pty.send_control(key).expect("send a control key");
    }
}

/// Runs `SELECT count(*) AS n ...` through `persona sql` for the expected number.
fn count(f: &Fixture, sql: &str) -> String {
    let out = persona().args(["sql", "--format", "csv", "--store"]).arg(&f.store).args(["-c", sql]).output().unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().nth(1).expect("a value").to_string()
}

#[test]
fn tab_completes_a_tag_name_inside_quotes() {
    let f = fixture();
    let expected = count(&f, "SELECT count(*) FROM user_tags WHERE tag = 'cart_abandoner'");
    assert_eq!(expected, "68", "the sample data set changed");
    let mut s = Screen::open(&f, true);
    // `cart_ab` is the start of one tag only: Tab writes the rest and the closing quote.
    s.type_keys("SELECT count(*) AS n FROM user_tags WHERE tag = 'cart_ab");
    s.type_keys("\t");
    s.expect("andoner'");
    s.line(";");
    s.expect(&format!("| {expected} "));
    s.expect("(1 row");
    s.expect(PROMPT);
}

#[test]
fn a_statement_goes_on_until_its_semicolon() {
    let f = fixture();
    let mut s = Screen::open(&f, false);
    s.line("SELECT count(*) AS gold_members");
    s.line("FROM users");
    s.line("WHERE tier = 'gold';");
    s.expect("| gold_members |");
    s.expect("| 202          |");
    s.expect("(1 row");
    s.expect(PROMPT);
}

#[test]
fn a_wrong_statement_is_shown_with_its_position_and_the_shell_goes_on() {
    let f = fixture();
    let mut s = Screen::open(&f, false);
    // Refused by the parser before it runs: the message and a caret under column 26.
    s.line("SELECT * FROM users WHERE;");
    s.expect("error: Expected: an expression, found: ; (at line 1, column 26)");
    s.expect("    1 | SELECT * FROM users WHERE;\r\n      |                          ^");
    s.control('c');
    s.expect(PROMPT);
    // Parsed, but refused by the planner: reported after Enter, again with its position.
    s.line("SELECT nme FROM users;");
    s.expect("error: Schema error: No field named nme");
    s.expect("(at line 1, column 8)");
    s.expect("      |        ^");
    s.expect(PROMPT);
    s.line("SELECT 6 * 7 AS answer;");
    s.expect("| 42     |");
}

#[test]
fn ctrl_c_cancels_a_long_query_and_the_prompt_comes_back() {
    let f = fixture();
    let mut s = Screen::open(&f, false);
    // Counting 10^11 generated rows takes minutes: it is still running when Ctrl-C comes.
    s.line("SELECT count(*) FROM range(100000000000);");
    s.expect("(Ctrl-C cancels)");
    s.control('c');
    s.expect("cancelled");
    s.expect(PROMPT);
    s.line("SELECT 6 * 7 AS answer;");
    s.expect("| 42     |");
    s.expect(PROMPT);
}

/// Regression: the prompt's timers and Ctrl-C once ran on the runtime that executes queries, so a
/// query that kept every worker computing without a pause (a nested-loop join over a cross
/// product) showed no spinner and ignored Ctrl-C. They now run on a runtime of their own.
#[test]
fn ctrl_c_is_noticed_even_while_the_query_keeps_every_worker_busy() {
    let f = fixture();
    let mut s = Screen::open(&f, false);
    s.line("SELECT count(*) FROM purchases a, purchases b, users c WHERE a.amount + b.amount > c.points;");
    s.expect("(Ctrl-C cancels)");
    s.control('c');
    s.expect("cancelled");
    s.expect(PROMPT);
    // Commands that read the pinned version's manifest need no worker and answer at once.
    s.line("\\d");
    s.expect("| purchases  | 10134 | 7       |");
    s.expect(PROMPT);
}

#[test]
fn backslash_d_describes_the_users_table() {
    let f = fixture();
    let mut s = Screen::open(&f, false);
    s.line("\\d users");
    s.expect("users: 2000 rows at version 1");
    s.expect("| column              | type    | bitmap index |");
    s.expect("| tier                | VARCHAR | values       |");
    s.expect("| points              | BIGINT  | range        |");
    // Custom columns of the sample set are listed too.
    s.expect("| income_band         | BIGINT  |");
    s.expect(PROMPT);
    s.line("\\d");
    s.expect("| user_tags  | 11943 | 3       |");
}

#[test]
fn backslash_profile_shows_a_user_with_tags_and_recent_purchases() {
    let f = fixture();
    let mut s = Screen::open(&f, false);
    s.line("\\profile u1069");
    s.expect("-[ RECORD 1 ]");
    s.expect("email               | u1069@qq.com");
    s.expect("tags (2):");
    s.expect("| vip        |");
    s.expect("| wechat_fan |");
    s.expect("purchases (7 in all, the 7 most recent):");
    // Newest first, with the product's name.
    s.expect("| 2026-10-16 13:08 | o5304    | Kadore Advanced Bracelet B84   | 447.08 |");
    s.expect(PROMPT);
    s.line("\\profile nobody");
    s.expect("error: no user has user_id 'nobody'");
}

#[test]
fn backslash_profile_shows_the_person_with_its_profiles_and_identifiers() {
    let f = fixture();
    let identities = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/identity/identities.csv");
    let out = persona().args(["import", "--quiet", "--store"]).arg(&f.store).arg(&identities).output().expect("import");
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut s = Screen::open(&f, false);
    s.line("\\profile u5");
    s.expect("-[ RECORD 1 ]");
    s.expect("person 0 (3 profile(s)): u0, u5, u7");
    s.expect("identifiers (");
    s.expect("| phone      | +8613418494637");
    s.expect("| wx_unionid | oU_demo_3");
    s.expect(PROMPT);
}

#[test]
fn history_is_kept_across_sessions_and_searchable() {
    let f = fixture();
    let mut s = Screen::open(&f, false);
    s.line("SELECT 'remembered' AS note;");
    s.expect("| remembered |");
    s.expect(PROMPT);
    s.control('d');
    s.pty.exp_eof().expect("Ctrl-D leaves the shell");
    let saved = std::fs::read_to_string(&f.history).expect("the history file was written");
    assert!(saved.contains("SELECT 'remembered' AS note;"), "{saved}");

    // A new session finds it with Ctrl-R and runs it again.
    let mut s = Screen::open(&f, false);
    s.control('r');
    s.type_keys("rememb");
    s.expect("SELECT 'remembered' AS note;");
    s.type_keys("\r");
    s.expect("| remembered |");
    s.expect(PROMPT);
}

/// Runs the shell with `script` on standard input.
fn script(f: &Fixture, script: &str) -> Output {
    let mut child = persona()
        .args(["shell", "--store"])
        .arg(&f.store)
        .env("PERSONA_HISTORY", &f.history)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start persona shell");
    child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write the script");
    child.wait_with_output().expect("wait for persona shell")
}

#[test]
fn a_script_on_standard_input_prints_its_results() {
    let f = fixture();
    let out = script(
        &f,
        "-- a report\nSELECT count(*) AS n\nFROM users WHERE tier = 'gold';\n\\tags cart\nSELECT 1 AS one;\n",
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout,
        "+-----+\n| n   |\n+-----+\n| 202 |\n+-----+\n\n\
         +----------------+-------+--------+\n| tag            | users | kind   |\n+----------------+-------+--------+\n| cart_abandoner | 68    | loaded |\n+----------------+-------+--------+\n(1 tag)\n\n\
         +-----+\n| one |\n+-----+\n| 1   |\n+-----+\n"
    );
    assert!(!f.history.exists(), "a script leaves the history alone");
}

#[test]
fn a_script_can_switch_to_csv_and_its_output_stays_only_csv() {
    let f = fixture();
    let out =
        script(&f, "\\format csv\n\\timing off\nSELECT tier, count(*) AS n FROM users GROUP BY tier ORDER BY n;\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "tier,n\nplatinum,78\ngold,202\nsilver,515\nbronze,1205\n");
}

#[test]
fn a_script_stops_at_its_first_error_with_the_scripts_line() {
    let f = fixture();
    let out = script(&f, "SELECT 1 AS one;\n\nSELECT *\nFROM users WHERE;\nSELECT 2 AS two;\n");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.contains("| one |") && !stdout.contains("two"), "{stdout}");
    assert!(stderr.starts_with("error: Expected: an expression, found: ; (at line 4, column 17)"), "{stderr}");
    assert!(stderr.contains("    4 | FROM users WHERE;\n      |                 ^"), "{stderr}");

    // An included file's errors name the file and its own line numbers.
    let file = f.dir.path().join("report.sql");
    std::fs::write(&file, "SELECT 1 AS one;\nSELECT nme FROM users;\n").unwrap();
    let out = script(&f, &format!("\\i {}\n", file.display()));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("(at line 2, column 8)"), "{stderr}");
    assert!(stderr.contains(&format!("in {}", file.display())), "{stderr}");
}

#[test]
fn without_a_store_the_shell_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = persona().arg("shell").current_dir(dir.path()).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("no --store given and there is no ./persona-demo store here"), "{stderr}");
    assert!(stderr.contains("persona demo"), "{stderr}");
}

/// Regression: a tag or audience statement moved the shell to a new version without a word.
#[test]
fn a_catalog_statement_says_which_version_the_shell_is_now_at() {
    let f = fixture();
    let mut s = Screen::open(&f, false);
    s.line("CREATE TAG rich AS points > 50000;");
    s.expect("| rich | 62    | 62    | 0       |");
    s.expect("now at version 2");
    s.expect(PROMPT);
    s.line("SELECT 1 AS one;");
    s.expect("| 1   |");
    let after = s.expect(PROMPT);
    assert!(!after.contains("now at version"), "only a commit moves the shell: {after}");
}

/// The catalog as the shell shows it: `\audiences`, `\d audiences`, `\d tags`, `SHOW AUDIENCE`,
/// rule tags marked in `\tags`, a user's audiences in `\profile`, dates in `\explain`.
#[test]
fn the_shell_browses_the_catalog() {
    let f = fixture();
    let mut s = Screen::open(&f, false);
    s.line("\\audiences");
    s.expect("the store has no saved audiences");
    s.line("CREATE AUDIENCE golds HOLDOUT 10 PERCENT AS SELECT user_id, email FROM users WHERE tier = 'gold';");
    s.expect("now at version 2");
    s.line("CREATE TAG rich AS points > 50000;");
    s.expect("now at version 3");
    s.line("\\audiences");
    s.expect("| audience | members | exported | version | holdout | suppress | computed_at");
    s.expect("| golds    | 202     |");
    s.expect("(1 audience; SHOW AUDIENCE name shows one in full)");
    s.line("\\d audiences");
    s.expect("audiences: 1 row at version 3");
    s.expect("| holdout_percent | DOUBLE");
    s.line("\\d tags");
    s.expect("| kind        | VARCHAR");
    s.line("\\d");
    s.expect("catalog: tags, audiences, audience_versions");
    s.expect("1 saved audience");
    // A long value: folded into blocks or not, the text is there.
    s.line("SHOW AUDIENCE golds;");
    s.expect("SELECT user_id, email FROM users WHERE tier = 'gold'");
    s.expect("10 % of the members");
    s.expect("202 members (+202 ");
    s.expect("now() = 2026-11-01T00:00:00Z (pinned)");
    s.expect(PROMPT);
    s.line("\\tags ric");
    s.expect("| rich | 62    | rule |");
    s.line("\\tags vip");
    s.expect("| vip | 280   | loaded |");
    s.line("\\profile u1069");
    s.expect("audiences (1): golds");
    s.expect("purchases (7 in all");
    s.expect(PROMPT);
    s.line("\\explain SELECT count(*) FROM users WHERE purchased_within(INTERVAL '30 days')");
    s.expect(r#""first_day":"2026-10-02","last_day":"2026-10-31""#);
    s.expect(PROMPT);
}

/// Regression: `persona shell --help` offered `parquet`, which the shell then refused.
#[test]
fn the_shell_offers_only_the_formats_it_writes() {
    let out = persona().args(["shell", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("table") && help.contains("vertical") && help.contains("json"), "{help}");
    assert!(!help.contains("parquet"), "{help}");
}

/// Regression: the lines after the first of a multi-line statement had no prompt, so nothing
/// told that the shell was waiting for the rest of a statement.
#[test]
fn a_statement_over_several_lines_shows_a_continuation_prompt() {
    let f = fixture();
    let mut s = Screen::open(&f, false);
    s.line("SELECT count(*) AS n");
    s.expect("    ...> ");
    s.line("FROM users u");
    s.expect("    ...> ");
    // Completion reads the earlier lines: `u.` is users.
    s.type_keys("WHERE u.tie");
    s.type_keys("\t");
    s.expect("r");
    s.line(" = 'gold';");
    s.expect("| 202 |");
    s.expect(PROMPT);
    // Ctrl-C drops the whole statement, its earlier lines included.
    s.line("SELECT nonsense");
    s.expect("    ...> ");
    s.control('c');
    s.expect(PROMPT);
    s.line("SELECT 6 * 7 AS answer;");
    s.expect("| 42     |");
    s.expect(PROMPT);
    s.control('d');
    s.pty.exp_eof().expect("Ctrl-D leaves the shell");
    // The statement is one entry of the history.
    let saved = std::fs::read_to_string(&f.history).expect("the history file was written");
    assert!(saved.contains("FROM users u"), "{saved}");
    assert!(!saved.contains("nonsense"), "a dropped statement is not kept: {saved}");
}

#[test]
fn a_misspelled_tag_is_warned_with_a_suggestion_in_the_shell() {
    let f = fixture();
    let out = script(&f, "SELECT count(*) AS n FROM users WHERE has_tag('cart_abandonr');\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("warning:") && stderr.contains("cart_abandoner"), "{stderr}");
}

#[test]
fn portrait_and_overlap_draw_bars_of_the_bitmaps_answers() {
    let f = fixture();
    let out = script(&f, "\\portrait vip\n\\overlap A B vip\n\\overlap A nobody_has_this\n");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    // vip members are all gold (202) or platinum (78): 72.1 % and 27.9 % of 280, TGI 714.
    assert!(stdout.contains("portrait of vip: 280 users (14.0 % of 2000)"), "{stdout}");
    let gold = stdout.lines().find(|l| l.trim_start().starts_with("gold ")).expect("a gold line");
    assert!(
        gold.contains("72.1 %") && gold.contains("202") && gold.contains("TGI  714") && gold.contains('█'),
        "{gold}"
    );
    assert!(stdout.contains("most distinguishing tags"), "{stdout}");
    // The Venn regions of three tags: seven rows, the union in the title.
    assert!(stdout.contains("overlap of A, B, vip: 1030 users in any"), "{stdout}");
    let both = stdout.lines().find(|l| l.trim_start().starts_with("A & B & vip")).expect("the centre region");
    assert!(both.contains(" 15 ") && both.contains("1.5 %"), "{both}");
    assert!(stderr.contains("'nobody_has_this' is neither a saved audience nor a tag"), "{stderr}");
}

#[test]
fn rfm_draws_the_recency_by_frequency_grid_and_the_segments() {
    let f = fixture();
    let out = script(&f, "\\rfm\nSELECT count(*) AS n FROM rfm;\n");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let buyers: i64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("rfm: ")?.split_once(' ')?.0.parse().ok())
        .expect("the title with the buyers");
    // The grid's 25 cells add up to the buyers, as does the view's count.
    let cells: i64 = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("R="))
        .flat_map(|l| l.split_whitespace().filter_map(|w| w.trim_matches(['░', '▒', '▓', '█']).parse::<i64>().ok()))
        .sum();
    assert_eq!(cells, buyers, "{stdout}");
    assert!(stdout.contains(&format!("| {buyers} ")), "{stdout}");
    assert!(stdout.contains("important value") && stdout.contains("general recall"), "{stdout}");
}

#[test]
fn model_trains_explains_and_scores() {
    let f = fixture();
    let out = script(
        &f,
        "\\model\n\
         CREATE MODEL buyers AS LOGISTIC REGRESSION PREDICT SELECT user_id FROM user_tags WHERE tag = 'high_value' \
         FROM tier, points, TAGS ('vip');\n\
         \\model buyers\n\
         \\model\n\
         SELECT count(*) AS scored FROM predict('buyers');\n\
         \\model nope\n",
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.contains("the store has no models"), "{stdout}");
    assert!(stdout.contains("trained model 'buyers' on 2000 users"), "{stdout}");
    assert!(stdout.contains("model buyers: logistic regression on 2000 users"), "{stdout}");
    // One bar per term: three tier levels, points and the tag, each with its odds ratio.
    let bars: Vec<&str> = stdout.lines().filter(|l| l.contains('│') && l.contains("odds ×")).collect();
    assert_eq!(bars.len(), 5, "{stdout}");
    assert!(bars.iter().any(|l| l.trim_start().starts_with("tier = ")), "{stdout}");
    assert!(bars.iter().any(|l| l.contains('█')), "{stdout}");
    assert!(stdout.contains("| 2000 "), "{stdout}");
    assert!(stderr.contains("there is no model 'nope'"), "{stderr}");
}
