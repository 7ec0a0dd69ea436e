//! Data subjects: the people Steward holds data about. A subject's identifiers
//! are encrypted under their own data key and found through blind indexes.

use serde::{Deserialize, Serialize};
use steward_crypto::{IdentifierKind, normalize};
use steward_store::{Conn, Row, params};
use utoipa::ToSchema;

use crate::access::Actor;
use crate::audit::Event;
use crate::core::{Steward, Tx, fields};
use crate::error::{Error, Result};
use crate::processing::{self, Use};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// An app user (an employee of a tenant).
    User,
    /// An enquiry or CRM contact.
    Contact,
    /// A website visitor.
    Visitor,
    /// The other party of a call or message, outside the tenant.
    ExternalParty,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::User => "user",
            SubjectKind::Contact => "contact",
            SubjectKind::Visitor => "visitor",
            SubjectKind::ExternalParty => "external_party",
        }
    }

    fn parse(s: &str) -> Result<SubjectKind> {
        Ok(match s {
            "user" => SubjectKind::User,
            "contact" => SubjectKind::Contact,
            "visitor" => SubjectKind::Visitor,
            "external_party" => SubjectKind::ExternalParty,
            other => return Err(Error::Internal(format!("unknown subject kind {other}"))),
        })
    }
}

/// Identifiers of a new subject, as entered (normalised here).
#[derive(Debug, Clone, Default)]
pub struct NewSubject {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub name: Option<String>,
}

/// A subject with its personal fields decrypted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Subject {
    pub id: String,
    pub tenant_id: String,
    pub kind: SubjectKind,
    pub email: Option<String>,
    /// E.164.
    pub phone: Option<String>,
    pub name: Option<String>,
    pub created_at: i64,
    pub last_engagement_at: i64,
    pub legal_hold: bool,
}

pub(crate) struct Normalized {
    email: Option<String>,
    phone: Option<String>,
    name: Option<String>,
}

pub(crate) fn normalize_new(core: &Steward, new: &NewSubject) -> Result<Normalized> {
    let email = new
        .email
        .as_deref()
        .map(|e| normalize::email(e).map_err(|e| Error::invalid("email", e.to_string())))
        .transpose()?;
    let phone = new
        .phone
        .as_deref()
        .map(|p| {
            normalize::phone(p, &core.settings.default_region)
                .map_err(|e| Error::invalid("phone", e.to_string()))
        })
        .transpose()?;
    let name = match new.name.as_deref().map(str::trim) {
        Some(n) if n.chars().count() > 200 => {
            return Err(Error::invalid(
                "display_name",
                "a name has at most 200 characters",
            ));
        }
        Some("") | None => None,
        Some(n) => Some(n.to_owned()),
    };
    Ok(Normalized { email, phone, name })
}

/// Creates a subject inside the caller's transaction: a new data key in the key
/// store, identifiers sealed with it, blind indexes for lookup.
pub(crate) fn insert(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    kind: SubjectKind,
    n: &Normalized,
) -> Result<String> {
    let id = uuid::Uuid::now_v7().to_string();
    let key = tx.core.keys.create_subject_key(&id)?;
    insert_keyed(tx, tenant_id, kind, n, &id, &key)?;
    Ok(id)
}

/// [`insert`] with a key made beforehand (`KeyStore::create_subject_key(id)`),
/// for callers that make many keys at once outside the transaction.
pub(crate) fn insert_keyed(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    kind: SubjectKind,
    n: &Normalized,
    id: &str,
    key: &steward_crypto::DataKey,
) -> Result<()> {
    let keys = &tx.core.keys;
    let email_idx = n
        .email
        .as_deref()
        .map(|e| keys.blind_index(IdentifierKind::Email, e));
    let phone_idx = n
        .phone
        .as_deref()
        .map(|p| keys.blind_index(IdentifierKind::Phone, p));
    tx.conn.execute(
        "INSERT INTO subjects (id, tenant_id, kind, email_enc, email_idx, phone_enc, phone_idx, \
         name_enc, created_at, last_engagement_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        params![
            id,
            tenant_id,
            kind.as_str(),
            fields::seal_opt(key, "subjects.email", id, n.email.as_deref())?,
            email_idx,
            fields::seal_opt(key, "subjects.phone", id, n.phone.as_deref())?,
            phone_idx,
            fields::seal_opt(key, "subjects.name", id, n.name.as_deref())?,
            tx.at
        ],
    )?;
    Ok(())
}

