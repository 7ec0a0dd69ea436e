//! Reading dates written as `YYYY-MM-DD`.

use time::{Date, Month};

use crate::CalendarError;

/// Parses a date written `YYYY-MM-DD` (ISO 8601 calendar date, four-digit year, two-digit
/// month and day), e.g. `2026-12-18`. Surrounding whitespace is ignored.
///
/// The error says what was expected, or why the date does not exist (month 13,
/// 30 February, 29 February outside a leap year).
pub fn parse_date(s: &str) -> Result<Date, CalendarError> {
    let invalid = |reason: String| CalendarError::InvalidDate {
        input: s.to_owned(),
        reason,
    };
    let shape = || invalid("expected YYYY-MM-DD, e.g. 2026-12-18".to_owned());

    let text = s.trim();
    let mut parts = text.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(shape());
    };
    let digits =
        |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_digit());
    if !(digits(y, 4) && digits(m, 2) && digits(d, 2)) {
        return Err(shape());
    }
    let (Ok(year), Ok(month), Ok(day)) = (y.parse::<i32>(), m.parse::<u8>(), d.parse::<u8>())
    else {
        return Err(shape());
    };

    let month = Month::try_from(month)
        .map_err(|_| invalid(format!("month {m} does not exist (expected 01 to 12)")))?;
    Date::from_calendar_date(year, month, day).map_err(|_| {
        invalid(format!(
            "{month} {year} has no day {d} (it has {} days)",
            month.length(year)
        ))
    })
}
