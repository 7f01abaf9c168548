//! Customer analytics on the bitmaps, as SQL table functions: `overlap('A', 'B', ...)` (every
//! exclusive region of the Venn diagram of tags and saved audiences), `breakdown(audience,
//! dimension, ...)` (the portrait of an audience: members, shares and TGI per value of profile
//! columns, bands of range-indexed columns and tags) and `top_tags(audience, n)` (the tags that
//! most distinguish an audience), and `campaign_lift(audience, version, ...)` (treated members
//! against the holdout after a send). Every figure but revenue is a bitmap intersection size.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;
use arrow::datatypes::{DataType, Field, Schema};
use async_trait::async_trait;
use datafusion::catalog::{Session as CatalogSession, TableFunctionImpl, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use datafusion::datasource::{MemTable, TableType};
use datafusion::execution::context::{SQLOptions, SessionState};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use crate::tables::USER_ID;
use roaring::RoaringBitmap;

use crate::index::format::BitmapKind;
use crate::index::{IndexSet, RangeOp};
use crate::query::sql_text::{quoted_identifier, string_literal};

/// Most sets `overlap()` takes: 2^8 − 1 regions.
const MAX_OVERLAP_SETS: usize = 8;

/// The share of an audience a tag must reach to be listed by `top_tags()` unless told otherwise.
const DEFAULT_MIN_SUPPORT: f64 = 0.01;

/// A set's name and the kind its prefix asks for: `audience:NAME` (a saved audience),
/// `tag:NAME` (a tag), or a bare name (either; a saved audience wins).
pub(crate) fn name_kind(name: &str) -> (Option<&'static str>, &str) {
    match name.split_once(':') {
        Some(("audience", rest)) => (Some("audience"), rest),
        Some(("tag", rest)) => (Some("tag"), rest),
        _ => (None, name),
    }
}

/// The session's indexes and catalog, for the functions.
#[derive(Debug, Clone)]
pub struct Analytics {
    pub index: Arc<IndexSet>,
    pub catalog: Arc<crate::store::catalog::Catalog>,
}

impl Analytics {
    /// The users of a saved audience (its latest members) or a tag; `audience:` and `tag:` choose
    /// when a name is both.
    fn named_set(&self, function: &str, name: &str) -> DfResult<(String, Arc<RoaringBitmap>)> {
        let (kind, bare) = name_kind(name);
        if kind != Some("tag")
            && let Some(members) = self.index.saved_audience(bare)?
        {
            return Ok((bare.to_string(), members));
        }
        if kind != Some("audience") && self.index.tag_names().iter().any(|t| t == bare) {
            return Ok((bare.to_string(), self.index.get(BitmapKind::Tag, bare, "")?));
        }
        plan_err!(
            "{function}(): '{name}' is neither a saved audience nor a tag (SHOW AUDIENCES and SHOW TAGS list them)"
        )
    }
}

pub(crate) fn text_arg(function: &str, args: &[Expr], i: usize, what: &str) -> DfResult<String> {
    match args.get(i) {
        Some(Expr::Literal(v, _)) => match v.try_as_str().flatten() {
            Some(s) => Ok(s.to_string()),
            None => plan_err!("{function}(): argument {} must be text ({what})", i + 1),
        },
        _ => plan_err!("{function}(): argument {} must be a text literal ({what})", i + 1),
    }
}

pub(crate) fn number_arg(function: &str, args: &[Expr], i: usize, what: &str) -> DfResult<Option<f64>> {
    match args.get(i) {
        None => Ok(None),
        Some(Expr::Literal(v, _)) => match v.cast_to(&DataType::Float64) {
            Ok(ScalarValue::Float64(Some(n))) if n.is_finite() => Ok(Some(n)),
            _ => plan_err!("{function}(): argument {} must be a number ({what})", i + 1),
        },
        Some(_) => plan_err!("{function}(): argument {} must be a number literal ({what})", i + 1),
    }
}

pub(crate) fn table(fields: Vec<Field>, columns: Vec<ArrayRef>) -> DfResult<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// `part / whole`, NULL when the whole is empty.
fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// `overlap('A', 'B', ...)`: one row per exclusive region of the sets' Venn diagram — the users in
/// exactly the sets marked TRUE — with its size and share of the union.
#[derive(Debug)]
pub struct OverlapFunction(pub Analytics);

impl TableFunctionImpl for OverlapFunction {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let args = args.exprs();
        if args.is_empty() || args.len() > MAX_OVERLAP_SETS {
            return plan_err!(
                "overlap() takes 1 to {MAX_OVERLAP_SETS} tags or saved audiences, e.g. overlap('vip', 'wechat_fan')"
            );
        }
        let mut sets: Vec<(String, Arc<RoaringBitmap>)> = Vec::with_capacity(args.len());
        for i in 0..args.len() {
            let name = text_arg("overlap", args, i, "a tag or saved audience")?;
            let set = self.0.named_set("overlap", &name)?;
            if sets.iter().any(|(n, _)| *n == set.0) {
                return plan_err!("overlap(): '{}' is given twice", set.0);
            }
            sets.push(set);
        }
        let regions = regions(&sets.iter().map(|(_, s)| s.as_ref()).collect::<Vec<_>>());
        let union: u64 = regions.iter().sum();
        // Regions by how many sets they are in, then in the order of the arguments (A, B, A & B).
        let mut masks: Vec<usize> = (1..regions.len()).collect();
        masks.sort_by_key(|m| (m.count_ones(), *m));
        let label = |m: usize| {
            let inside: Vec<&str> =
                sets.iter().enumerate().filter(|(i, _)| m >> i & 1 == 1).map(|(_, (n, _))| n.as_str()).collect();
            inside.join(" & ")
        };
        let mut fields = vec![Field::new("region", DataType::Utf8, false)];
        let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(masks.iter().map(|m| label(*m))))];
        for (i, (name, _)) in sets.iter().enumerate() {
            fields.push(Field::new(name, DataType::Boolean, false));
            columns.push(Arc::new(BooleanArray::from(masks.iter().map(|m| m >> i & 1 == 1).collect::<Vec<_>>())));
        }
        fields.push(Field::new("users", DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from_iter_values(masks.iter().map(|m| regions[*m] as i64))));
        fields.push(Field::new("share", DataType::Float64, true));
        columns.push(Arc::new(Float64Array::from_iter(masks.iter().map(|m| ratio(regions[*m], union)))));
        table(fields, columns)
    }
}

