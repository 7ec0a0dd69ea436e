//! `YYYY-MM-DD HH:MM:SS` (UTC) to and from Unix seconds, without a time-zone database:
//! CDR times are either UTC already or epoch values.

/// Parses `YYYY-MM-DD HH:MM:SS` as UTC into Unix seconds. Exactly that shape (19 bytes,
/// zero-padded), a real calendar date, hours 0-23, minutes and seconds 0-59.
pub fn parse_utc(s: &[u8]) -> Option<i64> {
    let [
        y0,
        y1,
        y2,
        y3,
        b'-',
        mo0,
        mo1,
        b'-',
        d0,
        d1,
        b' ',
        h0,
        h1,
        b':',
        mi0,
        mi1,
        b':',
        s0,
        s1,
    ] = *s
    else {
        return None;
    };
    let year = digits(&[y0, y1, y2, y3])?;
    let month = digits(&[mo0, mo1])?;
    let day = digits(&[d0, d1])?;
    let hour = digits(&[h0, h1])?;
    let minute = digits(&[mi0, mi1])?;
    let second = digits(&[s0, s1])?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Formats Unix seconds as `YYYY-MM-DD HH:MM:SS` in UTC (the inverse of [`parse_utc`] for
/// years 0 to 9999).
pub fn format_utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

fn digits(ds: &[u8]) -> Option<i64> {
    ds.iter().try_fold(0i64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(parse_utc(b"1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_utc(b"2009-01-14 23:51:15"), Some(1_231_977_075));
        assert_eq!(parse_utc(b"2017-06-20 09:49:22"), Some(1_497_952_162));
        assert_eq!(parse_utc(b"2000-02-29 12:00:00"), Some(951_825_600));
        assert_eq!(format_utc(1_231_977_075), "2009-01-14 23:51:15");
        assert_eq!(format_utc(-1), "1969-12-31 23:59:59");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b"2009-01-14T23:51:15"[..],
            b"2009-1-14 23:51:15",
            b"2009-02-29 00:00:00",
            b"2009-13-01 00:00:00",
            b"2009-01-14 24:00:00",
            b"2009-01-14 23:51:15 ",
            b"",
            b"1231977075",
        ] {
            assert_eq!(parse_utc(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn round_trips_every_day_for_a_few_centuries() {
        let mut t = parse_utc(b"1900-01-01 00:00:00").unwrap_or_default();
        let end = parse_utc(b"2300-01-01 00:00:00").unwrap_or_default();
        while t < end {
            assert_eq!(parse_utc(format_utc(t).as_bytes()), Some(t));
            t += 86_400 + 3_661;
        }
    }
}
