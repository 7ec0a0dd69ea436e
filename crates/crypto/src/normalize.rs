//! Normalization of identifiers before blind indexing.
//!
//! A blind index matches only byte-identical input, so every identifier is brought to one
//! canonical form first. Error messages describe the problem but never repeat the input,
//! because the input is personal data and errors end up in logs.

use std::fmt;
use std::str::FromStr;

use phonenumber::Type;
use phonenumber::country;
use phonenumber::metadata::DATABASE;

/// Why an identifier could not be normalized. The message is meant for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalizeError {
    message: String,
}

impl NormalizeError {
    fn new(message: impl Into<String>) -> Self {
        NormalizeError {
            message: message.into(),
        }
    }

    /// The human-readable message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for NormalizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NormalizeError {}

/// Maximum length of an e-mail address in bytes (RFC 5321 path limit less the brackets).
pub const EMAIL_MAX_LEN: usize = 254;
/// Maximum length of the local part (before the `@`) in bytes (RFC 5321).
pub const EMAIL_LOCAL_MAX_LEN: usize = 64;
/// Maximum length of a username in characters.
pub const USERNAME_MAX_LEN: usize = 64;

/// Trims and lowercases an e-mail address and checks its basic shape.
///
/// The whole address is lowercased: the local part is case-sensitive in theory but not
/// at any real provider, and matching must not depend on how someone typed it. Checks:
/// exactly one `@`; non-empty local part of at most 64 bytes; a domain containing a dot,
/// with no empty labels; no whitespace or control characters; at most 254 bytes.
///
/// # Errors
/// A [`NormalizeError`] saying which rule failed.
pub fn email(raw: &str) -> Result<String, NormalizeError> {
    let s = raw.trim().to_lowercase();
    if s.is_empty() {
        return Err(NormalizeError::new("e-mail address is empty"));
    }
    if s.len() > EMAIL_MAX_LEN {
        return Err(NormalizeError::new(format!(
            "e-mail address is too long ({} bytes; at most {EMAIL_MAX_LEN} allowed)",
            s.len()
        )));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(NormalizeError::new(
            "e-mail address contains whitespace or control characters",
        ));
    }
    let ats = s.matches('@').count();
    if ats != 1 {
        return Err(NormalizeError::new(format!(
            "e-mail address must contain exactly one '@' (found {ats})"
        )));
    }
    let Some((local, domain)) = s.split_once('@') else {
        return Err(NormalizeError::new(
            "e-mail address must contain exactly one '@'",
        ));
    };
    if local.is_empty() {
        return Err(NormalizeError::new(
            "e-mail address has nothing before the '@'",
        ));
    }
    if local.len() > EMAIL_LOCAL_MAX_LEN {
        return Err(NormalizeError::new(format!(
            "e-mail address has more than {EMAIL_LOCAL_MAX_LEN} bytes before the '@'"
        )));
    }
    if domain.is_empty() {
        return Err(NormalizeError::new(
            "e-mail address has no domain after the '@'",
        ));
    }
    if !domain.contains('.') {
        return Err(NormalizeError::new(
            "e-mail domain must contain a dot (e.g. example.com)",
        ));
    }
    if domain.split('.').any(str::is_empty) {
        return Err(NormalizeError::new(
            "e-mail domain has an empty label (leading, trailing or double dot)",
        ));
    }
    Ok(s)
}

/// Parses a phone number and returns it in E.164 form (e.g. `+447700900123`).
///
/// Numbers without an international prefix are read as national numbers of
/// `default_region`, a two-letter ISO 3166 region code such as `"GB"` (case-insensitive).
/// Spaces, dashes, dots, parentheses and a UK-style `(0)` are accepted. Any extension
/// (`ext. 123`) is dropped, as E.164 has none. Uses libphonenumber's metadata bundled in
/// the `phonenumber` crate. A number is accepted if that metadata considers it valid, or,
/// failing that, if its length is possible for its country (so reserved ranges such as
/// Ofcom's drama numbers, and ranges allocated after the metadata was built, still
/// normalize); otherwise it is rejected.
///
/// # Errors
/// A [`NormalizeError`] naming the problem (unknown region, no number, too short, too
/// long, not a valid number for its country).
pub fn phone(raw: &str, default_region: &str) -> Result<String, NormalizeError> {
    let number = read_phone(raw, default_region)?;
    // E.164 allows 15 digits with the country code; the metadata allows some countries
    // longer national numbers than that leaves.
    let digits = number.len().saturating_sub(1);
    if digits > 15 {
        return Err(NormalizeError::new(format!(
            "phone number is too long: {digits} digits with the country calling code, and \
             an international number has at most 15"
        )));
    }
    // What is stored must normalise to itself, or a search for the stored number would
    // not find it. A number rebuilt around a stray trunk prefix (`+43 (0))00((10 3` read
    // as `+430103`: read again, the `0` is a trunk prefix) or an international prefix
    // (`000262652924` in GB) would not.
    if number != raw.trim() && read_phone(&number, default_region).as_ref() != Ok(&number) {
        return Err(NormalizeError::new(
            "phone number is not valid: its digits do not make one number (check for a \
             stray 0, bracket or international prefix)",
        ));
    }
    Ok(number)
}

fn read_phone(raw: &str, default_region: &str) -> Result<String, NormalizeError> {
    let region_code = default_region.trim().to_ascii_uppercase();
    let region = country::Id::from_str(&region_code).map_err(|_| {
        NormalizeError::new(format!(
            "unknown default region {region_code:?}; use a two-letter ISO 3166 code such as \"GB\""
        ))
    })?;
    let s = raw.trim();
    if s.is_empty() {
        return Err(NormalizeError::new("phone number is empty"));
    }
    if !s.chars().any(|c| c.is_ascii_digit()) {
        return Err(NormalizeError::new("phone number contains no digits"));
    }
    // libphonenumber skips what it does not read; a NUL or an escape sequence among the
    // digits is a corrupt value, not a separator.
    if s.chars().any(char::is_control) {
        return Err(NormalizeError::new(
            "phone number contains a control character",
        ));
    }
    // A number in international form is read without the default region: under some
    // regions' rules the parser strips their own prefix from it (with "US", the `1` of
    // `+49 1440774`), so that one stored number would read as two.
    let first = if s.starts_with('+') {
        phonenumber::parse(None, s)
    } else {
        phonenumber::parse(Some(region), s)
    }
    .map_err(parse_error)?;
    if first.is_valid() {
        return Ok(e164(&first));
    }
    // Metadata of every region sharing this calling code (+44: GB, GG, IM, JE).
    let code = first.code().value();
    let metas = DATABASE.by_code(&code).unwrap_or_default();
    // The parser strips a trunk prefix such as the "0" in "+44 (0)20 ..." using the
    // *default* region's rules; read the number again under its own region's rules.
    let own = first.country().id().or_else(|| {
        metas
            .iter()
            .find(|m| m.is_main_country_for_code())
            .or(metas.first())
            .and_then(|m| m.id().parse().ok())
    });
    let number = match own {
        // An international number is read under its own region's rules whatever the
        // default region, so that it reads the same under every default.
        Some(own) if own != region || s.starts_with('+') => {
            match phonenumber::parse(Some(own), s) {
                Ok(second) if second.is_valid() => return Ok(e164(&second)),
                Ok(second) if second.code().value() == code => second,
                _ => first,
            }
        }
        _ => first,
    };
    // Not in a known allocated range. Accept it if its length is possible for its country
    // (libphonenumber's "possible number" test): reserved ranges (e.g. Ofcom's drama
    // numbers) and ranges newer than the bundled metadata still appear in real records.
    let digits = number.national().to_string().len();
    let mut possible: Vec<u16> = metas
        .iter()
        .flat_map(|m| {
            DIALLABLE_TYPES
                .iter()
                .filter_map(|&t| m.descriptors().get(t))
        })
        .flat_map(|d| d.possible_length().iter().copied())
        .collect();
    possible.sort_unstable();
    possible.dedup();
    if possible.iter().any(|&len| usize::from(len) == digits) {
        return Ok(e164(&number));
    }
    let expected = if possible.is_empty() {
        String::new()
    } else {
        let lens: Vec<String> = possible.iter().map(u16::to_string).collect();
        format!(", but numbers there have {} digits", lens.join(" or "))
    };
    Err(NormalizeError::new(format!(
        "phone number is not valid: it has {digits} digits after country calling code \
         +{code}{expected} (check the digits, or add the international prefix if it is not a \
         {region_code} number)"
    )))
}

/// Number types whose lengths count as "possible" for a full subscriber number (short
/// codes and emergency numbers do not).
const DIALLABLE_TYPES: [Type; 11] = [
    Type::Unknown, // the general descriptor
    Type::FixedLine,
    Type::Mobile,
    Type::TollFree,
    Type::PremiumRate,
    Type::SharedCost,
    Type::PersonalNumber,
    Type::Voip,
    Type::Pager,
    Type::Uan,
    Type::Voicemail,
];

fn e164(number: &phonenumber::PhoneNumber) -> String {
    number.format().mode(phonenumber::Mode::E164).to_string()
}

fn parse_error(err: phonenumber::ParseError) -> NormalizeError {
    use phonenumber::ParseError as P;
    NormalizeError::new(match err {
        P::NoNumber => "phone number is not recognisable as a phone number",
        P::InvalidCountryCode => "phone number has an unknown international country calling code",
        P::TooShortAfterIdd | P::TooShortNsn => "phone number is too short",
        P::TooLong => "phone number is too long",
        P::MalformedInteger(_) => "phone number has malformed digits",
    })
}

/// Trims and lowercases a username and checks it is 1–64 characters from
/// `a-z 0-9 . _ @ -`.
///
/// # Errors
/// A [`NormalizeError`] saying which rule failed.
pub fn username(raw: &str) -> Result<String, NormalizeError> {
    let s = raw.trim().to_lowercase();
    if s.is_empty() {
        return Err(NormalizeError::new("username is empty"));
    }
    let n = s.chars().count();
    if n > USERNAME_MAX_LEN {
        return Err(NormalizeError::new(format!(
            "username is too long ({n} characters; at most {USERNAME_MAX_LEN} allowed)"
        )));
    }
    if let Some(bad) = s
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '@' | '-'))
    {
        let shown = if bad.is_whitespace() || bad.is_control() {
            format!("{:?}", bad)
        } else {
            format!("'{bad}'")
        };
        return Err(NormalizeError::new(format!(
            "username contains {shown}, which is not allowed; use only letters a-z, digits, \
             '.', '_', '@' and '-'"
        )));
    }
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn email_trims_and_lowercases() {
        assert_eq!(
            email(" Alice@Example.COM ").as_deref(),
            Ok("alice@example.com")
        );
        assert_eq!(
            email("a.b+tag@sub.example.co.uk").as_deref(),
            Ok("a.b+tag@sub.example.co.uk")
        );
    }

    #[test]
    fn email_rejects_bad_shapes_with_messages() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("alice.example.com", "exactly one '@' (found 0)"),
            ("a@b@example.com", "exactly one '@' (found 2)"),
            ("@example.com", "nothing before"),
            ("alice@", "no domain"),
            ("alice@localhost", "must contain a dot"),
            ("alice@example..com", "empty label"),
            ("alice@.example.com", "empty label"),
            ("alice@example.com.", "empty label"),
            ("al ice@example.com", "whitespace"),
        ];
        for (input, needle) in cases {
            let err = email(input).expect_err(input);
            assert!(
                err.message().contains(needle),
                "{input:?}: message {:?} should contain {needle:?}",
                err.message()
            );
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(
            email(&long)
                .expect_err("long")
                .message()
                .contains("too long")
        );
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(
            email(&long_local)
                .expect_err("local")
                .message()
                .contains("64 bytes")
        );
    }

    #[test]
    fn email_error_does_not_echo_input() {
        let err = email("secret.person@nowhere").expect_err("no dot");
        assert!(!err.to_string().contains("secret.person"));
    }

    #[test]
    fn phone_national_gb() {
        assert_eq!(phone("07700 900123", "GB").as_deref(), Ok("+447700900123"));
        assert_eq!(phone("07700 900123", "gb").as_deref(), Ok("+447700900123"));
    }

    #[test]
    fn phone_international_with_trunk_zero() {
        assert_eq!(
            phone("+44 (0)20 7946 0958", "GB").as_deref(),
            Ok("+442079460958")
        );
        // The default region does not matter when the number is international.
        assert_eq!(
            phone("+44 (0)20 7946 0958", "US").as_deref(),
            Ok("+442079460958")
        );
        assert_eq!(
            phone("0044 20 7946 0958", "GB").as_deref(),
            Ok("+442079460958")
        );
        assert_eq!(phone("(202) 555-0143", "US").as_deref(), Ok("+12025550143"));
    }

    /// Found by the `phone` fuzz target: a stray `(0)` and brackets made an Austrian
    /// number that does not normalise to itself.
    #[test]
    fn phone_results_normalise_to_themselves() {
        let err = phone("+43 (0))00((10 3", "GB").expect_err("not one number");
        assert!(err.message().contains("stray 0"), "{}", err.message());
        let ok = phone("+44 (0)20 7946 0000", "US").unwrap();
        assert_eq!(phone(&ok, "GB").unwrap(), ok);
        assert!(phone("000262652924", "GB").is_err());
        let err = phone("32353132353110", "DE").expect_err("16 digits");
        assert!(err.message().contains("at most 15"), "{}", err.message());
        // An international number reads the same whatever the default region.
        let de = phone("1440774", "DE").unwrap();
        for region in ["GB", "DE", "US", "SG"] {
            assert_eq!(phone(&de, region).unwrap(), de, "{region}");
        }
    }

    /// Found by the `phone` fuzz target: NULs before the digits were skipped, and
    /// `"\0\0\0\09820"` became `+499820`.
    #[test]
    fn phone_refuses_control_characters() {
        for raw in ["\0\0\0\09820", "+44 20\u{1b}[0m 7946 0000", "07700\r900123"] {
            let err = phone(raw, "DE").expect_err(raw);
            assert!(
                err.message().contains("control character"),
                "{}",
                err.message()
            );
        }
        // A tab is a control character too; surrounding whitespace is trimmed first.
        assert_eq!(phone(" +44 20 7946 0000\n", "GB").unwrap(), "+442079460000");
    }

    #[test]
    fn phone_rejects_garbage_with_messages() {
        let err = phone("not a phone", "GB").expect_err("letters");
        assert!(err.message().contains("no digits"), "{}", err.message());
        let err = phone("12", "GB").expect_err("short");
        assert!(err.message().contains("phone number"), "{}", err.message());
        let err = phone("", "GB").expect_err("empty");
        assert!(err.message().contains("empty"), "{}", err.message());
        let err = phone("07700 900123", "XX").expect_err("region");
        assert!(
            err.message().contains("unknown default region"),
            "{}",
            err.message()
        );
        let err = phone("01234", "GB").expect_err("invalid");
        assert!(
            err.message()
                .contains("4 digits after country calling code +44"),
            "{}",
            err.message()
        );
        let err = phone("+999 1234 5678", "GB").expect_err("no such country");
        assert!(
            err.message().contains("country calling code"),
            "{}",
            err.message()
        );
        let err = phone("+44 20 7946 09581234567", "GB").expect_err("long");
        assert!(!err.message().contains("7946"), "{}", err.message());
    }

    #[test]
    fn username_rules() {
        assert_eq!(username("  Alice.Smith_1 ").as_deref(), Ok("alice.smith_1"));
        assert_eq!(username("bob@pbx-2").as_deref(), Ok("bob@pbx-2"));
        assert_eq!(username(&"a".repeat(64)).map(|s| s.len()), Ok(64));
        assert!(username("").expect_err("empty").message().contains("empty"));
        assert!(
            username(&"a".repeat(65))
                .expect_err("long")
                .message()
                .contains("too long")
        );
        let err = username("bob!").expect_err("bang");
        assert!(err.message().contains("'!'"), "{}", err.message());
        let err = username("bob smith").expect_err("space");
        assert!(err.message().contains("' '"), "{}", err.message());
        assert!(username("zoë").is_err());
    }
}
