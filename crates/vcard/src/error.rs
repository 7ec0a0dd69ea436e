//! Errors from reading vCard text. Every variant that concerns a card says which card
//! (1-based, in input order) and which physical line (1-based) of the input.

/// Why a vCard input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VcardError {
    /// The input holds no card at all (empty, or only blank lines).
    #[error("no vCard found: the input is empty")]
    Empty,

    /// Something other than `BEGIN:VCARD` where a card must start.
    #[error("line {line}: expected BEGIN:VCARD, found {found:?}")]
    ExpectedBegin { line: usize, found: String },

    /// `END:VCARD` with no open card.
    #[error("line {line}: END:VCARD without a matching BEGIN:VCARD")]
    UnmatchedEnd { line: usize },

    /// The input ended inside a card.
    #[error(
        "card {card} (BEGIN:VCARD at line {begin_line}): the input ends at line {line} \
         without END:VCARD; the card is truncated"
    )]
    MissingEnd {
        card: usize,
        begin_line: usize,
        line: usize,
    },

    /// A new `BEGIN:VCARD` before the open card's `END:VCARD`.
    #[error(
        "card {card} (BEGIN:VCARD at line {begin_line}): BEGIN:VCARD again at line {line} \
         before END:VCARD; the card is truncated"
    )]
    NestedBegin {
        card: usize,
        begin_line: usize,
        line: usize,
    },

    /// A line inside a card that is not a usable content line.
    #[error("card {card}, line {line}: {reason}")]
    Malformed {
        card: usize,
        line: usize,
        reason: String,
    },

    /// Embedded binary data (PHOTO) that is not valid base64.
    #[error("card {card}, line {line}: {property}: invalid base64 data ({detail})")]
    InvalidBase64 {
        card: usize,
        line: usize,
        property: String,
        detail: String,
    },

    /// [`crate::parse_one`] was given more than one card.
    #[error(
        "expected exactly one vCard, found {found} (the second BEGIN:VCARD is at line {second_line})"
    )]
    NotOneCard { found: usize, second_line: usize },
}

impl VcardError {
    /// The 1-based card index the error concerns, when it concerns one card.
    pub fn card(&self) -> Option<usize> {
        match self {
            Self::MissingEnd { card, .. }
            | Self::NestedBegin { card, .. }
            | Self::Malformed { card, .. }
            | Self::InvalidBase64 { card, .. } => Some(*card),
            Self::Empty
            | Self::ExpectedBegin { .. }
            | Self::UnmatchedEnd { .. }
            | Self::NotOneCard { .. } => None,
        }
    }

    /// The 1-based physical line of the input the error points at.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Empty => None,
            Self::ExpectedBegin { line, .. }
            | Self::UnmatchedEnd { line }
            | Self::MissingEnd { line, .. }
            | Self::NestedBegin { line, .. }
            | Self::Malformed { line, .. }
            | Self::InvalidBase64 { line, .. } => Some(*line),
            Self::NotOneCard { second_line, .. } => Some(*second_line),
        }
    }
}

/// A short, printable excerpt of a raw line for error messages.
pub(crate) fn excerpt(raw: &[u8]) -> String {
    const MAX: usize = 60;
    let text = String::from_utf8_lossy(raw);
    let mut out: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}
