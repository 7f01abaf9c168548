//! What Tab completes in the shell, and from which names: SQL keywords, the store's tables and
//! columns (custom users columns included), the session's functions, backslash commands and their
//! arguments, and inside quotes the tag names and the values of low-cardinality users columns
//! (`tier = 'go<Tab>` gives `'gold'`). Pure functions of the line and a [`CompletionCatalog`].

use std::collections::BTreeSet;

use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
use rustyline::completion::{FilenameCompleter, Pair};

use super::commands::{ArgKind, COMMANDS};
use super::lexer::{Kind, Token, tokens};
use crate::engine::Session;
use crate::tables::{TAG, Table};

/// The names completion offers, read from one session (rebuilt when the shell moves to a newer
/// version).
#[derive(Debug, Default, Clone)]
pub struct CompletionCatalog {
    /// Each table with its columns, in schema order.
    pub tables: Vec<(String, Vec<String>)>,
    /// Scalar, aggregate and window functions, sorted.
    pub functions: Vec<String>,
    /// Every tag, sorted.
    pub tags: Vec<String>,
    /// Every saved audience, sorted.
    pub audiences: Vec<String>,
    /// Each users column that has value bitmaps, with its distinct values.
    pub values: Vec<(String, Vec<String>)>,
}

impl CompletionCatalog {
    /// The names of `session`'s snapshot and function registry.
    pub fn from_session(session: &Session) -> CompletionCatalog {
        let snapshot = session.snapshot();
        let manifest = snapshot.manifest();
        let mut tables: Vec<(String, Vec<String>)> = Table::ALL
            .iter()
            .map(|t| (t.name().to_string(), manifest.columns(*t).into_iter().map(|c| c.name).collect()))
            .collect();
        // The catalog tables and every saved audience (a table of its members' users rows).
        let users_columns: Vec<String> = manifest.columns(Table::Users).into_iter().map(|c| c.name).collect();
        for (name, schema) in crate::audience::tables::catalog_tables() {
            tables.push((name.to_string(), schema.fields().iter().map(|f| f.name().clone()).collect()));
        }
        tables.extend(manifest.catalog.audiences.iter().map(|a| (a.name.clone(), users_columns.clone())));
        let state = session.context().state();
        let functions: BTreeSet<String> = state
            .scalar_functions()
            .keys()
            .chain(state.aggregate_functions().keys())
            .chain(state.window_functions().keys())
            .chain(state.table_functions().keys())
            .cloned()
            .collect();
        let index = session.index();
        let values = manifest
            .columns(Table::Users)
            .into_iter()
            .filter(|c| index.has_values(&c.name))
            .map(|c| {
                let values = index.values(&c.name);
                (c.name, values)
            })
            .collect();
        let mut audiences: Vec<String> = manifest.catalog.audiences.iter().map(|a| a.name.clone()).collect();
        audiences.sort();
        Self { tables, functions: functions.into_iter().collect(), tags: index.tag_names(), audiences, values }
    }

    fn columns_of(&self, table: &str) -> Option<&[String]> {
        self.tables.iter().find(|(t, _)| t.eq_ignore_ascii_case(table)).map(|(_, c)| c.as_slice())
    }

    fn is_table(&self, name: &str) -> bool {
        self.columns_of(name).is_some()
    }

    /// Whether `word` names a table, column or function of the store (so it is not shown as a
    /// keyword even where SQL has a keyword of that spelling, like `name` or `count`).
    pub fn is_name(&self, word: &str) -> bool {
        let lower = word.to_ascii_lowercase();
        self.functions.binary_search(&lower).is_ok()
            || self.tables.iter().any(|(t, cols)| *t == lower || cols.iter().any(|c| c.eq_ignore_ascii_case(word)))
    }
}

