//! The data contract applied to one input file: which column goes where with which type (standard
//! columns keep their contract type, custom `users` columns are inferred), and the parsing of text
//! values as real exports write them (timestamps with a space or `T`, optional fractions and zone).

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

use crate::error::{Error, InputLocation, Result};
use crate::tables::{ColumnDef, ColumnType, Table};

/// Where each column of an input file goes.
#[derive(Debug, Clone)]
pub struct ColumnPlan {
    /// For each column of the file, in file order: its name and its store type.
    pub columns: Vec<ColumnDef>,
}

/// Resolves an input file's header against the table's contract and the store's known columns.
/// `known` is the store's schema for the table (for users, custom columns included); `infer`
/// gives the type of an unknown custom column (only called for `users`).
pub fn plan_columns(
    table: Table,
    file: &std::path::Path,
    header: &[String],
    known: &[ColumnDef],
    mut infer: impl FnMut(usize) -> Result<ColumnType>,
) -> Result<ColumnPlan> {
    let file_error = |column: Option<&str>, msg: String| Error::input(file, InputLocation::File, column, msg);
    let mut columns = Vec::with_capacity(header.len());
    for (i, name) in header.iter().enumerate() {
        let name = name.trim();
        if name.is_empty() {
            return Err(file_error(None, format!("column {} of the header has no name", i + 1)));
        }
        if header[..i].iter().any(|h| h.trim() == name) {
            return Err(file_error(Some(name), "the header names this column twice".into()));
        }
        if name == crate::tables::ROW_ID_COLUMN {
            return Err(file_error(Some(name), "this column name is reserved by Persona".into()));
        }
        let ty = if let Some(c) = known.iter().find(|c| c.name == name) {
            c.ty
        } else if table.accepts_custom_columns() {
            infer(i)?
        } else {
            return Err(file_error(
                Some(name),
                format!(
                    "{table} has no such column (its columns are {}); only users keeps custom columns",
                    table.columns().iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
                ),
            ));
        };
        columns.push(ColumnDef { name: name.to_string(), ty });
    }
    for required in table.columns().iter().filter(|c| c.required) {
        if !columns.iter().any(|c| c.name == required.name) {
            return Err(file_error(
                Some(required.name),
                format!("the required column is missing from the header of this {table} file"),
            ));
        }
    }
    Ok(ColumnPlan { columns })
}

/// Infers the type of a custom column from its text values: the narrowest of boolean, integer,
/// float, date and timestamp that every non-empty value parses as, else text. Values with a
/// leading zero (`007`, zip codes) stay text so that no digit is lost.
#[derive(Debug, Clone)]
pub struct TypeInference {
    can_bool: bool,
    can_int: bool,
    can_float: bool,
    can_date: bool,
    can_ts: bool,
    seen: bool,
}

impl Default for TypeInference {
    fn default() -> Self {
        TypeInference { can_bool: true, can_int: true, can_float: true, can_date: true, can_ts: true, seen: false }
    }
}

impl TypeInference {
    pub fn observe(&mut self, value: &str) {
        let v = value.trim();
        if v.is_empty() {
            return;
        }
        self.seen = true;
        if self.can_bool && parse_bool(v).is_none() {
            self.can_bool = false;
        }
        let leading_zero = v.len() > 1 && v.starts_with('0') && !v.starts_with("0.");
        if self.can_int && (leading_zero || v.parse::<i64>().is_err()) {
            self.can_int = false;
        }
        if self.can_float && (leading_zero || !looks_numeric(v) || v.parse::<f64>().is_err()) {
            self.can_float = false;
        }
        if self.can_date && parse_date(v).is_none() {
            self.can_date = false;
        }
        if self.can_ts && parse_timestamp_micros(v).is_none() {
            self.can_ts = false;
        }
    }

    pub fn result(&self) -> ColumnType {
        if !self.seen {
            ColumnType::Utf8
        } else if self.can_bool {
            ColumnType::Boolean
        } else if self.can_int {
            ColumnType::Int64
        } else if self.can_float {
            ColumnType::Float64
        } else if self.can_date {
            ColumnType::Date
        } else if self.can_ts {
            ColumnType::Timestamp
        } else {
            ColumnType::Utf8
        }
    }
}

/// `inf`, `nan` and `1e5` parse as f64 but are not what an export means by a number column.
fn looks_numeric(v: &str) -> bool {
    v.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
}

