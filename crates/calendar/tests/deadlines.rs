//! Working days, deadlines, and parsing regions and dates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use steward_calendar::{
    CalendarError, Region, add_working_days, bank_holiday_name, is_working_day, parse_date,
    working_days_between,
};
use time::{Date, Weekday};

const EW: Region = Region::EnglandAndWales;
const SCOT: Region = Region::Scotland;
const NI: Region = Region::NorthernIreland;

fn d(s: &str) -> Date {
    parse_date(s).unwrap()
}

fn due(region: Region, received: &str, n: u32) -> String {
    add_working_days(region, d(received), n).to_string()
}

// ---------------------------------------------------------------------------------------------
// Working days.

#[test]
fn working_days_are_weekdays_that_are_not_bank_holidays() {
    assert!(is_working_day(EW, d("2026-12-24"))); // Thursday
    assert!(!is_working_day(EW, d("2026-12-25"))); // Christmas, Friday
    assert!(!is_working_day(EW, d("2026-12-26"))); // Saturday
    assert!(!is_working_day(EW, d("2026-12-27"))); // Sunday
    assert!(!is_working_day(EW, d("2026-12-28"))); // Boxing Day substitute
    assert!(is_working_day(EW, d("2026-12-29")));
    // Easter Monday: a holiday in England and Wales and Northern Ireland, not in Scotland.
    assert!(!is_working_day(EW, d("2026-04-06")));
    assert!(!is_working_day(NI, d("2026-04-06")));
    assert!(is_working_day(SCOT, d("2026-04-06")));
    // The moved 2022 Spring bank holiday: 30 May was a working day.
    assert!(is_working_day(EW, d("2022-05-30")));
    assert!(!is_working_day(EW, d("2022-06-02")));
    assert_eq!(
        bank_holiday_name(EW, d("2026-12-28")),
        Some("Boxing Day (substitute day)")
    );
    assert_eq!(bank_holiday_name(EW, d("2026-12-29")), None);
}

// ---------------------------------------------------------------------------------------------
// Deadlines.

#[test]
fn ten_days_over_christmas_and_new_year() {
    // Received Friday 18 December 2026. Working days: 21, 22, 23, 24 Dec (1-4); 25 Dec and
    // Monday 28 Dec (Boxing Day substitute) are holidays; 29, 30, 31 Dec (5-7); 1 Jan is a
    // holiday; 4, 5, 6 Jan (8-10).
    assert_eq!(due(EW, "2026-12-18", 10), "2027-01-06");
    assert_eq!(due(NI, "2026-12-18", 10), "2027-01-06");
    // Scotland also has 2 January, a Saturday in 2027, so Monday 4 January is off too.
    assert_eq!(due(SCOT, "2026-12-18", 10), "2027-01-07");
}

#[test]
fn day_one_is_the_first_working_day_after_receipt() {
    // Friday, n = 1: the next Monday.
    assert_eq!(due(EW, "2026-03-06", 1), "2026-03-09");
    // Friday before the Early May bank holiday: Tuesday.
    assert_eq!(due(EW, "2026-05-01", 1), "2026-05-05");
    // Any weekday: the next day.
    assert_eq!(due(EW, "2026-03-10", 1), "2026-03-11");
    assert_eq!(due(EW, "2026-03-10", 10), "2026-03-24");
}

#[test]
fn received_on_a_bank_holiday() {
    // Good Friday 2026; Easter Monday (6 April) is also off in England and Wales.
    assert_eq!(due(EW, "2026-04-03", 1), "2026-04-07");
    assert_eq!(due(EW, "2026-04-03", 10), "2026-04-20");
    // Scotland works on Easter Monday.
    assert_eq!(due(SCOT, "2026-04-03", 1), "2026-04-06");
    assert_eq!(due(SCOT, "2026-04-03", 10), "2026-04-17");
    // Christmas Day 2026 (Friday).
    assert_eq!(due(EW, "2026-12-25", 1), "2026-12-29");
}

#[test]
fn received_on_a_weekend() {
    // Saturday 2 May 2026; Monday 4 May is the Early May bank holiday.
    assert_eq!(due(EW, "2026-05-02", 1), "2026-05-05");
    assert_eq!(due(EW, "2026-05-02", 10), "2026-05-18");
    // Sunday 8 March 2026.
    assert_eq!(due(EW, "2026-03-08", 1), "2026-03-09");
    // Saturday and Sunday of the same weekend give the same due date.
    assert_eq!(due(EW, "2026-03-07", 10), due(EW, "2026-03-08", 10));
}

#[test]
fn across_the_platinum_jubilee() {
    // Friday 27 May 2022. Monday 30 May is a working day (the holiday moved); 2 and 3 June
    // are holidays. 30, 31 May, 1 June (1-3); 6-10 June (4-8); 13, 14 June (9-10).
    assert_eq!(due(EW, "2022-05-27", 10), "2022-06-14");
    assert_eq!(due(SCOT, "2022-05-27", 10), "2022-06-14");
    assert_eq!(due(NI, "2022-05-27", 10), "2022-06-14");
    assert_eq!(due(EW, "2022-05-27", 1), "2022-05-30");
}