/// The candidates for the text before `pos` in `line`, and where the text they replace starts.
pub fn complete(catalog: &CompletionCatalog, line: &str, pos: usize) -> (usize, Vec<Pair>) {
    let before = &line[..pos];
    let lead = before.len() - before.trim_start().len();
    let Some(command_text) = before[lead..].strip_prefix('\\') else { return complete_sql(catalog, line, pos) };
    let Some(space) = command_text.find(char::is_whitespace) else {
        let typed = &before[lead..];
        return (lead, pairs(COMMANDS.iter().map(|c| c.name).filter(|n| n.starts_with(typed)).map(str::to_string)));
    };
    let name = &before[lead..lead + 1 + space];
    let Some(info) = COMMANDS.iter().find(|c| c.name == name) else { return (pos, Vec::new()) };
    let args_start = lead + 1 + space + command_text[space..].len() - command_text[space..].trim_start().len();
    let word_start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1).max(args_start);
    let word = &before[word_start..];
    let choose = |names: &mut dyn Iterator<Item = &str>| {
        (word_start, pairs(names.filter(|n| starts_with_ignore_case(n, word)).map(str::to_string)))
    };
    match info.arg {
        ArgKind::Table => choose(&mut catalog.tables.iter().map(|(t, _)| t.as_str())),
        ArgKind::Tag => choose(&mut catalog.tags.iter().map(String::as_str)),
        ArgKind::Format => choose(&mut ["table", "vertical", "csv", "json"].into_iter()),
        ArgKind::OnOff => choose(&mut ["on", "off"].into_iter()),
        ArgKind::Path => FilenameCompleter::new().complete_path(line, pos).unwrap_or((pos, Vec::new())),
        ArgKind::Sql => {
            let (start, found) = complete_sql(catalog, &line[args_start..], pos - args_start);
            (start + args_start, found)
        }
        ArgKind::None | ArgKind::Text => (pos, Vec::new()),
    }
}

/// Completion inside SQL text.
fn complete_sql(catalog: &CompletionCatalog, line: &str, pos: usize) -> (usize, Vec<Pair>) {
    let before = &line[..pos];
    let toks = tokens(before);
    match toks.last() {
        Some(t) if t.kind == (Kind::Str { closed: false }) => {
            let typed = before[t.start + 1..].replace("''", "'");
            let names = quoted_names(catalog, value_column(before, &toks[..toks.len() - 1]).as_deref());
            let found = names
                .into_iter()
                .filter(|v| starts_with_ignore_case(v, &typed))
                .map(|v| Pair { replacement: format!("{}'", v.replace('\'', "''")), display: v.to_string() })
                .collect();
            (t.start + 1, found)
        }
        // Inside a comment, an unfinished quoted identifier, or right after a closed string.
        Some(t) if !matches!(t.kind, Kind::Word | Kind::Space | Kind::Punct | Kind::Number) => (pos, Vec::new()),
        _ => complete_word(catalog, line, before),
    }
}

/// The names offered inside quotes: tags after `tag` (or in `has_tag(`), saved audiences in
/// `in_audience(`, a column's values after that column, tags and values when the column cannot be told.
fn quoted_names<'a>(catalog: &'a CompletionCatalog, column: Option<&str>) -> Vec<&'a str> {
    match column {
        Some(TAG) => catalog.tags.iter().map(String::as_str).collect(),
        Some(AUDIENCE_ARGUMENT) => catalog.audiences.iter().map(String::as_str).collect(),
        Some(c) => {
            catalog.values.iter().filter(|(name, _)| name == c).flat_map(|(_, v)| v).map(String::as_str).collect()
        }
        None => {
            let all: BTreeSet<&str> =
                catalog.tags.iter().chain(catalog.values.iter().flat_map(|(_, v)| v)).map(String::as_str).collect();
            all.into_iter().collect()
        }
    }
}

/// What `value_column` answers for the argument of `in_audience(`.
const AUDIENCE_ARGUMENT: &str = "\0audience";

