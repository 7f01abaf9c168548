//! How a path or value is written in a command Persona suggests, so that the user can paste it
//! into a POSIX shell as it is printed: left bare when it is made of characters no shell treats
//! specially (letters of any script, digits, `/._-+:,=@%`), otherwise in single quotes.

use std::borrow::Cow;
use std::path::Path;

/// `text` as one shell word.
pub fn shell_word(text: &str) -> Cow<'_, str> {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ':' | ',' | '=' | '@' | '%'));
    if plain { Cow::Borrowed(text) } else { Cow::Owned(format!("'{}'", text.replace('\'', "'\\''"))) }
}

/// `path` as one shell word (lossy for names that are not UTF-8).
pub fn shell_path(path: &Path) -> String {
    shell_word(&path.to_string_lossy()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_a_shell_would_split_or_expand_them() {
        assert_eq!(shell_word("../crm/persona-demo"), "../crm/persona-demo");
        assert_eq!(shell_word("/tmp/客户/store"), "/tmp/客户/store");
        assert_eq!(shell_word("/tmp/new user/试 demo"), "'/tmp/new user/试 demo'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word("$HOME"), "'$HOME'");
        assert_eq!(shell_word("a*b"), "'a*b'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_path(Path::new("my store")), "'my store'");
    }
}
