//! The regular bank-holiday rules, Easter, and the merge with the one-off table.

use time::{Date, Month, Weekday};

use crate::Region;
use crate::one_offs::{Change, ONE_OFFS};

/// First year St Andrew's Day was a bank holiday in Scotland: the St Andrew's Day Bank
/// Holiday (Scotland) Act 2007 (asp 2) received Royal Assent on 15 January 2007.
pub(crate) const ST_ANDREWS_DAY_FROM: i32 = 2007;

const NEW_YEAR: &str = "New Year's Day";
const NEW_YEAR_SUB: &str = "New Year's Day (substitute day)";
const JAN_2: &str = "2nd January";
const JAN_2_SUB: &str = "2nd January (substitute day)";
const ST_PATRICK: &str = "St Patrick's Day";
const ST_PATRICK_SUB: &str = "St Patrick's Day (substitute day)";
const GOOD_FRIDAY: &str = "Good Friday";
const EASTER_MONDAY: &str = "Easter Monday";
const EARLY_MAY: &str = "Early May bank holiday";
const SPRING: &str = "Spring bank holiday";
const BOYNE: &str = "Battle of the Boyne (Orangemen's Day)";
const BOYNE_SUB: &str = "Battle of the Boyne (Orangemen's Day) (substitute day)";
const SUMMER: &str = "Summer bank holiday";
const ST_ANDREW: &str = "St Andrew's Day";
const ST_ANDREW_SUB: &str = "St Andrew's Day (substitute day)";
const CHRISTMAS: &str = "Christmas Day";
const CHRISTMAS_SUB: &str = "Christmas Day (substitute day)";
const BOXING: &str = "Boxing Day";
const BOXING_SUB: &str = "Boxing Day (substitute day)";

type Holiday = (Date, &'static str);

/// `year-month-day`, or `None` outside the range `time` can represent.
fn ymd(year: i32, month: Month, day: u8) -> Option<Date> {
    Date::from_calendar_date(year, month, day).ok()
}

/// `date` moved by `days` (either way), or `None` past the ends of `time`'s range.
pub(crate) fn add_days(date: Date, days: i32) -> Option<Date> {
    Date::from_julian_day(date.to_julian_day().checked_add(days)?).ok()
}

/// Monday to Friday.
pub(crate) fn is_weekday(date: Date) -> bool {
    !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
}

/// The first Monday on or after `date`.
fn monday_on_or_after(date: Date) -> Option<Date> {
    let from_monday = i32::from(date.weekday().number_days_from_monday());
    add_days(date, (7 - from_monday) % 7)
}

fn first_monday(year: i32, month: Month) -> Option<Date> {
    monday_on_or_after(ymd(year, month, 1)?)
}

fn last_monday(year: i32, month: Month) -> Option<Date> {
    let last = ymd(year, month, month.length(year))?;
    add_days(last, -i32::from(last.weekday().number_days_from_monday()))
}

/// A fixed-date holiday that, when it falls on a Saturday or Sunday, is taken on the next
/// Monday instead (New Year's Day outside Scotland, St Patrick's Day, the Battle of the Boyne,
/// St Andrew's Day).
fn fixed_or_next_monday(
    year: i32,
    month: Month,
    day: u8,
    name: &'static str,
    substitute: &'static str,
) -> Option<Holiday> {
    let date = ymd(year, month, day)?;
    if is_weekday(date) {
        Some((date, name))
    } else {
        Some((monday_on_or_after(date)?, substitute))
    }
}

/// Easter Sunday in the Gregorian calendar, by the anonymous Gregorian algorithm (Meeus,
/// *Astronomical Algorithms*, after the 1876 letter to *Nature*). Valid for any Gregorian
/// year; `None` only where `time` cannot represent the date (beyond ±9999).
pub fn easter_sunday(year: i32) -> Option<Date> {
    let y = i64::from(year);
    let a = y.rem_euclid(19);
    let b = y.div_euclid(100);
    let c = y.rem_euclid(100);
    let d = b.div_euclid(4);
    let e = b.rem_euclid(4);
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c.div_euclid(4);
    let k = c.rem_euclid(4);
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l).div_euclid(451);
    let n = h + l - 7 * m + 114;
    let month = Month::try_from(u8::try_from(n.div_euclid(31)).ok()?).ok()?;
    let day = u8::try_from(n.rem_euclid(31) + 1).ok()?;
    ymd(year, month, day)
}