#[test]
fn across_the_coronation() {
    // Friday 28 April 2023. Monday 1 May (Early May) and Monday 8 May (coronation) are off:
    // 2-5 May (1-4); 9-12 May (5-8); 15, 16 May (9-10).
    assert_eq!(due(EW, "2023-04-28", 10), "2023-05-16");
    assert_eq!(due(SCOT, "2023-04-28", 10), "2023-05-16");
}

#[test]
fn across_the_state_funeral() {
    // Friday 16 September 2022; Monday 19 September is off: 20-23 September (1-4),
    // 26-30 September (5-9), Monday 3 October (10).
    assert_eq!(due(EW, "2022-09-16", 1), "2022-09-20");
    assert_eq!(due(NI, "2022-09-16", 10), "2022-10-03");
}

#[test]
fn across_regional_holidays() {
    // St Andrew's Day 2025 is Sunday 30 November, observed Monday 1 December in Scotland only.
    assert_eq!(due(SCOT, "2025-11-28", 1), "2025-12-02");
    assert_eq!(due(EW, "2025-11-28", 1), "2025-12-01");
    // Battle of the Boyne 2025 is Saturday 12 July, observed Monday 14 July in NI only.
    assert_eq!(due(NI, "2025-07-11", 1), "2025-07-15");
    assert_eq!(due(EW, "2025-07-11", 1), "2025-07-14");
    // Summer bank holiday: first Monday of August in Scotland, last elsewhere.
    assert_eq!(due(SCOT, "2026-07-31", 1), "2026-08-04");
    assert_eq!(due(EW, "2026-07-31", 1), "2026-08-03");
    assert_eq!(due(EW, "2026-08-28", 1), "2026-09-01");
    assert_eq!(due(SCOT, "2026-08-28", 1), "2026-08-31");
}

#[test]
fn zero_days_is_the_day_of_receipt() {
    for received in ["2026-03-10", "2026-03-07", "2026-12-25"] {
        for region in Region::ALL {
            assert_eq!(due(region, received, 0), received);
        }
    }
}

#[test]
fn the_due_date_is_always_a_working_day() {
    let mut received = d("2019-12-01");
    while received < d("2028-01-31") {
        for region in Region::ALL {
            for n in [1, 5, 10, 20] {
                let due = add_working_days(region, received, n);
                assert!(is_working_day(region, due), "{region} {received} +{n}");
                assert!(due > received);
            }
        }
        received = received.next_day().unwrap();
    }
}

#[test]
fn counting_stops_at_the_end_of_representable_dates() {
    let last = d("9999-12-31");
    assert_eq!(add_working_days(EW, last, 1), last);
    assert_eq!(add_working_days(EW, d("9999-12-30"), 10), last);
    // 9999-12-30 is a Thursday, 9999-12-31 a Friday.
    assert_eq!(add_working_days(EW, d("9999-12-30"), 1), last);
}

// ---------------------------------------------------------------------------------------------
// Working days between.

#[test]
fn overdue_by_working_days() {
    // Due Wednesday 6 January 2027; on Friday 8 January it is 2 working days overdue.
    assert_eq!(
        working_days_between(EW, d("2027-01-06"), d("2027-01-08")),
        2
    );
    // Before the due date the count is negative: 2 working days left.
    assert_eq!(
        working_days_between(EW, d("2027-01-08"), d("2027-01-06")),
        -2
    );
    assert_eq!(
        working_days_between(EW, d("2027-01-06"), d("2027-01-06")),
        0
    );
    // Over Christmas 2026: only 29 December is a working day after 24 December.
    assert_eq!(
        working_days_between(EW, d("2026-12-24"), d("2026-12-29")),
        1
    );
    assert_eq!(
        working_days_between(EW, d("2026-12-24"), d("2026-12-28")),
        0
    );
    // From a Saturday to the Tuesday after the Early May bank holiday.
    assert_eq!(
        working_days_between(EW, d("2026-05-02"), d("2026-05-05")),
        1
    );
    // Ending on a weekend.
    assert_eq!(
        working_days_between(EW, d("2026-03-06"), d("2026-03-08")),
        0
    );
    // Easter Monday counts in Scotland only.
    assert_eq!(
        working_days_between(EW, d("2026-04-02"), d("2026-04-07")),
        1
    );
    assert_eq!(
        working_days_between(SCOT, d("2026-04-02"), d("2026-04-07")),
        2
    );
}

#[test]
fn working_days_in_a_year() {
    // 2026 (England and Wales): 261 weekdays, 8 bank holidays.
    assert_eq!(
        working_days_between(EW, d("2025-12-31"), d("2026-12-31")),
        253
    );
    // 2022 (England and Wales): 260 weekdays, 10 bank holidays.
    assert_eq!(
        working_days_between(EW, d("2021-12-31"), d("2022-12-31")),
        250
    );
    // 2022 (Scotland): 260 weekdays, 11 bank holidays.
    assert_eq!(
        working_days_between(SCOT, d("2021-12-31"), d("2022-12-31")),
        249
    );
}

