//! Tenants (employers) and their users.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiPath, ApiQuery};
use super::{ApiJson, ApiResult, AppState, Authed, ErrorBody, blocking};
use crate::access::Role;
use crate::accounts::{self, Account, NewUser};
use crate::subjects;
use crate::tenants::{self, Tenant};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant))
        .routes(routes!(list_users, create_user))
        .routes(routes!(disable_account))
        .routes(routes!(enable_account))
        .routes(routes!(find_subjects))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub name: String,
    pub customer_number: Option<String>,
}

/// Tenants the caller may see: all for provider staff, their own otherwise.
#[utoipa::path(get, path = "/tenants", tag = "tenants", security(("bearer" = [])),
    responses((status = 200, body = Vec<Tenant>), (status = 401, body = ErrorBody)))]
async fn list_tenants(
    State(s): State<AppState>,
    Authed(a): Authed,
) -> ApiResult<Json<Vec<Tenant>>> {
    blocking(&s, move |core| tenants::list(core, &a))
        .await
        .map(Json)
}

/// Create a tenant (provider staff only).
#[utoipa::path(post, path = "/tenants", tag = "tenants", security(("bearer" = [])),
    request_body = CreateTenant,
    responses((status = 201, body = Tenant), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_tenant(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiJson(req): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    blocking(&s, move |core| {
        tenants::create(core, &a, &req.name, req.customer_number.as_deref())
    })
    .await
    .map(|t| (StatusCode::CREATED, Json(t)))
}

/// One tenant.
#[utoipa::path(get, path = "/tenants/{tenant_id}", tag = "tenants", security(("bearer" = [])),
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = Tenant), (status = 404, body = ErrorBody)))]
async fn get_tenant(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(tenant_id): ApiPath<String>,
) -> ApiResult<Json<Tenant>> {
    blocking(&s, move |core| tenants::get(core, &a, &tenant_id))
        .await
        .map(Json)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: String,
    pub password: String,
    pub role: Role,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub display_name: Option<String>,
}

/// Users of a tenant.
#[utoipa::path(get, path = "/tenants/{tenant_id}/users", tag = "tenants", security(("bearer" = [])),
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = Vec<Account>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_users(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(tenant_id): ApiPath<String>,
) -> ApiResult<Json<Vec<Account>>> {
    blocking(&s, move |core| accounts::list(core, &a, &tenant_id))
        .await
        .map(Json)
}

/// Create an app user in a tenant (the tenant's admin, or provider staff).
#[utoipa::path(post, path = "/tenants/{tenant_id}/users", tag = "tenants", security(("bearer" = [])),
    params(("tenant_id" = String, Path)), request_body = CreateUser,
    responses((status = 201, body = Account), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_user(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(tenant_id): ApiPath<String>,
    ApiJson(req): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<Account>)> {
    blocking(&s, move |core| {
        accounts::create_user(
            core,
            &a,
            &tenant_id,
            NewUser {
                username: req.username,
                password: req.password,
                role: req.role,
                email: req.email,
                phone: req.phone,
                display_name: req.display_name,
            },
        )
    })
    .await
    .map(|acc| (StatusCode::CREATED, Json(acc)))
}

/// Disable an account and revoke its sessions.
#[utoipa::path(post, path = "/accounts/{account_id}/disable", tag = "tenants", security(("bearer" = [])),
    params(("account_id" = String, Path)),
    responses((status = 200, body = Account), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn disable_account(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(account_id): ApiPath<String>,
) -> ApiResult<Json<Account>> {
    let account = blocking(&s, move |core| {
        accounts::set_disabled(core, &a, &account_id, true)
    })
    .await?;
    // Its sessions are revoked: its open chat sockets close now.
    let (chat, who) = (s.chat.clone(), account.subject_id.clone());
    let _ = tokio::task::spawn_blocking(move || chat.close_subject(&who)).await;
    Ok(Json(account))
}

/// Re-enable an account.
#[utoipa::path(post, path = "/accounts/{account_id}/enable", tag = "tenants", security(("bearer" = [])),
    params(("account_id" = String, Path)),
    responses((status = 200, body = Account), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn enable_account(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(account_id): ApiPath<String>,
) -> ApiResult<Json<Account>> {
    blocking(&s, move |core| {
        accounts::set_disabled(core, &a, &account_id, false)
    })
    .await
    .map(Json)
}

#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FindQuery {
    pub email: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FoundSubjects {
    pub subject_ids: Vec<String>,
}

/// Find subjects of a tenant by email or phone number (blind index lookup).
#[utoipa::path(get, path = "/tenants/{tenant_id}/subjects", tag = "subjects", security(("bearer" = [])),
    params(("tenant_id" = String, Path), FindQuery),
    responses((status = 200, body = FoundSubjects), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn find_subjects(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(tenant_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<FindQuery>,
) -> ApiResult<Json<FoundSubjects>> {
    blocking(&s, move |core| {
        a.require_role(
            &[Role::TenantAdmin, Role::Operator, Role::Dpo],
            "search subjects",
        )?;
        subjects::find(core, &a, &tenant_id, q.email.as_deref(), q.phone.as_deref())
    })
    .await
    .map(|subject_ids| Json(FoundSubjects { subject_ids }))
}
