//! Data-subject requests: access, portability, rectification, erasure,
//! restriction and objection, with their working-day deadlines, identity
//! verification, refusal grounds and timeline.
//!
//! States: received → verifying → in_progress → fulfilled | partially_fulfilled |
//! refused. No personal data is released before verification is recorded.

pub mod erase;
pub mod export;
pub mod pages;
pub mod view;

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use steward_calendar::{Region, add_working_days, parse_date, working_days_between};
use steward_crypto::{IdentifierKind, normalize};
use steward_policy::Jurisdiction;
use steward_store::{Conn, Row, params};
use utoipa::ToSchema;

use crate::access::{Actor, Role};
use crate::audit::Event;
use crate::core::{Steward, Tx, fields};
use crate::error::{Error, Result};
use crate::tenants::PROVIDER_TENANT;

/// How long an earlier request of the same kind makes a new one "repetitive".
pub const REPETITIVE_WINDOW_DAYS: i64 = 90;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident, $field:literal, { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub const ALL: &'static [&'static str] = &[$($text),+];
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(Error::invalid(
                        $field,
                        format!("unknown {} {other:?}: expected {}", $field, Self::ALL.join(", ")),
                    )),
                }
            }
        }
    };
}

string_enum!(
    /// What the subject asks for.
    Kind, "kind", {
        Access = "access",
        Portability = "portability",
        Rectification = "rectification",
        Erasure = "erasure",
        Restriction = "restriction",
        Objection = "objection",
    }
);

string_enum!(
    /// How the request arrived.
    RequestChannel, "channel", {
        Letter = "letter",
        Email = "email",
        Phone = "phone",
        Portal = "portal",
    }
);

string_enum!(
    State, "state", {
        Received = "received",
        Verifying = "verifying",
        InProgress = "in_progress",
        Fulfilled = "fulfilled",
        PartiallyFulfilled = "partially_fulfilled",
        Refused = "refused",
    }
);

string_enum!(
    /// Why a request may be refused. "The data is on a backup" is not among them:
    /// erasure reaches backups through crypto-shredding.
    Ground, "ground", {
        Repetitive = "repetitive",
        ManifestlyUnfounded = "manifestly_unfounded",
        DisproportionateEffort = "disproportionate_effort",
        OthersPrivacy = "others_privacy",
    }
);

impl State {
    pub fn is_open(self) -> bool {
        matches!(self, State::Received | State::Verifying | State::InProgress)
    }
}

impl Ground {
    /// Parses a ground, answering "backup" with why it never applies.
    pub fn parse(s: &str) -> Result<Ground> {
        if s.to_ascii_lowercase().contains("backup") {
            return Err(Error::invalid(
                "ground",
                "data held on backups is never a ground for refusal: Steward's erasure \
                 reaches backups by destroying the subject's key",
            ));
        }
        s.parse()
    }
}

pub fn region_of(j: Jurisdiction) -> Region {
    match j {
        Jurisdiction::EnglandAndWales => Region::EnglandAndWales,
        Jurisdiction::Scotland => Region::Scotland,
        Jurisdiction::NorthernIreland => Region::NorthernIreland,
    }
}

