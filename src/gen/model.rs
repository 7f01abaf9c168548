//! The model: the fixed world every customer is drawn from, which depends only on the seed: cities
//! and their stores, the product catalogue and its popularity, and the weighted tables of names,
//! channels, event types, hours and favourite categories.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Gamma, LogNormal, StandardNormal};

use super::distributions::{
    ACQUISITION_MIX, ACQUISITION_OFFLINE_AWAY, ACQUISITION_OFFLINE_LOCAL, CITY_ZIPF, EVENT_MIX, EVENT_RATE_SCALE,
    EVENT_WEIGHTS, EVENT_WEIGHTS_DEAL, GENERIC_TAG_ZIPF, GENERIC_TAGS_MEAN, HOURS_DAY, HOURS_NIGHT, PRICE_RANGE,
    PRICE_SIGMA, PRODUCT_COUNT, PRODUCT_ZIPF, PURCHASE_MIX, PURCHASE_OFFLINE_AWAY, PURCHASE_OFFLINE_LOCAL,
    PURCHASE_RATE_SCALE, PURCHASE_RATE_SHAPE, QUANTITY_WEIGHTS, TIER_POINTS, Weighted, age_weight, mix64, stream_seed,
    zipf_weights,
};
use super::vocabulary::{
    BRAND_HEADS, BRAND_TAILS, BRANDS_PER_CATEGORY, CATEGORIES, CHANNELS, CITIES, Category, DIGITAL_CHANNELS,
    EMAIL_DOMAINS, GENERIC_TAGS, Group, OCCUPATIONS, PRODUCT_ADJECTIVES, SEMANTIC_TAGS, SURNAMES, TOP_CITIES,
};
use crate::error::{Error, Result};

/// RNG streams of a seed ([`stream_seed`]): users (one stream per chunk), the catalogue, the key of
/// the phone numbers, the order of the cities.
pub(super) const STREAM_USERS: u64 = 1;
const STREAM_PRODUCTS: u64 = 2;
const STREAM_PHONES: u64 = 3;
const STREAM_CITIES: u64 = 4;

/// An amount in CNY rounded to whole cents.
pub(super) fn round_cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A city users live in.
pub(super) struct City {
    pub(super) name: &'static str,
    pub(super) province: &'static str,
    /// Indices into `CHANNELS` of the stores in this city.
    pub(super) stores: Vec<usize>,
}

/// A product of the catalogue.
pub(super) struct Product {
    pub(super) id: String,
    pub(super) name: String,
    /// Index into `CATEGORIES`.
    pub(super) category: usize,
    pub(super) brand: usize,
    pub(super) price: f64,
}

impl Product {
    pub(super) fn category(&self) -> &'static Category {
        &CATEGORIES[self.category]
    }

    pub(super) fn brand_name(&self) -> String {
        brand_name(self.brand)
    }
}

/// Everything customers are drawn from that does not change from one customer to the next; built
/// once per seed and shared by the generator threads.
pub(super) struct Model {
    pub(super) seed: u64,
    /// Cities in popularity-rank order.
    pub(super) cities: Vec<City>,
    pub(super) city_pick: Weighted,
    pub(super) surnames: Weighted,
    /// Index = age − 16.
    pub(super) ages: Weighted,
    pub(super) occupations: Weighted,
    pub(super) emails: Weighted,
    /// Digital channels + one "offline" outcome (index `DIGITAL_CHANNELS`).
    pub(super) purchase_local: Weighted,
    pub(super) purchase_away: Weighted,
    pub(super) acquisition_local: Weighted,
    pub(super) acquisition_away: Weighted,
    pub(super) event_channels: Weighted,
    pub(super) event_types: Weighted,
    pub(super) event_types_deal: Weighted,
    pub(super) hours_day: Weighted,
    pub(super) hours_night: Weighted,
    pub(super) quantity: Weighted,
    /// Favourite category by gender (F, M, U), and for young parents.
    pub(super) favourite: [Weighted; 3],
    pub(super) favourite_baby: Weighted,
    pub(super) products: Vec<Product>,
    pub(super) product_pick: Weighted,
    /// Per category: its products and their popularity.
    pub(super) category_products: Vec<(Vec<u32>, Weighted)>,
    pub(super) tag_names: Vec<String>,
    pub(super) generic_pick: Weighted,
    pub(super) purchase_rate: Gamma<f64>,
    pub(super) event_rate: Gamma<f64>,
    pub(super) generic_rate: Gamma<f64>,
    pub(super) points: Vec<LogNormal<f64>>,
    /// Key of the phone-number permutation.
    pub(super) phone_key: u64,
}

