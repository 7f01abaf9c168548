-- p12: spend per tier of recent buyers with points > 2000 (join of users with per-user sums; not audience-shaped).
SELECT u.tier, count(*) AS users, round(sum(s.spent), 2) AS spent FROM users u
JOIN (SELECT user_id, sum(amount) AS spent FROM purchases WHERE ts >= TIMESTAMP '2026-08-03 00:00:00' GROUP BY user_id) s
  ON s.user_id = u.user_id
WHERE u.points > 2000
GROUP BY u.tier ORDER BY u.tier
