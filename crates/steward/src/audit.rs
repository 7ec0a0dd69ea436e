//! The tamper-evident audit log.
//!
//! Each entry's `hash` is an HMAC-SHA256, under the audit key from the key store,
//! of the previous entry's hash and the entry's own canonical form; entries are
//! numbered without gaps. Changing, removing or reordering an entry breaks the
//! chain at that entry. The key store keeps an anchor (the newest sequence number
//! and hash), so removing the newest entries is detected as well, and without the
//! key nobody can recompute a forged chain. Entries hold ids and names of
//! categories and purposes, never personal data.

use serde::Serialize;
use serde_json::Value as Json;
use steward_store::{Conn, Db, params};
use utoipa::ToSchema;

use crate::error::Result;
use crate::keys::KeyStore;

/// What an operation records.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub tenant_id: Option<String>,
    pub subject_id: Option<String>,
    /// `read`, `create`, `update`, `delete`, `disclose`, `process`, `consent.grant`, …
    pub action: String,
    pub category: Option<String>,
    pub purpose: Option<String>,
    pub recipient: Option<String>,
    /// Extra facts without personal data (ids, counts, reasons).
    pub detail: Json,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = AuditEntry)]
pub struct Entry {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub actor_role: String,
    pub tenant_id: Option<String>,
    pub subject_id: Option<String>,
    pub action: String,
    pub category: Option<String>,
    pub purpose: Option<String>,
    pub recipient: Option<String>,
    /// Extra facts without personal data (ids, counts, reasons); null when there are none.
    #[schema(value_type = Option<Object>)]
    pub detail: Json,
}

fn mac(keys: &KeyStore, prev: &[u8], e: &Entry, detail: &str) -> Vec<u8> {
    // A JSON array is an unambiguous, stable encoding of the fields.
    let canonical = serde_json::json!([
        e.seq,
        e.at,
        e.actor,
        e.actor_role,
        e.tenant_id,
        e.subject_id,
        e.action,
        e.category,
        e.purpose,
        e.recipient,
        detail
    ])
    .to_string();
    keys.audit_key().mac(&[prev, canonical.as_bytes()]).to_vec()
}

/// Appends one entry inside the caller's transaction; returns `(seq, hash)`.
pub(crate) fn append(
    c: &mut dyn Conn,
    keys: &KeyStore,
    actor: &str,
    actor_role: &str,
    at: i64,
    ev: Event,
) -> Result<(i64, Vec<u8>)> {
    // The counter row serialises appenders (a row lock on PostgreSQL; SQLite has
    // one writer), so sequence numbers have no gaps and the chain never forks.
    let seq = c
        .query_opt(
            "UPDATE counters SET value = value + 1 WHERE name = 'audit' RETURNING value",
            &[],
        )?
        .map(|r| r.i64(0))
        .transpose()?
        .unwrap_or(1);
    let prev = if seq == 1 {
        vec![0u8; 32]
    } else {
        c.query_opt(
            "SELECT hash FROM audit_log WHERE seq = $1",
            params![seq - 1],
        )?
        .map(|r| r.bytes(0))
        .transpose()?
        .unwrap_or_else(|| vec![0u8; 32])
    };
    let detail = ev.detail.to_string();
    let entry = Entry {
        seq,
        at,
        actor: actor.to_owned(),
        actor_role: actor_role.to_owned(),
        tenant_id: ev.tenant_id,
        subject_id: ev.subject_id,
        action: ev.action,
        category: ev.category,
        purpose: ev.purpose,
        recipient: ev.recipient,
        detail: ev.detail,
    };
    let hash = mac(keys, &prev, &entry, &detail);
    c.execute(
        "INSERT INTO audit_log (seq, at, actor, actor_role, tenant_id, subject_id, action, \
         category, purpose, recipient, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        params![
            entry.seq,
            entry.at,
            entry.actor,
            entry.actor_role,
            entry.tenant_id,
            entry.subject_id,
            entry.action,
            entry.category,
            entry.purpose,
            entry.recipient,
            detail,
            prev,
            hash.clone()
        ],
    )?;
    Ok((seq, hash))
}

const COLUMNS: &str = "seq, at, actor, actor_role, tenant_id, subject_id, action, category, \
                       purpose, recipient, detail, prev_hash, hash";

