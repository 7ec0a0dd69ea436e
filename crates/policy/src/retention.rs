//! Retention periods ("6 years", "13 months", "90 days") and calendar arithmetic on them.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use time::{Date, Month, OffsetDateTime};

/// The longest period a policy may state. Longer periods are almost certainly typos
/// ("60 years" for "6 years"), and the bound keeps all date arithmetic in range.
const MAX_YEARS: u32 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionUnit {
    Days,
    Months,
    Years,
}

/// How long data is kept, counted from the moment given by `RetentionStart`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Retention {
    pub amount: u32,
    pub unit: RetentionUnit,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    #[error("retention {0:?} is not of the form \"<n> days\", \"<n> months\" or \"<n> years\"")]
    Malformed(String),
    #[error("retention {0:?} is zero: data with no retention period should not be collected")]
    Zero(String),
    #[error("retention {0:?} is longer than {MAX_YEARS} years")]
    TooLong(String),
}

impl FromStr for Retention {
    type Err = RetentionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || RetentionError::Malformed(text.to_owned());
        let mut words = text.split_whitespace();
        let (Some(amount), Some(unit), None) = (words.next(), words.next(), words.next()) else {
            return Err(malformed());
        };
        // Only plain digits: u32's parser would also take "+6".
        if !amount.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        let amount: u32 = amount.parse().map_err(|_| malformed())?;
        // Singular and plural are both accepted: "1 years" is clumsy, not ambiguous.
        let (unit, days_per_unit) = match unit {
            "day" | "days" => (RetentionUnit::Days, 1),
            "month" | "months" => (RetentionUnit::Months, 31),
            "year" | "years" => (RetentionUnit::Years, 366),
            _ => return Err(malformed()),
        };
        if amount == 0 {
            return Err(RetentionError::Zero(text.to_owned()));
        }
        if u64::from(amount) * days_per_unit > u64::from(MAX_YEARS) * 366 {
            return Err(RetentionError::TooLong(text.to_owned()));
        }
        Ok(Retention { amount, unit })
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match (self.unit, self.amount) {
            (RetentionUnit::Days, 1) => "day",
            (RetentionUnit::Days, _) => "days",
            (RetentionUnit::Months, 1) => "month",
            (RetentionUnit::Months, _) => "months",
            (RetentionUnit::Years, 1) => "year",
            (RetentionUnit::Years, _) => "years",
        };
        write!(f, "{} {unit}", self.amount)
    }
}

impl Retention {
    /// The Unix time (seconds, UTC) at which data whose clock started at `from` expires.
    ///
    /// Months and years are calendar units: the day of the month is kept and clamped to
    /// the month's last day, so 6 years from 29 February 2020 is 28 February 2026, and one
    /// month from 31 January is the last day of February. The time of day is kept.
    pub fn expires_at(&self, from_unix_secs: i64) -> i64 {
        self.calendar_expiry(from_unix_secs)
            // Only for instants outside the years -9999..=9999 that `time` represents:
            // an approximate answer that still moves forward is better than none.
            .unwrap_or_else(|| from_unix_secs.saturating_add(self.approximate_seconds()))
    }

    fn calendar_expiry(&self, from_unix_secs: i64) -> Option<i64> {
        let start = OffsetDateTime::from_unix_timestamp(from_unix_secs).ok()?;
        let months = match self.unit {
            RetentionUnit::Days => {
                let seconds = i64::from(self.amount) * 86_400;
                return from_unix_secs.checked_add(seconds);
            }
            RetentionUnit::Months => i64::from(self.amount),
            RetentionUnit::Years => i64::from(self.amount) * 12,
        };
        let date = add_months(start.date(), months)?;
        Some(start.replace_date(date).unix_timestamp())
    }

    fn approximate_seconds(&self) -> i64 {
        // The mean Gregorian year is 365.2425 days.
        const YEAR: i64 = 31_556_952;
        let amount = i64::from(self.amount);
        match self.unit {
            RetentionUnit::Days => amount * 86_400,
            RetentionUnit::Months => amount * (YEAR / 12),
            RetentionUnit::Years => amount * YEAR,
        }
    }
}

