//! What SQL sees of the catalog: the tables `tags`, `audiences`, `audience_versions` and `models`; every
//! saved audience as a table of its members' users rows; and the table functions
//! `audience_members('name' [, version])` and `audience_diff('name', v1, v2)`; and registers the
//! analytics functions (`overlap`, `breakdown`, ..., `association_rules`, `recommend`).

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session as CatalogSession, TableFunctionImpl, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use roaring::RoaringBitmap;

use crate::audience::members::for_each_member_id;
use crate::error::{Error, Result};
use crate::index::IndexSet;
use crate::query::bitmap_scan::{UsersFile, bitmap_scan};
use crate::store::Snapshot;
use crate::store::catalog::{Audience, AudienceVersion, Catalog, EvaluatedNow};
use crate::tables::USER_ID;

/// A table whose one batch is built when it is scanned (so that opening a session costs nothing).
struct LazyTable {
    schema: SchemaRef,
    build: Box<dyn Fn() -> Result<RecordBatch> + Send + Sync>,
}

impl std::fmt::Debug for LazyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyTable").field("schema", &self.schema).finish()
    }
}

#[async_trait]
impl TableProvider for LazyTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = (self.build)()?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], Arc::clone(&self.schema), projection.cloned())?)
    }
}

/// The users rows of a saved audience's latest members.
#[derive(Debug)]
pub struct AudienceTable {
    name: String,
    schema: SchemaRef,
    files: Vec<UsersFile>,
    index: Arc<IndexSet>,
}

#[async_trait]
impl TableProvider for AudienceTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let members = self
            .index
            .saved_audience(&self.name)?
            .ok_or_else(|| crate::store::catalog::no_such_audience(&self.name))?;
        let partitions = state.config().target_partitions();
        bitmap_scan(&self.files, Arc::clone(&self.schema), Some(&members), projection, limit, partitions)
    }
}

/// Each saved audience's table of members.
pub fn audience_tables(
    snapshot: &Snapshot,
    index: &Arc<IndexSet>,
    users_schema: &SchemaRef,
    users_files: &[UsersFile],
) -> Vec<(String, Arc<dyn TableProvider>)> {
    snapshot
        .manifest()
        .catalog
        .audiences
        .iter()
        .map(|audience| {
            let table: Arc<dyn TableProvider> = Arc::new(AudienceTable {
                name: audience.name.clone(),
                schema: Arc::clone(users_schema),
                files: users_files.to_vec(),
                index: Arc::clone(index),
            });
            (audience.name.clone(), table)
        })
        .collect()
}

/// Registers the catalog's tables, the audiences' tables and the table functions in `ctx`.
pub fn register(
    ctx: &SessionContext,
    snapshot: &Snapshot,
    index: &Arc<IndexSet>,
    users_files: &[UsersFile],
    audiences: &[(String, Arc<dyn TableProvider>)],
) -> Result<()> {
    let catalog = snapshot.manifest().catalog.clone();
    ctx.register_table("tags", Arc::new(tags_table(Arc::clone(index), catalog.clone())))?;
    ctx.register_table("audiences", Arc::new(audiences_table(catalog.clone())))?;
    ctx.register_table("audience_versions", Arc::new(versions_table(catalog.clone())))?;
    let models = catalog.clone();
    ctx.register_table(
        "models",
        Arc::new(LazyTable {
            schema: crate::audience::model::models_schema(),
            build: Box::new(move || crate::audience::model::models_batch(&models)),
        }),
    )?;
    ctx.register_table("rfm", Arc::new(crate::audience::rfm::rfm_view()))?;
    ctx.register_table("lifecycle", Arc::new(crate::audience::lifecycle::lifecycle_view()))?;
    ctx.register_udtf("lifecycle_flow", Arc::new(crate::audience::lifecycle::LifecycleFlowFunction));
    ctx.register_table("churn_risk", Arc::new(crate::audience::churn::churn_risk_view()))?;
    ctx.register_udtf("churn_backtest", Arc::new(crate::audience::churn::ChurnBacktestFunction));
    let functions =
        AudienceFunctions { catalog: Arc::new(catalog.clone()), index: Arc::clone(index), files: users_files.to_vec() };
    ctx.register_udtf("audience_members", Arc::new(MembersFunction(functions.clone())));
    ctx.register_udtf("audience_diff", Arc::new(DiffFunction(functions)));
    ctx.register_udtf("predict", Arc::new(crate::audience::model::PredictFunction(Arc::new(catalog.clone()))));
    let analytics = crate::audience::analytics::Analytics { index: Arc::clone(index), catalog: Arc::new(catalog) };
    ctx.register_udtf("overlap", Arc::new(crate::audience::analytics::OverlapFunction(analytics.clone())));
    ctx.register_udtf("breakdown", Arc::new(crate::audience::analytics::BreakdownFunction(analytics.clone())));
    ctx.register_udtf("top_tags", Arc::new(crate::audience::analytics::TopTagsFunction(analytics.clone())));
    ctx.register_udtf("funnel", Arc::new(crate::audience::analytics::FunnelFunction));
    ctx.register_udtf("funnel_by", Arc::new(crate::audience::analytics::FunnelByFunction));
    ctx.register_udtf("attrition", Arc::new(crate::audience::analytics::AttritionFunction(analytics.clone())));
    ctx.register_udtf("campaign_lift", Arc::new(crate::audience::analytics::CampaignLiftFunction(analytics)));
    let baskets = crate::audience::baskets::Baskets::new(Arc::clone(index));
    ctx.register_udtf(
        "association_rules",
        Arc::new(crate::audience::baskets::AssociationRulesFunction(baskets.clone())),
    );
    ctx.register_udtf("recommend", Arc::new(crate::audience::baskets::RecommendFunction(baskets)));
    ctx.register_relation_planner(Arc::new(crate::audience::baskets::NamedArguments))?;
    crate::audience::persons::register(ctx, snapshot)?;
    for (name, table) in audiences {
        // A name that collides with a table of the session stays reachable through in_audience.
        if !ctx.table_exist(name.as_str())? {
            ctx.register_table(name.as_str(), Arc::clone(table))?;
        }
    }
    Ok(())
}

