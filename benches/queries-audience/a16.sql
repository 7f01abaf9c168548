-- a16: a CTE audience reused twice: its size, and how many of its members logged in on wechat in the last 7 days.
-- The audience: tag 'wechat_fan', tier silver or gold, no purchase in the last 60 days.
WITH audience AS (
  SELECT u.user_id
  FROM users u
  WHERE u.tier IN ('silver', 'gold')
    AND EXISTS (SELECT 1 FROM user_tags t
                WHERE t.user_id = u.user_id AND t.tag = 'wechat_fan')
    AND NOT EXISTS (SELECT 1 FROM purchases p
                    WHERE p.user_id = u.user_id
                      AND p.ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '60 days'
                      AND p.ts <  TIMESTAMP '2026-11-01 00:00:00')
)
SELECT (SELECT count(*) FROM audience) AS audience_size,
       (SELECT count(*)
        FROM audience a
        WHERE a.user_id IN (SELECT e.user_id FROM events e
                            WHERE e.event_type = 'login'
                              AND e.channel_id = 'wechat'
                              AND e.ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '7 days'
                              AND e.ts <  TIMESTAMP '2026-11-01 00:00:00')) AS logged_in_7d
