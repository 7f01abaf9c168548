-- a25: (not audience-shaped: one user's 360° view) u8888's attributes, spend per category and brand, recent events.
-- (a) the users row, (b) purchases per category and brand through the products join, (c) events per channel
-- and type in the last 90 days. Three statements, timed together.
SELECT * FROM users WHERE user_id = 'u8888';
SELECT pr.category, pr.brand,
       count(*)                AS orders,
       sum(p.quantity)         AS items,
       round(sum(p.amount), 2) AS spent,
       max(p.ts)               AS last_ts
FROM purchases p
JOIN products pr ON pr.product_id = p.product_id
WHERE p.user_id = 'u8888'
GROUP BY pr.category, pr.brand
ORDER BY spent DESC, pr.category, pr.brand;
SELECT e.channel_id, e.event_type, count(*) AS events, max(e.ts) AS last_ts
FROM events e
WHERE e.user_id = 'u8888'
  AND e.ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '90 days'
  AND e.ts <  TIMESTAMP '2026-11-01 00:00:00'
GROUP BY e.channel_id, e.event_type
ORDER BY e.channel_id, e.event_type
