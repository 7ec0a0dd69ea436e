//! The business directory: the tenant's admin manages it, every signed-in user
//! of the tenant lists, exports and synchronises it (see `directory.rs`).

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiPath, ApiQuery};
use super::vcard::{Answer, FormatQuery, VcardBody, negotiate, vcard_response};
use super::{ApiJson, ApiResult, AppState, Authed, ErrorBody, blocking};
use crate::directory::{
    self, Entry, EntryInput, ImportReport, MAX_IMPORT_BYTES, SyncPage, parse_version,
};

pub fn routes() -> OpenApiRouter<AppState> {
    let import = OpenApiRouter::new()
        .routes(routes!(post_import))
        .layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES));
    OpenApiRouter::new()
        .routes(routes!(get_directory, post_entry))
        .routes(routes!(get_sync))
        .routes(routes!(get_export))
        .routes(routes!(get_entry, put_entry, delete_entry))
        .merge(import)
}

/// The tenant's directory, sorted by name (any signed-in account of the tenant).
#[utoipa::path(get, path = "/tenants/{tenant_id}/directory", tag = "directory",
    security(("bearer" = [])), params(("tenant_id" = String, Path)),
    responses((status = 200, body = [Entry]), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn get_directory(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(tenant_id): ApiPath<String>,
) -> ApiResult<Json<Vec<Entry>>> {
    blocking(&s, move |core| directory::list(core, &a, &tenant_id))
        .await
        .map(Json)
}

/// Add an entry (the tenant's admin, or an operator). Its email addresses and
/// phone numbers link it to the person's subject (a user of the tenant, else a
/// subject created for it); a person has one entry per tenant (409).
#[utoipa::path(post, path = "/tenants/{tenant_id}/directory", tag = "directory",
    security(("bearer" = [])), params(("tenant_id" = String, Path)), request_body = EntryInput,
    responses((status = 201, body = Entry), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
async fn post_entry(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(tenant_id): ApiPath<String>,
    ApiJson(body): ApiJson<EntryInput>,
) -> ApiResult<(StatusCode, Json<Entry>)> {
    blocking(&s, move |core| {
        directory::create(core, &a, &tenant_id, body)
    })
    .await
    .map(|e| (StatusCode::CREATED, Json(e)))
}

#[derive(Debug, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SyncQuery {
    /// The token the previous sync returned; leave out for a full sync.
    pub since: Option<String>,
    /// Changes per page: 1 to 5000, default 500.
    #[param(minimum = 1, maximum = 5000)]
    pub limit: Option<usize>,
}

/// Changes since the last sync (any signed-in account of the tenant): entries
/// created or changed, ids of entries deleted, and the token for next time.
/// A malformed token is 400; one of the token's form that this tenant's
/// directory did not issue (another tenant's, or altered) is 409: sync again
/// without `since`. One older than the deletion markers kept answers
/// `full: true` with every entry.
#[utoipa::path(get, path = "/tenants/{tenant_id}/directory/sync", tag = "directory",
    security(("bearer" = [])), params(("tenant_id" = String, Path), SyncQuery),
    responses((status = 200, body = SyncPage), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
async fn get_sync(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(tenant_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SyncQuery>,
) -> ApiResult<Json<SyncPage>> {
    blocking(&s, move |core| {
        directory::sync(core, &a, &tenant_id, q.since.as_deref(), q.limit)
    })
    .await
    .map(Json)
}

#[derive(Debug, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `4.0` (default) or `3.0`; also from `Accept: text/vcard; version=3.0`.
    #[param(inline, value_type = Option<super::vcard::VersionName>)]
    pub version: Option<String>,
}

/// The whole directory as one vCard file, 4.0 or 3.0 (any signed-in account of
/// the tenant). Each card's UID is `urn:uuid:<entry id>`.
#[utoipa::path(get, path = "/tenants/{tenant_id}/directory/export", tag = "directory",
    security(("bearer" = [])), params(("tenant_id" = String, Path), ExportQuery),
    responses((status = 200, content_type = "text/vcard", body = String),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn get_export(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(tenant_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ExportQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let version = match q.version.as_deref() {
        Some(v) => parse_version("version", v)?,
        None => match negotiate(
            &FormatQuery {
                format: Some("vcard".into()),
                version: None,
            },
            &headers,
        )? {
            Answer::Vcard(v) => v,
            Answer::Json => steward_vcard::Version::V4,
        },
    };
    let text = blocking(&s, move |core| {
        directory::export_vcard(core, &a, &tenant_id, version)
    })
    .await?;
    Ok(vcard_response(text, Some("directory.vcf")))
}

/// Import a vCard file (2.1, 3.0 or 4.0, up to 5000 cards and 16 MiB) into the
/// directory (the tenant's admin, or an operator). A card whose UID is an
/// entry's (`urn:uuid:<id>`, as exports write it), or whose person already has
/// an entry, updates it; others are added. Birthdays, photos, addresses, notes
/// and URLs are not kept (the report lists them per card). All or nothing: a
/// card that cannot be read or stored refuses the file (400 naming the card,
/// its line and the field) and nothing changes.
#[utoipa::path(post, path = "/tenants/{tenant_id}/directory/import", tag = "directory",
    security(("bearer" = [])), params(("tenant_id" = String, Path)),
    request_body(content = String, content_type = "text/vcard"),
    responses((status = 200, body = ImportReport), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn post_import(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(tenant_id): ApiPath<String>,
    VcardBody(body): VcardBody<MAX_IMPORT_BYTES>,
) -> ApiResult<Json<ImportReport>> {
    blocking(&s, move |core| {
        directory::import_vcard(core, &a, &tenant_id, &body)
    })
    .await
    .map(Json)
}

/// One entry, as JSON or as a vCard (`format`, `version`, or `Accept`; any
/// signed-in account of the tenant).
#[utoipa::path(get, path = "/tenants/{tenant_id}/directory/{entry_id}", tag = "directory",
    security(("bearer" = [])),
    params(("tenant_id" = String, Path), ("entry_id" = String, Path), FormatQuery),
    responses((status = 200, content(
                  (Entry = "application/json"), (String = "text/vcard"))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn get_entry(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath((tenant_id, entry_id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<FormatQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let answer = negotiate(&q, &headers)?;
    let entry = blocking(&s, move |core| {
        directory::get(core, &a, &tenant_id, &entry_id)
    })
    .await?;
    Ok(match answer {
        Answer::Json => Json(entry).into_response(),
        Answer::Vcard(v) => vcard_response(directory::to_vcard(&entry, v), None),
    })
}

/// Replace an entry's fields (the tenant's admin, or an operator).
#[utoipa::path(put, path = "/tenants/{tenant_id}/directory/{entry_id}", tag = "directory",
    security(("bearer" = [])),
    params(("tenant_id" = String, Path), ("entry_id" = String, Path)), request_body = EntryInput,
    responses((status = 200, body = Entry), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
async fn put_entry(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath((tenant_id, entry_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<EntryInput>,
) -> ApiResult<Json<Entry>> {
    blocking(&s, move |core| {
        directory::update(core, &a, &tenant_id, &entry_id, body)
    })
    .await
    .map(Json)
}

/// Remove an entry (the tenant's admin, or an operator); devices drop it at
/// their next sync.
#[utoipa::path(delete, path = "/tenants/{tenant_id}/directory/{entry_id}", tag = "directory",
    security(("bearer" = [])),
    params(("tenant_id" = String, Path), ("entry_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn delete_entry(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath((tenant_id, entry_id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    blocking(&s, move |core| {
        directory::delete(core, &a, &tenant_id, &entry_id)
    })
    .await
    .map(|()| StatusCode::NO_CONTENT)
}
