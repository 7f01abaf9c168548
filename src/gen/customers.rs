//! The customers: one user after another, a profile drawn from the model, then purchases and
//! events shaped by it, then the tag rules applied to what the user did; every row goes to the
//! chunk's column builders.

use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use super::batches::{Chunk, ChunkBuilders, PurchaseRow, UserRow};
use super::calendar::{
    EVENT_HISTORY_DAYS, MICROS_PER_DAY, MICROS_PER_SECOND, NOW_DAY, PURCHASE_HISTORY_DAYS, SIGNUP_FIRST_DAY,
    days_from_civil,
};
use super::distributions::{
    CHURNED_EVENT_FACTOR, EVENT_RATE_BASE, EVENT_RATE_PER_PURCHASE, MAX_EVENTS_PER_USER, MAX_PURCHASES_PER_USER,
    TAG_ABC_SHARES, TIER_SPEND_FACTOR, children_probability, mix64, poisson, recent_day, stream_seed, time_on,
};
use super::model::{Model, STREAM_USERS, round_cents};
use super::vocabulary::{
    CATEGORIES, CH_APP, CH_WECHAT, CHANNELS, DIGITAL_CHANNELS, EMAIL_DOMAINS, EV_CART, EV_COUPON, EV_SHARE,
    EVENT_TYPES, GENDERS, GIVEN_F, GIVEN_M, GIVEN_N, Group, OCC_RETIRED, OCC_STUDENT, OCCUPATIONS, PHONE_PREFIXES,
    SEMANTIC_TAGS, SURNAMES, TIERS,
};
use crate::error::Result;

/// Lifetime spend (CNY, last two years) from which a user is tagged `high_value` (≈ top 5 %).
const HIGH_VALUE_SPEND: f64 = 17_000.0;
/// Unit price (CNY) from which a purchase makes its buyer a `luxury_buyer`.
const LUXURY_PRICE: f64 = 3_000.0;

/// A keyed permutation of `0..10^8` (a 27-bit invertible mixer with cycle walking), so that
/// phone numbers are unique yet look random.
fn permute_below_1e8(x: u64, key: u64) -> u64 {
    const MASK: u64 = (1 << 27) - 1;
    let mut y = x & MASK;
    loop {
        // Each step is a bijection of 27-bit values: xor with a key, xorshift, odd multiply.
        y ^= key & MASK;
        y ^= y >> 14;
        y = y.wrapping_mul(0x2C1B_3C6D | 1) & MASK;
        y ^= y >> 13;
        y = y.wrapping_mul(0x297A_2D39 | 1) & MASK;
        y ^= y >> 15;
        if y < 100_000_000 {
            return y;
        }
    }
}

/// The phone number of user `index`: a prefix and a keyed permutation of the index (unique for
/// < 10^8 users), both a function of the seed and the index only.
pub(super) fn phone(model: &Model, index: u64) -> String {
    let prefix = PHONE_PREFIXES[(mix64(model.phone_key ^ index) % PHONE_PREFIXES.len() as u64) as usize];
    format!("{prefix}{:08}", permute_below_1e8(index % 100_000_000, model.phone_key))
}

/// The e-mail address of user `index`: its user id at a domain drawn by the model's shares.
pub(super) fn email(model: &Model, index: u64) -> String {
    let mut rng = StdRng::seed_from_u64(mix64(model.phone_key.rotate_left(17) ^ index));
    format!("u{index}@{}", EMAIL_DOMAINS[model.emails.sample(&mut rng)].0)
}

/// A purchase drawn for a user, before the user's purchases are sorted by time.
#[derive(Clone, Copy)]
struct PurchaseDraw {
    ts: i64,
    product: u32,
    channel: u8,
    quantity: u8,
    hour: u8,
}

/// An event drawn for a user, before the user's events are sorted by time.
#[derive(Clone, Copy)]
struct EventDraw {
    ts: i64,
    channel: u8,
    kind: u8,
    hour: u8,
}

