-- p19: bought in store (any store_ channel) in the last 90 days and online (tmall/jd/app) too, counted.
SELECT count(*) AS n FROM (
  SELECT user_id FROM purchases WHERE channel_id LIKE 'store_%' AND ts >= TIMESTAMP '2026-08-03 00:00:00'
  INTERSECT
  SELECT user_id FROM purchases WHERE channel_id IN ('tmall', 'jd', 'app') AND ts >= TIMESTAMP '2026-08-03 00:00:00') s
