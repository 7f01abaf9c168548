//! Which of the store's tables a scan in a plan reads, told by the provider it scans, never by its
//! name: a CTE, a view or another schema's table called `purchases` is not the store's purchases,
//! and a rule that answers from the store's bitmaps must leave it alone.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::Column;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, LogicalPlan, TableScan};

use crate::tables::Table;

/// The providers a session registered for the store's tables.
#[derive(Debug, Clone, Default)]
pub struct StoreTables {
    providers: Vec<(Table, Arc<dyn TableProvider>)>,
}

impl StoreTables {
    pub fn new(providers: Vec<(Table, Arc<dyn TableProvider>)>) -> StoreTables {
        StoreTables { providers }
    }

    /// The store table `scan` reads, if it reads one of them.
    pub fn table_of(&self, scan: &TableScan) -> Option<Table> {
        // `source_as_provider` fails for sources that are not providers: not one of ours.
        let provider = source_as_provider(&scan.source).ok()?;
        let wanted = Arc::as_ptr(&provider).cast::<()>();
        self.providers.iter().find(|(_, p)| Arc::as_ptr(p).cast::<()>() == wanted).map(|(t, _)| *t)
    }

    /// The scan of the store's `table` under `plan` — through aliases and projections that pass
    /// `column` on unchanged — and the name `column` has there; `None` for any other plan.
    pub fn column_scan<'a>(
        &self,
        plan: &'a LogicalPlan,
        column: &Column,
        table: Table,
    ) -> Option<(&'a TableScan, String)> {
        match plan {
            LogicalPlan::SubqueryAlias(a) => {
                if column.relation.as_ref().is_some_and(|r| *r != a.alias) {
                    return None;
                }
                self.column_scan(&a.input, &Column::new_unqualified(&column.name), table)
            }
            LogicalPlan::Projection(p) => {
                let inner = p.expr.iter().zip(p.schema.columns()).find_map(|(e, out)| match e {
                    Expr::Column(c) if out == *column || (column.relation.is_none() && out.name == column.name) => {
                        Some(c)
                    }
                    _ => None,
                })?;
                self.column_scan(&p.input, inner, table)
            }
            LogicalPlan::TableScan(scan) => {
                if scan.fetch.is_some() || self.table_of(scan) != Some(table) {
                    return None;
                }
                scan.source.schema().field_with_name(&column.name).ok()?;
                Some((scan, column.name.clone()))
            }
            _ => None,
        }
    }

    /// The provider of `table`.
    pub fn provider(&self, table: Table) -> Option<Arc<dyn TableProvider>> {
        self.providers.iter().find(|(t, _)| *t == table).map(|(_, p)| Arc::clone(p))
    }
}
