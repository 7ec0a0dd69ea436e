//! Semantic checks: everything a well-typed file can still get wrong. Every problem is
//! reported (not just the first), each at the value that causes it.

use std::collections::{BTreeMap, BTreeSet};

use serde_spanned::Spanned;

use crate::diagnostic::Reporter;
use crate::model::{
    AccessRole, Category, LawfulBasis, Policy, PolicyMeta, Purpose, Recipient, RetentionStart,
    Table,
};
use crate::raw::{Named, RawCategory, RawFile, RawMeta, RawPurpose, RawRecipient, Text};
use crate::retention::{Retention, RetentionUnit};
use crate::{fides, geo};

/// Deadlines past about four working weeks risk the one-month limit of Article 12(3).
const DEADLINE_WARNING_DAYS: u32 = 20;

/// Builds the checked policy, reporting problems into `report`. The returned policy is
/// only meaningful if no error was reported.
pub(crate) fn check(raw: RawFile, report: &mut Reporter<'_>) -> Policy {
    let policy = check_meta(raw.policy, report);
    let purposes = check_table(raw.purposes, report, check_purpose);
    let recipients = check_table(raw.recipients, report, check_recipient);

    let mut uses = Uses::default();
    let raw_categories = match raw.categories {
        Some(categories) if categories.get_ref().0.is_empty() => {
            report.error(categories.span(), "no categories declared in [categories]");
            Named::default()
        }
        Some(categories) => categories.into_inner(),
        None => {
            report.error(
                0..0,
                "no [categories.<id>] tables: a policy must declare what data it covers",
            );
            Named::default()
        }
    };
    let known = Known {
        purposes: &purposes,
        recipients: &recipients,
        default_retention: policy.default_retention,
        default_start: policy.retention_starts,
    };
    let categories = check_table(raw_categories, report, |raw, report| {
        check_category(raw, &known, &mut uses, report)
    });

    warn_unused("recipient", &recipients, &uses.recipients, report);
    warn_unused("purpose", &purposes, &uses.purposes, report);

    Policy {
        policy,
        purposes: strip(purposes),
        recipients: strip(recipients),
        categories: strip(categories),
    }
}

/// Ids referenced by categories, to find declarations nothing uses.
#[derive(Default)]
struct Uses {
    purposes: BTreeSet<String>,
    recipients: BTreeSet<String>,
}

/// What category checks look ids and defaults up in.
struct Known<'a> {
    purposes: &'a [(Text, Purpose)],
    recipients: &'a [(Text, Recipient)],
    default_retention: Retention,
    default_start: RetentionStart,
}

impl Known<'_> {
    fn purpose_ids(&self) -> String {
        list_ids(self.purposes)
    }

    fn recipient_ids(&self) -> String {
        list_ids(self.recipients)
    }
}

fn list_ids<T>(entries: &[(Text, T)]) -> String {
    let ids: Vec<&str> = entries
        .iter()
        .map(|(id, _)| id.get_ref().as_str())
        .collect();
    if ids.is_empty() {
        "none".to_owned()
    } else {
        ids.join(", ")
    }
}

fn has_id<T>(entries: &[(Text, T)], id: &str) -> bool {
    entries.iter().any(|(key, _)| key.get_ref() == id)
}

fn strip<T>(entries: Vec<(Text, T)>) -> Table<T> {
    Table(
        entries
            .into_iter()
            .map(|(id, value)| (id.into_inner(), value))
            .collect(),
    )
}

