//! Credit checks: each under one single-use permission from the subject,
//! recorded as a disclosure to the credit reference agency.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiPath;
use super::{ApiJson, ApiResult, AppState, Authed, ErrorBody, blocking};
use crate::crm::credit::{self, CreditCheck, CreditCheckRequest, CreditResult};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_checks, post_check))
        .routes(routes!(get_check))
        .routes(routes!(post_result))
}

/// Make a credit check (operators and DPOs, for a subject in scope). Uses up
/// one single-use permission (`credit_checks`/`credit_check` in the consent
/// ledger): without one, 403 `consent_required` and nothing is stored. The
/// check is recorded as a disclosure to the agency, and what was sent is
/// stored sealed.
#[utoipa::path(post, path = "/subjects/{subject_id}/credit-checks", tag = "credit checks", security(("bearer" = [])),
    params(("subject_id" = String, Path)), request_body = CreditCheckRequest,
    responses((status = 201, body = CreditCheck), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "forbidden or consent_required"),
              (status = 404, body = ErrorBody)))]
async fn post_check(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(subject_id): ApiPath<String>,
    ApiJson(req): ApiJson<CreditCheckRequest>,
) -> ApiResult<(StatusCode, Json<CreditCheck>)> {
    blocking(&s, move |core| credit::request(core, &a, &subject_id, &req))
        .await
        .map(|c| (StatusCode::CREATED, Json(c)))
}

/// A subject's credit checks, newest first (the subject, operators and DPOs;
/// audited unless the subject reads their own).
#[utoipa::path(get, path = "/subjects/{subject_id}/credit-checks", tag = "credit checks", security(("bearer" = [])),
    params(("subject_id" = String, Path)),
    responses((status = 200, body = Vec<CreditCheck>), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_checks(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(subject_id): ApiPath<String>,
) -> ApiResult<Json<Vec<CreditCheck>>> {
    blocking(&s, move |core| credit::list(core, &a, &subject_id))
        .await
        .map(Json)
}

/// One credit check (the subject, operators and DPOs; audited unless the
/// subject reads their own).
#[utoipa::path(get, path = "/credit-checks/{check_id}", tag = "credit checks", security(("bearer" = [])),
    params(("check_id" = String, Path)),
    responses((status = 200, body = CreditCheck), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_check(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(check_id): ApiPath<String>,
) -> ApiResult<Json<CreditCheck>> {
    blocking(&s, move |core| credit::get(core, &a, &check_id))
        .await
        .map(Json)
}

/// Record the agency's answer to a check: reference, decision, score, notes
/// (operators and DPOs; once per check, then 409).
#[utoipa::path(post, path = "/credit-checks/{check_id}/result", tag = "credit checks", security(("bearer" = [])),
    params(("check_id" = String, Path)), request_body = CreditResult,
    responses((status = 200, body = CreditCheck), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn post_result(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(check_id): ApiPath<String>,
    ApiJson(req): ApiJson<CreditResult>,
) -> ApiResult<Json<CreditCheck>> {
    blocking(&s, move |core| {
        credit::record_result(core, &a, &check_id, &req)
    })
    .await
    .map(Json)
}
