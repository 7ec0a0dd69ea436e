//! Erasure: the subject leaves every registered store and the blob store, and
//! their data key is destroyed, so every copy elsewhere (backups, replicas)
//! becomes unreadable. What stays: an erasure tombstone (keyed hashes of the
//! identifiers, so a later request can be told the data is gone), request
//! records with the subject's id cleared, and audit entries, which never held
//! personal data.

use std::collections::BTreeMap;

use serde::Serialize;
use steward_crypto::IdentifierKind;
use steward_store::{Value, params};
use utoipa::ToSchema;

use super::{Kind, State, audit_request, for_action, log_event, require_actionable, set_state};
use crate::access::Actor;
use crate::audit::Event;
use crate::clock::rfc3339;
use crate::core::{Steward, Tx, block_on};
use crate::error::{Error, Result};
use crate::registry::{OnErase, PERSONAL_STORES, PersonalStore};
use crate::subjects;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErasureReport {
    pub subject_id: String,
    pub tenant_id: String,
    pub tombstone_id: String,
    pub erased_at: i64,
    /// Rows deleted, per store.
    pub deleted: BTreeMap<String, u64>,
    /// Rows kept with the subject's id and fields cleared, per store.
    pub pseudonymised: BTreeMap<String, u64>,
    pub blobs_deleted: u64,
    /// The subject's data key was destroyed: every remaining copy is unreadable.
    pub key_destroyed: bool,
    pub confirmation: Confirmation,
}

/// The confirmation the statement promises, ready to send.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Confirmation {
    pub email: String,
    pub letter: String,
}

/// Why a subject is erased.
#[derive(Debug, Clone)]
pub enum Reason {
    Request(String),
    Retention,
}

impl Reason {
    fn as_str(&self) -> &'static str {
        match self {
            Reason::Request(_) => "request",
            Reason::Retention => "retention",
        }
    }
}

/// Erases the subject of a verified erasure request and fulfils it.
pub fn for_request(core: &Steward, actor: &Actor, request_id: &str) -> Result<ErasureReport> {
    let req = core.write(actor, |tx| {
        let req = for_action(tx, request_id, "erase data")?;
        require_actionable(&req, &[Kind::Erasure])?;
        Ok(req)
    })?;
    let Some(subject) = req.subject_id.clone() else {
        // The subject was already erased: the answer says so (from the tombstone).
        return Err(Error::Conflict(
            "the subject's data was already erased; send the 'already erased' answer".into(),
        ));
    };
    // The request is fulfilled in the transaction that erases the rows, so that a crash
    // cannot leave the subject erased and the request open (a re-run would find no
    // subject to erase and nothing would close it).
    let report = erase_subject_then(
        core,
        actor,
        &subject,
        Reason::Request(request_id.to_owned()),
        |tx, tombstone_id, deleted| {
            set_state(tx, request_id, State::Fulfilled)?;
            log_event(
                tx,
                request_id,
                "erased",
                serde_json::json!({ "tombstone_id": tombstone_id, "deleted": deleted }),
            )?;
            audit_request(
                tx,
                &req,
                "request.fulfil",
                serde_json::json!({ "request_id": request_id }),
            )
        },
    )?;
    Ok(report)
}

/// Removes a subject from every registered store, the blob store and the key store.
pub fn erase_subject(
    core: &Steward,
    actor: &Actor,
    subject_id: &str,
    reason: Reason,
) -> Result<ErasureReport> {
    erase_subject_then(core, actor, subject_id, reason, |_, _, _| Ok(()))
}

