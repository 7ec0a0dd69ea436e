//! The three UK bank-holiday calendars.

use std::fmt;
use std::str::FromStr;

use crate::CalendarError;

/// A UK bank-holiday calendar, as GOV.UK divides them.
///
/// The spellings accepted by [`FromStr`] and returned by [`Region::as_str`] are GOV.UK's
/// division names, which are also the values of `jurisdiction` in a Steward policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Region {
    /// England and Wales (`england-and-wales`).
    EnglandAndWales,
    /// Scotland (`scotland`).
    Scotland,
    /// Northern Ireland (`northern-ireland`).
    NorthernIreland,
}

impl Region {
    /// Every region, in the order GOV.UK lists them.
    pub const ALL: [Region; 3] = [
        Region::EnglandAndWales,
        Region::Scotland,
        Region::NorthernIreland,
    ];

    /// The region's name as written in configuration: `england-and-wales`, `scotland` or
    /// `northern-ireland`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Region::EnglandAndWales => "england-and-wales",
            Region::Scotland => "scotland",
            Region::NorthernIreland => "northern-ireland",
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Region {
    type Err = CalendarError;

    /// Accepts exactly `england-and-wales`, `scotland` or `northern-ireland` (lower case, as
    /// written in a policy file). Anything else is [`CalendarError::UnknownRegion`], whose
    /// message lists the three options.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Region::ALL
            .into_iter()
            .find(|region| region.as_str() == s)
            .ok_or_else(|| CalendarError::UnknownRegion {
                given: s.to_owned(),
            })
    }
}
