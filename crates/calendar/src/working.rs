//! Working days and deadlines counted in them.

use time::Date;

use crate::Region;
use crate::holidays::{bank_holidays, is_weekday};

/// Whether `date` is a working day in `region`: Monday to Friday and not a bank holiday.
pub fn is_working_day(region: Region, date: Date) -> bool {
    is_weekday(date)
        && !bank_holidays(region, date.year())
            .iter()
            .any(|(day, _)| *day == date)
}

/// One year's bank holidays, recomputed only when the year changes. For walking day by day.
struct Holidays {
    region: Region,
    year: i32,
    dates: Vec<Date>,
}

impl Holidays {
    fn new(region: Region, year: i32) -> Self {
        Holidays {
            region,
            year,
            dates: Self::dates(region, year),
        }
    }

    fn dates(region: Region, year: i32) -> Vec<Date> {
        bank_holidays(region, year)
            .into_iter()
            .map(|(date, _)| date)
            .collect()
    }

    fn is_working_day(&mut self, date: Date) -> bool {
        if !is_weekday(date) {
            return false;
        }
        if date.year() != self.year {
            self.year = date.year();
            self.dates = Self::dates(self.region, self.year);
        }
        self.dates.binary_search(&date).is_err()
    }
}

/// The due date of something received on `received` with `n` working days to answer.
///
/// Day 1 is the first working day *after* the day of receipt, whatever kind of day receipt
/// fell on; the due date is the `n`-th such day. So a request received on a Friday with
/// `n = 1` is due the next Monday, or the Tuesday if that Monday is a bank holiday, and one
/// received on a Saturday or a bank holiday counts from the next working day just the same.
///
/// `n = 0` returns `received` unchanged (even on a weekend or bank holiday): nothing is
/// counted. The result never passes 9999-12-31, the last date `time` can represent; a count
/// that would run beyond it stops there.
pub fn add_working_days(region: Region, received: Date, n: u32) -> Date {
    let mut holidays = Holidays::new(region, received.year());
    let mut day = received;
    let mut counted = 0;
    while counted < n {
        let Some(next) = day.next_day() else {
            return day;
        };
        day = next;
        if holidays.is_working_day(day) {
            counted += 1;
        }
    }
    day
}

/// The number of working days after `from`, up to and including `to`: the same counting as
/// [`add_working_days`], so `working_days_between(r, d, add_working_days(r, d, n)) == n`.
///
/// Negative when `to` is before `from` (minus the count from `to` to `from`), zero when they
/// are equal. With `from` the due date and `to` today, a positive result is how many working
/// days a request is overdue.
pub fn working_days_between(region: Region, from: Date, to: Date) -> i64 {
    if to < from {
        return -working_days_between(region, to, from);
    }

    // Weekdays in (from, to]: every 7 consecutive days hold 5; then the remaining < 7 days.
    let span = i64::from(to.to_julian_day()) - i64::from(from.to_julian_day());
    let start = i64::from(from.weekday().number_days_from_monday());
    let remainder = span % 7;
    let mut weekdays = span / 7 * 5;
    weekdays += (1..=remainder).filter(|i| (start + i) % 7 < 5).count() as i64;

    // Minus bank holidays in (from, to]. They all fall on weekdays; the check is a guard.
    let holidays: usize = (from.year()..=to.year())
        .map(|year| {
            bank_holidays(region, year)
                .iter()
                .filter(|(day, _)| *day > from && *day <= to && is_weekday(*day))
                .count()
        })
        .sum();

    weekdays - holidays as i64
}
