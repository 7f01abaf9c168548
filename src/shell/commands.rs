//! The shell's backslash commands: one enum parsed from the input line, one table of names, usages
//! and help that drives `\?` and completion, and the handlers that run each command on the shell.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;

use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};

use super::exec::{Failure, Flow, Shell};
use super::render;
use crate::error::{Error, Result};
use crate::output::OutputFormat;
use crate::query::sql_text::string_literal;
use crate::tables::Table;

/// What a command's argument is, for completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    None,
    Table,
    Tag,
    Format,
    OnOff,
    Path,
    Sql,
    Text,
}

/// One line of the command table.
#[derive(Debug)]
pub struct CommandInfo {
    pub name: &'static str,
    pub args: &'static str,
    pub help: &'static str,
    pub arg: ArgKind,
}

const fn info(name: &'static str, args: &'static str, arg: ArgKind, help: &'static str) -> CommandInfo {
    CommandInfo { name, args, help, arg }
}

/// Every backslash command, in the order `\?` lists them.
pub const COMMANDS: &[CommandInfo] = &[
    info("\\?", "", ArgKind::None, "list these commands"),
    info("\\q", "", ArgKind::None, "leave the shell (Ctrl-D does too)"),
    info(
        "\\d",
        "[TABLE]",
        ArgKind::Table,
        "list the tables, or one table's columns, types and row count (tags, audiences and audience_versions too)",
    ),
    info(
        "\\tags",
        "[PATTERN]",
        ArgKind::Tag,
        "tags with their sizes, loaded or rule; PATTERN is part of a name, * and ? are wildcards",
    ),
    info(
        "\\audiences",
        "[PATTERN]",
        ArgKind::Text,
        "saved audiences with their sizes, versions, suppression and holdout (SHOW AUDIENCE name: one in full)",
    ),
    info(
        "\\profile",
        "USER_ID",
        ArgKind::Text,
        "one user's profile, person and identifiers, tags, audiences and most recent purchases",
    ),
    info(
        "\\portrait",
        "AUDIENCE",
        ArgKind::Tag,
        "an audience's (or a tag's) members by every low-cardinality column, as bars with TGI, and its most distinguishing tags",
    ),
    info(
        "\\overlap",
        "A B ...",
        ArgKind::Tag,
        "every region of the Venn diagram of up to 8 tags or saved audiences, as bars",
    ),
    info(
        "\\model",
        "[NAME]",
        ArgKind::Text,
        "the trained models, or one model's coefficients as bars with its AUC (CREATE MODEL trains one)",
    ),
    info("\\rfm", "", ArgKind::None, "the buyers on a recency-by-frequency grid, and the eight RFM segments as bars"),
    info("\\explain", "QUERY", ArgKind::Sql, "the plan of QUERY, with the predicates answered from bitmaps"),
    info("\\i", "FILE", ArgKind::Path, "run the statements and commands in FILE"),
    info("\\o", "[FILE]", ArgKind::Path, "send query results to FILE (emptied first), or back to the screen"),
    info("\\format", "table|vertical|csv|json", ArgKind::Format, "how query results are written"),
    info("\\timing", "[on|off]", ArgKind::OnOff, "show each statement's elapsed time (on at start)"),
    info("\\refresh", "", ArgKind::None, "move to the newest committed version of the store"),
];

/// A parsed backslash command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackslashCommand {
    Help,
    Quit,
    Tables,
    Describe(Table),
    /// One of the catalog tables: `tags`, `audiences`, `audience_versions`.
    DescribeCatalog(String),
    Tags(Option<String>),
    Audiences(Option<String>),
    Profile(String),
    Portrait(String),
    /// `\model [NAME]`.
    Model(Option<String>),
    Overlap(Vec<String>),
    Rfm,
    Explain(String),
    Include(PathBuf),
    Output(Option<PathBuf>),
    Format(OutputFormat),
    Timing(Option<bool>),
    Refresh,
}

impl FromStr for BackslashCommand {
    type Err = Error;

