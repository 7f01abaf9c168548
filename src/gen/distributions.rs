//! The numbers that shape the generated data (channel and event mixes, activity by hour, price and
//! popularity skews, weights by age and tier) and the seeded sampling primitives built on them;
//! everything here is constant or a pure function of its inputs.

use rand::Rng;

use rand_distr::{Distribution, Poisson};

use super::calendar::{MICROS_PER_DAY, MICROS_PER_SECOND};
use super::vocabulary::DIGITAL_CHANNELS;

/// SplitMix64 finaliser: a fixed, portable 64-bit mixer used to derive RNG seeds.
pub(super) fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A discrete distribution over `0..len` given by non-negative weights, sampled by binary search
/// in the cumulative table.
#[derive(Debug, Clone)]
pub(super) struct Weighted {
    cum: Vec<f64>,
}

impl Weighted {
    /// Builds the table; negative or non-finite weights count as zero. If all weights are zero the
    /// distribution is uniform.
    pub(super) fn new(weights: impl IntoIterator<Item = f64>) -> Self {
        let mut cum = Vec::new();
        let mut total = 0.0;
        for w in weights {
            if w.is_finite() && w > 0.0 {
                total += w;
            }
            cum.push(total);
        }
        if total <= 0.0 {
            for (i, c) in cum.iter_mut().enumerate() {
                *c = (i + 1) as f64;
            }
        }
        Weighted { cum }
    }

    /// Draws an index; returns 0 for an empty table.
    pub(super) fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let Some(&total) = self.cum.last() else {
            return 0;
        };
        let x = rng.random::<f64>() * total;
        self.cum.partition_point(|&c| c <= x).min(self.cum.len() - 1)
    }
}

/// Zipf-like weights `1 / (rank + q)^s` for ranks `0..n`.
pub(super) fn zipf_weights(n: usize, q: f64, s: f64) -> Vec<f64> {
    (0..n).map(|r| 1.0 / (r as f64 + q).powf(s)).collect()
}

/// Seed of one RNG stream: a fixed SplitMix64 mixing of (seed, stream, index).
pub(super) fn stream_seed(seed: u64, stream: u64, index: u64) -> u64 {
    mix64(mix64(seed ^ mix64(stream)) ^ index)
}

/// Poisson draw; 0 for a non-positive or non-finite rate.
pub(super) fn poisson<R: Rng + ?Sized>(rng: &mut R, lambda: f64, cap: u32) -> u32 {
    if lambda.is_nan() || lambda <= 1e-9 {
        return 0;
    }
    match Poisson::new(lambda.min(1e6)) {
        Ok(p) => {
            let x: f64 = p.sample(rng);
            (x as u32).min(cap)
        }
        Err(_) => 0,
    }
}

/// A day in `[start, end)` (at least `start`), more recent days linearly more likely.
pub(super) fn recent_day<R: Rng + ?Sized>(rng: &mut R, start: i32, end: i32) -> i32 {
    let span = (end - start).max(1);
    let off = (rng.random::<f64>().sqrt() * f64::from(span)) as i32;
    start + off.min(span - 1)
}

/// A whole-second timestamp on `day`, the hour drawn from an activity profile.
pub(super) fn time_on<R: Rng + ?Sized>(rng: &mut R, day: i32, hours: &Weighted) -> (i64, u8) {
    let hour = hours.sample(rng) as i64;
    let secs = hour * 3600 + rng.random_range(0..3600i64);
    (i64::from(day) * MICROS_PER_DAY + secs * MICROS_PER_SECOND, hour as u8)
}

/// Purchase-rate multiplier per tier (same order as [`TIERS`](super::vocabulary::TIERS)); the
/// population mean is ≈ 1.04.
pub(super) const TIER_SPEND_FACTOR: [f64; 4] = [0.7, 1.2, 1.8, 3.0];

/// Median and log-sd of the loyalty points per tier (same order as
/// [`TIERS`](super::vocabulary::TIERS)).
pub(super) const TIER_POINTS: [(f64, f64); 4] = [(300.0, 1.0), (3_000.0, 0.8), (15_000.0, 0.7), (60_000.0, 0.6)];

/// Relative weight of each age 16..=90 (skewed toward 20–45).
pub(super) fn age_weight(age: u32) -> f64 {
    match age {
        16..=19 => 3.0 + (age - 16) as f64,
        20..=24 => 7.0 + (age - 20) as f64 * 0.75,
        25..=45 => 10.0,
        46..=60 => 10.0 - (age - 45) as f64 * 0.4,
        61..=75 => 4.0 - (age - 60) as f64 * 0.2,
        76..=90 => 1.0 - (age - 75) as f64 * 0.05,
        _ => 0.0,
    }
}

/// Probability of having children by age.
pub(super) fn children_probability(age: u32) -> f64 {
    match age {
        0..=19 => 0.01,
        20..=24 => 0.08,
        25..=29 => 0.30,
        30..=34 => 0.55,
        35..=49 => 0.75,
        _ => 0.80,
    }
}

/// Zipf exponent and offset of city popularity by rank: weight `1 / (rank + 2)`.
pub(super) const CITY_ZIPF: (f64, f64) = (2.0, 1.0);

