-- p01: tags A and B, not C, three cities.
SELECT count(*) AS n FROM users u
WHERE EXISTS (SELECT 1 FROM user_tags t WHERE t.user_id = u.user_id AND t.tag = 'beauty_lover')
  AND u.user_id IN (SELECT user_id FROM user_tags WHERE tag = 'high_income')
  AND u.user_id NOT IN (SELECT user_id FROM user_tags WHERE tag = 'churn_risk')
  AND u.city IN ('Shanghai', 'Beijing', 'Hangzhou')
