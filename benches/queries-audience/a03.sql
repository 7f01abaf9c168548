-- a03: women who carry at least 2 of the 4 tags beauty_lover, fashionista, wechat_fan, deal_seeker, count.
SELECT count(*) AS users
FROM users u
WHERE u.gender = 'F'
  AND u.user_id IN (SELECT user_id
                    FROM user_tags
                    WHERE tag IN ('beauty_lover', 'fashionista', 'wechat_fan', 'deal_seeker')
                    GROUP BY user_id
                    HAVING count(*) >= 2)
