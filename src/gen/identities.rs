//! The planted identity graph (docs/identity.md, docs/generator.md): consecutive users are
//! grouped into persons of one to four profiles, each later profile seen on one channel — the
//! WeChat mini-program (openid + the person's unionid), the till (the person's phone on the
//! profile), the web shop (the person's e-mail on the profile), the app (a device and the
//! person's phone) — or, for a few, on nothing shared (unrecoverable by design). Family devices
//! are shared across persons, junk values are given by many, and a few store phones are typed in
//! for hundreds of customers (hubs). Everything is a pure function of (seed, user index), so
//! chunks need no coordination; the ground truth (`user_id,person`) is written beside the data.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringBuilder, TimestampMicrosecondBuilder};

use super::GenFormat;
use super::batches::schema;
use super::files::{TableFileWriter, TableStats};
use crate::error::{IoContext, Result};
use crate::tables::Table;

/// The folder (beside the table folders, named after no table) that holds the ground truth.
pub const TRUTH_DIR: &str = "identity_truth";
/// The ground truth file in it: `user_id,person`, one row per user.
pub const TRUTH_FILE: &str = "persons.csv";

/// Profiles a person may have.
const MAX_PROFILES: u64 = 4;
/// Percent of users that are a further profile of the person before them.
const JOIN_PERCENT: u64 = 30;

/// The channel a further profile of a person was created on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Channel {
    /// The first profile of its person.
    Primary,
    MiniProgram,
    Till,
    WebShop,
    App,
    /// Nothing shared with the person's other profiles: resolution cannot find it.
    Unlinked,
}

