//! Person-level SQL over the version's identity resolution (docs/identity.md): the
//! `user_persons` table (each user's `person_id`), the `identity_links` table (every identifier
//! link with its outcome and the rule that decided it), `identity_splits` (the splits made by
//! hand, with their time), the `persons` view (one row per person with its surviving profile
//! values) and `explain_merge(user_a, user_b)`, the chain of identifiers that joined two users.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType};
use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::audience::sql_view::SqlView;
use crate::error::{Error, IoContext, Result};
use crate::ingest::identity::{links_schema, persons_schema};
use crate::ingest::resolve::{KindRule, Link, LinkKey, Outcome, explain_chain};
use crate::store::identity::{IdentityRules, Resolution, Split, Survivorship};
use crate::store::{Snapshot, layout};
use crate::tables::{ColumnType, ID_TYPE, ID_VALUE, ROW_ID_COLUMN, SOURCE, TS, USER_ID};

/// Registers the person-level tables, view and function in `ctx`.
pub fn register(ctx: &SessionContext, snapshot: &Snapshot) -> Result<()> {
    let manifest = snapshot.manifest();
    let resolution = manifest.identity.resolution.clone();
    let file = |f: fn(&Resolution) -> &String| resolution.as_ref().map(|r| layout::resolve(snapshot.root(), f(r)));
    let links: Vec<std::path::PathBuf> = resolution
        .as_ref()
        .map(|r| r.link_files().into_iter().map(|f| layout::resolve(snapshot.root(), f)).collect())
        .unwrap_or_default();
    let links_sql_schema = without_row_id(&links_schema());
    let overrides: Option<std::path::PathBuf> =
        resolution.as_ref().and_then(|r| r.link_overrides.as_ref()).map(|f| layout::resolve(snapshot.root(), f));
    let stored = parquet_table(&links, Arc::clone(&links_sql_schema))?;
    let identity_links = match &overrides {
        Some(path) => with_overrides(ctx, stored, &links_sql_schema, path)?,
        None => stored,
    };
    ctx.register_table("identity_links", identity_links)?;
    let persons: Vec<std::path::PathBuf> = file(|r| &r.persons).into_iter().collect();
    ctx.register_table("user_persons", parquet_table(&persons, persons_schema())?)?;
    let rules = manifest.identity.rules();
    ctx.register_table(
        "persons",
        Arc::new(persons_view(&manifest.columns(crate::tables::Table::Users), &rules.survivorship)),
    )?;
    ctx.register_table("identity_splits", Arc::new(splits_table(&manifest.identity.splits)?))?;
    ctx.register_udtf("audience_persons", Arc::new(AudiencePersons));
    ctx.register_udtf(
        "explain_merge",
        Arc::new(ExplainMerge { links, overrides, persons: file(|r| &r.persons), rules: manifest.identity.rules() }),
    );
    Ok(())
}

/// `identity_splits`: every split made by hand (`UNLINK`, `persona identity split`), oldest
/// first, as the manifest keeps them for every later import.
fn splits_table(splits: &[Split]) -> Result<MemTable> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("user_a", DataType::Utf8, true),
        Field::new("user_b", DataType::Utf8, true),
        Field::new(ID_TYPE, DataType::Utf8, true),
        Field::new(ID_VALUE, DataType::Utf8, true),
        Field::new("at", DataType::Timestamp(TimeUnit::Second, Some("UTC".into())), true),
    ]));
    let mut columns: [Vec<Option<String>>; 5] = Default::default();
    let mut at = Vec::with_capacity(splits.len());
    for split in splits {
        let (kind, a, b, t, v, when) = match split {
            Split::Pair { a, b, at } => ("users", Some(a), Some(b), None, None, at),
            Split::Value { id_type, id_value, at } => ("value", None, None, Some(id_type), Some(id_value), at),
        };
        for (column, value) in columns.iter_mut().zip([Some(&kind.to_string()), a, b, t, v]) {
            column.push(value.cloned());
        }
        at.push(chrono::DateTime::parse_from_rfc3339(when).ok().map(|t| t.timestamp()));
    }
    let mut arrays: Vec<arrow::array::ArrayRef> =
        columns.into_iter().map(|c| Arc::new(StringArray::from(c)) as arrow::array::ArrayRef).collect();
    arrays.push(Arc::new(arrow::array::TimestampSecondArray::from(at).with_timezone("UTC")));
    let batch = RecordBatch::try_new(Arc::clone(&schema), arrays)?;
    Ok(MemTable::try_new(schema, vec![vec![batch]])?)
}

