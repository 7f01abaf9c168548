//! The catalog section a manifest carries: rule-made tags, saved audiences with their numbered
//! versions, and trained models. Each computed set of users is a small bitmap file of its own (`catalog/…`), so that
//! changing an audience or a rule tag never rewrites the big index file; this module also reads and
//! writes those files. This is the catalog's data only; the statements that fill it, and the
//! evaluation and dependency order of its entries, belong to the audience layer above the store.
//!
//! ```text
//! bitmap file:  "PRSNSET1"  crc32 (u32 LE) of the bitmap bytes  length (u64 LE)  roaring portable bytes
//! ```

use std::io::Write;
use std::path::Path;

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::store::{StoreWriter, layout};

const MAGIC: &[u8; 8] = b"PRSNSET1";
const HEADER_LEN: usize = 8 + 4 + 8;

/// Rule tags and saved audiences of one store version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<RuleTag>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<Audience>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<Model>,
}

/// A trained response-propensity model (`CREATE MODEL ... AS LOGISTIC REGRESSION`): the queries it
/// was trained from, the encoded features it reads, its coefficients and how well it ranked the
/// held-out users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub name: String,
    /// `logistic regression`.
    pub kind: String,
    /// The query of the users labelled 1, as written.
    pub label_query: String,
    /// The features as written after `FROM` (a query or a feature list).
    pub features_as_written: String,
    /// The query yielding `user_id` and the raw feature columns (the list compiled to SQL).
    pub feature_query: String,
    /// One per raw feature column, in order.
    pub columns: Vec<ModelColumn>,
    pub intercept: f64,
    /// One per encoded term (a numeric column, or one level of a text column).
    pub terms: Vec<ModelTerm>,
    pub metrics: ModelMetrics,
    pub seed: u64,
    /// Hundredths of a percent of the users held out of training to measure the model.
    pub holdout_basis_points: u32,
    /// RFC 3339 time of training.
    pub created_at: String,
    /// The store version whose data the training read.
    pub computed_on: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<EvaluatedNow>,
}

/// A raw feature column and how it becomes a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelColumn {
    /// The column's name in the feature query.
    pub name: String,
    /// `numeric` (numbers, booleans as 0/1, dates and timestamps as days since 1970) or `text`
    /// (one indicator per level).
    pub encoding: String,
    /// The SQL expression over the feature query's column that yields the encoded value.
    pub expression: String,
}

/// One coefficient: of a numeric column per standard deviation (`mean`, `sd` of the training
/// rows; a NULL counts as the mean), or of one level of a text column against its reference level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelTerm {
    pub column: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    pub coefficient: f64,
    #[serde(default)]
    pub mean: f64,
    #[serde(default)]
    pub sd: f64,
}

/// How a model was trained and how well it ranks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetrics {
    /// Rows of the feature query.
    pub population: u64,
    /// Of them, labelled 1.
    pub positives: u64,
    pub train_rows: u64,
    pub train_positives: u64,
    pub holdout_rows: u64,
    pub holdout_positives: u64,
    pub train_auc: f64,
    /// Area under the ROC curve on the held-out users (absent with no holdout or a one-class one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_auc: Option<f64>,
    pub iterations: u32,
    /// Text levels folded into the reference level, and columns dropped as constant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A tag whose members come from a rule rather than from loaded `user_tags` rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleTag {
    pub name: String,
    /// The rule as written after `AS` (a predicate on users, or a query yielding `user_id`).
    pub rule: String,
    /// The query the rule stands for (the same text when the rule is a query).
    pub query: String,
    /// Members at the last evaluation.
    pub members: u64,
    /// RFC 3339 time of the last evaluation.
    pub computed_at: String,
    /// The store version whose data the last evaluation read.
    pub computed_on: u64,
    /// The members as a bitmap file.
    pub bitmap: SetFile,
    /// The `user_tags` files holding one row per member (listed with the table's files), so that
    /// every query path sees the tag as if its rows had been loaded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows_files: Vec<String>,
    /// The `now()` the last evaluation saw (absent in stores written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<EvaluatedNow>,
}

/// A saved audience: a query yielding `user_id` (and the columns to export), what it suppresses,
/// the holdout it keeps, and every version computed so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audience {
    pub name: String,
    /// The query, as written.
    pub query: String,
    /// RFC 3339 time of `CREATE AUDIENCE`.
    pub created_at: String,
    /// Saved audiences whose members are never in this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppress_audiences: Vec<String>,
    /// Files of user_ids (CSV or Parquet with a `user_id` column, or one id per line) whose users
    /// are never in this one; read again at every evaluation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppress_files: Vec<String>,
    /// Hundredths of a percent of the members kept out of exports (0..=10000).
    #[serde(default)]
    pub holdout_basis_points: u32,
    /// `BY PERSON`: the members are persons — a person is in when any of its profiles is —
    /// and suppression and holdout are decided per person. The member and holdout bitmaps then
    /// hold every profile of the member (held-out) persons, and the counts are persons.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_person: bool,
    pub versions: Vec<AudienceVersion>,
}

