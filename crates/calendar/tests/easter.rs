//! Easter Sunday against known dates, 1900-2100.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use steward_calendar::{easter_sunday, parse_date};
use time::{Month, Weekday};

#[test]
fn known_easter_dates() {
    let known = [
        "1900-04-15",
        "1903-04-12",
        "1913-03-23",
        "1916-04-23",
        "1921-03-27",
        "1943-04-25", // the latest possible date
        "1954-04-18",
        "1961-04-02",
        "1970-03-29",
        "1981-04-19",
        "1990-04-15",
        "2000-04-23",
        "2008-03-23",
        "2011-04-24",
        "2013-03-31",
        "2015-04-05",
        "2016-03-27",
        "2017-04-16",
        "2018-04-01",
        "2019-04-21",
        "2020-04-12",
        "2021-04-04",
        "2022-04-17",
        "2023-04-09",
        "2024-03-31",
        "2025-04-20",
        "2026-04-05",
        "2027-03-28",
        "2038-04-25",
        "2049-04-18",
        "2057-04-22",
        "2076-04-19",
        "2085-04-15",
        "2095-04-24",
        "2100-03-28",
    ];
    for date in known {
        let date = parse_date(date).unwrap();
        assert_eq!(easter_sunday(date.year()), Some(date), "{}", date.year());
    }
}

#[test]
fn extremes_outside_1900_to_2100() {
    // 22 March is the earliest possible Easter: 1818 and 2285.
    assert_eq!(easter_sunday(1818), Some(parse_date("1818-03-22").unwrap()));
    assert_eq!(easter_sunday(2285), Some(parse_date("2285-03-22").unwrap()));
}

#[test]
fn every_easter_1900_to_2100_is_a_sunday_between_22_march_and_25_april() {
    for year in 1900..=2100 {
        let easter = easter_sunday(year).unwrap();
        assert_eq!(easter.year(), year);
        assert_eq!(easter.weekday(), Weekday::Sunday, "{easter}");
        let in_range = match easter.month() {
            Month::March => easter.day() >= 22,
            Month::April => easter.day() <= 25,
            _ => false,
        };
        assert!(in_range, "{easter}");
    }
}

#[test]
fn out_of_range_years() {
    assert_eq!(easter_sunday(10_000), None);
    assert_eq!(easter_sunday(i32::MAX), None);
    assert_eq!(easter_sunday(i32::MIN), None);
    assert!(easter_sunday(9999).is_some());
    assert!(easter_sunday(-9999).is_some());
}
