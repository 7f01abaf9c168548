-- a21: full export (user_id, email) of: tier gold or platinum, tag 'churn_risk', a 'login' event in the last 30 days.
-- The runner wraps this SELECT in the engine's COPY ... TO '<file>.parquet'.
SELECT u.user_id, u.email
FROM users u
WHERE u.tier IN ('gold', 'platinum')
  AND EXISTS (SELECT 1 FROM user_tags t
              WHERE t.user_id = u.user_id AND t.tag = 'churn_risk')
  AND EXISTS (SELECT 1 FROM events e
              WHERE e.user_id = u.user_id
                AND e.event_type = 'login'
                AND e.ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '30 days'
                AND e.ts <  TIMESTAMP '2026-11-01 00:00:00')
