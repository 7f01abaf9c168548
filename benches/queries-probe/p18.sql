-- p18: the 50 highest-points members of an audience (wechat_fan, silver), with contact columns.
SELECT u.user_id, u.phone, u.points FROM users u
WHERE u.tier = 'silver' AND EXISTS (SELECT 1 FROM user_tags t WHERE t.user_id = u.user_id AND t.tag = 'wechat_fan')
ORDER BY u.points DESC, u.user_id LIMIT 50
