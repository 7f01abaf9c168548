//! `persona demo`: builds a realistic 100,000-customer store in `./persona-demo` (or reuses it) and
//! answers a handful of audience questions, printing each question, its SQL, the answer and the
//! time it took. Works offline with no flags.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;

use crate::engine::SessionOptions;
use crate::error::{Error, IoContext, Result};
use crate::r#gen::{GenFormat, GenOptions, generate};
use crate::ingest::ImportOptions;
use crate::shell_words::shell_path;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the demo store lives (reused when it exists).
    #[arg(long, default_value = "persona-demo")]
    pub dir: PathBuf,
    /// Customers to generate for a new demo store.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// "Now" of the generated data, pinned so that the answers reproduce.
const DEMO_NOW: &str = "2026-11-01T00:00:00Z";

/// The demo's questions: (question, SQL). `{exports}` is replaced by the export folder.
const QUESTIONS: &[(&str, &str)] = &[
    (
        "Gold members tagged A with no purchase in the last 90 days",
        "SELECT count(*) AS users
FROM users u
WHERE u.tier = 'gold'
  AND EXISTS (SELECT 1 FROM user_tags t WHERE t.user_id = u.user_id AND t.tag = 'A')
  AND NOT EXISTS (SELECT 1 FROM purchases p
                  WHERE p.user_id = u.user_id
                    AND p.ts >= now() - INTERVAL '90 days' AND p.ts < now())",
    ),
    (
        "The same audience, exported with e-mail addresses for a campaign",
        "COPY (
  SELECT u.user_id, u.email
  FROM users u
  WHERE u.tier = 'gold'
    AND EXISTS (SELECT 1 FROM user_tags t WHERE t.user_id = u.user_id AND t.tag = 'A')
    AND NOT EXISTS (SELECT 1 FROM purchases p
                    WHERE p.user_id = u.user_id
                      AND p.ts >= now() - INTERVAL '90 days' AND p.ts < now())
) TO '{exports}/gold-a-lapsed.parquet'",
    ),
    (
        "Tag A or B, in Guangdong/Zhejiang/Jiangsu, aged 25-35, without tag C",
        "SELECT count(*) AS users
FROM users u
WHERE u.region IN ('Guangdong', 'Zhejiang', 'Jiangsu')
  AND u.birth_date >  CAST(now() - INTERVAL '36 years' AS DATE)
  AND u.birth_date <= CAST(now() - INTERVAL '25 years' AS DATE)
  AND EXISTS (SELECT 1 FROM user_tags t WHERE t.user_id = u.user_id AND t.tag IN ('A', 'B'))
  AND NOT EXISTS (SELECT 1 FROM user_tags t WHERE t.user_id = u.user_id AND t.tag = 'C')",
    ),
    (
        "Bought skincare in the last 30 days and not at risk of churning",
        "SELECT count(DISTINCT p.user_id) AS users
FROM purchases p
JOIN products pr ON pr.product_id = p.product_id
WHERE pr.category = 'skincare'
  AND p.ts >= now() - INTERVAL '30 days' AND p.ts < now()
  AND NOT EXISTS (SELECT 1 FROM user_tags t WHERE t.user_id = p.user_id AND t.tag = 'churn_risk')",
    ),
    (
        "At least 3 WeChat purchases in 180 days totalling more than 1000",
        "SELECT count(*) AS users
FROM (
  SELECT p.user_id
  FROM purchases p
  WHERE p.channel_id = 'wechat' AND p.ts >= now() - INTERVAL '180 days' AND p.ts < now()
  GROUP BY p.user_id
  HAVING count(*) >= 3 AND sum(p.amount) > 1000
) s",
    ),
    (
        "Overlaps of tags A, B and C",
        "SELECT sum(a * b) AS a_and_b, sum(a * c) AS a_and_c, sum(b * c) AS b_and_c, sum(a * b * c) AS a_and_b_and_c
FROM (
  SELECT user_id,
         max(CASE WHEN tag = 'A' THEN 1 ELSE 0 END) AS a,
         max(CASE WHEN tag = 'B' THEN 1 ELSE 0 END) AS b,
         max(CASE WHEN tag = 'C' THEN 1 ELSE 0 END) AS c
  FROM user_tags WHERE tag IN ('A', 'B', 'C')
  GROUP BY user_id
) f",
    ),
    (
        "RFM: the largest recency/frequency/monetary quintile cells",
        "WITH rfm AS (
  SELECT user_id, max(ts) AS last_ts, count(*) AS frequency, round(sum(amount), 2) AS monetary
  FROM purchases WHERE ts < now() GROUP BY user_id
), scored AS (
  SELECT ntile(5) OVER (ORDER BY last_ts, user_id)   AS r,
         ntile(5) OVER (ORDER BY frequency, user_id) AS f,
         ntile(5) OVER (ORDER BY monetary, user_id)  AS m
  FROM rfm
)
SELECT r, f, m, count(*) AS users FROM scored GROUP BY r, f, m ORDER BY users DESC, r, f, m LIMIT 5",
    ),
    (
        "The latest buyer's profile and last purchases",
        "SELECT u.user_id, u.name, u.tier, u.city, u.points, p.ts, pr.name AS product, p.amount
FROM users u
JOIN purchases p ON p.user_id = u.user_id
JOIN products pr ON pr.product_id = p.product_id
WHERE u.user_id = (SELECT user_id FROM purchases WHERE ts < now() ORDER BY ts DESC, order_id LIMIT 1)
ORDER BY p.ts DESC
LIMIT 5",
    ),
];

