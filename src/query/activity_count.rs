//! Users by the number of distinct days, weeks, months, quarters or years they were active in:
//! `GROUP BY user_id HAVING count(DISTINCT date_trunc('month', ts)) = 3` ("active in each of the
//! last three months"), `count(DISTINCT CAST(ts AS DATE)) >= 5` ("on at least 5 days"), over a
//! fact side the activity streams answer exactly (all purchases, by channel or category, events
//! by type; whole-day windows). Each period's users are the union of the streams' bitmaps over
//! the period's days inside the window, each user's count is tallied by row id, and `HAVING` is
//! evaluated once per possible count — no fact row is read.
//!
//! [`recognize`] finds the shape in a plan in both forms DataFusion gives it: the aggregate
//! `count(DISTINCT period)`, and what `single_distinct_aggregation_to_group_by` rewrites it into
//! (`count(alias)` over a `GROUP BY user_id, period AS alias`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, new_null_array};
use arrow::datatypes::DataType;
use chrono::Datelike;
use datafusion::common::DFSchemaRef;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, Operator};
use roaring::RoaringBitmap;

use crate::error::Result;
use crate::index::IndexSet;
use crate::query::audience_rule::{strip_cast, strip_lossless_ts_cast};
use crate::query::bitmap_expr::AudienceSpec;
use crate::tables::{TS, USER_ID};

/// The calendar unit a timestamp is truncated to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodUnit {
    Day,
    /// Weeks starting on Monday, as `date_trunc('week', ...)` counts them.
    Week,
    Month,
    Quarter,
    Year,
}

impl PeriodUnit {
    /// The unit of a `date_trunc` granularity (case-insensitive, as DataFusion reads it).
    fn parse(granularity: &str) -> Option<PeriodUnit> {
        Some(match granularity.to_lowercase().as_str() {
            "day" => PeriodUnit::Day,
            "week" => PeriodUnit::Week,
            "month" => PeriodUnit::Month,
            "quarter" => PeriodUnit::Quarter,
            "year" => PeriodUnit::Year,
            _ => return None,
        })
    }

    /// The first day (days since 1970-01-01) of the period holding `day`.
    pub fn start_of(self, day: i64) -> i64 {
        const UNIX_EPOCH_CE: i64 = 719_163;
        let date = i32::try_from(day + UNIX_EPOCH_CE).ok().and_then(chrono::NaiveDate::from_num_days_from_ce_opt);
        let Some(date) = date else { return day };
        let first = match self {
            PeriodUnit::Day => return day,
            // 1970-01-01 was a Thursday: Monday-based weeks start 3 days before it.
            PeriodUnit::Week => return day - (day + 3).rem_euclid(7),
            PeriodUnit::Month => date.with_day(1),
            PeriodUnit::Quarter => date.with_day(1).and_then(|d| d.with_month((d.month() - 1) / 3 * 3 + 1)),
            PeriodUnit::Year => date.with_day(1).and_then(|d| d.with_month(1)),
        };
        first.map_or(day, |d| i64::from(d.num_days_from_ce()) - UNIX_EPOCH_CE)
    }
}

/// The users whose number of active periods makes `HAVING` true.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityCount {
    /// A row counts when it is in one of these streams (the fact side's condition).
    pub streams: Vec<String>,
    /// The window in whole days, inclusive.
    pub first_day: i64,
    pub last_day: i64,
    pub unit: PeriodUnit,
    /// The `HAVING` conjuncts, each with the schema of the rows it filters: every `Int64` field
    /// of it is the count, the others (the user column) are never read by it.
    pub having: Vec<(Expr, DFSchemaRef)>,
}

