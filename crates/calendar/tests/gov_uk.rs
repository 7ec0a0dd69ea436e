//! Bank holiday lists against GOV.UK's published lists (https://www.gov.uk/bank-holidays),
//! written out by hand, date and name. GOV.UK's apostrophes are typographic; ours are ASCII.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use steward_calendar::{Change, ONE_OFFS, Region, bank_holiday_name, bank_holidays, parse_date};
use time::{Date, Weekday};

type Expected = &'static [(&'static str, &'static str)];

fn d(s: &str) -> Date {
    parse_date(s).unwrap()
}

fn actual(region: Region, year: i32) -> Vec<(String, &'static str)> {
    bank_holidays(region, year)
        .into_iter()
        .map(|(date, name)| (date.to_string(), name))
        .collect()
}

fn check(region: Region, year: i32, expected: Expected) {
    let expected: Vec<(String, &str)> = expected
        .iter()
        .map(|(date, name)| ((*date).to_owned(), *name))
        .collect();
    assert_eq!(actual(region, year), expected, "{region} {year}");
}

// ---------------------------------------------------------------------------------------------
// England and Wales, every year 2015-2027.

const EW_2015: Expected = &[
    ("2015-01-01", "New Year's Day"),
    ("2015-04-03", "Good Friday"),
    ("2015-04-06", "Easter Monday"),
    ("2015-05-04", "Early May bank holiday"),
    ("2015-05-25", "Spring bank holiday"),
    ("2015-08-31", "Summer bank holiday"),
    ("2015-12-25", "Christmas Day"),
    ("2015-12-28", "Boxing Day (substitute day)"),
];

const EW_2016: Expected = &[
    ("2016-01-01", "New Year's Day"),
    ("2016-03-25", "Good Friday"),
    ("2016-03-28", "Easter Monday"),
    ("2016-05-02", "Early May bank holiday"),
    ("2016-05-30", "Spring bank holiday"),
    ("2016-08-29", "Summer bank holiday"),
    ("2016-12-26", "Boxing Day"),
    ("2016-12-27", "Christmas Day (substitute day)"),
];

const EW_2017: Expected = &[
    ("2017-01-02", "New Year's Day (substitute day)"),
    ("2017-04-14", "Good Friday"),
    ("2017-04-17", "Easter Monday"),
    ("2017-05-01", "Early May bank holiday"),
    ("2017-05-29", "Spring bank holiday"),
    ("2017-08-28", "Summer bank holiday"),
    ("2017-12-25", "Christmas Day"),
    ("2017-12-26", "Boxing Day"),
];

const EW_2018: Expected = &[
    ("2018-01-01", "New Year's Day"),
    ("2018-03-30", "Good Friday"),
    ("2018-04-02", "Easter Monday"),
    ("2018-05-07", "Early May bank holiday"),
    ("2018-05-28", "Spring bank holiday"),
    ("2018-08-27", "Summer bank holiday"),
    ("2018-12-25", "Christmas Day"),
    ("2018-12-26", "Boxing Day"),
];

const EW_2019: Expected = &[
    ("2019-01-01", "New Year's Day"),
    ("2019-04-19", "Good Friday"),
    ("2019-04-22", "Easter Monday"),
    ("2019-05-06", "Early May bank holiday"),
    ("2019-05-27", "Spring bank holiday"),
    ("2019-08-26", "Summer bank holiday"),
    ("2019-12-25", "Christmas Day"),
    ("2019-12-26", "Boxing Day"),
];

const EW_2020: Expected = &[
    ("2020-01-01", "New Year's Day"),
    ("2020-04-10", "Good Friday"),
    ("2020-04-13", "Easter Monday"),
    ("2020-05-08", "Early May bank holiday (VE day)"),
    ("2020-05-25", "Spring bank holiday"),
    ("2020-08-31", "Summer bank holiday"),
    ("2020-12-25", "Christmas Day"),
    ("2020-12-28", "Boxing Day (substitute day)"),
];

