//! App usage statistics (signed-in App users; reports for provider staff) and
//! the website's cookie consent and visit collector (public).
//!
//! The two website routes need no token: the visitor's random cookie id is what
//! names them. Being open to anyone, they are bounded:
//!
//! * bodies of at most [`WEB_MAX_BODY`] bytes (413 beyond), strict JSON with
//!   unknown fields refused, each field's length and alphabet checked
//!   (`analytics::web`);
//! * at most [`WEB_RATE_LIMIT`] requests per [`WEB_RATE_WINDOW`] from one
//!   address (an IPv6 address counts by its /64), then 429 with `Retry-After`.
//!   Addresses are held in memory for one window to count them, never stored
//!   or logged. The table of addresses is bounded ([`WEB_RATE_KEYS`]); when it is
//!   full of live windows, new addresses are refused until windows expire, so a
//!   flood from many addresses cannot grow memory or the database without bound.
//!
//! The limit is per process. Behind a reverse proxy every request comes from the
//! proxy's address (Steward does not read `X-Forwarded-For`, as for logins), so
//! the proxy should limit per client itself.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::{Extension, Json};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiQuery, parse_json};
use super::{ApiError, ApiJson, ApiResult, AppState, Authed, ErrorBody, blocking};
use crate::analytics::usage::{self, Report, Submission, Submitted};
use crate::analytics::web::{self, ConsentOutcome, CookieChoice, Visit, VisitOutcome};

/// The largest body the public website routes accept.
pub const WEB_MAX_BODY: usize = 8 * 1024;
/// Requests one address may send to the website routes per window.
pub const WEB_RATE_LIMIT: u32 = 300;
pub const WEB_RATE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once.
pub const WEB_RATE_KEYS: usize = 100_000;

pub fn routes() -> OpenApiRouter<AppState> {
    let limiter = Arc::new(RateLimiter::new(
        WEB_RATE_LIMIT,
        WEB_RATE_WINDOW,
        WEB_RATE_KEYS,
    ));
    let web = OpenApiRouter::new()
        .routes(routes!(post_web_consent))
        .routes(routes!(post_web_visit))
        .layer(DefaultBodyLimit::max(WEB_MAX_BODY))
        .layer(Extension(limiter));
    OpenApiRouter::new()
        .routes(routes!(post_usage))
        .routes(routes!(get_usage_report))
        .merge(web)
}

/// Add the App's usage to today's anonymous counters. Needs the signed-in user's
/// consent to usage statistics (403 `consent_required` without it, and nothing
/// is stored). Only day-level counts per feature, platform and app version are
/// kept: no user, tenant, device, session, IP address or time of day, and no
/// audit entry or log line names the user.
#[utoipa::path(post, path = "/usage-statistics", tag = "analytics", security(("bearer" = [])),
    request_body = Submission,
    responses((status = 201, body = Submitted), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "forbidden or consent_required")))]
async fn post_usage(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiJson(body): ApiJson<Submission>,
) -> ApiResult<(StatusCode, Json<Submitted>)> {
    blocking(&s, move |core| usage::submit(core, &a, &body))
        .await
        .map(|r| (StatusCode::CREATED, Json(r)))
}

#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// First day, `YYYY-MM-DD` (UTC); default 29 days before `to`.
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC); default today. At most 366 days in all.
    pub to: Option<String>,
}

