//! Response-propensity models: `CREATE MODEL m AS LOGISTIC REGRESSION PREDICT <users labelled 1>
//! FROM <features>` trains a logistic regression on the users of the feature query (label 1 for
//! those the PREDICT query yields, 0 for the others), keeps it in the catalog, and `predict('m')`
//! scores every user of the feature query as it reads now.
//!
//! How it trains (deterministic for a seed):
//! - Every raw feature column becomes one SQL expression ([`ModelColumn::expression`]): numbers
//!   and decimals as `DOUBLE`, booleans 0/1, dates and timestamps as days since 1970, text as
//!   text. Training and prediction read the same expressions, so they encode alike.
//! - The users are split by a seeded hash of `user_id` into training and holdout parts; at most
//!   [`SAMPLE_ROWS`] rows (those with the smallest second hash) are kept, so memory is bounded at
//!   any store size.
//! - Numeric columns are standardised (training mean and standard deviation; a NULL counts as the
//!   mean); a text column gets one indicator per level except its most frequent (the reference),
//!   at most [`MAX_LEVELS`] levels.
//! - Newton's method (iteratively reweighted least squares) with an L2 penalty of
//!   [`RIDGE`] on the standardised coefficients (the intercept is not penalised), solved by a
//!   Cholesky factorisation, until no coefficient moves by more than 1e-8.
//! - The area under the ROC curve (ties count one half) is reported on the training and holdout
//!   parts.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::{Result as DfResult, plan_err};
use datafusion::logical_expr::Expr;
use futures::StreamExt;

use crate::audience::sql_view::SqlView;
use crate::audience::statement::{FeatureItem, ModelFeatures};
use crate::error::{Error, Result};
use crate::query::QuerySession;
use crate::query::sql_text::{quoted_identifier, string_literal};
use crate::store::catalog::{Catalog, EvaluatedNow, Model, ModelColumn, ModelMetrics, ModelTerm, no_such_model};
use crate::store::manifest::now_rfc3339;

/// Rows kept for training and holdout together, whatever the number of users.
pub const SAMPLE_ROWS: usize = 400_000;
/// Most levels a text feature may have.
pub const MAX_LEVELS: usize = 64;
/// The L2 penalty on standardised coefficients.
pub const RIDGE: f64 = 1.0;
const MAX_ITERATIONS: u32 = 50;

/// What `CREATE MODEL` says besides the name.
pub struct ModelDefinition {
    pub label: String,
    pub features: ModelFeatures,
    pub holdout_basis_points: u32,
    pub seed: u64,
}

/// The feature query of a feature list: one row per user.
pub fn list_query(items: &[FeatureItem]) -> String {
    let mut select = vec!["u.user_id".to_string()];
    let mut joins = String::new();
    let mut tag_joins = 0usize;
    for item in items {
        match item {
            FeatureItem::Column(c) => select.push(format!("u.{}", quoted_identifier(c))),
            FeatureItem::Tags(tags) => {
                for tag in tags {
                    let alias = format!("t{tag_joins}");
                    tag_joins += 1;
                    let _ = write!(
                        joins,
                        " LEFT JOIN (SELECT DISTINCT user_id FROM user_tags WHERE tag = {}) {alias} ON {alias}.user_id = u.user_id",
                        string_literal(tag)
                    );
                    select.push(format!("{alias}.user_id IS NOT NULL AS {}", quoted_identifier(&format!("tag {tag}"))));
                }
            }
            FeatureItem::Rfm => {
                joins.push_str(" LEFT JOIN rfm r ON r.user_id = u.user_id");
                select.push("r.user_id IS NOT NULL AS \"rfm buyer\"".into());
                select.push("r.recency_days AS \"rfm recency_days\"".into());
                select.push("coalesce(r.frequency, 0) AS \"rfm frequency\"".into());
                select.push("coalesce(r.monetary, 0) AS \"rfm monetary\"".into());
            }
        }
    }
    format!("SELECT {} FROM users u{joins}", select.join(", "))
}

