//! Query sessions: a DataFusion `SessionContext` over one pinned snapshot of a store, with every
//! contract table registered, `now()` optionally pinned, and SQL errors carried back with their
//! position. This layer plans and runs SQL statements one at a time; parsing scripts and routing
//! Persona's own statements (tags, audiences) is the engine facade's, above the audience layer.

pub mod activity_count;
pub mod audience_rule;
pub mod bitmap_expr;
pub mod bitmap_scan;
pub mod const_compare;
pub mod dense_agg_exec;
pub mod dense_agg_rule;
pub mod dense_state;
pub mod dict_filter;
pub mod fact_filter;
pub mod facts_provider;
pub mod gather_scan;
pub mod group_count_rule;
pub mod memory;
pub mod now;
pub mod ordinals;
pub mod person_id;
pub mod planner;
pub mod product_join_rule;
#[cfg(test)]
mod prop_tests;
pub mod residual;
pub mod row_order;
pub mod sql_text;
pub mod store_tables;
pub mod sugar;
pub mod tag_overlap_rule;
pub mod top_rule;
pub mod udf;
pub mod users_provider;
pub mod window_exec;
pub mod window_rule;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{LogicalPlan, ScalarUDF, Statement as PlanStatement};
use datafusion::optimizer::{Analyzer, AnalyzerRule, Optimizer, OptimizerRule};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;

use crate::error::{Error, IoContext, Result};
use crate::index::IndexSet;
use crate::store::io::Removals;
use crate::store::{Snapshot, Store, layout};
use crate::tables::{ColumnType, Table, sql_schema};

/// How a session is set up.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Pins `now()`, `current_timestamp`, `current_date` and `today()` to this instant.
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// DataFusion partitions per query (defaults to the number of cores).
    pub target_partitions: Option<usize>,
    /// Answer audience predicates from the bitmap indexes (default). `false` takes DataFusion's
    /// general path for everything, which must give the same results.
    pub use_indexes: Option<bool>,
    /// Bytes the session's queries may hold at once (DataFusion's operators and Persona's
    /// per-user aggregates); `SET datafusion.runtime.memory_limit` changes it. No limit by default.
    pub memory_limit: Option<usize>,
}

datafusion::common::extensions_options! {
    /// Persona's settings, visible to SQL as `persona.*` (`SET persona.use_indexes = false`).
    pub struct PersonaConfig {
        /// Answer audience predicates from the bitmap indexes.
        pub use_indexes: bool, default = true
        /// Compression of audience Parquet files: none, snappy, zstd or lz4.
        pub export_compression: String, default = "none".to_string()
        /// The thresholds of the `lifecycle` view (`SET persona.lifecycle.interested_days = 14`).
        pub lifecycle: LifecycleConfig, default = LifecycleConfig::default()
    }
}

datafusion::common::config_namespace! {
    /// The stages of the `lifecycle` view: interested = an event within `interested_days` and no
    /// purchase; loyal = at least `loyal_purchases` purchases within `loyal_days`.
    pub struct LifecycleConfig {
        /// Days back an event makes a user who never bought "interested".
        pub interested_days: u64, default = 30
        /// Days back the purchases that make a buyer "loyal" are counted.
        pub loyal_days: u64, default = 365
        /// Purchases within `loyal_days` that make a buyer "loyal".
        pub loyal_purchases: u64, default = 2
    }
}

impl datafusion::common::config::ConfigExtension for PersonaConfig {
    const PREFIX: &'static str = "persona";
}

/// How audience Parquet files are compressed. Uncompressed by default: contact columns are unique
/// strings that shrink about 2.3× with snappy, and compressing them adds about 60 % to an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExportCompression {
    #[default]
    None,
    Snappy,
    Zstd,
    Lz4,
}

