//! The consent ledger: an append-only list of grants, withdrawals and (for
//! "specific permission on each occasion") consumptions. The current state is
//! derived from it, never stored beside it, so history and state cannot disagree.
//!
//! Consent is given for one use: a category and a purpose (device contacts for
//! provision, photos for provision, …), so that agreeing to one feature never
//! switches on another that happens to share a purpose.

use serde::{Deserialize, Serialize};
use steward_policy::ConsentRule;
use steward_store::{Conn, Row, params};
use utoipa::ToSchema;

use crate::access::{Actor, Role};
use crate::audit::Event;
use crate::core::{Steward, Tx, fields};
use crate::error::{Error, Result};
use crate::registry::PERSONAL_STORES;
use crate::rights::erase;
use crate::subjects;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Grant,
    Withdraw,
    /// A single-use grant was used by the operation it authorised.
    Consume,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Grant => "grant",
            Action::Withdraw => "withdraw",
            Action::Consume => "consume",
        }
    }
    fn parse(s: &str) -> Result<Action> {
        match s {
            "grant" => Ok(Action::Grant),
            "withdraw" => Ok(Action::Withdraw),
            "consume" => Ok(Action::Consume),
            o => Err(Error::Internal(format!("unknown consent action {o}"))),
        }
    }
}