fn internal(what: &str) -> impl Fn(rand_distr::GammaError) -> Error + '_ {
    move |e| Error::Internal(format!("bad {what} distribution: {e}"))
}

impl Model {
    /// The model of `seed`.
    pub(super) fn new(seed: u64) -> Result<Model> {
        // Cities: the top markets first, the others in a fixed pseudo-random order.
        let mut order: Vec<usize> = Vec::with_capacity(CITIES.len());
        for top in TOP_CITIES {
            if let Some(i) = CITIES.iter().position(|c| c.0 == *top) {
                order.push(i);
            }
        }
        let mut rest: Vec<usize> = (0..CITIES.len()).filter(|i| !order.contains(i)).collect();
        rest.sort_by_key(|&i| {
            let h = CITIES[i].0.bytes().fold(STREAM_CITIES, |h, b| mix64(h ^ u64::from(b)));
            (h, i)
        });
        order.extend(rest);
        let cities: Vec<City> = order
            .iter()
            .map(|&i| City {
                name: CITIES[i].0,
                province: CITIES[i].1,
                stores: CHANNELS
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.city == Some(CITIES[i].0))
                    .map(|(j, _)| j)
                    .collect(),
            })
            .collect();
        let city_pick = Weighted::new(zipf_weights(cities.len(), CITY_ZIPF.0, CITY_ZIPF.1));

        let with_offline = |mix: &[f64; DIGITAL_CHANNELS], offline: f64| {
            Weighted::new(mix.iter().copied().chain(std::iter::once(offline)))
        };

        let favourite_for = |gender: usize| {
            Weighted::new(CATEGORIES.iter().map(|c| {
                let bias = match (gender, c.group, c.name) {
                    (0, _, "mens_grooming" | "mens_apparel") => 0.3,
                    (0, Group::Beauty, _) | (0, _, "womens_apparel" | "jewelry" | "bags") => 2.5,
                    (1, _, "mens_grooming" | "mens_apparel") => 3.0,
                    (1, Group::Electronics, _) | (1, Group::Sports, _) => 2.5,
                    (1, Group::Beauty, _) | (1, _, "womens_apparel" | "jewelry") => 0.3,
                    _ => 1.0,
                };
                c.weight * bias
            }))
        };

        let (products, product_pick, category_products) = Self::catalogue(seed);

        let mut tag_names: Vec<String> = SEMANTIC_TAGS.iter().map(|t| (*t).to_string()).collect();
        tag_names.extend((0..GENERIC_TAGS).map(|i| format!("interest_{i:04}")));