/// The catalog tables and their schemas (for completion and documentation).
pub fn catalog_tables() -> Vec<(&'static str, SchemaRef)> {
    vec![
        ("tags", tags_schema()),
        ("audiences", audiences_schema()),
        ("audience_versions", versions_schema()),
        ("models", crate::audience::model::models_schema()),
    ]
}

fn tags_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("name", false),
        utf8("kind", false),
        utf8("rule", true),
        Field::new("users", DataType::UInt64, false),
        utf8("computed_at", true),
        utf8("now", true),
        Field::new("now_pinned", DataType::Boolean, true),
    ]))
}

fn audiences_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("name", false),
        utf8("query", false),
        utf8("suppress", true),
        Field::new("holdout_percent", DataType::Float64, false),
        Field::new("version", DataType::UInt32, false),
        Field::new("members", DataType::UInt64, false),
        Field::new("holdout", DataType::UInt64, false),
        Field::new("exported", DataType::UInt64, false),
        utf8("computed_at", false),
        utf8("created_at", false),
        Field::new("by_person", DataType::Boolean, false),
    ]))
}

fn versions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("audience", false),
        Field::new("version", DataType::UInt32, false),
        Field::new("members", DataType::UInt64, false),
        Field::new("holdout", DataType::UInt64, false),
        Field::new("suppressed", DataType::UInt64, false),
        Field::new("added", DataType::UInt64, false),
        Field::new("removed", DataType::UInt64, false),
        utf8("computed_at", false),
        Field::new("store_version", DataType::UInt64, false),
        utf8("now", true),
        Field::new("now_pinned", DataType::Boolean, true),
        Field::new("profiles", DataType::UInt64, true),
    ]))
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// name, kind, rule, users, computed_at, now
type TagLine = (String, &'static str, Option<String>, u64, Option<String>, Option<EvaluatedNow>);

fn tags_table(index: Arc<IndexSet>, catalog: Catalog) -> LazyTable {
    let schema = tags_schema();
    let out = Arc::clone(&schema);
    LazyTable {
        schema,
        build: Box::new(move || {
            let mut rows: Vec<TagLine> = Vec::new();
            for name in index.tag_names() {
                let users = index.get(crate::index::format::BitmapKind::Tag, &name, "")?.len();
                match catalog.tag(&name) {
                    Some(rule) => rows.push((
                        name,
                        "rule",
                        Some(rule.rule.clone()),
                        users,
                        Some(rule.computed_at.clone()),
                        rule.now.clone(),
                    )),
                    None => rows.push((name, "loaded", None, users, None, None)),
                }
            }
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.2.as_deref()))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.3))),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.4.as_deref()))),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.5.as_ref().map(|n| n.at.as_str())))),
                Arc::new(BooleanArray::from_iter(rows.iter().map(|r| r.5.as_ref().map(|n| n.pinned)))),
            ];
            Ok(RecordBatch::try_new(Arc::clone(&out), columns)?)
        }),
    }
}

