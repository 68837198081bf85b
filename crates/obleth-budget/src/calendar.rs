//! Calendar months in UTC, for monthly spend budgets.
//!
//! The Redis scripts compute the same month from the server's clock (the civil-from-days
//! algorithm below is mirrored in `redis/common.lua`).

use obleth_core::UnixMillis;

const DAY_MS: i64 = 86_400_000;

/// `(year, month 1..=12)` of a UTC instant.
pub fn year_month(at: UnixMillis) -> (i64, u32) {
    let (y, m, _) = civil_from_days(at.div_euclid(DAY_MS));
    (y, m)
}

/// The month's key, `YYYY-MM`.
pub fn month_key(at: UnixMillis) -> String {
    let (y, m) = year_month(at);
    format!("{y:04}-{m:02}")
}

/// The first instant of the month holding `at`.
pub fn month_start(at: UnixMillis) -> UnixMillis {
    let (y, m) = year_month(at);
    days_from_civil(y, m, 1) * DAY_MS
}

/// The first instant of the month after the one holding `at`.
pub fn next_month_start(at: UnixMillis) -> UnixMillis {
    let (y, m) = year_month(at);
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(y, m, 1) * DAY_MS
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a UTC instant, for messages.
pub fn iso8601(at: UnixMillis) -> String {
    let (y, m, d) = civil_from_days(at.div_euclid(DAY_MS));
    let secs = at.rem_euclid(DAY_MS) / 1000;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to `(year, month, day)`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The inverse: `(year, month, day)` to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        assert_eq!(month_key(0), "1970-01");
        // 2026-11-21T12:00:00Z
        let t = 1_795_262_400_000;
        assert_eq!(month_key(t), "2026-11");
        assert_eq!(month_key(next_month_start(t)), "2026-12");
        assert_eq!(next_month_start(t), 1_796_083_200_000, "2026-12-01T00:00:00Z");
        assert_eq!(iso8601(next_month_start(t)), "2026-12-01T00:00:00Z");
        assert_eq!(iso8601(t + 61_000), "2026-11-21T12:01:01Z");
        // The last millisecond of a month belongs to it.
        assert_eq!(month_key(next_month_start(t) - 1), "2026-11");
        assert_eq!(iso8601(month_start(t)), "2026-11-01T00:00:00Z");
        assert_eq!(month_start(month_start(t)), month_start(t));
        // December rolls over to January.
        let dec = 1_798_675_200_000 - 1; // 2026-12-31T23:59:59.999Z
        assert_eq!(month_key(dec), "2026-12");
        assert_eq!(month_key(next_month_start(dec)), "2027-01");
        // Leap day.
        assert_eq!(month_key(1_709_164_800_000), "2024-02", "2024-02-29");
        for day in 0..20_000 {
            let at = day * DAY_MS;
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
            assert!(next_month_start(at) > at);
        }
    }
}