const EW_2021: Expected = &[
    ("2021-01-01", "New Year's Day"),
    ("2021-04-02", "Good Friday"),
    ("2021-04-05", "Easter Monday"),
    ("2021-05-03", "Early May bank holiday"),
    ("2021-05-31", "Spring bank holiday"),
    ("2021-08-30", "Summer bank holiday"),
    ("2021-12-27", "Christmas Day (substitute day)"),
    ("2021-12-28", "Boxing Day (substitute day)"),
];

const EW_2022: Expected = &[
    ("2022-01-03", "New Year's Day (substitute day)"),
    ("2022-04-15", "Good Friday"),
    ("2022-04-18", "Easter Monday"),
    ("2022-05-02", "Early May bank holiday"),
    ("2022-06-02", "Spring bank holiday"),
    ("2022-06-03", "Platinum Jubilee bank holiday"),
    ("2022-08-29", "Summer bank holiday"),
    (
        "2022-09-19",
        "Bank Holiday for the State Funeral of Queen Elizabeth II",
    ),
    ("2022-12-26", "Boxing Day"),
    ("2022-12-27", "Christmas Day (substitute day)"),
];

const EW_2023: Expected = &[
    ("2023-01-02", "New Year's Day (substitute day)"),
    ("2023-04-07", "Good Friday"),
    ("2023-04-10", "Easter Monday"),
    ("2023-05-01", "Early May bank holiday"),
    (
        "2023-05-08",
        "Bank holiday for the coronation of King Charles III",
    ),
    ("2023-05-29", "Spring bank holiday"),
    ("2023-08-28", "Summer bank holiday"),
    ("2023-12-25", "Christmas Day"),
    ("2023-12-26", "Boxing Day"),
];

const EW_2024: Expected = &[
    ("2024-01-01", "New Year's Day"),
    ("2024-03-29", "Good Friday"),
    ("2024-04-01", "Easter Monday"),
    ("2024-05-06", "Early May bank holiday"),
    ("2024-05-27", "Spring bank holiday"),
    ("2024-08-26", "Summer bank holiday"),
    ("2024-12-25", "Christmas Day"),
    ("2024-12-26", "Boxing Day"),
];

const EW_2025: Expected = &[
    ("2025-01-01", "New Year's Day"),
    ("2025-04-18", "Good Friday"),
    ("2025-04-21", "Easter Monday"),
    ("2025-05-05", "Early May bank holiday"),
    ("2025-05-26", "Spring bank holiday"),
    ("2025-08-25", "Summer bank holiday"),
    ("2025-12-25", "Christmas Day"),
    ("2025-12-26", "Boxing Day"),
];

const EW_2026: Expected = &[
    ("2026-01-01", "New Year's Day"),
    ("2026-04-03", "Good Friday"),
    ("2026-04-06", "Easter Monday"),
    ("2026-05-04", "Early May bank holiday"),
    ("2026-05-25", "Spring bank holiday"),
    ("2026-08-31", "Summer bank holiday"),
    ("2026-12-25", "Christmas Day"),
    ("2026-12-28", "Boxing Day (substitute day)"),
];

const EW_2027: Expected = &[
    ("2027-01-01", "New Year's Day"),
    ("2027-03-26", "Good Friday"),
    ("2027-03-29", "Easter Monday"),
    ("2027-05-03", "Early May bank holiday"),
    ("2027-05-31", "Spring bank holiday"),
    ("2027-08-30", "Summer bank holiday"),
    ("2027-12-27", "Christmas Day (substitute day)"),
    ("2027-12-28", "Boxing Day (substitute day)"),
];

#[test]
fn england_and_wales_2015_to_2027_match_gov_uk() {
    let years: [(i32, Expected); 13] = [
        (2015, EW_2015),
        (2016, EW_2016),
        (2017, EW_2017),
        (2018, EW_2018),
        (2019, EW_2019),
        (2020, EW_2020),
        (2021, EW_2021),
        (2022, EW_2022),
        (2023, EW_2023),
        (2024, EW_2024),
        (2025, EW_2025),
        (2026, EW_2026),
        (2027, EW_2027),
    ];
    for (year, expected) in years {
        check(Region::EnglandAndWales, year, expected);
    }
}

// ---------------------------------------------------------------------------------------------
// Scotland.

