//! Running the tag and audience statements: each takes the store's writer lock, evaluates what it
//! must on the newest version, writes its set files (and a rule tag's `user_tags` rows), commits
//! one new version, and moves the session to it. Each returns a small table of what it did.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use roaring::RoaringBitmap;

use crate::audience::by_person::PersonMap;
use crate::audience::catalog::check_name;
use crate::audience::deps::{Graph, Node, edges, refuse_cycle, refuse_unknown_tags, uses_of_plan};
use crate::audience::evaluate::{Evaluated, Export, evaluate, plan_query};
use crate::audience::export::{Rows, Written, write_audience};
use crate::audience::members::{for_each_member_id, in_holdout, read_id_file};
use crate::audience::statement::{Body, CatalogStatement};
use crate::error::{Error, Result};
use crate::ingest::writer::{FACT_FILE_ROWS, TableSink};
use crate::query::QuerySession;
use crate::store::catalog::no_such_audience;
use crate::store::catalog::{Audience, AudienceVersion, Catalog, EvaluatedNow, RuleTag, SetFile, write_set};
use crate::store::manifest::{Manifest, now_rfc3339};
use crate::store::{Snapshot, Store, StoreWriter};
use crate::tables::{Table, contract_columns, file_schema};

/// Table names an audience may not take.
const RESERVED: &[&str] = &["tags", "audiences", "audience_versions", "models"];

/// The text that turns a rule's predicate into its query.
pub(crate) const PREDICATE_PREFIX: &str = "SELECT user_id FROM users WHERE ";

/// Runs one statement; the session ends on the version it committed (if any).
pub async fn run(session: &QuerySession, statement: CatalogStatement) -> Result<RecordBatch> {
    match statement {
        CatalogStatement::ShowTags => show(session, "SELECT * FROM tags ORDER BY name").await,
        CatalogStatement::ShowAudiences => show(session, "SELECT * FROM audiences ORDER BY name").await,
        CatalogStatement::ShowAudience { name } => show_audience(session, &name),
        CatalogStatement::CreateTag { name, or_replace, rule, is_query } => {
            create_tag(session, &name, or_replace, &rule, is_query).await
        }
        CatalogStatement::CreateTagPack { pack, prefix, or_replace } => {
            create_tag_pack(session, &pack, &prefix, or_replace).await
        }
        CatalogStatement::DropTag { name, if_exists } => drop_tag(session, &name, if_exists),
        CatalogStatement::RefreshTags { names } => refresh_tags(session, &names).await,
        CatalogStatement::CreateAudience {
            name,
            or_replace,
            query,
            suppress_audiences,
            suppress_files,
            holdout_basis_points,
            by_person,
        } => {
            let definition = Definition { query, suppress_audiences, suppress_files, holdout_basis_points, by_person };
            create_audience(session, &name, or_replace, definition).await
        }
        CatalogStatement::DropAudience { name, if_exists } => drop_audience(session, &name, if_exists),
        CatalogStatement::DeleteUsers { predicate } => delete_users(session, &predicate).await,
        CatalogStatement::DeleteTagRows { predicate } => {
            crate::audience::dml::delete_tag_rows(session, &predicate).await
        }
        CatalogStatement::InsertInto { table, columns, rows } => {
            crate::audience::dml::insert_into(session, table, &columns, &rows).await
        }
        CatalogStatement::UpdateUsers { assignments, predicate } => {
            crate::audience::dml::update_users(session, &assignments, &predicate).await
        }
        CatalogStatement::EstimateAudience { name, query, sampled } => {
            let (text, origin) = match (name, query) {
                (_, Some(q)) => (q.text.clone(), q),
                (Some(n), None) => {
                    let snapshot = session.snapshot();
                    let audience =
                        snapshot.manifest().catalog.audience(&n).cloned().ok_or_else(|| no_such_audience(&n))?;
                    (audience.query.clone(), Body { text: audience.query, line: 1, column: 1 })
                }
                (None, None) => return Err(Error::Internal("ESTIMATE AUDIENCE without a name or query".into())),
            };
            let plan = plan_query(session, &text, &origin, 0).await?;
            let how = if sampled {
                crate::audience::estimate::Exactness::Sampled
            } else {
                crate::audience::estimate::Exactness::WhenCheap
            };
            crate::audience::estimate::estimate(session, plan, how).await
        }
        CatalogStatement::CreateModel { name, or_replace, label, features, holdout_basis_points, seed } => {
            let definition =
                crate::audience::model::ModelDefinition { label: label.text, features, holdout_basis_points, seed };
            create_model(session, &name, or_replace, &definition).await
        }
        CatalogStatement::DropModel { name, if_exists } => drop_model(session, &name, if_exists),
        CatalogStatement::ShowModels => show(session, "SELECT * FROM models ORDER BY name").await,
        CatalogStatement::ShowModel { name } => {
            crate::audience::model::show_model(&session.snapshot().manifest().catalog, &name)
        }
        CatalogStatement::Unlink(request) => unlink(session, request),
        CatalogStatement::MaterializeAudience { name, to, changes_since } => {
            let target = to.map(PathBuf::from);
            let report =
                materialize(session, &name, &MaterializeOptions { target, changes_since, ..Default::default() })
                    .await?;
            report_batch(&[report])
        }
    }
}

async fn show(session: &QuerySession, sql: &str) -> Result<RecordBatch> {
    let frame = session.context().sql(sql).await?;
    // An empty catalog gives no batch at all: the answer is then an empty table, not an error.
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    Ok(arrow::compute::concat_batches(&schema, &batches)?)
}

