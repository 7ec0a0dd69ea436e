//! The HTTP API: JSON under `/api/v1`, described by an OpenAPI document built
//! from the handlers themselves. Handlers are thin: they parse, authenticate,
//! then call one domain operation on a blocking thread.

mod analytics;
mod audit;
mod auth;
mod cdr;
mod chat;
mod contacts;
mod contract;
mod credit;
mod directory;
mod enquiries;
mod extract;
mod files;
mod marketing;
mod media;
mod recordings;
mod requests;
mod subjects;
mod system;
mod tenants;
pub(crate) mod vcard;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use tokio::sync::Semaphore;
use utoipa::openapi::OpenApi;
use utoipa::{OpenApi as _, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::chat::Chat;
use crate::core::Steward;
use crate::error::Error;

pub use extract::{ApiJson, Authed};

/// The largest request body the JSON API accepts.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub core: Arc<Steward>,
    /// Chat's writer and realtime hub (one per server).
    pub chat: Arc<Chat>,
    /// Caps concurrent argon2 verifications (each costs ~20 ms of one core), so
    /// a burst of logins cannot starve every other request.
    pub(crate) login_gate: Arc<Semaphore>,
    metrics: PrometheusHandle,
    /// The OpenAPI document as served: utoipa's, completed by [`contract`].
    openapi: Arc<serde_json::Value>,
}

/// The error body every endpoint uses.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code: invalid, unauthenticated, login_failed, throttled, forbidden,
    /// consent_required, not_found, method_not_allowed, conflict,
    /// payload_too_large, busy, internal.
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    retry_after: Option<i64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &str,
        message: impl Into<String>,
        field: Option<String>,
    ) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: ErrorDetail {
                    code: code.to_owned(),
                    message: message.into(),
                    field,
                },
            },
            retry_after: None,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // Internal details go to the log, not to the client.
        let message =
            if status.is_server_error() && !matches!(e, Error::Busy(_) | Error::StorageFull(_)) {
                tracing::error!(error = %e, "request failed");
                "internal error; see the server log".to_owned()
            } else {
                e.to_string()
            };
        let mut err = ApiError::new(status, e.code(), message, e.field().map(str::to_owned));
        match e {
            Error::Throttled(secs) => err.retry_after = Some(secs),
            // A busy or unreachable database: a client may retry shortly.
            Error::Busy(_) => err.retry_after = Some(1),
            // A full disk: someone must free space; ask for a slower retry.
            Error::StorageFull(_) => err.retry_after = Some(30),
            _ => {}
        }
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = secs.to_string().parse()
        {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Runs a domain operation on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Steward) -> crate::error::Result<T> + Send + 'static,
) -> ApiResult<T> {
    crate::core::blocking(&state.core, f)
        .await
        .map_err(ApiError::from)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Steward API",
        description = "Personal data of a cloud communications provider, with the privacy statement's promises kept in code.",
        license(name = "AGPL-3.0-or-later")
    ),
    components(schemas(ErrorBody, ErrorDetail, steward_wire::ClientFrame, steward_wire::SendFrame, steward_wire::MarkFrame, crate::chat::ServerFrame)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Tests start several servers in one process: only the first installs.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The `/api/v1` routes and their OpenAPI description.
pub fn api_routes() -> (Router<AppState>, OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(
            "/api/v1",
            OpenApiRouter::new()
                .merge(auth::routes())
                .merge(tenants::routes())
                .merge(subjects::routes())
                .merge(audit::routes())
                .merge(requests::routes())
                .merge(cdr::routes())
                .merge(analytics::routes())
                .merge(media::routes())
                .merge(enquiries::routes())
                .merge(marketing::routes())
                .merge(credit::routes())
                .merge(recordings::routes())
                .merge(directory::routes())
                .merge(contacts::routes())
                .merge(chat::routes())
                .merge(system::api_routes()),
        )
        .split_for_parts()
}

/// The whole application: API, health, metrics; with the chat service it
/// started (whose sockets close when the server stops).
pub fn app(core: Arc<Steward>) -> (Router, Arc<Chat>) {
    let (api, openapi) = api_routes();
    let mut openapi = serde_json::to_value(&openapi).unwrap_or_default();
    contract::complete(&mut openapi);
    contract::fill(&mut openapi, &core);
    let chat = Chat::start(core.clone());
    let state = AppState {
        core,
        chat: chat.clone(),
        login_gate: Arc::new(Semaphore::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )),
        metrics: metrics_handle(),
        openapi: Arc::new(openapi),
    };
    let router = api
        .merge(system::routes())
        .merge(crate::web::router())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route", None)
        })
        // The Allow header (set by the router) lists the methods the route has.
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("this route does not take {method}"),
                None,
            )
        })
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(middleware::from_fn(observe))
        .with_state(state);
    (router, chat)
}

/// Logs and counts every request by its route template (never the raw path or
/// query, which may carry identifiers), method and status.
async fn observe(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let elapsed = start.elapsed();
    metrics::counter!("steward_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.clone()).increment(1);
    metrics::histogram!("steward_http_request_duration_seconds", "route" => route.clone())
        .record(elapsed.as_secs_f64());
    tracing::info!(%method, %route, %status, ms = elapsed.as_millis() as u64, "request");
    resp
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    core: Arc<Steward>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (router, chat) = app(core);
    // Small frames (chat) go out at once instead of waiting for the previous
    // segment's acknowledgement (Nagle's algorithm).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown({
        let chat = chat.clone();
        async move {
            shutdown.await;
            // Upgraded connections are not axum's to wait for: tell them to close.
            chat.hub().close_all();
        }
    })
    .await?;
    // ... and wait until each has recorded its end (chat_connections.closed_at).
    if !chat.hub().closed(CLOSE_WAIT).await {
        tracing::warn!(
            "chat connections still closing after {} s: stopping without them",
            CLOSE_WAIT.as_secs()
        );
    }
    Ok(())
}

/// How long a stopping server waits for its chat connections to close.
pub const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// How long a login waits for a free password-hashing slot before the server
/// answers "busy".
pub const LOGIN_WAIT: Duration = Duration::from_secs(10);