/// The size of every exclusive region, by mask (bit i: in set i; mask 0: in none, left at 0):
/// the union is split by each set in turn, so the work is about the union's size per set.
fn regions(sets: &[&RoaringBitmap]) -> Vec<u64> {
    let mut parts: Vec<(usize, RoaringBitmap)> =
        vec![(0, sets.iter().copied().fold(RoaringBitmap::new(), |a, s| a | s))];
    for (i, set) in sets.iter().enumerate() {
        let mut next = Vec::with_capacity(parts.len() * 2);
        for (mask, part) in parts {
            let inside = &part & *set;
            let outside = part - &inside;
            if !inside.is_empty() {
                next.push((mask | 1 << i, inside));
            }
            if !outside.is_empty() {
                next.push((mask, outside));
            }
        }
        parts = next;
    }
    let mut sizes = vec![0u64; 1 << sets.len()];
    for (mask, part) in parts {
        sizes[mask] = part.len();
    }
    sizes[0] = 0;
    sizes
}

/// The activity families a portrait can be cut by: buyers per purchase channel or category, and
/// users per event type.
const ACTIVITY_DIMENSIONS: &[&str] = &[
    crate::index::build::FAMILY_PURCHASE_CHANNEL,
    crate::index::build::FAMILY_PURCHASE_CATEGORY,
    crate::index::build::FAMILY_EVENT_TYPE,
];

/// `breakdown(..., 'columns')` takes the value-indexed columns with at most this many values.
const MAX_PORTRAIT_VALUES: usize = 24;

/// One group of users a dimension of `breakdown()` splits everyone into.
#[derive(Clone)]
struct Group {
    dimension: String,
    value: Option<String>,
    users: RoaringBitmap,
}

/// The groups of a dimension: `tier` (a value-indexed column: one group per value, and NULL),
/// `points:1000,5000` (a range-indexed column in bands at those edges, and NULL), `tags` (every
/// tag), `tags:vip%` (the tags matching a `LIKE` pattern) or `columns` (every value-indexed
/// column with at most 24 values).
fn groups(index: &IndexSet, spec: &str, now_micros: i64) -> DfResult<Vec<Group>> {
    let (name, rest) = match spec.split_once(':') {
        Some((n, r)) => (n.trim(), Some(r.trim())),
        None => (spec.trim(), None),
    };
    let group = |value: Option<String>, users: RoaringBitmap| Group { dimension: name.to_string(), value, users };
    if name == "columns" && rest.is_none() {
        // Every value-indexed users column with few enough values to read at a glance.
        let mut out = Vec::new();
        for column in index.value_columns() {
            if column != crate::tables::USER_ID && index.values(&column).len() <= MAX_PORTRAIT_VALUES {
                out.extend(groups(index, &column, now_micros)?);
            }
        }
        return Ok(out);
    }
    if let Some(family) = ACTIVITY_DIMENSIONS.iter().find(|f| **f == name) {
        // Activity in the N whole days before today (all days when N is not given), per value.
        let days = match rest {
            None => None,
            Some(d) => match d.parse::<i64>() {
                Ok(n) if n > 0 => Some(n),
                _ => return plan_err!("breakdown(): '{name}:{d}' needs a number of days above zero after the colon"),
            },
        };
        if !index.has_family(family) {
            return plan_err!(
                "breakdown(): the store has no complete index of {name} (its facts were loaded before it)"
            );
        }
        let today = crate::index::day_of(now_micros);
        let (first, last) = match days {
            Some(n) => (today - n, today - 1),
            None => (i64::MIN / 4, today - 1),
        };
        let mut out = Vec::new();
        for stream in index.family_streams(family) {
            let Some((_, value)) = stream.split_once('=') else { continue };
            let users = index.active_on_days(&stream, first, last)?;
            out.push(Group { dimension: spec.trim().to_string(), value: Some(value.to_string()), users });
        }
        return Ok(out);
    }
    if name == "tags" {
        let pattern = rest.map(like_matcher);
        let mut out = Vec::new();
        for tag in index.tag_names() {
            if pattern.as_ref().is_none_or(|p| p(&tag)) {
                let users = index.get(BitmapKind::Tag, &tag, "")?.as_ref().clone();
                out.push(Group { dimension: "tag".to_string(), value: Some(tag), users });
            }
        }
        return Ok(out);
    }
    if let Some(edges) = rest {
        let Some(_) = index.range_index(name) else {
            return plan_err!("breakdown(): '{name}' has no range index to cut into bands");
        };
        let mut cuts: Vec<(String, i64)> = Vec::new();
        for edge in edges.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let value = match (edge.parse::<i64>(), chrono::NaiveDate::parse_from_str(edge, "%Y-%m-%d")) {
                (Ok(n), _) => n,
                (_, Ok(d)) => (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date")).num_days(),
                _ => return plan_err!("breakdown(): band edge '{edge}' of '{name}' is neither an integer nor a date"),
            };
            cuts.push((edge.to_string(), value));
        }
        if cuts.is_empty() || cuts.windows(2).any(|w| w[0].1 >= w[1].1) {
            return plan_err!("breakdown(): the band edges of '{name}' must be increasing, e.g. '{name}:1000,5000'");
        }
        let mut out = Vec::new();
        let below = index.range_compare(name, RangeOp::Lt, cuts[0].1)?;
        out.push(group(Some(format!("< {}", cuts[0].0)), below));
        for w in cuts.windows(2) {
            let users =
                index.range_conjunction_within(&[(name, RangeOp::GtEq, w[0].1), (name, RangeOp::Lt, w[1].1)], None)?;
            out.push(group(Some(format!("{} – {}", w[0].0, w[1].0)), users));
        }
        let last = cuts.last().expect("not empty");
        out.push(group(Some(format!(">= {}", last.0)), index.range_compare(name, RangeOp::GtEq, last.1)?));
        out.extend(nulls(index, name)?.map(|users| group(None, users)));
        return Ok(out);
    }
    if !index.has_values(name) {
        return plan_err!(
            "breakdown(): '{name}' is not a value-indexed users column; use a column such as tier, a range-indexed column \
             in bands ('{name}:1000,5000'), or 'tags'"
        );
    }
    let mut out: Vec<Group> = index
        .values(name)
        .into_iter()
        .map(|v| Ok(group(Some(v.clone()), index.get(BitmapKind::Value, name, &v)?.as_ref().clone())))
        .collect::<crate::error::Result<_>>()?;
    out.extend(nulls(index, name)?.map(|users| group(None, users)));
    Ok(out)
}

