//! What the access bundle shows of each registered store: the fields a person
//! reads (`index.html`) and the machine-readable files carry (`data/*.json`,
//! `data/*.csv`), each with a stable name, a kind that says how it is written,
//! and where its value comes from. Every column of a store is either the source
//! of a field here or listed as internal (ids that only join tables, tenant
//! ids, storage formats, ingestion times); a test fails when a column is
//! neither, so a new column is a decision, not an accident.
//!
//! The headings a person reads come from the policy (`[categories.<id>.fields.
//! <store>]`), like every other word the subject is told; a field the policy
//! does not name is headed by its name.
//!
//! Records shared with other people (a call) are seen from the subject's side:
//! `direction` is "outgoing" when they called, and `other_party_number` is the
//! number they dialled or the caller ID they were shown, opened with the other
//! party's key and shown, masked or left out as the category's
//! `other_parties` says. Nothing else of the other party (their name, id, IP
//! address) is ever opened.

use std::collections::HashMap;

use serde_json::{Value as JsonValue, json};
use steward_crypto::DataKey;
use steward_policy::{OtherParties, Policy};
use steward_store::{Row, Value};

use crate::core::{Steward, fields};
use crate::error::Result;
use crate::registry::PersonalStore;

/// How a field's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Number,
    /// Unix seconds in storage; ISO 8601 (UTC) in the files, the controller's
    /// local time on the pages.
    Time,
    /// Seconds.
    Duration,
    /// Bytes, shown in MB.
    Size,
    /// 0/1 in storage; true/false in the files, yes/no on the pages.
    Flag,
    /// A JSON value stored as text (lists of numbers, a contact card).
    Json,
    /// A policy category id, shown by its name.
    Category,
    /// A policy purpose id, shown by its name.
    Purpose,
    /// A policy recipient id, shown by its name.
    Recipient,
    /// A stored code with the words to show for it (unknown codes as stored).
    Words(&'static [(&'static str, &'static str)]),
    /// The path of the row's file inside the bundle.
    File,
    /// An id joining rows of the machine files (a conversation, a message):
    /// in the files, not on the pages.
    Ref,
    /// Binary content written as base64 (a contact's photo): in the files,
    /// not on the pages.
    Base64,
}

/// Where a field's value comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// A column. A sealed one (`<field>_enc`) is opened with the subject's key
    /// when the subject is the one whose key seals it, and is null otherwise.
    Col(&'static str),
    /// Depends on which subject column names the subject: the source for each
    /// (none: null).
    Side(&'static [(&'static str, Source)]),
    /// A fixed value.
    Fixed(&'static str),
    /// Another party's sealed value the subject saw or gave (the number they
    /// dialled): opened with the owner's key, then shown, masked or left out
    /// as the category's `other_parties` says.
    Other {
        column: &'static str,
        owner: &'static str,
    },
    /// The row's file in the bundle (stores of files, the owner's rows).
    File,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub source: Source,
}

/// A store as the bundle shows it.
#[derive(Debug)]
pub struct View {
    pub store: &'static str,
    /// What the pages call the store's table.
    pub caption: &'static str,
    /// The column (a time) the rows are listed by, oldest first; none: by key.
    pub order: Option<&'static str>,
    pub fields: &'static [Field],
    /// Columns left out of the bundle, and why (one reason for the list).
    pub internal: &'static [&'static str],
}

const fn f(name: &'static str, kind: Kind, source: Source) -> Field {
    Field { name, kind, source }
}
const fn col(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        source: Source::Col(name),
    }
}
const fn sealed(name: &'static str, column: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        source: Source::Col(column),
    }
}
const FILE: Field = Field {
    name: "file",
    kind: Kind::File,
    source: Source::File,
};

use Kind::*;