fn without_row_id(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(schema.fields().iter().filter(|f| f.name() != ROW_ID_COLUMN).cloned().collect::<Vec<_>>()))
}

/// The stored links with the outcomes a split changed since they were written (a link's
/// `status` and `reason` from the overrides file at `path` where it lists the link's `seq`).
fn with_overrides(
    ctx: &SessionContext,
    stored: Arc<dyn TableProvider>,
    schema: &SchemaRef,
    path: &Path,
) -> Result<Arc<dyn TableProvider>> {
    use datafusion::functions::expr_fn::coalesce;
    use datafusion::logical_expr::{JoinType, col, when};
    // Read when a query reads the links, not when a session opens: a forget lists every link of
    // its users here.
    let file = parquet_table(&[path.to_path_buf()], crate::ingest::identity::overrides_schema())?;
    let overrides = ctx.read_table(file)?.select(vec![
        col("seq").alias("o_seq"),
        col("status").alias("o_status"),
        col("reason").alias("o_reason"),
    ])?;
    let columns: Vec<Expr> = schema
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "status" => Ok(coalesce(vec![col("o_status"), col("status")]).alias("status")),
            "reason" => Ok(when(col("o_seq").is_null(), col("reason")).otherwise(col("o_reason"))?.alias("reason")),
            name => Ok(col(name)),
        })
        .collect::<DfResult<_>>()?;
    // A forgotten user's links stay in the links files until a purge: no reader sees them.
    let hidden = crate::ingest::identity::FORGOTTEN;
    let view = ctx
        .read_table(stored)?
        .join(overrides, JoinType::Left, &["seq"], &["o_seq"], None)?
        .select(columns)?
        .filter(col("status").not_eq(datafusion::prelude::lit(hidden)))?;
    Ok(view.into_view())
}

/// Parquet files as one table of `schema` (their other columns unread); no files, an empty table.
fn parquet_table(paths: &[std::path::PathBuf], schema: SchemaRef) -> Result<Arc<dyn TableProvider>> {
    if paths.is_empty() {
        return Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?));
    }
    let mut urls = Vec::with_capacity(paths.len());
    for path in paths {
        let absolute = std::path::absolute(path).io_context("resolve", path)?;
        let url = url::Url::from_file_path(&absolute)
            .map_err(|()| Error::Failed(format!("{} cannot be written as a file URL", absolute.display())))?;
        urls.push(ListingTableUrl::try_new(url, None)?);
    }
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options).with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// The SQL of the `persons` view: per person, its profiles (in load order), and for every users
/// column the value its survivorship rule picks (most recent non-null unless the rules say).
pub fn persons_sql(users_columns: &[crate::tables::ColumnDef], rules: &BTreeMap<String, Survivorship>) -> String {
    let mut select = vec![
        "up.person_id AS person_id".to_string(),
        "count(*) AS profiles".to_string(),
        "string_agg(u.user_id, ',' ORDER BY up.profile_seq) AS user_ids".to_string(),
    ];
    for c in users_columns.iter().filter(|c| c.name != USER_ID) {
        let q = format!("\"{}\"", c.name.replace('"', "\"\""));
        let value = match rules.get(&c.name).copied().unwrap_or_default() {
            Survivorship::MostRecent => format!("first_value(u.{q} ORDER BY up.profile_seq DESC)"),
            Survivorship::Oldest => format!("first_value(u.{q} ORDER BY up.profile_seq)"),
            Survivorship::Max => format!("max(u.{q})"),
            Survivorship::Min => format!("min(u.{q})"),
        };
        select.push(format!("{value} FILTER (WHERE u.{q} IS NOT NULL) AS {q}"));
    }
    format!(
        "SELECT {} FROM user_persons up JOIN users u ON u.user_id = up.user_id GROUP BY up.person_id",
        select.join(", ")
    )
}

fn persons_view(users_columns: &[crate::tables::ColumnDef], rules: &BTreeMap<String, Survivorship>) -> SqlView {
    let mut fields = vec![
        Field::new("person_id", DataType::Int64, true),
        Field::new("profiles", DataType::Int64, true),
        Field::new("user_ids", DataType::Utf8, true),
    ];
    fields.extend(
        users_columns
            .iter()
            .filter(|c| c.name != USER_ID)
            .map(|c| Field::new(&c.name, ColumnType::arrow_type(c.ty), true)),
    );
    SqlView::new(persons_sql(users_columns, rules), Arc::new(Schema::new(fields)))
}

/// `audience_persons('name' [, version])`: the persons of a saved audience's members (holdout
/// left out), one row each, with all their profiles and contact points — a person is in when any
/// of its profiles is a member.
#[derive(Debug)]
struct AudiencePersons;

