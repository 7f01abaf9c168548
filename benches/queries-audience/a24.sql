-- a24: new buyers: first purchase ever (min(ts) per user) in the last 30 days, signed up before 2026, count.
SELECT count(*) AS users
FROM users u
WHERE u.signup_date < DATE '2026-01-01'
  AND u.user_id IN (SELECT p.user_id
                    FROM purchases p
                    GROUP BY p.user_id
                    HAVING min(p.ts) >= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL '30 days')
