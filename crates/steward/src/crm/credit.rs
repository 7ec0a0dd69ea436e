//! Credit checks (policy category `credit_checks`, purpose `credit_check`):
//! "Undertaking credit checks; (with your specific permission on each
//! occasion)", through a credit reference agency.
//!
//! **Permission.** The policy marks the category `single_use_consent`: each
//! permission the person gives (`POST /subjects/{id}/consents`, or `steward
//! consent grant`, category `credit_checks`, purpose `credit_check`) is one
//! grant in the consent ledger, and [`request`] uses one up through
//! `processing::authorize`, in the transaction that stores the check. Without
//! an unused grant the check is refused (403 `consent_required`) and the refused
//! attempt is audited (`process.refused`); a second check needs a second
//! permission. A withdrawal voids unused grants and deletes the person's stored
//! checks: `credit_checks` rests on consent alone, so `consent::record` purges
//! the category's registered stores inside the withdrawal's transaction
//! (`consent.purge`).
//!
//! **Disclosure.** The check is recorded as a `disclose` audit entry to the
//! agency (a policy recipient of kind `credit_agency` declared for the
//! category), so the access bundle lists the agency among the recipients the
//! person's data actually went to.
//!
//! **What is kept.** What staff send to the agency (name, postal address,
//! previous address, date of birth) and, once it answers ([`record_result`],
//! once per check), its reference, decision, score and notes, each sealed with
//! the person's data key. Steward does not call an agency itself: staff (or
//! the provider's agency client) send what the check returned and record the
//! answer. Rows expire by the policy's retention for the category, counted from
//! the check.

use serde::{Deserialize, Serialize};
use steward_policy::RecipientKind;
use steward_store::{Row, params};
use utoipa::ToSchema;

use super::{required_text, text};
use crate::access::{Actor, Role};
use crate::audit::Event;
use crate::core::{Steward, Tx, fields};
use crate::error::{Error, Result};
use crate::processing::{self, Use};
use crate::subjects;

/// The policy category of credit checks.
pub const CATEGORY: &str = "credit_checks";
/// Its purpose.
pub const PURPOSE: &str = "credit_check";

pub const MAX_NAME: usize = 200;
pub const MAX_ADDRESS: usize = 500;
pub const MAX_REFERENCE: usize = 100;
pub const MAX_NOTES: usize = 2000;
pub const MAX_SCORE: i64 = 9999;

/// A credit check to make.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditCheckRequest {
    /// The agency: a policy recipient of kind `credit_agency` declared for
    /// credit_checks. Default: the policy's only one.
    pub agency: Option<String>,
    /// The details sent to the agency.
    pub name: String,
    pub postal_address: String,
    pub previous_address: Option<String>,
    /// `YYYY-MM-DD`.
    pub date_of_birth: Option<String>,
}

/// The agency's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = CreditDecision)]
pub enum Decision {
    Accept,
    Refer,
    Decline,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Accept => "accept",
            Decision::Refer => "refer",
            Decision::Decline => "decline",
        }
    }
    fn parse(s: &str) -> Result<Decision> {
        match s {
            "accept" => Ok(Decision::Accept),
            "refer" => Ok(Decision::Refer),
            "decline" => Ok(Decision::Decline),
            o => Err(Error::Internal(format!("unknown credit decision {o}"))),
        }
    }
}

/// What the agency answered.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditResult {
    /// The agency's reference for the check (1 to 100 characters).
    pub reference: String,
    pub decision: Decision,
    /// The agency's score, 0 to 9999, when it gives one.
    pub score: Option<i64>,
    /// Up to 2000 characters.
    pub notes: Option<String>,
}

/// The details sent to the agency.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct Sent {
    pub name: String,
    pub postal_address: String,
    pub previous_address: Option<String>,
    pub date_of_birth: Option<String>,
}

/// The agency's answer as recorded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordedResult {
    pub at: i64,
    pub by: String,
    pub reference: String,
    pub decision: Decision,
    pub score: Option<i64>,
    pub notes: Option<String>,
}

