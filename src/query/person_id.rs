//! `person_id` on every table with a `user_id` (users, purchases, events, user_tags, identities)
//! once the store has an identity resolution (docs/identity.md): the person of the row's user in
//! the pinned version, NULL for a user the resolution does not list. It is a computed column, not
//! a stored one:
//!
//! ```text
//! SQL schema of a table = its stored columns + person_id
//! analyzer:  TableScan t (…, person_id)          ──▶  Projection (…, persona_person_id(t.user_id) AS person_id)
//!                                                        TableScan t (…, user_id)
//! provider:  a scan still asked for person_id (a plan built after the analyzer) ─▶ the same
//!            projection, physically, over the scan of the stored columns
//! ```
//!
//! so that every rule that reads a scan sees only stored columns, and `person_id` is to them one
//! more expression over `user_id`. The map user_id → person_id ([`PersonIds`]) is read from the
//! resolution's persons file on first use by a query of the session, and kept with the pinned
//! version: exact (keys compared as text), about 25 bytes a user.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{Array, ArrayRef, Int64Array, Int64Builder, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session as CatalogSession;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, Result as DfResult, ScalarValue, config::ConfigOptions};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, Projection, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TableScan,
    TableScanBuilder, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use hashbrown::HashTable;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, IoContext, Result};
use crate::query::store_tables::StoreTables;
use crate::store::{Snapshot, layout};
use crate::tables::USER_ID;

/// The computed column's name.
pub const PERSON_ID: &str = "person_id";

/// The function the column is computed with.
pub const PERSON_ID_FUNCTION: &str = "persona_person_id";

/// `schema` with `person_id` (a nullable `Int64`, as in `user_persons`) appended.
pub fn with_person_id(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(PERSON_ID, DataType::Int64, true));
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// user_id → person_id of one version's resolution, read on first use.
#[derive(Debug)]
pub struct PersonIds {
    persons: PathBuf,
    loaded: Mutex<Option<Arc<PersonMap>>>,
}

/// The loaded map: the user_ids one after the other in `text`, a hash table of their indices.
#[derive(Debug, Default)]
struct PersonMap {
    text: String,
    /// Per entry: where its user_id ends in `text` (it starts where the previous one ends).
    ends: Vec<u32>,
    person: Vec<u32>,
    table: HashTable<u32>,
}

fn hash(user_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(user_id.as_bytes())
}

impl PersonMap {
    fn key(&self, i: u32) -> &str {
        let end = self.ends[i as usize] as usize;
        let start = if i == 0 { 0 } else { self.ends[i as usize - 1] as usize };
        &self.text[start..end]
    }

    fn insert(&mut self, user_id: &str, person: u32) -> std::result::Result<(), String> {
        let h = hash(user_id);
        let i = self.ends.len() as u32;
        let (text, ends) = (&self.text, &self.ends);
        let key = |i: u32| {
            let end = ends[i as usize] as usize;
            let start = if i == 0 { 0 } else { ends[i as usize - 1] as usize };
            &text[start..end]
        };
        // One probe: the slot where the key is, or where it goes.
        match self.table.entry(h, |&j| key(j) == user_id, |&j| hash(key(j))) {
            hashbrown::hash_table::Entry::Occupied(_) => return Err(format!("user_id {user_id:?} is listed twice")),
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(i);
            }
        }
        self.text.push_str(user_id);
        let end = u32::try_from(self.text.len()).map_err(|_| "its user_ids exceed 4 GiB".to_string())?;
        self.ends.push(end);
        self.person.push(person);
        Ok(())
    }

    fn get(&self, user_id: &str) -> Option<u32> {
        self.table.find(hash(user_id), |&i| self.key(i) == user_id).map(|&i| self.person[i as usize])
    }
}

impl PersonIds {
    /// The persons of `snapshot`'s resolution; `None` when the store has none (then the tables
    /// have no `person_id`).
    pub fn of(snapshot: &Snapshot) -> Option<PersonIds> {
        let resolution = snapshot.manifest().identity.resolution.as_ref()?;
        Some(PersonIds { persons: layout::resolve(snapshot.root(), &resolution.persons), loaded: Mutex::new(None) })
    }

