-- a10: app cart abandoners: IN a 'cart' event on channel 'app' in the last 14 days, NOT IN a purchase since, count.
SELECT count(*) AS users
FROM users u
WHERE u.user_id IN (SELECT e.user_id FROM events e
                    WHERE e.event_type = 'cart'
                      AND e.channel_id = 'app'
                      AND e.ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '14 days'
                      AND e.ts <  TIMESTAMP '2026-11-01 00:00:00')
  AND u.user_id NOT IN (SELECT p.user_id FROM purchases p
                        WHERE p.ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '14 days'
                          AND p.ts <  TIMESTAMP '2026-11-01 00:00:00')
