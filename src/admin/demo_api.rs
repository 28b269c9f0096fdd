//! `POST /api/demo/psap-callback`: the simulated PSAP of demo mode (`crate::demo`) calls the
//! most recent live callback number back. Only while the demo carrier runs (demo mode: no
//! configuration file); otherwise 404.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::agents_api::blocking;
use super::api::edge;
use super::{AdminState, ApiError};

/// `POST /api/demo/psap-callback`: `202 {"calling", "agent", "call_id"}` once the carrier's
/// INVITE is on its way to the edge; `409` when no lease lives; `404` outside demo mode.
/// "Most recent" is the lease that expires last: the one leased or renewed last.
pub(super) async fn psap_callback(
    State(state): State<AdminState>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Some(demo) = state.demo.clone() else {
        return Err(ApiError::not_found(
            "demo mode is off: the demo carrier runs only when lifeline runs without a configuration file",
        ));
    };
    let view = edge(&state)?.clone();
    let now = crate::core::emergency::unix_now();
    let leases = blocking(move || Ok(view.store.live_leases(now)?)).await?;
    let Some(lease) = leases.into_iter().max_by_key(|l| (l.expires_at, l.created_at)) else {
        return Err(ApiError::conflict(
            "no live callback lease: make an emergency call (933) first",
        ));
    };
    let did = lease.did.to_string();
    let call_id = demo.psap_callback(&did).await.map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "calling": did, "agent": lease.agent.as_str(), "call_id": call_id })),
    ))
}
