-- Audience queries on which the bitmap indexes (on) and DataFusion's general path (off) disagreed,
-- found by tests/integration/audience_fuzz.rs, which replays every one of them on each run: with the
-- indexes on and off, each must give the same rows (an error on both sides is allowed).
-- A query is one statement ending in ';' at the end of a line. The '-- now:' line above it pins now()
-- for it and for the queries after it: 2026-11-01T00:00:00Z, 2026-10-20T15:30:45Z or unpinned.

-- Class 1 (issue 13 fuzz run, seeds 20261101 and 7): a has_tag() / in_audience() marker under OR
-- (or under NOT over AND) beside a condition the indexes do not answer (LIKE, a function such as
-- upper() or coalesce(), purchased_within(), a written-out subquery into any table, even user_tags).
-- Indexes on: "persona_audience() is answered from the users indexes and can only filter the users
-- table directly"; indexes off: a count. With column conditions (tier = 'gold', points::INT > 5) or
-- another has_tag() under the OR, and with has_tag() AND anything, both sides agree.
-- now: 2026-11-01T00:00:00Z
SELECT count(*) FROM users WHERE has_tag('vip') OR email LIKE '%@qq.com';
SELECT count(*) FROM users WHERE NOT (has_tag('A') AND upper(tier) = 'SILVER');
SELECT count(*) FROM users WHERE has_tag('A') OR purchased_within(INTERVAL '730 days');
SELECT count(*) FROM users u WHERE has_tag('C') OR u.user_id IN (SELECT user_id FROM user_tags WHERE tag = 'new_parent');
SELECT count(*) FROM users WHERE in_audience('complaints') OR EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = users.user_id AND p.amount > 1000);

-- Class 2: the tag-overlap rule answers a pivot whose CASE has a non-zero ELSE as if it were 0/1:
-- indexes on 422 (|B|), off 633 (1.5 x 422). THEN 1.5 ELSE 0, THEN 1 ELSE 0.5 and THEN 2 ELSE 0 agree.
SELECT sum(a) FROM (SELECT user_id, max(CASE WHEN tag = 'B' THEN 1.5 ELSE 0.5 END) AS a FROM user_tags WHERE tag = 'B' GROUP BY user_id) f;

-- Class 3: an OR of IN lists (or of equalities) on points, a high-cardinality integer column, with a
-- subquery in one branch: DataFusion derives the union IN list and pushes it to the users scan.
-- Indexes on: "Internal error: users scan received a filter it did not accept: points IN ([Int64(1),
-- Int64(2), Int64(3), Int64(6788)])"; off: 0. The same with a date column (signup_date, off: 2). Needs
-- four values in the union (IN (1, 2) OR (points = 3 AND ...) agrees) and a column without value
-- bitmaps: the same shape on income_band, tier, phone or user_id agrees, and so does a direct IN list.
SELECT count(*) FROM users WHERE points IN (1, 2) OR (points IN (3, 6788) AND EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = users.user_id));
SELECT count(*) FROM users WHERE signup_date IN (DATE '2025-01-01', DATE '2025-01-02') OR (signup_date IN (DATE '2025-01-03', DATE '2025-01-04') AND EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = users.user_id));

-- The next ones: "k of n tags" counted on the tag bitmaps counted a rule tag's members
-- (big_spender, gold_women, recent_app), which the user_tags table holds as rows, as absent.

-- found by seed 20261101: different row counts
-- now: 2026-11-01T00:00:00Z
SELECT u.user_id FROM users u WHERE u.user_id IN (SELECT user_id FROM user_tags WHERE tag IN ('wechat_fan', 'interest_0000', 'big_spender') GROUP BY user_id HAVING count(*) >= 2);

-- found by seed 20261101: different row counts
-- now: 2026-11-01T00:00:00Z
SELECT user_id, name, phone, email FROM users u WHERE ((NOT ((has_tag('night_owl') AND EXISTS (SELECT 1 FROM events e WHERE e.user_id = u.user_id AND e.channel_id <> 'weibo' AND e.ts < '2026-09-03T00:00:00Z'))) AND NOT (income_band <> 3)) AND (NOT (signup_date >= current_date - INTERVAL '400 days') AND NOT ((u.user_id NOT IN (SELECT user_id FROM user_tags WHERE tag IN ('night_owl', 'deal_seeker', 'big_spender', 'A') GROUP BY user_id HAVING count(*) >= 2) AND acquisition_channel = 'wechat'))));

-- found by seed 20261101: different values
-- now: 2026-11-01T00:00:00Z
SELECT count(*) FROM users u WHERE u.user_id IN (SELECT user_id FROM user_tags WHERE tag IN ('recent_app', 'A', 'C') GROUP BY user_id HAVING count(*) >= 3);

-- found by seed 20261101: different values
-- now: 2026-11-01T00:00:00Z
SELECT count(*) FROM users u WHERE u.user_id IN (SELECT user_id FROM user_tags WHERE tag IN ('interest_0000', 'gold_women', 'interest_0042') GROUP BY user_id HAVING count(*) >= 2);

