//! Marketing preferences and the export for mailing tools.
//!
//! **Consent.** Marketing by email needs consent (PECR regulation 22): the use
//! `contact_details`/`marketing` in the consent ledger, given on the enquiry
//! form, on the phone, by letter, or by the person in the app.
//!
//! **"No further contact".** The statement: "If you would like no further
//! contact from us, please reply to any email clearly stating this." Such a
//! request is recorded as suppression entries in `marketing_suppressions`: one
//! per email address or phone number of the person (their record's, and every
//! one they gave with an enquiry), each holding only the blind index of the
//! normalised identifier (HMAC-SHA256 under the blind-index key, the same value
//! as `subjects.email_idx`/`phone_idx`). The person's marketing consent is
//! withdrawn as well, so the ledger shows it too. Erasure and retention
//! *pseudonymise* an entry (the registry's `on_erase`): the subject's id and the
//! sealed evidence go, the keyed hash stays. So an erased person stays
//! suppressed, and if their address comes back later (a new enquiry, a ticked
//! box on the form) the export still leaves it out. Only [`resume`], staff
//! acting on the person's own renewed request with evidence, lifts it.
//!
//! Why the blind-index key and not a key of its own: a suppression must match
//! exactly the identifiers Steward finds people by (same normalisation, same
//! key), and a second key would sit in the same key store under the same master
//! key, so it would protect nothing more; the export can then test a person's
//! `email_idx` and `phone_idx` against the list without decrypting anything.
//!
//! **Export** ([`export`]): the CSV a mailing tool imports (Mailchimp's
//! "Email Address" column, then "Full Name" and "Consent Date"), with every
//! person of the tenant whose marketing consent is in force now, who has an
//! email address, and none of whose identifiers is suppressed. Each exported
//! person passes `processing::authorize` for `contact_details`/`marketing` with
//! the recipient, which writes their `disclose` entry (so the access bundle's
//! "who received your data" lists the mailing tool); one `marketing.export`
//! entry records the batch's counts.

use std::io::Write;

use serde::{Deserialize, Serialize};
use steward_crypto::{IdentifierKind, normalize};
use steward_store::{Value, params};
use utoipa::ToSchema;

use super::CONTACT_CATEGORY;
use crate::access::{Actor, Role};
use crate::audit::Event;
use crate::consent::{self, Action, Channel, Record};
use crate::core::{Steward, Tx, fields};
use crate::error::{Error, Result};
use crate::processing::{self, Use};
use crate::subjects;

/// The purpose of `contact_details` that marketing consent is for.
pub const PURPOSE: &str = "marketing";
/// The policy category of suppression entries.
pub const CATEGORY: &str = "marketing_preferences";
/// The purpose suppression entries are kept for.
pub const SUPPRESSION_PURPOSE: &str = "suppression";
/// The recipient an export is disclosed to unless another is named.
pub const DEFAULT_RECIPIENT: &str = "mailchimp";
/// The export's columns.
pub const CSV_HEADER: [&str; 3] = ["Email Address", "Full Name", "Consent Date"];
pub const MAX_EVIDENCE: usize = 2000;

/// "No further contact" for addresses given directly (provider staff).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressRequest {
    pub email: Option<String>,
    pub phone: Option<String>,
    /// How the request came: email, letter, phone, web or app.
    pub channel: Channel,
    /// What proves it (the email's date, a call note). Kept, sealed, only when
    /// the address belongs to someone Steward holds data about.
    pub evidence: Option<String>,
}

/// "No further contact" from a known person.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoFurtherContact {
    /// How the request came; default `app` when the person asks themself,
    /// else required.
    pub channel: Option<Channel>,
    pub evidence: Option<String>,
}

/// One suppressed identifier.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SuppressedEntry {
    /// `email` or `phone`.
    pub kind: String,
    /// It was suppressed before this request.
    pub already: bool,
    /// When it was first suppressed.
    pub since: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SuppressionOutcome {
    pub entries: Vec<SuppressedEntry>,
    /// People whose marketing consent this request withdrew.
    pub consents_withdrawn: u32,
    /// Whether the evidence was kept (sealed with the person's key).
    pub evidence_kept: bool,
}

