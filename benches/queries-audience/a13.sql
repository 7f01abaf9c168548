-- a13: Shanghai users tagged 'high_value' OR with a gmail.com address (a tag OR a LIKE on email), count.
SELECT count(*) AS users
FROM users u
WHERE u.city = 'Shanghai'
  AND (EXISTS (SELECT 1 FROM user_tags t
               WHERE t.user_id = u.user_id AND t.tag = 'high_value')
       OR u.email LIKE '%@gmail.com')
