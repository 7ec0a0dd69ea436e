//! Health, metrics, the OpenAPI document, the public policy, and `/` (the way
//! to the console).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiResult, AppState, blocking};

/// Routes outside `/api/v1`.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(start_page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/openapi.json", get(openapi))
}

pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(policy))
}

/// `/`: a browser pointed at the server goes to the console's start page
/// (which sends each account to its first page, or to the login form). Not
/// in the OpenAPI document, which describes `/api/v1` only.
///
/// 303 See Other, not 308 or 301: a permanent redirect is cached by browsers
/// for good, and what `/` leads to is this version's choice (an operator may
/// later put a website there in front of Steward); and 303 rather than 307,
/// because only GET and HEAD are routed here and the console's every other
/// redirect (login, Post/Redirect/Get) is a 303 as well.
async fn start_page() -> Redirect {
    Redirect::to(crate::web::PREFIX)
}

/// Liveness and database reachability.
async fn healthz(State(s): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    blocking(&s, |core| {
        core.db.read(|c| c.query("SELECT 1", &[]))?;
        Ok(serde_json::json!({ "status": "ok", "database": core.db.backend().to_string() }))
    })
    .await
    .map(Json)
}

/// How many working days ahead a request counts as nearly due in the metrics.
const NEARLY_DUE_DAYS: i64 = 3;

async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    // Request deadlines are state, not events: read them at scrape time.
    let counts = blocking(&s, |core| {
        let open = crate::rights::list(
            core,
            &crate::access::Actor::system("metrics"),
            Some(i64::MAX),
        )?;
        let overdue = open.iter().filter(|r| r.working_days_left < 0).count();
        let nearly = open
            .iter()
            .filter(|r| (0..=NEARLY_DUE_DAYS).contains(&r.working_days_left))
            .count();
        Ok((open.len(), overdue, nearly))
    })
    .await;
    if let Ok((open, overdue, nearly)) = counts {
        metrics::gauge!("steward_requests_open").set(open as f64);
        metrics::gauge!("steward_requests_overdue").set(overdue as f64);
        metrics::gauge!("steward_requests_nearly_due").set(nearly as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn openapi(State(s): State<AppState>) -> impl IntoResponse {
    Json(s.openapi.as_ref().clone())
}

/// The policy in force (public: it is the privacy notice as data).
#[utoipa::path(get, path = "/policy", tag = "policy",
    responses((status = 200, description = "the policy as JSON", body = Object)))]
async fn policy(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::to_value(s.core.policy.as_ref()).unwrap_or_default())
}