/// What an export did.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ExportSummary {
    pub tenant_id: String,
    pub recipient: String,
    /// Rows written (one per person, each recorded as a disclosure).
    pub exported: u64,
    /// Left out: an identifier is on the suppression list.
    pub left_out_suppressed: u64,
    /// Left out: marketing consent is not in force (withdrawn).
    pub left_out_no_consent: u64,
    /// Left out: no email address on record.
    pub left_out_no_email: u64,
    /// The `marketing.export` audit entry.
    pub audit_seq: i64,
}

/// Whether the subject's marketing consent is in force.
pub(crate) fn consent_in_force(core: &Steward, subject_id: &str) -> Result<bool> {
    Ok(core
        .db
        .read(|c| Ok(consent::state(c, subject_id, CONTACT_CATEGORY, PURPOSE)))??
        .granted)
}

fn check_evidence(evidence: Option<&str>) -> Result<Option<String>> {
    super::text("evidence", evidence, MAX_EVIDENCE, true)
}

/// Records one suppressed identifier (idempotent). When `subject` is given and
/// the entry has nobody yet, it is linked to them and the evidence sealed
/// with their key. Returns the entry and whether evidence was kept.
fn put_entry(
    tx: &mut Tx<'_>,
    kind: &str,
    idx: &[u8],
    subject: Option<(&str, &str)>,
    channel: Channel,
    evidence: Option<&str>,
) -> Result<(SuppressedEntry, bool)> {
    let sealed = |subject_id: &str| -> Result<Option<Vec<u8>>> {
        let key = tx.core.subject_key(subject_id)?;
        fields::seal_opt(
            &key,
            "marketing_suppressions.evidence",
            subject_id,
            evidence,
        )
    };
    let (subject_id, tenant) = match subject {
        Some((s, t)) => (Some(s), t),
        None => (None, crate::tenants::PROVIDER_TENANT),
    };
    let evidence_enc = subject_id.map(sealed).transpose()?.flatten();
    let id = uuid::Uuid::now_v7().to_string();
    let n = tx.conn.execute(
        "INSERT INTO marketing_suppressions (id, identifier_idx, kind, subject_id, tenant_id, \
         channel, evidence_enc, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (identifier_idx) DO NOTHING",
        params![
            id.as_str(),
            idx,
            kind,
            subject_id,
            tenant,
            channel.as_str(),
            evidence_enc.clone(),
            tx.actor.audit_id.as_str(),
            tx.at
        ],
    )?;
    if n == 1 {
        return Ok((
            SuppressedEntry {
                kind: kind.to_owned(),
                already: false,
                since: tx.at,
            },
            evidence_enc.is_some(),
        ));
    }
    let row = tx
        .conn
        .query_opt(
            "SELECT id, subject_id, created_at FROM marketing_suppressions WHERE identifier_idx = $1",
            params![idx],
        )?
        .ok_or_else(|| Error::Internal("suppression entry vanished".into()))?;
    let mut kept = false;
    if row.opt_text(1)?.is_none()
        && let Some(s) = subject_id
    {
        // An entry left by an erased person or recorded for a bare address:
        // the person it now belongs to sees it in their access bundle.
        tx.conn.execute(
            "UPDATE marketing_suppressions SET subject_id = $1, tenant_id = $2, evidence_enc = $3 \
             WHERE id = $4",
            params![s, tenant, evidence_enc.clone(), row.text(0)?],
        )?;
        kept = evidence_enc.is_some();
    }
    Ok((
        SuppressedEntry {
            kind: kind.to_owned(),
            already: true,
            since: row.i64(2)?,
        },
        kept,
    ))
}

fn audit_suppress(
    tx: &mut Tx<'_>,
    subject: Option<(&str, &str)>,
    entries: &[SuppressedEntry],
    channel: Channel,
) -> Result<i64> {
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    let new = entries.iter().filter(|e| !e.already).count();
    tx.audit(Event {
        tenant_id: Some(
            subject
                .map(|(_, t)| t)
                .unwrap_or(crate::tenants::PROVIDER_TENANT)
                .to_owned(),
        ),
        subject_id: subject.map(|(s, _)| s.to_owned()),
        action: "marketing.suppress".into(),
        category: Some(CATEGORY.into()),
        purpose: Some(SUPPRESSION_PURPOSE.into()),
        detail: serde_json::json!({ "kinds": kinds, "new": new, "channel": channel.as_str() }),
        ..Event::default()
    })
}

