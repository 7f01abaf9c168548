//! Persona's scalar UDFs. `persona_audience(user_id, spec)` marks a users filter that the audience
//! rule wrote in place of a semi/anti join into the facts; the users provider answers it from the
//! bitmaps. It takes the `user_id` column so that it is bound to the users table and never
//! constant-folded (datafusion-notes §3).

use arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PersonaAudience {
    signature: Signature,
}

impl Default for PersonaAudience {
    fn default() -> Self {
        PersonaAudience { signature: Signature::any(2, Volatility::Immutable) }
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

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        plan_err!("persona_audience() is answered from the users indexes and can only filter the users table directly")
    }
}
