//! SQL text the crate writes for DataFusion to plan (analytics views, models, reports, shell
//! commands): values as string literals and names as quoted identifiers, whatever they hold
//! (quotes, spaces, Chinese).

/// `s` as a SQL string literal (`it's` → `'it''s'`).
pub fn string_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `s` as a quoted SQL identifier (`a "b"` → `"a ""b"""`), its case kept.
pub fn quoted_identifier(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_inside_are_doubled() {
        assert_eq!(string_literal("it's"), "'it''s'");
        assert_eq!(string_literal("高价值"), "'高价值'");
        assert_eq!(quoted_identifier("tag \"vip\""), "\"tag \"\"vip\"\"\"");
        assert_eq!(quoted_identifier("Points"), "\"Points\"");
    }
}
