//! vCard for Steward: device contacts a user syncs (vCard 2.1/3.0/4.0 or JSON in) and the
//! employer's business directory (vCard 4.0 and 3.0 out).
//!
//! Reading is two layers. The framing layer splits the input into cards and unfolded content lines
//! and checks their shape, so that every error names the card (1-based) and the physical
//! line (1-based); `calcard` then parses each card's properties (parameters, escapes,
//! quoted-printable and charsets, base64, data: URIs). The result is mapped onto
//! [`Contact`], the subset Steward keeps. BDAY is read by this crate (see `date`), and
//! embedded photos are held to strict base64 rules, which calcard's decoder is not.
//!
//! ```
//! let card = b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:J\xc3\xb6rg\r\nTEL;TYPE=CELL:+44 20 7946 0000\r\nEND:VCARD\r\n";
//! let contact = steward_vcard::parse_one(card)?;
//! assert_eq!(contact.formatted_name.as_deref(), Some("Jörg"));
//! assert_eq!(contact.phones[0].types, ["cell"]);
//! let v4 = steward_vcard::to_vcard(&contact, steward_vcard::Version::V4);
//! assert_eq!(steward_vcard::parse_one(v4.as_bytes())?, contact);
//! # Ok::<(), steward_vcard::VcardError>(())
//! ```

mod date;
mod error;
mod frame;
mod model;
mod read;
mod validate;
mod write;

pub use error::VcardError;
pub use model::{Address, Contact, Photo, Typed, Version};
pub use validate::{FieldProblem, Limits, ValidationError};
pub use write::to_vcard;

/// Reads every card in `input` (vCard 2.1, 3.0 or 4.0; UTF-8, or 2.1 quoted-printable with
/// a CHARSET). Fails on the first problem, naming the card and line.
pub fn parse(input: &[u8]) -> Result<Vec<Contact>, VcardError> {
    frame::split_cards(input)?
        .iter()
        .map(read::read_card)
        .collect()
}

/// A card of a multi-card input, with where it begins (for messages about its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// 1-based position of the card in the input.
    pub card: usize,
    /// 1-based line of its `BEGIN:VCARD`.
    pub line: usize,
    pub contact: Contact,
}

/// [`parse`], keeping each card's position and first line, so that a problem found later
/// in a card's content (a field over a limit, say) can still name where the card is.
pub fn parse_located(input: &[u8]) -> Result<Vec<Located>, VcardError> {
    frame::split_cards(input)?
        .iter()
        .map(|raw| {
            Ok(Located {
                card: raw.index,
                line: raw.begin_line,
                contact: read::read_card(raw)?,
            })
        })
        .collect()
}

/// Reads exactly one card; more than one is an error naming where the second begins.
pub fn parse_one(input: &[u8]) -> Result<Contact, VcardError> {
    let cards = frame::split_cards(input)?;
    match cards.as_slice() {
        [card] => read::read_card(card),
        [_, second, ..] => Err(VcardError::NotOneCard {
            found: cards.len(),
            second_line: second.begin_line,
        }),
        [] => Err(VcardError::Empty),
    }
}