/// The SQL of `audience_persons`, over `audience_members(<members_args>)`.
pub fn audience_persons_sql(members_args: &str) -> String {
    persons_of_profiles_sql(&format!("SELECT user_id FROM audience_members({members_args}) WHERE NOT holdout"))
}

/// One row per person that `profiles` (a query yielding `user_id`) touches, with every profile
/// and contact point of the person: `person_id, profiles, user_ids, phones, emails, wx_unionids`.
pub fn persons_of_profiles_sql(profiles: &str) -> String {
    let contact = |t: &str, name: &str| {
        format!(
            "array_to_string(array_sort(array_agg(DISTINCT c.id_value) FILTER (WHERE c.id_type = '{t}')), ',') AS {name}"
        )
    };
    format!(
        "WITH members AS (SELECT DISTINCT up.person_id FROM ({profiles}) m \
           JOIN user_persons up ON up.user_id = m.user_id), \
         profiles AS (SELECT up.person_id, count(*) AS profiles, \
           string_agg(up.user_id, ',' ORDER BY up.profile_seq) AS user_ids \
           FROM user_persons up JOIN members ON members.person_id = up.person_id GROUP BY up.person_id), \
         contacts AS (SELECT up.person_id, l.id_type, l.id_value FROM identity_links l \
           JOIN user_persons up ON up.user_id = l.user_id JOIN members ON members.person_id = up.person_id \
           WHERE l.status IN ('linked', 'joined')) \
         SELECT p.person_id, p.profiles, p.user_ids, {}, {}, {} \
         FROM profiles p LEFT JOIN contacts c ON c.person_id = p.person_id \
         GROUP BY p.person_id, p.profiles, p.user_ids",
        contact("phone", "phones"),
        contact("email", "emails"),
        contact("wx_unionid", "wx_unionids"),
    )
}

/// The rows a `BY PERSON` audience's file holds: its exported persons (members minus holdout)
/// with every contact point; with `since`, the persons with a profile exported now and not in
/// version `since` (all their contact points, `change` = `added`), then per person the profiles
/// exported in `since` and not now (`user_ids` lists those, `change` = `removed`).
pub fn persons_export_sql(audience: &str, since: Option<u32>) -> String {
    let name = format!("'{}'", audience.replace('\'', "''"));
    let now = format!("SELECT user_id FROM audience_members({name}) WHERE NOT holdout");
    let Some(since) = since else {
        return format!("SELECT * FROM ({}) ORDER BY person_id", persons_of_profiles_sql(&now));
    };
    let before = format!("SELECT user_id FROM audience_members({name}, {since}) WHERE NOT holdout");
    format!(
        "SELECT * FROM (\
           SELECT a.*, 'added' AS change FROM ({added}) a \
           UNION ALL \
           SELECT up.person_id, count(*) AS profiles, string_agg(up.user_id, ',' ORDER BY up.profile_seq) AS user_ids, \
             CAST(NULL AS VARCHAR) AS phones, CAST(NULL AS VARCHAR) AS emails, CAST(NULL AS VARCHAR) AS wx_unionids, \
             'removed' AS change \
           FROM ({before} EXCEPT {now}) r JOIN user_persons up ON up.user_id = r.user_id GROUP BY up.person_id\
         ) ORDER BY change, person_id",
        added = persons_of_profiles_sql(&format!("{now} EXCEPT {before}")),
    )
}

impl TableFunctionImpl for AudiencePersons {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        const USAGE: &str = "audience_persons() takes a saved audience's name and optionally a version, e.g. audience_persons('lapsed') or audience_persons('lapsed', 2)";
        let literal = |e: &Expr| match e {
            Expr::Literal(
                ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)),
                _,
            ) => Some(format!("'{}'", s.replace('\'', "''"))),
            _ => None,
        };
        let version = |e: &Expr| match e {
            Expr::Literal(v, _) if v.data_type().is_integer() && !v.is_null() => Some(v.to_string()),
            _ => None,
        };
        let members_args = match args.exprs() {
            [name] => literal(name),
            [name, v] => literal(name).zip(version(v)).map(|(n, v)| format!("{n}, {v}")),
            _ => None,
        };
        let Some(members_args) = members_args else { return plan_err!("{USAGE}") };
        let schema = Arc::new(Schema::new(vec![
            Field::new("person_id", DataType::Int64, true),
            Field::new("profiles", DataType::Int64, true),
            Field::new("user_ids", DataType::Utf8, true),
            Field::new("phones", DataType::Utf8, true),
            Field::new("emails", DataType::Utf8, true),
            Field::new("wx_unionids", DataType::Utf8, true),
        ]));
        Ok(Arc::new(SqlView::new(audience_persons_sql(&members_args), schema)))
    }
}

