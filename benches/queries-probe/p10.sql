-- p10: a brand's all-time spend per user > 500 (products join under GROUP BY HAVING), counted.
SELECT count(*) AS n FROM (
  SELECT p.user_id FROM purchases p JOIN products pr ON pr.product_id = p.product_id
  WHERE pr.brand = 'Lumina' GROUP BY p.user_id HAVING sum(p.amount) > 500) t
