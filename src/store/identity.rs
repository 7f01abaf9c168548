//! The identity section a manifest carries (docs/identity.md): the store's identity rules (which
//! identifier types exist, how each links profiles, which values never link, the hub limit) and
//! the files of the version's resolution — every identifier link with its outcome, and the dense
//! `person_id` of every user row. The resolution itself is computed by the importer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The built-in identifier types, with their normalisation (docs/identity.md).
pub const PHONE: &str = "phone";
pub const EMAIL: &str = "email";
pub const WX_OPENID: &str = "wx_openid";
pub const WX_UNIONID: &str = "wx_unionid";
pub const DEVICE_ID: &str = "device_id";
pub const BUILT_IN_TYPES: [&str; 5] = [PHONE, EMAIL, WX_OPENID, WX_UNIONID, DEVICE_ID];

/// How the values of a custom identifier type are normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalise {
    /// Leading and trailing white space removed.
    #[default]
    Trim,
    /// Trimmed and lower-cased.
    Lowercase,
}

/// How one identifier type links profiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeRule {
    /// Which identifier wins a conflict: when linking two profiles would give their person more
    /// identifiers of a type than its `max_per_person`, the link goes ahead only if its own type
    /// has a higher priority, and then the excess identifiers of the lower type are dropped.
    pub priority: u32,
    /// The most distinct values of this type one person may hold.
    pub max_per_person: u32,
    /// Whether a value belongs to one person only, so that two profiles sharing it are the same
    /// person. A value of a type that is not unique (a shared family device, say) is kept as a
    /// contact point but never links profiles.
    pub unique: bool,
    /// Normalisation of a custom type's values (the built-in types have their own).
    #[serde(default)]
    pub normalise: Normalise,
}

/// The store's identity rules. Absent from a manifest means [`IdentityRules::default`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRules {
    /// Per identifier type (built-in and custom), how it links.
    pub types: BTreeMap<String, TypeRule>,
    /// Normalised values that never link anyone (compared case-insensitively).
    pub deny_values: Vec<String>,
    /// Regular expressions over the normalised value: a match never links anyone.
    pub deny_patterns: Vec<String>,
    /// A value seen on more than this many profiles is quarantined: reported, and linking nobody.
    pub hub_limit: u32,
    /// The country code a phone number without one gets when it has `national_digits` digits
    /// (mainland China: `86` and 11 digits starting with 1).
    pub default_country_code: String,
    pub national_digits: u32,
    /// Per users column, which profile's value the `persons` view keeps when they differ
    /// (absent: [`Survivorship::MostRecent`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub survivorship: BTreeMap<String, Survivorship>,
}

/// Which value of a column a person keeps from its profiles (NULLs never survive a value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Survivorship {
    /// The value of the most recently loaded profile that has one.
    #[default]
    MostRecent,
    /// The value of the first loaded profile that has one.
    Oldest,
    /// The largest value.
    Max,
    /// The smallest value.
    Min,
}

impl Default for IdentityRules {
    fn default() -> IdentityRules {
        let rule = |priority, max_per_person, unique| TypeRule {
            priority,
            max_per_person,
            unique,
            normalise: Normalise::Trim,
        };
        let types = BTreeMap::from([
            (WX_UNIONID.to_string(), rule(100, 1, true)),
            (PHONE.to_string(), rule(90, 2, true)),
            (EMAIL.to_string(), rule(80, 3, true)),
            (WX_OPENID.to_string(), rule(70, 10, true)),
            (DEVICE_ID.to_string(), rule(10, 5, false)),
        ]);
        IdentityRules {
            types,
            deny_values: [
                "null",
                "none",
                "nil",
                "n/a",
                "na",
                "unknown",
                "anonymous",
                "test",
                "test@test.com",
                "+8613800138000",
                "+8613888888888",
            ]
            .map(String::from)
            .to_vec(),
            deny_patterns: [
                r"^0+$",
                r"^\+?0+$",
                r"^\+86(0{11}|1{11}|2{11}|3{11}|4{11}|5{11}|6{11}|7{11}|8{11}|9{11})$",
                r"^\+8612345678[0-9]$",
                r"^(test|noreply|no-reply)@",
                r"@test\.com$",
                r"^(0|f|F)+(-(0|f|F)+)*$",
            ]
            .map(String::from)
            .to_vec(),
            hub_limit: 20,
            default_country_code: "86".into(),
            national_digits: 11,
            survivorship: BTreeMap::new(),
        }
    }
}

