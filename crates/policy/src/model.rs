//! The checked policy: what Steward processes, why, on which lawful basis, for how long,
//! and who receives it. Only `parse` and `load` build a `Policy`, so every value here has
//! passed validation (ids resolve, bases agree, retention periods parse).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::geo;
use crate::retention::Retention;

/// The shipped policy file, encoding the privacy statement.
const DEFAULT_POLICY: &str = include_str!("../../../policy/default.toml");

/// The lawful bases of UK GDPR Article 6(1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LawfulBasis {
    Consent,
    Contract,
    LegalObligation,
    VitalInterests,
    PublicTask,
    LegitimateInterest,
}

impl LawfulBasis {
    /// The value as written in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            LawfulBasis::Consent => "consent",
            LawfulBasis::Contract => "contract",
            LawfulBasis::LegalObligation => "legal_obligation",
            LawfulBasis::VitalInterests => "vital_interests",
            LawfulBasis::PublicTask => "public_task",
            LawfulBasis::LegitimateInterest => "legitimate_interest",
        }
    }

    /// Plain-English name with its article, for notices and records.
    pub fn label(self) -> &'static str {
        match self {
            LawfulBasis::Consent => "Consent (Art. 6(1)(a))",
            LawfulBasis::Contract => "Contract (Art. 6(1)(b))",
            LawfulBasis::LegalObligation => "Legal obligation (Art. 6(1)(c))",
            LawfulBasis::VitalInterests => "Vital interests (Art. 6(1)(d))",
            LawfulBasis::PublicTask => "Public task (Art. 6(1)(e))",
            LawfulBasis::LegitimateInterest => "Legitimate interests (Art. 6(1)(f))",
        }
    }
}

impl fmt::Display for LawfulBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The moment a retention period is counted from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionStart {
    /// The statement's rule: the clock restarts whenever the subject engages with us.
    #[default]
    LastEngagement,
    /// A fixed clock from when the data was collected.
    Collection,
}

impl RetentionStart {
    pub fn label(self) -> &'static str {
        match self {
            RetentionStart::LastEngagement => "from your last engagement with us",
            RetentionStart::Collection => "from collection",
        }
    }
}

/// Whose bank holidays count when working days are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Jurisdiction {
    EnglandAndWales,
    Scotland,
    NorthernIreland,
}

impl Jurisdiction {
    pub fn label(self) -> &'static str {
        match self {
            Jurisdiction::EnglandAndWales => "England and Wales",
            Jurisdiction::Scotland => "Scotland",
            Jurisdiction::NorthernIreland => "Northern Ireland",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientKind {
    /// Processes data on our behalf and on our instructions (e.g. hosting).
    Processor,
    /// Supplies products or services to the subject on our behalf.
    Supplier,
    CreditAgency,
    /// Public authorities, courts, police and judicial services.
    Authority,
    /// The subject's employer, as the holder of the contract.
    Employer,
    /// Whoever we assign our rights and obligations to.
    Assignee,
}

impl RecipientKind {
    pub fn label(self) -> &'static str {
        match self {
            RecipientKind::Processor => "Processor acting on our behalf",
            RecipientKind::Supplier => "Supplier acting on our behalf",
            RecipientKind::CreditAgency => "Credit reference agency",
            RecipientKind::Authority => "Public authority",
            RecipientKind::Employer => "Your employer",
            RecipientKind::Assignee => "Assignee",
        }
    }
}

/// The kinds of people data is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// People using the service or App, usually through their employer's contract.
    User,
    /// People who contact us: enquirers, customers' contacts, marketing contacts.
    Contact,
    /// Visitors to our websites.
    Visitor,
    /// People who appear in others' data: call and chat partners, address-book entries.
    ExternalParty,
}

impl SubjectKind {
    pub fn label(self) -> &'static str {
        match self {
            SubjectKind::User => "service and App users",
            SubjectKind::Contact => "people who contact us",
            SubjectKind::Visitor => "website visitors",
            SubjectKind::ExternalParty => "other people (call and chat partners, contacts)",
        }
    }
}

