//! `now()` / `current_timestamp` and `current_date` / `today()` pinned to one instant per session,
//! so that results reproduce (`--now`). DataFusion's own `now()` reads the query start time, which
//! it resets for every query.

use arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// `now()` returning a fixed instant (nanoseconds since the epoch, UTC).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PinnedNow {
    nanos: i64,
    signature: Signature,
    aliases: Vec<String>,
}

impl PinnedNow {
    pub fn new(nanos: i64) -> Self {
        PinnedNow {
            nanos,
            signature: Signature::nullary(Volatility::Stable),
            aliases: vec!["current_timestamp".into()],
        }
    }

    /// The pinned instant, in nanoseconds since 1970 (UTC).
    pub fn nanos(&self) -> i64 {
        self.nanos
    }
}

/// The `now()` a session's queries see, in microseconds: the pinned one (`--now`), else the clock.
pub fn session_now_micros(state: &datafusion::execution::context::SessionState) -> i64 {
    state
        .scalar_functions()
        .get("now")
        .and_then(|f| f.inner().downcast_ref::<PinnedNow>().map(|p| p.nanos() / 1000))
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros())
}

impl ScalarUDFImpl for PinnedNow {
    fn name(&self) -> &str {
        "now"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Field::new(self.name(), DataType::Timestamp(TimeUnit::Nanosecond, None), false).into())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Nanosecond, None))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(Some(self.nanos), None)))
    }

    fn simplify(&self, _args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        Ok(ExprSimplifyResult::Simplified(Expr::Literal(
            ScalarValue::TimestampNanosecond(Some(self.nanos), None),
            None,
        )))
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }
}

/// `current_date` / `today()` on the pinned instant's UTC date.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PinnedDate {
    days: i32,
    signature: Signature,
    aliases: Vec<String>,
}

impl PinnedDate {
    pub fn new(nanos: i64) -> Self {
        let days = i32::try_from(nanos.div_euclid(86_400_000_000_000)).unwrap_or(i32::MAX);
        PinnedDate { days, signature: Signature::nullary(Volatility::Stable), aliases: vec!["today".into()] }
    }
}

impl ScalarUDFImpl for PinnedDate {
    fn name(&self) -> &str {
        "current_date"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if self.days == i32::MAX {
            return internal_err!("the pinned date is out of range");
        }
        Ok(ColumnarValue::Scalar(ScalarValue::Date32(Some(self.days))))
    }

    fn simplify(&self, _args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        Ok(ExprSimplifyResult::Simplified(Expr::Literal(ScalarValue::Date32(Some(self.days)), None)))
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }
}