/// Usage statistics per day, feature, platform and app version (provider
/// operators and DPO). Cells under 10 are shown as suppressed, without their
/// number; there are no totals, so none can be recovered by subtraction.
#[utoipa::path(get, path = "/usage-statistics/report", tag = "analytics", security(("bearer" = [])),
    params(ReportQuery),
    responses((status = 200, body = Report), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn get_usage_report(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> ApiResult<Json<Report>> {
    blocking(&s, move |core| {
        usage::report(core, &a, q.from.as_deref(), q.to.as_deref())
    })
    .await
    .map(Json)
}

/// The website's cookie banner records a visitor's choice (public: the random
/// visitor id from the cookie names the visitor; it is kept only as a keyed
/// hash). `analytics` stands for the web_analytics purposes research_statistics
/// and service_improvement, `marketing` for marketing and profiling; changes go
/// to the consent ledger. Turning analytics off deletes the visits stored so far.
/// A visitor who grants nothing and was never recorded is not recorded now.
#[utoipa::path(post, path = "/web/consent", tag = "analytics", request_body = CookieChoice,
    responses((status = 200, body = ConsentOutcome), (status = 400, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
async fn post_web_consent(
    State(s): State<AppState>,
    _guard: WebGuard,
    WebJson(choice): WebJson<CookieChoice>,
) -> ApiResult<Json<ConsentOutcome>> {
    blocking(&s, move |core| web::set_consent(core, &choice))
        .await
        .map(Json)
}

/// The website reports a page visit (public). It is stored, sealed, only if the
/// visitor has analytics consent in force: 201 `{"stored": true}`; otherwise
/// nothing is stored and the answer is 202 `{"stored": false}`. Kept: the page's
/// path, the referring domain, the connection's IP address, and the browser's
/// family, major version, system and device class.
#[utoipa::path(post, path = "/web/visits", tag = "analytics", request_body = Visit,
    responses((status = 201, body = VisitOutcome), (status = 202, body = VisitOutcome),
              (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 415, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn post_web_visit(
    State(s): State<AppState>,
    guard: WebGuard,
    headers: HeaderMap,
    WebJson(visit): WebJson<Visit>,
) -> ApiResult<(StatusCode, Json<VisitOutcome>)> {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ip = guard.ip;
    let outcome = blocking(&s, move |core| {
        web::collect(core, &visit, ua.as_deref(), ip)
    })
    .await?;
    let status = if outcome.stored {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(outcome)))
}

/// Counts requests per client address in fixed windows.
pub(crate) struct RateLimiter {
    limit: u32,
    window: Duration,
    max_keys: usize,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimiter {
    pub(crate) fn new(limit: u32, window: Duration, max_keys: usize) -> RateLimiter {
        RateLimiter {
            limit,
            window,
            max_keys,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request from `ip`; `Err(seconds to wait)` when over the limit.
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let key = bucket(ip);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let wait = |start: Instant| {
            self.window
                .saturating_sub(now.saturating_duration_since(start))
                .as_secs()
                .max(1)
        };
        if !seen.contains_key(&key) && seen.len() >= self.max_keys {
            seen.retain(|_, (start, _)| now.saturating_duration_since(*start) < self.window);
            if seen.len() >= self.max_keys {
                let oldest = seen.values().map(|(s, _)| *s).min().unwrap_or(now);
                return Err(wait(oldest));
            }
        }
        let entry = seen.entry(key).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            return Err(wait(entry.0));
        }
        entry.1 += 1;
        Ok(())
    }
}

/// IPv4 addresses count one by one; IPv6 ones by their /64 (one subscriber's
/// network hands out a whole /64).
fn bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(a) => IpAddr::V4(a),
        IpAddr::V6(a) => {
            let s = a.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// The rate limit of the public website routes (the `Arc<RateLimiter>`
/// extension of the route's router), and the client's address.
pub(crate) struct WebGuard {
    pub(crate) ip: Option<IpAddr>,
}

impl<S: Send + Sync> FromRequestParts<S> for WebGuard {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if let Some(limiter) = parts.extensions.get::<Arc<RateLimiter>>() {
            let key = ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
            if let Err(secs) = limiter.check(key, Instant::now()) {
                let mut err = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "throttled",
                    format!("too many requests from your address: try again in {secs} s"),
                    None,
                );
                err.retry_after = Some(secs as i64);
                return Err(err);
            }
        }
        Ok(WebGuard { ip })
    }
}

/// A JSON body of the public website routes: like `ApiJson`, under the smaller
/// [`WEB_MAX_BODY`] limit.
struct WebJson<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for WebJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid",
                "send the body as JSON with Content-Type: application/json",
                None,
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body is larger than {WEB_MAX_BODY} bytes"),
                    None,
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.body_text(), None)
            }
        })?;
        parse_json(&bytes).map(WebJson)
    }
}

/// `application/json` or `application/…+json`, as `ApiJson` accepts.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_counts_per_address_and_window() {
        let l = RateLimiter::new(3, Duration::from_secs(60), 2);
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1"
            .parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let b: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap_or(a);
        let b2: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap_or(a);
        let c: IpAddr = "198.51.100.9".parse().unwrap_or(a);
        for _ in 0..3 {
            assert!(l.check(a, t0).is_ok());
        }
        assert_eq!(l.check(a, t0 + Duration::from_secs(10)), Err(50));
        // One /64 is one bucket.
        assert!(l.check(b, t0).is_ok());
        assert!(l.check(b2, t0).is_ok());
        assert!(l.check(b, t0).is_ok());
        assert!(l.check(b2, t0).is_err());
        // The table is full of live windows: a new address waits.
        assert!(l.check(c, t0 + Duration::from_secs(1)).is_err());
        // A new window starts afresh, and expired entries make room.
        let later = t0 + Duration::from_secs(61);
        assert!(l.check(c, later).is_ok());
        assert!(l.check(a, later).is_ok());
        let l = RateLimiter::new(1, Duration::from_secs(60), 10);
        assert!(l.check(a, t0).is_ok());
        assert!(l.check(a, t0).is_err());
        assert!(l.check(a, t0 + Duration::from_secs(60)).is_ok());
    }
}