impl ExportCompression {
    /// The compression a setting's value names (`none`, `snappy`, `zstd`, `lz4`; any case).
    pub fn parse(value: &str) -> Result<ExportCompression> {
        match value.trim().to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => Ok(ExportCompression::None),
            "snappy" => Ok(ExportCompression::Snappy),
            "zstd" => Ok(ExportCompression::Zstd),
            "lz4" => Ok(ExportCompression::Lz4),
            other => Err(Error::Usage(format!(
                "persona.export_compression must be none, snappy, zstd or lz4, not '{other}'"
            ))),
        }
    }

    /// The Parquet codec.
    pub(crate) fn parquet(self) -> parquet::basic::Compression {
        match self {
            ExportCompression::None => parquet::basic::Compression::UNCOMPRESSED,
            ExportCompression::Snappy => parquet::basic::Compression::SNAPPY,
            ExportCompression::Zstd => parquet::basic::Compression::ZSTD(Default::default()),
            ExportCompression::Lz4 => parquet::basic::Compression::LZ4_RAW,
        }
    }
}

/// What a layer above adds to every version a session pins: the catalog's SQL views (the `tags`,
/// `audiences` and `audience_versions` tables, a table per saved audience, table functions). This
/// layer plans over them without knowing them; the engine facade passes the audience layer's.
pub trait CatalogViews: Send + Sync {
    /// A table per saved audience of `snapshot`: registered under the audience's name, and what
    /// `in_audience('name')` reads.
    fn audience_tables(
        &self,
        snapshot: &Snapshot,
        index: &Arc<IndexSet>,
        users_schema: &SchemaRef,
        users_files: &[bitmap_scan::UsersFile],
    ) -> Vec<(String, Arc<dyn TableProvider>)>;

    /// Registers the views in `ctx`, after the store's tables; `audiences` are those that
    /// [`CatalogViews::audience_tables`] gave for the same version.
    fn register(
        &self,
        ctx: &SessionContext,
        snapshot: &Snapshot,
        index: &Arc<IndexSet>,
        users_files: &[bitmap_scan::UsersFile],
        audiences: &[(String, Arc<dyn TableProvider>)],
    ) -> Result<()>;
}

/// A session pinned to one snapshot: every query of the session sees the same version. The
/// statements of the audience layer commit a new version and move the session (and its clones) to
/// it ([`Session::repin`]); [`Session::refresh`] moves it to the newest version committed by
/// anyone.
#[derive(Clone)]
pub struct QuerySession {
    shared: Arc<Shared>,
}

struct Shared {
    options: SessionOptions,
    /// Read by the users provider and the audience rule; flipped by `SET persona.use_indexes`.
    use_indexes: Arc<AtomicBool>,
    /// The memory every version's queries take from ([`memory::QueryMemory`]).
    memory: Arc<memory::QueryMemory>,
    /// Registered again at every version the session moves to.
    views: Option<Arc<dyn CatalogViews>>,
    pinned: std::sync::RwLock<Arc<Pinned>>,
    /// Old files that the session's exports replaced, being removed in the background. Dropping
    /// the last clone of the session waits for them, so that none is left behind at exit.
    removals: Removals,
}

/// What a session holds for the version it is pinned to.
struct Pinned {
    ctx: SessionContext,
    snapshot: Snapshot,
    /// The snapshot's bitmap indexes (tags, values, ranges, days) and catalog sets.
    index: Arc<IndexSet>,
}

impl std::fmt::Debug for QuerySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuerySession").field("version", &self.snapshot().version()).finish()
    }
}

impl QuerySession {
    /// Builds a session over `snapshot`, with `views` (when given) registered at every version.
    pub fn new(
        snapshot: Snapshot,
        options: &SessionOptions,
        views: Option<Arc<dyn CatalogViews>>,
    ) -> Result<QuerySession> {
        let use_indexes = Arc::new(AtomicBool::new(options.use_indexes.unwrap_or(true)));
        let memory = Arc::new(memory::QueryMemory::new(options.memory_limit));
        let pinned = Pinned::build(snapshot, options, &use_indexes, &memory, views.as_deref(), None)?;
        Ok(QuerySession {
            shared: Arc::new(Shared {
                options: options.clone(),
                use_indexes,
                memory,
                views,
                pinned: std::sync::RwLock::new(Arc::new(pinned)),
                removals: Removals::default(),
            }),
        })
    }

