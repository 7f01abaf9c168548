-- a04: 'vip' users with no purchase in the 30 days before 2026-11-01 13:45 (a window edge that is not a midnight), count.
SELECT count(*) AS users
FROM users u
WHERE EXISTS (SELECT 1 FROM user_tags t
              WHERE t.user_id = u.user_id AND t.tag = 'vip')
  AND NOT EXISTS (SELECT 1 FROM purchases p
                  WHERE p.user_id = u.user_id
                    AND p.ts >= TIMESTAMP '2026-11-01 13:45:00' - INTERVAL '30 days'
                    AND p.ts <  TIMESTAMP '2026-11-01 13:45:00')
