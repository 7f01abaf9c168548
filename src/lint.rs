//! Checks of a parsed statement against the store that SQL itself does not make: names of tags and
//! saved audiences that do not exist (a misspelled `has_tag('vip_candidat')` silently matches no
//! user), with a "did you mean"; and type errors explained as one sentence pointing at the value.
//!
//! Front ends call [`warnings`] before running a statement and print each line on stderr, and
//! pass a failed statement's error through [`explain_error`]:
//!
//! ```text
//! for statement in parse(sql)? {
//!     for w in lint::warnings(&session, &statement) { eprintln!("warning: {w}") }
//!     run(statement.clone()).map_err(|e| lint::explain_error(&statement, e))?
//! }
//! ```

use std::ops::ControlFlow;

use datafusion::sql::parser::{CopyToSource, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectNamePart, Value, Visit, Visitor,
};

use crate::audience::statement::{Body, CatalogStatement, Statement};
use crate::engine::Session;
use crate::error::Error;
use crate::tables::TAG;

/// A name a statement refers to, and what kind of thing it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameRef {
    /// `has_tag('x')`, `tag = 'x'`, `tag IN ('x', ...)`.
    Tag(String),
    /// `in_audience('x')`.
    Audience(String),
}

/// The tags and saved audiences a statement names (in the order written, repeats removed).
pub fn referenced_names(statement: &Statement) -> Vec<NameRef> {
    let mut finder = NameFinder::default();
    for_each_query(statement, &mut |s| {
        let _ = s.visit(&mut finder);
    });
    let mut out: Vec<NameRef> = Vec::new();
    for name in finder.names {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Warnings for the names in `statement` that the session's store does not have: unknown tags
/// (loaded or rule tags) and unknown saved audiences, each with the closest known name. Each is
/// one sentence without the `warning:` prefix.
pub fn warnings(session: &Session, statement: &Statement) -> Vec<String> {
    let names = referenced_names(statement);
    if names.is_empty() {
        return Vec::new();
    }
    let tags = session.index().tag_names();
    let audiences: Vec<String> =
        session.snapshot().manifest().catalog.audiences.iter().map(|a| a.name.clone()).collect();
    check_names(&names, &tags, &audiences)
}

/// [`warnings`] against given lists of known tags and audiences.
pub fn check_names(names: &[NameRef], tags: &[String], audiences: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        match name {
            NameRef::Tag(t) if !tags.contains(t) => {
                out.push(format!("there is no tag '{t}'{}, so it matches no user", suggestion(t, tags)));
            }
            NameRef::Audience(a) if !audiences.contains(a) => {
                out.push(format!("there is no saved audience '{a}'{}", suggestion(a, audiences)));
            }
            _ => {}
        }
    }
    out
}

/// ` (did you mean 'x'?)` for the known name closest to `name`, or nothing when none is close.
fn suggestion(name: &str, known: &[String]) -> String {
    did_you_mean(name, known).map(|s| format!(" (did you mean '{s}'?)")).unwrap_or_default()
}

/// The known name closest to `name` by edit distance (ignoring case), if it is close enough to be
/// a likely misspelling: at most 2 edits, or a third of the name's length for long names.
pub fn did_you_mean<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let limit = (name.chars().count() / 3).max(2);
    known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_lowercase()), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, k)| (*d, k.len()))
        .map(|(_, k)| k.as_str())
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// Calls `f` with every sqlparser node of `statement` that holds its expressions (for a catalog
/// statement, its query or rule parsed on its own).
fn for_each_query(statement: &Statement, f: &mut dyn FnMut(&dyn VisitNode)) {
    match statement {
        Statement::Sql(s) => for_each_df(s, f),
        Statement::Catalog(c) => {
            if let Some((body, is_query)) = catalog_body(c) {
                for parsed in parse_body(body, is_query) {
                    for_each_df(&parsed, f);
                }
            }
        }
    }
}

fn for_each_df(statement: &DfStatement, f: &mut dyn FnMut(&dyn VisitNode)) {
    match statement {
        DfStatement::Statement(s) => f(s.as_ref()),
        DfStatement::CopyTo(copy) => {
            if let CopyToSource::Query(q) = &copy.source {
                f(q.as_ref());
            }
        }
        DfStatement::Explain(explain) => for_each_df(&explain.statement, f),
        _ => {}
    }
}