/// `SHOW AUDIENCE name`: one audience in full, as `property | value` rows (from the manifest).
fn show_audience(session: &QuerySession, name: &str) -> Result<RecordBatch> {
    let snapshot = session.snapshot();
    let a = snapshot.manifest().catalog.audience(name).ok_or_else(|| no_such_audience(name))?;
    let mut rows: Vec<(String, String)> = vec![("name".into(), a.name.clone()), ("query".into(), a.query.clone())];
    let mut suppress: Vec<String> = a.suppress_audiences.iter().map(|s| format!("audience {s}")).collect();
    suppress.extend(a.suppress_files.iter().map(|f| format!("FILE '{f}'")));
    rows.push(("suppress".into(), if suppress.is_empty() { "nothing".into() } else { suppress.join(", ") }));
    rows.push(("holdout".into(), format!("{} % of the members", a.holdout_percent())));
    if a.by_person {
        rows.push((
            "by".into(),
            "person: a person is a member when any of its profiles is; suppression and holdout per person".into(),
        ));
    }
    if let Some(v) = a.latest() {
        let profiles = v.profiles.map_or(String::new(), |p| format!(" ({p} profiles)"));
        rows.push(("members".into(), format!("{}{profiles} in version {}", v.members, v.number)));
        rows.push(("exported".into(), format!("{} ({} held out)", v.members - v.holdout, v.holdout)));
    }
    rows.push(("created_at".into(), a.created_at.clone()));
    for v in a.versions.iter().rev() {
        let now = v.now.as_ref().map_or(String::new(), |n| format!(", now() = {n}"));
        rows.push((
            format!("version {}", v.number),
            format!(
                "{} members (+{} −{}), {} held out, {} suppressed; computed {} on store version {}{now}",
                v.members, v.added, v.removed, v.holdout, v.suppressed, v.computed_at, v.computed_on
            ),
        ));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("property", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.as_str()))),
        ],
    )?)
}

/// Takes the writer lock and moves the session to the version it builds on.
pub(crate) fn begin(session: &QuerySession) -> Result<StoreWriter> {
    let store = Store::open(session.snapshot().root())?;
    let writer = store.writer()?;
    if writer.base().version != session.snapshot().version() {
        session.repin(store.snapshot()?)?;
    }
    Ok(writer)
}

/// Commits `next` and moves the session to it.
pub(crate) fn commit(session: &QuerySession, writer: StoreWriter, next: Manifest) -> Result<u64> {
    let base = Arc::clone(writer.base());
    match writer.commit(next) {
        Ok(version) => {
            session.refresh()?;
            Ok(version)
        }
        Err(e) => {
            let _ = unpin_pending(session, &base);
            Err(e)
        }
    }
}

/// Pins `session` to `next`, the statement's own uncommitted version, so that what it evaluates
/// next reads what it has computed so far (a rule tag reading another through has_tag, an
/// audience suppressing one evaluated before it): the whole statement is then one version, in
/// dependency order. Its files are on disk already; [`commit`] or [`unpin_pending`] ends it.
fn pin_pending(session: &QuerySession, next: &Manifest) -> Result<()> {
    session.repin(Snapshot::new(session.snapshot().root().to_path_buf(), Arc::new(next.clone())))
}

/// Moves the session back to `base` after a statement that pinned its pending version and then
/// committed nothing.
fn unpin_pending(session: &QuerySession, base: &Arc<Manifest>) -> Result<()> {
    if session.snapshot().manifest() != &**base {
        session.repin(Snapshot::new(session.snapshot().root().to_path_buf(), Arc::clone(base)))?;
    }
    Ok(())
}

// ---------------------------------------------------------------- rule tags

/// Installs a pack's rule tags (`crate::audience::packs`), each with `prefix` before its name, one
/// version each; names taken by loaded tags, or by rule tags without `OR REPLACE`, are refused
/// before any is created.
async fn create_tag_pack(session: &QuerySession, pack: &str, prefix: &str, or_replace: bool) -> Result<RecordBatch> {
    let Some(tags) = crate::audience::packs::pack(pack) else {
        return Err(Error::Usage(format!(
            "there is no tag pack '{pack}'; the packs are: {}",
            crate::audience::packs::PACKS.join(", ")
        )));
    };
    let loaded = session.index().loaded_tag_names();
    let catalog = session.snapshot().manifest().catalog.clone();
    let names: Vec<String> = tags.iter().map(|t| format!("{prefix}{}", t.name)).collect();
    let by_loaded: Vec<&str> = names.iter().filter(|n| loaded.contains(n)).map(String::as_str).collect();
    let by_rules: Vec<&str> = names
        .iter()
        .filter(|n| !or_replace && !loaded.contains(n) && catalog.tag(n).is_some())
        .map(String::as_str)
        .collect();
    if !by_loaded.is_empty() || !by_rules.is_empty() {
        let mut taken = Vec::new();
        if !by_loaded.is_empty() {
            taken.push(format!("tags loaded from user_tags files have the names {}", by_loaded.join(", ")));
        }
        if !by_rules.is_empty() {
            taken.push(format!(
                "rule tags {} exist (CREATE OR REPLACE TAGS FROM PACK '{pack}' replaces them)",
                by_rules.join(", ")
            ));
        }
        return Err(Error::Usage(format!(
            "pack '{pack}' was not installed: {}; a prefix gives its tags names of their own (CREATE TAGS FROM PACK '{pack}' PREFIX 'b_')",
            taken.join("; ")
        )));
    }
    let mut reports = Vec::with_capacity(tags.len());
    for (tag, name) in tags.iter().zip(&names) {
        // The meaning goes with the rule, as a comment `SHOW TAGS` shows.
        let rule = Body { text: format!("-- {}\n{}", tag.meaning, tag.rule), line: 1, column: 1 };
        reports.push(Box::pin(create_tag(session, name, or_replace, &rule, true)).await?);
    }
    Ok(arrow::compute::concat_batches(&reports[0].schema(), &reports)?)
}

