//! Photos and media: streamed upload and download of a user's own files.

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
use crate::media::{self, MediaItem, Upload};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_media, upload_media))
        .routes(routes!(get_media, delete_media))
        .routes(routes!(media_content))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The file's name on the device (kept, encrypted).
    pub name: Option<String>,
}

/// Upload a photo or video. The body is the file itself, with its type in
/// `Content-Type`; the type found in the content must agree and be an image or
/// video type. Needs the user's consent to photos_media/provision.
#[utoipa::path(post, path = "/subjects/{subject_id}/media", tag = "media", security(("bearer" = [])),
    params(("subject_id" = String, Path), UploadQuery),
    request_body(content = Vec<u8>, content_type = "image/jpeg", description = "The file: JPEG, PNG, GIF, WebP, HEIF, MP4, QuickTime or WebM"),
    responses((status = 201, body = MediaItem), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn upload_media(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(subject_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    file: FileBody,
) -> ApiResult<(StatusCode, Json<MediaItem>)> {
    let content_type = file.content_type;
    let up = Upload {
        content_type,
        name: q.name,
    };
    media::upload(s.core.clone(), a, subject_id, up, file.stream)
        .await
        .map(|m| (StatusCode::CREATED, Json(m)))
        .map_err(ApiError::from)
}

/// The user's photos and videos, newest first.
#[utoipa::path(get, path = "/subjects/{subject_id}/media", tag = "media", security(("bearer" = [])),
    params(("subject_id" = String, Path)),
    responses((status = 200, body = Vec<MediaItem>), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn list_media(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(subject_id): ApiPath<String>,
) -> ApiResult<Json<Vec<MediaItem>>> {
    blocking(&s, move |core| media::list(core, &a, &subject_id))
        .await
        .map(Json)
}

/// One item's details.
#[utoipa::path(get, path = "/media/{media_id}", tag = "media", security(("bearer" = [])),
    params(("media_id" = String, Path)),
    responses((status = 200, body = MediaItem), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn get_media(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(media_id): ApiPath<String>,
) -> ApiResult<Json<MediaItem>> {
    blocking(&s, move |core| media::get(core, &a, &media_id))
        .await
        .map(Json)
}

/// Delete an item and its file.
#[utoipa::path(delete, path = "/media/{media_id}", tag = "media", security(("bearer" = [])),
    params(("media_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_media(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(media_id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    blocking(&s, move |core| media::delete(core, &a, &media_id))
        .await
        .map(|()| StatusCode::NO_CONTENT)
}

/// The file itself, decrypted as it streams.
#[utoipa::path(get, path = "/media/{media_id}/content", tag = "media", security(("bearer" = [])),
    params(("media_id" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn media_content(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(media_id): ApiPath<String>,
) -> ApiResult<Response> {
    let (item, stream) = media::download(s.core.clone(), a, media_id).await?;
    Ok(file_response(
        &item.content_type,
        item.size,
        Body::from_stream(stream),
    ))
}