const COLUMNS: &str = "id, tenant_id, kind, email_enc, phone_enc, name_enc, created_at, \
                       last_engagement_at, legal_hold";

fn decrypt(core: &Steward, r: &Row) -> Result<Subject> {
    let id = r.text(0)?;
    let key = core.subject_key(&id)?;
    Ok(Subject {
        tenant_id: r.text(1)?,
        kind: SubjectKind::parse(&r.text(2)?)?,
        email: fields::open_opt(&key, "subjects.email", &id, r.opt_bytes(3)?.as_deref())?,
        phone: fields::open_opt(&key, "subjects.phone", &id, r.opt_bytes(4)?.as_deref())?,
        name: fields::open_opt(&key, "subjects.name", &id, r.opt_bytes(5)?.as_deref())?,
        created_at: r.i64(6)?,
        last_engagement_at: r.i64(7)?,
        legal_hold: r.bool(8)?,
        id,
    })
}

/// The tenant a subject belongs to (no personal data), for scope checks.
pub fn tenant_of(c: &mut dyn Conn, subject_id: &str) -> Result<String> {
    c.query_opt(
        "SELECT tenant_id FROM subjects WHERE id = $1",
        params![subject_id],
    )?
    .ok_or_else(|| Error::NotFound("subject".into()))?
    .text(0)
    .map_err(Into::into)
}

/// Reads a subject's record for `purpose`: the same checks as any processing
/// (scope, declared purpose, consent where the purpose needs it). Reads by
/// anyone but the subject themself are audited.
pub fn read(core: &Steward, actor: &Actor, subject_id: &str, purpose: &str) -> Result<Subject> {
    core.write(actor, |tx| {
        let use_ = Use {
            subject_id,
            category: "contact_details",
            purpose,
            recipient: None,
        };
        let permit = processing::permit(tx, &use_)?;
        let row = tx
            .conn
            .query_opt(
                &format!("SELECT {COLUMNS} FROM subjects WHERE id = $1"),
                params![subject_id],
            )?
            .ok_or_else(|| Error::NotFound("subject".into()))?;
        if !actor.is_self(subject_id) {
            tx.audit(Event {
                tenant_id: Some(permit.tenant),
                subject_id: Some(subject_id.to_owned()),
                action: "read".into(),
                category: Some("contact_details".into()),
                purpose: Some(purpose.to_owned()),
                ..Event::default()
            })?;
        }
        decrypt(tx.core, &row)
    })
}

/// Finds subjects in a tenant by email or, when no email is given, by phone
/// number (through the blind index). Returns ids only; reading them is a
/// separate, audited step. The search itself is audited too.
pub fn find(
    core: &Steward,
    actor: &Actor,
    tenant_id: &str,
    email: Option<&str>,
    phone: Option<&str>,
) -> Result<Vec<String>> {
    actor.require_tenant(tenant_id, "tenant")?;
    let (col, idx) = match (email, phone) {
        (Some(e), _) => (
            "email_idx",
            core.keys.blind_index(
                IdentifierKind::Email,
                &normalize::email(e).map_err(|e| Error::invalid("email", e.to_string()))?,
            ),
        ),
        (None, Some(p)) => (
            "phone_idx",
            core.keys.blind_index(
                IdentifierKind::Phone,
                &normalize::phone(p, &core.settings.default_region)
                    .map_err(|e| Error::invalid("phone", e.to_string()))?,
            ),
        ),
        (None, None) => return Err(Error::invalid("email", "give an email or a phone number")),
    };
    core.write(actor, |tx| {
        let rows = tx.conn.query(
            &format!("SELECT id FROM subjects WHERE tenant_id = $1 AND {col} = $2 ORDER BY id"),
            params![tenant_id, idx.clone()],
        )?;
        let ids = rows
            .iter()
            .map(|r| r.text(0).map_err(Into::into))
            .collect::<Result<Vec<String>>>()?;
        tx.audit(Event {
            tenant_id: Some(tenant_id.to_owned()),
            action: "search".into(),
            category: Some("contact_details".into()),
            detail: serde_json::json!({ "by": col.trim_end_matches("_idx"), "matches": ids.len() }),
            ..Event::default()
        })?;
        Ok(ids)
    })
}

