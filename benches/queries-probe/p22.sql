-- p22: users whose only purchases in the last year were on wechat (none elsewhere), counted.
SELECT count(DISTINCT user_id) AS n FROM purchases p
WHERE p.channel_id = 'wechat' AND p.ts >= TIMESTAMP '2025-11-01 00:00:00'
  AND NOT EXISTS (SELECT 1 FROM purchases q WHERE q.user_id = p.user_id AND q.channel_id <> 'wechat' AND q.ts >= TIMESTAMP '2025-11-01 00:00:00')
