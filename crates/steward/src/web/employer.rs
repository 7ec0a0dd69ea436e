//! The employer console (tenant-admin; operators for their scope): the tenant's
//! users, and the requests about its users on which the employer is consulted.

use askama::Template;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::session::{Console, CsrfForm, Empty};
use super::views::{
    Errors, Layout, Opt, days_label, kind_label, render, state_label, urgency, when,
};
use super::{WebPath, WebQuery, WebResult, blocking, form_error, see_other};
use crate::access::Role;
use crate::accounts::{self, NewUser};
use crate::api::AppState;
use crate::core::Steward;
use crate::error::{Error, Result};
use crate::rights::{self, EmployerAnswer};
use crate::tenants;

pub struct UserRow {
    pub id: String,
    pub username: String,
    pub role: &'static str,
    pub disabled: bool,
    pub created: String,
    /// Whether the viewer may reset this account's password.
    pub resettable: bool,
}

#[derive(Template)]
#[template(path = "console/users.html")]
struct UsersPage {
    l: Layout,
    tenant_id: String,
    tenant_name: String,
    users: Vec<UserRow>,
    roles: Vec<Opt>,
    errors: Errors,
    form: CreateUserForm,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct UsersQuery {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

/// The tenant a user page is about: the one named (provider staff may name any
/// they see), else the viewer's own.
pub(super) fn tenant_of_page(c: &Console, named: Option<&str>) -> Result<String> {
    match named.filter(|t| !t.is_empty()) {
        Some(t) => {
            c.actor.require_tenant(t, "tenant")?;
            Ok(t.to_owned())
        }
        None => c
            .actor
            .tenant_id
            .clone()
            .ok_or_else(|| Error::NotFound("tenant".into())),
    }
}

fn users_html(
    core: &Steward,
    c: &Console,
    tenant: &str,
    errors: Errors,
    form: CreateUserForm,
    flash: Option<String>,
) -> Result<String> {
    let t = tenants::get(core, &c.actor, tenant)?;
    let users = accounts::list(core, &c.actor, tenant)?;
    let role = |r: Role| match r {
        Role::Subject => "User",
        Role::TenantAdmin => "Admin",
        Role::Operator => "Operator",
        Role::Dpo => "DPO",
    };
    let page = UsersPage {
        l: Layout::new(c, "Users", "/console/users", flash),
        tenant_name: t.name,
        tenant_id: t.id,
        users: users
            .into_iter()
            .map(|u| UserRow {
                resettable: c.actor.provider_staff
                    || matches!(u.role, Role::Subject | Role::TenantAdmin),
                id: u.id,
                username: u.username,
                role: role(u.role),
                disabled: u.disabled,
                created: when(u.created_at),
            })
            .collect(),
        roles: vec![
            Opt::new("subject", "User", form.role != "tenant-admin"),
            Opt::new("tenant-admin", "Admin", form.role == "tenant-admin"),
        ],
        errors,
        form,
    };
    Ok(render(&page))
}

fn flash_of(code: Option<&str>) -> Option<String> {
    let m = match code? {
        "created" => "The user was created.",
        "disabled" => "The account was disabled and its sessions ended.",
        "enabled" => "The account was enabled.",
        "password" => "The password was reset and the account's sessions ended.",
        _ => return None,
    };
    Some(m.to_owned())
}

pub async fn users(
    State(s): State<AppState>,
    c: Console,
    WebQuery(q): WebQuery<UsersQuery>,
) -> WebResult<Html<String>> {
    let html = blocking(&s, move |core| {
        let tenant = tenant_of_page(&c, q.tenant.as_deref())?;
        users_html(
            core,
            &c,
            &tenant,
            Errors::none(),
            CreateUserForm::default(),
            flash_of(q.done.as_deref()),
        )
    })
    .await??;
    Ok(Html(html))
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct CreateUserForm {
    #[serde(default)]
    pub tenant: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub display_name: String,
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

const CREATE_FIELDS: &[&str] = &[
    "username",
    "password",
    "role",
    "email",
    "phone",
    "display_name",
];

pub async fn create_user(
    State(s): State<AppState>,
    CsrfForm(c, f): CsrfForm<CreateUserForm>,
) -> WebResult<Response> {
    let (actor, form) = (c.actor.clone(), f.clone());
    let outcome = blocking(&s, move |core| {
        let tenant = tenant_of_page(&c, Some(&form.tenant))?;
        let role = Role::parse(&form.role)?;
        let created = accounts::create_user(
            core,
            &actor,
            &tenant,
            NewUser {
                username: form.username.clone(),
                password: form.password.clone(),
                role,
                email: non_empty(&form.email),
                phone: non_empty(&form.phone),
                display_name: non_empty(&form.display_name),
            },
        );
        Ok(match created {
            Ok(a) => Ok(a.tenant_id),
            Err(e) => Err((e, tenant, c)),
        })
    })
    .await??;
    match outcome {
        Ok(tenant) => Ok(see_other(&format!(
            "/console/users?tenant={tenant}&done=created"
        ))),
        Err((e, tenant, c)) => {
            let (status, problem) = form_error(e)?;
            let errors = Errors::on("create", problem, CREATE_FIELDS);
            let mut form = f;
            form.password.clear();
            let html = blocking(&s, move |core| {
                users_html(core, &c, &tenant, errors, form, None)
            })
            .await??;
            Ok((status, Html(html)).into_response())
        }
    }
}

async fn set_disabled(s: AppState, c: Console, id: String, disabled: bool) -> WebResult<Response> {
    let account = blocking(&s, move |core| {
        accounts::set_disabled(core, &c.actor, &id, disabled)
    })
    .await??;
    if disabled {
        // Its sessions are revoked: its open chat sockets close now, on every process.
        let (chat, who) = (s.chat.clone(), account.subject_id.clone());
        let _ = tokio::task::spawn_blocking(move || chat.close_subject(&who)).await;
    }
    let done = if disabled { "disabled" } else { "enabled" };
    Ok(see_other(&format!(
        "/console/users?tenant={}&done={done}",
        account.tenant_id
    )))
}

pub async fn disable(
    State(s): State<AppState>,
    WebPath(id): WebPath<String>,
    CsrfForm(c, _): CsrfForm<Empty>,
) -> WebResult<Response> {
    set_disabled(s, c, id, true).await
}

pub async fn enable(
    State(s): State<AppState>,
    WebPath(id): WebPath<String>,
    CsrfForm(c, _): CsrfForm<Empty>,
) -> WebResult<Response> {
    set_disabled(s, c, id, false).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordForm {
    #[serde(default)]
    tenant: String,
    password: String,
}

pub async fn reset_password(
    State(s): State<AppState>,
    WebPath(id): WebPath<String>,
    CsrfForm(c, f): CsrfForm<PasswordForm>,
) -> WebResult<Response> {
    let (actor, aid, tenant) = (c.actor.clone(), id.clone(), f.tenant.clone());
    let outcome = blocking(&s, move |core| {
        Ok(accounts::reset_password(core, &actor, &aid, &f.password))
    })
    .await??;
    match outcome {
        Ok(a) => Ok(see_other(&format!(
            "/console/users?tenant={}&done=password",
            a.tenant_id
        ))),
        Err(e) => {
            let (status, problem) = form_error(e)?;
            let errors = Errors::on(&format!("password-{id}"), problem, &["password"]);
            let html = blocking(&s, move |core| {
                let tenant = tenant_of_page(&c, Some(&tenant))?;
                users_html(core, &c, &tenant, errors, CreateUserForm::default(), None)
            })
            .await??;
            Ok((status, Html(html)).into_response())
        }
    }
}

// -------------------------------------------------------------------- notices

pub struct NoticeRow {
    pub request_id: String,
    pub kind: &'static str,
    pub state: &'static str,
    pub state_code: &'static str,
    pub received_on: String,
    pub due_on: String,
    pub days: String,
    pub urgency: &'static str,
    pub username: String,
    pub open: bool,
    pub answer: Option<String>,
}

#[derive(Template)]
#[template(path = "console/notices.html")]
struct NoticesPage {
    l: Layout,
    rows: Vec<NoticeRow>,
    answers: Vec<Opt>,
    errors: Errors,
}

fn notices_html(
    core: &Steward,
    c: &Console,
    errors: Errors,
    flash: Option<String>,
) -> Result<String> {
    let notices = rights::employer_notices(core, &c.actor)?;
    let page = NoticesPage {
        l: Layout::new(c, "Requests from your users", "/console/notices", flash),
        rows: notices
            .into_iter()
            .map(|n| {
                let open = n.state.is_open();
                NoticeRow {
                    kind: kind_label(n.kind),
                    state: state_label(n.state),
                    state_code: n.state.as_str(),
                    days: days_label(open, n.working_days_left),
                    urgency: urgency(open, n.working_days_left),
                    received_on: n.received_on,
                    due_on: n.due_on,
                    username: n
                        .username
                        .unwrap_or_else(|| "a contact of your organisation".into()),
                    open,
                    answer: n.answer.map(|a| {
                        format!(
                            "{} ({})",
                            a.label(),
                            n.answered_at.map(when).unwrap_or_default()
                        )
                    }),
                    request_id: n.request_id,
                }
            })
            .collect(),
        answers: [
            EmployerAnswer::NoObjection,
            EmployerAnswer::KeepForContract,
            EmployerAnswer::KeepForLegalObligation,
        ]
        .iter()
        .map(|a| Opt::new(a.as_str(), a.label(), false))
        .collect(),
        errors,
    };
    Ok(render(&page))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticesQuery {
    #[serde(default)]
    done: Option<String>,
}

pub async fn notices(
    State(s): State<AppState>,
    c: Console,
    WebQuery(q): WebQuery<NoticesQuery>,
) -> WebResult<Html<String>> {
    let flash = q
        .done
        .filter(|d| d == "answered")
        .map(|_| "Your answer was recorded on the request.".to_owned());
    Ok(Html(
        blocking(&s, move |core| {
            notices_html(core, &c, Errors::none(), flash)
        })
        .await??,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerForm {
    answer: String,
}

pub async fn answer(
    State(s): State<AppState>,
    WebPath(id): WebPath<String>,
    CsrfForm(c, f): CsrfForm<AnswerForm>,
) -> WebResult<Response> {
    let (actor, rid) = (c.actor.clone(), id.clone());
    let outcome = blocking(&s, move |core| {
        Ok(f.answer
            .parse::<EmployerAnswer>()
            .and_then(|a| rights::employer_input(core, &actor, &rid, a)))
    })
    .await??;
    match outcome {
        Ok(()) => Ok(see_other("/console/notices?done=answered")),
        Err(e) => {
            let (status, problem) = form_error(e)?;
            let errors = Errors::on(&format!("answer-{id}"), problem, &["answer"]);
            let html = blocking(&s, move |core| notices_html(core, &c, errors, None)).await??;
            Ok((status, Html(html)).into_response())
        }
    }
}
