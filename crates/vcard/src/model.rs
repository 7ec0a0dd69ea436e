//! The contact model shared by the vCard reader/writer and the JSON sync API.

use serde::{Deserialize, Serialize};

/// A contact: the subset of vCard that Steward keeps.
///
/// Properties outside this subset (NICKNAME, CATEGORIES, GEO, KEY, ...) are not kept, nor
/// are ORG units below the first (the organisation name and its first unit, the
/// department, are kept), the middle names, prefixes and suffixes
/// of N (FN keeps the full display name) and PHOTOs given as external URLs (they are never
/// fetched). Text is UTF-8 with `\n` line breaks; an empty value is absent (`None`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Contact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// FN: the display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted_name: Option<String>,
    /// N, first component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// N, second component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// ORG, first component (the organisation name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// ORG, second component (the first organisational unit: the department).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<Typed>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<Typed>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// NOTE; several NOTE properties are joined with `\n`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// BDAY as ISO 8601: `1985-04-12`, `1985-04`, `1985`, `--04-12` (no year), `---12`,
    /// optionally followed by a time such as `T14:30:00Z`. A BDAY that is not a date (a
    /// vCard 4.0 `VALUE=text` birthday) is kept as its text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthday: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo: Option<Photo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// An email address or telephone number with its TYPE parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Typed {
    /// The address or number as written (a `tel:` URI prefix is removed from numbers).
    pub value: String,
    /// TYPE values in lower case, in order, without duplicates and without `pref`
    /// (e.g. `["cell", "voice"]`, `["work"]`, `["internet"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Preferred: `PREF=1` (4.0), `TYPE=pref` (3.0) or a bare `PREF` (2.1).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pref: bool,
    /// A custom label from a grouped `itemN.X-ABLabel` (Apple); Apple's built-in label
    /// codes such as `_$!<AssistantPhone>!$_` are unwrapped to `AssistantPhone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// A postal address: the seven ADR components, its TYPE values, preference and label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub po_box: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pref: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Address {
    /// The components in ADR order.
    pub fn components(&self) -> [&Option<String>; 7] {
        [
            &self.po_box,
            &self.extended,
            &self.street,
            &self.locality,
            &self.region,
            &self.postal_code,
            &self.country,
        ]
    }
}

/// An embedded photo. In JSON, `data` is standard base64 (with padding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Photo {
    /// e.g. `image/jpeg`; from the card's MEDIATYPE/TYPE or data: URI, else sniffed.
    pub media_type: String,
    /// The image, standard base64 with padding.
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte))]
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

/// The vCard version [`crate::to_vcard`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Version {
    /// vCard 3.0 (RFC 2426).
    V3,
    /// vCard 4.0 (RFC 6350).
    V4,
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("photo.data is not base64: {e}")))
    }
}