/// [`touch`] for several subjects at once (one statement per 500).
pub fn touch_all(tx: &mut Tx<'_>, subject_ids: &[&str]) -> Result<()> {
    for chunk in subject_ids.chunks(500) {
        let mut args = vec![steward_store::Value::Int(tx.at)];
        args.extend(chunk.iter().map(|s| steward_store::Value::from(*s)));

        tx.conn.execute(
            &format!(
                "UPDATE subjects SET last_engagement_at = $1 \
                 WHERE last_engagement_at < $1 AND id IN ({})",
                steward_store::placeholders(2, chunk.len())
            ),
            &args,
        )?;
    }
    Ok(())
}

/// Records that the subject engaged with the provider now: the retention
/// clock restarts from here.
pub fn touch(tx: &mut Tx<'_>, subject_id: &str) -> Result<()> {
    tx.conn.execute(
        "UPDATE subjects SET last_engagement_at = $1 WHERE id = $2 AND last_engagement_at < $1",
        params![tx.at, subject_id],
    )?;
    Ok(())
}

/// How a console search found a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    Email,
    Phone,
    Username,
}

impl MatchedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedBy::Email => "email",
            MatchedBy::Phone => "phone",
            MatchedBy::Username => "username",
        }
    }
}

/// A search result: ids only (reading the record is a separate, audited step).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Hit {
    pub subject_id: String,
    pub tenant_id: String,
    pub kind: SubjectKind,
    pub matched_by: MatchedBy,
}

/// Staff search by email, phone number or username, through the blind indexes,
/// in every tenant the caller sees. What the text is decides the index: an `@`
/// makes it an email, digits (with `+`, spaces, dashes, brackets) a phone
/// number, anything else a username. Audited as one `search` entry.
pub fn search(core: &Steward, actor: &Actor, text: &str) -> Result<Vec<Hit>> {
    actor.require_role(
        &[crate::access::Role::Operator, crate::access::Role::Dpo],
        "search for subjects",
    )?;
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::invalid(
            "q",
            "type an email address, a phone number or a username",
        ));
    }
    let phone_like = text
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c))
        && text.chars().any(|c| c.is_ascii_digit());
    let (by, idx) = if text.contains('@') {
        let e = normalize::email(text).map_err(|e| Error::invalid("q", e.to_string()))?;
        (
            MatchedBy::Email,
            core.keys.blind_index(IdentifierKind::Email, &e),
        )
    } else if phone_like {
        let p = normalize::phone(text, &core.settings.default_region)
            .map_err(|e| Error::invalid("q", e.to_string()))?;
        (
            MatchedBy::Phone,
            core.keys.blind_index(IdentifierKind::Phone, &p),
        )
    } else {
        let u = normalize::username(text).map_err(|e| Error::invalid("q", e.to_string()))?;
        (
            MatchedBy::Username,
            core.keys.blind_index(IdentifierKind::Username, &u),
        )
    };
    let sql = match by {
        MatchedBy::Email => "SELECT id, tenant_id, kind FROM subjects WHERE email_idx = $1",
        MatchedBy::Phone => "SELECT id, tenant_id, kind FROM subjects WHERE phone_idx = $1",
        MatchedBy::Username => {
            "SELECT s.id, s.tenant_id, s.kind FROM accounts a JOIN subjects s \
             ON s.id = a.subject_id WHERE a.username_idx = $1"
        }
    };
    core.write(actor, |tx| {
        let rows = tx
            .conn
            .query(&format!("{sql} ORDER BY 1"), params![idx.clone()])?;
        let mut hits = Vec::new();
        for r in &rows {
            let tenant_id = r.text(1)?;
            if !actor.sees_tenant(&tenant_id) {
                continue;
            }
            hits.push(Hit {
                subject_id: r.text(0)?,
                tenant_id,
                kind: SubjectKind::parse(&r.text(2)?)?,
                matched_by: by,
            });
        }
        tx.audit(Event {
            tenant_id: if actor.provider_staff {
                None
            } else {
                actor.tenant_id.clone()
            },
            action: "search".into(),
            category: Some("contact_details".into()),
            detail: serde_json::json!({ "by": by.as_str(), "matches": hits.len() }),
            ..Event::default()
        })?;
        Ok(hits)
    })
}

