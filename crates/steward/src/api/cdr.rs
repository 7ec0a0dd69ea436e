//! Traffic data: call detail records sent by a PBX or billing system, and the
//! monthly usage summary for billing.

use std::fmt;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiPath, ApiQuery};
use super::{ApiJson, ApiResult, AppState, Authed, ErrorBody, blocking};
use crate::error::Error;
use crate::ingest::{self, NewCallRecord, RecordsReport, UsageReport};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_cdrs))
        .routes(routes!(get_usage))
        .routes(routes!(put_extension))
}

/// One call record, or an array of them.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum CdrBody {
    One(Box<NewCallRecord>),
    Many(Vec<NewCallRecord>),
}

// By hand rather than `untagged`, so that an error names the field at fault
// (`start`, or `[3].start` in an array) instead of "matched no variant".
impl<'de> Deserialize<'de> for CdrBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> Visitor<'de> for OneOrMany {
            type Value = CdrBody;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a call record object or an array of call record objects")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CdrBody, A::Error> {
                NewCallRecord::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|r| CdrBody::One(Box::new(r)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<CdrBody, A::Error> {
                Vec::<NewCallRecord>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(CdrBody::Many)
            }
        }
        d.deserialize_any(OneOrMany)
    }
}

/// Send call records (one object, or an array) for a tenant: the tenant's admin
/// or an operator. Re-sent records count as duplicates and add nothing; a request
/// with an invalid record is refused as a whole (400, naming the field).
#[utoipa::path(post, path = "/tenants/{tenant_id}/cdrs", tag = "traffic", security(("bearer" = [])),
    params(("tenant_id" = String, Path)), request_body = CdrBody,
    responses((status = 200, body = RecordsReport), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn post_cdrs(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(tenant_id): ApiPath<String>,
    ApiJson(body): ApiJson<CdrBody>,
) -> ApiResult<Json<RecordsReport>> {
    blocking(&s, move |core| {
        let (records, as_array) = match body {
            CdrBody::One(r) => (vec![*r], false),
            CdrBody::Many(v) => (v, true),
        };
        ingest::ingest_records(core, &a, &tenant_id, &records, as_array)
    })
    .await
    .map(Json)
}

#[derive(Debug, Deserialize, Serialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// `YYYY-MM` (UTC); default this month.
    pub month: Option<String>,
}

/// Calls, minutes and data per account of a tenant in a month, for billing
/// (the tenant's admin or an operator; audited as processing for billing).
#[utoipa::path(get, path = "/tenants/{tenant_id}/usage", tag = "traffic", security(("bearer" = [])),
    params(("tenant_id" = String, Path), UsageQuery),
    responses((status = 200, body = UsageReport), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_usage(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(tenant_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> ApiResult<Json<UsageReport>> {
    blocking(&s, move |core| {
        let month = q.month.unwrap_or_else(ingest::usage::this_month);
        ingest::usage(core, &a, &tenant_id, &month)
    })
    .await
    .map(Json)
}

/// A user's PBX extension.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtensionBody {
    /// The extension as the PBX writes it in its call records (1 to 64
    /// characters, not a phone number); `null` clears it. Required: a body
    /// without it (`{}`) is refused, not taken as "clear".
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = true)]
    pub extension: Option<Option<String>>,
}

/// A field that must be present and may be `null`: present → `Some(value)`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Record (or clear, with `null`) the PBX extension of one of a tenant's users,
/// so that call records naming it link to them: the tenant's admin or an
/// operator. Only its blind index is kept; records already stored keep the
/// party they were linked to when they arrived. Two users of a tenant cannot
/// have one extension (409).
#[utoipa::path(put, path = "/subjects/{subject_id}/extension", tag = "traffic", security(("bearer" = [])),
    params(("subject_id" = String, Path)), request_body = ExtensionBody,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn put_extension(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(subject_id): ApiPath<String>,
    ApiJson(body): ApiJson<ExtensionBody>,
) -> ApiResult<StatusCode> {
    let Some(extension) = body.extension else {
        return Err(
            Error::invalid("extension", "required: the extension, or null to clear it").into(),
        );
    };
    blocking(&s, move |core| {
        ingest::set_extension(core, &a, &subject_id, extension.as_deref())
    })
    .await
    .map(|()| StatusCode::NO_CONTENT)
}
