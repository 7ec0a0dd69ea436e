//! Enquiries: the website's enquiry form (public) and staff recording, listing
//! and reading enquiries.
//!
//! The form needs no token, so, like the cookie banner's routes
//! (`api/analytics.rs`), it is bounded: bodies of at most
//! [`WEB_ENQUIRY_MAX_BODY`] bytes (413 beyond), strict JSON with unknown fields
//! refused, and at most [`WEB_ENQUIRY_RATE_LIMIT`] submissions per
//! [`WEB_ENQUIRY_RATE_WINDOW`] from one address (an IPv6 address counts by its
//! /64), then 429 with `Retry-After`. The limiter is the website routes' own
//! kind, with a table of its own. The answer never says whether the person was
//! known.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::analytics::{RateLimiter, WebGuard};
use super::extract::{ApiPath, ApiQuery, json_with_limit};
use super::{ApiError, ApiJson, ApiResult, AppState, Authed, ErrorBody, blocking};
use crate::crm::enquiries::{self, Enquiry, EnquirySummary, Received, StaffEnquiry, WebEnquiry};

/// The largest body the enquiry form accepts (a 5000-character message in any
/// script fits).
pub const WEB_ENQUIRY_MAX_BODY: usize = 32 * 1024;
/// Enquiries one address may submit per window.
pub const WEB_ENQUIRY_RATE_LIMIT: u32 = 20;
pub const WEB_ENQUIRY_RATE_WINDOW: Duration = Duration::from_secs(600);
/// Addresses tracked at once.
pub const WEB_ENQUIRY_RATE_KEYS: usize = 100_000;

pub fn routes() -> OpenApiRouter<AppState> {
    let limiter = Arc::new(RateLimiter::new(
        WEB_ENQUIRY_RATE_LIMIT,
        WEB_ENQUIRY_RATE_WINDOW,
        WEB_ENQUIRY_RATE_KEYS,
    ));
    let form = OpenApiRouter::new()
        .routes(routes!(post_web_enquiry))
        .layer(DefaultBodyLimit::max(WEB_ENQUIRY_MAX_BODY))
        .layer(Extension(limiter));
    OpenApiRouter::new()
        .routes(routes!(list_enquiries, post_enquiry))
        .routes(routes!(get_enquiry))
        .merge(form)
}

/// The form's JSON body, under [`WEB_ENQUIRY_MAX_BODY`].
struct FormJson<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for FormJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_with_limit(req, state, WEB_ENQUIRY_MAX_BODY)
            .await
            .map(FormJson)
    }
}

/// The website's enquiry form (public). The person is found among the
/// provider's contacts by their email (or, without one, a phone number) or
/// recorded as a new contact; the enquiry is sealed with their key. The
/// answer is 202 `{"received": true, "reference": …}` whether or not the
/// person was known. `marketing_consent` records consent to marketing emails
/// (it never lifts a "no further contact" request).
#[utoipa::path(post, path = "/web/enquiries", tag = "enquiries", request_body = WebEnquiry,
    responses((status = 202, body = Received), (status = 400, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
async fn post_web_enquiry(
    State(s): State<AppState>,
    _guard: WebGuard,
    FormJson(form): FormJson<WebEnquiry>,
) -> ApiResult<(StatusCode, Json<Received>)> {
    blocking(&s, move |core| enquiries::submit_web(core, &form))
        .await
        .map(|r| (StatusCode::ACCEPTED, Json(r)))
}

/// Record an enquiry received by telephone, email or letter (operators and
/// DPOs, in a tenant they see). The contact is found by email (or phone) or
/// created; identifiers their record lacks are filled in.
#[utoipa::path(post, path = "/tenants/{tenant_id}/enquiries", tag = "enquiries", security(("bearer" = [])),
    params(("tenant_id" = String, Path)), request_body = StaffEnquiry,
    responses((status = 201, body = Enquiry), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn post_enquiry(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(tenant_id): ApiPath<String>,
    ApiJson(body): ApiJson<StaffEnquiry>,
) -> ApiResult<(StatusCode, Json<Enquiry>)> {
    blocking(&s, move |core| {
        enquiries::record(core, &a, &tenant_id, &body)
    })
    .await
    .map(|e| (StatusCode::CREATED, Json(e)))
}

#[derive(Debug, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only enquiries recorded before this one (its id), for the next page.
    pub before: Option<String>,
    /// 1 to 100; default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// A tenant's enquiries, newest recorded first (operators and DPOs). Each
/// contact listed is audited as read.
#[utoipa::path(get, path = "/tenants/{tenant_id}/enquiries", tag = "enquiries", security(("bearer" = [])),
    params(("tenant_id" = String, Path), ListQuery),
    responses((status = 200, body = Vec<EnquirySummary>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn list_enquiries(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(tenant_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<EnquirySummary>>> {
    blocking(&s, move |core| {
        enquiries::list(core, &a, &tenant_id, q.before.as_deref(), q.limit)
    })
    .await
    .map(Json)
}

/// One enquiry, decrypted (operators and DPOs of its tenant; audited).
#[utoipa::path(get, path = "/enquiries/{enquiry_id}", tag = "enquiries", security(("bearer" = [])),
    params(("enquiry_id" = String, Path)),
    responses((status = 200, body = Enquiry), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_enquiry(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(enquiry_id): ApiPath<String>,
) -> ApiResult<Json<Enquiry>> {
    blocking(&s, move |core| enquiries::get(core, &a, &enquiry_id))
        .await
        .map(Json)
}
