-- p07: average points of a category's recent buyers (products join).
SELECT round(avg(u.points), 3) AS avg_points FROM users u
WHERE u.user_id IN (SELECT p.user_id FROM purchases p JOIN products pr ON pr.product_id = p.product_id
                    WHERE pr.category = 'skincare' AND p.ts >= TIMESTAMP '2026-09-02 00:00:00')
