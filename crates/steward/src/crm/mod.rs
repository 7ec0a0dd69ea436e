//! Enquiries and CRM contacts, marketing preferences and the mailing-tool
//! export, and credit checks: the statement's promises 1, 3, 4 and 20
//! (`/work/shared/PROMISES.md`).
//!
//! * [`enquiries`]: web-form and staff-recorded enquiries (telephone, email,
//!   letter). The person is a subject of kind `contact`, found (or created) in
//!   the tenant through the blind indexes of their email and phone; the enquiry
//!   (name, email, phone numbers, postal address, topic, message) is sealed with
//!   their key. Basis: legitimate interest, purpose `answer_enquiries`.
//! * [`marketing`]: marketing consent (`contact_details`/`marketing`, in the
//!   consent ledger), the "no further contact" suppression list (keyed hashes
//!   that outlive erasure), and the CSV export for mailing tools, which leaves
//!   out every suppressed or non-consenting address and records a `disclose`
//!   audit entry per exported person.
//! * [`credit`]: credit checks, each under one single-use permission from the
//!   subject (consumed by the check), recorded as a disclosure to the named
//!   credit reference agency; withdrawing the permission deletes the checks
//!   (the consent ledger's purge of consent-only categories).
//!
//! Nothing here logs personal data; audit entries carry ids, channels and counts.

pub mod credit;
pub mod enquiries;
pub mod marketing;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::{Actor, ActorKind, Role};
use crate::consent;
use crate::error::{Error, Result};

/// The policy category of enquiries and contacts.
pub const CONTACT_CATEGORY: &str = "contact_details";

/// How an enquiry reached the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnquiryChannel {
    /// The website's enquiry form.
    Web,
    Phone,
    Email,
    Letter,
}

impl EnquiryChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            EnquiryChannel::Web => "web",
            EnquiryChannel::Phone => "phone",
            EnquiryChannel::Email => "email",
            EnquiryChannel::Letter => "letter",
        }
    }

    pub fn parse(s: &str) -> Result<EnquiryChannel> {
        match s {
            "web" => Ok(EnquiryChannel::Web),
            "phone" => Ok(EnquiryChannel::Phone),
            "email" => Ok(EnquiryChannel::Email),
            "letter" => Ok(EnquiryChannel::Letter),
            o => Err(Error::invalid(
                "channel",
                format!("unknown channel {o:?}: expected web, phone, email or letter"),
            )),
        }
    }

    /// The consent ledger's channel for a consent given with this enquiry.
    pub fn consent_channel(self) -> consent::Channel {
        match self {
            EnquiryChannel::Web => consent::Channel::Web,
            EnquiryChannel::Phone => consent::Channel::Phone,
            EnquiryChannel::Email => consent::Channel::Email,
            EnquiryChannel::Letter => consent::Channel::Letter,
        }
    }
}

/// Checks one text field: trimmed, at most `max` characters, no control
/// characters except line breaks and tabs where `multiline`. Returns the
/// trimmed value, `None` when empty.
pub(crate) fn text(
    field: &str,
    value: Option<&str>,
    max: usize,
    multiline: bool,
) -> Result<Option<String>> {
    // Length and characters are checked on what was sent, before trimming,
    // as the OpenAPI document's maxLength and pattern see it.
    let Some(raw) = value else { return Ok(None) };
    if raw.chars().count() > max {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    let bad = |c: char| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t'));
    if raw.chars().any(bad) {
        return Err(Error::invalid(
            field,
            if multiline {
                "control characters other than line breaks and tabs are not allowed"
            } else {
                "control characters (line breaks among them) are not allowed"
            },
        ));
    }
    let v = raw.trim();
    if v.is_empty() {
        return Ok(None);
    }
    Ok(Some(v.to_owned()))
}

/// Like [`text`], for a field that must not be empty.
pub(crate) fn required_text(
    field: &str,
    value: &str,
    max: usize,
    multiline: bool,
) -> Result<String> {
    text(field, Some(value), max, multiline)?
        .ok_or_else(|| Error::invalid(field, "must not be empty"))
}

/// The person themself acting through a public form (the website): their own
/// consent is theirs to give. Audited as `web:<subject id>`, as the cookie
/// banner's choices are.
pub(crate) fn person_actor(tenant: &str, subject_id: &str) -> Actor {
    Actor {
        audit_id: format!("web:{subject_id}"),
        kind: ActorKind::Account(Role::Subject),
        account_id: None,
        tenant_id: Some(tenant.to_owned()),
        subject_id: Some(subject_id.to_owned()),
        provider_staff: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields() {
        assert_eq!(
            text("f", Some("  a b "), 10, false)
                .ok()
                .flatten()
                .as_deref(),
            Some("a b")
        );
        assert_eq!(text("f", Some("   "), 10, false).ok().flatten(), None);
        assert_eq!(text("f", None, 10, false).ok().flatten(), None);
        assert!(text("f", Some("a\nb"), 10, false).is_err());
        assert!(text("f", Some("a\nb\tc"), 10, true).is_ok());
        assert!(text("f", Some("a\u{0}b"), 10, true).is_err());
        assert!(text("f", Some("ééééééééééé"), 10, false).is_err());
        assert!(text("f", Some("éééééééééé"), 10, false).is_ok());
        assert!(required_text("f", " ", 10, false).is_err());
        for c in ["web", "phone", "email", "letter"] {
            assert_eq!(
                EnquiryChannel::parse(c).map(EnquiryChannel::as_str).ok(),
                Some(c)
            );
        }
        assert!(EnquiryChannel::parse("fax").is_err());
    }
}