/// Per-user scratch space, reused across users.
#[derive(Default)]
struct Scratch {
    user_id: String,
    name: String,
    phone: String,
    email: String,
    purchases: Vec<PurchaseDraw>,
    events: Vec<EventDraw>,
    tags: Vec<(u16, i64)>,
}

/// Everything about a user that facts and tags depend on.
struct Profile {
    age: u32,
    city: usize,
    tier: usize,
    signup_day: i32,
    occupation: Option<usize>,
    has_children: bool,
    income: Option<i32>,
    night_owl: bool,
    deal_seeker: bool,
    /// For users who stopped buying: the day after their last possible purchase.
    churn_end: Option<i32>,
    preferred_channel: usize,
    favourite_category: usize,
    purchase_rate: f64,
}

/// Facts of a user, summarised for the tag rules.
#[derive(Default)]
struct Behaviour {
    purchases: u32,
    spend: f64,
    last_purchase_day: Option<i32>,
    recent_30: u32,
    recent_90: u32,
    weekend: u32,
    offline: u32,
    channel_mask: u64,
    max_price: f64,
    max_quantity: u8,
    groups: [u32; 10],
    /// Purchases of baby products in the last 365 days.
    recent_baby: u32,
    events: u32,
    last_event_day: Option<i32>,
    coupons: u32,
    shares: u32,
    carts: u32,
    night: u32,
    app: u32,
    wechat: u32,
}

/// Position of a category group in [`Behaviour::groups`].
fn group_index(g: Group) -> usize {
    match g {
        Group::Beauty => 0,
        Group::Fashion => 1,
        Group::Electronics => 2,
        Group::Sports => 3,
        Group::Home => 4,
        Group::Baby => 5,
        Group::Books => 6,
        Group::Pet => 7,
        Group::Food => 8,
        Group::Other => 9,
    }
}

/// Generates users `first..end`, chunk number `chunk`, with their facts and tags. The chunk has its
/// own RNG stream, so its rows do not depend on which thread generates it, or when.
pub(super) fn generate_chunk(model: &Model, chunk: u64, first: u64, end: u64) -> Result<Chunk> {
    let mut rng = StdRng::seed_from_u64(stream_seed(model.seed, STREAM_USERS, chunk));
    let n = usize::try_from(end.saturating_sub(first)).unwrap_or(0);
    let mut b = ChunkBuilders::new(n);
    let mut scratch = Scratch::default();
    for i in first..end {
        generate_user(model, &mut rng, i, &mut b, &mut scratch);
    }
    b.finish()
}

/// Generates user number `index`: the users row, then the user's purchases, events and tags.
fn generate_user(model: &Model, rng: &mut StdRng, index: u64, b: &mut ChunkBuilders, s: &mut Scratch) {
    s.user_id.clear();
    let _ = write!(s.user_id, "u{index}");
    let profile = draw_profile(model, rng, index, b, s);
    let mut behaviour = Behaviour::default();
    draw_purchases(model, rng, &profile, b, s, &mut behaviour);
    draw_events(model, rng, &profile, b, s, &mut behaviour);
    draw_tags(model, rng, &profile, &behaviour, b, s);
}

