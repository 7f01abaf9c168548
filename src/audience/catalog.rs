//! What the audience statements add to the store's catalog section ([`crate::store::catalog`]):
//! the rule for tag and audience names.

use crate::error::{Error, Result};

/// Checks a tag or audience name: letters, digits and `_`, not starting with a digit, at most 63
/// characters (so that it can be a table name without quoting).
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "'{name}' is not a valid {kind} name: use letters, digits and _ (not first), at most 63 characters"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_identifiers() {
        assert!(check_name("audience", "lapsed_gold_2026").is_ok());
        assert!(check_name("tag", "夜猫子").is_ok());
        for bad in ["", "1st", "a-b", "a b", "x'y"] {
            assert!(check_name("audience", bad).is_err(), "{bad}");
        }
    }
}