/// The query or rule of a catalog statement, and whether it is a whole query.
fn catalog_body(c: &CatalogStatement) -> Option<(&Body, bool)> {
    match c {
        CatalogStatement::CreateTag { rule, is_query, .. } => Some((rule, *is_query)),
        CatalogStatement::CreateAudience { query, .. } => Some((query, true)),
        CatalogStatement::EstimateAudience { query: Some(query), .. } => Some((query, true)),
        _ => None,
    }
}

/// A body parsed on its own: a query, or a rule as the condition of a users query. Positions are
/// the body's own; [`Body::locate`] moves them. Nothing when it does not parse (the statement's
/// own error will say why).
fn parse_body(body: &Body, is_query: bool) -> Vec<DfStatement> {
    let text = if is_query { body.text.clone() } else { format!("SELECT 1 FROM users WHERE {}", body.text) };
    match crate::engine::parse(&text) {
        Ok(statements) => statements
            .into_iter()
            .filter_map(|s| match s {
                Statement::Sql(s) => Some(*s),
                Statement::Catalog(_) => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A sqlparser node that can be walked (a statement or a query).
trait VisitNode {
    fn visit(&self, visitor: &mut dyn ExprVisitor) -> ControlFlow<()>;
}

/// An object-safe expression visitor.
trait ExprVisitor {
    fn expr(&mut self, expr: &Expr);
}

struct Adapter<'a>(&'a mut dyn ExprVisitor);

impl Visitor for Adapter<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        self.0.expr(expr);
        ControlFlow::Continue(())
    }
}

impl<T: Visit> VisitNode for T {
    fn visit(&self, visitor: &mut dyn ExprVisitor) -> ControlFlow<()> {
        Visit::visit(self, &mut Adapter(visitor))
    }
}

#[derive(Default)]
struct NameFinder {
    names: Vec<NameRef>,
}

impl ExprVisitor for NameFinder {
    fn expr(&mut self, expr: &Expr) {
        match expr {
            Expr::Function(f) => {
                let name = f.name.0.last().and_then(|p| match p {
                    ObjectNamePart::Identifier(i) => Some(i.value.to_ascii_lowercase()),
                    _ => None,
                });
                let FunctionArguments::List(list) = &f.args else { return };
                // The name is the last argument: `has_tag('A')` or `has_tag(u.user_id, 'A')`.
                let last = list.args.last().and_then(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => string_literal(e),
                    _ => None,
                });
                match (name.as_deref(), last) {
                    (Some("has_tag"), Some(tag)) => self.names.push(NameRef::Tag(tag)),
                    (Some("in_audience"), Some(a)) => self.names.push(NameRef::Audience(a)),
                    _ => {}
                }
            }
            Expr::BinaryOp { left, op: BinaryOperator::Eq | BinaryOperator::NotEq, right } => {
                for (column, value) in [(left, right), (right, left)] {
                    if is_tag_column(column)
                        && let Some(tag) = string_literal(value)
                    {
                        self.names.push(NameRef::Tag(tag));
                    }
                }
            }
            Expr::InList { expr, list, .. } if is_tag_column(expr) => {
                self.names.extend(list.iter().filter_map(string_literal).map(NameRef::Tag));
            }
            _ => {}
        }
    }
}

fn is_tag_column(expr: &Expr) -> bool {
    column_name(expr).is_some_and(|c| c.eq_ignore_ascii_case(TAG))
}

/// The column an expression names (the last part of a compound name).
fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Identifier(i) => Some(&i.value),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.as_str()),
        Expr::Nested(inner) => column_name(inner),
        _ => None,
    }
}

fn string_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        Expr::Nested(inner) => string_literal(inner),
        _ => None,
    }
}

