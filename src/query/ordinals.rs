//! `ORDER BY 2` where the second output column is an unnamed expression over an aggregate
//! (`SELECT user_id, round(sum(amount), 2) … GROUP BY user_id ORDER BY 2 DESC`): DataFusion 55
//! refuses it ("Column in ORDER BY must be in GROUP BY or an aggregate function"), though it
//! accepts the same expression written out. Before planning, each such ordinal is replaced by the
//! expression it stands for — exactly what SQL defines it to mean — so the query plans as written
//! out. Ordinals naming a column, an aliased item or a constant are left to DataFusion, as are
//! ordinals of a `SELECT *` (whose positions the text does not say) and of set operations.

use std::ops::ControlFlow;

use datafusion::sql::parser::{CopyToSource, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    Expr, OrderByKind, Query, SelectItem, SetExpr, Value, ValueWithSpan, VisitMut, VisitorMut,
};

/// Replaces, in every query of `statement` (subqueries too), the `ORDER BY` ordinals that stand
/// for an unnamed computed output column by that column's expression.
pub fn spell_out_order_ordinals(statement: &mut DfStatement) {
    match statement {
        DfStatement::Statement(s) => {
            let _ = s.visit(&mut OrdinalSpeller);
        }
        DfStatement::Explain(e) => spell_out_order_ordinals(&mut e.statement),
        DfStatement::CopyTo(c) => {
            if let CopyToSource::Query(q) = &mut c.source {
                let _ = q.visit(&mut OrdinalSpeller);
            }
        }
        _ => {}
    }
}

struct OrdinalSpeller;

impl VisitorMut for OrdinalSpeller {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_ref() else { return ControlFlow::Continue(()) };
        let Some(order_by) = query.order_by.as_mut() else { return ControlFlow::Continue(()) };
        let OrderByKind::Expressions(keys) = &mut order_by.kind else { return ControlFlow::Continue(()) };
        let items = &select.projection;
        if items.iter().any(|i| matches!(i, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..))) {
            return ControlFlow::Continue(());
        }
        for key in keys {
            let Expr::Value(ValueWithSpan { value: Value::Number(text, false), .. }) = &key.expr else { continue };
            let Some(position) = text.parse::<usize>().ok().and_then(|p| p.checked_sub(1)) else { continue };
            if let Some(SelectItem::UnnamedExpr(expr)) = items.get(position)
                && is_computed(expr)
            {
                key.expr = expr.clone();
            }
        }
        ControlFlow::Continue(())
    }
}

/// Whether `expr` is computed (not a column, a constant or a parenthesised one of those), the
/// case DataFusion's ordinals miss.
fn is_computed(expr: &Expr) -> bool {
    match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Value(_) => false,
        Expr::Nested(inner) => is_computed(inner),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn spelled(sql: &str) -> String {
        let mut statements = DFParser::parse_sql(sql).unwrap();
        let mut statement = statements.pop_front().unwrap();
        spell_out_order_ordinals(&mut statement);
        statement.to_string()
    }

    #[test]
    fn ordinals_of_computed_columns_become_their_expressions() {
        assert_eq!(
            spelled("SELECT u, round(sum(a), 2) FROM t GROUP BY u ORDER BY 2 DESC, 1"),
            "SELECT u, round(sum(a), 2) FROM t GROUP BY u ORDER BY round(sum(a), 2) DESC, 1"
        );
        assert_eq!(
            spelled("SELECT * FROM (SELECT u, sum(a) + 1 FROM t GROUP BY u ORDER BY 2) s ORDER BY 1"),
            "SELECT * FROM (SELECT u, sum(a) + 1 FROM t GROUP BY u ORDER BY sum(a) + 1) s ORDER BY 1"
        );
        assert_eq!(
            spelled("EXPLAIN SELECT u, abs(sum(a)) FROM t GROUP BY u ORDER BY 2"),
            "EXPLAIN SELECT u, abs(sum(a)) FROM t GROUP BY u ORDER BY abs(sum(a))"
        );
    }

    #[test]
    fn other_ordinals_are_left_as_written() {
        for sql in [
            "SELECT u, sum(a) AS s FROM t GROUP BY u ORDER BY 2",
            "SELECT u, 7 FROM t ORDER BY 2, 1",
            "SELECT *, a + 1 FROM t ORDER BY 2",
            "SELECT u, a + 1 FROM t ORDER BY 9",
            "SELECT u, a + 1 FROM t ORDER BY 0",
            "SELECT u, a + 1 FROM t UNION SELECT u, a FROM t ORDER BY 2",
        ] {
            let parsed = DFParser::parse_sql(sql).unwrap().pop_front().unwrap().to_string();
            assert_eq!(spelled(sql), parsed, "{sql}");
        }
    }
}
