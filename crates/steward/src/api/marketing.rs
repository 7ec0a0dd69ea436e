//! Marketing: the mailing-tool export and "no further contact".

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiPath;
use super::{ApiJson, ApiResult, AppState, Authed, ErrorBody, blocking};
use crate::crm::marketing::{self, NoFurtherContact, SuppressRequest, SuppressionOutcome};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_export))
        .routes(routes!(post_suppression))
        .routes(routes!(post_no_further_contact))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// The mailing tool the file goes to: a recipient the policy declares for
    /// contact_details; default `mailchimp`.
    pub recipient: Option<String>,
}

/// The CSV a mailing tool imports (`Email Address`, `Full Name`, `Consent
/// Date`; UTF-8, a header line, RFC 4180 quoting) with the tenant's people
/// whose marketing consent is in force now and none of whose addresses is
/// suppressed (operators and DPOs). Each exported person's disclosure to the
/// recipient is recorded in the audit log. The counts are in the
/// `x-steward-exported`, `x-steward-left-out-suppressed`,
/// `x-steward-left-out-no-consent` and `x-steward-left-out-no-email` headers.
#[utoipa::path(post, path = "/tenants/{tenant_id}/marketing/export", tag = "marketing", security(("bearer" = [])),
    params(("tenant_id" = String, Path)), request_body = ExportRequest,
    responses((status = 200, content_type = "text/csv", body = String),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn post_export(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(tenant_id): ApiPath<String>,
    ApiJson(req): ApiJson<ExportRequest>,
) -> ApiResult<Response> {
    let (csv, summary) = blocking(&s, move |core| {
        let mut csv = Vec::new();
        let summary = marketing::export(core, &a, &tenant_id, req.recipient.as_deref(), &mut csv)?;
        Ok((csv, summary))
    })
    .await?;
    let mut resp = (StatusCode::OK, csv).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"marketing-export.csv\""),
    );
    for (name, n) in [
        ("x-steward-exported", summary.exported),
        ("x-steward-left-out-suppressed", summary.left_out_suppressed),
        ("x-steward-left-out-no-consent", summary.left_out_no_consent),
        ("x-steward-left-out-no-email", summary.left_out_no_email),
    ] {
        h.insert(HeaderName::from_static(name), HeaderValue::from(n));
    }
    Ok(resp)
}

/// "No further contact" for an email address or phone number, whoever it
/// belongs to (provider operators and DPOs). The address is kept only as a
/// keyed hash, so it stays suppressed after its owner's erasure; everyone
/// with it has their marketing consent withdrawn.
#[utoipa::path(post, path = "/marketing/suppressions", tag = "marketing", security(("bearer" = [])),
    request_body = SuppressRequest,
    responses((status = 201, body = SuppressionOutcome), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn post_suppression(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiJson(req): ApiJson<SuppressRequest>,
) -> ApiResult<(StatusCode, Json<SuppressionOutcome>)> {
    blocking(&s, move |core| marketing::suppress(core, &a, &req))
        .await
        .map(|o| (StatusCode::CREATED, Json(o)))
}

/// "No further contact" from a known person: the person themself (`channel`
/// defaults to `app`), or an operator or DPO for someone in scope. Every email
/// address and phone number Steward has for them is suppressed and their
/// marketing consent withdrawn.
#[utoipa::path(post, path = "/subjects/{subject_id}/no-further-contact", tag = "marketing", security(("bearer" = [])),
    params(("subject_id" = String, Path)), request_body = NoFurtherContact,
    responses((status = 200, body = SuppressionOutcome), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn post_no_further_contact(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(subject_id): ApiPath<String>,
    ApiJson(req): ApiJson<NoFurtherContact>,
) -> ApiResult<Json<SuppressionOutcome>> {
    blocking(&s, move |core| {
        marketing::no_further_contact(core, &a, &subject_id, &req)
    })
    .await
    .map(Json)
}
