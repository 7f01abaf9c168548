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
