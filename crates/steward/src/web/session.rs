//! Console sessions and CSRF protection.
//!
//! A console session is an ordinary account session (`accounts::login`: argon2id,
//! the failed-login throttle, the login gate), its token carried in a cookie
//! instead of a bearer header: `HttpOnly` (no script reads it), `SameSite=Strict`
//! (no other site's page sends it), `Path=/`, and `Secure` with the `__Host-`
//! prefix when the request came over TLS or the server is configured as behind a
//! TLS proxy (`--secure-cookies`). Logging out revokes the session.
//!
//! CSRF: a synchronizer token derived from the session, HMAC-SHA256 keyed by the
//! session token over a fixed label. It is unguessable without the cookie,
//! differs per session, needs no storage, and reveals nothing of the token it
//! derives from. Every POST carries it as the form field `csrf` and is refused
//! (403) without the right one; POSTs whose `Origin` or `Sec-Fetch-Site` show
//! another site are refused too. The login form, which has no session yet, is
//! protected by a random value in a short-lived `SameSite=Strict` cookie that
//! the form must echo (a cross-site post cannot carry it).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64ct::{Base64UrlUnpadded, Encoding};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use steward_crypto::token;

use super::{WebError, WebResult, blocking, form_error, see_other, sentence, views};
use crate::access::{Actor, Role};
use crate::accounts;
use crate::api::{AppState, LOGIN_WAIT};
use crate::error::Error;

/// The session cookie over plain HTTP (a local console).
pub const SESSION_COOKIE: &str = "steward_session";
/// The session cookie over TLS: the `__Host-` prefix makes the browser insist on
/// `Secure`, `Path=/` and no `Domain`.
pub const SESSION_COOKIE_SECURE: &str = "__Host-steward_session";
/// The login form's anti-forgery cookie.
pub const LOGIN_COOKIE: &str = "steward_login";
const LOGIN_COOKIE_SECURE: &str = "__Host-steward_login";

/// The largest form body the console accepts.
pub const MAX_FORM: usize = 64 * 1024;

const CSRF_LABEL: &[u8] = b"steward console csrf v1";

/// The CSRF token of a session.
pub fn csrf_for(session_token: &str) -> String {
    Base64UrlUnpadded::encode_string(&steward_crypto::hmac_sha256(
        session_token.as_bytes(),
        &[CSRF_LABEL],
    ))
}

/// Whether the request says it came over TLS (from a TLS-terminating proxy).
/// Only ever used to add protection (`Secure`, HSTS), so a forged header
/// harms nobody but its sender.
pub fn came_over_tls(headers: &HeaderMap) -> bool {
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("proto=https"));
    proto || forwarded
}

fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.core.settings.secure_cookies || came_over_tls(headers)
}

/// The value of cookie `name`, if the request carries it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .ok()
}

fn session_name(secure: bool) -> &'static str {
    if secure {
        SESSION_COOKIE_SECURE
    } else {
        SESSION_COOKIE
    }
}

fn login_name(secure: bool) -> &'static str {
    if secure {
        LOGIN_COOKIE_SECURE
    } else {
        LOGIN_COOKIE
    }
}

/// The logged-in account behind a console request.
#[derive(Debug, Clone)]
pub struct Console {
    pub actor: Actor,
    pub token: String,
    pub csrf: String,
    pub username: String,
    pub role: Role,
}

impl FromRequestParts<AppState> for Console {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = cookie(&parts.headers, SESSION_COOKIE_SECURE)
            .or_else(|| cookie(&parts.headers, SESSION_COOKIE))
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or(WebError::Login)?
            .to_owned();
        let t = token.clone();
        let (actor, account) = blocking(state, move |core| {
            let actor = accounts::authenticate(core, &t)?;
            let account = accounts::me(core, &actor)?;
            Ok((actor, account))
        })
        .await?
        .map_err(WebError::from)?;
        Ok(Console {
            csrf: csrf_for(&token),
            actor,
            token,
            username: account.username,
            role: account.role,
        })
    }
}

/// Refuses a POST that shows it comes from another site.
fn same_origin(headers: &HeaderMap) -> WebResult<()> {
    let refuse = || {
        WebError::Page(
            StatusCode::FORBIDDEN,
            "This form was sent from another site, so it was refused.".into(),
        )
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(refuse());
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
        if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Err(refuse());
        }
    }
    Ok(())
}

/// Reads an `application/x-www-form-urlencoded` body into pairs.
async fn form_pairs(req: Request) -> WebResult<Vec<(String, String)>> {
    let bytes = axum::body::to_bytes(req.into_body(), MAX_FORM)
        .await
        .map_err(|_| {
            WebError::Page(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("The form is larger than {} KiB.", MAX_FORM / 1024),
            )
        })?;
    parse_pairs(&bytes)
}

