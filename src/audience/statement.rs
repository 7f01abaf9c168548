//! Persona's own statements for tags, audiences and models, recognised by a parser that wraps DataFusion's
//! (`DFParser` has no plug-in point, datafusion-notes §5): each statement of a script is either
//! one of these or handed to `DFParser` unchanged.
//!
//! ```text
//! CREATE [OR REPLACE] TAG name AS { predicate on users | query yielding user_id }
//! DROP TAG [IF EXISTS] name
//! REFRESH TAGS [name, ...]
//! SHOW TAGS
//! CREATE [OR REPLACE] AUDIENCE name [BY PERSON]
//!     [SUPPRESS { audience | FILE 'path' } [, ...]] [HOLDOUT n PERCENT] AS query
//! DROP AUDIENCE [IF EXISTS] name
//! SHOW AUDIENCES
//! SHOW AUDIENCE name
//! MATERIALIZE AUDIENCE name [TO 'file.parquet' | 'file.csv'] [CHANGES SINCE version]
//! ESTIMATE AUDIENCE [SAMPLED] { name | AS query }
//! CREATE [OR REPLACE] MODEL name [HOLDOUT n PERCENT] [SEED n] AS LOGISTIC REGRESSION
//!     PREDICT query FROM { query | column | TAG 'x' | TAGS ('x', ...) | RFM [, ...] }
//! DROP MODEL [IF EXISTS] name
//! SHOW MODELS
//! SHOW MODEL name
//! DELETE FROM users WHERE predicate on users      (forgets those users: PIPL / GDPR erasure)
//! UPDATE users SET column = expression [, ...] WHERE predicate on users
//! INSERT INTO table [(column, ...)] { VALUES (...), ... | query }   (through the importer)
//! DELETE FROM user_tags WHERE predicate on user_tags rows
//! UNLINK 'user_a', 'user_b'                    (a cannot-link pair: never one person again)
//! UNLINK IDENTIFIER 'id_type' 'value'         (a blocked value: it links nobody any more)
//! ```
//!
//! The query or predicate is kept as the text the user wrote; [`Body`] remembers where it started
//! so that errors found when it is planned point into the statement as typed.

use datafusion::sql::parser::{DFParser, DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Location, Token};

use crate::error::{Error, Result};

/// One statement of a script.
#[derive(Debug, Clone)]
pub enum Statement {
    /// Anything DataFusion parses.
    Sql(Box<DfStatement>),
    /// A tag or audience statement.
    Catalog(CatalogStatement),
}

/// The query text of a rule or audience, and where it starts in the submitted SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub text: String,
    /// 1-based line and column of its first character in the submitted text.
    pub line: u64,
    pub column: u64,
}

impl Body {
    /// Moves an error's position from the body's own text to the submitted statement.
    pub fn locate(&self, error: Error) -> Error {
        match error {
            Error::Sql { message, position: Some((l, c)) } => {
                let position =
                    if l <= 1 { (self.line, self.column + c.saturating_sub(1)) } else { (self.line + l - 1, c) };
                Error::Sql { message, position: Some(position) }
            }
            other => other,
        }
    }
}

/// A tag or audience statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogStatement {
    CreateTag {
        name: String,
        or_replace: bool,
        /// The rule as written.
        rule: Body,
        /// Whether the rule is a whole query (else a predicate on users).
        is_query: bool,
    },
    /// `CREATE [OR REPLACE] TAGS FROM PACK 'name' [PREFIX 'p_']`: a pack's rule tags.
    CreateTagPack {
        pack: String,
        prefix: String,
        or_replace: bool,
    },
    DropTag {
        name: String,
        if_exists: bool,
    },
    /// Every rule tag when `names` is empty.
    RefreshTags {
        names: Vec<String>,
    },
    ShowTags,
    CreateAudience {
        name: String,
        or_replace: bool,
        query: Body,
        suppress_audiences: Vec<String>,
        suppress_files: Vec<String>,
        holdout_basis_points: u32,
        /// `BY PERSON`: the members are persons (docs/identity.md), not profiles.
        by_person: bool,
    },
    DropAudience {
        name: String,
        if_exists: bool,
    },
    ShowAudiences,
    /// One audience in full: definition, sizes, every version.
    ShowAudience {
        name: String,
    },
    MaterializeAudience {
        name: String,
        to: Option<String>,
        changes_since: Option<u32>,
    },
    /// `CREATE [OR REPLACE] MODEL name [HOLDOUT n PERCENT] [SEED n] AS LOGISTIC REGRESSION
    /// PREDICT query FROM { query | feature, ... }`.
    CreateModel {
        name: String,
        or_replace: bool,
        /// The users labelled 1.
        label: Body,
        features: ModelFeatures,
        holdout_basis_points: u32,
        seed: u64,
    },
    DropModel {
        name: String,
        if_exists: bool,
    },
    ShowModels,
    /// One model's coefficients and figures (`\model name` in the shell).
    ShowModel {
        name: String,
    },
    /// `DELETE FROM users WHERE predicate`: forgets the users the predicate selects (the same
    /// operation as `persona forget`).
    DeleteUsers {
        /// The predicate as written.
        predicate: Body,
    },
    /// `UPDATE users SET column = expression [, ...] WHERE predicate`: new values for the users
    /// the predicate selects, computed from each one's row.
    UpdateUsers {
        assignments: Vec<Assignment>,
        /// The predicate as written.
        predicate: Body,
    },
    /// `DELETE FROM user_tags WHERE predicate`: removes the loaded tag rows the predicate selects.
    DeleteTagRows {
        /// The predicate as written.
        predicate: Body,
    },
    /// `INSERT INTO table [(column, ...)] { VALUES ... | query }`: the rows go through the
    /// importer, as a file of them would.
    InsertInto {
        table: crate::tables::Table,
        /// The target columns as written (folded to lower case unless quoted); empty when the
        /// statement names none.
        columns: Vec<String>,
        /// The `VALUES` list or query as written.
        rows: Body,
    },
    /// `UNLINK 'a', 'b'` or `UNLINK IDENTIFIER 'type' 'value'`: what `persona identity split`
    /// does, as SQL (docs/identity.md).
    Unlink(crate::ingest::identity::SplitRequest),
    /// The size a saved audience (`name`) or a query would have now, without saving anything.
    EstimateAudience {
        name: Option<String>,
        query: Option<Body>,
        /// `SAMPLED`: estimate from the sample even when an exact count would be cheap.
        sampled: bool,
    },
}

