-- a14: has_children, income band 7+, occupation manager/lawyer/doctor/entrepreneur, not tag 'new_parent', count.
-- (the boolean and custom columns of the generated users)
SELECT count(*) AS users
FROM users u
WHERE u.has_children
  AND u.income_band >= 7
  AND u.occupation IN ('manager', 'lawyer', 'doctor', 'entrepreneur')
  AND NOT EXISTS (SELECT 1 FROM user_tags t
                  WHERE t.user_id = u.user_id AND t.tag = 'new_parent')
