-- a18: the 20 cities with the most members of the audience "tag 'A' or 'B', aged 18..30, bought in the last 90 days".
-- Age in whole years at now = 2026-11-01: 18 <= age <= 30  <=>  1995-11-01 < birth_date <= 2008-11-01.
SELECT u.city, count(*) AS users
FROM users u
WHERE u.birth_date >  DATE '1995-11-01'
  AND u.birth_date <= DATE '2008-11-01'
  AND u.user_id IN (SELECT user_id FROM user_tags WHERE tag IN ('A', 'B'))
  AND EXISTS (SELECT 1 FROM purchases p
              WHERE p.user_id = u.user_id
                AND p.ts >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '90 days'
                AND p.ts <  TIMESTAMP '2026-11-01 00:00:00')
GROUP BY u.city
ORDER BY users DESC, u.city
LIMIT 20
