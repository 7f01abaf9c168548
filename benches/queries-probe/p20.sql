-- p20: average points and count by region of users who logged in on wechat in the last 14 days.
SELECT u.region, count(*) AS n, round(avg(u.points), 2) AS avg_points FROM users u
WHERE u.user_id IN (SELECT user_id FROM events WHERE event_type = 'login' AND channel_id = 'wechat' AND ts >= TIMESTAMP '2026-10-18 00:00:00')
GROUP BY u.region ORDER BY u.region
