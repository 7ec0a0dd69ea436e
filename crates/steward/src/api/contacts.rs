//! Device contacts: the signed-in App user syncs single contacts from their
//! device, with their consent (see `contacts.rs`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use steward_vcard::Contact;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiPath, ApiQuery};
use super::vcard::{Answer, FormatQuery, JsonOrVcard, JsonOrVcardBody, negotiate, vcard_response};
use super::{ApiResult, AppState, Authed, ErrorBody, blocking};
use crate::contacts::{self, DeviceContact, MAX_BODY, SyncInput};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_contacts, post_contact))
        .routes(routes!(get_contact, delete_contact))
}

/// The contacts you synced, oldest first, without their photos. Needs your
/// consent to device contacts (403 `consent_required` without it).
#[utoipa::path(get, path = "/me/device-contacts", tag = "device contacts",
    security(("bearer" = [])),
    responses((status = 200, body = [DeviceContact]), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "forbidden or consent_required")))]
async fn get_contacts(
    State(s): State<AppState>,
    Authed(a): Authed,
) -> ApiResult<Json<Vec<DeviceContact>>> {
    blocking(&s, move |core| contacts::list(core, &a))
        .await
        .map(Json)
}

/// Sync one contact from your device, as JSON or as one vCard (2.1, 3.0 or 4.0,
/// `Content-Type: text/vcard`). A contact with the UID of one you synced before
/// replaces it (200); otherwise it is added (201). Needs your consent to device
/// contacts (403 `consent_required` without it, and nothing is stored). A vCard
/// that cannot be read is 400 naming its line; a field over its limit (a photo
/// over 256 KiB, say) is 400 naming the field.
#[utoipa::path(post, path = "/me/device-contacts", tag = "device contacts",
    security(("bearer" = [])),
    request_body(content((Contact = "application/json"), (String = "text/vcard"))),
    responses((status = 201, body = DeviceContact), (status = 200, body = DeviceContact),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "forbidden or consent_required"),
              (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 415, body = ErrorBody)))]
async fn post_contact(
    State(s): State<AppState>,
    Authed(a): Authed,
    JsonOrVcardBody(body): JsonOrVcardBody<Contact, MAX_BODY>,
) -> ApiResult<(StatusCode, Json<DeviceContact>)> {
    let input = match body {
        JsonOrVcard::Json(c) => SyncInput::json(c),
        JsonOrVcard::Vcard(b) => SyncInput::Vcard(b.to_vec()),
    };
    let (contact, created) = blocking(&s, move |core| contacts::sync(core, &a, input)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(contact)))
}

/// One contact you synced, with its photo, as JSON or as a vCard (`format`,
/// `version`, or `Accept: text/vcard`). Needs your consent to device contacts.
#[utoipa::path(get, path = "/me/device-contacts/{contact_id}", tag = "device contacts",
    security(("bearer" = [])), params(("contact_id" = String, Path), FormatQuery),
    responses((status = 200, content(
                  (DeviceContact = "application/json"), (String = "text/vcard"))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "forbidden or consent_required"),
              (status = 404, body = ErrorBody)))]
async fn get_contact(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(contact_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<FormatQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let answer = negotiate(&q, &headers)?;
    let contact = blocking(&s, move |core| contacts::get(core, &a, &contact_id)).await?;
    Ok(match answer {
        Answer::Json => Json(contact).into_response(),
        Answer::Vcard(v) => vcard_response(contacts::to_vcard(&contact, v), None),
    })
}

/// Delete one contact you synced from the server (no consent needed).
#[utoipa::path(delete, path = "/me/device-contacts/{contact_id}", tag = "device contacts",
    security(("bearer" = [])), params(("contact_id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_contact(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(contact_id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    blocking(&s, move |core| contacts::delete(core, &a, &contact_id))
        .await
        .map(|()| StatusCode::NO_CONTENT)
}
