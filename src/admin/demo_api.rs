//! `POST /api/demo/psap-callback`: the simulated PSAP of demo mode (`crate::demo`) calls the
//! most recent live callback number back. Only while the demo carrier runs (demo mode: no
//! configuration file); otherwise 404.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::agents_api::blocking;
use super::api::edge;
use super::{AdminState, ApiError};

/// `POST /api/demo/psap-callback[?agent=ID][&hang_up_after=SECONDS]`: `202 {"calling",
/// "agent", "call_id"}` once the carrier's INVITE is on its way to the edge; `409` when no
/// lease lives (of that agent, when `agent` is given); `404` outside demo mode. "Most recent"
/// is the lease that expires last: the one leased or renewed last. The PSAP hangs up when the
/// agent does, or `hang_up_after` seconds after the answer (1 to 300, default 300).
pub(super) async fn psap_callback(
    State(state): State<AdminState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let longest = crate::demo::carrier::MAX_CALL.as_secs();
    let hang_up_after = match q.get("hang_up_after") {
        None => longest,
        Some(v) => v.parse().ok().filter(|s| (1..=longest).contains(s)).ok_or_else(|| {
            ApiError::invalid(
                "hang_up_after",
                format!("'{v}' is not a number of seconds from 1 to {longest}"),
            )
        })?,
    };
    let Some(demo) = state.demo.clone() else {
        return Err(ApiError::not_found(
            "demo mode is off: the demo carrier runs only when lifeline runs without a configuration file",
        ));
    };
    let view = edge(&state)?.clone();
    let now = crate::core::emergency::unix_now();
    let leases = blocking(move || Ok(view.store.live_leases(now)?)).await?;
    let agent = q.get("agent");
    let lease = leases
        .into_iter()
        .filter(|l| agent.is_none_or(|a| l.agent.as_str() == a))
        .max_by_key(|l| (l.expires_at, l.created_at));
    let Some(lease) = lease else {
        let whose = agent.map_or(String::new(), |a| format!(" of '{a}'"));
        return Err(ApiError::conflict(format!(
            "no live callback lease{whose}: make an emergency call (933) first"
        )));
    };
    let did = lease.did.to_string();
    let call_id = demo
        .psap_callback(&did, Duration::from_secs(hang_up_after))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "calling": did, "agent": lease.agent.as_str(), "call_id": call_id })),
    ))
}
