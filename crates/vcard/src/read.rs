//! One framed card → [`Contact`], with calcard reading the properties.

use std::collections::HashMap;

use calcard::common::{Data, IanaString};
use calcard::vcard::{
    VCardEntry, VCardParameter, VCardParameterName, VCardParameterValue, VCardProperty, VCardValue,
};
use calcard::{Entry, Parser};

use crate::date;
use crate::error::VcardError;
use crate::frame::{RawCard, parse_head};
use crate::model::{Address, Contact, Photo, Typed};

pub(crate) fn read_card(raw: &RawCard) -> Result<Contact, VcardError> {
    let text = raw.text()?;
    let vcard = match Parser::new(&text).entry() {
        Entry::VCard(vcard) => vcard,
        other => {
            return Err(VcardError::Malformed {
                card: raw.index,
                line: raw.begin_line,
                reason: format!("calcard could not read the card: {other:?}"),
            });
        }
    };

    // Apple's grouped labels: itemN.X-ABLabel names the itemN.TEL / EMAIL / ADR.
    let labels: HashMap<String, String> = vcard
        .entries
        .iter()
        .filter(
            |e| matches!(&e.name, VCardProperty::Other(n) if n.eq_ignore_ascii_case("X-ABLabel")),
        )
        .filter_map(|e| {
            let group = e.group.as_ref()?.to_ascii_lowercase();
            let label = non_empty(joined_text(&e.values))?;
            Some((group, unwrap_apple_label(&label)))
        })
        .collect();
    let label_of = |e: &VCardEntry| {
        e.group
            .as_ref()
            .and_then(|g| labels.get(&g.to_ascii_lowercase()).cloned())
    };

    let mut contact = Contact::default();
    let mut seen_n = false;
    let mut notes = Vec::new();
    let mut photo_index = 0;
    for entry in &vcard.entries {
        match &entry.name {
            VCardProperty::Uid => set_once(&mut contact.uid, text_only(&entry.values)),
            VCardProperty::Fn => set_once(&mut contact.formatted_name, joined_text(&entry.values)),
            VCardProperty::N if !seen_n => {
                seen_n = true;
                contact.family_name = component(&entry.values, 0);
                contact.given_name = component(&entry.values, 1);
            }
            // The first ORG with a name or a unit gives both (a unit of one ORG is never
            // paired with the name of another).
            VCardProperty::Org
                if contact.organization.is_none() && contact.department.is_none() =>
            {
                contact.organization = component(&entry.values, 0);
                contact.department = component(&entry.values, 1);
            }
            VCardProperty::Title => set_once(&mut contact.title, joined_text(&entry.values)),
            VCardProperty::Note => notes.extend(non_empty(joined_text(&entry.values))),
            VCardProperty::Email => {
                if let Some(value) = non_empty(joined_text(&entry.values)) {
                    contact.emails.push(typed(entry, value, label_of(entry)));
                }
            }
            VCardProperty::Tel => {
                if let Some(value) = non_empty(joined_text(&entry.values)) {
                    let value = strip_tel_uri(value);
                    contact.phones.push(typed(entry, value, label_of(entry)));
                }
            }
            VCardProperty::Adr => {
                let (types, pref) = types_and_pref(&entry.params);
                let c = |i| component(&entry.values, i);
                let address = Address {
                    po_box: c(0),
                    extended: c(1),
                    street: c(2),
                    locality: c(3),
                    region: c(4),
                    postal_code: c(5),
                    country: c(6),
                    types,
                    pref,
                    label: label_of(entry),
                };
                if address.components().iter().any(|c| c.is_some()) {
                    contact.addresses.push(address);
                }
            }
            VCardProperty::Url => {
                if let Some(url) = text_only(&entry.values) {
                    contact.urls.push(url);
                }
            }
            VCardProperty::Photo => {
                let photo = read_photo(raw, photo_index, entry)?;
                photo_index += 1;
                if contact.photo.is_none() {
                    contact.photo = photo;
                }
            }
            _ => {}
        }
    }
    if !notes.is_empty() {
        contact.note = Some(notes.join("\n"));
    }
    contact.birthday = read_birthday(raw);
    Ok(contact)
}

