//! The web console: server-rendered HTML pages for the provider's staff
//! (operator, DPO), employers (tenant-admin) and data subjects, served by
//! `steward serve` under `/console`. A transport like `api/` and `cli/`: each
//! handler reads the session, calls one domain function on a blocking thread
//! and renders a template; the rules live in the domain.
//!
//! * Sessions are the accounts' sessions (`accounts::login`), carried in an
//!   `HttpOnly; SameSite=Strict` cookie (`Secure` over TLS); see `session.rs`.
//! * Every POST carries a CSRF token bound to the session (`session.rs`).
//! * Every page answers with a Content-Security-Policy that allows scripts and
//!   styles from the console's own embedded files only (`assets.rs`); there is
//!   no inline script or style anywhere, and charts are server-rendered SVG.
//! * [`routes`] lists every console route with its audience; the router is
//!   built from the same list, so a new page cannot escape the route
//!   enumeration test (`tests/console.rs`).

mod assets;
mod charts;
mod directory;
mod employer;
mod portal;
mod session;
mod staff;
mod views;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get, post};
use serde::de::DeserializeOwned;

use crate::access::Role;
use crate::api::AppState;
use crate::error::Error;

pub use session::{LOGIN_COOKIE, SESSION_COOKIE, SESSION_COOKIE_SECURE};

/// Where the console lives.
pub const PREFIX: &str = "/console";

/// Who a console route is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// No session needed (the login page, the static files).
    Public,
    /// Any logged-in account.
    Anyone,
    /// Accounts holding one of these roles, in their own scope.
    Roles(&'static [Role]),
    /// Accounts of the provider's own tenant holding one of these roles.
    ProviderStaff(&'static [Role]),
}

impl Audience {
    /// Whether an account of `role` (provider staff or not) may open the route.
    pub fn admits(self, role: Role, provider_staff: bool) -> bool {
        match self {
            Audience::Public | Audience::Anyone => true,
            Audience::Roles(r) => r.contains(&role),
            Audience::ProviderStaff(r) => provider_staff && r.contains(&role),
        }
    }
}

/// One console route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    /// The path template, with `{param}`s as in the router.
    pub path: &'static str,
    pub audience: Audience,
    /// What it is, for the docs and test output.
    pub purpose: &'static str,
}

const STAFF: &[Role] = &[Role::Operator, Role::Dpo];
const DPO: &[Role] = &[Role::Dpo];
const EMPLOYER: &[Role] = &[Role::TenantAdmin];
const SUBJECT: &[Role] = &[Role::Subject];
const USER_ADMINS: &[Role] = &[Role::TenantAdmin, Role::Operator];