/// `column = expression` of an `UPDATE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The column, folded to lower case unless quoted (as DataFusion names columns).
    pub column: String,
    /// 1-based line and column of the column's name in the submitted text.
    pub at: (u64, u64),
    /// The expression as written.
    pub value: Body,
}

/// Hundredths of a percent of the users a model holds out unless `HOLDOUT` says otherwise.
pub const DEFAULT_MODEL_HOLDOUT: u32 = 2000;
/// The seed of a model's holdout and sample unless `SEED` says otherwise.
pub const DEFAULT_MODEL_SEED: u64 = 42;

/// What a model reads its features from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFeatures {
    /// A query yielding `user_id` and the feature columns.
    Query(Body),
    /// A list of users columns, tags and `RFM`, and the list as written.
    List { items: Vec<FeatureItem>, written: Body },
}

/// One item of a feature list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureItem {
    /// A column of `users`, as typed.
    Column(String),
    /// Membership of each tag, 0 or 1.
    Tags(Vec<String>),
    /// The `rfm` view's recency, frequency and monetary value (0 for users who never bought) and
    /// whether the user ever bought.
    Rfm,
}

/// Splits SQL text into statements, Persona's and DataFusion's, with the SQL tokenizer (quotes
/// and comments respected). Errors carry the line and column in `sql`.
pub fn parse_statements(sql: &str) -> Result<Vec<Statement>> {
    let dialect = GenericDialect {};
    let mut parser = DFParserBuilder::new(sql).with_dialect(&dialect).build()?;
    let mut out = Vec::new();
    let mut expecting_delimiter = false;
    loop {
        while parser.parser.consume_token(&Token::SemiColon) {
            expecting_delimiter = false;
        }
        if parser.parser.peek_token() == Token::EOF {
            break;
        }
        if expecting_delimiter {
            let found = parser.parser.peek_token();
            return Err(sql_error(parser.parser.expected::<()>("end of statement", found).unwrap_err()));
        }
        let statement = match catalog_statement(&mut parser, sql).map_err(|e| at_end_if_unplaced(sql_error(e), sql))? {
            Some(s) => Statement::Catalog(s),
            None => Statement::Sql(Box::new(parser.parse_statement()?)),
        };
        out.push(statement);
        expecting_delimiter = true;
    }
    Ok(out)
}

/// An error the parser reported at the end of the input has no position: put it after the last
/// character, where the missing part belongs.
fn at_end_if_unplaced(error: Error, sql: &str) -> Error {
    match error {
        Error::Sql { message, position: None } => {
            let trimmed = sql.trim_end();
            let line = trimmed.lines().count().max(1) as u64;
            let column = trimmed.lines().last().map_or(0, |l| l.chars().count()) as u64 + 1;
            Error::Sql { message, position: Some((line, column)) }
        }
        other => other,
    }
}

fn sql_error(e: ParserError) -> Error {
    Error::from(datafusion::error::DataFusionError::SQL(Box::new(e), None))
}