fn set_once(slot: &mut Option<String>, value: Option<String>) {
    if slot.is_none() {
        *slot = non_empty(value);
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// The text of one value. Text that quoted-printable decoding left as bytes that are not
/// valid in their charset (calcard returns them as binary) is decoded lossily.
/// Line breaks become `\n`.
fn value_text(value: &VCardValue) -> Option<String> {
    let text = match value {
        VCardValue::Text(s) => s.clone(),
        VCardValue::Component(parts) => parts.join(","),
        VCardValue::Binary(data) => String::from_utf8_lossy(&data.data).into_owned(),
        VCardValue::Integer(i) => i.to_string(),
        VCardValue::Float(f) => f.to_string(),
        VCardValue::Boolean(b) => b.to_string(),
        _ => return None,
    };
    Some(normalize_newlines(text))
}

fn normalize_newlines(text: String) -> String {
    if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text
    }
}

fn joined_text(values: &[VCardValue]) -> Option<String> {
    let parts: Vec<String> = values.iter().filter_map(value_text).collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

/// URI-typed properties (URL, UID): text only; a data: URI decoded to bytes is not kept.
fn text_only(values: &[VCardValue]) -> Option<String> {
    match values.first() {
        Some(VCardValue::Text(s)) => non_empty(Some(s.clone())),
        _ => None,
    }
}

fn component(values: &[VCardValue], index: usize) -> Option<String> {
    non_empty(values.get(index).and_then(value_text))
}

fn strip_tel_uri(value: String) -> String {
    match value.get(..4) {
        Some(prefix) if prefix.eq_ignore_ascii_case("tel:") => {
            value.get(4..).unwrap_or_default().to_string()
        }
        _ => value,
    }
}

fn unwrap_apple_label(label: &str) -> String {
    label
        .strip_prefix("_$!<")
        .and_then(|l| l.strip_suffix(">!$_"))
        .unwrap_or(label)
        .to_string()
}

fn typed(entry: &VCardEntry, value: String, label: Option<String>) -> Typed {
    let (types, pref) = types_and_pref(&entry.params);
    Typed {
        value,
        types,
        pref,
        label,
    }
}

/// Parameters that a vCard 2.1 writer may leave bare but that are not TYPE values.
const NOT_TYPES: [&str; 6] = [
    "charset",
    "encoding",
    "quoted-printable",
    "base64",
    "8bit",
    "7bit",
];

/// TYPE values (lower case, deduplicated, in order) and whether the property is preferred,
/// from `TYPE=CELL`, `TYPE=cell,voice`, `type=CELL;type=pref`, `TYPE="work,voice"`, bare
/// 2.1 `CELL;VOICE;PREF`, and 4.0 `PREF=1`.
fn types_and_pref(params: &[VCardParameter]) -> (Vec<String>, bool) {
    let mut types: Vec<String> = Vec::new();
    let mut pref = false;
    let mut add = |t: &str, pref: &mut bool| {
        let t = t.trim().trim_matches('"').to_ascii_lowercase();
        if t == "pref" {
            *pref = true;
        } else if !t.is_empty() && !types.contains(&t) {
            types.push(t);
        }
    };
    for p in params {
        match (&p.name, &p.value) {
            (VCardParameterName::Type, VCardParameterValue::Type(t)) => add(t.as_str(), &mut pref),
            (VCardParameterName::Type, VCardParameterValue::Text(s)) => {
                for t in s.split(',') {
                    add(t, &mut pref);
                }
            }
            (VCardParameterName::Pref, VCardParameterValue::Null) => pref = true,
            (VCardParameterName::Pref, VCardParameterValue::Integer(n)) => pref |= *n <= 1,
            (VCardParameterName::Pref, VCardParameterValue::Text(s)) => pref |= s.trim() == "1",
            (VCardParameterName::Other(name), VCardParameterValue::Null)
                if !NOT_TYPES.iter().any(|n| name.eq_ignore_ascii_case(n)) =>
            {
                add(name, &mut pref);
            }
            _ => {}
        }
    }
    (types, pref)
}

/// The `n`th PHOTO: embedded data becomes a [`Photo`]; a photo by URL is not kept; base64
/// that does not decode is an error naming the line.
fn read_photo(raw: &RawCard, n: usize, entry: &VCardEntry) -> Result<Option<Photo>, VcardError> {
    let line = raw.line_of("PHOTO", n);
    let logical = raw.property_lines("PHOTO").nth(n);
    let head = logical.and_then(|l| parse_head(&l.text));
    let declared_base64 = head.as_ref().is_some_and(|h| h.is_base64());
    let raw_value = head.as_ref().map(|h| h.value).unwrap_or_default();
    let bad = |detail: String| VcardError::InvalidBase64 {
        card: raw.index,
        line,
        property: "PHOTO".to_string(),
        detail,
    };

    match entry.values.first() {
        Some(VCardValue::Binary(data)) => {
            // calcard's decoder skips what it cannot use; hold the text to base64's rules.
            let payload = if declared_base64 {
                Some(raw_value)
            } else {
                data_uri_base64_payload(raw_value)
            };
            if let Some(payload) = payload {
                check_base64(payload).map_err(bad)?;
            }
            if data.data.is_empty() {
                return Ok(None);
            }
            Ok(Some(Photo {
                media_type: photo_media_type(data, &entry.params),
                data: data.data.clone(),
            }))
        }
        Some(VCardValue::Text(text)) => {
            let is_data_uri = text
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case("data:"));
            if declared_base64 || is_data_uri {
                if text.trim().is_empty() {
                    return Ok(None);
                }
                let payload = data_uri_base64_payload(raw_value).unwrap_or(raw_value);
                Err(bad(check_base64(payload)
                    .err()
                    .unwrap_or_else(|| "it does not decode".to_string())))
            } else {
                Ok(None)
            }
        }
        _ => Ok(None),
    }
}

fn data_uri_base64_payload(value: &[u8]) -> Option<&[u8]> {
    let rest = value
        .get(..5)?
        .eq_ignore_ascii_case(b"data:")
        .then(|| value.get(5..))??;
    let comma = rest.iter().position(|b| *b == b',')?;
    let meta = rest.get(..comma)?;
    let is_base64 = meta
        .rsplit(|b| *b == b';')
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case(b"base64"));
    is_base64.then(|| rest.get(comma + 1..)).flatten()
}

