//! Ready-made rule tags, installed by `CREATE TAGS FROM PACK 'behaviour' [PREFIX 'p_']`: each one
//! an ordinary rule tag (`SHOW TAGS` shows its rule; `CREATE OR REPLACE TAG` changes it), written
//! in plain SQL over the contract's tables with `now()`, so that `REFRESH TAGS` keeps it current.

/// One tag of a pack: its name, what it means, and its rule (a query of user_ids).
#[derive(Debug, Clone, Copy)]
pub struct PackTag {
    pub name: &'static str,
    pub meaning: &'static str,
    pub rule: &'static str,
}

/// The behaviour pack: how customers shop and engage.
pub const BEHAVIOUR: &[PackTag] = &[
    PackTag {
        name: "late_night_active",
        meaning: "at least 5 events in the last 90 days, more than half of them between 22:00 and 04:00 (UTC)",
        rule: "SELECT user_id FROM events WHERE ts >= now() - INTERVAL '90 days' GROUP BY user_id \
               HAVING count(*) >= 5 AND sum(CASE WHEN extract(hour FROM ts) >= 22 OR extract(hour FROM ts) < 4 THEN 1 ELSE 0 END) * 2 > count(*)",
    },
    PackTag {
        name: "weekend_buyer",
        meaning: "at least 3 purchases in the last 365 days, 60 % or more of them on a Saturday or Sunday",
        rule: "SELECT user_id FROM purchases WHERE ts >= now() - INTERVAL '365 days' GROUP BY user_id \
               HAVING count(*) >= 3 AND sum(CASE WHEN extract(dow FROM ts) IN (0, 6) THEN 1 ELSE 0 END) * 5 >= count(*) * 3",
    },
    PackTag {
        name: "coupon_driven",
        meaning: "at least 3 coupon events in the last 90 days, a quarter or more of all their events",
        rule: "SELECT user_id FROM events WHERE ts >= now() - INTERVAL '90 days' GROUP BY user_id \
               HAVING sum(CASE WHEN event_type = 'coupon' THEN 1 ELSE 0 END) >= 3 \
               AND sum(CASE WHEN event_type = 'coupon' THEN 1 ELSE 0 END) * 4 >= count(*)",
    },
    PackTag {
        name: "channel_loyal",
        meaning: "at least 3 purchases in the last 365 days, 80 % or more of them on one channel",
        rule: "SELECT user_id FROM (SELECT user_id, count(*) AS n, sum(count(*)) OVER (PARTITION BY user_id) AS total \
               FROM purchases WHERE ts >= now() - INTERVAL '365 days' GROUP BY user_id, channel_id) c \
               WHERE total >= 3 AND n * 5 >= total * 4",
    },
    PackTag {
        name: "top_spender",
        meaning: "the top 10 % of buyers by amount spent in the last 365 days",
        rule: "SELECT user_id FROM (SELECT user_id, ntile(10) OVER (ORDER BY sum(amount) DESC, user_id) AS decile \
               FROM purchases WHERE ts >= now() - INTERVAL '365 days' GROUP BY user_id) d WHERE decile = 1",
    },
    PackTag {
        name: "lapsed_vip",
        meaning: "gold or platinum members who have bought before but not in the last 90 days",
        rule: "SELECT user_id FROM users WHERE tier IN ('gold', 'platinum') AND NOT purchased_within(INTERVAL '90 days') \
               AND user_id IN (SELECT user_id FROM purchases)",
    },
    PackTag {
        name: "new_buyer",
        meaning: "first purchase ever within the last 30 days",
        rule: "SELECT user_id FROM purchases GROUP BY user_id HAVING min(ts) >= now() - INTERVAL '30 days'",
    },
    PackTag {
        name: "window_shopper",
        meaning: "viewed or carted something in the last 30 days and bought nothing in the last 90",
        rule: "SELECT user_id FROM users WHERE user_id IN (SELECT user_id FROM events WHERE event_type IN ('view', 'cart') \
               AND ts >= now() - INTERVAL '30 days') AND NOT purchased_within(INTERVAL '90 days')",
    },
];

/// The pack of this name (case-insensitive).
pub fn pack(name: &str) -> Option<&'static [PackTag]> {
    match name.to_ascii_lowercase().as_str() {
        "behaviour" | "behavior" => Some(BEHAVIOUR),
        _ => None,
    }
}

/// The names of the packs, for messages.
pub const PACKS: &[&str] = &["behaviour"];