/// Draws the user's attributes, appends the users row and returns the latent profile.
fn draw_profile(model: &Model, rng: &mut StdRng, index: u64, b: &mut ChunkBuilders, s: &mut Scratch) -> Profile {
    let r: f64 = rng.random();
    let gender = if r < GENDERS[0].1 {
        0
    } else if r < GENDERS[0].1 + GENDERS[1].1 {
        1
    } else {
        2
    };

    // Name: surname + one or two given-name characters.
    s.name.clear();
    s.name.push_str(SURNAMES[model.surnames.sample(rng)].0);
    let given_len = if rng.random_bool(0.35) { 1 } else { 2 };
    for _ in 0..given_len {
        let pool: &[&str] = match (gender, rng.random_range(0..10u8)) {
            (0, 0..=7) => GIVEN_F,
            (1, 0..=7) => GIVEN_M,
            (2, 0..=3) => GIVEN_F,
            (2, 4..=7) => GIVEN_M,
            _ => GIVEN_N,
        };
        s.name.push_str(pool[rng.random_range(0..pool.len())]);
    }

    // Birth date: exactly `age` years old at now.
    let age = 16 + model.ages.sample(rng) as u32;
    let birthday_this_year = days_from_civil(2026 - age as i32, 11, 1);
    let birth_day = birthday_this_year - rng.random_range(0..365);

    let city_idx = model.city_pick.sample(rng);
    let city = &model.cities[city_idx];

    let r: f64 = rng.random();
    let mut acc = 0.0;
    let mut tier = TIERS.len() - 1;
    for (t, (_, share)) in TIERS.iter().enumerate() {
        acc += share;
        if r < acc {
            tier = t;
            break;
        }
    }
    let points = if tier == 0 && rng.random_bool(0.05) { 0.0 } else { model.points[tier].sample(rng) };
    let points = (points.round() as i64).clamp(0, 200_000);

    // Signup: 2015-01-01 .. 2026-10-31, recent more likely, not before the 14th birthday.
    let last_day = NOW_DAY - 1;
    let mut signup_day = recent_day(rng, SIGNUP_FIRST_DAY, NOW_DAY);
    let earliest = birth_day + 14 * 365 + 4;
    if signup_day < earliest {
        signup_day = rng.random_range(earliest.min(last_day)..=last_day);
    }

    // Phone and e-mail: a further profile of a planted person (gen::identities) carries its
    // person's phone when it was made at the till, its person's e-mail when made in the web shop,
    // and neither otherwise. The draws are kept so that the other columns stay as they were.
    let _ = rng.random_range(0..PHONE_PREFIXES.len());
    let _ = model.emails.sample(rng);
    let (phone_of, email_of) = super::identities::contact_source(model.seed, index);
    s.phone.clear();
    if let Some(i) = phone_of {
        s.phone.push_str(&phone(model, i));
    }
    s.email.clear();
    if let Some(i) = email_of {
        s.email.push_str(&email(model, i));
    }

    let local = !city.stores.is_empty();
    let acq_table = if local { &model.acquisition_local } else { &model.acquisition_away };
    let outcome = acq_table.sample(rng);
    let acquisition = model.resolve_channel(rng, outcome, city);

    let student_share = match age {
        0..=18 => 0.95,
        19..=22 => 0.7,
        _ => 0.0,
    };
    let occupation = if rng.random_bool(student_share) {
        OCC_STUDENT
    } else if age >= 62 && rng.random_bool(0.65) {
        OCC_RETIRED
    } else {
        model.occupations.sample(rng)
    };
    let occupation = (!rng.random_bool(0.01)).then_some(occupation);

    let has_children = rng.random_bool(children_probability(age));

    let base = occupation.map_or(4.5, |o| OCCUPATIONS[o].2);
    let age_bonus = if (30..=55).contains(&age) { 0.5 } else { 0.0 };
    let z: f64 = rng.sample(StandardNormal);
    let income = ((base + age_bonus + 1.5 * z).round() as i32).clamp(1, 10);
    let income = (!rng.random_bool(0.01)).then_some(income);

    // Latent traits.
    let night_owl = rng.random_bool(if age < 30 { 0.13 } else { 0.05 });
    let deal_seeker = rng.random_bool(if income.is_some_and(|i| i <= 4) { 0.18 } else { 0.08 });
    let churn_end = if signup_day <= NOW_DAY - 200 && rng.random_bool(0.22) {
        let start = signup_day.max(NOW_DAY - PURCHASE_HISTORY_DAYS);
        let latest = NOW_DAY - 180;
        Some(latest - rng.random_range(0..=(latest - start).clamp(0, 520)))
    } else {
        None
    };
    let preferred_channel = if rng.random_bool(0.45) {
        acquisition
    } else {
        let table = if local { &model.purchase_local } else { &model.purchase_away };
        let outcome = table.sample(rng);
        model.resolve_channel(rng, outcome, city)
    };
    let favourite_category = if has_children && (22..=42).contains(&age) && rng.random_bool(0.3) {
        model.favourite_baby.sample(rng)
    } else {
        model.favourite[gender].sample(rng)
    };
    let purchase_rate = model.purchase_rate.sample(rng) * TIER_SPEND_FACTOR[tier];

    b.push_user(&UserRow {
        user_id: &s.user_id,
        name: &s.name,
        gender: GENDERS[gender].0,
        birth_date: birth_day,
        city: city.name,
        region: city.province,
        tier: TIERS[tier].0,
        points,
        signup_date: signup_day,
        phone: &s.phone,
        email: &s.email,
        acquisition_channel: CHANNELS[acquisition].id,
        occupation: occupation.map(|o| OCCUPATIONS[o].0),
        has_children,
        income_band: income,
    });
    Profile {
        age,
        city: city_idx,
        tier,
        signup_day,
        occupation,
        has_children,
        income,
        night_owl,
        deal_seeker,
        churn_end,
        preferred_channel,
        favourite_category,
        purchase_rate,
    }
}

