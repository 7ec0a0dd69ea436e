//! Call recordings: streamed upload by the PBX integration, listing, metadata,
//! streamed playback/download and deletion. Every read is audited.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiPath, ApiQuery};
use super::files::{FileBody, file_response};
use super::{ApiError, ApiResult, AppState, Authed, ErrorBody, blocking};
use crate::recordings::{self, Recording, Upload};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_recordings, upload_recording))
        .routes(routes!(get_recording, delete_recording))
        .routes(routes!(recording_content))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// `inbound` (someone called in) or `outbound` (a call made from the tenant);
    /// must agree with the call record when it says.
    #[param(value_type = String, required = true, example = "inbound")]
    pub direction: Option<String>,
    /// The recording's length in whole seconds; at most the call's duration (+1 s).
    #[param(value_type = u64, required = true, example = 93)]
    pub duration: Option<String>,
    /// The recording's file name on the PBX (kept, encrypted).
    pub name: Option<String>,
}

fn required(v: Option<String>, field: &str, what: &str) -> Result<String, ApiError> {
    v.ok_or_else(|| {
        ApiError::from(crate::Error::invalid(
            field,
            format!("{field} is required: {what}"),
        ))
    })
}

/// Upload a recording of a call (the tenant's admin or an operator: the PBX
/// integration). The body is the audio itself, with its type in `Content-Type`
/// (`audio/wav`, `audio/mpeg`, `audio/ogg` or `audio/opus`); the type found in
/// the content must agree. The call must be one of the caller's tenant.
#[utoipa::path(post, path = "/calls/{call_id}/recordings", tag = "recordings", security(("bearer" = [])),
    params(("call_id" = String, Path, description = "The call record: 32 hexadecimal digits"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "audio/wav", description = "The audio: WAV, MP3 or Opus (Ogg)"),
    responses((status = 201, body = Recording), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 415, body = ErrorBody)))]
async fn upload_recording(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(call_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    file: FileBody,
) -> ApiResult<(StatusCode, Json<Recording>)> {
    let content_type = file.content_type;
    let up = Upload {
        call_id,
        direction: required(q.direction, "direction", "inbound or outbound")?,
        duration: required(
            q.duration,
            "duration",
            "the recording's length in whole seconds",
        )?,
        content_type,
        name: q.name,
    };
    recordings::upload(s.core.clone(), a, up, file.stream)
        .await
        .map(|r| (StatusCode::CREATED, Json(r)))
        .map_err(ApiError::from)
}

/// The recordings of a call, oldest first: roles the policy allows for
/// call_recordings (operators and the DPO by default). Audited.
#[utoipa::path(get, path = "/calls/{call_id}/recordings", tag = "recordings", security(("bearer" = [])),
    params(("call_id" = String, Path, description = "The call record: 32 hexadecimal digits")),
    responses((status = 200, body = Vec<Recording>), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_recordings(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(call_id): ApiPath<String>,
) -> ApiResult<Json<Vec<Recording>>> {
    blocking(&s, move |core| recordings::list(core, &a, &call_id))
        .await
        .map(Json)
}

/// One recording's details: roles the policy allows. Audited.
#[utoipa::path(get, path = "/recordings/{recording_id}", tag = "recordings", security(("bearer" = [])),
    params(("recording_id" = String, Path)),
    responses((status = 200, body = Recording), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn get_recording(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(recording_id): ApiPath<String>,
) -> ApiResult<Json<Recording>> {
    blocking(&s, move |core| recordings::get(core, &a, &recording_id))
        .await
        .map(Json)
}

/// Delete a recording and its audio (the tenant's admin, an operator or the DPO).
#[utoipa::path(delete, path = "/recordings/{recording_id}", tag = "recordings", security(("bearer" = [])),
    params(("recording_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_recording(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(recording_id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    blocking(&s, move |core| recordings::delete(core, &a, &recording_id))
        .await
        .map(|()| StatusCode::NO_CONTENT)
}

/// Play back or download the audio, decrypted as it streams: roles the policy
/// allows. Every call is audited (one `read` entry per party of the call).
#[utoipa::path(get, path = "/recordings/{recording_id}/content", tag = "recordings", security(("bearer" = [])),
    params(("recording_id" = String, Path)),
    responses((status = 200, content_type = "audio/wav", body = Vec<u8>,
               description = "The audio, in the type it was uploaded in (audio/wav, audio/mpeg or audio/ogg)"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn recording_content(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(recording_id): ApiPath<String>,
) -> ApiResult<Response> {
    let (rec, stream) = recordings::download(s.core.clone(), a, recording_id).await?;
    Ok(file_response(
        &rec.content_type,
        rec.size,
        Body::from_stream(stream),
    ))
}