#[test]
fn scotland_2019_st_andrews_saturday_and_first_monday_of_august() {
    check(
        Region::Scotland,
        2019,
        &[
            ("2019-01-01", "New Year's Day"),
            ("2019-01-02", "2nd January"),
            ("2019-04-19", "Good Friday"),
            ("2019-05-06", "Early May bank holiday"),
            ("2019-05-27", "Spring bank holiday"),
            ("2019-08-05", "Summer bank holiday"),
            ("2019-12-02", "St Andrew's Day (substitute day)"),
            ("2019-12-25", "Christmas Day"),
            ("2019-12-26", "Boxing Day"),
        ],
    );
}

#[test]
fn scotland_2020_ve_day() {
    check(
        Region::Scotland,
        2020,
        &[
            ("2020-01-01", "New Year's Day"),
            ("2020-01-02", "2nd January"),
            ("2020-04-10", "Good Friday"),
            ("2020-05-08", "Early May bank holiday (VE day)"),
            ("2020-05-25", "Spring bank holiday"),
            ("2020-08-03", "Summer bank holiday"),
            ("2020-11-30", "St Andrew's Day"),
            ("2020-12-25", "Christmas Day"),
            ("2020-12-28", "Boxing Day (substitute day)"),
        ],
    );
}

#[test]
fn scotland_2021_second_january_on_a_saturday() {
    check(
        Region::Scotland,
        2021,
        &[
            ("2021-01-01", "New Year's Day"),
            ("2021-01-04", "2nd January (substitute day)"),
            ("2021-04-02", "Good Friday"),
            ("2021-05-03", "Early May bank holiday"),
            ("2021-05-31", "Spring bank holiday"),
            ("2021-08-02", "Summer bank holiday"),
            ("2021-11-30", "St Andrew's Day"),
            ("2021-12-27", "Christmas Day (substitute day)"),
            ("2021-12-28", "Boxing Day (substitute day)"),
        ],
    );
}

#[test]
fn scotland_2022_new_year_on_a_saturday_and_the_jubilee() {
    check(
        Region::Scotland,
        2022,
        &[
            ("2022-01-03", "New Year's Day (substitute day)"),
            ("2022-01-04", "2nd January (substitute day)"),
            ("2022-04-15", "Good Friday"),
            ("2022-05-02", "Early May bank holiday"),
            ("2022-06-02", "Spring bank holiday"),
            ("2022-06-03", "Platinum Jubilee bank holiday"),
            ("2022-08-01", "Summer bank holiday"),
            (
                "2022-09-19",
                "Bank Holiday for the State Funeral of Queen Elizabeth II",
            ),
            ("2022-11-30", "St Andrew's Day"),
            ("2022-12-26", "Boxing Day"),
            ("2022-12-27", "Christmas Day (substitute day)"),
        ],
    );
}

#[test]
fn scotland_2023_new_year_on_a_sunday_and_the_coronation() {
    check(
        Region::Scotland,
        2023,
        &[
            ("2023-01-02", "New Year's Day (substitute day)"),
            ("2023-01-03", "2nd January (substitute day)"),
            ("2023-04-07", "Good Friday"),
            ("2023-05-01", "Early May bank holiday"),
            (
                "2023-05-08",
                "Bank holiday for the coronation of King Charles III",
            ),
            ("2023-05-29", "Spring bank holiday"),
            ("2023-08-07", "Summer bank holiday"),
            ("2023-11-30", "St Andrew's Day"),
            ("2023-12-25", "Christmas Day"),
            ("2023-12-26", "Boxing Day"),
        ],
    );
}

#[test]
fn scotland_2024_st_andrews_saturday() {
    check(
        Region::Scotland,
        2024,
        &[
            ("2024-01-01", "New Year's Day"),
            ("2024-01-02", "2nd January"),
            ("2024-03-29", "Good Friday"),
            ("2024-05-06", "Early May bank holiday"),
            ("2024-05-27", "Spring bank holiday"),
            ("2024-08-05", "Summer bank holiday"),
            ("2024-12-02", "St Andrew's Day (substitute day)"),
            ("2024-12-25", "Christmas Day"),
            ("2024-12-26", "Boxing Day"),
        ],
    );
}

