-- a07: an event in each of August, September and October 2026 (3 distinct months per user), not tag 'app_user', count.
SELECT count(*) AS users
FROM (
  SELECT e.user_id
  FROM events e
  WHERE e.ts >= TIMESTAMP '2026-08-01 00:00:00'
    AND e.ts <  TIMESTAMP '2026-11-01 00:00:00'
  GROUP BY e.user_id
  HAVING count(DISTINCT date_trunc('month', e.ts)) = 3
) active
WHERE active.user_id NOT IN (SELECT user_id FROM user_tags WHERE tag = 'app_user')