/// A credit check, decrypted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreditCheck {
    pub id: String,
    pub tenant_id: String,
    pub subject_id: String,
    /// The policy recipient id of the agency.
    pub agency: String,
    /// The single-use consent grant this check used up.
    pub grant_id: String,
    pub requested_by: String,
    pub created_at: i64,
    pub sent: Sent,
    /// Set once the agency's answer is recorded.
    pub result: Option<RecordedResult>,
}

/// The agency a check goes to: the one named (which must be a credit agency
/// the policy declares for the category), or the category's only one.
fn agency(core: &Steward, named: Option<&str>) -> Result<String> {
    let declared: Vec<String> = core
        .policy
        .category(CATEGORY)
        .map(|c| c.recipients.clone())
        .unwrap_or_default();
    let agencies: Vec<&String> = declared
        .iter()
        .filter(|r| {
            core.policy
                .recipient(r)
                .is_some_and(|x| x.kind == RecipientKind::CreditAgency)
        })
        .collect();
    let list = || {
        agencies
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match named {
        Some(a) if agencies.iter().any(|x| x.as_str() == a) => Ok(a.to_owned()),
        Some(a) => Err(Error::invalid(
            "agency",
            format!(
                "{a:?} is not a credit reference agency declared for {CATEGORY} in the policy \
                 (declared: {})",
                list()
            ),
        )),
        None => match agencies.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::invalid(
                "agency",
                format!("the policy declares no credit reference agency for {CATEGORY}"),
            )),
            _ => Err(Error::invalid(
                "agency",
                format!("name the agency: one of {}", list()),
            )),
        },
    }
}

fn clean_sent(r: &CreditCheckRequest) -> Result<Sent> {
    let date_of_birth = match r.date_of_birth.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(d) => {
            let day = crate::analytics::parse_day("date_of_birth", d)?;
            let today = time::OffsetDateTime::now_utc().date();
            if day.year() < 1900 || day >= today {
                return Err(Error::invalid(
                    "date_of_birth",
                    "a day in the past, from 1900 on",
                ));
            }
            Some(d.to_owned())
        }
    };
    Ok(Sent {
        name: required_text("name", &r.name, MAX_NAME, false)?,
        postal_address: required_text("postal_address", &r.postal_address, MAX_ADDRESS, true)?,
        previous_address: text(
            "previous_address",
            r.previous_address.as_deref(),
            MAX_ADDRESS,
            true,
        )?,
        date_of_birth,
    })
}

/// Makes a credit check for a subject (operators and DPOs, for subjects in
/// scope): uses up one single-use permission, records the disclosure to the
/// agency, and stores what was sent. Refused with `ConsentRequired` without
/// an unused permission; the refused attempt is audited.
pub fn request(
    core: &Steward,
    actor: &Actor,
    subject_id: &str,
    req: &CreditCheckRequest,
) -> Result<CreditCheck> {
    actor.require_role(&[Role::Operator, Role::Dpo], "make credit checks")?;
    let sent = clean_sent(req)?;
    let agency = agency(core, req.agency.as_deref())?;
    let u = Use {
        subject_id,
        category: CATEGORY,
        purpose: PURPOSE,
        recipient: Some(&agency),
    };
    let res = core.write(actor, |tx| {
        let decision = processing::authorize(tx, &u)?;
        let grant_id = decision
            .consumed_grant
            .ok_or_else(|| Error::Internal("a credit check consumed no grant".into()))?;
        let tenant = subjects::tenant_of(tx.conn, subject_id)?;
        let id = uuid::Uuid::now_v7().to_string();
        let key = tx.core.subject_key(subject_id)?;
        let json = serde_json::to_string(&sent).map_err(|e| Error::Internal(e.to_string()))?;
        tx.conn.execute(
            "INSERT INTO credit_checks (id, tenant_id, subject_id, agency, grant_id, requested_by, \
             created_at, sent_enc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            params![
                id.as_str(),
                tenant.as_str(),
                subject_id,
                agency.as_str(),
                grant_id.as_str(),
                tx.actor.audit_id.as_str(),
                tx.at,
                fields::seal(&key, "credit_checks.sent", subject_id, &json)?
            ],
        )?;
        Ok(CreditCheck {
            id,
            tenant_id: tenant,
            subject_id: subject_id.to_owned(),
            agency: agency.clone(),
            grant_id,
            requested_by: tx.actor.audit_id.clone(),
            created_at: tx.at,
            sent: sent.clone(),
            result: None,
        })
    });
    match res {
        Err(e @ (Error::ConsentRequired { .. } | Error::Forbidden(_))) => {
            // Rolled back with its transaction; record that it was attempted.
            core.write(actor, |tx| {
                let tenant = subjects::tenant_of(tx.conn, subject_id)?;
                tx.audit(Event {
                    tenant_id: Some(tenant),
                    subject_id: Some(subject_id.to_owned()),
                    action: "process.refused".into(),
                    category: Some(CATEGORY.into()),
                    purpose: Some(PURPOSE.into()),
                    recipient: Some(agency.clone()),
                    detail: serde_json::json!({ "reason": e.code() }),
                })
            })?;
            Err(e)
        }
        other => other,
    }
}