/// Draws the user's purchases, appends them in time order and sums them up in `beh`.
fn draw_purchases(
    model: &Model,
    rng: &mut StdRng,
    p: &Profile,
    b: &mut ChunkBuilders,
    s: &mut Scratch,
    beh: &mut Behaviour,
) {
    let count = poisson(rng, p.purchase_rate, MAX_PURCHASES_PER_USER);
    let start = p.signup_day.max(NOW_DAY - PURCHASE_HISTORY_DAYS);
    let end = p.churn_end.unwrap_or(NOW_DAY).max(start + 1);
    let hours = if p.night_owl { &model.hours_night } else { &model.hours_day };
    let city = &model.cities[p.city];
    let mix = if city.stores.is_empty() { &model.purchase_away } else { &model.purchase_local };
    s.purchases.clear();
    for _ in 0..count {
        let day = recent_day(rng, start, end);
        let (ts, hour) = time_on(rng, day, hours);
        let channel = if rng.random_bool(0.55) {
            p.preferred_channel
        } else {
            let outcome = mix.sample(rng);
            model.resolve_channel(rng, outcome, city)
        };
        let product = if rng.random_bool(0.35) {
            let (ids, pick) = &model.category_products[p.favourite_category];
            ids.get(pick.sample(rng)).copied().unwrap_or(0)
        } else {
            model.product_pick.sample(rng) as u32
        };
        let quantity = 1 + model.quantity.sample(rng) as u8;
        s.purchases.push(PurchaseDraw { ts, product, channel: channel as u8, quantity, hour });
    }
    s.purchases.sort_unstable_by_key(|r| (r.ts, r.product, r.channel, r.quantity));

    for r in &s.purchases {
        let product = &model.products[r.product as usize];
        let amount = round_cents(product.price * f64::from(r.quantity));
        b.push_purchase(&PurchaseRow {
            user_id: &s.user_id,
            product_id: &product.id,
            channel_id: CHANNELS[usize::from(r.channel)].id,
            ts: r.ts,
            quantity: i32::from(r.quantity),
            amount,
        });

        let day = r.ts.div_euclid(MICROS_PER_DAY) as i32;
        beh.purchases += 1;
        beh.spend += amount;
        beh.last_purchase_day = Some(day);
        if day >= NOW_DAY - 30 {
            beh.recent_30 += 1;
        }
        if day >= NOW_DAY - 90 {
            beh.recent_90 += 1;
        }
        // 1970-01-01 was a Thursday: (day + 3) % 7 is 0 on Mondays.
        if (day + 3).rem_euclid(7) >= 5 {
            beh.weekend += 1;
        }
        let channel = usize::from(r.channel);
        if channel >= DIGITAL_CHANNELS {
            beh.offline += 1;
        }
        if channel == CH_APP {
            beh.app += 1;
        }
        if channel == CH_WECHAT {
            beh.wechat += 1;
        }
        if r.hour < 5 {
            beh.night += 1;
        }
        beh.channel_mask |= 1u64 << (channel % 64);
        beh.max_price = beh.max_price.max(product.price);
        beh.max_quantity = beh.max_quantity.max(r.quantity);
        let group = CATEGORIES[product.category].group;
        beh.groups[group_index(group)] += 1;
        if group == Group::Baby && day >= NOW_DAY - 365 {
            beh.recent_baby += 1;
        }
    }
}

