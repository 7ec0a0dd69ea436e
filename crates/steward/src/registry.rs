//! The one registry of stores that hold personal data. Export, erasure and
//! retention walk this list, so a store is covered as soon as it is declared
//! here; a test (tests/core.rs) fails when a table exists that is neither
//! declared here nor listed as holding no personal data.
//!
//! Conventions every store follows, so the walkers need no per-store code:
//! * an encrypted column is named `<field>_enc` and sealed with AAD
//!   `"<table>.<field>|<subject id>"` under the key of the subject named by its
//!   owner column;
//! * columns ending in `_idx` (blind indexes) or `_hash` (password and token
//!   hashes) are derived values: never exported;
//! * stores are listed parents first; erasure walks the list backwards.

/// One place where personal data lives.
#[derive(Debug, Clone, Copy)]
pub struct PersonalStore {
    /// The table.
    pub name: &'static str,
    /// The policy category its data belongs to.
    pub category: &'static str,
    /// Columns naming the subject(s) a row concerns. A row shared by two people
    /// (a call, a chat) names both; each one's fields are sealed with their own key.
    pub subject_columns: &'static [&'static str],
    /// Columns sealed with a subject's data key, each with the subject column
    /// naming whose key: `(encrypted column, owner subject column)`.
    pub encrypted_columns: &'static [(&'static str, &'static str)],
    /// Column holding the time retention counts from, when rows age individually.
    pub time_column: Option<&'static str>,
    /// A unique column to page through rows in a stable order.
    pub key_column: &'static str,
    /// For a store of files: the column holding each row's blob key. The file
    /// is the row's content: the access bundle includes it (decrypted), and
    /// deleting the row deletes the object (`files.rs`).
    pub blob_column: Option<&'static str>,
    /// What erasure does to the subject's rows.
    pub on_erase: OnErase,
    pub description: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnErase {
    /// Delete the rows.
    Delete,
    /// Keep the rows (they concern someone else too, or the law requires the
    /// record), but clear the subject's id and every column sealed with their key.
    Pseudonymise,
    /// The row is its owner's (the first subject column: whose key seals its
    /// content, a file above all): erasing the owner deletes it (and its file);
    /// erasing anyone else named in it pseudonymises it for them, as
    /// `Pseudonymise` does, and the owner keeps it.
    DeleteWithOwner,
}

