//! The staff console (operator, DPO): the request queue and request pages, subject
//! search and subject pages, the dashboard, retention, audit and policy pages.

use std::collections::HashMap;

use askama::Template;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::session::{Console, CsrfForm, Empty};
use super::views::{
    Errors, Layout, Opt, Who, actor_label, channel_label, days_label, kind_label, render,
    state_label, urgency, when,
};
use super::{
    WebError, WebPath, WebQuery, WebResult, blocking, charts, form_error, see_other, views,
};
use crate::access::{Actor, Role};
use crate::api::AppState;
use crate::clock::now;
use crate::core::Steward;
use crate::error::{Error, Result};
use crate::rights::{
    self, Ground, Kind, NewRequest, Request, RequestChannel, State as RState, StateFilter,
    SubjectRef,
};
use crate::{accounts, audit, consent, dashboard as dash, retention, subjects, tenants};

fn tenant_names(core: &Steward, actor: &Actor) -> Result<HashMap<String, String>> {
    Ok(tenants::list(core, actor)?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect())
}

/// What the pages show of a request.
pub struct RequestRow {
    pub id: String,
    pub kind: &'static str,
    pub channel: &'static str,
    pub received_on: String,
    pub due_on: String,
    pub days: String,
    pub urgency: &'static str,
    pub state: &'static str,
    pub state_code: &'static str,
    pub tenant: String,
    pub subject_id: Option<String>,
}

pub fn row_of(r: &Request, tenants: &HashMap<String, String>) -> RequestRow {
    let open = r.state.is_open();
    RequestRow {
        id: r.id.clone(),
        kind: kind_label(r.kind),
        channel: channel_label(r.channel),
        received_on: r.received_on.clone(),
        due_on: r.due_on.clone(),
        days: days_label(open, r.working_days_left),
        urgency: urgency(open, r.working_days_left),
        state: state_label(r.state),
        state_code: r.state.as_str(),
        tenant: tenants
            .get(&r.tenant_id)
            .cloned()
            .unwrap_or_else(|| r.tenant_id.clone()),
        subject_id: r.subject_id.clone(),
    }
}

// ------------------------------------------------------------------ the queue

#[derive(Template)]
#[template(path = "console/queue.html")]
struct QueuePage {
    l: Layout,
    rows: Vec<RequestRow>,
    states: Vec<Opt>,
    kinds: Vec<Opt>,
    open: usize,
    overdue: usize,
    soon: usize,
    filtered: bool,
    /// The "record a request" form.
    record: RecordForm,
    record_kinds: Vec<Opt>,
    record_channels: Vec<Opt>,
    record_by: Vec<Opt>,
    today: String,
    errors: Errors,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    kind: String,
}

pub async fn queue(
    State(s): State<AppState>,
    c: Console,
    WebQuery(q): WebQuery<QueueQuery>,
) -> WebResult<Html<String>> {
    let states = StateFilter::parse(&q.state).map_err(WebError::from)?;
    let kind = match q.kind.as_str() {
        "" | "all" => None,
        k => Some(k.parse::<Kind>().map_err(WebError::from)?),
    };
    let html = blocking(&s, move |core| {
        queue_html(
            core,
            &c,
            (states, kind),
            RecordForm::default(),
            Errors::none(),
        )
    })
    .await??;
    Ok(Html(html))
}

