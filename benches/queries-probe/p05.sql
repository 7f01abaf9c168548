-- p05: top 100 members of a tag by points (ORDER BY points DESC LIMIT 100).
SELECT u.user_id, u.phone, u.points FROM users u
WHERE u.user_id IN (SELECT user_id FROM user_tags WHERE tag = 'vip') AND u.tier <> 'bronze'
ORDER BY u.points DESC, u.user_id LIMIT 100