/// The wider of two inferred types for the same new column seen in two files.
pub fn widen(a: ColumnType, b: ColumnType) -> ColumnType {
    use ColumnType::*;
    match (a, b) {
        (x, y) if x == y => x,
        (Int32 | Int64, Int32 | Int64) => Int64,
        (Int32 | Int64 | Float64, Int32 | Int64 | Float64) => Float64,
        (Date | Timestamp, Date | Timestamp) => Timestamp,
        _ => Utf8,
    }
}

pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" => Some(true),
        "false" | "f" | "no" | "n" => Some(false),
        _ => None,
    }
}

/// Accepts `1`/`0` too, for columns already known to be boolean.
pub fn parse_bool_value(v: &str) -> Option<bool> {
    match v {
        "1" => Some(true),
        "0" => Some(false),
        _ => parse_bool(v),
    }
}

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("1970-01-01 is a date");

/// `YYYY-MM-DD` (also `YYYY/MM/DD`), as days since 1970-01-01. A timestamp at midnight is
/// accepted too, since exports often print dates that way.
pub fn parse_date(v: &str) -> Option<i32> {
    let d = NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(v, "%Y/%m/%d"))
        .ok()
        .or_else(|| {
            let micros = parse_timestamp_micros(v)?;
            let dt = DateTime::from_timestamp_micros(micros)?.naive_utc();
            (dt.time() == NaiveTime::MIN).then_some(dt.date())
        })?;
    i32::try_from((d - EPOCH).num_days()).ok()
}

/// A timestamp as microseconds since the epoch, in UTC. Accepts `2026-10-31 23:59:59`,
/// `2026-10-31T23:59:59`, fractions (`.5`, `.123456789`), a zone (`Z`, `+08:00`, `+0800`, `+08`,
/// ` UTC`) and a bare date (midnight). Values without a zone are UTC.
pub fn parse_timestamp_micros(v: &str) -> Option<i64> {
    let v = v.trim();
    if v.len() < 10 {
        return None;
    }
    let normalized: String = if v.as_bytes().get(10) == Some(&b'T') || v.as_bytes().get(10) == Some(&b't') {
        let mut s = v.to_string();
        s.replace_range(10..11, " ");
        s
    } else {
        v.to_string()
    };
    let s = normalized.strip_suffix(" UTC").unwrap_or(&normalized);
    if s.len() == 10 {
        let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
        return Some(d.and_time(NaiveTime::MIN).and_utc().timestamp_micros());
    }
    if let Some(naive) = s.strip_suffix(['Z', 'z']) {
        return parse_naive(naive).map(|dt| dt.and_utc().timestamp_micros());
    }
    // A zone suffix starts at the last '+' or a '-' after the time part. Byte 11 need not be a
    // character boundary (`2022-03-04星期五`): such text is no timestamp, not a reason to panic.
    if let Some(idx) = s.get(11..)?.rfind(['+', '-']).map(|i| i + 11) {
        let (naive, zone) = s.split_at(idx);
        let offset_secs = parse_offset(zone)?;
        let dt = parse_naive(naive.trim_end())?;
        return Some(dt.and_utc().timestamp_micros() - offset_secs * 1_000_000);
    }
    parse_naive(s).map(|dt| dt.and_utc().timestamp_micros())
}

fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M"))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y/%m/%d %H:%M:%S%.f"))
        .ok()
}