    fn map(&self) -> Result<Arc<PersonMap>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(map) = loaded.as_ref() {
            return Ok(Arc::clone(map));
        }
        let map = Arc::new(self.read()?);
        *loaded = Some(Arc::clone(&map));
        Ok(map)
    }

    fn read(&self) -> Result<PersonMap> {
        let path = &self.persons;
        let corrupt = |e: &dyn std::fmt::Display| Error::corrupt(path, e.to_string());
        let file = std::fs::File::open(path).io_context("open", path)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| corrupt(&e))?;
        let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        let schema = builder.schema().clone();
        let at = |name: &str| schema.index_of(name).map_err(|_| corrupt(&format!("it has no {name} column")));
        let user_column = at(USER_ID)?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), [user_column, at(PERSON_ID)?]);
        // The user_ids' bytes, about: their column's size uncompressed (lengths included).
        let text_bytes: i64 = builder
            .metadata()
            .row_groups()
            .iter()
            .filter_map(|g| g.columns().get(user_column).map(|c| c.uncompressed_size()))
            .sum();
        let mut map = PersonMap {
            text: String::with_capacity(usize::try_from(text_bytes).unwrap_or(0).min(1 << 32)),
            ends: Vec::with_capacity(rows),
            person: Vec::with_capacity(rows),
            table: HashTable::with_capacity(rows),
        };
        for batch in builder.with_projection(mask).with_batch_size(65_536).build().map_err(|e| corrupt(&e))? {
            let batch = batch.map_err(|e| corrupt(&e))?;
            let column = |name: &str| batch.column_by_name(name).ok_or_else(|| corrupt(&format!("no {name} column")));
            let users = crate::store::typed::column::<StringArray>(path, USER_ID, column(USER_ID)?.as_ref())?;
            let persons = crate::store::typed::column::<Int64Array>(path, PERSON_ID, column(PERSON_ID)?.as_ref())?;
            for i in 0..batch.num_rows() {
                if users.is_null(i) || persons.is_null(i) {
                    return Err(corrupt(&format!("row {i} of a batch has no user_id or person_id")));
                }
                let person = u32::try_from(persons.value(i))
                    .map_err(|_| corrupt(&format!("person_id {} is out of range", persons.value(i))))?;
                map.insert(users.value(i), person).map_err(|e| corrupt(&e))?;
            }
        }
        Ok(map)
    }
}

/// `persona_person_id(user_id)`: the user's person in the pinned version, NULL for a user the
/// resolution does not list (and for NULL).
#[derive(Debug)]
pub struct PersonIdOf {
    signature: Signature,
    ids: Arc<PersonIds>,
}

impl PersonIdOf {
    pub fn new(ids: Arc<PersonIds>) -> PersonIdOf {
        PersonIdOf { signature: Signature::any(1, Volatility::Stable), ids }
    }
}

impl PartialEq for PersonIdOf {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.ids, &other.ids)
    }
}

impl Eq for PersonIdOf {}

impl std::hash::Hash for PersonIdOf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.ids.persons.hash(state);
    }
}

impl ScalarUDFImpl for PersonIdOf {
    fn name(&self) -> &str {
        PERSON_ID_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return datafusion::common::plan_err!("{PERSON_ID_FUNCTION}() takes one user_id");
        };
        let map = self.ids.map()?;
        let lookup = |text: &StringArray| -> ArrayRef {
            let mut out = Int64Builder::with_capacity(text.len());
            for i in 0..text.len() {
                out.append_option(text.is_valid(i).then(|| map.get(text.value(i))).flatten().map(i64::from));
            }
            Arc::new(out.finish())
        };
        let array = match arg {
            ColumnarValue::Scalar(v) => v.to_array()?,
            ColumnarValue::Array(a) => Arc::clone(a),
        };
        let text = arrow::compute::cast(&array, &DataType::Utf8)?;
        let text = text
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| datafusion::common::DataFusionError::Internal("a cast to Utf8 gave another type".into()))?;
        let out = lookup(text);
        Ok(match arg {
            ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?),
            ColumnarValue::Array(_) => ColumnarValue::Array(out),
        })
    }
}

/// The analyzer rule of the module doc: a scan of a store table that gives `person_id` reads
/// `user_id` instead, under a projection that computes it.
#[derive(Debug)]
pub struct PersonIdColumn {
    pub tables: StoreTables,
    pub udf: Arc<ScalarUDF>,
}

impl AnalyzerRule for PersonIdColumn {
    fn name(&self) -> &str {
        "persona_person_id"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        // Only plans that name a person_id somewhere: every other plan keeps its scans as the
        // SQL planner wrote them (rules that read them as written see no change).
        if !names_person_id(&plan)? {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::TableScan(scan) = &node else { return Ok(Transformed::no(node)) };
            match self.tables.table_of(scan).map(|_| computed(scan, &self.udf)).transpose()?.flatten() {
                Some(plan) => Ok(Transformed::yes(plan)),
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }
}

/// Whether any expression of `plan` (subqueries included) reads a column named `person_id`.
fn names_person_id(plan: &LogicalPlan) -> DfResult<bool> {
    let mut found = false;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if matches!(e, Expr::Column(c) if c.name == PERSON_ID) {
                    found = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    })?;
    Ok(found)
}

/// `scan` reading `user_id` instead of `person_id`, under a projection computing it; `None` when
/// the scan does not give `person_id`.
fn computed(scan: &TableScan, udf: &Arc<ScalarUDF>) -> DfResult<Option<LogicalPlan>> {
    let source = scan.source.schema();
    let Some(split) = StoredProjection::of(&source, scan.projection.as_ref()) else { return Ok(None) };
    let table = scan.table_name.clone();
    let inner = TableScanBuilder::from(scan.clone()).with_projection(Some(split.stored.clone())).build()?;
    let exprs = split
        .outputs
        .iter()
        .map(|output| match output {
            Some(at) => Expr::Column(Column::new(Some(table.clone()), source.field(split.stored[*at]).name())),
            None => udf
                .call(vec![Expr::Column(Column::new(Some(table.clone()), USER_ID))])
                .alias_qualified(Some(table.clone()), PERSON_ID),
        })
        .collect();
    Ok(Some(LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(LogicalPlan::TableScan(inner)))?)))
}

