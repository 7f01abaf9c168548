-- a20: top-100 export (user_id, phone) by points of: tag 'frequent_buyer', no purchase in 30 days, not acquired on weibo.
-- user_id breaks ties, so that the 100 rows are the same on every engine.
SELECT u.user_id, u.phone
FROM users u
WHERE u.acquisition_channel <> 'weibo'
  AND EXISTS (SELECT 1 FROM user_tags t
              WHERE t.user_id = u.user_id AND t.tag = 'frequent_buyer')
  AND NOT EXISTS (SELECT 1 FROM purchases p
                  WHERE p.user_id = u.user_id
                    AND p.ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '30 days'
                    AND p.ts <  TIMESTAMP '2026-11-01 00:00:00')
ORDER BY u.points DESC, u.user_id
LIMIT 100