/// Draws the user's events, appends them in time order and sums them up in `beh`.
fn draw_events(
    model: &Model,
    rng: &mut StdRng,
    p: &Profile,
    b: &mut ChunkBuilders,
    s: &mut Scratch,
    beh: &mut Behaviour,
) {
    let mut rate =
        EVENT_RATE_BASE + EVENT_RATE_PER_PURCHASE * p.purchase_rate.min(100.0) + model.event_rate.sample(rng);
    if p.churn_end.is_some() {
        rate *= CHURNED_EVENT_FACTOR;
    }
    let count = poisson(rng, rate, MAX_EVENTS_PER_USER);
    let start = p.signup_day.max(NOW_DAY - EVENT_HISTORY_DAYS);
    let hours = if p.night_owl { &model.hours_night } else { &model.hours_day };
    let types = if p.deal_seeker { &model.event_types_deal } else { &model.event_types };
    let preferred =
        if p.preferred_channel < DIGITAL_CHANNELS { p.preferred_channel } else { model.event_channels.sample(rng) };
    s.events.clear();
    for _ in 0..count {
        let day = recent_day(rng, start, NOW_DAY);
        let (ts, hour) = time_on(rng, day, hours);
        let channel = if rng.random_bool(0.6) { preferred } else { model.event_channels.sample(rng) };
        let kind = types.sample(rng);
        s.events.push(EventDraw { ts, channel: channel as u8, kind: kind as u8, hour });
    }
    s.events.sort_unstable_by_key(|r| (r.ts, r.channel, r.kind));

    for r in &s.events {
        b.push_event(&s.user_id, CHANNELS[usize::from(r.channel)].id, EVENT_TYPES[usize::from(r.kind)], r.ts);

        beh.events += 1;
        beh.last_event_day = Some(r.ts.div_euclid(MICROS_PER_DAY) as i32);
        match usize::from(r.kind) {
            EV_COUPON => beh.coupons += 1,
            EV_SHARE => beh.shares += 1,
            EV_CART => beh.carts += 1,
            _ => {}
        }
        match usize::from(r.channel) {
            CH_APP => beh.app += 1,
            CH_WECHAT => beh.wechat += 1,
            _ => {}
        }
        if r.hour < 5 {
            beh.night += 1;
        }
    }
}