/// The column a quoted value is compared with: `col = '`, `col <> '`, `col IN ('a', '`; `tag`
/// for the argument of `has_tag(`, [`AUDIENCE_ARGUMENT`] for that of `in_audience(`.
/// `None` when the quote follows something else.
fn value_column(input: &str, toks: &[Token]) -> Option<String> {
    let sig: Vec<&Token> = toks.iter().filter(|t| !t.is_trivia()).collect();
    let text = |i: usize| sig[i].text(input);
    let mut i = sig.len().checked_sub(1)?;
    if text(i) == "(" && i > 0 {
        match text(i - 1).to_ascii_lowercase().as_str() {
            "has_tag" | "overlap" | "breakdown" | "top_tags" => return Some(TAG.into()),
            "in_audience" | "audience_members" | "audience_diff" | "campaign_lift" => {
                return Some(AUDIENCE_ARGUMENT.into());
            }
            _ => {}
        }
    }
    if matches!(text(i), "=" | "<>" | "!=") {
        return column_name(input, sig.get(i.checked_sub(1)?)?);
    }
    if !matches!(text(i), "(" | ",") {
        return None;
    }
    // Back over the earlier values of an IN list to its parenthesis.
    while text(i) == "," {
        i = i.checked_sub(2)?;
        if !matches!(sig[i + 1].kind, Kind::Str { .. } | Kind::Number) {
            return None;
        }
    }
    if text(i) != "(" || !text(i.checked_sub(1)?).eq_ignore_ascii_case("in") {
        return None;
    }
    let mut c = i.checked_sub(2)?;
    if text(c).eq_ignore_ascii_case("not") {
        c = c.checked_sub(1)?;
    }
    column_name(input, sig[c])
}

/// A column name from a word (folded to lower case, as SQL does) or a quoted identifier.
fn column_name(input: &str, token: &Token) -> Option<String> {
    match token.kind {
        Kind::Word => Some(token.text(input).to_ascii_lowercase()),
        Kind::QuotedIdent { closed: true } => {
            let t = token.text(input);
            Some(t[1..t.len() - 1].replace("\"\"", "\""))
        }
        _ => None,
    }
}

/// Completion of the word before the cursor: a column after `alias.`, a table after `FROM` or
/// `JOIN`, else columns, tables, functions and keywords.
fn complete_word(catalog: &CompletionCatalog, line: &str, before: &str) -> (usize, Vec<Pair>) {
    let start = before
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == '$')
        .last()
        .map_or(before.len(), |(i, _)| i);
    let word = &before[start..];
    let head = &before[..start];
    if let Some(qualifier) = head.strip_suffix('.') {
        let q_start = qualifier
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_alphanumeric() || *c == '_')
            .last()
            .map_or(qualifier.len(), |(i, _)| i);
        let alias = &qualifier[q_start..];
        let table = resolve_alias(catalog, line, alias);
        let columns = table.and_then(|t| catalog.columns_of(&t)).unwrap_or(&[]);
        return (start, pairs(columns.iter().filter(|c| starts_with_ignore_case(c, word)).cloned()));
    }
    let previous = tokens(head).into_iter().rev().find(|t| !t.is_trivia()).map(|t| t.text(head).to_ascii_lowercase());
    let wants_table = matches!(previous.as_deref(), Some("from" | "join" | "into" | "table" | "describe"));
    let tables = catalog.tables.iter().map(|(t, _)| t.clone()).filter(|t| starts_with_ignore_case(t, word));
    if wants_table {
        return (start, pairs(tables));
    }
    if word.is_empty() {
        return (start, Vec::new());
    }
    let mentioned = mentioned_tables(catalog, line);
    let columns: BTreeSet<String> = catalog
        .tables
        .iter()
        .filter(|(t, _)| mentioned.is_empty() || mentioned.contains(t))
        .flat_map(|(_, cols)| cols.iter().cloned())
        .filter(|c| starts_with_ignore_case(c, word))
        .collect();
    let functions = catalog.functions.iter().filter(|f| starts_with_ignore_case(f, word)).cloned();
    let lower = word.chars().any(|c| c.is_lowercase()) && !word.chars().any(|c| c.is_uppercase());
    let keywords = ALL_KEYWORDS
        .iter()
        .filter(|k| starts_with_ignore_case(k, word))
        .map(|k| if lower { k.to_ascii_lowercase() } else { k.to_string() });
    let mut seen = BTreeSet::new();
    let all = columns.into_iter().chain(tables).chain(functions).chain(keywords).filter(|c| seen.insert(c.clone()));
    (start, pairs(all))
}