/// Policy-wide facts and defaults (the `[policy]` table).
#[derive(Clone, Debug, Serialize)]
pub struct PolicyMeta {
    pub version: String,
    pub controller: String,
    pub controller_address: String,
    /// Absent when the statement gives no address: requests then go by letter.
    pub contact_email: Option<String>,
    pub default_retention: Retention,
    pub retention_starts: RetentionStart,
    pub request_deadline_working_days: u32,
    pub jurisdiction: Jurisdiction,
    /// The controller's time zone (an IANA name, `Europe/London` by default):
    /// times a person reads (the access bundle's pages) are shown in it.
    pub time_zone: String,
}

/// The time zone a policy names when it names none: the statement's controller
/// is in England.
pub const DEFAULT_TIME_ZONE: &str = "Europe/London";

/// What a subject's own copy of a record shared with other people (a call, a
/// chat) shows of those other people's details that the subject saw or gave
/// (the number they dialled, the caller ID they were shown, a chat partner's
/// messages and name as the app showed them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtherParties {
    /// Shown as the subject saw it.
    #[default]
    Show,
    /// All but the last 3 characters replaced by `*` (numbers).
    Mask,
    /// Left out.
    Redact,
}

impl OtherParties {
    /// Applies the choice to one value the subject saw.
    pub fn apply(self, value: &str) -> Option<String> {
        match self {
            OtherParties::Show => Some(value.to_owned()),
            OtherParties::Redact => None,
            OtherParties::Mask => {
                let n = value.chars().count();
                Some(
                    value
                        .chars()
                        .enumerate()
                        .map(|(i, c)| if i + 3 < n { '*' } else { c })
                        .collect(),
                )
            }
        }
    }
}

/// The account roles Steward knows, as a category's `access_roles` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessRole {
    /// The person the data is about, for their own data.
    Subject,
    /// The employer's administrator, for their tenant.
    TenantAdmin,
    /// Staff running the service.
    Operator,
    /// The data protection officer.
    Dpo,
}

impl AccessRole {
    pub const ALL: [AccessRole; 4] = [
        AccessRole::Subject,
        AccessRole::TenantAdmin,
        AccessRole::Operator,
        AccessRole::Dpo,
    ];

    /// The role as written in the policy file (and as Steward's accounts name it).
    pub fn as_str(self) -> &'static str {
        match self {
            AccessRole::Subject => "subject",
            AccessRole::TenantAdmin => "tenant-admin",
            AccessRole::Operator => "operator",
            AccessRole::Dpo => "dpo",
        }
    }

    pub fn parse(s: &str) -> Option<AccessRole> {
        AccessRole::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            AccessRole::Subject => "you, for your own data",
            AccessRole::TenantAdmin => "your employer's administrators",
            AccessRole::Operator => "our operations staff",
            AccessRole::Dpo => "our data protection officer",
        }
    }
}

/// Why data is processed (a `[purposes.<id>]` table).
#[derive(Clone, Debug, Serialize)]
pub struct Purpose {
    pub name: String,
    pub description: String,
    pub fides_data_use: String,
}

/// Who data may be disclosed to (a `[recipients.<id>]` table).
#[derive(Clone, Debug, Serialize)]
pub struct Recipient {
    pub name: String,
    pub kind: RecipientKind,
    /// ISO 3166-1 alpha-2, e.g. "GB", "US".
    pub country: String,
    /// The transfer mechanism; always present for countries outside the UK and EEA.
    pub safeguard: Option<String>,
    pub description: String,
}

impl Recipient {
    /// True when disclosing to this recipient is a restricted (third-country) transfer.
    pub fn is_third_country(&self) -> bool {
        !geo::in_uk_or_eea(&self.country)
    }
}