impl IdentityRules {
    /// The rule of an identifier type, if the store knows the type.
    pub fn rule(&self, id_type: &str) -> Option<&TypeRule> {
        self.types.get(id_type)
    }

    /// Refuses rules that cannot work: a deny pattern that is no regular expression, a type with
    /// no room for any value, a hub limit below 2, a built-in type missing, a bad country code.
    pub fn validate(&self) -> Result<()> {
        for t in BUILT_IN_TYPES {
            if !self.types.contains_key(t) {
                return Err(Error::Usage(format!(
                    "the identity rules lack the built-in type '{t}'; give it a rule (its priority, max_per_person and unique)"
                )));
            }
        }
        for (name, rule) in &self.types {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
                return Err(Error::Usage(format!(
                    "identifier type '{name}' must be lower-case letters, digits and '_'"
                )));
            }
            if rule.max_per_person == 0 {
                return Err(Error::Usage(format!("identifier type '{name}' has max_per_person 0; give it at least 1")));
            }
        }
        for p in &self.deny_patterns {
            regex::Regex::new(p)
                .map_err(|e| Error::Usage(format!("deny pattern '{p}' is not a regular expression: {e}")))?;
        }
        if self.hub_limit < 2 {
            return Err(Error::Usage(format!("hub_limit {} must be at least 2", self.hub_limit)));
        }
        if self.default_country_code.is_empty() || !self.default_country_code.chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::Usage(format!(
                "default_country_code '{}' must be digits, such as 86",
                self.default_country_code
            )));
        }
        Ok(())
    }
}

/// The identity section of a manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdentitySection {
    /// The store's rules, when they differ from the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<IdentityRules>,
    /// The resolution of this version (absent until identifiers were first loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// Splits made so far (`persona identity split`), kept so that later imports do not merge
    /// what they separated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<Split>,
}

/// One split: two users that must never be one person, or a value that must link nobody.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Split {
    /// A cannot-link pair of user_ids.
    Pair { a: String, b: String, at: String },
    /// A normalised identifier value that links nobody any more.
    Value { id_type: String, id_value: String, at: String },
}

impl IdentitySection {
    pub fn is_empty(&self) -> bool {
        self.rules.is_none() && self.resolution.is_none() && self.splits.is_empty()
    }

    /// The rules in force.
    pub fn rules(&self) -> IdentityRules {
        self.rules.clone().unwrap_or_default()
    }
}

/// The derived files of one version's resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// Parquet: identifier links in processing order with their outcomes
    /// (`user_id, id_type, id_value, source, ts, seq, status, reason`): every link of the
    /// resolution when `more_links` is empty, else the first segment.
    pub links: String,
    /// Later segments of links, one per in-order increment (each after the one before), so that
    /// an import writes only its own links: the links of the version are `links` and these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_links: Vec<String>,
    /// Parquet (`seq, status, reason`): links whose outcome a split changed after their links
    /// file was written (`ingest::identity::split`); a link listed here has this status and
    /// reason instead of the stored ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_overrides: Option<String>,
    /// The union-find state of format version 5 (a whole state per version). Read by no build
    /// since format 6: a store that has it resolves from the start at its next import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The base of the union-find state (`ingest::identity`), from which an in-order increment
    /// resumes without reading the links (absent in stores written before format 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_base: Option<String>,
    /// Deltas of the state written by in-order increments after `state_base`, oldest first: the
    /// state of the version is the base with each applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_deltas: Vec<String>,
    /// Parquet: one row per user row (`user_id, person_id`), in row-id order.
    pub persons: String,
    /// Link rows (accepted and rejected), users, and distinct persons.
    pub link_rows: u64,
    /// Rows of forgotten users still in the links files, hidden by `forgotten` overrides
    /// until a purge resolves again and writes the links without them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub forgotten_links: u64,
    pub users: u64,
    pub person_count: u64,
    /// Links that joined or attached an identifier / that were rejected, per reason.
    pub linked: u64,
    pub rejected: BTreeMap<String, u64>,
}

