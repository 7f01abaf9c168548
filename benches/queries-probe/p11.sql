-- p11: bought in both September and October, gold or platinum.
SELECT count(*) AS n FROM users u
WHERE u.user_id IN (SELECT user_id FROM purchases WHERE ts >= TIMESTAMP '2026-09-01 00:00:00' AND ts < TIMESTAMP '2026-10-01 00:00:00')
  AND u.user_id IN (SELECT user_id FROM purchases WHERE ts >= TIMESTAMP '2026-10-01 00:00:00' AND ts < TIMESTAMP '2026-11-01 00:00:00')
  AND u.tier IN ('gold', 'platinum')