/// The users whose `column` is NULL, when there are any.
fn nulls(index: &IndexSet, column: &str) -> DfResult<Option<RoaringBitmap>> {
    let users = index.get(BitmapKind::Null, column, "")?;
    Ok((!users.is_empty()).then(|| users.as_ref().clone()))
}

/// A `LIKE` pattern (`%` any run, `_` one character) as a matcher.
fn like_matcher(pattern: &str) -> impl Fn(&str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    move |text: &str| {
        let text: Vec<char> = text.chars().collect();
        // Classic two-pointer wildcard match with backtracking to the last '%'.
        let (mut p, mut t, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
        while t < text.len() {
            if p < pattern.len() && (pattern[p] == '_' || pattern[p] == text[t]) {
                p += 1;
                t += 1;
            } else if p < pattern.len() && pattern[p] == '%' {
                star = Some(p);
                mark = t;
                p += 1;
            } else if let Some(s) = star {
                p = s + 1;
                mark += 1;
                t = mark;
            } else {
                return false;
            }
        }
        pattern[p..].iter().all(|c| *c == '%')
    }
}

/// The columns of a portrait.
fn portrait_fields() -> Vec<Field> {
    vec![
        Field::new("dimension", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
        Field::new("members", DataType::Int64, false),
        Field::new("share", DataType::Float64, true),
        Field::new("base", DataType::Int64, false),
        Field::new("base_share", DataType::Float64, true),
        Field::new("tgi", DataType::Float64, true),
    ]
}

/// Whether an audience argument is a query (`SELECT ...`, `WITH ...`, or either in parentheses)
/// rather than the name of a saved audience or tag (`tag:` before such a name reads it as a tag).
fn is_query(text: &str) -> bool {
    let t = text.trim_start().trim_start_matches('(').trim_start();
    let word: String = t.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    (word.eq_ignore_ascii_case("select") || word.eq_ignore_ascii_case("with"))
        && t[word.len()..].starts_with(|c: char| c.is_whitespace())
}

/// Builds a function's table from an audience's members.
type FromMembers = Arc<dyn Fn(&RoaringBitmap) -> DfResult<Arc<dyn TableProvider>> + Send + Sync>;

/// A table computed from the members of an audience query when it is scanned: a table
/// function's `call` cannot run a query, its scan can (on the scanning session, so `now()` and
/// the indexes are the session's).
struct QueryAudienceTable {
    function: &'static str,
    query: String,
    index: Arc<IndexSet>,
    schema: SchemaRef,
    build: FromMembers,
}

impl std::fmt::Debug for QueryAudienceTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryAudienceTable").field("function", &self.function).field("query", &self.query).finish()
    }
}

#[async_trait]
impl TableProvider for QueryAudienceTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let Some(session) = state.as_any().downcast_ref::<SessionState>() else {
            return plan_err!("{}(): an audience query needs a Persona session", self.function);
        };
        let ctx = SessionContext::new_with_state(session.clone());
        let read_only = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
        let plan = ctx.sql_with_options(&self.query, read_only).await?.into_unoptimized_plan();
        if plan.schema().fields().iter().all(|f| f.name() != USER_ID) {
            return plan_err!("{}(): the audience query must return a user_id column", self.function);
        }
        let use_indexes =
            session.config().options().extensions.get::<crate::query::PersonaConfig>().is_none_or(|c| c.use_indexes);
        let (members, _) = crate::audience::evaluate::members_of(&ctx, &self.index, use_indexes, plan).await?;
        (self.build)(&members)?.scan(state, projection, filters, limit).await
    }
}