/// `explain_merge('u1', 'u2')`: one row per step of the shortest chain of shared identifiers
/// that joined the two users (none when they are not one person).
#[derive(Debug)]
struct ExplainMerge {
    /// The links files in processing order (none before any resolution).
    links: Vec<std::path::PathBuf>,
    /// The outcomes a split changed since the links were written.
    overrides: Option<std::path::PathBuf>,
    persons: Option<std::path::PathBuf>,
    rules: IdentityRules,
}

fn explain_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    Arc::new(Schema::new(vec![
        Field::new("step", DataType::Int64, false),
        Field::new("from_user", DataType::Utf8, false),
        Field::new("to_user", DataType::Utf8, false),
        Field::new(ID_TYPE, DataType::Utf8, false),
        Field::new(ID_VALUE, DataType::Utf8, false),
        Field::new("from_source", DataType::Utf8, true),
        Field::new("to_source", DataType::Utf8, true),
        Field::new("from_ts", ts.clone(), true),
        Field::new("to_ts", ts, true),
    ]))
}

/// Every batch of the identity file at `path`, whose columns must be `schema`'s (names and types,
/// in order; then its batches' columns are read by position and type without a check).
fn read_all(path: &Path, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let corrupt = |e: &dyn std::fmt::Display| Error::corrupt(path, e.to_string());
    let file = std::fs::File::open(path).io_context("open", path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| corrupt(&e))?;
    let found = builder.schema().fields();
    let same = found.len() == schema.fields().len()
        && found.iter().zip(schema.fields()).all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if !same {
        return Err(corrupt(&"its columns are not those of an identity file"));
    }
    builder.build().map_err(|e| corrupt(&e))?.map(|b| b.map_err(|e| corrupt(&e))).collect()
}

impl TableFunctionImpl for ExplainMerge {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let text = |e: &Expr| match e {
            Expr::Literal(
                ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)),
                _,
            ) => Some(s.clone()),
            _ => None,
        };
        let [a, b] = args.exprs() else {
            return plan_err!("explain_merge() takes two user_ids, e.g. explain_merge('u1', 'u2')");
        };
        let (Some(a), Some(b)) = (text(a), text(b)) else {
            return plan_err!(
                "explain_merge(): both arguments must be user_id strings, e.g. explain_merge('u1', 'u2')"
            );
        };
        let batch = self.explain(&a, &b).map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        Ok(Arc::new(MemTable::try_new(explain_schema(), vec![vec![batch]])?))
    }
}