-- found by seed 20261101: different values
-- now: 2026-10-20T15:30:45Z
SELECT count(*) FROM users u WHERE ((u.user_id NOT IN (SELECT u2.user_id FROM users u2 LEFT JOIN (SELECT DISTINCT user_id FROM purchases) x ON x.user_id = u2.user_id WHERE x.user_id IS NULL) AND ((u.user_id NOT IN (SELECT user_id FROM user_tags WHERE tag IN ('big_spender', 'B', 'A') GROUP BY user_id HAVING count(*) >= 3) OR starts_with(u.email, 'u1')) AND EXISTS (SELECT 1 FROM events e WHERE e.user_id = u.user_id AND e.event_type IN ('click', 'coupon')))) OR user_id = 'u1866');

-- found by seed 20261101: different values
-- now: 2026-11-01T00:00:00Z
SELECT count(*) FROM users u WHERE ((((income_band < 6 AND points <= 43160) AND user_id IN ('u1358', 'u719', 'u676', 'u182')) OR NOT ((u.user_id IN (SELECT user_id FROM user_tags WHERE tag IN ('big_spender', 'night_owl', 'recent_app', 'new_parent') GROUP BY user_id HAVING count(*) >= 1) AND has_tag('high_value')))) AND NOT ((NOT (u.user_id NOT IN (SELECT t.user_id FROM user_tags t WHERE t.tag IN ('B', 'new_parent', 'B'))) AND (purchased_within(INTERVAL '90 days') OR EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = u.user_id AND p.channel_id IN ('wechat', 'app'))))));

-- found by seed 20261101: different row counts
-- now: unpinned
SELECT user_id FROM users WHERE users.user_id IN (SELECT user_id FROM user_tags WHERE tag IN ('gold_women', 'A') GROUP BY user_id HAVING count(*) >= 2) INTERSECT ALL SELECT user_id FROM user_tags WHERE tag IN ('wechat_fan', 'deal_seeker') GROUP BY user_id HAVING count(*) >= 2;

-- found by seed 20261101: different row counts
-- now: 2026-11-01T00:00:00Z
SELECT user_id FROM users WHERE (purchased_within(INTERVAL '7 days') OR (users.user_id IN (SELECT user_id FROM user_tags WHERE tag IN ('A', 'recent_app') GROUP BY user_id HAVING count(*) >= 1) AND signup_date <> '2026-07-28')) EXCEPT SELECT user_id FROM user_tags WHERE tag IN ('C', 'churn_risk', 'interest_0042', 'vip') GROUP BY user_id HAVING count(*) >= 2;

-- found by seed 20261101: different values
-- now: 2026-11-01T00:00:00Z
SELECT count(user_id) FROM users u WHERE (EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = u.user_id AND p.ts >= now() - INTERVAL '30 days' AND p.ts < now()) AND u.user_id IN (SELECT user_id FROM user_tags WHERE tag IN ('A', 'app_user', 'gold_women') GROUP BY user_id HAVING count(*) >= 2));

-- found by seed 20261101: error with indexes on only: arrow: Invalid argument error: Column 'count(Int#(#))' is declared as non-nullable but contains null values
-- now: 2026-11-01T00:00:00Z
SELECT count(*) FROM users u WHERE u.user_id IN (SELECT user_id FROM user_tags WHERE tag IN ('wechat_fan', 'interest_0000', 'big_spender') GROUP BY user_id HAVING count(*) >= 2);

-- found by seed 20261101: error with indexes on only: arrow: Invalid argument error: Column 'count(Int#(#))' is declared as non-nullable but contains null values
-- now: 2026-11-01T00:00:00Z
SELECT count(*) FROM users u WHERE u.user_id IN (SELECT user_id FROM purchases GROUP BY user_id HAVING count(*) >= 1);

-- found by seed 20261101: error with indexes on only: arrow: Invalid argument error: Column 'count(Int#(#))' is declared as non-nullable but contains null values
-- now: 2026-11-01T00:00:00Z
SELECT count(*) FROM users WHERE users.user_id IN (SELECT user_id FROM purchases WHERE (purchases.channel_id = 'wechat' OR purchases.channel_id = 'wechat') AND ts >= now() - INTERVAL '30 days' AND ts < now() - INTERVAL '12 hours' GROUP BY user_id HAVING count(*) >= 5);

-- found by seed 20261101: error with indexes on only: arrow: Invalid argument error: Column 'count(Int#(#))' is declared as non-nullable but contains null values
-- now: 2026-11-01T00:00:00Z
SELECT user_id, tier, points, birth_date, has_children, income_band FROM users WHERE (NOT (points::INT <= 6788) OR (users.user_id NOT IN (SELECT user_id FROM purchases WHERE purchases.ts >= now() - INTERVAL '7 days' AND purchases.ts < now() GROUP BY user_id HAVING count(*) >= 5) OR user_id LIKE 'u70%'));

-- found by seed 20261101: error with indexes on only: arrow: Invalid argument error: Column 'count(Int#(#))' is declared as non-nullable but contains null values
-- now: 2026-11-01T00:00:00Z
SELECT count(*) FROM users WHERE users.user_id NOT IN (SELECT user_id FROM purchases WHERE ts < now() - INTERVAL '180 days' GROUP BY user_id HAVING count(*) >= 2);
