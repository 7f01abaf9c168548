//! A comparison of a fixed-width column with a constant (`amount >= 1000`, `ts < TIMESTAMP ...`,
//! `quantity = 2`), evaluated straight on the column's values in one vectorisable pass instead of
//! through a DataFusion physical expression. The semantics are DataFusion's: a NULL row never
//! passes; floats compare by total order after -0.0 is made 0.0 (as DataFusion's comparison
//! kernels do), so NaN is above every number. Only a column compared with a literal of exactly
//! the column's SQL type is taken; anything else stays with DataFusion.
//!
//! Several comparisons of one integer-valued column (a `ts` window's two edges) merge into one
//! inclusive range ([`merge_ranges`]), tested in one pass with one unsigned comparison a row.

use std::cmp::Ordering;

use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use arrow::buffer::BooleanBuffer;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

use crate::error::{Error, Result};
use crate::query::dict_filter::{COMPARISON_PICK_COST, and_valid, bits_where, narrow, test_picked};
use crate::tables::TS;

/// The constant, in the column's type.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Constant {
    Float(f64),
    Signed(i64),
    Unsigned(u64),
}

/// `column op constant`, or `lo <= column <= hi` for several of them merged.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstComparison {
    pub column: String,
    /// The column's SQL type (the batch's column is cast to it when stored otherwise).
    data_type: DataType,
    op: Operator,
    constant: Constant,
    /// When set, the test is this inclusive range of the values as `i64` instead (`op` and
    /// `constant` then unused); `lo > hi` passes nothing.
    range: Option<(i64, i64)>,
}

/// `comparisons` with those of one integer-valued column (signed integers, timestamps and
/// unsigned integers below 64 bits) merged into one range test each: `ts >= a AND ts < b` reads
/// `ts` once. Others (floats, `<>`, `UInt64`) are kept as they are; the order is otherwise kept.
pub fn merge_ranges(comparisons: Vec<ConstComparison>) -> Vec<ConstComparison> {
    let mut out: Vec<ConstComparison> = Vec::with_capacity(comparisons.len());
    for c in comparisons {
        let Some((lo, hi)) = c.as_range() else {
            out.push(c);
            continue;
        };
        let same =
            out.iter_mut().find(|o| o.column == c.column && o.data_type == c.data_type && o.as_range().is_some());
        match same {
            Some(o) => {
                let (olo, ohi) = o.as_range().expect("found by its range");
                o.range = Some((olo.max(lo), ohi.min(hi)));
            }
            None => out.push(c),
        }
    }
    out
}