const COLUMNS: &str = "id, tenant_id, subject_id, agency, grant_id, requested_by, created_at, \
                       sent_enc, result_at, result_by, reference_enc, decision_enc, score_enc, \
                       notes_enc";

fn decrypt(core: &Steward, r: &Row) -> Result<CreditCheck> {
    let subject_id = r.text(2)?;
    let key = core.subject_key(&subject_id)?;
    let open = |i: usize, field: &str| -> Result<Option<String>> {
        fields::open_opt(
            &key,
            &format!("credit_checks.{field}"),
            &subject_id,
            r.opt_bytes(i)?.as_deref(),
        )
    };
    let sent: Sent = serde_json::from_str(&open(7, "sent")?.unwrap_or_default())
        .map_err(|e| Error::Internal(format!("credit_checks.sent is not readable: {e}")))?;
    let result = match r.opt_i64(8)? {
        None => None,
        Some(at) => Some(RecordedResult {
            at,
            by: r.opt_text(9)?.unwrap_or_default(),
            reference: open(10, "reference")?.unwrap_or_default(),
            decision: Decision::parse(&open(11, "decision")?.unwrap_or_default())?,
            score: open(12, "score")?
                .map(|s| {
                    s.parse::<i64>()
                        .map_err(|_| Error::Internal("credit_checks.score is not a number".into()))
                })
                .transpose()?,
            notes: open(13, "notes")?,
        }),
    };
    Ok(CreditCheck {
        id: r.text(0)?,
        tenant_id: r.text(1)?,
        agency: r.text(3)?,
        grant_id: r.text(4)?,
        requested_by: r.text(5)?,
        created_at: r.i64(6)?,
        sent,
        result,
        subject_id,
    })
}

/// The check's row and tenant, after the caller's scope check on its subject.
fn load(tx: &mut Tx<'_>, check_id: &str) -> Result<Row> {
    let row = tx
        .conn
        .query_opt(
            &format!("SELECT {COLUMNS} FROM credit_checks WHERE id = $1"),
            params![check_id],
        )?
        .ok_or_else(|| Error::NotFound("credit check".into()))?;
    let (tenant, subject) = (row.text(1)?, row.text(2)?);
    tx.actor
        .require_subject(&tenant, &subject)
        .map_err(|_| Error::NotFound("credit check".into()))?;
    Ok(row)
}

