//! Normalisation of identifiers (the `identities` table, `users.phone` and `users.email`) under
//! the store's identity rules: phones to E.164, e-mails trimmed and lower-cased, WeChat openids
//! scoped by their app id, custom types as their rule says; and the deny-lists (docs/identity.md).

use rustc_hash::FxHashSet;

use crate::error::{Error, Result};
use crate::store::identity::{DEVICE_ID, EMAIL, IdentityRules, Normalise, PHONE, WX_OPENID, WX_UNIONID};

/// The rules, compiled for checking many values.
#[derive(Debug, Clone)]
pub struct Normaliser {
    rules: IdentityRules,
    deny_values: FxHashSet<String>,
    /// The most characters of a deny-listed value (lower-casing never makes fewer characters, so
    /// a longer value is on no list).
    deny_chars: usize,
    /// The deny patterns, matched in one pass each: those anchored at the start (`^…`: tried at
    /// the first character only) and the others (searched for).
    deny_anchored: regex::RegexSet,
    deny_searched: regex::RegexSet,
}

impl Normaliser {
    pub fn new(rules: &IdentityRules) -> Result<Normaliser> {
        rules.validate()?;
        let (anchored, searched): (Vec<&String>, Vec<&String>) =
            rules.deny_patterns.iter().partition(|p| p.starts_with('^'));
        let set = |patterns: Vec<&String>| {
            regex::RegexSet::new(&patterns).map_err(|e| Error::Usage(format!("the deny patterns {patterns:?}: {e}")))
        };
        let deny_values: FxHashSet<String> = rules.deny_values.iter().map(|v| v.trim().to_lowercase()).collect();
        Ok(Normaliser {
            rules: rules.clone(),
            deny_chars: deny_values.iter().map(|v| v.chars().count()).max().unwrap_or(0),
            deny_values,
            deny_anchored: set(anchored)?,
            deny_searched: set(searched)?,
        })
    }

    pub fn rules(&self) -> &IdentityRules {
        &self.rules
    }

    /// The identifier type as the store names it (trimmed, lower-case), if the rules know it.
    pub fn id_type(&self, raw: &str) -> std::result::Result<String, String> {
        let t = raw.trim().to_ascii_lowercase();
        if self.rules.types.contains_key(&t) {
            Ok(t)
        } else {
            let known: Vec<&str> = self.rules.types.keys().map(String::as_str).collect();
            Err(format!(
                "unknown identifier type '{raw}' (the store knows {}; declare custom types in the identity rules)",
                known.join(", ")
            ))
        }
    }

    /// The normalised value of an identifier of type `id_type` (as returned by
    /// [`Normaliser::id_type`]), or why it cannot be one. `source` scopes a `wx_openid`.
    /// A value on a deny-list as it comes (trimmed) is kept as it is, never refused: junk such as
    /// `00000000000` or `null` is common in real exports and links nobody anyway.
    pub fn value(&self, id_type: &str, raw: &str, source: Option<&str>) -> std::result::Result<String, String> {
        let trimmed = raw.trim();
        if !trimmed.is_empty() && self.denied(trimmed) {
            return Ok(trimmed.to_string());
        }
        let value = match id_type {
            PHONE => phone(raw, &self.rules.default_country_code, self.rules.national_digits)?,
            EMAIL => email(raw)?,
            WX_OPENID => {
                let app = source
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| "a wx_openid needs the app id that issued it in the source column".to_string())?;
                let openid = raw.trim();
                let openid = openid.strip_prefix(&format!("{app}:")).unwrap_or(openid);
                format!("{app}:{openid}")
            }
            WX_UNIONID => raw.trim().to_string(),
            DEVICE_ID => raw.trim().to_ascii_lowercase(),
            custom => match self.rules.rule(custom).map(|r| r.normalise) {
                Some(Normalise::Lowercase) => raw.trim().to_lowercase(),
                _ => raw.trim().to_string(),
            },
        };
        if value.is_empty() || value.ends_with(':') {
            return Err(format!("an empty {id_type}"));
        }
        Ok(value)
    }

    /// Whether a normalised value is on a deny-list (it is kept, but links nobody).
    pub fn denied(&self, value: &str) -> bool {
        let bare = value.rsplit(':').next().unwrap_or(value);
        let scoped = bare.len() != value.len();
        self.deny_listed(value)
            || (scoped && self.deny_listed(bare))
            || self.deny_pattern(value)
            || (scoped && self.deny_pattern(bare))
    }

    fn deny_pattern(&self, value: &str) -> bool {
        self.deny_anchored.is_match(value) || self.deny_searched.is_match(value)
    }

    /// Whether `value`, lower-cased, is on the deny-list of values.
    fn deny_listed(&self, value: &str) -> bool {
        if value.len() > self.deny_chars * 4 || value.chars().nth(self.deny_chars).is_some() {
            return false;
        }
        if value.bytes().any(|b| !b.is_ascii() || b.is_ascii_uppercase()) {
            self.deny_values.contains(&value.to_lowercase())
        } else {
            self.deny_values.contains(value)
        }
    }
}

