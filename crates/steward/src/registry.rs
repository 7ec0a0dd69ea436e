//! The one registry of stores that hold personal data. Export, erasure and
//! retention walk this list, so a store is covered as soon as it is declared
//! here; the test below fails when a table exists that is neither declared here
//! nor listed as holding no personal data.

/// One place where personal data lives.
#[derive(Debug, Clone, Copy)]
pub struct PersonalStore {
    /// The table (or, for blobs, the key prefix pattern).
    pub name: &'static str,
    pub kind: StoreKind,
    /// The policy category its data belongs to.
    pub category: &'static str,
    /// Columns naming the subject(s) a row concerns. A row shared by two people
    /// (a call, a chat) names both; each one's fields are sealed with their own key.
    pub subject_columns: &'static [&'static str],
    /// Columns sealed with a subject's data key.
    pub encrypted_columns: &'static [&'static str],
    /// Column holding the time retention counts from, when rows age individually.
    pub time_column: Option<&'static str>,
    pub description: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Table,
    /// Objects in the blob store under `tenant/<tenant>/subject/<subject>/<name>/`.
    BlobPrefix,
}

pub const PERSONAL_STORES: &[PersonalStore] = &[
    PersonalStore {
        name: "subjects",
        kind: StoreKind::Table,
        category: "contact_details",
        subject_columns: &["id"],
        encrypted_columns: &["email_enc", "phone_enc", "name_enc"],
        time_column: None,
        description: "who the subject is: email, phone number, name",
    },
    PersonalStore {
        name: "accounts",
        kind: StoreKind::Table,
        category: "account_credentials",
        subject_columns: &["subject_id"],
        encrypted_columns: &["username_enc"],
        time_column: None,
        description: "app account: username and argon2id password hash",
    },
    PersonalStore {
        name: "sessions",
        kind: StoreKind::Table,
        category: "account_credentials",
        subject_columns: &["subject_id"],
        encrypted_columns: &["ip_enc"],
        time_column: Some("created_at"),
        description: "login sessions with the login IP address",
    },
    PersonalStore {
        name: "consent_events",
        kind: StoreKind::Table,
        category: "consent_records",
        subject_columns: &["subject_id"],
        encrypted_columns: &["evidence_enc"],
        time_column: None,
        description: "the consent ledger: grants, withdrawals, single-use consumptions",
    },
];

/// Tables that hold no personal data, and why.
pub const NON_PERSONAL_TABLES: &[(&str, &str)] = &[
    ("schema_migrations", "schema version bookkeeping"),
    ("counters", "sequence counters"),
    (
        "tenants",
        "business customers: company names and customer numbers",
    ),
    (
        "audit_log",
        "pseudonymous ids, actions, categories and purposes; no personal data",
    ),
];

pub fn store(name: &str) -> Option<&'static PersonalStore> {
    PERSONAL_STORES.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_category_is_in_the_default_policy() {
        let policy = steward_policy::Policy::default_policy();
        for s in PERSONAL_STORES {
            assert!(
                policy.category(s.category).is_some(),
                "store {} names category {} which the default policy lacks",
                s.name,
                s.category
            );
        }
    }
}