/// The due date: `days` working days after the day of receipt (day 1 is the
/// first working day after it).
pub fn due_date(received: time::Date, region: Region, days: u32) -> time::Date {
    add_working_days(region, received, days)
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Request {
    pub id: String,
    pub tenant_id: String,
    /// None once the subject was erased, or when they were already gone.
    pub subject_id: Option<String>,
    /// Set when the subject had been erased before: the answer says so.
    pub tombstone_id: Option<String>,
    pub kind: Kind,
    pub channel: RequestChannel,
    /// YYYY-MM-DD.
    pub received_on: String,
    pub region: String,
    /// YYYY-MM-DD: the last working day to answer.
    pub due_on: String,
    pub state: State,
    pub verified_by: Option<String>,
    pub verify_method: Option<String>,
    pub verified_at: Option<i64>,
    pub refusal_ground: Option<Ground>,
    /// What the subject asked, in their words.
    pub details: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub closed_at: Option<i64>,
    /// Working days from today to the due date (negative: overdue).
    pub working_days_left: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimelineEntry {
    pub at: i64,
    pub actor: String,
    pub event: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// How the subject of a request is named.
#[derive(Debug, Clone)]
pub enum SubjectRef {
    Id(String),
    Email(String),
    Phone(String),
    Username(String),
}

#[derive(Debug, Clone)]
pub struct NewRequest {
    pub subject: SubjectRef,
    pub kind: Kind,
    pub channel: RequestChannel,
    /// YYYY-MM-DD.
    pub received_on: String,
    /// Default: the policy's jurisdiction.
    pub region: Option<String>,
    pub details: Option<String>,
}

const COLUMNS: &str = "id, tenant_id, subject_id, tombstone_id, kind, channel, received_on, \
                       region, due_on, state, verified_by, verify_method, verified_at, \
                       refusal_ground, details_enc, created_by, created_at, closed_at";

fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

fn from_row(core: &Steward, r: &Row) -> Result<Request> {
    let subject_id = r.opt_text(2)?;
    let details = match (&subject_id, r.opt_bytes(14)?) {
        (Some(s), Some(b)) => match core.keys.subject_key(s)? {
            Some(k) => Some(fields::open(&k, "requests.details", s, &b)?),
            None => None,
        },
        _ => None,
    };
    let region: Region = r
        .text(7)?
        .parse()
        .map_err(|e: steward_calendar::CalendarError| Error::Internal(e.to_string()))?;
    let due_on = r.text(8)?;
    let due = parse_date(&due_on).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Request {
        id: r.text(0)?,
        tenant_id: r.text(1)?,
        subject_id,
        tombstone_id: r.opt_text(3)?,
        kind: r.text(4)?.parse()?,
        channel: r.text(5)?.parse()?,
        received_on: r.text(6)?,
        region: region.as_str().to_owned(),
        working_days_left: working_days_between(region, today(), due),
        due_on,
        state: r.text(9)?.parse()?,
        verified_by: r.opt_text(10)?,
        verify_method: r.opt_text(11)?,
        verified_at: r.opt_i64(12)?,
        refusal_ground: r.opt_text(13)?.map(|g| g.parse()).transpose()?,
        details,
        created_by: r.text(15)?,
        created_at: r.i64(16)?,
        closed_at: r.opt_i64(17)?,
    })
}

/// Appends to a request's timeline (ids and facts only).
pub(crate) fn log_event(
    tx: &mut Tx<'_>,
    request_id: &str,
    event: &str,
    detail: serde_json::Value,
) -> Result<()> {
    let seq = tx
        .conn
        .query_opt(
            "UPDATE counters SET value = value + 1 WHERE name = 'request_event' RETURNING value",
            &[],
        )?
        .ok_or_else(|| Error::Internal("request_event counter missing".into()))?
        .i64(0)?;
    tx.conn.execute(
        "INSERT INTO request_events (seq, request_id, at, actor, event, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        params![
            seq,
            request_id,
            tx.at,
            tx.actor.audit_id.as_str(),
            event,
            detail.to_string()
        ],
    )?;
    Ok(())
}

/// Finds the subject a request names; `Ok(Err(tombstone))` when that subject
/// was erased before, `NotFound` when nobody matches.
fn resolve(
    core: &Steward,
    c: &mut dyn Conn,
    r: &SubjectRef,
) -> Result<std::result::Result<String, (String, String)>> {
    let (col, tomb_col, idx) = match r {
        SubjectRef::Id(id) => {
            return c
                .query_opt(
                    "SELECT id FROM subjects WHERE id = $1",
                    params![id.as_str()],
                )?
                .map(|_| Ok(id.clone()))
                .ok_or_else(|| Error::NotFound("subject".into()));
        }
        SubjectRef::Email(e) => {
            let n =
                normalize::email(e).map_err(|e| Error::invalid("subject_email", e.to_string()))?;
            (
                "SELECT id FROM subjects WHERE email_idx = $1",
                "email_idx",
                core.keys.blind_index(IdentifierKind::Email, &n),
            )
        }
        SubjectRef::Phone(p) => {
            let n = normalize::phone(p, &core.settings.default_region)
                .map_err(|e| Error::invalid("subject_phone", e.to_string()))?;
            (
                "SELECT id FROM subjects WHERE phone_idx = $1",
                "phone_idx",
                core.keys.blind_index(IdentifierKind::Phone, &n),
            )
        }
        SubjectRef::Username(u) => {
            let n = normalize::username(u)
                .map_err(|e| Error::invalid("subject_username", e.to_string()))?;
            (
                "SELECT subject_id FROM accounts WHERE username_idx = $1",
                "username_idx",
                core.keys.blind_index(IdentifierKind::Username, &n),
            )
        }
    };
    let rows = c.query(col, params![idx.clone()])?;
    match rows.as_slice() {
        [one] => return Ok(Ok(one.text(0)?)),
        [] => {}
        many => {
            return Err(Error::invalid(
                "subject",
                format!("{} subjects match; name the subject by id", many.len()),
            ));
        }
    }
    let tomb = c.query_opt(
        &format!(
            "SELECT id, tenant_id FROM erasure_tombstones WHERE {tomb_col} = $1 \
             ORDER BY erased_at DESC LIMIT 1"
        ),
        params![idx],
    )?;
    match tomb {
        Some(t) => Ok(Err((t.text(0)?, t.text(1)?))),
        None => Err(Error::NotFound("subject".into())),
    }
}

/// Records a request. Staff (DPO, operator) record requests received by letter,
/// email or phone; a subject files their own through the portal.
pub fn create(core: &Steward, actor: &Actor, new: NewRequest) -> Result<Request> {
    let received =
        parse_date(&new.received_on).map_err(|e| Error::invalid("received", e.to_string()))?;
    if received > today() {
        return Err(Error::invalid(
            "received",
            format!("{received} is in the future"),
        ));
    }
    let region = match &new.region {
        Some(r) => Region::from_str(r).map_err(|e| Error::invalid("region", e.to_string()))?,
        None => region_of(core.policy.jurisdiction()),
    };
    if let Some(d) = &new.details
        && d.chars().count() > 10_000
    {
        return Err(Error::invalid(
            "details",
            "details have at most 10000 characters",
        ));
    }
    let due = due_date(received, region, core.policy.deadline_working_days());
    let id = uuid::Uuid::now_v7().to_string();
    let request_id = core.write(actor, |tx| {
        let (subject_id, tombstone, tenant) = match resolve(tx.core, tx.conn, &new.subject)? {
            Ok(s) => {
                let t = crate::subjects::tenant_of(tx.conn, &s)?;
                (Some(s), None, t)
            }
            Err((tomb, tenant)) => (None, Some(tomb), tenant),
        };
        match &subject_id {
            Some(s) => actor.require_subject(&tenant, s)?,
            None => actor.require_tenant(&tenant, "subject")?,
        }
        if !subject_id.as_deref().is_some_and(|s| actor.is_self(s)) {
            actor.require_role(&[Role::Dpo, Role::Operator], "record requests for others")?;
        }
        let details = match (&subject_id, &new.details) {
            (Some(s), Some(d)) => Some(fields::seal(&tx.core.subject_key(s)?, "requests.details", s, d)?),
            _ => None,
        };
        tx.conn.execute(
            &format!(
                "INSERT INTO requests ({COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, NULL, NULL, $11, $12, $13, NULL)"
            ),
            params![
                id.as_str(),
                tenant.as_str(),
                subject_id.as_deref(),
                tombstone.as_deref(),
                new.kind.as_str(),
                new.channel.as_str(),
                received.to_string(),
                region.as_str(),
                due.to_string(),
                State::Received.as_str(),
                details,
                tx.actor.audit_id.as_str(),
                tx.at
            ],
        )?;
        log_event(tx, &id, "received", serde_json::json!({ "kind": new.kind, "channel": new.channel, "due_on": due.to_string() }))?;
        if tenant != PROVIDER_TENANT {
            // The employer controls its users' data: its admins hear of the request.
            tx.conn.execute(
                "INSERT INTO notifications (id, tenant_id, request_id, kind, created_at) \
                 VALUES ($1, $2, $3, 'request', $4)",
                params![uuid::Uuid::now_v7().to_string(), tenant.as_str(), id.as_str(), tx.at],
            )?;
            log_event(tx, &id, "employer_notified", serde_json::json!({ "tenant_id": tenant }))?;
        }
        tx.audit(Event {
            tenant_id: Some(tenant.clone()),
            subject_id: subject_id.clone(),
            action: "request.create".into(),
            category: Some("rights_requests".into()),
            purpose: Some("accountability".into()),
            detail: serde_json::json!({ "request_id": id, "kind": new.kind }),
            ..Event::default()
        })?;
        Ok(id.clone())
    })?;
    get(core, actor, &request_id)
}

/// What an employer (tenant-admin) sees of a request about one of its users:
/// that it exists, its kind, channel, dates and state, and whose it is, so that
/// it can give its view. Not what the person wrote (`details`), not how their
/// identity was checked or by whom, not the refusal ground and not the erasure
/// record: those are between the person and the provider.
fn employer_view(mut r: Request) -> Request {
    r.details = None;
    r.verified_by = None;
    r.verify_method = None;
    r.verified_at = None;
    r.refusal_ground = None;
    r.tombstone_id = None;
    r
}

/// Timeline events an employer sees, and which of their facts: its own answer
/// and the request's arrival; of the other steps only that they happened
/// (a verification's method is free text staff typed).
fn employer_event(mut e: TimelineEntry) -> TimelineEntry {
    let keep: &[&str] = match e.event.as_str() {
        "received" => &["kind", "channel", "due_on"],
        "employer_input" => &["answer"],
        _ => &[],
    };
    let detail = keep
        .iter()
        .filter_map(|k| e.detail.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect::<serde_json::Map<_, _>>();
    e.detail = serde_json::Value::Object(detail);
    e
}

/// Loads a request the actor may see: staff and the subject themself in full;
/// the employer (tenant-admin of the request's tenant) without what only the
/// person and the provider may see ([`employer_view`]).
pub fn get(core: &Steward, actor: &Actor, id: &str) -> Result<Request> {
    let row = core
        .db
        .read(|c| {
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM requests WHERE id = $1"),
                params![id],
            )
        })?
        .ok_or_else(|| Error::NotFound("request".into()))?;
    let tenant = row.text(1)?;
    actor.require_tenant(&tenant, "request")?;
    let subject = row.opt_text(2)?;
    if actor.role() == Some(Role::Subject) && !subject.as_deref().is_some_and(|s| actor.is_self(s))
    {
        return Err(Error::NotFound("request".into()));
    }
    if actor.role() == Some(Role::TenantAdmin)
        && !subject.as_deref().is_some_and(|s| actor.is_self(s))
    {
        // The details are never opened for the employer.
        let mut row = row;
        if let Some(v) = row.0.get_mut(14) {
            *v = steward_store::Value::Null;
        }
        return from_row(core, &row).map(employer_view);
    }
    from_row(core, &row)
}

/// Requests in scope, most urgent first. `due_within`: only open requests due
/// within that many working days (overdue ones included).
pub fn list(core: &Steward, actor: &Actor, due_within: Option<i64>) -> Result<Vec<Request>> {
    let rows = core.db.read(|c| {
        c.query(
            &format!("SELECT {COLUMNS} FROM requests ORDER BY due_on, received_on, id"),
            &[],
        )
    })?;
    let mut out = Vec::new();
    for r in &rows {
        let tenant = r.text(1)?;
        if !actor.sees_tenant(&tenant) {
            continue;
        }
        if actor.role() == Some(Role::Subject) && !r.opt_text(2)?.is_some_and(|s| actor.is_self(&s))
        {
            continue;
        }
        if actor.role() == Some(Role::TenantAdmin) {
            // Employers see that requests exist (to give their input), not their content.
            continue;
        }
        let req = from_row(core, r)?;
        if let Some(days) = due_within
            && !(req.state.is_open() && req.working_days_left <= days)
        {
            continue;
        }
        out.push(req);
    }
    Ok(out)
}

/// A request's timeline, for whoever may see the request ([`get`]); the
/// employer sees [`employer_event`]s.
pub fn timeline(core: &Steward, actor: &Actor, id: &str) -> Result<Vec<TimelineEntry>> {
    let req = get(core, actor, id)?;
    let employer = actor.role() == Some(Role::TenantAdmin)
        && !req.subject_id.as_deref().is_some_and(|s| actor.is_self(s));
    let rows = core.db.read(|c| {
        c.query(
            "SELECT at, actor, event, detail FROM request_events WHERE request_id = $1 ORDER BY seq",
            params![id],
        )
    })?;
    rows.iter()
        .map(|r| {
            let e = TimelineEntry {
                at: r.i64(0)?,
                actor: r.text(1)?,
                event: r.text(2)?,
                detail: serde_json::from_str(&r.text(3)?).unwrap_or_default(),
            };
            Ok(if employer { employer_event(e) } else { e })
        })
        .collect()
}

/// Loads a request for a staff action inside `tx`, checking scope and role.
fn for_action(tx: &mut Tx<'_>, id: &str, what: &str) -> Result<Request> {
    tx.actor.require_role(&[Role::Dpo, Role::Operator], what)?;
    let row = tx
        .conn
        .query_opt(
            &format!("SELECT {COLUMNS} FROM requests WHERE id = $1"),
            params![id],
        )?
        .ok_or_else(|| Error::NotFound("request".into()))?;
    tx.actor.require_tenant(&row.text(1)?, "request")?;
    from_row(tx.core, &row)
}

fn set_state(tx: &mut Tx<'_>, id: &str, state: State) -> Result<()> {
    let closed = (!state.is_open()).then_some(tx.at);
    tx.conn.execute(
        "UPDATE requests SET state = $1, closed_at = $2 WHERE id = $3",
        params![state.as_str(), closed, id],
    )?;
    Ok(())
}

fn audit_request(
    tx: &mut Tx<'_>,
    req: &Request,
    action: &str,
    detail: serde_json::Value,
) -> Result<()> {
    tx.audit(Event {
        tenant_id: Some(req.tenant_id.clone()),
        subject_id: req.subject_id.clone(),
        action: action.into(),
        category: Some("rights_requests".into()),
        purpose: Some("accountability".into()),
        detail,
        ..Event::default()
    })?;
    Ok(())
}

/// Marks that the subject was asked for proof of identity.
pub fn await_verification(core: &Steward, actor: &Actor, id: &str) -> Result<Request> {
    core.write(actor, |tx| {
        let req = for_action(tx, id, "work on requests")?;
        if req.state != State::Received {
            return Err(Error::Conflict(format!(
                "the request is {}, not received",
                req.state.as_str()
            )));
        }
        set_state(tx, id, State::Verifying)?;
        log_event(tx, id, "verifying", serde_json::json!({}))?;
        Ok(())
    })?;
    get(core, actor, id)
}

/// The longest description of how an identity was verified.
pub const MAX_VERIFY_METHOD: usize = 200;

/// Records who verified the requester's identity and how; the request moves to
/// in progress. Nothing is released before this step.
pub fn verify(core: &Steward, actor: &Actor, id: &str, method: &str) -> Result<Request> {
    // Checked as sent (the OpenAPI document's form), then trimmed.
    if method.trim().is_empty()
        || method.chars().count() > MAX_VERIFY_METHOD
        || method.chars().any(char::is_control)
    {
        return Err(Error::invalid(
            "method",
            format!(
                "say how the identity was verified (1 to {MAX_VERIFY_METHOD} characters on one line)"
            ),
        ));
    }
    let method = method.trim();
    core.write(actor, |tx| {
        let req = for_action(tx, id, "verify requesters")?;
        if !matches!(req.state, State::Received | State::Verifying) {
            return Err(Error::Conflict(format!("the request is already {}", req.state.as_str())));
        }
        tx.conn.execute(
            "UPDATE requests SET state = $1, verified_by = $2, verify_method = $3, verified_at = $4 \
             WHERE id = $5",
            params![State::InProgress.as_str(), tx.actor.audit_id.as_str(), method, tx.at, id],
        )?;
        log_event(tx, id, "verified", serde_json::json!({ "method": method }))?;
        audit_request(tx, &req, "request.verify", serde_json::json!({ "request_id": id }))
    })?;
    get(core, actor, id)
}

/// Refuses a request on a recorded ground. "Repetitive" needs an earlier request
/// of the same kind from the same subject within [`REPETITIVE_WINDOW_DAYS`].
pub fn refuse(core: &Steward, actor: &Actor, id: &str, ground: Ground) -> Result<Request> {
    core.write(actor, |tx| {
        let req = for_action(tx, id, "refuse requests")?;
        if !req.state.is_open() {
            return Err(Error::Conflict(format!("the request is already {}", req.state.as_str())));
        }
        if ground == Ground::Repetitive {
            let received = parse_date(&req.received_on).map_err(|e| Error::Internal(e.to_string()))?;
            let since = received - time::Duration::days(REPETITIVE_WINDOW_DAYS);
            let earlier = match &req.subject_id {
                Some(s) => tx.conn.query_opt(
                    "SELECT id FROM requests WHERE subject_id = $1 AND kind = $2 AND id <> $3 \
                     AND received_on >= $4 AND received_on <= $5 LIMIT 1",
                    params![s.as_str(), req.kind.as_str(), id, since.to_string(), req.received_on.as_str()],
                )?,
                None => None,
            };
            if earlier.is_none() {
                return Err(Error::invalid(
                    "ground",
                    format!(
                        "no earlier {} request from this subject in the {REPETITIVE_WINDOW_DAYS} days \
                         before {}: the request is not repetitive",
                        req.kind.as_str(),
                        req.received_on
                    ),
                ));
            }
        }
        tx.conn.execute(
            "UPDATE requests SET refusal_ground = $1 WHERE id = $2",
            params![ground.as_str(), id],
        )?;
        set_state(tx, id, State::Refused)?;
        log_event(tx, id, "refused", serde_json::json!({ "ground": ground }))?;
        audit_request(tx, &req, "request.refuse", serde_json::json!({ "request_id": id, "ground": ground }))
    })?;
    get(core, actor, id)
}

/// Closes a restriction or objection request once acted on.
pub fn complete(core: &Steward, actor: &Actor, id: &str, partially: bool) -> Result<Request> {
    core.write(actor, |tx| {
        let req = for_action(tx, id, "complete requests")?;
        if req.state != State::InProgress {
            return Err(Error::Conflict(format!(
                "the request is {}: verify the requester first",
                req.state.as_str()
            )));
        }
        let state = if partially {
            State::PartiallyFulfilled
        } else {
            State::Fulfilled
        };
        set_state(tx, id, state)?;
        log_event(tx, id, state.as_str(), serde_json::json!({}))?;
        audit_request(
            tx,
            &req,
            "request.complete",
            serde_json::json!({ "request_id": id, "state": state }),
        )
    })?;
    get(core, actor, id)
}

/// Checks that a request may be acted on (verified, in progress, of one of `kinds`).
pub(crate) fn require_actionable(req: &Request, kinds: &[Kind]) -> Result<()> {
    if !kinds.contains(&req.kind) {
        return Err(Error::Conflict(format!(
            "this is a {} request; the action needs {}",
            req.kind.as_str(),
            kinds
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    if req.state != State::InProgress {
        return Err(Error::Conflict(format!(
            "the request is {}: {}",
            req.state.as_str(),
            if req.state.is_open() {
                "verify the requester's identity first"
            } else {
                "it is closed"
            }
        )));
    }
    Ok(())
}

/// Rectifies one of the subject's identifiers (email, phone or name) for a
/// verified rectification request. The old value is overwritten in place (and
/// SQLite's secure_delete leaves no copy in free pages).
pub fn rectify(
    core: &Steward,
    actor: &Actor,
    id: &str,
    field: &str,
    value: &str,
) -> Result<Request> {
    let column = match field {
        "email" | "phone" | "name" => field,
        other => {
            return Err(Error::invalid(
                "field",
                format!("{other:?} cannot be rectified here: expected email, phone or name"),
            ));
        }
    };
    let normalized = match column {
        "email" => normalize::email(value).map_err(|e| Error::invalid("value", e.to_string()))?,
        "phone" => normalize::phone(value, &core.settings.default_region)
            .map_err(|e| Error::invalid("value", e.to_string()))?,
        _ => {
            let v = value.trim();
            if v.is_empty() || v.chars().count() > 200 {
                return Err(Error::invalid("value", "a name has 1 to 200 characters"));
            }
            v.to_owned()
        }
    };
    core.write(actor, |tx| {
        let req = for_action(tx, id, "rectify data")?;
        require_actionable(&req, &[Kind::Rectification])?;
        let subject = req
            .subject_id
            .clone()
            .ok_or_else(|| Error::NotFound("subject".into()))?;
        let key = tx.core.subject_key(&subject)?;
        let sealed = fields::seal(&key, &format!("subjects.{column}"), &subject, &normalized)?;
        match column {
            "email" => tx.conn.execute(
                "UPDATE subjects SET email_enc = $1, email_idx = $2 WHERE id = $3",
                params![
                    sealed,
                    tx.core.keys.blind_index(IdentifierKind::Email, &normalized),
                    subject.as_str()
                ],
            )?,
            "phone" => tx.conn.execute(
                "UPDATE subjects SET phone_enc = $1, phone_idx = $2 WHERE id = $3",
                params![
                    sealed,
                    tx.core.keys.blind_index(IdentifierKind::Phone, &normalized),
                    subject.as_str()
                ],
            )?,
            _ => tx.conn.execute(
                "UPDATE subjects SET name_enc = $1 WHERE id = $2",
                params![sealed, subject.as_str()],
            )?,
        };
        set_state(tx, id, State::Fulfilled)?;
        log_event(tx, id, "rectified", serde_json::json!({ "field": column }))?;
        audit_request(
            tx,
            &req,
            "rectify",
            serde_json::json!({ "request_id": id, "field": column }),
        )
    })?;
    get(core, actor, id)
}

/// Which requests the staff queue shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateFilter {
    /// Received, verifying or in progress (the default).
    #[default]
    Open,
    /// Every request, open ones first.
    All,
    Only(State),
}

impl StateFilter {
    /// `open`, `all` or one state's name.
    pub fn parse(s: &str) -> Result<StateFilter> {
        match s {
            "" | "open" => Ok(StateFilter::Open),
            "all" => Ok(StateFilter::All),
            other => other.parse().map(StateFilter::Only),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::Open => "open",
            StateFilter::All => "all",
            StateFilter::Only(s) => s.as_str(),
        }
    }
}

/// The staff queue: requests in scope, filtered by state and kind, most urgent
/// first (open requests by due date, then closed ones, most recently closed first).
pub fn queue(
    core: &Steward,
    actor: &Actor,
    states: StateFilter,
    kind: Option<Kind>,
) -> Result<Vec<Request>> {
    actor.require_role(&[Role::Dpo, Role::Operator], "work the request queue")?;
    let mut out: Vec<Request> = list(core, actor, None)?
        .into_iter()
        .filter(|r| match states {
            StateFilter::Open => r.state.is_open(),
            StateFilter::All => true,
            StateFilter::Only(s) => r.state == s,
        })
        .filter(|r| kind.is_none_or(|k| r.kind == k))
        .collect();
    // `list` is in due-date order; keep it for open requests (stable sort).
    out.sort_by_key(|r| {
        (
            !r.state.is_open(),
            std::cmp::Reverse(r.closed_at.unwrap_or(0)),
        )
    });
    Ok(out)
}

/// The requests about one subject: staff in scope, or the subject themself.
pub fn for_subject(core: &Steward, actor: &Actor, subject_id: &str) -> Result<Vec<Request>> {
    let tenant = crate::subjects::tenant_of_subject(core, subject_id)?;
    actor.require_subject(&tenant, subject_id)?;
    if !actor.is_self(subject_id) {
        actor.require_role(&[Role::Dpo, Role::Operator], "see someone's requests")?;
    }
    Ok(list(core, actor, None)?
        .into_iter()
        .filter(|r| r.subject_id.as_deref() == Some(subject_id))
        .collect())
}

string_enum!(
    /// The employer's answer when told of a request about one of its users
    /// (the statement: employer-contracted data is discussed with the employer
    /// first). A fixed set, so the timeline holds no free text.
    EmployerAnswer, "answer", {
        NoObjection = "no_objection",
        KeepForContract = "keep_for_contract",
        KeepForLegalObligation = "keep_for_legal_obligation",
    }
);

impl EmployerAnswer {
    pub fn label(self) -> &'static str {
        match self {
            EmployerAnswer::NoObjection => "No objection",
            EmployerAnswer::KeepForContract => "Data needed to perform our contract",
            EmployerAnswer::KeepForLegalObligation => "Data we must keep by law",
        }
    }
}

/// A request about one of the employer's users, as its admins see it: what kind,
/// its dates and state, and who it concerns; never what the subject wrote.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmployerNotice {
    pub request_id: String,
    pub kind: Kind,
    pub state: State,
    pub received_on: String,
    pub due_on: String,
    pub working_days_left: i64,
    /// The user's username, when the subject has an account in the tenant.
    pub username: Option<String>,
    pub notified_at: i64,
    pub answer: Option<EmployerAnswer>,
    pub answered_at: Option<i64>,
}

/// The employer's notices: requests about its users (tenant-admin). Usernames are
/// decrypted, so the listing is audited (one `read` entry for the tenant).
pub fn employer_notices(core: &Steward, actor: &Actor) -> Result<Vec<EmployerNotice>> {
    actor.require_role(&[Role::TenantAdmin], "see the employer's request notices")?;
    let tenant = actor
        .tenant_id
        .clone()
        .ok_or_else(|| Error::Forbidden("the employer's notices need a tenant account".into()))?;
    let rows = core.write(actor, |tx| {
        let rows = tx.conn.query(
            "SELECT n.request_id, r.kind, r.state, r.received_on, r.due_on, r.region, \
             n.created_at, r.subject_id, \
             (SELECT a.username_enc FROM accounts a WHERE a.subject_id = r.subject_id LIMIT 1) \
             FROM notifications n JOIN requests r ON r.id = n.request_id \
             WHERE n.tenant_id = $1 AND r.tenant_id = $1 ORDER BY r.due_on, n.created_at",
            params![tenant.as_str()],
        )?;
        tx.audit(Event {
            tenant_id: Some(tenant.clone()),
            action: "read".into(),
            category: Some("rights_requests".into()),
            purpose: Some("accountability".into()),
            detail: serde_json::json!({ "view": "employer_notices", "requests": rows.len() }),
            ..Event::default()
        })?;
        Ok(rows)
    })?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let request_id = r.text(0)?;
        let region: Region = r
            .text(5)?
            .parse()
            .map_err(|e: steward_calendar::CalendarError| Error::Internal(e.to_string()))?;
        let due_on = r.text(4)?;
        let due = parse_date(&due_on).map_err(|e| Error::Internal(e.to_string()))?;
        let username = match (r.opt_text(7)?, r.opt_bytes(8)?) {
            (Some(s), Some(b)) => match core.keys.subject_key(&s)? {
                Some(k) => Some(fields::open(&k, "accounts.username", &s, &b)?),
                None => None,
            },
            _ => None,
        };
        let answered = core.db.read(|c| {
            c.query_opt(
                "SELECT at, detail FROM request_events WHERE request_id = $1 \
                 AND event = 'employer_input' ORDER BY seq DESC LIMIT 1",
                params![request_id.as_str()],
            )
        })?;
        let (answer, answered_at) = match answered {
            Some(a) => {
                let detail: serde_json::Value =
                    serde_json::from_str(&a.text(1)?).unwrap_or_default();
                (
                    detail["answer"].as_str().and_then(|s| s.parse().ok()),
                    Some(a.i64(0)?),
                )
            }
            None => (None, None),
        };
        out.push(EmployerNotice {
            request_id,
            kind: r.text(1)?.parse()?,
            state: r.text(2)?.parse()?,
            received_on: r.text(3)?,
            working_days_left: working_days_between(region, today(), due),
            due_on,
            username,
            notified_at: r.i64(6)?,
            answer,
            answered_at,
        });
    }
    Ok(out)
}

/// Records the employer's answer on an open request about one of its users: a
/// timeline event staff see on the request, and the notice is marked read.
pub fn employer_input(
    core: &Steward,
    actor: &Actor,
    request_id: &str,
    answer: EmployerAnswer,
) -> Result<()> {
    actor.require_role(&[Role::TenantAdmin], "answer for the employer")?;
    let tenant = actor.tenant_id.clone().unwrap_or_default();
    core.write(actor, |tx| {
        let row = tx
            .conn
            .query_opt(
                "SELECT r.state, r.subject_id FROM notifications n \
                 JOIN requests r ON r.id = n.request_id \
                 WHERE n.request_id = $1 AND n.tenant_id = $2 AND r.tenant_id = $2",
                params![request_id, tenant.as_str()],
            )?
            .ok_or_else(|| Error::NotFound("request".into()))?;
        let state: State = row.text(0)?.parse()?;
        if !state.is_open() {
            return Err(Error::Conflict(format!(
                "the request is already {}",
                state.as_str()
            )));
        }
        tx.conn.execute(
            "UPDATE notifications SET read_at = $1 WHERE request_id = $2 AND tenant_id = $3",
            params![tx.at, request_id, tenant.as_str()],
        )?;
        log_event(
            tx,
            request_id,
            "employer_input",
            serde_json::json!({ "answer": answer }),
        )?;
        tx.audit(Event {
            tenant_id: Some(tenant.clone()),
            subject_id: row.opt_text(1)?,
            action: "request.employer_input".into(),
            category: Some("rights_requests".into()),
            purpose: Some("accountability".into()),
            detail: serde_json::json!({ "request_id": request_id, "answer": answer }),
            ..Event::default()
        })?;
        Ok(())
    })
}

/// The answer to send the requester at the request's current step, as an email
/// and as a letter: an acknowledgement with the deadline while it is open, the
/// outcome once it is closed. `None` when there is nothing to send yet (the
/// bundle is produced but the request is still open, say).
pub fn confirmation(
    core: &Steward,
    actor: &Actor,
    id: &str,
) -> Result<Option<erase::Confirmation>> {
    actor.require_role(
        &[Role::Dpo, Role::Operator],
        "prepare answers to requesters",
    )?;
    let req = get(core, actor, id)?;
    let meta = core.policy.meta();
    let sign = format!("{}\n{}\n", meta.controller, meta.controller_address);
    let what = match req.kind {
        Kind::Access => "a copy of your personal data",
        Kind::Portability => "your personal data in a portable format",
        Kind::Rectification => "the correction of your personal data",
        Kind::Erasure => "the erasure of your personal data",
        Kind::Restriction => "the restriction of the processing of your personal data",
        Kind::Objection => "to object to the processing of your personal data",
    };
    let (subject, body) = match req.state {
        State::Received | State::Verifying => (
            "We have received your request".to_owned(),
            format!(
                "We received your request for {what} on {received}. We will answer by \
                 {due}.\n\nBefore we release or change anything, we need to confirm who you \
                 are: please reply with a copy of an identity document, or log in to the \
                 self-service portal and file the request from there.\n\n{sign}",
                received = req.received_on,
                due = req.due_on
            ),
        ),
        State::InProgress => (
            "We are working on your request".to_owned(),
            format!(
                "Thank you for confirming your identity. We are working on your request for \
                 {what}, received on {received}, and will answer by {due}.\n\n{sign}",
                received = req.received_on,
                due = req.due_on
            ),
        ),
        State::Refused => {
            let why = match req.refusal_ground {
                Some(Ground::Repetitive) => {
                    "it repeats a request of the same kind that we answered recently"
                }
                Some(Ground::ManifestlyUnfounded) => "it is manifestly unfounded",
                Some(Ground::DisproportionateEffort) => {
                    "answering it would take a disproportionate effort"
                }
                Some(Ground::OthersPrivacy) => {
                    "answering it would reveal personal data of other people"
                }
                None => "of the ground recorded on it",
            };
            (
                "Your request".to_owned(),
                format!(
                    "We cannot act on your request for {what}, received on {received}, because \
                     {why}.\n\nYou may complain to the Information Commissioner's Office \
                     (ico.org.uk) or seek a judicial remedy.\n\n{sign}",
                    received = req.received_on
                ),
            )
        }
        State::Fulfilled | State::PartiallyFulfilled => {
            if req.kind == Kind::Erasure {
                let erased = core.db.read(|c| {
                    c.query_opt(
                        "SELECT at, detail FROM request_events WHERE request_id = $1 \
                         AND event = 'erased' ORDER BY seq DESC LIMIT 1",
                        params![id],
                    )
                })?;
                if let Some(e) = erased {
                    let detail: serde_json::Value =
                        serde_json::from_str(&e.text(1)?).unwrap_or_default();
                    let deleted: erase::Counts =
                        serde_json::from_value(detail["deleted"].clone()).unwrap_or_default();
                    let tomb = detail["tombstone_id"].as_str().unwrap_or_default();
                    return Ok(Some(erase::confirmation(
                        core,
                        tomb,
                        e.i64(0)?,
                        &deleted,
                        &erase::Counts::new(),
                    )));
                }
            }
            let outcome = match (req.kind, req.state) {
                (Kind::Access | Kind::Portability, _) => format!(
                    "Your copy is ready. Log in to the self-service portal to download it; it \
                     stays available for {} days. It holds every record we keep about you, \
                     with the purposes, legal bases, recipients and retention periods.",
                    core.settings.bundle_keep_days
                ),
                (Kind::Rectification, _) => "We have corrected your data as you asked.".into(),
                (_, State::PartiallyFulfilled) => {
                    "We have acted on part of your request; the rest could not be done.".into()
                }
                _ => "We have acted on your request.".into(),
            };
            (
                "Your request has been answered".to_owned(),
                format!(
                    "About your request for {what}, received on {received}:\n\n{outcome}\n\n{sign}",
                    received = req.received_on
                ),
            )
        }
    };
    let today = today();
    // The subject by the name held, where there is one; the letter's general
    // greeting (and none in the email) otherwise.
    let name = match &req.subject_id {
        Some(subject) => name_held(core, actor, subject)?,
        None => None,
    };
    let (email_greeting, letter_greeting) = match &name {
        Some(n) => (format!("Dear {n},\n\n"), format!("Dear {n},")),
        None => (String::new(), "Dear data subject,".to_owned()),
    };
    Ok(Some(erase::Confirmation {
        email: format!("Subject: {subject}\n\n{email_greeting}{body}"),
        letter: format!(
            "{today}\n\n{letter_greeting}\n\n{body}\nYours faithfully,\n\nData Protection Officer\n"
        ),
    }))
}

/// The subject's name as held, to greet them by in an answer: read like any
/// staff read of their record (scope and policy checks, audited). None when no
/// name is held, or the subject cannot be read (gone, or its processing
/// refused): the answer then greets in general.
fn name_held(core: &Steward, actor: &Actor, subject_id: &str) -> Result<Option<String>> {
    match crate::subjects::read(core, actor, subject_id, "administration") {
        Ok(s) => Ok(s.name.filter(|n| !n.trim().is_empty())),
        Err(Error::NotFound(_) | Error::Forbidden(_) | Error::ConsentRequired { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
