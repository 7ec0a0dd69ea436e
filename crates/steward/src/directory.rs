//! The business directory (policy category `business_contacts`, purpose
//! `provision`, lawful basis: the employer's contract). The statement: "The
//! business contacts are managed and configured by your employer and ... will
//! provide you with an overview of other business end users registered by your
//! employer", "accessed and processed after authentication and synchronization".
//!
//! **Who.** The tenant's admin (or an operator in scope) adds, edits, removes and
//! imports entries; any signed-in account of the tenant lists, reads, exports and
//! synchronises them. Another tenant's entries answer 404.
//!
//! **Whose data.** An entry is about one person and is sealed with that person's
//! data key (AAD `directory_entries.<field>|<subject id>`). When an entry is
//! written, its identifiers are looked up among the tenant's subjects through the
//! blind indexes: its work email addresses (`email_idx`), then its phone numbers
//! (`phone_idx` for a number in E.164, `party_idx` for an extension such as
//! `2101`, as call record ingest names them). A user of the tenant wins over other
//! subjects, then the earliest identifier of the entry, then the oldest subject.
//! With no match, a subject of kind `contact` is created for the person (their
//! first email, first phone number and display name, sealed as every subject's
//! are). A person has at most one entry per tenant (409 otherwise), so an import
//! finds the entry to update by the person as well as by the entry's UID. Every
//! write re-runs the look-up: an entry created before its person had an account
//! moves to the user's subject (and key) at its next edit.
//!
//! **Erasure.** The registry declares the store `Delete`: erasing a person (a
//! request, retention) removes their entry from the employer's directory. The
//! person's other subject (a `contact` created for the entry) is not removed
//! when only the entry is deleted: it is the tenant's record of that person
//! (call records may name it), and retention or a request erases it.
//!
//! **Synchronisation.** Every change (create, update, delete) takes the next
//! number of the tenant's change sequence (`directory_state.seq`, a row lock
//! that also orders the tenant's writers) and records it in `directory_changes`
//! (entry id, sequence number, deleted flag: ids only, no personal data). A sync
//! token is that number with a keyed MAC of the tenant and the number, so a
//! token is refused (400) by any other tenant, and an altered or malformed one
//! too. `sync(since)` answers the entries changed after the token and the ids
//! of those deleted after it, in sequence order, pages of at most
//! [`SYNC_PAGE_MAX`], and a new token. Rows can also disappear without passing
//! here (erasure, retention, restore); a sync first turns change rows whose
//! entry is gone into deletions with a new number ([`reconcile`]), so devices
//! hear of those too. Deletion markers older than [`DELETION_MARKER_TTL`] are
//! pruned at the next directory write; a token older than the pruned range, or
//! one from the future (a restore moved the sequence back), gets a full resync:
//! `full: true` and every current entry, and the client drops what it held.
//!
//! **Audit.** Every change is audited with the entry and subject ids
//! (`directory.create`, `directory.update`, `directory.delete`; an import writes
//! one per changed entry). Reads by members of the tenant (its users syncing
//! their App, its admin) are not audited: showing colleagues' business contacts
//! to the employer's users is what the category is for, devices sync often, and
//! an entry per sync would bury the entries that matter. Reads by the provider's
//! staff and the CLI, who see the directory from outside the tenant, are audited
//! as `read` (tenant-level, with the count).

use std::collections::{BTreeMap, HashMap, HashSet};

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};
use steward_crypto::{DataKey, IdentifierKind, normalize};
use steward_policy::{ConsentRule, UseError};
use steward_store::{Conn, Row, Value, params};
use steward_vcard::{Contact, Limits, Typed, Version};
use utoipa::ToSchema;

use crate::access::{Actor, Role};
use crate::audit::Event;
use crate::consent;
use crate::core::{Steward, Tx, fields};
use crate::error::{Error, Result};
use crate::ingest::parties::{self, PartyKey};
use crate::subjects::{self, NewSubject, SubjectKind};

/// The policy category of directory entries.
pub const CATEGORY: &str = "business_contacts";
/// The purpose the directory serves.
pub const PURPOSE: &str = "provision";

/// Most cards in one imported vCard file.
pub const MAX_IMPORT_CARDS: usize = 5000;
/// Largest vCard file the import route accepts (photos in it are dropped, but
/// phones and address books export them).
pub const MAX_IMPORT_BYTES: usize = 16 * 1024 * 1024;
/// Changes per sync page unless the client asks for fewer, and the most it may ask for.
pub const SYNC_PAGE: usize = 500;
pub const SYNC_PAGE_MAX: usize = 5000;
/// How long a deletion marker is kept for devices that have not synced since.
pub const DELETION_MARKER_TTL: i64 = 90 * 24 * 3600;
/// Size limits of an entry's fields.
pub const LIMITS: Limits = Limits {
    max_text_bytes: 256,
    max_note_bytes: 0,
    max_entries: 20,
    max_photo_bytes: 0,
};

/// The blind-index kind used as the MAC of sync tokens.
const TOKEN_KIND: IdentifierKind = IdentifierKind::Other("directory_sync_token");

/// A directory entry as the tenant's admin writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryInput {
    /// The name shown in the directory (vCard FN).
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Work email addresses (each must be a valid address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<Typed>,
    /// Phone numbers and extensions, as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<Typed>,
}

