//! Audience predicates as bitmap algebra. [`translate`] turns a filter on the users table into two
//! bitmap expressions — the users for whom it is TRUE and those for whom it is FALSE — so that
//! NOT and NULL follow SQL's three-valued logic exactly (`NOT tier = 'gold'` excludes NULL tiers).
//! A filter it cannot translate exactly returns `None` and stays on DataFusion's general path.

use std::fmt;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, expr::InList};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::index::format::BitmapKind;
use crate::index::{EdgeScan, IndexSet, RangeOp};
use crate::query::activity_count::ActivityCount;
use crate::query::fact_filter::{FactAggregate, FactFilter};
use crate::tables::USER_ID;
use std::sync::Arc;

/// A set of users, as an expression over the indexes.
#[derive(Debug, Clone, PartialEq)]
pub enum BitmapExpr {
    /// Every live user.
    Universe,
    Tag(String),
    Value {
        column: String,
        value: String,
    },
    Null(String),
    /// Users whose range-indexed `column` compares to `value` as `op` says.
    Range {
        column: String,
        op: RangeOp,
        value: i64,
    },
    /// Users active in `stream` (see `BitmapKind::ActivityDay`) on a day in
    /// `first_day..=last_day` (days since 1970-01-01, UTC).
    Active {
        stream: String,
        first_day: i64,
        last_day: i64,
    },
    And(Vec<BitmapExpr>),
    Or(Vec<BitmapExpr>),
    /// The first set minus the second.
    AndNot(Box<BitmapExpr>, Box<BitmapExpr>),
    /// Users by row id, looked up in the id dictionary (`user_id = 'u42'`).
    RowIds(Vec<u32>),
    /// The users of some fact rows, read from the fact files (a window's partial days).
    FactRows(EdgeScan),
    /// The latest members of a saved audience.
    Saved(String),
    /// The users of the fact rows a row-local predicate keeps, read from the fact files.
    FactFilter(Arc<FactFilter>),
    /// The users whose per-user aggregate satisfies a condition.
    FactAggregate(Arc<FactAggregate>),
    /// The users whose number of active periods satisfies a condition.
    ActivityCount(Arc<ActivityCount>),
}

/// A filter translated exactly: who makes it TRUE, who makes it FALSE (the rest make it NULL).
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub when_true: BitmapExpr,
    pub when_false: BitmapExpr,
}

/// The audience a `persona_audience(user_id, spec)` call stands for; the audience rule writes
/// these when it replaces a semi or anti join into the facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudienceSpec {
    /// Users carrying at least one of these tags.
    TagAny(Vec<String>),
    /// Users active in any of `streams` on a day of `first_day..=last_day`, or in one of the
    /// partial days `edges` (read from the facts).
    ActiveDays {
        streams: Vec<String>,
        first_day: i64,
        last_day: i64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        edges: Vec<EdgeScan>,
    },
    /// The latest members of a saved audience (`in_audience('name')`).
    Saved(String),
    /// The users of fact rows kept by a predicate the session registered under this number.
    FactFilter(u64),
    /// The users of a per-user aggregate's condition the session registered under this number.
    FactAggregate(u64),
    /// The users of a count of active periods the session registered under this number.
    ActivityCount(u64),
    /// The users in every one of these audiences.
    AllOf(Vec<AudienceSpec>),
    /// The users not in this audience.
    Not(Box<AudienceSpec>),
}

impl AudienceSpec {
    /// The bitmap expression, registered parts resolved (`None` when one is unknown).
    pub fn to_bitmap_expr(&self, registered: &Registered<'_>) -> Option<BitmapExpr> {
        Some(match self {
            AudienceSpec::TagAny(tags) => or(tags.iter().map(|t| BitmapExpr::Tag(t.clone())).collect()),
            AudienceSpec::ActiveDays { streams, first_day, last_day, edges } => {
                let mut terms: Vec<BitmapExpr> = if first_day <= last_day {
                    streams
                        .iter()
                        .map(|s| BitmapExpr::Active { stream: s.clone(), first_day: *first_day, last_day: *last_day })
                        .collect()
                } else {
                    Vec::new()
                };
                terms.extend(edges.iter().cloned().map(BitmapExpr::FactRows));
                or(terms)
            }
            AudienceSpec::Saved(name) => BitmapExpr::Saved(name.clone()),
            AudienceSpec::FactFilter(id) => BitmapExpr::FactFilter((registered.fact_filter)(*id)?),
            AudienceSpec::FactAggregate(id) => BitmapExpr::FactAggregate((registered.fact_aggregate)(*id)?),
            AudienceSpec::ActivityCount(id) => BitmapExpr::ActivityCount((registered.activity_count)(*id)?),
            AudienceSpec::AllOf(specs) => {
                BitmapExpr::And(specs.iter().map(|s| s.to_bitmap_expr(registered)).collect::<Option<Vec<_>>>()?)
            }
            AudienceSpec::Not(spec) => minus(BitmapExpr::Universe, spec.to_bitmap_expr(registered)?),
        })
    }
}