impl ConstComparison {
    /// The comparison `e` is, when it is `column op literal` (either way round) over a column of
    /// `schema` whose type the literal has exactly, and not NULL.
    pub fn from_expr(e: &Expr, schema: &DFSchema) -> Option<ConstComparison> {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else { return None };
        let (column, literal, op) = match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) => (c, v, *op),
            (Expr::Literal(v, _), Expr::Column(c)) => (c, v, op.swap()?),
            _ => return None,
        };
        if !matches!(op, Operator::Eq | Operator::NotEq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq)
        {
            return None;
        }
        let field = schema.field_with_unqualified_name(&column.name).ok()?;
        let data_type = field.data_type().clone();
        if literal.data_type() != data_type {
            return None;
        }
        let constant = match literal {
            ScalarValue::Float64(Some(v)) => Constant::Float(*v),
            ScalarValue::Int8(Some(v)) => Constant::Signed(i64::from(*v)),
            ScalarValue::Int16(Some(v)) => Constant::Signed(i64::from(*v)),
            ScalarValue::Int32(Some(v)) => Constant::Signed(i64::from(*v)),
            ScalarValue::Int64(Some(v)) => Constant::Signed(*v),
            ScalarValue::UInt8(Some(v)) => Constant::Unsigned(u64::from(*v)),
            ScalarValue::UInt16(Some(v)) => Constant::Unsigned(u64::from(*v)),
            ScalarValue::UInt32(Some(v)) => Constant::Unsigned(u64::from(*v)),
            ScalarValue::UInt64(Some(v)) => Constant::Unsigned(*v),
            ScalarValue::TimestampMicrosecond(Some(v), _) => Constant::Signed(*v),
            _ => return None,
        };
        Some(ConstComparison { column: column.name.clone(), data_type, op, constant, range: None })
    }

    /// The comparison a physical expression is, over a column of `schema` (the position of the
    /// column with it), on the same terms as [`ConstComparison::from_expr`].
    pub fn from_physical(
        e: &std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        schema: &arrow::datatypes::Schema,
    ) -> Option<(usize, ConstComparison)> {
        use datafusion::physical_expr::PhysicalExpr;
        use datafusion::physical_expr::expressions::{BinaryExpr as PhysicalBinary, Column, Literal};
        let binary = e.downcast_ref::<PhysicalBinary>()?;
        let as_column = |e: &std::sync::Arc<dyn PhysicalExpr>| {
            e.downcast_ref::<Column>().map(|c| (c.index(), c.name().to_string()))
        };
        let as_literal = |e: &std::sync::Arc<dyn PhysicalExpr>| e.downcast_ref::<Literal>().map(|l| l.value().clone());
        let ((index, name), literal, op) =
            match (as_column(binary.left()), as_literal(binary.right()), as_column(binary.right())) {
                (Some(c), Some(v), _) => (c, v, *binary.op()),
                (None, _, Some(c)) => (c, as_literal(binary.left())?, binary.op().swap()?),
                _ => return None,
            };
        let field = schema.fields().get(index)?;
        if field.name() != &name {
            return None;
        }
        let logical = Expr::BinaryExpr(BinaryExpr {
            left: Box::new(Expr::Column(datafusion::common::Column::new_unqualified(&name))),
            op,
            right: Box::new(Expr::Literal(literal, None)),
        });
        let one = DFSchema::try_from(arrow::datatypes::Schema::new(vec![field.as_ref().clone()])).ok()?;
        Some((index, ConstComparison::from_expr(&logical, &one)?))
    }

    /// The comparison as an inclusive range of `i64` values, when the column's values are
    /// integers that fit `i64` and the operator is not `<>`.
    fn as_range(&self) -> Option<(i64, i64)> {
        if self.range.is_some() {
            return self.range;
        }
        let integral = matches!(
            self.data_type,
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::Timestamp(..)
        );
        let c = match self.constant {
            Constant::Signed(c) if integral => c,
            Constant::Unsigned(c) if integral => i64::try_from(c).ok()?,
            _ => return None,
        };
        Some(match self.op {
            Operator::Eq => (c, c),
            // `< i64::MIN` passes nothing: an empty range.
            Operator::Lt => c.checked_sub(1).map_or((1, 0), |hi| (i64::MIN, hi)),
            Operator::LtEq => (i64::MIN, c),
            Operator::Gt => c.checked_add(1).map_or((1, 0), |lo| (lo, i64::MAX)),
            Operator::GtEq => (c, i64::MAX),
            _ => return None,
        })
    }

    /// The rows of `column` for which the comparison is TRUE.
    pub fn evaluate(&self, column: &ArrayRef) -> Result<BooleanBuffer> {
        self.evaluate_within(column, None)
    }

    /// [`ConstComparison::evaluate`]; with `within`, only its rows are looked at (the others are
    /// false): for a sparse mask, no pass over the other rows.
    pub fn evaluate_within(&self, column: &ArrayRef, within: Option<&BooleanBuffer>) -> Result<BooleanBuffer> {
        let cast;
        let column = if column.data_type() == &self.data_type {
            column
        } else {
            cast = arrow::compute::cast(column, &self.data_type)?;
            &cast
        };
        if let Some((lo, hi)) = self.range {
            return self.evaluate_range(column, within, lo, hi);
        }
        let op = self.op;
        let passing = match (&self.data_type, self.constant) {
            (DataType::Float64, Constant::Float(c)) => {
                let c = zero(c);
                compare::<Float64Type>(column, op, within, |v| zero(v).total_cmp(&c))
            }
            (DataType::Int8, Constant::Signed(c)) => compare::<Int8Type>(column, op, within, |v| i64::from(v).cmp(&c)),
            (DataType::Int16, Constant::Signed(c)) => {
                compare::<Int16Type>(column, op, within, |v| i64::from(v).cmp(&c))
            }
            (DataType::Int32, Constant::Signed(c)) => {
                compare::<Int32Type>(column, op, within, |v| i64::from(v).cmp(&c))
            }
            (DataType::Int64, Constant::Signed(c)) => compare::<Int64Type>(column, op, within, |v| v.cmp(&c)),
            (DataType::Timestamp(..), Constant::Signed(c)) => {
                compare::<TimestampMicrosecondType>(column, op, within, |v| v.cmp(&c))
            }
            (DataType::UInt8, Constant::Unsigned(c)) => {
                compare::<UInt8Type>(column, op, within, |v| u64::from(v).cmp(&c))
            }
            (DataType::UInt16, Constant::Unsigned(c)) => {
                compare::<UInt16Type>(column, op, within, |v| u64::from(v).cmp(&c))
            }
            (DataType::UInt32, Constant::Unsigned(c)) => {
                compare::<UInt32Type>(column, op, within, |v| u64::from(v).cmp(&c))
            }
            (DataType::UInt64, Constant::Unsigned(c)) => compare::<UInt64Type>(column, op, within, |v| v.cmp(&c)),
            _ => None,
        };
        passing.ok_or_else(|| {
            Error::Internal(format!("column '{}' is not of type {} in the batch", self.column, self.data_type))
        })
    }
}