/// A failed statement's error, explained when it is a value that cannot be converted to the type
/// of the column it is compared with (DataFusion reports those as a cast failing inside an
/// optimizer rule, with no position): one sentence naming the column, both types and the value,
/// at the value's position. Other errors are returned unchanged.
pub fn explain_error(statement: &Statement, error: Error) -> Error {
    if !matches!(error, Error::DataFusion(_) | Error::Format { .. }) {
        return error;
    }
    let text = error.to_string();
    let Some((value, target)) = failed_cast(&text) else { return error };
    let target_sql = target.as_deref().map(sql_type_name);
    let mut finder = LiteralFinder { value: value.clone(), found: None };
    let mut offset: Option<&Body> = None;
    match statement {
        Statement::Sql(s) => for_each_df(s, &mut |node| {
            let _ = node.visit(&mut finder);
        }),
        Statement::Catalog(c) => {
            if let Some((body, is_query)) = catalog_body(c) {
                offset = Some(body);
                for parsed in parse_body(body, is_query) {
                    for_each_df(&parsed, &mut |node| {
                        let _ = node.visit(&mut finder);
                    });
                }
            }
        }
    }
    let what = target_sql.map(|t| format!("a {t}")).unwrap_or_else(|| "a value of the column's type".into());
    let (message, position) = match finder.found {
        Some((column, (line, col))) => {
            let typed = target_sql.map(|t| format!(" ({t})")).unwrap_or_default();
            (
                format!("column {column}{typed} cannot be compared with '{value}', which is not {what}"),
                Some((line, col)),
            )
        }
        None => (format!("'{value}' is not {what}"), None),
    };
    let error = Error::Sql { message, position };
    match offset {
        // A rule is parsed behind `SELECT 1 FROM users WHERE `: its positions are shifted.
        Some(body) => {
            let shift = if matches!(statement, Statement::Catalog(CatalogStatement::CreateTag { is_query: false, .. }))
            {
                "SELECT 1 FROM users WHERE ".len() as u64
            } else {
                0
            };
            let error = match error {
                Error::Sql { message, position: Some((1, c)) } => {
                    Error::Sql { message, position: Some((1, c.saturating_sub(shift))) }
                }
                other => other,
            };
            body.locate(error)
        }
        None => error,
    }
}

/// The value and (when said) the Arrow type of a failed cast of a string, from the error text.
fn failed_cast(text: &str) -> Option<(String, Option<String>)> {
    const CAST: &str = "Cannot cast string '";
    if let Some(start) = text.find(CAST).map(|i| i + CAST.len()) {
        let rest = &text[start..];
        let end = rest.find("' to value of ")?;
        let after = &rest[end + "' to value of ".len()..];
        let ty = after.split(" type").next().map(str::to_string);
        return Some((rest[..end].to_string(), ty));
    }
    for (prefix, ty) in [
        ("Error parsing timestamp from '", "Timestamp"),
        ("Cannot cast string to Date32: '", "Date32"),
        ("Error parsing date from '", "Date32"),
    ] {
        if let Some(start) = text.find(prefix).map(|i| i + prefix.len()) {
            let rest = &text[start..];
            let end = rest.find('\'')?;
            return Some((rest[..end].to_string(), Some(ty.to_string())));
        }
    }
    None
}

/// The SQL name of an Arrow type as an error names it (`Int64` → `BIGINT`).
fn sql_type_name(arrow: &str) -> &str {
    match arrow {
        "Int64" => "BIGINT",
        "Int32" => "INT",
        "Int16" => "SMALLINT",
        "Int8" => "TINYINT",
        "UInt64" | "UInt32" | "UInt16" | "UInt8" => "unsigned integer",
        "Float64" => "DOUBLE",
        "Float32" => "FLOAT",
        "Boolean" => "BOOLEAN",
        "Date32" | "Date64" => "DATE",
        t if t.starts_with("Timestamp") => "TIMESTAMP",
        t if t.starts_with("Decimal") => "DECIMAL",
        t => t,
    }
}

/// Finds a string literal compared with a column: the column's name and the literal's position.
struct LiteralFinder {
    value: String,
    found: Option<(String, (u64, u64))>,
}