fn parse_pairs(bytes: &Bytes) -> WebResult<Vec<(String, String)>> {
    serde_urlencoded::from_bytes(bytes).map_err(|e| {
        WebError::Page(
            StatusCode::BAD_REQUEST,
            sentence(&format!("the form could not be read: {e}")),
        )
    })
}

/// Turns pairs into a form struct; a wrong or missing field is a 400 page.
pub(crate) fn decode<T: DeserializeOwned>(pairs: &[(String, String)]) -> WebResult<T> {
    let text = serde_urlencoded::to_string(pairs)
        .map_err(|e| WebError::Page(StatusCode::BAD_REQUEST, sentence(&e.to_string())))?;
    serde_urlencoded::from_str(&text).map_err(|e| {
        WebError::Page(
            StatusCode::BAD_REQUEST,
            sentence(&format!("the form is not what this page sends: {e}")),
        )
    })
}

/// A form posted by a logged-in account, with its CSRF token checked.
pub struct CsrfForm<T>(pub Console, pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let console = Console::from_request_parts(&mut parts, state).await?;
        same_origin(&parts.headers)?;
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(WebError::Page(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Send the form as application/x-www-form-urlencoded.".into(),
            ));
        }
        let pairs = form_pairs(Request::from_parts(parts, body)).await?;
        let (csrf, rest): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| k == "csrf");
        let sent = match csrf.as_slice() {
            [(_, v)] => v.as_str(),
            _ => "",
        };
        if !token::constant_time_eq(sent.as_bytes(), console.csrf.as_bytes()) {
            return Err(csrf_refused());
        }
        let form = decode(&rest)?;
        Ok(CsrfForm(console, form))
    }
}

/// A `multipart/form-data` form carrying one file (`file`), posted by a
/// logged-in account. The CSRF token must come before the file (the forms put
/// it first), so a forged upload is refused before its file is read. The file
/// may hold at most `LIMIT` bytes; the route's body limit is set to twice that
/// (see [`upload_body_limit`]), so a file a little too large is read to its end
/// and answered with a message next to the field instead of a cut connection.
pub struct CsrfUpload<const LIMIT: usize>(pub Console, pub Upload);

/// What an upload form sent.
pub struct Upload {
    /// The text fields, in order (without the CSRF token).
    pub fields: Vec<(String, String)>,
    /// The file's bytes (`None`: no file chosen), or why it was not taken.
    pub file: Result<Option<Bytes>, String>,
}

/// The body limit of an upload route whose file may hold `limit` bytes.
pub const fn upload_body_limit(limit: usize) -> usize {
    limit.saturating_mul(2).saturating_add(MAX_FORM)
}

fn csrf_refused() -> WebError {
    WebError::Page(
        StatusCode::FORBIDDEN,
        "This form has expired or did not come from this console: reload the page and try again."
            .into(),
    )
}

fn unreadable(e: axum::extract::multipart::MultipartError) -> WebError {
    WebError::Page(
        e.status(),
        sentence(&format!("the form could not be read: {}", e.body_text())),
    )
}

fn size_label(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

impl<const LIMIT: usize> FromRequest<AppState> for CsrfUpload<LIMIT> {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let console = Console::from_request_parts(&mut parts, state).await?;
        same_origin(&parts.headers)?;
        let mut form =
            axum::extract::Multipart::from_request(Request::from_parts(parts, body), state)
                .await
                .map_err(|_| {
                    WebError::Page(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "Send the form as multipart/form-data.".into(),
                    )
                })?;
        let mut fields = Vec::new();
        let mut file = Ok(None);
        let mut verified = false;
        while let Some(mut field) = form.next_field().await.map_err(unreadable)? {
            let name = field.name().unwrap_or_default().to_owned();
            if name != "file" {
                let value = field.text().await.map_err(unreadable)?;
                if name == "csrf" {
                    if verified
                        || !token::constant_time_eq(value.as_bytes(), console.csrf.as_bytes())
                    {
                        return Err(csrf_refused());
                    }
                    verified = true;
                } else {
                    fields.push((name, value));
                }
                continue;
            }
            if !verified {
                return Err(csrf_refused());
            }
            let mut bytes = Vec::new();
            let mut over = false;
            while let Some(chunk) = field.chunk().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    WebError::Page(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("The file is larger than {}.", size_label(LIMIT)),
                    )
                } else {
                    unreadable(e)
                }
            })? {
                // Past the limit the rest is read and dropped, so that the
                // browser gets the answer rather than a reset connection.
                over |= bytes.len() + chunk.len() > LIMIT;
                if !over {
                    bytes.extend_from_slice(&chunk);
                }
            }
            file = if over {
                Err(format!(
                    "The file is larger than {}: split it into smaller files.",
                    size_label(LIMIT)
                ))
            } else if bytes.is_empty() {
                Ok(None)
            } else {
                Ok(Some(Bytes::from(bytes)))
            };
        }
        if !verified {
            return Err(csrf_refused());
        }
        Ok(CsrfUpload(console, Upload { fields, file }))
    }
}

