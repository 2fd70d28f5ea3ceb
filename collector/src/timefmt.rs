//! Dates as the Journey API writes them: ISO-8601 in UTC with milliseconds and a `Z`,
//! such as `2026-11-24T06:15:14.123Z`; and as it reads them.

use time::format_description::well_known::Rfc3339;
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

/// Parses an ISO-8601 date-time with a time zone (the RFC 3339 profile:
/// `2026-11-24T06:15:14.123Z`, `2026-11-24T07:15:14+01:00`) into milliseconds since
/// the Unix epoch; digits below the millisecond are dropped. A date without a zone
/// is refused: its instant would be a guess.
pub fn parse_ms(text: &str) -> Option<i64> {
    let date_time = OffsetDateTime::parse(text.trim(), &Rfc3339).ok()?;
    i64::try_from(date_time.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::{format_ms, parse_ms};

    #[test]
    fn parses_dates_with_a_zone() {
        let check =
            |text: &str, expected: Option<i64>| assert_eq!(parse_ms(text), expected, "{text}");
        check("2026-11-24T06:15:14.123Z", Some(1_795_500_914_123));
        check("2026-11-24T06:15:14Z", Some(1_795_500_914_000));
        check("2026-11-24T07:15:14.123+01:00", Some(1_795_500_914_123));
        check("2026-11-24T06:15:14.123456Z", Some(1_795_500_914_123));
        check("1969-12-31T23:59:59.999Z", Some(-1));
        check("2026-11-24T06:15:14.123", None);
        check("2026-11-24", None);
        check("yesterday", None);
        check("", None);
        assert_eq!(
            parse_ms(&format_ms(1_795_500_914_005)),
            Some(1_795_500_914_005)
        );
    }

    #[test]
    fn formats_with_milliseconds_and_z() {
        let check = |ms: i64, expected: &str| assert_eq!(format_ms(ms), expected, "{ms}");
        check(0, "1970-01-01T00:00:00.000Z");
        check(1_795_500_914_123, "2026-11-24T06:15:14.123Z");
        check(1_795_500_914_005, "2026-11-24T06:15:14.005Z");
    }
}
