//! The data store's schema. Every table that holds personal data must also be
//! declared in `registry.rs` (a test enforces it). Personal fields are `*_enc`
//! (AES-256-GCM under the subject's data key) and searchable identifiers are
//! `*_idx` (HMAC blind index); nothing personal is stored in clear.

use steward_store::Migration;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core",
        sql: r#"
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('audit', 0);
INSERT INTO counters (name, value) VALUES ('consent', 0);

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    customer_number TEXT UNIQUE,
    is_provider BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE subjects (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    kind TEXT NOT NULL,
    email_enc BYTEA,
    email_idx BYTEA,
    phone_enc BYTEA,
    phone_idx BYTEA,
    name_enc BYTEA,
    created_at BIGINT NOT NULL,
    last_engagement_at BIGINT NOT NULL,
    legal_hold BIGINT NOT NULL DEFAULT 0,
    archive_exempt BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX subjects_tenant ON subjects (tenant_id);
CREATE INDEX subjects_email_idx ON subjects (email_idx);
CREATE INDEX subjects_phone_idx ON subjects (phone_idx);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    subject_id TEXT NOT NULL UNIQUE REFERENCES subjects (id),
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    username_idx BYTEA NOT NULL UNIQUE,
    username_enc BYTEA NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- Failed logins per attempted username (its blind index), whether or not the
-- account exists, so throttling never reveals which usernames are real.
CREATE TABLE login_throttle (
    key_idx BYTEA PRIMARY KEY,
    failures BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX accounts_tenant ON accounts (tenant_id);

CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    ip_enc BYTEA,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX sessions_account ON sessions (account_id);

CREATE TABLE consent_events (
    seq BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    tenant_id TEXT NOT NULL,
    category TEXT NOT NULL,
    purpose TEXT NOT NULL,
    action TEXT NOT NULL,
    single_use BIGINT NOT NULL DEFAULT 0,
    grant_id TEXT,
    channel TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    evidence_enc BYTEA,
    recorded_by TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX consent_subject ON consent_events (subject_id, category, purpose, seq);

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    tenant_id TEXT,
    subject_id TEXT,
    action TEXT NOT NULL,
    category TEXT,
    purpose TEXT,
    recipient TEXT,
    detail TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
CREATE INDEX audit_subject ON audit_log (subject_id, seq);
"#,
    },
    Migration {
        version: 2,
        name: "rights",
        sql: r#"
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    subject_id TEXT REFERENCES subjects (id),
    tombstone_id TEXT,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    received_on TEXT NOT NULL,
    region TEXT NOT NULL,
    due_on TEXT NOT NULL,
    state TEXT NOT NULL,
    verified_by TEXT,
    verify_method TEXT,
    verified_at BIGINT,
    refusal_ground TEXT,
    details_enc BYTEA,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    closed_at BIGINT
);
CREATE INDEX requests_subject ON requests (subject_id, kind, received_on);
CREATE INDEX requests_open ON requests (state, due_on);

CREATE TABLE request_events (
    seq BIGINT PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES requests (id),
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX request_events_request ON request_events (request_id, seq);
INSERT INTO counters (name, value) VALUES ('request_event', 0);

CREATE TABLE erasure_tombstones (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    erased_at BIGINT NOT NULL,
    reason TEXT NOT NULL,
    request_id TEXT,
    email_idx BYTEA,
    phone_idx BYTEA,
    username_idx BYTEA
);
CREATE INDEX tombstones_email ON erasure_tombstones (email_idx);
CREATE INDEX tombstones_phone ON erasure_tombstones (phone_idx);
CREATE INDEX tombstones_username ON erasure_tombstones (username_idx);

CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    request_id TEXT NOT NULL REFERENCES requests (id),
    kind TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    read_at BIGINT
);
CREATE INDEX notifications_tenant ON notifications (tenant_id, created_at);
"#,
    },
    Migration {
        version: 3,
        name: "call_records",
        sql: r#"
-- Call detail records (traffic data), one row per call leg. `id` is 8 bytes of
-- start time (big-endian) and 8 bytes of a keyed hash of the tenant, the source
-- format and the parser's de-duplication key (leg id, raw row hash, occurrence):
-- re-sending a record gives the same id, and ids of one file ascend with time.
-- Each party's fields are sealed with that party's data key; the subject columns
-- are NULL for a withheld number, and after that party's erasure. Kept: what the
-- privacy statement lists as traffic data, and what billing and de-duplication
-- need; not kept: channel names, dialplan arguments and the userfield. No foreign
-- keys: rows outlive (pseudonymised) subjects, and a per-row check would slow
-- bulk loading.
CREATE TABLE call_records (
    id BYTEA PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    source_format TEXT NOT NULL,
    leg_id TEXT,
    linked_id TEXT,
    caller_subject_id TEXT,
    callee_subject_id TEXT,
    caller_number_enc BYTEA,
    caller_raw_enc BYTEA,
    caller_name_enc BYTEA,
    ip_enc BYTEA,
    roaming_network_enc BYTEA,
    callee_number_enc BYTEA,
    callee_raw_enc BYTEA,
    start_at BIGINT NOT NULL,
    answer_at BIGINT,
    end_at BIGINT NOT NULL,
    duration BIGINT NOT NULL,
    billsec BIGINT NOT NULL,
    disposition TEXT NOT NULL,
    hangup_cause TEXT,
    direction TEXT,
    data_bytes BIGINT,
    account_code TEXT,
    context TEXT,
    ama_flags TEXT,
    ingested_at BIGINT NOT NULL
);
CREATE INDEX call_records_caller ON call_records (caller_subject_id, id);
CREATE INDEX call_records_callee ON call_records (callee_subject_id, id);
CREATE INDEX call_records_tenant_start ON call_records (tenant_id, start_at);

-- Rows of an ingested file that could not be read: where and why, never the
-- row itself (it is personal data and stays in the source file).
CREATE TABLE cdr_quarantine (
    id BYTEA PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    source TEXT NOT NULL,
    line BIGINT NOT NULL,
    reason TEXT NOT NULL,
    source_format TEXT NOT NULL,
    first_seen_at BIGINT NOT NULL
);
CREATE INDEX cdr_quarantine_tenant ON cdr_quarantine (tenant_id, first_seen_at);

-- PBX parties that are not phone numbers (extensions, SIP users, IMSIs): a
-- keyed hash of the identifier as the PBX wrote it, so that the next record
-- from the same party links to the same subject; a user's extension too.
ALTER TABLE subjects ADD COLUMN party_idx BYTEA;
CREATE INDEX subjects_party_idx ON subjects (party_idx);
"#,
    },
    Migration {
        version: 10,
        name: "analytics",
        sql: r#"
-- App usage statistics, anonymous from the outset: day-level counters per
-- feature, platform and app version. No user, subject, account, tenant,
-- device, session or IP column, and no time finer than the day (UTC), so no
-- row can be tied to the person whose app sent it. Reports suppress small
-- cells (analytics/usage.rs).
CREATE TABLE usage_stats (
    day TEXT NOT NULL,
    feature TEXT NOT NULL,
    platform TEXT NOT NULL,
    app_version TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (day, feature, platform, app_version)
);

-- Website visitors are subjects of kind `visitor`, found by a keyed hash of
-- the random id in their cookie; the id itself is never stored.
ALTER TABLE subjects ADD COLUMN visitor_idx BYTEA;
CREATE UNIQUE INDEX subjects_visitor_idx ON subjects (visitor_idx);

-- Page visits, kept only while the visitor's analytics consent is in force:
-- the page (path only), the referring domain (not the URL), the IP address and
-- the browser (family, version, system and device class, not the whole user
-- agent), each sealed with the visitor's data key.
CREATE TABLE web_visits (
    id TEXT PRIMARY KEY,
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    tenant_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    page_enc BYTEA NOT NULL,
    referrer_domain_enc BYTEA,
    ip_enc BYTEA,
    browser_enc BYTEA
);
CREATE INDEX web_visits_subject ON web_visits (subject_id, at);
CREATE INDEX web_visits_at ON web_visits (at);
"#,
    },
    Migration {
        version: 11,
        name: "blob_outbox",
        sql: r#"
-- Blob store objects to delete once the transaction that deleted their rows has
-- committed (files.rs). Keys hold tenant and subject ids only.
CREATE TABLE blob_outbox (
    blob_key TEXT PRIMARY KEY,
    queued_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0
);
"#,
    },
    Migration {
        version: 20,
        name: "chat",
        sql: r#"
-- Conversations inside one tenant: `direct` (exactly two members, one
-- conversation per pair) or `group`. A group's title is sealed with its
-- creator's key and cleared with the creator's erasure; direct conversations
-- have none.
CREATE TABLE chat_conversations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    kind TEXT NOT NULL,
    created_by TEXT,
    title_enc BYTEA,
    created_at BIGINT NOT NULL
);
CREATE INDEX chat_conversations_tenant ON chat_conversations (tenant_id, id);
CREATE INDEX chat_conversations_creator ON chat_conversations (created_by);

-- Who is in a conversation (the "chat partner" of the statement). `role` is
-- `owner` (the group's creator) or `member`.
CREATE TABLE chat_members (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES chat_conversations (id),
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    tenant_id TEXT NOT NULL,
    role TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    UNIQUE (conversation_id, subject_id)
);
CREATE INDEX chat_members_subject ON chat_members (subject_id, conversation_id);

-- Messages, numbered by the `chat` counter (one order for the whole store, so
-- a page cursor and "read up to" are a number). The body is sealed with the
-- sender's key; after the sender's erasure the row stays (the others'
-- receipts point at it) with sender and body cleared. No foreign keys: the
-- writer checks membership in the same transaction, and rows are written in
-- bulk.
CREATE TABLE chat_messages (
    seq BIGINT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    sender_subject_id TEXT,
    body_enc BYTEA,
    sent_at BIGINT NOT NULL
);
CREATE INDEX chat_messages_conversation ON chat_messages (conversation_id, seq);
CREATE INDEX chat_messages_sender ON chat_messages (sender_subject_id, seq);

-- A message's status for each recipient: sent -> delivered -> read, with the
-- time of each step; states only move forward. Ids come from the `chat`
-- counter too. The recipient index holds the state before the message, so
-- "mark up to" and unread counts reach only the receipts still to move.
CREATE TABLE chat_receipts (
    id BIGINT PRIMARY KEY,
    message_seq BIGINT NOT NULL,
    conversation_id TEXT NOT NULL,
    recipient_subject_id TEXT,
    state TEXT NOT NULL,
    sent_at BIGINT NOT NULL,
    delivered_at BIGINT,
    read_at BIGINT
);
CREATE INDEX chat_receipts_recipient ON chat_receipts (recipient_subject_id, conversation_id, state, message_seq);
CREATE INDEX chat_receipts_message ON chat_receipts (message_seq);

-- Each real-time connection: who, from which IP address (sealed), with which
-- login session (the SHA-256 of its token, as `sessions.token_hash`), from
-- when until when.
CREATE TABLE chat_connections (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    account_id TEXT NOT NULL,
    session_hash BYTEA,
    ip_enc BYTEA,
    connected_at BIGINT NOT NULL,
    closed_at BIGINT
);
CREATE INDEX chat_connections_subject ON chat_connections (subject_id, connected_at);

INSERT INTO counters (name, value) VALUES ('chat', 0);
"#,
    },
    Migration {
        version: 21,
        name: "chat_attachments",
        sql: r#"
-- Files sent in chat (the statement's "transmitted files"). The bytes are in the
-- blob store under `blob_key`, encrypted under the sender's data key (files.rs);
-- the row holds the type found in the content, the size and the file name
-- (sealed). An upload is pending (`message_seq` NULL) until a message that
-- names it is stored; then its conversation's members may download it.
CREATE TABLE chat_attachments (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES chat_conversations (id),
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    message_seq BIGINT,
    blob_key TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    name_enc BYTEA,
    created_at BIGINT NOT NULL
);
CREATE INDEX chat_attachments_message ON chat_attachments (message_seq);
CREATE INDEX chat_attachments_subject ON chat_attachments (subject_id, created_at);
"#,
    },
    Migration {
        version: 30,
        name: "directory",
        sql: r#"
-- The business directory: one row per person listed in a tenant's directory,
-- each field sealed with that person's data key (see directory.rs). At most one
-- entry per person and tenant.
CREATE TABLE directory_entries (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    name_enc BYTEA NOT NULL,
    given_name_enc BYTEA,
    family_name_enc BYTEA,
    organization_enc BYTEA,
    department_enc BYTEA,
    title_enc BYTEA,
    emails_enc BYTEA,
    phones_enc BYTEA,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX directory_entries_subject ON directory_entries (tenant_id, subject_id);
CREATE INDEX directory_entries_by_subject ON directory_entries (subject_id);

-- The directory's change log for incremental sync: the last change number of
-- every entry a tenant's directory has had, and whether it was a deletion. Ids
-- and numbers only. Deletion markers are pruned after 90 days.
CREATE TABLE directory_changes (
    entry_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    seq BIGINT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    changed_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX directory_changes_seq ON directory_changes (tenant_id, seq);

-- Per tenant: the last change number given out, and the newest number of the
-- deletion markers pruned so far (older sync tokens get a full resync).
CREATE TABLE directory_state (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
    seq BIGINT NOT NULL,
    pruned_seq BIGINT NOT NULL
);
"#,
    },
    Migration {
        version: 31,
        name: "device_contacts",
        sql: r#"
-- Contacts an App user synced from their device, one at a time, with their
-- consent: the card (as JSON) and its photo, sealed with the user's data key.
-- `uid_idx` is a keyed hash of the user and the card's UID, so that syncing the
-- same contact again replaces it. Deleted when the user withdraws consent.
CREATE TABLE device_contacts (
    id TEXT PRIMARY KEY,
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    tenant_id TEXT NOT NULL,
    uid_idx BYTEA,
    card_enc BYTEA NOT NULL,
    photo_enc BYTEA,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX device_contacts_subject ON device_contacts (subject_id, id);
CREATE UNIQUE INDEX device_contacts_uid ON device_contacts (subject_id, uid_idx);
"#,
    },
    Migration {
        version: 40,
        name: "media",
        sql: r#"
-- Photos and media a user keeps in the app (consent-based). The bytes are in the
-- blob store under `blob_key`, encrypted under the user's data key; the row
-- holds the type found in the content, the size and the file name (sealed).
CREATE TABLE media (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    blob_key TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    name_enc BYTEA,
    created_at BIGINT NOT NULL
);
CREATE INDEX media_subject ON media (subject_id, created_at);
"#,
    },
    Migration {
        version: 41,
        name: "call_recordings",
        sql: r#"
-- Recordings of inbound and outbound calls (legitimate interest: training and
-- monitoring), one row per file, linked to one call record of the same tenant.
-- The audio is in the blob store under `blob_key`, encrypted under the key of
-- `subject_id`: the call's outside party (the caller of an inbound call, the
-- callee of an outbound one), or the other party when that one is unknown.
-- `owner_party` says which end of the call that is; `other_subject_id` is the
-- other party, by id only (cleared when they are erased). `recorded_at` is the
-- call's start: retention counts 90 days from it.
CREATE TABLE call_recordings (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    call_record_id BYTEA NOT NULL,
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    other_subject_id TEXT REFERENCES subjects (id),
    owner_party TEXT NOT NULL,
    direction TEXT NOT NULL,
    duration BIGINT NOT NULL,
    blob_key TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    name_enc BYTEA,
    recorded_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX call_recordings_call ON call_recordings (call_record_id, created_at);
CREATE INDEX call_recordings_subject ON call_recordings (subject_id, recorded_at);
CREATE INDEX call_recordings_other ON call_recordings (other_subject_id, recorded_at);
"#,
    },
    Migration {
        version: 50,
        name: "crm",
        sql: r#"
-- Enquiries from the website's form and by telephone, email or letter. The
-- person is a subject (kind `contact`, found by the blind indexes of their
-- email and phone); what they wrote and the details they gave with it are
-- sealed with that subject's data key. `recorded_by` is the audit id of the
-- staff member or `system:enquiry-form`.
CREATE TABLE enquiries (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    channel TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    recorded_by TEXT NOT NULL,
    name_enc BYTEA NOT NULL,
    email_enc BYTEA,
    phones_enc BYTEA,
    postal_address_enc BYTEA,
    topic_enc BYTEA,
    message_enc BYTEA NOT NULL
);
CREATE INDEX enquiries_subject ON enquiries (subject_id, received_at);
CREATE INDEX enquiries_tenant ON enquiries (tenant_id, received_at, id);

-- "No further contact": one row per suppressed email address or phone number,
-- holding only its blind index (the same keyed hash as subjects.email_idx and
-- phone_idx). Erasure clears subject_id and the evidence and keeps the row, so
-- the address stays suppressed after everything else about the person is gone.
CREATE TABLE marketing_suppressions (
    id TEXT PRIMARY KEY,
    identifier_idx BYTEA NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    subject_id TEXT REFERENCES subjects (id),
    tenant_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    evidence_enc BYTEA,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX marketing_suppressions_subject ON marketing_suppressions (subject_id);

-- Credit checks, each made under one single-use consent grant (grant_id) and
-- disclosed to one credit reference agency (a policy recipient id). What was
-- sent and what came back are sealed with the subject's data key.
CREATE TABLE credit_checks (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    agency TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    sent_enc BYTEA NOT NULL,
    result_at BIGINT,
    result_by TEXT,
    reference_enc BYTEA,
    decision_enc BYTEA,
    score_enc BYTEA,
    notes_enc BYTEA
);
CREATE INDEX credit_checks_subject ON credit_checks (subject_id, created_at);
"#,
    },
    Migration {
        version: 60,
        name: "access_bundles",
        sql: r#"
-- The subject's copy of a produced access bundle, to download from the portal:
-- the bytes are in the blob store under `blob_key`, encrypted under the
-- subject's data key. Deleted after `bundle_keep_days`, and with the subject.
CREATE TABLE access_bundles (
    request_id TEXT PRIMARY KEY REFERENCES requests (id),
    tenant_id TEXT NOT NULL,
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    blob_key TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX access_bundles_subject ON access_bundles (subject_id);
CREATE INDEX access_bundles_created ON access_bundles (created_at);
"#,
    },
    Migration {
        version: 61,
        name: "audit_verify_index",
        sql: r#"
-- The console's audit page shows the newest recorded verification of the
-- chain (an `audit.verify` entry) instead of re-verifying the whole log on
-- every load. A partial index finds it at once on a log of any size and costs
-- other appends nothing.
CREATE INDEX audit_log_verifications ON audit_log (seq) WHERE action = 'audit.verify';
"#,
    },
    Migration {
        version: 62,
        name: "several_processes",
        sql: r#"
-- Periodic work (jobs.rs): when each job last started and finished and in
-- which process, so that several server processes run each job once per
-- interval, and a run that a dead process left unfinished is taken over.
CREATE TABLE scheduled_jobs (
    name TEXT PRIMARY KEY,
    holder TEXT,
    last_started_at BIGINT,
    last_finished_at BIGINT,
    runs BIGINT NOT NULL DEFAULT 0
);
-- begin postgres only
-- Chat ids on PostgreSQL (chat/writer.rs): several processes write one
-- conversation, so a batch takes its ids after it has locked the
-- conversations it writes to, and a sequence (which holds no lock until
-- commit, unlike the `chat` counter row) gives them in the order asked for.
-- On a store that has numbered chat before, it starts 2^40 above the
-- counter, so that a process of the previous version still numbering from
-- its counter block during a rolling upgrade cannot collide with it; on a
-- new one, at 1.
CREATE SEQUENCE chat_ids;
SELECT CASE WHEN value = 0 THEN setval('chat_ids', 1, false)
       ELSE setval('chat_ids', value + 1099511627776) END
FROM counters WHERE name = 'chat';
-- end postgres only
"#,
    },
    Migration {
        version: 63,
        name: "shred_outbox",
        sql: r#"
-- Subject keys to destroy once an erasure's rows are gone (rights/erase.rs).
-- Queued in the transaction that deletes the rows; the key store is another
-- database, so the key goes after commit, and a row left by a crash between
-- the two is finished at the next start.
CREATE TABLE shred_outbox (
    subject_id TEXT PRIMARY KEY,
    queued_at BIGINT NOT NULL
);
"#,
    },
];

/// The key store's schema: a separate database, so that backups and replicas of
/// the data store never carry keys.
pub const KEY_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "keys",
    sql: r#"
CREATE TABLE subject_keys (
    subject_id TEXT PRIMARY KEY,
    wrapped BYTEA NOT NULL,
    master_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE system_keys (
    name TEXT PRIMARY KEY,
    wrapped BYTEA NOT NULL,
    master_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE audit_anchor (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    at BIGINT NOT NULL
);
"#,
}];
