//! The self-service portal (subject): what is held about me and why, my consents
//! with a switch each, who my data went to, and my requests.

use askama::Template;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use steward_policy::ConsentRule;

use super::session::{Console, CsrfForm};
use super::staff::{RequestRow, row_of, use_label};
use super::views::{Errors, Layout, Opt, kind_label, render, when};
use super::{WebPath, WebQuery, WebResult, blocking, form_error, see_other};
use crate::access::Role;
use crate::api::AppState;
use crate::consent::{self, Action, Channel, Record};
use crate::core::Steward;
use crate::error::{Error, Result};
use crate::rights::{self, Kind, NewRequest, RequestChannel, SubjectRef};
use crate::subjects;

pub struct Switch {
    pub category: String,
    pub purpose: String,
    pub label: String,
    pub description: String,
    pub basis: String,
    pub on: bool,
    pub single_use: bool,
    pub available: u32,
    pub since: String,
}

#[derive(Template)]
#[template(path = "console/portal.html")]
struct PortalPage {
    l: Layout,
    holdings: Vec<subjects::Holding>,
    switches: Vec<Switch>,
    disclosures: Vec<rights::export::Disclosure>,
    requests: Vec<(RequestRow, Option<String>)>,
    kinds: Vec<Opt>,
    errors: Errors,
    deadline_days: u32,
}

fn own_subject(c: &Console) -> Result<String> {
    c.actor
        .require_role(&[Role::Subject], "use the self-service portal")?;
    c.actor
        .subject_id
        .clone()
        .ok_or_else(|| Error::NotFound("subject".into()))
}