/// Standard base64 alphabet, whitespace ignored, at most two `=` and only at the end.
///
/// A length that is not a whole number of groups is accepted, and the dangling bits are
/// dropped as calcard (and Android's own reader) do: the Android sample's photo is such a
/// truncated image, and one damaged photo should not refuse a whole address book.
fn check_base64(payload: &[u8]) -> Result<(), String> {
    let chars: Vec<u8> = payload
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if let Some((i, b)) = chars
        .iter()
        .enumerate()
        .find(|(_, b)| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')))
    {
        return Err(format!("character {:?} at offset {i}", char::from(*b)));
    }
    let data_len = chars.iter().take_while(|b| **b != b'=').count();
    let padding = chars.get(data_len..).unwrap_or_default();
    if padding.iter().any(|b| *b != b'=') {
        return Err(format!("'=' inside the data at offset {data_len}"));
    }
    if padding.len() > 2 {
        return Err(format!("{} '=' characters of padding", padding.len()));
    }
    if data_len == 0 && !padding.is_empty() {
        return Err("padding without data".to_string());
    }
    Ok(())
}

fn photo_media_type(data: &Data, params: &[VCardParameter]) -> String {
    let declared = data.content_type.clone().or_else(|| {
        params.iter().find_map(|p| match (&p.name, &p.value) {
            (VCardParameterName::Mediatype, VCardParameterValue::Text(s)) => Some(s.clone()),
            (VCardParameterName::Type, VCardParameterValue::Text(s)) => Some(s.clone()),
            // 2.1: `PHOTO;ENCODING=BASE64;JPEG:`
            (VCardParameterName::Other(s), VCardParameterValue::Null) => Some(s.clone()),
            _ => None,
        })
    });
    match declared.map(|d| normalize_media_type(&d)) {
        Some(media_type) if !media_type.is_empty() => media_type,
        _ => sniff(&data.data).to_string(),
    }
}

fn normalize_media_type(declared: &str) -> String {
    let base = declared.split(';').next().unwrap_or_default().trim();
    let lower = base.trim_matches('"').to_ascii_lowercase();
    let full = if lower.contains('/') {
        lower
    } else if lower.is_empty() {
        return String::new();
    } else {
        format!("image/{lower}")
    };
    match full.as_str() {
        "image/jpg" | "image/pjpeg" => "image/jpeg".to_string(),
        "image/tif" => "image/tiff".to_string(),
        _ => full,
    }
}

fn sniff(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        "image/gif"
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        "image/webp"
    } else {
        "application/octet-stream"
    }
}

