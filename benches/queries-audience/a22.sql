-- a22: spent more than 1000 over the last 180 days (GROUP BY user_id HAVING, as a subquery), not tag 'high_value', count.
SELECT count(*) AS users
FROM users u
WHERE u.user_id IN (SELECT p.user_id
                    FROM purchases p
                    WHERE p.ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '180 days'
                      AND p.ts <  TIMESTAMP '2026-11-01 00:00:00'
                    GROUP BY p.user_id
                    HAVING sum(p.amount) > 1000)
  AND NOT EXISTS (SELECT 1 FROM user_tags t
                  WHERE t.user_id = u.user_id AND t.tag = 'high_value')
