//! The policy file as written. These structs keep the source span of every value that
//! validation may complain about, so a diagnostic can point at it.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_spanned::Spanned;

use crate::model::{
    Jurisdiction, LawfulBasis, OtherParties, RecipientKind, RetentionStart, SubjectKind,
};

pub(crate) type Text = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub policy: RawMeta,
    #[serde(default)]
    pub purposes: Named<RawPurpose>,
    #[serde(default)]
    pub recipients: Named<RawRecipient>,
    /// Optional here so that a file without categories gets our message, not serde's.
    pub categories: Option<Spanned<Named<RawCategory>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMeta {
    pub version: Text,
    pub controller: Text,
    pub controller_address: Text,
    pub contact_email: Option<Text>,
    pub default_retention: Text,
    #[serde(default)]
    pub retention_starts: RetentionStart,
    pub request_deadline_working_days: Spanned<u32>,
    pub jurisdiction: Jurisdiction,
    pub time_zone: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPurpose {
    pub name: Text,
    pub description: String,
    pub fides_data_use: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRecipient {
    pub name: Text,
    pub kind: RecipientKind,
    pub country: Text,
    pub safeguard: Option<Text>,
    pub description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCategory {
    pub name: Text,
    pub description: String,
    pub fides_categories: Spanned<Vec<Text>>,
    pub subjects: Spanned<Vec<Spanned<SubjectKind>>>,
    pub source: String,
    pub lawful_basis: Spanned<LawfulBasis>,
    pub consent_required: Spanned<bool>,
    pub single_use_consent: Option<Spanned<bool>>,
    pub purposes: Spanned<Vec<Text>>,
    #[serde(default)]
    pub purpose_basis: BTreeMap<Text, Spanned<LawfulBasis>>,
    pub retention: Option<Text>,
    pub retention_starts: Option<RetentionStart>,
    pub recipients: Vec<Text>,
    pub anonymous: Option<Spanned<bool>>,
    #[serde(default)]
    pub archive_exempt: bool,
    pub access_roles: Option<Spanned<Vec<Text>>>,
    pub other_parties: Option<OtherParties>,
    #[serde(default)]
    pub fields: BTreeMap<Text, BTreeMap<Text, Text>>,
}

/// A table of `[kind.<id>]` entries, in the order the file declares them.
///
/// The TOML deserializer hands tables over sorted by key, so entries are put back in
/// file order by the position of their key: notices should follow the author's order.
pub(crate) struct Named<T>(pub Vec<(Text, T)>);

impl<T> Default for Named<T> {
    fn default() -> Self {
        Named(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Named<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NamedVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for NamedVisitor<T> {
            type Value = Named<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of named entries")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(Text, T)> = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                entries.sort_by_key(|(key, _)| key.span().start);
                Ok(Named(entries))
            }
        }

        deserializer.deserialize_map(NamedVisitor(PhantomData))
    }
}
