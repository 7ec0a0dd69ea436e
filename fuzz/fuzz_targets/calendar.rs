//! The working-day calendar's input: a date (`YYYY-MM-DD`), a region and a count of
//! working days, one per line. Properties: a date read and written again is the same
//! text; counting `n` working days forward lands on a working day that is `n` working
//! days on (and `-n` back), unless the count ran into the last representable date.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_calendar::{
    Region, add_working_days, is_working_day, parse_date, working_days_between,
};
use time::macros::date;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let (Some(day), Some(region)) = (lines.next(), lines.next()) else {
        return;
    };
    let Ok(received) = parse_date(day) else {
        return;
    };
    let written = format!(
        "{:04}-{:02}-{:02}",
        received.year(),
        u8::from(received.month()),
        received.day()
    );
    assert_eq!(written, day.trim(), "read {day:?} as {received}");
    let Ok(region) = region.parse::<Region>() else {
        return;
    };
    // Bounded, so that one input is one quick run.
    let n = lines
        .next()
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(10)
        % 2_000;
    let due = add_working_days(region, received, n);
    if due == date!(9999 - 12 - 31) {
        return;
    }
    assert!(due >= received);
    assert_eq!(
        working_days_between(region, received, due),
        i64::from(n),
        "{received} + {n}"
    );
    assert_eq!(
        working_days_between(region, due, received),
        -i64::from(n),
        "{due} - {n}"
    );
    if n > 0 {
        assert!(is_working_day(region, due), "{received} + {n} = {due}");
    }
});