/// Records the agency's answer to a check, once (operators and DPOs).
pub fn record_result(
    core: &Steward,
    actor: &Actor,
    check_id: &str,
    result: &CreditResult,
) -> Result<CreditCheck> {
    actor.require_role(&[Role::Operator, Role::Dpo], "record credit check results")?;
    let reference = required_text("reference", &result.reference, MAX_REFERENCE, false)?;
    let notes = text("notes", result.notes.as_deref(), MAX_NOTES, true)?;
    if let Some(s) = result.score
        && !(0..=MAX_SCORE).contains(&s)
    {
        return Err(Error::invalid("score", format!("from 0 to {MAX_SCORE}")));
    }
    let row = core.write(actor, |tx| {
        let row = load(tx, check_id)?;
        if row.opt_i64(8)?.is_some() {
            return Err(Error::Conflict(
                "the agency's answer to this check is recorded already".into(),
            ));
        }
        let (tenant, subject_id) = (row.text(1)?, row.text(2)?);
        let key = tx.core.subject_key(&subject_id)?;
        let seal = |field: &str, v: Option<&str>| {
            fields::seal_opt(&key, &format!("credit_checks.{field}"), &subject_id, v)
        };
        let score = result.score.map(|s| s.to_string());
        tx.conn.execute(
            "UPDATE credit_checks SET result_at = $1, result_by = $2, reference_enc = $3, \
             decision_enc = $4, score_enc = $5, notes_enc = $6 WHERE id = $7 AND result_at IS NULL",
            params![
                tx.at,
                tx.actor.audit_id.as_str(),
                seal("reference", Some(&reference))?,
                seal("decision", Some(result.decision.as_str()))?,
                seal("score", score.as_deref())?,
                seal("notes", notes.as_deref())?,
                check_id
            ],
        )?;
        tx.audit(Event {
            tenant_id: Some(tenant),
            subject_id: Some(subject_id),
            action: "credit_check.result".into(),
            category: Some(CATEGORY.into()),
            purpose: Some(PURPOSE.into()),
            recipient: Some(row.text(3)?),
            detail: serde_json::json!({ "credit_check": check_id }),
        })?;
        tx.conn
            .query_opt(
                &format!("SELECT {COLUMNS} FROM credit_checks WHERE id = $1"),
                params![check_id],
            )?
            .ok_or_else(|| Error::Internal("credit check vanished".into()))
    })?;
    decrypt(core, &row)
}

fn audit_read(tx: &mut Tx<'_>, tenant: &str, subject_id: &str, ids: &[String]) -> Result<()> {
    if tx.actor.is_self(subject_id) {
        return Ok(());
    }
    tx.audit(Event {
        tenant_id: Some(tenant.to_owned()),
        subject_id: Some(subject_id.to_owned()),
        action: "read".into(),
        category: Some(CATEGORY.into()),
        purpose: Some(PURPOSE.into()),
        detail: serde_json::json!({ "credit_checks": ids }),
        ..Event::default()
    })?;
    Ok(())
}

/// Who may read credit checks: the person themself, operators and DPOs.
fn require_reader(actor: &Actor, subject_id: &str) -> Result<()> {
    if actor.is_self(subject_id) {
        return Ok(());
    }
    actor.require_role(&[Role::Operator, Role::Dpo], "read credit checks")
}

/// One credit check, decrypted (audited unless the person reads their own).
pub fn get(core: &Steward, actor: &Actor, check_id: &str) -> Result<CreditCheck> {
    let row = core.write(actor, |tx| {
        let row = load(tx, check_id)?;
        let (tenant, subject) = (row.text(1)?, row.text(2)?);
        require_reader(actor, &subject)?;
        audit_read(tx, &tenant, &subject, &[check_id.to_owned()])?;
        Ok(row)
    })?;
    decrypt(core, &row)
}

/// A subject's credit checks, newest first (audited unless their own).
pub fn list(core: &Steward, actor: &Actor, subject_id: &str) -> Result<Vec<CreditCheck>> {
    let rows = core.write(actor, |tx| {
        let tenant = subjects::tenant_of(tx.conn, subject_id)?;
        actor.require_subject(&tenant, subject_id)?;
        require_reader(actor, subject_id)?;
        let rows = tx.conn.query(
            &format!(
                "SELECT {COLUMNS} FROM credit_checks WHERE subject_id = $1 \
                 ORDER BY created_at DESC, id DESC"
            ),
            params![subject_id],
        )?;
        let ids = rows
            .iter()
            .map(|r| r.text(0).map_err(Into::into))
            .collect::<Result<Vec<String>>>()?;
        audit_read(tx, &tenant, subject_id, &ids)?;
        Ok(rows)
    })?;
    rows.iter().map(|r| decrypt(core, r)).collect()
}
