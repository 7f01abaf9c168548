//! Churn early warning. The `churn_risk` view scores every buyer with at least two purchases by
//! how overdue their next purchase is against their own rhythm (the mean days between their
//! purchases) and by their recent engagement (events in the last 30 days), with the reason in
//! words. `churn_backtest(date, horizon)` applies the same rules as of `date` and reports, per
//! risk level, how many of those buyers did not buy within `horizon` days after it, with the
//! precision and recall of flagging that level and above. Both are SQL planned when read
//! ([`SqlView`]).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use datafusion::logical_expr::Expr;

use crate::audience::sql_view::SqlView;

/// Days back that count as recent engagement.
const ENGAGEMENT_DAYS: u32 = 30;

/// Every scored buyer at `at` (an SQL timestamp expression) with their risk and its reason.
fn scored_sql(at: &str) -> String {
    format!(
        "WITH b AS (
           SELECT user_id, count(*) AS purchases, min(ts) AS first_ts, max(ts) AS last_ts
           FROM purchases WHERE ts < {at} GROUP BY user_id HAVING count(*) >= 2
         ), e AS (
           SELECT user_id, count(*) AS events FROM events
           WHERE ts >= {at} - INTERVAL '{ENGAGEMENT_DAYS} days' AND ts < {at} GROUP BY user_id
         ), r AS (
           SELECT b.user_id, b.purchases,
                  (extract(epoch FROM b.last_ts) - extract(epoch FROM b.first_ts)) / 86400.0 / (b.purchases - 1) AS rhythm,
                  (extract(epoch FROM {at}) - extract(epoch FROM b.last_ts)) / 86400.0 AS since,
                  coalesce(e.events, 0) AS recent_events
           FROM b LEFT JOIN e ON e.user_id = b.user_id
         ), o AS (
           SELECT *, since / greatest(rhythm, 1.0) AS overdue FROM r
         )
         SELECT CAST(user_id AS VARCHAR) AS user_id,
                CAST(purchases AS BIGINT) AS purchases,
                round(rhythm, 1) AS rhythm_days,
                CAST(floor(since) AS BIGINT) AS days_since_purchase,
                CAST(recent_events AS BIGINT) AS recent_events,
                round(overdue, 2) AS overdue,
                CASE WHEN overdue >= 2 AND recent_events = 0 THEN 'high'
                     WHEN overdue >= 1.5 OR (overdue >= 1 AND recent_events = 0) THEN 'medium'
                     ELSE 'low' END AS risk,
                concat('last purchase ', CAST(CAST(floor(since) AS BIGINT) AS VARCHAR), ' days ago, ',
                       CAST(round(overdue, 1) AS VARCHAR), ' times their usual ',
                       CAST(CAST(round(rhythm, 0) AS BIGINT) AS VARCHAR), ' days between purchases; ',
                       CAST(recent_events AS VARCHAR), ' events in the last {ENGAGEMENT_DAYS} days') AS reason
         FROM o"
    )
}

/// The `churn_risk` view, at `now()`.
pub fn churn_risk_view() -> SqlView {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, true),
        Field::new("purchases", DataType::Int64, true),
        Field::new("rhythm_days", DataType::Float64, true),
        Field::new("days_since_purchase", DataType::Int64, true),
        Field::new("recent_events", DataType::Int64, true),
        Field::new("overdue", DataType::Float64, true),
        Field::new("risk", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, true),
    ]));
    SqlView::new(scored_sql("now()"), schema)
}

/// `churn_backtest(date, horizon_days)`: the warning as of `date` against what happened next.
#[derive(Debug)]
pub struct ChurnBacktestFunction;

impl TableFunctionImpl for ChurnBacktestFunction {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        const F: &str = "churn_backtest";
        let [date, horizon] = args.exprs() else {
            return plan_err!("{F}() takes a date and a horizon in days, e.g. churn_backtest(DATE '2026-08-01', 60)");
        };
        let Some(at) = crate::audience::analytics::instant_of(date) else {
            return plan_err!("{F}(): the first argument must be a date or timestamp literal");
        };
        let days = match horizon {
            Expr::Literal(v, _) => match v.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(Some(n))) if n > 0 => n,
                _ => return plan_err!("{F}(): the horizon is a whole number of days above zero"),
            },
            _ => return plan_err!("{F}(): the horizon is a whole number of days above zero"),
        };
        let at = format!("to_timestamp_micros({at})");
        let sql = format!(
            "WITH s AS ({scored}),
             c AS (
               SELECT s.user_id, s.risk, n.user_id IS NULL AS churned
               FROM s LEFT JOIN (SELECT DISTINCT user_id FROM purchases
                                 WHERE ts >= {at} AND ts < {at} + INTERVAL '{days} days') n ON n.user_id = s.user_id
             ),
             l AS (
               SELECT risk, CASE risk WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END AS level,
                      count(*) AS users, sum(CASE WHEN churned THEN 1 ELSE 0 END) AS churned
               FROM c GROUP BY risk
             )
             SELECT CAST(risk AS VARCHAR) AS risk, CAST(users AS BIGINT) AS users, CAST(churned AS BIGINT) AS churned,
                    CAST(churned AS DOUBLE) / CAST(users AS DOUBLE) AS churn_rate,
                    CAST(sum(churned) OVER (ORDER BY level) AS DOUBLE) / CAST(sum(users) OVER (ORDER BY level) AS DOUBLE) AS precision,
                    CAST(sum(churned) OVER (ORDER BY level) AS DOUBLE) / CAST(sum(churned) OVER () AS DOUBLE) AS recall
             FROM l ORDER BY level",
            scored = scored_sql(&at),
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("risk", DataType::Utf8, true),
            Field::new("users", DataType::Int64, true),
            Field::new("churned", DataType::Int64, true),
            Field::new("churn_rate", DataType::Float64, true),
            Field::new("precision", DataType::Float64, true),
            Field::new("recall", DataType::Float64, true),
        ]));
        Ok(Arc::new(SqlView::new(sql, schema)))
    }
}
