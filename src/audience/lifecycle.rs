//! Customer lifecycle (AIPL): the `lifecycle` view gives every user one stage at `now()` —
//! `loyal` (at least `loyal_purchases` purchases within `loyal_days`), else `purchased` (bought at
//! least once), else `interested` (an event within `interested_days`), else `aware` (known, no
//! engagement) — with the thresholds read from the reading session's `persona.lifecycle.*`
//! settings; `lifecycle_flow(d1, d2)` counts the users moving from each stage at `d1` to each
//! stage at `d2`. Both are SQL planned when they are read ([`SqlView`]).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::{Result as DfResult, plan_err};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::Expr;

use crate::audience::sql_view::SqlView;
use crate::query::{LifecycleConfig, PersonaConfig};

/// The stages, from the least to the most engaged.
pub const STAGES: [&str; 4] = ["aware", "interested", "purchased", "loyal"];

/// The thresholds the session reading the view has set.
fn thresholds(state: &SessionState) -> LifecycleConfig {
    state.config().options().extensions.get::<PersonaConfig>().map(|c| c.lifecycle.clone()).unwrap_or_default()
}

/// Every user's stage at `at` (an SQL expression of a timestamp: `now()`, a literal).
fn stages_sql(at: &str, t: &LifecycleConfig) -> String {
    format!(
        "SELECT u.user_id, CASE \
           WHEN p.recent >= {purchases} THEN 'loyal' \
           WHEN p.ever >= 1 THEN 'purchased' \
           WHEN e.user_id IS NOT NULL THEN 'interested' \
           ELSE 'aware' END AS stage \
         FROM users u \
         LEFT JOIN (SELECT user_id, count(*) AS ever, \
                           sum(CASE WHEN ts >= {at} - INTERVAL '{loyal} days' THEN 1 ELSE 0 END) AS recent \
                    FROM purchases WHERE ts < {at} GROUP BY user_id) p ON p.user_id = u.user_id \
         LEFT JOIN (SELECT DISTINCT user_id FROM events \
                    WHERE ts >= {at} - INTERVAL '{interested} days' AND ts < {at}) e ON e.user_id = u.user_id",
        purchases = t.loyal_purchases,
        loyal = t.loyal_days,
        interested = t.interested_days,
    )
}

/// The `lifecycle` view: `(user_id, stage)` at `now()`.
pub fn lifecycle_view() -> SqlView {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, true),
        Field::new("stage", DataType::Utf8, true),
    ]));
    SqlView::with_session_sql(
        stages_sql("now()", &LifecycleConfig::default()),
        Arc::new(|state| Ok(stages_sql("now()", &thresholds(state)))),
        schema,
    )
}

/// `lifecycle_flow(d1, d2)`: per (stage at `d1`, stage at `d2`), the users, in stage order.
#[derive(Debug)]
pub struct LifecycleFlowFunction;

impl TableFunctionImpl for LifecycleFlowFunction {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        const F: &str = "lifecycle_flow";
        let exprs = args.exprs();
        let [from, to] = exprs else {
            return plan_err!(
                "{F}() takes two dates or timestamps, e.g. lifecycle_flow(DATE '2026-09-01', DATE '2026-11-01')"
            );
        };
        let instant = |e: &Expr, which: &str| -> DfResult<String> {
            match crate::audience::analytics::instant_of(e) {
                Some(t) => Ok(format!("to_timestamp_micros({t})")),
                None => plan_err!("{F}(): the {which} argument must be a date or timestamp literal"),
            }
        };
        let (d1, d2) = (instant(from, "first")?, instant(to, "second")?);
        let order = |column: &str| {
            let cases: Vec<String> = STAGES.iter().enumerate().map(|(i, s)| format!("WHEN '{s}' THEN {i}")).collect();
            format!("CASE {column} {} END", cases.join(" "))
        };
        let flow = move |t: &LifecycleConfig| {
            format!(
                "SELECT CAST(a.stage AS VARCHAR) AS from_stage, CAST(b.stage AS VARCHAR) AS to_stage, count(*) AS users \
                 FROM ({}) a JOIN ({}) b ON a.user_id = b.user_id \
                 GROUP BY a.stage, b.stage ORDER BY {}, {}",
                stages_sql(&d1, t),
                stages_sql(&d2, t),
                order("a.stage"),
                order("b.stage"),
            )
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("from_stage", DataType::Utf8, true),
            Field::new("to_stage", DataType::Utf8, true),
            Field::new("users", DataType::Int64, true),
        ]));
        let definition = flow(&LifecycleConfig::default());
        Ok(Arc::new(SqlView::with_session_sql(definition, Arc::new(move |state| Ok(flow(&thresholds(state)))), schema)))
    }
}
