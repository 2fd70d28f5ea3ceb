//! Dates as the Journey API writes them: ISO-8601 in UTC with milliseconds and a `Z`,
//! such as `2026-11-24T06:15:14.123Z`.

use time::macros::format_description;
use time::OffsetDateTime;

/// Formats milliseconds since the Unix epoch. Times outside the range `time` can
/// represent (far beyond year 9999) are clamped, since validation never lets such an
/// event in and a read must not fail over one odd row.
pub fn format_ms(ms: i64) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    let nanos = i128::from(ms) * 1_000_000;
    let date_time = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(if ms < 0 {
        OffsetDateTime::UNIX_EPOCH
    } else {
        time::macros::datetime!(9999-12-31 23:59:59.999 UTC)
    });
    date_time
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::format_ms;

    #[test]
    fn formats_with_milliseconds_and_z() {
        let check = |ms: i64, expected: &str| assert_eq!(format_ms(ms), expected, "{ms}");
        check(0, "1970-01-01T00:00:00.000Z");
        check(1_795_500_914_123, "2026-11-24T06:15:14.123Z");
        check(1_795_500_914_005, "2026-11-24T06:15:14.005Z");
    }
}
