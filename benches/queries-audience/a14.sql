-- a14: parents (has_children) with income band 7 or higher, working as manager, lawyer, doctor or entrepreneur,
-- who are not tagged 'new_parent' (boolean and custom columns), count.
SELECT count(*) AS users
FROM users u
WHERE u.has_children
  AND u.income_band >= 7
  AND u.occupation IN ('manager', 'lawyer', 'doctor', 'entrepreneur')
  AND NOT EXISTS (SELECT 1 FROM user_tags t
                  WHERE t.user_id = u.user_id AND t.tag = 'new_parent')