fn entry_from(r: &steward_store::Row) -> Result<(Entry, String, Vec<u8>, Vec<u8>)> {
    let detail = r.text(10)?;
    Ok((
        Entry {
            seq: r.i64(0)?,
            at: r.i64(1)?,
            actor: r.text(2)?,
            actor_role: r.text(3)?,
            tenant_id: r.opt_text(4)?,
            subject_id: r.opt_text(5)?,
            action: r.text(6)?,
            category: r.opt_text(7)?,
            purpose: r.opt_text(8)?,
            recipient: r.opt_text(9)?,
            detail: serde_json::from_str(&detail).unwrap_or(Json::String(detail.clone())),
        },
        detail,
        r.bytes(11)?,
        r.bytes(12)?,
    ))
}

/// Entries in sequence order, newest last; `tenant` limits to one tenant's entries.
pub fn list(db: &Db, after: i64, limit: i64, tenant: Option<&str>) -> Result<Vec<Entry>> {
    let rows = db.read(|c| match tenant {
        Some(t) => c.query(
            &format!(
                "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 AND tenant_id = $2 \
                 ORDER BY seq LIMIT $3"
            ),
            params![after, t, limit],
        ),
        None => c.query(
            &format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"),
            params![after, limit],
        ),
    })?;
    rows.iter().map(|r| entry_from(r).map(|e| e.0)).collect()
}

/// Entries about one subject (for access requests and the subject page).
pub fn for_subject(db: &Db, subject_id: &str) -> Result<Vec<Entry>> {
    let rows = db.read(|c| {
        c.query(
            &format!("SELECT {COLUMNS} FROM audit_log WHERE subject_id = $1 ORDER BY seq"),
            params![subject_id],
        )
    })?;
    rows.iter().map(|r| entry_from(r).map(|e| e.0)).collect()
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Verification {
    pub ok: bool,
    /// Entries checked.
    pub entries: i64,
    /// Sequence number of the first entry that fails, when one does.
    pub first_broken: Option<i64>,
    pub problem: Option<String>,
}

/// Re-computes the whole chain, page by page (memory does not grow with the log).
pub fn verify(db: &Db, keys: &KeyStore) -> Result<Verification> {
    const PAGE: i64 = 5000;
    let mut expected_seq = 1i64;
    let mut prev = vec![0u8; 32];
    let mut anchor_hash_seen = None;
    let anchor = keys.audit_anchor()?;
    let broken = |seq: i64, entries: i64, problem: String| Verification {
        ok: false,
        entries,
        first_broken: Some(seq),
        problem: Some(problem),
    };
    loop {
        let rows = db.read(|c| {
            c.query(
                &format!("SELECT {COLUMNS} FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2"),
                params![expected_seq, PAGE],
            )
        })?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let (e, detail, stored_prev, stored_hash) = entry_from(r)?;
            let checked = expected_seq - 1;
            if e.seq != expected_seq {
                return Ok(broken(
                    expected_seq,
                    checked,
                    format!("entry {expected_seq} is missing (next entry is {})", e.seq),
                ));
            }
            if stored_prev != prev {
                return Ok(broken(
                    e.seq,
                    checked,
                    format!("entry {} does not follow entry {}", e.seq, e.seq - 1),
                ));
            }
            if mac(keys, &prev, &e, &detail) != stored_hash {
                return Ok(broken(
                    e.seq,
                    checked,
                    format!("entry {} was modified", e.seq),
                ));
            }
            if let Some((aseq, ahash)) = &anchor
                && *aseq == e.seq
            {
                anchor_hash_seen = Some(stored_hash == *ahash);
            }
            prev = stored_hash;
            expected_seq += 1;
        }
    }
    let entries = expected_seq - 1;
    if let Some((aseq, _)) = anchor {
        if aseq > entries {
            return Ok(broken(
                entries + 1,
                entries,
                format!(
                    "the log ends at entry {entries} but entry {aseq} was written: \
                     entries {}..={aseq} were removed",
                    entries + 1
                ),
            ));
        }
        if anchor_hash_seen == Some(false) {
            return Ok(broken(
                aseq,
                entries,
                format!("entry {aseq} differs from the anchored copy: the log was rewritten"),
            ));
        }
    }
    Ok(Verification {
        ok: true,
        entries,
        first_broken: None,
        problem: None,
    })
}