impl LiteralFinder {
    fn consider(&mut self, column: &Expr, literal: &Expr) {
        if self.found.is_some() {
            return;
        }
        let (Some(name), Expr::Value(v)) = (column_name(column), literal) else { return };
        if matches!(&v.value, Value::SingleQuotedString(s) if *s == self.value) {
            let start = v.span.start;
            self.found = Some((name.to_string(), (start.line, start.column)));
        }
    }
}

impl ExprVisitor for LiteralFinder {
    fn expr(&mut self, expr: &Expr) {
        match expr {
            Expr::BinaryOp { left, right, .. } => {
                self.consider(left, right);
                self.consider(right, left);
            }
            Expr::InList { expr, list, .. } => list.iter().for_each(|l| self.consider(expr, l)),
            Expr::Between { expr, low, high, .. } => {
                self.consider(expr, low);
                self.consider(expr, high);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> Vec<NameRef> {
        let statements = crate::engine::parse(sql).expect("parses");
        statements.iter().flat_map(referenced_names).collect()
    }

    #[test]
    fn tag_and_audience_names_are_found_wherever_they_are_written() {
        let tag = |t: &str| NameRef::Tag(t.into());
        assert_eq!(
            names("SELECT count(*) FROM users WHERE has_tag('vip_candidat') OR has_tag(u.user_id, 'B')"),
            vec![tag("vip_candidat"), tag("B")]
        );
        assert_eq!(
            names("SELECT * FROM user_tags t WHERE t.tag = 'vipp' OR 'x' = tag OR tag IN ('a', 'b')"),
            vec![tag("vipp"), tag("x"), tag("a"), tag("b")]
        );
        assert_eq!(
            names("EXPLAIN SELECT 1 FROM users WHERE in_audience('winbak')"),
            vec![NameRef::Audience("winbak".into())]
        );
        assert_eq!(names("CREATE AUDIENCE a AS SELECT user_id FROM users WHERE has_tag('q')"), vec![tag("q")]);
        assert_eq!(names("CREATE TAG t AS has_tag('q') AND tier = 'gold'"), vec![tag("q")]);
        assert_eq!(names("COPY (SELECT user_id FROM users WHERE has_tag('z')) TO 'x.csv'"), vec![tag("z")]);
        assert!(names("SELECT tier FROM users WHERE tier = 'gold'").is_empty());
    }

    #[test]
    fn unknown_names_are_warned_with_the_closest_known_one() {
        let tags = vec!["vip_candidate".to_string(), "vip".to_string(), "churn_risk".to_string()];
        let audiences = vec!["winback".to_string()];
        let warnings = check_names(
            &[
                NameRef::Tag("vip_candidat".into()),
                NameRef::Tag("vipp".into()),
                NameRef::Tag("vip".into()),
                NameRef::Tag("zzzzzzzz".into()),
                NameRef::Audience("winbak".into()),
                NameRef::Audience("winback".into()),
            ],
            &tags,
            &audiences,
        );
        assert_eq!(
            warnings,
            vec![
                "there is no tag 'vip_candidat' (did you mean 'vip_candidate'?), so it matches no user",
                "there is no tag 'vipp' (did you mean 'vip'?), so it matches no user",
                "there is no tag 'zzzzzzzz', so it matches no user",
                "there is no saved audience 'winbak' (did you mean 'winback'?)",
            ]
        );
    }

    #[test]
    fn edit_distance_counts_characters() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("会员", "会员卡"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(did_you_mean("GOLD", &["gold".to_string()]), Some("gold"));
    }

    #[test]
    fn a_failed_cast_is_explained_at_the_value() {
        let statement = crate::engine::parse("SELECT *\nFROM users WHERE points > 'abc'").unwrap().remove(0);
        let error = Error::Format {
            context: "arrow".into(),
            message: "Optimizer rule 'simplify_expressions' failed caused by Arrow error: Cast error: Cannot cast string 'abc' to value of Int64 type".into(),
        };
        let explained = explain_error(&statement, error);
        assert_eq!(
            explained.to_string(),
            "column points (BIGINT) cannot be compared with 'abc', which is not a BIGINT (at line 2, column 27)"
        );
        let other = explain_error(&statement, Error::Usage("x".into()));
        assert!(matches!(other, Error::Usage(_)));
    }
}