/// `+08:00`, `+0800`, `+08`, `-05:30` as seconds east of UTC.
fn parse_offset(zone: &str) -> Option<i64> {
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i64>().ok()?, 0),
        4 => (digits[..2].parse::<i64>().ok()?, digits[2..].parse::<i64>().ok()?),
        _ => return None,
    };
    (h <= 18 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap().and_utc().timestamp_micros()
    }

    #[test]
    fn timestamps_as_exports_write_them() {
        let base = ts("2026-10-31 23:59:59");
        assert_eq!(parse_timestamp_micros("2026-10-31 23:59:59"), Some(base));
        assert_eq!(parse_timestamp_micros("2026-10-31T23:59:59"), Some(base));
        assert_eq!(parse_timestamp_micros("2026-10-31T23:59:59Z"), Some(base));
        assert_eq!(parse_timestamp_micros("2026-10-31 23:59:59.5"), Some(base + 500_000));
        assert_eq!(parse_timestamp_micros("2026-10-31 23:59:59.123456789"), Some(base + 123_456));
        assert_eq!(parse_timestamp_micros("2026-11-01T07:59:59+08:00"), Some(base));
        assert_eq!(parse_timestamp_micros("2026-11-01 07:59:59+0800"), Some(base));
        assert_eq!(parse_timestamp_micros("2026-11-01 07:59:59 +08"), Some(base));
        assert_eq!(parse_timestamp_micros("2026-10-31 18:59:59-05:00"), Some(base));
        assert_eq!(parse_timestamp_micros("2026-10-31 23:59:59 UTC"), Some(base));
        assert_eq!(parse_timestamp_micros("2026-10-31"), Some(ts("2026-10-31 00:00:00")));
        assert_eq!(parse_timestamp_micros("2026-10-31 23:59"), Some(base - 59_000_000));
        for bad in ["", "yesterday", "2026-13-01 00:00:00", "2026-10-31 25:00:00", "2026-10-31 10:00:00+99"] {
            assert_eq!(parse_timestamp_micros(bad), None, "{bad}");
        }
    }

    /// Before the fix, a date followed by multi-byte text panicked ("byte index 11 is not a char
    /// boundary") instead of being a value that does not parse.
    #[test]
    fn text_after_a_date_is_no_timestamp_and_no_panic() {
        for bad in
            ["2022-03-04星期五", "2022-03-04T星期五", "2022-03-04 星期五", "2022-03-04é", "2022-03-04\u{1F600}+08"]
        {
            assert_eq!(parse_timestamp_micros(bad), None, "{bad}");
            assert_eq!(parse_date(bad), None, "{bad}");
            let mut inference = TypeInference::default();
            inference.observe(bad);
            assert_eq!(inference.result(), ColumnType::Utf8, "{bad}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("2000/01/01"), parse_date("2000-01-01"));
        assert_eq!(parse_date("2000-01-01 00:00:00"), parse_date("2000-01-01"));
        assert_eq!(parse_date("2000-01-01 10:00:00"), None);
        assert_eq!(parse_date("2000-02-30"), None);
    }

    #[test]
    fn inference_picks_the_narrowest_type() {
        let infer = |vals: &[&str]| {
            let mut t = TypeInference::default();
            vals.iter().for_each(|v| t.observe(v));
            t.result()
        };
        assert_eq!(infer(&["true", "", "no"]), ColumnType::Boolean);
        assert_eq!(infer(&["1", "10", "-3"]), ColumnType::Int64);
        assert_eq!(infer(&["1", "2.5"]), ColumnType::Float64);
        assert_eq!(infer(&["2020-01-01", "2021-02-03"]), ColumnType::Date);
        assert_eq!(infer(&["2020-01-01 10:00:00", "2021-02-03"]), ColumnType::Timestamp);
        assert_eq!(infer(&["007", "12"]), ColumnType::Utf8);
        assert_eq!(infer(&["1", "inf"]), ColumnType::Utf8);
        assert_eq!(infer(&["", ""]), ColumnType::Utf8);
        assert_eq!(infer(&["上海", "1"]), ColumnType::Utf8);
    }

    #[test]
    fn widening() {
        assert_eq!(widen(ColumnType::Int64, ColumnType::Float64), ColumnType::Float64);
        assert_eq!(widen(ColumnType::Date, ColumnType::Timestamp), ColumnType::Timestamp);
        assert_eq!(widen(ColumnType::Boolean, ColumnType::Int64), ColumnType::Utf8);
    }

    #[test]
    fn header_must_carry_required_columns_and_no_strangers() {
        let file = std::path::Path::new("p.csv");
        let header: Vec<String> = ["order_id", "user_id"].map(String::from).to_vec();
        let known = crate::tables::contract_columns(Table::Purchases);
        let err = plan_columns(Table::Purchases, file, &header, &known, |_| Ok(ColumnType::Utf8)).unwrap_err();
        assert!(err.to_string().contains("column product_id"), "{err}");
        let header: Vec<String> = ["tag", "user_id", "colour"].map(String::from).to_vec();
        let known = crate::tables::contract_columns(Table::UserTags);
        let err = plan_columns(Table::UserTags, file, &header, &known, |_| Ok(ColumnType::Utf8)).unwrap_err();
        assert!(err.to_string().contains("column colour"), "{err}");
        let header: Vec<String> = ["user_id", "user_id"].map(String::from).to_vec();
        let known = crate::tables::contract_columns(Table::Users);
        let err = plan_columns(Table::Users, file, &header, &known, |_| Ok(ColumnType::Utf8)).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }
}