/// The upper-cased word `n` tokens ahead, if it is a word.
fn word_at(parser: &DFParser, n: usize) -> Option<String> {
    match parser.parser.peek_nth_token(n).token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// Parses one of Persona's statements if the next tokens start one; `None` leaves the parser
/// untouched for DataFusion.
fn catalog_statement(p: &mut DFParser, sql: &str) -> std::result::Result<Option<CatalogStatement>, ParserError> {
    let w = |i| word_at(p, i);
    let (first, second, third) = (w(0), w(1), w(2));
    let words: Vec<&str> = [&first, &second, &third].iter().filter_map(|x| x.as_deref()).collect();
    let replace = words.get(1..3) == Some(&["OR", "REPLACE"][..]);
    let object = if replace { w(3) } else { second.clone() };
    let statement = match (first.as_deref(), object.as_deref()) {
        (Some("CREATE"), Some("TAG")) => {
            skip(p, if replace { 4 } else { 2 });
            let name = name(p)?;
            p.parser.expect_keyword_is(Keyword::AS)?;
            let is_query = matches!(word_at(p, 0).as_deref(), Some("SELECT" | "WITH"))
                || p.parser.peek_token() == Token::LParen
                    && matches!(word_at(p, 1).as_deref(), Some("SELECT" | "WITH"));
            let start = p.parser.peek_token().span.start;
            if is_query {
                p.parser.parse_query()?;
            } else {
                p.parser.parse_expr()?;
            }
            CatalogStatement::CreateTag { name, or_replace: replace, rule: body(p, sql, start), is_query }
        }
        (Some("CREATE"), Some("TAGS")) => {
            skip(p, if replace { 4 } else { 2 });
            p.parser.expect_keyword_is(Keyword::FROM)?;
            if word_at(p, 0).as_deref() != Some("PACK") {
                return p.parser.expected("PACK after CREATE TAGS FROM", p.parser.peek_token());
            }
            skip(p, 1);
            let pack = p.parser.parse_literal_string()?;
            let prefix = if word_at(p, 0).as_deref() == Some("PREFIX") {
                skip(p, 1);
                p.parser.parse_literal_string()?
            } else {
                String::new()
            };
            CatalogStatement::CreateTagPack { pack, prefix, or_replace: replace }
        }
        (Some("DROP"), Some("TAG")) => {
            skip(p, 2);
            let if_exists = p.parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            CatalogStatement::DropTag { name: name(p)?, if_exists }
        }
        (Some("REFRESH"), Some("TAGS")) => {
            skip(p, 2);
            let mut names = Vec::new();
            if !at_end(p) {
                names = p.parser.parse_comma_separated(|parser| parser.parse_identifier().map(|i| i.value))?;
            }
            CatalogStatement::RefreshTags { names }
        }
        (Some("SHOW"), Some("TAGS")) => {
            skip(p, 2);
            CatalogStatement::ShowTags
        }
        (Some("CREATE"), Some("AUDIENCE")) => {
            skip(p, if replace { 4 } else { 2 });
            let name = name(p)?;
            let (mut suppress_audiences, mut suppress_files, mut holdout) = (Vec::new(), Vec::new(), 0u32);
            let mut by_person = false;
            loop {
                match word_at(p, 0).as_deref() {
                    Some("BY") => {
                        if word_at(p, 1).as_deref() != Some("PERSON") {
                            return p.parser.expected("PERSON after BY", p.parser.peek_nth_token(1));
                        }
                        skip(p, 2);
                        by_person = true;
                    }
                    Some("SUPPRESS") => {
                        skip(p, 1);
                        loop {
                            if word_at(p, 0).as_deref() == Some("FILE") {
                                skip(p, 1);
                                suppress_files.push(p.parser.parse_literal_string()?);
                            } else {
                                suppress_audiences.push(self::name(p)?);
                            }
                            if !p.parser.consume_token(&Token::Comma) {
                                break;
                            }
                        }
                    }
                    Some("HOLDOUT") => holdout = holdout_clause(p)?,
                    _ => break,
                }
            }
            p.parser.expect_keyword_is(Keyword::AS)?;
            let start = p.parser.peek_token().span.start;
            p.parser.parse_query()?;
            CatalogStatement::CreateAudience {
                name,
                or_replace: replace,
                query: body(p, sql, start),
                suppress_audiences,
                suppress_files,
                holdout_basis_points: holdout,
                by_person,
            }
        }
        (Some("DROP"), Some("AUDIENCE")) => {
            skip(p, 2);
            let if_exists = p.parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            CatalogStatement::DropAudience { name: name(p)?, if_exists }
        }
        (Some("SHOW"), Some("AUDIENCES")) => {
            skip(p, 2);
            CatalogStatement::ShowAudiences
        }
        (Some("SHOW"), Some("AUDIENCE")) => {
            skip(p, 2);
            CatalogStatement::ShowAudience { name: name(p)? }
        }
        (Some("MATERIALIZE"), Some("AUDIENCE")) => {
            skip(p, 2);
            let name = name(p)?;
            let mut to = None;
            let mut changes_since = None;
            loop {
                if p.parser.parse_keyword(Keyword::TO) {
                    to = Some(p.parser.parse_literal_string()?);
                } else if word_at(p, 0).as_deref() == Some("CHANGES") {
                    skip(p, 1);
                    if word_at(p, 0).as_deref() != Some("SINCE") {
                        return p.parser.expected("SINCE", p.parser.peek_token());
                    }
                    skip(p, 1);
                    let v = p.parser.parse_literal_uint()?;
                    changes_since = Some(u32::try_from(v).unwrap_or(u32::MAX));
                } else {
                    break;
                }
            }
            CatalogStatement::MaterializeAudience { name, to, changes_since }
        }
        (Some("ESTIMATE"), Some("AUDIENCE")) => {
            skip(p, 2);
            let sampled = word_at(p, 0).as_deref() == Some("SAMPLED");
            if sampled {
                skip(p, 1);
            }
            if p.parser.parse_keyword(Keyword::AS) {
                let start = p.parser.peek_token().span.start;
                p.parser.parse_query()?;
                CatalogStatement::EstimateAudience { name: None, query: Some(body(p, sql, start)), sampled }
            } else {
                CatalogStatement::EstimateAudience { name: Some(name(p)?), query: None, sampled }
            }
        }
        (Some("CREATE"), Some("MODEL")) => {
            skip(p, if replace { 4 } else { 2 });
            let name = name(p)?;
            let (mut holdout, mut seed) = (DEFAULT_MODEL_HOLDOUT, DEFAULT_MODEL_SEED);
            loop {
                match word_at(p, 0).as_deref() {
                    Some("HOLDOUT") => holdout = holdout_clause(p)?,
                    Some("SEED") => {
                        skip(p, 1);
                        seed = p.parser.parse_literal_uint()?;
                    }
                    _ => break,
                }
            }
            p.parser.expect_keyword_is(Keyword::AS)?;
            if word_at(p, 0).as_deref() != Some("LOGISTIC") || word_at(p, 1).as_deref() != Some("REGRESSION") {
                return p.parser.expected("LOGISTIC REGRESSION (the one kind of model)", p.parser.peek_token());
            }
            skip(p, 2);
            if word_at(p, 0).as_deref() != Some("PREDICT") {
                return p
                    .parser
                    .expected("PREDICT followed by the query of the users labelled 1", p.parser.peek_token());
            }
            skip(p, 1);
            let start = p.parser.peek_token().span.start;
            p.parser.parse_query()?;
            let label = body(p, sql, start);
            p.parser.expect_keyword_is(Keyword::FROM)?;
            let start = p.parser.peek_token().span.start;
            let features = if starts_query(p) {
                p.parser.parse_query()?;
                ModelFeatures::Query(body(p, sql, start))
            } else {
                let items = p.parser.parse_comma_separated(feature_item)?;
                ModelFeatures::List { items, written: body(p, sql, start) }
            };
            CatalogStatement::CreateModel {
                name,
                or_replace: replace,
                label,
                features,
                holdout_basis_points: holdout,
                seed,
            }
        }
        (Some("DROP"), Some("MODEL")) => {
            skip(p, 2);
            let if_exists = p.parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            CatalogStatement::DropModel { name: name(p)?, if_exists }
        }
        (Some("SHOW"), Some("MODELS")) => {
            skip(p, 2);
            CatalogStatement::ShowModels
        }
        (Some("SHOW"), Some("MODEL")) => {
            skip(p, 2);
            CatalogStatement::ShowModel { name: name(p)? }
        }
        (Some("DELETE"), Some("FROM")) if third.as_deref() == Some("USERS") => {
            skip(p, 3);
            if word_at(p, 0).as_deref() != Some("WHERE") {
                return p.parser.expected(
                    "WHERE and the users to forget after DELETE FROM users (WHERE true forgets everyone)",
                    p.parser.peek_token(),
                );
            }
            skip(p, 1);
            let start = p.parser.peek_token().span.start;
            p.parser.parse_expr()?;
            CatalogStatement::DeleteUsers { predicate: body(p, sql, start) }
        }
        (Some("UPDATE"), Some("USERS")) => {
            skip(p, 2);
            if !p.parser.parse_keyword(Keyword::SET) {
                return p.parser.expected("SET after UPDATE users", p.parser.peek_token());
            }
            let mut assignments = Vec::new();
            loop {
                let found = p.parser.peek_token();
                let column = match p.parser.parse_identifier() {
                    Ok(ident) if ident.quote_style.is_some() => ident.value,
                    Ok(ident) => ident.value.to_ascii_lowercase(),
                    Err(_) => return p.parser.expected("a users column to set", found),
                };
                p.parser.expect_token(&Token::Eq)?;
                let start = p.parser.peek_token().span.start;
                p.parser.parse_expr()?;
                let at = (found.span.start.line, found.span.start.column);
                assignments.push(Assignment { column, at, value: body(p, sql, start) });
                if !p.parser.consume_token(&Token::Comma) {
                    break;
                }
            }
            if word_at(p, 0).as_deref() != Some("WHERE") {
                return p.parser.expected(
                    "WHERE and the users to update after the SET list (WHERE true updates everyone)",
                    p.parser.peek_token(),
                );
            }
            skip(p, 1);
            let start = p.parser.peek_token().span.start;
            p.parser.parse_expr()?;
            CatalogStatement::UpdateUsers { assignments, predicate: body(p, sql, start) }
        }
        (Some("INSERT"), Some("INTO")) if store_table(third.as_deref()).is_some() => {
            let table = store_table(third.as_deref()).unwrap_or(crate::tables::Table::Users);
            skip(p, 3);
            let mut columns = Vec::new();
            if p.parser.consume_token(&Token::LParen) {
                columns = p.parser.parse_comma_separated(|q| {
                    let ident = q.parse_identifier()?;
                    Ok(if ident.quote_style.is_some() { ident.value } else { ident.value.to_ascii_lowercase() })
                })?;
                p.parser.expect_token(&Token::RParen)?;
            }
            if !starts_query(p) && word_at(p, 0).as_deref() != Some("VALUES") {
                return p
                    .parser
                    .expected("VALUES or a query (SELECT ...) giving the rows to insert", p.parser.peek_token());
            }
            let start = p.parser.peek_token().span.start;
            p.parser.parse_query()?;
            CatalogStatement::InsertInto { table, columns, rows: body(p, sql, start) }
        }
        (Some("UPDATE"), _) => {
            return p.parser.expected(
                "users after UPDATE (only users rows are updated; facts and tags are inserted or deleted)",
                p.parser.peek_nth_token(1),
            );
        }
        (Some("DELETE"), Some("FROM")) if third.as_deref() == Some("USER_TAGS") => {
            skip(p, 3);
            if word_at(p, 0).as_deref() != Some("WHERE") {
                return p.parser.expected(
                    "WHERE and the rows to delete after DELETE FROM user_tags (WHERE true deletes every loaded tag row)",
                    p.parser.peek_token(),
                );
            }
            skip(p, 1);
            let start = p.parser.peek_token().span.start;
            p.parser.parse_expr()?;
            CatalogStatement::DeleteTagRows { predicate: body(p, sql, start) }
        }
        (Some("UNLINK"), _) => {
            use crate::ingest::identity::SplitRequest;
            skip(p, 1);
            if word_at(p, 0).as_deref() == Some("IDENTIFIER") {
                skip(p, 1);
                // The type as a string or a bare word: UNLINK IDENTIFIER phone '+86...'.
                let id_type = match p.parser.peek_token().token {
                    Token::Word(w) => {
                        p.parser.next_token();
                        w.value
                    }
                    _ => p.parser.parse_literal_string()?,
                };
                CatalogStatement::Unlink(SplitRequest::Value(id_type, p.parser.parse_literal_string()?))
            } else {
                let found = p.parser.peek_token();
                let a = p.parser.parse_literal_string().or_else(|_| {
                    p.parser.expected("two user_ids ('u1', 'u2') or IDENTIFIER 'type' 'value' after UNLINK", found)
                })?;
                p.parser.expect_token(&Token::Comma)?;
                CatalogStatement::Unlink(SplitRequest::Users(a, p.parser.parse_literal_string()?))
            }
        }
        (Some("MATERIALIZE"), _) => return p.parser.expected("AUDIENCE after MATERIALIZE", p.parser.peek_nth_token(1)),
        (Some("REFRESH"), _) => return p.parser.expected("TAGS after REFRESH", p.parser.peek_nth_token(1)),
        _ => return Ok(None),
    };
    if !at_end(p) {
        return p.parser.expected("end of statement", p.parser.peek_token());
    }
    Ok(Some(statement))
}

/// The store table an upper-cased word names, if any.
fn store_table(word: Option<&str>) -> Option<crate::tables::Table> {
    word?.to_ascii_lowercase().parse::<crate::tables::Table>().ok()
}

/// `HOLDOUT n PERCENT`, as hundredths of a percent.
fn holdout_clause(p: &mut DFParser) -> std::result::Result<u32, ParserError> {
    skip(p, 1);
    let token = p.parser.next_token();
    let percent = match &token.token {
        Token::Number(n, _) => n.parse::<f64>().ok().filter(|v| (0.0..=100.0).contains(v)),
        _ => None,
    };
    let Some(percent) = percent else {
        return p.parser.expected("a holdout percentage from 0 to 100", token);
    };
    if !p.parser.parse_keyword(Keyword::PERCENT) {
        return p.parser.expected("PERCENT", p.parser.peek_token());
    }
    Ok((percent * 100.0).round() as u32)
}

/// Whether a query (`SELECT`, `WITH`, or either in parentheses) starts here.
fn starts_query(p: &DFParser) -> bool {
    matches!(word_at(p, 0).as_deref(), Some("SELECT" | "WITH"))
        || p.parser.peek_token() == Token::LParen && matches!(word_at(p, 1).as_deref(), Some("SELECT" | "WITH"))
}

/// One item of a model's feature list: a users column, `TAG 'name'`, `TAGS ('a', 'b')` or `RFM`.
fn feature_item(
    parser: &mut datafusion::sql::sqlparser::parser::Parser,
) -> std::result::Result<FeatureItem, ParserError> {
    let found = parser.peek_token();
    let word = match &found.token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    };
    match word.as_deref() {
        Some("TAG") => {
            parser.next_token();
            Ok(FeatureItem::Tags(vec![parser.parse_literal_string()?]))
        }
        Some("TAGS") => {
            parser.next_token();
            parser.expect_token(&Token::LParen)?;
            let tags = parser.parse_comma_separated(|q| q.parse_literal_string())?;
            parser.expect_token(&Token::RParen)?;
            Ok(FeatureItem::Tags(tags))
        }
        Some("RFM") => {
            parser.next_token();
            Ok(FeatureItem::Rfm)
        }
        _ => match parser.parse_identifier() {
            Ok(ident) => Ok(FeatureItem::Column(ident.value)),
            Err(_) => parser.expected("a users column, TAG 'name', TAGS ('a', ...) or RFM", found),
        },
    }
}

