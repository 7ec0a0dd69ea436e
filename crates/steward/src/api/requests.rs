//! Data-subject requests: staff work the queue; a subject files and follows
//! their own requests.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiPath, ApiQuery};
use super::{ApiError, ApiJson, ApiResult, AppState, Authed, ErrorBody, blocking};
use crate::error::Error;
use crate::rights::erase::{self, ErasureReport};
use crate::rights::{
    self, Ground, Kind, NewRequest, Request, RequestChannel, SubjectRef, TimelineEntry,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_requests, create_request))
        .routes(routes!(get_request))
        .routes(routes!(verify_request))
        .routes(routes!(refuse_request))
        .routes(routes!(rectify_request))
        .routes(routes!(complete_request))
        .routes(routes!(export_request))
        .routes(routes!(download_bundle))
        .routes(routes!(erase_request))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub kind: Kind,
    /// Default `portal`.
    pub channel: Option<RequestChannel>,
    /// YYYY-MM-DD; default today.
    pub received_on: Option<String>,
    /// england-and-wales, scotland or northern-ireland; default the policy's.
    pub region: Option<String>,
    pub details: Option<String>,
    /// Staff name the subject by one of these; a subject filing their own leaves them out.
    pub subject_id: Option<String>,
    pub subject_email: Option<String>,
    pub subject_phone: Option<String>,
    pub subject_username: Option<String>,
}

