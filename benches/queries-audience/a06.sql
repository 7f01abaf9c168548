-- a06: users who bought in each of the last three calendar months (August, September and October 2026), count.
SELECT count(*) AS users
FROM users u
WHERE EXISTS (SELECT 1 FROM purchases p
              WHERE p.user_id = u.user_id
                AND p.ts >= TIMESTAMP '2026-08-01 00:00:00' AND p.ts < TIMESTAMP '2026-09-01 00:00:00')
  AND EXISTS (SELECT 1 FROM purchases p
              WHERE p.user_id = u.user_id
                AND p.ts >= TIMESTAMP '2026-09-01 00:00:00' AND p.ts < TIMESTAMP '2026-10-01 00:00:00')
  AND EXISTS (SELECT 1 FROM purchases p
              WHERE p.user_id = u.user_id
                AND p.ts >= TIMESTAMP '2026-10-01 00:00:00' AND p.ts < TIMESTAMP '2026-11-01 00:00:00')
