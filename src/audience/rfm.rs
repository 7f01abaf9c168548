//! The `rfm` view: per buyer, recency in days, frequency (purchases) and monetary value (amount
//! spent) up to `now()`, their 1–5 quintile scores (5 = most recent, most frequent, highest
//! spend; ties broken by `user_id`, so every engine and every run agree), and the classic eight
//! segments of R, F and M each high (score ≥ 3) or low. It is SQL planned when the view is read,
//! on the session that reads it, so `--now` and the indexes apply, and the per-user aggregate
//! and window stack take the same paths as a hand-written RFM query.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::audience::sql_view::SqlView;

/// The view's query: its output names and types are [`rfm_schema`]'s.
const RFM_SQL: &str = "
WITH base AS (
  SELECT user_id, max(ts) AS last_ts, count(*) AS frequency, round(sum(amount), 2) AS monetary
  FROM purchases
  WHERE ts < now()
  GROUP BY user_id
), scored AS (
  SELECT user_id, last_ts, frequency, monetary,
         ntile(5) OVER (ORDER BY last_ts, user_id)   AS r,
         ntile(5) OVER (ORDER BY frequency, user_id) AS f,
         ntile(5) OVER (ORDER BY monetary, user_id)  AS m
  FROM base
)
SELECT CAST(user_id AS VARCHAR) AS user_id,
       CAST(floor((extract(epoch FROM now()) - extract(epoch FROM last_ts)) / 86400) AS BIGINT) AS recency_days,
       CAST(frequency AS BIGINT) AS frequency,
       CAST(monetary AS DOUBLE) AS monetary,
       CAST(r AS BIGINT) AS r_score,
       CAST(f AS BIGINT) AS f_score,
       CAST(m AS BIGINT) AS m_score,
       CASE
         WHEN r >= 3 AND f >= 3 AND m >= 3 THEN 'important value'
         WHEN r <  3 AND f >= 3 AND m >= 3 THEN 'important retention'
         WHEN r >= 3 AND f <  3 AND m >= 3 THEN 'important development'
         WHEN r <  3 AND f <  3 AND m >= 3 THEN 'important recall'
         WHEN r >= 3 AND f >= 3 AND m <  3 THEN 'general value'
         WHEN r <  3 AND f >= 3 AND m <  3 THEN 'general retention'
         WHEN r >= 3 AND f <  3 AND m <  3 THEN 'general development'
         ELSE 'general recall'
       END AS segment
FROM scored";

/// The columns of `rfm`.
pub fn rfm_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, true),
        Field::new("recency_days", DataType::Int64, true),
        Field::new("frequency", DataType::Int64, true),
        Field::new("monetary", DataType::Float64, true),
        Field::new("r_score", DataType::Int64, true),
        Field::new("f_score", DataType::Int64, true),
        Field::new("m_score", DataType::Int64, true),
        Field::new("segment", DataType::Utf8, true),
    ]))
}

/// The `rfm` view.
pub fn rfm_view() -> SqlView {
    SqlView::new(RFM_SQL.to_string(), rfm_schema())
}