/// Every console route with its handler: the router and [`routes`] both come
/// from here.
fn table() -> Vec<(Route, MethodRouter<AppState>)> {
    use Audience::*;
    let r = |method, path, audience, purpose| Route {
        method,
        path,
        audience,
        purpose,
    };
    vec![
        // Sessions and static files.
        (
            r("GET", "/console", Anyone, "home: each role's first page"),
            get(session::home),
        ),
        (
            r("GET", "/console/login", Public, "the login form"),
            get(session::login_form),
        ),
        (
            r("POST", "/console/login", Public, "log in"),
            post(session::login),
        ),
        (
            r(
                "POST",
                "/console/logout",
                Anyone,
                "log out (revokes the session)",
            ),
            post(session::logout),
        ),
        (
            r(
                "GET",
                "/console/static/{file}",
                Public,
                "embedded CSS and JS",
            ),
            get(assets::serve),
        ),
        // Staff: requests.
        (
            r(
                "GET",
                "/console/requests",
                Roles(STAFF),
                "the request queue",
            ),
            get(staff::queue),
        ),
        (
            r(
                "POST",
                "/console/requests",
                Roles(STAFF),
                "record a request received by letter, phone or email",
            ),
            post(staff::record),
        ),
        (
            r(
                "GET",
                "/console/requests/{request_id}",
                Roles(STAFF),
                "one request: steps, actions, timeline, answer",
            ),
            get(staff::request_page),
        ),
        (
            r(
                "POST",
                "/console/requests/{request_id}/verify",
                Roles(STAFF),
                "record the identity check",
            ),
            post(staff::verify),
        ),
        (
            r(
                "POST",
                "/console/requests/{request_id}/export",
                Roles(STAFF),
                "produce the access bundle",
            ),
            post(staff::export),
        ),
        (
            r(
                "POST",
                "/console/requests/{request_id}/rectify",
                Roles(STAFF),
                "correct an identifier",
            ),
            post(staff::rectify),
        ),
        (
            r(
                "POST",
                "/console/requests/{request_id}/erase",
                Roles(STAFF),
                "erase the subject everywhere",
            ),
            post(staff::erase),
        ),
        (
            r(
                "POST",
                "/console/requests/{request_id}/refuse",
                Roles(STAFF),
                "refuse on a recorded ground",
            ),
            post(staff::refuse),
        ),
        (
            r(
                "POST",
                "/console/requests/{request_id}/complete",
                Roles(STAFF),
                "close a restriction or objection",
            ),
            post(staff::complete),
        ),
        // Staff and the subject: the bundle.
        (
            r(
                "GET",
                "/console/requests/{request_id}/bundle",
                Roles(&[Role::Operator, Role::Dpo, Role::Subject]),
                "download the access bundle",
            ),
            get(staff::bundle),
        ),
        // Staff: subjects, dashboard, retention, audit, policy.
        (
            r(
                "GET",
                "/console/subjects",
                Roles(STAFF),
                "subject search by email, phone or username",
            ),
            get(staff::subjects),
        ),
        (
            r(
                "GET",
                "/console/subjects/{subject_id}",
                Roles(STAFF),
                "one subject: data held, consents, disclosures, requests",
            ),
            get(staff::subject_page),
        ),
        (
            r(
                "GET",
                "/console/dashboard",
                Roles(STAFF),
                "charts: requests, consent rates, records, retention",
            ),
            get(staff::dashboard),
        ),
        (
            r(
                "GET",
                "/console/retention",
                ProviderStaff(STAFF),
                "the retention dry run",
            ),
            get(staff::retention),
        ),
        (
            r(
                "POST",
                "/console/retention/run",
                ProviderStaff(DPO),
                "run retention now",
            ),
            post(staff::retention_run),
        ),
        (
            r(
                "GET",
                "/console/audit",
                Roles(DPO),
                "recent audit entries and the last verification of the chain",
            ),
            get(staff::audit),
        ),
        (
            r(
                "POST",
                "/console/audit/verify",
                ProviderStaff(DPO),
                "verify the whole audit chain now and record the result",
            ),
            post(staff::audit_verify),
        ),
        (
            r(
                "GET",
                "/console/policy",
                Roles(STAFF),
                "the privacy notice and the Article 30 record",
            ),
            get(staff::policy),
        ),
        (
            r(
                "GET",
                "/console/policy/{file}",
                Roles(STAFF),
                "download the notice or the Article 30 record",
            ),
            get(staff::policy_file),
        ),
        // Employer.
        (
            r(
                "GET",
                "/console/users",
                Roles(USER_ADMINS),
                "the tenant's users",
            ),
            get(employer::users),
        ),
        (
            r(
                "POST",
                "/console/users",
                Roles(USER_ADMINS),
                "create a user",
            ),
            post(employer::create_user),
        ),
        (
            r(
                "POST",
                "/console/users/{account_id}/disable",
                Roles(USER_ADMINS),
                "disable an account",
            ),
            post(employer::disable),
        ),
        (
            r(
                "POST",
                "/console/users/{account_id}/enable",
                Roles(USER_ADMINS),
                "enable an account",
            ),
            post(employer::enable),
        ),
        (
            r(
                "POST",
                "/console/users/{account_id}/password",
                Roles(USER_ADMINS),
                "reset a password",
            ),
            post(employer::reset_password),
        ),
        (
            r(
                "GET",
                "/console/notices",
                Roles(EMPLOYER),
                "requests about the tenant's users",
            ),
            get(employer::notices),
        ),
        (
            r(
                "POST",
                "/console/notices/{request_id}",
                Roles(EMPLOYER),
                "the employer's answer on a request",
            ),
            post(employer::answer),
        ),
        // Employer: the business directory.
        (
            r(
                "GET",
                "/console/directory",
                Roles(USER_ADMINS),
                "the business directory, with search",
            ),
            get(directory::list),
        ),
        (
            r(
                "POST",
                "/console/directory",
                Roles(USER_ADMINS),
                "add a directory entry",
            ),
            post(directory::create),
        ),
        (
            r(
                "POST",
                "/console/directory/import",
                Roles(USER_ADMINS),
                "import a vCard file (multipart upload)",
            ),
            post(directory::import).layer(DefaultBodyLimit::max(session::upload_body_limit(
                crate::directory::MAX_IMPORT_BYTES,
            ))),
        ),
        (
            r(
                "GET",
                "/console/directory/export",
                Roles(USER_ADMINS),
                "download the directory as vCard 4.0 or 3.0",
            ),
            get(directory::export),
        ),
        (
            r(
                "GET",
                "/console/directory/{entry_id}",
                Roles(USER_ADMINS),
                "one directory entry: edit and remove",
            ),
            get(directory::entry),
        ),
        (
            r(
                "POST",
                "/console/directory/{entry_id}",
                Roles(USER_ADMINS),
                "save a directory entry",
            ),
            post(directory::update),
        ),
        (
            r(
                "POST",
                "/console/directory/{entry_id}/delete",
                Roles(USER_ADMINS),
                "remove a directory entry (with a confirmation box)",
            ),
            post(directory::delete),
        ),
        // Subject.
        (
            r(
                "GET",
                "/console/me",
                Roles(SUBJECT),
                "the self-service portal",
            ),
            get(portal::home),
        ),
        (
            r(
                "POST",
                "/console/me/consents",
                Roles(SUBJECT),
                "give or withdraw a consent",
            ),
            post(portal::consent),
        ),
        (
            r(
                "POST",
                "/console/me/requests",
                Roles(SUBJECT),
                "ask for a copy or for erasure",
            ),
            post(portal::file_request),
        ),
        (
            r(
                "GET",
                "/console/me/requests/{request_id}",
                Roles(SUBJECT),
                "follow one of my requests",
            ),
            get(portal::request_page),
        ),
    ]
}

