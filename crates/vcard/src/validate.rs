//! Checks on a [`Contact`] before it is stored, whichever way it arrived (JSON or vCard).

use crate::date;
use crate::model::{Address, Contact, Typed};

/// Size limits for [`Contact::validate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest single text value (name, number, address component, ...), in bytes.
    pub max_text_bytes: usize,
    /// Longest note, in bytes.
    pub max_note_bytes: usize,
    /// Most entries in each of emails, phones, addresses and urls.
    pub max_entries: usize,
    /// Largest photo, in decoded bytes.
    pub max_photo_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_text_bytes: 1024,
            max_note_bytes: 16 * 1024,
            max_entries: 50,
            max_photo_bytes: 256 * 1024,
        }
    }
}

/// One problem, naming the field (`phones[2].value`, `photo`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

/// Every problem found in a contact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid contact: {}", .problems.iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>().join("; "))]
pub struct ValidationError {
    pub problems: Vec<FieldProblem>,
}

struct Check<'a> {
    limits: &'a Limits,
    problems: Vec<FieldProblem>,
}

impl Check<'_> {
    fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(FieldProblem {
            field: field.into(),
            message: message.into(),
        });
    }

    /// A present value: not blank, within `max` bytes, no control characters (line breaks
    /// only where `multiline`).
    fn text(&mut self, field: &str, value: &str, max: usize, multiline: bool) {
        if value.trim().is_empty() {
            self.fail(field, "is empty; leave the field out instead");
        } else if value.len() > max {
            self.fail(
                field,
                format!("is {} bytes, over the limit of {max}", value.len()),
            );
        } else if let Some(c) = value
            .chars()
            .find(|c| c.is_control() && *c != '\t' && !(multiline && *c == '\n'))
        {
            self.fail(field, format!("contains the control character {c:?}"));
        }
    }

    fn opt(&mut self, field: &str, value: &Option<String>, multiline: bool) {
        if let Some(value) = value {
            self.text(field, value, self.limits.max_text_bytes, multiline);
        }
    }

    fn count(&mut self, field: &str, n: usize) {
        if n > self.limits.max_entries {
            self.fail(
                field,
                format!(
                    "has {n} entries, over the limit of {}",
                    self.limits.max_entries
                ),
            );
        }
    }

    fn types(&mut self, field: &str, types: &[String], label: &Option<String>) {
        for (i, t) in types.iter().enumerate() {
            let ok = !t.is_empty()
                && t.len() <= 64
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                self.fail(
                    format!("{field}.types[{i}]"),
                    "must be a word of letters, digits, '-' or '_' (at most 64)",
                );
            } else if t.eq_ignore_ascii_case("pref") {
                self.fail(format!("{field}.types[{i}]"), "use \"pref\": true instead");
            }
        }
        self.opt(&format!("{field}.label"), label, false);
    }

    fn typed(&mut self, field: &str, items: &[Typed]) {
        self.count(field, items.len());
        for (i, item) in items.iter().enumerate() {
            let field = format!("{field}[{i}]");
            self.text(
                &format!("{field}.value"),
                &item.value,
                self.limits.max_text_bytes,
                false,
            );
            self.types(&field, &item.types, &item.label);
        }
    }

    fn addresses(&mut self, items: &[Address]) {
        self.count("addresses", items.len());
        const NAMES: [&str; 7] = [
            "po_box",
            "extended",
            "street",
            "locality",
            "region",
            "postal_code",
            "country",
        ];
        for (i, address) in items.iter().enumerate() {
            let field = format!("addresses[{i}]");
            if address.components().iter().all(|c| c.is_none()) {
                self.fail(&field, "has no address components");
            }
            for (name, value) in NAMES.iter().zip(address.components()) {
                self.opt(&format!("{field}.{name}"), value, true);
            }
            self.types(&field, &address.types, &address.label);
        }
    }
}

impl Contact {
    /// Refuses a contact that is empty (no name, organisation, email or phone), has blank
    /// or overlong values, control characters, malformed TYPE values, a date birthday not
    /// in the canonical spelling (`1985-04-12`, `--04-12`), or a photo that is empty, not an image or over `limits.max_photo_bytes`.
    /// Every problem is reported, each naming its field.
    pub fn validate(&self, limits: &Limits) -> Result<(), ValidationError> {
        let mut check = Check {
            limits,
            problems: Vec::new(),
        };
        let identifies = [
            &self.formatted_name,
            &self.family_name,
            &self.given_name,
            &self.organization,
        ]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| !v.trim().is_empty()))
            || !self.emails.is_empty()
            || !self.phones.is_empty();
        if !identifies {
            check.fail(
                "contact",
                "is empty: it needs at least one of formatted_name, family_name, given_name, \
                 organization, emails or phones",
            );
        }
        check.opt("uid", &self.uid, false);
        check.opt("formatted_name", &self.formatted_name, false);
        check.opt("family_name", &self.family_name, false);
        check.opt("given_name", &self.given_name, false);
        check.opt("organization", &self.organization, false);
        check.opt("department", &self.department, false);
        check.opt("title", &self.title, false);
        if let Some(note) = &self.note {
            check.text("note", note, limits.max_note_bytes, true);
        }
        if let Some(birthday) = &self.birthday {
            check.text("birthday", birthday, limits.max_text_bytes, false);
            // A date must be in the canonical spelling; free text (vCard 4.0 allows a
            // text birthday) is kept as it is.
            if let Some(canonical) = date::canonical(birthday)
                && canonical != *birthday
            {
                check.fail(
                    "birthday",
                    format!("{birthday:?} must be written {canonical:?} (ISO 8601 extended)"),
                );
            }
        }
        check.typed("emails", &self.emails);
        check.typed("phones", &self.phones);
        check.addresses(&self.addresses);
        check.count("urls", self.urls.len());
        for (i, url) in self.urls.iter().enumerate() {
            let field = format!("urls[{i}]");
            check.text(&field, url, limits.max_text_bytes, false);
            // A URI holds no tab (text values may; a URL written out would lose it).
            if url.contains('\t') {
                check.fail(field, "contains the control character '\\t'");
            }
        }
        if let Some(photo) = &self.photo {
            if photo.data.is_empty() {
                check.fail("photo.data", "is empty; leave the photo out instead");
            } else if photo.data.len() > limits.max_photo_bytes {
                check.fail(
                    "photo.data",
                    format!(
                        "is {} bytes, over the limit of {} bytes",
                        photo.data.len(),
                        limits.max_photo_bytes
                    ),
                );
            }
            // A media type as RFC 6838 spells one: a type that is not would be written
            // out as application/octet-stream and come back as another.
            if !photo.media_type.starts_with("image/")
                || !crate::write::is_media_type(&photo.media_type)
            {
                check.fail(
                    "photo.media_type",
                    format!("{:?} is not an image type (image/...)", photo.media_type),
                );
            }
        }
        if check.problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationError {
                problems: check.problems,
            })
        }
    }
}