impl ActivityCount {
    /// The row ids of those users among `within` (all when `None`).
    pub fn users(&self, index: &IndexSet, within: Option<&RoaringBitmap>) -> Result<RoaringBitmap> {
        // The periods with some activity in the window, from the days the streams hold.
        let mut periods: Vec<i64> = Vec::new();
        for stream in &self.streams {
            for day in index.stream_days(stream) {
                if (self.first_day..=self.last_day).contains(&day) {
                    periods.push(self.unit.start_of(day));
                }
            }
        }
        periods.sort_unstable();
        periods.dedup();
        let passing = self.passing_counts(periods.len())?;
        let active_in = |i: usize| -> Result<RoaringBitmap> {
            let end = periods.get(i + 1).map_or(self.last_day, |next| next - 1);
            let (lo, hi) = (periods[i].max(self.first_day), end.min(self.last_day));
            let mut active = RoaringBitmap::new();
            for stream in &self.streams {
                active |= index.active_on_days_within(stream, lo, hi, within)?;
            }
            Ok(active)
        };
        if periods.len() <= MAX_SLICED_PERIODS {
            // Few periods (months, quarters): the counts as bit slices, added set by set.
            let mut counter = SlicedCounter::default();
            for i in 0..periods.len() {
                counter.add(active_in(i)?);
            }
            let mut members = RoaringBitmap::new();
            for (count, pass) in passing.iter().enumerate().skip(1) {
                if *pass {
                    members |= counter.exactly(count);
                }
            }
            return Ok(members);
        }
        // Many periods (days): a count per row id.
        let universe = usize::try_from(index.universe_len()).unwrap_or(usize::MAX);
        let mut counts: Vec<u32> = vec![0; universe];
        for i in 0..periods.len() {
            for id in active_in(i)? {
                if let Some(c) = counts.get_mut(id as usize) {
                    *c = c.saturating_add(1);
                }
            }
        }
        let members = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0 && passing.get(**c as usize).copied().unwrap_or(false))
            .map(|(id, _)| id as u32);
        Ok(RoaringBitmap::from_sorted_iter(members).unwrap_or_default())
    }

    /// For each count `0..=most`, whether `HAVING` is TRUE for it.
    fn passing_counts(&self, most: usize) -> Result<Vec<bool>> {
        let counts: ArrayRef = Arc::new(Int64Array::from_iter_values(0..=most as i64));
        let mut passing = vec![true; most + 1];
        for (conjunct, schema) in &self.having {
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .map(|f| {
                    if f.data_type() == &DataType::Int64 {
                        Arc::clone(&counts)
                    } else {
                        new_null_array(f.data_type(), counts.len())
                    }
                })
                .collect();
            let batch = RecordBatch::try_new(Arc::new(schema.as_arrow().clone()), columns)?;
            let physical = crate::query::fact_filter::physical_expr(conjunct, schema)?;
            let values = physical.evaluate(&batch)?.into_array(batch.num_rows())?;
            let Some(values) = values.as_boolean_opt() else {
                return Err(crate::error::Error::Internal("HAVING did not evaluate to booleans".into()));
            };
            for (c, pass) in passing.iter_mut().enumerate() {
                *pass &= values.is_valid(c) && values.value(c);
            }
        }
        Ok(passing)
    }
}

/// The activity streams a fact side's rows are all in, and its window in whole days (inclusive).
pub(crate) type FactDays = (Vec<String>, i64, i64);

/// Periods up to which counts are kept as bit slices of bitmaps rather than one per row id.
const MAX_SLICED_PERIODS: usize = 24;

/// Per-user counts as bitmaps: `slices[b]` holds the users whose count has bit `b` set.
#[derive(Default)]
struct SlicedCounter {
    slices: Vec<RoaringBitmap>,
    /// Users with a count above zero.
    any: RoaringBitmap,
}

impl SlicedCounter {
    /// Adds one to the count of every user in `set` (a ripple-carry addition of bitmaps).
    fn add(&mut self, set: RoaringBitmap) {
        self.any |= &set;
        let mut carry = set;
        for slice in &mut self.slices {
            if carry.is_empty() {
                return;
            }
            let next = &*slice & &carry;
            *slice ^= &carry;
            carry = next;
        }
        if !carry.is_empty() {
            self.slices.push(carry);
        }
    }

    /// The users whose count is exactly `count` (above zero).
    fn exactly(&self, count: usize) -> RoaringBitmap {
        if count >> self.slices.len() != 0 {
            return RoaringBitmap::new();
        }
        let mut out = self.any.clone();
        for (b, slice) in self.slices.iter().enumerate() {
            if count >> b & 1 == 1 {
                out &= slice;
            } else {
                out -= slice;
            }
        }
        out
    }
}

