//! The deterministic synthetic data generator behind `persona gen`: users, products, channels,
//! purchases, events and user tags, generated in fixed-size chunks with bounded memory and written
//! as Parquet or CSV files that are byte-identical for the same user count and seed.

mod batches;
mod distributions;
mod files;
mod vocabulary;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use arrow::record_batch::RecordBatch;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma, LogNormal, Poisson, StandardNormal};

use crate::error::{Error, IoContext, Result};
use crate::tables::Table;
use batches::{Chunk, ChunkBuilders, PurchaseRow, UserRow, channels_batch, products_batch, schema};
use distributions::{
    ACQUISITION_MIX, ACQUISITION_OFFLINE_AWAY, ACQUISITION_OFFLINE_LOCAL, CITY_ZIPF, EVENT_MIX, EVENT_WEIGHTS,
    EVENT_WEIGHTS_DEAL, GENERIC_TAG_ZIPF, HOURS_DAY, HOURS_NIGHT, PRICE_RANGE, PRICE_SIGMA, PRODUCT_COUNT,
    PRODUCT_ZIPF, PURCHASE_MIX, PURCHASE_OFFLINE_AWAY, PURCHASE_OFFLINE_LOCAL, QUANTITY_WEIGHTS, TAG_ABC_SHARES,
    TIER_POINTS, TIER_SPEND_FACTOR, Weighted, age_weight, children_probability, mix64, zipf_weights,
};
use files::{ROW_GROUP_ROWS, TableFileWriter, TableStats};
use vocabulary::{
    BRAND_HEADS, BRAND_TAILS, BRANDS_PER_CATEGORY, CATEGORIES, CH_APP, CH_WECHAT, CHANNELS, CITIES, Category,
    DIGITAL_CHANNELS, EMAIL_DOMAINS, EV_CART, EV_COUPON, EV_SHARE, EVENT_TYPES, GENDERS, GENERIC_TAGS, GIVEN_F,
    GIVEN_M, GIVEN_N, Group, OCC_RETIRED, OCC_STUDENT, OCCUPATIONS, PHONE_PREFIXES, PRODUCT_ADJECTIVES, SEMANTIC_TAGS,
    SURNAMES, TIERS, TOP_CITIES,
};

/// The instant "now" of generated data: 2026-11-01 00:00:00 UTC, in microseconds since the epoch.
pub const GEN_NOW_MICROS: i64 = 1_793_491_200_000_000;

