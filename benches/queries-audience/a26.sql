-- a26: (not audience-shaped: per-category revenue) orders, distinct buyers and revenue per category, last 90 days.
SELECT pr.category,
       count(*)                  AS orders,
       count(DISTINCT p.user_id) AS buyers,
       round(sum(p.amount), 2)   AS revenue
FROM purchases p
JOIN products pr ON pr.product_id = p.product_id
WHERE p.ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '90 days'
  AND p.ts <  TIMESTAMP '2026-11-01 00:00:00'
GROUP BY pr.category
ORDER BY revenue DESC, pr.category