        let points = TIER_POINTS
            .iter()
            .map(|&(median, sigma)| {
                LogNormal::new(median.ln(), sigma).map_err(|e| Error::Internal(format!("bad points distribution: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;

        Ok(Model {
            seed,
            cities,
            city_pick,
            surnames: Weighted::new(SURNAMES.iter().map(|s| s.1)),
            ages: Weighted::new((16..=90).map(age_weight)),
            occupations: Weighted::new(OCCUPATIONS.iter().map(|o| o.1)),
            emails: Weighted::new(EMAIL_DOMAINS.iter().map(|d| d.1)),
            purchase_local: with_offline(&PURCHASE_MIX, PURCHASE_OFFLINE_LOCAL),
            purchase_away: with_offline(&PURCHASE_MIX, PURCHASE_OFFLINE_AWAY),
            acquisition_local: with_offline(&ACQUISITION_MIX, ACQUISITION_OFFLINE_LOCAL),
            acquisition_away: with_offline(&ACQUISITION_MIX, ACQUISITION_OFFLINE_AWAY),
            event_channels: Weighted::new(EVENT_MIX),
            event_types: Weighted::new(EVENT_WEIGHTS),
            event_types_deal: Weighted::new(EVENT_WEIGHTS_DEAL),
            hours_day: Weighted::new(HOURS_DAY),
            hours_night: Weighted::new(HOURS_NIGHT),
            quantity: Weighted::new(QUANTITY_WEIGHTS),
            favourite: [favourite_for(0), favourite_for(1), favourite_for(2)],
            favourite_baby: Weighted::new(
                CATEGORIES.iter().map(|c| if c.group == Group::Baby { c.weight } else { 0.0 }),
            ),
            products,
            product_pick,
            category_products,
            tag_names,
            generic_pick: Weighted::new(zipf_weights(GENERIC_TAGS, GENERIC_TAG_ZIPF.0, GENERIC_TAG_ZIPF.1)),
            purchase_rate: Gamma::new(PURCHASE_RATE_SHAPE, PURCHASE_RATE_SCALE).map_err(internal("purchase rate"))?,
            event_rate: Gamma::new(1.0, EVENT_RATE_SCALE).map_err(internal("event rate"))?,
            generic_rate: Gamma::new(2.0, GENERIC_TAGS_MEAN / 2.0).map_err(internal("tag rate"))?,
            points,
            phone_key: stream_seed(seed, STREAM_PHONES, 0),
        })
    }

    /// The product catalogue, its popularity and the per-category popularity.
    #[allow(clippy::type_complexity)]
    fn catalogue(seed: u64) -> (Vec<Product>, Weighted, Vec<(Vec<u32>, Weighted)>) {
        let mut rng = StdRng::seed_from_u64(stream_seed(seed, STREAM_PRODUCTS, 0));
        let category_pick = Weighted::new(CATEGORIES.iter().map(|c| c.weight));
        let brand_pick = Weighted::new(zipf_weights(BRANDS_PER_CATEGORY, 1.0, 1.0));
        let brand_count = BRAND_HEADS.len() * BRAND_TAILS.len();
        let mut products = Vec::with_capacity(PRODUCT_COUNT);
        for i in 0..PRODUCT_COUNT {
            let category = category_pick.sample(&mut rng);
            let brand = if rng.random_bool(0.85) {
                (category * BRANDS_PER_CATEGORY + brand_pick.sample(&mut rng)) % brand_count
            } else {
                rng.random_range(0..brand_count)
            };
            let c = &CATEGORIES[category];
            let noun = c.nouns[rng.random_range(0..c.nouns.len())];
            let adjective = PRODUCT_ADJECTIVES[rng.random_range(0..PRODUCT_ADJECTIVES.len())];
            let letter = char::from(b'A' + rng.random_range(0..26u8));
            let model_no = rng.random_range(1..100u32);
            let z: f64 = rng.sample(StandardNormal);
            let price = round_cents((c.median_price.ln() + PRICE_SIGMA * z).exp().clamp(PRICE_RANGE.0, PRICE_RANGE.1));
            products.push(Product {
                id: format!("p{:05}", i + 1),
                name: format!("{} {adjective} {noun} {letter}{model_no}", brand_name(brand)),
                category,
                brand,
                price,
            });
        }
        // Popularity: a random permutation of Zipf ranks.
        let mut rank: Vec<usize> = (0..PRODUCT_COUNT).collect();
        for i in (1..rank.len()).rev() {
            let j = rng.random_range(0..=i);
            rank.swap(i, j);
        }
        let weight = |p: usize| 1.0 / (rank[p] as f64 + PRODUCT_ZIPF.0).powf(PRODUCT_ZIPF.1);
        let product_pick = Weighted::new((0..PRODUCT_COUNT).map(weight));
        let category_products = (0..CATEGORIES.len())
            .map(|c| {
                let ids: Vec<u32> =
                    (0..PRODUCT_COUNT).filter(|&p| products[p].category == c).map(|p| p as u32).collect();
                let pick = Weighted::new(ids.iter().map(|&p| weight(p as usize)));
                (ids, pick)
            })
            .collect();
        (products, product_pick, category_products)
    }

    /// Resolves a channel-mix outcome: a digital channel, or "offline" → a store of the user's
    /// city (or any store when the city has none).
    pub(super) fn resolve_channel<R: Rng + ?Sized>(&self, rng: &mut R, outcome: usize, city: &City) -> usize {
        if outcome < DIGITAL_CHANNELS {
            outcome
        } else if city.stores.is_empty() {
            rng.random_range(DIGITAL_CHANNELS..CHANNELS.len())
        } else {
            city.stores[rng.random_range(0..city.stores.len())]
        }
    }
}

fn brand_name(brand: usize) -> String {
    let tails = BRAND_TAILS.len();
    let head = BRAND_HEADS[(brand / tails) % BRAND_HEADS.len()];
    format!("{head}{}", BRAND_TAILS[brand % tails])
}
