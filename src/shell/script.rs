//! Splitting a script (standard input, or a file run with `\i`) into backslash commands and SQL
//! chunks, each with the line it starts on, so that errors point at the script's own lines.
//! A line starting with `\` between statements is a command; SQL runs up to a `;` that ends a
//! line (outside quotes and comments); a last statement without `;` still runs.

use super::lexer::{ends_statement, is_blank};

/// One piece of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A backslash command on line `line` (1-based).
    Command { line: u64, text: String },
    /// One or more statements starting on line `first_line` (1-based); `text` holds whole lines.
    Sql { first_line: u64, text: String },
}

/// The pieces of `script`, in order; blank lines and comments between them are dropped.
pub fn split(script: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut buffer = String::new();
    let mut first_line = 1;
    for (i, line) in script.lines().enumerate() {
        let number = i as u64 + 1;
        if is_blank(&buffer) {
            // Blank lines and comments before a statement are dropped: its chunk starts here.
            buffer.clear();
            if line.trim_start().starts_with('\\') {
                pieces.push(Piece::Command { line: number, text: line.trim().to_string() });
                continue;
            }
            first_line = number;
        } else {
            buffer.push('\n');
        }
        buffer.push_str(line);
        if ends_statement(&buffer) {
            pieces.push(Piece::Sql { first_line, text: std::mem::take(&mut buffer) });
        }
    }
    if !is_blank(&buffer) {
        pieces.push(Piece::Sql { first_line, text: buffer });
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(first_line: u64, text: &str) -> Piece {
        Piece::Sql { first_line, text: text.into() }
    }

    #[test]
    fn commands_and_statements_alternate_with_their_lines() {
        let script = "-- a report\n\\d users\n\nSELECT 1;\nSELECT\n  2;\n\\tags vip\nSELECT 3";
        assert_eq!(
            split(script),
            vec![
                Piece::Command { line: 2, text: "\\d users".into() },
                sql(4, "SELECT 1;"),
                sql(5, "SELECT\n  2;"),
                Piece::Command { line: 7, text: "\\tags vip".into() },
                sql(8, "SELECT 3"),
            ]
        );
    }

    #[test]
    fn a_semicolon_in_a_string_or_comment_does_not_end_a_statement() {
        let script = "SELECT 'a;\nb' AS x; -- done;\n/* ; */ SELECT 2\n;";
        assert_eq!(split(script), vec![sql(1, "SELECT 'a;\nb' AS x; -- done;"), sql(3, "/* ; */ SELECT 2\n;")]);
    }

    #[test]
    fn a_backslash_inside_a_statement_is_sql() {
        assert_eq!(split("SELECT\n\\d\n;"), vec![sql(1, "SELECT\n\\d\n;")]);
        assert_eq!(split(""), vec![]);
        assert_eq!(split("\n  \n-- only comments\n"), vec![]);
    }
}