/// One policy category Steward holds data of about a subject, with why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Holding {
    pub category: String,
    pub name: String,
    pub description: String,
    /// Records held (rows across the category's stores).
    pub records: u64,
    /// Purpose names, each with its lawful basis.
    pub purposes: Vec<(String, String)>,
    pub retention: String,
    pub retention_starts: String,
    pub source: String,
}

/// What Steward holds about a subject, category by category, counted over every
/// table store of the registry, with the policy's purposes, lawful bases and
/// retention. For the subject themself and for staff in scope (audited).
pub fn holdings(core: &Steward, actor: &Actor, subject_id: &str) -> Result<Vec<Holding>> {
    use std::collections::BTreeMap;

    use crate::registry::PERSONAL_STORES;
    let tenant = tenant_of_subject(core, subject_id)?;
    actor.require_subject(&tenant, subject_id)?;
    let own = actor.is_self(subject_id);
    if !own {
        actor.require_role(
            &[crate::access::Role::Operator, crate::access::Role::Dpo],
            "see what is held about someone",
        )?;
    }
    let counts = core.db.read(|c| {
        let mut by: BTreeMap<&'static str, u64> = BTreeMap::new();
        for store in PERSONAL_STORES {
            let cond: Vec<String> = store
                .subject_columns
                .iter()
                .map(|col| format!("{col} = $1"))
                .collect();
            let n = c
                .query_opt(
                    &format!(
                        "SELECT CAST(COUNT(*) AS BIGINT) FROM {} WHERE {}",
                        store.name,
                        cond.join(" OR ")
                    ),
                    params![subject_id],
                )?
                .map(|r| r.i64(0))
                .transpose()?
                .unwrap_or(0);
            *by.entry(store.category).or_default() += n.max(0) as u64;
        }
        Ok(by)
    })?;
    if !own {
        core.write(actor, |tx| {
            tx.audit(Event {
                tenant_id: Some(tenant.clone()),
                subject_id: Some(subject_id.to_owned()),
                action: "read".into(),
                purpose: Some("accountability".into()),
                detail: serde_json::json!({ "view": "holdings" }),
                ..Event::default()
            })
        })?;
    }
    let policy = &core.policy;
    Ok(counts
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .filter_map(|(id, n)| policy.category(id).map(|c| (id, n, c)))
        .map(|(id, records, c)| Holding {
            category: id.to_owned(),
            name: c.name.clone(),
            description: c.description.clone(),
            records,
            purposes: c
                .purposes
                .iter()
                .map(|p| {
                    (
                        policy
                            .purpose(p)
                            .map(|x| x.name.clone())
                            .unwrap_or_else(|| p.clone()),
                        c.basis_for(p).unwrap_or(c.lawful_basis).label().to_owned(),
                    )
                })
                .collect(),
            retention: c.retention.to_string(),
            retention_starts: c.retention_starts.label().to_owned(),
            source: c.source.clone(),
        })
        .collect())
}

/// [`tenant_of`] on a read snapshot.
pub fn tenant_of_subject(core: &Steward, subject_id: &str) -> Result<String> {
    core.db
        .read(|c| {
            c.query_opt(
                "SELECT tenant_id FROM subjects WHERE id = $1",
                params![subject_id],
            )
        })?
        .ok_or_else(|| Error::NotFound("subject".into()))?
        .text(0)
        .map_err(Into::into)
}