impl ExplainMerge {
    fn explain(&self, a: &str, b: &str) -> Result<RecordBatch> {
        let (false, Some(persons_path)) = (self.links.is_empty(), &self.persons) else {
            return Err(Error::Usage(
                "explain_merge(): the store has no identity resolution yet (import an identities table first)".into(),
            ));
        };
        // Each user's row and person.
        let mut person_of: HashMap<String, (u32, i64)> = HashMap::new();
        for batch in read_all(persons_path, &persons_schema())? {
            let users = batch.column(0).as_string::<i32>();
            let persons = batch.column(1).as_primitive::<arrow::datatypes::Int64Type>();
            let rows = batch.column(2).as_primitive::<arrow::datatypes::Int64Type>();
            for i in 0..batch.num_rows() {
                person_of.insert(users.value(i).to_string(), (rows.value(i) as u32, persons.value(i)));
            }
        }
        let known = |u: &str| {
            person_of
                .get(u)
                .copied()
                .ok_or_else(|| Error::Usage(format!("explain_merge(): '{u}' is not a known user_id")))
        };
        let ((row_a, person_a), (row_b, person_b)) = (known(a)?, known(b)?);
        let user_of_row: HashMap<u32, &str> = person_of.iter().map(|(u, (r, _))| (*r, u.as_str())).collect();
        let kinds: Vec<&String> = self.rules.types.keys().collect();
        let kind_rules: Vec<KindRule> = self
            .rules
            .types
            .values()
            .map(|r| KindRule { priority: r.priority, max_per_person: r.max_per_person, unique: r.unique })
            .collect();
        // The links of the person's users, with their sources and times for the answer.
        let mut links = Vec::new();
        let mut keys = Vec::new();
        let mut outcomes = Vec::new();
        let mut detail: Vec<(String, String, Option<String>, Option<i64>)> = Vec::new();
        let mut values: HashMap<(u16, String), u32> = HashMap::new();
        if person_a == person_b {
            let overrides = match &self.overrides {
                Some(path) => crate::ingest::identity::read_link_overrides(path)?,
                None => BTreeMap::new(),
            };
            let stored = self.links.iter().map(|p| read_all(p, &links_schema())).collect::<Result<Vec<_>>>()?;
            for batch in stored.into_iter().flatten() {
                let col = |n: &str| batch.column(batch.schema().index_of(n).expect("the links schema"));
                let rows = col(ROW_ID_COLUMN).as_primitive::<arrow::datatypes::UInt32Type>();
                let (types, vals, sources, status) = (
                    col(ID_TYPE).as_string::<i32>(),
                    col(ID_VALUE).as_string::<i32>(),
                    col(SOURCE).as_string::<i32>(),
                    col("status").as_string::<i32>(),
                );
                let ts = col(TS).as_primitive::<TimestampMicrosecondType>();
                let seqs = col("seq").as_primitive::<arrow::datatypes::UInt64Type>();
                for i in 0..batch.num_rows() {
                    let row = rows.value(i);
                    let now = overrides.get(&seqs.value(i)).map(|(s, _)| s.as_str());
                    let outcome = match now.unwrap_or(status.value(i)) {
                        "linked" => Outcome::Linked,
                        "joined" => Outcome::Joined,
                        "dropped" => Outcome::Dropped { kind: 0 },
                        _ => continue,
                    };
                    let Some(kind) = kinds.iter().position(|k| k.as_str() == types.value(i)) else { continue };
                    if user_of_row.get(&row).and_then(|u| person_of.get(*u)).is_none_or(|(_, p)| *p != person_a) {
                        continue;
                    }
                    let next = values.len() as u32;
                    let value = *values.entry((kind as u16, vals.value(i).to_string())).or_insert(next);
                    keys.push(LinkKey { ts: if ts.is_valid(i) { ts.value(i) } else { i64::MIN }, seq: seqs.value(i) });
                    links.push(Link { user: row, kind: kind as u16, value, denied: false });
                    outcomes.push(outcome);
                    detail.push((
                        types.value(i).to_string(),
                        vals.value(i).to_string(),
                        sources.is_valid(i).then(|| sources.value(i).to_string()),
                        ts.is_valid(i).then(|| ts.value(i)),
                    ));
                }
            }
        }
        // In processing order (a links file is in arrival order, its segments one after another).
        let mut order: Vec<usize> = (0..links.len()).collect();
        order.sort_by_key(|&i| keys[i]);
        let links: Vec<Link> = order.iter().map(|&i| links[i]).collect();
        let outcomes: Vec<Outcome> = order.iter().map(|&i| outcomes[i]).collect();
        let detail: Vec<_> = order.iter().map(|&i| detail[i].clone()).collect();
        let chain = if person_a == person_b {
            explain_chain(&links, &outcomes, &kind_rules, |_| true, row_a, row_b).unwrap_or_default()
        } else {
            Vec::new()
        };
        let name = |row: u32| user_of_row.get(&row).copied().unwrap_or_default().to_string();
        let step: Vec<i64> = (1..=chain.len() as i64).collect();
        let from: Vec<String> = chain.iter().map(|s| name(s.from_user)).collect();
        let to: Vec<String> = chain.iter().map(|s| name(s.to_user)).collect();
        let id_type: Vec<&str> = chain.iter().map(|s| detail[s.from_link].0.as_str()).collect();
        let id_value: Vec<&str> = chain.iter().map(|s| detail[s.from_link].1.as_str()).collect();
        let from_source: Vec<Option<&str>> = chain.iter().map(|s| detail[s.from_link].2.as_deref()).collect();
        let to_source: Vec<Option<&str>> = chain.iter().map(|s| detail[s.to_link].2.as_deref()).collect();
        let from_ts: Vec<Option<i64>> = chain.iter().map(|s| detail[s.from_link].3).collect();
        let to_ts: Vec<Option<i64>> = chain.iter().map(|s| detail[s.to_link].3).collect();
        Ok(RecordBatch::try_new(
            explain_schema(),
            vec![
                Arc::new(Int64Array::from(step)),
                Arc::new(StringArray::from(from)),
                Arc::new(StringArray::from(to)),
                Arc::new(StringArray::from(id_type)),
                Arc::new(StringArray::from(id_value)),
                Arc::new(StringArray::from(from_source)),
                Arc::new(StringArray::from(to_source)),
                Arc::new(TimestampMicrosecondArray::from(from_ts)),
                Arc::new(TimestampMicrosecondArray::from(to_ts)),
            ],
        )?)
    }
}
