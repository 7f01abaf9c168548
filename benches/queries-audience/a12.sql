-- a12: distinct buyers of a smartphone, laptop or tablet for 1000 or more on tmall or jd in the last 365 days, count.
SELECT count(DISTINCT p.user_id) AS users
FROM purchases p
JOIN products pr ON pr.product_id = p.product_id
WHERE pr.category IN ('smartphones', 'laptops', 'tablets')
  AND p.channel_id IN ('tmall', 'jd')
  AND p.amount >= 1000
  AND p.ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '365 days'
  AND p.ts <  TIMESTAMP '2026-11-01 00:00:00'