/// How a column of the feature query's type becomes a number or a text level; `None` when it can
/// be neither.
fn encoding_of(name: &str, data_type: &DataType) -> Option<ModelColumn> {
    let column = quoted_identifier(name);
    let (encoding, expression) = match data_type {
        t if t.is_numeric() => ("numeric", format!("CAST({column} AS DOUBLE)")),
        DataType::Boolean => ("numeric", format!("CASE WHEN {column} THEN 1.0 WHEN NOT {column} THEN 0.0 END")),
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => {
            ("numeric", format!("CAST(date_part('epoch', {column}) AS DOUBLE) / 86400.0"))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ("text", format!("CAST({column} AS VARCHAR)")),
        DataType::Dictionary(_, value)
            if matches!(**value, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) =>
        {
            ("text", format!("CAST({column} AS VARCHAR)"))
        }
        _ => return None,
    };
    Some(ModelColumn { name: name.to_string(), encoding: encoding.into(), expression })
}

/// The feature query with its columns encoded: `user_id`, then `f0`, `f1`, ...
fn encoded_query(feature_query: &str, columns: &[ModelColumn]) -> String {
    let mut select = vec!["CAST(user_id AS VARCHAR) AS user_id".to_string()];
    for (i, c) in columns.iter().enumerate() {
        select.push(format!("{} AS f{i}", c.expression));
    }
    format!("SELECT {} FROM ({feature_query}) AS __features", select.join(", "))
}

/// A seeded 64-bit hash of a user id (FNV-1a, then a SplitMix64 finaliser).
fn user_hash(seed: u64, user_id: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in user_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Sampled rows: per row its sampling hash, holdout flag and label, then its values (numeric
/// columns as `f64`, NaN for NULL; text columns as level codes, `u32::MAX` for NULL).
#[derive(Default)]
struct Sample {
    width: usize,
    keys: Vec<u64>,
    holdout: Vec<bool>,
    labels: Vec<bool>,
    values: Vec<f64>,
}

impl Sample {
    /// Keeps the [`SAMPLE_ROWS`] rows with the smallest keys once twice as many are held.
    fn bound(&mut self) {
        if self.keys.len() >= 2 * SAMPLE_ROWS {
            self.cut();
        }
    }

    /// Keeps the [`SAMPLE_ROWS`] rows with the smallest keys (and any tied with the last).
    fn cut(&mut self) {
        if self.keys.len() <= SAMPLE_ROWS {
            return;
        }
        let mut keys = self.keys.clone();
        let (_, nth, _) = keys.select_nth_unstable(SAMPLE_ROWS - 1);
        let cut = *nth;
        let (mut out, w) = (0usize, self.width);
        for i in 0..self.keys.len() {
            if self.keys[i] <= cut {
                self.keys[out] = self.keys[i];
                self.holdout[out] = self.holdout[i];
                self.labels[out] = self.labels[i];
                self.values.copy_within(i * w..(i + 1) * w, out * w);
                out += 1;
            }
        }
        self.keys.truncate(out);
        self.holdout.truncate(out);
        self.labels.truncate(out);
        self.values.truncate(out * w);
    }
}

/// Trains a model on `session`'s current version.
pub async fn train(session: &QuerySession, name: &str, d: &ModelDefinition) -> Result<Model> {
    let (feature_query, written) = match &d.features {
        ModelFeatures::Query(body) => (body.text.clone(), body.text.clone()),
        ModelFeatures::List { items, written } => (list_query(items), written.text.clone()),
    };
    let ctx = session.context();
    let features = ctx.sql(&feature_query).await?;
    let schema = features.schema().as_arrow().clone();
    if schema.index_of("user_id").is_err() {
        return Err(Error::Usage("the FROM query of a model must yield a user_id column".into()));
    }
    let mut columns = Vec::new();
    for field in schema.fields().iter().filter(|f| f.name() != "user_id") {
        let column = encoding_of(field.name(), field.data_type()).ok_or_else(|| {
            Error::Usage(format!(
                "feature column '{}' is of type {}; a model takes numbers, booleans, dates, timestamps and text",
                field.name(),
                field.data_type()
            ))
        })?;
        columns.push(column);
    }
    if columns.is_empty() {
        return Err(Error::Usage("a model needs at least one feature column besides user_id".into()));
    }
    let label = ctx.sql(&d.label).await?;
    if label.schema().as_arrow().index_of("user_id").is_err() {
        return Err(Error::Usage("the PREDICT query of a model must yield a user_id column".into()));
    }
    let sql = format!(
        "SELECT f.*, l.user_id IS NOT NULL AS __label FROM ({}) f \
         LEFT JOIN (SELECT DISTINCT CAST(user_id AS VARCHAR) AS user_id FROM ({}) AS __l) l ON f.user_id = l.user_id",
        encoded_query(&feature_query, &columns),
        d.label
    );
    let mut stream = ctx.sql(&sql).await?.execute_stream().await?;

    let width = columns.len();
    let mut sample = Sample { width, ..Sample::default() };
    let mut levels: Vec<HashMap<String, u32>> = vec![HashMap::new(); width];
    let (mut population, mut positives) = (0u64, 0u64);
    let mut row = vec![0f64; width];
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let ids = cast(batch.column(0), &DataType::Utf8)?;
        let ids =
            ids.as_any().downcast_ref::<StringArray>().ok_or_else(|| Error::Internal("user_id as text".into()))?;
        let label = batch.column(width + 1);
        let label = label.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| Error::Internal("label".into()))?;
        let mut numbers: Vec<Option<Float64Array>> = Vec::with_capacity(width);
        let mut texts: Vec<Option<StringArray>> = Vec::with_capacity(width);
        for (i, c) in columns.iter().enumerate() {
            let array = batch.column(i + 1);
            if c.encoding == "text" {
                let a = cast(array, &DataType::Utf8)?;
                texts.push(a.as_any().downcast_ref::<StringArray>().cloned());
                numbers.push(None);
            } else {
                let a = cast(array, &DataType::Float64)?;
                numbers.push(a.as_any().downcast_ref::<Float64Array>().cloned());
                texts.push(None);
            }
        }
        for r in 0..batch.num_rows() {
            if ids.is_null(r) {
                continue;
            }
            let id = ids.value(r);
            for i in 0..width {
                row[i] = if let Some(n) = &numbers[i] {
                    if n.is_null(r) { f64::NAN } else { n.value(r) }
                } else if let Some(t) = &texts[i] {
                    if t.is_null(r) {
                        f64::NAN
                    } else {
                        let known = levels[i].len() as u32;
                        let code = *levels[i].entry(t.value(r).to_string()).or_insert(known);
                        if levels[i].len() > MAX_LEVELS {
                            return Err(Error::Usage(format!(
                                "feature column '{}' has more than {MAX_LEVELS} distinct values; \
                                 a text feature must be a category (tier, city), not an identifier",
                                columns[i].name
                            )));
                        }
                        f64::from(code)
                    }
                } else {
                    f64::NAN
                };
            }
            let positive = label.value(r);
            population += 1;
            positives += u64::from(positive);
            let split = user_hash(d.seed, id);
            sample.keys.push(mix(split ^ 0x5851_f42d_4c95_7f2d));
            sample.holdout.push(split % 10_000 < u64::from(d.holdout_basis_points));
            sample.labels.push(positive);
            sample.values.extend_from_slice(&row);
            sample.bound();
        }
    }
    sample.cut();
    if positives == 0 || positives == population {
        return Err(Error::Usage(format!(
            "the PREDICT query labels {positives} of the {population} users of the FROM query; \
             a model needs users of both kinds"
        )));
    }
    let fitted = fit(&sample, &columns, &levels)?;
    let now = EvaluatedNow::seen_with(session.options().now);
    Ok(Model {
        name: name.to_string(),
        kind: "logistic regression".into(),
        label_query: d.label.clone(),
        features_as_written: written,
        feature_query,
        columns,
        intercept: fitted.intercept,
        terms: fitted.terms,
        metrics: ModelMetrics { population, positives, ..fitted.metrics },
        seed: d.seed,
        holdout_basis_points: d.holdout_basis_points,
        created_at: now_rfc3339(),
        computed_on: session.snapshot().version(),
        now: Some(now),
    })
}

struct Fitted {
    intercept: f64,
    terms: Vec<ModelTerm>,
    metrics: ModelMetrics,
}

/// How one design column is read from a sampled row.
enum Design {
    Numeric { at: usize, mean: f64, sd: f64 },
    Level { at: usize, code: u32 },
}

impl Design {
    fn value(&self, row: &[f64]) -> f64 {
        match *self {
            Design::Numeric { at, mean, sd } => {
                let v = row[at];
                if v.is_nan() { 0.0 } else { (v - mean) / sd }
            }
            Design::Level { at, code } => f64::from(u8::from(row[at] == f64::from(code))),
        }
    }
}

fn fit(sample: &Sample, columns: &[ModelColumn], levels: &[HashMap<String, u32>]) -> Result<Fitted> {
    let w = sample.width;
    let n = sample.keys.len();
    let train: Vec<usize> = (0..n).filter(|&i| !sample.holdout[i]).collect();
    let holdout: Vec<usize> = (0..n).filter(|&i| sample.holdout[i]).collect();
    let train_positives = train.iter().filter(|&&i| sample.labels[i]).count();
    if train_positives == 0 || train_positives == train.len() {
        return Err(Error::Usage(format!(
            "the training part holds {train_positives} positive users of {}; a model needs both kinds \
             (lower HOLDOUT or widen the queries)",
            train.len()
        )));
    }
    let row = |i: usize| &sample.values[i * w..(i + 1) * w];
    let mut design = Vec::new();
    let mut terms = Vec::new();
    let mut notes = Vec::new();
    for (at, column) in columns.iter().enumerate() {
        if column.encoding == "text" {
            let mut counts = vec![0u64; levels[at].len()];
            for &i in &train {
                let v = row(i)[at];
                if !v.is_nan() {
                    counts[v as usize] += 1;
                }
            }
            let mut names: Vec<(&String, u32)> = levels[at].iter().map(|(k, v)| (k, *v)).collect();
            names.sort_by(|a, b| counts[b.1 as usize].cmp(&counts[a.1 as usize]).then(a.0.cmp(b.0)));
            let Some((reference, _)) = names.first() else {
                notes.push(format!("'{}' is NULL on every user: dropped", column.name));
                continue;
            };
            notes.push(format!("'{}' levels are measured against '{reference}' (and NULL)", column.name));
            for (level, code) in names.iter().skip(1) {
                if counts[*code as usize] == 0 {
                    continue;
                }
                design.push(Design::Level { at, code: *code });
                terms.push(ModelTerm {
                    column: column.name.clone(),
                    level: Some((*level).clone()),
                    coefficient: 0.0,
                    mean: 0.0,
                    sd: 0.0,
                });
            }
        } else {
            let (mut sum, mut sq, mut count) = (0.0, 0.0, 0u64);
            for &i in &train {
                let v = row(i)[at];
                if !v.is_nan() {
                    sum += v;
                    sq += v * v;
                    count += 1;
                }
            }
            let mean = if count > 0 { sum / count as f64 } else { 0.0 };
            let variance = if count > 0 { (sq / count as f64 - mean * mean).max(0.0) } else { 0.0 };
            let sd = variance.sqrt();
            if count == 0 || sd <= 1e-12 * mean.abs().max(1.0) {
                notes.push(format!("'{}' is constant on the training users: dropped", column.name));
                continue;
            }
            design.push(Design::Numeric { at, mean, sd });
            terms.push(ModelTerm { column: column.name.clone(), level: None, coefficient: 0.0, mean, sd });
        }
    }
    if design.is_empty() {
        return Err(Error::Usage("every feature column is constant or empty on the training users".into()));
    }
    let x = |i: usize, out: &mut Vec<f64>| {
        out.clear();
        out.push(1.0);
        out.extend(design.iter().map(|d| d.value(row(i))));
    };
    let k = design.len() + 1;
    let mut beta = vec![0.0; k];
    let base = train_positives as f64 / train.len() as f64;
    beta[0] = (base / (1.0 - base)).ln();
    let mut iterations = 0;
    let mut xi = Vec::with_capacity(k);
    loop {
        iterations += 1;
        let mut hessian = vec![0.0; k * k];
        let mut gradient = vec![0.0; k];
        for &i in &train {
            x(i, &mut xi);
            let p = sigmoid(dot(&beta, &xi));
            let y = f64::from(u8::from(sample.labels[i]));
            let weight = (p * (1.0 - p)).max(1e-12);
            for a in 0..k {
                gradient[a] += (y - p) * xi[a];
                let wa = weight * xi[a];
                for b in 0..=a {
                    hessian[a * k + b] += wa * xi[b];
                }
            }
        }
        for a in 1..k {
            gradient[a] -= RIDGE * beta[a];
            hessian[a * k + a] += RIDGE;
        }
        let step = cholesky_solve(&mut hessian, &gradient, k)
            .ok_or_else(|| Error::Usage("the model's features are collinear beyond repair; drop one".into()))?;
        let mut largest: f64 = 0.0;
        for a in 0..k {
            beta[a] += step[a];
            largest = largest.max(step[a].abs());
        }
        if largest < 1e-8 || iterations >= MAX_ITERATIONS {
            break;
        }
    }
    let score = |i: usize, xi: &mut Vec<f64>| {
        x(i, xi);
        dot(&beta, xi)
    };
    let auc_of = |rows: &[usize], xi: &mut Vec<f64>| {
        let scored: Vec<(f64, bool)> = rows.iter().map(|&i| (score(i, xi), sample.labels[i])).collect();
        auc(scored)
    };
    let train_auc = auc_of(&train, &mut xi).unwrap_or(0.5);
    let holdout_auc = auc_of(&holdout, &mut xi);
    for (term, b) in terms.iter_mut().zip(&beta[1..]) {
        term.coefficient = *b;
    }
    let holdout_positives = holdout.iter().filter(|&&i| sample.labels[i]).count() as u64;
    Ok(Fitted {
        intercept: beta[0],
        terms,
        metrics: ModelMetrics {
            population: 0,
            positives: 0,
            train_rows: train.len() as u64,
            train_positives: train_positives as u64,
            holdout_rows: holdout.len() as u64,
            holdout_positives,
            train_auc,
            holdout_auc,
            iterations,
            notes,
        },
    })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Solves `H x = g` for a symmetric positive definite `H` whose lower triangle is filled
/// (row-major, `k × k`); `None` when it is not positive definite.
fn cholesky_solve(h: &mut [f64], g: &[f64], k: usize) -> Option<Vec<f64>> {
    for j in 0..k {
        let mut d = h[j * k + j];
        for m in 0..j {
            d -= h[j * k + m] * h[j * k + m];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        h[j * k + j] = d;
        for i in j + 1..k {
            let mut s = h[i * k + j];
            for m in 0..j {
                s -= h[i * k + m] * h[j * k + m];
            }
            h[i * k + j] = s / d;
        }
    }
    let mut y = vec![0.0; k];
    for i in 0..k {
        let mut s = g[i];
        for m in 0..i {
            s -= h[i * k + m] * y[m];
        }
        y[i] = s / h[i * k + i];
    }
    let mut x = vec![0.0; k];
    for i in (0..k).rev() {
        let mut s = y[i];
        for m in i + 1..k {
            s -= h[m * k + i] * x[m];
        }
        x[i] = s / h[i * k + i];
    }
    Some(x)
}

/// The area under the ROC curve of scored rows (Mann–Whitney, ties count one half); `None` when
/// the rows are all of one kind.
fn auc(mut scored: Vec<(f64, bool)>) -> Option<f64> {
    let positives = scored.iter().filter(|s| s.1).count() as f64;
    let negatives = scored.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < scored.len() {
        let mut j = i;
        while j < scored.len() && scored[j].0 == scored[i].0 {
            j += 1;
        }
        let average_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += average_rank * scored[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

/// The SQL that scores every user of a model's feature query: `user_id`, `score` (the
/// probability of the label).
pub fn predict_sql(model: &Model) -> String {
    let mut linear = format!("{:e}", model.intercept);
    for term in &model.terms {
        let Some(at) = model.columns.iter().position(|c| c.name == term.column) else { continue };
        let value = match &term.level {
            Some(level) => format!("(CASE WHEN f{at} = {} THEN 1.0 ELSE 0.0 END)", string_literal(level)),
            None => format!("coalesce((f{at} - {:e}) / {:e}, 0.0)", term.mean, term.sd),
        };
        let _ = write!(linear, " + {:e} * {value}", term.coefficient);
    }
    format!(
        "SELECT user_id, 1.0 / (1.0 + exp(-({linear}))) AS score FROM ({}) AS __encoded",
        encoded_query(&model.feature_query, &model.columns)
    )
}

fn predict_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
    ]))
}

/// `predict('model')`: the model's scores of the feature query's users as they read now.
#[derive(Debug)]
pub struct PredictFunction(pub Arc<Catalog>);

impl TableFunctionImpl for PredictFunction {
    fn call(&self, args: &[Expr]) -> DfResult<Arc<dyn TableProvider>> {
        let name = crate::audience::analytics::text_arg("predict", args, 0, "a model name")?;
        if args.len() > 1 {
            return plan_err!("predict takes one argument, the model's name");
        }
        let Some(model) = self.0.model(&name) else { return plan_err!("{}", no_such_model(&name)) };
        Ok(Arc::new(SqlView::new(predict_sql(model), predict_schema())))
    }
}

/// The columns of the `models` table.
pub fn models_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("population", DataType::UInt64, false),
        Field::new("positives", DataType::UInt64, false),
        Field::new("train_rows", DataType::UInt64, false),
        Field::new("holdout_rows", DataType::UInt64, false),
        Field::new("holdout_auc", DataType::Float64, true),
        Field::new("train_auc", DataType::Float64, false),
        Field::new("label_query", DataType::Utf8, false),
        Field::new("features", DataType::Utf8, false),
        Field::new("created_at", DataType::Utf8, false),
    ]))
}