/// Recent entries for the DPO: newest first, at most `limit`. A tenant's DPO
/// sees that tenant's entries; the provider's DPO sees all.
pub fn recent(db: &Db, actor: &crate::access::Actor, limit: i64) -> Result<Vec<Entry>> {
    let tenant = dpo_scope(actor, "read the audit log")?;
    let rows = db.read(|c| match tenant.as_deref() {
        Some(t) => c.query(
            &format!(
                "SELECT {COLUMNS} FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT $2"
            ),
            params![t, limit],
        ),
        None => c.query(
            &format!("SELECT {COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT $1"),
            params![limit],
        ),
    })?;
    rows.iter().map(|r| entry_from(r).map(|e| e.0)).collect()
}

/// [`list`] for an actor: DPOs only; a tenant's DPO sees that tenant's entries.
pub fn list_for(
    db: &Db,
    actor: &crate::access::Actor,
    after: i64,
    limit: i64,
) -> Result<Vec<Entry>> {
    let tenant = dpo_scope(actor, "read the audit log")?;
    list(db, after, limit, tenant.as_deref())
}

/// [`verify`] for an actor: the provider's DPO only, since the chain spans
/// every tenant.
pub fn verify_for(db: &Db, keys: &KeyStore, actor: &crate::access::Actor) -> Result<Verification> {
    actor.require_role(&[crate::access::Role::Dpo], "verify the audit log")?;
    actor.require_provider_staff("verify the whole audit log")?;
    verify(db, keys)
}

/// The tenant a DPO's audit view is limited to (`None`: all, for provider staff).
fn dpo_scope(actor: &crate::access::Actor, what: &str) -> Result<Option<String>> {
    actor.require_role(&[crate::access::Role::Dpo], what)?;
    Ok(if actor.provider_staff {
        None
    } else {
        actor.tenant_id.clone()
    })
}

/// The action of the entry that records a verification of the chain.
pub const VERIFY_ACTION: &str = "audit.verify";

/// [`verify_for`], recording the outcome as an `audit.verify` entry (the
/// console's "verify now"): the record of a check is in the chain it checked,
/// so it cannot be forged or dropped unnoticed either.
pub fn verify_and_record(
    core: &crate::core::Steward,
    actor: &crate::access::Actor,
) -> Result<Verification> {
    let v = verify_for(&core.db, &core.keys, actor)?;
    core.write(actor, |tx| {
        tx.audit(Event {
            action: VERIFY_ACTION.into(),
            detail: serde_json::json!({
                "ok": v.ok,
                "entries": v.entries,
                "first_broken": v.first_broken,
                "problem": v.problem,
            }),
            ..Event::default()
        })
    })?;
    Ok(v)
}

/// The newest recorded verification of the chain, and how many entries were
/// appended after it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LastVerification {
    pub at: i64,
    /// Who ran it (an audit actor).
    pub actor: String,
    pub result: Verification,
    /// Entries appended since (not covered by it).
    pub since: i64,
}

/// The newest `audit.verify` entry (the provider's DPO, like verifying): two
/// indexed look-ups, whatever the size of the log.
pub fn last_verification(
    db: &Db,
    actor: &crate::access::Actor,
) -> Result<Option<LastVerification>> {
    actor.require_role(
        &[crate::access::Role::Dpo],
        "see the audit log's verification",
    )?;
    actor.require_provider_staff("see the whole audit log's verification")?;
    let (row, newest) = db.read(|c| {
        let row = c.query_opt(
            "SELECT seq, at, actor, detail FROM audit_log WHERE action = 'audit.verify' \
             ORDER BY seq DESC LIMIT 1",
            &[],
        )?;
        let newest = c
            .query_opt("SELECT MAX(seq) FROM audit_log", &[])?
            .map(|r| r.opt_i64(0))
            .transpose()?
            .flatten()
            .unwrap_or(0);
        Ok((row, newest))
    })?;
    let Some(r) = row else {
        return Ok(None);
    };
    let seq = r.i64(0)?;
    let d: Json = serde_json::from_str(&r.text(3)?).unwrap_or_default();
    Ok(Some(LastVerification {
        at: r.i64(1)?,
        actor: r.text(2)?,
        result: Verification {
            ok: d["ok"].as_bool().unwrap_or(false),
            entries: d["entries"].as_i64().unwrap_or(0),
            first_broken: d["first_broken"].as_i64(),
            problem: d["problem"].as_str().map(str::to_owned),
        },
        since: newest - seq,
    }))
}
