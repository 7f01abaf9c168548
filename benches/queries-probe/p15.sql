-- p15: users with at least 3 purchases and at least 2000 spent in the last year, income band 4 or above.
SELECT count(*) AS n FROM users u
WHERE u.income_band >= 4 AND u.user_id IN (
  SELECT user_id FROM purchases WHERE ts >= TIMESTAMP '2025-11-01 00:00:00' AND ts < TIMESTAMP '2026-11-01 00:00:00'
  GROUP BY user_id HAVING count(*) >= 3 AND sum(amount) >= 2000)
