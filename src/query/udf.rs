//! Persona's scalar UDFs.
//!
//! - `persona_audience(user_id, spec)` marks a users filter that the audience rule or a short form
//!   wrote in place of a subquery into the facts; the users provider answers it from the bitmaps.
//!   It takes the `user_id` column so that it is bound to the users table and never
//!   constant-folded (datafusion-notes §3). Where it is evaluated row by row after all (a filter
//!   DataFusion did not push into the users scan), it answers by looking the batch's user_ids up
//!   in the id dictionary: slower, never wrong and never an error.
//! - `persona_row_set(__row_id)` is the users scan's own stand-in for a part of a filter that the
//!   bitmaps answered: TRUE for rows in one set, FALSE for rows in another, NULL otherwise.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err};
use datafusion::logical_expr::{ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use roaring::RoaringBitmap;

use crate::index::IndexSet;
use crate::query::activity_count::ActivityCount;
use crate::query::bitmap_expr::Registered;
use crate::query::bitmap_expr::{AudienceSpec, BitmapExpr, evaluate};
use crate::query::fact_filter::{FactAggregate, FactFilter};
use crate::tables::USER_ID;

/// `persona_audience(user_id, spec)`; see the module doc.
#[derive(Debug)]
pub struct PersonaAudience {
    signature: Signature,
    /// The session's indexes, for row-by-row evaluation.
    index: Option<Arc<IndexSet>>,
    /// Each spec's members, computed once per session.
    members: Mutex<HashMap<String, Arc<RoaringBitmap>>>,
    /// Fact predicates that specs refer to by number ([`AudienceSpec::FactFilter`]).
    fact_filters: Registry<FactFilter>,
    /// Per-user aggregates that specs refer to by number ([`AudienceSpec::FactAggregate`]).
    fact_aggregates: Registry<FactAggregate>,
    /// Counts of active periods that specs refer to by number ([`AudienceSpec::ActivityCount`]).
    activity_counts: Registry<ActivityCount>,
}

/// Parts of specs kept by the session and referred to by their number (equal parts share one).
#[derive(Debug)]
struct Registry<T>(Mutex<Vec<Arc<T>>>);

impl<T: PartialEq> Registry<T> {
    fn register(&self, part: T) -> u64 {
        let mut parts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = parts.iter().position(|p| p.as_ref() == &part) {
            return i as u64;
        }
        parts.push(Arc::new(part));
        (parts.len() - 1) as u64
    }

    fn get(&self, id: u64) -> Option<Arc<T>> {
        let parts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        usize::try_from(id).ok().and_then(|i| parts.get(i)).cloned()
    }
}

impl Default for PersonaAudience {
    fn default() -> Self {
        PersonaAudience {
            signature: Signature::any(2, Volatility::Immutable),
            index: None,
            members: Mutex::new(HashMap::new()),
            fact_filters: Registry(Mutex::new(Vec::new())),
            fact_aggregates: Registry(Mutex::new(Vec::new())),
            activity_counts: Registry(Mutex::new(Vec::new())),
        }
    }
}

impl PersonaAudience {
    /// The marker of a session over `index`.
    pub fn new(index: Arc<IndexSet>) -> Self {
        PersonaAudience { index: Some(index), ..Default::default() }
    }

    /// Registers a fact predicate; its number goes into an [`AudienceSpec::FactFilter`].
    pub fn register_fact_filter(&self, filter: FactFilter) -> u64 {
        self.fact_filters.register(filter)
    }

    /// Registers a per-user aggregate; its number goes into an [`AudienceSpec::FactAggregate`].
    pub fn register_fact_aggregate(&self, aggregate: FactAggregate) -> u64 {
        self.fact_aggregates.register(aggregate)
    }

    /// Registers a count of active periods; its number goes into an [`AudienceSpec::ActivityCount`].
    pub fn register_activity_count(&self, count: ActivityCount) -> u64 {
        self.activity_counts.register(count)
    }

    /// The bitmap expression of a spec, its registered parts resolved.
    pub fn bitmap_expr(&self, spec: &AudienceSpec) -> Option<BitmapExpr> {
        spec.to_bitmap_expr(&Registered {
            fact_filter: &|id| self.fact_filters.get(id),
            fact_aggregate: &|id| self.fact_aggregates.get(id),
            activity_count: &|id| self.activity_counts.get(id),
        })
    }

    fn members(&self, index: &IndexSet, spec: &str) -> Result<Arc<RoaringBitmap>> {
        if let Some(found) = self.members.lock().unwrap_or_else(PoisonError::into_inner).get(spec) {
            return Ok(Arc::clone(found));
        }
        let parsed: AudienceSpec = serde_json::from_str(spec).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let Some(expr) = self.bitmap_expr(&parsed) else {
            return exec_err!("persona_audience() refers to a fact condition this session does not hold: {spec}");
        };
        let set = Arc::new(evaluate(&expr, index)?);
        self.members.lock().unwrap_or_else(PoisonError::into_inner).insert(spec.to_string(), Arc::clone(&set));
        Ok(set)
    }
}

// One marker per session; two markers are the same function whatever they have cached.
impl PartialEq for PersonaAudience {
    fn eq(&self, other: &Self) -> bool {
        self.signature == other.signature
    }
}

impl Eq for PersonaAudience {}

impl Hash for PersonaAudience {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.signature.hash(state);
    }
}