    fn pinned(&self) -> Arc<Pinned> {
        Arc::clone(&self.shared.pinned.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Moves the session (and its clones) to `snapshot`; settings made with `SET` outlive the move.
    pub fn repin(&self, snapshot: Snapshot) -> Result<()> {
        let settings = self.context().state().config().options().clone();
        let pinned = Arc::new(Pinned::build(
            snapshot,
            &self.shared.options,
            &self.shared.use_indexes,
            &self.shared.memory,
            self.shared.views.as_deref(),
            Some(settings.as_ref().clone()),
        )?);
        *self.shared.pinned.write().unwrap_or_else(std::sync::PoisonError::into_inner) = pinned;
        Ok(())
    }

    /// Moves to the store's newest committed version; returns the versions moved from and to.
    pub fn refresh(&self) -> Result<(u64, u64)> {
        let from = self.snapshot().version();
        let snapshot = Store::open(self.snapshot().root())?.snapshot()?;
        let to = snapshot.version();
        if to != from {
            self.repin(snapshot)?;
        }
        Ok((from, to))
    }
}

impl Pinned {
    /// `settings`: those of the version the session moves from, carried over.
    fn build(
        snapshot: Snapshot,
        options: &SessionOptions,
        use_indexes: &Arc<AtomicBool>,
        memory: &Arc<memory::QueryMemory>,
        views: Option<&dyn CatalogViews>,
        settings: Option<datafusion::config::ConfigOptions>,
    ) -> Result<Pinned> {
        let use_indexes = Arc::clone(use_indexes);
        let mut config = match settings {
            Some(settings) => SessionConfig::from(settings),
            None => {
                let persona_config =
                    PersonaConfig { use_indexes: use_indexes.load(Ordering::Relaxed), ..Default::default() };
                let mut config = SessionConfig::new()
                    .with_information_schema(true)
                    .with_default_catalog_and_schema("persona", "public")
                    .with_option_extension(persona_config);
                if let Some(n) = options.target_partitions {
                    config = config.with_target_partitions(n.max(1));
                }
                config.options_mut().sql_parser.collect_spans = true;
                config
            }
        };
        config.options_mut().execution.parquet.pushdown_filters = false;
        let pool: Arc<dyn datafusion::execution::memory_pool::MemoryPool> = Arc::clone(memory) as _;
        let index = open_index(&snapshot, &pool)?;
        let users_files = users_files_of(&snapshot)?;
        let users_schema = sql_schema(&snapshot.manifest().columns(Table::Users));
        // `person_id` on the tables with a user_id, once the store resolves identities.
        let person_udf = person_id::PersonIds::of(&snapshot)
            .map(|ids| Arc::new(ScalarUDF::new_from_impl(person_id::PersonIdOf::new(Arc::new(ids)))));
        let users: Arc<dyn TableProvider> = Arc::new(
            users_provider::UsersTable::new(
                Arc::clone(&users_schema),
                users_files.clone(),
                Arc::clone(&index),
                Arc::clone(&use_indexes),
                table_provider(&snapshot, Table::Users)?,
            )
            .with_person_id(person_udf.clone()),
        );
        let query_planner = planner::PersonaQueryPlanner {
            dense: Arc::new(planner::DenseAggregatePlanner { snapshot: snapshot.clone(), users: users_files.clone() }),
        };
        let mut providers: Vec<(Table, Arc<dyn TableProvider>)> = Vec::new();
        for table in Table::ALL {
            let provider: Arc<dyn TableProvider> = if table == Table::Users {
                Arc::clone(&users)
            } else if table.is_fact() {
                let files = snapshot
                    .manifest()
                    .files(table)
                    .iter()
                    .map(|f| facts_provider::FactFile {
                        path: layout::resolve(snapshot.root(), &f.path),
                        bytes: f.bytes,
                        row_id_ranges: f.row_id_ranges.clone(),
                        rows: f.rows,
                        plain_by_user: f
                            .plain_columns
                            .as_ref()
                            .filter(|_| f.rows_by_user)
                            .map(|p| layout::resolve(snapshot.root(), p)),
                        dead: f.dead.as_ref().map(|_| (snapshot.root().to_path_buf(), f.clone())),
                    })
                    .collect();
                let plain = table_provider(&snapshot, table)?;
                Arc::new(
                    facts_provider::FactsTable::new(table, files, Arc::clone(&index), Arc::clone(&use_indexes), plain)
                        .with_person_id(person_udf.clone()),
                )
            } else {
                table_provider(&snapshot, table)?
            };
            providers.push((table, provider));
        }
        let provider_of = |t: Table| {
            providers
                .iter()
                .find(|(table, _)| *table == t)
                .map(|(_, p)| Arc::clone(p))
                .expect("every table is registered")
        };
        let store_tables = store_tables::StoreTables::new(providers.clone());
        let audience_udf = Arc::new(ScalarUDF::new_from_impl(udf::PersonaAudience::new(Arc::clone(&index))));
        let rule = audience_rule::AudienceRule {
            udf: Arc::clone(&audience_udf),
            use_indexes: Arc::clone(&use_indexes),
            index: Arc::clone(&index),
            users: Arc::clone(&users),
            tables: store_tables.clone(),
        };
        // The tag-overlap rule reads the plan as the SQL planner wrote it, so it goes first.
        let overlap = tag_overlap_rule::TagOverlapRule {
            use_indexes: Arc::clone(&use_indexes),
            index: Arc::clone(&index),
            tables: store_tables.clone(),
        };
        let mut rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> = vec![Arc::new(overlap)];
        rules.extend(Optimizer::new().rules);
        rules.push(Arc::new(rule));
        // A products join that only filters, and that the audience rule did not take (with the
        // category streams), becomes a product_id list: the per-user aggregate rule below, and
        // the audience rule in the optimizer's next pass, then see one fact table.
        rules.push(Arc::new(product_join_rule::ProductJoinRule {
            use_indexes: Arc::clone(&use_indexes),
            index: Arc::clone(&index),
            tables: store_tables.clone(),
        }));
        // `GROUP BY <low-cardinality column>` counts of an audience are bitmap intersections.
        rules.push(Arc::new(group_count_rule::GroupCountRule {
            use_indexes: Arc::clone(&use_indexes),
            index: Arc::clone(&index),
            tables: store_tables.clone(),
        }));
        // `ORDER BY <range-indexed column> LIMIT n` over an audience reads about n users' rows.
        rules.push(Arc::new(top_rule::TopRule {
            use_indexes: Arc::clone(&use_indexes),
            index: Arc::clone(&index),
            tables: store_tables.clone(),
        }));
        // Per-user aggregates by row id, once filters and projections sit where they will stay.
        rules.push(Arc::new(dense_agg_rule::DenseAggregateRule { use_indexes: Arc::clone(&use_indexes) }));
        let pinned = match options.now {
            Some(now) => {
                let nanos = now
                    .timestamp_nanos_opt()
                    .ok_or_else(|| Error::Usage(format!("--now {now} is outside the range of timestamps")))?;
                Some((
                    Arc::new(ScalarUDF::new_from_impl(now::PinnedNow::new(nanos))),
                    ScalarUDF::new_from_impl(now::PinnedDate::new(nanos)),
                ))
            }
            None => None,
        };
        // The short forms become subqueries before anything else looks at the plan.
        let audiences =
            views.map(|v| v.audience_tables(&snapshot, &index, &users_schema, &users_files)).unwrap_or_default();
        let sugar = sugar::SugarRule {
            user_tags: provider_of(Table::UserTags),
            purchases: provider_of(Table::Purchases),
            pinned_now: pinned.as_ref().map(|(now, _)| Arc::clone(now)),
            use_indexes: Arc::clone(&use_indexes),
            audience_udf: Arc::clone(&audience_udf),
            audiences: audiences.clone(),
        };
        let mut analyzer_rules: Vec<Arc<dyn AnalyzerRule + Send + Sync>> = vec![Arc::new(sugar)];
        if let Some(udf) = &person_udf {
            analyzer_rules
                .push(Arc::new(person_id::PersonIdColumn { tables: store_tables.clone(), udf: Arc::clone(udf) }));
        }
        analyzer_rules.extend(Analyzer::new().rules);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_analyzer_rules(analyzer_rules)
            .with_optimizer_rules(rules)
            .with_query_planner(Arc::new(query_planner))
            .with_physical_optimizer_rules(physical_rules(&use_indexes))
            .with_runtime_env(Arc::new(
                datafusion::execution::runtime_env::RuntimeEnvBuilder::new().with_memory_pool(pool).build()?,
            ))
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_udf(audience_udf.as_ref().clone());
        if let Some(udf) = &person_udf {
            ctx.register_udf(udf.as_ref().clone());
        }
        ctx.register_udf(ScalarUDF::new_from_impl(sugar::SugarFunction::new(sugar::HAS_TAG)));
        ctx.register_udf(ScalarUDF::new_from_impl(sugar::SugarFunction::new(sugar::PURCHASED_WITHIN)));
        ctx.register_udf(ScalarUDF::new_from_impl(sugar::SugarFunction::new(sugar::IN_AUDIENCE)));
        if let Some((now, date)) = pinned {
            ctx.register_udf(now.as_ref().clone());
            ctx.register_udf(date);
        }
        for (table, provider) in providers {
            ctx.register_table(table.name(), provider)?;
        }
        if let Some(views) = views {
            views.register(&ctx, &snapshot, &index, &users_files, &audiences)?;
        }
        Ok(Pinned { ctx, snapshot, index })
    }
}

/// DataFusion's physical rules, with Persona's window-chain rule before the final sanity check
/// (after every rule that places sorts and partitions).
fn physical_rules(use_indexes: &Arc<AtomicBool>) -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = PhysicalOptimizer::new().rules;
    let at = rules.iter().position(|r| r.name() == "SanityCheckPlan").unwrap_or(rules.len());
    rules.insert(at, Arc::new(window_rule::WindowChainRule { use_indexes: Arc::clone(use_indexes) }));
    rules
}

impl QuerySession {
    /// Whether audience predicates are answered from the indexes.
    pub fn use_indexes(&self) -> bool {
        self.shared.use_indexes.load(Ordering::Relaxed)
    }

