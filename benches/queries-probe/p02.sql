-- p02: last purchase between 30 and 90 days ago (max(ts) HAVING), counted on its own.
SELECT count(*) AS n FROM (
  SELECT p.user_id FROM purchases p GROUP BY p.user_id
  HAVING max(p.ts) >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '90 days'
     AND max(p.ts) <  TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '30 days') t
