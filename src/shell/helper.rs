//! The rustyline helper of the shell: validates input with Persona's SQL parser (an unfinished
//! statement goes on on the next line, a wrong one is shown with its position and not run),
//! completes with [`complete`](super::complete), highlights SQL, and hints backslash-command
//! usage and history.

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::{Hint, Hinter, HistoryHinter};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use super::commands::COMMANDS;
use super::complete::{CompletionCatalog, complete};
use super::lexer::{Kind, ends_statement, is_blank, tokens};

const KEYWORD: &str = "\x1b[1;34m";
const STRING: &str = "\x1b[32m";
const NUMBER: &str = "\x1b[33m";
const COMMENT: &str = "\x1b[90m";
const COMMAND: &str = "\x1b[35m";
const HINT: &str = "\x1b[2m";
const ERROR: &str = "\x1b[31m";
const PROMPT: &str = "\x1b[1;32m";
const RESET: &str = "\x1b[0m";

/// What the validator decided about the input so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Run it: whole statements, a backslash command, or nothing.
    Complete,
    /// Keep reading lines: no `;` at the end yet, or inside a quote or comment.
    Incomplete,
    /// The parser refused it; the text says why and where.
    Invalid(String),
}

/// Decides whether `input` is ready to run.
pub fn check(input: &str) -> Check {
    if input.trim_start().starts_with('\\') || is_blank(input) {
        return Check::Complete;
    }
    if !ends_statement(input) {
        return Check::Incomplete;
    }
    match crate::engine::parse(input) {
        Ok(_) => Check::Complete,
        Err(e) => {
            let snippet = e.sql_snippet(input).map(|s| format!("\n{s}")).unwrap_or_default();
            Check::Invalid(format!("{}{snippet}\n(fix the statement, or Ctrl-C to drop it)", e.report()))
        }
    }
}

/// The shell's rustyline helper.
pub struct ShellHelper {
    catalog: Arc<CompletionCatalog>,
    /// The lines of the statement entered so far (each ended by `\n`), when the line being edited
    /// continues it: validation and completion read them with it.
    prefix: String,
    /// Whether to write ANSI colours (not with `NO_COLOR` or a dumb terminal).
    colors: bool,
    history: HistoryHinter,
}

impl ShellHelper {
    pub fn new(catalog: Arc<CompletionCatalog>, colors: bool) -> ShellHelper {
        ShellHelper { catalog, prefix: String::new(), colors, history: HistoryHinter::new() }
    }

    /// The lines already entered of the statement the next line continues (empty: a new input).
    pub fn set_prefix(&mut self, prefix: String) {
        self.prefix = prefix;
    }

    /// Completion follows the shell to a newer version.
    pub fn set_catalog(&mut self, catalog: Arc<CompletionCatalog>) {
        self.catalog = catalog;
    }
}

impl Helper for ShellHelper {}

impl Validator for ShellHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let whole = format!("{}{}", self.prefix, ctx.input());
        Ok(match check(&whole) {
            Check::Complete => ValidationResult::Valid(None),
            // The line is taken as it is; the loop asks for the next one under the continuation
            // prompt (rustyline's own multi-line input would show no prompt on the next line).
            Check::Incomplete => ValidationResult::Valid(None),
            // rustyline shows the message as a hint; the marker lets the highlighter colour it.
            Check::Invalid(message) => ValidationResult::Invalid(Some(format!("\n{message}"))),
        })
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        if self.prefix.is_empty() {
            return Ok(complete(&self.catalog, line, pos));
        }
        // The earlier lines name the tables and aliases (`FROM users u` before `u.`).
        let whole = format!("{}{line}", self.prefix);
        let (start, candidates) = complete(&self.catalog, &whole, self.prefix.len() + pos);
        Ok((start.saturating_sub(self.prefix.len()), candidates))
    }
}

/// A hint: grey text after the cursor; `completion` is what the right arrow inserts.
pub struct ShellHint {
    display: String,
    completion: Option<String>,
}

