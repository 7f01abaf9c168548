-- p08: e-mail LIKE with gender, birth range and a boolean column.
SELECT count(*) AS n FROM users
WHERE email LIKE '%@qq.com' AND gender = 'F'
  AND birth_date BETWEEN DATE '1990-01-01' AND DATE '1999-12-31' AND has_children
