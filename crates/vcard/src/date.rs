//! Birthdays: vCard 2.1/3.0/4.0 date forms ↔ one canonical ISO 8601 spelling.
//!
//! BDAY is read here rather than from calcard: calcard 0.3's legacy (2.1/3.0) date reader
//! takes a basic-format date such as `19850412` as the year 19850412 (saturated), which
//! RFC 2426 allows and real exports use.
//!
//! Canonical (what [`crate::Contact::birthday`] holds): `YYYY-MM-DD`, `YYYY-MM`, `YYYY`,
//! `--MM-DD`, `--MM`, `---DD`, optionally followed by `THH[:MM[:SS]]` and a zone `Z` or
//! `±HH[:MM]`.

/// A parsed partial date-time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PartialDate {
    pub year: Option<u16>,
    pub month: Option<u8>,
    pub day: Option<u8>,
    pub hour: Option<u8>,
    pub minute: Option<u8>,
    pub second: Option<u8>,
    /// Offset in minutes east of UTC; `Some(0)` is written `Z`.
    pub offset: Option<i16>,
}

struct Cursor<'a> {
    s: &'a [u8],
}

impl Cursor<'_> {
    fn eat(&mut self, b: u8) -> bool {
        if self.s.first() == Some(&b) {
            self.s = self.s.get(1..).unwrap_or_default();
            true
        } else {
            false
        }
    }

    fn digits(&mut self, n: usize) -> Option<u16> {
        let chunk = self.s.get(..n)?;
        if !chunk.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.s = self.s.get(n..).unwrap_or_default();
        Some(
            chunk
                .iter()
                .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0')),
        )
    }

    fn digits2(&mut self) -> Option<u8> {
        self.digits(2).and_then(|v| u8::try_from(v).ok())
    }

    fn peek_digit(&self) -> bool {
        self.s.first().is_some_and(u8::is_ascii_digit)
    }
}

/// Reads basic (`19850412`, `--0412`, `T1430`) and extended (`1985-04-12`, `--04-12`,
/// `T14:30`) forms. `None` when the text is not a date or is not a real calendar value.
pub(crate) fn parse(text: &str) -> Option<PartialDate> {
    let mut c = Cursor {
        s: text.trim().as_bytes(),
    };
    let mut d = PartialDate::default();
    if c.eat(b'-') {
        if !c.eat(b'-') {
            return None;
        }
        if c.eat(b'-') {
            d.day = Some(c.digits2()?);
        } else {
            d.month = Some(c.digits2()?);
            let dash = c.eat(b'-');
            if dash || c.peek_digit() {
                d.day = Some(c.digits2()?);
            }
        }
    } else if c.peek_digit() {
        d.year = Some(c.digits(4)?);
        let dash = c.eat(b'-');
        if dash || c.peek_digit() {
            d.month = Some(c.digits2()?);
            // Basic form needs all of YYYYMMDD; `YYYY-MM` is only extended.
            if c.eat(b'-') || (!dash && c.peek_digit()) {
                d.day = Some(c.digits2()?);
            } else if !dash {
                return None;
            }
        }
    }
    if c.eat(b'T') || c.eat(b't') {
        d.hour = Some(c.digits2()?);
        let colon = c.eat(b':');
        if colon || c.peek_digit() {
            d.minute = Some(c.digits2()?);
            if c.eat(b':') || (!colon && c.peek_digit()) {
                d.second = Some(c.digits2()?);
            }
        }
        if c.eat(b'Z') || c.eat(b'z') {
            d.offset = Some(0);
        } else if c.s.first().is_some_and(|b| *b == b'+' || *b == b'-') {
            let minus = c.eat(b'-');
            if !minus {
                c.eat(b'+');
            }
            let h = i16::from(c.digits2()?);
            c.eat(b':');
            let m = if c.peek_digit() {
                i16::from(c.digits2()?)
            } else {
                0
            };
            let total = h * 60 + m;
            d.offset = Some(if minus { -total } else { total });
        }
    }
    if !c.s.is_empty() || d == PartialDate::default() || !d.is_plausible() {
        return None;
    }
    Some(d)
}