/// A kind of personal data and the rules for it (a `[categories.<id>]` table).
/// Defaults from `[policy]` are already applied to `retention` and `retention_starts`.
#[derive(Clone, Debug, Serialize)]
pub struct Category {
    pub name: String,
    pub description: String,
    pub fides_categories: Vec<String>,
    pub subjects: Vec<SubjectKind>,
    pub source: String,
    pub lawful_basis: LawfulBasis,
    pub consent_required: bool,
    /// Consent is asked for afresh on each occasion (credit checks).
    pub single_use_consent: bool,
    /// Purpose ids, in the order written.
    pub purposes: Vec<String>,
    /// Purposes processed on a basis other than `lawful_basis`.
    pub purpose_basis: BTreeMap<String, LawfulBasis>,
    pub retention: Retention,
    pub retention_starts: RetentionStart,
    /// Recipient ids, in the order written.
    pub recipients: Vec<String>,
    /// Never linked to a person: stored only in aggregate.
    pub anonymous: bool,
    /// May be kept past its retention for archiving in the public interest.
    pub archive_exempt: bool,
    /// The account roles that may read this category's data through the features
    /// that hold it (playback, download, listing); `None` when the policy leaves
    /// it to each feature's own rule. The command line and access requests are
    /// not accounts and are not limited by it.
    pub access_roles: Option<Vec<AccessRole>>,
    /// What the subject's copy shows of the other people in shared records.
    pub other_parties: OtherParties,
    /// The words a person reads for each field of the access bundle: per store
    /// (table) the field's heading, `store -> field -> heading`. A field left
    /// out here is headed by its name.
    pub fields: BTreeMap<String, BTreeMap<String, String>>,
}

impl Category {
    /// The lawful basis for using this category for `purpose`, if the purpose is declared.
    pub fn basis_for(&self, purpose: &str) -> Option<LawfulBasis> {
        if !self.purposes.iter().any(|p| p == purpose) {
            return None;
        }
        Some(
            self.purpose_basis
                .get(purpose)
                .copied()
                .unwrap_or(self.lawful_basis),
        )
    }

    /// Whether `role` (as accounts name it: `operator`, `tenant-admin`, …) may
    /// read this category's data: `None` when the category sets no `access_roles`.
    pub fn allows_role(&self, role: &str) -> Option<bool> {
        self.access_roles
            .as_ref()
            .map(|roles| roles.iter().any(|r| r.as_str() == role))
    }

    /// The rule for using this category for `purpose`, if the purpose is declared.
    pub fn rule_for(&self, purpose: &str) -> Option<UseRule> {
        let basis = self.basis_for(purpose)?;
        let consent = match (basis, self.single_use_consent) {
            (LawfulBasis::Consent, true) => ConsentRule::SingleUse,
            (LawfulBasis::Consent, false) => ConsentRule::Standing,
            _ => ConsentRule::NotNeeded,
        };
        Some(UseRule { basis, consent })
    }
}

/// What consent a use of data needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentRule {
    /// The basis is not consent.
    NotNeeded,
    /// A consent given once holds until it is withdrawn.
    Standing,
    /// Each use needs its own permission, spent by that use.
    SingleUse,
}

/// The answer to "may category C be used for purpose P?" when the answer is yes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct UseRule {
    pub basis: LawfulBasis,
    pub consent: ConsentRule,
}

/// Why a use of data is not allowed by the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum UseError {
    #[error("unknown category {category}")]
    UnknownCategory { category: String },
    #[error(
        "purpose {purpose} is not declared for category {category} (declared: {})",
        declared.join(", ")
    )]
    UndeclaredPurpose {
        category: String,
        purpose: String,
        declared: Vec<String>,
    },
}

/// One use of data a subject can consent to or withdraw from: consent is given per
/// category and purpose, as the statement asks for it per feature (device contacts,
/// photos, usage statistics, cookies, marketing, each credit check).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ConsentableUse<'a> {
    pub category: &'a str,
    pub purpose: &'a str,
    pub consent: ConsentRule,
}

/// Entries keyed by id, kept in the order the file declares them (which is the order
/// notices list them in). Policies are small, so lookup is a scan.
#[derive(Clone, Debug)]
pub(crate) struct Table<T>(pub(crate) Vec<(String, T)>);

impl<T> Table<T> {
    fn get(&self, id: &str) -> Option<&T> {
        self.0
            .iter()
            .find(|(key, _)| key == id)
            .map(|(_, value)| value)
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.0.iter().map(|(key, value)| (key.as_str(), value))
    }
}

