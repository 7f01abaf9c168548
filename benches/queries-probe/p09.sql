-- p09: viewed but never carted since a mid-day instant.
SELECT count(*) AS n FROM users u
WHERE EXISTS (SELECT 1 FROM events e WHERE e.user_id = u.user_id AND e.event_type = 'view'
              AND e.ts >= TIMESTAMP '2026-10-18 09:00:00')
  AND NOT EXISTS (SELECT 1 FROM events e WHERE e.user_id = u.user_id AND e.event_type = 'cart'
              AND e.ts >= TIMESTAMP '2026-10-18 09:00:00')