/// One computed version of an audience.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudienceVersion {
    /// 1, 2, ... in order of computation.
    pub number: u32,
    pub computed_at: String,
    /// The store version whose data was read.
    pub computed_on: u64,
    /// Eligible members: the query's users minus the suppressed ones (holdout included).
    pub members: u64,
    /// Members kept out of exports (a subset of `members`).
    pub holdout: u64,
    /// Users the query returned that suppression removed.
    pub suppressed: u64,
    /// Members added and removed since the previous version (all members for the first).
    pub added: u64,
    pub removed: u64,
    pub members_file: SetFile,
    pub holdout_file: SetFile,
    /// For a `BY PERSON` audience, the profiles of its member persons (holdout included): the
    /// size of `members_file`, whose counts above are persons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<u64>,
    /// The `now()` the evaluation saw, so that a version computed with `--now` is told from one
    /// computed on the clock (absent in stores written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<EvaluatedNow>,
}

/// The `now()` an evaluation saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluatedNow {
    /// RFC 3339, to the second.
    pub at: String,
    /// Pinned by `--now` (or `SessionOptions::now`) rather than read from the clock.
    pub pinned: bool,
}

impl EvaluatedNow {
    /// The `now()` a session's queries see at this moment, given the time the session pinned
    /// (`SessionOptions::now`), if any.
    pub fn seen_with(pinned: Option<chrono::DateTime<chrono::Utc>>) -> EvaluatedNow {
        let (at, pinned) = match pinned {
            Some(now) => (now, true),
            None => (chrono::Utc::now(), false),
        };
        EvaluatedNow { at: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), pinned }
    }
}

impl std::fmt::Display for EvaluatedNow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.at, if self.pinned { "pinned" } else { "clock" })
    }
}

/// A bitmap file of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetFile {
    /// Relative to the store root.
    pub path: String,
    pub bytes: u64,
}

/// The error for a name that is no trained model.
pub fn no_such_model(name: &str) -> Error {
    Error::Usage(format!("there is no model '{name}' (SHOW MODELS lists them)"))
}

/// The error for a name that is no saved audience.
pub fn no_such_audience(name: &str) -> Error {
    Error::Usage(format!("there is no saved audience '{name}' (SHOW AUDIENCES lists them)"))
}

impl Catalog {
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.audiences.is_empty() && self.models.is_empty()
    }

    /// Every set file of the catalog: rule tags' members, and each audience version's members
    /// and holdout.
    pub fn set_files(&self) -> Vec<&SetFile> {
        let mut sets: Vec<&SetFile> = self.tags.iter().map(|t| &t.bitmap).collect();
        for audience in &self.audiences {
            for v in &audience.versions {
                sets.push(&v.members_file);
                sets.push(&v.holdout_file);
            }
        }
        sets
    }

    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }

    pub fn tag(&self, name: &str) -> Option<&RuleTag> {
        self.tags.iter().find(|t| t.name == name)
    }

    pub fn audience(&self, name: &str) -> Option<&Audience> {
        self.audiences.iter().find(|a| a.name == name)
    }

    pub fn audience_mut(&mut self, name: &str) -> Option<&mut Audience> {
        self.audiences.iter_mut().find(|a| a.name == name)
    }
}

impl Audience {
    pub fn latest(&self) -> Option<&AudienceVersion> {
        self.versions.last()
    }

    pub fn version(&self, number: u32) -> Option<&AudienceVersion> {
        self.versions.iter().find(|v| v.number == number)
    }

    /// The holdout as a percentage, for display.
    pub fn holdout_percent(&self) -> f64 {
        f64::from(self.holdout_basis_points) / 100.0
    }
}

/// Writes `bitmap` as a new catalog file of the pending commit; `what` names it (`tag-vip`,
/// `audience-lapsed-v3-members`).
pub fn write_set(writer: &StoreWriter, what: &str, bitmap: &RoaringBitmap) -> Result<SetFile> {
    let relative =
        format!("catalog/v{:08}-{}-{:016x}.set", writer.next_version(), file_safe(what), rand::random::<u64>());
    let mut payload = Vec::with_capacity(bitmap.serialized_size());
    bitmap.serialize_into(&mut payload).io_context("serialize a bitmap for", Path::new(&relative))?;
    let (path, bytes) = write_framed(writer, relative, MAGIC, &payload)?;
    Ok(SetFile { path, bytes })
}