#[test]
fn scotland_2025_st_andrews_sunday() {
    check(
        Region::Scotland,
        2025,
        &[
            ("2025-01-01", "New Year's Day"),
            ("2025-01-02", "2nd January"),
            ("2025-04-18", "Good Friday"),
            ("2025-05-05", "Early May bank holiday"),
            ("2025-05-26", "Spring bank holiday"),
            ("2025-08-04", "Summer bank holiday"),
            ("2025-12-01", "St Andrew's Day (substitute day)"),
            ("2025-12-25", "Christmas Day"),
            ("2025-12-26", "Boxing Day"),
        ],
    );
}

#[test]
fn scotland_2027_second_january_on_a_saturday() {
    check(
        Region::Scotland,
        2027,
        &[
            ("2027-01-01", "New Year's Day"),
            ("2027-01-04", "2nd January (substitute day)"),
            ("2027-03-26", "Good Friday"),
            ("2027-05-03", "Early May bank holiday"),
            ("2027-05-31", "Spring bank holiday"),
            ("2027-08-02", "Summer bank holiday"),
            ("2027-11-30", "St Andrew's Day"),
            ("2027-12-27", "Christmas Day (substitute day)"),
            ("2027-12-28", "Boxing Day (substitute day)"),
        ],
    );
}

#[test]
fn scotland_has_no_easter_monday_and_no_st_andrews_day_before_2007() {
    for year in 1995..=2030 {
        let days = bank_holidays(Region::Scotland, year);
        assert!(
            days.iter().all(|(_, name)| *name != "Easter Monday"),
            "{year}"
        );
        let has_st_andrew = days
            .iter()
            .any(|(_, name)| name.starts_with("St Andrew's Day"));
        assert_eq!(has_st_andrew, year >= 2007, "{year}");
    }
}

// ---------------------------------------------------------------------------------------------
// Northern Ireland.

#[test]
fn northern_ireland_2019_st_patricks_sunday() {
    check(
        Region::NorthernIreland,
        2019,
        &[
            ("2019-01-01", "New Year's Day"),
            ("2019-03-18", "St Patrick's Day (substitute day)"),
            ("2019-04-19", "Good Friday"),
            ("2019-04-22", "Easter Monday"),
            ("2019-05-06", "Early May bank holiday"),
            ("2019-05-27", "Spring bank holiday"),
            ("2019-07-12", "Battle of the Boyne (Orangemen's Day)"),
            ("2019-08-26", "Summer bank holiday"),
            ("2019-12-25", "Christmas Day"),
            ("2019-12-26", "Boxing Day"),
        ],
    );
}

#[test]
fn northern_ireland_2020_boyne_sunday_and_ve_day() {
    check(
        Region::NorthernIreland,
        2020,
        &[
            ("2020-01-01", "New Year's Day"),
            ("2020-03-17", "St Patrick's Day"),
            ("2020-04-10", "Good Friday"),
            ("2020-04-13", "Easter Monday"),
            ("2020-05-08", "Early May bank holiday (VE day)"),
            ("2020-05-25", "Spring bank holiday"),
            (
                "2020-07-13",
                "Battle of the Boyne (Orangemen's Day) (substitute day)",
            ),
            ("2020-08-31", "Summer bank holiday"),
            ("2020-12-25", "Christmas Day"),
            ("2020-12-28", "Boxing Day (substitute day)"),
        ],
    );
}

#[test]
fn northern_ireland_2022_jubilee_and_state_funeral() {
    check(
        Region::NorthernIreland,
        2022,
        &[
            ("2022-01-03", "New Year's Day (substitute day)"),
            ("2022-03-17", "St Patrick's Day"),
            ("2022-04-15", "Good Friday"),
            ("2022-04-18", "Easter Monday"),
            ("2022-05-02", "Early May bank holiday"),
            ("2022-06-02", "Spring bank holiday"),
            ("2022-06-03", "Platinum Jubilee bank holiday"),
            ("2022-07-12", "Battle of the Boyne (Orangemen's Day)"),
            ("2022-08-29", "Summer bank holiday"),
            (
                "2022-09-19",
                "Bank Holiday for the State Funeral of Queen Elizabeth II",
            ),
            ("2022-12-26", "Boxing Day"),
            ("2022-12-27", "Christmas Day (substitute day)"),
        ],
    );
}