/// The first page of each role.
pub fn home_of(role: Role) -> &'static str {
    match role {
        Role::Subject => "/console/me",
        Role::TenantAdmin => "/console/users",
        Role::Operator | Role::Dpo => "/console/requests",
    }
}

pub async fn home(c: Console) -> Response {
    see_other(home_of(c.role))
}

fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    username: &str,
    problem: Option<views::Problem>,
    notice: Option<&str>,
) -> Response {
    let secure = secure(state, headers);
    let value = token::new_session_token().unwrap_or_default();
    let html = views::login_page(&value, username, problem, notice);
    let mut resp = (status, Html(html)).into_response();
    if let Some(c) = set_cookie(login_name(secure), &value, 3600, secure) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    pub bye: Option<String>,
}

pub async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    super::WebQuery(q): super::WebQuery<LoginQuery>,
) -> Response {
    let notice = q.bye.map(|_| "You have logged out.");
    login_page(&state, &headers, StatusCode::OK, "", None, notice)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginForm {
    username: String,
    password: String,
    login_csrf: String,
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> WebResult<Response> {
    let headers = req.headers().clone();
    same_origin(&headers)?;
    let form: LoginForm = decode(&form_pairs(req).await?)?;
    let expected = cookie(&headers, LOGIN_COOKIE_SECURE)
        .or_else(|| cookie(&headers, LOGIN_COOKIE))
        .unwrap_or_default();
    if expected.is_empty()
        || !token::constant_time_eq(expected.as_bytes(), form.login_csrf.as_bytes())
    {
        return Ok(login_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            &form.username,
            Some(views::Problem {
                field: None,
                message: "The login form expired or came from another site: please try again."
                    .into(),
            }),
            None,
        ));
    }
    if form.username.trim().is_empty() {
        return Ok(login_page(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            "",
            Some(views::Problem {
                field: Some("username".into()),
                message: "Enter your username.".into(),
            }),
            None,
        ));
    }
    let permit = tokio::time::timeout(LOGIN_WAIT, state.login_gate.clone().acquire_owned())
        .await
        .map_err(|_| WebError::from(Error::Busy("too many logins at once".into())))?
        .map_err(|_| WebError::from(Error::Internal("login gate closed".into())))?;
    let ip = peer.ip().to_string();
    let (username, password) = (form.username.clone(), form.password);
    let session = blocking(&state, move |core| {
        let _permit = permit;
        accounts::login(core, &username, &password, Some(&ip))
    })
    .await?;
    let outcome = if session.is_ok() { "ok" } else { "failed" };
    metrics::counter!("steward_logins_total", "outcome" => outcome).increment(1);
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            let (status, problem) = form_error(e)?;
            return Ok(login_page(
                &state,
                &headers,
                status,
                &form.username,
                Some(problem),
                None,
            ));
        }
    };
    let secure = secure(&state, &headers);
    let mut resp = see_other(home_of(session.account.role));
    let h = resp.headers_mut();
    if let Some(c) = set_cookie(
        session_name(secure),
        &session.token,
        state.core.settings.session_ttl_secs,
        secure,
    ) {
        h.append(header::SET_COOKIE, c);
    }
    if let Some(c) = set_cookie(login_name(secure), "", 0, secure) {
        h.append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    CsrfForm(c, _): CsrfForm<Empty>,
) -> WebResult<Response> {
    let token = c.token.clone();
    let session = steward_crypto::token::hash_token(&token);
    blocking(&state, move |core| accounts::logout(core, &token))
        .await?
        .map_err(WebError::from)?;
    // Chat sockets opened with this session close with it, on every process.
    let chat = state.chat.clone();
    let _ = tokio::task::spawn_blocking(move || chat.close_session(&session)).await;
    let secure = secure(&state, &headers);
    let mut resp = see_other("/console/login?bye=1");
    for name in [SESSION_COOKIE, SESSION_COOKIE_SECURE] {
        let is_secure = name == SESSION_COOKIE_SECURE || secure;
        if let Some(v) = set_cookie(name, "", 0, is_secure) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_differ_per_session_and_hide_the_token() {
        let a = csrf_for("session-a");
        let b = csrf_for("session-b");
        assert_ne!(a, b);
        assert_eq!(a, csrf_for("session-a"));
        assert!(!a.contains("session-a"));
        assert_eq!(a.len(), 43);
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(
            header::HOST,
            HeaderValue::from_static("console.example:8080"),
        );
        assert!(same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://console.example:8080"),
        );
        assert!(same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(same_origin(&h).is_err());
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(same_origin(&h).is_err());
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(same_origin(&h).is_err());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h).is_ok());
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("xsteward_session=bad; steward_session=good; other=1"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("good"));
        assert_eq!(cookie(&h, SESSION_COOKIE_SECURE), None);
    }
}