/// Checks each entry's id and converts the entry; ids are used in APIs, URLs and CSV
/// columns, so they are kept to lower-case snake case.
fn check_table<R, T>(
    raw: Named<R>,
    report: &mut Reporter<'_>,
    mut convert: impl FnMut(R, &mut Reporter<'_>) -> T,
) -> Vec<(Text, T)> {
    raw.0
        .into_iter()
        .map(|(id, entry)| {
            if !is_identifier(id.get_ref()) {
                report.error(
                    id.span(),
                    format!(
                        "id {:?} must start with a lower-case letter and contain only a-z, 0-9 and _",
                        id.get_ref()
                    ),
                );
            }
            (id, convert(entry, report))
        })
        .collect()
}

fn is_identifier(id: &str) -> bool {
    let mut bytes = id.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn non_empty(text: Text, field: &str, report: &mut Reporter<'_>) -> String {
    if text.get_ref().trim().is_empty() {
        report.error(text.span(), format!("{field} must not be empty"));
    }
    text.into_inner()
}

fn parse_retention(text: &Text, report: &mut Reporter<'_>, fallback: Retention) -> Retention {
    text.get_ref().parse().unwrap_or_else(|error| {
        report.error(text.span(), format!("{error}"));
        fallback
    })
}

fn check_meta(raw: RawMeta, report: &mut Reporter<'_>) -> PolicyMeta {
    if let Some(email) = &raw.contact_email {
        let valid = email
            .get_ref()
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
        if !valid {
            report.error(
                email.span(),
                format!(
                    "contact_email {:?} is not an email address",
                    email.get_ref()
                ),
            );
        }
    }
    let days = raw.request_deadline_working_days;
    if *days.get_ref() == 0 {
        report.error(
            days.span(),
            "request_deadline_working_days must be at least 1",
        );
    } else if *days.get_ref() > DEADLINE_WARNING_DAYS {
        report.warning(
            days.span(),
            format!(
                "a deadline of {} working days may exceed the one month UK GDPR Article 12(3) allows",
                days.get_ref()
            ),
        );
    }
    // Stands in only after an error has been reported, so the value never escapes.
    let six_years = Retention {
        amount: 6,
        unit: RetentionUnit::Years,
    };
    PolicyMeta {
        version: non_empty(raw.version, "version", report),
        controller: non_empty(raw.controller, "controller", report),
        controller_address: non_empty(raw.controller_address, "controller_address", report),
        contact_email: raw.contact_email.map(Spanned::into_inner),
        default_retention: parse_retention(&raw.default_retention, report, six_years),
        retention_starts: raw.retention_starts,
        request_deadline_working_days: days.into_inner(),
        jurisdiction: raw.jurisdiction,
        time_zone: check_time_zone(raw.time_zone, report),
    }
}

/// `time_zone`: an IANA zone name the bundled time zone database knows.
fn check_time_zone(zone: Option<Text>, report: &mut Reporter<'_>) -> String {
    let Some(zone) = zone else {
        return crate::model::DEFAULT_TIME_ZONE.to_owned();
    };
    if zone.get_ref().parse::<chrono_tz::Tz>().is_err() {
        report.error(
            zone.span(),
            format!(
                "unknown time zone {:?}: use an IANA name such as \"Europe/London\"",
                zone.get_ref()
            ),
        );
        return crate::model::DEFAULT_TIME_ZONE.to_owned();
    }
    zone.into_inner()
}

/// `fields`: `store -> field -> heading`, names in snake case, headings one
/// non-empty line each.
fn check_fields(
    raw: BTreeMap<Text, BTreeMap<Text, Text>>,
    report: &mut Reporter<'_>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let snake = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let mut out = BTreeMap::new();
    for (store, fields) in raw {
        if !snake(store.get_ref()) {
            report.error(
                store.span(),
                format!(
                    "fields: {:?} is not a store name (lower-case snake case)",
                    store.get_ref()
                ),
            );
        }
        let mut headings = BTreeMap::new();
        for (field, heading) in fields {
            if !snake(field.get_ref()) {
                report.error(
                    field.span(),
                    format!(
                        "fields: {:?} is not a field name (lower-case snake case)",
                        field.get_ref()
                    ),
                );
            }
            let text = heading.get_ref();
            if text.trim().is_empty() || text.contains(['\n', '\r']) {
                report.error(
                    heading.span(),
                    format!(
                        "the heading of {} must be one non-empty line",
                        field.get_ref()
                    ),
                );
            }
            headings.insert(field.into_inner(), heading.into_inner());
        }
        out.insert(store.into_inner(), headings);
    }
    out
}

fn check_purpose(raw: RawPurpose, report: &mut Reporter<'_>) -> Purpose {
    warn_unless_fides(&raw.fides_data_use, fides::is_data_use, "data use", report);
    Purpose {
        name: non_empty(raw.name, "name", report),
        description: raw.description,
        fides_data_use: raw.fides_data_use.into_inner(),
    }
}

fn warn_unless_fides(name: &Text, known: fn(&str) -> bool, what: &str, report: &mut Reporter<'_>) {
    if !known(name.get_ref()) {
        report.warning(
            name.span(),
            format!(
                "{:?} is not a {what} in the fideslang default taxonomy: check the spelling, or ignore this for a custom key",
                name.get_ref()
            ),
        );
    }
}

fn check_recipient(raw: RawRecipient, report: &mut Reporter<'_>) -> Recipient {
    let country = raw.country.get_ref();
    if let Some(iso) = geo::iso_spelling_of(country) {
        report.error(
            raw.country.span(),
            format!("country {country:?} is not an ISO 3166-1 alpha-2 code: write {iso:?}"),
        );
    } else if !geo::is_country_code(country) {
        report.error(
            raw.country.span(),
            format!("country {country:?} is not an ISO 3166-1 alpha-2 code (two capital letters, e.g. \"GB\", \"US\")"),
        );
    } else if !geo::in_uk_or_eea(country)
        && raw
            .safeguard
            .as_ref()
            .is_none_or(|s| s.get_ref().trim().is_empty())
    {
        report.error(
            raw.country.span(),
            format!(
                "recipient in {country} is outside the UK and EEA: add `safeguard` naming the transfer mechanism \
                 (e.g. \"UK IDTA\", \"EU SCCs with the UK Addendum\", \"adequacy decision\", \
                 \"UK Extension to the EU-US Data Privacy Framework\")"
            ),
        );
    }
    let privacy_shield = raw
        .safeguard
        .as_ref()
        .filter(|s| s.get_ref().to_lowercase().contains("privacy shield"));
    if let Some(safeguard) = privacy_shield {
        report.warning(
            safeguard.span(),
            "the EU-US Privacy Shield was invalidated on 16 July 2020 by the CJEU (case C-311/18, \"Schrems II\") \
             and is no safeguard: name a current one, e.g. \"UK Extension to the EU-US Data Privacy Framework\" \
             (if the recipient is certified), \"UK IDTA\" or \"EU SCCs with the UK Addendum\"",
        );
    }
    Recipient {
        name: non_empty(raw.name, "name", report),
        kind: raw.kind,
        country: raw.country.into_inner(),
        safeguard: raw.safeguard.map(Spanned::into_inner),
        description: raw.description,
    }
}

fn check_category(
    raw: RawCategory,
    known: &Known<'_>,
    uses: &mut Uses,
    report: &mut Reporter<'_>,
) -> Category {
    let fides_categories = strings(raw.fides_categories, "fides_categories", report);
    for name in &fides_categories {
        warn_unless_fides(name, fides::is_data_category, "data category", report);
    }

    let subjects = raw.subjects;
    if subjects.get_ref().is_empty() {
        report.error(
            subjects.span(),
            "subjects must name at least one kind of data subject",
        );
    }
    let mut seen = Vec::new();
    for subject in subjects.get_ref() {
        if seen.contains(subject.get_ref()) {
            report.error(subject.span(), "duplicate entry in subjects");
        } else {
            seen.push(*subject.get_ref());
        }
    }

    let basis = *raw.lawful_basis.get_ref();
    let consent_required = *raw.consent_required.get_ref();
    if consent_required != (basis == LawfulBasis::Consent) {
        report.error(
            raw.consent_required.span(),
            format!(
                "consent_required = {consent_required} contradicts lawful_basis = \"{basis}\": \
                 consent_required must be true exactly when lawful_basis is \"consent\""
            ),
        );
    }

    let purposes = strings(raw.purposes, "purposes", report);
    for purpose in &purposes {
        if has_id(known.purposes, purpose.get_ref()) {
            uses.purposes.insert(purpose.get_ref().clone());
        } else {
            report.error(
                purpose.span(),
                format!(
                    "unknown purpose {:?} (declared purposes: {})",
                    purpose.get_ref(),
                    known.purpose_ids()
                ),
            );
        }
    }

    let mut purpose_basis = BTreeMap::new();
    for (purpose, override_basis) in raw.purpose_basis {
        if !purposes.iter().any(|p| p.get_ref() == purpose.get_ref()) {
            report.error(
                purpose.span(),
                format!(
                    "purpose_basis names {:?}, which is not in this category's purposes",
                    purpose.get_ref()
                ),
            );
        }
        purpose_basis.insert(purpose.into_inner(), override_basis.into_inner());
    }
    let effective = |purpose: &Text| {
        purpose_basis
            .get(purpose.get_ref())
            .copied()
            .unwrap_or(basis)
    };
    let any_consent = purposes
        .iter()
        .any(|p| effective(p) == LawfulBasis::Consent);

    if basis == LawfulBasis::Consent && !purposes.is_empty() && !any_consent {
        report.warning(
            raw.lawful_basis.span(),
            "lawful_basis is \"consent\" but purpose_basis moves every purpose to another basis: \
             no purpose is marked for consent, so the consent asked for would govern nothing",
        );
    }
    let single_use_consent = match raw.single_use_consent {
        Some(flag) if *flag.get_ref() && !any_consent => {
            report.error(
                flag.span(),
                "single_use_consent = true needs consent as the basis of at least one purpose",
            );
            true
        }
        Some(flag) => flag.into_inner(),
        None => false,
    };

    let retention = match &raw.retention {
        Some(text) => parse_retention(text, report, known.default_retention),
        None => known.default_retention,
    };

    let recipients = strings_allow_empty(raw.recipients, "recipients", report);
    for recipient in &recipients {
        if has_id(known.recipients, recipient.get_ref()) {
            uses.recipients.insert(recipient.get_ref().clone());
        } else {
            report.error(
                recipient.span(),
                format!(
                    "unknown recipient {:?} (declared recipients: {})",
                    recipient.get_ref(),
                    known.recipient_ids()
                ),
            );
        }
    }

    let retention_starts = raw.retention_starts.unwrap_or(known.default_start);
    let anonymous = raw.anonymous.filter(|flag| *flag.get_ref());
    if let (Some(flag), RetentionStart::LastEngagement) = (&anonymous, retention_starts) {
        report.error(
            flag.span(),
            "an anonymous category cannot count retention from a person's last engagement: \
             set retention_starts = \"collection\"",
        );
    }

    let access_roles = raw
        .access_roles
        .map(|list| check_access_roles(list, report));

    Category {
        name: non_empty(raw.name, "name", report),
        description: raw.description,
        fides_categories: fides_categories
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
        subjects: seen,
        source: raw.source,
        lawful_basis: basis,
        consent_required,
        single_use_consent,
        purposes: purposes.into_iter().map(Spanned::into_inner).collect(),
        purpose_basis,
        retention,
        retention_starts,
        recipients: recipients.into_iter().map(Spanned::into_inner).collect(),
        anonymous: anonymous.is_some(),
        archive_exempt: raw.archive_exempt,
        access_roles,
        other_parties: raw.other_parties.unwrap_or_default(),
        fields: check_fields(raw.fields, report),
    }
}

/// `access_roles`: known roles, each once. An empty list is allowed (no account
/// may read the data; the command line and access requests still reach it) but
/// warned about, since it is more likely a slip than a decision.
fn check_access_roles(list: Spanned<Vec<Text>>, report: &mut Reporter<'_>) -> Vec<AccessRole> {
    if list.get_ref().is_empty() {
        report.warning(
            list.span(),
            "access_roles = [] lets no account read this category's data (only the command \
             line and access requests reach it): leave access_roles out to keep each feature's \
             own rule, or name the roles",
        );
    }
    let mut roles = Vec::new();
    for item in strings_allow_empty(list.into_inner(), "access_roles", report) {
        match AccessRole::parse(item.get_ref()) {
            Some(role) if !roles.contains(&role) => roles.push(role),
            Some(_) => {} // reported as a duplicate
            None => report.error(
                item.span(),
                format!(
                    "unknown role {:?} in access_roles (roles: {})",
                    item.get_ref(),
                    AccessRole::ALL.map(AccessRole::as_str).join(", ")
                ),
            ),
        }
    }
    roles
}

/// A list that must name at least one thing, each once.
fn strings(list: Spanned<Vec<Text>>, field: &str, report: &mut Reporter<'_>) -> Vec<Text> {
    if list.get_ref().is_empty() {
        report.error(list.span(), format!("{field} must not be empty"));
    }
    strings_allow_empty(list.into_inner(), field, report)
}

/// A list that may be empty but names each thing once.
fn strings_allow_empty(list: Vec<Text>, field: &str, report: &mut Reporter<'_>) -> Vec<Text> {
    let mut seen = BTreeSet::new();
    for item in &list {
        if !seen.insert(item.get_ref()) {
            report.error(
                item.span(),
                format!("duplicate entry {:?} in {field}", item.get_ref()),
            );
        }
    }
    list
}

fn warn_unused<T>(
    kind: &str,
    declared: &[(Text, T)],
    used: &BTreeSet<String>,
    report: &mut Reporter<'_>,
) {
    for (id, _) in declared {
        if !used.contains(id.get_ref()) {
            report.warning(
                id.span(),
                format!(
                    "{kind} {:?} is declared but no category uses it",
                    id.get_ref()
                ),
            );
        }
    }
}