#[test]
fn northern_ireland_2024_st_patricks_sunday() {
    check(
        Region::NorthernIreland,
        2024,
        &[
            ("2024-01-01", "New Year's Day"),
            ("2024-03-18", "St Patrick's Day (substitute day)"),
            ("2024-03-29", "Good Friday"),
            ("2024-04-01", "Easter Monday"),
            ("2024-05-06", "Early May bank holiday"),
            ("2024-05-27", "Spring bank holiday"),
            ("2024-07-12", "Battle of the Boyne (Orangemen's Day)"),
            ("2024-08-26", "Summer bank holiday"),
            ("2024-12-25", "Christmas Day"),
            ("2024-12-26", "Boxing Day"),
        ],
    );
}

#[test]
fn northern_ireland_2025_boyne_saturday() {
    check(
        Region::NorthernIreland,
        2025,
        &[
            ("2025-01-01", "New Year's Day"),
            ("2025-03-17", "St Patrick's Day"),
            ("2025-04-18", "Good Friday"),
            ("2025-04-21", "Easter Monday"),
            ("2025-05-05", "Early May bank holiday"),
            ("2025-05-26", "Spring bank holiday"),
            (
                "2025-07-14",
                "Battle of the Boyne (Orangemen's Day) (substitute day)",
            ),
            ("2025-08-25", "Summer bank holiday"),
            ("2025-12-25", "Christmas Day"),
            ("2025-12-26", "Boxing Day"),
        ],
    );
}