/// The `models` table (`SHOW MODELS`): one row per model.
pub fn models_batch(catalog: &Catalog) -> Result<RecordBatch> {
    let m = &catalog.models;
    let text = |f: &dyn Fn(&Model) -> String| -> ArrayRef { Arc::new(StringArray::from_iter_values(m.iter().map(f))) };
    let count = |f: &dyn Fn(&Model) -> u64| -> ArrayRef { Arc::new(UInt64Array::from_iter_values(m.iter().map(f))) };
    Ok(RecordBatch::try_new(
        models_schema(),
        vec![
            text(&|m| m.name.clone()),
            text(&|m| m.kind.clone()),
            count(&|m| m.metrics.population),
            count(&|m| m.metrics.positives),
            count(&|m| m.metrics.train_rows),
            count(&|m| m.metrics.holdout_rows),
            Arc::new(Float64Array::from_iter(m.iter().map(|m| m.metrics.holdout_auc.map(round4)))),
            Arc::new(Float64Array::from_iter_values(m.iter().map(|m| round4(m.metrics.train_auc)))),
            text(&|m| m.label_query.clone()),
            text(&|m| m.features_as_written.clone()),
            text(&|m| m.created_at.clone()),
        ],
    )?)
}

/// A query's text on one line (runs of white space as one space), for a note.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// A row of `SHOW MODEL`: feature, level, coefficient, odds ratio, note.
type ExplainedRow = (String, String, Option<f64>, Option<f64>, String);

