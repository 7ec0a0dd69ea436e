//! [`Contact`] → vCard 3.0 (RFC 2426) or 4.0 (RFC 6350) text.
//!
//! CRLF line ends; lines folded at 75 octets (never inside a UTF-8 character) with a
//! single space; text escaped (`\\`, `\,`, `\;`, `\n`). FN is always written (empty when
//! the contact has no display name: both versions require it, and nothing is invented),
//! N always in 3.0 (required there). Labels are written the way Apple does,
//! `itemN.TEL` + `itemN.X-ABLabel`, which other readers ignore.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::date;
use crate::model::{Address, Contact, Photo, Typed, Version};

/// Writes one contact as a vCard of the given version.
pub fn to_vcard(contact: &Contact, version: Version) -> String {
    let mut w = Writer {
        out: String::new(),
        version,
        items: 0,
    };
    w.line("BEGIN:VCARD");
    w.line(match version {
        Version::V3 => "VERSION:3.0",
        Version::V4 => "VERSION:4.0",
    });
    if let Some(uid) = &contact.uid {
        w.prop("UID", "", &escape_text(uid));
    }
    w.prop(
        "FN",
        "",
        &escape_text(contact.formatted_name.as_deref().unwrap_or_default()),
    );
    if version == Version::V3 || contact.family_name.is_some() || contact.given_name.is_some() {
        let n = [
            &contact.family_name,
            &contact.given_name,
            &None,
            &None,
            &None,
        ];
        w.prop("N", "", &structured(&n));
    }
    match (&contact.organization, &contact.department) {
        (None, None) => {}
        (Some(org), None) => w.prop("ORG", "", &escape_text(org)),
        (org, department) => w.prop("ORG", "", &structured(&[org, department])),
    }
    if let Some(title) = &contact.title {
        w.prop("TITLE", "", &escape_text(title));
    }
    if let Some(birthday) = &contact.birthday {
        match date::parse(birthday) {
            Some(d) => w.prop("BDAY", "", &d.format(version == Version::V3)),
            None => w.prop("BDAY", ";VALUE=text", &escape_text(birthday)),
        }
    }
    for phone in &contact.phones {
        w.typed("TEL", phone);
    }
    for email in &contact.emails {
        w.typed("EMAIL", email);
    }
    for address in &contact.addresses {
        w.address(address);
    }
    for url in &contact.urls {
        w.prop("URL", "", &escape_uri(url));
    }
    if let Some(note) = &contact.note {
        w.prop("NOTE", "", &escape_text(note));
    }
    if let Some(photo) = &contact.photo {
        w.photo(photo);
    }
    w.line("END:VCARD");
    w.out
}

struct Writer {
    out: String,
    version: Version,
    items: usize,
}

impl Writer {
    /// Appends one content line, folded at 75 octets.
    fn line(&mut self, line: &str) {
        let mut width = 0;
        for c in line.chars() {
            let n = c.len_utf8();
            if width + n > 75 {
                self.out.push_str("\r\n ");
                width = 1;
            }
            self.out.push(c);
            width += n;
        }
        self.out.push_str("\r\n");
    }

    fn prop(&mut self, name: &str, params: &str, value: &str) {
        self.line(&format!("{name}{params}:{value}"));
    }

    /// A group for a labelled property (`item1.`), writing its X-ABLabel afterwards.
    fn grouped(&mut self, label: Option<&str>, write: impl FnOnce(&mut Self, &str)) {
        match label {
            Some(label) => {
                self.items += 1;
                let group = format!("item{}.", self.items);
                write(self, &group);
                self.line(&format!("{group}X-ABLabel:{}", escape_text(label)));
            }
            None => write(self, ""),
        }
    }

    fn type_params(&self, types: &[String], pref: bool) -> String {
        let mut types: Vec<String> = types
            .iter()
            .filter(|t| is_token(t) && !t.eq_ignore_ascii_case("pref"))
            .map(|t| match self.version {
                Version::V3 => t.to_ascii_uppercase(),
                Version::V4 => t.to_ascii_lowercase(),
            })
            .collect();
        let mut params = String::new();
        match self.version {
            Version::V3 if pref => types.push("PREF".to_string()),
            Version::V4 if pref => params.push_str(";PREF=1"),
            _ => {}
        }
        if !types.is_empty() {
            params.insert_str(0, &format!(";TYPE={}", types.join(",")));
        }
        params
    }

    fn typed(&mut self, name: &str, typed: &Typed) {
        let params = self.type_params(&typed.types, typed.pref);
        let value = escape_text(&typed.value);
        self.grouped(typed.label.as_deref(), |w, group| {
            w.line(&format!("{group}{name}{params}:{value}"));
        });
    }

    fn address(&mut self, address: &Address) {
        let params = self.type_params(&address.types, address.pref);
        let value = structured(&address.components());
        self.grouped(address.label.as_deref(), |w, group| {
            w.line(&format!("{group}ADR{params}:{value}"));
        });
    }

    fn photo(&mut self, photo: &Photo) {
        let data = STANDARD.encode(&photo.data);
        let media_type = if is_media_type(&photo.media_type) {
            photo.media_type.to_ascii_lowercase()
        } else {
            "application/octet-stream".to_string()
        };
        match self.version {
            Version::V4 => self.prop("PHOTO", "", &format!("data:{media_type};base64,{data}")),
            Version::V3 => {
                // 3.0 names image types by subtype (TYPE=JPEG); anything else in full.
                let type_param = match media_type.strip_prefix("image/") {
                    Some(subtype) => subtype.to_ascii_uppercase(),
                    None => media_type,
                };
                self.prop("PHOTO", &format!(";ENCODING=b;TYPE={type_param}"), &data);
            }
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `type/subtype`, each a non-empty RFC 6838 restricted name.
pub(crate) fn is_media_type(s: &str) -> bool {
    let mut parts = s.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// Escapes a text value. CRLF and CR become `\n`; other control characters except TAB
/// cannot be represented and are left out.
fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ',' => out.push_str("\\,"),
            ';' => out.push_str("\\;"),
            '\n' => out.push_str("\\n"),
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push_str("\\n");
                }
            }
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A URI value: not text-escaped (RFC 6350 §3.4: URI values are not), but a backslash or
/// line break, which a URI cannot contain, is escaped so the line stays intact.
fn escape_uri(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' | '\r' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A structured value (N, ADR): components escaped and joined with `;`.
fn structured(parts: &[&Option<String>]) -> String {
    parts
        .iter()
        .map(|p| p.as_deref().map(escape_text).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape_text("a,b;c\\d\ne\r\nf\u{0}"),
            "a\\,b\\;c\\\\d\\ne\\nf"
        );
        assert_eq!(escape_uri("http://x/a,b;c"), "http://x/a,b;c");
    }

    #[test]
    fn folding_counts_octets_and_keeps_characters_whole() {
        let mut w = Writer {
            out: String::new(),
            version: Version::V4,
            items: 0,
        };
        w.line(&format!("NOTE:{}", "ä".repeat(100)));
        for physical in w.out.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(
                physical.len() <= 75,
                "{} octets: {physical}",
                physical.len()
            );
        }
        let unfolded = w.out.replace("\r\n ", "");
        assert_eq!(unfolded, format!("NOTE:{}\r\n", "ä".repeat(100)));
    }
}
