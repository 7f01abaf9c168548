//! A forgiving SQL scanner for the shell: splits what the user typed into words, quoted strings,
//! numbers, comments and punctuation, with byte offsets, and never fails on unfinished input (an
//! open quote or comment runs to the end). Highlighting, completion and the end-of-statement test
//! read it; the real parser still decides what is valid.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A keyword or identifier: letters, digits, `_` and `$`, not starting with a digit.
    Word,
    /// `"..."`; `closed` is false when the input ends inside it.
    QuotedIdent { closed: bool },
    /// `'...'` (with `''` for a quote inside); `closed` is false when the input ends inside it.
    Str { closed: bool },
    /// `123`, `1.5`, `2e9`.
    Number,
    /// `-- ...` to the end of the line, or `/* ... */` (`closed` false when unfinished).
    Comment { closed: bool },
    /// Spaces, tabs and newlines.
    Space,
    /// Any other character, or one of the two-character operators `<>`, `!=`, `<=`, `>=`, `::`,
    /// `||`.
    Punct,
}

/// One token: its kind and where it is in the input (byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn text<'a>(&self, input: &'a str) -> &'a str {
        &input[self.start..self.end]
    }

    /// Spaces and comments: what the end-of-statement test skips.
    pub fn is_trivia(&self) -> bool {
        matches!(self.kind, Kind::Space | Kind::Comment { .. })
    }

    /// A quote or comment the input ends inside.
    pub fn is_open(&self) -> bool {
        matches!(
            self.kind,
            Kind::Str { closed: false } | Kind::QuotedIdent { closed: false } | Kind::Comment { closed: false }
        )
    }
}

/// Splits `input` into tokens that cover it completely, in order.
pub fn tokens(input: &str) -> Vec<Token> {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let b = bytes[i];
        let kind = if b.is_ascii_whitespace() {
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            Kind::Space
        } else if b == b'-' && bytes.get(i + 1) == Some(&b'-') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            Kind::Comment { closed: true }
        } else if b == b'/' && bytes.get(i + 1) == Some(&b'*') {
            i += 2;
            let closed = loop {
                if i + 1 >= bytes.len() {
                    i = bytes.len();
                    break false;
                }
                if bytes[i] == b'*' && bytes[i + 1] == b'/' {
                    i += 2;
                    break true;
                }
                i += 1;
            };
            Kind::Comment { closed }
        } else if b == b'\'' || b == b'"' {
            i += 1;
            let closed = loop {
                match bytes.get(i) {
                    None => break false,
                    // A doubled quote is the quote character itself.
                    Some(&c) if c == b && bytes.get(i + 1) == Some(&b) => i += 2,
                    Some(&c) if c == b => {
                        i += 1;
                        break true;
                    }
                    Some(_) => i += 1,
                }
            };
            if b == b'\'' { Kind::Str { closed } } else { Kind::QuotedIdent { closed } }
        } else if b.is_ascii_digit() || (b == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.' || bytes[i] == b'_') {
                i += 1;
            }
            Kind::Number
        } else if is_word_byte(b) {
            while i < bytes.len() && (is_word_byte(bytes[i]) || bytes[i].is_ascii_digit()) {
                i += 1;
            }
            Kind::Word
        } else {
            let two = input.get(i..i + 2);
            if matches!(two, Some("<>" | "!=" | "<=" | ">=" | "::" | "||")) {
                i += 2;
            } else {
                // One character, however many bytes it takes.
                i += input[i..].chars().next().map_or(1, char::len_utf8);
            }
            Kind::Punct
        };
        out.push(Token { kind, start, end: i });
    }
    out
}

/// Letters (any script), `_` and `$` start a word; digits may follow.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$' || b >= 0x80
}

/// Whether the input ends a statement: its last token other than spaces and comments is `;`,
/// and no quote or comment is left open.
pub fn ends_statement(input: &str) -> bool {
    let tokens = tokens(input);
    !tokens.iter().any(Token::is_open)
        && tokens.iter().rev().find(|t| !t.is_trivia()).is_some_and(|t| t.text(input) == ";")
}

/// Whether the input holds nothing but spaces and finished comments.
pub fn is_blank(input: &str) -> bool {
    tokens(input).iter().all(|t| t.is_trivia() && !t.is_open())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(input: &str) -> Vec<(Kind, &str)> {
        tokens(input).iter().map(|t| (t.kind, t.text(input))).collect()
    }

    #[test]
    fn tokens_cover_the_input() {
        assert_eq!(
            kinds("SELECT 'it''s', x<>1 -- c"),
            vec![
                (Kind::Word, "SELECT"),
                (Kind::Space, " "),
                (Kind::Str { closed: true }, "'it''s'"),
                (Kind::Punct, ","),
                (Kind::Space, " "),
                (Kind::Word, "x"),
                (Kind::Punct, "<>"),
                (Kind::Number, "1"),
                (Kind::Space, " "),
                (Kind::Comment { closed: true }, "-- c"),
            ]
        );
    }

    #[test]
    fn unfinished_quotes_and_comments_run_to_the_end() {
        assert_eq!(
            kinds("a = 'go"),
            vec![
                (Kind::Word, "a"),
                (Kind::Space, " "),
                (Kind::Punct, "="),
                (Kind::Space, " "),
                (Kind::Str { closed: false }, "'go"),
            ]
        );
        assert_eq!(kinds("/* x"), vec![(Kind::Comment { closed: false }, "/* x")]);
        assert_eq!(kinds("\"ab"), vec![(Kind::QuotedIdent { closed: false }, "\"ab")]);
    }

    #[test]
    fn non_ascii_words_and_punctuation_stay_whole() {
        assert_eq!(kinds("名字·"), vec![(Kind::Word, "名字·")]);
        assert_eq!(kinds("a→b"), vec![(Kind::Word, "a→b")]);
        assert_eq!(kinds("1+€"), vec![(Kind::Number, "1"), (Kind::Punct, "+"), (Kind::Word, "€")]);
    }

    #[test]
    fn a_statement_ends_at_a_semicolon_outside_quotes_and_comments() {
        assert!(ends_statement("SELECT 1;"));
        assert!(ends_statement("SELECT 1;  -- done\n"));
        assert!(ends_statement("SELECT 1; /* done */"));
        assert!(!ends_statement("SELECT 1"));
        assert!(!ends_statement("SELECT ';"));
        assert!(!ends_statement("SELECT 1; -- x\nSELECT 2"));
        assert!(!ends_statement("SELECT 1; /* not closed ;"));
        assert!(!ends_statement(""));
        assert!(is_blank("  -- only a comment\n /* and another */ "));
        assert!(!is_blank("-- c\nSELECT"));
        assert!(!is_blank("/* an open comment"), "it goes on on the next line");
    }
}