/// A scan of `provider` named `name` that gives its stored columns only (every column but
/// `person_id`): for plans that rules build, which have no use for it.
pub fn stored_scan(
    name: &str,
    provider: Arc<dyn datafusion::catalog::TableProvider>,
) -> DfResult<datafusion::logical_expr::LogicalPlanBuilder> {
    let schema = provider.schema();
    let projection = schema
        .index_of(PERSON_ID)
        .ok()
        .map(|person| (0..schema.fields().len()).filter(|&i| i != person).collect::<Vec<_>>());
    datafusion::logical_expr::LogicalPlanBuilder::scan(
        name,
        datafusion::datasource::provider_as_source(provider),
        projection,
    )
}

/// A scan asked for `person_id` — by the SQL planner ([`PersonIdColumn`]) or, after all, by a
/// rule that built one after the analyzer (the providers): the stored columns to scan instead,
/// and the projection to put over them.
#[derive(Debug)]
pub struct StoredProjection {
    /// Indices of the stored columns to scan (`user_id` included).
    pub stored: Vec<usize>,
    /// Per output column: its position among `stored`, or `None` for `person_id`.
    outputs: Vec<Option<usize>>,
    user: usize,
}

impl StoredProjection {
    /// `None` when the scan does not ask for `person_id` of `schema` (the SQL schema, with it).
    pub fn of(schema: &Schema, projection: Option<&Vec<usize>>) -> Option<StoredProjection> {
        let person = schema.index_of(PERSON_ID).ok()?;
        let all: Vec<usize> = (0..schema.fields().len()).collect();
        let projection = projection.unwrap_or(&all);
        if !projection.contains(&person) {
            return None;
        }
        let user_column = schema.index_of(USER_ID).ok()?;
        let mut stored: Vec<usize> = projection.iter().copied().filter(|&i| i != person).collect();
        if !stored.contains(&user_column) {
            stored.push(user_column);
        }
        let position = |i: usize| stored.iter().position(|&s| s == i);
        let outputs = projection.iter().map(|&i| if i == person { None } else { position(i) }).collect();
        let user = position(user_column)?;
        Some(StoredProjection { outputs, user, stored })
    }

    /// `input` (the scan of [`StoredProjection::stored`]) with the asked columns, `person_id`
    /// computed by `udf`.
    pub fn project(
        &self,
        state: &dyn CatalogSession,
        udf: &Arc<ScalarUDF>,
        input: Arc<dyn ExecutionPlan>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        use datafusion::physical_plan::expressions::Column as PhysicalColumn;
        let schema = input.schema();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let user = Expr::Column(Column::new_unqualified(schema.field(self.user).name()));
        let person = state.create_physical_expr(udf.call(vec![user]), &df_schema)?;
        let exprs = self
            .outputs
            .iter()
            .map(|o| match o {
                Some(at) => {
                    let name = schema.field(*at).name().clone();
                    (
                        Arc::new(PhysicalColumn::new(&name, *at)) as Arc<dyn datafusion::physical_plan::PhysicalExpr>,
                        name,
                    )
                }
                None => (Arc::clone(&person), PERSON_ID.to_string()),
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(ProjectionExec::try_new(exprs, input)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_finds_every_user_exactly_and_refuses_one_listed_twice() {
        let mut map = PersonMap::default();
        let users: Vec<String> = (0..5000).map(|i| format!("u{i}")).chain(["张三".into(), "".into()]).collect();
        for (i, u) in users.iter().enumerate() {
            map.insert(u, (i / 3) as u32).unwrap();
        }
        for (i, u) in users.iter().enumerate() {
            assert_eq!(map.get(u), Some((i / 3) as u32), "{u}");
        }
        assert_eq!(map.get("u5000"), None);
        assert_eq!(map.get("u1 "), None);
        assert!(map.insert("u7", 1).unwrap_err().contains("twice"));
    }

    #[test]
    fn a_projection_asking_for_person_id_scans_user_id_instead() {
        let schema = with_person_id(&Schema::new(vec![
            Field::new(USER_ID, DataType::Utf8, false),
            Field::new("tier", DataType::Utf8, true),
        ]));
        assert!(StoredProjection::of(&schema, Some(&vec![1])).is_none());
        let p = StoredProjection::of(&schema, Some(&vec![2, 1])).unwrap();
        assert_eq!(p.stored, vec![1, 0]);
        assert_eq!(p.outputs, vec![None, Some(0)]);
        assert_eq!(p.user, 1);
        let all = StoredProjection::of(&schema, None).unwrap();
        assert_eq!((all.stored, all.outputs), (vec![0, 1], vec![Some(0), Some(1), None]));
    }
}