/// `mask` (all rows when `None`) narrowed by every one of `comparisons` (each with its column's
/// position in `batch`), a further one looking only at the rows still passing when they are few
/// ([`crate::query::dict_filter::narrow`]); `days`: the rows' day codes when `batch` comes from a
/// plain copy that has them, for a `ts` window ([`ConstComparison::evaluate_within_by_day`]).
pub fn narrow_by_all(
    mut mask: Option<BooleanBuffer>,
    comparisons: &[(usize, ConstComparison)],
    batch: &arrow::array::RecordBatch,
    days: Option<&arrow::array::UInt16Array>,
) -> Result<Option<BooleanBuffer>> {
    for (at, comparison) in comparisons {
        let column = batch.column(*at);
        mask = Some(narrow(mask, COMPARISON_PICK_COST, |within| match days.filter(|_| comparison.column == TS) {
            Some(days) => comparison.evaluate_within_by_day(column, days, within),
            None => comparison.evaluate_within(column, within),
        })?);
    }
    Ok(mask)
}

impl ConstComparison {
    /// [`ConstComparison::evaluate_within`] for a comparison of a `ts` column whose rows' day
    /// codes are `days` (a plain copy's [`TS_DAY_COLUMN`](crate::store::plain_columns::TS_DAY_COLUMN)):
    /// a window's whole days are decided by the codes, 2 bytes a row; only the rows of its partial
    /// edge days (and of days no code holds) are compared on `ts`. Anything but a microsecond
    /// timestamp range is evaluated on `column` as it is.
    pub fn evaluate_within_by_day(
        &self,
        column: &ArrayRef,
        days: &arrow::array::UInt16Array,
        within: Option<&BooleanBuffer>,
    ) -> Result<BooleanBuffer> {
        use crate::store::plain_columns::{DAY_MICROS, UNKNOWN_DAY};
        let (Some((lo, hi)), DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, _)) =
            (self.as_range(), &self.data_type)
        else {
            return self.evaluate_within(column, within);
        };
        if lo > hi || days.len() != column.len() {
            return self.evaluate_within(column, within);
        }
        let (day_lo, day_hi) = (lo.div_euclid(DAY_MICROS), hi.div_euclid(DAY_MICROS));
        let (lo_partial, hi_partial) = (lo.rem_euclid(DAY_MICROS) != 0, hi.rem_euclid(DAY_MICROS) != DAY_MICROS - 1);
        // The codes of the days wholly inside the window, `first ..= first + span` (cut to the
        // days a code holds, so never the unknown code); `none` when there is no such day.
        let first_whole = (day_lo + i64::from(lo_partial)).max(1);
        let last_whole = (day_hi - i64::from(hi_partial)).min(i64::from(u16::MAX) - 1);
        let (first, span, none) = match (u16::try_from(first_whole), u16::try_from(last_whole - first_whole)) {
            (Ok(first), Ok(span)) if first_whole <= last_whole => (first, span, false),
            _ => (1, 0, true),
        };
        // The edge days the window cuts, when a code holds them (otherwise the unknown code,
        // which is an edge anyway).
        let edge = |partial: bool, day: i64| match partial {
            true => u16::try_from(day).ok().filter(|&d| d != u16::MAX).unwrap_or(UNKNOWN_DAY),
            false => UNKNOWN_DAY,
        };
        let (edge_lo, edge_hi) = (edge(lo_partial, day_lo), edge(hi_partial, day_hi));
        // In `u16` throughout, so that the scan compares many codes per instruction.
        let classify = move |d: u16| {
            let whole = !none && d.wrapping_sub(first) <= span;
            [whole, d == UNKNOWN_DAY || d == edge_lo || d == edge_hi]
        };
        let codes = days.values();
        let [whole, edge] = match within {
            None => crate::query::dict_filter::masks_where(&codes[..], classify),
            Some(within) => crate::query::dict_filter::tests_picked(within, |i| classify(codes[i])),
        };
        let whole = and_valid(whole, days.nulls());
        if edge.count_set_bits() == 0 {
            return Ok(whole);
        }
        Ok(&whole | &self.evaluate_within(column, Some(&edge))?)
    }

    /// The rows of `column` with `lo <= value <= hi` (none when `lo > hi`), NULLs excluded.
    fn evaluate_range(
        &self,
        column: &ArrayRef,
        within: Option<&BooleanBuffer>,
        lo: i64,
        hi: i64,
    ) -> Result<BooleanBuffer> {
        if lo > hi {
            return Ok(BooleanBuffer::new_unset(column.len()));
        }
        // One unsigned comparison: `v - lo` wraps below `lo` to above `hi - lo`.
        let span = hi.wrapping_sub(lo) as u64;
        let inside = move |v: i64| (v.wrapping_sub(lo) as u64) <= span;
        let passing = match &self.data_type {
            DataType::Int8 => within_range::<Int8Type>(column, within, |v| inside(i64::from(v))),
            DataType::Int16 => within_range::<Int16Type>(column, within, |v| inside(i64::from(v))),
            DataType::Int32 => within_range::<Int32Type>(column, within, |v| inside(i64::from(v))),
            DataType::Int64 => within_range::<Int64Type>(column, within, inside),
            DataType::Timestamp(..) => within_range::<TimestampMicrosecondType>(column, within, inside),
            DataType::UInt8 => within_range::<UInt8Type>(column, within, |v| inside(i64::from(v))),
            DataType::UInt16 => within_range::<UInt16Type>(column, within, |v| inside(i64::from(v))),
            DataType::UInt32 => within_range::<UInt32Type>(column, within, |v| inside(i64::from(v))),
            _ => None,
        };
        passing.ok_or_else(|| {
            Error::Internal(format!("column '{}' is not of type {} in the batch", self.column, self.data_type))
        })
    }
}