async fn create_tag(
    session: &QuerySession,
    name: &str,
    or_replace: bool,
    rule: &Body,
    is_query: bool,
) -> Result<RecordBatch> {
    check_name("tag", name)?;
    let writer = begin(session)?;
    let base = Arc::clone(writer.base());
    if session.index().loaded_tag_names().iter().any(|t| t == name) {
        return Err(Error::Usage(format!(
            "tag '{name}' has rows loaded from user_tags files; a rule tag needs a name of its own"
        )));
    }
    if base.catalog.tag(name).is_some() && !or_replace {
        return Err(Error::Usage(format!(
            "tag '{name}' already exists; use CREATE OR REPLACE TAG to change its rule, or REFRESH TAGS {name}"
        )));
    }
    let tag = RuleTag {
        name: name.to_string(),
        rule: rule.text.clone(),
        query: if is_query { rule.text.clone() } else { format!("{PREDICATE_PREFIX}{}", rule.text) },
        members: 0,
        computed_at: String::new(),
        computed_on: base.version,
        bitmap: SetFile { path: String::new(), bytes: 0 },
        rows_files: Vec::new(),
        now: None,
    };
    let prefix = if is_query { 0 } else { PREDICATE_PREFIX.chars().count() as u64 };
    // What the rule reads must exist, and must not read the tag back.
    let plan = plan_query(session, &tag.query, rule, prefix).await?;
    let mut with_self = base.catalog.clone();
    if with_self.tag(name).is_none() {
        with_self.tags.push(tag.clone());
    }
    let uses = uses_of_plan(&plan, &with_self);
    refuse_unknown_tags(&uses, &session.index().loaded_tag_names(), &base.catalog, Some(name))?;
    let graph = Graph::of(session, &with_self).await;
    refuse_cycle(&graph, &Node::Tag(name.to_string()), edges(&uses, &[], &with_self))?;
    let mut next = (*base).clone();
    let row = refresh_tag(session, &writer, &mut next, tag, rule, prefix).await?;
    commit(session, writer, next)?;
    tag_report(&[row])
}

fn drop_tag(session: &QuerySession, name: &str, if_exists: bool) -> Result<RecordBatch> {
    let writer = begin(session)?;
    let mut next = (**writer.base()).clone();
    let Some(at) = next.catalog.tags.iter().position(|t| t.name == name) else {
        if session.index().loaded_tag_names().iter().any(|t| t == name) {
            return Err(Error::Usage(format!(
                "tag '{name}' was loaded from user_tags files; DROP TAG removes rule tags only"
            )));
        }
        if if_exists {
            return message(&format!("there is no rule tag '{name}'; nothing dropped"));
        }
        return Err(Error::Usage(format!("there is no rule tag '{name}' (SHOW TAGS lists them)")));
    };
    let tag = next.catalog.tags.remove(at);
    remove_table_files(&mut next, Table::UserTags, &tag.rows_files);
    commit(session, writer, next)?;
    message(&format!("dropped tag '{name}' ({} users)", tag.members))
}