fn queue_html(
    core: &Steward,
    c: &Console,
    (states, kind): (StateFilter, Option<Kind>),
    record: RecordForm,
    errors: Errors,
) -> Result<String> {
    let requests = rights::queue(core, &c.actor, states, kind)?;
    let names = tenant_names(core, &c.actor)?;
    let rows: Vec<RequestRow> = requests.iter().map(|r| row_of(r, &names)).collect();
    let open: Vec<&RequestRow> = rows.iter().filter(|r| r.urgency != "closed").collect();
    let mut state_opts = vec![
        Opt::new("open", "Open", states == StateFilter::Open),
        Opt::new("all", "All", states == StateFilter::All),
    ];
    for st in RState::ALL {
        let selected = states.as_str() == *st;
        if let Ok(parsed) = st.parse::<RState>() {
            state_opts.push(Opt::new(st, state_label(parsed), selected));
        }
    }
    let mut kind_opts = vec![Opt::new("all", "All kinds", kind.is_none())];
    for k in Kind::ALL {
        if let Ok(parsed) = k.parse::<Kind>() {
            kind_opts.push(Opt::new(k, kind_label(parsed), kind == Some(parsed)));
        }
    }
    let record_kinds = Kind::ALL
        .iter()
        .filter_map(|k| k.parse::<Kind>().ok())
        .map(|k| Opt::new(k.as_str(), kind_label(k), record.kind == k.as_str()))
        .collect();
    let record_channels = [
        RequestChannel::Letter,
        RequestChannel::Email,
        RequestChannel::Phone,
    ]
    .iter()
    .map(|ch| {
        Opt::new(
            ch.as_str(),
            channel_label(*ch),
            record.channel == ch.as_str(),
        )
    })
    .collect();
    let record_by = [
        ("email", "Email address"),
        ("phone", "Phone number"),
        ("username", "Username"),
    ]
    .iter()
    .map(|(v, label)| Opt::new(v, label, record.by == *v))
    .collect();
    let page = QueuePage {
        l: Layout::new(c, "Requests", "/console/requests", None),
        open: open.len(),
        overdue: open.iter().filter(|r| r.urgency == "overdue").count(),
        soon: open.iter().filter(|r| r.urgency == "soon").count(),
        rows,
        states: state_opts,
        kinds: kind_opts,
        filtered: states != StateFilter::Open || kind.is_some(),
        record,
        record_kinds,
        record_channels,
        record_by,
        today: crate::clock::today().to_string(),
        errors,
    };
    Ok(render(&page))
}

// ------------------------------------------------------- recording a request

/// A request that arrived by letter, phone or email, recorded by staff. The
/// person is named by email, phone or username and found through the blind
/// indexes, as `rights::create` does for the API and the CLI.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RecordForm {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub received_on: String,
    /// `email`, `phone` or `username`.
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub identifier: String,
    #[serde(default)]
    pub details: String,
}

const RECORD_FIELDS: &[&str] = &[
    "kind",
    "channel",
    "received_on",
    "by",
    "identifier",
    "details",
];

fn record_request(core: &Steward, actor: &Actor, f: &RecordForm) -> Result<String> {
    actor.require_role(&[Role::Operator, Role::Dpo], "record requests")?;
    let kind: Kind = f.kind.parse()?;
    let channel: RequestChannel = f.channel.parse()?;
    if channel == RequestChannel::Portal {
        return Err(Error::invalid(
            "channel",
            "requests from the portal are filed by the person themself: choose letter, phone \
             or email",
        ));
    }
    let who = f.identifier.trim().to_owned();
    if who.is_empty() {
        return Err(Error::invalid(
            "identifier",
            "enter the person's email address, phone number or username",
        ));
    }
    let subject = match f.by.as_str() {
        "email" => SubjectRef::Email(who),
        "phone" => SubjectRef::Phone(who),
        "username" => SubjectRef::Username(who),
        other => {
            return Err(Error::invalid(
                "by",
                format!("{other:?} is not a way to find someone: use email, phone or username"),
            ));
        }
    };
    let received_on = match f.received_on.trim() {
        "" => crate::clock::today().to_string(),
        d => d.to_owned(),
    };
    let details = Some(f.details.trim().to_owned()).filter(|d| !d.is_empty());
    let req = rights::create(
        core,
        actor,
        NewRequest {
            subject,
            kind,
            channel,
            received_on,
            region: None,
            details,
        },
    )?;
    Ok(req.id)
}

pub async fn record(
    State(s): State<AppState>,
    CsrfForm(c, f): CsrfForm<RecordForm>,
) -> WebResult<Response> {
    let (actor, form) = (c.actor.clone(), f.clone());
    let outcome = blocking(&s, move |core| Ok(record_request(core, &actor, &form))).await??;
    let e = match outcome {
        Ok(id) => return Ok(see_other(&format!("/console/requests/{id}?done=recorded"))),
        Err(e) => e,
    };
    let (status, mut problem) = match e {
        // Nobody in the viewer's scope: said next to the field, the same
        // answer whether the person is unknown or another tenant's.
        Error::NotFound(what) if what == "subject" => (
            StatusCode::BAD_REQUEST,
            views::Problem {
                field: Some("identifier".into()),
                message: format!(
                    "Nobody in your scope has this {}: check it, or find the person under \
                     Subjects.",
                    match f.by.as_str() {
                        "phone" => "phone number",
                        "username" => "username",
                        _ => "email address",
                    }
                ),
            },
        ),
        e => form_error(e)?,
    };
    problem.field = problem.field.map(|field| match field.as_str() {
        "received" => "received_on".to_owned(),
        "subject" | "subject_email" | "subject_phone" | "subject_username" => {
            "identifier".to_owned()
        }
        _ => field,
    });
    let errors = Errors::on("record", problem, RECORD_FIELDS);
    let html = blocking(&s, move |core| {
        queue_html(core, &c, (StateFilter::Open, None), f, errors)
    })
    .await??;
    Ok((status, Html(html)).into_response())
}

