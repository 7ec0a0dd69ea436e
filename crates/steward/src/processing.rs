//! The processing check: before Steward or a system around it processes a
//! subject's data, it names the category, the purpose and (for a disclosure) the
//! recipient. The policy decides whether that use is declared, the consent ledger
//! whether consent is in force (a single-use grant is consumed), and the decision
//! is written to the audit log. Steward's own features call [`authorize`]; other
//! systems (the PBX, the mailing tool, the credit-check client) call the API.

use serde::Serialize;
use steward_policy::{ConsentRule, LawfulBasis, UseError};
use utoipa::ToSchema;

use crate::access::{Actor, Role};
use crate::audit::Event;
use crate::consent;
use crate::core::{Steward, Tx};
use crate::error::{Error, Result};
use crate::subjects;

#[derive(Debug, Clone)]
pub struct Use<'a> {
    pub subject_id: &'a str,
    pub category: &'a str,
    pub purpose: &'a str,
    /// Set when the data leaves the provider: a recipient id from the policy.
    pub recipient: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ProcessingDecision)]
pub struct Decision {
    pub allowed: bool,
    #[schema(value_type = String)]
    pub lawful_basis: LawfulBasis,
    /// The single-use consent grant this operation used up, if any.
    pub consumed_grant: Option<String>,
    /// Audit entry recording the decision.
    pub audit_seq: i64,
}

/// What [`permit`] established about an allowed use.
pub(crate) struct Permit {
    pub tenant: String,
    pub basis: LawfulBasis,
    pub consumed_grant: Option<String>,
}

/// The checks every use of a subject's data passes, inside `tx`: the subject is
/// in the actor's scope, the policy declares the use (and the recipient), and
/// consent is in force where the policy needs it (a single-use grant is
/// consumed). Writes no audit entry: the caller records what it did.
pub(crate) fn permit(tx: &mut Tx<'_>, u: &Use<'_>) -> Result<Permit> {
    let tenant = subjects::tenant_of(tx.conn, u.subject_id)?;
    tx.actor.require_subject(&tenant, u.subject_id)?;
    let rule = tx.policy().check_use(u.category, u.purpose).map_err(|e| {
        let field = match e {
            UseError::UnknownCategory { .. } => "category",
            UseError::UndeclaredPurpose { .. } => "purpose",
        };
        Error::invalid(field, e.to_string())
    })?;
    if let Some(r) = u.recipient {
        let declared = tx
            .policy()
            .category(u.category)
            .is_some_and(|c| c.recipients.iter().any(|x| x.as_str() == r));
        if !declared {
            return Err(Error::Forbidden(format!(
                "{r:?} is not a declared recipient of {} in the policy",
                u.category
            )));
        }
    }
    let consumed_grant = match rule.consent {
        ConsentRule::NotNeeded => None,
        ConsentRule::Standing => {
            consent::require_standing(tx, u.subject_id, u.category, u.purpose)?;
            None
        }
        ConsentRule::SingleUse => Some(consent::consume_single_use(
            tx,
            &tenant,
            u.subject_id,
            u.category,
            u.purpose,
        )?),
    };
    Ok(Permit {
        tenant,
        basis: rule.basis,
        consumed_grant,
    })
}

/// Whether the actor's role may read `category`'s data, as the policy's
/// `access_roles` for the category says; `fallback` when the policy names no
/// roles for it. The command line and Steward's own jobs are not accounts and
/// always pass (as for every role check). Scope is checked apart ([`permit`]).
pub(crate) fn require_access_role(
    tx: &Tx<'_>,
    category: &str,
    fallback: &[Role],
    what: &str,
) -> Result<()> {
    let Some(role) = tx.actor.role() else {
        return Ok(());
    };
    let allowed = tx
        .policy()
        .category(category)
        .and_then(|c| c.allows_role(role.as_str()))
        .unwrap_or_else(|| fallback.contains(&role));
    if allowed {
        return Ok(());
    }
    let roles: Vec<&str> = match tx
        .policy()
        .category(category)
        .and_then(|c| c.access_roles.as_ref())
    {
        Some(roles) => roles.iter().map(|r| r.as_str()).collect(),
        None => fallback.iter().map(|r| r.as_str()).collect(),
    };
    Err(Error::Forbidden(format!(
        "your role ({}) may not {what}: the policy lets {} do so",
        role.as_str(),
        if roles.is_empty() {
            "no account".to_owned()
        } else {
            roles.join(", ")
        }
    )))
}

/// Checks a use of personal data inside `tx` and records it as processing (or
/// as a disclosure, with a recipient). Fails with `ConsentRequired` when consent
/// is needed and absent.
pub(crate) fn authorize(tx: &mut Tx<'_>, u: &Use<'_>) -> Result<Decision> {
    let Permit {
        tenant,
        basis,
        consumed_grant,
    } = permit(tx, u)?;
    let audit_seq = tx.audit(Event {
        tenant_id: Some(tenant),
        subject_id: Some(u.subject_id.to_owned()),
        action: if u.recipient.is_some() {
            "disclose"
        } else {
            "process"
        }
        .into(),
        category: Some(u.category.to_owned()),
        purpose: Some(u.purpose.to_owned()),
        recipient: u.recipient.map(str::to_owned),
        detail: serde_json::json!({ "consumed_grant": consumed_grant }),
    })?;
    Ok(Decision {
        allowed: true,
        lawful_basis: basis,
        consumed_grant,
        audit_seq,
    })
}

/// The processing check as a service for systems around Steward (staff and
/// employers' integrations).
pub fn check(core: &Steward, actor: &Actor, u: &Use<'_>) -> Result<Decision> {
    actor.require_role(
        &[Role::TenantAdmin, Role::Operator, Role::Dpo],
        "request processing",
    )?;
    match core.write(actor, |tx| authorize(tx, u)) {
        Err(e @ (Error::ConsentRequired { .. } | Error::Forbidden(_))) => {
            // The refused attempt rolled back with its transaction; record that it
            // was made, so the DPO sees attempts to process without a basis.
            core.write(actor, |tx| {
                let tenant = subjects::tenant_of(tx.conn, u.subject_id)?;
                tx.audit(Event {
                    tenant_id: Some(tenant),
                    subject_id: Some(u.subject_id.to_owned()),
                    action: "process.refused".into(),
                    category: Some(u.category.to_owned()),
                    purpose: Some(u.purpose.to_owned()),
                    recipient: u.recipient.map(str::to_owned),
                    detail: serde_json::json!({ "reason": e.code() }),
                })
            })?;
            Err(e)
        }
        other => other,
    }
}