/// A 64-bit mix of the seed, a salt and an index (SplitMix64's finaliser).
fn hash(seed: u64, salt: u64, index: u64) -> u64 {
    let mut z = seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn joins_previous(seed: u64, index: u64) -> bool {
    index > 0 && hash(seed, 1, index) % 100 < JOIN_PERCENT
}

/// The first user index of `index`'s person, and `index`'s position in it.
pub(super) fn person_of(seed: u64, index: u64) -> (u64, u64) {
    let mut start = index;
    while joins_previous(seed, start) && index - start < 64 {
        start -= 1;
    }
    // Runs longer than MAX_PROFILES are cut into persons of MAX_PROFILES.
    let run = index - start;
    let position = run % MAX_PROFILES;
    (index - position, position)
}

/// How many profiles the person starting at `primary` has (`users`: the user count).
fn person_size(seed: u64, primary: u64, users: u64) -> u64 {
    let mut size = 1;
    while size < MAX_PROFILES && primary + size < users && person_of(seed, primary + size).0 == primary {
        size += 1;
    }
    size
}

/// The channel of the profile at `index`.
pub(super) fn channel_of(seed: u64, index: u64) -> Channel {
    if person_of(seed, index).1 == 0 {
        return Channel::Primary;
    }
    match hash(seed, 2, index) % 100 {
        0..35 => Channel::MiniProgram,
        35..60 => Channel::Till,
        60..80 => Channel::WebShop,
        80..96 => Channel::App,
        _ => Channel::Unlinked,
    }
}

/// Whether the profile's users row carries its own phone (`Some(person's primary)` when it carries
/// the person's), and likewise the e-mail: a further profile has the person's phone only from the
/// till and the person's e-mail only from the web shop, and neither otherwise.
pub(super) fn contact_source(seed: u64, index: u64) -> (Option<u64>, Option<u64>) {
    let (primary, _) = person_of(seed, index);
    match channel_of(seed, index) {
        Channel::Primary => (Some(index), Some(index)),
        Channel::Till => (Some(primary), None),
        Channel::WebShop => (None, Some(primary)),
        _ => (None, None),
    }
}

/// The app device of profile `index`.
fn device(seed: u64, index: u64) -> String {
    format!("{:016x}{:016x}", hash(seed, 7, index), hash(seed, 24, index))
}

/// A time of identification between 2025-01-01 and 2026-10-31.
fn seen_at(seed: u64, salt: u64, index: u64) -> i64 {
    const FROM: i64 = 1_735_689_600_000_000;
    const SPAN_SECONDS: u64 = 668 * 86_400;
    FROM + (hash(seed, salt, index) % SPAN_SECONDS) as i64 * 1_000_000
}

/// The identities rows and the truth of users `first..end`.
struct Rows {
    user_id: StringBuilder,
    id_type: StringBuilder,
    id_value: StringBuilder,
    source: StringBuilder,
    ts: TimestampMicrosecondBuilder,
    rows: usize,
}

impl Rows {
    fn new() -> Rows {
        Rows {
            user_id: StringBuilder::new(),
            id_type: StringBuilder::new(),
            id_value: StringBuilder::new(),
            source: StringBuilder::new(),
            ts: TimestampMicrosecondBuilder::new(),
            rows: 0,
        }
    }

    fn push(&mut self, index: u64, id_type: &str, value: &str, source: &str, ts: i64) {
        self.user_id.append_value(format!("u{index}"));
        self.id_type.append_value(id_type);
        self.id_value.append_value(value);
        self.source.append_value(source);
        self.ts.append_value(ts);
        self.rows += 1;
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        self.rows = 0;
        Ok(RecordBatch::try_new(
            schema(Table::Identities),
            vec![
                Arc::new(self.user_id.finish()),
                Arc::new(self.id_type.finish()),
                Arc::new(self.id_value.finish()),
                Arc::new(self.source.finish()),
                Arc::new(self.ts.finish()),
            ],
        )?)
    }
}

/// Writes the identities table and the ground truth for `users` users; `phone(i)` is user `i`'s
/// own phone as the users table has it.
pub(super) fn write(
    seed: u64,
    users: u64,
    out: &Path,
    format: GenFormat,
    max_rows: usize,
    phone: impl Fn(u64) -> String,
) -> Result<TableStats> {
    let mut files = TableFileWriter::new(Table::Identities, out, format, max_rows);
    let truth_dir = out.join(TRUTH_DIR);
    std::fs::create_dir_all(&truth_dir).io_context("create directory", &truth_dir)?;
    let truth_path = truth_dir.join(TRUTH_FILE);
    let truth = std::fs::File::create(&truth_path).io_context("create", &truth_path)?;
    let mut truth = std::io::BufWriter::new(truth);
    use std::io::Write;
    writeln!(truth, "user_id,person").io_context("write", &truth_path)?;
    let hubs = (users / 40_000).max(1);
    let mut rows = Rows::new();
    for i in 0..users {
        let (primary, _) = person_of(seed, i);
        writeln!(truth, "u{i},u{primary}").io_context("write", &truth_path)?;
        let unionid = format!("oU{:016x}", hash(seed, 3, primary));
        let ts = |salt| seen_at(seed, salt, i);
        match channel_of(seed, i) {
            Channel::Primary => {
                let size = person_size(seed, i, users);
                let wechat =
                    (1..size).any(|k| channel_of(seed, i + k) == Channel::MiniProgram) || hash(seed, 4, i) % 100 < 40;
                if wechat {
                    rows.push(i, "wx_unionid", &unionid, "wx_oa", ts(10));
                    rows.push(i, "wx_openid", &format!("oA{:012x}", hash(seed, 5, i) >> 16), "wx_oa_main", ts(11));
                }
                if hash(seed, 6, i) % 100 < 50 {
                    rows.push(i, "device_id", &device(seed, i), "app", ts(12));
                }
                // A family tablet shared with the next person.
                let next = i + size;
                if hash(seed, 8, i) % 100 < 5 && next < users {
                    let family = format!("fam{:016x}", hash(seed, 9, i));
                    rows.push(i, "device_id", &family, "app", ts(13));
                    rows.push(next, "device_id", &family, "app", seen_at(seed, 13, next));
                }
            }
            Channel::MiniProgram => {
                rows.push(i, "wx_openid", &format!("oM{:012x}", hash(seed, 5, i) >> 16), "wx_mini", ts(14));
                rows.push(i, "wx_unionid", &unionid, "wx_mini", ts(15));
            }
            Channel::Till | Channel::WebShop => {}
            Channel::App => {
                rows.push(i, "device_id", &device(seed, i), "app", ts(16));
                rows.push(i, "phone", &phone(primary), "app", ts(17));
            }
            Channel::Unlinked => {
                rows.push(i, "device_id", &device(seed, i), "app", ts(18));
            }
        }
        // Junk that many give, and store phones typed in for customers (hubs).
        match hash(seed, 19, i) % 1000 {
            0..10 => rows.push(i, "phone", "00000000000", "store", ts(20)),
            10..20 => rows.push(i, "email", "null", "web", ts(21)),
            20..25 => rows.push(i, "wx_unionid", "anonymous", "wx_mini", ts(22)),
            25..30 => rows.push(i, "phone", &format!("0216{:07}", hash(seed, 23, i) % hubs), "store", ts(23)),
            _ => {}
        }
        if rows.rows >= 100_000 {
            files.write(&rows.finish()?)?;
        }
    }
    if rows.rows > 0 {
        files.write(&rows.finish()?)?;
    }
    truth.flush().io_context("write", &truth_path)?;
    files.finish()
}

/// Pairwise precision and recall of a clustering against the truth: over all pairs of users,
/// those put in one person by the resolution and those that are one person in the truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairwiseQuality {
    pub predicted_pairs: u64,
    pub true_pairs: u64,
    pub correct_pairs: u64,
}