/// Rows of a portrait: per group, its members in the audience, their share of the audience, the
/// group's users overall, their share of everyone, and TGI (the ratio of the shares × 100).
fn portrait(index: &IndexSet, audience: &RoaringBitmap, groups: Vec<Group>) -> DfResult<Arc<dyn TableProvider>> {
    let everyone = index.live_len();
    let size = audience.len();
    let mut dimension = Vec::new();
    let mut value = Vec::new();
    let (mut members, mut share, mut base, mut base_share, mut tgi) = (vec![], vec![], vec![], vec![], vec![]);
    for g in groups {
        let m = g.users.intersection_len(audience);
        let b = g.users.len();
        let s = ratio(m, size);
        let bs = ratio(b, everyone);
        dimension.push(g.dimension);
        value.push(g.value);
        members.push(m as i64);
        share.push(s);
        base.push(b as i64);
        base_share.push(bs);
        tgi.push(match (s, bs) {
            (Some(s), Some(bs)) if bs > 0.0 => Some(s / bs * 100.0),
            _ => None,
        });
    }
    table(
        portrait_fields(),
        vec![
            Arc::new(StringArray::from(dimension)),
            Arc::new(StringArray::from(value)),
            Arc::new(Int64Array::from(members)),
            Arc::new(Float64Array::from(share)),
            Arc::new(Int64Array::from(base)),
            Arc::new(Float64Array::from(base_share)),
            Arc::new(Float64Array::from(tgi)),
        ],
    )
}

/// `breakdown(audience, dimension, ...)`: the portrait of a saved audience or tag.
#[derive(Debug)]
pub struct BreakdownFunction(pub Analytics);

impl TableFunctionImpl for BreakdownFunction {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let now = match args.session().as_any().downcast_ref::<datafusion::execution::context::SessionState>() {
            Some(state) => crate::query::now::session_now_micros(state),
            None => chrono::Utc::now().timestamp_micros(),
        };
        let args = args.exprs();
        if args.len() < 2 {
            return plan_err!(
                "breakdown() takes an audience (a saved audience or a tag) and one or more dimensions, \
                 e.g. breakdown('winback', 'tier', 'points:1000,5000', 'tags')"
            );
        }
        let name = text_arg("breakdown", args, 0, "a saved audience, a tag or a query")?;
        let mut all = Vec::new();
        for i in 1..args.len() {
            all.extend(groups(&self.0.index, &text_arg("breakdown", args, i, "a dimension")?, now)?);
        }
        if is_query(&name) {
            let index = Arc::clone(&self.0.index);
            return Ok(Arc::new(QueryAudienceTable {
                function: "breakdown",
                query: name,
                index: Arc::clone(&self.0.index),
                schema: Arc::new(Schema::new(portrait_fields())),
                build: Arc::new(move |members| portrait(&index, members, all.clone())),
            }));
        }
        let (_, audience) = self.0.named_set("breakdown", &name)?;
        portrait(&self.0.index, &audience, all)
    }
}

/// `top_tags(audience, n [, min_support])`: the `n` tags with the highest TGI in the audience
/// among those at least `min_support` of its members carry (default 1 %); the audience's own tag
/// is left out.
#[derive(Debug)]
pub struct TopTagsFunction(pub Analytics);

impl TableFunctionImpl for TopTagsFunction {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let args = args.exprs();
        if !(2..=3).contains(&args.len()) {
            return plan_err!(
                "top_tags() takes an audience, how many tags, and optionally a minimum support, e.g. top_tags('winback', 10, 0.05)"
            );
        }
        let name = text_arg("top_tags", args, 0, "a saved audience, a tag or a query")?;
        let n = number_arg("top_tags", args, 1, "how many tags")?.unwrap_or(10.0);
        if n < 0.0 || n.fract() != 0.0 {
            return plan_err!("top_tags(): how many tags must be a whole number, not {n}");
        }
        let support = number_arg("top_tags", args, 2, "the minimum share of members")?.unwrap_or(DEFAULT_MIN_SUPPORT);
        if !(0.0..=1.0).contains(&support) {
            return plan_err!(
                "top_tags(): the minimum support is a share of the audience between 0 and 1, not {support}"
            );
        }
        if is_query(&name) {
            let index = Arc::clone(&self.0.index);
            return Ok(Arc::new(QueryAudienceTable {
                function: "top_tags",
                query: name,
                index: Arc::clone(&self.0.index),
                schema: Arc::new(Schema::new(portrait_fields())),
                build: Arc::new(move |members| top_tags(&index, "", members, n as usize, support)),
            }));
        }
        let (own, audience) = self.0.named_set("top_tags", &name)?;
        top_tags(&self.0.index, &own, &audience, n as usize, support)
    }
}

