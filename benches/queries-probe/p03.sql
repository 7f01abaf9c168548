-- p03: app activity in the last week, no purchase in 30 days.
SELECT count(*) AS n FROM users u
WHERE EXISTS (SELECT 1 FROM events e WHERE e.user_id = u.user_id AND e.channel_id = 'app'
              AND e.ts >= TIMESTAMP '2026-10-25 00:00:00')
  AND NOT EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = u.user_id
              AND p.ts >= TIMESTAMP '2026-10-02 00:00:00')
