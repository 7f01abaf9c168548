-- p04: 3 or more purchases in 90 days.
SELECT count(*) AS n FROM users WHERE user_id IN (
  SELECT user_id FROM purchases WHERE ts >= TIMESTAMP '2026-08-03 00:00:00'
  GROUP BY user_id HAVING count(*) >= 3)
