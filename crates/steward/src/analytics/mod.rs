//! Analytics, kept to the privacy statement's two promises about it:
//!
//! * [`usage`]: the App's usage statistics ("only with consent; anonymous from the
//!   outset, never linkable to a person"). The consent of the submitting user is
//!   checked, then only day-level counters without any identifier are stored, and
//!   reports suppress every cell under [`usage::MIN_CELL`].
//! * [`web`]: cookie consent and the website's visit collector ("how many times
//!   you visit, which pages, your IP address, ... your browser"). A visitor is a
//!   subject of kind `visitor`, found by a keyed hash of the random id in their
//!   cookie; their choices go to the consent ledger, and a visit is stored (sealed
//!   with the visitor's key) only while analytics consent is in force. Withdrawing
//!   it deletes the visits stored so far.
//!
//! Neither module logs anything; the request log names route templates only.

pub mod usage;
pub mod web;

use crate::error::{Error, Result};

/// The UTC day of a stored timestamp, `YYYY-MM-DD`.
pub(crate) fn day_of(secs: i64) -> Result<String> {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map(|t| t.date().to_string())
        .map_err(|e| Error::Internal(format!("time out of range: {e}")))
}

/// Parses `YYYY-MM-DD` (a real calendar day), naming `field` when it is not one.
pub(crate) fn parse_day(field: &str, s: &str) -> Result<time::Date> {
    let bad = || Error::invalid(field, format!("{s:?} is not a day: expected YYYY-MM-DD"));
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    if y.len() != 4
        || m.len() != 2
        || d.len() != 2
        || !s.bytes().all(|b| b.is_ascii_digit() || b == b'-')
    {
        return Err(bad());
    }
    let y: i32 = y.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    let d: u8 = d.parse().map_err(|_| bad())?;
    let month = time::Month::try_from(m).map_err(|_| bad())?;
    time::Date::from_calendar_date(y, month, d).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days() {
        assert_eq!(day_of(0).ok().as_deref(), Some("1970-01-01"));
        assert_eq!(day_of(1_793_491_300).ok().as_deref(), Some("2026-11-01"));
        assert!(parse_day("from", "2026-11-01").is_ok());
        for bad in [
            "2026-02-30",
            "2026-1-01",
            "26-11-01",
            "2026-11-01T",
            "+026-11-01",
            "",
        ] {
            assert!(parse_day("from", bad).is_err(), "{bad}");
        }
    }
}