impl ScalarUDFImpl for PersonaAudience {
    fn name(&self) -> &str {
        "persona_audience"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(index) = self.index.as_deref() else {
            return exec_err!("persona_audience() is answered from a session's indexes and has none here");
        };
        let [users, spec] = args.args.as_slice() else {
            return exec_err!("persona_audience() takes a user_id and an audience");
        };
        let ColumnarValue::Scalar(spec) = spec else {
            return exec_err!("persona_audience() takes its audience as a constant");
        };
        let Some(spec) = spec.try_as_str().flatten() else {
            return exec_err!("persona_audience() takes its audience as text");
        };
        let members = self.members(index, spec)?;
        let users = users.to_array(args.number_rows)?;
        let users = arrow::compute::cast(&users, &DataType::Utf8)?;
        let users = users.as_string::<i32>();
        let keys: Vec<&str> = (0..users.len()).map(|i| if users.is_null(i) { "" } else { users.value(i) }).collect();
        let rows = index.row_ids(&keys)?;
        let result: BooleanArray = (0..users.len())
            .map(|i| if users.is_null(i) { None } else { Some(rows[i].is_some_and(|r| members.contains(r))) })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(result) as ArrayRef))
    }
}

/// The marker and the audience of `persona_audience(user_id, spec)` (the key may come cast to
/// the facts' string type: it is the same value).
pub fn marker_call(e: &Expr) -> Option<(&PersonaAudience, AudienceSpec)> {
    let Expr::ScalarFunction(f) = e else { return None };
    let marker = f.func.inner().downcast_ref::<PersonaAudience>()?;
    let [key, Expr::Literal(spec, _)] = f.args.as_slice() else { return None };
    let Expr::Column(c) = crate::query::audience_rule::strip_cast(key) else { return None };
    if c.name != USER_ID {
        return None;
    }
    Some((marker, serde_json::from_str(spec.try_as_str()??).ok()?))
}

/// `persona_row_set(__row_id)`; see the module doc.
#[derive(Debug)]
pub struct RowSet {
    /// Tells sets apart for equality and hashing without comparing them.
    id: u64,
    when_true: Arc<RoaringBitmap>,
    when_false: Arc<RoaringBitmap>,
    signature: Signature,
}

impl RowSet {
    pub fn new(when_true: Arc<RoaringBitmap>, when_false: Arc<RoaringBitmap>) -> RowSet {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        RowSet {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            when_true,
            when_false,
            signature: Signature::exact(vec![DataType::UInt32], Volatility::Immutable),
        }
    }
}

impl PartialEq for RowSet {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for RowSet {}

impl Hash for RowSet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl ScalarUDFImpl for RowSet {
    fn name(&self) -> &str {
        "persona_row_set"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let value = |row: u32| {
            if self.when_true.contains(row) {
                Some(true)
            } else if self.when_false.contains(row) {
                Some(false)
            } else {
                None
            }
        };
        match args.args.as_slice() {
            [ColumnarValue::Scalar(ScalarValue::UInt32(row))] => {
                Ok(ColumnarValue::Scalar(ScalarValue::Boolean(row.and_then(value))))
            }
            [ColumnarValue::Array(rows)] => {
                let rows = rows.as_primitive::<arrow::datatypes::UInt32Type>();
                let mut out = BooleanBuilder::with_capacity(rows.len());
                for row in rows.iter() {
                    out.append_option(row.and_then(value));
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }
            _ => exec_err!("persona_row_set() takes the users scan's row ids"),
        }
    }
}
