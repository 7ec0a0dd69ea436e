//! A subject's record, consents, and the processing check.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiPath, ApiQuery};
use super::{ApiJson, ApiResult, AppState, Authed, ErrorBody, blocking};
use crate::consent::{self, Action, Channel, ConsentEvent, ConsentState, Record};
use crate::processing::{self, Decision, Use};
use crate::subjects::{self, Subject};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_subject))
        .routes(routes!(get_consents, post_consent))
        .routes(routes!(check_processing))
}

#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// Why the record is read (a purpose of the contact_details category);
    /// default `administration`.
    pub purpose: Option<String>,
}

/// A subject's record, decrypted. Reads by anyone but the subject are audited.
#[utoipa::path(get, path = "/subjects/{subject_id}", tag = "subjects", security(("bearer" = [])),
    params(("subject_id" = String, Path), ReadQuery),
    responses((status = 200, body = Subject), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_subject(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(subject_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> ApiResult<Json<Subject>> {
    let purpose = q.purpose.unwrap_or_else(|| "administration".to_owned());
    blocking(&s, move |core| {
        subjects::read(core, &a, &subject_id, &purpose)
    })
    .await
    .map(Json)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Consents {
    pub current: Vec<ConsentState>,
    pub history: Vec<ConsentEvent>,
}

/// Current consent per purpose, and the full ledger history.
#[utoipa::path(get, path = "/subjects/{subject_id}/consents", tag = "consent", security(("bearer" = [])),
    params(("subject_id" = String, Path)),
    responses((status = 200, body = Consents), (status = 404, body = ErrorBody)))]
async fn get_consents(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(subject_id): ApiPath<String>,
) -> ApiResult<Json<Consents>> {
    blocking(&s, move |core| consent::overview(core, &a, &subject_id))
        .await
        .map(|(current, history)| Json(Consents { current, history }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    /// The category consented to (device_contacts, photos_media, …).
    pub category: String,
    pub purpose: String,
    /// `grant` or `withdraw`.
    pub action: Action,
    /// How the consent was received; default `app`.
    pub channel: Option<Channel>,
    /// What proves it (a letter's reference, a call's note).
    pub evidence: Option<String>,
}

/// Give or withdraw consent for a purpose. The subject does so themself; staff
/// record consent received by phone, letter or email.
#[utoipa::path(post, path = "/subjects/{subject_id}/consents", tag = "consent", security(("bearer" = [])),
    params(("subject_id" = String, Path)), request_body = ConsentRequest,
    responses((status = 201, body = ConsentEvent), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn post_consent(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(subject_id): ApiPath<String>,
    ApiJson(req): ApiJson<ConsentRequest>,
) -> ApiResult<(StatusCode, Json<ConsentEvent>)> {
    blocking(&s, move |core| {
        consent::record(
            core,
            &a,
            Record {
                subject_id,
                category: req.category,
                purpose: req.purpose,
                action: req.action,
                channel: req.channel.unwrap_or(Channel::App),
                evidence: req.evidence,
            },
        )
    })
    .await
    .map(|e| (StatusCode::CREATED, Json(e)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessingRequest {
    pub subject_id: String,
    pub category: String,
    pub purpose: String,
    /// A recipient id from the policy, when the data is disclosed.
    pub recipient: Option<String>,
}

/// Ask before processing: is this use of the subject's data declared in the
/// policy and, where needed, consented to? Allowed uses are recorded in the
/// audit log; a single-use consent is consumed.
#[utoipa::path(post, path = "/processing", tag = "consent", security(("bearer" = [])),
    request_body = ProcessingRequest,
    responses((status = 200, body = Decision), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "forbidden or consent_required"),
              (status = 404, body = ErrorBody)))]
async fn check_processing(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiJson(req): ApiJson<ProcessingRequest>,
) -> ApiResult<Json<Decision>> {
    blocking(&s, move |core| {
        processing::check(
            core,
            &a,
            &Use {
                subject_id: &req.subject_id,
                category: &req.category,
                purpose: &req.purpose,
                recipient: req.recipient.as_deref(),
            },
        )
    })
    .await
    .map(Json)
}
