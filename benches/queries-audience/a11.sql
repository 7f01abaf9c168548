-- a11: gold or platinum members with a 'Lumina' purchase (products join) of at least 300 in the last 180 days, count.
SELECT count(*) AS users
FROM users u
WHERE u.tier IN ('gold', 'platinum')
  AND EXISTS (SELECT 1
              FROM purchases p
              JOIN products pr ON pr.product_id = p.product_id
              WHERE p.user_id = u.user_id
                AND pr.brand = 'Lumina'
                AND p.amount >= 300
                AND p.ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '180 days'
                AND p.ts <  TIMESTAMP '2026-11-01 00:00:00')
