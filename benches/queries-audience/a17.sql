-- a17: the audience "tag 'churn_risk' and an event in the last 30 days" broken down by tier: users and average points.
SELECT u.tier,
       count(*)                AS users,
       round(avg(u.points), 2) AS avg_points
FROM users u
WHERE EXISTS (SELECT 1 FROM user_tags t
              WHERE t.user_id = u.user_id AND t.tag = 'churn_risk')
  AND EXISTS (SELECT 1 FROM events e
              WHERE e.user_id = u.user_id
                AND e.ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '30 days'
                AND e.ts <  TIMESTAMP '2026-11-01 00:00:00')
GROUP BY u.tier
ORDER BY u.tier