/// `SHOW MODEL name`: the intercept and every term with its coefficient and odds ratio (per
/// standard deviation of a numeric column, or for a level against the reference), largest
/// effect first, then the model's figures as notes.
pub fn show_model(catalog: &Catalog, name: &str) -> Result<RecordBatch> {
    let model = catalog.model(name).ok_or_else(|| no_such_model(name))?;
    let mut rows: Vec<ExplainedRow> = Vec::new();
    rows.push(("(intercept)".into(), String::new(), Some(model.intercept), None, String::new()));
    let mut terms: Vec<&ModelTerm> = model.terms.iter().collect();
    terms.sort_by(|a, b| b.coefficient.abs().total_cmp(&a.coefficient.abs()).then(a.column.cmp(&b.column)));
    for t in terms {
        let (level, note) = match &t.level {
            Some(l) => (l.clone(), "level vs reference".to_string()),
            None => (String::new(), format!("per sd {:.4} around mean {:.4}", t.sd, t.mean)),
        };
        rows.push((t.column.clone(), level, Some(t.coefficient), Some(t.coefficient.exp()), note));
    }
    let m = &model.metrics;
    let auc = m.holdout_auc.map_or("n/a (no two-class holdout)".to_string(), |a| format!("{a:.4}"));
    let mut notes = vec![
        format!("holdout AUC {auc}, training AUC {:.4}", m.train_auc),
        format!(
            "{} users, {} labelled 1; trained on {} ({} positive), held out {} ({} positive); {} iterations",
            m.population,
            m.positives,
            m.train_rows,
            m.train_positives,
            m.holdout_rows,
            m.holdout_positives,
            m.iterations
        ),
        format!("PREDICT {}", one_line(&model.label_query)),
        format!("FROM {}", one_line(&model.features_as_written)),
    ];
    notes.extend(m.notes.iter().cloned());
    for n in notes {
        rows.push(("(model)".into(), String::new(), None, None, n));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("feature", DataType::Utf8, false),
        Field::new("level", DataType::Utf8, false),
        Field::new("coefficient", DataType::Float64, true),
        Field::new("odds_ratio", DataType::Float64, true),
        Field::new("note", DataType::Utf8, false),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.as_str()))),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2.map(round4)))),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.3.map(round4)))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.4.as_str()))),
        ],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_as_half() {
        assert_eq!(auc(vec![(0.1, false), (0.9, true)]), Some(1.0));
        assert_eq!(auc(vec![(0.9, false), (0.1, true)]), Some(0.0));
        assert_eq!(auc(vec![(0.5, false), (0.5, true)]), Some(0.5));
        assert_eq!(auc(vec![(0.5, true), (0.7, true)]), None);
        // 2 positives, 2 negatives: pairs (p, n) ordered right 3 of 4 times.
        let a = auc(vec![(0.1, false), (0.2, true), (0.3, false), (0.4, true)]).unwrap();
        assert!((a - 0.75).abs() < 1e-12);
    }

    #[test]
    fn cholesky_solves_a_small_system() {
        // [[4, 2], [2, 3]] x = [2, 1] → x = [0.5, 0]
        let mut h = vec![4.0, 0.0, 2.0, 3.0];
        let x = cholesky_solve(&mut h, &[2.0, 1.0], 2).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
        let mut singular = vec![1.0, 0.0, 1.0, 1.0];
        assert!(cholesky_solve(&mut singular, &[1.0, 1.0], 2).is_none());
    }

    #[test]
    fn fit_recovers_a_planted_logistic_signal() {
        // y ~ Bernoulli(sigmoid(-1 + 2 x)), x uniform in [-1, 1]; one noise column; one text column
        // whose level 'b' adds +1.
        let mut state = 7u64;
        let mut next = || {
            state = mix(state.wrapping_add(0x9e37_79b9_7f4a_7c15));
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut sample = Sample { width: 3, ..Sample::default() };
        for _ in 0..40_000 {
            let x = next() * 2.0 - 1.0;
            let noise = next();
            let level = if next() < 0.5 { 0.0 } else { 1.0 };
            let p = sigmoid(-1.0 + 2.0 * x + level);
            sample.keys.push(0);
            sample.holdout.push(next() < 0.2);
            sample.labels.push(next() < p);
            sample.values.extend_from_slice(&[x, noise, level]);
        }
        let columns = vec![
            ModelColumn { name: "x".into(), encoding: "numeric".into(), expression: String::new() },
            ModelColumn { name: "noise".into(), encoding: "numeric".into(), expression: String::new() },
            ModelColumn { name: "kind".into(), encoding: "text".into(), expression: String::new() },
        ];
        let mut kind = HashMap::new();
        kind.insert("a".to_string(), 0);
        kind.insert("b".to_string(), 1);
        let levels = vec![HashMap::new(), HashMap::new(), kind];
        let fitted = fit(&sample, &columns, &levels).unwrap();
        let x = &fitted.terms[0];
        // Per standard deviation of x (≈ 0.577): 2 × 0.577 ≈ 1.15.
        assert!((x.coefficient / x.sd - 2.0).abs() < 0.15, "{:?}", fitted.terms);
        assert!(fitted.terms[1].coefficient.abs() < 0.1, "noise {:?}", fitted.terms[1]);
        let level = fitted.terms.iter().find(|t| t.level.is_some()).unwrap();
        let sign = if level.level.as_deref() == Some("b") { 1.0 } else { -1.0 };
        assert!((level.coefficient * sign - 1.0).abs() < 0.15, "{level:?}");
        assert!(fitted.metrics.holdout_auc.unwrap() > 0.7);
    }

    #[test]
    fn the_sample_keeps_the_smallest_keys() {
        let mut s = Sample { width: 1, ..Sample::default() };
        for i in (0..(2 * SAMPLE_ROWS as u64)).rev() {
            s.keys.push(i);
            s.holdout.push(false);
            s.labels.push(i % 2 == 0);
            s.values.push(i as f64);
            s.bound();
        }
        assert_eq!(s.keys.len(), SAMPLE_ROWS);
        assert!(s.keys.iter().all(|&k| k < SAMPLE_ROWS as u64));
        assert!(s.keys.iter().zip(&s.values).all(|(k, v)| *k as f64 == *v));
    }

    #[test]
    fn list_query_joins_tags_and_rfm() {
        let q = list_query(&[
            FeatureItem::Column("points".into()),
            FeatureItem::Tags(vec!["vip".into(), "it's".into()]),
            FeatureItem::Rfm,
        ]);
        assert!(q.contains("u.\"points\""), "{q}");
        assert!(q.contains("WHERE tag = 'it''s'"), "{q}");
        assert!(q.contains("LEFT JOIN rfm r"), "{q}");
    }
}