/// Withdraws marketing consent for each subject that has it in force.
fn withdraw_all(
    core: &Steward,
    actor: &Actor,
    subjects: &[String],
    channel: Channel,
) -> Result<u32> {
    let mut n = 0;
    for s in subjects {
        if !consent_in_force(core, s)? {
            continue;
        }
        consent::record(
            core,
            actor,
            Record {
                subject_id: s.clone(),
                category: CONTACT_CATEGORY.into(),
                purpose: PURPOSE.into(),
                action: Action::Withdraw,
                channel,
                evidence: Some("asked for no further contact".into()),
            },
        )?;
        n += 1;
    }
    Ok(n)
}

/// "No further contact" from a known person: the person themself, or an
/// operator or DPO for someone in scope. Suppresses every email address and
/// phone number Steward has for them and withdraws their marketing consent.
pub fn no_further_contact(
    core: &Steward,
    actor: &Actor,
    subject_id: &str,
    req: &NoFurtherContact,
) -> Result<SuppressionOutcome> {
    let evidence = check_evidence(req.evidence.as_deref())?;
    let channel = match (req.channel, actor.is_self(subject_id)) {
        (Some(c), _) => c,
        (None, true) => Channel::App,
        (None, false) => {
            return Err(Error::invalid(
                "channel",
                "say how the request came: email, letter, phone, web or app",
            ));
        }
    };
    if !actor.is_self(subject_id) {
        actor.require_role(
            &[Role::Operator, Role::Dpo],
            "record a request for no further contact for someone else",
        )?;
    }
    let tenant = core.db.read(|c| Ok(subjects::tenant_of(c, subject_id)))??;
    actor.require_subject(&tenant, subject_id)?;
    // Every identifier the person gave: their record's (already blind-indexed)
    // and those in their enquiries (sealed: opened here, then hashed).
    let (emails, phones) = super::enquiries::identifiers_of(core, subject_id)?;
    let keys = &core.keys;
    let mut idxs: Vec<(&str, Vec<u8>)> = Vec::new();
    let own = core.db.read(|c| {
        c.query_opt(
            "SELECT email_idx, phone_idx FROM subjects WHERE id = $1",
            params![subject_id],
        )
    })?;
    if let Some(r) = own {
        idxs.extend(r.opt_bytes(0)?.map(|i| ("email", i)));
        idxs.extend(r.opt_bytes(1)?.map(|i| ("phone", i)));
    }
    idxs.extend(
        emails
            .iter()
            .map(|e| ("email", keys.blind_index(IdentifierKind::Email, e))),
    );
    idxs.extend(
        phones
            .iter()
            .map(|p| ("phone", keys.blind_index(IdentifierKind::Phone, p))),
    );
    idxs.sort();
    idxs.dedup();
    if idxs.is_empty() {
        return Err(Error::invalid(
            "subject_id",
            "the subject has no email address or phone number on record to suppress",
        ));
    }
    let (entries, evidence_kept) = core.write(actor, |tx| {
        processing::permit(
            tx,
            &Use {
                subject_id,
                category: CATEGORY,
                purpose: SUPPRESSION_PURPOSE,
                recipient: None,
            },
        )?;
        let mut entries = Vec::new();
        let mut kept = false;
        for (kind, idx) in &idxs {
            let (e, k) = put_entry(
                tx,
                kind,
                idx,
                Some((subject_id, &tenant)),
                channel,
                evidence.as_deref(),
            )?;
            entries.push(e);
            kept |= k;
        }
        audit_suppress(tx, Some((subject_id, &tenant)), &entries, channel)?;
        subjects::touch(tx, subject_id)?;
        Ok((entries, kept))
    })?;
    let consents_withdrawn = withdraw_all(core, actor, &[subject_id.to_owned()], channel)?;
    Ok(SuppressionOutcome {
        entries,
        consents_withdrawn,
        evidence_kept,
    })
}

