-- a23: NOT (student OR income band 8+) AND NOT (gender 'U' OR retired) over NULLable columns, count.
-- Three-valued logic: where a NULL occupation or income_band leaves an OR unknown, its NOT is unknown
-- too and the row drops out, so count(occupation) and count(income_band) equal users.
SELECT count(*)                    AS users,
       count(u.occupation)         AS with_occupation,
       count(u.income_band)        AS with_income_band
FROM users u
WHERE NOT (u.occupation = 'student' OR u.income_band >= 8)
  AND NOT (u.gender = 'U' OR u.occupation = 'retired')