const SUBJECT_KINDS: &[(&str, &str)] = &[
    ("user", "app user"),
    ("contact", "contact"),
    ("visitor", "website visitor"),
    ("external_party", "other party to a call or chat"),
];
const DISPOSITIONS: &[(&str, &str)] = &[
    ("ANSWERED", "answered"),
    ("NO ANSWER", "not answered"),
    ("BUSY", "busy"),
    ("FAILED", "failed"),
    ("CONGESTION", "network busy"),
];
const RECORDING_DIRECTIONS: &[(&str, &str)] =
    &[("inbound", "incoming call"), ("outbound", "outgoing call")];
pub const CONVERSATION_KINDS: &[(&str, &str)] =
    &[("direct", "direct conversation"), ("group", "group")];

/// Every registered store, as the bundle shows it.
pub const VIEWS: &[View] = &[
    View {
        store: "subjects",
        caption: "Who you are",
        order: None,
        fields: &[
            col("kind", Words(SUBJECT_KINDS)),
            sealed("name", "name_enc", Text),
            sealed("email", "email_enc", Text),
            sealed("phone", "phone_enc", Text),
            col("created_at", Time),
            col("last_engagement_at", Time),
            col("legal_hold", Flag),
        ],
        internal: &["id", "tenant_id", "archive_exempt"],
    },
    View {
        store: "accounts",
        caption: "Your App account",
        order: Some("created_at"),
        fields: &[
            sealed("username", "username_enc", Text),
            col("role", Text),
            col("disabled", Flag),
            col("created_at", Time),
        ],
        internal: &["id", "subject_id", "tenant_id"],
    },
    View {
        store: "sessions",
        caption: "Your sign-ins",
        order: Some("created_at"),
        fields: &[
            col("created_at", Time),
            col("expires_at", Time),
            col("revoked_at", Time),
            sealed("ip_address", "ip_enc", Text),
        ],
        internal: &["account_id", "subject_id"],
    },
    View {
        store: "consent_events",
        caption: "Consent you gave or withdrew",
        order: Some("at"),
        fields: &[
            col("at", Time),
            col("category", Category),
            col("purpose", Purpose),
            col("action", Text),
            col("single_use", Flag),
            col("channel", Text),
            sealed("evidence", "evidence_enc", Text),
            col("policy_version", Text),
        ],
        internal: &[
            "seq",
            "id",
            "subject_id",
            "tenant_id",
            "grant_id",
            "recorded_by",
        ],
    },
    View {
        store: "requests",
        caption: "Your requests to us",
        order: Some("created_at"),
        fields: &[
            col("kind", Text),
            col("channel", Text),
            col("received_on", Text),
            col("due_on", Text),
            col("state", Text),
            col("verify_method", Text),
            col("verified_at", Time),
            col("refusal_ground", Text),
            sealed("details", "details_enc", Text),
            col("created_at", Time),
            col("closed_at", Time),
        ],
        internal: &[
            "id",
            "tenant_id",
            "subject_id",
            "tombstone_id",
            "region",
            "verified_by",
            "created_by",
        ],
    },
    View {
        store: "call_records",
        caption: "Your calls",
        order: Some("start_at"),
        fields: &[
            f("started_at", Time, Source::Col("start_at")),
            f(
                "direction",
                Text,
                Source::Side(&[
                    ("caller_subject_id", Source::Fixed("outgoing")),
                    ("callee_subject_id", Source::Fixed("incoming")),
                ]),
            ),
            f(
                "your_number",
                Text,
                Source::Side(&[
                    ("caller_subject_id", Source::Col("caller_number_enc")),
                    ("callee_subject_id", Source::Col("callee_number_enc")),
                ]),
            ),
            f(
                "other_party_number",
                Text,
                Source::Side(&[
                    (
                        "caller_subject_id",
                        Source::Other {
                            column: "callee_number_enc",
                            owner: "callee_subject_id",
                        },
                    ),
                    (
                        "callee_subject_id",
                        Source::Other {
                            column: "caller_number_enc",
                            owner: "caller_subject_id",
                        },
                    ),
                ]),
            ),
            f("answered_at", Time, Source::Col("answer_at")),
            f("ended_at", Time, Source::Col("end_at")),
            col("duration", Duration),
            f("billed_duration", Duration, Source::Col("billsec")),
            f("outcome", Words(DISPOSITIONS), Source::Col("disposition")),
            col("hangup_cause", Text),
            f("data_used", Size, Source::Col("data_bytes")),
            f(
                "ip_address",
                Text,
                Source::Side(&[("caller_subject_id", Source::Col("ip_enc"))]),
            ),
            f(
                "roaming_network",
                Text,
                Source::Side(&[("caller_subject_id", Source::Col("roaming_network_enc"))]),
            ),
            // The name the subject's phone presented when they called (bytes
            // that are not UTF-8 as `base64:`, exactly as the PBX wrote them).
            f(
                "your_caller_name",
                Text,
                Source::Side(&[("caller_subject_id", Source::Col("caller_name_enc"))]),
            ),
        ],
        // The parties' ids, the numbers as the PBX wrote them (the same numbers
        // as `your_number`, before normalising), the PBX's own direction and
        // codes, storage facts.
        internal: &[
            "id",
            "tenant_id",
            "source_format",
            "leg_id",
            "linked_id",
            "caller_subject_id",
            "callee_subject_id",
            "caller_raw_enc",
            "callee_raw_enc",
            "direction",
            "account_code",
            "context",
            "ama_flags",
            "ingested_at",
        ],
    },
    View {
        store: "web_visits",
        caption: "Your visits to our website",
        order: Some("at"),
        fields: &[
            col("at", Time),
            sealed("page", "page_enc", Text),
            sealed("referrer_domain", "referrer_domain_enc", Text),
            sealed("ip_address", "ip_enc", Text),
            sealed("browser", "browser_enc", Text),
        ],
        internal: &["id", "subject_id", "tenant_id"],
    },
    View {
        store: "call_recordings",
        caption: "Recordings of your calls",
        order: Some("recorded_at"),
        fields: &[
            f("call_started_at", Time, Source::Col("recorded_at")),
            f(
                "call_direction",
                Words(RECORDING_DIRECTIONS),
                Source::Col("direction"),
            ),
            col("duration", Duration),
            sealed("file_name", "name_enc", Text),
            f("file_type", Text, Source::Col("content_type")),
            f("file_size", Size, Source::Col("size")),
            FILE,
        ],
        internal: &[
            "id",
            "tenant_id",
            "call_record_id",
            "subject_id",
            "other_subject_id",
            "owner_party",
            "blob_key",
            "created_at",
        ],
    },
    View {
        store: "media",
        caption: "Your photos and media",
        order: Some("created_at"),
        fields: &[
            col("created_at", Time),
            sealed("file_name", "name_enc", Text),
            f("file_type", Text, Source::Col("content_type")),
            f("file_size", Size, Source::Col("size")),
            FILE,
        ],
        internal: &["id", "tenant_id", "subject_id", "blob_key"],
    },
    View {
        store: "enquiries",
        caption: "Your enquiries",
        order: Some("received_at"),
        fields: &[
            col("received_at", Time),
            col("channel", Text),
            sealed("name", "name_enc", Text),
            sealed("email", "email_enc", Text),
            sealed("phones", "phones_enc", Json),
            sealed("postal_address", "postal_address_enc", Text),
            sealed("topic", "topic_enc", Text),
            sealed("message", "message_enc", Text),
        ],
        internal: &["id", "tenant_id", "subject_id", "recorded_by"],
    },
    View {
        store: "marketing_suppressions",
        caption: "Marketing you asked us not to send",
        order: Some("created_at"),
        fields: &[
            col("created_at", Time),
            col("kind", Text),
            col("channel", Text),
            sealed("evidence", "evidence_enc", Text),
        ],
        internal: &["id", "subject_id", "tenant_id", "created_by"],
    },
    View {
        store: "credit_checks",
        caption: "Credit checks",
        order: Some("created_at"),
        fields: &[
            col("created_at", Time),
            col("agency", Recipient),
            sealed("sent", "sent_enc", Json),
            col("result_at", Time),
            sealed("reference", "reference_enc", Text),
            sealed("decision", "decision_enc", Text),
            sealed("score", "score_enc", Text),
            sealed("notes", "notes_enc", Text),
        ],
        internal: &[
            "id",
            "tenant_id",
            "subject_id",
            "grant_id",
            "requested_by",
            "result_by",
        ],
    },
    View {
        store: "access_bundles",
        caption: "Copies of your data we made for you",
        order: Some("created_at"),
        fields: &[
            col("created_at", Time),
            f("size", Size, Source::Col("size")),
        ],
        internal: &["request_id", "tenant_id", "subject_id", "blob_key"],
    },
    View {
        store: "directory_entries",
        caption: "Your business directory entry",
        order: Some("created_at"),
        fields: &[
            sealed("name", "name_enc", Text),
            sealed("given_name", "given_name_enc", Text),
            sealed("family_name", "family_name_enc", Text),
            sealed("organization", "organization_enc", Text),
            sealed("department", "department_enc", Text),
            sealed("title", "title_enc", Text),
            sealed("emails", "emails_enc", Json),
            sealed("phones", "phones_enc", Json),
            col("created_at", Time),
            col("updated_at", Time),
        ],
        internal: &["id", "tenant_id", "subject_id"],
    },
    View {
        store: "device_contacts",
        caption: "Device contacts you synchronised",
        order: Some("created_at"),
        fields: &[
            sealed("card", "card_enc", Json),
            sealed("photo", "photo_enc", Base64),
            col("created_at", Time),
            col("updated_at", Time),
        ],
        internal: &["id", "subject_id", "tenant_id"],
    },
    View {
        store: "chat_conversations",
        caption: "Conversations",
        order: Some("created_at"),
        fields: &[
            f("conversation_id", Ref, Source::Col("id")),
            col("kind", Words(CONVERSATION_KINDS)),
            sealed("title", "title_enc", Text),
            col("created_at", Time),
        ],
        internal: &["tenant_id", "created_by"],
    },
    View {
        store: "chat_members",
        caption: "Conversations you are a member of",
        order: Some("joined_at"),
        fields: &[
            col("conversation_id", Ref),
            col("role", Text),
            col("joined_at", Time),
        ],
        internal: &["id", "subject_id", "tenant_id"],
    },
    View {
        store: "chat_messages",
        caption: "Messages you sent",
        order: Some("sent_at"),
        fields: &[
            f("message_id", Ref, Source::Col("seq")),
            col("conversation_id", Ref),
            col("sent_at", Time),
            sealed("text", "body_enc", Text),
        ],
        internal: &["tenant_id", "sender_subject_id"],
    },
    View {
        store: "chat_receipts",
        caption: "Delivery of messages sent to you",
        order: Some("sent_at"),
        fields: &[
            f("message_id", Ref, Source::Col("message_seq")),
            col("conversation_id", Ref),
            col("state", Text),
            col("sent_at", Time),
            col("delivered_at", Time),
            col("read_at", Time),
        ],
        internal: &["id", "recipient_subject_id"],
    },
    View {
        store: "chat_attachments",
        caption: "Files you sent in chat",
        order: Some("created_at"),
        fields: &[
            col("conversation_id", Ref),
            f("message_id", Ref, Source::Col("message_seq")),
            col("created_at", Time),
            sealed("file_name", "name_enc", Text),
            f("file_type", Text, Source::Col("content_type")),
            f("file_size", Size, Source::Col("size")),
            FILE,
        ],
        internal: &["id", "tenant_id", "subject_id", "blob_key"],
    },
    View {
        store: "chat_connections",
        caption: "Your chat connections",
        order: Some("connected_at"),
        fields: &[
            col("connected_at", Time),
            col("closed_at", Time),
            sealed("ip_address", "ip_enc", Text),
        ],
        internal: &["id", "tenant_id", "subject_id", "account_id"],
    },
];