impl PartialDate {
    fn is_plausible(&self) -> bool {
        self.month.is_none_or(|m| (1..=12).contains(&m))
            && self.day.is_none_or(|d| (1..=31).contains(&d))
            && self.hour.is_none_or(|h| h <= 23)
            && self.minute.is_none_or(|m| m <= 59)
            && self.second.is_none_or(|s| s <= 60)
            && self.offset.is_none_or(|o| o.abs() < 24 * 60)
            && (self.day.is_none() || self.month.is_some() || self.year.is_none())
    }

    /// `extended`: ISO 8601 extended (`1985-04-12T14:30:00+01:00`, canonical and vCard
    /// 3.0); otherwise vCard 4.0's basic form (`19850412T143000+0100`).
    pub fn format(&self, extended: bool) -> String {
        let mut s = String::new();
        let sep = if extended { "-" } else { "" };
        match (self.year, self.month, self.day) {
            (Some(y), Some(m), Some(d)) => s.push_str(&format!("{y:04}{sep}{m:02}{sep}{d:02}")),
            // `YYYY-MM` is the only year-month form even in vCard 4.0.
            (Some(y), Some(m), None) => s.push_str(&format!("{y:04}-{m:02}")),
            (Some(y), _, _) => s.push_str(&format!("{y:04}")),
            (None, Some(m), Some(d)) => s.push_str(&format!("--{m:02}{sep}{d:02}")),
            (None, Some(m), None) => s.push_str(&format!("--{m:02}")),
            (None, None, Some(d)) => s.push_str(&format!("---{d:02}")),
            (None, None, None) => {}
        }
        if let Some(h) = self.hour {
            let colon = if extended { ":" } else { "" };
            s.push_str(&format!("T{h:02}"));
            if let Some(m) = self.minute {
                s.push_str(&format!("{colon}{m:02}"));
                if let Some(sec) = self.second {
                    s.push_str(&format!("{colon}{sec:02}"));
                }
            }
            match self.offset {
                Some(0) => s.push('Z'),
                Some(o) => {
                    let sign = if o < 0 { '-' } else { '+' };
                    let (h, m) = (o.abs() / 60, o.abs() % 60);
                    s.push_str(&format!("{sign}{h:02}{colon}{m:02}"));
                }
                None => {}
            }
        }
        s
    }
}

/// The canonical spelling of a vCard BDAY value, or `None` when it is not a date.
pub(crate) fn canonical(text: &str) -> Option<String> {
    parse(text).map(|d| d.format(true))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        for (input, want) in [
            ("2012-06-06", "2012-06-06"),
            ("20120606", "2012-06-06"),
            ("1985-04", "1985-04"),
            ("1985", "1985"),
            ("--0203", "--02-03"),
            ("--02-03", "--02-03"),
            ("--02", "--02"),
            ("---12", "---12"),
            ("19531015T231000Z", "1953-10-15T23:10:00Z"),
            ("1953-10-15T23:10:00-05:00", "1953-10-15T23:10:00-05:00"),
            ("19961022T1400+0130", "1996-10-22T14:00+01:30"),
        ] {
            assert_eq!(canonical(input).as_deref(), Some(want), "{input}");
        }
        for bad in [
            "circa 1800",
            "",
            "198504",
            "2012-13-01",
            "2012-06-06x",
            "--",
            "12",
        ] {
            assert_eq!(canonical(bad), None, "{bad}");
        }
    }

    #[test]
    fn basic_form_round_trips() {
        for canon in [
            "2012-06-06",
            "--02-03",
            "1985-04",
            "1953-10-15T23:10:00Z",
            "---12",
        ] {
            let d = parse(canon).unwrap();
            assert_eq!(canonical(&d.format(false)).as_deref(), Some(canon));
        }
        assert_eq!(parse("2012-06-06").unwrap().format(false), "20120606");
        assert_eq!(parse("--02-03").unwrap().format(false), "--0203");
    }
}