/// Reads a catalog bitmap file, verifying its checksum.
pub fn read_set(root: &Path, file: &SetFile) -> Result<RoaringBitmap> {
    let path = layout::resolve(root, &file.path);
    let payload = read_framed(&path, MAGIC, "a Persona set file", "bitmap")?;
    RoaringBitmap::deserialize_from(payload.as_slice())
        .map_err(|e| Error::corrupt(&path, format!("unreadable bitmap: {e}")))
}

/// Writes `payload` framed as catalog files are — `magic`, the CRC-32 of the payload (u32 LE),
/// its length (u64 LE), the payload — as the new file `relative` of the pending commit, fsynced;
/// returns its relative path and size.
pub(crate) fn write_framed(
    writer: &StoreWriter,
    relative: String,
    magic: &[u8; 8],
    payload: &[u8],
) -> Result<(String, u64)> {
    let (relative, abs) = writer.new_file(relative)?;
    let mut file = crate::store::io::create(&abs)?;
    file.write_all(magic).io_context("write", &abs)?;
    file.write_all(&crc32fast::hash(payload).to_le_bytes()).io_context("write", &abs)?;
    file.write_all(&(payload.len() as u64).to_le_bytes()).io_context("write", &abs)?;
    file.write_all(payload).io_context("write", &abs)?;
    file.sync_all().io_context("fsync", &abs)?;
    Ok((relative, (HEADER_LEN + payload.len()) as u64))
}

/// The payload of a file [`write_framed`] wrote with `magic`, its length and checksum verified;
/// `kind` and `unit` name the file and its payload in errors ("a Persona set file", "bitmap").
pub(crate) fn read_framed(path: &Path, magic: &[u8; 8], kind: &str, unit: &str) -> Result<Vec<u8>> {
    let mut bytes = std::fs::read(path).io_context("read", path)?;
    if bytes.len() < HEADER_LEN || &bytes[..8] != magic {
        return Err(Error::corrupt(path, format!("not {kind} (bad magic or truncated header)")));
    }
    let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let payload_len = bytes.len() - HEADER_LEN;
    if payload_len as u64 != len {
        return Err(Error::corrupt(path, format!("the header says {len} bytes of {unit}, the file has {payload_len}")));
    }
    if crc32fast::hash(&bytes[HEADER_LEN..]) != crc {
        return Err(Error::corrupt(path, "checksum mismatch; the file is damaged"));
    }
    bytes.drain(..HEADER_LEN);
    Ok(bytes)
}

/// `name` with anything but ASCII letters, digits, `-` and `_` replaced, for file names.
fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_set_file_round_trips_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path()).unwrap();
        let writer = store.writer().unwrap();
        let bitmap: RoaringBitmap = (0..100_000).step_by(7).collect();
        let file = write_set(&writer, "audience-x-v1", &bitmap).unwrap();
        assert_eq!(read_set(dir.path(), &file).unwrap(), bitmap);
        let path = layout::resolve(dir.path(), &file.path);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(read_set(dir.path(), &file), Err(Error::Corrupt { .. })));
        std::fs::write(&path, &bytes[..10]).unwrap();
        assert!(matches!(read_set(dir.path(), &file), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn versions_and_rule_tags_written_before_now_was_kept_still_load() {
        let set = r#"{"path": "catalog/x.set", "bytes": 20}"#;
        let version = format!(
            r#"{{"number": 1, "computed_at": "2026-11-01T00:00:00Z", "computed_on": 2, "members": 3, "holdout": 0,
                "suppressed": 0, "added": 3, "removed": 0, "members_file": {set}, "holdout_file": {set}}}"#
        );
        let v: AudienceVersion = serde_json::from_str(&version).unwrap();
        assert_eq!(v.now, None);
        let tag = format!(
            r#"{{"name": "t", "rule": "x > 1", "query": "q", "members": 1, "computed_at": "c", "computed_on": 1, "bitmap": {set}}}"#
        );
        let t: RuleTag = serde_json::from_str(&tag).unwrap();
        assert_eq!(t.now, None);
        let pinned =
            AudienceVersion { now: Some(EvaluatedNow { at: "2026-11-01T00:00:00Z".into(), pinned: true }), ..v };
        let back: AudienceVersion = serde_json::from_str(&serde_json::to_string(&pinned).unwrap()).unwrap();
        assert_eq!(back, pinned);
        assert_eq!(pinned.now.unwrap().to_string(), "2026-11-01T00:00:00Z (pinned)");
    }
}