#[test]
fn between_inverts_add() {
    let mut received = d("2019-12-20");
    while received < d("2023-02-01") {
        for region in Region::ALL {
            for n in [0, 1, 2, 7, 10, 30, 250] {
                let due = add_working_days(region, received, n);
                assert_eq!(
                    working_days_between(region, received, due),
                    i64::from(n),
                    "{region} {received} +{n}"
                );
                assert_eq!(working_days_between(region, due, received), -i64::from(n));
            }
        }
        received = received.next_day().unwrap();
    }
}

/// The arithmetic count against walking the days one by one.
#[test]
fn between_matches_a_day_by_day_count() {
    let start = d("2019-12-01");
    let dates: Vec<Date> = (0..1600)
        .step_by(59)
        .map(|i| Date::from_julian_day(start.to_julian_day() + i).unwrap())
        .collect();
    for region in Region::ALL {
        for &from in &dates {
            for &to in &dates {
                let mut expected = 0i64;
                let (lo, hi, sign) = if from <= to {
                    (from, to, 1)
                } else {
                    (to, from, -1)
                };
                let mut day = lo;
                while day < hi {
                    day = day.next_day().unwrap();
                    if is_working_day(region, day) {
                        expected += 1;
                    }
                }
                assert_eq!(
                    working_days_between(region, from, to),
                    sign * expected,
                    "{region} {from} {to}"
                );
            }
        }
    }
}

#[test]
fn between_over_long_spans() {
    // 400 Gregorian years hold exactly 20871 weeks, so 104355 weekdays.
    let from = d("1999-12-31");
    let to = d("2399-12-31");
    let holidays: i64 = (2000..=2399)
        .map(|y| steward_calendar::bank_holidays(EW, y).len() as i64)
        .sum();
    assert_eq!(working_days_between(EW, from, to), 104_355 - holidays);
    assert_eq!(from.weekday(), Weekday::Friday);
}

// ---------------------------------------------------------------------------------------------
// Parsing.

#[test]
fn regions_parse_and_print() {
    for (text, region) in [
        ("england-and-wales", EW),
        ("scotland", SCOT),
        ("northern-ireland", NI),
    ] {
        assert_eq!(text.parse::<Region>(), Ok(region));
        assert_eq!(region.as_str(), text);
        assert_eq!(region.to_string(), text);
    }
}

#[test]
fn unknown_regions_are_rejected_with_the_options() {
    for bad in [
        "",
        "england",
        "wales",
        "Scotland",
        "england_and_wales",
        " scotland",
        "uk",
    ] {
        let err = bad.parse::<Region>().unwrap_err();
        assert_eq!(
            err,
            CalendarError::UnknownRegion {
                given: bad.to_owned()
            }
        );
        let message = err.to_string();
        assert!(message.contains(&format!("{bad:?}")), "{message}");
        for region in Region::ALL {
            assert!(message.contains(region.as_str()), "{message}");
        }
    }
    assert_eq!(
        "wales".parse::<Region>().unwrap_err().to_string(),
        "unknown region \"wales\": expected one of england-and-wales, scotland, northern-ireland"
    );
}

#[test]
fn dates_parse() {
    assert_eq!(d("2026-12-18").to_string(), "2026-12-18");
    assert_eq!(d(" 2024-02-29\n").to_string(), "2024-02-29");
    assert_eq!(d("0001-01-01").to_string(), "0001-01-01");
    assert_eq!(d("9999-12-31").to_string(), "9999-12-31");
}

#[test]
fn bad_dates_are_rejected_clearly() {
    let message = |s: &str| parse_date(s).unwrap_err().to_string();
    for shape in [
        "",
        "2026/12/18",
        "18-12-2026",
        "2026-1-5",
        "2026-12-18T00:00",
        "2026-12",
        "2026-12-18-01",
        "+2026-12-18",
        "20261218",
        "２０２６-12-18",
        "2026-1a-18",
    ] {
        assert_eq!(
            message(shape),
            format!("invalid date {shape:?}: expected YYYY-MM-DD, e.g. 2026-12-18"),
        );
    }
    assert_eq!(
        message("2026-13-01"),
        "invalid date \"2026-13-01\": month 13 does not exist (expected 01 to 12)"
    );
    assert_eq!(
        message("2026-00-10"),
        "invalid date \"2026-00-10\": month 00 does not exist (expected 01 to 12)"
    );
    assert_eq!(
        message("2023-02-29"),
        "invalid date \"2023-02-29\": February 2023 has no day 29 (it has 28 days)"
    );
    assert_eq!(
        message("2026-04-31"),
        "invalid date \"2026-04-31\": April 2026 has no day 31 (it has 30 days)"
    );
    assert_eq!(
        message("2026-04-00"),
        "invalid date \"2026-04-00\": April 2026 has no day 00 (it has 30 days)"
    );
    assert!(matches!(
        parse_date("x"),
        Err(CalendarError::InvalidDate { input, .. }) if input == "x"
    ));
}