/// How the parts of a spec that a session registered are looked up.
pub struct Registered<'a> {
    pub fact_filter: &'a dyn Fn(u64) -> Option<Arc<FactFilter>>,
    pub fact_aggregate: &'a dyn Fn(u64) -> Option<Arc<FactAggregate>>,
    pub activity_count: &'a dyn Fn(u64) -> Option<Arc<ActivityCount>>,
}

fn or(mut items: Vec<BitmapExpr>) -> BitmapExpr {
    if items.len() == 1 { items.remove(0) } else { BitmapExpr::Or(items) }
}

fn not_null(column: &str) -> BitmapExpr {
    BitmapExpr::AndNot(Box::new(BitmapExpr::Universe), Box::new(BitmapExpr::Null(column.to_string())))
}

fn minus(a: BitmapExpr, b: BitmapExpr) -> BitmapExpr {
    BitmapExpr::AndNot(Box::new(a), Box::new(b))
}

/// A total set: TRUE for `set`, FALSE for everyone else (never NULL).
fn total(set: BitmapExpr) -> Translated {
    Translated { when_false: minus(BitmapExpr::Universe, set.clone()), when_true: set }
}

/// Translates a filter over the users table, or `None` when it is not exactly a bitmap question.
pub fn translate(expr: &Expr, index: &IndexSet) -> Option<Translated> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
            let (l, r) = (translate(left, index)?, translate(right, index)?);
            Some(Translated {
                when_true: BitmapExpr::And(vec![l.when_true, r.when_true]),
                when_false: BitmapExpr::Or(vec![l.when_false, r.when_false]),
            })
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            let (l, r) = (translate(left, index)?, translate(right, index)?);
            Some(Translated {
                when_true: BitmapExpr::Or(vec![l.when_true, r.when_true]),
                when_false: BitmapExpr::And(vec![l.when_false, r.when_false]),
            })
        }
        Expr::Not(inner) => {
            let t = translate(inner, index)?;
            Some(Translated { when_true: t.when_false, when_false: t.when_true })
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: op @ (Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq),
            right,
        }) => {
            let (column, value, op) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) => (&c.name, v, *op),
                (Expr::Literal(v, _), Expr::Column(c)) => (&c.name, v, op.swap()?),
                _ => return None,
            };
            index.range_index(column)?;
            let op = match op {
                Operator::Lt => RangeOp::Lt,
                Operator::LtEq => RangeOp::LtEq,
                Operator::Gt => RangeOp::Gt,
                _ => RangeOp::GtEq,
            };
            let is = BitmapExpr::Range { column: column.clone(), op, value: range_value(value)? };
            Some(Translated { when_false: minus(not_null(column), is.clone()), when_true: is })
        }
        Expr::Between(b) => {
            let Expr::Column(c) = b.expr.as_ref() else { return None };
            index.range_index(&c.name)?;
            let (Expr::Literal(lo, _), Expr::Literal(hi, _)) = (b.low.as_ref(), b.high.as_ref()) else { return None };
            let (lo, hi) = (range_value(lo)?, range_value(hi)?);
            let within = BitmapExpr::And(vec![
                BitmapExpr::Range { column: c.name.clone(), op: RangeOp::GtEq, value: lo },
                BitmapExpr::Range { column: c.name.clone(), op: RangeOp::LtEq, value: hi },
            ]);
            let outside = minus(not_null(&c.name), within.clone());
            Some(if b.negated {
                Translated { when_true: outside, when_false: within }
            } else {
                Translated { when_true: within, when_false: outside }
            })
        }
        Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::Eq | Operator::NotEq), right }) => {
            let (column, value) = column_and_literal(left, right)?;
            if column == USER_ID {
                let is = user_rows(index, std::slice::from_ref(value))?;
                return Some(if *op == Operator::Eq { total(is) } else { total(minus(BitmapExpr::Universe, is)) });
            }
            if !index.has_values(column) {
                let range = range_value(value)?;
                index.range_index(column)?;
                let is = BitmapExpr::Range { column: column.to_string(), op: RangeOp::Eq, value: range };
                let is_not = minus(not_null(column), is.clone());
                return Some(if *op == Operator::Eq {
                    Translated { when_true: is, when_false: is_not }
                } else {
                    Translated { when_true: is_not, when_false: is }
                });
            }
            let is = BitmapExpr::Value { column: column.to_string(), value: value_key(value)? };
            let is_not = minus(not_null(column), is.clone());
            Some(if *op == Operator::Eq {
                Translated { when_true: is, when_false: is_not }
            } else {
                Translated { when_true: is_not, when_false: is }
            })
        }
        Expr::InList(InList { expr, list, negated }) => {
            let Expr::Column(c) = expr.as_ref() else { return None };
            if c.name == USER_ID {
                let values = list
                    .iter()
                    .map(|e| if let Expr::Literal(v, _) = e { Some(v.clone()) } else { None })
                    .collect::<Option<Vec<_>>>()?;
                let is = user_rows(index, &values)?;
                return Some(if *negated { total(minus(BitmapExpr::Universe, is)) } else { total(is) });
            }
            if !index.has_values(&c.name) {
                return None;
            }
            let mut values = Vec::with_capacity(list.len());
            for item in list {
                let Expr::Literal(v, _) = item else { return None };
                values.push(BitmapExpr::Value { column: c.name.clone(), value: value_key(v)? });
            }
            let is = or(values);
            let is_not = minus(not_null(&c.name), is.clone());
            Some(if *negated {
                Translated { when_true: is_not, when_false: is }
            } else {
                Translated { when_true: is, when_false: is_not }
            })
        }
        Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
            let Expr::Column(c) = inner.as_ref() else { return None };
            if !index.has_values(&c.name) {
                return None;
            }
            let null = BitmapExpr::Null(c.name.clone());
            let t = total(null);
            Some(if matches!(expr, Expr::IsNull(_)) {
                t
            } else {
                Translated { when_true: t.when_false, when_false: t.when_true }
            })
        }
        Expr::ScalarFunction(_) => {
            let (marker, spec) = crate::query::udf::marker_call(expr)?;
            Some(total(marker.bitmap_expr(&spec)?))
        }
        // A bare column in a filter is a boolean column (`WHERE has_children`): its `true`
        // users, FALSE for its `false` ones, NULL for the rest.
        Expr::Column(c) if index.is_boolean(&c.name) => Some(Translated {
            when_true: BitmapExpr::Value { column: c.name.clone(), value: "true".into() },
            when_false: BitmapExpr::Value { column: c.name.clone(), value: "false".into() },
        }),
        // `x IS [NOT] TRUE | FALSE` is never NULL.
        Expr::IsTrue(inner) | Expr::IsNotTrue(inner) | Expr::IsFalse(inner) | Expr::IsNotFalse(inner) => {
            let inner = translate(inner, index)?;
            Some(match expr {
                Expr::IsTrue(_) => total(inner.when_true),
                Expr::IsFalse(_) => total(inner.when_false),
                Expr::IsNotTrue(_) => total(minus(BitmapExpr::Universe, inner.when_true)),
                _ => total(minus(BitmapExpr::Universe, inner.when_false)),
            })
        }
        _ => None,
    }
}