// ------------------------------------------------------------ a request page

#[derive(Template)]
#[template(path = "console/request.html")]
struct RequestPage {
    l: Layout,
    r: RequestRow,
    details: Option<String>,
    verified: Option<String>,
    refusal: Option<String>,
    closed: Option<String>,
    timeline: Vec<(String, Who, String, String)>,
    can_verify: bool,
    needs_verification: bool,
    show_export: bool,
    show_rectify: bool,
    show_erase: bool,
    show_complete: bool,
    can_refuse: bool,
    bundle_until: Option<String>,
    answer_email: Option<String>,
    answer_letter: Option<String>,
    grounds: Vec<Opt>,
    errors: Errors,
}

fn event_label(e: &str) -> &str {
    match e {
        "received" => "Request received",
        "employer_notified" => "Employer notified",
        "employer_input" => "Employer answered",
        "verifying" => "Asked for proof of identity",
        "verified" => "Identity verified",
        "exported" => "Access bundle produced",
        "downloaded" => "Bundle downloaded",
        "erased" => "Data erased",
        "rectified" => "Data rectified",
        "refused" => "Refused",
        "fulfilled" => "Fulfilled",
        "partially_fulfilled" => "Partly fulfilled",
        other => other,
    }
}

/// A timeline entry's facts in words (ids and codes only, as stored).
fn event_detail(event: &str, d: &serde_json::Value) -> String {
    match event {
        "received" => format!(
            "{} by {}, due {}",
            d["kind"].as_str().unwrap_or(""),
            d["channel"].as_str().unwrap_or(""),
            d["due_on"].as_str().unwrap_or("")
        ),
        "verified" => format!("Method: {}", d["method"].as_str().unwrap_or("")),
        "refused" => format!("Ground: {}", d["ground"].as_str().unwrap_or("")),
        "rectified" => format!("Field: {}", d["field"].as_str().unwrap_or("")),
        "employer_input" => d["answer"]
            .as_str()
            .and_then(|a| a.parse::<rights::EmployerAnswer>().ok())
            .map(|a| a.label().to_owned())
            .unwrap_or_default(),
        "exported" => {
            let n: u64 = d["counts"]
                .as_object()
                .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
                .unwrap_or(0);
            format!("{n} records")
        }
        "erased" => format!("Reference {}", d["tombstone_id"].as_str().unwrap_or("")),
        "downloaded" => {
            if d["by_subject"] == serde_json::Value::Bool(true) {
                "By the subject".into()
            } else {
                "By staff".into()
            }
        }
        _ => String::new(),
    }
}

fn ground_label(g: Ground) -> &'static str {
    match g {
        Ground::Repetitive => "Repetitive (same request answered in the last 90 days)",
        Ground::ManifestlyUnfounded => "Manifestly unfounded",
        Ground::DisproportionateEffort => "Disproportionate effort",
        Ground::OthersPrivacy => "Would reveal other people's data",
    }
}

