//! The console's templates (askama, compiled in and checked at build time; every
//! value is HTML-escaped unless marked safe) and the small view models they read.

use askama::Template;
use axum::http::StatusCode;

use super::session::Console;
use crate::access::Role;
use crate::clock::rfc3339;

/// An input problem to show next to the field at fault (or above the form).
#[derive(Debug, Clone)]
pub struct Problem {
    pub field: Option<String>,
    pub message: String,
}

/// The problem of one form on a page, if it has one.
#[derive(Debug, Clone, Default)]
pub struct Errors(Option<(String, Problem)>);

impl Errors {
    pub fn none() -> Errors {
        Errors(None)
    }

    /// `form`'s problem; a field the form does not have is shown above it.
    pub fn on(form: &str, mut p: Problem, fields: &[&str]) -> Errors {
        if p.field.as_deref().is_some_and(|f| !fields.contains(&f)) {
            p.field = None;
        }
        Errors(Some((form.to_owned(), p)))
    }

    /// The message for `field` of `form`.
    pub fn at(&self, form: &str, field: &str) -> Option<&str> {
        match &self.0 {
            Some((f, p)) if f == form && p.field.as_deref() == Some(field) => {
                Some(p.message.as_str())
            }
            _ => None,
        }
    }

    /// The message for `field` of the form `<form>-<id>` (one form per row).
    pub fn at_for(&self, form: &str, id: &str, field: &str) -> Option<&str> {
        self.at(&format!("{form}-{id}"), field)
    }

    /// The message for the form `<form>-<id>` as a whole.
    pub fn general_for(&self, form: &str, id: &str) -> Option<&str> {
        self.general(&format!("{form}-{id}"))
    }

    /// The message for `form` as a whole (no field at fault).
    pub fn general(&self, form: &str) -> Option<&str> {
        match &self.0 {
            Some((f, p)) if f == form && p.field.is_none() => Some(p.message.as_str()),
            _ => None,
        }
    }
}

pub struct Nav {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// What every logged-in page shares: title, who is logged in, the navigation,
/// the CSRF token for its forms, and a one-line notice after an action.
pub struct Layout {
    pub title: String,
    pub username: String,
    pub role: &'static str,
    pub nav: Vec<Nav>,
    pub csrf: String,
    pub flash: Option<String>,
}

pub fn role_label(r: Role) -> &'static str {
    match r {
        Role::Subject => "Self-service",
        Role::TenantAdmin => "Employer admin",
        Role::Operator => "Operator",
        Role::Dpo => "Data protection officer",
    }
}

impl Layout {
    pub fn new(
        c: &Console,
        title: impl Into<String>,
        current: &str,
        flash: Option<String>,
    ) -> Layout {
        let mut items: Vec<(&'static str, &'static str)> = Vec::new();
        match c.role {
            Role::Subject => items.push(("/console/me", "My data")),
            Role::TenantAdmin => {
                items.push(("/console/users", "Users"));
                items.push(("/console/directory", "Directory"));
                items.push(("/console/notices", "Requests"));
            }
            Role::Operator | Role::Dpo => {
                items.push(("/console/requests", "Requests"));
                items.push(("/console/subjects", "Subjects"));
                items.push(("/console/dashboard", "Dashboard"));
                if c.actor.provider_staff {
                    items.push(("/console/retention", "Retention"));
                }
                if c.role == Role::Dpo {
                    items.push(("/console/audit", "Audit"));
                }
                items.push(("/console/policy", "Policy"));
                if c.role == Role::Operator {
                    items.push(("/console/users", "Users"));
                    items.push(("/console/directory", "Directory"));
                }
            }
        }
        Layout {
            title: title.into(),
            username: c.username.clone(),
            role: role_label(c.role),
            nav: items
                .into_iter()
                .map(|(href, label)| Nav {
                    href,
                    label,
                    current: current == href,
                })
                .collect(),
            csrf: c.csrf.clone(),
            flash,
        }
    }
}

/// Renders a template; a template that fails renders a plain message (it
/// cannot fail on the values given, but the server must not panic).
pub fn render(t: &impl Template) -> String {
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "template failed");
        "<!DOCTYPE html><title>Error</title><p>This page could not be shown.</p>".into()
    })
}

/// `2026-11-20 14:03 UTC`.
pub fn when(unix: i64) -> String {
    let s = rfc3339(unix);
    match (s.get(..10), s.get(11..16)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => s,
    }
}