/// A stored directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = DirectoryEntry)]
pub struct Entry {
    pub id: String,
    pub tenant_id: String,
    /// The data subject the entry is about: a user of the tenant, or a subject
    /// created for the entry.
    pub subject_id: String,
    /// The number of the directory change that last wrote the entry.
    pub seq: i64,
    #[serde(flatten)]
    pub fields: EntryInput,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One page of changes since a sync token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncPage {
    /// The client must drop every entry it holds and keep only `upserts` (and the
    /// following pages): set for a first sync, and for a token older than the
    /// deletion markers kept or newer than the directory (after a restore).
    pub full: bool,
    /// Entries created or changed since the token, in change order.
    pub upserts: Vec<Entry>,
    /// Ids of entries deleted since the token.
    pub deletions: Vec<String>,
    /// Pass as `since` next time.
    pub token: String,
    /// More changes wait: sync again with `token` at once.
    pub more: bool,
}

/// What an import did with each card.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportReport {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub cards: Vec<ImportedCard>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportedCard {
    /// 1-based position of the card in the file.
    pub card: usize,
    /// The line of its BEGIN:VCARD.
    pub line: usize,
    pub entry_id: String,
    /// `created`, `updated` or `unchanged`.
    pub outcome: String,
    /// Properties of the card a directory entry does not keep (birthday, photo,
    /// addresses, note, urls): left out.
    pub ignored: Vec<String>,
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

fn require_member(actor: &Actor, tenant_id: &str) -> Result<()> {
    actor.require_tenant(tenant_id, "tenant")
}

fn require_manager(actor: &Actor, tenant_id: &str) -> Result<()> {
    actor.require_tenant(tenant_id, "tenant")?;
    actor.require_role(
        &[Role::TenantAdmin, Role::Operator],
        "manage the business directory",
    )
}

/// The policy's rule for the directory's use, refusing a policy that lacks it.
fn rule(core: &Steward) -> Result<ConsentRule> {
    core.policy
        .check_use(CATEGORY, PURPOSE)
        .map(|r| r.consent)
        .map_err(|e| {
            let field = match e {
                UseError::UnknownCategory { .. } => "category",
                UseError::UndeclaredPurpose { .. } => "purpose",
            };
            Error::invalid(field, e.to_string())
        })
}

/// Inside a write: the person's consent, where the policy makes the directory
/// depend on it (the default policy does not: the basis is the contract).
fn require_basis(tx: &mut Tx<'_>, rule: ConsentRule, subject_id: &str) -> Result<()> {
    match rule {
        ConsentRule::NotNeeded => Ok(()),
        ConsentRule::Standing => consent::require_standing(tx, subject_id, CATEGORY, PURPOSE),
        ConsentRule::SingleUse => Err(Error::Forbidden(format!(
            "the policy makes {CATEGORY}/{PURPOSE} need single-use consent, which a directory \
             shown to every user cannot use up"
        ))),
    }
}

/// Reads by someone from outside the tenant (provider staff, the CLI) are audited.
fn audits_reads(actor: &Actor, tenant_id: &str) -> bool {
    actor.tenant_id.as_deref() != Some(tenant_id)
}

/// [`tenant_exists`] outside a transaction.
fn require_tenant(core: &Steward, tenant_id: &str) -> Result<()> {
    core.db
        .read(|c| c.query_opt("SELECT id FROM tenants WHERE id = $1", params![tenant_id]))?
        .map(|_| ())
        .ok_or_else(|| Error::NotFound("tenant".into()))
}

fn tenant_exists(c: &mut dyn Conn, tenant_id: &str) -> Result<()> {
    c.query_opt("SELECT id FROM tenants WHERE id = $1", params![tenant_id])?
        .map(|_| ())
        .ok_or_else(|| Error::NotFound("tenant".into()))
}

// ---------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------

/// An entry checked and trimmed, with the identifiers it is linked by.
#[derive(Debug, Clone)]
struct Clean {
    fields: EntryInput,
    /// Normalised emails, then phone numbers / extensions, in the entry's order.
    emails: Vec<String>,
    phones: Vec<PartyKey>,
}

fn trimmed(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn to_contact(id: Option<&str>, f: &EntryInput) -> Contact {
    Contact {
        uid: id.map(|id| format!("urn:uuid:{id}")),
        formatted_name: Some(f.display_name.clone()).filter(|n| !n.is_empty()),
        family_name: f.family_name.clone(),
        given_name: f.given_name.clone(),
        organization: f.organization.clone(),
        department: f.department.clone(),
        title: f.title.clone(),
        emails: f.emails.clone(),
        phones: f.phones.clone(),
        ..Contact::default()
    }
}

/// Checks an entry. `at` prefixes messages (the card of an import); field names
/// are the entry's (`display_name`, `emails[1].value`, ...).
fn clean(core: &Steward, input: EntryInput, at: &str) -> Result<Clean> {
    let bad =
        |field: &str, message: String| Error::invalid(field, format!("{at}{field}: {message}"));
    let trim_typed = |v: Vec<Typed>| -> Vec<Typed> {
        v.into_iter()
            .map(|t| Typed {
                value: t.value.trim().to_owned(),
                label: trimmed(t.label),
                ..t
            })
            .collect()
    };
    let fields = EntryInput {
        display_name: input.display_name.trim().to_owned(),
        given_name: trimmed(input.given_name),
        family_name: trimmed(input.family_name),
        organization: trimmed(input.organization),
        department: trimmed(input.department),
        title: trimmed(input.title),
        emails: trim_typed(input.emails),
        phones: trim_typed(input.phones),
    };
    if fields.display_name.is_empty() {
        return Err(bad(
            "display_name",
            "is empty: an entry needs a name".into(),
        ));
    }
    if let Err(e) = to_contact(None, &fields).validate(&LIMITS) {
        let rename = |f: &str| match f {
            "formatted_name" => "display_name".to_owned(),
            other => other.to_owned(),
        };
        let first = e
            .problems
            .first()
            .map(|p| rename(&p.field))
            .unwrap_or_default();
        let all: Vec<String> = e
            .problems
            .iter()
            .map(|p| format!("{}: {}", rename(&p.field), p.message))
            .collect();
        return Err(Error::invalid(&first, format!("{at}{}", all.join("; "))));
    }
    if fields.emails.is_empty() && fields.phones.is_empty() {
        return Err(bad(
            "emails",
            "an entry needs a work email address or a phone number".into(),
        ));
    }
    let mut emails = Vec::new();
    for (i, e) in fields.emails.iter().enumerate() {
        let n = normalize::email(&e.value)
            .map_err(|err| bad(&format!("emails[{i}].value"), err.to_string()))?;
        emails.push(n);
    }
    let phones = fields
        .phones
        .iter()
        .filter_map(|p| parties::party_key(p.value.as_bytes(), &core.settings.default_region))
        .collect();
    Ok(Clean {
        fields,
        emails,
        phones,
    })
}

// ---------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------

const COLUMNS: &str = "e.id, e.tenant_id, e.subject_id, c.seq, e.name_enc, e.given_name_enc, \
                       e.family_name_enc, e.organization_enc, e.department_enc, e.title_enc, \
                       e.emails_enc, e.phones_enc, e.created_at, e.updated_at";
const FROM: &str = "directory_entries e JOIN directory_changes c ON c.entry_id = e.id";

/// The entry in row `r` (selected with [`COLUMNS`]); `None` when its subject's
/// key is gone (an erasure is under way: the row goes next).
fn decrypt(core: &Steward, r: &Row) -> Result<Option<Entry>> {
    let subject_id = r.text(2)?;
    let Some(key) = core.keys.subject_key(&subject_id)? else {
        return Ok(None);
    };
    let open = |i: usize, field: &str| -> Result<Option<String>> {
        fields::open_opt(
            &key,
            &format!("directory_entries.{field}"),
            &subject_id,
            r.opt_bytes(i)?.as_deref(),
        )
    };
    let list = |i: usize, field: &str| -> Result<Vec<Typed>> {
        match open(i, field)? {
            None => Ok(Vec::new()),
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| Error::Internal(format!("directory_entries.{field}: {e}"))),
        }
    };
    Ok(Some(Entry {
        id: r.text(0)?,
        tenant_id: r.text(1)?,
        seq: r.i64(3)?,
        fields: EntryInput {
            display_name: open(4, "name")?.unwrap_or_default(),
            given_name: open(5, "given_name")?,
            family_name: open(6, "family_name")?,
            organization: open(7, "organization")?,
            department: open(8, "department")?,
            title: open(9, "title")?,
            emails: list(10, "emails")?,
            phones: list(11, "phones")?,
        },
        created_at: r.i64(12)?,
        updated_at: r.i64(13)?,
        subject_id,
    }))
}

/// Takes the tenant's directory lock (its `directory_state` row) for the rest
/// of the transaction. Every directory write takes it before it looks anything
/// up, so two writers of one tenant cannot both find no entry for a person and
/// both add one; and changes commit in the order of their numbers.
fn lock(tx: &mut Tx<'_>, tenant_id: &str) -> Result<()> {
    tx.conn.execute(
        "INSERT INTO directory_state (tenant_id, seq, pruned_seq) VALUES ($1, 0, 0) \
         ON CONFLICT (tenant_id) DO NOTHING",
        params![tenant_id],
    )?;
    tx.conn.execute(
        "UPDATE directory_state SET seq = seq WHERE tenant_id = $1",
        params![tenant_id],
    )?;
    Ok(())
}

/// The tenant's next change number (under the lock taken by [`lock`]).
fn next_seq(tx: &mut Tx<'_>, tenant_id: &str) -> Result<i64> {
    tx.conn
        .query_opt(
            "UPDATE directory_state SET seq = seq + 1 WHERE tenant_id = $1 RETURNING seq",
            params![tenant_id],
        )?
        .ok_or_else(|| Error::Internal("directory state row missing".into()))?
        .i64(0)
        .map_err(Into::into)
}

fn record_change(tx: &mut Tx<'_>, tenant_id: &str, entry_id: &str, deleted: bool) -> Result<i64> {
    let seq = next_seq(tx, tenant_id)?;
    tx.conn.execute(
        "INSERT INTO directory_changes (entry_id, tenant_id, seq, deleted, changed_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (entry_id) DO UPDATE SET \
         seq = excluded.seq, deleted = excluded.deleted, changed_at = excluded.changed_at",
        params![entry_id, tenant_id, seq, deleted, tx.at],
    )?;
    Ok(seq)
}

/// Drops deletion markers older than [`DELETION_MARKER_TTL`], remembering the
/// newest number dropped: older tokens then get a full resync.
fn prune(tx: &mut Tx<'_>, tenant_id: &str) -> Result<u64> {
    let horizon = tx.at - DELETION_MARKER_TTL;
    let newest = tx
        .conn
        .query_opt(
            "SELECT MAX(seq) FROM directory_changes \
             WHERE tenant_id = $1 AND deleted = 1 AND changed_at < $2",
            params![tenant_id, horizon],
        )?
        .map(|r| r.opt_i64(0))
        .transpose()?
        .flatten();
    let Some(newest) = newest else {
        return Ok(0);
    };
    let n = tx.conn.execute(
        "DELETE FROM directory_changes WHERE tenant_id = $1 AND deleted = 1 AND seq <= $2",
        params![tenant_id, newest],
    )?;
    tx.conn.execute(
        "UPDATE directory_state SET pruned_seq = $2 WHERE tenant_id = $1 AND pruned_seq < $2",
        params![tenant_id, newest],
    )?;
    Ok(n)
}

/// Subjects of the tenant matching the entry's identifiers, best first: a user
/// wins, then the entry's earliest identifier, then the oldest subject.
fn look_up(
    core: &Steward,
    conn: &mut dyn Conn,
    tenant_id: &str,
    c: &Clean,
) -> steward_store::StoreResult<Option<String>> {
    let keys = &core.keys;
    // In the entry's order: emails, then numbers and extensions.
    let mut wanted: Vec<(&str, Vec<u8>)> = c
        .emails
        .iter()
        .map(|e| ("email_idx", keys.blind_index(IdentifierKind::Email, e)))
        .collect();
    for p in &c.phones {
        let column = match p {
            PartyKey::Phone(_) => "phone_idx",
            PartyKey::Pbx(_) => "party_idx",
        };
        wanted.push((column, parties::blind_index(core, p)));
    }
    // One indexed query per identifier (an OR across three columns would scan
    // the tenant's subjects).
    let mut best: Option<((bool, usize, i64, String), String)> = None;
    for (rank, (column, idx)) in wanted.iter().enumerate() {
        let rows = conn.query(
            &format!(
                "SELECT id, kind, created_at FROM subjects \
                 WHERE {column} = $1 AND tenant_id = $2 AND kind <> 'visitor'"
            ),
            params![idx.clone(), tenant_id],
        )?;
        for r in &rows {
            let id = r.text(0)?;
            let not_user = r.text(1)? != SubjectKind::User.as_str();
            let order = (not_user, rank, r.i64(2)?, id.clone());
            if best.as_ref().is_none_or(|(b, _)| order < *b) {
                best = Some((order, id));
            }
        }
    }
    Ok(best.map(|(_, id)| id))
}

/// Who an entry is about, as [`look_up`] found them.
enum Person {
    Found(String),
    /// Nobody yet: a subject is made, with this id and key if they were made
    /// beforehand.
    New(Option<(String, DataKey)>),
}

impl Person {
    fn from(found: Option<String>) -> Person {
        match found {
            Some(id) => Person::Found(id),
            None => Person::New(None),
        }
    }
}

/// The subject an entry is about: the one found, or a new one (its id pushed
/// to `created`, so that its key can be destroyed if the transaction rolls
/// back).
fn subject_for(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    c: &Clean,
    person: Person,
    created: &mut Vec<String>,
) -> Result<String> {
    let premade = match person {
        Person::Found(id) => return Ok(id),
        Person::New(premade) => premade,
    };
    let phone = c.phones.iter().find_map(|p| match p {
        PartyKey::Phone(e164) => Some(e164.clone()),
        PartyKey::Pbx(_) => None,
    });
    let n = subjects::normalize_new(
        tx.core,
        &NewSubject {
            email: c.emails.first().cloned(),
            phone,
            name: Some(c.fields.display_name.clone()),
        },
    )?;
    let id = match premade {
        Some((id, key)) => {
            subjects::insert_keyed(tx, tenant_id, SubjectKind::Contact, &n, &id, &key)?;
            id
        }
        None => subjects::insert(tx, tenant_id, SubjectKind::Contact, &n)?,
    };
    created.push(id.clone());
    // An entry known only by an extension is found by it next time, as call
    // record ingest finds the subject it created for an extension.
    if let Some(p) = c.phones.iter().find(|p| matches!(p, PartyKey::Pbx(_))) {
        let idx = parties::blind_index(tx.core, p);
        tx.conn.execute(
            "UPDATE subjects SET party_idx = $1 WHERE id = $2",
            params![idx, id.as_str()],
        )?;
    }
    tx.audit(Event {
        tenant_id: Some(tenant_id.to_owned()),
        subject_id: Some(id.clone()),
        action: "subject.create".into(),
        category: Some("contact_details".into()),
        purpose: Some(PURPOSE.into()),
        detail: serde_json::json!({ "kind": "contact", "source": "business directory" }),
        ..Event::default()
    })?;
    Ok(id)
}

fn entry_of_subject(tx: &mut Tx<'_>, tenant_id: &str, subject_id: &str) -> Result<Option<String>> {
    tx.conn
        .query_opt(
            "SELECT id FROM directory_entries WHERE tenant_id = $1 AND subject_id = $2",
            params![tenant_id, subject_id],
        )?
        .map(|r| r.text(0))
        .transpose()
        .map_err(Into::into)
}

fn load(tx: &mut Tx<'_>, tenant_id: &str, entry_id: &str) -> Result<Option<Entry>> {
    let row = tx.conn.query_opt(
        &format!("SELECT {COLUMNS} FROM {FROM} WHERE e.id = $1 AND e.tenant_id = $2"),
        params![entry_id, tenant_id],
    )?;
    match row {
        None => Ok(None),
        Some(r) => decrypt(tx.core, &r),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Created,
    Updated,
    Unchanged,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// Writes `c` as a new entry, or over `existing`, sealed with the key of the
/// subject its identifiers lead to (`person`: what [`look_up`] gave for `c`).
/// `via` goes into the audit detail.
fn store(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    existing: Option<&Entry>,
    c: &Clean,
    person: Person,
    created: &mut Vec<String>,
    via: &str,
) -> Result<(Entry, Outcome)> {
    let rule = rule(tx.core)?;
    let subject_id = subject_for(tx, tenant_id, c, person, created)?;
    if let Some(other) = entry_of_subject(tx, tenant_id, &subject_id)?
        && existing.is_none_or(|e| e.id != other)
    {
        return Err(Error::Conflict(format!(
            "the directory already has an entry for this person (entry {other}), found by \
             its email address or phone number: edit that entry instead"
        )));
    }
    require_basis(tx, rule, &subject_id)?;
    if let Some(e) = existing
        && e.subject_id == subject_id
        && e.fields == c.fields
    {
        return Ok((e.clone(), Outcome::Unchanged));
    }
    let key = tx.core.subject_key(&subject_id)?;
    let seal = |field: &str, v: Option<&str>| {
        fields::seal_opt(&key, &format!("directory_entries.{field}"), &subject_id, v)
    };
    let list = |v: &[Typed]| -> Result<Option<String>> {
        if v.is_empty() {
            return Ok(None);
        }
        serde_json::to_string(v)
            .map(Some)
            .map_err(|e| Error::Internal(e.to_string()))
    };
    let f = &c.fields;
    let emails = list(&f.emails)?;
    let phones = list(&f.phones)?;
    let sealed = [
        Value::from(seal("name", Some(&f.display_name))?),
        Value::from(seal("given_name", f.given_name.as_deref())?),
        Value::from(seal("family_name", f.family_name.as_deref())?),
        Value::from(seal("organization", f.organization.as_deref())?),
        Value::from(seal("department", f.department.as_deref())?),
        Value::from(seal("title", f.title.as_deref())?),
        Value::from(seal("emails", emails.as_deref())?),
        Value::from(seal("phones", phones.as_deref())?),
    ];
    let (id, created_at, outcome, action) = match existing {
        Some(e) => {
            let mut values = vec![
                Value::from(e.id.as_str()),
                Value::from(subject_id.as_str()),
                Value::Int(tx.at),
            ];
            values.extend(sealed);
            tx.conn.execute(
                "UPDATE directory_entries SET subject_id = $2, updated_at = $3, name_enc = $4, \
                 given_name_enc = $5, family_name_enc = $6, organization_enc = $7, \
                 department_enc = $8, title_enc = $9, emails_enc = $10, phones_enc = $11 \
                 WHERE id = $1",
                &values,
            )?;
            (
                e.id.clone(),
                e.created_at,
                Outcome::Updated,
                "directory.update",
            )
        }
        None => {
            let id = uuid::Uuid::now_v7().to_string();
            let mut values = vec![
                Value::from(id.as_str()),
                Value::from(tenant_id),
                Value::from(subject_id.as_str()),
                Value::Int(tx.at),
            ];
            values.extend(sealed);
            tx.conn.execute(
                "INSERT INTO directory_entries (id, tenant_id, subject_id, created_at, \
                 updated_at, name_enc, given_name_enc, family_name_enc, organization_enc, \
                 department_enc, title_enc, emails_enc, phones_enc) \
                 VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &values,
            )?;
            (id, tx.at, Outcome::Created, "directory.create")
        }
    };
    let seq = record_change(tx, tenant_id, &id, false)?;
    let mut detail = serde_json::json!({ "entry_id": id, "seq": seq, "via": via });
    if let Some(e) = existing
        && e.subject_id != subject_id
    {
        detail["moved_from_subject"] = serde_json::json!(e.subject_id);
    }
    tx.audit(Event {
        tenant_id: Some(tenant_id.to_owned()),
        subject_id: Some(subject_id.clone()),
        action: action.into(),
        category: Some(CATEGORY.into()),
        purpose: Some(PURPOSE.into()),
        detail,
        ..Event::default()
    })?;
    Ok((
        Entry {
            id,
            tenant_id: tenant_id.to_owned(),
            subject_id,
            seq,
            fields: c.fields.clone(),
            created_at,
            updated_at: tx.at,
        },
        outcome,
    ))
}

/// Runs a directory write. Subjects created in it get keys in the key store,
/// which is not part of the transaction: if the write fails, those keys are
/// destroyed again.
fn write<T>(
    core: &Steward,
    actor: &Actor,
    f: impl FnOnce(&mut Tx<'_>, &mut Vec<String>) -> Result<T>,
) -> Result<T> {
    let mut created = Vec::new();
    let res = core.write(actor, |tx| f(tx, &mut created));
    if res.is_err() {
        for id in &created {
            core.keys.shred_subject_key(id)?;
        }
    }
    res
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

/// Adds an entry to a tenant's directory (its admin, or an operator in scope).
pub fn create(core: &Steward, actor: &Actor, tenant_id: &str, input: EntryInput) -> Result<Entry> {
    require_manager(actor, tenant_id)?;
    rule(core)?;
    let c = clean(core, input, "")?;
    write(core, actor, |tx, created| {
        tenant_exists(tx.conn, tenant_id)?;
        lock(tx, tenant_id)?;
        let found = look_up(tx.core, tx.conn, tenant_id, &c)?;
        let (entry, _) = store(tx, tenant_id, None, &c, Person::from(found), created, "api")?;
        prune(tx, tenant_id)?;
        Ok(entry)
    })
}

/// Replaces an entry's fields (its admin, or an operator in scope). The entry is
/// linked again from its new identifiers.
pub fn update(
    core: &Steward,
    actor: &Actor,
    tenant_id: &str,
    entry_id: &str,
    input: EntryInput,
) -> Result<Entry> {
    require_manager(actor, tenant_id)?;
    rule(core)?;
    let c = clean(core, input, "")?;
    write(core, actor, |tx, created| {
        tenant_exists(tx.conn, tenant_id)?;
        lock(tx, tenant_id)?;
        let existing =
            load(tx, tenant_id, entry_id)?.ok_or_else(|| Error::NotFound("entry".into()))?;
        let found = look_up(tx.core, tx.conn, tenant_id, &c)?;
        let (entry, _) = store(
            tx,
            tenant_id,
            Some(&existing),
            &c,
            Person::from(found),
            created,
            "api",
        )?;
        prune(tx, tenant_id)?;
        Ok(entry)
    })
}

/// Removes an entry (its admin, or an operator in scope). Devices hear of it at
/// their next sync.
pub fn delete(core: &Steward, actor: &Actor, tenant_id: &str, entry_id: &str) -> Result<()> {
    require_manager(actor, tenant_id)?;
    core.write(actor, |tx| {
        tenant_exists(tx.conn, tenant_id)?;
        lock(tx, tenant_id)?;
        let subject = tx
            .conn
            .query_opt(
                "SELECT subject_id FROM directory_entries WHERE id = $1 AND tenant_id = $2",
                params![entry_id, tenant_id],
            )?
            .ok_or_else(|| Error::NotFound("entry".into()))?
            .text(0)?;
        tx.conn.execute(
            "DELETE FROM directory_entries WHERE id = $1",
            params![entry_id],
        )?;
        let seq = record_change(tx, tenant_id, entry_id, true)?;
        tx.audit(Event {
            tenant_id: Some(tenant_id.to_owned()),
            subject_id: Some(subject),
            action: "directory.delete".into(),
            category: Some(CATEGORY.into()),
            purpose: Some(PURPOSE.into()),
            detail: serde_json::json!({ "entry_id": entry_id, "seq": seq }),
            ..Event::default()
        })?;
        prune(tx, tenant_id)?;
        Ok(())
    })
}

/// The entry a card of an import names as its own: `UID:urn:uuid:<id>`, as
/// [`to_vcard`] writes it.
fn uid_entry(contact: &Contact) -> Option<&str> {
    let uid = contact.uid.as_deref()?.trim();
    let id = uid
        .get(..9)
        .filter(|p| p.eq_ignore_ascii_case("urn:uuid:"))
        .and_then(|_| uid.get(9..))?;
    uuid::Uuid::parse_str(id).ok().map(|_| id)
}

/// A card as an entry, and the properties it has that an entry does not keep.
fn from_card(contact: Contact) -> (EntryInput, Vec<String>) {
    let mut ignored = Vec::new();
    let mut note = |present: bool, name: &str| {
        if present {
            ignored.push(name.to_owned());
        }
    };
    note(contact.birthday.is_some(), "birthday");
    note(contact.photo.is_some(), "photo");
    note(!contact.addresses.is_empty(), "addresses");
    note(contact.note.is_some(), "note");
    note(!contact.urls.is_empty(), "urls");
    // A card without FN is named by N, then by its organisation, then by its
    // first email address or phone number (phones export such cards).
    let display_name = trimmed(contact.formatted_name.clone())
        .or_else(|| {
            let n: Vec<&str> = [&contact.given_name, &contact.family_name]
                .iter()
                .filter_map(|v| v.as_deref().map(str::trim))
                .filter(|v| !v.is_empty())
                .collect();
            (!n.is_empty()).then(|| n.join(" "))
        })
        .or_else(|| trimmed(contact.organization.clone()))
        .or_else(|| {
            contact
                .emails
                .iter()
                .chain(&contact.phones)
                .find_map(|t| trimmed(Some(t.value.clone())))
        })
        .unwrap_or_default();
    (
        EntryInput {
            display_name,
            given_name: contact.given_name,
            family_name: contact.family_name,
            organization: contact.organization,
            department: contact.department,
            title: contact.title,
            emails: contact.emails,
            phones: contact.phones,
        },
        ignored,
    )
}

/// Imports a vCard file (2.1, 3.0 or 4.0; any number of cards up to
/// [`MAX_IMPORT_CARDS`]) into a tenant's directory. A card whose UID names an
/// entry of this directory (`urn:uuid:<id>`, as exports write it), or whose
/// person already has an entry, updates that entry; others are added. All or
/// nothing: a card that cannot be read or stored refuses the whole file (400
/// naming the card, its line and the field), and nothing changes.
pub fn import_vcard(
    core: &Steward,
    actor: &Actor,
    tenant_id: &str,
    bytes: &[u8],
) -> Result<ImportReport> {
    require_manager(actor, tenant_id)?;
    rule(core)?;
    let cards =
        steward_vcard::parse_located(bytes).map_err(|e| Error::invalid("vcard", e.to_string()))?;
    if cards.len() > MAX_IMPORT_CARDS {
        return Err(Error::invalid(
            "vcard",
            format!(
                "the file holds {} cards; at most {MAX_IMPORT_CARDS} are imported at once",
                cards.len()
            ),
        ));
    }
    let mut prepared = Vec::with_capacity(cards.len());
    for card in cards {
        let at = format!("card {} (BEGIN:VCARD at line {}): ", card.card, card.line);
        let uid = uid_entry(&card.contact).map(str::to_owned);
        let (input, ignored) = from_card(card.contact);
        let c = clean(core, input, &at)?;
        prepared.push((card.card, card.line, at, uid, c, ignored));
    }
    // Keys for the people who will need a new subject, made before the
    // transaction (the key store is a database of its own): a key-store
    // transaction per thousand. Keys left unused are destroyed below.
    let new_people: Vec<usize> = core.db.read(|conn| {
        let mut new = Vec::new();
        for (card, _, _, _, c, _) in &prepared {
            if look_up(core, conn, tenant_id, c)?.is_none() {
                new.push(*card);
            }
        }
        Ok(new)
    })?;
    let ids: Vec<String> = new_people
        .iter()
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let made = match core.keys.create_subject_keys(&ids) {
        Ok(keys) => keys,
        Err(e) => {
            for id in &ids {
                core.keys.shred_subject_key(id)?;
            }
            return Err(e);
        }
    };
    let mut premade: HashMap<usize, (String, DataKey)> = new_people
        .into_iter()
        .zip(ids.iter().cloned().zip(made))
        .collect();
    let res = write(core, actor, |tx, created| {
        tenant_exists(tx.conn, tenant_id)?;
        lock(tx, tenant_id)?;
        let mut report = ImportReport {
            created: 0,
            updated: 0,
            unchanged: 0,
            cards: Vec::with_capacity(prepared.len()),
        };
        // Which card of this file wrote each entry: two cards may not be one person.
        let mut written: BTreeMap<String, usize> = BTreeMap::new();
        for (card, line, at, uid, c, ignored) in &prepared {
            let by_uid = match uid {
                Some(id) => load(tx, tenant_id, id)?,
                None => None,
            };
            let found = look_up(tx.core, tx.conn, tenant_id, c)?;
            let existing = match (by_uid, &found) {
                (Some(e), _) => Some(e),
                (None, Some(subject)) => match entry_of_subject(tx, tenant_id, subject)? {
                    Some(id) => load(tx, tenant_id, &id)?,
                    None => None,
                },
                (None, None) => None,
            };
            // Only a person still not found takes a key made for them.
            let person = match found {
                Some(id) => Person::Found(id),
                None => Person::New(premade.remove(card)),
            };
            let (entry, outcome) = store(
                tx,
                tenant_id,
                existing.as_ref(),
                c,
                person,
                created,
                "import",
            )
            .map_err(|e| match e {
                Error::Conflict(m) => Error::Invalid {
                    field: Some("vcard".into()),
                    message: format!("{at}{m}"),
                },
                other => other,
            })?;
            if let Some(first) = written.insert(entry.id.clone(), *card) {
                return Err(Error::invalid(
                    "vcard",
                    format!(
                        "{at}this card is the same person as card {first} (same UID, email \
                         address or phone number): merge them into one card"
                    ),
                ));
            }
            match outcome {
                Outcome::Created => report.created += 1,
                Outcome::Updated => report.updated += 1,
                Outcome::Unchanged => report.unchanged += 1,
            }
            report.cards.push(ImportedCard {
                card: *card,
                line: *line,
                entry_id: entry.id,
                outcome: outcome.as_str().into(),
                ignored: ignored.clone(),
            });
        }
        prune(tx, tenant_id)?;
        Ok(report)
    });
    // Keys made for people who turned out not to need them (or for a file that
    // was refused): nothing sealed with them survives.
    for (id, _) in premade.into_values() {
        core.keys.shred_subject_key(&id)?;
    }
    res
}

/// Every entry of the tenant (rows whose subject is being erased are skipped).
fn all_entries(core: &Steward, tenant_id: &str) -> Result<Vec<Entry>> {
    let rows = core.db.read(|c| {
        c.query(
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE e.tenant_id = $1 ORDER BY e.id"),
            params![tenant_id],
        )
    })?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.extend(decrypt(core, r)?);
    }
    Ok(out)
}

/// Under a policy that makes the directory depend on each person's consent,
/// keeps only the entries of people whose consent is in force.
fn visible(core: &Steward, actor: &Actor, entries: Vec<Entry>) -> Result<Vec<Entry>> {
    let rule = rule(core)?;
    if rule == ConsentRule::NotNeeded {
        return Ok(entries);
    }
    let subjects: Vec<String> = entries.iter().map(|e| e.subject_id.clone()).collect();
    let allowed: HashSet<String> = core.write(actor, |tx| {
        let mut ok = HashSet::new();
        for s in subjects {
            if require_basis(tx, rule, &s).is_ok() {
                ok.insert(s);
            }
        }
        Ok(ok)
    })?;
    Ok(entries
        .into_iter()
        .filter(|e| allowed.contains(&e.subject_id))
        .collect())
}

fn audit_read(
    core: &Steward,
    actor: &Actor,
    tenant_id: &str,
    subject_id: Option<&str>,
    detail: serde_json::Value,
) -> Result<()> {
    if !audits_reads(actor, tenant_id) {
        return Ok(());
    }
    core.write(actor, |tx| {
        tx.audit(Event {
            tenant_id: Some(tenant_id.to_owned()),
            subject_id: subject_id.map(str::to_owned),
            action: "read".into(),
            category: Some(CATEGORY.into()),
            purpose: Some(PURPOSE.into()),
            detail,
            ..Event::default()
        })
    })?;
    Ok(())
}

fn by_name(entries: &mut [Entry]) {
    entries.sort_by(|a, b| {
        let key = |e: &Entry| e.fields.display_name.to_lowercase();
        key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id))
    });
}

/// The tenant's directory, sorted by name (any account of the tenant).
pub fn list(core: &Steward, actor: &Actor, tenant_id: &str) -> Result<Vec<Entry>> {
    require_member(actor, tenant_id)?;
    // Provider staff may name any tenant: one that does not exist is 404, not an
    // empty directory.
    require_tenant(core, tenant_id)?;
    let mut entries = visible(core, actor, all_entries(core, tenant_id)?)?;
    by_name(&mut entries);
    audit_read(
        core,
        actor,
        tenant_id,
        None,
        serde_json::json!({ "entries": entries.len(), "via": "list" }),
    )?;
    Ok(entries)
}

/// One entry (any account of the tenant).
pub fn get(core: &Steward, actor: &Actor, tenant_id: &str, entry_id: &str) -> Result<Entry> {
    require_member(actor, tenant_id)?;
    let row = core.db.read(|c| {
        c.query_opt(
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE e.id = $1 AND e.tenant_id = $2"),
            params![entry_id, tenant_id],
        )
    })?;
    let entry = match row {
        Some(r) => decrypt(core, &r)?,
        None => None,
    };
    let entry = visible(core, actor, entry.into_iter().collect())?
        .pop()
        .ok_or_else(|| Error::NotFound("entry".into()))?;
    audit_read(
        core,
        actor,
        tenant_id,
        Some(&entry.subject_id),
        serde_json::json!({ "entry_id": entry.id, "via": "get" }),
    )?;
    Ok(entry)
}

/// The tenant's directory as one vCard file (any account of the tenant).
pub fn export_vcard(
    core: &Steward,
    actor: &Actor,
    tenant_id: &str,
    version: Version,
) -> Result<String> {
    let entries = list(core, actor, tenant_id)?;
    Ok(entries.iter().map(|e| to_vcard(e, version)).collect())
}

/// One entry as a vCard, its UID `urn:uuid:<entry id>`.
pub fn to_vcard(entry: &Entry, version: Version) -> String {
    steward_vcard::to_vcard(&to_contact(Some(&entry.id), &entry.fields), version)
}

/// Directory entries about `subject_id` (for their access bundle).
pub(crate) fn entries_about(core: &Steward, subject_id: &str) -> Result<Vec<Entry>> {
    let rows = core.db.read(|c| {
        c.query(
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE e.subject_id = $1 ORDER BY e.id"),
            params![subject_id],
        )
    })?;
    let mut out = Vec::new();
    for r in &rows {
        out.extend(decrypt(core, r)?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Sync
// ---------------------------------------------------------------------------

fn token(core: &Steward, tenant_id: &str, seq: i64) -> String {
    let mac = core
        .keys
        .blind_index(TOKEN_KIND, &format!("{tenant_id}\n{seq}"));
    let mac = mac.get(..16).unwrap_or(&mac);
    format!("{seq}.{}", Base64UrlUnpadded::encode_string(mac))
}

/// The form of a sync token (a change number and a 16-byte MAC in unpadded
/// base64url), as the OpenAPI document states it.
pub const SYNC_TOKEN_PATTERN: &str = "^(0|[1-9][0-9]{0,17})\\.[A-Za-z0-9_-]{22}$";

/// The change number a token stands for: 400 (`invalid`) for a string not of
/// the token's form, 409 (`conflict`) for one of that form that this tenant's
/// directory did not issue (another tenant's, or altered): the client's state
/// does not match, and a full sync resolves it.
fn parse_token(core: &Steward, tenant_id: &str, t: &str) -> Result<i64> {
    let malformed = || {
        Error::invalid(
            "since",
            "not a sync token: pass the token a previous sync returned, or leave `since` out for \
             a full sync",
        )
    };
    let (seq, mac) = t.split_once('.').ok_or_else(malformed)?;
    let canonical = seq == "0" || !seq.starts_with('0');
    if seq.is_empty()
        || seq.len() > 18
        || !canonical
        || !seq.bytes().all(|b| b.is_ascii_digit())
        || mac.len() != 22
        || !mac
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(malformed());
    }
    let seq: i64 = seq.parse().map_err(|_| malformed())?;
    let expected = token(core, tenant_id, seq);
    if !constant_time_eq(expected.as_bytes(), t.as_bytes()) {
        return Err(Error::Conflict(
            "since: this sync token was not issued by this tenant's directory (or was altered): \
             leave `since` out for a full sync"
                .into(),
        ));
    }
    Ok(seq)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Change rows of the tenant whose entry is gone without a deletion being
/// recorded (erasure, retention, a consent purge and restores delete rows
/// through the registry) become deletions with new numbers, so devices hear of
/// them. Steward's own housekeeping: audited as `system:directory`.
pub fn reconcile(core: &Steward, tenant_id: &str) -> Result<u64> {
    const ORPHANS: &str = "SELECT c.entry_id FROM directory_changes c WHERE c.tenant_id = $1 \
                           AND c.deleted = 0 AND NOT EXISTS \
                           (SELECT 1 FROM directory_entries e WHERE e.id = c.entry_id)";
    let found = core.db.read(|c| c.query(ORPHANS, params![tenant_id]))?;
    if found.is_empty() {
        return Ok(0);
    }
    core.write(&Actor::system("directory"), |tx| {
        lock(tx, tenant_id)?;
        // Again inside the transaction: another sync may have done it.
        let rows = tx.conn.query(ORPHANS, params![tenant_id])?;
        let ids = rows
            .iter()
            .map(|r| r.text(0))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for id in &ids {
            record_change(tx, tenant_id, id, true)?;
        }
        if !ids.is_empty() {
            tx.audit(Event {
                tenant_id: Some(tenant_id.to_owned()),
                action: "directory.reconcile".into(),
                category: Some(CATEGORY.into()),
                detail: serde_json::json!({ "deleted_elsewhere": ids.len() }),
                ..Event::default()
            })?;
        }
        Ok(ids.len() as u64)
    })
}

/// Changes to the tenant's directory since `since` (a token from an earlier
/// sync; none for a full sync), at most `limit` (default [`SYNC_PAGE`], at most
/// [`SYNC_PAGE_MAX`]) per page. Any account of the tenant.
pub fn sync(
    core: &Steward,
    actor: &Actor,
    tenant_id: &str,
    since: Option<&str>,
    limit: Option<usize>,
) -> Result<SyncPage> {
    require_member(actor, tenant_id)?;
    rule(core)?;
    let limit = limit.unwrap_or(SYNC_PAGE);
    if limit == 0 || limit > SYNC_PAGE_MAX {
        return Err(Error::invalid(
            "limit",
            format!("limit is 1 to {SYNC_PAGE_MAX}"),
        ));
    }
    let since = since.map(|t| parse_token(core, tenant_id, t)).transpose()?;
    require_tenant(core, tenant_id)?;
    reconcile(core, tenant_id)?;
    let (state, rows) = core.db.read(|c| {
        let state = c
            .query_opt(
                "SELECT seq, pruned_seq FROM directory_state WHERE tenant_id = $1",
                params![tenant_id],
            )?
            .map(|r| Ok::<_, steward_store::StoreError>((r.i64(0)?, r.i64(1)?)))
            .transpose()?
            .unwrap_or((0, 0));
        let (current, pruned) = state;
        let (from, full) = match since {
            Some(s) if s >= pruned && s <= current => (s, false),
            _ => (0, true),
        };
        // A full sync lists the live entries only; deletions do not concern a
        // client that starts afresh.
        let rows = c.query(
            &format!(
                "SELECT c.entry_id, c.seq, c.deleted, {} FROM directory_changes c \
                 LEFT JOIN directory_entries e ON e.id = c.entry_id \
                 WHERE c.tenant_id = $1 AND c.seq > $2 {} ORDER BY c.seq LIMIT $3",
                COLUMNS,
                if full { "AND c.deleted = 0" } else { "" }
            ),
            params![tenant_id, from, (limit + 1) as i64],
        )?;
        Ok(((current, full), rows))
    })?;
    let (current, full) = state;
    let more = rows.len() > limit;
    let mut upserts = Vec::new();
    let mut deletions = Vec::new();
    let mut last = current;
    for r in rows.iter().take(limit) {
        let entry_id = r.text(0)?;
        last = r.i64(1)?;
        let live = !r.bool(2)? && !matches!(r.0.get(3), Some(Value::Null) | None);
        let entry = if live {
            // The entry columns follow the three change columns.
            decrypt(core, &Row(r.0.get(3..).unwrap_or_default().to_vec()))?
        } else {
            None
        };
        match entry {
            Some(e) => upserts.push(e),
            None if !full => deletions.push(entry_id),
            None => {}
        }
    }
    let upserts = visible(core, actor, upserts)?;
    let next = if more { last } else { current };
    audit_read(
        core,
        actor,
        tenant_id,
        None,
        serde_json::json!({ "entries": upserts.len(), "deletions": deletions.len(), "via": "sync" }),
    )?;
    Ok(SyncPage {
        full,
        upserts,
        deletions,
        token: token(core, tenant_id, next),
        more,
    })
}

/// vCard version from `3.0` / `4.0` (also `3`, `4`).
/// A vCard version as written (`4.0`, `4`, `3.0` or `3`), exactly: callers
/// reading a header trim it themselves.
pub fn parse_version(field: &str, v: &str) -> Result<Version> {
    match v {
        "4.0" | "4" => Ok(Version::V4),
        "3.0" | "3" => Ok(Version::V3),
        other => Err(Error::invalid(
            field,
            format!("vCard version {other:?} is not written: use 4.0 or 3.0"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_name_entries_only_as_exports_write_them() {
        let c = |uid: &str| Contact {
            uid: Some(uid.into()),
            ..Contact::default()
        };
        let id = "0192f0c4-7b1e-7c3a-9d2e-1f0a2b3c4d5e";
        assert_eq!(uid_entry(&c(&format!("urn:uuid:{id}"))), Some(id));
        assert_eq!(uid_entry(&c(&format!("URN:UUID:{id}"))), Some(id));
        assert_eq!(uid_entry(&c(id)), None);
        assert_eq!(uid_entry(&c("urn:uuid:not-a-uuid")), None);
        assert_eq!(uid_entry(&Contact::default()), None);
    }

    #[test]
    fn cards_without_fn_are_named_by_n_then_org() {
        let (e, ignored) = from_card(Contact {
            given_name: Some("Zoë".into()),
            family_name: Some("Ng".into()),
            birthday: Some("1985-04-12".into()),
            note: Some("x".into()),
            ..Contact::default()
        });
        assert_eq!(e.display_name, "Zoë Ng");
        assert_eq!(ignored, ["birthday", "note"]);
        let (e, _) = from_card(Contact {
            organization: Some("Acme".into()),
            ..Contact::default()
        });
        assert_eq!(e.display_name, "Acme");
        let (e, _) = from_card(Contact {
            phones: vec![Typed {
                value: " 2101 ".into(),
                ..Typed::default()
            }],
            ..Contact::default()
        });
        assert_eq!(e.display_name, "2101");
        assert_eq!(from_card(Contact::default()).0.display_name, "");
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("version", "3.0").ok(), Some(Version::V3));
        assert_eq!(parse_version("version", "4").ok(), Some(Version::V4));
        assert!(parse_version("version", "2.1").is_err());
        assert!(parse_version("version", " 4.0").is_err());
    }
}