pub const PERSONAL_STORES: &[PersonalStore] = &[
    PersonalStore {
        name: "subjects",
        category: "contact_details",
        subject_columns: &["id"],
        encrypted_columns: &[("email_enc", "id"), ("phone_enc", "id"), ("name_enc", "id")],
        time_column: None,
        key_column: "id",
        blob_column: None,
        on_erase: OnErase::Delete,
        description: "who the subject is: email, phone number, name",
    },
    PersonalStore {
        name: "accounts",
        category: "account_credentials",
        subject_columns: &["subject_id"],
        encrypted_columns: &[("username_enc", "subject_id")],
        time_column: None,
        key_column: "id",
        blob_column: None,
        on_erase: OnErase::Delete,
        description: "app account: username and argon2id password hash",
    },
    PersonalStore {
        name: "sessions",
        category: "account_credentials",
        subject_columns: &["subject_id"],
        encrypted_columns: &[("ip_enc", "subject_id")],
        time_column: Some("created_at"),
        key_column: "token_hash",
        blob_column: None,
        on_erase: OnErase::Delete,
        description: "login sessions with the login IP address",
    },
    PersonalStore {
        name: "consent_events",
        category: "consent_records",
        subject_columns: &["subject_id"],
        encrypted_columns: &[("evidence_enc", "subject_id")],
        time_column: None,
        key_column: "seq",
        blob_column: None,
        on_erase: OnErase::Delete,
        description: "the consent ledger: grants, withdrawals, single-use consumptions",
    },
    PersonalStore {
        name: "requests",
        category: "rights_requests",
        subject_columns: &["subject_id"],
        encrypted_columns: &[("details_enc", "subject_id")],
        time_column: Some("created_at"),
        key_column: "id",
        blob_column: None,
        // The record that a request was made and answered outlives the erasure it
        // asked for; what the subject wrote is cleared with their key.
        on_erase: OnErase::Pseudonymise,
        description: "data-subject requests: kind, channel, dates, verification, outcome",
    },
    PersonalStore {
        name: "call_records",
        category: "traffic_data",
        // A call concerns both parties: each one's number, raw value and the
        // details about their end of the call are sealed with their own key.
        subject_columns: &["caller_subject_id", "callee_subject_id"],
        encrypted_columns: &[
            ("caller_number_enc", "caller_subject_id"),
            ("caller_raw_enc", "caller_subject_id"),
            ("caller_name_enc", "caller_subject_id"),
            ("ip_enc", "caller_subject_id"),
            ("roaming_network_enc", "caller_subject_id"),
            ("callee_number_enc", "callee_subject_id"),
            ("callee_raw_enc", "callee_subject_id"),
        ],
        time_column: Some("start_at"),
        key_column: "id",
        blob_column: None,
        // The other party's record of the call survives one party's erasure.
        on_erase: OnErase::Pseudonymise,
        description: "call detail records: parties, numbers, IP address, times, duration, \
                      data used, roaming network",
    },
    PersonalStore {
        name: "web_visits",
        category: "web_analytics",
        subject_columns: &["subject_id"],
        encrypted_columns: &[
            ("page_enc", "subject_id"),
            ("referrer_domain_enc", "subject_id"),
            ("ip_enc", "subject_id"),
            ("browser_enc", "subject_id"),
        ],
        time_column: Some("at"),
        key_column: "id",
        blob_column: None,
        on_erase: OnErase::Delete,
        description: "website page visits (kept only with analytics consent): page, \
                      referring domain, IP address, browser",
    },
    PersonalStore {
        name: "call_recordings",
        category: "call_recordings",
        // The owner is the party on the outside of the call (the caller of an
        // inbound call, the callee of an outbound one: the customer whose call it
        // is), or the other party when the outside one is unknown (a withheld
        // number). The audio and the file name are sealed with the owner's key;
        // the other party (the member of staff) is named by id only, so erasing
        // them leaves nothing of theirs readable once their id is cleared, and
        // the owner's recording stays. Erasing the owner deletes the row and the
        // file. Retention counts 90 days from the call (`recorded_at`).
        subject_columns: &["subject_id", "other_subject_id"],
        encrypted_columns: &[("name_enc", "subject_id")],
        time_column: Some("recorded_at"),
        key_column: "id",
        blob_column: Some("blob_key"),
        on_erase: OnErase::DeleteWithOwner,
        description: "recordings of inbound and outbound calls: the audio, its type, size, \
                      direction and duration, the call it belongs to, the original file name",
    },
    PersonalStore {
        name: "media",
        category: "photos_media",
        subject_columns: &["subject_id"],
        encrypted_columns: &[("name_enc", "subject_id")],
        time_column: None,
        key_column: "id",
        blob_column: Some("blob_key"),
        on_erase: OnErase::Delete,
        description: "photos and videos a user keeps in the app (with consent): the file, \
                      its type, size and name",
    },
    PersonalStore {
        name: "enquiries",
        category: "contact_details",
        subject_columns: &["subject_id"],
        encrypted_columns: &[
            ("name_enc", "subject_id"),
            ("email_enc", "subject_id"),
            ("phones_enc", "subject_id"),
            ("postal_address_enc", "subject_id"),
            ("topic_enc", "subject_id"),
            ("message_enc", "subject_id"),
        ],
        time_column: Some("received_at"),
        key_column: "id",
        blob_column: None,
        on_erase: OnErase::Delete,
        description: "enquiries by web form, telephone, email or letter: the channel, the \
                      name, email, phone numbers and postal address given, the topic and message",
    },
    PersonalStore {
        name: "marketing_suppressions",
        category: "marketing_preferences",
        subject_columns: &["subject_id"],
        encrypted_columns: &[("evidence_enc", "subject_id")],
        time_column: Some("created_at"),
        key_column: "id",
        blob_column: None,
        // "No further contact" must outlive the contact details it suppresses
        // (Article 21(3), PECR): erasure and retention clear the subject's id and
        // the evidence, and keep the keyed hash of the address, so it is never
        // mailed again. What remains is pseudonymous (a keyed hash of an email
        // address or phone number), kept under legal obligation; see
        // docs/RETENTION.md, "Marketing after erasure".
        on_erase: OnErase::Pseudonymise,
        description: "\"no further contact\" requests: the keyed hash of each suppressed email \
                      address or phone number, when and how the request came, its evidence",
    },
    PersonalStore {
        name: "credit_checks",
        category: "credit_checks",
        subject_columns: &["subject_id"],
        encrypted_columns: &[
            ("sent_enc", "subject_id"),
            ("reference_enc", "subject_id"),
            ("decision_enc", "subject_id"),
            ("score_enc", "subject_id"),
            ("notes_enc", "subject_id"),
        ],
        time_column: Some("created_at"),
        key_column: "id",
        blob_column: None,
        on_erase: OnErase::Delete,
        description: "credit checks made with the subject's single-use permission: the agency, \
                      what was sent to it, its reference, decision, score and notes",
    },
    PersonalStore {
        name: "access_bundles",
        category: "rights_requests",
        subject_columns: &["subject_id"],
        encrypted_columns: &[],
        time_column: Some("created_at"),
        key_column: "request_id",
        // The file is a copy of what the other stores hold, so a later bundle
        // does not include it again (no blob_column). Erasure deletes these rows
        // and the subject's whole blob prefix; after `bundle_keep_days` the
        // retention run deletes both (`rights::export::purge_expired_bundles`).
        blob_column: None,
        on_erase: OnErase::Delete,
        description: "the subject's copy of the access bundle they asked for (encrypted under \
                      their key in the blob store), kept to download from the portal",
    },
    PersonalStore {
        name: "directory_entries",
        category: "business_contacts",
        subject_columns: &["subject_id"],
        encrypted_columns: &[
            ("name_enc", "subject_id"),
            ("given_name_enc", "subject_id"),
            ("family_name_enc", "subject_id"),
            ("organization_enc", "subject_id"),
            ("department_enc", "subject_id"),
            ("title_enc", "subject_id"),
            ("emails_enc", "subject_id"),
            ("phones_enc", "subject_id"),
        ],
        time_column: None,
        key_column: "id",
        blob_column: None,
        // An entry is about one person only: erasing them removes them from the
        // employer's directory. The change log keeps the entry's id (nothing of
        // the person), and devices delete their copy at their next sync.
        on_erase: OnErase::Delete,
        description: "the employer's business directory: name, work email addresses, phone \
                      numbers, organisation, department, job title",
    },
    PersonalStore {
        name: "device_contacts",
        category: "device_contacts",
        // The contacts are the syncing user's address book, held with their
        // consent and sealed with their key; the people in them are not subjects.
        subject_columns: &["subject_id"],
        encrypted_columns: &[("card_enc", "subject_id"), ("photo_enc", "subject_id")],
        time_column: None,
        key_column: "id",
        blob_column: None,
        on_erase: OnErase::Delete,
        description: "contacts an App user synced from their device (with consent): names, \
                      phone numbers, email and postal addresses, organisation, birthday, note, \
                      photo",
    },
    PersonalStore {
        name: "chat_conversations",
        category: "chat",
        subject_columns: &["created_by"],
        encrypted_columns: &[("title_enc", "created_by")],
        time_column: None,
        key_column: "id",
        blob_column: None,
        // The conversation belongs to all its members: it stays for the others
        // when its creator is erased, without the creator's id and the title
        // they wrote (sealed with their key).
        on_erase: OnErase::Pseudonymise,
        description: "chat conversations: kind, who created them, a group's title",
    },
    PersonalStore {
        name: "chat_members",
        category: "chat",
        subject_columns: &["subject_id"],
        encrypted_columns: &[],
        time_column: None,
        key_column: "id",
        blob_column: None,
        // That the erased person was in a conversation is theirs alone: the
        // membership goes.
        on_erase: OnErase::Delete,
        description: "who is in which chat conversation (chat partners), since when",
    },
    PersonalStore {
        name: "chat_messages",
        category: "chat",
        subject_columns: &["sender_subject_id"],
        encrypted_columns: &[("body_enc", "sender_subject_id")],
        time_column: Some("sent_at"),
        key_column: "seq",
        blob_column: None,
        // The text is the sender's and goes with them (cleared, and unreadable
        // anyway once their key is destroyed); the row stays as a gap in the
        // other members' history, which their receipts point at.
        on_erase: OnErase::Pseudonymise,
        description: "chat messages: conversation, sender, text, time",
    },
    PersonalStore {
        name: "chat_receipts",
        category: "chat",
        subject_columns: &["recipient_subject_id"],
        encrypted_columns: &[],
        time_column: Some("sent_at"),
        key_column: "id",
        blob_column: None,
        // A message's status is the sender's record too ("delivered", "read"):
        // it stays for the sender, without the erased recipient's id.
        on_erase: OnErase::Pseudonymise,
        description: "status of each chat message per recipient: sent, delivered, read, with times",
    },
    PersonalStore {
        name: "chat_attachments",
        category: "chat",
        subject_columns: &["subject_id"],
        encrypted_columns: &[("name_enc", "subject_id")],
        time_column: Some("created_at"),
        key_column: "id",
        blob_column: Some("blob_key"),
        // A file someone sent is theirs, like their text: it goes with them (row
        // and object); the message it came with stays as a gap.
        on_erase: OnErase::Delete,
        description: "files sent in chat: the file, its type, size and name",
    },
    PersonalStore {
        name: "chat_connections",
        category: "chat",
        subject_columns: &["subject_id"],
        encrypted_columns: &[("ip_enc", "subject_id")],
        time_column: Some("connected_at"),
        key_column: "id",
        blob_column: None,
        on_erase: OnErase::Delete,
        description: "real-time chat connections: IP address, login session, times",
    },
];

