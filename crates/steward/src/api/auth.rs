//! Login, logout and "who am I".

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::bearer;
use super::{ApiError, ApiJson, ApiResult, AppState, Authed, ErrorBody, LOGIN_WAIT, blocking};
use crate::accounts::{self, Account, Session};
use crate::error::Error;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// Log in with username and password; returns a bearer token.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = Session), (status = 401, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<Session>> {
    let permit = tokio::time::timeout(LOGIN_WAIT, state.login_gate.clone().acquire_owned())
        .await
        .map_err(|_| ApiError::from(Error::Busy("too many logins at once".into())))?
        .map_err(|_| ApiError::from(Error::Internal("login gate closed".into())))?;
    let ip = peer.ip().to_string();
    let session = blocking(&state, move |core| {
        let _permit = permit;
        accounts::login(core, &req.username, &req.password, Some(&ip))
    })
    .await;
    let outcome = if session.is_ok() { "ok" } else { "failed" };
    metrics::counter!("steward_logins_total", "outcome" => outcome).increment(1);
    session.map(Json)
}

/// End the current session.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
async fn logout(State(state): State<AppState>, parts: Parts) -> ApiResult<StatusCode> {
    let token = bearer(&parts).ok_or_else(|| ApiError::from(Error::Unauthenticated))?;
    let session = steward_crypto::token::hash_token(&token);
    blocking(&state, move |core| {
        accounts::authenticate(core, &token)?;
        accounts::logout(core, &token)
    })
    .await?;
    // Chat sockets opened with this session close with it.
    let chat = state.chat.clone();
    let _ = tokio::task::spawn_blocking(move || chat.close_session(&session)).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's own account.
#[utoipa::path(get, path = "/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Account), (status = 401, body = ErrorBody)))]
async fn me(State(state): State<AppState>, Authed(actor): Authed) -> ApiResult<Json<Account>> {
    blocking(&state, move |core| accounts::me(core, &actor))
        .await
        .map(Json)
}