    /// The options the session was opened with.
    pub fn options(&self) -> &SessionOptions {
        &self.shared.options
    }

    /// How audience Parquet files are compressed (`SET persona.export_compression`).
    pub fn export_compression(&self) -> Result<ExportCompression> {
        let state = self.context().state();
        match state.config().options().extensions.get::<PersonaConfig>() {
            Some(config) => ExportCompression::parse(&config.export_compression),
            None => Ok(ExportCompression::default()),
        }
    }

    /// The DataFusion context of the pinned version, for callers who need more than SQL.
    pub fn context(&self) -> SessionContext {
        self.pinned().ctx.clone()
    }

    /// The pinned version.
    pub fn snapshot(&self) -> Snapshot {
        self.pinned().snapshot.clone()
    }

    /// The snapshot's bitmap indexes (tag names and sizes, value lists, bitmaps, catalog sets).
    pub fn index(&self) -> Arc<IndexSet> {
        Arc::clone(&self.pinned().index)
    }

    /// Old files the session's exports replaced, still being removed ([`Removals::finish`] waits).
    pub fn removals(&self) -> &Removals {
        &self.shared.removals
    }

    /// Plans one SQL statement that DataFusion parsed. `SET persona.use_indexes = ...` takes
    /// effect here.
    pub async fn plan_sql(&self, mut statement: DfStatement) -> Result<LogicalPlan> {
        ordinals::spell_out_order_ordinals(&mut statement);
        let plan = self.context().state().statement_to_plan(statement).await?;
        if let LogicalPlan::Statement(PlanStatement::SetVariable(set)) = &plan
            && set.variable.eq_ignore_ascii_case("persona.use_indexes")
        {
            let on = match set.value.trim().to_ascii_lowercase().as_str() {
                "true" | "on" | "1" => true,
                "false" | "off" | "0" => false,
                other => return Err(Error::Usage(format!("persona.use_indexes must be true or false, not '{other}'"))),
            };
            self.shared.use_indexes.store(on, Ordering::Relaxed);
        }
        if let LogicalPlan::Statement(PlanStatement::SetVariable(set)) = &plan
            && set.variable.eq_ignore_ascii_case("persona.export_compression")
        {
            ExportCompression::parse(&set.value)?;
        }
        // The memory limit is the session pool's (DataFusion would replace the runtime's pool).
        let memory_limit = |variable: &str| variable.eq_ignore_ascii_case("datafusion.runtime.memory_limit");
        match &plan {
            LogicalPlan::Statement(PlanStatement::SetVariable(set)) if memory_limit(&set.variable) => {
                let bytes = SessionContext::parse_capacity_limit("datafusion.runtime.memory_limit", &set.value)?;
                self.shared.memory.set_limit(Some(bytes));
                return Ok(LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
                    produce_one_row: false,
                    schema: Arc::new(datafusion::common::DFSchema::empty()),
                }));
            }
            LogicalPlan::Statement(PlanStatement::ResetVariable(reset)) if memory_limit(&reset.variable) => {
                self.shared.memory.set_limit(None);
                return Ok(LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
                    produce_one_row: false,
                    schema: Arc::new(datafusion::common::DFSchema::empty()),
                }));
            }
            _ => {}
        }
        Ok(plan)
    }

    /// Executes a planned statement as a stream of batches.
    pub async fn execute(&self, plan: LogicalPlan) -> Result<SendableRecordBatchStream> {
        let df = self.context().execute_logical_plan(plan).await?;
        Ok(df.execute_stream().await?)
    }
}