fn request_page_html(
    core: &Steward,
    c: &Console,
    id: &str,
    errors: Errors,
    flash: Option<String>,
) -> Result<String> {
    let actor = &c.actor;
    actor.require_role(&[Role::Operator, Role::Dpo], "work on requests")?;
    let req = rights::get(core, actor, id)?;
    let timeline = rights::timeline(core, actor, id)?;
    let tenants = tenant_names(core, actor)?;
    let confirmation = rights::confirmation(core, actor, id)?;
    let bundle_until = rights::export::bundle_available_until(core, &req)?;
    let mut who: Vec<&str> = timeline.iter().map(|t| t.actor.as_str()).collect();
    who.extend(req.verified_by.as_deref());
    let names = accounts::names(core, actor, &who, "request_timeline")?;
    let open = req.state.is_open();
    let acting = req.state == RState::InProgress;
    let page = RequestPage {
        l: Layout::new(
            c,
            format!("{} request", kind_label(req.kind)),
            "/console/requests",
            flash,
        ),
        details: req.details.clone(),
        verified: req.verified_at.map(|at| {
            format!(
                "{} by {} ({})",
                when(at),
                actor_label(req.verified_by.as_deref().unwrap_or_default(), &names),
                req.verify_method.clone().unwrap_or_default()
            )
        }),
        refusal: req.refusal_ground.map(|g| ground_label(g).to_owned()),
        closed: req.closed_at.map(when),
        timeline: timeline
            .iter()
            .map(|t| {
                (
                    when(t.at),
                    Who::new(&t.actor, &names),
                    event_label(&t.event).to_owned(),
                    event_detail(&t.event, &t.detail),
                )
            })
            .collect(),
        can_verify: matches!(req.state, RState::Received | RState::Verifying),
        needs_verification: open && !acting,
        show_export: acting && matches!(req.kind, Kind::Access | Kind::Portability),
        show_rectify: acting && req.kind == Kind::Rectification,
        show_erase: acting && req.kind == Kind::Erasure && req.subject_id.is_some(),
        show_complete: acting && matches!(req.kind, Kind::Restriction | Kind::Objection),
        can_refuse: open,
        bundle_until: bundle_until.map(when),
        answer_email: confirmation.as_ref().map(|c| c.email.clone()),
        answer_letter: confirmation.map(|c| c.letter),
        grounds: [
            Ground::Repetitive,
            Ground::ManifestlyUnfounded,
            Ground::DisproportionateEffort,
            Ground::OthersPrivacy,
        ]
        .iter()
        .map(|g| Opt::new(g.as_str(), ground_label(*g), false))
        .collect(),
        errors,
        r: row_of(&req, &tenants),
    };
    Ok(render(&page))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
}

/// The notice after an action: fixed texts chosen by a code in the URL, so
/// nothing personal ever travels in it.
fn done_message(code: Option<&str>) -> Option<String> {
    let m = match code? {
        "recorded" => "The request was recorded; its deadline runs from the day it was received.",
        "verified" => "Identity verification recorded: the request is in progress.",
        "exported" => "The access bundle is ready; the subject can download it from the portal.",
        "rectified" => "The data was corrected and the request fulfilled.",
        "erased" => "The subject's data was erased everywhere and their key destroyed.",
        "refused" => "The refusal and its ground were recorded.",
        "completed" => "The request was closed.",
        "retention" => "Retention ran; the report is below.",
        "created" => "The user was created.",
        "disabled" => "The account was disabled and its sessions ended.",
        "enabled" => "The account was enabled.",
        "password" => "The password was reset and the account's sessions ended.",
        "answered" => "Your answer was recorded on the request.",
        "consent" => "Your choice was saved and applies from now on.",
        "filed" => "Your request was sent. We will answer by the date shown.",
        _ => return None,
    };
    Some(m.to_owned())
}

pub async fn request_page(
    State(s): State<AppState>,
    c: Console,
    WebPath(id): WebPath<String>,
    WebQuery(q): WebQuery<DoneQuery>,
) -> WebResult<Html<String>> {
    let flash = done_message(q.done.as_deref());
    let html = blocking(&s, move |core| {
        request_page_html(core, &c, &id, Errors::none(), flash)
    })
    .await??;
    Ok(Html(html))
}

