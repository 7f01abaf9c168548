-- a09: a 'coupon' event in the last 30 days EXCEPT bought in the last 30 days EXCEPT tag 'deal_seeker', count.
SELECT count(*) AS users
FROM (
  SELECT user_id FROM events
  WHERE event_type = 'coupon'
    AND ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '30 days'
    AND ts <  TIMESTAMP '2026-11-01 00:00:00'
  EXCEPT
  SELECT user_id FROM purchases
  WHERE ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '30 days'
    AND ts <  TIMESTAMP '2026-11-01 00:00:00'
  EXCEPT
  SELECT user_id FROM user_tags WHERE tag = 'deal_seeker'
) s