fn audiences_table(catalog: Catalog) -> LazyTable {
    let schema = audiences_schema();
    let out = Arc::clone(&schema);
    LazyTable {
        schema,
        build: Box::new(move || {
            let list: Vec<&Audience> = catalog.audiences.iter().collect();
            let latest = |a: &Audience| a.latest().cloned();
            let suppress = |a: &Audience| {
                let mut parts: Vec<String> = a.suppress_audiences.clone();
                parts.extend(a.suppress_files.iter().map(|f| format!("FILE '{f}'")));
                (!parts.is_empty()).then(|| parts.join(", "))
            };
            let versions: Vec<_> = list.iter().map(|a| latest(a)).collect();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(list.iter().map(|a| a.name.as_str()))),
                Arc::new(StringArray::from_iter_values(list.iter().map(|a| a.query.as_str()))),
                Arc::new(StringArray::from_iter(list.iter().map(|a| suppress(a)))),
                Arc::new(Float64Array::from_iter_values(list.iter().map(|a| a.holdout_percent()))),
                Arc::new(UInt32Array::from_iter_values(versions.iter().map(|v| v.as_ref().map_or(0, |v| v.number)))),
                Arc::new(UInt64Array::from_iter_values(versions.iter().map(|v| v.as_ref().map_or(0, |v| v.members)))),
                Arc::new(UInt64Array::from_iter_values(versions.iter().map(|v| v.as_ref().map_or(0, |v| v.holdout)))),
                Arc::new(UInt64Array::from_iter_values(
                    versions.iter().map(|v| v.as_ref().map_or(0, |v| v.members - v.holdout)),
                )),
                Arc::new(StringArray::from_iter_values(
                    versions.iter().map(|v| v.as_ref().map_or(String::new(), |v| v.computed_at.clone())),
                )),
                Arc::new(StringArray::from_iter_values(list.iter().map(|a| a.created_at.as_str()))),
                Arc::new(BooleanArray::from_iter(list.iter().map(|a| Some(a.by_person)))),
            ];
            Ok(RecordBatch::try_new(Arc::clone(&out), columns)?)
        }),
    }
}

fn versions_table(catalog: Catalog) -> LazyTable {
    let schema = versions_schema();
    let out = Arc::clone(&schema);
    LazyTable {
        schema,
        build: Box::new(move || {
            let rows: Vec<(&str, &AudienceVersion)> =
                catalog.audiences.iter().flat_map(|a| a.versions.iter().map(move |v| (a.name.as_str(), v))).collect();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.1.number))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1.members))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1.holdout))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1.suppressed))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1.added))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1.removed))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.computed_at.as_str()))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1.computed_on))),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1.now.as_ref().map(|n| n.at.as_str())))),
                Arc::new(BooleanArray::from_iter(rows.iter().map(|r| r.1.now.as_ref().map(|n| n.pinned)))),
                Arc::new(UInt64Array::from_iter(rows.iter().map(|r| r.1.profiles))),
            ];
            Ok(RecordBatch::try_new(Arc::clone(&out), columns)?)
        }),
    }
}

/// What the table functions read.
#[derive(Debug, Clone)]
struct AudienceFunctions {
    catalog: Arc<Catalog>,
    index: Arc<IndexSet>,
    files: Vec<UsersFile>,
}

impl AudienceFunctions {
    fn audience(&self, function: &str, args: &[Expr]) -> DfResult<&Audience> {
        let name = match args.first() {
            Some(Expr::Literal(v, _)) => v.try_as_str().flatten().map(str::to_string),
            _ => None,
        };
        let Some(name) = name else {
            return plan_err!("{function}() takes an audience name as text first, e.g. {function}('lapsed_gold', ...)");
        };
        match self.catalog.audience(&name) {
            Some(a) => Ok(a),
            None => plan_err!("there is no saved audience '{name}' (SHOW AUDIENCES lists them)"),
        }
    }

    fn version_arg(&self, function: &str, audience: &Audience, arg: Option<&Expr>) -> DfResult<u32> {
        let number = match arg {
            None => return Ok(audience.latest().map_or(0, |v| v.number)),
            Some(Expr::Literal(v, _)) => match v.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(Some(n))) => u32::try_from(n).ok(),
                _ => None,
            },
            Some(_) => None,
        };
        match number {
            Some(n) if audience.version(n).is_some() => Ok(n),
            Some(n) => plan_err!(
                "audience '{}' has no version {n} (it has 1 to {}); audience_versions lists them",
                audience.name,
                audience.latest().map_or(0, |v| v.number)
            ),
            None => plan_err!("{function}() takes version numbers as integers"),
        }
    }
}