/// Every console route, in the order the router registers them.
pub fn routes() -> Vec<Route> {
    table().into_iter().map(|(r, _)| r).collect()
}

/// The console's router, with its security headers.
pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    for (route, handler) in table() {
        router = router.route(route.path, handler);
    }
    router.layer(middleware::from_fn(security_headers))
}

/// The Content-Security-Policy of every console response: scripts, styles and
/// images from the console itself, no inline script or style, no framing, forms
/// posting only back to the console.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(req: Request, next: Next) -> Response {
    let tls = session::came_over_tls(req.headers());
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let cached = h.contains_key(header::CACHE_CONTROL);
    let mut set = |name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(header::CONTENT_SECURITY_POLICY, CSP);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "same-origin");
    set(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        header::HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=()",
    );
    if tls {
        set(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        );
    }
    // Pages carry personal data: no caching anywhere. The static files set their own.
    if !cached {
        set(header::CACHE_CONTROL, "no-store");
    }
    resp
}

/// An error on its way to the browser: a login redirect, or a page saying what
/// went wrong (never internal details).
#[derive(Debug)]
pub enum WebError {
    /// No live session: go to the login page.
    Login,
    Page(StatusCode, String),
}

impl From<Error> for WebError {
    fn from(e: Error) -> Self {
        if matches!(e, Error::Unauthenticated) {
            return WebError::Login;
        }
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = if status.is_server_error() && !matches!(e, Error::Busy(_)) {
            tracing::error!(error = %e, "console request failed");
            "Something went wrong on our side; the details are in the server log.".to_owned()
        } else {
            sentence(&e.to_string())
        };
        WebError::Page(status, message)
    }
}

/// A message as a sentence: capital first letter (unless it starts with a name
/// such as `photos_media/provision` or `"x"`), final full stop.
pub(crate) fn sentence(m: &str) -> String {
    let first = m
        .split(' ')
        .next()
        .unwrap_or_default()
        .trim_end_matches([',', ':', '.', '!', '?']);
    let plain_word = first.chars().all(|c| c.is_ascii_alphabetic() || c == '\'');
    let mut c = m.chars();
    let mut s: String = match c.next() {
        Some(f) if plain_word => f.to_uppercase().chain(c).collect(),
        _ => m.to_owned(),
    };
    if !s.ends_with(['.', '!', '?', ':']) {
        s.push('.');
    }
    s
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::Login => Redirect::to("/console/login").into_response(),
            WebError::Page(status, message) => {
                let html = views::error_page(status, &message);
                (status, Html(html)).into_response()
            }
        }
    }
}

pub type WebResult<T> = Result<T, WebError>;

/// Runs a domain call on the blocking pool, as the API does.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&crate::Steward) -> crate::error::Result<T> + Send + 'static,
) -> Result<crate::error::Result<T>, WebError> {
    let core = state.core.clone();
    tokio::task::spawn_blocking(move || f(&core))
        .await
        .map_err(|e| WebError::from(Error::Internal(format!("task failed: {e}"))))
}

/// Path parameters; a malformed one is a 400 page.
pub struct WebPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for WebPath<T> {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| WebPath(p.0))
            .map_err(|e| WebError::Page(StatusCode::BAD_REQUEST, sentence(&e.body_text())))
    }
}

/// Query parameters; a malformed query is a 400 page.
pub struct WebQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for WebQuery<T> {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| WebQuery(q.0))
            .map_err(|e| WebError::Page(StatusCode::BAD_REQUEST, sentence(&e.body_text())))
    }
}

/// After a successful POST: back to a page (Post/Redirect/Get).
pub(crate) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Input errors (400, 409) are shown on the form that caused them; every other
/// error is a page of its own.
pub(crate) fn form_error(e: Error) -> Result<(StatusCode, views::Problem), WebError> {
    match e {
        Error::Invalid { field, message } => Ok((
            StatusCode::BAD_REQUEST,
            views::Problem {
                field,
                message: sentence(&message),
            },
        )),
        Error::Conflict(m) => Ok((
            StatusCode::CONFLICT,
            views::Problem {
                field: None,
                message: sentence(&m),
            },
        )),
        Error::LoginFailed(m) => Ok((
            StatusCode::UNAUTHORIZED,
            views::Problem {
                field: Some("password".into()),
                message: sentence(&m),
            },
        )),
        Error::Throttled(secs) => Ok((
            StatusCode::TOO_MANY_REQUESTS,
            views::Problem {
                field: Some("password".into()),
                message: format!("Too many failed attempts: try again in {secs} seconds."),
            },
        )),
        other => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sentences() {
        assert_eq!(super::sentence("unknown state"), "Unknown state.");
        assert_eq!(super::sentence("a/b is not known"), "a/b is not known.");
        assert_eq!(super::sentence("done!"), "Done!");
        assert_eq!(super::sentence(""), ".");
    }
}