/// The holidays the regular rules give, before one-off changes. `None` only where `time`
/// cannot represent the year.
fn regular_holidays(region: Region, year: i32) -> Option<Vec<Holiday>> {
    use Month::{August, December, January, July, March, May, November};

    let mut days: Vec<Holiday> = Vec::with_capacity(12);

    // New Year. Scotland has 1 and 2 January, each moved off a weekend to the next free
    // weekday; the names follow GOV.UK's current lists (2022, 2023, 2027).
    if region == Region::Scotland {
        let day = |d: u8| ymd(year, January, d);
        match day(1)?.weekday() {
            Weekday::Friday => {
                days.push((day(1)?, NEW_YEAR));
                days.push((day(4)?, JAN_2_SUB));
            }
            Weekday::Saturday => {
                days.push((day(3)?, NEW_YEAR_SUB));
                days.push((day(4)?, JAN_2_SUB));
            }
            Weekday::Sunday => {
                days.push((day(2)?, NEW_YEAR_SUB));
                days.push((day(3)?, JAN_2_SUB));
            }
            _ => {
                days.push((day(1)?, NEW_YEAR));
                days.push((day(2)?, JAN_2));
            }
        }
    } else {
        days.push(fixed_or_next_monday(
            year,
            January,
            1,
            NEW_YEAR,
            NEW_YEAR_SUB,
        )?);
    }

    if region == Region::NorthernIreland {
        days.push(fixed_or_next_monday(
            year,
            March,
            17,
            ST_PATRICK,
            ST_PATRICK_SUB,
        )?);
    }

    let easter = easter_sunday(year)?;
    days.push((add_days(easter, -2)?, GOOD_FRIDAY));
    if region != Region::Scotland {
        days.push((add_days(easter, 1)?, EASTER_MONDAY));
    }

    days.push((first_monday(year, May)?, EARLY_MAY));
    days.push((last_monday(year, May)?, SPRING));

    if region == Region::NorthernIreland {
        days.push(fixed_or_next_monday(year, July, 12, BOYNE, BOYNE_SUB)?);
    }

    days.push(if region == Region::Scotland {
        (first_monday(year, August)?, SUMMER)
    } else {
        (last_monday(year, August)?, SUMMER)
    });

    if region == Region::Scotland && year >= ST_ANDREWS_DAY_FROM {
        days.push(fixed_or_next_monday(
            year,
            November,
            30,
            ST_ANDREW,
            ST_ANDREW_SUB,
        )?);
    }

    // Christmas and Boxing Day: a weekend day moves to the next weekday not already taken.
    let day = |d: u8| ymd(year, December, d);
    match day(25)?.weekday() {
        Weekday::Friday => {
            days.push((day(25)?, CHRISTMAS));
            days.push((day(28)?, BOXING_SUB));
        }
        Weekday::Saturday => {
            days.push((day(27)?, CHRISTMAS_SUB));
            days.push((day(28)?, BOXING_SUB));
        }
        Weekday::Sunday => {
            days.push((day(26)?, BOXING));
            days.push((day(27)?, CHRISTMAS_SUB));
        }
        _ => {
            days.push((day(25)?, CHRISTMAS));
            days.push((day(26)?, BOXING));
        }
    }

    Some(days)
}

/// The bank holidays of `region` in `year`, in date order, each with its name as GOV.UK
/// writes it (ASCII apostrophes; a substitute day is named "… (substitute day)").
///
/// Computed from the regular rules for any year, then corrected by the one-off table
/// [`ONE_OFFS`](crate::ONE_OFFS). Empty for years `time` cannot represent (beyond ±9999).
/// See the [crate documentation](crate) for the rules and the years they are accurate for.
pub fn bank_holidays(region: Region, year: i32) -> Vec<(Date, &'static str)> {
    let Some(mut days) = regular_holidays(region, year) else {
        return Vec::new();
    };

    for one_off in ONE_OFFS
        .iter()
        .filter(|o| o.year() == year && o.regions.contains(&region))
    {
        match one_off.change {
            Change::Moved { from, to, name } => {
                // The table is checked by tests to move only dates the rules produce.
                if let Some(entry) = days.iter_mut().find(|(date, _)| *date == from) {
                    *entry = (to, name);
                }
            }
            Change::Extra { date, name } => days.push((date, name)),
        }
    }

    days.sort_by_key(|(date, _)| *date);
    days.dedup_by_key(|(date, _)| *date);
    days
}

/// The name of the bank holiday on `date` in `region`, if it is one.
pub fn bank_holiday_name(region: Region, date: Date) -> Option<&'static str> {
    bank_holidays(region, date.year())
        .into_iter()
        .find(|(day, _)| *day == date)
        .map(|(_, name)| name)
}