/// How urgent an open request is, for its badge and row colour.
pub fn urgency(open: bool, days_left: i64) -> &'static str {
    if !open {
        "closed"
    } else if days_left < 0 {
        "overdue"
    } else if days_left <= crate::dashboard::NEARLY_DUE_DAYS {
        "soon"
    } else {
        "ok"
    }
}

/// "3 working days left", "Due today", "Overdue by 2 working days".
pub fn days_label(open: bool, days_left: i64) -> String {
    if !open {
        return "Closed".into();
    }
    let plural = |n: i64| if n == 1 { "" } else { "s" };
    match days_left {
        d if d < 0 => format!("Overdue by {} working day{}", -d, plural(-d)),
        0 => "Due today".into(),
        d => format!("{d} working day{} left", plural(d)),
    }
}

pub fn state_label(s: crate::rights::State) -> &'static str {
    use crate::rights::State::*;
    match s {
        Received => "Received",
        Verifying => "Awaiting identity",
        InProgress => "In progress",
        Fulfilled => "Fulfilled",
        PartiallyFulfilled => "Partly fulfilled",
        Refused => "Refused",
    }
}

pub fn kind_label(k: crate::rights::Kind) -> &'static str {
    use crate::rights::Kind::*;
    match k {
        Access => "Access (copy)",
        Portability => "Portability",
        Rectification => "Rectification",
        Erasure => "Erasure",
        Restriction => "Restriction",
        Objection => "Objection",
    }
}

pub fn channel_label(c: crate::rights::RequestChannel) -> &'static str {
    use crate::rights::RequestChannel::*;
    match c {
        Letter => "Letter",
        Email => "Email",
        Phone => "Phone",
        Portal => "Portal",
    }
}

/// A role as short as the name of someone acting in it: `dana (DPO)`.
pub fn role_short(r: Role) -> &'static str {
    match r {
        Role::Dpo => "DPO",
        other => role_label(other),
    }
}

/// Who acted, as a person reads it: `account:<id>` as the account's username
/// and role, `dana (DPO)` (from [`crate::accounts::names`], which the page
/// calls once for all its actors; the id when it is not known, an erased
/// person's account say), `cli:<user>` as `<user> (command line)`,
/// `system:<job>` as `system: <job>`. Pages keep the stored actor beside it,
/// in a `title` (see [`Who`]); exports keep the stored actor only.
pub fn actor_label(
    actor: &str,
    names: &std::collections::HashMap<String, crate::accounts::AccountName>,
) -> String {
    if let Some(n) = names.get(actor) {
        return format!("{} ({})", n.username, role_short(n.role));
    }
    match actor.split_once(':') {
        Some(("cli", user)) => format!("{user} (command line)"),
        Some(("system", job)) => format!("system: {job}"),
        _ => actor.to_owned(),
    }
}

/// Who acted, on a page: the words shown, and the stored actor (the account
/// id) shown on hover.
pub struct Who {
    pub label: String,
    pub actor: String,
}

impl Who {
    pub fn new(
        actor: &str,
        names: &std::collections::HashMap<String, crate::accounts::AccountName>,
    ) -> Who {
        Who {
            label: actor_label(actor, names),
            actor: actor.to_owned(),
        }
    }
}

/// One option of a `<select>`.
pub struct Opt {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

impl Opt {
    pub fn new(value: &str, label: &str, selected: bool) -> Opt {
        Opt {
            value: value.to_owned(),
            label: label.to_owned(),
            selected,
        }
    }
}

// ---------------------------------------------------------------- public pages

#[derive(Template)]
#[template(path = "console/login.html")]
pub struct LoginPage<'a> {
    pub login_csrf: &'a str,
    pub username: &'a str,
    pub errors: Errors,
    pub notice: Option<&'a str>,
}

pub fn login_page(
    login_csrf: &str,
    username: &str,
    problem: Option<Problem>,
    notice: Option<&str>,
) -> String {
    render(&LoginPage {
        login_csrf,
        username,
        errors: problem
            .map(|p| Errors::on("login", p, &["username", "password"]))
            .unwrap_or_default(),
        notice,
    })
}

#[derive(Template)]
#[template(path = "console/error.html")]
pub struct ErrorPage<'a> {
    pub status: u16,
    pub heading: &'a str,
    pub message: &'a str,
}

pub fn error_page(status: StatusCode, message: &str) -> String {
    let heading = match status.as_u16() {
        400 => "That did not work",
        403 => "Not allowed",
        404 => "Not found",
        409 => "Not possible now",
        413 => "Too large",
        429 => "Slow down",
        503 => "Busy",
        _ => "Something went wrong",
    };
    render(&ErrorPage {
        status: status.as_u16(),
        heading,
        message,
    })
}
