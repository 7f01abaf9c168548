-- a05: a 'cart' event between 2026-10-24 18:30 and 2026-10-31 09:15 and no purchase since 18:30 (edges inside a day), count.
SELECT count(*) AS users
FROM users u
WHERE EXISTS (SELECT 1 FROM events e
              WHERE e.user_id = u.user_id
                AND e.event_type = 'cart'
                AND e.ts >= TIMESTAMP '2026-10-24 18:30:00'
                AND e.ts <  TIMESTAMP '2026-10-31 09:15:00')
  AND NOT EXISTS (SELECT 1 FROM purchases p
                  WHERE p.user_id = u.user_id
                    AND p.ts >= TIMESTAMP '2026-10-24 18:30:00')