impl Hint for ShellHint {
    fn display(&self) -> &str {
        &self.display
    }

    fn completion(&self) -> Option<&str> {
        self.completion.as_deref()
    }
}

impl Hinter for ShellHelper {
    type Hint = ShellHint;

    fn hint(&self, line: &str, pos: usize, ctx: &Context<'_>) -> Option<ShellHint> {
        if pos < line.len() {
            return None;
        }
        if line.trim_start().starts_with('\\') && self.prefix.is_empty() {
            return command_hint(line);
        }
        if !self.prefix.is_empty() {
            return None;
        }
        self.history.hint(line, pos, ctx).map(|h| ShellHint { completion: Some(h.clone()), display: h })
    }
}

/// The rest of a backslash command's name (completable) and its arguments (shown only).
fn command_hint(line: &str) -> Option<ShellHint> {
    let typed = line.trim_start();
    if let Some(name) = typed.strip_suffix(' ').filter(|n| !n.contains(' ')) {
        let info = COMMANDS.iter().find(|c| c.name == name)?;
        return (!info.args.is_empty()).then(|| ShellHint { display: info.args.to_string(), completion: None });
    }
    if typed.contains(' ') {
        return None;
    }
    let mut matching = COMMANDS.iter().filter(|c| c.name.starts_with(typed));
    let info = matching.next()?;
    if matching.next().is_some() {
        return None;
    }
    let rest = &info.name[typed.len()..];
    let display = if info.args.is_empty() { rest.to_string() } else { format!("{rest} {}", info.args) };
    if display.is_empty() {
        return None;
    }
    Some(ShellHint { display, completion: (!rest.is_empty()).then(|| rest.to_string()) })
}

impl Highlighter for ShellHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if !self.colors {
            return Cow::Borrowed(line);
        }
        Cow::Owned(highlight_sql(line, &self.catalog))
    }

    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(&'s self, prompt: &'p str, _default: bool) -> Cow<'b, str> {
        if !self.colors {
            return Cow::Borrowed(prompt);
        }
        Cow::Owned(format!("{PROMPT}{prompt}{RESET}"))
    }

    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if !self.colors {
            return Cow::Borrowed(hint);
        }
        let colour = if hint.starts_with("\nerror: ") { ERROR } else { HINT };
        Cow::Owned(format!("{colour}{hint}{RESET}"))
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        self.colors
    }
}

/// `line` with ANSI colours: keywords (not the store's own names), strings, numbers, comments,
/// and a leading backslash command.
pub fn highlight_sql(line: &str, catalog: &CompletionCatalog) -> String {
    let mut out = String::with_capacity(line.len() * 2);
    let mut rest = line;
    let lead = line.len() - line.trim_start().len();
    if line[lead..].starts_with('\\') {
        let end = line[lead..].find(char::is_whitespace).map_or(line.len(), |i| lead + i);
        out.push_str(&line[..lead]);
        out.push_str(&format!("{COMMAND}{}{RESET}", &line[lead..end]));
        rest = &line[end..];
    }
    for token in tokens(rest) {
        let text = token.text(rest);
        let colour = match token.kind {
            Kind::Word if is_keyword(text) && !catalog.is_name(text) => Some(KEYWORD),
            Kind::Str { .. } => Some(STRING),
            Kind::Number => Some(NUMBER),
            Kind::Comment { .. } => Some(COMMENT),
            _ => None,
        };
        match colour {
            Some(c) => out.push_str(&format!("{c}{text}{RESET}")),
            None => out.push_str(text),
        }
    }
    out
}

