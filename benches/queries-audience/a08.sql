-- a08: silver members tagged 'omnichannel' who bought on tmall in the last 90 days, as an INTERSECT of user_id sets, count.
SELECT count(*) AS users
FROM (
  SELECT user_id FROM users WHERE tier = 'silver'
  INTERSECT
  SELECT user_id FROM user_tags WHERE tag = 'omnichannel'
  INTERSECT
  SELECT user_id FROM purchases
  WHERE channel_id = 'tmall'
    AND ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '90 days'
    AND ts <  TIMESTAMP '2026-11-01 00:00:00'
) s
