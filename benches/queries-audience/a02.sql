-- a02: Zhejiang members with no purchase in the last 60 days and no tag 'dormant' (LEFT JOIN ... IS NULL anti joins), count.
SELECT count(*) AS users
FROM users u
LEFT JOIN purchases p
       ON p.user_id = u.user_id
      AND p.ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '60 days'
      AND p.ts <  TIMESTAMP '2026-11-01 00:00:00'
LEFT JOIN user_tags t
       ON t.user_id = u.user_id
      AND t.tag = 'dormant'
WHERE u.region = 'Zhejiang'
  AND p.user_id IS NULL
  AND t.user_id IS NULL