fn is_keyword(word: &str) -> bool {
    ALL_KEYWORDS.binary_search(&word.to_ascii_uppercase().as_str()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_run_only_when_ended_by_a_semicolon() {
        assert_eq!(check("SELECT 1;"), Check::Complete);
        assert_eq!(check("SELECT 1; SELECT 2;"), Check::Complete);
        assert_eq!(check("SELECT count(*)\nFROM users\nWHERE tier = 'gold';"), Check::Complete);
        assert_eq!(check("SELECT 1"), Check::Incomplete);
        assert_eq!(check("SELECT 1;\nSELECT"), Check::Incomplete);
        assert_eq!(check("SELECT 'a;"), Check::Incomplete, "inside a string");
        assert_eq!(check("SELECT 1 /* ; "), Check::Incomplete, "inside a comment");
        assert_eq!(check("SELECT 1; -- and a comment"), Check::Complete);
    }

    #[test]
    fn commands_and_empty_input_need_no_semicolon() {
        assert_eq!(check("\\d users"), Check::Complete);
        assert_eq!(check("  \\q"), Check::Complete);
        assert_eq!(check(""), Check::Complete);
        assert_eq!(check("-- nothing but a comment"), Check::Complete);
    }

    #[test]
    fn a_wrong_statement_is_refused_with_its_position() {
        let Check::Invalid(message) = check("SELECT *\nFROM users WHERE;") else {
            panic!("accepted a wrong statement")
        };
        assert!(message.starts_with("error: "), "{message}");
        assert!(message.contains("(at line 2, column 17)"), "{message}");
        assert!(message.contains("    2 | FROM users WHERE;\n      |                 ^"), "{message}");
    }

    #[test]
    fn a_continuation_line_is_checked_and_completed_with_the_lines_before_it() {
        let catalog = CompletionCatalog {
            tables: vec![("users".into(), vec!["user_id".into(), "tier".into()])],
            ..CompletionCatalog::default()
        };
        let mut helper = ShellHelper::new(Arc::new(catalog), false);
        helper.set_prefix("SELECT u.ti\nFROM users u\n".into());
        let history = rustyline::history::DefaultHistory::new();
        let ctx = Context::new(&history);
        // `u.` on a later line completes from the alias the earlier line defined.
        let (start, candidates) = helper.complete("WHERE u.ti", 10, &ctx).unwrap();
        assert_eq!(start, 8);
        assert_eq!(candidates.iter().map(|c| c.replacement.as_str()).collect::<Vec<_>>(), vec!["tier"]);
    }

    #[test]
    fn command_hints_complete_the_name_and_show_the_arguments() {
        let hint = command_hint("\\pro").expect("a hint");
        assert_eq!((hint.display(), hint.completion()), ("file USER_ID", Some("file")));
        let hint = command_hint("\\profile ").expect("a hint");
        assert_eq!((hint.display(), hint.completion()), ("USER_ID", None));
        assert!(command_hint("\\t").is_none(), "\\tags and \\timing both match");
        assert!(command_hint("\\profile u1").is_none());
        assert!(command_hint("\\q").is_none(), "nothing left to show");
        let hint = command_hint("\\d").expect("a hint");
        assert_eq!((hint.display(), hint.completion()), (" [TABLE]", None));
    }

    #[test]
    fn highlighting_colours_keywords_strings_and_commands_only() {
        let catalog = CompletionCatalog {
            tables: vec![("user_tags".into(), vec!["user_id".into(), "tag".into()])],
            functions: vec!["count".into()],
            ..CompletionCatalog::default()
        };
        assert_eq!(
            highlight_sql("select x, 'a' -- c", &catalog),
            format!("{KEYWORD}select{RESET} x, {STRING}'a'{RESET} {COMMENT}-- c{RESET}")
        );
        assert_eq!(highlight_sql("\\d users", &catalog), format!("{COMMAND}\\d{RESET} users"));
        // TAG and COUNT are keywords somewhere in SQL, but here they name a column and a function.
        assert_eq!(highlight_sql("SELECT count(tag)", &catalog), format!("{KEYWORD}SELECT{RESET} count(tag)"));
        // Colouring never changes the text itself.
        let line = "SELECT 名字, 1.5 FROM users WHERE tier = 'go";
        let plain = highlight_sql(line, &catalog)
            .replace(KEYWORD, "")
            .replace(STRING, "")
            .replace(NUMBER, "")
            .replace(RESET, "");
        assert_eq!(plain, line);
    }
}