/// Users in labelled sets, as `(user_id, label)` rows; the user_ids are read (from the users
/// files) only when the query asks for them, so counting a diff reads nothing.
#[derive(Debug)]
struct LabelledSets {
    schema: SchemaRef,
    files: Vec<UsersFile>,
    /// Disjoint sets and the label of their users.
    parts: Vec<(RoaringBitmap, ScalarValue)>,
}

impl LabelledSets {
    fn new(files: &[UsersFile], label: Field, parts: Vec<(RoaringBitmap, ScalarValue)>) -> LabelledSets {
        let schema = Arc::new(Schema::new(vec![utf8(USER_ID, false), label]));
        LabelledSets { schema, files: files.to_vec(), parts }
    }

    fn batch(&self, with_ids: bool) -> Result<RecordBatch> {
        let mut labels: Vec<ScalarValue> = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        if with_ids {
            let all = self.parts.iter().fold(RoaringBitmap::new(), |acc, (s, _)| acc | s);
            for_each_member_id(&self.files, &all, |id, user_id| {
                ids.push(user_id.to_string());
                let label = self.parts.iter().find(|(s, _)| s.contains(id)).map(|(_, l)| l.clone());
                labels.push(label.unwrap_or(ScalarValue::Null));
            })?;
        } else {
            for (set, label) in &self.parts {
                labels.extend(std::iter::repeat_n(label.clone(), set.len() as usize));
            }
            ids = vec![String::new(); labels.len()];
        }
        let label_type = self.schema.field(1).data_type();
        let labels = if labels.is_empty() {
            arrow::array::new_empty_array(label_type)
        } else {
            ScalarValue::iter_to_array(labels).map_err(Error::from)?
        };
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), vec![Arc::new(StringArray::from(ids)), labels])?)
    }
}

#[async_trait]
impl TableProvider for LabelledSets {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let with_ids = projection.is_none_or(|p| p.contains(&0));
        let batch = self.batch(with_ids)?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], Arc::clone(&self.schema), projection.cloned())?)
    }
}

/// `audience_members('name' [, version])`: the members of a version (the latest by default) with
/// whether each is in the holdout.
#[derive(Debug)]
struct MembersFunction(AudienceFunctions);

impl TableFunctionImpl for MembersFunction {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let f = &self.0;
        let audience = f.audience("audience_members", args.exprs())?;
        let number = f.version_arg("audience_members", audience, args.exprs().get(1))?;
        let version = audience.version(number).expect("checked");
        let members = f.index.catalog_set(&version.members_file)?;
        let holdout = f.index.catalog_set(&version.holdout_file)?;
        let parts = vec![
            (members.as_ref() - holdout.as_ref(), ScalarValue::Boolean(Some(false))),
            (holdout.as_ref().clone(), ScalarValue::Boolean(Some(true))),
        ];
        Ok(Arc::new(LabelledSets::new(&f.files, Field::new("holdout", DataType::Boolean, false), parts)))
    }
}

/// `audience_diff('name', v1, v2)`: the users added (in v2, not in v1) and removed (in v1, not
/// in v2) between two versions, as `(user_id, change)`.
#[derive(Debug)]
struct DiffFunction(AudienceFunctions);

impl TableFunctionImpl for DiffFunction {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let f = &self.0;
        let exprs = args.exprs();
        if exprs.len() != 3 {
            return plan_err!(
                "audience_diff() takes an audience name and two versions, e.g. audience_diff('lapsed', 1, 2)"
            );
        }
        let audience = f.audience("audience_diff", exprs)?;
        let from = f.version_arg("audience_diff", audience, exprs.get(1))?;
        let to = f.version_arg("audience_diff", audience, exprs.get(2))?;
        let read = |n: u32| f.index.catalog_set(&audience.version(n).expect("checked").members_file);
        let (old, new) = (read(from)?, read(to)?);
        let parts = vec![
            (new.as_ref() - old.as_ref(), ScalarValue::Utf8(Some("added".into()))),
            (old.as_ref() - new.as_ref(), ScalarValue::Utf8(Some("removed".into()))),
        ];
        Ok(Arc::new(LabelledSets::new(&f.files, utf8("change", false), parts)))
    }
}