/// The activity count a plan yielding users computes: `[alias] / [Projection of columns] /
/// Filter(HAVING)* / Aggregate(GROUP BY user_id: count(DISTINCT period))` over a fact side, for
/// which `fact_days` gives the streams and the whole-day window (`None` when they do not answer
/// it exactly). `None` when the plan is anything else.
pub(crate) fn recognize(
    plan: &LogicalPlan,
    fact_days: &dyn Fn(&LogicalPlan) -> Option<FactDays>,
) -> Option<ActivityCount> {
    let mut having: Vec<(Expr, DFSchemaRef)> = Vec::new();
    let mut node = plan;
    let aggregate = loop {
        match node {
            LogicalPlan::SubqueryAlias(a) => node = &a.input,
            LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(unaliased(e), Expr::Column(_))) => {
                node = &p.input
            }
            LogicalPlan::Filter(f) => {
                for conjunct in split_conjunction(&f.predicate) {
                    having.push((conjunct.clone(), Arc::clone(f.input.schema())));
                }
                node = &f.input;
            }
            LogicalPlan::Aggregate(a) => break a,
            _ => return None,
        }
    };
    let (unit, facts) = counted_periods(aggregate)?;
    // The aggregate's output: the user column, then the count; above it, every Int64 column is
    // the count (renamed at most), and HAVING reads nothing else.
    let fields = aggregate.schema.fields();
    if fields.len() != 2 || fields[0].data_type() == &DataType::Int64 || fields[1].data_type() != &DataType::Int64 {
        return None;
    }
    for (conjunct, schema) in &having {
        let reads_count_only = conjunct
            .column_refs()
            .iter()
            .all(|c| schema.index_of_column(c).is_ok_and(|i| schema.field(i).data_type() == &DataType::Int64));
        if !reads_count_only || !crate::query::dense_agg_rule::is_row_local(conjunct) {
            return None;
        }
    }
    let (streams, first_day, last_day) = fact_days(facts)?;
    if streams.is_empty() {
        return None;
    }
    Some(ActivityCount { streams, first_day, last_day, unit, having })
}

/// The spec of a fact side's users, with the rows' `ts` also in `[from, to)` (microseconds).
pub(crate) type FactWithin<'a> = dyn Fn(&LogicalPlan, (Option<i64>, Option<i64>)) -> Option<AudienceSpec> + 'a;

/// `[alias] / Projection(columns)* / Filter(HAVING)* / Aggregate(GROUP BY user_id)`: the
/// aggregate and the `HAVING` conjuncts above it (filters' columns are the aggregate's output,
/// found by name: plain projections keep names). `None` for any other plan.
fn having_over_users(plan: &LogicalPlan) -> Option<(&Aggregate, Vec<&Expr>)> {
    let mut node = plan;
    let mut conjuncts: Vec<&Expr> = Vec::new();
    let aggregate = loop {
        match node {
            LogicalPlan::SubqueryAlias(a) if conjuncts.is_empty() => node = &a.input,
            LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => node = &p.input,
            LogicalPlan::Filter(f) => {
                conjuncts.extend(split_conjunction(&f.predicate));
                node = &f.input;
            }
            LogicalPlan::Aggregate(a) => break a,
            _ => return None,
        }
    };
    let [group] = aggregate.group_expr.as_slice() else { return None };
    is_user_id(group).then_some((aggregate, conjuncts))
}

/// "First purchase in the last 30 days", "no event since T": `GROUP BY user_id HAVING min(ts) >=
/// T` (and `max(ts)`, with `<`, `<=`, `>`, `>=`, `=`, several conjuncts) as set algebra of the fact
/// side's users in time windows — `min(ts) >= T` is "some row" minus "a row before T" — so the
/// streams answer it when they answer the fact side (a `T` inside a day reads that day's rows
/// like any window edge). A user whose rows all lack a `ts` has a NULL minimum and no stream row:
/// left out both ways. `None` for any other plan.
pub(crate) fn first_and_last(plan: &LogicalPlan, fact_within: &FactWithin<'_>) -> Option<AudienceSpec> {
    let (aggregate, conjuncts) = having_over_users(plan)?;
    // Each aggregate: true for min(ts), false for max(ts).
    let mut is_min = Vec::with_capacity(aggregate.aggr_expr.len());
    for e in &aggregate.aggr_expr {
        let Expr::AggregateFunction(f) = unaliased(e) else { return None };
        let [arg] = f.params.args.as_slice() else { return None };
        if f.params.filter.is_some() || !is_ts(arg) {
            return None;
        }
        is_min.push(match f.func.name() {
            "min" => true,
            "max" => false,
            _ => return None,
        });
    }
    let facts = aggregate.input.as_ref();
    let mut terms = vec![fact_within(facts, (None, None))?];
    for conjunct in conjuncts {
        let Expr::BinaryExpr(b) = conjunct else { return None };
        let (column, op, value) = match (b.left.as_ref(), b.right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) => (c, b.op, v),
            _ => match (b.left.as_ref(), b.right.as_ref()) {
                (Expr::Literal(v, _), Expr::Column(c)) => (c, b.op.swap()?, v),
                _ => return None,
            },
        };
        // The aggregate's output: the group column, then the aggregates.
        let at = aggregate.schema.index_of_column(column).ok()?;
        let min = *is_min.get(at.checked_sub(1)?)?;
        let t = crate::query::audience_rule::timestamp_micros(value)?;
        let after = |t: i64| fact_within(facts, (Some(t), None));
        let before = |t: i64| fact_within(facts, (None, Some(t)));
        let all_but = |s: AudienceSpec| AudienceSpec::Not(Box::new(s));
        // `x <= t` is `x < t + 1` and `x > t` is `x >= t + 1` (microseconds).
        let (at_least, below) = match op {
            Operator::GtEq => (Some(t), None),
            Operator::Gt => (Some(t.checked_add(1)?), None),
            Operator::Lt => (None, Some(t)),
            Operator::LtEq => (None, Some(t.checked_add(1)?)),
            Operator::Eq => (Some(t), Some(t.checked_add(1)?)),
            _ => return None,
        };
        if let Some(t) = at_least {
            // min >= t: no row before t; max >= t: a row from t on.
            terms.push(if min { all_but(before(t)?) } else { after(t)? });
        }
        if let Some(t) = below {
            // min < t: a row before t; max < t: no row from t on.
            terms.push(if min { before(t)? } else { all_but(after(t)?) });
        }
    }
    Some(if terms.len() == 1 { terms.remove(0) } else { AudienceSpec::AllOf(terms) })
}

