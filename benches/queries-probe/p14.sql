-- p14: bought skincare on tmall for 300 or more in the last 180 days, and viewed something in the last 7 days.
SELECT count(DISTINCT p.user_id) AS n FROM purchases p JOIN products pr ON pr.product_id = p.product_id
WHERE pr.category = 'skincare' AND p.channel_id = 'tmall' AND p.amount >= 300
  AND p.ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '180 days' AND p.ts < TIMESTAMP '2026-11-01 00:00:00'
  AND p.user_id IN (SELECT user_id FROM events WHERE event_type = 'view' AND ts >= TIMESTAMP '2026-10-25 00:00:00' AND ts < TIMESTAMP '2026-11-01 00:00:00')