/// Prints a line; ends the demo quietly when the reader went away (`persona demo | head`).
macro_rules! say {
    ($($arg:tt)*) => {
        if !write_line(&format!($($arg)*))? {
            return Ok(());
        }
    };
}

pub fn run(args: DemoArgs) -> Result<()> {
    let store = open_or_build(&args)?;
    let now = super::parse_now(DEMO_NOW).map_err(Error::Usage)?;
    let snapshot = store.snapshot()?;
    say!(
        "Persona demo store {} (version {}, {} customers); now() is pinned to {DEMO_NOW}\n",
        store.root().display(),
        snapshot.version(),
        snapshot.user_count()
    );
    let exports = store.root().join("exports");
    std::fs::create_dir_all(&exports).io_context("create directory", &exports)?;
    let rt = super::runtime()?;
    let session = store.session_with(&SessionOptions { now: Some(now), ..Default::default() })?;
    for (i, (question, sql)) in QUESTIONS.iter().enumerate() {
        // The folder goes into a SQL string literal: its quotes doubled.
        let sql = sql.replace("{exports}", &exports.to_string_lossy().replace('\'', "''"));
        say!("── {}. {question}", i + 1);
        say!("{}\n", indent(&sql));
        let started = Instant::now();
        let df = rt.block_on(session.sql(&sql))?;
        let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
        let mut batches: Vec<RecordBatch> = rt.block_on(df.collect())?;
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema));
        }
        let elapsed = started.elapsed();
        let table = arrow::util::pretty::pretty_format_batches(&batches)?;
        say!("{table}");
        say!("({:.1} ms)\n", elapsed.as_secs_f64() * 1000.0);
    }
    say!(
        "Try your own: persona shell --store {} --now 2026-11-01   (completion, \\tags, \\profile u42, \\? for help)",
        shell_path(store.root())
    );
    say!(
        "         or:  persona sql --store {} --now 2026-11-01 -c \"SELECT count(*) FROM users WHERE has_tag('vip')\"",
        shell_path(store.root())
    );
    say!(
        "A campaign:   persona sql --store {} -c \"CREATE OR REPLACE AUDIENCE vips AS SELECT user_id, email FROM users WHERE has_tag('vip')\"",
        shell_path(store.root())
    );
    say!(
        "         then: persona materialize --store {} --all --out campaigns   (docs/audiences.md)",
        shell_path(store.root())
    );
    Ok(())
}

/// Writes `text` and a newline to standard output; `false` when the pipe was closed.
fn write_line(text: &str) -> Result<bool> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).io_context("write to", std::path::Path::new("standard output")),
    }
}

fn indent(sql: &str) -> String {
    sql.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// Reuses the demo store when it holds users; otherwise generates data and imports it.
fn open_or_build(args: &DemoArgs) -> Result<Store> {
    if let Ok(store) = Store::open(&args.dir)
        && store.snapshot()?.user_count() > 0
    {
        return Ok(store);
    }
    let source = source_dir(&args.dir);
    if source.exists() {
        std::fs::remove_dir_all(&source).io_context("remove", &source)?;
    }
    eprintln!("generating {} customers into {} ...", args.users, source.display());
    let bar =
        super::progress_bar(args.users, args.quiet, "{spinner} generating [{bar:40}] {pos}/{len} users eta {eta}");
    let progress_bar = bar.clone();
    let generated = generate(
        &GenOptions { users: args.users, seed: args.seed, out: source.clone(), format: GenFormat::Parquet },
        &move |done| progress_bar.set_position(done),
    );
    bar.finish_and_clear();
    generated?;
    eprintln!("importing into {} ...", args.dir.display());
    let store = Store::open_or_create(&args.dir)?;
    let bar = super::progress_bar(0, args.quiet, "{spinner} importing [{bar:40}] {bytes}/{total_bytes} eta {eta}");
    let progress_bar = bar.clone();
    let summary = store.import(
        std::slice::from_ref(&source),
        &ImportOptions {
            progress: Some(Arc::new(move |done, total| {
                progress_bar.set_length(total);
                progress_bar.set_position(done);
            })),
            ..Default::default()
        },
    );
    bar.finish_and_clear();
    let summary = summary?;
    eprintln!("{}\n", super::import::describe(&summary));
    std::fs::remove_dir_all(&source).io_context("remove", &source)?;
    Ok(store)
}

fn source_dir(dir: &Path) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "persona-demo".into());
    dir.with_file_name(format!(".{name}-source"))
}