/// Re-evaluates rule tags (all when `names` is empty) in dependency order, as one version: a
/// rule that reads another through has_tag sees that one's new members.
async fn refresh_tags(session: &QuerySession, names: &[String]) -> Result<RecordBatch> {
    let writer = begin(session)?;
    let base = Arc::clone(writer.base());
    let chosen: Vec<RuleTag> = if names.is_empty() {
        base.catalog.tags.clone()
    } else {
        names
            .iter()
            .map(|n| {
                base.catalog.tag(n).cloned().ok_or_else(|| {
                    if session.index().loaded_tag_names().contains(n) {
                        Error::Usage(format!("tag '{n}' was loaded from user_tags files; only rule tags refresh"))
                    } else {
                        Error::Usage(format!("there is no rule tag '{n}' (SHOW TAGS lists them)"))
                    }
                })
            })
            .collect::<Result<_>>()?
    };
    let graph = Graph::of(session, &base.catalog).await;
    let nodes: Vec<Node> = chosen.iter().map(|t| Node::Tag(t.name.clone())).collect();
    let mut next = (*base).clone();
    let mut rows = Vec::new();
    let result: Result<()> = async {
        for node in graph.order(&nodes) {
            let Node::Tag(name) = node else { continue };
            let Some(tag) = chosen.iter().find(|t| t.name == name).cloned() else { continue };
            if !rows.is_empty() {
                pin_pending(session, &next)?;
            }
            let origin = Body { text: tag.query.clone(), line: 1, column: 1 };
            let row = refresh_tag(session, &writer, &mut next, tag, &origin, 0)
                .await
                .map_err(|e| Error::Usage(format!("tag '{name}': {e}")))?;
            rows.push(row);
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        unpin_pending(session, &base)?;
        return Err(e);
    }
    if !rows.is_empty() {
        commit(session, writer, next)?;
    }
    tag_report(&rows)
}

/// One tag's line in a report: name, users, added, removed.
type TagRow = (String, u64, u64, u64);

/// Evaluates `tag`'s query, writes its set and rows, and puts it in `next`.
async fn refresh_tag(
    session: &QuerySession,
    writer: &StoreWriter,
    next: &mut Manifest,
    mut tag: RuleTag,
    origin: &Body,
    prefix: u64,
) -> Result<TagRow> {
    let now = EvaluatedNow::seen_with(session.options().now);
    let plan = plan_query(session, &tag.query, origin, prefix).await?;
    let evaluated = evaluate(session, plan).await?;
    let previous = match next.catalog.tag(&tag.name) {
        Some(old) if !old.bitmap.path.is_empty() => Some(session.index().catalog_set(&old.bitmap)?),
        _ => None,
    };
    let (added, removed) = match &previous {
        Some(old) => {
            let common = evaluated.members.intersection_len(old.as_ref());
            (evaluated.members.len() - common, old.len() - common)
        }
        None => (evaluated.members.len(), 0),
    };
    tag.bitmap = write_set(writer, &format!("tag-{}", tag.name), &evaluated.members)?;
    tag.members = evaluated.members.len();
    tag.computed_at = now_rfc3339();
    tag.computed_on = writer.base().version;
    tag.now = Some(now);
    let old_rows = next.catalog.tag(&tag.name).map(|t| t.rows_files.clone()).unwrap_or_default();
    remove_table_files(next, Table::UserTags, &old_rows);
    let files = write_tag_rows(session, writer, &tag.name, &evaluated.members)?;
    tag.rows_files = files.iter().map(|f| f.path.clone()).collect();
    next.tables.entry(Table::UserTags).or_default().extend(files);
    let row = (tag.name.clone(), tag.members, added, removed);
    match next.catalog.tags.iter_mut().find(|t| t.name == tag.name) {
        Some(slot) => *slot = tag,
        None => next.catalog.tags.push(tag),
    }
    Ok(row)
}

/// Writes one `user_tags` row per member of a rule tag.
fn write_tag_rows(
    session: &QuerySession,
    writer: &StoreWriter,
    tag: &str,
    members: &RoaringBitmap,
) -> Result<Vec<crate::store::manifest::DataFile>> {
    let schema = file_schema(&contract_columns(Table::UserTags));
    let mut sink = TableSink::new(writer, Table::UserTags, Arc::clone(&schema), FACT_FILE_ROWS, false);
    let assigned_at = chrono::Utc::now().timestamp_micros();
    let files = crate::query::users_files_of(&session.snapshot())?;
    let mut ids: Vec<u32> = Vec::with_capacity(64 * 1024);
    let mut users: Vec<String> = Vec::with_capacity(64 * 1024);
    let flush = |ids: &mut Vec<u32>, users: &mut Vec<String>, sink: &mut TableSink| -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let n = ids.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(std::mem::take(ids))),
            Arc::new(StringArray::from(std::mem::take(users))),
            Arc::new(StringArray::from(vec![tag; n])),
            Arc::new(TimestampMicrosecondArray::from(vec![assigned_at; n])),
        ];
        sink.write(&RecordBatch::try_new(Arc::clone(&schema), columns)?)
    };
    let mut failed: Option<Error> = None;
    for_each_member_id(&files, members, |id, user| {
        if failed.is_some() {
            return;
        }
        ids.push(id);
        users.push(user.to_string());
        if ids.len() >= 64 * 1024
            && let Err(e) = flush(&mut ids, &mut users, &mut sink)
        {
            failed = Some(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    flush(&mut ids, &mut users, &mut sink)?;
    Ok(sink.finish()?.0)
}

fn remove_table_files(next: &mut Manifest, table: Table, paths: &[String]) {
    if let Some(files) = next.tables.get_mut(&table) {
        files.retain(|f| !paths.contains(&f.path));
    }
}

fn tag_report(rows: &[TagRow]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("tag", DataType::Utf8, false),
        Field::new("users", DataType::UInt64, false),
        Field::new("added", DataType::UInt64, false),
        Field::new("removed", DataType::UInt64, false),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.3))),
        ],
    )?)
}

/// `DELETE FROM users WHERE predicate`: forgets the users the predicate selects on the newest
/// version as one new version (`crate::ingest::forget`, as `persona forget`); nothing is
/// committed when it selects nobody. Returns the number of users forgotten.
async fn delete_users(session: &QuerySession, predicate: &Body) -> Result<RecordBatch> {
    let writer = begin(session)?;
    let query = format!("{PREDICATE_PREFIX}{}", predicate.text);
    let plan = plan_query(session, &query, predicate, PREDICATE_PREFIX.chars().count() as u64).await?;
    let members = evaluate(session, plan).await?.members;
    if !members.is_empty() {
        let (next, _) = crate::ingest::forget::forget_rows(&writer, &members)?;
        commit(session, writer, next)?;
    }
    let schema = Arc::new(Schema::new(vec![Field::new("forgotten", DataType::UInt64, false)]));
    Ok(RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![members.len()]))])?)
}

/// `UNLINK`: records a cannot-link pair or a blocked value as a new version and resolves the
/// users again under it (`persona identity split`); the session moves to that version.
fn unlink(session: &QuerySession, request: crate::ingest::identity::SplitRequest) -> Result<RecordBatch> {
    use crate::ingest::identity::SplitRequest;
    let store = Store::open(session.snapshot().root())?;
    let persons = |store: &Store| -> Result<u64> {
        Ok(store.snapshot()?.manifest().identity.resolution.as_ref().map_or(0, |r| r.person_count))
    };
    let before = persons(&store)?;
    let what = match &request {
        SplitRequest::Users(a, b) => format!("'{a}' and '{b}' are kept apart"),
        SplitRequest::Value(t, v) => format!("{t} '{v}' links nobody"),
    };
    let version = store.split_identity(request)?;
    session.refresh()?;
    message(&format!("version {version}: {what}; {} persons (were {before})", persons(&store)?))
}

