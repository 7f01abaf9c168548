-- p16: carted in the last 3 days (edge at 10:00) but no purchase since, phone known, per tier.
SELECT u.tier, count(*) AS n FROM users u
WHERE u.phone IS NOT NULL
  AND u.user_id IN (SELECT user_id FROM events WHERE event_type = 'cart' AND ts >= TIMESTAMP '2026-10-29 10:00:00')
  AND u.user_id NOT IN (SELECT user_id FROM purchases WHERE ts >= TIMESTAMP '2026-10-29 10:00:00')
GROUP BY u.tier ORDER BY u.tier