/// A per-user aggregate whose `HAVING` mixes conditions on the first or last `ts` with others
/// (`min(ts) >= T AND count(*) >= 2`, "new repeat buyers"), cut in two: the plan of the first and
/// last conditions alone (for [`first_and_last`], over an aggregate of only `min(ts)`/`max(ts)`),
/// and the aggregate with the other conditions. Their users' intersection is the answer: both
/// keep only users with rows, and a conjunct is either wholly in one or in the other. The
/// streams answer the first cheaply and leave few users, to whom the second's fold is then
/// narrowed. `None` when there is nothing to cut.
pub(crate) fn split_first_and_last(plan: &LogicalPlan) -> Option<(LogicalPlan, LogicalPlan)> {
    let (aggregate, conjuncts) = having_over_users(plan)?;
    // The output columns (after the group column) that are min(ts) or max(ts).
    let first_or_last = |column: &datafusion::common::Column| -> Option<usize> {
        let at = aggregate.schema.index_of_column(column).ok()?.checked_sub(1)?;
        let Expr::AggregateFunction(f) = unaliased(aggregate.aggr_expr.get(at)?) else { return None };
        let [arg] = f.params.args.as_slice() else { return None };
        let plain = f.params.filter.is_none() && !f.params.distinct && f.params.order_by.is_empty();
        (plain && matches!(f.func.name(), "min" | "max") && is_ts(arg)).then_some(at)
    };
    let on_first_or_last = |e: &Expr| -> Option<usize> {
        let Expr::BinaryExpr(b) = e else { return None };
        match (b.left.as_ref(), b.right.as_ref()) {
            (Expr::Column(c), Expr::Literal(..)) | (Expr::Literal(..), Expr::Column(c)) => first_or_last(c),
            _ => None,
        }
    };
    let (timed, rest): (Vec<Expr>, Vec<Expr>) =
        conjuncts.into_iter().cloned().partition(|e| on_first_or_last(e).is_some());
    if timed.is_empty() || rest.is_empty() {
        return None;
    }
    let mut used: Vec<usize> = timed.iter().filter_map(on_first_or_last).collect();
    used.sort_unstable();
    used.dedup();
    let kept: Vec<Expr> = used.iter().map(|&at| aggregate.aggr_expr[at].clone()).collect();
    let times = Aggregate::try_new(Arc::clone(&aggregate.input), aggregate.group_expr.clone(), kept).ok()?;
    let times = LogicalPlanBuilder::from(LogicalPlan::Aggregate(times))
        .filter(datafusion::logical_expr::utils::conjunction(timed)?)
        .ok()?
        .build()
        .ok()?;
    let others = LogicalPlanBuilder::from(LogicalPlan::Aggregate(aggregate.clone()))
        .filter(datafusion::logical_expr::utils::conjunction(rest)?)
        .ok()?
        .build()
        .ok()?;
    Some((times, others))
}