/// A phone number in E.164: `+` and 8 to 15 digits. Spaces, `-`, `.`, `(` and `)` are removed; a
/// leading `00` is an international prefix; `national_digits` digits without a country code get
/// `country_code` (11-digit mainland numbers get +86 by default), as do those that start with the
/// country code itself (`8613912345678`).
pub fn phone(raw: &str, country_code: &str, national_digits: u32) -> std::result::Result<String, String> {
    let compact: String = raw.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{3000}')).collect();
    let not_phone = || format!("'{raw}' is not a phone number (digits, optionally after + and a country code)");
    let (international, digits) = if let Some(rest) = compact.strip_prefix('+') {
        (true, rest)
    } else if let Some(rest) = compact.strip_prefix("00") {
        (true, rest)
    } else {
        (false, compact.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(not_phone());
    }
    let e164 = if international {
        format!("+{digits}")
    } else if digits.len() == national_digits as usize {
        format!("+{country_code}{digits}")
    } else if digits.starts_with(country_code) && digits.len() == country_code.len() + national_digits as usize {
        format!("+{digits}")
    } else {
        return Err(format!(
            "'{raw}' is not a phone number: {} digits without a country code (a national number has {national_digits}; write others as +<country code><number>)",
            digits.len()
        ));
    };
    if !(9..=16).contains(&e164.len()) || e164.starts_with("+0") {
        return Err(not_phone());
    }
    Ok(e164)
}

/// An e-mail address trimmed and lower-cased; it must be `local@domain.tld` without spaces.
pub fn email(raw: &str) -> std::result::Result<String, String> {
    let e = raw.trim().to_lowercase();
    let ok = match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !e.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if ok { Ok(e) } else { Err(format!("'{raw}' is not an e-mail address (local@domain)")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n() -> Normaliser {
        Normaliser::new(&IdentityRules::default()).unwrap()
    }

    #[test]
    fn phones_become_e164() {
        for (raw, want) in [
            ("13912345678", "+8613912345678"),
            ("139 1234 5678", "+8613912345678"),
            ("+86 139-1234-5678", "+8613912345678"),
            ("8613912345678", "+8613912345678"),
            ("0044 20 7946 0958", "+442079460958"),
            ("+1 (415) 555-0100", "+14155550100"),
        ] {
            assert_eq!(phone(raw, "86", 11).as_deref(), Ok(want), "{raw}");
        }
        for raw in ["abc", "12345", "+", "139123456789", "+0123456789", "139-1234-567x"] {
            assert!(phone(raw, "86", 11).is_err(), "{raw}");
        }
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(email("  Li.Na@Example.CN ").as_deref(), Ok("li.na@example.cn"));
        for raw in ["li.na", "@x.cn", "a@b", "a@@b.cn", "a b@c.cn", "a@.cn"] {
            assert!(email(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn openids_are_scoped_by_their_app_and_need_it() {
        let n = n();
        assert_eq!(n.value(WX_OPENID, " oAbc ", Some("wxapp1")).as_deref(), Ok("wxapp1:oAbc"));
        assert_eq!(n.value(WX_OPENID, "wxapp1:oAbc", Some("wxapp1")).as_deref(), Ok("wxapp1:oAbc"));
        assert!(n.value(WX_OPENID, "oAbc", None).unwrap_err().contains("app id"));
        assert!(n.value(WX_OPENID, "oAbc", Some(" ")).is_err());
    }

    #[test]
    fn unknown_types_are_refused_and_custom_ones_declared() {
        let err = n().id_type("fax").unwrap_err();
        assert!(err.contains("unknown identifier type 'fax'") && err.contains("wx_unionid"), "{err}");
        let mut rules = IdentityRules::default();
        rules.types.insert(
            "member_card".into(),
            crate::store::identity::TypeRule {
                priority: 95,
                max_per_person: 1,
                unique: true,
                normalise: Normalise::Lowercase,
            },
        );
        let n = Normaliser::new(&rules).unwrap();
        assert_eq!(n.id_type(" Member_Card").as_deref(), Ok("member_card"));
        assert_eq!(n.value("member_card", " AB12 ", None).as_deref(), Ok("ab12"));
    }

    #[test]
    fn junk_values_are_denied() {
        let n = n();
        assert_eq!(n.value(PHONE, " 00000000000 ", None).as_deref(), Ok("00000000000"));
        assert_eq!(n.value(WX_OPENID, "null", None).as_deref(), Ok("null"));
        for v in
            ["null", "NULL", "anonymous", "000000", "+8611111111111", "noreply@qq.com", "app:null", "+8613800138000"]
        {
            assert!(n.denied(v), "{v}");
        }
        for v in ["+8613912345678", "li.na@qq.com", "wxapp:oAbc12", "a1b2c3d4"] {
            assert!(!n.denied(v), "{v}");
        }
    }

    #[test]
    fn the_deny_check_equals_the_plain_reading_of_the_rules() {
        let mut rules = IdentityRules::default();
        rules.deny_values.extend(["匿名".to_string(), "Ärger".to_string(), "k".to_string()]);
        rules.deny_patterns.extend(["^zz|qq$".to_string(), "(?i)^shop-".to_string()]);
        let n = Normaliser::new(&rules).unwrap();
        let plain = |v: &str| {
            let bare = v.rsplit(':').next().unwrap_or(v);
            let listed: std::collections::HashSet<String> =
                rules.deny_values.iter().map(|d| d.trim().to_lowercase()).collect();
            let patterns: Vec<regex::Regex> =
                rules.deny_patterns.iter().map(|p| regex::Regex::new(p).unwrap()).collect();
            listed.contains(&v.to_lowercase())
                || listed.contains(&bare.to_lowercase())
                || patterns.iter().any(|p| p.is_match(v) || p.is_match(bare))
        };
        let parts = [
            "",
            "null",
            "NULL",
            "匿名",
            "ärger",
            "ÄRGER",
            "\u{212A}",
            "K",
            "x",
            "app",
            ":",
            "0000",
            "+86",
            "13800138000",
            "@test.com",
            "noreply@",
            "unknownn",
            "zz",
            "qq",
            "SHOP-",
        ];
        let mut checked = 0;
        for a in parts {
            for b in parts {
                for sep in ["", ":"] {
                    let v = format!("{a}{sep}{b}");
                    assert_eq!(n.denied(&v), plain(&v), "{v:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 500 && n.denied("\u{212A}") && n.denied("wx:匿名") && !n.denied("匿名x"));
    }
}