/// How the consent reached the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    App,
    Web,
    Phone,
    Letter,
    Email,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::App => "app",
            Channel::Web => "web",
            Channel::Phone => "phone",
            Channel::Letter => "letter",
            Channel::Email => "email",
        }
    }
    pub fn parse(s: &str) -> Result<Channel> {
        match s {
            "app" => Ok(Channel::App),
            "web" => Ok(Channel::Web),
            "phone" => Ok(Channel::Phone),
            "letter" => Ok(Channel::Letter),
            "email" => Ok(Channel::Email),
            o => Err(Error::invalid(
                "channel",
                format!("unknown channel {o:?}: expected app, web, phone, letter or email"),
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentEvent {
    pub id: String,
    pub seq: i64,
    pub subject_id: String,
    pub category: String,
    pub purpose: String,
    pub action: Action,
    pub single_use: bool,
    /// For `consume`: the grant that was used.
    pub grant_id: Option<String>,
    pub channel: Channel,
    /// The policy version the subject was shown.
    pub policy_version: String,
    pub evidence: Option<String>,
    pub recorded_by: String,
    pub at: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentState {
    pub category: String,
    pub purpose: String,
    /// Standing consent is in force.
    pub granted: bool,
    /// Unused single-use grants (credit checks).
    pub single_use_available: u32,
    /// When the current state began.
    pub since: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Record {
    pub subject_id: String,
    pub category: String,
    pub purpose: String,
    pub action: Action,
    pub channel: Channel,
    pub evidence: Option<String>,
}

/// The consent rule of a use the policy lets subjects consent to.
fn consent_rule(core: &Steward, category: &str, purpose: &str) -> Result<ConsentRule> {
    let uses = core.policy.consentable_uses();
    uses.iter()
        .find(|u| u.category == category && u.purpose == purpose)
        .map(|u| u.consent)
        .ok_or_else(|| {
            let known: Vec<String> = uses.iter().map(|u| format!("{}/{}", u.category, u.purpose)).collect();
            // Name the part that is wrong: a category the policy lacks, or a purpose.
            let field = if core.policy.category(category).is_none() { "category" } else { "purpose" };
            Error::invalid(
                field,
                format!(
                    "{category}/{purpose} is not a use that needs consent in the policy (consent uses: {})",
                    known.join(", ")
                ),
            )
        })
}

/// Records a grant or a withdrawal. The subject records their own (app, web);
/// staff record consent received by phone, letter or email. An employer cannot
/// consent on an employee's behalf: consent must come from the person.
pub fn record(core: &Steward, actor: &Actor, rec: Record) -> Result<ConsentEvent> {
    if rec.action == Action::Consume {
        return Err(Error::invalid(
            "action",
            "consent is consumed by the operation it authorises, not recorded directly",
        ));
    }
    let rule = consent_rule(core, &rec.category, &rec.purpose)?;
    if let Some(e) = &rec.evidence
        && e.chars().count() > 2000
    {
        return Err(Error::invalid(
            "evidence",
            "evidence has at most 2000 characters",
        ));
    }
    if !actor.is_self(&rec.subject_id) {
        actor.require_role(
            &[Role::Operator, Role::Dpo],
            "record consent for someone else",
        )?;
    }
    let single = rec.action == Action::Grant && rule == ConsentRule::SingleUse;
    let (ev, purged) = core.write(actor, |tx| {
        let tenant = subjects::tenant_of(tx.conn, &rec.subject_id)?;
        actor.require_subject(&tenant, &rec.subject_id)?;
        let ev = append(tx, &tenant, &rec, single, None)?;
        let purged = match rec.action {
            Action::Withdraw => purge_unconsented(tx, &tenant, &rec.subject_id, &rec.category)?,
            _ => Vec::new(),
        };
        subjects::touch(tx, &rec.subject_id)?;
        Ok((ev, purged))
    })?;
    if !purged.is_empty() {
        // As after an erasure: leave no deleted row in free pages or the WAL.
        core.db.vacuum(&purged)?;
    }
    Ok(ev)
}

/// After a withdrawal: if the category rests on consent for every purpose and
/// none of them has consent in force any more (standing or an unused single-use
/// grant), the subject's data of that category is deleted from every registered
/// store, files included, in the withdrawal's transaction. Data of a category
/// that another lawful basis also covers stays (processing for the consented
/// purpose stops; the data is not the consent's to delete). Returns the tables
/// touched.
fn purge_unconsented(
    tx: &mut Tx<'_>,
    tenant: &str,
    subject_id: &str,
    category: &str,
) -> Result<Vec<&'static str>> {
    let Some(cat) = tx.policy().category(category).cloned() else {
        return Ok(Vec::new());
    };
    let consent_only = cat.purposes.iter().all(|p| {
        cat.rule_for(p)
            .is_some_and(|r| r.consent != ConsentRule::NotNeeded)
    });
    if !consent_only {
        return Ok(Vec::new());
    }
    for purpose in &cat.purposes {
        let (state, open) = load_fold(tx.conn, subject_id, category, purpose)?;
        if state.granted || !open.is_empty() {
            return Ok(Vec::new());
        }
    }
    let mut counts = std::collections::BTreeMap::new();
    // Children before parents: the registry lists parents first.
    for store in PERSONAL_STORES
        .iter()
        .rev()
        .filter(|s| s.category == category)
    {
        for col in store.subject_columns {
            let n = erase::clear_rows(tx, store, col, subject_id, None)?;
            if n > 0 {
                *counts.entry(store.name).or_insert(0u64) += n;
            }
        }
    }
    if counts.is_empty() {
        return Ok(Vec::new());
    }
    tx.audit(Event {
        tenant_id: Some(tenant.to_owned()),
        subject_id: Some(subject_id.to_owned()),
        action: "consent.purge".into(),
        category: Some(category.to_owned()),
        detail: serde_json::json!({ "deleted": counts }),
        ..Event::default()
    })?;
    Ok(counts.into_keys().collect())
}

fn append(
    tx: &mut Tx<'_>,
    tenant: &str,
    rec: &Record,
    single: bool,
    grant_id: Option<&str>,
) -> Result<ConsentEvent> {
    let seq = tx
        .conn
        .query_opt(
            "UPDATE counters SET value = value + 1 WHERE name = 'consent' RETURNING value",
            &[],
        )?
        .ok_or_else(|| Error::Internal("consent counter missing".into()))?
        .i64(0)?;
    let id = uuid::Uuid::now_v7().to_string();
    let key = tx.core.subject_key(&rec.subject_id)?;
    let policy_version = tx.policy().version().to_owned();
    tx.conn.execute(
        "INSERT INTO consent_events (seq, id, subject_id, tenant_id, category, purpose, action, \
         single_use, grant_id, channel, policy_version, evidence_enc, recorded_by, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        params![
            seq,
            id.as_str(),
            rec.subject_id.as_str(),
            tenant,
            rec.category.as_str(),
            rec.purpose.as_str(),
            rec.action.as_str(),
            single,
            grant_id,
            rec.channel.as_str(),
            policy_version.as_str(),
            fields::seal_opt(
                &key,
                "consent_events.evidence",
                &rec.subject_id,
                rec.evidence.as_deref()
            )?,
            tx.actor.audit_id.as_str(),
            tx.at
        ],
    )?;
    tx.audit(Event {
        tenant_id: Some(tenant.to_owned()),
        subject_id: Some(rec.subject_id.clone()),
        action: format!("consent.{}", rec.action.as_str()),
        category: Some(rec.category.clone()),
        purpose: Some(rec.purpose.clone()),
        detail: serde_json::json!({
            "consent_event": id, "channel": rec.channel.as_str(), "single_use": single,
            "grant_id": grant_id,
        }),
        ..Event::default()
    })?;
    Ok(ConsentEvent {
        id,
        seq,
        subject_id: rec.subject_id.clone(),
        category: rec.category.clone(),
        purpose: rec.purpose.clone(),
        action: rec.action,
        single_use: single,
        grant_id: grant_id.map(str::to_owned),
        channel: rec.channel,
        policy_version,
        evidence: rec.evidence.clone(),
        recorded_by: tx.actor.audit_id.clone(),
        at: tx.at,
    })
}

const COLUMNS: &str = "id, seq, subject_id, purpose, action, single_use, grant_id, channel, \
                       policy_version, evidence_enc, recorded_by, at, category";

fn event_from(core: &Steward, r: &Row) -> Result<ConsentEvent> {
    let subject_id = r.text(2)?;
    let evidence = match r.opt_bytes(9)? {
        None => None,
        Some(b) => Some(fields::open(
            &core.subject_key(&subject_id)?,
            "consent_events.evidence",
            &subject_id,
            &b,
        )?),
    };
    Ok(ConsentEvent {
        id: r.text(0)?,
        seq: r.i64(1)?,
        purpose: r.text(3)?,
        action: Action::parse(&r.text(4)?)?,
        single_use: r.bool(5)?,
        grant_id: r.opt_text(6)?,
        channel: Channel::parse(&r.text(7)?)?,
        policy_version: r.text(8)?,
        evidence,
        recorded_by: r.text(10)?,
        at: r.i64(11)?,
        category: r.text(12)?,
        subject_id,
    })
}

/// Folds a purpose's events (in ledger order) into its current state and the
/// ids of unused single-use grants.
fn fold(
    category: &str,
    purpose: &str,
    events: &[(String, Action, bool, Option<String>, i64)],
) -> (ConsentState, Vec<String>) {
    let mut state = ConsentState {
        category: category.to_owned(),
        purpose: purpose.to_owned(),
        granted: false,
        single_use_available: 0,
        since: None,
    };
    let mut open: Vec<String> = Vec::new();
    for (id, action, single, grant_id, at) in events {
        match action {
            Action::Grant if *single => open.push(id.clone()),
            Action::Grant => {
                if !state.granted {
                    state.since = Some(*at);
                }
                state.granted = true;
            }
            Action::Withdraw => {
                // Withdrawal ends standing consent and voids unused single-use grants.
                state.granted = false;
                state.since = Some(*at);
                open.clear();
            }
            Action::Consume => open.retain(|g| Some(g) != grant_id.as_ref()),
        }
    }
    state.single_use_available = open.len() as u32;
    (state, open)
}

fn load_fold(
    c: &mut dyn Conn,
    subject_id: &str,
    category: &str,
    purpose: &str,
) -> Result<(ConsentState, Vec<String>)> {
    let rows = c.query(
        "SELECT id, action, single_use, grant_id, at FROM consent_events \
         WHERE subject_id = $1 AND category = $2 AND purpose = $3 ORDER BY seq",
        params![subject_id, category, purpose],
    )?;
    let events = rows
        .iter()
        .map(|r| {
            Ok((
                r.text(0)?,
                Action::parse(&r.text(1)?)?,
                r.bool(2)?,
                r.opt_text(3)?,
                r.i64(4)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(fold(category, purpose, &events))
}

/// The current state of one use for a subject (no audit entry: ids and
/// actions only, nothing personal is read).
pub(crate) fn state(
    c: &mut dyn Conn,
    subject_id: &str,
    category: &str,
    purpose: &str,
) -> Result<ConsentState> {
    Ok(load_fold(c, subject_id, category, purpose)?.0)
}

/// Inside an operation's transaction: passes when standing consent is in force.
pub(crate) fn require_standing(
    tx: &mut Tx<'_>,
    subject_id: &str,
    category: &str,
    purpose: &str,
) -> Result<()> {
    let (state, _) = load_fold(tx.conn, subject_id, category, purpose)?;
    if state.granted {
        Ok(())
    } else {
        Err(Error::ConsentRequired {
            purpose: purpose.to_owned(),
        })
    }
}

/// Inside an operation's transaction: uses up one single-use grant, recording
/// the consumption in the ledger. Returns the grant's id.
pub(crate) fn consume_single_use(
    tx: &mut Tx<'_>,
    tenant: &str,
    subject_id: &str,
    category: &str,
    purpose: &str,
) -> Result<String> {
    let (_, open) = load_fold(tx.conn, subject_id, category, purpose)?;
    let grant = open
        .into_iter()
        .next()
        .ok_or_else(|| Error::ConsentRequired {
            purpose: purpose.to_owned(),
        })?;
    let rec = Record {
        subject_id: subject_id.to_owned(),
        category: category.to_owned(),
        purpose: purpose.to_owned(),
        action: Action::Consume,
        channel: Channel::App,
        evidence: None,
    };
    append(tx, tenant, &rec, true, Some(&grant))?;
    Ok(grant)
}

/// Current state for every use of the policy that needs consent, and the full history.
pub fn overview(
    core: &Steward,
    actor: &Actor,
    subject_id: &str,
) -> Result<(Vec<ConsentState>, Vec<ConsentEvent>)> {
    let (tenant, rows) = core.db.read(|c| {
        let tenant = c
            .query_opt(
                "SELECT tenant_id FROM subjects WHERE id = $1",
                params![subject_id],
            )?
            .map(|r| r.text(0))
            .transpose()?;
        let rows = c.query(
            &format!("SELECT {COLUMNS} FROM consent_events WHERE subject_id = $1 ORDER BY seq"),
            params![subject_id],
        )?;
        Ok((tenant, rows))
    })?;
    let tenant = tenant.ok_or_else(|| Error::NotFound("subject".into()))?;
    actor.require_subject(&tenant, subject_id)?;
    if !actor.is_self(subject_id) {
        // Staff reading someone's consent history (with its evidence) is a read of
        // their personal data.
        core.write(actor, |tx| {
            tx.audit(Event {
                tenant_id: Some(tenant.clone()),
                subject_id: Some(subject_id.to_owned()),
                action: "read".into(),
                category: Some("consent_records".into()),
                purpose: Some("accountability".into()),
                ..Event::default()
            })
        })?;
    }
    let history = rows
        .iter()
        .map(|r| event_from(core, r))
        .collect::<Result<Vec<_>>>()?;
    let states = core
        .policy
        .consentable_uses()
        .iter()
        .map(|u| {
            let events: Vec<_> = history
                .iter()
                .filter(|e| e.category == u.category && e.purpose == u.purpose)
                .map(|e| {
                    (
                        e.id.clone(),
                        e.action,
                        e.single_use,
                        e.grant_id.clone(),
                        e.at,
                    )
                })
                .collect();
            fold(u.category, u.purpose, &events).0
        })
        .collect();
    Ok((states, history))
}

/// Whether the portal offers a subject of `kind` a switch for a use of
/// `category`: every use, except those of categories about website visitors
/// only (cookie analytics), which are answered on the website's banner.
pub fn offered_to(core: &Steward, kind: crate::subjects::SubjectKind, category: &str) -> bool {
    use steward_policy::SubjectKind as P;
    let Some(c) = core.policy.category(category) else {
        return false;
    };
    let visitors_only = !c.subjects.is_empty() && c.subjects.iter().all(|s| *s == P::Visitor);
    !visitors_only || kind == crate::subjects::SubjectKind::Visitor
}