#[test]
fn northern_ireland_2026_boyne_sunday() {
    check(
        Region::NorthernIreland,
        2026,
        &[
            ("2026-01-01", "New Year's Day"),
            ("2026-03-17", "St Patrick's Day"),
            ("2026-04-03", "Good Friday"),
            ("2026-04-06", "Easter Monday"),
            ("2026-05-04", "Early May bank holiday"),
            ("2026-05-25", "Spring bank holiday"),
            (
                "2026-07-13",
                "Battle of the Boyne (Orangemen's Day) (substitute day)",
            ),
            ("2026-08-31", "Summer bank holiday"),
            ("2026-12-25", "Christmas Day"),
            ("2026-12-28", "Boxing Day (substitute day)"),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// One-offs before 2015 and the table itself.

/// 2012 as GOV.UK publishes it, dates only: GOV.UK's 2012 Scotland list names 2 and 3 January
/// the other way round from its 2023 list (see the crate documentation); the dates agree.
#[test]
fn all_regions_2012_diamond_jubilee_dates() {
    let dates = |region| -> Vec<String> {
        bank_holidays(region, 2012)
            .into_iter()
            .map(|(date, _)| date.to_string())
            .collect()
    };
    assert_eq!(
        dates(Region::EnglandAndWales),
        [
            "2012-01-02",
            "2012-04-06",
            "2012-04-09",
            "2012-05-07",
            "2012-06-04",
            "2012-06-05",
            "2012-08-27",
            "2012-12-25",
            "2012-12-26",
        ]
    );
    assert_eq!(
        dates(Region::Scotland),
        [
            "2012-01-02",
            "2012-01-03",
            "2012-04-06",
            "2012-05-07",
            "2012-06-04",
            "2012-06-05",
            "2012-08-06",
            "2012-11-30",
            "2012-12-25",
            "2012-12-26",
        ]
    );
    assert_eq!(
        dates(Region::NorthernIreland),
        [
            "2012-01-02",
            "2012-03-19",
            "2012-04-06",
            "2012-04-09",
            "2012-05-07",
            "2012-06-04",
            "2012-06-05",
            "2012-07-12",
            "2012-08-27",
            "2012-12-25",
            "2012-12-26",
        ]
    );
    assert_eq!(
        bank_holiday_name(Region::Scotland, d("2012-06-05")),
        Some("Queen's Diamond Jubilee")
    );
    assert_eq!(bank_holiday_name(Region::Scotland, d("2012-05-28")), None);
}

#[test]
fn older_one_offs_apply_in_every_region() {
    for region in Region::ALL {
        assert_eq!(
            bank_holiday_name(region, d("1999-12-31")),
            Some("Millennium bank holiday")
        );
        assert_eq!(
            bank_holiday_name(region, d("2011-04-29")),
            Some("Royal wedding bank holiday")
        );
        assert_eq!(
            bank_holiday_name(region, d("2002-06-03")),
            Some("Golden Jubilee bank holiday")
        );
        assert_eq!(
            bank_holiday_name(region, d("2002-06-04")),
            Some("Spring bank holiday")
        );
        assert_eq!(bank_holiday_name(region, d("2002-05-27")), None);
        assert_eq!(
            bank_holiday_name(region, d("1995-05-08")),
            Some("Early May bank holiday (VE day)")
        );
        assert_eq!(bank_holiday_name(region, d("1995-05-01")), None);
    }
}

/// A "moved" row must move a date the rules actually produce, in every region it names, and
/// must land on a weekday not already a holiday; an extra day must be a weekday that is not
/// already a holiday. Otherwise the table is wrong, not merely redundant.
#[test]
fn one_off_table_is_consistent_with_the_rules() {
    assert!(!ONE_OFFS.is_empty());
    for one_off in ONE_OFFS {
        assert!(!one_off.source.is_empty());
        assert!(!one_off.regions.is_empty());
        for &region in one_off.regions {
            let year = one_off.year();
            let others: Vec<_> = ONE_OFFS
                .iter()
                .filter(|o| !std::ptr::eq(*o, one_off))
                .collect();
            // The list without this row: rules plus every other one-off of the year.
            let with = bank_holidays(region, year);
            match one_off.change {
                Change::Moved { from, to, name } => {
                    assert_eq!(from.year(), to.year());
                    assert!(
                        !with.iter().any(|(date, _)| *date == from),
                        "{from} still a holiday"
                    );
                    assert!(with.contains(&(to, name)), "{to} missing in {region}");
                    assert_ne!(to.weekday(), Weekday::Saturday);
                    assert_ne!(to.weekday(), Weekday::Sunday);
                    // The rules produce `from`: no other row adds it.
                    assert!(others.iter().all(|o| match o.change {
                        Change::Extra { date, .. } => date != from,
                        Change::Moved { to, .. } => to != from,
                    }));
                }
                Change::Extra { date, name } => {
                    assert!(with.contains(&(date, name)), "{date} missing in {region}");
                    assert_ne!(date.weekday(), Weekday::Saturday);
                    assert_ne!(date.weekday(), Weekday::Sunday);
                    assert_eq!(
                        with.iter().filter(|(day, _)| *day == date).count(),
                        1,
                        "{date} collides with another holiday in {region}"
                    );
                }
            }
        }
    }
    // Every moved-from date is a regular holiday: a Monday in May.
    for one_off in ONE_OFFS {
        if let Change::Moved { from, .. } = one_off.change {
            assert_eq!(from.weekday(), Weekday::Monday, "{from}");
            assert_eq!(from.month(), time::Month::May, "{from}");
        }
    }
}

#[test]
fn lists_are_sorted_unique_weekdays_and_complete() {
    for region in Region::ALL {
        for year in 1900..=2100 {
            let days = bank_holidays(region, year);
            assert!(
                days.windows(2).all(|w| w[0].0 < w[1].0),
                "{region} {year} not sorted/unique"
            );
            for (date, name) in &days {
                assert_eq!(date.year(), year, "{region} {name}");
                assert!(
                    !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday),
                    "{region} {date} {name} on a weekend"
                );
            }
            let regular = match region {
                Region::EnglandAndWales => 8,
                Region::Scotland if year >= 2007 => 9,
                Region::Scotland => 8,
                Region::NorthernIreland => 10,
            };
            let extras = ONE_OFFS
                .iter()
                .filter(|o| o.year() == year && matches!(o.change, Change::Extra { .. }))
                .count();
            assert_eq!(days.len(), regular + extras, "{region} {year}");
        }
    }
}

#[test]
fn years_time_cannot_represent_give_no_holidays() {
    assert!(bank_holidays(Region::EnglandAndWales, 10_000).is_empty());
    assert!(bank_holidays(Region::Scotland, i32::MIN).is_empty());
    assert_eq!(bank_holidays(Region::NorthernIreland, 9999).len(), 10);
}