/// Normalises the identifiers of a suppression request; at least one.
fn identifiers(
    core: &Steward,
    email: Option<&str>,
    phone: Option<&str>,
) -> Result<Vec<(&'static str, IdentifierKind, String)>> {
    let mut out = Vec::new();
    if let Some(e) = email.map(str::trim).filter(|e| !e.is_empty()) {
        let n = normalize::email(e).map_err(|e| Error::invalid("email", e.to_string()))?;
        out.push(("email", IdentifierKind::Email, n));
    }
    if let Some(p) = phone.map(str::trim).filter(|p| !p.is_empty()) {
        let n = normalize::phone(p, &core.settings.default_region)
            .map_err(|e| Error::invalid("phone", e.to_string()))?;
        out.push(("phone", IdentifierKind::Phone, n));
    }
    if out.is_empty() {
        return Err(Error::invalid(
            "email",
            "give the email address or phone number not to contact",
        ));
    }
    Ok(out)
}

/// "No further contact" for an email address or phone number, whoever it
/// belongs to (provider staff: the list is the provider's, across tenants). An
/// address Steward holds nothing else about is suppressed all the same, so it
/// is left out if it ever arrives. Everyone with that identifier has their
/// marketing consent withdrawn.
pub fn suppress(
    core: &Steward,
    actor: &Actor,
    req: &SuppressRequest,
) -> Result<SuppressionOutcome> {
    actor.require_role(&[Role::Operator, Role::Dpo], "suppress addresses")?;
    actor.require_provider_staff("keep the provider's suppression list")?;
    let ids = identifiers(core, req.email.as_deref(), req.phone.as_deref())?;
    let evidence = check_evidence(req.evidence.as_deref())?;
    let (entries, kept, people) = core.write(actor, |tx| {
        let mut entries = Vec::new();
        let mut kept = false;
        let mut people: Vec<String> = Vec::new();
        for (kind, ik, normalized) in &ids {
            let idx = tx.core.keys.blind_index(*ik, normalized);
            let col = if *kind == "email" {
                "email_idx"
            } else {
                "phone_idx"
            };
            let rows = tx.conn.query(
                &format!(
                    "SELECT id, tenant_id FROM subjects WHERE {col} = $1 ORDER BY created_at, id"
                ),
                params![idx.clone()],
            )?;
            let mut holders = Vec::new();
            for r in &rows {
                holders.push((r.text(0)?, r.text(1)?));
            }
            let owner = holders.first().map(|(s, t)| (s.as_str(), t.as_str()));
            let (e, k) = put_entry(tx, kind, &idx, owner, req.channel, evidence.as_deref())?;
            kept |= k;
            audit_suppress(tx, owner, std::slice::from_ref(&e), req.channel)?;
            entries.push(e);
            people.extend(holders.into_iter().map(|(s, _)| s));
        }
        people.sort();
        people.dedup();
        Ok((entries, kept, people))
    })?;
    let consents_withdrawn = withdraw_all(core, actor, &people, req.channel)?;
    Ok(SuppressionOutcome {
        entries,
        consents_withdrawn,
        evidence_kept: kept,
    })
}

/// Whether an email address or phone number is suppressed, and since when
/// (provider staff; audited as a search).
pub fn check(
    core: &Steward,
    actor: &Actor,
    email: Option<&str>,
    phone: Option<&str>,
) -> Result<Vec<SuppressedEntry>> {
    actor.require_role(&[Role::Operator, Role::Dpo], "look up the suppression list")?;
    actor.require_provider_staff("look up the provider's suppression list")?;
    let ids = identifiers(core, email, phone)?;
    core.write(actor, |tx| {
        let mut found = Vec::new();
        for (kind, ik, normalized) in &ids {
            let idx = tx.core.keys.blind_index(*ik, normalized);
            if let Some(r) = tx.conn.query_opt(
                "SELECT created_at FROM marketing_suppressions WHERE identifier_idx = $1",
                params![idx],
            )? {
                found.push(SuppressedEntry {
                    kind: (*kind).to_owned(),
                    already: true,
                    since: r.i64(0)?,
                });
            }
        }
        tx.audit(Event {
            tenant_id: Some(crate::tenants::PROVIDER_TENANT.into()),
            action: "search".into(),
            category: Some(CATEGORY.into()),
            purpose: Some(SUPPRESSION_PURPOSE.into()),
            detail: serde_json::json!({
                "by": ids.iter().map(|(k, _, _)| *k).collect::<Vec<_>>(), "matches": found.len(),
            }),
            ..Event::default()
        })?;
        Ok(found)
    })
}