fn skip(p: &mut DFParser, n: usize) {
    for _ in 0..n {
        p.parser.next_token();
    }
}

fn at_end(p: &DFParser) -> bool {
    matches!(p.parser.peek_token().token, Token::EOF | Token::SemiColon)
}

/// A tag or audience name, kept as typed (quoted or not): tags are compared with `user_tags`
/// values as they are stored, so folding `A` to `a` would name another tag.
fn name(p: &mut DFParser) -> std::result::Result<String, ParserError> {
    let found = p.parser.peek_token();
    match p.parser.parse_identifier() {
        Ok(ident) => Ok(ident.value),
        Err(_) => p.parser.expected("a name", found),
    }
}

/// The text from `start` up to the next token (the statement's end).
fn body(p: &DFParser, sql: &str, start: Location) -> Body {
    let end = p.parser.peek_token();
    let from = offset_of(sql, start);
    let to = if end.token == Token::EOF { sql.len() } else { offset_of(sql, end.span.start) };
    let text = sql.get(from..to.max(from)).unwrap_or_default().trim_end().to_string();
    Body { text, line: start.line, column: start.column }
}

/// The byte offset of a 1-based line and column (in characters).
fn offset_of(sql: &str, at: Location) -> usize {
    let mut line = 1u64;
    let mut col = 1u64;
    for (i, ch) in sql.char_indices() {
        if line == at.line && col == at.column {
            return i;
        }
        if ch == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    sql.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each statement fails to parse with an error at its (line, column).
    fn fails_at(cases: &[(&str, (u64, u64))]) {
        for &(sql, pos) in cases {
            match parse_statements(sql) {
                Err(Error::Sql { position: Some(p), .. }) => assert_eq!(p, pos, "{sql}"),
                other => panic!("{sql}: {other:?}"),
            }
        }
    }

    fn one(sql: &str) -> CatalogStatement {
        match parse_statements(sql).unwrap().remove(0) {
            Statement::Catalog(c) => c,
            Statement::Sql(s) => panic!("parsed as SQL: {s}"),
        }
    }

    #[test]
    fn recognises_every_statement() {
        match one("CREATE TAG night_owl AS tier = 'gold' AND points > 10") {
            CatalogStatement::CreateTag { name, rule, is_query: false, or_replace: false } => {
                assert_eq!(name, "night_owl");
                assert_eq!(rule.text, "tier = 'gold' AND points > 10");
                assert_eq!((rule.line, rule.column), (1, 25));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            one("create or replace tag T as select user_id from users"),
            CatalogStatement::CreateTag { ref name, is_query: true, or_replace: true, .. } if name == "T"
        ));
        assert_eq!(one("DROP TAG IF EXISTS x"), CatalogStatement::DropTag { name: "x".into(), if_exists: true });
        assert_eq!(one("REFRESH TAGS"), CatalogStatement::RefreshTags { names: vec![] });
        assert_eq!(one("refresh tags a, \"B\""), CatalogStatement::RefreshTags { names: vec!["a".into(), "B".into()] });
        match one(
            "CREATE AUDIENCE lapsed SUPPRESS optouts, FILE 'x.csv' HOLDOUT 5.5 PERCENT AS\n  SELECT user_id FROM users;",
        ) {
            CatalogStatement::CreateAudience {
                name,
                query,
                suppress_audiences,
                suppress_files,
                holdout_basis_points,
                ..
            } => {
                assert_eq!(name, "lapsed");
                assert_eq!(query.text, "SELECT user_id FROM users");
                assert_eq!((query.line, query.column), (2, 3));
                assert_eq!(suppress_audiences, vec!["optouts"]);
                assert_eq!(suppress_files, vec!["x.csv"]);
                assert_eq!(holdout_basis_points, 550);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            one("CREATE AUDIENCE p BY PERSON SUPPRESS o HOLDOUT 10 PERCENT AS SELECT user_id FROM users"),
            CatalogStatement::CreateAudience { by_person: true, holdout_basis_points: 1000, .. }
        ));
        assert!(matches!(
            one("create audience p holdout 1 percent by person as select user_id from users"),
            CatalogStatement::CreateAudience { by_person: true, .. }
        ));
        assert!(matches!(
            one("CREATE AUDIENCE p AS SELECT user_id FROM users"),
            CatalogStatement::CreateAudience { by_person: false, .. }
        ));
        assert_eq!(
            one("MATERIALIZE AUDIENCE a TO 'a.parquet' CHANGES SINCE 3"),
            CatalogStatement::MaterializeAudience {
                name: "a".into(),
                to: Some("a.parquet".into()),
                changes_since: Some(3)
            }
        );
        assert_eq!(one("SHOW AUDIENCES"), CatalogStatement::ShowAudiences);
        assert_eq!(one("SHOW AUDIENCE winback"), CatalogStatement::ShowAudience { name: "winback".into() });
        assert_eq!(
            one("ESTIMATE AUDIENCE a"),
            CatalogStatement::EstimateAudience { name: Some("a".into()), query: None, sampled: false }
        );
        assert!(matches!(
            one("estimate audience as select user_id from users"),
            CatalogStatement::EstimateAudience { name: None, query: Some(ref q), sampled: false } if q.text == "select user_id from users"
        ));
        assert!(matches!(
            one("ESTIMATE AUDIENCE SAMPLED AS SELECT user_id FROM users"),
            CatalogStatement::EstimateAudience { name: None, query: Some(_), sampled: true }
        ));
        assert_eq!(one("show tags"), CatalogStatement::ShowTags);
    }

    #[test]
    fn delete_from_users_keeps_its_predicate_and_needs_one() {
        match one("DELETE FROM users WHERE user_id IN ('u1', 'u2')") {
            CatalogStatement::DeleteUsers { predicate } => {
                assert_eq!(predicate.text, "user_id IN ('u1', 'u2')");
                assert_eq!((predicate.line, predicate.column), (1, 25));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(one("delete from Users where tier = 'gold'"), CatalogStatement::DeleteUsers { .. }));
        let err = parse_statements("DELETE FROM users").unwrap_err().to_string();
        assert!(err.contains("WHERE"), "{err}");
        // Other tables are DataFusion's.
        assert!(matches!(parse_statements("DELETE FROM purchases WHERE amount > 1").unwrap()[0], Statement::Sql(_)));
        match one("DELETE FROM user_tags WHERE tag = 'x' AND user_id IN ('u1')") {
            CatalogStatement::DeleteTagRows { predicate } => {
                assert_eq!(predicate.text, "tag = 'x' AND user_id IN ('u1')");
                assert_eq!((predicate.line, predicate.column), (1, 29));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_statements("DELETE FROM user_tags").unwrap_err().to_string().contains("WHERE"));
    }

    #[test]
    fn update_users_keeps_each_assignment_where_it_was_written() {
        match one("UPDATE users SET tier = 'gold',\n  \"Points\" = points + 100 WHERE user_id = 'u1'") {
            CatalogStatement::UpdateUsers { assignments, predicate } => {
                assert_eq!(assignments.len(), 2);
                assert_eq!((assignments[0].column.as_str(), assignments[0].at), ("tier", (1, 18)));
                assert_eq!(assignments[0].value, Body { text: "'gold'".into(), line: 1, column: 25 });
                assert_eq!((assignments[1].column.as_str(), assignments[1].at), ("Points", (2, 3)));
                assert_eq!(assignments[1].value.text, "points + 100");
                assert_eq!(predicate.text, "user_id = 'u1'");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(one("update Users set TIER = null where true"),
            CatalogStatement::UpdateUsers { ref assignments, .. } if assignments[0].column == "tier"));
        fails_at(&[
            ("UPDATE users SET tier = 'gold'", (1, 31)),
            ("UPDATE users tier = 'gold' WHERE true", (1, 14)),
            ("UPDATE purchases SET amount = 1 WHERE true", (1, 8)),
            ("UPDATE users SET = 1 WHERE true", (1, 18)),
        ]);
    }

    #[test]
    fn insert_into_a_store_table_keeps_its_columns_and_rows() {
        match one("INSERT INTO user_tags (user_id, \"Tag\") VALUES ('u1', 'vip'), ('u2', 'vip')") {
            CatalogStatement::InsertInto { table, columns, rows } => {
                assert_eq!(table, crate::tables::Table::UserTags);
                assert_eq!(columns, vec!["user_id", "Tag"]);
                assert_eq!(rows.text, "VALUES ('u1', 'vip'), ('u2', 'vip')");
                assert_eq!((rows.line, rows.column), (1, 40));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            one("insert into Users select user_id, 'gold' as tier from users where points > 10"),
            CatalogStatement::InsertInto { table: crate::tables::Table::Users, ref columns, .. } if columns.is_empty()
        ));
        // Other tables are DataFusion's; a missing row source is an error where it belongs.
        assert!(matches!(parse_statements("INSERT INTO t VALUES (1)").unwrap()[0], Statement::Sql(_)));
        match parse_statements("INSERT INTO events (user_id)") {
            Err(Error::Sql { position: Some(p), .. }) => assert_eq!(p, (1, 29)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unlink_takes_two_users_or_an_identifier() {
        use crate::ingest::identity::SplitRequest;
        assert_eq!(one("UNLINK 'u1', 'u3'"), CatalogStatement::Unlink(SplitRequest::Users("u1".into(), "u3".into())));
        assert_eq!(
            one("unlink identifier 'email' ' ANN@qq.com'"),
            CatalogStatement::Unlink(SplitRequest::Value("email".into(), " ANN@qq.com".into()))
        );
        assert_eq!(
            one("UNLINK IDENTIFIER phone '139 1234 5678'"),
            CatalogStatement::Unlink(SplitRequest::Value("phone".into(), "139 1234 5678".into()))
        );
        fails_at(&[("UNLINK 1, 3", (1, 8)), ("UNLINK 'u1' 'u3'", (1, 13)), ("UNLINK IDENTIFIER 'phone'", (1, 26))]);
    }

    #[test]
    fn tag_packs_parse_with_a_prefix_and_or_replace() {
        assert_eq!(
            one("CREATE TAGS FROM PACK 'behaviour'"),
            CatalogStatement::CreateTagPack { pack: "behaviour".into(), prefix: String::new(), or_replace: false }
        );
        assert_eq!(
            one("create or replace tags from pack 'behaviour' prefix 'b_'"),
            CatalogStatement::CreateTagPack { pack: "behaviour".into(), prefix: "b_".into(), or_replace: true }
        );
        assert!(parse_statements("CREATE TAGS FROM 'behaviour'").is_err());
    }

    /// Regression: unquoted names were folded to lower case, so `CREATE TAG A` made a rule tag
    /// `a` beside the loaded tag `A`, and `REFRESH TAGS A` then looked for `a`.
    #[test]
    fn names_keep_the_case_they_were_typed_in() {
        assert!(
            matches!(one("CREATE TAG A AS tier = 'gold'"), CatalogStatement::CreateTag { ref name, .. } if name == "A")
        );
        assert_eq!(one("REFRESH TAGS A, b"), CatalogStatement::RefreshTags { names: vec!["A".into(), "b".into()] });
        assert_eq!(one("DROP TAG Vip"), CatalogStatement::DropTag { name: "Vip".into(), if_exists: false });
        assert!(matches!(
            one("CREATE AUDIENCE Winback SUPPRESS OptOuts AS SELECT user_id FROM users"),
            CatalogStatement::CreateAudience { ref name, ref suppress_audiences, .. }
                if name == "Winback" && suppress_audiences == &["OptOuts"]
        ));
        assert!(
            matches!(one("MATERIALIZE AUDIENCE Winback"), CatalogStatement::MaterializeAudience { ref name, .. } if name == "Winback")
        );
    }

    #[test]
    fn mixes_with_datafusion_statements() {
        let all = parse_statements("SELECT 1; CREATE TAG a AS tier = 'x'; SHOW TABLES; DROP AUDIENCE b").unwrap();
        assert_eq!(all.len(), 4);
        assert!(matches!(all[0], Statement::Sql(_)));
        assert!(matches!(all[1], Statement::Catalog(CatalogStatement::CreateTag { .. })));
        assert!(matches!(all[2], Statement::Sql(_)));
        assert!(matches!(all[3], Statement::Catalog(CatalogStatement::DropAudience { .. })));
    }

    #[test]
    fn errors_say_where() {
        fails_at(&[
            ("CREATE AUDIENCE x HOLDOUT 120 PERCENT AS SELECT 1", (1, 27)),
            ("CREATE AUDIENCE x AS SELEC user_id", (1, 22)),
            ("MATERIALIZE AUDIENCE x TO", (1, 26)),
            ("CREATE TAG 1a AS x = 1", (1, 12)),
            ("MATERIALIZE TABLE x", (1, 13)),
            ("SHOW AUDIENCES extra", (1, 16)),
            ("CREATE AUDIENCE x BY USER AS SELECT 1", (1, 22)),
        ]);
    }

    #[test]
    fn body_errors_move_to_the_statement() {
        let body = Body { text: "x".into(), line: 3, column: 10 };
        let e = body.locate(Error::Sql { message: "m".into(), position: Some((1, 5)) });
        assert!(matches!(e, Error::Sql { position: Some((3, 14)), .. }));
        let e = body.locate(Error::Sql { message: "m".into(), position: Some((2, 5)) });
        assert!(matches!(e, Error::Sql { position: Some((4, 5)), .. }));
    }
}