fn message(text: &str) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![Field::new("result", DataType::Utf8, false)]));
    Ok(RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec![text]))])?)
}

// ---------------------------------------------------------------- models

/// Trains a model on the newest version and commits it into the catalog.
async fn create_model(
    session: &QuerySession,
    name: &str,
    or_replace: bool,
    definition: &crate::audience::model::ModelDefinition,
) -> Result<RecordBatch> {
    check_name("model", name)?;
    let writer = begin(session)?;
    if !or_replace && writer.base().catalog.model(name).is_some() {
        return Err(Error::Usage(format!("model '{name}' exists; use CREATE OR REPLACE MODEL to retrain it")));
    }
    let started = Instant::now();
    let model = crate::audience::model::train(session, name, definition).await?;
    let mut next = (**writer.base()).clone();
    next.catalog.models.retain(|m| m.name != name);
    next.catalog.models.push(model.clone());
    commit(session, writer, next)?;
    let auc = model.metrics.holdout_auc.map_or("n/a".to_string(), |a| format!("{a:.3}"));
    message(&format!(
        "trained model '{name}' on {} users ({} labelled 1) in {:.1} s: holdout AUC {auc}, training AUC {:.3}",
        model.metrics.population,
        model.metrics.positives,
        started.elapsed().as_secs_f64(),
        model.metrics.train_auc
    ))
}

fn drop_model(session: &QuerySession, name: &str, if_exists: bool) -> Result<RecordBatch> {
    let writer = begin(session)?;
    let mut next = (**writer.base()).clone();
    let Some(at) = next.catalog.models.iter().position(|m| m.name == name) else {
        if if_exists {
            return message(&format!("there is no model '{name}'; nothing dropped"));
        }
        return Err(crate::store::catalog::no_such_model(name));
    };
    next.catalog.models.remove(at);
    commit(session, writer, next)?;
    message(&format!("dropped model '{name}'"))
}

// ---------------------------------------------------------------- audiences

/// What `CREATE AUDIENCE` says besides the name.
struct Definition {
    query: Body,
    suppress_audiences: Vec<String>,
    suppress_files: Vec<String>,
    holdout_basis_points: u32,
    by_person: bool,
}

async fn create_audience(session: &QuerySession, name: &str, or_replace: bool, d: Definition) -> Result<RecordBatch> {
    check_name("audience", name)?;
    if Table::ALL.iter().any(|t| t.name() == name.to_lowercase()) || RESERVED.contains(&name.to_lowercase().as_str()) {
        return Err(Error::Usage(format!("'{name}' is the name of a table; choose another audience name")));
    }
    let writer = begin(session)?;
    let base = Arc::clone(writer.base());
    let existing = base.catalog.audience(name);
    if existing.is_some() && !or_replace {
        return Err(Error::Usage(format!(
            "audience '{name}' already exists; use CREATE OR REPLACE AUDIENCE to change it (its versions are kept)"
        )));
    }
    // An audience is also a table, and unquoted table names fold to lower case.
    if let Some(other) =
        base.catalog.audiences.iter().find(|a| a.name != name && a.name.to_lowercase() == name.to_lowercase())
    {
        return Err(Error::Usage(format!(
            "audience '{name}' differs from audience '{}' only in case, and they would share a table name; choose another name",
            other.name
        )));
    }
    if d.by_person && base.identity.resolution.is_none() {
        return Err(no_resolution_for_persons(name));
    }
    for other in &d.suppress_audiences {
        if other == name {
            return Err(Error::Usage(format!("audience '{name}' cannot suppress itself")));
        }
        if base.catalog.audience(other).is_none() {
            return Err(Error::Usage(format!("SUPPRESS {other}: there is no saved audience '{other}'")));
        }
    }
    let mut files = Vec::new();
    for f in &d.suppress_files {
        let path = Path::new(f);
        let absolute = std::fs::canonicalize(path).map_err(|e| Error::Usage(format!("SUPPRESS FILE '{f}': {e}")))?;
        files.push(absolute.to_string_lossy().into_owned());
    }
    let audience = Audience {
        name: name.to_string(),
        query: d.query.text.clone(),
        created_at: existing.map_or_else(now_rfc3339, |a| a.created_at.clone()),
        suppress_audiences: d.suppress_audiences,
        suppress_files: files,
        holdout_basis_points: d.holdout_basis_points,
        by_person: d.by_person,
        versions: existing.map(|a| a.versions.clone()).unwrap_or_default(),
    };
    // What the audience reads must exist, and must not read it back.
    let plan = plan_query(session, &audience.query, &d.query, 0).await?;
    let mut with_self = base.catalog.clone();
    if with_self.audience(name).is_none() {
        with_self.audiences.push(audience.clone());
    }
    let uses = uses_of_plan(&plan, &with_self);
    refuse_unknown_tags(&uses, &session.index().loaded_tag_names(), &base.catalog, None)?;
    let graph = Graph::of(session, &with_self).await;
    refuse_cycle(&graph, &Node::Audience(name.to_string()), edges(&uses, &audience.suppress_audiences, &with_self))?;
    let mut next = (*base).clone();
    let (report, _) = compute_and_record(session, &writer, &mut next, audience, &d.query).await?;
    commit(session, writer, next)?;
    report_batch(&[report])
}