/// What lifting a suppression did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResumeOutcome {
    /// Suppression entries removed (the person's own email and phone).
    pub lifted: u64,
    /// The marketing consent grant recorded.
    pub consent_event: String,
}

/// The person asked to hear from the provider again after "no further
/// contact": removes the suppression of their record's email and phone and
/// records their marketing consent, with the evidence (operators and DPOs; a
/// web-form tick never does this).
pub fn resume(
    core: &Steward,
    actor: &Actor,
    subject_id: &str,
    channel: Channel,
    evidence: &str,
) -> Result<ResumeOutcome> {
    actor.require_role(&[Role::Operator, Role::Dpo], "lift a suppression")?;
    let evidence = super::required_text("evidence", evidence, MAX_EVIDENCE, true)?;
    let lifted = core.write(actor, |tx| {
        processing::permit(
            tx,
            &Use {
                subject_id,
                category: CATEGORY,
                purpose: SUPPRESSION_PURPOSE,
                recipient: None,
            },
        )?;
        let r = tx
            .conn
            .query_opt(
                "SELECT email_idx, phone_idx, tenant_id FROM subjects WHERE id = $1",
                params![subject_id],
            )?
            .ok_or_else(|| Error::NotFound("subject".into()))?;
        let mut lifted = 0;
        for idx in [r.opt_bytes(0)?, r.opt_bytes(1)?].into_iter().flatten() {
            lifted += tx.conn.execute(
                "DELETE FROM marketing_suppressions WHERE identifier_idx = $1",
                params![idx],
            )?;
        }
        tx.audit(Event {
            tenant_id: Some(r.text(2)?),
            subject_id: Some(subject_id.to_owned()),
            action: "marketing.resume".into(),
            category: Some(CATEGORY.into()),
            purpose: Some(SUPPRESSION_PURPOSE.into()),
            detail: serde_json::json!({ "lifted": lifted, "channel": channel.as_str() }),
            ..Event::default()
        })?;
        Ok(lifted)
    })?;
    let ev = consent::record(
        core,
        actor,
        Record {
            subject_id: subject_id.to_owned(),
            category: CONTACT_CATEGORY.into(),
            purpose: PURPOSE.into(),
            action: Action::Grant,
            channel,
            evidence: Some(evidence),
        },
    )?;
    Ok(ResumeOutcome {
        lifted,
        consent_event: ev.id,
    })
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, or a
/// leading tab or carriage return) gets a leading `'`, so a name typed into
/// the web form cannot become a formula when staff open the file (OWASP's
/// advice on CSV injection). Email addresses are left as they are: the
/// mailing tool must receive them exactly.
fn neutralise(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

fn write_err(e: impl std::fmt::Display) -> Error {
    Error::invalid("out", format!("cannot write the export: {e}"))
}

/// Writes the mailing-tool CSV for a tenant's marketing list into `out` and
/// records each exported person's disclosure to `recipient` (default
/// `mailchimp`; any recipient the policy declares for contact_details).
/// Operators and DPOs, in a tenant they see. `out` is written inside the
/// transaction that records the disclosures: if writing fails, nothing is
/// recorded.
pub fn export<W: Write>(
    core: &Steward,
    actor: &Actor,
    tenant_id: &str,
    recipient: Option<&str>,
    out: &mut W,
) -> Result<ExportSummary> {
    actor.require_role(&[Role::Operator, Role::Dpo], "export the marketing list")?;
    let recipient = recipient.unwrap_or(DEFAULT_RECIPIENT);
    let declared = core
        .policy
        .category(CONTACT_CATEGORY)
        .map(|c| c.recipients.clone())
        .unwrap_or_default();
    if !declared.iter().any(|r| r == recipient) {
        return Err(Error::invalid(
            "recipient",
            format!(
                "{recipient:?} is not a recipient of {CONTACT_CATEGORY} in the policy (declared: {})",
                declared.join(", ")
            ),
        ));
    }
    actor.require_tenant(tenant_id, "tenant")?;
    core.write(actor, |tx| {
        if tx
            .conn
            .query_opt("SELECT 1 FROM tenants WHERE id = $1", params![tenant_id])?
            .is_none()
        {
            return Err(Error::NotFound("tenant".into()));
        }
        let candidates = tx.conn.query(
            "SELECT DISTINCT subject_id FROM consent_events WHERE tenant_id = $1 \
             AND category = $2 AND purpose = $3 AND action = 'grant' ORDER BY subject_id",
            params![tenant_id, CONTACT_CATEGORY, PURPOSE],
        )?;
        let mut summary = ExportSummary {
            tenant_id: tenant_id.to_owned(),
            recipient: recipient.to_owned(),
            ..ExportSummary::default()
        };
        let mut csv = csv::Writer::from_writer(&mut *out);
        csv.write_record(CSV_HEADER).map_err(write_err)?;
        for c in &candidates {
            let subject_id = c.text(0)?;
            let Some(row) = tx.conn.query_opt(
                "SELECT email_enc, name_enc, email_idx, phone_idx FROM subjects WHERE id = $1",
                params![subject_id.as_str()],
            )?
            else {
                continue;
            };
            let state = consent::state(tx.conn, &subject_id, CONTACT_CATEGORY, PURPOSE)?;
            if !state.granted {
                summary.left_out_no_consent += 1;
                continue;
            }
            let idxs: Vec<Value> = [row.opt_bytes(2)?, row.opt_bytes(3)?]
                .into_iter()
                .flatten()
                .map(Value::from)
                .collect();
            if suppressed(tx, &idxs)? {
                summary.left_out_suppressed += 1;
                continue;
            }
            let Some(email_enc) = row.opt_bytes(0)? else {
                summary.left_out_no_email += 1;
                continue;
            };
            processing::authorize(
                tx,
                &Use {
                    subject_id: &subject_id,
                    category: CONTACT_CATEGORY,
                    purpose: PURPOSE,
                    recipient: Some(recipient),
                },
            )?;
            let key = tx.core.subject_key(&subject_id)?;
            let email = fields::open(&key, "subjects.email", &subject_id, &email_enc)?;
            let name = fields::open_opt(
                &key,
                "subjects.name",
                &subject_id,
                row.opt_bytes(1)?.as_deref(),
            )?
            .unwrap_or_default();
            let day = state
                .since
                .map(|s| {
                    crate::clock::rfc3339(s)
                        .chars()
                        .take(10)
                        .collect::<String>()
                })
                .unwrap_or_default();
            csv.write_record([email.as_str(), &neutralise(&name), &day])
                .map_err(write_err)?;
            summary.exported += 1;
        }
        csv.flush().map_err(write_err)?;
        drop(csv);
        out.flush().map_err(write_err)?;
        summary.audit_seq = tx.audit(Event {
            tenant_id: Some(tenant_id.to_owned()),
            action: "marketing.export".into(),
            category: Some(CONTACT_CATEGORY.into()),
            purpose: Some(PURPOSE.into()),
            recipient: Some(recipient.to_owned()),
            detail: serde_json::json!({
                "exported": summary.exported,
                "left_out_suppressed": summary.left_out_suppressed,
                "left_out_no_consent": summary.left_out_no_consent,
                "left_out_no_email": summary.left_out_no_email,
            }),
            ..Event::default()
        })?;
        Ok(summary)
    })
}

/// Whether any of these blind indexes is on the suppression list.
fn suppressed(tx: &mut Tx<'_>, idxs: &[Value]) -> Result<bool> {
    for idx in idxs {
        if tx
            .conn
            .query_opt(
                "SELECT 1 FROM marketing_suppressions WHERE identifier_idx = $1",
                std::slice::from_ref(idx),
            )?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(neutralise("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise("+44"), "'+44");
        assert_eq!(neutralise("-1"), "'-1");
        assert_eq!(neutralise("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise("\tx"), "'\tx");
        assert_eq!(neutralise("Jane O'Neill"), "Jane O'Neill");
        assert_eq!(neutralise(""), "");
    }
}
