//! The calendar of generated data: the fixed "now" (2026-11-01 UTC), the spans of history
//! before it, and day arithmetic.

/// The instant "now" of generated data: 2026-11-01 00:00:00 UTC, in microseconds since the epoch.
pub const GEN_NOW_MICROS: i64 = 1_793_491_200_000_000;

pub(super) const MICROS_PER_SECOND: i64 = 1_000_000;
pub(super) const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// Day number (since 1970-01-01) of "now", 2026-11-01.
pub(super) const NOW_DAY: i32 = (GEN_NOW_MICROS / MICROS_PER_DAY) as i32;
/// Day number of 2015-01-01, the first possible signup date.
pub(super) const SIGNUP_FIRST_DAY: i32 = 16_436;
/// Purchases go back two years, events one year.
pub(super) const PURCHASE_HISTORY_DAYS: i32 = 730;
pub(super) const EVENT_HISTORY_DAYS: i32 = 365;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub(super) fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_2026_11_01_utc() {
        let now = chrono::NaiveDate::from_ymd_opt(2026, 11, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp_micros());
        assert_eq!(now, Some(GEN_NOW_MICROS));
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("date");
        for (y, m, d) in [(2015, 1, 1), (2026, 11, 1), (1936, 11, 1), (2000, 2, 29), (1969, 12, 31)] {
            let date = chrono::NaiveDate::from_ymd_opt(y, m, d).expect("date");
            assert_eq!(i64::from(days_from_civil(y, m, d)), (date - epoch).num_days(), "{y}-{m}-{d}");
        }
        assert_eq!(SIGNUP_FIRST_DAY, days_from_civil(2015, 1, 1));
    }
}