pub fn view(store: &str) -> Option<&'static View> {
    VIEWS.iter().find(|v| v.store == store)
}

/// One value of a rendered row, before it is written: typed, so each output
/// (JSON, CSV, page) writes it its own way.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    Json(JsonValue),
}

/// The heading a person reads for a field: the policy's words, or the name.
pub fn heading(policy: &Policy, category: &str, store: &str, field: &str) -> String {
    policy
        .category(category)
        .and_then(|c| c.fields.get(store))
        .and_then(|f| f.get(field))
        .cloned()
        .unwrap_or_else(|| field.replace('_', " "))
}

/// Headings in the policy that name no field of this build's bundle (a store
/// of another category, a misspelt field): each is shown as a warning when the
/// policy is checked or loaded, and the field falls back to its name.
pub fn policy_problems(policy: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    for (id, c) in policy.categories() {
        for (store, fields) in &c.fields {
            let Some(v) = view(store) else {
                out.push(format!(
                    "categories.{id}.fields.{store}: no store is called {store:?}"
                ));
                continue;
            };
            let registered = crate::registry::PERSONAL_STORES
                .iter()
                .find(|s| s.name == store.as_str());
            if registered.is_some_and(|s| s.category != id) {
                out.push(format!(
                    "categories.{id}.fields.{store}: the store {store} holds another category's data"
                ));
            }
            for field in fields.keys() {
                if !v.fields.iter().any(|f| f.name == field.as_str()) {
                    out.push(format!(
                        "categories.{id}.fields.{store}.{field}: the bundle has no field {field:?} in {store} (it has: {})",
                        v.fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
    }
    out
}

/// Other parties' keys, opened at most once each per bundle (bounded).
pub struct OtherKeys<'a> {
    core: &'a Steward,
    keys: HashMap<String, Option<DataKey>>,
}

const MAX_OTHER_KEYS: usize = 10_000;

impl<'a> OtherKeys<'a> {
    pub fn new(core: &'a Steward) -> Self {
        OtherKeys {
            core,
            keys: HashMap::new(),
        }
    }

    pub fn get(&mut self, subject: &str) -> Result<Option<&DataKey>> {
        if !self.keys.contains_key(subject) {
            if self.keys.len() >= MAX_OTHER_KEYS {
                self.keys.clear();
            }
            let key = self.core.keys.subject_key(subject)?;
            self.keys.insert(subject.to_owned(), key);
        }
        Ok(self.keys.get(subject).and_then(Option::as_ref))
    }
}

/// A store's fields resolved against its table's columns, for the rows found
/// through one subject column (`side`).
pub struct Plan {
    store: &'static PersonalStore,
    side: &'static str,
    other_parties: OtherParties,
    /// Per field: the resolved source.
    sources: Vec<Resolved>,
}

enum Resolved {
    Null,
    Plain(usize),
    Sealed {
        index: usize,
        field: String,
    },
    Fixed(&'static str),
    Other {
        index: usize,
        owner: usize,
        field: String,
    },
    File,
}

impl Plan {
    pub fn new(
        core: &Steward,
        store: &'static PersonalStore,
        view: &View,
        columns: &[String],
        side: &'static str,
    ) -> Plan {
        let index = |c: &str| columns.iter().position(|x| x == c);
        let resolve = |source: &Source| -> Resolved {
            let mut source = *source;
            if let Source::Side(sides) = source {
                match sides.iter().find(|(s, _)| *s == side) {
                    Some((_, s)) => source = *s,
                    None => return Resolved::Null,
                }
            }
            match source {
                Source::Col(c) => {
                    let Some(i) = index(c) else {
                        return Resolved::Null;
                    };
                    match store.encrypted_columns.iter().find(|(e, _)| *e == c) {
                        Some((_, owner)) if *owner == side => Resolved::Sealed {
                            index: i,
                            field: store.field_name(c),
                        },
                        Some(_) => Resolved::Null,
                        None => Resolved::Plain(i),
                    }
                }
                Source::Other { column, owner } => match (index(column), index(owner)) {
                    (Some(i), Some(o)) => Resolved::Other {
                        index: i,
                        owner: o,
                        field: store.field_name(column),
                    },
                    _ => Resolved::Null,
                },
                Source::Fixed(v) => Resolved::Fixed(v),
                Source::File if store.subject_columns.first() == Some(&side) => Resolved::File,
                Source::File | Source::Side(_) => Resolved::Null,
            }
        };
        Plan {
            store,
            side,
            other_parties: core
                .policy
                .category(store.category)
                .map(|c| c.other_parties)
                .unwrap_or_default(),
            sources: view.fields.iter().map(|f| resolve(&f.source)).collect(),
        }
    }

    pub fn side(&self) -> &'static str {
        self.side
    }

    /// The row's values, in the view's field order. `file` is the path of the
    /// row's file in the bundle, when one was written.
    pub fn render(
        &self,
        row: &Row,
        key: &DataKey,
        subject: &str,
        others: &mut OtherKeys<'_>,
        file: Option<&str>,
    ) -> Result<Vec<Cell>> {
        let mut out = Vec::with_capacity(self.sources.len());
        for source in &self.sources {
            let cell = match source {
                Resolved::Null => Cell::Null,
                Resolved::Fixed(v) => Cell::Text((*v).to_owned()),
                Resolved::File => file.map_or(Cell::Null, |f| Cell::Text(f.to_owned())),
                Resolved::Plain(i) => match row.0.get(*i) {
                    Some(Value::Int(n)) => Cell::Int(*n),
                    Some(Value::Text(t)) => Cell::Text(t.clone()),
                    Some(Value::Bytes(b)) => Cell::Text(hex(b)),
                    Some(Value::Null) | None => Cell::Null,
                },
                Resolved::Sealed { index, field } => match row.0.get(*index) {
                    Some(Value::Bytes(b)) => Cell::Text(fields::open(key, field, subject, b)?),
                    _ => Cell::Null,
                },
                Resolved::Other {
                    index,
                    owner,
                    field,
                } => match (row.0.get(*index), row.0.get(*owner)) {
                    (Some(Value::Bytes(b)), Some(Value::Text(owner))) => {
                        match others.get(owner)? {
                            // An erased party's key is gone: nothing to show.
                            None => Cell::Null,
                            Some(k) => {
                                let plain = fields::open(k, field, owner, b)?;
                                self.other_parties
                                    .apply(&plain)
                                    .map_or(Cell::Null, Cell::Text)
                            }
                        }
                    }
                    _ => Cell::Null,
                },
            };
            out.push(cell);
        }
        Ok(out)
    }

    pub fn store(&self) -> &'static PersonalStore {
        self.store
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A cell as the machine-readable files write it.
pub fn to_json(kind: Kind, cell: &Cell) -> JsonValue {
    match (kind, cell) {
        (_, Cell::Null) => JsonValue::Null,
        (Time, Cell::Int(t)) => json!(crate::clock::rfc3339(*t)),
        (Flag, Cell::Int(n)) => json!(*n != 0),
        (Json, Cell::Text(t)) => serde_json::from_str(t).unwrap_or_else(|_| json!(t)),
        (Words(words), Cell::Text(t)) => json!(word(words, t)),
        // Ids are strings in every file, whatever their storage type.
        (Ref, Cell::Int(n)) => json!(n.to_string()),
        (_, Cell::Int(n)) => json!(n),
        (_, Cell::Text(t)) => json!(t),
        (_, Cell::Json(j)) => j.clone(),
    }
}

/// A cell as a CSV field.
pub fn to_csv(kind: Kind, cell: &Cell) -> String {
    match to_json(kind, cell) {
        JsonValue::Null => String::new(),
        JsonValue::String(s) => s,
        other => other.to_string(),
    }
}

pub fn word<'w>(words: &'w [(&'w str, &'w str)], code: &'w str) -> &'w str {
    words
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(code, |(_, w)| *w)
}

/// What the schema file says of a kind: its JSON type and how to read it.
pub fn kind_schema(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Text => ("string", "text"),
        Number => ("integer", "a number"),
        Time => (
            "string",
            "date and time, ISO 8601 in UTC (RFC 3339), e.g. 2026-03-02T09:00:00Z",
        ),
        Duration => ("integer", "a duration in seconds"),
        Size => ("integer", "a size in bytes"),
        Flag => ("boolean", "true or false"),
        Json => ("any", "a list or an object, as it was given"),
        Category => ("string", "a category of data (article15.json names each)"),
        Purpose => ("string", "a purpose (article15.json names each)"),
        Recipient => ("string", "an organisation that received data"),
        Words(_) => ("string", "a word for the stored code"),
        File => ("string", "the path of the file inside this bundle"),
        Ref => (
            "string",
            "an identifier joining records of these files (the same value in each file that has it)",
        ),
        Base64 => ("string", "binary content (a picture), base64-encoded"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::registry::PERSONAL_STORES;

    #[test]
    fn every_store_has_a_view_and_every_field_a_source_it_has() {
        for store in PERSONAL_STORES {
            let v = view(store.name).unwrap_or_else(|| panic!("no view of {}", store.name));
            let mut names = std::collections::BTreeSet::new();
            for field in v.fields {
                assert!(
                    names.insert(field.name),
                    "{}: {} twice",
                    store.name,
                    field.name
                );
                let mut sources = vec![field.source];
                if let Source::Side(sides) = field.source {
                    sources = sides
                        .iter()
                        .map(|(s, x)| {
                            assert!(
                                store.subject_columns.contains(s),
                                "{}.{}: side {s}",
                                store.name,
                                field.name
                            );
                            *x
                        })
                        .collect();
                }
                for s in sources {
                    if let Source::File = s {
                        assert!(
                            store.blob_column.is_some(),
                            "{}: a file field without files",
                            store.name
                        );
                    }
                }
            }
        }
        assert_eq!(VIEWS.len(), PERSONAL_STORES.len());
    }

    #[test]
    fn the_default_policy_heads_every_field_and_nothing_else() {
        let policy = Policy::default_policy();
        assert_eq!(policy_problems(&policy), Vec::<String>::new());
        for store in PERSONAL_STORES {
            let v = view(store.name).unwrap();
            for f in v.fields {
                let c = policy.category(store.category).unwrap();
                assert!(
                    c.fields
                        .get(store.name)
                        .is_some_and(|m| m.contains_key(f.name)),
                    "policy/default.toml has no heading for {}.{} (categories.{}.fields.{})",
                    store.name,
                    f.name,
                    store.category,
                    store.name
                );
            }
        }
    }

    #[test]
    fn a_heading_for_a_field_that_does_not_exist_is_reported() {
        let text = include_str!("../../../../policy/default.toml").replace(
            "[categories.traffic_data.fields.call_records]",
            "[categories.traffic_data.fields.call_records]\nstart_time = \"When\"",
        );
        let policy = steward_policy::parse(&text, "p.toml").unwrap().policy;
        let problems = policy_problems(&policy);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("call_records.start_time"),
            "{problems:?}"
        );
        assert!(problems[0].contains("started_at"), "{problems:?}");
    }

    #[test]
    fn masking_keeps_the_last_three() {
        assert_eq!(
            OtherParties::Mask.apply("+441632960001").as_deref(),
            Some("**********001")
        );
        assert_eq!(OtherParties::Mask.apply("12").as_deref(), Some("12"));
        assert_eq!(OtherParties::Redact.apply("+441632960001"), None);
        assert_eq!(OtherParties::Show.apply("1001").as_deref(), Some("1001"));
    }

    #[test]
    fn files_write_times_as_iso_8601_and_codes_as_words() {
        assert_eq!(
            to_json(Time, &Cell::Int(1_772_442_000)),
            json!("2026-03-02T09:00:00Z")
        );
        assert_eq!(to_csv(Flag, &Cell::Int(1)), "true");
        assert_eq!(
            to_csv(Words(DISPOSITIONS), &Cell::Text("NO ANSWER".into())),
            "not answered"
        );
        assert_eq!(
            to_json(Json, &Cell::Text("[\"+44\"]".into())),
            json!(["+44"])
        );
        assert_eq!(to_json(Text, &Cell::Null), JsonValue::Null);
    }
}