/// The rows of a `T` column (among `within`'s when given) that `test` passes, NULLs excluded;
/// `None` when the column is not a `T` column.
fn within_range<T: ArrowPrimitiveType>(
    column: &ArrayRef,
    within: Option<&BooleanBuffer>,
    test: impl Fn(T::Native) -> bool,
) -> Option<BooleanBuffer> {
    let values: &PrimitiveArray<T> = column.as_primitive_opt::<T>()?;
    let v = values.values();
    if let Some(mask) = within {
        return Some(and_valid(test_picked(mask, |i| test(v[i])), values.nulls()));
    }
    let passing = bits_where(&v[..], test);
    Some(match values.nulls() {
        Some(nulls) => &passing & nulls.inner(),
        None => passing,
    })
}

/// -0.0 as 0.0 (DataFusion's comparison of floats).
fn zero(v: f64) -> f64 {
    if v == 0.0 { 0.0 } else { v }
}

/// The rows of a `T` column (among `within`'s when given) whose `order` against the constant
/// satisfies `op`, NULLs excluded; `None` when the column is not a `T` column.
fn compare<T: ArrowPrimitiveType>(
    column: &ArrayRef,
    op: Operator,
    within: Option<&BooleanBuffer>,
    order: impl Fn(T::Native) -> Ordering,
) -> Option<BooleanBuffer> {
    let values: &PrimitiveArray<T> = column.as_primitive_opt::<T>()?;
    let v = values.values();
    let keep = |o: Ordering| match op {
        Operator::Eq => o == Ordering::Equal,
        Operator::NotEq => o != Ordering::Equal,
        Operator::Lt => o == Ordering::Less,
        Operator::LtEq => o != Ordering::Greater,
        Operator::Gt => o == Ordering::Greater,
        _ => o != Ordering::Less,
    };
    if let Some(mask) = within {
        return Some(and_valid(test_picked(mask, |i| keep(order(v[i]))), values.nulls()));
    }
    // One loop per operator, so that the test in it is a plain comparison.
    let passing = match op {
        Operator::Eq => bits_where(&v[..], |x| order(x) == Ordering::Equal),
        Operator::NotEq => bits_where(&v[..], |x| order(x) != Ordering::Equal),
        Operator::Lt => bits_where(&v[..], |x| order(x) == Ordering::Less),
        Operator::LtEq => bits_where(&v[..], |x| order(x) != Ordering::Greater),
        Operator::Gt => bits_where(&v[..], |x| order(x) == Ordering::Greater),
        _ => bits_where(&v[..], |x| order(x) != Ordering::Less),
    };
    Some(match values.nulls() {
        Some(nulls) => &passing & nulls.inner(),
        None => passing,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Float64Array, Int64Array, RecordBatch};
    use arrow::datatypes::{Field, Schema};
    use datafusion::logical_expr::{col, lit};
    use datafusion::physical_expr::create_physical_expr;
    use datafusion::physical_expr::execution_props::ExecutionProps;

    use super::*;

    fn schema() -> Schema {
        Schema::new(vec![Field::new("amount", DataType::Float64, true), Field::new("quantity", DataType::Int64, true)])
    }

    /// The comparison's rows against DataFusion's own evaluation of the same expression.
    fn agrees(e: Expr, batch: &RecordBatch) {
        let df = DFSchema::try_from(schema()).unwrap();
        let test = ConstComparison::from_expr(&e, &df).unwrap_or_else(|| panic!("{e} is taken"));
        let ours = test.evaluate(batch.column(batch.schema().index_of(&test.column).unwrap())).unwrap();
        let physical = create_physical_expr(
            &e,
            &df,
            &ExecutionProps::new(),
            &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default(),
        )
        .unwrap();
        // The physical expression read back is the same comparison, at the column's position.
        let (at, read_back) = ConstComparison::from_physical(&physical, &schema()).unwrap_or_else(|| panic!("{e}"));
        assert_eq!(format!("{read_back:?}"), format!("{test:?}"), "{e}");
        assert_eq!(schema().field(at).name(), &test.column);
        let theirs = physical.evaluate(batch).unwrap().into_array(batch.num_rows()).unwrap();
        let theirs = crate::query::dict_filter::true_rows(theirs.as_any().downcast_ref::<BooleanArray>().unwrap());
        assert_eq!(ours, theirs, "{e}");
        // On a mask: the same answers on its rows, nothing elsewhere.
        let mask = BooleanBuffer::collect_bool(batch.num_rows(), |i| i % 3 != 1);
        let narrowed =
            test.evaluate_within(batch.column(batch.schema().index_of(&test.column).unwrap()), Some(&mask)).unwrap();
        assert_eq!(narrowed, &theirs & &mask, "{e} on a mask");
    }

    #[test]
    fn agrees_with_datafusion_on_nulls_zeros_and_nan() {
        let amounts = Float64Array::from(vec![
            Some(-0.0),
            Some(0.0),
            None,
            Some(f64::NAN),
            Some(-f64::NAN),
            Some(1000.0),
            Some(999.99),
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
        ]);
        let quantities =
            Int64Array::from(vec![Some(1), None, Some(2), Some(3), Some(-4), Some(5), Some(0), None, Some(2)]);
        let batch = RecordBatch::try_new(Arc::new(schema()), vec![Arc::new(amounts), Arc::new(quantities)]).unwrap();
        for c in [0.0, -0.0, 1000.0, f64::NAN, f64::INFINITY] {
            for e in [
                col("amount").eq(lit(c)),
                col("amount").not_eq(lit(c)),
                col("amount").lt(lit(c)),
                col("amount").lt_eq(lit(c)),
                col("amount").gt(lit(c)),
                col("amount").gt_eq(lit(c)),
                lit(c).lt(col("amount")),
            ] {
                agrees(e, &batch);
            }
        }
        for c in [-4i64, 0, 2, 7] {
            agrees(col("quantity").gt_eq(lit(c)), &batch);
            agrees(lit(c).gt(col("quantity")), &batch);
            agrees(col("quantity").not_eq(lit(c)), &batch);
        }
    }

    #[test]
    fn merged_ranges_pass_the_rows_every_comparison_passes() {
        let values = vec![Some(i64::MIN), Some(-5), None, Some(0), Some(3), Some(7), Some(i64::MAX), Some(4), None];
        let quantities = Int64Array::from(values.clone());
        let amounts = Float64Array::from(vec![Some(1.0); values.len()]);
        let batch = RecordBatch::try_new(Arc::new(schema()), vec![Arc::new(amounts), Arc::new(quantities)]).unwrap();
        let column = batch.column(1);
        let df = DFSchema::try_from(schema()).unwrap();
        let constants = [i64::MIN, i64::MIN + 1, -5, 0, 3, 4, 7, i64::MAX - 1, i64::MAX];
        let ops: [fn(Expr, Expr) -> Expr; 5] =
            [|a, b| a.eq(b), |a, b| a.lt(b), |a, b| a.lt_eq(b), |a, b| a.gt(b), |a, b| a.gt_eq(b)];
        let mask = BooleanBuffer::collect_bool(values.len(), |i| i % 4 != 1);
        for (i, a) in constants.iter().enumerate() {
            for b in &constants[i..] {
                for op_a in &ops {
                    for op_b in &ops {
                        let first = ConstComparison::from_expr(&op_a(col("quantity"), lit(*a)), &df).unwrap();
                        let second = ConstComparison::from_expr(&op_b(col("quantity"), lit(*b)), &df).unwrap();
                        let separate = &first.evaluate(column).unwrap() & &second.evaluate(column).unwrap();
                        let merged = merge_ranges(vec![first.clone(), second.clone()]);
                        assert_eq!(merged.len(), 1, "{first:?} and {second:?} merge");
                        assert_eq!(merged[0].evaluate(column).unwrap(), separate, "{first:?} and {second:?}");
                        let narrowed = merged[0].evaluate_within(column, Some(&mask)).unwrap();
                        assert_eq!(narrowed, &separate & &mask, "{first:?} and {second:?} on a mask");
                    }
                }
            }
        }
        // Floats, `<>` and other columns stay apart.
        let kept = merge_ranges(vec![
            ConstComparison::from_expr(&col("amount").gt(lit(1.0)), &df).unwrap(),
            ConstComparison::from_expr(&col("amount").lt(lit(2.0)), &df).unwrap(),
            ConstComparison::from_expr(&col("quantity").not_eq(lit(2i64)), &df).unwrap(),
            ConstComparison::from_expr(&col("quantity").gt(lit(1i64)), &df).unwrap(),
        ]);
        assert_eq!(kept.len(), 4);
    }

    #[test]
    fn day_codes_decide_whole_days_and_ts_the_edges() {
        use arrow::array::TimestampMicrosecondArray;
        use arrow::datatypes::TimeUnit;
        use rand::{Rng, SeedableRng};

        use crate::store::plain_columns::{DAY_MICROS, day_code};
        let mut rng = rand::rngs::StdRng::seed_from_u64(31);
        let day = |d: i64| d * DAY_MICROS;
        // Around a few days (midnights exactly, a microsecond either side), before 1970, day 0,
        // beyond what a code holds, and NULLs.
        let special = [
            day(20_000),
            day(20_000) - 1,
            day(20_000) + 1,
            day(20_001) - 1,
            day(20_002),
            0,
            -1,
            day(-3) + 5,
            day(1) - 1,
            day(65_535) + 7,
            day(70_000),
        ];
        let values: Vec<Option<i64>> = (0..4000)
            .map(|_| match rng.random_range(0..10) {
                0 => None,
                1..=3 => Some(special[rng.random_range(0..special.len())]),
                _ => Some(day(19_998) + rng.random_range(0..6 * DAY_MICROS)),
            })
            .collect();
        let ts: ArrayRef = Arc::new(TimestampMicrosecondArray::from(values.clone()));
        let days = arrow::array::UInt16Array::from(values.iter().map(|v| v.map(day_code)).collect::<Vec<_>>());
        let schema = Schema::new(vec![Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true)]);
        let df = DFSchema::try_from(schema).unwrap();
        let at = |t: i64| lit(ScalarValue::TimestampMicrosecond(Some(t), None));
        let bounds = [day(19_999), day(20_000), day(20_000) + 3_600_000_000, day(20_001) - 1, day(20_003), 0, day(-2)];
        let mask = BooleanBuffer::collect_bool(values.len(), |i| i % 5 != 2);
        for &from in &bounds {
            for &to in &bounds {
                let one = |e: Expr| ConstComparison::from_expr(&e, &df).unwrap();
                let windows = [
                    merge_ranges(vec![one(col("ts").gt_eq(at(from))), one(col("ts").lt(at(to)))]).remove(0),
                    merge_ranges(vec![one(col("ts").gt(at(from))), one(col("ts").lt_eq(at(to)))]).remove(0),
                    // One-sided and single comparisons, not merged into a range.
                    one(col("ts").gt_eq(at(from))),
                    one(col("ts").gt(at(from))),
                    one(col("ts").lt(at(to))),
                    one(col("ts").lt_eq(at(to))),
                    one(col("ts").eq(at(to))),
                ];
                for window in windows {
                    let expected = window.evaluate(&ts).unwrap();
                    assert_eq!(window.evaluate_within_by_day(&ts, &days, None).unwrap(), expected, "{from}..{to}");
                    assert_eq!(
                        window.evaluate_within_by_day(&ts, &days, Some(&mask)).unwrap(),
                        &expected & &mask,
                        "{from}..{to} on a mask"
                    );
                }
            }
        }
    }

    #[test]
    fn leaves_other_shapes_to_datafusion() {
        let df = DFSchema::try_from(schema()).unwrap();
        assert!(ConstComparison::from_expr(&col("amount").gt(lit(1000i64)), &df).is_none(), "type differs");
        assert!(ConstComparison::from_expr(&col("amount").gt(col("amount")), &df).is_none());
        assert!(ConstComparison::from_expr(&col("quantity").gt(lit(ScalarValue::Int64(None))), &df).is_none());
        assert!(ConstComparison::from_expr(&(col("quantity") + lit(1i64)).gt(lit(2i64)), &df).is_none());
    }
}
