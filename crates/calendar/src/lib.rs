//! UK bank holidays and working-day deadlines for data-subject requests.
//!
//! A Steward policy gives a deadline such as "10 working days" and a `jurisdiction`
//! ([`Region`]). This crate answers when such a deadline falls ([`add_working_days`]), how far
//! past it a request is ([`working_days_between`]), and which days are bank holidays
//! ([`bank_holidays`]) in each of the three UK calendars. Nothing is downloaded: the rules are
//! code and the exceptions are a table ([`ONE_OFFS`]).
//!
//! # Counting working days
//!
//! A working day is Monday to Friday and not a bank holiday in the region. Day 1 is the first
//! working day after the day of receipt, and the due date is the n-th. Receipt on a weekend
//! or a bank holiday changes nothing: counting still starts the day after. `n = 0` gives the
//! day of receipt itself. [`working_days_between`] counts the same way (days after `from`, up
//! to and including `to`), so it measures "overdue by N working days" against a due date.
//!
//! ```
//! use steward_calendar::{Region, add_working_days, parse_date, working_days_between};
//!
//! let region: Region = "england-and-wales".parse()?;
//! let received = parse_date("2026-12-18")?;
//! let due = add_working_days(region, received, 10);
//! assert_eq!(due, parse_date("2027-01-06")?);
//! assert_eq!(working_days_between(region, due, parse_date("2027-01-08")?), 2);
//! # Ok::<(), steward_calendar::CalendarError>(())
//! ```
//!
//! # The regular rules
//!
//! | Holiday | England and Wales | Scotland | Northern Ireland |
//! |---|---|---|---|
//! | New Year's Day, 1 January | yes | yes | yes |
//! | 2 January | – | yes | – |
//! | St Patrick's Day, 17 March | – | – | yes |
//! | Good Friday | yes | yes | yes |
//! | Easter Monday | yes | **no** | yes |
//! | Early May bank holiday: first Monday of May | yes | yes | yes |
//! | Spring bank holiday: last Monday of May | yes | yes | yes |
//! | Battle of the Boyne (Orangemen's Day), 12 July | – | – | yes |
//! | Summer bank holiday | last Monday of August | **first** Monday of August | last Monday of August |
//! | St Andrew's Day, 30 November (from 2007) | – | yes | – |
//! | Christmas Day and Boxing Day, 25 and 26 December | yes | yes | yes |
//!
//! Easter Sunday is computed with the anonymous Gregorian algorithm ([`easter_sunday`]).
//!
//! Substitute days, when a fixed date falls on a weekend:
//!
//! - New Year's Day (England and Wales, Northern Ireland), St Patrick's Day, the Battle of the
//!   Boyne and St Andrew's Day move to the following Monday.
//! - Scotland's 1 and 2 January move to the next weekdays not already taken: 1 January on a
//!   Friday gives Friday 1 and Monday 4; on a Saturday, Monday 3 and Tuesday 4; on a Sunday,
//!   Monday 2 ("New Year's Day (substitute day)") and Tuesday 3 ("2nd January (substitute
//!   day)"). Those last names are GOV.UK's for 2023; its 2012 list named the same two dates
//!   the other way round ("2nd January", then "New Year's Day" substitute). Only the names
//!   differ, never the dates.
//! - Christmas on a Saturday: Monday 27 (Christmas Day substitute) and Tuesday 28 (Boxing Day
//!   substitute). Christmas on a Sunday: Monday 26 is Boxing Day and Tuesday 27 the Christmas
//!   Day substitute. Boxing Day on a Saturday: Monday 28 is its substitute.
//!
//! Names are GOV.UK's titles with ASCII apostrophes, with GOV.UK's "Substitute day" note
//! folded into the name as GOV.UK's web page shows it ("Boxing Day (substitute day)").
//!
//! # One-off changes
//!
//! Royal Proclamations under section 1(3) of the Banking and Financial Dealings Act 1971 have
//! moved regular holidays and added extra ones. These are kept as data in [`ONE_OFFS`], each
//! row with its source note:
//!
//! - 1995: Early May bank holiday moved from Monday 1 May to Monday 8 May (VE Day 50th).
//! - 1999: Friday 31 December, millennium.
//! - 2002: Spring bank holiday moved from Monday 27 May to Tuesday 4 June; Monday 3 June,
//!   Golden Jubilee.
//! - 2011: Friday 29 April, royal wedding.
//! - 2012: Spring bank holiday moved from Monday 28 May to Monday 4 June; Tuesday 5 June,
//!   Diamond Jubilee.
//! - 2020: Early May bank holiday moved from Monday 4 May to Friday 8 May (VE Day 75th).
//! - 2022: Spring bank holiday moved from Monday 30 May to Thursday 2 June; Friday 3 June,
//!   Platinum Jubilee; Monday 19 September, State Funeral of Queen Elizabeth II.
//! - 2023: Monday 8 May, coronation of King Charles III.
//!
//! **Assumption:** every one-off applies in all three regions. For 2012, 2020, 2022 and 2023
//! this is what GOV.UK publishes (its Scotland list for 2022 has the moved Spring bank
//! holiday on 2 June and the Platinum Jubilee on 3 June, like the others). The 1995, 1999,
//! 2002 and 2011 changes predate GOV.UK's published lists and are taken as UK-wide, as
//! proclaimed. When a new one-off is proclaimed, add a row to the table.
//!
//! # Accuracy and limits
//!
//! - Tests compare the output with GOV.UK's published lists: every England and Wales year
//!   from 2015 to 2027, and several Scotland and Northern Ireland years.
//! - The rules are today's, applied to every year. The only historical start date modelled is
//!   St Andrew's Day (2007 onwards). Years before 1995 may differ from what was in force then
//!   (for example, the Early May bank holiday dates from 1978, and older one-offs such as
//!   the 1977 Silver Jubilee or the 1981 royal wedding are not in the table).
//! - Future years are the regular rules plus the table: a one-off proclaimed later will be
//!   missing until the table is updated.
//! - Scotland's calendar is its *bank* holidays. Scottish public holidays are largely set
//!   locally and are not modelled.
//! - Dates are those `time` can represent (years −9999 to 9999).
//!
//! # Sources
//!
//! - GOV.UK, "UK bank holidays": <https://www.gov.uk/bank-holidays> (also as JSON at
//!   <https://www.gov.uk/bank-holidays.json>).
//! - Banking and Financial Dealings Act 1971, section 1 and Schedule 1:
//!   <https://www.legislation.gov.uk/ukpga/1971/80>. Some holidays are listed in the
//!   Schedule; others (including substitute days and every one-off above) are appointed by
//!   Royal Proclamation under section 1(3); Good Friday and Christmas Day are common-law
//!   holidays in England, Wales and Northern Ireland.
//! - St Andrew's Day Bank Holiday (Scotland) Act 2007 (asp 2):
//!   <https://www.legislation.gov.uk/asp/2007/2>. 30 November, or the next Monday when it
//!   falls on a weekend.

mod error;
mod holidays;
mod one_offs;
mod parse;
mod region;
mod working;

pub use error::CalendarError;
pub use holidays::{bank_holiday_name, bank_holidays, easter_sunday};
pub use one_offs::{Change, ONE_OFFS, OneOff};
pub use parse::parse_date;
pub use region::Region;
pub use working::{add_working_days, is_working_day, working_days_between};