fn drop_audience(session: &QuerySession, name: &str, if_exists: bool) -> Result<RecordBatch> {
    let writer = begin(session)?;
    let mut next = (**writer.base()).clone();
    let Some(at) = next.catalog.audiences.iter().position(|a| a.name == name) else {
        if if_exists {
            return message(&format!("there is no audience '{name}'; nothing dropped"));
        }
        return Err(no_such_audience(name));
    };
    if let Some(user) = next.catalog.audiences.iter().find(|a| a.suppress_audiences.iter().any(|s| s == name)) {
        return Err(Error::Usage(format!(
            "audience '{name}' is suppressed by audience '{}'; drop or redefine that one first",
            user.name
        )));
    }
    next.catalog.audiences.remove(at);
    commit(session, writer, next)?;
    message(&format!("dropped audience '{name}'"))
}

/// What one materialization did.
#[derive(Debug, Clone)]
pub struct Report {
    pub audience: String,
    pub version: u32,
    /// Whether the members equal the previous version's (no version was recorded).
    pub unchanged: bool,
    pub members: u64,
    pub holdout: u64,
    pub suppressed: u64,
    pub added: u64,
    pub removed: u64,
    pub rows_written: u64,
    pub files: Vec<PathBuf>,
    pub elapsed_ms: f64,
    pub note: Option<String>,
    /// The `now()` the evaluation saw.
    pub now: EvaluatedNow,
}

/// How to materialize.
#[derive(Debug, Clone, Default)]
pub struct MaterializeOptions {
    pub target: Option<PathBuf>,
    pub changes_since: Option<u32>,
    pub max_rows_per_file: Option<u64>,
    /// Parquet compression; `None`: the session's `persona.export_compression`.
    pub compression: Option<crate::query::ExportCompression>,
}

/// Evaluates an audience, records a version when its members changed, and writes its file.
pub async fn materialize(session: &QuerySession, name: &str, options: &MaterializeOptions) -> Result<Report> {
    let mut results = materialize_many(session, &[(name.to_string(), options.clone())]).await?;
    match results.pop() {
        Some((_, result)) => result,
        None => Err(Error::Internal("materialize returned no report".into())),
    }
}

/// Materializes several audiences as one version: each is evaluated after the audiences and
/// rule tags it reads (SUPPRESS, in_audience, its table, has_tag), on the newest data, reading
/// the members just computed for those; the versions recorded are committed together, then the
/// files are written. One audience failing fails those that read it, not the others. Results come
/// in the order asked; the outer error is for the run as a whole (the store locked, say).
pub async fn materialize_many(
    session: &QuerySession,
    requests: &[(String, MaterializeOptions)],
) -> Result<Vec<(String, Result<Report>)>> {
    let writer = begin(session)?;
    let base = Arc::clone(writer.base());
    let mut outcome: std::collections::BTreeMap<String, Result<(Report, Export)>> = Default::default();
    let mut nodes = Vec::new();
    for (name, options) in requests {
        let Some(audience) = base.catalog.audience(name) else {
            outcome.insert(name.clone(), Err(no_such_audience(name)));
            continue;
        };
        if let Some(since) = options.changes_since
            && audience.version(since).is_none()
        {
            outcome.insert(
                name.clone(),
                Err(Error::Usage(format!(
                    "CHANGES SINCE {since}: audience '{name}' has no version {since} (it has 1 to {})",
                    audience.latest().map_or(0, |v| v.number)
                ))),
            );
            continue;
        }
        nodes.push(Node::Audience(name.clone()));
    }
    let graph = if nodes.len() > 1 { Graph::of(session, &base.catalog).await } else { Graph::default() };
    let mut next = (*base).clone();
    let mut pending = false;
    let mut changed = false;
    for node in graph.order(&nodes) {
        let Node::Audience(name) = &node else { continue };
        let audience = base.catalog.audience(name).cloned().expect("checked above");
        let failed_read = reads_transitively(&graph, &node).into_iter().find_map(|n| match n {
            Node::Audience(a) if matches!(outcome.get(&a), Some(Err(_))) => Some(a),
            _ => None,
        });
        if let Some(other) = failed_read {
            outcome.insert(
                name.clone(),
                Err(Error::Failed(format!("it reads audience '{other}', which failed; it was not evaluated"))),
            );
            continue;
        }
        if changed && !pending {
            pin_pending(session, &next)?;
            pending = true;
        }
        let origin = Body { text: audience.query.clone(), line: 1, column: 1 };
        let mut trial = next.clone();
        let evaluating = Instant::now();
        let result = compute_and_record(session, &writer, &mut trial, audience, &origin).await.map(|(mut r, e)| {
            r.elapsed_ms = evaluating.elapsed().as_secs_f64() * 1000.0;
            (r, e)
        });
        if let Ok((report, _)) = &result
            && !report.unchanged
        {
            next = trial;
            changed = true;
            pending = false;
        }
        outcome.insert(name.clone(), result);
    }
    if changed {
        commit(session, writer, next)?;
    } else {
        drop(writer);
        unpin_pending(session, &base)?;
    }
    let mut results = Vec::with_capacity(requests.len());
    for (name, options) in requests {
        let result = match outcome.remove(name) {
            Some(Ok((report, export))) => write_files(session, name, report, &export, options).await,
            Some(Err(e)) => Err(e),
            None => Err(Error::Internal(format!("audience '{name}' was asked for twice"))),
        };
        results.push((name.clone(), result));
    }
    Ok(results)
}

/// Everything `node` reads, directly or through others.
fn reads_transitively(graph: &Graph, node: &Node) -> Vec<Node> {
    let mut seen = std::collections::BTreeSet::new();
    let mut frontier = vec![node.clone()];
    while let Some(n) = frontier.pop() {
        for next in graph.reads(&n) {
            if seen.insert(next.clone()) {
                frontier.push(next.clone());
            }
        }
    }
    seen.into_iter().collect()
}

