-- a15: users with 1,000..5,000 points, born 1986..1995, signed up since 2024 (BETWEEN on points and birth_date), count.
SELECT count(*) AS users
FROM users u
WHERE u.points BETWEEN 1000 AND 5000
  AND u.birth_date BETWEEN DATE '1986-01-01' AND DATE '1995-12-31'
  AND u.signup_date >= DATE '2024-01-01'