impl Resolution {
    pub fn files(&self) -> Vec<&String> {
        let mut files = self.link_files();
        files.extend(&self.link_overrides);
        files.push(&self.persons);
        files.extend(&self.state);
        files.extend(&self.state_base);
        files.extend(&self.state_deltas);
        files
    }

    /// The links files in processing order.
    pub fn link_files(&self) -> Vec<&String> {
        std::iter::once(&self.links).chain(&self.more_links).collect()
    }
}

/// The header of an identity state file (`ingest::identity` writes and reads the payload): eight
/// bytes of magic, the CRC-32 of the payload (u32 LE) and its length (u64 LE).
pub const STATE_HEADER_LEN: usize = 20;

/// The magic of a state file's base and of its deltas.
pub const STATE_BASE_MAGIC: &[u8; 8] = b"PRSNIDB2";
pub const STATE_DELTA_MAGIC: &[u8; 8] = b"PRSNIDD2";

/// A state file's header as read: the payload's CRC-32 and length, once the magic is `magic` and
/// the length is what the file's `size` leaves after the header.
pub fn state_header(
    path: &std::path::Path,
    header: &[u8; STATE_HEADER_LEN],
    magic: &[u8; 8],
    size: u64,
) -> Result<(u32, u64)> {
    if &header[..8] != magic {
        return Err(Error::corrupt(path, "not an identity state file of this kind"));
    }
    let crc = u32::from_le_bytes(header[8..12].try_into().expect("four bytes"));
    let len = u64::from_le_bytes(header[12..20].try_into().expect("eight bytes"));
    if Some(len) != size.checked_sub(STATE_HEADER_LEN as u64) {
        return Err(Error::corrupt(path, "the file is cut short"));
    }
    Ok((crc, len))
}

/// Verifies a whole state file: its header and the checksum of its payload.
pub fn verify_state_file(path: &std::path::Path, magic: &[u8; 8]) -> Result<()> {
    use std::io::Read;
    let io = |e: std::io::Error| Error::Io { op: "read", path: path.to_path_buf(), source: e };
    let mut file =
        std::fs::File::open(path).map_err(|e| Error::Io { op: "open", path: path.to_path_buf(), source: e })?;
    let size = file.metadata().map_err(io)?.len();
    let mut header = [0u8; STATE_HEADER_LEN];
    file.read_exact(&mut header).map_err(|_| Error::corrupt(path, "not an identity state file of this kind"))?;
    let (crc, _) = state_header(path, &header, magic, size)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    if hasher.finalize() != crc {
        return Err(Error::corrupt(path, "its checksum does not match"));
    }
    Ok(())
}

/// A fresh relative path for a resolution file of `version` (`what`: `links` or `persons`,
/// Parquet; `state` or `state-delta`, binary).
pub fn new_resolution_file(version: u64, what: &str) -> String {
    let ext = if what.starts_with("state") { "bin" } else { "parquet" };
    format!("catalog/v{version:08}-identity-{what}-{:016x}.{ext}", rand::random::<u64>())
}

/// Whether a count is zero (left out of the manifest then).
fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules_are_valid_and_round_trip() {
        let rules = IdentityRules::default();
        rules.validate().unwrap();
        let json = serde_json::to_string(&rules).unwrap();
        assert_eq!(serde_json::from_str::<IdentityRules>(&json).unwrap(), rules);
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let mut rules = IdentityRules::default();
        rules.deny_patterns.push("(".into());
        assert!(rules.validate().unwrap_err().to_string().contains("deny pattern '('"));
        let mut rules = IdentityRules::default();
        rules.types.remove(PHONE);
        assert!(rules.validate().unwrap_err().to_string().contains("'phone'"));
        let rules = IdentityRules { hub_limit: 1, ..IdentityRules::default() };
        assert!(rules.validate().unwrap_err().to_string().contains("hub_limit"));
    }
}