/// File a request (a subject for themself, through the portal) or record one
/// received by letter, email or phone (staff).
#[utoipa::path(post, path = "/requests", tag = "requests", security(("bearer" = [])),
    request_body = CreateRequest,
    responses((status = 201, body = Request), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_request(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiJson(req): ApiJson<CreateRequest>,
) -> ApiResult<(StatusCode, Json<Request>)> {
    let subject = match (
        req.subject_id,
        req.subject_email,
        req.subject_phone,
        req.subject_username,
    ) {
        (Some(id), None, None, None) => SubjectRef::Id(id),
        (None, Some(e), None, None) => SubjectRef::Email(e),
        (None, None, Some(p), None) => SubjectRef::Phone(p),
        (None, None, None, Some(u)) => SubjectRef::Username(u),
        (None, None, None, None) => match &a.subject_id {
            Some(own) => SubjectRef::Id(own.clone()),
            None => return Err(Error::invalid("subject_id", "name the subject").into()),
        },
        _ => return Err(Error::invalid("subject_id", "name the subject one way only").into()),
    };
    let received_on = req
        .received_on
        .unwrap_or_else(|| crate::clock::today().to_string());
    let new = NewRequest {
        subject,
        kind: req.kind,
        channel: req.channel.unwrap_or(RequestChannel::Portal),
        received_on,
        region: req.region,
        details: req.details,
    };
    blocking(&s, move |core| rights::create(core, &a, new))
        .await
        .map(|r| (StatusCode::CREATED, Json(r)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only open requests due within this many working days (overdue included).
    pub due_within: Option<i64>,
}

/// Requests in the caller's scope, most urgent first.
#[utoipa::path(get, path = "/requests", tag = "requests", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Vec<Request>), (status = 401, body = ErrorBody)))]
async fn list_requests(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<Request>>> {
    blocking(&s, move |core| rights::list(core, &a, q.due_within))
        .await
        .map(Json)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestDetail {
    pub request: Request,
    pub timeline: Vec<TimelineEntry>,
}

/// One request with its timeline.
#[utoipa::path(get, path = "/requests/{request_id}", tag = "requests", security(("bearer" = [])),
    params(("request_id" = String, Path)),
    responses((status = 200, body = RequestDetail), (status = 404, body = ErrorBody)))]
async fn get_request(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<RequestDetail>> {
    blocking(&s, move |core| {
        Ok(RequestDetail {
            request: rights::get(core, &a, &id)?,
            timeline: rights::timeline(core, &a, &id)?,
        })
    })
    .await
    .map(Json)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    /// How the identity was verified (e.g. "passport copy checked").
    pub method: String,
}

/// Record the identity verification; nothing is released before it.
#[utoipa::path(post, path = "/requests/{request_id}/verify", tag = "requests", security(("bearer" = [])),
    params(("request_id" = String, Path)), request_body = VerifyBody,
    responses((status = 200, body = Request), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn verify_request(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<VerifyBody>,
) -> ApiResult<Json<Request>> {
    blocking(&s, move |core| rights::verify(core, &a, &id, &b.method))
        .await
        .map(Json)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefuseBody {
    /// repetitive, manifestly_unfounded, disproportionate_effort or others_privacy.
    #[schema(value_type = Ground)]
    pub ground: String,
}

/// Refuse on a recorded ground ("the data is on a backup" is never one).
#[utoipa::path(post, path = "/requests/{request_id}/refuse", tag = "requests", security(("bearer" = [])),
    params(("request_id" = String, Path)), request_body = RefuseBody,
    responses((status = 200, body = Request), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn refuse_request(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<RefuseBody>,
) -> ApiResult<Json<Request>> {
    blocking(&s, move |core| {
        rights::refuse(core, &a, &id, Ground::parse(&b.ground)?)
    })
    .await
    .map(Json)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RectifyBody {
    /// email, phone or name.
    pub field: String,
    pub value: String,
}

/// Correct one identifier for a verified rectification request.
#[utoipa::path(post, path = "/requests/{request_id}/rectify", tag = "requests", security(("bearer" = [])),
    params(("request_id" = String, Path)), request_body = RectifyBody,
    responses((status = 200, body = Request), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn rectify_request(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<RectifyBody>,
) -> ApiResult<Json<Request>> {
    blocking(&s, move |core| {
        rights::rectify(core, &a, &id, &b.field, &b.value)
    })
    .await
    .map(Json)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    /// Only partly fulfilled.
    #[serde(default)]
    pub partially: bool,
}

/// Close a verified restriction or objection request.
#[utoipa::path(post, path = "/requests/{request_id}/complete", tag = "requests", security(("bearer" = [])),
    params(("request_id" = String, Path)), request_body = CompleteBody,
    responses((status = 200, body = Request), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn complete_request(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<CompleteBody>,
) -> ApiResult<Json<Request>> {
    blocking(&s, move |core| rights::complete(core, &a, &id, b.partially))
        .await
        .map(Json)
}

/// Produce the access/portability bundle (a ZIP) and fulfil the request.
#[utoipa::path(post, path = "/requests/{request_id}/export", tag = "requests", security(("bearer" = [])),
    params(("request_id" = String, Path)),
    responses((status = 200, content_type = "application/zip", description = "the bundle"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn export_request(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let name = format!("steward-bundle-{id}.zip");
    let file = blocking(&s, move |core| {
        let tmp = tempfile::NamedTempFile::new().map_err(|e| Error::Internal(e.to_string()))?;
        rights::export::for_request(core, &a, &id, tmp.path())?;
        // Reopen: for_request replaced the file at that path. The open handle
        // keeps the data readable after the temporary path is removed.
        let f = std::fs::File::open(tmp.path()).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(f)
    })
    .await?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let mut resp = Body::from_stream(stream).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        "application/zip"
            .parse()
            .map_err(|_| ApiError::from(Error::Internal("header".into())))?,
    );
    if let Ok(v) = format!("attachment; filename=\"{name}\"").parse() {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// Erase the subject of a verified erasure request everywhere; returns the
/// report and the confirmation text.
#[utoipa::path(post, path = "/requests/{request_id}/erase", tag = "requests", security(("bearer" = [])),
    params(("request_id" = String, Path)),
    responses((status = 200, body = ErasureReport), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn erase_request(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ErasureReport>> {
    let report = blocking(&s, move |core| erase::for_request(core, &a, &id)).await?;
    // Their account is gone: their open chat sockets close now.
    let (chat, who) = (s.chat.clone(), report.subject_id.clone());
    let _ = tokio::task::spawn_blocking(move || chat.close_subject(&who)).await;
    Ok(Json(report))
}

/// Download the stored bundle of a fulfilled access or portability request: the
/// subject themself, or staff in scope, until it expires (`bundle_keep_days`).
#[utoipa::path(get, path = "/requests/{request_id}/bundle", tag = "requests", security(("bearer" = [])),
    params(("request_id" = String, Path)),
    responses((status = 200, content_type = "application/zip", description = "the bundle"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn download_bundle(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let name = format!("steward-bundle-{id}.zip");
    let file = blocking(&s, move |core| rights::export::open_bundle(core, &a, &id)).await?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let mut resp = Body::from_stream(stream).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/zip"),
    );
    if let Ok(v) = format!("attachment; filename=\"{name}\"").parse() {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