/// The `n` tags but `own` with the highest TGI among `audience`'s members, each carried by at
/// least `support` of them, as a portrait.
fn top_tags(
    index: &IndexSet,
    own: &str,
    audience: &RoaringBitmap,
    n: usize,
    support: f64,
) -> DfResult<Arc<dyn TableProvider>> {
    let everyone = index.live_len();
    let size = audience.len();
    let mut scored: Vec<(f64, String, RoaringBitmap)> = Vec::new();
    for tag in index.tag_names() {
        if tag == own {
            continue;
        }
        let users = index.get(BitmapKind::Tag, &tag, "")?;
        let members = users.intersection_len(audience);
        if size == 0 || (members as f64) < support * size as f64 || members == 0 {
            continue;
        }
        let tgi = match (ratio(members, size), ratio(users.len(), everyone)) {
            (Some(s), Some(b)) if b > 0.0 => s / b * 100.0,
            _ => continue,
        };
        scored.push((tgi, tag, users.as_ref().clone()));
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    scored.truncate(n);
    let groups =
        scored.into_iter().map(|(_, tag, users)| Group { dimension: "tag".into(), value: Some(tag), users }).collect();
    portrait(index, audience, groups)
}

/// How long after a send outcomes count unless told: two weeks.
const DEFAULT_LIFT_DAYS: i64 = 14;
use crate::index::DAY_MICROS;

/// `campaign_lift(audience, version [, within [, outcome [, sent_at]]])`: did the campaign work?
/// The version's members outside the holdout (treated) against those in it (held out): how many
/// of each had the outcome (`'purchase'`, the default, or an event type) within `within` (an
/// interval or a number of days, default 14 days) of `sent_at` (default: the `now()` the version
/// was computed at), their conversion rates, and their purchase revenue in that window; then a
/// `lift` row with the difference in conversion rate (and its 95 % interval, normal
/// approximation), the relative lift, and the difference in revenue per user.
#[derive(Debug)]
pub struct CampaignLiftFunction(pub Analytics);

impl TableFunctionImpl for CampaignLiftFunction {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        const F: &str = "campaign_lift";
        let args = args.exprs();
        if !(1..=5).contains(&args.len()) {
            return plan_err!(
                "campaign_lift() takes an audience, a version, and optionally how long outcomes count, the outcome and \
                 when it was sent, e.g. campaign_lift('winback', 3, INTERVAL '14 days', 'purchase')"
            );
        }
        let name = text_arg(F, args, 0, "a saved audience")?;
        let Some(audience) = self.0.catalog.audience(&name) else {
            return plan_err!("{F}(): there is no saved audience '{name}' (SHOW AUDIENCES lists them)");
        };
        let version = match args.get(1) {
            None | Some(Expr::Literal(ScalarValue::Null, _)) => audience.latest(),
            Some(_) => {
                let n = number_arg(F, args, 1, "a version number")?.unwrap_or(0.0);
                if n.fract() != 0.0 || n < 1.0 {
                    return plan_err!("{F}(): the version is a whole number from 1, not {n}");
                }
                audience.version(n as u32)
            }
        };
        let Some(version) = version else {
            return plan_err!(
                "{F}(): audience '{name}' has no such version (SELECT * FROM audience_versions lists them)"
            );
        };
        let within = window_arg(F, args, 2)?.unwrap_or(DEFAULT_LIFT_DAYS * DAY_MICROS);
        let outcome =
            if args.len() > 3 { text_arg(F, args, 3, "'purchase' or an event type")? } else { "purchase".into() };
        let sent_at = match args.get(4) {
            Some(Expr::Literal(v, _)) => match crate::query::audience_rule::timestamp_micros(v) {
                Some(t) => t,
                None => return plan_err!("{F}(): argument 5 must be a timestamp (when the campaign was sent)"),
            },
            Some(_) => return plan_err!("{F}(): argument 5 must be a timestamp literal (when the campaign was sent)"),
            None => {
                let at = version.now.as_ref().map_or(version.computed_at.as_str(), |n| n.at.as_str());
                match chrono::DateTime::parse_from_rfc3339(at) {
                    Ok(t) => t.timestamp_micros(),
                    Err(_) => {
                        return plan_err!(
                            "{F}(): version {} of '{name}' has no time; give when it was sent",
                            version.number
                        );
                    }
                }
            }
        };
        let index = &self.0.index;
        let (family, stream) = if outcome.eq_ignore_ascii_case("purchase") {
            (crate::index::build::FAMILY_PURCHASES, crate::index::build::FAMILY_PURCHASES.to_string())
        } else {
            let family = crate::index::build::FAMILY_EVENT_TYPE;
            (family, crate::index::build::stream_name(family, Some(&outcome)))
        };
        if !index.has_family(family) {
            return plan_err!("{F}(): the store has no index of {family} to count the outcome '{outcome}' from");
        }
        let fact = family.split('.').next().unwrap_or(family);
        let window = (sent_at, sent_at.saturating_add(within));
        let spec = crate::query::audience_rule::active_in_window(fact, vec![stream], Vec::new(), window);
        let Some(expr) = spec.to_bitmap_expr(&crate::query::bitmap_expr::Registered {
            fact_filter: &|_| None,
            fact_aggregate: &|_| None,
            activity_count: &|_| None,
        }) else {
            return plan_err!("{F}(): the outcome window could not be read from the index");
        };
        let members = index.catalog_set(&version.members_file)?;
        let holdout = index.catalog_set(&version.holdout_file)?;
        let treated = members.as_ref() - holdout.as_ref();
        let converted = crate::query::bitmap_expr::evaluate_within(&expr, index, Some(members.as_ref()))?;
        let revenue = crate::query::fact_filter::sums_by_group(
            index,
            crate::tables::Table::Purchases,
            crate::tables::AMOUNT,
            window,
            &[&treated, holdout.as_ref()],
        )?;
        let (n1, n0) = (treated.len(), holdout.len());
        let (c1, c0) = (converted.intersection_len(&treated), converted.intersection_len(holdout.as_ref()));
        let (p1, p0) = (ratio(c1, n1), ratio(c0, n0));
        let (r1, r0) = ((n1 > 0).then(|| revenue[0] / n1 as f64), (n0 > 0).then(|| revenue[1] / n0 as f64));
        let (diff, low, high, relative) = match (p1, p0) {
            (Some(p1), Some(p0)) => {
                let se = (p1 * (1.0 - p1) / n1 as f64 + p0 * (1.0 - p0) / n0 as f64).sqrt();
                let d = p1 - p0;
                (Some(d), Some(d - 1.96 * se), Some(d + 1.96 * se), (p0 > 0.0).then(|| d / p0))
            }
            _ => (None, None, None, None),
        };
        let revenue_diff = r1.zip(r0).map(|(a, b)| a - b);
        table(
            vec![
                Field::new("group", DataType::Utf8, false),
                Field::new("users", DataType::Int64, true),
                Field::new("converted", DataType::Int64, true),
                Field::new("conversion_rate", DataType::Float64, true),
                Field::new("revenue", DataType::Float64, true),
                Field::new("revenue_per_user", DataType::Float64, true),
                Field::new("relative_lift", DataType::Float64, true),
                Field::new("ci_low", DataType::Float64, true),
                Field::new("ci_high", DataType::Float64, true),
            ],
            vec![
                Arc::new(StringArray::from(vec!["treated", "holdout", "lift"])),
                Arc::new(Int64Array::from(vec![Some(n1 as i64), Some(n0 as i64), None])),
                Arc::new(Int64Array::from(vec![Some(c1 as i64), Some(c0 as i64), None])),
                Arc::new(Float64Array::from(vec![p1, p0, diff])),
                Arc::new(Float64Array::from(vec![Some(revenue[0]), Some(revenue[1]), None])),
                Arc::new(Float64Array::from(vec![r1, r0, revenue_diff])),
                Arc::new(Float64Array::from(vec![None, None, relative])),
                Arc::new(Float64Array::from(vec![None, None, low])),
                Arc::new(Float64Array::from(vec![None, None, high])),
            ],
        )
    }
}

