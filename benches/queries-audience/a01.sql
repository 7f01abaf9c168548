-- a01: silver members who carry tag 'A' OR do not carry tag 'churn_risk' (tag subqueries under OR), count.
SELECT count(*) AS users
FROM users u
WHERE u.tier = 'silver'
  AND (EXISTS (SELECT 1 FROM user_tags t
               WHERE t.user_id = u.user_id AND t.tag = 'A')
       OR NOT EXISTS (SELECT 1 FROM user_tags t
                      WHERE t.user_id = u.user_id AND t.tag = 'churn_risk'))