/// Tables that hold no personal data, and why.
pub const NON_PERSONAL_TABLES: &[(&str, &str)] = &[
    ("schema_migrations", "schema version bookkeeping"),
    ("counters", "sequence counters"),
    (
        "scheduled_jobs",
        "periodic jobs: when each last ran and in which server process (host name and pid)",
    ),
    (
        "shred_outbox",
        "subject keys to destroy after an erasure has committed: subject ids only, each \
         removed once its key is gone",
    ),
    (
        "blob_outbox",
        "blob store objects to delete after a commit: keys made of tenant and subject ids and \
         a file id",
    ),
    (
        "tenants",
        "business customers: company names and customer numbers",
    ),
    (
        "request_events",
        "the timeline of each request: ids, states and actors, no personal data",
    ),
    (
        "erasure_tombstones",
        "that a subject was erased, when and why, with keyed hashes of their identifiers \
         so that a later request can be told; nothing readable",
    ),
    (
        "notifications",
        "notices to a tenant's admins about requests concerning their users: ids only",
    ),
    (
        "cdr_quarantine",
        "unreadable rows of ingested call record files: file name, line and reason (which \
         never quotes a value); the row itself is not kept",
    ),
    (
        "login_throttle",
        "failure counters keyed by a keyed hash of the attempted username; rows expire after a day",
    ),
    (
        "directory_changes",
        "the business directory's change log for sync: entry ids, change numbers, a deleted \
         flag and times; nothing about the person an entry was",
    ),
    (
        "directory_state",
        "per tenant, the directory's last change number and the newest pruned one",
    ),
    (
        "audit_log",
        "pseudonymous ids, actions, categories and purposes; no personal data",
    ),
    (
        "usage_stats",
        "anonymous app usage counters per day, feature, platform and app version: no user, \
         subject, tenant, device, session or IP column and nothing finer than a day, so no \
         row relates to a person (reports also suppress cells under 10)",
    ),
];

