-- p21: first purchase in the last 60 days and a second purchase since (new repeat buyers), counted.
SELECT count(*) AS n FROM (
  SELECT user_id FROM purchases GROUP BY user_id
  HAVING min(ts) >= TIMESTAMP '2026-09-02 00:00:00' AND count(*) >= 2) t