/// Adds calendar months, clamping the day to the length of the target month.
fn add_months(date: Date, months: i64) -> Option<Date> {
    let index = i64::from(date.year()) * 12 + i64::from(u8::from(date.month())) - 1 + months;
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    let day = date.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use time::macros::datetime;

    fn unix(t: OffsetDateTime) -> i64 {
        t.unix_timestamp()
    }

    #[test]
    fn parses_the_three_units_in_singular_and_plural() {
        let r: Retention = "6 years".parse().unwrap();
        assert_eq!(
            r,
            Retention {
                amount: 6,
                unit: RetentionUnit::Years
            }
        );
        let r: Retention = " 13  months ".parse().unwrap();
        assert_eq!(
            r,
            Retention {
                amount: 13,
                unit: RetentionUnit::Months
            }
        );
        let r: Retention = "1 day".parse().unwrap();
        assert_eq!(
            r,
            Retention {
                amount: 1,
                unit: RetentionUnit::Days
            }
        );
        assert_eq!(r.to_string(), "1 day");
        assert_eq!(
            "90 days".parse::<Retention>().unwrap().to_string(),
            "90 days"
        );
    }

    #[test]
    fn rejects_what_is_not_a_period() {
        for bad in [
            "",
            "6",
            "years",
            "six years",
            "6 yrs",
            "-1 days",
            "+6 years",
            "6 years ago",
            "6.5 years",
        ] {
            assert!(
                matches!(bad.parse::<Retention>(), Err(RetentionError::Malformed(_))),
                "{bad:?} should be malformed"
            );
        }
        assert!(matches!(
            "0 days".parse::<Retention>(),
            Err(RetentionError::Zero(_))
        ));
        assert!(matches!(
            "101 years".parse::<Retention>(),
            Err(RetentionError::TooLong(_))
        ));
        assert!(matches!(
            "99999999999 days".parse::<Retention>(),
            Err(RetentionError::Malformed(_))
        ));
        assert!("100 years".parse::<Retention>().is_ok());
    }

    #[test]
    fn years_from_a_leap_day_clamp_to_the_end_of_february() {
        let six_years: Retention = "6 years".parse().unwrap();
        let from = unix(datetime!(2020-02-29 13:45:10 UTC));
        assert_eq!(
            six_years.expires_at(from),
            unix(datetime!(2026-02-28 13:45:10 UTC))
        );
        let four_years: Retention = "4 years".parse().unwrap();
        assert_eq!(
            four_years.expires_at(from),
            unix(datetime!(2024-02-29 13:45:10 UTC))
        );
    }

    #[test]
    fn months_clamp_and_cross_year_ends() {
        let one: Retention = "1 month".parse().unwrap();
        assert_eq!(
            one.expires_at(unix(datetime!(2023-01-31 00:00 UTC))),
            unix(datetime!(2023-02-28 00:00 UTC))
        );
        let thirteen: Retention = "13 months".parse().unwrap();
        assert_eq!(
            thirteen.expires_at(unix(datetime!(2025-12-15 08:00 UTC))),
            unix(datetime!(2027-01-15 08:00 UTC))
        );
    }

    #[test]
    fn days_are_exact_and_work_before_1970() {
        let ninety: Retention = "90 days".parse().unwrap();
        assert_eq!(
            ninety.expires_at(unix(datetime!(2024-01-01 00:00 UTC))),
            unix(datetime!(2024-03-31 00:00 UTC))
        );
        let one_year: Retention = "1 year".parse().unwrap();
        assert_eq!(
            one_year.expires_at(unix(datetime!(1969-06-30 12:00 UTC))),
            unix(datetime!(1970-06-30 12:00 UTC))
        );
    }

    #[test]
    fn out_of_range_instants_still_move_forward() {
        let r: Retention = "1 year".parse().unwrap();
        assert_eq!(r.expires_at(i64::MAX), i64::MAX);
        let far = 400_000_000_000; // around the year 14 000
        assert!(r.expires_at(far) > far);
    }
}