pub fn store(name: &str) -> Option<&'static PersonalStore> {
    PERSONAL_STORES.iter().find(|s| s.name == name)
}

impl PersonalStore {
    /// What erasing the subject named in `column` does to their rows: `Delete`
    /// or `Pseudonymise` (never `DeleteWithOwner`, which resolves per column).
    pub fn erase_action(&self, column: &str) -> OnErase {
        match self.on_erase {
            OnErase::DeleteWithOwner if self.subject_columns.first() == Some(&column) => {
                OnErase::Delete
            }
            OnErase::DeleteWithOwner => OnErase::Pseudonymise,
            other => other,
        }
    }

    /// The AAD field name of an encrypted column: `subjects.email` for `email_enc`.
    pub fn field_name(&self, column: &str) -> String {
        format!(
            "{}.{}",
            self.name,
            column.strip_suffix("_enc").unwrap_or(column)
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_columns_follow_the_conventions() {
        for s in PERSONAL_STORES {
            for (col, owner) in s.encrypted_columns {
                assert!(col.ends_with("_enc"), "{}.{col} must end in _enc", s.name);
                assert!(
                    s.subject_columns.contains(owner),
                    "{}.{col}: owner {owner} is not a subject column",
                    s.name
                );
            }
        }
        assert_eq!(
            store("subjects")
                .map(|s| s.field_name("email_enc"))
                .as_deref(),
            Some("subjects.email")
        );
    }

    #[test]
    fn delete_with_owner_deletes_for_the_owner_only() {
        let s = store("call_recordings").unwrap();
        assert_eq!(s.erase_action("subject_id"), OnErase::Delete);
        assert_eq!(s.erase_action("other_subject_id"), OnErase::Pseudonymise);
        let c = store("call_records").unwrap();
        assert_eq!(c.erase_action("caller_subject_id"), OnErase::Pseudonymise);
        assert_eq!(
            store("media").unwrap().erase_action("subject_id"),
            OnErase::Delete
        );
    }

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