/// Opens the snapshot's index file (an empty index when the store has none).
fn open_index(
    snapshot: &Snapshot,
    memory: &Arc<dyn datafusion::execution::memory_pool::MemoryPool>,
) -> Result<Arc<IndexSet>> {
    let manifest = snapshot.manifest();
    let index_path = manifest.index.as_ref().map(|i| layout::resolve(snapshot.root(), &i.path));
    let segments = manifest.id_segments.iter().map(|s| layout::resolve(snapshot.root(), &s.path)).collect();
    let forgotten = match &manifest.forgotten {
        Some(f) => crate::store::catalog::read_set(snapshot.root(), &f.set)?,
        None => roaring::RoaringBitmap::new(),
    };
    Ok(Arc::new(
        IndexSet::open(index_path.as_deref(), manifest.next_row_id)?
            .with_forgotten(forgotten)
            .with_id_segments(segments)
            .with_facts(snapshot.clone())
            .with_catalog(snapshot.root(), &manifest.catalog)
            .with_memory(Arc::clone(memory))
            .with_booleans(
                manifest.users_columns.iter().filter(|c| c.ty == ColumnType::Boolean).map(|c| c.name.clone()),
            ),
    ))
}

/// The snapshot's users files, in row-id order.
pub fn users_files_of(snapshot: &Snapshot) -> Result<Vec<bitmap_scan::UsersFile>> {
    let mut files = snapshot
        .manifest()
        .files(Table::Users)
        .iter()
        .map(|f| {
            Ok(bitmap_scan::UsersFile {
                path: layout::resolve(snapshot.root(), &f.path),
                first_row_id: f
                    .first_row_id
                    .ok_or_else(|| Error::corrupt(&f.path, "a users file has no first row id"))?,
                rows: f.rows,
                bytes: f.bytes,
                addressable: f.addressable.as_deref().map(|p| layout::resolve(snapshot.root(), p)),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    files.sort_by_key(|f| f.first_row_id);
    Ok(files)
}

/// `schema` with its `Utf8` columns as `Utf8View`.
pub(crate) fn with_string_views(schema: &arrow::datatypes::Schema) -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => Field::new(f.name(), DataType::Utf8View, f.is_nullable()),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// A provider over the snapshot's Parquet files of `table` (an empty table when it has none).
fn table_provider(snapshot: &Snapshot, table: Table) -> Result<Arc<dyn TableProvider>> {
    let schema = sql_schema(&snapshot.manifest().columns(table));
    // Fact strings are read as string views: no copy of each value into one buffer, and cheaper
    // comparisons and grouping (measured: a fifth off Q5 and Q7 at 10 M users).
    let schema = if table.is_fact() { with_string_views(&schema) } else { schema };
    let paths = snapshot.file_paths(table);
    if paths.is_empty() {
        return Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?));
    }
    // File URLs built from paths, not parsed from text: a store path may hold spaces, `%`, or the
    // glob characters `*?[` that `ListingTableUrl::parse` would take for a pattern.
    let urls = paths
        .iter()
        .map(|p| {
            let absolute = std::path::absolute(p).io_context("resolve", p)?;
            let url = url::Url::from_file_path(&absolute)
                .map_err(|()| Error::Failed(format!("{} cannot be written as a file URL", absolute.display())))?;
            Ok(ListingTableUrl::try_new(url, None)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options).with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}