/// The first BDAY, from the raw line (see the `date` module for why not calcard's value).
fn read_birthday(raw: &RawCard) -> Option<String> {
    raw.property_lines("BDAY").find_map(|logical| {
        let head = parse_head(&logical.text)?;
        let text = unescape(&String::from_utf8_lossy(head.value));
        let mut parsed = date::parse(&text);
        // iOS writes a birthday without a year as `BDAY;X-APPLE-OMIT-YEAR=1604:1604-02-03`.
        let omit_year = head.params.iter().find_map(|(name, value)| {
            name.eq_ignore_ascii_case(b"X-APPLE-OMIT-YEAR")
                .then(|| {
                    std::str::from_utf8((*value)?)
                        .ok()?
                        .trim()
                        .parse::<u16>()
                        .ok()
                })
                .flatten()
        });
        if let Some(d) = parsed.as_mut()
            && omit_year.is_some()
            && d.year == omit_year
        {
            d.year = None;
        }
        match parsed {
            Some(d) => Some(d.format(true)),
            None => non_empty(Some(text)),
        }
    })
}

/// vCard text unescaping: `\n` `\N` `\,` `\;` `\\`, and any other `\x` as `x`.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_rules() {
        assert!(check_base64(b"/9j/4AAQ").is_ok());
        assert!(check_base64(b"/9j/4A==").is_ok());
        assert!(check_base64(b"/9j/4A").is_ok());
        assert!(check_base64(b" /9j/\r\n 4AAQ ").is_ok());
        assert!(check_base64(b"/9j/4AAQ!").unwrap_err().contains("'!'"));
        assert!(check_base64(b"/9j=/4AA").unwrap_err().contains("'='"));
        assert!(check_base64(b"/9j/4A===").unwrap_err().contains("padding"));
        // A dangling partial group (the Android sample) is tolerated.
        assert!(check_base64(b"/9j/4AAQ/2Q==").is_ok());
    }

    #[test]
    fn labels_and_media_types() {
        assert_eq!(unwrap_apple_label("_$!<HomePage>!$_"), "HomePage");
        assert_eq!(unwrap_apple_label("Zweitwohnsitz"), "Zweitwohnsitz");
        assert_eq!(normalize_media_type("JPEG"), "image/jpeg");
        assert_eq!(normalize_media_type("image/jpg"), "image/jpeg");
        assert_eq!(normalize_media_type("image/png; charset=x"), "image/png");
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), "image/png");
        assert_eq!(
            data_uri_base64_payload(b"data:image/png;base64,AAAA"),
            Some(&b"AAAA"[..])
        );
        assert_eq!(data_uri_base64_payload(b"data:text/plain,hello"), None);
        assert_eq!(strip_tel_uri("TEL:+1-555".to_string()), "+1-555");
    }
}
