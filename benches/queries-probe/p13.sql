-- p13: gold or platinum women in Shanghai or Beijing, tagged vip, with no purchase in the last 60 days.
SELECT count(*) AS n FROM users u
WHERE u.tier IN ('gold', 'platinum') AND u.gender = 'F' AND u.city IN ('Shanghai', 'Beijing')
  AND EXISTS (SELECT 1 FROM user_tags t WHERE t.user_id = u.user_id AND t.tag = 'vip')
  AND NOT EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = u.user_id AND p.ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '60 days')