/// Most steps `funnel()` takes.
const MAX_FUNNEL_STEPS: usize = 10;

/// `funnel(window, step1, step2, ...)`: of the users who took step 1 within `window` before
/// `now()` (an interval or a number of days), how many then took step 2 after it, then step 3
/// after that, and so on. A step is an event type, or `'purchase'`. Each user's earliest step 1
/// in the window starts their path and each next step is their earliest one after the step
/// before it (strictly later), so a path counts if the steps happened in that order at all.
/// Returns per step its users and the shares of the previous step and of the first. The steps
/// are SQL over the rows, planned when the result is read (the general path).
#[derive(Debug)]
pub struct FunnelFunction;

impl TableFunctionImpl for FunnelFunction {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        const F: &str = "funnel";
        let args = args.exprs();
        if args.len() < 3 || args.len() > MAX_FUNNEL_STEPS + 1 {
            return plan_err!(
                "funnel() takes a window and 2 to {MAX_FUNNEL_STEPS} steps (event types or 'purchase'), \
                 e.g. funnel(INTERVAL '30 days', 'view', 'cart', 'purchase')"
            );
        }
        let Some(window) = window_arg(F, args, 0)? else {
            return plan_err!("{F}(): the first argument is the window, e.g. INTERVAL '30 days'");
        };
        let steps: Vec<String> =
            (1..args.len()).map(|i| text_arg(F, args, i, "an event type or 'purchase'")).collect::<DfResult<_>>()?;
        let mut sql = funnel_paths(window, &steps);
        let counts: Vec<String> = steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                format!(
                    "SELECT {} AS step, {} AS name, (SELECT count(*) FROM s{}) AS users",
                    i + 1,
                    string_literal(step),
                    i + 1
                )
            })
            .collect();
        sql.push_str(&format!(
            " SELECT CAST(step AS BIGINT) AS step, CAST(name AS VARCHAR) AS name, CAST(users AS BIGINT) AS users, \
             {} FROM ({}) c ORDER BY step",
            funnel_rates(""),
            counts.join(" UNION ALL ")
        ));
        Ok(Arc::new(crate::audience::sql_view::SqlView::new(sql, funnel_schema(false))))
    }
}

/// The CTEs `s1` .. `sN` of a funnel: per user who reached step k, the time of reaching it (their
/// earliest step 1 within `window` microseconds before `now()`, then each next step's earliest
/// occurrence strictly after the step before, before `now()`).
fn funnel_paths(window: i64, steps: &[String]) -> String {
    let source = |step: &str| {
        if step.eq_ignore_ascii_case("purchase") {
            "SELECT user_id, ts FROM purchases".to_string()
        } else {
            format!("SELECT user_id, ts FROM events WHERE event_type = {}", string_literal(step))
        }
    };
    let seconds = window / 1_000_000;
    let mut sql = format!(
        "WITH s1 AS (SELECT user_id, min(ts) AS t FROM ({}) x \
         WHERE ts >= now() - INTERVAL '{seconds} seconds' AND ts < now() GROUP BY user_id)",
        source(&steps[0])
    );
    for k in 2..=steps.len() {
        sql.push_str(&format!(
            ", s{k} AS (SELECT x.user_id, min(x.ts) AS t FROM ({}) x JOIN s{} p \
             ON x.user_id = p.user_id AND x.ts > p.t WHERE x.ts < now() GROUP BY x.user_id)",
            source(&steps[k - 1]),
            k - 1
        ));
    }
    sql
}

/// The shares of the previous and of the first step, as the SQL columns `from_previous` and
/// `from_first` (within each `partition`, e.g. `PARTITION BY value `).
fn funnel_rates(partition: &str) -> String {
    let share =
        |of: &str| format!("CAST(users AS DOUBLE) / CAST({of}(users) OVER ({partition}ORDER BY step) AS DOUBLE)");
    format!("{} AS from_previous, {} AS from_first", share("lag"), share("first_value"))
}

