-- p06: an audience's top cities (GROUP BY city).
SELECT u.city, count(*) AS n FROM users u
WHERE u.user_id IN (SELECT user_id FROM user_tags WHERE tag = 'wechat_fan')
  AND u.user_id IN (SELECT user_id FROM purchases WHERE ts >= TIMESTAMP '2026-10-02 00:00:00')
GROUP BY u.city ORDER BY n DESC, u.city LIMIT 20
