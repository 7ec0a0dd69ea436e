//! Bank holidays that the regular rules do not produce: one-off changes made by Royal
//! Proclamation under section 1(3) of the Banking and Financial Dealings Act 1971.
//!
//! Kept as data so that a new proclamation is one new row (with its source), not new code.

use time::Date;
use time::macros::date;

use crate::Region;

/// Regions a one-off applies to. Every change so far was made for the whole UK.
const UK: &[Region] = &Region::ALL;

/// What a one-off does to a year's list of bank holidays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A regular holiday moved: the rules put it on `from`; that year it was on `to`, under
    /// `name`, and `from` was an ordinary working day.
    Moved {
        /// The date the regular rules give.
        from: Date,
        /// The date it was actually taken.
        to: Date,
        /// Its name on the new date.
        name: &'static str,
    },
    /// An extra bank holiday.
    Extra {
        /// The day.
        date: Date,
        /// Its name.
        name: &'static str,
    },
}

/// One change to the regular rules, with the regions it covered and where it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneOff {
    /// The change.
    pub change: Change,
    /// The calendars it applied to.
    pub regions: &'static [Region],
    /// Where the change is recorded, and any assumption made about it.
    pub source: &'static str,
}

impl OneOff {
    /// The year the change applies to (of the date it lands on).
    pub const fn year(&self) -> i32 {
        match self.change {
            Change::Moved { to, .. } => to.year(),
            Change::Extra { date, .. } => date.year(),
        }
    }
}

/// Every one-off change known to this crate, oldest first.
///
/// Names follow GOV.UK's titles where GOV.UK published the year (2012 onwards), with ASCII
/// apostrophes. The years before 2012 are not in GOV.UK's data; their names are descriptive.
pub const ONE_OFFS: &[OneOff] = &[
    OneOff {
        change: Change::Moved {
            from: date!(1995 - 05 - 01),
            to: date!(1995 - 05 - 08),
            name: "Early May bank holiday (VE day)",
        },
        regions: UK,
        source: "Royal Proclamation for the 50th anniversary of VE Day: the May Day holiday \
                 moved from Monday 1 May to Monday 8 May 1995. Predates GOV.UK's published \
                 list; assumed UK-wide, as in 2020.",
    },
    OneOff {
        change: Change::Extra {
            date: date!(1999 - 12 - 31),
            name: "Millennium bank holiday",
        },
        regions: UK,
        source: "Royal Proclamation: Friday 31 December 1999 an extra bank holiday throughout \
                 the UK for the millennium. Predates GOV.UK's published list.",
    },
    OneOff {
        change: Change::Moved {
            from: date!(2002 - 05 - 27),
            to: date!(2002 - 06 - 04),
            name: "Spring bank holiday",
        },
        regions: UK,
        source: "Royal Proclamation for the Golden Jubilee: the Spring bank holiday moved from \
                 Monday 27 May to Tuesday 4 June 2002. Predates GOV.UK's published list; \
                 assumed UK-wide, as in 2012 and 2022.",
    },
    OneOff {
        change: Change::Extra {
            date: date!(2002 - 06 - 03),
            name: "Golden Jubilee bank holiday",
        },
        regions: UK,
        source: "Royal Proclamation: Monday 3 June 2002 an extra bank holiday throughout the UK \
                 for the Golden Jubilee of Queen Elizabeth II.",
    },
    OneOff {
        change: Change::Extra {
            date: date!(2011 - 04 - 29),
            name: "Royal wedding bank holiday",
        },
        regions: UK,
        source: "Royal Proclamation: Friday 29 April 2011 an extra bank holiday throughout the \
                 UK for the wedding of Prince William and Catherine Middleton.",
    },
    OneOff {
        change: Change::Moved {
            from: date!(2012 - 05 - 28),
            to: date!(2012 - 06 - 04),
            name: "Spring bank holiday",
        },
        regions: UK,
        source: "Royal Proclamation for the Diamond Jubilee: Spring bank holiday moved from \
                 Monday 28 May to Monday 4 June 2012. GOV.UK lists 4 June in all three \
                 divisions.",
    },
    OneOff {
        change: Change::Extra {
            date: date!(2012 - 06 - 05),
            name: "Queen's Diamond Jubilee",
        },
        regions: UK,
        source: "Royal Proclamation: Tuesday 5 June 2012 an extra bank holiday for the Diamond \
                 Jubilee. GOV.UK lists it in all three divisions.",
    },
    OneOff {
        change: Change::Moved {
            from: date!(2020 - 05 - 04),
            to: date!(2020 - 05 - 08),
            name: "Early May bank holiday (VE day)",
        },
        regions: UK,
        source: "Royal Proclamation for the 75th anniversary of VE Day: Early May bank holiday \
                 moved from Monday 4 May to Friday 8 May 2020. GOV.UK lists 8 May in all three \
                 divisions.",
    },
    OneOff {
        change: Change::Moved {
            from: date!(2022 - 05 - 30),
            to: date!(2022 - 06 - 02),
            name: "Spring bank holiday",
        },
        regions: UK,
        source: "Royal Proclamation for the Platinum Jubilee: Spring bank holiday moved from \
                 Monday 30 May to Thursday 2 June 2022. GOV.UK lists 2 June in all three \
                 divisions, Scotland included.",
    },
    OneOff {
        change: Change::Extra {
            date: date!(2022 - 06 - 03),
            name: "Platinum Jubilee bank holiday",
        },
        regions: UK,
        source: "Royal Proclamation: Friday 3 June 2022 an extra bank holiday for the Platinum \
                 Jubilee. GOV.UK lists it in all three divisions, Scotland included.",
    },
    OneOff {
        change: Change::Extra {
            date: date!(2022 - 09 - 19),
            name: "Bank Holiday for the State Funeral of Queen Elizabeth II",
        },
        regions: UK,
        source: "Royal Proclamation: Monday 19 September 2022 a bank holiday for the State \
                 Funeral of Queen Elizabeth II. GOV.UK lists it in all three divisions.",
    },
    OneOff {
        change: Change::Extra {
            date: date!(2023 - 05 - 08),
            name: "Bank holiday for the coronation of King Charles III",
        },
        regions: UK,
        source: "Royal Proclamation: Monday 8 May 2023 a bank holiday for the coronation of \
                 King Charles III. GOV.UK lists it in all three divisions.",
    },
];