/// The columns of `funnel()`, with `value` first for `funnel_by()`.
fn funnel_schema(by_value: bool) -> Arc<Schema> {
    let mut fields = Vec::new();
    if by_value {
        fields.push(Field::new("value", DataType::Utf8, true));
    }
    fields.extend([
        Field::new("step", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("users", DataType::Int64, true),
        Field::new("from_previous", DataType::Float64, true),
        Field::new("from_first", DataType::Float64, true),
    ]);
    Arc::new(Schema::new(fields))
}

/// `funnel_by(column, window, step1, step2, ...)`: `funnel()` per value of a users column (NULL
/// is a value): per value and step its users and the shares of the value's previous and first
/// step; a value whose users stop before a step has 0 there.
#[derive(Debug)]
pub struct FunnelByFunction;

impl TableFunctionImpl for FunnelByFunction {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        const F: &str = "funnel_by";
        let args = args.exprs();
        if args.len() < 4 || args.len() > MAX_FUNNEL_STEPS + 2 {
            return plan_err!(
                "funnel_by() takes a users column, a window and 2 to {MAX_FUNNEL_STEPS} steps (event types or \
                 'purchase'), e.g. funnel_by('tier', INTERVAL '30 days', 'view', 'cart', 'purchase')"
            );
        }
        let column = text_arg(F, args, 0, "a users column")?;
        let Some(window) = window_arg(F, args, 1)? else {
            return plan_err!("{F}(): the second argument is the window, e.g. INTERVAL '30 days'");
        };
        let steps: Vec<String> =
            (2..args.len()).map(|i| text_arg(F, args, i, "an event type or 'purchase'")).collect::<DfResult<_>>()?;
        let column = format!("u.{}", quoted_identifier(&column));
        let mut sql = funnel_paths(window, &steps);
        let counts: Vec<String> = (1..=steps.len())
            .map(|k| {
                format!(
                    "SELECT CAST({column} AS VARCHAR) AS value, {k} AS step, count(*) AS users \
                     FROM s{k} JOIN users u ON u.user_id = s{k}.user_id GROUP BY CAST({column} AS VARCHAR)"
                )
            })
            .collect();
        let names: Vec<String> =
            steps.iter().enumerate().map(|(i, step)| format!("({}, {})", i + 1, string_literal(step))).collect();
        sql.push_str(&format!(
            ", c AS ({}), \
             grid AS (SELECT v.value, n.step, n.name FROM (SELECT DISTINCT value FROM c WHERE step = 1) v \
                      CROSS JOIN (VALUES {}) AS n(step, name)), \
             g AS (SELECT grid.value, grid.step, grid.name, coalesce(c.users, 0) AS users FROM grid \
                   LEFT JOIN c ON (c.value IS NOT DISTINCT FROM grid.value) AND c.step = grid.step) \
             SELECT CAST(value AS VARCHAR) AS value, CAST(step AS BIGINT) AS step, CAST(name AS VARCHAR) AS name, \
             CAST(users AS BIGINT) AS users, {} FROM g ORDER BY value NULLS LAST, step",
            counts.join(" UNION ALL "),
            names.join(", "),
            funnel_rates("PARTITION BY value ")
        ));
        Ok(Arc::new(crate::audience::sql_view::SqlView::new(sql, funnel_schema(true))))
    }
}

/// A date or timestamp literal as an instant in microseconds (UTC; a date is its midnight).
pub(crate) fn instant_of(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(ScalarValue::Date32(Some(d)), _) => Some(i64::from(*d) * DAY_MICROS),
        Expr::Literal(v, _) => crate::query::audience_rule::timestamp_micros(v),
        _ => None,
    }
}

/// A window argument, in microseconds: an interval of days and smaller units, or a number of days.
fn window_arg(function: &str, args: &[Expr], i: usize) -> DfResult<Option<i64>> {
    let micros = match args.get(i) {
        None => return Ok(None),
        Some(Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _)) if v.months == 0 => {
            i64::from(v.days) * DAY_MICROS + v.nanoseconds / 1000
        }
        Some(Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(_)), _)) => {
            return plan_err!(
                "{function}(): months have no fixed length; give the window in days, e.g. INTERVAL '30 days'"
            );
        }
        Some(Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _)) => {
            i64::from(v.days) * DAY_MICROS + i64::from(v.milliseconds) * 1000
        }
        Some(_) => match number_arg(function, args, i, "an interval or a number of days")? {
            Some(days) => (days * DAY_MICROS as f64) as i64,
            None => return Ok(None),
        },
    };
    if micros <= 0 {
        return plan_err!("{function}(): the window must be longer than zero");
    }
    Ok(Some(micros))
}

/// `attrition(name)`: for a saved audience or rule tag whose query is `SELECT ... FROM ...
/// WHERE c1 AND c2 AND ...`, how many distinct users remain after each condition in turn, from
/// everyone the `FROM` yields to the whole rule — which condition loses the most people.
/// Each count is the rule's own SQL cut after a condition, so the bitmaps answer what they can.
#[derive(Debug)]
pub struct AttritionFunction(pub Analytics);