/// The table an alias (or a table name) stands for in `line`: `FROM users u`, `JOIN purchases AS p`.
fn resolve_alias(catalog: &CompletionCatalog, line: &str, alias: &str) -> Option<String> {
    if catalog.is_table(alias) {
        return Some(alias.to_ascii_lowercase());
    }
    let words: Vec<&str> =
        tokens(line).into_iter().filter(|t| !t.is_trivia()).map(|t| t.text(line)).collect::<Vec<_>>();
    words.iter().enumerate().find_map(|(i, w)| {
        if !catalog.is_table(w) {
            return None;
        }
        let mut next = words.get(i + 1)?;
        if next.eq_ignore_ascii_case("as") {
            next = words.get(i + 2)?;
        }
        next.eq_ignore_ascii_case(alias).then(|| w.to_ascii_lowercase())
    })
}

/// The store's tables named anywhere in `line`.
fn mentioned_tables(catalog: &CompletionCatalog, line: &str) -> BTreeSet<String> {
    tokens(line)
        .into_iter()
        .filter(|t| t.kind == Kind::Word && catalog.is_table(t.text(line)))
        .map(|t| t.text(line).to_ascii_lowercase())
        .collect()
}

fn starts_with_ignore_case(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn pairs(names: impl Iterator<Item = String>) -> Vec<Pair> {
    names.map(|n| Pair { display: n.clone(), replacement: n }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> CompletionCatalog {
        let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        CompletionCatalog {
            tables: vec![
                ("users".into(), cols(&["user_id", "name", "tier", "points", "loyalty_score"])),
                ("user_tags".into(), cols(&["user_id", "tag", "assigned_at"])),
                ("purchases".into(), cols(&["order_id", "user_id", "ts", "amount"])),
            ],
            functions: cols(&["count", "coalesce", "date_trunc"]),
            tags: cols(&["cart_abandoner", "churn_risk", "vip", "o'brien_fan"]),
            audiences: cols(&["gold_lapsed", "spring_sale"]),
            values: vec![("tier".into(), cols(&["bronze", "gold", "platinum", "silver"]))],
        }
    }

    /// Completes at the end of `line`: the replaced text and the replacements.
    fn at_end(line: &str) -> (String, Vec<String>) {
        at(&format!("{line}@"))
    }

    /// Completes at the `@` in `marked` (which is taken out): the replaced text and the replacements.
    fn at(marked: &str) -> (String, Vec<String>) {
        let pos = marked.find('@').expect("a cursor mark");
        let line = marked.replacen('@', "", 1);
        let (start, found) = complete(&catalog(), &line, pos);
        (line[start..pos].to_string(), found.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn a_value_in_quotes_completes_from_its_column() {
        assert_eq!(at_end("SELECT * FROM users WHERE tier = 'go"), ("go".into(), vec!["gold'".into()]));
        assert_eq!(at_end("SELECT * FROM users u WHERE u.tier <> 'S"), ("S".into(), vec!["silver'".into()]));
        assert_eq!(at_end("SELECT * FROM users WHERE tier IN ('gold', 'p"), ("p".into(), vec!["platinum'".into()]));
        assert_eq!(
            at_end("SELECT * FROM users WHERE tier NOT IN ('"),
            ("".into(), vec!["bronze'".into(), "gold'".into(), "platinum'".into(), "silver'".into()])
        );
        // A column without value bitmaps offers nothing rather than unrelated names.
        assert_eq!(at_end("SELECT * FROM users WHERE name = 'g").1, Vec::<String>::new());
    }

    #[test]
    fn a_tag_in_quotes_completes_and_is_escaped() {
        assert_eq!(
            at_end("SELECT count(*) FROM user_tags WHERE tag = 'cart_"),
            ("cart_".into(), vec!["cart_abandoner'".into()])
        );
        assert_eq!(
            at_end("SELECT 1 FROM user_tags t WHERE t.tag = 'o''"),
            ("o''".into(), vec!["o''brien_fan'".into()])
        );
        assert_eq!(at_end("SELECT 1 FROM user_tags WHERE tag = 'o"), ("o".into(), vec!["o''brien_fan'".into()]));
        // After a closed string there is nothing to complete.
        assert_eq!(at_end("SELECT 1 FROM user_tags WHERE tag = 'vip'"), ("".into(), Vec::<String>::new()));
        assert_eq!(at_end("SELECT count(*) FROM users WHERE has_tag('ch"), ("ch".into(), vec!["churn_risk'".into()]));
        assert_eq!(at_end("SELECT * FROM breakdown('ch"), ("ch".into(), vec!["churn_risk'".into()]));
        assert_eq!(at_end("SELECT * FROM campaign_lift('g"), ("g".into(), vec!["gold_lapsed'".into()]));
        assert_eq!(
            at_end("SELECT count(*) FROM users WHERE in_audience('g"),
            ("g".into(), vec!["gold_lapsed'".into()]),
            "audience names, not the tier value gold"
        );
        assert_eq!(at_end("SELECT * FROM audience_diff('sp"), ("sp".into(), vec!["spring_sale'".into()]));
        // Without a column to go by, tags and values are both offered.
        assert_eq!(at_end("SELECT has('v").1, vec!["vip'".to_string()]);
    }

    #[test]
    fn words_complete_to_columns_tables_functions_and_keywords() {
        assert_eq!(at_end("SELECT loy"), ("loy".into(), vec!["loyalty_score".into()]));
        assert_eq!(at_end("SELECT * FROM us"), ("us".into(), vec!["users".into(), "user_tags".into()]));
        assert_eq!(at_end("SELECT * FROM "), ("".into(), vec!["users".into(), "user_tags".into(), "purchases".into()]));
        assert_eq!(at_end("SELECT date_t").1, vec!["date_trunc".to_string()]);
        assert_eq!(at_end("SELECT * FROM users WHER").1, vec!["WHERE".to_string()]);
        assert_eq!(at_end("select * from users wher").1, vec!["where".to_string()]);
        // Only the columns of the tables the statement names.
        assert_eq!(at("SELECT loy@ FROM purchases").1, Vec::<String>::new());
        assert_eq!(at("SELECT loy@ FROM users").1, vec!["loyalty_score".to_string()]);
        assert!(at_end("SELECT amo").1.contains(&"amount".to_string()));
        // Nothing for an empty word outside FROM: the list would be every keyword.
        assert_eq!(at_end("SELECT ").1, Vec::<String>::new());
    }

    #[test]
    fn a_qualified_name_completes_to_the_aliased_tables_columns() {
        assert_eq!(at("SELECT u.ti@ FROM users u"), ("ti".into(), vec!["tier".into()]));
        assert_eq!(at("SELECT p.a@ FROM purchases AS p"), ("a".into(), vec!["amount".into()]));
        assert_eq!(at_end("SELECT users.ti").1, vec!["tier".to_string()]);
        assert_eq!(at_end("SELECT x.ti").1, Vec::<String>::new(), "unknown alias");
    }

    #[test]
    fn backslash_commands_and_their_arguments_complete() {
        assert_eq!(at_end("\\pro"), ("\\pro".into(), vec!["\\profile".into()]));
        assert_eq!(at_end("\\d us").1, vec!["users".to_string(), "user_tags".to_string()]);
        assert_eq!(at_end("\\tags ch"), ("ch".into(), vec!["churn_risk".into()]));
        assert_eq!(at_end("\\format js").1, vec!["json".to_string()]);
        assert_eq!(at_end("\\timing o").1, vec!["on".to_string(), "off".to_string()]);
        assert_eq!(at_end("\\explain SELECT * FROM users WHERE tier = 'pl").1, vec!["platinum'".to_string()]);
        assert_eq!(at_end("\\profile u1").1, Vec::<String>::new());
    }

    #[test]
    fn nothing_completes_inside_comments() {
        assert_eq!(at_end("SELECT 1 -- us").1, Vec::<String>::new());
        assert_eq!(at_end("SELECT /* us").1, Vec::<String>::new());
    }
}
