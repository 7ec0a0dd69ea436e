//! The audit log, for the DPO.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiQuery;
use super::{ApiResult, AppState, Authed, ErrorBody, blocking};
use crate::audit::{self, Entry, Verification};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_entries))
        .routes(routes!(verify_chain))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Entries after this sequence number (default 0).
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// Audit entries in order. A tenant's DPO sees that tenant's entries; the
/// provider's DPO sees all.
#[utoipa::path(get, path = "/audit", tag = "audit", security(("bearer" = [])), params(Page),
    responses((status = 200, body = Vec<Entry>), (status = 403, body = ErrorBody)))]
async fn list_entries(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiQuery(p): ApiQuery<Page>,
) -> ApiResult<Json<Vec<Entry>>> {
    blocking(&s, move |core| {
        let limit = p.limit.unwrap_or(100).clamp(1, 1000);
        audit::list_for(&core.db, &a, p.after.unwrap_or(0), limit)
    })
    .await
    .map(Json)
}

/// Verify the whole chain (provider DPO only: the chain spans all tenants).
#[utoipa::path(get, path = "/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = Verification), (status = 403, body = ErrorBody)))]
async fn verify_chain(
    State(s): State<AppState>,
    Authed(a): Authed,
) -> ApiResult<Json<Verification>> {
    blocking(&s, move |core| audit::verify_for(&core.db, &core.keys, &a))
        .await
        .map(Json)
}