impl<T: Serialize> Serialize for Table<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// A checked policy.
#[derive(Clone, Debug, Serialize)]
pub struct Policy {
    pub(crate) policy: PolicyMeta,
    pub(crate) purposes: Table<Purpose>,
    pub(crate) recipients: Table<Recipient>,
    pub(crate) categories: Table<Category>,
}

impl Policy {
    /// The policy shipped with Steward (`policy/default.toml`), built into the binary.
    // The file is compiled in and a unit test parses it, so failure here is a build
    // defect, never a runtime condition; refusing to start beats running without rules.
    #[allow(clippy::expect_used)]
    pub fn default_policy() -> Policy {
        crate::parse(DEFAULT_POLICY, "policy/default.toml")
            .map(|checked| checked.policy)
            .expect("the embedded policy/default.toml is checked by the crate's tests")
    }

    pub fn meta(&self) -> &PolicyMeta {
        &self.policy
    }

    pub fn version(&self) -> &str {
        &self.policy.version
    }

    pub fn category(&self, id: &str) -> Option<&Category> {
        self.categories.get(id)
    }

    pub fn purpose(&self, id: &str) -> Option<&Purpose> {
        self.purposes.get(id)
    }

    pub fn recipient(&self, id: &str) -> Option<&Recipient> {
        self.recipients.get(id)
    }

    /// Categories in declaration order.
    pub fn categories(&self) -> impl Iterator<Item = (&str, &Category)> {
        self.categories.iter()
    }

    /// Purposes in declaration order.
    pub fn purposes(&self) -> impl Iterator<Item = (&str, &Purpose)> {
        self.purposes.iter()
    }

    /// Recipients in declaration order.
    pub fn recipients(&self) -> impl Iterator<Item = (&str, &Recipient)> {
        self.recipients.iter()
    }

    /// May `category` be used for `purpose`, and what does that need?
    pub fn check_use(&self, category: &str, purpose: &str) -> Result<UseRule, UseError> {
        let found = self
            .category(category)
            .ok_or_else(|| UseError::UnknownCategory {
                category: category.to_owned(),
            })?;
        found
            .rule_for(purpose)
            .ok_or_else(|| UseError::UndeclaredPurpose {
                category: category.to_owned(),
                purpose: purpose.to_owned(),
                declared: found.purposes.clone(),
            })
    }

    /// How long `category` is kept: its own period, or the policy default for an unknown id.
    pub fn retention_for(&self, category: &str) -> Retention {
        self.category(category)
            .map_or(self.policy.default_retention, |c| c.retention)
    }

    /// When the retention clock of `category` starts (the policy default for an unknown id).
    pub fn retention_starts_for(&self, category: &str) -> RetentionStart {
        self.category(category)
            .map_or(self.policy.retention_starts, |c| c.retention_starts)
    }

    /// Working days allowed to answer a subject's request.
    pub fn deadline_working_days(&self) -> u32 {
        self.policy.request_deadline_working_days
    }

    pub fn jurisdiction(&self) -> Jurisdiction {
        self.policy.jurisdiction
    }

    /// Every (category, purpose) pair whose basis is consent, in declaration order.
    pub fn consentable_uses(&self) -> Vec<ConsentableUse<'_>> {
        self.categories()
            .flat_map(|(category_id, category)| {
                category.purposes.iter().filter_map(move |purpose| {
                    let rule = category.rule_for(purpose)?;
                    (rule.consent != ConsentRule::NotNeeded).then_some(ConsentableUse {
                        category: category_id,
                        purpose,
                        consent: rule.consent,
                    })
                })
            })
            .collect()
    }

    /// The purposes some category needs consent for: what a subject can grant or
    /// withdraw. In declaration order of the purposes.
    pub fn consentable_purposes(&self) -> Vec<(&str, &Purpose)> {
        let uses = self.consentable_uses();
        self.purposes()
            .filter(|(id, _)| uses.iter().any(|u| u.purpose == *id))
            .collect()
    }
}