impl PairwiseQuality {
    /// `predicted[i]` and `truth[i]` are user `i`'s person in the resolution and in the truth.
    pub fn of(predicted: &[u64], truth: &[u64]) -> PairwiseQuality {
        let pairs = |n: u64| n * n.saturating_sub(1) / 2;
        let mut by_pred: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        let mut by_truth: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        let mut by_both: std::collections::HashMap<(u64, u64), u64> = std::collections::HashMap::new();
        for (&p, &t) in predicted.iter().zip(truth) {
            *by_pred.entry(p).or_default() += 1;
            *by_truth.entry(t).or_default() += 1;
            *by_both.entry((p, t)).or_default() += 1;
        }
        PairwiseQuality {
            predicted_pairs: by_pred.values().map(|&n| pairs(n)).sum(),
            true_pairs: by_truth.values().map(|&n| pairs(n)).sum(),
            correct_pairs: by_both.values().map(|&n| pairs(n)).sum(),
        }
    }

    /// Correct pairs over predicted pairs (1 when nothing was merged).
    pub fn precision(&self) -> f64 {
        if self.predicted_pairs == 0 { 1.0 } else { self.correct_pairs as f64 / self.predicted_pairs as f64 }
    }

    /// Correct pairs over true pairs (1 when the truth has no pairs).
    pub fn recall(&self) -> f64 {
        if self.true_pairs == 0 { 1.0 } else { self.correct_pairs as f64 / self.true_pairs as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_quality_counts_pairs() {
        // Truth {0,1,2} {3}; predicted {0,1} {2,3}: 1 correct pair of 2 predicted and 3 true.
        let q = PairwiseQuality::of(&[0, 0, 1, 1], &[0, 0, 0, 3]);
        assert_eq!((q.predicted_pairs, q.true_pairs, q.correct_pairs), (2, 3, 1));
        assert_eq!(q.precision(), 0.5);
        assert!((q.recall() - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn persons_are_runs_of_at_most_four_consecutive_users() {
        let mut sizes = [0u64; 5];
        let mut primary = 0;
        while primary < 100_000 {
            let size = person_size(7, primary, 100_000);
            assert!((1..=4).contains(&size));
            for k in 0..size {
                assert_eq!(person_of(7, primary + k), (primary, k));
            }
            sizes[size as usize] += 1;
            primary += size;
        }
        // Most persons have one profile; some have several.
        assert!(sizes[1] > sizes[2] && sizes[2] > sizes[3] && sizes[3] > 0, "{sizes:?}");
    }
}