    fn from_str(line: &str) -> Result<BackslashCommand> {
        let line = line.trim();
        let (name, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let arg = rest.trim();
        let arg = (!arg.is_empty()).then_some(arg);
        let needs = |what: &str| Error::Usage(format!("{name} needs {what}; \\? lists the commands"));
        let no_args = |command: BackslashCommand| match arg {
            None => Ok(command),
            Some(extra) => Err(Error::Usage(format!("{name} takes no argument, but was given '{extra}'"))),
        };
        match name {
            "\\?" | "\\h" | "\\help" => no_args(BackslashCommand::Help),
            "\\q" | "\\quit" => no_args(BackslashCommand::Quit),
            "\\d" => match arg.map(str::to_ascii_lowercase) {
                None => Ok(BackslashCommand::Tables),
                Some(table) if crate::audience::tables::catalog_tables().iter().any(|(n, _)| *n == table) => {
                    Ok(BackslashCommand::DescribeCatalog(table))
                }
                Some(table) => Ok(BackslashCommand::Describe(table.parse()?)),
            },
            "\\tags" => Ok(BackslashCommand::Tags(arg.map(str::to_string))),
            "\\audiences" => Ok(BackslashCommand::Audiences(arg.map(str::to_string))),
            "\\profile" => {
                let id = arg.ok_or_else(|| needs("a USER_ID"))?;
                Ok(BackslashCommand::Profile(unquote(id).to_string()))
            }
            "\\portrait" => {
                let name = arg.ok_or_else(|| needs("an AUDIENCE (a saved audience or a tag)"))?;
                Ok(BackslashCommand::Portrait(unquote(name).to_string()))
            }
            "\\overlap" => {
                let names: Vec<String> = arg
                    .ok_or_else(|| needs("tags or saved audiences"))?
                    .split_whitespace()
                    .map(|n| unquote(n).to_string())
                    .collect();
                Ok(BackslashCommand::Overlap(names))
            }
            "\\rfm" => no_args(BackslashCommand::Rfm),
            "\\model" => Ok(BackslashCommand::Model(arg.map(|a| unquote(a).to_string()))),
            "\\explain" => Ok(BackslashCommand::Explain(arg.ok_or_else(|| needs("a QUERY"))?.to_string())),
            "\\i" => Ok(BackslashCommand::Include(PathBuf::from(unquote(arg.ok_or_else(|| needs("a FILE"))?)))),
            "\\o" => Ok(BackslashCommand::Output(arg.map(|a| PathBuf::from(unquote(a))))),
            "\\format" => match arg.map(str::to_ascii_lowercase).as_deref() {
                Some("table") => Ok(BackslashCommand::Format(OutputFormat::Table)),
                Some("vertical") => Ok(BackslashCommand::Format(OutputFormat::Vertical)),
                Some("csv") => Ok(BackslashCommand::Format(OutputFormat::Csv)),
                Some("json") => Ok(BackslashCommand::Format(OutputFormat::Json)),
                Some(other) => Err(Error::Usage(format!(
                    "the shell writes table, vertical, csv or json, not '{other}' (for Parquet use COPY ... TO 'file.parquet')"
                ))),
                None => Err(needs("one of table, vertical, csv, json")),
            },
            "\\timing" => match arg.map(str::to_ascii_lowercase).as_deref() {
                None => Ok(BackslashCommand::Timing(None)),
                Some("on") => Ok(BackslashCommand::Timing(Some(true))),
                Some("off") => Ok(BackslashCommand::Timing(Some(false))),
                Some(other) => Err(Error::Usage(format!("\\timing takes on or off, not '{other}'"))),
            },
            "\\refresh" => no_args(BackslashCommand::Refresh),
            other => Err(Error::Usage(format!("unknown command {other}; \\? lists the commands"))),
        }
    }
}

/// `'x'` or `"x"` as `x`: users quote ids and paths out of SQL habit.
fn unquote(s: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// Runs `command` on `shell`.
pub async fn run(command: BackslashCommand, shell: &mut Shell) -> std::result::Result<Flow, Failure> {
    match command {
        BackslashCommand::Quit => return Ok(Flow::Quit),
        BackslashCommand::Help => shell.say(&help()),
        BackslashCommand::Tables => tables(shell)?,
        BackslashCommand::Describe(table) => describe(shell, table)?,
        BackslashCommand::DescribeCatalog(table) => describe_catalog(shell, &table)?,
        BackslashCommand::Tags(pattern) => tags(shell, pattern.as_deref())?,
        BackslashCommand::Audiences(pattern) => audiences(shell, pattern.as_deref())?,
        BackslashCommand::Profile(user_id) => profile(shell, &user_id).await?,
        BackslashCommand::Portrait(name) => super::charts::portrait(shell, &name).await?,
        BackslashCommand::Overlap(names) => super::charts::overlap(shell, &names).await?,
        BackslashCommand::Rfm => super::charts::rfm(shell).await?,
        BackslashCommand::Model(name) => model(shell, name.as_deref())?,
        BackslashCommand::Explain(query) => {
            explain(shell, &query).await.map_err(|e| Failure::in_text(e, &query))?;
        }
        BackslashCommand::Include(path) => return shell.include(&path).await,
        BackslashCommand::Output(path) => {
            shell.set_output(path.as_deref())?;
            match path {
                Some(p) => shell.note(&format!("query results now go to {}", p.display())),
                None => shell.note("query results now go to the screen"),
            }
        }
        BackslashCommand::Format(format) => {
            shell.settings_mut().format = format;
            let name = format!("{format:?}").to_lowercase();
            shell.note(&format!("results are written as {name}"));
        }
        BackslashCommand::Timing(on) => {
            let settings = shell.settings_mut();
            settings.timing = on.unwrap_or(!settings.timing);
            let state = if settings.timing { "on" } else { "off" };
            shell.note(&format!("timing is {state}"));
        }
        BackslashCommand::Refresh => {
            let (from, to) = shell.refresh()?;
            if from == to {
                shell.note(&format!("already at the newest version, {to}"));
            } else {
                shell.note(&format!("moved from version {from} to version {to}"));
            }
        }
    }
    Ok(Flow::Continue)
}

/// The `\?` text, from [`COMMANDS`].
pub fn help() -> String {
    let usage = |c: &CommandInfo| if c.args.is_empty() { c.name.to_string() } else { format!("{} {}", c.name, c.args) };
    let width = COMMANDS.iter().map(|c| usage(c).len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in COMMANDS {
        let _ = writeln!(out, "  {:<width$}  {}", usage(c), c.help);
    }
    out.push_str("\nSQL statements end with ';' and may span lines. Tab completes; Ctrl-R searches the history;\n");
    out.push_str("Ctrl-C cancels a running query or the current input; Ctrl-D leaves.");
    out
}

fn describe(shell: &mut Shell, table: Table) -> Result<()> {
    let session = shell.session();
    let snapshot = session.snapshot();
    let manifest = snapshot.manifest();
    let index = session.index();
    let rows: Vec<Vec<String>> = manifest
        .columns(table)
        .iter()
        .map(|c| {
            let mut row = vec![c.name.clone(), c.ty.sql_name().to_string()];
            if table == Table::Users {
                let kind = if index.has_values(&c.name) {
                    "values"
                } else if index.range_index(&c.name).is_some() {
                    "range"
                } else {
                    ""
                };
                row.push(kind.to_string());
            }
            row
        })
        .collect();
    let header: &[&str] = if table == Table::Users { &["column", "type", "bitmap index"] } else { &["column", "type"] };
    let count = manifest.rows(table);
    let noun = if count == 1 { "row" } else { "rows" };
    shell.say(&format!(
        "{table}: {count} {noun} at version {}\n{}",
        session.snapshot().version(),
        render::text_table(header, &rows)?
    ));
    Ok(())
}

fn tables(shell: &mut Shell) -> Result<()> {
    let snapshot = shell.session().snapshot();
    let manifest = snapshot.manifest();
    let rows: Vec<Vec<String>> = Table::ALL
        .iter()
        .map(|t| vec![t.name().to_string(), manifest.rows(*t).to_string(), manifest.columns(*t).len().to_string()])
        .collect();
    let saved = manifest.catalog.audiences.len();
    let audiences = match saved {
        0 => "no saved audiences".to_string(),
        1 => "1 saved audience (\\audiences lists it)".to_string(),
        n => format!("{n} saved audiences (\\audiences lists them)"),
    };
    shell.say(&format!(
        "{}\ncatalog: tags, audiences, audience_versions (\\d tags ...); {audiences}",
        render::text_table(&["table", "rows", "columns"], &rows)?
    ));
    Ok(())
}

/// `\d tags`, `\d audiences`, `\d audience_versions`: the catalog table's columns and rows.
fn describe_catalog(shell: &mut Shell, name: &str) -> Result<()> {
    let session = shell.session();
    let snapshot = session.snapshot();
    let catalog = &snapshot.manifest().catalog;
    let (_, schema) = crate::audience::tables::catalog_tables()
        .into_iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| Error::Internal(format!("'{name}' is no catalog table")))?;
    let rows: Vec<Vec<String>> =
        schema.fields().iter().map(|f| vec![f.name().clone(), sql_type(f.data_type()).to_string()]).collect();
    let (count, what) = match name {
        "tags" => (session.index().tag_names().len(), "tags, loaded and rule"),
        "audiences" => (catalog.audiences.len(), "saved audiences, with their latest version"),
        _ => (catalog.audiences.iter().map(|a| a.versions.len()).sum(), "versions of saved audiences"),
    };
    let noun = if count == 1 { "row" } else { "rows" };
    shell.say(&format!(
        "{name}: {count} {noun} at version {} ({what})\n{}",
        snapshot.version(),
        render::text_table(&["column", "type"], &rows)?
    ));
    Ok(())
}

/// The SQL name of a catalog column's type.
fn sql_type(t: &arrow::datatypes::DataType) -> &'static str {
    use arrow::datatypes::DataType as T;
    match t {
        T::Utf8 | T::Utf8View | T::LargeUtf8 => "VARCHAR",
        T::UInt32 => "INT UNSIGNED",
        T::UInt64 => "BIGINT UNSIGNED",
        T::Int64 => "BIGINT",
        T::Float64 => "DOUBLE",
        T::Boolean => "BOOLEAN",
        _ => "OTHER",
    }
}

fn tags(shell: &mut Shell, pattern: Option<&str>) -> Result<()> {
    let sizes = shell.session().index().tag_sizes()?;
    let snapshot = shell.session().snapshot();
    let catalog = &snapshot.manifest().catalog;
    let rows: Vec<Vec<String>> = sizes
        .into_iter()
        .filter(|(tag, _)| pattern.is_none_or(|p| name_matches(tag, p)))
        .map(|(tag, n)| {
            let kind = if catalog.tag(&tag).is_some() { "rule" } else { "loaded" };
            vec![tag, n.to_string(), kind.to_string()]
        })
        .collect();
    if rows.is_empty() {
        match pattern {
            Some(p) => shell.say(&format!("no tag matches '{p}'")),
            None => shell.say("the store has no tags (load a user_tags file)"),
        }
        return Ok(());
    }
    let n = rows.len();
    shell.say(&format!(
        "{}\n({n} tag{})",
        render::text_table(&["tag", "users", "kind"], &rows)?,
        if n == 1 { "" } else { "s" }
    ));
    Ok(())
}

/// `\audiences [PATTERN]`: the saved audiences, read from the manifest (no query runs).
fn audiences(shell: &mut Shell, pattern: Option<&str>) -> Result<()> {
    let snapshot = shell.session().snapshot();
    let catalog = &snapshot.manifest().catalog;
    let rows: Vec<Vec<String>> = catalog
        .audiences
        .iter()
        .filter(|a| pattern.is_none_or(|p| name_matches(&a.name, p)))
        .map(|a| {
            let latest = a.latest();
            let mut suppress: Vec<String> = a.suppress_audiences.clone();
            suppress.extend(a.suppress_files.iter().map(|f| format!("FILE '{f}'")));
            vec![
                a.name.clone(),
                latest.map_or(0, |v| v.members).to_string(),
                latest.map_or(0, |v| v.members - v.holdout).to_string(),
                latest.map_or(0, |v| v.number).to_string(),
                format!("{} %", a.holdout_percent()),
                suppress.join(", "),
                latest.map_or(String::new(), |v| v.computed_at.clone()),
            ]
        })
        .collect();
    if rows.is_empty() {
        match pattern {
            Some(p) => shell.say(&format!("no saved audience matches '{p}'")),
            None => shell
                .say("the store has no saved audiences (CREATE AUDIENCE name AS SELECT user_id FROM ... saves one)"),
        }
        return Ok(());
    }
    let n = rows.len();
    shell.say(&format!(
        "{}\n({n} audience{}; SHOW AUDIENCE name shows one in full)",
        render::text_table(
            &["audience", "members", "exported", "version", "holdout", "suppress", "computed_at"],
            &rows
        )?,
        if n == 1 { "" } else { "s" }
    ));
    Ok(())
}

/// `\model [NAME]`: the trained models, or one model explained: its figures, then each term's
/// coefficient as a bar left (lowers the odds) or right (raises them) of the axis, largest first.
fn model(shell: &mut Shell, name: Option<&str>) -> Result<()> {
    let snapshot = shell.session().snapshot();
    let catalog = &snapshot.manifest().catalog;
    let auc = |a: Option<f64>| a.map_or("n/a".to_string(), |a| format!("{a:.3}"));
    let Some(name) = name else {
        if catalog.models.is_empty() {
            shell.say(
                "the store has no models (CREATE MODEL name AS LOGISTIC REGRESSION PREDICT ... FROM ... trains one)",
            );
            return Ok(());
        }
        let rows: Vec<Vec<String>> = catalog
            .models
            .iter()
            .map(|m| {
                vec![
                    m.name.clone(),
                    m.metrics.population.to_string(),
                    m.metrics.positives.to_string(),
                    auc(m.metrics.holdout_auc),
                    m.created_at.clone(),
                ]
            })
            .collect();
        shell.say(&format!(
            "{}\n(\\model NAME explains one; SELECT * FROM predict('NAME') scores the users)",
            render::text_table(&["model", "users", "labelled 1", "holdout AUC", "created_at"], &rows)?
        ));
        return Ok(());
    };
    let m = catalog.model(name).ok_or_else(|| crate::store::catalog::no_such_model(name))?;
    let mut out = format!(
        "model {}: {} on {} users ({} labelled 1), holdout AUC {}, training AUC {:.3}\n",
        m.name,
        m.kind,
        m.metrics.population,
        m.metrics.positives,
        auc(m.metrics.holdout_auc),
        m.metrics.train_auc
    );
    let _ = writeln!(out, "  PREDICT {}", m.label_query.split_whitespace().collect::<Vec<_>>().join(" "));
    let _ = writeln!(out, "  FROM {}\n", m.features_as_written.split_whitespace().collect::<Vec<_>>().join(" "));
    let mut terms: Vec<_> = m.terms.iter().collect();
    terms.sort_by(|a, b| b.coefficient.abs().total_cmp(&a.coefficient.abs()).then(a.column.cmp(&b.column)));
    let label = |t: &crate::store::catalog::ModelTerm| match &t.level {
        Some(l) => format!("{} = {l}", t.column),
        None => format!("{} (+1 sd)", t.column),
    };
    let width = terms.iter().map(|t| label(t).chars().count()).max().unwrap_or(0);
    let largest = terms.iter().map(|t| t.coefficient.abs()).fold(0.0, f64::max).max(1e-12);
    const HALF: usize = 20;
    for t in &terms {
        let cells = ((t.coefficient.abs() / largest) * HALF as f64).round() as usize;
        let (left, right) = if t.coefficient < 0.0 {
            (format!("{}{}", " ".repeat(HALF - cells), "█".repeat(cells)), " ".repeat(HALF))
        } else {
            (" ".repeat(HALF), format!("{}{}", "█".repeat(cells), " ".repeat(HALF - cells)))
        };
        let name = label(t);
        let pad = width - name.chars().count();
        let _ = writeln!(
            out,
            "  {name}{} {left}│{right} {:+.3} (odds ×{:.2})",
            " ".repeat(pad),
            t.coefficient,
            t.coefficient.exp()
        );
    }
    for note in &m.metrics.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    shell.say(out.trim_end());
    Ok(())
}

/// `pattern` with `*` and `?` wildcards matches the whole name; without them it matches any part.
/// Case is ignored.
fn name_matches(name: &str, pattern: &str) -> bool {
    let name: Vec<char> = name.to_lowercase().chars().collect();
    let pattern = pattern.to_lowercase();
    let pattern: Vec<char> =
        if pattern.contains(['*', '?']) { pattern.chars().collect() } else { format!("*{pattern}*").chars().collect() };
    // Classic wildcard matching with backtracking to the last `*`.
    let (mut n, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            n += 1;
            p += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Purchases `\profile` shows, newest first (in columns narrow enough for 80-column terminals).
const PROFILE_PURCHASES: usize = 10;

async fn profile(shell: &mut Shell, user_id: &str) -> Result<()> {
    let id = string_literal(user_id);
    let user = shell.query(&format!("SELECT * FROM users WHERE user_id = {id}")).await?;
    if user.iter().all(|b| b.num_rows() == 0) {
        return Err(Error::Usage(format!("no user has user_id {id}")));
    }
    let tags =
        shell.query(&format!("SELECT tag, assigned_at FROM user_tags WHERE user_id = {id} ORDER BY tag")).await?;
    let purchases = shell
        .query(&format!(
            "SELECT to_char(p.ts, '%Y-%m-%d %H:%M') AS at, p.order_id, pr.name AS product, p.amount \
             FROM purchases p LEFT JOIN products pr ON pr.product_id = p.product_id \
             WHERE p.user_id = {id} ORDER BY p.ts DESC, p.order_id LIMIT {PROFILE_PURCHASES}"
        ))
        .await?;
    let total = count(&shell.query(&format!("SELECT count(*) FROM purchases WHERE user_id = {id}")).await?);
    let mut out = crate::output::vertical_text(&user)?;
    let tag_count: usize = tags.iter().map(RecordBatch::num_rows).sum();
    if tag_count == 0 {
        out.push_str("\ntags: none\n");
    } else {
        let _ = writeln!(out, "\ntags ({tag_count}):\n{}", render::fit(&tags[0].schema(), &tags, shell.width())?);
    }
    if shell.session().snapshot().manifest().identity.resolution.is_some() {
        person_section(shell, &id, &mut out).await?;
    }
    let member_of = audiences_of(shell, user_id)?;
    if member_of.is_empty() {
        out.push_str("\naudiences: none\n");
    } else {
        let _ = writeln!(out, "\naudiences ({}): {}", member_of.len(), member_of.join(", "));
    }
    let shown: usize = purchases.iter().map(RecordBatch::num_rows).sum();
    if shown == 0 {
        out.push_str("\npurchases: none");
    } else {
        let _ = write!(
            out,
            "\npurchases ({total} in all, the {shown} most recent):\n{}",
            render::fit(&purchases[0].schema(), &purchases, shell.width())?
        );
    }
    shell.say(&out);
    Ok(())
}

/// `\profile`'s person (docs/identity.md): its profiles and every identifier linked to it.
async fn person_section(shell: &mut Shell, id: &str, out: &mut String) -> Result<()> {
    let person = format!("(SELECT person_id FROM user_persons WHERE user_id = {id})");
    let profiles = shell
        .query(&format!(
            "SELECT person_id, string_agg(user_id, ', ' ORDER BY profile_seq) AS user_ids, count(*) AS n \
             FROM user_persons WHERE person_id = {person} GROUP BY person_id"
        ))
        .await?;
    let Some(batch) = profiles.iter().find(|b| b.num_rows() > 0) else { return Ok(()) };
    let text = |i: usize| arrow::util::display::array_value_to_string(batch.column(i), 0);
    let _ = writeln!(out, "\nperson {} ({} profile(s)): {}", text(0)?, text(2)?, text(1)?);
    let identifiers = shell
        .query(&format!(
            "SELECT l.id_type, l.id_value, l.user_id, l.source, l.status FROM identity_links l \
             JOIN user_persons p ON p.user_id = l.user_id \
             WHERE p.person_id = {person} AND l.status IN ('linked', 'joined') \
             ORDER BY l.id_type, l.id_value, l.seq"
        ))
        .await?;
    let shown: usize = identifiers.iter().map(RecordBatch::num_rows).sum();
    if shown > 0 {
        let _ = writeln!(
            out,
            "identifiers ({shown}):\n{}",
            render::fit(&identifiers[0].schema(), &identifiers, shell.width())?
        );
    }
    Ok(())
}

/// The saved audiences whose latest members include `user_id` (read from their sets).
fn audiences_of(shell: &Shell, user_id: &str) -> Result<Vec<String>> {
    let session = shell.session();
    let snapshot = session.snapshot();
    let catalog = &snapshot.manifest().catalog;
    if catalog.audiences.is_empty() {
        return Ok(Vec::new());
    }
    let index = session.index();
    let mut resolver = crate::audience::members::IdResolver::default();
    resolver.add(user_id);
    let Some(row) = resolver.finish(&index)?.set.min() else { return Ok(Vec::new()) };
    let mut names = Vec::new();
    for audience in &catalog.audiences {
        if index.saved_audience(&audience.name)?.is_some_and(|m| m.contains(row)) {
            names.push(audience.name.clone());
        }
    }
    Ok(names)
}

/// The single integer of a `SELECT count(*)` result (0 when absent).
fn count(batches: &[RecordBatch]) -> i64 {
    batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| b.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().map(|a| a.value(0)))
        .unwrap_or(0)
}

async fn explain(shell: &mut Shell, query: &str) -> Result<()> {
    let query = query.trim().trim_end_matches(';').trim_end();
    let plan = shell.session().sql(query).await?.into_optimized_plan()?;
    let steps = bitmap_steps(&plan, shell.session().use_indexes())?;
    let rows = shell.query(&format!("EXPLAIN {query}")).await?;
    let mut out = String::new();
    if steps.is_empty() {
        out.push_str("bitmap steps: none (no users predicate is answered from the indexes)\n");
    } else {
        out.push_str("bitmap steps (users predicates answered from the indexes, exactly):\n");
        for step in steps {
            let _ = writeln!(out, "  {step}");
        }
    }
    for batch in &rows {
        let columns = (batch.column(0).as_any(), batch.column(1).as_any());
        let (Some(kinds), Some(texts)) = (
            columns.0.downcast_ref::<arrow::array::StringArray>(),
            columns.1.downcast_ref::<arrow::array::StringArray>(),
        ) else {
            return Err(Error::Internal("EXPLAIN did not return two text columns".into()));
        };
        for row in 0..batch.num_rows() {
            let _ = writeln!(out, "\n{}:", kinds.value(row).replace('_', " "));
            for line in texts.value(row).lines().filter(|l| !l.trim().is_empty()) {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    shell.say(&readable_days(out.trim_end()));
    Ok(())
}

/// The activity windows of audience markers with dates for day numbers (`"first_day":20728` as
/// `"first_day":"2026-10-02"`) and times for the microseconds of partial days.
fn readable_days(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = ["\"first_day\":", "\"last_day\":", "\"from\":", "\"to\":"]
            .iter()
            .filter_map(|key| rest.find(key).map(|at| (at, *key)))
            .min_by_key(|(at, _)| *at);
        let Some((at, key)) = next else { break };
        let value_at = at + key.len();
        out.push_str(&rest[..value_at]);
        let digits = rest[value_at..].chars().take_while(|c| c.is_ascii_digit() || *c == '-').count();
        let number = rest[value_at..value_at + digits].parse::<i64>().ok();
        let shown = number.and_then(|n| {
            if key.contains("day") {
                chrono::DateTime::from_timestamp(n * 86_400, 0).map(|d| d.format("%Y-%m-%d").to_string())
            } else {
                chrono::DateTime::from_timestamp_micros(n).map(|d| d.format("%Y-%m-%dT%H:%M:%S").to_string())
            }
        });
        match shown {
            Some(date) => {
                out.push('"');
                out.push_str(&date);
                out.push('"');
            }
            None => out.push_str(&rest[value_at..value_at + digits]),
        }
        rest = &rest[value_at + digits..];
    }
    out.push_str(rest);
    out
}

/// The filters of every users scan in `plan` that the users table answers from bitmaps.
fn bitmap_steps(plan: &LogicalPlan, indexes_on: bool) -> Result<Vec<String>> {
    let mut steps = Vec::new();
    if !indexes_on {
        return Ok(steps);
    }
    let mut failed = None;
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan.table_name.table() == Table::Users.name()
        {
            let filters: Vec<&Expr> = scan.filters.iter().collect();
            match scan.source.supports_filters_pushdown(&filters) {
                Ok(kinds) => steps.extend(
                    filters
                        .iter()
                        .zip(kinds)
                        .filter(|(_, k)| *k == TableProviderFilterPushDown::Exact)
                        .map(|(f, _)| describe_filter(f)),
                ),
                Err(e) => failed = Some(e),
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(steps),
    }
}

/// A users filter as SQL; the audience marker the audience rule writes shows as its spec.
fn describe_filter(filter: &Expr) -> String {
    if let Expr::ScalarFunction(f) = filter
        && f.name() == "persona_audience"
        && let Some(Expr::Literal(spec, _)) = f.args.get(1)
    {
        return format!("audience {spec}");
    }
    match datafusion::sql::unparser::expr_to_sql(filter) {
        Ok(sql) => strip_outer_parens(&sql.to_string()).to_string(),
        Err(_) => filter.human_display().to_string(),
    }
}

/// `(a = 1)` as `a = 1`; `(a) OR (b)` stays as it is.
fn strip_outer_parens(sql: &str) -> &str {
    let Some(inner) = sql.strip_prefix('(').and_then(|s| s.strip_suffix(')')) else { return sql };
    let mut depth = 0i32;
    for c in inner.chars() {
        depth += match c {
            '(' => 1,
            ')' => -1,
            _ => 0,
        };
        if depth < 0 {
            return sql;
        }
    }
    if depth == 0 { inner } else { sql }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<BackslashCommand> {
        s.parse()
    }

    #[test]
    fn commands_parse_with_their_arguments() {
        assert_eq!(parse("\\q").unwrap(), BackslashCommand::Quit);
        assert_eq!(parse("  \\d  ").unwrap(), BackslashCommand::Tables);
        assert_eq!(parse("\\d USERS").unwrap(), BackslashCommand::Describe(Table::Users));
        assert_eq!(parse("\\tags vip*").unwrap(), BackslashCommand::Tags(Some("vip*".into())));
        assert_eq!(parse("\\profile 'u1'").unwrap(), BackslashCommand::Profile("u1".into()));
        assert_eq!(parse("\\explain SELECT 1;").unwrap(), BackslashCommand::Explain("SELECT 1;".into()));
        assert_eq!(parse("\\o").unwrap(), BackslashCommand::Output(None));
        assert_eq!(parse("\\o out.csv").unwrap(), BackslashCommand::Output(Some("out.csv".into())));
        assert_eq!(parse("\\format JSON").unwrap(), BackslashCommand::Format(OutputFormat::Json));
        assert_eq!(parse("\\timing off").unwrap(), BackslashCommand::Timing(Some(false)));
        assert_eq!(parse("\\timing").unwrap(), BackslashCommand::Timing(None));
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        assert!(parse("\\nope").unwrap_err().to_string().contains("unknown command \\nope"));
        assert!(parse("\\profile").unwrap_err().to_string().contains("\\profile needs a USER_ID"));
        assert_eq!(parse("\\portrait 'vip'").unwrap(), BackslashCommand::Portrait("vip".into()));
        assert_eq!(parse("\\model").unwrap(), BackslashCommand::Model(None));
        assert_eq!(parse("\\model buyers").unwrap(), BackslashCommand::Model(Some("buyers".into())));
        assert_eq!(
            parse("\\overlap A 'B' vip").unwrap(),
            BackslashCommand::Overlap(vec!["A".into(), "B".into(), "vip".into()])
        );
        assert!(parse("\\overlap").unwrap_err().to_string().contains("\\overlap needs tags or saved audiences"));
        assert!(parse("\\d orders").unwrap_err().to_string().contains("unknown table 'orders'"));
        assert!(parse("\\format parquet").unwrap_err().to_string().contains("COPY"));
        assert!(parse("\\q now").unwrap_err().to_string().contains("takes no argument"));
    }

    #[test]
    fn every_command_in_the_table_parses_and_is_in_the_help() {
        let help = help();
        for c in COMMANDS {
            assert!(help.contains(c.name), "{} is missing from \\?", c.name);
            let example = match c.arg {
                ArgKind::None | ArgKind::OnOff => c.name.to_string(),
                ArgKind::Tag => format!("{} vip", c.name),
                ArgKind::Table => format!("{} users", c.name),
                ArgKind::Format => format!("{} csv", c.name),
                ArgKind::Path => format!("{} x.sql", c.name),
                ArgKind::Sql | ArgKind::Text => format!("{} x", c.name),
            };
            assert!(parse(&example).is_ok(), "{example} does not parse");
        }
    }

    #[test]
    fn tag_patterns_match_parts_or_wildcards() {
        assert!(name_matches("churn_risk", "churn"));
        assert!(name_matches("churn_risk", "RISK"));
        assert!(!name_matches("churn_risk", "vip"));
        assert!(name_matches("interest_0042", "interest_00?2"));
        assert!(name_matches("interest_0042", "*42"));
        assert!(!name_matches("interest_0042", "*41"));
        assert!(!name_matches("vip", "v*x"));
    }

    #[test]
    fn only_enclosing_parentheses_are_stripped() {
        assert_eq!(strip_outer_parens("(users.tier = 'gold')"), "users.tier = 'gold'");
        assert_eq!(strip_outer_parens("(a = 1) OR (b = 2)"), "(a = 1) OR (b = 2)");
        assert_eq!(strip_outer_parens("a = 1"), "a = 1");
    }

    #[test]
    fn explain_shows_dates_for_day_numbers() {
        let spec = r#"{"active_days":{"first_day":20728,"last_day":20757,"edges":[{"from":1790856000000000,"to":1790899200000000}]}}"#;
        assert_eq!(
            readable_days(spec),
            r#"{"active_days":{"first_day":"2026-10-02","last_day":"2026-10-31","edges":[{"from":"2026-10-01T12:00:00","to":"2026-10-02T00:00:00"}]}}"#
        );
        assert_eq!(readable_days("no windows here"), "no windows here");
    }

    #[test]
    fn catalog_tables_can_be_described() {
        assert_eq!(parse("\\d audiences").unwrap(), BackslashCommand::DescribeCatalog("audiences".into()));
        assert_eq!(parse("\\d TAGS").unwrap(), BackslashCommand::DescribeCatalog("tags".into()));
        assert_eq!(parse("\\audiences win*").unwrap(), BackslashCommand::Audiences(Some("win*".into())));
    }

    #[test]
    fn literals_escape_quotes() {
        assert_eq!(string_literal("o'brien"), "'o''brien'");
    }
}