impl TableFunctionImpl for AttritionFunction {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr as SqlExpr, GroupByExpr, SetExpr, Statement};
        const F: &str = "attrition";
        let exprs = args.exprs();
        if exprs.len() != 1 {
            return plan_err!("{F}() takes the name of a saved audience or rule tag, e.g. attrition('winback')");
        }
        let name = text_arg(F, exprs, 0, "a saved audience or rule tag")?;
        let query = match (self.0.catalog.audience(&name), self.0.catalog.tag(&name)) {
            (Some(a), _) => a.query.clone(),
            (None, Some(t)) => t.query.clone(),
            (None, None) => {
                return plan_err!("{F}(): there is no saved audience or rule tag '{name}' (SHOW AUDIENCES, SHOW TAGS)");
            }
        };
        let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
        let parsed = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, &query).map_err(|e| {
            datafusion::common::DataFusionError::Plan(format!("{F}(): the rule of '{name}' does not parse: {e}"))
        })?;
        let not_a_chain = || {
            plan_err!(
                "{F}(): the rule of '{name}' is not a single SELECT ... FROM ... WHERE with conditions joined by AND"
            )
        };
        let [Statement::Query(q)] = parsed.as_slice() else { return not_a_chain() };
        let SetExpr::Select(select) = q.body.as_ref() else { return not_a_chain() };
        if q.with.is_some()
            || !matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
            || select.having.is_some()
            || select.distinct.is_some()
        {
            return not_a_chain();
        }
        let Some(selection) = &select.selection else { return not_a_chain() };
        fn conjuncts(e: &SqlExpr, out: &mut Vec<String>) {
            match e {
                SqlExpr::BinaryOp { left, op: BinaryOperator::And, right } => {
                    conjuncts(left, out);
                    conjuncts(right, out);
                }
                SqlExpr::Nested(inner)
                    if matches!(inner.as_ref(), SqlExpr::BinaryOp { op: BinaryOperator::And, .. }) =>
                {
                    conjuncts(inner, out)
                }
                other => out.push(other.to_string()),
            }
        }
        let mut conditions = Vec::new();
        conjuncts(selection, &mut conditions);
        let from: Vec<String> = select.from.iter().map(|t| t.to_string()).collect();
        let from = from.join(", ");
        // The users are counted by the rule's own user_id column (`u.user_id` when it joins).
        let user_id = select
            .projection
            .iter()
            .find_map(|item| {
                use datafusion::sql::sqlparser::ast::SelectItem;
                let (e, alias) = match item {
                    SelectItem::UnnamedExpr(e) => (e, None),
                    SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.as_str())),
                    _ => return None,
                };
                let named = match e {
                    SqlExpr::Identifier(i) => i.value.eq_ignore_ascii_case(crate::tables::USER_ID),
                    SqlExpr::CompoundIdentifier(parts) => {
                        parts.last().is_some_and(|i| i.value.eq_ignore_ascii_case(crate::tables::USER_ID))
                    }
                    _ => false,
                };
                (named || alias.is_some_and(|a| a.eq_ignore_ascii_case(crate::tables::USER_ID))).then(|| e.to_string())
            })
            .unwrap_or_else(|| crate::tables::USER_ID.to_string());
        let mut steps = vec![format!(
            "SELECT 0 AS step, 'everyone' AS condition, (SELECT count(DISTINCT {user_id}) FROM {from}) AS users"
        )];
        for k in 1..=conditions.len() {
            steps.push(format!(
                "SELECT {k} AS step, {} AS condition, (SELECT count(DISTINCT {user_id}) FROM {from} WHERE {}) AS users",
                string_literal(&conditions[k - 1]),
                conditions[..k].iter().map(|c| format!("({c})")).collect::<Vec<_>>().join(" AND ")
            ));
        }
        let sql = format!(
            "SELECT CAST(step AS BIGINT) AS step, CAST(condition AS VARCHAR) AS condition, CAST(users AS BIGINT) AS users, \
             CAST(lag(users) OVER (ORDER BY step) - users AS BIGINT) AS removed, \
             CAST(users AS DOUBLE) / CAST(first_value(users) OVER (ORDER BY step) AS DOUBLE) AS share_of_everyone \
             FROM ({}) s ORDER BY step",
            steps.join(" UNION ALL ")
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("step", DataType::Int64, true),
            Field::new("condition", DataType::Utf8, true),
            Field::new("users", DataType::Int64, true),
            Field::new("removed", DataType::Int64, true),
            Field::new("share_of_everyone", DataType::Float64, true),
        ]));
        Ok(Arc::new(crate::audience::sql_view::SqlView::new(sql, schema)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_partition_the_union() {
        let a: RoaringBitmap = (0..100).collect();
        let b: RoaringBitmap = (50..150).collect();
        let c: RoaringBitmap = (90..95).chain(200..210).collect();
        let sizes = regions(&[&a, &b, &c]);
        assert_eq!(sizes[0b001], 50); // a only
        assert_eq!(sizes[0b010], 50); // b only
        assert_eq!(sizes[0b011], 45); // a & b, not c: 50..100 minus 90..95
        assert_eq!(sizes[0b111], 5);
        assert_eq!(sizes[0b100], 10);
        assert_eq!(sizes.iter().sum::<u64>(), (&a | &b | &c).len());
    }

    #[test]
    fn like_patterns_match_as_sql_does() {
        let m = like_matcher("vip%");
        assert!(m("vip") && m("vip_gold") && !m("xvip"));
        let m = like_matcher("%fan");
        assert!(m("wechat_fan") && !m("fans"));
        let m = like_matcher("a_c%");
        assert!(m("abc") && m("abcd") && !m("ac"));
        let m = like_matcher("%");
        assert!(m("") && m("anything"));
    }
}
