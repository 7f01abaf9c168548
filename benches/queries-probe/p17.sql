-- p17: tags A or B but not churn_risk, signed up in 2025, aged 25-34 (born 1991-2000), counted.
SELECT count(*) AS n FROM users u
WHERE (u.user_id IN (SELECT user_id FROM user_tags WHERE tag = 'A') OR u.user_id IN (SELECT user_id FROM user_tags WHERE tag = 'B'))
  AND u.user_id NOT IN (SELECT user_id FROM user_tags WHERE tag = 'churn_risk')
  AND u.signup_date >= DATE '2025-01-01' AND u.signup_date < DATE '2026-01-01'
  AND u.birth_date BETWEEN DATE '1991-01-01' AND DATE '2000-12-31'