/// `GROUP BY user_id` with one aggregate counting the distinct periods of `ts`: the unit and the
/// fact side the periods are of.
fn counted_periods(aggregate: &Aggregate) -> Option<(PeriodUnit, &LogicalPlan)> {
    let [group] = aggregate.group_expr.as_slice() else { return None };
    if !is_user_id(group) {
        return None;
    }
    let [counted] = aggregate.aggr_expr.as_slice() else { return None };
    let Expr::AggregateFunction(count) = unaliased(counted) else { return None };
    let params = &count.params;
    if count.func.name() != "count" || params.filter.is_some() || !params.order_by.is_empty() {
        return None;
    }
    let [arg] = params.args.as_slice() else { return None };
    if params.distinct {
        // count(DISTINCT period)
        return Some((period_of(arg)?, aggregate.input.as_ref()));
    }
    // count(alias) over GROUP BY user_id, period AS alias (the single-distinct rewrite).
    let Expr::Column(alias) = arg else { return None };
    let mut inner = aggregate.input.as_ref();
    while let LogicalPlan::SubqueryAlias(a) = inner {
        inner = &a.input;
    }
    let LogicalPlan::Aggregate(inner) = inner else { return None };
    let [user, period] = inner.group_expr.as_slice() else { return None };
    if !inner.aggr_expr.is_empty() || !is_user_id(user) {
        return None;
    }
    let Expr::Alias(period) = period else { return None };
    if period.name != alias.name {
        return None;
    }
    Some((period_of(&period.expr)?, inner.input.as_ref()))
}

/// `date_trunc('<unit>', ts)` or `CAST(ts AS DATE)`.
fn period_of(e: &Expr) -> Option<PeriodUnit> {
    match e {
        Expr::ScalarFunction(f) if f.func.name() == "date_trunc" => {
            let [granularity, ts] = f.args.as_slice() else { return None };
            let Expr::Literal(granularity, _) = strip_cast(granularity) else { return None };
            let unit = PeriodUnit::parse(granularity.try_as_str()??)?;
            is_ts(ts).then_some(unit)
        }
        Expr::Cast(c) if c.field.data_type() == &DataType::Date32 => is_ts(&c.expr).then_some(PeriodUnit::Day),
        _ => None,
    }
}

fn is_ts(e: &Expr) -> bool {
    matches!(strip_lossless_ts_cast(e), Expr::Column(c) if c.name == TS)
}

fn is_user_id(e: &Expr) -> bool {
    matches!(strip_cast(unaliased(e)), Expr::Column(c) if c.name == USER_ID)
}

fn unaliased(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unaliased(&a.expr),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> i64 {
        let date = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
        (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days()
    }

    #[test]
    fn sliced_counts_are_exact() {
        let sets: Vec<RoaringBitmap> =
            (0..7u32).map(|p| (0..200u32).filter(|u| (u * 7 + p * 13) % (p + 2) == 0).collect()).collect();
        let mut counter = SlicedCounter::default();
        for set in &sets {
            counter.add(set.clone());
        }
        for count in 0..10 {
            let expected: RoaringBitmap =
                (0..200u32).filter(|u| count > 0 && sets.iter().filter(|s| s.contains(*u)).count() == count).collect();
            assert_eq!(counter.exactly(count), expected, "count {count}");
        }
    }

    #[test]
    fn periods_start_where_date_trunc_puts_them() {
        // 2026-10-28 is a Wednesday.
        let d = day(2026, 10, 28);
        assert_eq!(PeriodUnit::Day.start_of(d), d);
        assert_eq!(PeriodUnit::Week.start_of(d), day(2026, 10, 26));
        assert_eq!(PeriodUnit::Week.start_of(day(2026, 10, 26)), day(2026, 10, 26));
        assert_eq!(PeriodUnit::Week.start_of(day(2026, 11, 1)), day(2026, 10, 26));
        assert_eq!(PeriodUnit::Week.start_of(day(1969, 12, 31)), day(1969, 12, 29));
        assert_eq!(PeriodUnit::Month.start_of(d), day(2026, 10, 1));
        assert_eq!(PeriodUnit::Quarter.start_of(d), day(2026, 10, 1));
        assert_eq!(PeriodUnit::Quarter.start_of(day(2026, 9, 30)), day(2026, 7, 1));
        assert_eq!(PeriodUnit::Year.start_of(d), day(2026, 1, 1));
        assert_eq!(PeriodUnit::parse("MONTH"), Some(PeriodUnit::Month));
        assert_eq!(PeriodUnit::parse("hour"), None);
    }
}