/// Writes the file(s) of an audience just recorded, when a target is given.
async fn write_files(
    session: &QuerySession,
    name: &str,
    mut report: Report,
    export: &Export,
    options: &MaterializeOptions,
) -> Result<Report> {
    let Some(target) = &options.target else { return Ok(report) };
    let started = Instant::now();
    let audience =
        session.snapshot().manifest().catalog.audience(name).cloned().ok_or_else(|| no_such_audience(name))?;
    let latest = audience.latest().ok_or_else(|| Error::Internal(format!("audience '{name}' has no version")))?;
    let index = session.index();
    let exported = |v: &AudienceVersion| -> Result<RoaringBitmap> {
        let (members, holdout) = (index.catalog_set(&v.members_file)?, index.catalog_set(&v.holdout_file)?);
        Ok(if holdout.is_empty() { members.as_ref().clone() } else { members.as_ref() - holdout.as_ref() })
    };
    let now = exported(latest)?;
    let rows = match options.changes_since.and_then(|n| audience.version(n)) {
        Some(old) => {
            let old = exported(old)?;
            Rows::Changes { added: &now - &old, removed: &old - &now }
        }
        None => Rows::Members(now),
    };
    let persons;
    let export = match export {
        Export::Persons { audience, .. } => {
            persons = Export::Persons { audience: audience.clone(), since: options.changes_since };
            &persons
        }
        other => other,
    };
    let Written { files, rows } =
        write_audience(session, export, &rows, target, options.max_rows_per_file, options.compression).await?;
    report.rows_written = rows;
    report.files = files;
    report.elapsed_ms += started.elapsed().as_secs_f64() * 1000.0;
    Ok(report)
}

/// Evaluates `audience` (query, suppression, holdout) and puts it in `next`, with a new version
/// when its members or holdout differ from the latest.
async fn compute_and_record(
    session: &QuerySession,
    writer: &StoreWriter,
    next: &mut Manifest,
    mut audience: Audience,
    origin: &Body,
) -> Result<(Report, Export)> {
    let evaluated_now = EvaluatedNow::seen_with(session.options().now);
    let plan = plan_query(session, &audience.query, origin, 0).await?;
    let Evaluated { members: queried, unknown_ids, export, .. } = evaluate(session, plan).await?;
    let index = session.index();
    let mut suppressed_set = RoaringBitmap::new();
    let mut unknown_suppressed = 0u64;
    for other in &audience.suppress_audiences {
        let members = next
            .catalog
            .audience(other)
            .and_then(Audience::latest)
            .ok_or_else(|| Error::Usage(format!("SUPPRESS {other}: there is no saved audience '{other}'")))?;
        suppressed_set |= index.catalog_set(&members.members_file)?.as_ref();
    }
    for file in &audience.suppress_files {
        let ids = read_id_file(Path::new(file), &index)?;
        if ids.set.is_empty() && ids.unknown > 0 {
            // Most likely not the format it is taken for (a CSV separated by ';', a header
            // other than user_id): suppressing no one would export everyone it lists.
            return Err(Error::Usage(format!(
                "SUPPRESS FILE '{file}': none of its {} ids is a user; it must be a CSV with a user_id column \
                 (comma-separated), a Parquet file with one, or one user_id per line",
                ids.unknown
            )));
        }
        unknown_suppressed += ids.unknown;
        suppressed_set |= ids.set;
    }
    let snapshot = session.snapshot();
    let files = crate::query::users_files_of(&snapshot)?;
    let latest = audience.latest().cloned();
    let previous = match &latest {
        Some(v) => Some((index.catalog_set(&v.members_file)?, index.catalog_set(&v.holdout_file)?)),
        None => None,
    };
    let (name, bp) = (audience.name.as_str(), audience.holdout_basis_points);
    let Decided { members, holdout, suppressed, member_count, holdout_count, added, removed, profiles } =
        if audience.by_person {
            // Persons: a person is in when any of its profiles is, out when any is suppressed,
            // and held out as a whole, by a hash of its first profile's user_id.
            if snapshot.manifest().identity.resolution.is_none() {
                return Err(no_resolution_for_persons(name));
            }
            let persons = PersonMap::of(&snapshot)?;
            let queried = persons.expand(&queried);
            let suppressed_set = persons.expand(&suppressed_set);
            let suppressed = persons.count(&(&queried & &suppressed_set));
            let members = queried - &suppressed_set;
            let mut held_anchors = RoaringBitmap::new();
            if bp > 0 {
                for_each_member_id(&files, &persons.anchors(&members), |id, user| {
                    if in_holdout(name, user, bp) {
                        held_anchors.insert(id);
                    }
                })?;
            }
            let holdout = persons.expand(&held_anchors);
            let (added, removed) = match &previous {
                Some((m, _)) => (persons.count(&(&members - m.as_ref())), persons.count(&(m.as_ref() - &members))),
                None => (persons.count(&members), 0),
            };
            Decided {
                member_count: persons.count(&members),
                holdout_count: held_anchors.len(),
                profiles: Some(members.len()),
                members,
                holdout,
                suppressed,
                added,
                removed,
            }
        } else {
            let suppressed = queried.intersection_len(&suppressed_set);
            let members = queried - &suppressed_set;
            let mut holdout = RoaringBitmap::new();
            if bp > 0 {
                for_each_member_id(&files, &members, |id, user| {
                    if in_holdout(name, user, bp) {
                        holdout.insert(id);
                    }
                })?;
            }
            // Sizes of the differences without building them: |A − B| = |A| − |A ∩ B|.
            let (added, removed) = match &previous {
                Some((m, _)) => {
                    let common = members.intersection_len(m.as_ref());
                    (members.len() - common, m.len() - common)
                }
                None => (members.len(), 0),
            };
            Decided {
                member_count: members.len(),
                holdout_count: holdout.len(),
                profiles: None,
                members,
                holdout,
                suppressed,
                added,
                removed,
            }
        };
    let export =
        if audience.by_person { Export::Persons { audience: audience.name.clone(), since: None } } else { export };
    let unchanged = previous.as_ref().is_some_and(|(m, h)| m.as_ref() == &members && h.as_ref() == &holdout);
    let (added, removed) = if unchanged { (0, 0) } else { (added, removed) };
    let mut notes = Vec::new();
    if unknown_ids > 0 {
        notes.push(format!("{unknown_ids} user_ids the query returned are not users and were left out"));
    }
    if unknown_suppressed > 0 {
        notes.push(format!("{unknown_suppressed} user_ids in suppression files are not users"));
    }
    // Time windows move with now(): say so when it is not the same kind of now as last time
    // (a version made with --now, then one on the clock, or another --now).
    if let Some(v) = &latest
        && let Some(before) = &v.now
        && (before.pinned != evaluated_now.pinned || (before.pinned && before.at != evaluated_now.at))
    {
        notes.push(format!("version {} was evaluated at now() = {before}, this one at {evaluated_now}", v.number));
    }
    let number = if unchanged {
        latest.as_ref().map_or(1, |v| v.number)
    } else {
        let number = latest.as_ref().map_or(1, |v| v.number + 1);
        let what = format!("audience-{}-v{number}", audience.name);
        audience.versions.push(AudienceVersion {
            number,
            computed_at: now_rfc3339(),
            computed_on: writer.base().version,
            members: member_count,
            holdout: holdout_count,
            suppressed,
            added,
            removed,
            members_file: write_set(writer, &format!("{what}-members"), &members)?,
            holdout_file: write_set(writer, &format!("{what}-holdout"), &holdout)?,
            profiles,
            now: Some(evaluated_now.clone()),
        });
        number
    };
    let report = Report {
        audience: audience.name.clone(),
        version: number,
        unchanged,
        members: member_count,
        holdout: holdout_count,
        suppressed,
        added,
        removed,
        rows_written: 0,
        files: Vec::new(),
        elapsed_ms: 0.0,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
        now: evaluated_now,
    };
    match next.catalog.audience_mut(&audience.name) {
        Some(slot) => *slot = audience,
        None => next.catalog.audiences.push(audience),
    }
    Ok((report, export))
}

