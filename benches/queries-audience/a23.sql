-- a23: NOT (a OR b) over NULLable columns in SQL's three-valued logic: neither a student nor in income band 8+,
-- and neither gender 'U' nor an occupation of 'retired', count (rows whose occupation or income_band is NULL
-- drop out where the NULL decides).
SELECT count(*)                    AS users,
       count(u.occupation)         AS with_occupation,
       count(u.income_band)        AS with_income_band
FROM users u
WHERE NOT (u.occupation = 'student' OR u.income_band >= 8)
  AND NOT (u.gender = 'U' OR u.occupation = 'retired')