/// Purchase channel mix over the digital channels (same order as
/// [`CHANNELS`](super::vocabulary::CHANNELS)) and the weight of "offline" for users who live in a
/// city with a store, and for users who do not.
pub(super) const PURCHASE_MIX: [f64; DIGITAL_CHANNELS] = [32.0, 2.0, 7.0, 12.0, 5.0, 15.0, 12.0];
pub(super) const PURCHASE_OFFLINE_LOCAL: f64 = 15.0;
pub(super) const PURCHASE_OFFLINE_AWAY: f64 = 1.5;

/// Acquisition channel mix (digital channels) and the weight of "offline".
pub(super) const ACQUISITION_MIX: [f64; DIGITAL_CHANNELS] = [30.0, 10.0, 8.0, 15.0, 10.0, 8.0, 7.0];
pub(super) const ACQUISITION_OFFLINE_LOCAL: f64 = 12.0;
pub(super) const ACQUISITION_OFFLINE_AWAY: f64 = 2.0;

/// Channel mix of engagement events (digital channels only).
pub(super) const EVENT_MIX: [f64; DIGITAL_CHANNELS] = [35.0, 5.0, 5.0, 25.0, 12.0, 10.0, 8.0];

/// Event type weights for most users and for deal seekers (same order as
/// [`EVENT_TYPES`](super::vocabulary::EVENT_TYPES)).
pub(super) const EVENT_WEIGHTS: [f64; 6] = [50.0, 20.0, 5.0, 12.0, 8.0, 5.0];
pub(super) const EVENT_WEIGHTS_DEAL: [f64; 6] = [40.0, 15.0, 4.0, 8.0, 8.0, 25.0];

/// Hour-of-day activity of most users: quiet at night, peaks at lunch and in the evening.
pub(super) const HOURS_DAY: [f64; 24] = [
    1.0, 0.5, 0.3, 0.2, 0.2, 0.3, 0.8, 2.0, 3.0, 4.0, 4.5, 5.0, 6.0, 5.0, 4.5, 4.5, 4.5, 5.0, 5.5, 6.5, 8.0, 8.5, 6.0,
    3.0,
];

/// Hour-of-day activity of night owls: ≈ 75 % between 00:00 and 05:00.
pub(super) const HOURS_NIGHT: [f64; 24] = [
    16.0, 16.0, 16.0, 14.0, 13.0, 2.0, 0.5, 0.3, 0.3, 0.3, 0.5, 0.5, 1.0, 0.5, 0.5, 0.5, 0.5, 0.7, 1.0, 1.5, 2.5, 3.5,
    4.5, 5.0,
];

/// Order quantity 1..=5.
pub(super) const QUANTITY_WEIGHTS: [f64; 5] = [75.0, 15.0, 6.0, 2.5, 1.5];

/// Number of products in the catalogue.
pub(super) const PRODUCT_COUNT: usize = 20_000;

/// Log-sd of prices around the category median; prices are clamped to this range.
pub(super) const PRICE_SIGMA: f64 = 0.6;
pub(super) const PRICE_RANGE: (f64, f64) = (5.0, 5000.0);

/// Product popularity by (shuffled) rank: weight `1 / (rank + 5)^0.85`.
pub(super) const PRODUCT_ZIPF: (f64, f64) = (5.0, 0.85);

/// Shares of the benchmark's tags A, B and C (independent draws).
pub(super) const TAG_ABC_SHARES: [f64; 3] = [0.31, 0.21, 0.14];

/// Generic interest tags by rank: weight `1 / (rank + 3)^0.9`.
pub(super) const GENERIC_TAG_ZIPF: (f64, f64) = (3.0, 0.9);

/// Caps that keep a single user's facts bounded.
pub(super) const MAX_PURCHASES_PER_USER: u32 = 400;
pub(super) const MAX_EVENTS_PER_USER: u32 = 1_000;

/// Purchase rate: Gamma(shape, scale) × tier factor → Poisson; mean ≈ 5, ≈ 30 % of users buy nothing.
pub(super) const PURCHASE_RATE_SHAPE: f64 = 0.5;
pub(super) const PURCHASE_RATE_SCALE: f64 = 9.6;
/// Event rate: base + share of the purchase rate + Gamma(1, scale); churned users × factor.
pub(super) const EVENT_RATE_BASE: f64 = 3.5;
pub(super) const EVENT_RATE_PER_PURCHASE: f64 = 0.7;
pub(super) const EVENT_RATE_SCALE: f64 = 4.5;
pub(super) const CHURNED_EVENT_FACTOR: f64 = 0.3;
/// Generic interest tags per user: Poisson with a Gamma(2, mean / 2) rate.
pub(super) const GENERIC_TAGS_MEAN: f64 = 2.4;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn weighted_sampling_follows_weights() {
        let w = Weighted::new([1.0, 0.0, 3.0]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            counts[w.sample(&mut rng)] += 1;
        }
        assert_eq!(counts[1], 0);
        let share = f64::from(counts[2]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "{share}");
        assert_eq!(Weighted::new(Vec::new()).sample(&mut rng), 0);
        let zero = Weighted::new([0.0, 0.0]);
        assert!(zero.sample(&mut rng) < 2);
    }

    #[test]
    fn mix64_is_the_reference_splitmix64() {
        // First output of the reference SplitMix64 seeded with 0.
        assert_eq!(mix64(0), 0xE220_A839_7B1D_CDAF);
    }
}