/// An audience's members, holdout and counts as decided by one evaluation.
struct Decided {
    /// Member profiles (holdout included) and held-out profiles, as stored.
    members: RoaringBitmap,
    holdout: RoaringBitmap,
    /// Members (users or persons) suppression removed, members, held out, added and removed.
    suppressed: u64,
    member_count: u64,
    holdout_count: u64,
    added: u64,
    removed: u64,
    /// The member persons' profiles (`BY PERSON` only).
    profiles: Option<u64>,
}

/// The error for `BY PERSON` on a store that has not resolved identities.
fn no_resolution_for_persons(name: &str) -> Error {
    Error::Usage(format!(
        "audience '{name}' is BY PERSON, but the store has no identity resolution yet; import an identities \
         table or set rules with persona identity rules --set (docs/identity.md)"
    ))
}

/// The reports as a result table.
pub fn report_batch(reports: &[Report]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("audience", DataType::Utf8, false),
        Field::new("version", DataType::UInt32, false),
        Field::new("members", DataType::UInt64, false),
        Field::new("holdout", DataType::UInt64, false),
        Field::new("suppressed", DataType::UInt64, false),
        Field::new("added", DataType::UInt64, false),
        Field::new("removed", DataType::UInt64, false),
        Field::new("rows_written", DataType::UInt64, false),
        Field::new("files", DataType::Utf8, true),
        Field::new("note", DataType::Utf8, true),
    ]));
    let files = |r: &Report| {
        (!r.files.is_empty()).then(|| r.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "))
    };
    let note = |r: &Report| match (&r.note, r.unchanged) {
        (Some(n), true) => Some(format!("unchanged since version {}; {n}", r.version)),
        (None, true) => Some(format!("unchanged since version {}", r.version)),
        (n, false) => n.clone(),
    };
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(reports.iter().map(|r| r.audience.as_str()))),
            Arc::new(UInt32Array::from_iter_values(reports.iter().map(|r| r.version))),
            Arc::new(UInt64Array::from_iter_values(reports.iter().map(|r| r.members))),
            Arc::new(UInt64Array::from_iter_values(reports.iter().map(|r| r.holdout))),
            Arc::new(UInt64Array::from_iter_values(reports.iter().map(|r| r.suppressed))),
            Arc::new(UInt64Array::from_iter_values(reports.iter().map(|r| r.added))),
            Arc::new(UInt64Array::from_iter_values(reports.iter().map(|r| r.removed))),
            Arc::new(UInt64Array::from_iter_values(reports.iter().map(|r| r.rows_written))),
            Arc::new(StringArray::from_iter(reports.iter().map(files))),
            Arc::new(StringArray::from_iter(reports.iter().map(note))),
        ],
    )?)
}

/// Every saved audience's name, for `--all`.
pub fn audience_names(catalog: &Catalog) -> Vec<String> {
    catalog.audiences.iter().map(|a| a.name.clone()).collect()
}
