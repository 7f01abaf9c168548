//! Bitmap-algebra benchmark: the index operations an audience query is made of, on an index file of
//! 10,000,000 users written once per run in a temporary directory (deterministic contents).
//!
//! Measured, one `BenchmarkId` each:
//! - `window/days_90`, `window/days_730`: users active in the "purchases" stream over a 90-day and a
//!   two-year window (month roll-ups plus edge days, read through the index's bitmap cache);
//! - `evaluate/q1_shape`: `tier = 'gold' AND tag A AND NOT purchased in 90 days` as a bitmap
//!   expression, evaluated (cardinality of the result included);
//! - `evaluate/tag_overlap`: |A ∩ B ∩ C| from three tag bitmaps;
//! - `translate/q3_filter`: turning a DataFusion filter expression (region IN, birth_date range,
//!   NOT tag) into a bitmap expression, without evaluating it (`expr_to_bitmap`);
//! - `range/points_gt`: `points > 1000` from the bit-sliced range index.
//!
//! Run: `cargo bench --bench bitmap_algebra`. Prints criterion's time per operation.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;

use criterion::{Criterion, criterion_group, criterion_main};
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::prelude::in_list;
use persona::index::format::{BitmapKind, IndexWriter};
use persona::index::{IndexSet, RangeOp};
use persona::query::bitmap_expr::{BitmapExpr, evaluate, translate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roaring::{MultiOps, RoaringBitmap};

const USERS: u32 = 10_000_000;
/// 2024-11-01 .. 2026-10-31 as day numbers.
const FIRST_DAY: i64 = 20_028;
const DAYS: i64 = 730;

fn random_set(rng: &mut StdRng, share: f64) -> RoaringBitmap {
    let n = (f64::from(USERS) * share) as usize;
    let mut ids: Vec<u32> = (0..n).map(|_| rng.random_range(0..USERS)).collect();
    ids.sort_unstable();
    ids.dedup();
    RoaringBitmap::from_sorted_iter(ids).expect("sorted")
}

fn month_start(day: i64) -> i64 {
    persona::index::build::month_start(day)
}

/// Writes the index and opens it.
fn build_index(dir: &std::path::Path) -> IndexSet {
    let mut rng = StdRng::seed_from_u64(42);
    let path = dir.join("bench.idx");
    let mut entries: BTreeMap<(BitmapKind, String, String), RoaringBitmap> = BTreeMap::new();
    for (tag, share) in [("A", 0.10), ("B", 0.07), ("C", 0.05), ("churn_risk", 0.08)] {
        entries.insert((BitmapKind::Tag, tag.into(), String::new()), random_set(&mut rng, share));
    }
    for (tier, share) in [("gold", 0.10), ("silver", 0.25), ("bronze", 0.55)] {
        entries.insert((BitmapKind::Value, "tier".into(), tier.into()), random_set(&mut rng, share));
    }
    entries.insert((BitmapKind::ValueColumn, "tier".into(), String::new()), RoaringBitmap::new());
    entries.insert((BitmapKind::Null, "tier".into(), String::new()), RoaringBitmap::new());
    for region in ["Guangdong", "Zhejiang", "Jiangsu"] {
        entries.insert((BitmapKind::Value, "region".into(), region.into()), random_set(&mut rng, 0.08));
    }
    entries.insert((BitmapKind::ValueColumn, "region".into(), String::new()), RoaringBitmap::new());
    entries.insert((BitmapKind::Null, "region".into(), String::new()), RoaringBitmap::new());
    // A 15-bit range index for points and birth_date (random bit slices).
    for column in ["points", "birth_date"] {
        for bit in 0..15 {
            entries.insert((BitmapKind::RangeBit, column.into(), bit.to_string()), random_set(&mut rng, 0.5));
        }
        entries.insert((BitmapKind::RangeBase, column.into(), "0".into()), RoaringBitmap::new());
        entries.insert((BitmapKind::Null, column.into(), String::new()), RoaringBitmap::new());
    }
    // Purchases: ~70,000 buyers a day, with month roll-ups and the family mark.
    let mut months: BTreeMap<i64, Vec<RoaringBitmap>> = BTreeMap::new();
    for day in FIRST_DAY..FIRST_DAY + DAYS {
        let bm = random_set(&mut rng, 0.007);
        months.entry(month_start(day)).or_default().push(bm.clone());
        entries.insert((BitmapKind::ActivityDay, "purchases".into(), day.to_string()), bm);
    }
    for (month, bms) in months {
        entries.insert((BitmapKind::ActivityMonth, "purchases".into(), month.to_string()), bms.into_iter().union());
    }
    entries.insert((BitmapKind::StreamFamily, "purchases".into(), String::new()), RoaringBitmap::new());
    let mut writer = IndexWriter::create(&path).expect("create the index");
    for (key, bm) in &entries {
        writer.add(key, bm).expect("add a bitmap");
    }
    writer.finish().expect("finish the index");
    IndexSet::open(Some(&path), USERS).expect("open the index")
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let index = build_index(dir.path());
    let last = FIRST_DAY + DAYS - 1;

    let mut window = c.benchmark_group("window");
    window.bench_function("days_90", |b| {
        b.iter(|| index.active_on_days("purchases", last - 89, last).expect("window").len())
    });
    window.bench_function("days_730", |b| {
        b.iter(|| index.active_on_days("purchases", FIRST_DAY, last).expect("window").len())
    });
    window.finish();

    let q1 = BitmapExpr::And(vec![
        BitmapExpr::Value { column: "tier".into(), value: "gold".into() },
        BitmapExpr::Tag("A".into()),
        BitmapExpr::AndNot(
            Box::new(BitmapExpr::Universe),
            Box::new(BitmapExpr::Active { stream: "purchases".into(), first_day: last - 89, last_day: last }),
        ),
    ]);
    let overlap =
        BitmapExpr::And(vec![BitmapExpr::Tag("A".into()), BitmapExpr::Tag("B".into()), BitmapExpr::Tag("C".into())]);
    let mut eval = c.benchmark_group("evaluate");
    eval.bench_function("q1_shape", |b| b.iter(|| evaluate(&q1, &index).expect("evaluate").len()));
    eval.bench_function("tag_overlap", |b| b.iter(|| evaluate(&overlap, &index).expect("evaluate").len()));
    eval.finish();

    let filter: Expr = in_list(col("region"), vec![lit("Guangdong"), lit("Zhejiang"), lit("Jiangsu")], false)
        .and(col("birth_date").gt(lit(3000i64)))
        .and(col("birth_date").lt_eq(lit(7000i64)))
        .and(Expr::Not(Box::new(col("tier").eq(lit("bronze")))));
    c.bench_function("translate/q3_filter", |b| {
        b.iter(|| translate(&filter, &index).expect("the filter translates").when_true)
    });
    c.bench_function("range/points_gt", |b| {
        b.iter(|| index.range_compare("points", RangeOp::Gt, 1000).expect("range").len())
    });
}

criterion_group!(bitmap_algebra, benches);
criterion_main!(bitmap_algebra);
