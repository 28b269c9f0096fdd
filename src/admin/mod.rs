//! The admin listener (`[admin] listen`): the JSON API under `/api/*` (bearer token), and
//! `/live`, `/ready`, `/metrics` (no token) for orchestrators and Prometheus.
//!
//! Errors are JSON `{ "error": { "code", "message", "field" } }` with a 4xx status, and an
//! invalid request writes nothing (DESIGN.md, "Admin API").

mod agents_api;
mod api;
mod demo_api;
pub mod error;
pub mod metrics;
mod notify_api;
pub mod token;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

pub use error::ApiError;

use crate::agents::LiveRoster;
use crate::core::CoreHandle;
use crate::presence::PresenceBook;
use crate::routing::Dialplans;
use crate::store::Store;
pub use metrics::Metrics;

/// What the admin handlers share.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The bearer token for `/api/*`.
    pub token: Arc<str>,
    /// Set once every listener is bound and the store is open.
    pub ready: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
    /// The running edge's parts the API reads; `None` until the edge runs.
    pub edge: Option<EdgeView>,
    /// The demo carrier (`crate::demo`), only in demo mode: `/api/demo/*` answers 404 without.
    pub demo: Option<crate::demo::DemoHandle>,
}

/// What of the running edge the API reaches.
#[derive(Debug, Clone)]
pub struct EdgeView {
    pub core: CoreHandle,
    pub dialplans: Arc<Dialplans>,
    /// The roster in force; agent and group writes swap it.
    pub roster: Arc<LiveRoster>,
    pub presence: Arc<PresenceBook>,
    /// Agents, groups, call history, templates and the notification outbox (blocking: called
    /// from `spawn_blocking`).
    pub store: Arc<dyn Store>,
    /// `[sip] domain`: the digest realm of passwords set through the API.
    pub realm: String,
    /// Trunk host names and their addresses (`GET /api/dialplan`).
    pub trunk_hosts: Arc<crate::transport::dns::TrunkHosts>,
}

/// The routes of the admin listener.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/api", get(api_index))
        .route("/api/registrations", get(api::registrations))
        .route("/api/dialplan", get(api::dialplan))
        .route("/api/dialplan/reload", axum::routing::post(api::dialplan_reload))
        .route("/api/agents", get(agents_api::agents))
        .route(
            "/api/agents/{id}",
            get(agents_api::agent)
                .put(agents_api::put_agent)
                .patch(agents_api::patch_agent)
                .delete(agents_api::delete_agent),
        )
        .route("/api/agents/{id}/presence", get(agents_api::presence).put(agents_api::put_presence))
        .route("/api/groups", get(agents_api::groups))
        .route(
            "/api/groups/{id}",
            get(agents_api::group).put(agents_api::put_group).delete(agents_api::delete_group),
        )
        .route("/api/calls", get(agents_api::calls))
        .route("/api/callbacks", get(agents_api::callbacks))
        .route("/api/demo/psap-callback", axum::routing::post(demo_api::psap_callback))
        .merge(notify_api::routes())
        .fallback(api_not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/live", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(api)
        .with_state(state)
}

/// Serves the admin listener until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await {
        tracing::error!(error = %e, "admin listener stopped");
    }
}

async fn ready(State(state): State<AdminState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
        .into_response()
}

async fn api_index() -> Response {
    axum::Json(serde_json::json!({ "name": "lifeline", "version": env!("CARGO_PKG_VERSION") }))
        .into_response()
}

async fn api_not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// Refuses `/api/*` without `Authorization: Bearer <token>` (RFC 6750 §2.1).
async fn require_token(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(t) if token::equal(t, &state.token) => next.run(req).await,
        _ => {
            let mut r = ApiError::unauthorized().into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"lifeline\""),
            );
            r
        }
    }
}