/// The users with these user_ids (user_id is never NULL, so the answer is total). A NULL in the
/// list, or a dictionary that cannot be read, leaves the filter to the general path.
fn user_rows(index: &IndexSet, values: &[ScalarValue]) -> Option<BitmapExpr> {
    let mut ids = Vec::with_capacity(values.len());
    for v in values {
        let key = v.try_as_str()??;
        if let Some(id) = index.row_id(key).ok()? {
            ids.push(id);
        }
    }
    Some(BitmapExpr::RowIds(ids))
}

fn column_and_literal<'a>(left: &'a Expr, right: &'a Expr) -> Option<(&'a str, &'a ScalarValue)> {
    match (left, right) {
        (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => Some((&c.name, v)),
        _ => None,
    }
}

/// The key under which the index stores a value (text form); `None` for NULL or unindexed types.
fn value_key(v: &ScalarValue) -> Option<String> {
    if v.is_null() {
        return None;
    }
    if let Some(Some(s)) = v.try_as_str() {
        return Some(s.to_string());
    }
    match v {
        ScalarValue::Boolean(Some(b)) => Some(b.to_string()),
        ScalarValue::Int8(Some(n)) => Some(n.to_string()),
        ScalarValue::Int16(Some(n)) => Some(n.to_string()),
        ScalarValue::Int32(Some(n)) => Some(n.to_string()),
        ScalarValue::Int64(Some(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer or date literal as the range index stores it (dates as days since 1970-01-01).
fn range_value(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int8(Some(n)) => Some(i64::from(*n)),
        ScalarValue::Int16(Some(n)) => Some(i64::from(*n)),
        ScalarValue::Int32(Some(n)) => Some(i64::from(*n)),
        ScalarValue::Int64(Some(n)) => Some(*n),
        ScalarValue::UInt8(Some(n)) => Some(i64::from(*n)),
        ScalarValue::UInt16(Some(n)) => Some(i64::from(*n)),
        ScalarValue::UInt32(Some(n)) => Some(i64::from(*n)),
        ScalarValue::Date32(Some(d)) => Some(i64::from(*d)),
        _ => None,
    }
}

/// Evaluates a bitmap expression on a snapshot's indexes.
pub fn evaluate(expr: &BitmapExpr, index: &IndexSet) -> Result<RoaringBitmap> {
    evaluate_within(expr, index, None)
}

/// The users that every one of `filters` (a users scan's) keeps, when each is exactly a bitmap
/// question; every live user when there is none; `None` when one is not.
pub fn audience_of_filters(filters: &[Expr], index: &IndexSet) -> Result<Option<RoaringBitmap>> {
    let mut audience: Option<RoaringBitmap> = None;
    for f in filters {
        let Some(t) = translate(f, index) else { return Ok(None) };
        let set = evaluate(&t.when_true, index)?;
        audience = Some(match audience {
            Some(a) => a & set,
            None => set,
        });
    }
    Ok(Some(audience.unwrap_or_else(|| index.universe())))
}

/// How much evaluating a term costs, in classes: bitmaps read from the index (0), range
/// comparisons walking bit slices (1), fact rows read from files (2).
fn cost(expr: &BitmapExpr) -> u8 {
    match expr {
        BitmapExpr::Range { .. } | BitmapExpr::ActivityCount(_) => 1,
        BitmapExpr::FactRows(_) | BitmapExpr::FactFilter(_) | BitmapExpr::FactAggregate(_) => 2,
        BitmapExpr::And(items) | BitmapExpr::Or(items) => items.iter().map(cost).max().unwrap_or(0),
        BitmapExpr::AndNot(a, b) => cost(a).max(cost(b)),
        _ => 0,
    }
}

/// A set of users restricted to `within` (all of it when `None`).
pub(crate) fn restrict(set: RoaringBitmap, within: Option<&RoaringBitmap>) -> RoaringBitmap {
    match within {
        Some(w) => set & w,
        None => set,
    }
}

/// [`evaluate`] restricted to the users in `within`: the answer's members among `within` (all of
/// them when `None`). Conjunctions evaluate their cheap terms first and hand what is left to the
/// costly ones, so a window edge or a fact condition reads rows only for the users that can still
/// be in the answer (`tag AND tier AND NOT purchased_within(...)` looks up the edge-day rows of
/// the tagged members of the tier, not of every user active that day).
pub fn evaluate_within(expr: &BitmapExpr, index: &IndexSet, within: Option<&RoaringBitmap>) -> Result<RoaringBitmap> {
    let stored = |kind: BitmapKind, name: &str, key: &str| -> Result<RoaringBitmap> {
        let bitmap = index.get(kind, name, key)?;
        Ok(match within {
            Some(w) => w & bitmap.as_ref(),
            None => bitmap.as_ref().clone(),
        })
    };
    Ok(match expr {
        BitmapExpr::Universe => match within {
            Some(w) => {
                let mut live = w.clone();
                live.remove_range(u32::try_from(index.universe_len()).unwrap_or(u32::MAX)..);
                live -= index.forgotten();
                live
            }
            None => index.universe(),
        },
        BitmapExpr::Tag(t) => stored(BitmapKind::Tag, t, "")?,
        BitmapExpr::Value { column, value } => stored(BitmapKind::Value, column, value)?,
        BitmapExpr::Null(column) => stored(BitmapKind::Null, column, "")?,
        BitmapExpr::Active { stream, first_day, last_day } => {
            index.active_on_days_within(stream, *first_day, *last_day, within)?
        }
        BitmapExpr::Range { column, op, value } => index.range_compare_within(column, *op, *value, within)?,
        BitmapExpr::And(items) => {
            // Cheapest terms first, smallest first among the stored bitmaps; range comparisons
            // and fact reads run over the users the terms before them leave (nested ANDs, e.g.
            // BETWEEN, are flattened first).
            let mut flat: Vec<&BitmapExpr> = Vec::with_capacity(items.len());
            flatten_and(items, &mut flat);
            flat.sort_by_key(|e| cost(e));
            let split = flat.iter().position(|e| cost(e) > 0).unwrap_or(flat.len());
            let mut sets =
                flat[..split].iter().map(|e| evaluate_within(e, index, within)).collect::<Result<Vec<_>>>()?;
            sets.sort_by_key(RoaringBitmap::len);
            let mut it = sets.into_iter();
            let mut acc = match (it.next(), within) {
                (Some(first), _) => first,
                (None, Some(w)) => w.clone(),
                (None, None) if split < flat.len() => {
                    // No cheap term: the range comparisons together, or the first costly term,
                    // start the set.
                    let ranges = range_terms(&flat[split..]);
                    if ranges.len() > 1 {
                        let first = index.range_conjunction_within(&ranges, None)?;
                        let rest: Vec<&BitmapExpr> =
                            flat[split..].iter().copied().filter(|t| !matches!(t, BitmapExpr::Range { .. })).collect();
                        return evaluate_rest(&rest, index, first);
                    }
                    let first = evaluate_within(flat[split], index, None)?;
                    return evaluate_rest(&flat[split + 1..], index, first);
                }
                (None, None) => index.universe(),
            };
            for s in it {
                acc &= s;
            }
            evaluate_rest(&flat[split..], index, acc)?
        }
        BitmapExpr::Or(items) => {
            // Window edges last: only users not already in the union need their rows read.
            let mut acc = RoaringBitmap::new();
            for e in items.iter().filter(|e| !matches!(e, BitmapExpr::FactRows(_))) {
                acc |= evaluate_within(e, index, within)?;
            }
            for e in items {
                if let BitmapExpr::FactRows(scan) = e {
                    let found = users_of_edge(scan, index, &acc, within)?;
                    acc |= found;
                }
            }
            acc
        }
        BitmapExpr::AndNot(a, b) => {
            let kept = evaluate_within(a, index, within)?;
            if kept.is_empty() {
                return Ok(kept);
            }
            // Everyone (no restriction): nothing to narrow the second set to.
            let among = if within.is_none() && matches!(**a, BitmapExpr::Universe) { None } else { Some(&kept) };
            let removed = evaluate_within(b, index, among)?;
            kept - removed
        }
        BitmapExpr::RowIds(ids) => {
            let ids = ids
                .iter()
                .copied()
                .filter(|id| u64::from(*id) < index.universe_len() && !index.forgotten().contains(*id))
                .collect();
            restrict(ids, within)
        }
        BitmapExpr::FactRows(scan) => users_of_edge(scan, index, &RoaringBitmap::new(), within)?,
        BitmapExpr::FactFilter(filter) => filter.users_within(index, within)?,
        BitmapExpr::FactAggregate(aggregate) => aggregate.users_within(index, within)?,
        BitmapExpr::ActivityCount(count) => count.users(index, within)?,
        BitmapExpr::Saved(name) => match index.saved_audience(name)? {
            Some(members) => restrict(members.as_ref().clone(), within),
            None => return Err(crate::store::catalog::no_such_audience(name)),
        },
    })
}

/// How many users `expr` selects: `evaluate(expr, index)?.len()`, counted without building the
/// set where it can (a conjunction of range comparisons over everyone: the bits of the fold).
pub fn count(expr: &BitmapExpr, index: &IndexSet) -> Result<u64> {
    if let BitmapExpr::And(items) = expr {
        let mut flat: Vec<&BitmapExpr> = Vec::with_capacity(items.len());
        flatten_and(items, &mut flat);
        if flat.len() > 1 && flat.iter().all(|e| matches!(e, BitmapExpr::Range { .. })) {
            return index.range_conjunction_count(&range_terms(&flat));
        }
    }
    Ok(evaluate(expr, index)?.len())
}

/// The range comparisons among `terms`.
fn range_terms<'a>(terms: &[&'a BitmapExpr]) -> Vec<(&'a str, RangeOp, i64)> {
    terms
        .iter()
        .filter_map(|t| match t {
            BitmapExpr::Range { column, op, value } => Some((column.as_str(), *op, *value)),
            _ => None,
        })
        .collect()
}

/// Intersects `acc` with each of `terms` in turn, each evaluated only over what `acc` still holds
/// (range comparisons first, together: [`IndexSet::range_conjunction_within`]).
fn evaluate_rest(terms: &[&BitmapExpr], index: &IndexSet, mut acc: RoaringBitmap) -> Result<RoaringBitmap> {
    let ranges = range_terms(terms);
    if ranges.len() > 1 && !acc.is_empty() {
        acc = index.range_conjunction_within(&ranges, Some(&acc))?;
    }
    let ranges_done = ranges.len() > 1;
    for term in terms.iter().filter(|t| !(ranges_done && matches!(t, BitmapExpr::Range { .. }))) {
        if acc.is_empty() {
            break;
        }
        acc = evaluate_within(term, index, Some(&acc))?;
    }
    Ok(acc)
}

/// The users with rows in a window edge, besides those in `known` (which may be left out), among
/// `within`. From the fact files' day times when they all have them (events); otherwise, users
/// with a row in the edge were active in its streams on its days: when the fact files are
/// grouped by user and have plain copies, only those candidates' rows are looked up (binary
/// search by row id); otherwise the rows in the window are read like any fact condition (plain
/// copies, every core), or for a product's category through the products.
fn users_of_edge(
    scan: &EdgeScan,
    index: &IndexSet,
    known: &RoaringBitmap,
    within: Option<&RoaringBitmap>,
) -> Result<RoaringBitmap> {
    if let Some(found) = index.users_by_day_times(scan)? {
        return Ok(restrict(found, within));
    }
    let Some(filter) = FactFilter::of_edge(scan) else { return Ok(restrict(index.users_of_fact_rows(scan)?, within)) };
    if !scan.streams.is_empty() {
        let (first_day, last_day) = (crate::index::day_of(scan.from), crate::index::day_of(scan.to - 1));
        let mut candidates = RoaringBitmap::new();
        for stream in &scan.streams {
            candidates |= index.active_on_days(stream, first_day, last_day)?;
        }
        candidates -= known;
        if let Some(w) = within {
            candidates &= w;
        }
        if candidates.is_empty() {
            return Ok(candidates);
        }
        if let Some(found) = filter.users_among(index, &candidates)? {
            return Ok(found);
        }
    }
    filter.users_within(index, within)
}

fn flatten_and<'a>(items: &'a [BitmapExpr], out: &mut Vec<&'a BitmapExpr>) {
    for item in items {
        match item {
            BitmapExpr::And(inner) => flatten_and(inner, out),
            other => out.push(other),
        }
    }
}

