//! Errors from parsing regions and dates.

/// What went wrong when reading a region or a date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CalendarError {
    /// The text is not one of the three region names.
    #[error(
        "unknown region {given:?}: expected one of england-and-wales, scotland, northern-ireland"
    )]
    UnknownRegion {
        /// The text as given.
        given: String,
    },
    /// The text is not a real calendar date written as `YYYY-MM-DD`.
    #[error("invalid date {input:?}: {reason}")]
    InvalidDate {
        /// The text as given.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
}