/// Applies the tag rules (see `docs/generator.md`) and draws the generic interest tags.
fn draw_tags(model: &Model, rng: &mut StdRng, p: &Profile, beh: &Behaviour, b: &mut ChunkBuilders, s: &mut Scratch) {
    let group = |g: Group| beh.groups[group_index(g)];
    let activity = beh.purchases + beh.events;
    let last_activity = beh.last_purchase_day.max(beh.last_event_day);
    let rules: [bool; SEMANTIC_TAGS.len()] = [
        rng.random_bool(TAG_ABC_SHARES[0]),
        rng.random_bool(TAG_ABC_SHARES[1]),
        rng.random_bool(TAG_ABC_SHARES[2]),
        // high_value
        beh.spend >= HIGH_VALUE_SPEND,
        // night_owl
        activity >= 3 && beh.night * 2 >= activity,
        // deal_seeker
        beh.coupons >= 3,
        // churn_risk
        beh.last_purchase_day.is_some_and(|d| d < NOW_DAY - 180),
        // new_parent
        p.has_children && p.age <= 45 && (p.signup_day >= NOW_DAY - 365 || beh.recent_baby > 0),
        // vip
        p.tier >= 2,
        // frequent_buyer
        beh.purchases >= 15,
        // app_user
        beh.app >= 3 && beh.app * 5 >= activity * 2,
        // wechat_fan
        beh.wechat >= 5 && beh.wechat * 5 >= activity * 3,
        // beauty_lover
        group(Group::Beauty) >= 3,
        // new_customer
        p.signup_day >= NOW_DAY - 90,
        // loyal_customer
        p.signup_day <= NOW_DAY - 5 * 365 && beh.recent_90 > 0,
        // dormant
        p.signup_day < NOW_DAY - 90 && last_activity.is_none_or(|d| d < NOW_DAY - 90),
        // offline_shopper
        beh.offline > 0,
        // omnichannel
        beh.channel_mask.count_ones() >= 4,
        // social_sharer
        beh.shares >= 2,
        // cart_abandoner
        beh.carts >= 3 && beh.recent_30 == 0,
        // student
        p.occupation == Some(OCC_STUDENT) || p.age <= 22,
        // senior
        p.age >= 60,
        // high_income
        p.income.is_some_and(|i| i >= 8),
        // weekend_shopper
        beh.purchases >= 3 && beh.weekend * 5 >= beh.purchases * 3,
        // tech_enthusiast
        group(Group::Electronics) >= 3,
        // pet_owner
        group(Group::Pet) > 0,
        // foodie
        group(Group::Food) >= 3,
        // fashionista
        group(Group::Fashion) >= 3,
        // sports_fan
        group(Group::Sports) >= 2,
        // book_lover
        group(Group::Books) >= 2,
        // home_maker
        group(Group::Home) >= 3,
        // luxury_buyer
        beh.max_price >= LUXURY_PRICE,
        // bulk_buyer
        beh.max_quantity >= 5,
    ];
    s.tags.clear();
    let first_day = p.signup_day.min(NOW_DAY - 1);
    let assigned = |rng: &mut StdRng| {
        let day = recent_day(rng, first_day, NOW_DAY);
        i64::from(day) * MICROS_PER_DAY + rng.random_range(0..86_400i64) * MICROS_PER_SECOND
    };
    for (t, on) in rules.iter().enumerate() {
        if *on {
            let at = assigned(rng);
            s.tags.push((t as u16, at));
        }
    }
    let generic_rate = model.generic_rate.sample(rng);
    let generic = poisson(rng, generic_rate, 40) as usize;
    let (mut added, mut attempts) = (0, 0);
    while added < generic && attempts < generic * 4 {
        attempts += 1;
        let t = (SEMANTIC_TAGS.len() + model.generic_pick.sample(rng)) as u16;
        if !s.tags.iter().any(|(x, _)| *x == t) {
            let at = assigned(rng);
            s.tags.push((t, at));
            added += 1;
        }
    }
    s.tags.sort_unstable();
    for (t, at) in &s.tags {
        b.push_tag(&s.user_id, &model.tag_names[usize::from(*t)], *at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustc_hash::FxHashSet;

    #[test]
    fn phone_permutation_is_injective() {
        let mut seen = FxHashSet::default();
        for x in 0..1_000_000 {
            let y = permute_below_1e8(x, 0xDEAD_BEEF);
            assert!(y < 100_000_000);
            assert!(seen.insert(y), "{x} collides");
        }
    }
}