/// Output format of the generated files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GenFormat {
    /// Snappy-compressed Parquet, row groups of 262,144 rows.
    Parquet,
    /// CSV with a header row.
    Csv,
}

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Number of users; facts scale with it (≈ 5 purchases, 10 events and 6 tags per user).
    pub users: u64,
    /// Seed: the same users and seed give byte-identical files.
    pub seed: u64,
    /// Output directory; one folder per table is created in it.
    pub out: PathBuf,
    /// File format.
    pub format: GenFormat,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSummary {
    /// Rows per table, in the order users, products, channels, purchases, events, user_tags.
    pub rows: Vec<(&'static str, u64)>,
    /// Number of files written.
    pub files: usize,
    /// Total size of the files written, in bytes.
    pub bytes: u64,
}

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// Day number (since 1970-01-01) of "now", 2026-11-01.
const NOW_DAY: i32 = (GEN_NOW_MICROS / MICROS_PER_DAY) as i32;
/// Day number of 2015-01-01, the first possible signup date.
const SIGNUP_FIRST_DAY: i32 = 16_436;
/// Purchases go back two years, events one year.
const PURCHASE_HISTORY_DAYS: i32 = 730;
const EVENT_HISTORY_DAYS: i32 = 365;

/// Users per generation chunk; each chunk has its own RNG stream, so output does not depend on
/// how chunks are scheduled.
const CHUNK_USERS: u64 = 65_536;
/// Chunks generated concurrently (output is identical for any value).
const GENERATOR_THREADS: u64 = 2;
const USERS_PER_FILE: usize = 1_000_000;
/// Fact files hold at most 16 row groups.
const FACT_ROWS_PER_FILE: usize = 16 * ROW_GROUP_ROWS;

/// Caps that keep a single user's facts bounded.
const MAX_PURCHASES_PER_USER: u32 = 400;
const MAX_EVENTS_PER_USER: u32 = 1_000;

/// Purchase rate: Gamma(shape, scale) × tier factor → Poisson; mean ≈ 5, ≈ 30 % of users buy nothing.
const PURCHASE_RATE_SHAPE: f64 = 0.5;
const PURCHASE_RATE_SCALE: f64 = 9.6;
/// Event rate: base + share of the purchase rate + Gamma(1, scale); churned users × factor.
const EVENT_RATE_BASE: f64 = 3.5;
const EVENT_RATE_PER_PURCHASE: f64 = 0.7;
const EVENT_RATE_SCALE: f64 = 4.5;
const CHURNED_EVENT_FACTOR: f64 = 0.3;
/// Generic interest tags per user: Poisson with a Gamma(2, mean / 2) rate.
const GENERIC_TAGS_MEAN: f64 = 2.4;
/// Lifetime spend (CNY, last two years) from which a user is tagged `high_value` (≈ top 5 %).
const HIGH_VALUE_SPEND: f64 = 17_000.0;
/// Unit price (CNY) from which a purchase makes its buyer a `luxury_buyer`.
const LUXURY_PRICE: f64 = 3_000.0;

/// RNG stream identifiers.
const STREAM_USERS: u64 = 1;
const STREAM_PRODUCTS: u64 = 2;
const STREAM_PHONES: u64 = 3;
const STREAM_CITIES: u64 = 4;

/// Generates the synthetic data set described in `docs/generator.md` into `opts.out`.
///
/// `progress(users_done)` is called from time to time (at least every 64k users); it must be cheap.
pub fn generate(opts: &GenOptions, progress: &(dyn Fn(u64) + Sync)) -> Result<GenSummary> {
    generate_with(opts, progress, LAYOUT)
}

/// Chunk and file sizes; fixed in production, small in tests to exercise chunking and rotation.
#[derive(Debug, Clone, Copy)]
struct Layout {
    chunk_users: u64,
    users_per_file: usize,
    fact_rows_per_file: usize,
}

const LAYOUT: Layout =
    Layout { chunk_users: CHUNK_USERS, users_per_file: USERS_PER_FILE, fact_rows_per_file: FACT_ROWS_PER_FILE };

fn generate_with(opts: &GenOptions, progress: &(dyn Fn(u64) + Sync), layout: Layout) -> Result<GenSummary> {
    prepare_out_dir(&opts.out)?;
    let model = Model::new(opts.seed)?;

    let mut products = TableFileWriter::new(Table::Products, &opts.out, opts.format, USERS_PER_FILE);
    products.write(&products_batch(&model.products)?)?;
    let products = products.finish()?;
    let mut channels = TableFileWriter::new(Table::Channels, &opts.out, opts.format, USERS_PER_FILE);
    channels.write(&channels_batch()?)?;
    let channels = channels.finish()?;

    progress(0);
    let [users, purchases, events, tags] = run_pipeline(&model, opts, progress, layout)?;

    let all = [users, products, channels, purchases, events, tags];
    Ok(GenSummary {
        rows: Table::ALL.iter().zip(&all).map(|(t, s)| (t.name(), s.rows)).collect(),
        files: all.iter().map(|s| s.files).sum(),
        bytes: all.iter().map(|s| s.bytes).sum(),
    })
}

/// Refuses an output directory that already holds generated data; creates the table folders.
fn prepare_out_dir(out: &Path) -> Result<()> {
    if out.exists() {
        if !out.is_dir() {
            return Err(Error::Usage(format!(
                "{} exists and is not a directory; remove it or choose another --out",
                out.display()
            )));
        }
        for table in Table::ALL {
            let dir = out.join(table.name());
            if !dir.exists() {
                continue;
            }
            let non_empty = !dir.is_dir() || std::fs::read_dir(&dir).io_context("read", &dir)?.next().is_some();
            if non_empty {
                return Err(Error::Usage(format!(
                    "{} already contains generated data ({table}/); remove it or choose another --out",
                    out.display()
                )));
            }
        }
    }
    for table in Table::ALL {
        let dir = out.join(table.name());
        std::fs::create_dir_all(&dir).io_context("create directory", &dir)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// Seed of one RNG stream: a fixed SplitMix64 mixing of (seed, stream, index).
fn stream_seed(seed: u64, stream: u64, index: u64) -> u64 {
    mix64(mix64(seed ^ mix64(stream)) ^ index)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

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

fn round_cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Poisson draw; 0 for a non-positive or non-finite rate.
fn poisson<R: Rng + ?Sized>(rng: &mut R, lambda: f64, cap: u32) -> u32 {
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
fn recent_day<R: Rng + ?Sized>(rng: &mut R, start: i32, end: i32) -> i32 {
    let span = (end - start).max(1);
    let off = (rng.random::<f64>().sqrt() * f64::from(span)) as i32;
    start + off.min(span - 1)
}

/// A whole-second timestamp on `day`, the hour drawn from an activity profile.
fn time_on<R: Rng + ?Sized>(rng: &mut R, day: i32, hours: &Weighted) -> (i64, u8) {
    let hour = hours.sample(rng) as i64;
    let secs = hour * 3600 + rng.random_range(0..3600i64);
    (i64::from(day) * MICROS_PER_DAY + secs * MICROS_PER_SECOND, hour as u8)
}

// ---------------------------------------------------------------------------------------------
// The model: vocabularies, catalogue and distributions; depends only on the seed
// ---------------------------------------------------------------------------------------------

struct City {
    name: &'static str,
    province: &'static str,
    /// Indices into `CHANNELS` of the stores in this city.
    stores: Vec<usize>,
}

/// A product of the catalogue.
struct Product {
    id: String,
    name: String,
    /// Index into `CATEGORIES`.
    category: usize,
    brand: usize,
    price: f64,
}

impl Product {
    fn category(&self) -> &'static Category {
        &CATEGORIES[self.category]
    }

    fn brand_name(&self) -> String {
        brand_name(self.brand)
    }
}

struct Model {
    seed: u64,
    /// Cities in popularity-rank order.
    cities: Vec<City>,
    city_pick: Weighted,
    surnames: Weighted,
    /// Index = age − 16.
    ages: Weighted,
    occupations: Weighted,
    emails: Weighted,
    /// Digital channels + one "offline" outcome (index `DIGITAL_CHANNELS`).
    purchase_local: Weighted,
    purchase_away: Weighted,
    acquisition_local: Weighted,
    acquisition_away: Weighted,
    event_channels: Weighted,
    event_types: Weighted,
    event_types_deal: Weighted,
    hours_day: Weighted,
    hours_night: Weighted,
    quantity: Weighted,
    /// Favourite category by gender (F, M, U), and for young parents.
    favourite: [Weighted; 3],
    favourite_baby: Weighted,
    products: Vec<Product>,
    product_pick: Weighted,
    /// Per category: its products and their popularity.
    category_products: Vec<(Vec<u32>, Weighted)>,
    tag_names: Vec<String>,
    generic_pick: Weighted,
    purchase_rate: Gamma<f64>,
    event_rate: Gamma<f64>,
    generic_rate: Gamma<f64>,
    points: Vec<LogNormal<f64>>,
    /// Key of the phone-number permutation.
    phone_key: u64,
}

fn internal(what: &str) -> impl Fn(rand_distr::GammaError) -> Error + '_ {
    move |e| Error::Internal(format!("bad {what} distribution: {e}"))
}

impl Model {
    fn new(seed: u64) -> Result<Model> {
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
    fn resolve_channel<R: Rng + ?Sized>(&self, rng: &mut R, outcome: usize, city: &City) -> usize {
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

// ---------------------------------------------------------------------------------------------
// Per-user generation
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
/// A purchase drawn for a user, before the user's purchases are sorted by time.
struct PurchaseDraw {
    ts: i64,
    product: u32,
    channel: u8,
    quantity: u8,
    hour: u8,
}

#[derive(Clone, Copy)]
/// An event drawn for a user, before the user's events are sorted by time.
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

impl Model {
    fn gen_chunk(&self, chunk: u64, first: u64, end: u64) -> Result<Chunk> {
        let mut rng = StdRng::seed_from_u64(stream_seed(self.seed, STREAM_USERS, chunk));
        let n = usize::try_from(end.saturating_sub(first)).unwrap_or(0);
        let mut b = ChunkBuilders::new(n);
        let mut scratch = Scratch::default();
        for i in first..end {
            self.gen_user(&mut rng, i, &mut b, &mut scratch);
        }
        b.finish()
    }

    fn gen_user(&self, rng: &mut StdRng, index: u64, b: &mut ChunkBuilders, s: &mut Scratch) {
        s.user_id.clear();
        let _ = write!(s.user_id, "u{index}");
        let profile = self.gen_profile(rng, index, b, s);
        let mut behaviour = Behaviour::default();
        self.gen_purchases(rng, &profile, b, s, &mut behaviour);
        self.gen_events(rng, &profile, b, s, &mut behaviour);
        self.gen_tags(rng, &profile, &behaviour, b, s);
    }

    /// Draws the user's attributes, appends the users row and returns the latent profile.
    fn gen_profile(&self, rng: &mut StdRng, index: u64, b: &mut ChunkBuilders, s: &mut Scratch) -> Profile {
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
        s.name.push_str(SURNAMES[self.surnames.sample(rng)].0);
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
        let age = 16 + self.ages.sample(rng) as u32;
        let birthday_this_year = days_from_civil(2026 - age as i32, 11, 1);
        let birth_day = birthday_this_year - rng.random_range(0..365);

        let city_idx = self.city_pick.sample(rng);
        let city = &self.cities[city_idx];

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
        let points = if tier == 0 && rng.random_bool(0.05) { 0.0 } else { self.points[tier].sample(rng) };
        let points = (points.round() as i64).clamp(0, 200_000);

        // Signup: 2015-01-01 .. 2026-10-31, recent more likely, not before the 14th birthday.
        let last_day = NOW_DAY - 1;
        let mut signup_day = recent_day(rng, SIGNUP_FIRST_DAY, NOW_DAY);
        let earliest = birth_day + 14 * 365 + 4;
        if signup_day < earliest {
            signup_day = rng.random_range(earliest.min(last_day)..=last_day);
        }

        // Phone: a prefix + a keyed permutation of the index (unique for < 10^8 users).
        s.phone.clear();
        s.phone.push_str(PHONE_PREFIXES[rng.random_range(0..PHONE_PREFIXES.len())]);
        let suffix = permute_below_1e8(index % 100_000_000, self.phone_key);
        let _ = write!(s.phone, "{suffix:08}");

        s.email.clear();
        let _ = write!(s.email, "{}@{}", s.user_id, EMAIL_DOMAINS[self.emails.sample(rng)].0);

        let local = !city.stores.is_empty();
        let acq_table = if local { &self.acquisition_local } else { &self.acquisition_away };
        let outcome = acq_table.sample(rng);
        let acquisition = self.resolve_channel(rng, outcome, city);

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
            self.occupations.sample(rng)
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
            let table = if local { &self.purchase_local } else { &self.purchase_away };
            let outcome = table.sample(rng);
            self.resolve_channel(rng, outcome, city)
        };
        let favourite_category = if has_children && (22..=42).contains(&age) && rng.random_bool(0.3) {
            self.favourite_baby.sample(rng)
        } else {
            self.favourite[gender].sample(rng)
        };
        let purchase_rate = self.purchase_rate.sample(rng) * TIER_SPEND_FACTOR[tier];

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

    fn gen_purchases(
        &self,
        rng: &mut StdRng,
        p: &Profile,
        b: &mut ChunkBuilders,
        s: &mut Scratch,
        beh: &mut Behaviour,
    ) {
        let count = poisson(rng, p.purchase_rate, MAX_PURCHASES_PER_USER);
        let start = p.signup_day.max(NOW_DAY - PURCHASE_HISTORY_DAYS);
        let end = p.churn_end.unwrap_or(NOW_DAY).max(start + 1);
        let hours = if p.night_owl { &self.hours_night } else { &self.hours_day };
        let city = &self.cities[p.city];
        let mix = if city.stores.is_empty() { &self.purchase_away } else { &self.purchase_local };
        s.purchases.clear();
        for _ in 0..count {
            let day = recent_day(rng, start, end);
            let (ts, hour) = time_on(rng, day, hours);
            let channel = if rng.random_bool(0.55) {
                p.preferred_channel
            } else {
                let outcome = mix.sample(rng);
                self.resolve_channel(rng, outcome, city)
            };
            let product = if rng.random_bool(0.35) {
                let (ids, pick) = &self.category_products[p.favourite_category];
                ids.get(pick.sample(rng)).copied().unwrap_or(0)
            } else {
                self.product_pick.sample(rng) as u32
            };
            let quantity = 1 + self.quantity.sample(rng) as u8;
            s.purchases.push(PurchaseDraw { ts, product, channel: channel as u8, quantity, hour });
        }
        s.purchases.sort_unstable_by_key(|r| (r.ts, r.product, r.channel, r.quantity));

        for r in &s.purchases {
            let product = &self.products[r.product as usize];
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

    fn gen_events(&self, rng: &mut StdRng, p: &Profile, b: &mut ChunkBuilders, s: &mut Scratch, beh: &mut Behaviour) {
        let mut rate =
            EVENT_RATE_BASE + EVENT_RATE_PER_PURCHASE * p.purchase_rate.min(100.0) + self.event_rate.sample(rng);
        if p.churn_end.is_some() {
            rate *= CHURNED_EVENT_FACTOR;
        }
        let count = poisson(rng, rate, MAX_EVENTS_PER_USER);
        let start = p.signup_day.max(NOW_DAY - EVENT_HISTORY_DAYS);
        let hours = if p.night_owl { &self.hours_night } else { &self.hours_day };
        let types = if p.deal_seeker { &self.event_types_deal } else { &self.event_types };
        let preferred =
            if p.preferred_channel < DIGITAL_CHANNELS { p.preferred_channel } else { self.event_channels.sample(rng) };
        s.events.clear();
        for _ in 0..count {
            let day = recent_day(rng, start, NOW_DAY);
            let (ts, hour) = time_on(rng, day, hours);
            let channel = if rng.random_bool(0.6) { preferred } else { self.event_channels.sample(rng) };
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
    fn gen_tags(&self, rng: &mut StdRng, p: &Profile, beh: &Behaviour, b: &mut ChunkBuilders, s: &mut Scratch) {
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
        let generic_rate = self.generic_rate.sample(rng);
        let generic = poisson(rng, generic_rate, 40) as usize;
        let (mut added, mut attempts) = (0, 0);
        while added < generic && attempts < generic * 4 {
            attempts += 1;
            let t = (SEMANTIC_TAGS.len() + self.generic_pick.sample(rng)) as u16;
            if !s.tags.iter().any(|(x, _)| *x == t) {
                let at = assigned(rng);
                s.tags.push((t, at));
                added += 1;
            }
        }
        s.tags.sort_unstable();
        for (t, at) in &s.tags {
            b.push_tag(&s.user_id, &self.tag_names[usize::from(*t)], *at);
        }
    }
}

/// Spawns a thread that writes every batch it receives to `files`.
fn spawn_writer<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    mut files: TableFileWriter,
) -> (SyncSender<RecordBatch>, std::thread::ScopedJoinHandle<'scope, Result<TableStats>>) {
    let (tx, rx): (SyncSender<RecordBatch>, Receiver<RecordBatch>) = sync_channel(1);
    let handle = scope.spawn(move || {
        for batch in rx {
            files.write(&batch)?;
        }
        files.finish()
    });
    (tx, handle)
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle.join().unwrap_or_else(|_| Err(Error::Internal("a generator thread panicked".into())))
}

/// Generates the per-user tables chunk by chunk on worker threads and writes them, in chunk
/// order, on one writer thread per table. Returns the stats of users, purchases, events, tags.
fn run_pipeline(
    model: &Model,
    opts: &GenOptions,
    progress: &(dyn Fn(u64) + Sync),
    layout: Layout,
) -> Result<[TableStats; 4]> {
    let users = opts.users;
    let chunk_users = layout.chunk_users.max(1);
    let chunks = users.div_ceil(chunk_users);
    let workers = GENERATOR_THREADS.min(chunks).max(1);
    let files = |table, max_rows| TableFileWriter::new(table, &opts.out, opts.format, max_rows);

    std::thread::scope(|scope| {
        let (users_tx, users_h) = spawn_writer(scope, files(Table::Users, layout.users_per_file));
        let (purchases_tx, purchases_h) = spawn_writer(scope, files(Table::Purchases, layout.fact_rows_per_file));
        let (events_tx, events_h) = spawn_writer(scope, files(Table::Events, layout.fact_rows_per_file));
        let (tags_tx, tags_h) = spawn_writer(scope, files(Table::UserTags, layout.fact_rows_per_file));

        let mut generators = Vec::new();
        let mut chunk_rxs = Vec::new();
        for w in 0..workers {
            let (tx, rx) = sync_channel::<Result<Chunk>>(1);
            chunk_rxs.push(rx);
            generators.push(scope.spawn(move || {
                let mut k = w;
                while k < chunks {
                    let first = k.saturating_mul(chunk_users);
                    let end = first.saturating_add(chunk_users).min(users);
                    let chunk = model.gen_chunk(k, first, end);
                    let failed = chunk.is_err();
                    if tx.send(chunk).is_err() || failed {
                        break;
                    }
                    k += workers;
                }
                Ok(())
            }));
        }

        let stopped = || Error::Internal("a writer thread stopped early".into());
        let routed = (|| -> Result<()> {
            let mut next_order = 1u64;
            for k in 0..chunks {
                let rx = &chunk_rxs[(k % workers) as usize];
                let chunk = rx.recv().map_err(|_| Error::Internal("a generator thread stopped early".into()))??;
                let purchases = chunk.purchases.number(&mut next_order)?;
                users_tx.send(chunk.users).map_err(|_| stopped())?;
                purchases_tx.send(purchases).map_err(|_| stopped())?;
                events_tx.send(chunk.events).map_err(|_| stopped())?;
                tags_tx.send(chunk.tags).map_err(|_| stopped())?;
                progress((k + 1).saturating_mul(chunk_users).min(users));
            }
            Ok(())
        })();
        drop((users_tx, purchases_tx, events_tx, tags_tx));
        drop(chunk_rxs);

        // A writer's own error explains a routing failure better than "stopped early".
        let written = [join(users_h), join(purchases_h), join(events_h), join(tags_h)];
        let generated: Vec<Result<()>> = generators.into_iter().map(join).collect();
        let mut stats = [TableStats::default(); 4];
        for (slot, result) in stats.iter_mut().zip(written) {
            *slot = result?;
        }
        routed?;
        for g in generated {
            g?;
        }
        Ok(stats)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Float64Type, Int32Type, Int64Type, SchemaRef, TimestampMicrosecondType};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use rustc_hash::{FxHashMap, FxHashSet};
    use std::fs::File;

    fn options(dir: &Path, users: u64, seed: u64, format: GenFormat) -> GenOptions {
        GenOptions { users, seed, out: dir.to_path_buf(), format }
    }

    fn files_of(dir: &Path, table: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(dir.join(table)).expect("table folder").map(|e| e.expect("entry").path()).collect();
        files.sort();
        files
    }

    fn read_parquet(dir: &Path, table: &str) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        for path in files_of(dir, table) {
            let file = File::open(&path).expect("open");
            let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").build().expect("reader");
            for batch in reader {
                out.push(batch.expect("batch"));
            }
        }
        out
    }

    fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
        let mut out = Vec::new();
        for b in batches {
            let col = b.column_by_name(column).expect("column");
            out.extend(col.as_string::<i32>().iter().map(|v| v.unwrap_or("").to_string()));
        }
        out
    }

    fn no_progress(_: u64) {}

    /// One 20k-user parquet data set shared by the statistical tests.
    fn sample() -> &'static (tempfile::TempDir, GenSummary) {
        static SAMPLE: std::sync::OnceLock<(tempfile::TempDir, GenSummary)> = std::sync::OnceLock::new();
        SAMPLE.get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let summary = generate(&options(dir.path(), 20_000, 42, GenFormat::Parquet), &no_progress).expect("gen");
            (dir, summary)
        })
    }

    #[test]
    fn now_is_2026_11_01_utc() {
        let now = chrono::NaiveDate::from_ymd_opt(2026, 11, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp_micros());
        assert_eq!(now, Some(GEN_NOW_MICROS));
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("date");
        for (y, m, d) in [(2015, 1, 1), (2026, 11, 1), (1936, 11, 1), (2000, 2, 29), (1969, 12, 31)] {
            let date = chrono::NaiveDate::from_ymd_opt(y, m, d).expect("date");
            assert_eq!(i64::from(days_from_civil(y, m, d)), (date - epoch).num_days(), "{y}-{m}-{d}");
        }
        assert_eq!(SIGNUP_FIRST_DAY, days_from_civil(2015, 1, 1));
    }

    #[test]
    fn phone_permutation_is_injective() {
        let mut seen = FxHashSet::default();
        for x in 0..1_000_000 {
            let y = permute_below_1e8(x, 0xDEAD_BEEF);
            assert!(y < 100_000_000);
            assert!(seen.insert(y), "{x} collides");
        }
    }

    #[test]
    fn same_seed_gives_identical_bytes_and_other_seed_differs() {
        let small = Layout { chunk_users: 700, users_per_file: 1_000, fact_rows_per_file: 4_000 };
        let run = |seed: u64| {
            let dir = tempfile::tempdir().expect("tempdir");
            let summary =
                generate_with(&options(dir.path(), 3_000, seed, GenFormat::Parquet), &no_progress, small).expect("gen");
            (dir, summary)
        };
        let (a, sa) = run(9);
        let (b, sb) = run(9);
        let (c, _) = run(10);
        assert_eq!(sa, sb);
        assert!(sa.files > Table::ALL.len(), "files rotate: {sa:?}");
        let mut differs = false;
        for table in Table::ALL.map(Table::name) {
            let fa = files_of(a.path(), table);
            let fb = files_of(b.path(), table);
            assert_eq!(fa.len(), fb.len());
            for (x, y) in fa.iter().zip(&fb) {
                assert_eq!(x.file_name(), y.file_name());
                assert!(std::fs::read(x).expect("read") == std::fs::read(y).expect("read"), "{} differs", x.display());
            }
            let fc = files_of(c.path(), table);
            if let (Some(x), Some(y)) = (fa.first(), fc.first()) {
                differs |= std::fs::read(x).expect("read") != std::fs::read(y).expect("read");
            }
        }
        assert!(differs, "another seed gives other data");
        // Rotation respects the limits, and the users files hold all users in order.
        let users = read_parquet(a.path(), "users");
        assert_eq!(files_of(a.path(), "users").len(), 3);
        let ids = strings(&users, "user_id");
        assert_eq!(ids.len(), 3_000);
        assert!(ids.iter().enumerate().all(|(i, id)| *id == format!("u{i}")));
        for table in ["purchases", "events", "user_tags"] {
            for path in files_of(a.path(), table) {
                let file = File::open(&path).expect("open");
                let rows = ParquetRecordBatchReaderBuilder::try_new(file)
                    .expect("parquet")
                    .metadata()
                    .file_metadata()
                    .num_rows();
                assert!(rows <= 4_000, "{} has {rows} rows", path.display());
            }
        }
        // Order ids are sequential across chunks and files.
        let orders = strings(&read_parquet(a.path(), "purchases"), "order_id");
        assert!(orders.iter().enumerate().all(|(i, o)| *o == format!("o{}", i + 1)));
    }

    #[test]
    fn a_smaller_run_is_a_prefix_of_a_larger_one() {
        let small = Layout { chunk_users: 300, users_per_file: USERS_PER_FILE, fact_rows_per_file: FACT_ROWS_PER_FILE };
        let run = |users: u64| {
            let dir = tempfile::tempdir().expect("tempdir");
            generate_with(&options(dir.path(), users, 5, GenFormat::Parquet), &no_progress, small).expect("gen");
            dir
        };
        let (a, b) = (run(1_000), run(1_450));
        for table in ["users", "purchases", "events", "user_tags"] {
            let x = arrow::compute::concat_batches(&schema_of(table), &read_parquet(a.path(), table)).expect("concat");
            let y = arrow::compute::concat_batches(&schema_of(table), &read_parquet(b.path(), table)).expect("concat");
            assert!(x.num_rows() > 0 && x.num_rows() < y.num_rows(), "{table}");
            assert_eq!(x, y.slice(0, x.num_rows()), "{table}");
        }
    }

    fn schema_of(table: &str) -> SchemaRef {
        match table {
            "users" => schema(Table::Users),
            "purchases" => schema(Table::Purchases),
            "events" => schema(Table::Events),
            _ => schema(Table::UserTags),
        }
    }

    #[test]
    fn summary_counts_match_files() {
        let (dir, summary) = sample();
        let names: Vec<&str> = summary.rows.iter().map(|r| r.0).collect();
        assert_eq!(names, Table::ALL.map(Table::name));
        for (table, rows) in &summary.rows {
            let n: usize = read_parquet(dir.path(), table).iter().map(RecordBatch::num_rows).sum();
            assert_eq!(n as u64, *rows, "{table}");
        }
        assert_eq!(summary.rows[0].1, 20_000);
        assert_eq!(summary.rows[1].1, PRODUCT_COUNT as u64);
        assert_eq!(summary.rows[2].1, CHANNELS.len() as u64);
        assert_eq!(summary.files, 6);
        let bytes: u64 = Table::ALL
            .iter()
            .flat_map(|t| files_of(dir.path(), t.name()))
            .map(|p| std::fs::metadata(p).expect("stat").len())
            .sum();
        assert_eq!(bytes, summary.bytes);
        let users = read_parquet(dir.path(), "users");
        assert_eq!(users[0].schema(), schema(Table::Users));
        let file = File::open(&files_of(dir.path(), "events")[0]).expect("open");
        let meta = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").metadata().clone();
        assert!(meta.row_groups().iter().all(|rg| rg.num_rows() <= ROW_GROUP_ROWS as i64));
        assert!(!meta.row_groups().is_empty());
    }

    #[test]
    fn keys_are_unique_and_facts_reference_existing_rows() {
        let (dir, _) = sample();
        let user_ids = strings(&read_parquet(dir.path(), "users"), "user_id");
        let users: FxHashSet<&str> = user_ids.iter().map(String::as_str).collect();
        assert_eq!(users.len(), user_ids.len(), "user_id is unique");
        let emails = strings(&read_parquet(dir.path(), "users"), "email");
        assert_eq!(emails.iter().collect::<FxHashSet<_>>().len(), emails.len(), "email is unique");
        let phones = strings(&read_parquet(dir.path(), "users"), "phone");
        assert_eq!(phones.iter().collect::<FxHashSet<_>>().len(), phones.len(), "phone is unique");
        assert!(phones.iter().all(|p| p.len() == 11 && p.starts_with('1') && p.bytes().all(|b| b.is_ascii_digit())));

        let product_ids = strings(&read_parquet(dir.path(), "products"), "product_id");
        let products: FxHashSet<&str> = product_ids.iter().map(String::as_str).collect();
        assert_eq!(products.len(), PRODUCT_COUNT);
        let channel_ids = strings(&read_parquet(dir.path(), "channels"), "channel_id");
        let channels: FxHashSet<&str> = channel_ids.iter().map(String::as_str).collect();

        let purchases = read_parquet(dir.path(), "purchases");
        let orders = strings(&purchases, "order_id");
        assert_eq!(orders.iter().collect::<FxHashSet<_>>().len(), orders.len(), "order_id is unique");
        let buyers = strings(&purchases, "user_id");
        assert!(buyers.iter().all(|u| users.contains(u.as_str())));
        assert!(strings(&purchases, "product_id").iter().all(|p| products.contains(p.as_str())));
        assert!(strings(&purchases, "channel_id").iter().all(|c| channels.contains(c.as_str())));
        // Grouped by user: a user's purchases are adjacent.
        let mut seen = FxHashSet::default();
        for (i, u) in buyers.iter().enumerate() {
            if i == 0 || buyers[i - 1] != *u {
                assert!(seen.insert(u.as_str()), "{u} appears in two runs");
            }
        }
        for table in ["events", "user_tags"] {
            assert!(strings(&read_parquet(dir.path(), table), "user_id").iter().all(|u| users.contains(u.as_str())));
        }
        // Tags at most once per user.
        let tags = read_parquet(dir.path(), "user_tags");
        let pairs: Vec<(String, String)> = strings(&tags, "user_id").into_iter().zip(strings(&tags, "tag")).collect();
        assert_eq!(pairs.iter().collect::<FxHashSet<_>>().len(), pairs.len());
    }

    #[test]
    fn timestamps_and_dates_are_in_range() {
        let (dir, _) = sample();
        let check = |table: &str, column: &str, from: i64| {
            for b in read_parquet(dir.path(), table) {
                let ts = b.column_by_name(column).expect("column").as_primitive::<TimestampMicrosecondType>();
                assert_eq!(ts.null_count(), 0);
                for v in ts.values() {
                    assert!((from..GEN_NOW_MICROS).contains(v), "{table}.{column} = {v}");
                    assert_eq!(v % MICROS_PER_SECOND, 0);
                }
            }
        };
        check("purchases", "ts", GEN_NOW_MICROS - 730 * MICROS_PER_DAY);
        check("events", "ts", GEN_NOW_MICROS - 365 * MICROS_PER_DAY);
        check("user_tags", "assigned_at", i64::from(SIGNUP_FIRST_DAY) * MICROS_PER_DAY);
        for b in read_parquet(dir.path(), "users") {
            let birth = b.column_by_name("birth_date").expect("birth").as_primitive::<Date32Type>();
            let signup = b.column_by_name("signup_date").expect("signup").as_primitive::<Date32Type>();
            for (birth, signup) in birth.values().iter().zip(signup.values()) {
                let age_days = NOW_DAY - birth;
                assert!((16 * 365..=91 * 366).contains(&age_days), "age {age_days} days");
                assert!((SIGNUP_FIRST_DAY..NOW_DAY).contains(signup));
                assert!(signup > birth);
            }
        }
    }

    fn share(count: usize, of: usize) -> f64 {
        count as f64 / of.max(1) as f64
    }

    #[test]
    fn users_have_the_documented_distributions() {
        let (dir, _) = sample();
        let users = read_parquet(dir.path(), "users");
        let n = 20_000;
        let tiers = strings(&users, "tier");
        for (tier, expected) in TIERS {
            let got = share(tiers.iter().filter(|t| *t == tier).count(), n);
            assert!((got - expected).abs() < 0.015, "tier {tier}: {got}");
        }
        let genders = strings(&users, "gender");
        for (g, expected) in GENDERS {
            let got = share(genders.iter().filter(|x| *x == g).count(), n);
            assert!((got - expected).abs() < 0.015, "gender {g}: {got}");
        }
        let cities = strings(&users, "city");
        let top = share(cities.iter().filter(|c| *c == "Shanghai").count(), n);
        assert!((0.06..0.13).contains(&top), "Shanghai {top}");
        assert!(cities.iter().collect::<FxHashSet<_>>().len() > 200);
        let regions: FxHashSet<String> = strings(&users, "region").into_iter().collect();
        assert!(regions.len() >= 28 && regions.contains("Guangdong"));
        let mut occupation_nulls = 0;
        let mut income_nulls = 0;
        let mut points_max = 0;
        for b in &users {
            occupation_nulls += b.column_by_name("occupation").expect("occupation").null_count();
            let income = b.column_by_name("income_band").expect("income").as_primitive::<Int32Type>();
            income_nulls += income.null_count();
            assert!(income.iter().flatten().all(|v| (1..=10).contains(&v)));
            let points = b.column_by_name("points").expect("points").as_primitive::<Int64Type>();
            assert!(points.values().iter().all(|p| (0..=200_000).contains(p)));
            points_max = points_max.max(*points.values().iter().max().unwrap_or(&0));
        }
        assert!((0.005..0.02).contains(&share(occupation_nulls, n)), "occupation nulls {occupation_nulls}");
        assert!((0.005..0.02).contains(&share(income_nulls, n)), "income nulls {income_nulls}");
        assert!(points_max > 100_000);
        let names = strings(&users, "name");
        assert!(names.iter().all(|s| (2..=4).contains(&s.chars().count())));
    }

    #[test]
    fn facts_have_the_documented_volumes_and_skew() {
        let (dir, summary) = sample();
        let n = 20_000.0;
        let per_user = |i: usize| summary.rows[i].1 as f64 / n;
        let purchases = read_parquet(dir.path(), "purchases");
        let buyers: FxHashSet<String> = strings(&purchases, "user_id").into_iter().collect();
        let never = 1.0 - buyers.len() as f64 / n;
        assert!((4.3..5.7).contains(&per_user(3)), "purchases per user {}", per_user(3));
        assert!((0.25..0.35).contains(&never), "never buy {never}");
        assert!((8.5..11.5).contains(&per_user(4)), "events per user {}", per_user(4));
        assert!((5.3..6.7).contains(&per_user(5)), "tags per user {}", per_user(5));

        let channels = strings(&purchases, "channel_id");
        let wechat = share(channels.iter().filter(|c| *c == "wechat").count(), channels.len());
        assert!((0.25..0.45).contains(&wechat), "wechat share {wechat}");
        assert!(channels.iter().any(|c| c.starts_with("store_")));
        for b in &purchases {
            let q = b.column_by_name("quantity").expect("quantity").as_primitive::<Int32Type>();
            assert!(q.values().iter().all(|v| (1..=5).contains(v)));
            let a = b.column_by_name("amount").expect("amount").as_primitive::<Float64Type>();
            assert!(a.values().iter().all(|v| *v >= 5.0 && *v <= 25_000.0));
        }
        let events = read_parquet(dir.path(), "events");
        let types = strings(&events, "event_type");
        let mut counts: FxHashMap<&str, usize> = FxHashMap::default();
        for t in &types {
            *counts.entry(t.as_str()).or_default() += 1;
        }
        let view = counts.get("view").copied().unwrap_or(0);
        assert!(counts.iter().all(|(_, c)| *c <= view), "{counts:?}");
        assert_eq!(counts.len(), EVENT_TYPES.len());
    }

    #[test]
    fn tags_have_the_documented_frequencies() {
        let (dir, _) = sample();
        let tags = strings(&read_parquet(dir.path(), "user_tags"), "tag");
        let mut counts: FxHashMap<&str, usize> = FxHashMap::default();
        for t in &tags {
            *counts.entry(t.as_str()).or_default() += 1;
        }
        let n = 20_000;
        let freq = |t: &str| share(counts.get(t).copied().unwrap_or(0), n);
        for (tag, expected) in [("A", 0.31), ("B", 0.21), ("C", 0.14)] {
            assert!((freq(tag) - expected).abs() < 0.015, "{tag}: {}", freq(tag));
        }
        assert!(counts.len() >= 280 && counts.len() <= 300, "{} distinct tags", counts.len());
        for (tag, range) in [
            ("high_value", 0.02..0.09),
            ("night_owl", 0.03..0.12),
            ("deal_seeker", 0.04..0.20),
            ("churn_risk", 0.05..0.30),
            ("new_parent", 0.02..0.25),
            ("vip", 0.13..0.17),
        ] {
            assert!(range.contains(&freq(tag)), "{tag}: {}", freq(tag));
        }
        // A, B and C are independent draws: their overlap is ≈ the product of their shares.
        let tagged = read_parquet(dir.path(), "user_tags");
        let pairs: Vec<(String, String)> =
            strings(&tagged, "user_id").into_iter().zip(strings(&tagged, "tag")).collect();
        let with = |t: &str| pairs.iter().filter(|p| p.1 == t).map(|p| p.0.clone()).collect::<FxHashSet<_>>();
        let both = with("A").intersection(&with("B")).count();
        assert!((share(both, n) - 0.31 * 0.21).abs() < 0.012, "A∩B {both}");
    }

    #[test]
    fn csv_output_has_headers_and_parses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let summary = generate(&options(dir.path(), 500, 7, GenFormat::Csv), &no_progress).expect("gen");
        for (table, schema) in [
            ("users", schema(Table::Users)),
            ("products", schema(Table::Products)),
            ("channels", schema(Table::Channels)),
            ("purchases", schema(Table::Purchases)),
            ("events", schema(Table::Events)),
            ("user_tags", schema(Table::UserTags)),
        ] {
            let files = files_of(dir.path(), table);
            assert_eq!(files.len(), 1);
            assert_eq!(files[0].file_name().and_then(|f| f.to_str()), Some(format!("{table}-00000.csv").as_str()));
            let text = std::fs::read_to_string(&files[0]).expect("read");
            let header: Vec<&str> = text.lines().next().expect("header").split(',').collect();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(header, names, "{table}");
            let reader = arrow::csv::ReaderBuilder::new(schema)
                .with_header(true)
                .build(File::open(&files[0]).expect("open"))
                .expect("csv reader");
            let rows: usize = reader.map(|b| b.expect("parses").num_rows()).sum();
            let expected = summary.rows.iter().find(|r| r.0 == table).map(|r| r.1);
            assert_eq!(Some(rows as u64), expected, "{table}");
        }
        let events = std::fs::read_to_string(&files_of(dir.path(), "events")[0]).expect("read");
        let line = events.lines().nth(1).expect("a row");
        let ts = line.rsplit(',').next().expect("ts");
        assert_eq!(ts.len(), 19, "{ts}");
        assert!(chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S").is_ok(), "{ts}");
        let users = std::fs::read_to_string(&files_of(dir.path(), "users")[0]).expect("read");
        let row: Vec<&str> = users.lines().nth(1).expect("a row").split(',').collect();
        assert!(chrono::NaiveDate::parse_from_str(row[3], "%Y-%m-%d").is_ok(), "{}", row[3]);
        assert!(row[13] == "true" || row[13] == "false");
    }

    #[test]
    fn zero_users_gives_empty_but_valid_tables() {
        for format in [GenFormat::Parquet, GenFormat::Csv] {
            let dir = tempfile::tempdir().expect("tempdir");
            let summary = generate(&options(dir.path(), 0, 1, format), &no_progress).expect("gen");
            assert_eq!(summary.files, 6);
            let rows: Vec<u64> = summary.rows.iter().map(|r| r.1).collect();
            assert_eq!(rows, vec![0, PRODUCT_COUNT as u64, CHANNELS.len() as u64, 0, 0, 0]);
            if format == GenFormat::Parquet {
                let users = files_of(dir.path(), "users");
                let file = File::open(&users[0]).expect("open");
                let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("valid parquet");
                assert_eq!(builder.schema().as_ref(), schema(Table::Users).as_ref());
            } else {
                let text = std::fs::read_to_string(&files_of(dir.path(), "events")[0]).expect("read");
                assert_eq!(text, "user_id,channel_id,event_type,ts\n");
            }
        }
    }

    #[test]
    fn refuses_an_output_directory_with_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("README.md"), "keep me").expect("write");
        std::fs::create_dir(dir.path().join("users")).expect("mkdir");
        let opts = options(dir.path(), 10, 1, GenFormat::Parquet);
        generate(&opts, &no_progress).expect("an empty table folder and other files are fine");
        let err = generate(&opts, &no_progress).expect_err("second run must refuse");
        assert!(matches!(err, Error::Usage(_)), "{err}");
        assert!(err.to_string().contains("remove it or choose another --out"), "{err}");
        let file = dir.path().join("README.md");
        let err = generate(&options(&file, 10, 1, GenFormat::Parquet), &no_progress).expect_err("a file");
        assert!(matches!(err, Error::Usage(_)), "{err}");
    }

    #[test]
    fn progress_is_reported_up_to_the_user_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let last = std::sync::atomic::AtomicU64::new(u64::MAX);
        let calls = std::sync::atomic::AtomicU64::new(0);
        let small = Layout { chunk_users: 100, users_per_file: USERS_PER_FILE, fact_rows_per_file: FACT_ROWS_PER_FILE };
        let progress = |done: u64| {
            last.store(done, std::sync::atomic::Ordering::Relaxed);
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        generate_with(&options(dir.path(), 250, 3, GenFormat::Parquet), &progress, small).expect("gen");
        assert_eq!(last.into_inner(), 250);
        assert_eq!(calls.into_inner(), 4);
    }
}