impl fmt::Display for BitmapExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, items: &[BitmapExpr], op: &str| -> fmt::Result {
            write!(f, "(")?;
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                write!(f, "{e}")?;
            }
            write!(f, ")")
        };
        match self {
            BitmapExpr::Universe => write!(f, "all"),
            BitmapExpr::RowIds(ids) => write!(f, "rows{ids:?}"),
            BitmapExpr::FactRows(scan) => write!(f, "{}[ts {}..{}]", scan.table, scan.from, scan.to),
            BitmapExpr::Saved(name) => write!(f, "audience[{name}]"),
            BitmapExpr::FactFilter(filter) => write!(f, "{}[{}]", filter.table.name(), filter.predicate),
            BitmapExpr::FactAggregate(a) => write!(f, "{}[per user: {}]", a.node.table.name(), a.having),
            BitmapExpr::ActivityCount(c) => {
                let having: Vec<String> = c.having.iter().map(|(h, _)| h.to_string()).collect();
                write!(
                    f,
                    "{:?}s active[{}, day {}..={}: {}]",
                    c.unit,
                    c.streams.join(" ∨ "),
                    c.first_day,
                    c.last_day,
                    having.join(" ∧ ")
                )
            }
            BitmapExpr::Tag(t) => write!(f, "tag[{t}]"),
            BitmapExpr::Value { column, value } => write!(f, "{column}[{value}]"),
            BitmapExpr::Null(c) => write!(f, "{c}[NULL]"),
            BitmapExpr::Active { stream, first_day, last_day } => {
                write!(f, "active[{stream}, day {first_day}..={last_day}]")
            }
            BitmapExpr::Range { column, op, value } => write!(f, "{column}[{op} {value}]"),
            BitmapExpr::And(items) => join(f, items, "∧"),
            BitmapExpr::Or(items) => join(f, items, "∨"),
            BitmapExpr::AndNot(a, b) => write!(f, "({a} − {b})"),
        }
    }
}