/// Runs a request action; on success back to the request page with a notice,
/// on an input error the page again with the message next to the form.
async fn act(
    s: AppState,
    c: Console,
    id: String,
    form: &'static str,
    fields: &'static [&'static str],
    done: &'static str,
    f: impl FnOnce(&Steward, &Actor, &str) -> Result<()> + Send + 'static,
) -> WebResult<Response> {
    let (actor, rid) = (c.actor.clone(), id.clone());
    match blocking(&s, move |core| f(core, &actor, &rid)).await? {
        Ok(()) => Ok(see_other(&format!("/console/requests/{id}?done={done}"))),
        Err(e) => {
            let (status, problem) = form_error(e)?;
            let errors = Errors::on(form, problem, fields);
            let html = blocking(&s, move |core| {
                request_page_html(core, &c, &id, errors, None)
            })
            .await??;
            Ok((status, Html(html)).into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyForm {
    method: String,
}

pub async fn verify(
    State(s): State<AppState>,
    WebPath(id): WebPath<String>,
    CsrfForm(c, f): CsrfForm<VerifyForm>,
) -> WebResult<Response> {
    act(
        s,
        c,
        id,
        "verify",
        &["method"],
        "verified",
        move |core, a, id| rights::verify(core, a, id, &f.method).map(|_| ()),
    )
    .await
}

pub async fn export(
    State(s): State<AppState>,
    WebPath(id): WebPath<String>,
    CsrfForm(c, _): CsrfForm<Empty>,
) -> WebResult<Response> {
    act(s, c, id, "export", &[], "exported", |core, a, id| {
        // The staff copy is not kept: the bundle's home is the blob store, from
        // which staff and the subject download it.
        let tmp = tempfile::NamedTempFile::new().map_err(|e| Error::Internal(e.to_string()))?;
        rights::export::for_request(core, a, id, tmp.path()).map(|_| ())
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RectifyForm {
    field: String,
    value: String,
}

pub async fn rectify(
    State(s): State<AppState>,
    WebPath(id): WebPath<String>,
    CsrfForm(c, f): CsrfForm<RectifyForm>,
) -> WebResult<Response> {
    act(
        s,
        c,
        id,
        "rectify",
        &["field", "value"],
        "rectified",
        move |core, a, id| rights::rectify(core, a, id, &f.field, &f.value).map(|_| ()),
    )
    .await
}

pub async fn erase(
    State(s): State<AppState>,
    WebPath(id): WebPath<String>,
    CsrfForm(c, _): CsrfForm<Empty>,
) -> WebResult<Response> {
    act(s, c, id, "erase", &[], "erased", |core, a, id| {
        rights::erase::for_request(core, a, id).map(|_| ())
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefuseForm {
    ground: String,
}

pub async fn refuse(
    State(s): State<AppState>,
    WebPath(id): WebPath<String>,
    CsrfForm(c, f): CsrfForm<RefuseForm>,
) -> WebResult<Response> {
    act(
        s,
        c,
        id,
        "refuse",
        &["ground"],
        "refused",
        move |core, a, id| rights::refuse(core, a, id, Ground::parse(&f.ground)?).map(|_| ()),
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteForm {
    #[serde(default)]
    partially: Option<String>,
}

pub async fn complete(
    State(s): State<AppState>,
    WebPath(id): WebPath<String>,
    CsrfForm(c, f): CsrfForm<CompleteForm>,
) -> WebResult<Response> {
    act(
        s,
        c,
        id,
        "complete",
        &[],
        "completed",
        move |core, a, id| rights::complete(core, a, id, f.partially.is_some()).map(|_| ()),
    )
    .await
}

/// The bundle as a download (staff in scope, or the subject themself).
pub async fn bundle(
    State(s): State<AppState>,
    c: Console,
    WebPath(id): WebPath<String>,
) -> WebResult<Response> {
    let actor = c.actor.clone();
    let rid = id.clone();
    let file = blocking(&s, move |core| {
        rights::export::open_bundle(core, &actor, &rid)
    })
    .await??;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/zip"),
    );
    if let Ok(v) = format!("attachment; filename=\"steward-bundle-{id}.zip\"").parse() {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

// ----------------------------------------------------------------- subjects

#[derive(Template)]
#[template(path = "console/subjects.html")]
struct SubjectsPage {
    l: Layout,
    q: String,
    searched: bool,
    hits: Vec<(String, String, String, String)>,
    errors: Errors,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    #[serde(default)]
    q: Option<String>,
}

pub async fn subjects(
    State(s): State<AppState>,
    c: Console,
    WebQuery(q): WebQuery<SearchQuery>,
) -> WebResult<Response> {
    let actor = c.actor.clone();
    let text = q.q.clone();
    let found = blocking(&s, move |core| {
        actor.require_role(&[Role::Operator, Role::Dpo], "search for subjects")?;
        let names = tenant_names(core, &actor)?;
        Ok(text.map(|t| (subjects::search(core, &actor, &t), names)))
    })
    .await??;
    let mut status = StatusCode::OK;
    let mut errors = Errors::none();
    let mut hits = Vec::new();
    if let Some((result, names)) = found {
        match result {
            Ok(list) => {
                hits = list
                    .into_iter()
                    .map(|h| {
                        (
                            h.subject_id.clone(),
                            names.get(&h.tenant_id).cloned().unwrap_or(h.tenant_id),
                            h.kind.as_str().replace('_', " "),
                            h.matched_by.as_str().to_owned(),
                        )
                    })
                    .collect()
            }
            Err(e) => {
                let (st, p) = form_error(e)?;
                status = st;
                errors = Errors::on("search", p, &["q"]);
            }
        }
    }
    let page = SubjectsPage {
        l: Layout::new(&c, "Subjects", "/console/subjects", None),
        searched: q.q.is_some(),
        q: q.q.unwrap_or_default(),
        hits,
        errors,
    };
    Ok((status, Html(render(&page))).into_response())
}

pub struct ConsentRow {
    pub label: String,
    pub granted: bool,
    pub single_use: u32,
    pub since: String,
}

pub fn consent_rows(core: &Steward, states: &[consent::ConsentState]) -> Vec<ConsentRow> {
    states
        .iter()
        .map(|st| ConsentRow {
            label: use_label(core, &st.category, &st.purpose),
            granted: st.granted,
            single_use: st.single_use_available,
            since: st
                .since
                .map(when)
                .unwrap_or_else(|| "never answered".into()),
        })
        .collect()
}

pub fn use_label(core: &Steward, category: &str, purpose: &str) -> String {
    let c = core
        .policy
        .category(category)
        .map(|c| c.name.clone())
        .unwrap_or_else(|| category.to_owned());
    let p = core
        .policy
        .purpose(purpose)
        .map(|p| p.name.clone())
        .unwrap_or_else(|| purpose.to_owned());
    format!("{c}: {p}")
}

#[derive(Template)]
#[template(path = "console/subject.html")]
struct SubjectPage {
    l: Layout,
    id: String,
    tenant: String,
    kind: String,
    email: String,
    phone: String,
    name: String,
    created: String,
    engaged: String,
    legal_hold: bool,
    holdings: Vec<subjects::Holding>,
    consents: Vec<ConsentRow>,
    history: Vec<(String, String, String, String, Who)>,
    disclosures: Vec<rights::export::Disclosure>,
    requests: Vec<RequestRow>,
}

pub async fn subject_page(
    State(s): State<AppState>,
    c: Console,
    WebPath(id): WebPath<String>,
) -> WebResult<Html<String>> {
    let html = blocking(&s, move |core| {
        let a = &c.actor;
        a.require_role(&[Role::Operator, Role::Dpo], "see a subject")?;
        let subject = subjects::read(core, a, &id, "administration")?;
        let holdings = subjects::holdings(core, a, &id)?;
        let (states, history) = consent::overview(core, a, &id)?;
        let disclosures = rights::export::disclosures_for(core, a, &id)?;
        let requests = rights::for_subject(core, a, &id)?;
        let names = tenant_names(core, a)?;
        let who: Vec<&str> = history.iter().map(|e| e.recorded_by.as_str()).collect();
        let people = accounts::names(core, a, &who, "consent_history")?;
        let page = SubjectPage {
            l: Layout::new(&c, "Subject", "/console/subjects", None),
            tenant: names
                .get(&subject.tenant_id)
                .cloned()
                .unwrap_or(subject.tenant_id.clone()),
            kind: subject.kind.as_str().replace('_', " "),
            email: subject.email.unwrap_or_default(),
            phone: subject.phone.unwrap_or_default(),
            name: subject.name.unwrap_or_default(),
            created: when(subject.created_at),
            engaged: when(subject.last_engagement_at),
            legal_hold: subject.legal_hold,
            holdings,
            consents: consent_rows(core, &states),
            history: history
                .iter()
                .rev()
                .map(|e| {
                    (
                        when(e.at),
                        use_label(core, &e.category, &e.purpose),
                        format!("{:?}", e.action).to_lowercase(),
                        e.channel.as_str().to_owned(),
                        Who::new(&e.recorded_by, &people),
                    )
                })
                .collect(),
            disclosures,
            requests: requests.iter().map(|r| row_of(r, &names)).collect(),
            id: subject.id,
        };
        Ok(render(&page))
    })
    .await??;
    Ok(Html(html))
}

// ---------------------------------------------------------------- dashboard

#[derive(Template)]
#[template(path = "console/dashboard.html")]
struct DashboardPage {
    l: Layout,
    d: dash::Dashboard,
    states_svg: String,
    weeks_svg: String,
    consent_svg: String,
    records_svg: String,
    retention_svg: Option<String>,
    state_rows: Vec<(&'static str, u64)>,
    consent_rows: Vec<(String, String)>,
    retention_rows: Vec<(String, u64, u64)>,
}

pub async fn dashboard(State(s): State<AppState>, c: Console) -> WebResult<Html<String>> {
    let html = blocking(&s, move |core| {
        let d = dash::dashboard(core, &c.actor, now())?;
        let state_rows: Vec<(&'static str, u64)> = d
            .by_state
            .iter()
            .map(|(st, n)| (state_label(*st), *n))
            .collect();
        let consent_rows = d
            .consent
            .iter()
            .map(|series| {
                let last = series.points.last();
                let text = match last {
                    Some((_, g, a)) if *a > 0 => {
                        format!("{}% ({g} of {a})", g * 100 / a)
                    }
                    _ => "no answers yet".to_owned(),
                };
                (series.label.clone(), text)
            })
            .collect();
        let category_name = |id: &str| {
            core.policy
                .category(id)
                .map(|c| c.name.clone())
                .unwrap_or_else(|| id.to_owned())
        };
        let retention_rows: Vec<(String, u64, u64)> = d
            .retention
            .as_ref()
            .map(|r| {
                r.due_within
                    .iter()
                    .map(|(cat, n)| {
                        (
                            category_name(cat),
                            r.due_now.get(cat).copied().unwrap_or(0),
                            *n,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let page = DashboardPage {
            l: Layout::new(&c, "Dashboard", "/console/dashboard", None),
            states_svg: charts::bars(
                "Requests by state",
                &state_rows
                    .iter()
                    .map(|(l, n)| ((*l).to_owned(), *n))
                    .collect::<Vec<_>>(),
            ),
            weeks_svg: charts::weekly(
                "Requests received and closed per week",
                &d.weeks
                    .iter()
                    .map(|w| (w.starts.clone(), w.received, w.closed))
                    .collect::<Vec<_>>(),
            ),
            consent_svg: charts::rates(
                "Consent in force among those who answered, per week",
                &d.consent
                    .iter()
                    .filter(|series| series.points.iter().any(|(_, _, a)| *a > 0))
                    .map(|series| {
                        (
                            series.label.clone(),
                            series
                                .points
                                .iter()
                                .map(|(w, g, a)| {
                                    (w.clone(), (*a > 0).then(|| *g as f64 / *a as f64))
                                })
                                .collect(),
                        )
                    })
                    .collect::<Vec<_>>(),
            ),
            records_svg: charts::bars(
                "Records held per category",
                &d.records
                    .iter()
                    .map(|r| (r.name.clone(), r.records))
                    .collect::<Vec<_>>(),
            ),
            retention_svg: d.retention.as_ref().map(|_| {
                charts::paired(
                    "Records due for erasure: now and within 30 days",
                    &retention_rows,
                    ("Due now", "Within 30 days"),
                )
            }),
            state_rows,
            consent_rows,
            retention_rows,
            d,
        };
        Ok(render(&page))
    })
    .await??;
    Ok(Html(html))
}

// ---------------------------------------------------------------- retention

#[derive(Template)]
#[template(path = "console/retention.html")]
struct RetentionPage {
    l: Layout,
    plan: retention::RetentionPlan,
    rows: Vec<(String, u64)>,
    items: Vec<retention::PlanItem>,
    more: usize,
    can_run: bool,
    report: Option<retention::RetentionReport>,
    report_rows: Vec<(String, u64)>,
}

/// Plan items listed on the page; the counts cover all of them.
const ITEMS_SHOWN: usize = 200;

fn retention_html(
    core: &Steward,
    c: &Console,
    report: Option<retention::RetentionReport>,
) -> Result<String> {
    let plan = retention::plan_for(core, &c.actor, now())?;
    let name = |id: &str| {
        core.policy
            .category(id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| id.to_owned())
    };
    let page = RetentionPage {
        l: Layout::new(
            c,
            "Retention",
            "/console/retention",
            report
                .as_ref()
                .map(|_| done_message(Some("retention")).unwrap_or_default()),
        ),
        rows: plan
            .counts
            .rows
            .iter()
            .map(|(k, v)| (name(k), *v))
            .collect(),
        items: plan.items.iter().take(ITEMS_SHOWN).cloned().collect(),
        more: plan.items.len().saturating_sub(ITEMS_SHOWN),
        can_run: c.role == Role::Dpo && c.actor.provider_staff,
        report_rows: report
            .as_ref()
            .map(|r| r.counts.rows.iter().map(|(k, v)| (name(k), *v)).collect())
            .unwrap_or_default(),
        report,
        plan,
    };
    Ok(render(&page))
}

pub async fn retention(State(s): State<AppState>, c: Console) -> WebResult<Html<String>> {
    Ok(Html(
        blocking(&s, move |core| retention_html(core, &c, None)).await??,
    ))
}

pub async fn retention_run(
    State(s): State<AppState>,
    CsrfForm(c, _): CsrfForm<Empty>,
) -> WebResult<Html<String>> {
    Ok(Html(
        blocking(&s, move |core| {
            let report = retention::run_by(core, &c.actor, now())?;
            retention_html(core, &c, Some(report))
        })
        .await??,
    ))
}

// -------------------------------------------------------------------- audit

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    l: Layout,
    /// Only the provider's DPO sees the chain's status and may verify it.
    chain: bool,
    /// The newest recorded verification: when, by whom, the result, entries since.
    last: Option<(String, String, audit::Verification, i64)>,
    /// The verification just run (after the button).
    fresh: bool,
    entries: Vec<(String, String, audit::Entry)>,
}

/// Entries shown on the audit page.
const AUDIT_SHOWN: i64 = 200;

/// The audit page. Verifying the chain reads the whole log, so the page does
/// not do it on every load: it shows the newest recorded verification (its
/// time, who ran it, the result and the entries appended since) and a button
/// that verifies the whole chain now and records the outcome.
fn audit_html(core: &Steward, c: &Console, fresh: bool) -> Result<String> {
    let entries = audit::recent(&core.db, &c.actor, AUDIT_SHOWN)?;
    // The chain spans every tenant: only the provider's DPO may verify it.
    let chain = c.actor.provider_staff;
    let last = if chain {
        audit::last_verification(&core.db, &c.actor)?
    } else {
        None
    };
    let mut who: Vec<&str> = entries.iter().map(|e| e.actor.as_str()).collect();
    who.extend(last.as_ref().map(|l| l.actor.as_str()));
    let names = accounts::names(core, &c.actor, &who, "audit_log")?;
    let page = AuditPage {
        l: Layout::new(
            c,
            "Audit log",
            "/console/audit",
            fresh.then(|| "The whole chain was verified just now; the result is below.".into()),
        ),
        chain,
        last: last.map(|l| (when(l.at), actor_label(&l.actor, &names), l.result, l.since)),
        fresh,
        entries: entries
            .into_iter()
            .map(|e| (when(e.at), actor_label(&e.actor, &names), e))
            .collect(),
    };
    Ok(render(&page))
}

pub async fn audit(State(s): State<AppState>, c: Console) -> WebResult<Html<String>> {
    let html = blocking(&s, move |core| audit_html(core, &c, false)).await??;
    Ok(Html(html))
}

pub async fn audit_verify(
    State(s): State<AppState>,
    CsrfForm(c, _): CsrfForm<Empty>,
) -> WebResult<Html<String>> {
    let html = blocking(&s, move |core| {
        audit::verify_and_record(core, &c.actor)?;
        audit_html(core, &c, true)
    })
    .await??;
    Ok(Html(html))
}

// ------------------------------------------------------------------- policy

#[derive(Template)]
#[template(path = "console/policy.html")]
struct PolicyPage {
    l: Layout,
    notice: String,
    version: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn article30_rows(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map(|h| h.iter().map(str::to_owned).collect())
        .unwrap_or_default();
    let rows = reader
        .records()
        .filter_map(|r| r.ok())
        .map(|r| r.iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

/// The policy pages are for staff; the notice itself is public (`/api/v1/policy`).
fn require_staff(a: &Actor) -> Result<()> {
    a.require_role(&[Role::Operator, Role::Dpo], "open the policy pages")
}

pub async fn policy(State(s): State<AppState>, c: Console) -> WebResult<Html<String>> {
    require_staff(&c.actor)?;
    let core = s.core.clone();
    let (header, rows) = article30_rows(&steward_policy::render::article30_csv(&core.policy));
    let page = PolicyPage {
        l: Layout::new(&c, "Policy", "/console/policy", None),
        notice: steward_policy::render::notice_body_html(&core.policy),
        version: core.policy.version().to_owned(),
        header,
        rows,
    };
    Ok(Html(render(&page)))
}

pub async fn policy_file(
    State(s): State<AppState>,
    c: Console,
    WebPath(file): WebPath<String>,
) -> WebResult<Response> {
    require_staff(&c.actor)?;
    let p = &s.core.policy;
    use steward_policy::render as r;
    let (body, kind) = match file.as_str() {
        r::NOTICE_HTML_FILE => (r::notice_html(p), "text/html; charset=utf-8"),
        r::NOTICE_MARKDOWN_FILE => (r::notice_markdown(p), "text/markdown; charset=utf-8"),
        r::ARTICLE30_FILE => (r::article30_csv(p), "text/csv; charset=utf-8"),
        _ => return Err(Error::NotFound("policy file".into()).into()),
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
    if let Ok(v) = format!("attachment; filename=\"{file}\"").parse() {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