fn portal_html(
    core: &Steward,
    c: &Console,
    errors: Errors,
    flash: Option<String>,
) -> Result<String> {
    let me = own_subject(c)?;
    let a = &c.actor;
    let holdings = subjects::holdings(core, a, &me)?;
    let (states, _) = consent::overview(core, a, &me)?;
    let disclosures = rights::export::disclosures_for(core, a, &me)?;
    let requests = rights::for_subject(core, a, &me)?;
    let names = std::collections::HashMap::new();
    let kind = subjects::read(core, a, &me, "administration")?.kind;
    let switches = states
        .iter()
        .filter(|st| st.granted || consent::offered_to(core, kind, &st.category))
        .map(|st| {
            let category = core.policy.category(&st.category);
            let rule = category.and_then(|c| c.rule_for(&st.purpose));
            Switch {
                label: use_label(core, &st.category, &st.purpose),
                description: core
                    .policy
                    .purpose(&st.purpose)
                    .map(|p| p.description.clone())
                    .unwrap_or_default(),
                basis: rule.map(|r| r.basis.label().to_owned()).unwrap_or_default(),
                single_use: rule.is_some_and(|r| r.consent == ConsentRule::SingleUse),
                on: st.granted,
                available: st.single_use_available,
                since: st.since.map(when).unwrap_or_default(),
                category: st.category.clone(),
                purpose: st.purpose.clone(),
            }
        })
        .collect();
    let mut rows = Vec::new();
    for r in &requests {
        let until = rights::export::bundle_available_until(core, r)?.map(when);
        rows.push((row_of(r, &names), until));
    }
    let page = PortalPage {
        l: Layout::new(c, "My data", "/console/me", flash),
        holdings,
        switches,
        disclosures,
        requests: rows,
        kinds: vec![
            Opt::new("access", "A copy of my data", true),
            Opt::new("portability", "My data in a portable format", false),
            Opt::new("erasure", "Erase my data", false),
        ],
        errors,
        deadline_days: core.policy.deadline_working_days(),
    };
    Ok(render(&page))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeQuery {
    #[serde(default)]
    done: Option<String>,
}

pub async fn home(
    State(s): State<AppState>,
    c: Console,
    WebQuery(q): WebQuery<HomeQuery>,
) -> WebResult<Html<String>> {
    let flash = match q.done.as_deref() {
        Some("consent") => Some("Your choice was saved and applies from now on.".to_owned()),
        _ => None,
    };
    Ok(Html(
        blocking(&s, move |core| portal_html(core, &c, Errors::none(), flash)).await??,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentForm {
    category: String,
    purpose: String,
    action: String,
}

pub async fn consent(
    State(s): State<AppState>,
    CsrfForm(c, f): CsrfForm<ConsentForm>,
) -> WebResult<Response> {
    let actor = c.actor.clone();
    let outcome = blocking(&s, move |core| {
        let me = own_subject(&c)?;
        let action = match f.action.as_str() {
            "grant" => Action::Grant,
            "withdraw" => Action::Withdraw,
            other => {
                return Ok(Err((
                    Error::invalid(
                        "action",
                        format!("{other:?} is not a choice here: grant or withdraw"),
                    ),
                    c,
                )));
            }
        };
        let recorded = consent::record(
            core,
            &actor,
            Record {
                subject_id: me,
                category: f.category,
                purpose: f.purpose,
                action,
                channel: Channel::Web,
                evidence: None,
            },
        );
        Ok(recorded.map(|_| ()).map_err(|e| (e, c)))
    })
    .await??;
    match outcome {
        Ok(()) => Ok(see_other("/console/me?done=consent#consents")),
        Err((e, c)) => {
            let (status, problem) = form_error(e)?;
            let errors = Errors::on("consent", problem, &[]);
            let html = blocking(&s, move |core| portal_html(core, &c, errors, None)).await??;
            Ok((status, Html(html)).into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileForm {
    kind: String,
    #[serde(default)]
    details: String,
}

pub async fn file_request(
    State(s): State<AppState>,
    CsrfForm(c, f): CsrfForm<FileForm>,
) -> WebResult<Response> {
    let actor = c.actor.clone();
    let outcome = blocking(&s, move |core| {
        let me = own_subject(&c)?;
        let kind = match f.kind.parse::<Kind>() {
            Ok(k @ (Kind::Access | Kind::Portability | Kind::Erasure)) => k,
            _ => {
                return Ok(Err((
                    Error::invalid(
                        "kind",
                        "choose a copy of your data, a portable copy or erasure",
                    ),
                    c,
                )));
            }
        };
        let details = f.details.trim();
        let created = rights::create(
            core,
            &actor,
            NewRequest {
                subject: SubjectRef::Id(me),
                kind,
                channel: RequestChannel::Portal,
                received_on: crate::clock::today().to_string(),
                region: None,
                details: (!details.is_empty()).then(|| details.to_owned()),
            },
        );
        Ok(created.map(|r| r.id).map_err(|e| (e, c)))
    })
    .await??;
    match outcome {
        Ok(id) => Ok(see_other(&format!("/console/me/requests/{id}?done=filed"))),
        Err((e, c)) => {
            let (status, problem) = form_error(e)?;
            let errors = Errors::on("request", problem, &["kind", "details"]);
            let html = blocking(&s, move |core| portal_html(core, &c, errors, None)).await??;
            Ok((status, Html(html)).into_response())
        }
    }
}

#[derive(Template)]
#[template(path = "console/portal_request.html")]
struct PortalRequestPage {
    l: Layout,
    r: RequestRow,
    kind: &'static str,
    bundle_until: Option<String>,
    steps: Vec<(String, String)>,
}

/// What the subject sees of their request's timeline: the steps, not who did them.
fn step_label(e: &str) -> Option<&'static str> {
    Some(match e {
        "received" => "We received your request",
        "verifying" => "We asked you to confirm who you are",
        "verified" => "We confirmed who you are",
        "exported" => "Your copy is ready",
        "downloaded" => "Your copy was downloaded",
        "erased" => "Your data was erased",
        "rectified" => "Your data was corrected",
        "refused" => "We could not act on your request",
        "fulfilled" | "partially_fulfilled" => "We answered your request",
        _ => return None,
    })
}

pub async fn request_page(
    State(s): State<AppState>,
    c: Console,
    WebPath(id): WebPath<String>,
    WebQuery(q): WebQuery<HomeQuery>,
) -> WebResult<Html<String>> {
    let flash = match q.done.as_deref() {
        Some("filed") => {
            Some("Your request was sent. We will answer by the date shown.".to_owned())
        }
        _ => None,
    };
    let html = blocking(&s, move |core| {
        own_subject(&c)?;
        let req = rights::get(core, &c.actor, &id)?;
        let timeline = rights::timeline(core, &c.actor, &id)?;
        let page = PortalRequestPage {
            l: Layout::new(&c, "My request", "/console/me", flash),
            kind: kind_label(req.kind),
            bundle_until: rights::export::bundle_available_until(core, &req)?.map(when),
            steps: timeline
                .iter()
                .filter_map(|t| step_label(&t.event).map(|l| (when(t.at), l.to_owned())))
                .collect(),
            r: row_of(&req, &std::collections::HashMap::new()),
        };
        Ok(render(&page))
    })
    .await??;
    Ok(Html(html))
}