/// [`erase_subject`], with `finish` run in the transaction that deletes the rows (given
/// the tombstone's id and the counts deleted): it commits with them or not at all.
fn erase_subject_then(
    core: &Steward,
    actor: &Actor,
    subject_id: &str,
    reason: Reason,
    finish: impl FnOnce(&mut Tx<'_>, &str, &Counts) -> Result<()>,
) -> Result<ErasureReport> {
    // Check the actor's scope before destroying anything, then destroy the key
    // first: from that moment the subject is unreadable everywhere (data store,
    // blobs, backups), however long the row deletion below takes. A failure after
    // this point leaves ciphertext nobody can open, and a retry finishes the job.
    let tenant = core
        .db
        .read(|c| {
            c.query_opt(
                "SELECT tenant_id FROM subjects WHERE id = $1",
                params![subject_id],
            )
        })?
        .ok_or_else(|| Error::NotFound("subject".into()))?
        .text(0)?;
    actor.require_subject(&tenant, subject_id)?;
    let destroyed = core.keys.shred_subject_key(subject_id)?;
    let mut report = erase_inner(core, actor, subject_id, reason, |_| Ok(true), finish, false)?
        .ok_or_else(|| Error::Internal("erasure skipped without a condition".into()))?;
    report.key_destroyed |= destroyed;
    Ok(report)
}

/// [`erase_subject`], but only if `still_due`, asked inside the erasing
/// transaction before anything changes, answers true; `None` when it did not.
/// The retention job uses it so that a subject who engaged (or was put on hold)
/// after the plan was made is not erased.
pub(crate) fn erase_subject_if(
    core: &Steward,
    actor: &Actor,
    subject_id: &str,
    reason: Reason,
    still_due: impl FnOnce(&mut Tx<'_>) -> Result<bool>,
) -> Result<Option<ErasureReport>> {
    // The condition is asked inside the transaction, so here the key can only go
    // once the rows have.
    erase_inner(
        core,
        actor,
        subject_id,
        reason,
        still_due,
        |_, _, _| Ok(()),
        true,
    )
}

fn erase_inner(
    core: &Steward,
    actor: &Actor,
    subject_id: &str,
    reason: Reason,
    still_due: impl FnOnce(&mut Tx<'_>) -> Result<bool>,
    finish: impl FnOnce(&mut Tx<'_>, &str, &Counts) -> Result<()>,
    destroy_key: bool,
) -> Result<Option<ErasureReport>> {
    let tombstone_id = uuid::Uuid::now_v7().to_string();
    let erased = core.write(actor, |tx| {
        let tenant = subjects::tenant_of(tx.conn, subject_id)?;
        actor.require_subject(&tenant, subject_id)?;
        if !still_due(tx)? {
            return Ok(None);
        }
        let (deleted, pseudonymised) = erase_rows(tx, subject_id, &tenant, &tombstone_id, &reason)?;
        if destroy_key {
            // Committed with the rows: a crash before the key goes below leaves this
            // for the next start (`Steward::drain_shred_outbox`), never a live key for data erased.
            tx.conn.execute(
                "INSERT INTO shred_outbox (subject_id, queued_at) VALUES ($1, $2) \
                 ON CONFLICT (subject_id) DO NOTHING",
                params![subject_id, tx.at],
            )?;
        }
        finish(tx, &tombstone_id, &deleted)?;
        Ok(Some((tenant, deleted, pseudonymised, tx.at)))
    })?;
    let Some((tenant, deleted, pseudonymised, at)) = erased else {
        return Ok(None);
    };
    let key_destroyed = destroy_key && core.shred_queued_key(subject_id)?;
    // Blobs live outside the transaction; the key's destruction makes any object
    // that a failure here leaves behind unreadable all the same.
    // Every object of the subject's lives under their prefix (files.rs).
    let prefix = format!("tenant/{tenant}/subject/{subject_id}");
    let blobs_deleted = block_on(core.blobs.delete_prefix(&prefix))?;
    // Leave no erased row behind: on SQLite, empty the write-ahead log
    // (secure_delete already zeroes freed pages in the main file); on PostgreSQL,
    // VACUUM the touched tables so dead tuples do not wait for autovacuum.
    let touched: Vec<&str> = deleted
        .iter()
        .chain(pseudonymised.iter())
        .filter(|(_, n)| **n > 0)
        .map(|(t, _)| t.as_str())
        .collect();
    core.db.vacuum(&touched)?;
    let confirmation = confirmation(core, &tombstone_id, at, &deleted, &pseudonymised);
    Ok(Some(ErasureReport {
        subject_id: subject_id.to_owned(),
        tenant_id: tenant,
        tombstone_id,
        erased_at: at,
        deleted,
        pseudonymised,
        blobs_deleted,
        key_destroyed,
        confirmation,
    }))
}

pub(crate) type Counts = BTreeMap<String, u64>;

fn erase_rows(
    tx: &mut Tx<'_>,
    subject_id: &str,
    tenant: &str,
    tombstone_id: &str,
    reason: &Reason,
) -> Result<(Counts, Counts)> {
    // Keyed hashes of the identifiers, for the tombstone.
    let ids = tx
        .conn
        .query_opt(
            "SELECT email_idx, phone_idx FROM subjects WHERE id = $1",
            params![subject_id],
        )?
        .ok_or_else(|| Error::NotFound("subject".into()))?;
    let username_idx = tx
        .conn
        .query_opt(
            "SELECT username_idx FROM accounts WHERE subject_id = $1",
            params![subject_id],
        )?
        .map(|r| r.bytes(0))
        .transpose()?;
    // Requests about this subject keep pointing at the erasure through the tombstone.
    tx.conn.execute(
        "UPDATE requests SET tombstone_id = $1 WHERE subject_id = $2",
        params![tombstone_id, subject_id],
    )?;
    let mut deleted = Counts::new();
    let mut pseudonymised = Counts::new();
    // Children before parents: the registry lists parents first.
    for store in PERSONAL_STORES.iter().rev() {
        for col in store.subject_columns {
            let n = clear_rows(tx, store, col, subject_id, None)?;
            let counts = match store.erase_action(col) {
                OnErase::Pseudonymise => &mut pseudonymised,
                _ => &mut deleted,
            };
            *counts.entry(store.name.to_owned()).or_default() += n;
        }
    }
    let request_id = match reason {
        Reason::Request(id) => Some(id.as_str()),
        Reason::Retention => None,
    };
    tx.conn.execute(
        "INSERT INTO erasure_tombstones (id, tenant_id, erased_at, reason, request_id, email_idx, \
         phone_idx, username_idx) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        params![
            tombstone_id,
            tenant,
            tx.at,
            reason.as_str(),
            request_id,
            ids.opt_bytes(0)?,
            ids.opt_bytes(1)?,
            username_idx
        ],
    )?;
    tx.audit(Event {
        tenant_id: Some(tenant.to_owned()),
        subject_id: Some(subject_id.to_owned()),
        action: "erase".into(),
        detail: serde_json::json!({
            "reason": reason.as_str(), "request_id": request_id, "tombstone_id": tombstone_id,
            "deleted": deleted, "pseudonymised": pseudonymised,
        }),
        ..Event::default()
    })?;
    Ok((deleted, pseudonymised))
}

/// Erases one subject's rows from one table store, as the registry says
/// (`on_erase`, resolved for `column` by `erase_action`): deletes them, or keeps
/// them with the subject column and the columns sealed with that subject's key
/// cleared. `column` is one of the
/// store's subject columns; `only` limits the change to the rows with these
/// values in the store's `key_column` (the retention job's expired rows).
/// A store of files (`blob_column`) has its objects deleted after the commit
/// when the rows of the file's owner (its first subject column) go.
/// Returns the number of rows changed.
pub(crate) fn clear_rows(
    tx: &mut Tx<'_>,
    store: &PersonalStore,
    column: &str,
    subject_id: &str,
    only: Option<&[Value]>,
) -> Result<u64> {
    let owns_files = store
        .blob_column
        .filter(|_| store.subject_columns.first() == Some(&column));
    let change = match store.erase_action(column) {
        OnErase::Delete | OnErase::DeleteWithOwner => format!("DELETE FROM {}", store.name),
        OnErase::Pseudonymise => {
            let mut sets = vec![format!("{column} = NULL")];
            sets.extend(
                store
                    .encrypted_columns
                    .iter()
                    .filter(|(_, owner)| *owner == column)
                    .map(|(c, _)| format!("{c} = NULL")),
            );
            sets.extend(owns_files.map(|b| format!("{b} = NULL")));
            format!("UPDATE {} SET {}", store.name, sets.join(", "))
        }
    };
    // Bounded statements: SQLite caps the number of parameters.
    const CHUNK: usize = 500;
    let scopes: Vec<(String, Vec<Value>)> = match only {
        None => vec![(format!("{column} = $1"), vec![Value::from(subject_id)])],
        Some(keys) => keys
            .chunks(CHUNK)
            .map(|chunk| {
                let mut args = Vec::with_capacity(chunk.len() + 1);
                args.push(Value::from(subject_id));
                args.extend(chunk.iter().cloned());
                (
                    format!(
                        "{column} = $1 AND {} IN ({})",
                        store.key_column,
                        steward_store::placeholders(2, chunk.len())
                    ),
                    args,
                )
            })
            .collect(),
    };
    let mut n = 0;
    for (filter, args) in scopes {
        if let Some(blob_column) = owns_files {
            let rows = tx.conn.query(
                &format!(
                    "SELECT {blob_column} FROM {} WHERE {filter} AND {blob_column} IS NOT NULL",
                    store.name
                ),
                &args,
            )?;
            for r in rows {
                tx.delete_blob_after_commit(&r.text(0)?)?;
            }
        }
        n += tx
            .conn
            .execute(&format!("{change} WHERE {filter}"), &args)?;
    }
    Ok(n)
}

/// Whether identifiers match an erasure tombstone (the subject was erased).
pub fn tombstone_for(
    core: &Steward,
    kind: IdentifierKind,
    normalized: &str,
) -> Result<Option<(String, i64)>> {
    let col = match kind {
        IdentifierKind::Email => "email_idx",
        IdentifierKind::Phone => "phone_idx",
        IdentifierKind::Username => "username_idx",
        IdentifierKind::Other(_) => return Ok(None),
    };
    let idx = core.keys.blind_index(kind, normalized);
    let row = core.db.read(|c| {
        c.query_opt(
            &format!("SELECT id, erased_at FROM erasure_tombstones WHERE {col} = $1 ORDER BY erased_at DESC LIMIT 1"),
            params![idx],
        )
    })?;
    row.map(|r| Ok((r.text(0)?, r.i64(1)?))).transpose()
}

pub(crate) fn confirmation(
    core: &Steward,
    tombstone_id: &str,
    at: i64,
    deleted: &Counts,
    pseudonymised: &Counts,
) -> Confirmation {
    let meta = core.policy.meta();
    let date = rfc3339(at).chars().take(10).collect::<String>();
    let mut categories: Vec<String> = deleted
        .iter()
        .chain(pseudonymised.iter())
        .filter(|(_, n)| **n > 0)
        .filter_map(|(store, _)| crate::registry::store(store))
        .filter_map(|s| core.policy.category(s.category).map(|c| c.name.clone()))
        .collect();
    categories.sort();
    categories.dedup();
    let list = if categories.is_empty() {
        "- (we held no data about you)".to_owned()
    } else {
        categories
            .iter()
            .map(|c| format!("- {c}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let body = format!(
        "We have erased the personal data we held about you, as you asked.\n\n\
         Date of erasure: {date}\n\
         Reference: {tombstone_id}\n\n\
         What we erased:\n{list}\n\n\
         Copies in our backups can no longer be read: each person's data is encrypted with \
         their own key, and we destroyed yours.\n\n\
         What we keep, as the law requires: a record that this request was made and answered, \
         with no personal details; and, if you asked us not to contact you again, an entry that \
         lets us honour that.\n\n\
         {controller}\n{address}\n",
        controller = meta.controller,
        address = meta.controller_address,
    );
    Confirmation {
        email: format!("Subject: Confirmation that your personal data was erased\n\n{body}"),
        letter: format!(
            "{date}\n\nDear data subject,\n\n{body}\nYours faithfully,\n\nData Protection Officer\n"
        ),
    }
}
