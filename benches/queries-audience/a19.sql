-- a19: average, minimum and maximum points and the audience size of "tier gold, tag 'luxury_buyer', not tag 'churn_risk'".
SELECT count(*)                AS users,
       round(avg(u.points), 2) AS avg_points,
       min(u.points)           AS min_points,
       max(u.points)           AS max_points
FROM users u
WHERE u.tier = 'gold'
  AND EXISTS (SELECT 1 FROM user_tags t
              WHERE t.user_id = u.user_id AND t.tag = 'luxury_buyer')
  AND NOT EXISTS (SELECT 1 FROM user_tags t
                  WHERE t.user_id = u.user_id AND t.tag = 'churn_risk')
